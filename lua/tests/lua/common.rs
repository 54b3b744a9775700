//! Shared harness of the library's integration tests: a real Redis of either backend (a standalone server
//! of the test's own, or the binary's shared 3-primary cluster), the library loaded through the same
//! loader the services use, and helpers that read the room log and drive the timer stream like a
//! minimal engine would.
#![allow(dead_code)]

use ringside_lua::{
    ensure_loaded, Game, GameError, Quiz, Redis, TimerEntry, TimerKind, TimerOutcome,
};
use ringside_protocol::events::{
    AnswerResult, RoomCreated, RoomJoinAck, RoomSettings, ServerEvent,
};
use ringside_protocol::{keys, Codec, Envelope, ErrorCode};
use ringside_testkit::{shared_cluster, Backend, TestRedis};
use std::collections::HashMap;
use std::time::Duration;

pub struct Env {
    pub backend: Backend,
    pub game: Game,
    pub conn: Redis,
    pub urls: Vec<String>,
    _own: Option<TestRedis>,
}

/// Runs one test body on a backend: a fresh standalone server, or the shared cluster.
pub async fn env(backend: Backend) -> Env {
    let (urls, own) = match backend {
        Backend::Standalone => {
            let r = TestRedis::start(backend).expect("start redis-server");
            (r.urls(), Some(r))
        }
        Backend::Cluster => (
            shared_cluster().expect("start the shared cluster").urls(),
            None,
        ),
    };
    let mut conn = Redis::connect(&urls, backend == Backend::Cluster)
        .await
        .expect("connect");
    ensure_loaded(&mut conn).await.expect("load the library");
    Env {
        backend,
        game: Game::new(conn.clone()),
        conn,
        urls,
        _own: own,
    }
}

/// Declares `standalone` and `cluster` tests running the async fn `$body(Backend)` (in scope in the
/// families through `#[macro_use] mod common`).
macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                super::$body(ringside_testkit::Backend::Standalone).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::$body(ringside_testkit::Backend::Cluster).await
            }
        }
    )*};
}

/// A unique suffix for quiz ids and names, so tests sharing the cluster never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ringside_lua::game::random_hex(4))
}

/// The marker put in every explanation: it must never appear before the question's reveal.
pub fn secret_explanation(q: usize) -> String {
    format!("EXPLAIN-SECRET-{q}")
}

/// A quiz of `n` questions with 4 options; question i's correct option is `correct(i)` with the text
/// `CORRECT-ZEBRA-i`, its explanation `EXPLAIN-SECRET-i`.
pub fn quiz(id: &str, n: usize, time_ms: u32) -> Quiz {
    let questions = (0..n)
        .map(|i| {
            let c = correct(i);
            let options = (0..4)
                .map(|k| {
                    if k == c {
                        format!("CORRECT-ZEBRA-{i}")
                    } else {
                        format!("option-{i}-{k}")
                    }
                })
                .collect();
            ringside_lua::Question {
                text: format!("Question {i}?"),
                options,
                correct: c as u32,
                explanation: Some(secret_explanation(i)),
                time_limit_ms: time_ms,
                points: 1000,
                image_url: None,
            }
        })
        .collect();
    Quiz {
        id: id.to_string(),
        title: format!("Quiz {id}"),
        questions,
    }
}

/// The correct option of question i in [`quiz`].
pub fn correct(i: usize) -> usize {
    [2, 0, 3, 1][i % 4]
}

pub fn wrong(i: usize) -> usize {
    (correct(i) + 1) % 4
}

pub fn settings() -> RoomSettings {
    RoomSettings {
        countdown_ms: Some(0),
        reveal_pause_ms: Some(0),
        ..Default::default()
    }
}

/// Stores `quiz` and creates a room from it.
pub async fn room(env: &Env, quiz: &Quiz, settings: &RoomSettings) -> RoomCreated {
    env.game.store_quiz(quiz).await.expect("store quiz");
    env.game
        .create_room(&quiz.id, Some("Host"), settings, "https://ringside.test")
        .await
        .expect("create room")
}

