//! The game through the edge: real redis-server (standalone and the 3-primary cluster, via testkit), the
//! real Functions library, the edge in-process with its game layer, and tokio-tungstenite clients speaking
//! both subprotocols. Timers are fired by the real engine (`ringside_engine::Engine`, in-process).
//!
//! The edge runs its default driver (io_uring where the kernel allows it), or the one named by
//! `RINGSIDE_EDGE_DRIVER` (as for the binary: `legacy` is the epoll fallback): scripts/test.sh runs this
//! suite a second time with `RINGSIDE_EDGE_DRIVER=legacy cargo test --workspace --test edge game::`.
//! The tests of delivery, send queues and reconnects also have `…_on_epoll` twins (`Driver::Legacy`),
//! so a plain `cargo test` covers both drivers there.

use crate::common;

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

// The tests, by family; this file keeps the shared helpers (client, stack, engine, room helpers).
mod address_limits;
mod admission;
mod bad_input;
mod delivery;
mod errors;
mod failover;
mod full_game;
mod host_lobby;
mod keepalive;
mod ownership;
mod presence;
mod reconnect;
mod results;
mod seal;

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
    stack_game(
        backend,
        tls,
        address_limits,
        ringside_edge::game::DEFAULT_LEADERBOARD_HOLD,
        ringside_edge::game::DEFAULT_REVEAL_HOLD,
        tweak,
    )
    .await
}

/// [`stack_full`] with the given `--leaderboard-hold-ms` and `--reveal-hold-ms`.
async fn stack_game(
    backend: Backend,
    tls: bool,
    address_limits: AddressLimits,
    leaderboard_hold: Duration,
    reveal_hold: Duration,
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
    cfg.driver = suite_driver();
    tweak(&mut cfg);
    let factory = GameFactory::start(
        GameConfig {
            redis: RedisConfig {
                urls,
                cluster: redis.is_cluster(),
                durability: Default::default(),
                answer_calls_in_flight: 1,
                answer_call_gap: std::time::Duration::from_millis(1),
            },
            share_base: "http://test".into(),
            address_limits,
            leaderboard_hold,
            reveal_hold,
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

/// The edges' driver in this run: `RINGSIDE_EDGE_DRIVER` if set (the edge processes that some tests
/// start read it too), else the edge's default.
fn suite_driver() -> Driver {
    match std::env::var("RINGSIDE_EDGE_DRIVER") {
        Ok(v) => <Driver as clap::ValueEnum>::from_str(&v, true)
            .unwrap_or_else(|e| panic!("RINGSIDE_EDGE_DRIVER={v}: {e}")),
        Err(_) => Config::default().driver,
    }
}

fn settings() -> RoomSettings {
    RoomSettings {
        countdown_ms: Some(200),
        reveal_pause_ms: Some(200),
        ..Default::default()
    }
}

async fn create_room(host: &mut Client) -> String {
    create_room_with(host, settings()).await
}

/// A room of the test quiz with these settings; its code.
async fn create_room_with(host: &mut Client, settings: RoomSettings) -> String {
    match host
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "edge-test".into(),
            host_name: None,
            settings,
        }))
        .await
    {
        ServerEvent::RoomCreated(c) => c.game_code,
        other => panic!("room:create → {other:?}"),
    }
}

/// Player `i` (`p{i}`) joined to room `code` over a new socket: JSON for even `i`, MessagePack for odd.
async fn seat(addr: std::net::SocketAddr, code: &str, i: usize) -> (Client, RoomJoinAck) {
    let codec = if i.is_multiple_of(2) {
        Codec::Json
    } else {
        Codec::Msgpack
    };
    let mut c = Client::connect(addr, codec).await;
    let ack = join(&mut c, code, &format!("p{i}")).await;
    (c, ack)
}

/// The host's `game:start` of room `code`, acknowledged.
async fn start_game(host: &mut Client, code: &str) {
    match host
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.to_string(),
        }))
        .await
    {
        ServerEvent::Ok(_) => {}
        other => panic!("game:start → {other:?}"),
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

/// Player `ack`'s `game:answer:submit` of option `answer` to question `q` of room `code`, with its
/// answer hash.
fn answer_submit(code: &str, ack: &RoomJoinAck, q: u32, answer: u32) -> ClientEvent {
    ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.to_string(),
        q_index: q,
        answer_idx: answer,
        client_time: 0.0,
        answer_hash: answer_hash(&ack.answer_secret, code, &ack.player_id, q, answer),
    })
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
