//! Measures the control plane (perf/api.md), against a running stack (`deploy/local/up.sh`):
//!
//! ```sh
//! # room creations per second through the API (direct, or through the edge's /api/)
//! cargo run --release -p ringside-control --example api_bench -- rooms \
//!     --url http://127.0.0.1:9200 --key "$(cat .run/local/dev-host.key)" --quiz general-knowledge \
//!     --count 3000 --concurrency 16
//! # a 100,000-player game played straight on Redis, then the time from game:end to its results stored
//! cargo run --release -p ringside-control --example api_bench -- results \
//!     --url http://127.0.0.1:9200 --key "$(cat .run/local/dev-host.key)" --redis redis://127.0.0.1:6390/ \
//!     --quiz general-knowledge --players 100000 --questions 3
//! ```
//! Players join and answer through the same Redis Functions the edge calls (no sockets): this measures
//! the control plane and the writer, not the edge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringside_lua::{Game, Redis};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let url = arg("--url", "http://127.0.0.1:9200");
    let key = arg("--key", "");
    let quiz = arg("--quiz", "general-knowledge");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    match args.get(1).map(String::as_str) {
        Some("rooms") => {
            let count: usize = arg("--count", "2000").parse()?;
            let conc: usize = arg("--concurrency", "16").parse()?;
            rooms(http, &url, &key, &quiz, count, conc).await
        }
        Some("results") => {
            let players: usize = arg("--players", "100000").parse()?;
            let questions: u32 = arg("--questions", "3").parse()?;
            let mut conn =
                Redis::connect(&[arg("--redis", "redis://127.0.0.1:6390/")], false).await?;
            let game = Game::new(conn.clone());
            let b = Bench {
                http,
                url,
                key,
                game,
            };
            // --phase prepare: play up to the last reveal and print the room; --phase finish --code C
            // --room-id R: end it now and time its results (so the export can overlap another run)
            match arg("--phase", "all").as_str() {
                "prepare" => {
                    let (code, room_id, token) =
                        b.prepare(&mut conn, &quiz, players, questions).await?;
                    println!("{{\"code\":\"{code}\",\"roomId\":\"{room_id}\",\"hostToken\":\"{token}\"}}");
                    Ok(())
                }
                "finish" => {
                    let (code, room_id, token) = (
                        arg("--code", ""),
                        arg("--room-id", ""),
                        arg("--host-token", ""),
                    );
                    b.finish(&mut conn, &code, &room_id, &token).await
                }
                _ => {
                    let (code, room_id, token) =
                        b.prepare(&mut conn, &quiz, players, questions).await?;
                    b.finish(&mut conn, &code, &room_id, &token).await
                }
            }
        }
        _ => anyhow::bail!("usage: api_bench rooms|results [--url --key --quiz ...]"),
    }
}

async fn rooms(
    http: reqwest::Client,
    url: &str,
    key: &str,
    quiz: &str,
    count: usize,
    conc: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (http, url, key, quiz, next) = (
            http.clone(),
            url.to_string(),
            key.to_string(),
            quiz.to_string(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut failed = 0u64;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/api/rooms"))
                    .bearer_auth(&key)
                    .json(&json!({"quizId": quiz}))
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().as_u16() == 201 => {
                        let _ = resp.bytes().await;
                        h.record(t.elapsed().as_micros() as u64).unwrap();
                    }
                    _ => failed += 1,
                }
            }
            (h, failed)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failed = 0;
    for t in tasks {
        let (h, f) = t.await?;
        all.add(h)?;
        failed += f;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"rooms\":{},\"failed\":{failed},\"seconds\":{secs:.3},\"rooms_per_s\":{:.1},\"latency_ms\":{{\"p50\":{:.2},\"p99\":{:.2},\"max\":{:.2}}},\"concurrency\":{conc}}}",
        all.len(),
        all.len() as f64 / secs,
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        all.max() as f64 / 1000.0
    );
    Ok(())
}

/// The room's hash fields `fields`.
async fn room_fields(
    conn: &mut Redis,
    code: &str,
    fields: &[&str],
) -> anyhow::Result<Vec<Option<String>>> {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(ringside_protocol::keys::room(code));
    for f in fields {
        cmd.arg(*f);
    }
    Ok(cmd.query_async(conn).await?)
}