pub async fn join_n(env: &Env, code: &str, n: usize) -> Vec<RoomJoinAck> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(
            env.game
                .join(code, &format!("player-{i:03}"), (i % 12) as u16, None)
                .await
                .expect("join"),
        );
    }
    out
}

/// [`join_n`]'s player ids.
pub async fn join_ids(env: &Env, code: &str, n: usize) -> Vec<String> {
    let acks = join_n(env, code, n).await;
    acks.into_iter().map(|p| p.player_id).collect()
}

/// Every room event in the log, decoded with the protocol crate: (seq, raw JSON, event).
pub async fn log(env: &Env, code: &str) -> Vec<(u64, String, ServerEvent)> {
    let mut conn = env.conn.clone();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(keys::room_log(code))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE log");
    entries
        .into_iter()
        .map(|(id, fields)| {
            assert_eq!(fields[0], "e");
            let raw = fields[1].clone();
            let mut bytes = raw.clone().into_bytes();
            let env = Envelope::<ServerEvent>::decode(Codec::Json, &mut bytes)
                .unwrap_or_else(|e| panic!("log entry {id} does not decode: {e}: {raw}"));
            let seq = env.seq.expect("room events carry seq");
            assert_eq!(id, format!("{seq}-0"), "log entry id = seq");
            (seq, raw, env.event)
        })
        .collect()
}

/// The last logged event for which `pick` returns Some.
pub async fn last<T>(env: &Env, code: &str, pick: impl Fn(&ServerEvent) -> Option<T>) -> T {
    log(env, code)
        .await
        .iter()
        .rev()
        .find_map(|(_, _, e)| pick(e))
        .expect("no such event in the log")
}

/// The timer entries written for this room, oldest first.
pub async fn timers(env: &Env, code: &str) -> Vec<TimerEntry> {
    let mut conn = env.conn.clone();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(keys::room_timers(code))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE timers");
    entries
        .into_iter()
        .map(|(_, f)| TimerEntry::from_flat(&f).expect("timer entry parses"))
        .filter(|t| t.room == code)
        .collect()
}

/// The latest timer entry of `kind` for this room.
pub async fn latest_timer(env: &Env, code: &str, kind: TimerKind) -> TimerEntry {
    timers(env, code)
        .await
        .into_iter()
        .rev()
        .find(|t| t.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} timer"))
}

/// Fires an entry like the engine: again after `retryInMs` while it is early.
pub async fn fire(env: &Env, entry: &TimerEntry) -> TimerOutcome {
    loop {
        let out = env.game.fire(entry).await.expect("timer_fire");
        match out.retry_after() {
            Some(d) => tokio::time::sleep(d + Duration::from_millis(5)).await,
            None => return out,
        }
    }
}

/// Fires the latest entry of `kind` for the room (waiting for its due time by the Redis clock). A
/// `next_question` entry is written once the question is scored, so the scoring an early reveal left to
/// `score` fires runs first ([`score_pending`]).
pub async fn fire_latest(env: &Env, code: &str, kind: TimerKind) -> TimerOutcome {
    if kind == TimerKind::NextQuestion {
        score_pending(env, code).await;
    }
    let entry = latest_timer(env, code, kind).await;
    fire(env, &entry).await
}

/// What the engine does after a reveal that left its scoring to `score` fires (the early reveal, when
/// everyone answered): fires the room's latest `score` entry until the question is scored (the room's
/// `sq` is cleared). Nothing when no scoring is pending.
pub async fn score_pending(env: &Env, code: &str) {
    for _ in 0..1000 {
        if hget(env, code, "", "sq").await.is_none() {
            return;
        }
        let out = fire(env, &latest_timer(env, code, TimerKind::Score).await).await;
        assert!(out.fired || out.why.as_deref() == Some("more"), "{out:?}");
    }
    panic!("room {code}: scoring did not finish in 1000 score fires");
}

/// The Redis server clock, epoch ms.
pub async fn server_ms(env: &Env) -> u64 {
    let mut conn = env.conn.clone();
    let (s, us): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("TIME");
    s * 1000 + us / 1000
}

