//! The game through the edge: real redis-server (standalone and the 3-primary cluster, via testkit), the
//! real Functions library, the edge in-process with its game layer, and tokio-tungstenite clients speaking
//! both subprotocols. Timers are fired by the real engine (`ringside_engine::Engine`, in-process).
//!
//! The edge runs its default driver (io_uring where the kernel allows it); the tests of delivery, send
//! queues and reconnects also run on the epoll fallback (`Driver::Legacy`, the `…_on_epoll` twins).

mod common;

use futures_util::{SinkExt, StreamExt};
use ringside_edge::config::{Config, Driver};
use ringside_edge::game::address_limits::AddressLimits;
use ringside_edge::game::hub::RedisConfig;
use ringside_edge::game::{GameConfig, GameFactory};
use ringside_lua::{Game, Quiz, Redis};
use ringside_protocol::auth::answer_hash;
use ringside_protocol::events::*;
use ringside_protocol::{ClientEvent, Codec, Envelope, ErrorCode, ServerEvent};
use ringside_testkit::{Backend, TestRedis};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[path = "game/address_limits.rs"]
mod address_limits;
#[path = "game/errors.rs"]
mod errors;
#[path = "game/ownership.rs"]
mod ownership;

const QUIZ: &str = r#"{"id":"edge-test","title":"Edge test","questions":[
 {"text":"One?","options":["a","b","c","d"],"correct":1,"timeLimitMs":60000},
 {"text":"Two?","options":["a","b"],"correct":0,"timeLimitMs":60000},
 {"text":"Three?","options":["a","b","c"],"correct":2,"timeLimitMs":60000}]}"#;

/// A client's byte stream: plain TCP or TLS (tokio-rustls), boxed so one client type speaks both.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// How clients reach the edge: `ws://` or `wss://` with a connector that trusts the test's cert.
#[derive(Clone)]
enum Dial {
    Ws,
    Wss(tokio_rustls::TlsConnector),
}

struct Client {
    ws: Ws,
    codec: Codec,
    rid: u32,
    /// Room seqs seen, in arrival order.
    seqs: Vec<u64>,
    /// Events that arrived while waiting for something else.
    backlog: std::collections::VecDeque<Envelope<ServerEvent>>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr, codec: Codec) -> Client {
        Client::dial(&Dial::Ws, addr, codec).await
    }

    /// Connects over `ws://` or `wss://` (TLS with SNI `localhost`).
    async fn dial(dial: &Dial, addr: std::net::SocketAddr, codec: Codec) -> Client {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        match dial {
            Dial::Ws => Client::over(Box::new(tcp), format!("ws://{addr}/ws"), codec).await,
            Dial::Wss(connector) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await.expect("TLS handshake");
                let url = format!("wss://localhost:{}/ws", addr.port());
                Client::over(Box::new(tls), url, codec).await
            }
        }
    }

    /// Connects over `ws://` from source address `from` (any of 127/8 on Linux).
    async fn connect_from(
        addr: std::net::SocketAddr,
        from: std::net::IpAddr,
        codec: Codec,
    ) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(std::net::SocketAddr::new(from, 0)).unwrap();
        let tcp = sock.connect(addr).await.unwrap();
        Client::over(Box::new(tcp), format!("ws://{addr}/ws"), codec).await
    }

    /// Upgrades an already connected stream.
    async fn over(stream: Box<dyn Io>, url: String, codec: Codec) -> Client {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", codec.protocol().parse().unwrap());
        let (ws, resp) = tokio_tungstenite::client_async(req, stream)
            .await
            .expect("upgrade");
        assert_eq!(resp.headers()["sec-websocket-protocol"], codec.protocol());
        let mut c = Client {
            ws,
            codec,
            rid: 0,
            seqs: Vec::new(),
            backlog: Default::default(),
        };
        let ack = c.next().await;
        assert!(
            matches!(ack.event, ServerEvent::SessionAck(_)),
            "first frame is session:ack, got {ack:?}"
        );
        c
    }

    async fn send(&mut self, ev: ClientEvent) -> u32 {
        self.rid += 1;
        let body = Envelope::new(ev)
            .with_rid(Some(self.rid))
            .encode(self.codec);
        let msg = match self.codec {
            Codec::Json => Message::Text(String::from_utf8(body).unwrap().into()),
            Codec::Msgpack => Message::Binary(body.into()),
        };
        self.ws.send(msg).await.unwrap();
        self.rid
    }

    async fn raw(&mut self, msg: Message) {
        self.ws.send(msg).await.unwrap();
    }

    async fn next(&mut self) -> Envelope<ServerEvent> {
        if let Some(e) = self.backlog.pop_front() {
            return e;
        }
        self.recv().await
    }

    /// The next frame from the socket (not the backlog).
    async fn recv(&mut self) -> Envelope<ServerEvent> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("a frame within 30 s")
                .expect("socket open")
                .expect("valid frame");
            let mut body = match (&msg, self.codec) {
                (Message::Text(t), Codec::Json) => t.as_bytes().to_vec(),
                (Message::Binary(b), Codec::Msgpack) => b.to_vec(),
                (Message::Ping(_) | Message::Pong(_), _) => continue,
                other => panic!("unexpected frame {other:?} for {:?}", self.codec),
            };
            let env: Envelope<ServerEvent> =
                Envelope::decode(self.codec, &mut body).expect("server frames decode");
            if let Some(s) = env.seq {
                self.seqs.push(s);
            }
            return env;
        }
    }

    /// The reply to request `rid` (room events that arrive first are kept for later).
    async fn reply(&mut self, rid: u32) -> Envelope<ServerEvent> {
        let mut skipped = Vec::new();
        loop {
            let e = self.next().await;
            if e.rid == Some(rid) {
                for s in skipped.into_iter().rev() {
                    self.backlog.push_front(s);
                }
                return e;
            }
            skipped.push(e);
        }
    }

    async fn request(&mut self, ev: ClientEvent) -> ServerEvent {
        let rid = self.send(ev).await;
        self.reply(rid).await.event
    }

    /// Reads until the server's close frame and returns its code; room seqs of the frames read on
    /// the way are recorded in `seqs` as usual. `None`: the socket ended without a close frame.
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            let msg = match tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("the close within 30 s")
            {
                Some(Ok(m)) => m,
                _ => return None,
            };
            let mut body = match msg {
                Message::Close(f) => return f.map(|f| u16::from(f.code)),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                _ => continue,
            };
            let env: Envelope<ServerEvent> =
                Envelope::decode(self.codec, &mut body).expect("server frames decode");
            if let Some(s) = env.seq {
                self.seqs.push(s);
            }
        }
    }

    /// The next event, or `None` once the socket is gone (reset, EOF or close frame): for clients
    /// whose edge process was killed.
    async fn recv_or_closed(&mut self) -> Option<Envelope<ServerEvent>> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("a frame or the end within 30 s");
            let mut body = match msg {
                Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                Some(Ok(Message::Binary(b))) => b.to_vec(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            };
            let env: Envelope<ServerEvent> =
                Envelope::decode(self.codec, &mut body).expect("server frames decode");
            if let Some(s) = env.seq {
                self.seqs.push(s);
            }
            return Some(env);
        }
    }

    /// Reads until room event `seq` (or a later one) has arrived.
    async fn read_to_seq(&mut self, seq: u64) {
        while self.seqs.last().is_none_or(|s| *s < seq) {
            let e = self.recv().await;
            if e.seq.is_none() {
                // A reply or personal event waits in the backlog for whoever asks.
                self.backlog.push_back(e);
            }
        }
    }

    /// Waits for the first event matching `f`, dropping others.
    async fn until<T>(&mut self, mut f: impl FnMut(&ServerEvent) -> Option<T>) -> T {
        loop {
            let e = self.next().await;
            if let Some(t) = f(&e.event) {
                return t;
            }
        }
    }
}

