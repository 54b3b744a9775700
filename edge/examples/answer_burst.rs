//! `answer_burst`: Redis CPU per answer when one big room answers through the edge's answer batcher
//! (`edge/src/game/answers.rs`), group commit (`--answer-calls-in-flight 1`) against no limit (`0`, every
//! turn's answers leave at once: the behaviour before), in alternating runs against one Redis.
//!
//! Each simulated edge process is what the real one has on its Redis thread: a current-thread tokio
//! runtime with its own connection, a [`Batcher`], and answers arriving one at a time from another thread
//! (the edge's workers), at random times spread uniformly over `--spread-ms`. Every run uses a fresh room of
//! `--players` players (joined by pipelined `room_join`, question 0 open); everyone but one player answers
//! (no early reveal). Redis CPU = `used_cpu_{user,sys}_main_thread` delta / answers, read around the burst.
//! Use a Redis of your own (it runs FLUSHALL before each run):
//!
//! ```text
//! taskset -c 1 redis-server --port 7398 --save '' --appendonly no --daemonize yes
//! cargo run --release -p ringside-edge --example answer_burst -- --redis redis://127.0.0.1:7398/ \
//!     --players 100000 --edges 4 --spread-ms 1000,5000 --rounds 2 --modes 1:1,1:0,0:0
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use ringside_edge::game::answers::Batcher;
use ringside_edge::metrics::ANSWER_BATCH;
use ringside_lua::{bench, ensure_loaded, Game, Redis, TimerKind};
use ringside_protocol::events::RoomSettings;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Redis CPU per answer of one room's burst through the edge's answer batcher")]
struct Cli {
    #[arg(long, default_value = "redis://127.0.0.1:7398/")]
    redis: String,
    #[arg(long, default_value_t = 100_000)]
    players: usize,
    /// Simulated edge processes (each its own Redis thread, connection and batcher).
    #[arg(long, default_value_t = 4)]
    edges: usize,
    /// The answers arrive uniformly over this many ms (one run per value).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    spread_ms: Vec<u64>,
    /// The batcher settings compared, in this order within each round: `IN_FLIGHT:GAP_MS` pairs
    /// (`--answer-calls-in-flight`, `--answer-call-gap-ms`; `0:0` is the behaviour before group commit).
    #[arg(long, value_delimiter = ',', default_value = "1:1,1:0,0:0")]
    modes: Vec<String>,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

async fn main_thread_cpu(conn: &mut Redis) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_user_main_thread:") + field("used_cpu_sys_main_thread:"))
}

/// A fresh room of `players` players with question 0 open; its code.
async fn room(game: &Game, conn: &mut Redis, players: usize) -> Result<String> {
    redis::cmd("FLUSHALL").query_async::<()>(conn).await?;
    game.store_quiz(&bench::quiz("burst")).await?;
    let settings = RoomSettings {
        max_players: Some(1_000_000),
        countdown_ms: Some(0),
        reveal_pause_ms: Some(0),
        ..Default::default()
    };
    let created = game.create_room("burst", None, &settings, "").await?;
    let code = created.game_code.clone();
    bench::join_players(conn, &code, players).await?;
    game.start(&code, &created.host_token).await?;
    let entry = bench::timer_of(conn, &code, TimerKind::CountdownEnd).await?;
    if !game.fire(&entry).await?.fired {
        bail!("countdown_end did not fire");
    }
    Ok(code)
}

/// What one simulated edge saw: per answer, accepted or not, and submit-to-reply time.
struct EdgeOut {
    ok: usize,
    refused: usize,
    latencies_us: Vec<u32>,
}