/// Sleeps until the Redis clock passes `ms`.
pub async fn wait_until_server_ms(env: &Env, ms: u64) {
    loop {
        let now = server_ms(env).await;
        if now > ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis((ms - now).clamp(5, 500))).await;
    }
}

/// HGET on a room key (suffix "" is the room hash).
pub async fn hget(env: &Env, code: &str, suffix: &str, field: &str) -> Option<String> {
    let mut conn = env.conn.clone();
    redis::cmd("HGET")
        .arg(format!("{}{suffix}", keys::room(code)))
        .arg(field)
        .query_async(&mut conn)
        .await
        .expect("HGET")
}

/// The server time (ms) at which the player's answer to question q was stored.
pub async fn answered_at(env: &Env, code: &str, q: u32, player_id: &str) -> u64 {
    let v = hget(env, code, &format!(":q:{q}"), &format!("a:{player_id}"))
        .await
        .expect("stored answer");
    v.split(':').nth(1).unwrap().parse().unwrap()
}

pub fn code_of(e: &ringside_lua::GameError) -> ringside_protocol::ErrorCode {
    e.code()
}

// Helpers of the game families.

pub fn refusal<T: std::fmt::Debug>(r: Result<T, GameError>) -> ErrorCode {
    match r {
        Err(e @ GameError::Refused { .. }) => e.code(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub async fn open_first_question(env: &Env, code: &str, host: &str) {
    env.game.start(code, host).await.expect("start");
    let out = fire_latest(env, code, TimerKind::CountdownEnd).await;
    assert!(out.fired, "{out:?}");
}

pub async fn results_by_id(
    env: &Env,
    code: &str,
    q: u32,
    ids: &[String],
) -> HashMap<String, AnswerResult> {
    score_pending(env, code).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let res = env.game.results(code, q, &refs).await.expect("results");
    ids.iter()
        .cloned()
        .zip(res.into_iter().map(|r| r.expect("a player of the room")))
        .collect()
}

/// The URL of the cluster node serving `key`'s slot.
pub fn node_of(env: &Env, key: &str) -> String {
    let mut c = redis::Client::open(env.urls[0].as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut c)
        .unwrap();
    let slots: Vec<(u16, u16, Vec<redis::Value>)> = {
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        raw.into_iter()
            .map(|v| {
                let redis::Value::Array(items) = v else {
                    panic!("CLUSTER SLOTS")
                };
                let lo: u16 = redis::from_redis_value(items[0].clone()).unwrap();
                let hi: u16 = redis::from_redis_value(items[1].clone()).unwrap();
                (lo, hi, items[2..].to_vec())
            })
            .collect()
    };
    let (_, _, nodes) = slots
        .into_iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .unwrap();
    let redis::Value::Array(primary) = &nodes[0] else {
        panic!("node")
    };
    let host: String = redis::from_redis_value(primary[0].clone()).unwrap();
    let port: u16 = redis::from_redis_value(primary[1].clone()).unwrap();
    format!("redis://{host}:{port}/")
}

/// Reads the room's sharded channel on the node that owns its slot, through a plain connection.
pub fn subscribe(env: &Env, code: &str) -> redis::Connection {
    let channel = keys::room_channel(code);
    let url = match env.backend {
        Backend::Standalone => env.urls[0].clone(),
        Backend::Cluster => node_of(env, &channel),
    };
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    conn.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(&channel).get_packed_command())
        .unwrap();
    let _confirm = conn.recv_response().unwrap();
    conn
}

/// The payloads the channel carried until it was quiet for 1.5 s.
pub fn drain(conn: &mut redis::Connection) -> Vec<String> {
    conn.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut out = Vec::new();
    while let Ok(v) = conn.recv_response() {
        let items: Vec<redis::Value> = match v {
            redis::Value::Array(items) => items,
            redis::Value::Push { data, .. } => data,
            _ => continue,
        };
        let payload: String = redis::from_redis_value(items.last().unwrap().clone()).unwrap();
        out.push(payload);
    }
    out
}