/// The real timer engine, in-process: it fires every due timer of the room's partitions with
/// `timer_fire`, exactly as `ringside-engine` does in production.
async fn start_engine(urls: Vec<String>, cluster: bool) -> ringside_engine::Engine {
    ringside_engine::Engine::start(ringside_engine::Config::for_redis(urls, cluster))
        .await
        .expect("engine starts (library version checked)")
}

struct Stack {
    _redis: TestRedis,
    edge: ringside_edge::ServerHandle,
    /// Dropped with the stack: its tasks end with the test's runtime.
    _engine: ringside_engine::Engine,
    dial: Dial,
    /// A Redis connection of the test's own.
    conn: Redis,
    _cert_dir: Option<CertDir>,
}

/// A generated dev certificate, removed with the stack.
struct CertDir(std::path::PathBuf);

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn stack(backend: Backend) -> Stack {
    stack_with(backend, false, |_| {}).await
}

/// The stack, over `wss://` when `tls` (a certificate generated with `gen_dev_cert` and a client
/// connector trusting it), with `tweak` applied to the edge's config.
async fn stack_with(backend: Backend, tls: bool, tweak: impl FnOnce(&mut Config)) -> Stack {
    stack_full(backend, tls, AddressLimits::default(), tweak).await
}

/// [`stack_with`] with the given per-address limits.
async fn stack_full(
    backend: Backend,
    tls: bool,
    address_limits: AddressLimits,
    tweak: impl FnOnce(&mut Config),
) -> Stack {
    let redis = TestRedis::start(backend).expect("redis starts");
    let urls = redis.urls();
    let mut conn = Redis::connect(&urls, redis.is_cluster()).await.unwrap();
    ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    let game = Game::new(conn.clone());
    game.store_quiz(&Quiz::from_json(QUIZ).unwrap())
        .await
        .unwrap();
    let engine = start_engine(urls.clone(), redis.is_cluster()).await;
    let mut cfg = Config::echo("127.0.0.1:0".parse().unwrap());
    cfg.echo = false;
    cfg.threads = 2;
    cfg.limits = Config::default().limits;
    cfg.sendq = Config::default().sendq;
    let (dial, cert_dir) = if tls {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringside-edge-game-cert-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let (cert, key) = ringside_edge::tls::gen_dev_cert(&dir).unwrap();
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(ringside_edge::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.tls = Some(ringside_edge::config::TlsFiles { cert, key });
        (
            Dial::Wss(tokio_rustls::TlsConnector::from(Arc::new(client))),
            Some(CertDir(dir)),
        )
    } else {
        (Dial::Ws, None)
    };
    tweak(&mut cfg);
    let factory = GameFactory::start(
        GameConfig {
            redis: RedisConfig {
                urls,
                cluster: redis.is_cluster(),
            },
            share_base: "http://test".into(),
            address_limits,
        },
        cfg.threads,
    )
    .expect("game layer connects");
    let edge = common::start_with(cfg, Arc::new(factory));
    Stack {
        _redis: redis,
        edge,
        _engine: engine,
        dial,
        conn,
        _cert_dir: cert_dir,
    }
}

fn settings() -> RoomSettings {
    RoomSettings {
        countdown_ms: Some(200),
        reveal_pause_ms: Some(200),
        ..Default::default()
    }
}

/// A whole game: a host and players on both subprotocols; every player sees every question, its own result
/// after each reveal, and the end, with room seqs in order and without gaps.
async fn full_game(backend: Backend) {
    full_game_on(stack(backend).await).await;
}

async fn full_game_on(s: Stack) {
    let addr = s.edge.local_addr();
    let mut host = Client::dial(&s.dial, addr, Codec::Json).await;
    let code = create_room(&mut host).await;

    let mut players = Vec::new();
    for (i, codec) in [Codec::Json, Codec::Msgpack, Codec::Json, Codec::Msgpack]
        .into_iter()
        .enumerate()
    {
        let mut c = Client::dial(&s.dial, addr, codec).await;
        let ack = join(&mut c, &code, &format!("p{i}")).await;
        players.push((c, ack));
    }

    // A non-host may not start the game.
    let (p0, _) = &mut players[0];
    match p0
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.clone(),
        }))
        .await
    {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::NotHost),
        other => panic!("player game:start → {other:?}"),
    }
    match host
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.clone(),
        }))
        .await
    {
        ServerEvent::Ok(_) => {}
        other => panic!("game:start → {other:?}"),
    }

    for q in 0..3u32 {
        for (i, (c, ack)) in players.iter_mut().enumerate() {
            let show = c
                .until(|e| match e {
                    ServerEvent::QuestionShow(s) => Some(s.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(show.q_index, q);
            let answer = (i as u32) % show.answers.len() as u32;
            let hash = answer_hash(&ack.answer_secret, &code, &ack.player_id, q, answer);
            let ev = ClientEvent::AnswerSubmit(AnswerSubmit {
                game_code: code.clone(),
                q_index: q,
                answer_idx: answer,
                client_time: 0.0,
                answer_hash: hash,
            });
            match c.request(ev).await {
                ServerEvent::AnswerAck(a) => assert!(a.received && a.q_index == q),
                other => panic!("answer → {other:?}"),
            }
        }
        // Everyone answered: the reveal comes early, then each player's own result.
        for (c, _) in players.iter_mut() {
            let r = c
                .until(|e| match e {
                    ServerEvent::QuestionReveal(r) => Some(r.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(r.q_index, q);
            let mine = c
                .until(|e| match e {
                    ServerEvent::AnswerResult(r) => Some(r.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(mine.q_index, q);
            assert_eq!(mine.total_players, 4);
        }
    }
    for (c, _) in players.iter_mut() {
        let end = c
            .until(|e| match e {
                ServerEvent::GameEnd(g) => Some(g.clone()),
                _ => None,
            })
            .await;
        assert_eq!(end.total_players, 4);
        assert!(!c.seqs.is_empty());
        for w in c.seqs.windows(2) {
            assert_eq!(
                w[1],
                w[0] + 1,
                "room events in seq order without gaps: {:?}",
                c.seqs
            );
        }
    }
    let end = host
        .until(|e| match e {
            ServerEvent::GameEnd(g) => Some(g.clone()),
            _ => None,
        })
        .await;
    assert_eq!(end.final_rankings.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_through_the_edge_on_standalone_redis() {
    full_game(Backend::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_through_the_edge_on_the_cluster() {
    full_game(Backend::Cluster).await;
}

/// The same game with the edge on its epoll fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_through_the_edge_on_epoll() {
    let s = stack_with(Backend::Standalone, false, |c| c.driver = Driver::Legacy).await;
    assert!(
        s.edge.drivers().iter().all(|d| *d == "epoll"),
        "{:?}",
        s.edge.drivers()
    );
    full_game_on(s).await;
}

/// The same game over `wss://` (the edge with a generated dev certificate, clients on tokio-rustls
/// trusting it), host and players on both subprotocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_over_wss_in_both_subprotocols() {
    full_game_on(stack_with(Backend::Standalone, true, |_| {}).await).await;
}

/// Bad input gets a precise error for that socket only; the other player in the room is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_code_and_others_are_unaffected() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut good = Client::connect(addr, Codec::Msgpack).await;
    let good_ack = join(&mut good, &code, "good").await;
    let mut bad = Client::connect(addr, Codec::Json).await;
    let bad_ack = join(&mut bad, &code, "bad").await;

    let expect_error = |e: Envelope<ServerEvent>, code: ErrorCode| match e.event {
        ServerEvent::Error(err) => assert_eq!(err.code, code, "{err:?}"),
        other => panic!("expected {code}, got {other:?}"),
    };
    bad.raw(Message::Text("{not json".into())).await;
    expect_error(bad.next().await, ErrorCode::BadFrame);
    bad.raw(Message::Text(r#"{"event":"room:nuke","data":{}}"#.into()))
        .await;
    expect_error(bad.next().await, ErrorCode::UnknownEvent);
    bad.raw(Message::Text(
        r#"{"event":"room:join","data":{"gameCode":7}}"#.into(),
    ))
    .await;
    expect_error(bad.next().await, ErrorCode::BadPayload);
    bad.raw(Message::Binary(vec![0x81, 0xa5].into())).await;
    expect_error(bad.next().await, ErrorCode::BadFrame);
    // Unknown room for a second session on another socket.
    let mut lost = Client::connect(addr, Codec::Json).await;
    let r = lost
        .send(ClientEvent::RoomJoin(RoomJoin {
            game_code: "ZZZZZZ".into(),
            player_name: "x".into(),
            avatar_id: 0,
        }))
        .await;
    expect_error(lost.reply(r).await, ErrorCode::RoomNotFound);

    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    let show = bad
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    // A forged answer (wrong HMAC), and one for a future question.
    let forged = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 0,
        answer_idx: 1,
        client_time: 0.0,
        answer_hash: "00".repeat(32),
    });
    let r = bad.send(forged).await;
    expect_error(bad.reply(r).await, ErrorCode::BadHash);
    let future = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 2,
        answer_idx: 0,
        client_time: 0.0,
        answer_hash: answer_hash(&bad_ack.answer_secret, &code, &bad_ack.player_id, 2, 0),
    });
    let r = bad.send(future).await;
    expect_error(bad.reply(r).await, ErrorCode::WrongQuestion);
    // A host action from a player.
    let r = bad
        .send(ClientEvent::HostSkip(HostSkip {
            game_code: code.clone(),
            reason: None,
        }))
        .await;
    expect_error(bad.reply(r).await, ErrorCode::NotHost);

    // The bad player's first answer counts; a second one is refused (before everyone answered, so the
    // question is still open). The refused future-question answer above was one of its 2 answer events
    // of this question, so anti-cheat layer 5 (`rate_limited`) refuses it before layer 4 would say
    // `already_answered` (lua/ringside.lua `answer_submit`).
    let a = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 0,
        answer_idx: 0,
        client_time: 0.0,
        answer_hash: answer_hash(&bad_ack.answer_secret, &code, &bad_ack.player_id, 0, 0),
    });
    assert!(matches!(
        bad.request(a.clone()).await,
        ServerEvent::AnswerAck(_)
    ));
    let r = bad.send(a).await;
    expect_error(bad.reply(r).await, ErrorCode::RateLimited);
    // The good player sees the same question and answers normally.
    let seen = good
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!(seen, show);
    let ok = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 0,
        answer_idx: 1,
        client_time: 0.0,
        answer_hash: answer_hash(&good_ack.answer_secret, &code, &good_ack.player_id, 0, 1),
    });
    assert!(matches!(good.request(ok).await, ServerEvent::AnswerAck(_)));
    let reveal = good
        .until(|e| match e {
            ServerEvent::QuestionReveal(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reveal.answered_count, 2);
}

/// A player whose socket dies mid-game reconnects on a new socket with its last seq and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_last_seq_misses_nothing() {
    reconnect_with_last_seq(Driver::Fusion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_last_seq_misses_nothing_on_epoll() {
    reconnect_with_last_seq(Driver::Legacy).await;
}

async fn reconnect_with_last_seq(driver: Driver) {
    let s = stack_with(Backend::Standalone, false, |c| c.driver = driver).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut p = Client::connect(addr, Codec::Msgpack).await;
    let ack = join(&mut p, &code, "tunnel").await;
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    p.until(|e| match e {
        ServerEvent::QuestionShow(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    let last = *p.seqs.last().unwrap();
    drop(p); // the train enters the tunnel

    // While it is away, the host skips question 0: reveal, leaderboard, and later question 1 are missed.
    host.request(ClientEvent::HostSkip(HostSkip {
        game_code: code.clone(),
        reason: None,
    }))
    .await;
    host.until(|e| match e {
        ServerEvent::QuestionShow(s) if s.q_index == 1 => Some(()),
        _ => None,
    })
    .await;

    let mut back = Client::connect(addr, Codec::Msgpack).await;
    let rid = back
        .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack.player_id.clone(),
            session_token: ack.session_token.clone(),
            last_seq: Some(last),
        }))
        .await;
    // The missed events arrive first, in order, then the reply.
    let mut got = Vec::new();
    loop {
        let e = back.next().await;
        if e.rid == Some(rid) {
            assert!(matches!(e.event, ServerEvent::Ok(_)), "{e:?}");
            break;
        }
        got.push(e);
    }
    assert!(got
        .iter()
        .any(|e| matches!(&e.event, ServerEvent::QuestionReveal(r) if r.skipped)));
    assert!(got
        .iter()
        .any(|e| matches!(&e.event, ServerEvent::QuestionShow(s) if s.q_index == 1)));
    for (expect, s) in (last + 1..).zip(back.seqs.iter()) {
        assert_eq!(*s, expect, "missed events in order from lastSeq+1");
    }
    // The new socket can answer the current question with the same identity.
    let a = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 1,
        answer_idx: 0,
        client_time: 0.0,
        answer_hash: answer_hash(&ack.answer_secret, &code, &ack.player_id, 1, 0),
    });
    assert!(matches!(back.request(a).await, ServerEvent::AnswerAck(_)));
}

async fn create_room(host: &mut Client) -> String {
    match host
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "edge-test".into(),
            host_name: None,
            settings: settings(),
        }))
        .await
    {
        ServerEvent::RoomCreated(c) => c.game_code,
        other => panic!("room:create → {other:?}"),
    }
}

async fn join(c: &mut Client, code: &str, name: &str) -> RoomJoinAck {
    match c
        .request(ClientEvent::RoomJoin(RoomJoin {
            game_code: code.to_string(),
            player_name: name.into(),
            avatar_id: 0,
        }))
        .await
    {
        ServerEvent::RoomJoinAck(a) => a,
        other => panic!("room:join → {other:?}"),
    }
}

fn assert_consecutive(seqs: &[u64], from: u64, who: &str) {
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(
            *s,
            from + i as u64,
            "{who}: room events from seq {from} in order, none missed or repeated: {seqs:?}"
        );
    }
}

