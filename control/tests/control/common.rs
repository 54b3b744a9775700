//! The control plane's test stack: a real PostgreSQL (testkit: initdb + postgres on a free port), a real
//! redis-server with the Functions library loaded, and the API served in-process on a free port (or the
//! `ringside-control` binary as a child process, for crash tests). Requests go over real HTTP.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringside_control::auth::FailureLimiter;
use ringside_control::{api, db, store, writer};
use ringside_lua::{ensure_loaded, Game, Question, Quiz, Redis};
use ringside_testkit::{RedisServer, TestPostgres};
use serde_json::{json, Value};

pub struct Stack {
    pub pg: TestPostgres,
    pub redis: RedisServer,
    pub db_url: String,
    pub game: Game,
    pub conn: Redis,
    pub pool: deadpool_postgres::Pool,
    pub base: String,
    pub http: reqwest::Client,
    stop: tokio::sync::watch::Sender<bool>,
}

pub struct Options {
    /// Run the results writer in-process.
    pub writer: bool,
    pub max_body: usize,
    pub auth_failures_burst: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            writer: true,
            max_body: 1 << 20,
            auth_failures_burst: 20,
        }
    }
}

pub async fn stack(opts: Options) -> Stack {
    let pg = TestPostgres::start().expect("start postgres");
    let redis = RedisServer::start().expect("start redis");
    let mut conn = Redis::connect(&[redis.url()], false).await.expect("redis");
    ensure_loaded(&mut conn).await.expect("load the library");
    let game = Game::new(conn.clone());
    let db_url = pg.url("postgres");
    let pool = db::pool(&db_url, 8).expect("pool");
    db::migrate(&pool).await.expect("migrate");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    if opts.writer {
        tokio::spawn(writer::run(
            pool.clone(),
            game.clone(),
            writer::WriterConfig {
                name: "test".into(),
                poll: Duration::from_millis(50),
                page: ringside_control::writer::DEFAULT_PAGE,
                page_pause: Duration::ZERO,
                crash_after_pages: None,
            },
            stop_rx.clone(),
        ));
    }
    let state = Arc::new(api::AppState {
        pool: pool.clone(),
        game: game.clone(),
        limiter: Arc::new(FailureLimiter::new(opts.auth_failures_burst, 30)),
        public_url: None,
        max_body: opts.max_body,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut stop_srv = stop_rx.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_srv.changed().await;
        })
        .await
        .unwrap();
    });
    Stack {
        pg,
        redis,
        db_url,
        game,
        conn,
        pool,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        stop,
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Stack {
    /// A new host and its key.
    pub async fn host(&self, name: &str) -> (i64, String) {
        let (h, key) = store::create_host(&self.pool, name).await.expect("host");
        (h.host_id, key)
    }

    /// A request with the key; returns (status, JSON body or `null`).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Imports a private quiz of `n` questions for `key`'s host (201 expected).
    pub async fn quiz(&self, key: &str, id: &str, n: usize) {
        let (st, v) = self
            .call(
                "POST",
                "/api/quizzes",
                Some(key),
                Some(json!({"quiz": quiz_json(id, n)})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }

    /// Creates a room of `quiz` with fast settings (no countdown, reveal pause or time bonus);
    /// returns (status, body).
    pub async fn room(&self, key: &str, quiz: &str) -> (u16, Value) {
        let settings = json!({"countdownMs":0,"revealPauseMs":0,"maxTimeBonus":0});
        self.call(
            "POST",
            "/api/rooms",
            Some(key),
            Some(json!({"quizId": quiz, "settings": settings})),
        )
        .await
    }

    /// Polls `GET /api/games/{roomId}` until its results are stored.
    pub async fn wait_stored(&self, key: &str, room_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (s, v) = self
                .call(
                    "GET",
                    &format!("/api/games/{room_id}?limit=1000"),
                    Some(key),
                    None,
                )
                .await;
            if s == 200 && v["game"]["resultsStored"] == json!(true) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "results of {room_id} not stored: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn sql_count(&self, sql: &str) -> i64 {
        let c = self.pool.get().await.unwrap();
        c.query_one(sql, &[]).await.unwrap().get(0)
    }
}

/// A quiz of `n` questions; question i's correct option is i % 3.
pub fn quiz(id: &str, n: usize) -> Quiz {
    Quiz {
        id: id.into(),
        title: format!("Quiz {id}"),
        questions: (0..n)
            .map(|i| Question {
                text: format!("Question {i}?"),
                options: vec!["A".into(), "B".into(), "C".into()],
                correct: (i % 3) as u32,
                explanation: None,
                time_limit_ms: 60_000,
                points: 1000,
                image_url: None,
            })
            .collect(),
    }
}

pub fn quiz_json(id: &str, n: usize) -> Value {
    serde_json::to_value(quiz(id, n)).unwrap()
}

/// Plays a created room to its end: `names` join, the host starts, for each question the players
/// answer (player k correctly when k is even), the host closes it, the next is opened.
pub async fn play(
    game: &Game,
    code: &str,
    host_token: &str,
    names: &[&str],
    questions: u32,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in names {
        ids.push(game.join(code, n, 0, None).await.expect("join").player_id);
    }
    play_joined(game, code, host_token, &ids, questions).await;
    ids
}

pub async fn play_joined(
    game: &Game,
    code: &str,
    host_token: &str,
    ids: &[String],
    questions: u32,
) {
    game.start(code, host_token).await.expect("start");
    fire_latest(game, code, "countdown_end").await;
    for q in 0..questions {
        for (k, id) in ids.iter().enumerate() {
            let idx = if k % 2 == 0 { q % 3 } else { (q + 1) % 3 };
            let _ = game.answer_submit(code, id, q, idx).await;
        }
        // every player answered: revealed early; otherwise the host closes the question
        let _ = game.skip(code, host_token, None).await;
        // an early reveal, and a room over one scoring step (500 players), are scored by `score`
        // fires (fire_latest runs them) before the next question is scheduled
        fire_latest(game, code, "next_question").await;
    }
}

/// Fires the latest timer entry of `kind` for the room, waiting while it is early. A `next_question`
/// entry is written once the question is scored: pending `score` fires run first, as the engine would
/// run them (an early reveal leaves all of its scoring to them).
pub async fn fire_latest(game: &Game, code: &str, kind: &str) {
    if kind == "next_question" {
        score_pending(game, code).await;
    }
    fire_entry(game, code, kind).await;
}

/// Fires the room's latest `score` entry until the question is scored (the room's `sq` is cleared),
/// as the engine would; nothing when no scoring is pending.
async fn score_pending(game: &Game, code: &str) {
    for _ in 0..1000 {
        let scoring: bool = redis::cmd("HEXISTS")
            .arg(ringside_protocol::keys::room(code))
            .arg("sq")
            .query_async(&mut game.conn())
            .await
            .unwrap();
        if !scoring {
            return;
        }
        fire_entry(game, code, "score").await;
    }
    panic!("room {code}: scoring did not finish in 1000 score fires");
}

async fn fire_entry(game: &Game, code: &str, kind: &str) {
    let mut conn = game.conn();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(ringside_protocol::keys::room_timers(code))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let entry = entries
        .into_iter()
        .map(|(_, f)| ringside_lua::TimerEntry::from_flat(&f).unwrap())
        .rfind(|t| t.room == code && t.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("no {kind} timer"));
    loop {
        let out = game.fire(&entry).await.expect("fire");
        match out.retry_after() {
            Some(d) => tokio::time::sleep(d).await,
            None => return,
        }
    }
}