/// Waits until the room's state is `state` (and, when given, its current question is `q`): the
/// stack's engine fires the timers.
async fn wait_state(
    conn: &mut Redis,
    code: &str,
    state: &str,
    q: Option<u32>,
) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let v = room_fields(conn, code, &["state", "cur"]).await?;
        let cur_ok = q.is_none_or(|q| v[1].as_deref() == Some(q.to_string().as_str()));
        if v[0].as_deref() == Some(state) && cur_ok {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(60) {
            anyhow::bail!(
                "room {code} not {state} (q {q:?}) after 60 s: {v:?}; is the engine running?"
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn now_ms_since(conn: &mut Redis, since: i64) -> anyhow::Result<i64> {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000 - since)
}

struct Bench {
    http: reqwest::Client,
    url: String,
    key: String,
    game: Game,
}

impl Bench {
    /// Creates a room through the API, joins `players` (64 concurrent callers) and plays every
    /// question (90 % answer) up to the last reveal; returns (code, roomId).
    async fn prepare(
        &self,
        conn: &mut Redis,
        quiz: &str,
        players: usize,
        questions: u32,
    ) -> anyhow::Result<(String, String, String)> {
        let room: Value = self
            .http
            .post(format!("{}/api/rooms", self.url))
            .bearer_auth(&self.key)
            .json(&json!({"quizId": quiz, "settings": {"countdownMs": 0, "revealPauseMs": 0, "timePerQMs": 300_000, "maxPlayers": players}}))
            .send()
            .await?
            .json()
            .await?;
        let code = room["gameCode"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("room: {room}"))?
            .to_string();
        let token = room["hostToken"].as_str().unwrap().to_string();
        let room_id = room["roomId"].as_str().unwrap().to_string();
        eprintln!("room {code}: joining {players} players");
        let t = Instant::now();
        let ids = Arc::new((0..players).map(|i| format!("b{i:07}")).collect::<Vec<_>>());
        let conc = 64;
        let mut tasks = Vec::new();
        for w in 0..conc {
            let (g, c, ids) = (self.game.clone(), code.clone(), ids.clone());
            tasks.push(tokio::spawn(async move {
                for i in (w..ids.len()).step_by(conc) {
                    let tok = format!("{:064x}", i + 1);
                    g.room_join(&c, &ids[i], &tok, &tok, &format!("player {i}"), 0, None)
                        .await
                        .expect("join");
                }
            }));
        }
        for t in tasks.drain(..) {
            t.await?;
        }
        eprintln!("joined in {:.1} s", t.elapsed().as_secs_f64());
        self.game.start(&code, &token).await?;
        wait_state(conn, &code, "ACTIVE", Some(0)).await?;
        for q in 0..questions {
            let t = Instant::now();
            for w in 0..conc {
                let (g, c, ids) = (self.game.clone(), code.clone(), ids.clone());
                tasks.push(tokio::spawn(async move {
                    for i in (w..ids.len()).step_by(conc) {
                        if i % 10 != 9 {
                            let idx = ((i + q as usize) % 3) as u32;
                            let _ = g.answer_submit(&c, &ids[i], q, idx).await;
                        }
                    }
                }));
            }
            for t in tasks.drain(..) {
                t.await?;
            }
            // every question but the last is closed here; the last stays open for `finish`
            if q + 1 < questions {
                self.game.skip(&code, &token, None).await?;
                wait_state(conn, &code, "ACTIVE", Some(q + 1)).await?;
            }
            eprintln!(
                "question {q}: answered and revealed in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        Ok((code, room_id, token))
    }

    /// Closes the prepared game's last question (the engine then ends the game) and waits for its
    /// results in PostgreSQL; reports the time from `game:end` (the room's `ended`, Redis clock) to the
    /// moment they are seen stored.
    async fn finish(
        &self,
        conn: &mut Redis,
        code: &str,
        room_id: &str,
        token: &str,
    ) -> anyhow::Result<()> {
        self.game.skip(code, token, None).await?;
        wait_state(conn, code, "ENDED", None).await.map_err(|e| {
            e.context("the game did not end: pass --questions N (the quiz's length)")
        })?;
        let ended: i64 = room_fields(conn, code, &["ended"]).await?[0]
            .as_deref()
            .unwrap_or("0")
            .parse()?;
        loop {
            let v: Value = self
                .http
                .get(format!("{}/api/games/{room_id}?limit=1", self.url))
                .bearer_auth(&self.key)
                .send()
                .await?
                .json()
                .await?;
            if v["game"]["resultsStored"] == json!(true) {
                println!(
                    "{{\"roomId\":\"{room_id}\",\"stored_after_end_s\":{:.2},\"player_count\":{}}}",
                    now_ms_since(conn, ended).await? as f64 / 1000.0,
                    v["game"]["playerCount"]
                );
                return Ok(());
            }
            if now_ms_since(conn, ended).await? > 300_000 {
                anyhow::bail!("results not stored after 300 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