/// Emits a room event exactly as the Functions library's `emit` does (next `seq` from the room hash,
/// appended to the room log, `SPUBLISH`ed on the room channel), so a test can produce many room
/// events quickly without waiting for game timers.
const EMIT: &str = r#"
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local env = '{"event":"' .. ARGV[1] .. '","seq":' .. seq .. ',"data":' .. ARGV[2] .. '}'
redis.call('XADD', KEYS[1] .. ':log', 'MAXLEN', '~', 1000, seq .. '-0', 'e', env)
redis.call('SPUBLISH', KEYS[1] .. ':ev', env)
return seq
"#;

async fn emit(conn: &mut Redis, code: &str, event: &str, data: &str) -> u64 {
    redis::cmd("EVAL")
        .arg(EMIT)
        .arg(1)
        .arg(ringside_protocol::keys::room(code))
        .arg(event)
        .arg(data)
        .query_async(conn)
        .await
        .expect("EVAL emit")
}

/// A player that stops reading (4 KiB receive buffer) fills its kernel buffers and then its bounded send
/// queue: queued progress frames are superseded, and past the hard limit the socket is closed with 4008.
/// Meanwhile another player in the same room (on the other subprotocol) receives every room event, in
/// `seq` order, none missed or repeated. The slow player then reconnects with its last `seq` and is back
/// in the game. Asserts ordering and completeness only (no latency), so a busy machine cannot flake it:
/// the fast clients read each round before the next is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4008_while_another_player_gets_every_event_in_order() {
    slow_consumer(Driver::Fusion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4008_while_another_player_gets_every_event_in_order_on_epoll(
) {
    slow_consumer(Driver::Legacy).await;
}

async fn slow_consumer(driver: Driver) {
    use std::sync::atomic::Ordering::SeqCst;
    let s = stack_with(Backend::Standalone, false, |cfg| {
        cfg.driver = driver;
        cfg.sendq.max_bytes = 32 * 1024;
        cfg.sendq.max_frames = 64;
        // The slow player drains megabytes through its small window before it reads the close.
        cfg.close_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = s.edge.local_addr();
    let mut conn = s.conn.clone();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut good = Client::connect(addr, Codec::Msgpack).await;
    let good_ack = join(&mut good, &code, "good").await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let mut slow = Client::over(Box::new(tcp), format!("ws://{addr}/ws"), Codec::Json).await;
    let slow_ack = join(&mut slow, &code, "slow").await;
    // From here on the slow player reads nothing until the end.

    // A big (but valid: 500-char text, 4 × 200-char options) question frame, and small progress ones.
    let show = format!(
        r#"{{"qIndex":0,"totalQuestions":3,"question":"{}","answers":["{o}","{o}","{o}","{o}"],"endsAt":1,"timeLimitMs":60000,"points":1000}}"#,
        "Q".repeat(500),
        o = "o".repeat(200)
    );
    let metrics = s.edge.metrics();
    let mut progress = std::collections::HashSet::new();
    let mut last = 0;
    let mut rounds = 0u32;
    while metrics.slow_consumer_closes_total.load(SeqCst) == 0 {
        assert!(
            rounds < 4000,
            "the slow consumer was not closed after {rounds} rounds"
        );
        rounds += 1;
        // progress, show, progress, show, progress — published back to back, so the worker often
        // queues two progress frames for a socket before its task writes: only a backed-up socket
        // may have the older one superseded, a socket that keeps up gets both.
        for i in 0..3 {
            let p = emit(
                &mut conn,
                &code,
                "game:answer:progress",
                &format!(r#"{{"qIndex":0,"answeredCount":{rounds},"totalCount":2}}"#),
            )
            .await;
            progress.insert(p);
            last = p;
            if i < 2 {
                emit(&mut conn, &code, "game:question:show", &show).await;
            }
        }
        good.read_to_seq(last).await;
        host.read_to_seq(last).await;
    }
    println!(
        "slow consumer closed after {rounds} rounds ({} KiB of room events); superseded frames: {}",
        rounds as usize * (2 * show.len() + 3 * 60) / 1024,
        metrics.dropped_superseded_frames_total.load(SeqCst)
    );
    assert_eq!(metrics.slow_consumer_closes_total.load(SeqCst), 1);
    assert!(
        metrics.dropped_superseded_frames_total.load(SeqCst) > 0,
        "progress frames queued for the slow player were superseded before the hard limit"
    );
    assert_eq!(
        good.backlog.len(),
        0,
        "no error or stray reply for the good player"
    );
    assert_consecutive(&good.seqs, good_ack.seq + 1, "good player");
    assert!(*good.seqs.last().unwrap() >= last);

    // The slow player reads what reached it: frames in seq order where the only gaps are superseded
    // progress frames, then the close 4008.
    assert_eq!(slow.close_code().await, Some(4008));
    let mut prev = slow_ack.seq;
    for &sq in &slow.seqs {
        assert!(sq > prev, "slow player: seqs increase: {:?}", slow.seqs);
        for missing in prev + 1..sq {
            assert!(
                progress.contains(&missing),
                "slow player: only superseded progress frames may be missing, not seq {missing}"
            );
        }
        prev = sq;
    }
    assert!(prev < last, "the slow player was cut off before the end");

    // It reconnects with its last seq: the missed events from the room log, or a snapshot (the gap is
    // older than the log, or its replay would not fit the bounded send queue).
    drop(slow);
    let mut back = Client::connect(addr, Codec::Json).await;
    let rid = back
        .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: slow_ack.player_id.clone(),
            session_token: slow_ack.session_token.clone(),
            last_seq: Some(prev),
        }))
        .await;
    let resumed_at = match back.reply(rid).await.event {
        ServerEvent::Ok(_) => {
            assert_consecutive(&back.seqs, prev + 1, "replayed events");
            *back.seqs.last().unwrap()
        }
        ServerEvent::ReconnectState(st) => {
            back.seqs.clear();
            st.seq
        }
        other => panic!("reconnect:attempt → {other:?}"),
    };
    assert!(resumed_at >= last);

    // The real game goes on: both see the first question, with room seqs continuing without a gap.
    let ServerEvent::Ok(_) = host
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.clone(),
        }))
        .await
    else {
        panic!("game:start")
    };
    for c in [&mut good, &mut back] {
        let q = c
            .until(|e| match e {
                ServerEvent::QuestionShow(s) if s.question != "Q".repeat(500) => Some(s.clone()),
                _ => None,
            })
            .await;
        assert_eq!(q.q_index, 0);
    }
    assert_consecutive(&good.seqs, good_ack.seq + 1, "good player after the start");
    let tail: Vec<u64> = back
        .seqs
        .iter()
        .copied()
        .skip_while(|s| *s <= resumed_at)
        .collect();
    assert_consecutive(&tail, resumed_at + 1, "reconnected player after the start");
}