/// One simulated edge's Redis thread: answers `ids` arrive at `t0 + at` (one at a time, from another
/// thread) and go through a batcher with `in_flight` calls per room, `gap` apart.
fn edge(
    url: String,
    code: Arc<str>,
    arrivals: Vec<(usize, Duration)>,
    (in_flight, gap): (usize, Duration),
    t0: Instant,
) -> std::thread::JoinHandle<Result<EdgeOut>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let game = Game::new(Redis::connect(&[url], false).await?);
            let batcher = Batcher::new(in_flight, gap);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
            let producer = std::thread::spawn(move || {
                for (i, at) in arrivals {
                    // no spinning (it would take the CPU from the Redis thread): an answer due
                    // within the sleep's overshoot (~60 us) goes with the ones before it
                    let due = t0 + at;
                    let now = Instant::now();
                    if due > now + Duration::from_micros(50) {
                        std::thread::sleep(due - now);
                    }
                    let _ = tx.send((i, Instant::now()));
                }
            });
            let mut calls = Vec::new();
            while let Some((i, sent)) = rx.recv().await {
                let (b, g, c) = (batcher.clone(), game.clone(), code.clone());
                let answer = if i % 3 == 0 { 0 } else { 1 };
                calls.push(tokio::spawn(async move {
                    let r = b.submit(g, c, bench::player_id(i), 0, answer).await;
                    (r.is_ok(), sent.elapsed())
                }));
            }
            let _ = producer.join();
            let mut out = EdgeOut {
                ok: 0,
                refused: 0,
                latencies_us: Vec::with_capacity(calls.len()),
            };
            for c in calls {
                let (ok, took) = c.await?;
                if ok {
                    out.ok += 1;
                } else {
                    out.refused += 1;
                }
                out.latencies_us
                    .push(took.as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(out)
        })
    })
}

/// A small deterministic generator (xorshift64*): the same arrival times in every run.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

async fn run(cli: &Cli, conn: &mut Redis, game: &Game, spread_ms: u64, mode: &str) -> Result<()> {
    let (in_flight, gap_ms) = mode
        .split_once(':')
        .and_then(|(k, g)| Some((k.parse::<usize>().ok()?, g.parse::<u64>().ok()?)))
        .context("a mode is IN_FLIGHT:GAP_MS")?;
    let policy = (in_flight, Duration::from_millis(gap_ms));
    let code: Arc<str> = room(game, conn, cli.players).await?.into();
    // everyone but the last player answers, spread over the simulated edges
    let answerers = cli.players - 1;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut per_edge: Vec<Vec<(usize, Duration)>> = vec![Vec::new(); cli.edges];
    for i in 0..answerers {
        let at = Duration::from_micros((rng.next_f64() * spread_ms as f64 * 1000.0) as u64);
        per_edge[i % cli.edges].push((i, at));
    }
    for a in per_edge.iter_mut() {
        a.sort_by_key(|&(_, at)| at);
    }
    let (calls0, sum0) = (ANSWER_BATCH.at_most(u64::MAX), ANSWER_BATCH.sum());
    let cpu0 = main_thread_cpu(conn).await?;
    let t0 = Instant::now() + Duration::from_millis(200);
    let edges: Vec<_> = per_edge
        .into_iter()
        .map(|a| edge(cli.redis.clone(), code.clone(), a, policy, t0))
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    let mut lat = Vec::with_capacity(answerers);
    for e in edges {
        let out = e
            .join()
            .map_err(|_| anyhow::anyhow!("edge thread panicked"))??;
        ok += out.ok;
        refused += out.refused;
        lat.extend(out.latencies_us);
    }
    let wall = t0.elapsed();
    let cpu = main_thread_cpu(conn).await? - cpu0;
    let calls = ANSWER_BATCH.at_most(u64::MAX) - calls0;
    let batched = ANSWER_BATCH.sum() - sum0;
    lat.sort_unstable();
    println!(
        "in_flight={in_flight} gap={gap_ms}ms spread={spread_ms}ms players={} edges={} | acked {ok} refused {refused} | \
         redis cpu {:.2} us/answer ({:.2} s) | calls {calls} (avg batch {:.1}) | ack p50 {:.2} p99 {:.2} \
         max {:.2} ms | last ack {:.0} ms after the first arrival",
        cli.players,
        cli.edges,
        cpu * 1e6 / answerers as f64,
        cpu,
        batched as f64 / calls.max(1) as f64,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        wall.as_secs_f64() * 1000.0
    );
    if ok + refused != answerers || refused > 0 {
        bail!("{refused} of {answerers} answers refused, {ok} acked");
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut conn = Redis::connect(std::slice::from_ref(&cli.redis), false).await?;
    ensure_loaded(&mut conn).await?;
    let game = Game::new(conn.clone());
    for round in 1..=cli.rounds {
        for &spread in &cli.spread_ms {
            for mode in &cli.modes {
                print!("round {round}: ");
                run(&cli, &mut conn, &game, spread, mode).await?;
            }
        }
    }
    Ok(())
}
