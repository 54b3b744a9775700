//! The game through the edge: real redis-server (standalone and the 3-primary cluster, via testkit), the
//! real Functions library, the edge in-process with its game layer, and tokio-tungstenite clients speaking
//! both subprotocols. Timers are fired by a small driver in the test that reads the timer streams and
//! calls the real `timer_fire` function — the same calls the engine makes.

mod common;

use futures_util::{SinkExt, StreamExt};
use ringside_edge::config::Config;
use ringside_edge::game::hub::{RedisConfig, StreamEntries};
use ringside_edge::game::{GameConfig, GameFactory};
use ringside_lua::{Game, Quiz, Redis, TimerEntry};
use ringside_protocol::auth::answer_hash;
use ringside_protocol::events::*;
use ringside_protocol::{ClientEvent, Codec, Envelope, ErrorCode, ServerEvent};
use ringside_testkit::{Backend, TestRedis};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const QUIZ: &str = r#"{"id":"edge-test","title":"Edge test","questions":[
 {"text":"One?","options":["a","b","c","d"],"correct":1,"timeLimitMs":60000},
 {"text":"Two?","options":["a","b"],"correct":0,"timeLimitMs":60000},
 {"text":"Three?","options":["a","b","c"],"correct":2,"timeLimitMs":60000}]}"#;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", codec.protocol().parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req)
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

/// Fires due timers: reads every partition's timer stream and calls `timer_fire` at the due time.
fn spawn_timer_driver(game: Game, mut redis: Redis) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Vec<String> =
            vec!["0-0".to_string(); ringside_protocol::keys::PARTITIONS as usize];
        let mut due: BinaryHeap<std::cmp::Reverse<(u64, u64, usize)>> = BinaryHeap::new();
        let mut entries: Vec<TimerEntry> = Vec::new();
        loop {
            for p in 0..ringside_protocol::keys::PARTITIONS {
                let key = ringside_protocol::keys::timers(p);
                let r: redis::RedisResult<StreamEntries> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(format!("({}", last[p as usize]))
                    .arg("+")
                    .query_async(&mut redis)
                    .await;
                for (id, fields) in r.unwrap_or_default() {
                    last[p as usize] = id;
                    if let Ok(e) = TimerEntry::from_fields(
                        fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    ) {
                        due.push(std::cmp::Reverse((
                            e.due,
                            entries.len() as u64,
                            entries.len(),
                        )));
                        entries.push(e);
                    }
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            while let Some(std::cmp::Reverse((at, _, i))) = due.peek().copied() {
                if at > now {
                    break;
                }
                due.pop();
                let e = entries[i].clone();
                match game.fire(&e).await {
                    Ok(o) if o.should_continue() => {
                        let next = now + e.every.unwrap_or(1000);
                        due.push(std::cmp::Reverse((next, entries.len() as u64, i)));
                    }
                    Ok(o) => {
                        if let Some(d) = o.retry_after() {
                            due.push(std::cmp::Reverse((
                                now + d.as_millis() as u64,
                                entries.len() as u64,
                                i,
                            )));
                        }
                    }
                    Err(err) => panic!("timer_fire failed: {err}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

struct Stack {
    _redis: TestRedis,
    edge: ringside_edge::ServerHandle,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn stack(backend: Backend) -> Stack {
    let redis = TestRedis::start(backend).expect("redis starts");
    let urls = redis.urls();
    let mut conn = Redis::connect(&urls, redis.is_cluster()).await.unwrap();
    ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    let game = Game::new(conn.clone());
    game.store_quiz(&Quiz::from_json(QUIZ).unwrap())
        .await
        .unwrap();
    let driver = spawn_timer_driver(game, conn);
    let mut cfg = Config::echo("127.0.0.1:0".parse().unwrap());
    cfg.echo = false;
    cfg.threads = 2;
    cfg.limits = Config::default().limits;
    let factory = GameFactory::start(
        GameConfig {
            redis: RedisConfig {
                urls,
                cluster: redis.is_cluster(),
            },
            share_base: "http://test".into(),
        },
        cfg.threads,
    )
    .expect("game layer connects");
    let edge = common::start_with(cfg, Arc::new(factory));
    Stack {
        _redis: redis,
        edge,
        driver,
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
    let s = stack(backend).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let created = match host
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "edge-test".into(),
            host_name: None,
            settings: settings(),
        }))
        .await
    {
        ServerEvent::RoomCreated(c) => c,
        other => panic!("room:create → {other:?}"),
    };
    let code = created.game_code.clone();

    let mut players = Vec::new();
    for (i, codec) in [Codec::Json, Codec::Msgpack, Codec::Json, Codec::Msgpack]
        .into_iter()
        .enumerate()
    {
        let mut c = Client::connect(addr, codec).await;
        let ack = match c
            .request(ClientEvent::RoomJoin(RoomJoin {
                game_code: code.clone(),
                player_name: format!("p{i}"),
                avatar_id: 0,
            }))
            .await
        {
            ServerEvent::RoomJoinAck(a) => a,
            other => panic!("room:join → {other:?}"),
        };
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

/// Bad input gets a precise error for that socket only; the other player in the room is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_code_and_others_are_unaffected() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let ServerEvent::RoomCreated(created) = host
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "edge-test".into(),
            host_name: None,
            settings: settings(),
        }))
        .await
    else {
        panic!("create")
    };
    let code = created.game_code;
    let mut good = Client::connect(addr, Codec::Msgpack).await;
    let ServerEvent::RoomJoinAck(good_ack) = good
        .request(ClientEvent::RoomJoin(RoomJoin {
            game_code: code.clone(),
            player_name: "good".into(),
            avatar_id: 1,
        }))
        .await
    else {
        panic!("join")
    };
    let mut bad = Client::connect(addr, Codec::Json).await;
    let ServerEvent::RoomJoinAck(bad_ack) = bad
        .request(ClientEvent::RoomJoin(RoomJoin {
            game_code: code.clone(),
            player_name: "bad".into(),
            avatar_id: 2,
        }))
        .await
    else {
        panic!("join")
    };

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
    // question is still open).
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
    expect_error(bad.reply(r).await, ErrorCode::AlreadyAnswered);
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
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let ServerEvent::RoomCreated(created) = host
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "edge-test".into(),
            host_name: None,
            settings: settings(),
        }))
        .await
    else {
        panic!("create")
    };
    let code = created.game_code;
    let mut p = Client::connect(addr, Codec::Msgpack).await;
    let ServerEvent::RoomJoinAck(ack) = p
        .request(ClientEvent::RoomJoin(RoomJoin {
            game_code: code.clone(),
            player_name: "tunnel".into(),
            avatar_id: 0,
        }))
        .await
    else {
        panic!("join")
    };
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