/// A message over the game's 64 KiB limit gets close 1009, a text frame that is not UTF-8 gets 1007 —
/// each closes only its own socket: a player in the same room keeps playing and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_non_utf8_messages_close_only_their_socket() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut good = Client::connect(addr, Codec::Msgpack).await;
    let good_ack = join(&mut good, &code, "good").await;
    let mut big = Client::connect(addr, Codec::Json).await;
    join(&mut big, &code, "big").await;
    let mut mangled = Client::connect(addr, Codec::Json).await;
    join(&mut mangled, &code, "mangled").await;

    big.raw(Message::Text("x".repeat(70 * 1024).into())).await;
    assert_eq!(big.close_code().await, Some(1009));
    mangled
        .raw(Message::Frame(Frame::message(
            vec![b'{', b'"', 0xC3, 0x28, b'"', b'}'],
            OpCode::Data(Data::Text),
            true,
        )))
        .await;
    assert_eq!(mangled.close_code().await, Some(1007));
    assert_eq!(s.edge.metrics().protocol_closes(1009), 1);
    assert_eq!(s.edge.metrics().protocol_closes(1007), 1);

    // The good player plays on: question, answer, reveal (skipped by the host: the two closed players
    // never answer), with every room event since its join in order.
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    let show = good
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    let a = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: show.q_index,
        answer_idx: 1,
        client_time: 0.0,
        answer_hash: answer_hash(
            &good_ack.answer_secret,
            &code,
            &good_ack.player_id,
            show.q_index,
            1,
        ),
    });
    assert!(matches!(good.request(a).await, ServerEvent::AnswerAck(_)));
    host.request(ClientEvent::HostSkip(HostSkip {
        game_code: code.clone(),
        reason: None,
    }))
    .await;
    let reveal = good
        .until(|e| match e {
            ServerEvent::QuestionReveal(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reveal.q_index, 0);
    assert_eq!(reveal.answered_count, 1);
    assert_consecutive(&good.seqs, good_ack.seq + 1, "good player");
}

/// A reconnect whose replay from the room log would fill the bounded send queue at once gets a
/// `reconnect:state` snapshot instead (otherwise it would be closed with 4008 before reading anything,
/// and again on every retry); a small gap is replayed event by event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_too_big_for_the_send_queue_becomes_a_snapshot() {
    replay_too_big(Driver::Fusion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_too_big_for_the_send_queue_becomes_a_snapshot_on_epoll() {
    replay_too_big(Driver::Legacy).await;
}

async fn replay_too_big(driver: Driver) {
    let s = stack_with(Backend::Standalone, false, |cfg| {
        cfg.driver = driver;
        cfg.sendq.max_bytes = 32 * 1024;
        cfg.sendq.max_frames = 64;
    })
    .await;
    let addr = s.edge.local_addr();
    let mut conn = s.conn.clone();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut p = Client::connect(addr, Codec::Msgpack).await;
    let ack = join(&mut p, &code, "tunnel").await;
    let progress = |n: u32| format!(r#"{{"qIndex":0,"answeredCount":{n},"totalCount":1}}"#);
    let first = emit(&mut conn, &code, "game:answer:progress", &progress(0)).await;
    p.read_to_seq(first).await;
    let gone_at = *p.seqs.last().unwrap();
    drop(p);
    let attempt = |last: u64| {
        ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack.player_id.clone(),
            session_token: ack.session_token.clone(),
            last_seq: Some(last),
        })
    };

    // A small gap (3 events): replayed in order, then `ok`.
    let mut last = 0;
    for n in 1..=3 {
        last = emit(&mut conn, &code, "game:answer:progress", &progress(n)).await;
    }
    let mut back = Client::connect(addr, Codec::Msgpack).await;
    match back.request(attempt(gone_at)).await {
        ServerEvent::Ok(_) => {}
        other => panic!("small gap → {other:?}"),
    }
    assert_consecutive(&back.seqs, gone_at + 1, "replay");
    assert_eq!(*back.seqs.last().unwrap(), last);
    let gone_at = last;
    drop(back);

    // A big gap (60 question frames of ~1.4 KB, ~84 KB > half of the 32 KiB queue) but within the
    // room log: a snapshot, and live events after it.
    let show = format!(
        r#"{{"qIndex":0,"totalQuestions":3,"question":"{}","answers":["{o}","{o}","{o}","{o}"],"endsAt":1,"timeLimitMs":60000,"points":1000}}"#,
        "Q".repeat(500),
        o = "o".repeat(200)
    );
    for _ in 0..60 {
        last = emit(&mut conn, &code, "game:question:show", &show).await;
    }
    let mut back = Client::connect(addr, Codec::Msgpack).await;
    match back.request(attempt(gone_at)).await {
        ServerEvent::ReconnectState(st) => assert_eq!(st.seq, last),
        other => panic!("big gap → {other:?}"),
    }
    assert!(back.seqs.is_empty(), "no replayed events: {:?}", back.seqs);
    let live = emit(&mut conn, &code, "game:answer:progress", &progress(9)).await;
    back.read_to_seq(live).await;
    assert_eq!(back.seqs, vec![live]);
    assert_eq!(
        s.edge
            .metrics()
            .slow_consumer_closes_total
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// A `room:join` whose FCALL ran in Redis only after the edge gave up on it (the client got
/// `unavailable`) and that the client then retries on the same socket gets its join's ack, not
/// `name_taken`: the edge reuses the attempt's ids and `room_join` answers a repeat with the same ack.
/// Redis holds the call with `CLIENT PAUSE WRITE` until the edge's response timeout
/// (`ringside_lua::conn::RESPONSE_TIMEOUT`, 10 s) has answered `unavailable`, then lets it run; no step
/// depends on how long something took (the only sleep polls for the held call to have run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_retried_after_unavailable_gets_its_ack_not_name_taken() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    // A connection of its own: the stack's is shared with the timer driver, whose writes pause too.
    let client = redis::Client::open(s._redis.urls()[0].as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let players_key = format!("{}:players", ringside_protocol::keys::room(&code));
    let players = |mut c: redis::aio::MultiplexedConnection, key: String| async move {
        redis::cmd("HLEN")
            .arg(key)
            .query_async::<usize>(&mut c)
            .await
            .unwrap()
    };

    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "60000", "WRITE"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut p = Client::connect(addr, Codec::Msgpack).await;
    let attempt = ClientEvent::RoomJoin(RoomJoin {
        game_code: code.clone(),
        player_name: "Blaze99".into(),
        avatar_id: 3,
    });
    match p.request(attempt.clone()).await {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}"),
        other => panic!("a join Redis holds → {other:?}"),
    }
    assert_eq!(players(admin.clone(), players_key.clone()).await, 0);
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut admin)
        .await
        .unwrap();
    // The held call now runs: the player is in the room although the client got `unavailable`.
    let mut polls = 0;
    while players(admin.clone(), players_key.clone()).await == 0 {
        polls += 1;
        assert!(polls < 1000, "the held join never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let ack = match p.request(attempt).await {
        ServerEvent::RoomJoinAck(a) => a,
        other => panic!("the retried join → {other:?}"),
    };
    assert_eq!(ack.total_count, 1);
    assert_eq!(players(admin.clone(), players_key.clone()).await, 1);
    let in_room: Option<String> = redis::cmd("HGET")
        .arg(&players_key)
        .arg(&ack.player_id)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        in_room.as_deref(),
        Some("3:Blaze99"),
        "the held join's player"
    );
    // announced once
    let log: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(ringside_protocol::keys::room_log(&code))
        .arg("-")
        .arg("+")
        .query_async(&mut admin)
        .await
        .unwrap();
    let joined: u32 = log
        .into_iter()
        .filter_map(|(_, f)| {
            let mut b = f[1].clone().into_bytes();
            match Envelope::<ServerEvent>::decode(Codec::Json, &mut b)
                .unwrap()
                .event
            {
                ServerEvent::PlayerJoined(j) => Some(j.joined_count),
                _ => None,
            }
        })
        .sum();
    assert_eq!(joined, 1);
    // The session works: a player action is accepted (not `unauthorized`).
    match p
        .request(ClientEvent::RoomLeave(GameRef {
            game_code: code.clone(),
        }))
        .await
    {
        ServerEvent::Ok(_) => {}
        other => panic!("room:leave → {other:?}"),
    }
}

/// DESIGN.md "Failure": an edge process dies and its players reconnect to another one, losing nothing.
/// The real binary with `--processes 2`: players spread over both processes (SO_REUSEPORT); in the middle
/// of a question the process holding the most sockets is SIGKILLed. Every client whose socket died
/// reconnects on the shared port with its last `seq` (landing on the survivor or on the process the
/// launcher restarted) and gets the missed events; then the game is played to the end. Every player,
/// and the host, must have seen every room event exactly once, in order, across the two sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_of_a_killed_edge_process_reconnect_and_miss_nothing() {
    let redis = TestRedis::start(Backend::Standalone).expect("redis starts");
    let urls = redis.urls();
    let mut conn = Redis::connect(&urls, false).await.unwrap();
    ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    let game = Game::new(conn.clone());
    game.store_quiz(&Quiz::from_json(QUIZ).unwrap())
        .await
        .unwrap();
    let engine = start_engine(urls.clone(), false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mport = common::free_port_pair(port);
    let mut edge = common::EdgeProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringside-edge"))
            .args(["--processes", "2", "--threads", "1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
            .args(["--redis", &urls[0]])
            .arg("--web-root")
            .arg(common::web_root())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ringside-edge binary starts"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for i in 0..2 {
        common::wait_healthz(&mut edge, common::metrics_addr(mport, i), deadline).await;
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // A host and 16 players (both codecs): with two processes, all 17 on one is a 1 in 65,536 chance,
    // and the process with the most sockets is the one killed anyway.
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut players = Vec::new();
    for i in 0..16 {
        let codec = if i % 2 == 0 {
            Codec::Json
        } else {
            Codec::Msgpack
        };
        let mut c = Client::connect(addr, codec).await;
        let ack = join(&mut c, &code, &format!("p{i}")).await;
        players.push((c, ack));
    }
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    for c in std::iter::once(&mut host).chain(players.iter_mut().map(|(c, _)| c)) {
        c.until(|e| matches!(e, ServerEvent::QuestionShow(q) if q.q_index == 0).then_some(()))
            .await;
    }

    // Kill the process with the most open sockets.
    let open = |m: &str, i: u16| {
        common::sample(
            m,
            &format!("ringside_edge_connections_open{{process=\"{i}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let counts = [
        open(
            &common::http_get(common::metrics_addr(mport, 0), "/metrics").await,
            0,
        ),
        open(
            &common::http_get(common::metrics_addr(mport, 1), "/metrics").await,
            1,
        ),
    ];
    let victim_index = if counts[0] >= counts[1] { 0 } else { 1 };
    let victim = common::children_of(edge.0.id())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|kv| kv == format!("RINGSIDE_EDGE_CHILD_INDEX={victim_index}").as_bytes())
            })
        })
        .expect("the child with that index");
    ringside_edge::sys::kill(victim, libc::SIGKILL).unwrap();

    // Every client asks for a pong: a live socket answers, a dead one ends.
    let mut dead = Vec::new();
    let mut everyone: Vec<(&mut Client, String, String)> =
        vec![(&mut host, "host".into(), String::new())];
    for (c, ack) in players.iter_mut() {
        everyone.push((c, ack.player_id.clone(), ack.session_token.clone()));
    }
    for (k, (c, _, _)) in everyone.iter_mut().enumerate() {
        let rid = c.send(ClientEvent::Ping(Ping { t: 0.0 })).await;
        loop {
            match c.recv_or_closed().await {
                Some(e) if e.rid == Some(rid) => break,
                Some(e) => c.backlog.push_back(e),
                None => {
                    dead.push(k);
                    break;
                }
            }
        }
    }
    assert!(
        !dead.is_empty(),
        "sockets per process {counts:?}: nobody was on the killed process"
    );
    assert!(
        dead.len() < everyone.len(),
        "sockets per process {counts:?}: everybody was"
    );
    eprintln!(
        "killed edge process {victim_index} (sockets per process {counts:?}): {} of {} clients lost their socket",
        dead.len(),
        everyone.len()
    );
    // (the ping replies of live sockets were read; room events that came first wait in their backlog)
    for c in everyone.iter_mut().map(|(c, _, _)| &mut **c) {
        let kept: Vec<_> = c.backlog.drain(..).filter(|e| e.seq.is_some()).collect();
        c.backlog.extend(kept);
    }

    // The dead ones reconnect on the shared port with their last seq.
    let host_token = hget_host_token(&mut conn, &code).await;
    for &k in &dead {
        let (old, id, token) = &mut everyone[k];
        let token = if id == "host" {
            host_token.clone()
        } else {
            token.clone()
        };
        let last = *old.seqs.last().expect("saw the question");
        let mut back = Client::connect(addr, old.codec).await;
        let rid = back
            .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
                game_code: code.clone(),
                player_id: id.clone(),
                session_token: token,
                last_seq: Some(last),
            }))
            .await;
        let reply = back.reply(rid).await;
        assert!(matches!(reply.event, ServerEvent::Ok(_)), "{id}: {reply:?}");
        // One history per client: the old socket's seqs, then the new one's.
        back.seqs.splice(0..0, old.seqs.iter().copied());
        **old = back;
    }

    // Play on: the host skips the three questions (waiting for each next one); everyone reads to game:end.
    for q in 1..=3u32 {
        let r = everyone[0]
            .0
            .request(ClientEvent::HostSkip(HostSkip {
                game_code: code.clone(),
                reason: None,
            }))
            .await;
        assert!(matches!(r, ServerEvent::Ok(_)), "skip {q}: {r:?}");
        if q < 3 {
            everyone[0]
                .0
                .until(|e| {
                    matches!(e, ServerEvent::QuestionShow(s) if s.q_index == q).then_some(())
                })
                .await;
        }
    }
    let mut last_seq = None;
    for (c, id, _) in everyone.iter_mut() {
        c.until(|e| matches!(e, ServerEvent::GameEnd(_)).then_some(()))
            .await;
        let first = c.seqs[0];
        assert_consecutive(&c.seqs, first, id);
        let end = *c.seqs.last().unwrap();
        assert_eq!(
            *last_seq.get_or_insert(end),
            end,
            "{id} ends at the same seq as the others"
        );
    }
    drop(everyone);
    drop(players);
    engine.shutdown().await;
}

/// The room's host token, read from the room hash (a reconnecting host presents it).
async fn hget_host_token(conn: &mut Redis, code: &str) -> String {
    redis::cmd("HGET")
        .arg(ringside_protocol::keys::room(code))
        .arg("host")
        .query_async(conn)
        .await
        .expect("HGET host")
}
