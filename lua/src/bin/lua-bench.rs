//! `lua-bench`: the figures of `perf/lua.md`, measured against a Redis you started (never a shared one:
//! it creates big rooms).
//!
//! ```text
//! lua-bench --redis redis://127.0.0.1:7390/ submit --players 100000 --pipeline 64 --clients 4
//! lua-bench --redis redis://127.0.0.1:7390/ reveal --players 1000,10000,100000
//! ```
//! `submit`: `answer_submit` throughput and latency (pipelined, then one call at a time per client).
//! `batch`: `answer_batch` at batch sizes 1, 8, 32, 128 (answers per call), then `answer_submit` (batch
//! size "1 as answer_submit") in a fresh room each, with the Redis main-thread CPU per answer.
//! `reveal`: for rooms of N players who all answered: the reveal (`host_skip`, which scores the first
//! 1000 players), the rest of the scoring (`score` timer fires, one after the other), reveal-to-last-result
//! with one client, and the personal results (`results`) in batches of 500 and 1000. Server-side CPU per call comes from `INFO commandstats`
//! (`CONFIG RESETSTAT` before each phase), client-side latency from hdrhistogram (raw logs with `--raw`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;
use ringside_lua::game::{fcall_cmd, Function};
use ringside_lua::{bench, ensure_loaded, Game, Redis, TimerKind};
use ringside_protocol::events::RoomSettings;
use ringside_protocol::keys;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

#[derive(Parser)]
#[command(name = "lua-bench", about = "Measure the ringside Functions library")]
struct Cli {
    #[arg(long = "redis", default_value = "redis://127.0.0.1:7390/")]
    redis: Vec<String>,
    #[arg(long)]
    cluster: bool,
    /// Use the library already loaded (do not load/replace it).
    #[arg(long)]
    no_load: bool,
    /// Write hdrhistogram interval logs here (e.g. perf/raw).
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Run `sh -c "<CMD> start|end <phase>"` around each measured phase of `reveal` (joins-N,
    /// answers-N, reveal-N, score-N, results-N) and of `batch` (batch<size>-N, size 0 for
    /// answer_submit), e.g. lua/perf/callgrind/phase.sh to count instructions per phase. The hooks'
    /// own time then shows in the timings printed.
    #[arg(long, env = "LUA_BENCH_PHASE_CMD")]
    phase_cmd: Option<String>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// answer_submit throughput and latency.
    Submit {
        #[arg(long, default_value_t = 100_000)]
        players: usize,
        #[arg(long, default_value_t = 64)]
        pipeline: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// answer_batch: Redis CPU per answer at each batch size (answers per call), against answer_submit
    /// in the same run (size 0: answer_submit at that place, e.g. `--sizes 0` for answer_submit alone).
    /// Each client keeps about `pipeline` answers in flight (at least one call).
    Batch {
        #[arg(long, default_value_t = 100_000)]
        players: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 64)]
        pipeline: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Reveal + personal results for rooms of these sizes.
    Reveal {
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        players: Vec<usize>,
    },
}

struct Recorder {
    logs: Vec<(String, Histogram<u64>, Duration)>,
}

impl Recorder {
    fn add(&mut self, tag: &str, h: &Histogram<u64>, wall: Duration) {
        self.logs.push((tag.to_string(), h.clone(), wall));
    }

    fn write(&self, dir: &std::path::Path, name: &str) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        let mut file = std::fs::File::create(&path)?;
        let mut ser = V2Serializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment(
                "lua-bench: client-side latency per FCALL or per pipelined batch, microseconds",
            )
            .with_start_time(SystemTime::now())
            .begin_log_with(&mut file, &mut ser)?;
        let mut t = Duration::ZERO;
        for (tag, h, wall) in &self.logs {
            w.write_histogram(h, t, *wall, Tag::new(tag))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            t += *wall;
        }
        println!("raw histograms: {}", path.display());
        Ok(())
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn us(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

fn pct(h: &Histogram<u64>) -> String {
    format!(
        "p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs (n={})",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    )
}

/// `INFO commandstats` → (calls, usec) of FCALL.
async fn fcall_stats(conn: &mut Redis) -> Result<(u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    for line in info.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_fcall:") {
            let field = |name: &str| -> u64 {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            return Ok((field("calls="), field("usec=")));
        }
    }
    Ok((0, 0))
}

/// CPU seconds used by Redis's main thread so far (`INFO cpu`): unlike `usec` in commandstats it does not
/// count time the thread spent descheduled on a busy machine, and it includes network I/O and parsing.
async fn main_thread_cpu(conn: &mut Redis) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_user_main_thread:") + field("used_cpu_sys_main_thread:"))
}

async fn reset_stats(conn: &mut Redis) -> Result<()> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

async fn used_memory(conn: &mut Redis) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| {
            l.strip_prefix("used_memory:")
                .and_then(|v| v.trim().parse().ok())
        })
        .context("used_memory in INFO memory")
}

/// Creates a room with `players` players (joined through pipelined room_join) and opens its question.
async fn room_with_players(
    game: &Game,
    conn: &mut Redis,
    players: usize,
) -> Result<(String, String)> {
    let quiz_id = format!("bench-{}", ringside_lua::game::random_hex(4));
    game.store_quiz(&bench::quiz(&quiz_id)).await?;
    let settings = RoomSettings {
        max_players: Some(1_000_000),
        countdown_ms: Some(0),
        reveal_pause_ms: Some(0),
        ..Default::default()
    };
    let created = game.create_room(&quiz_id, None, &settings, "").await?;
    let code = created.game_code.clone();
    let started = Instant::now();
    let cpu0 = main_thread_cpu(conn).await?;
    bench::join_players(conn, &code, players).await?;
    let join_s = started.elapsed().as_secs_f64();
    let cpu = main_thread_cpu(conn).await? - cpu0;
    println!(
        "  joined {players} players in {join_s:.2} s ({:.0} joins/s, pipelined 256; {:.1} µs main-thread CPU per join)",
        players as f64 / join_s,
        cpu * 1e6 / players as f64
    );
    game.start(&code, &created.host_token).await?;
    let entry = bench::timer_of(conn, &code, TimerKind::CountdownEnd).await?;
    let out = game.fire(&entry).await?;
    if !out.fired {
        bail!("countdown_end did not fire: {out:?}");
    }
    Ok((code, created.host_token))
}

async fn drop_room(conn: &mut Redis, code: &str) -> Result<()> {
    let p = keys::room(code);
    let mut cmd = redis::cmd("UNLINK");
    for s in [
        "", ":quiz", ":players", ":names", ":sess", ":secret", ":viol", ":kicked", ":lb",
        ":recent", ":pend", ":log", ":q:0", ":lb:0", ":lbn",
    ] {
        cmd.arg(format!("{p}{s}"));
    }
    cmd.query_async::<()>(conn).await?;
    Ok(())
}

/// Submits answers for `ids` with `clients` concurrent tasks, each sending pipelines of `depth`.
async fn submit_all(
    redis: &Redis,
    code: &str,
    ids: Vec<usize>,
    depth: usize,
    clients: usize,
) -> Result<(Histogram<u64>, Duration, usize)> {
    submit_batched(redis, code, ids, depth, clients, None).await
}

/// The option of player `i`'s answer: 1/3 wrong, 2/3 correct.
fn answer_of(i: usize) -> &'static str {
    if i.is_multiple_of(3) {
        "0"
    } else {
        "1"
    }
}

/// Submits answers for `ids` with `clients` concurrent tasks: `batch` None: one `answer_submit` per
/// answer, pipelines of `depth` calls; Some(b): `answer_batch` calls of b answers, pipelines of
/// max(1, depth / b) calls. The histogram: client latency per pipeline; errors: refused answers.
async fn submit_batched(
    redis: &Redis,
    code: &str,
    ids: Vec<usize>,
    depth: usize,
    clients: usize,
    batch: Option<usize>,
) -> Result<(Histogram<u64>, Duration, usize)> {
    let Some(b) = batch else {
        return submit_each(redis, code, ids, depth, clients).await;
    };
    let b = b.max(1);
    let calls_per_pipe = (depth / b).max(1);
    let per = ids.len().div_ceil(clients.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for part in ids.chunks(per.max(1)) {
        let (mut conn, code, part) = (redis.clone(), code.to_string(), part.to_vec());
        tasks.spawn(async move {
            let mut h = hist();
            let mut errors = 0usize;
            for group in part.chunks(b * calls_per_pipe) {
                let mut pipe = redis::pipe();
                for call in group.chunks(b) {
                    let mut args: Vec<String> = Vec::with_capacity(3 * call.len());
                    for &i in call {
                        args.push(bench::player_id(i));
                        args.push("0".into());
                        args.push(answer_of(i).into());
                    }
                    pipe.add_command(fcall_cmd(Function::AnswerBatch, &code, &args));
                }
                let n = group.len().div_ceil(b);
                let t = Instant::now();
                let replies =
                    redis::aio::ConnectionLike::req_packed_commands(&mut conn, &pipe, 0, n).await?;
                h.record(us(t.elapsed())).ok();
                for r in replies {
                    match r {
                        redis::Value::Array(items) => {
                            errors += items
                                .iter()
                                .filter(|v| matches!(v, redis::Value::ServerError(_)))
                                .count()
                        }
                        other => bail!("answer_batch replied {other:?}"),
                    }
                }
            }
            anyhow::Ok((h, errors))
        });
    }
    let mut total = hist();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (h, e) = r??;
        total.add(h)?;
        errors += e;
    }
    Ok((total, started.elapsed(), errors))
}

/// [`submit_batched`] with one `answer_submit` per answer.
async fn submit_each(
    redis: &Redis,
    code: &str,
    ids: Vec<usize>,
    depth: usize,
    clients: usize,
) -> Result<(Histogram<u64>, Duration, usize)> {
    let per = ids.len().div_ceil(clients.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for part in ids.chunks(per.max(1)) {
        let (mut conn, code, part) = (redis.clone(), code.to_string(), part.to_vec());
        tasks.spawn(async move {
            let mut h = hist();
            let mut errors = 0usize;
            for chunk in part.chunks(depth) {
                let cmds: Vec<redis::Cmd> = chunk
                    .iter()
                    .map(|&i| {
                        fcall_cmd(
                            Function::AnswerSubmit,
                            &code,
                            &[bench::player_id(i).as_str(), "0", answer_of(i)],
                        )
                    })
                    .collect();
                let t = Instant::now();
                let replies: Vec<redis::RedisResult<String>> = if let [one] = cmds.as_slice() {
                    vec![one.query_async::<String>(&mut conn).await]
                } else {
                    let mut pipe = redis::pipe();
                    for c in cmds {
                        pipe.add_command(c);
                    }
                    pipe.ignore_errors().query_async(&mut conn).await?
                };
                h.record(us(t.elapsed())).ok();
                errors += replies.iter().filter(|r| r.is_err()).count();
            }
            anyhow::Ok((h, errors))
        });
    }
    let mut total = hist();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (h, e) = r??;
        total.add(h)?;
        errors += e;
    }
    Ok((total, started.elapsed(), errors))
}

async fn submit(
    cli: &Cli,
    redis: Redis,
    players: usize,
    depth: usize,
    clients: usize,
    rec: &mut Recorder,
) -> Result<()> {
    let game = Game::new(redis.clone());
    let mut conn = redis.clone();
    // baseline: the cheapest possible FCALL (`version`), pipelined, to separate FCALL overhead from game logic
    reset_stats(&mut conn).await?;
    let cpu0 = main_thread_cpu(&mut conn).await?;
    for _ in 0..(players / 1000).max(10) {
        let mut pipe = redis::pipe();
        for _ in 0..1000 {
            pipe.cmd("FCALL").arg("version").arg(0);
        }
        pipe.query_async::<Vec<String>>(&mut conn).await?;
    }
    let (calls, usec) = fcall_stats(&mut conn).await?;
    let cpu = main_thread_cpu(&mut conn).await? - cpu0;
    println!(
        "baseline FCALL version (pipelined 1000): {:.2} µs inside per call, {:.2} µs main-thread CPU per call incl. I/O ({calls} calls)",
        usec as f64 / calls.max(1) as f64,
        cpu * 1e6 / calls.max(1) as f64
    );
    println!("## answer_submit, one room of {players} players (+1 who never answers)");
    for (label, depth) in [("pipelined", depth), ("one call at a time", 1)] {
        let (code, _host) = room_with_players(&game, &mut conn, players + 1).await?;
        reset_stats(&mut conn).await?;
        let cpu0 = main_thread_cpu(&mut conn).await?;
        let (h, wall, errors) =
            submit_all(&redis, &code, (0..players).collect(), depth, clients).await?;
        let cpu = main_thread_cpu(&mut conn).await? - cpu0;
        let (calls, usec) = fcall_stats(&mut conn).await?;
        let rate = players as f64 / wall.as_secs_f64();
        println!(
            "  {label} (depth {depth}, {clients} clients): {players} answers in {:.2} s = {rate:.0} answers/s; errors {errors}",
            wall.as_secs_f64()
        );
        println!(
            "    client latency per {}: {}",
            if depth == 1 { "call" } else { "batch" },
            pct(&h)
        );
        if calls > 0 {
            println!(
                "    server: {calls} FCALLs; {:.2} µs per FCALL inside the function (commandstats); {:.2} µs of main-thread CPU per answer incl. I/O => one Redis core saturates at ~{:.0} answers/s",
                usec as f64 / calls as f64,
                cpu * 1e6 / players as f64,
                players as f64 / cpu
            );
        }
        let stored: Option<String> = redis::cmd("HGET")
            .arg(format!("{}:q:0", keys::room(&code)))
            .arg("n")
            .query_async(&mut conn)
            .await?;
        println!("    answers stored: {}", stored.unwrap_or_default());
        rec.add(
            &format!("submit-{label}-depth{depth}").replace(' ', "_"),
            &h,
            wall,
        );
        drop_room(&mut conn, &code).await?;
    }
    let _ = cli;
    Ok(())
}

/// `batch` mode: for each batch size, a fresh room of `players` + 1 (one never answers, so no early
/// reveal) answered by `answer_batch` calls of that size; then the same by `answer_submit`.
async fn batch(
    redis: Redis,
    players: usize,
    sizes: &[usize],
    depth: usize,
    clients: usize,
    rec: &mut Recorder,
    hook: Option<&str>,
) -> Result<()> {
    let game = Game::new(redis.clone());
    let mut conn = redis.clone();
    println!(
        "## answer_batch, one room of {players} players (+1 who never answers) per batch size"
    );
    // a size of 0 is answer_submit (one answer per call) at that place; without one it runs last
    let mut runs: Vec<Option<usize>> = sizes.iter().map(|&b| (b > 0).then_some(b)).collect();
    if !sizes.contains(&0) {
        runs.push(None);
    }
    for b in runs {
        let (code, _host) = room_with_players(&game, &mut conn, players + 1).await?;
        reset_stats(&mut conn).await?;
        let cpu0 = main_thread_cpu(&mut conn).await?;
        let phase_name = format!("batch{}-{players}", b.unwrap_or(0));
        phase(hook, "start", &phase_name)?;
        let (h, wall, errors) =
            submit_batched(&redis, &code, (0..players).collect(), depth, clients, b).await?;
        phase(hook, "end", &phase_name)?;
        let cpu = main_thread_cpu(&mut conn).await? - cpu0;
        let (calls, usec) = fcall_stats(&mut conn).await?;
        let label = match b {
            Some(b) => format!("answer_batch of {b}"),
            None => "answer_submit (one per call)".to_string(),
        };
        let stored: Option<String> = redis::cmd("HGET")
            .arg(format!("{}:q:0", keys::room(&code)))
            .arg("n")
            .query_async(&mut conn)
            .await?;
        println!(
            "  {label}: {players} answers in {:.2} s = {:.0} answers/s; refused {errors}; stored {}",
            wall.as_secs_f64(),
            players as f64 / wall.as_secs_f64(),
            stored.unwrap_or_default()
        );
        println!(
            "    server: {calls} FCALLs, {:.0} µs inside per FCALL (commandstats) = {:.2} µs per answer; \
             {:.2} µs of main-thread CPU per answer incl. I/O => one Redis core saturates at ~{:.0} answers/s",
            usec as f64 / calls.max(1) as f64,
            usec as f64 / players as f64,
            cpu * 1e6 / players as f64,
            players as f64 / cpu
        );
        println!("    client latency per pipeline: {}", pct(&h));
        rec.add(
            &format!(
                "batch-{}",
                b.map_or("submit".to_string(), |b| b.to_string())
            ),
            &h,
            wall,
        );
        drop_room(&mut conn, &code).await?;
    }
    Ok(())
}

/// Runs the `--phase-cmd` hook, if any, and waits for it (it must be done before the phase starts).
fn phase(cmd: Option<&str>, what: &str, name: &str) -> Result<()> {
    let Some(cmd) = cmd else { return Ok(()) };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} {what} {name}"))
        .status()
        .context("--phase-cmd")?;
    if !status.success() {
        bail!("--phase-cmd {what} {name}: {status}");
    }
    Ok(())
}

async fn reveal(
    redis: Redis,
    sizes: &[usize],
    rec: &mut Recorder,
    hook: Option<&str>,
) -> Result<()> {
    let game = Game::new(redis.clone());
    let mut conn = redis.clone();
    println!("## reveal and personal results");
    for &n in sizes {
        println!("- room of {n} players (all answered except one; 2/3 correct)");
        let mem0 = used_memory(&mut conn).await?;
        phase(hook, "start", &format!("joins-{n}"))?;
        let (code, host) = room_with_players(&game, &mut conn, n + 1).await?;
        phase(hook, "end", &format!("joins-{n}"))?;
        phase(hook, "start", &format!("answers-{n}"))?;
        let (_, wall, errors) = submit_all(&redis, &code, (0..n).collect(), 64, 2).await?;
        phase(hook, "end", &format!("answers-{n}"))?;
        let mem1 = used_memory(&mut conn).await?;
        println!(
            "  submitted {n} answers in {:.2} s (errors {errors}); memory {:.0} bytes per player (players + answers)",
            wall.as_secs_f64(),
            (mem1.saturating_sub(mem0)) as f64 / n as f64
        );
        reset_stats(&mut conn).await?;
        let cpu0 = main_thread_cpu(&mut conn).await?;
        phase(hook, "start", &format!("reveal-{n}"))?;
        let t = Instant::now();
        game.skip(&code, &host, None).await?;
        let reveal_rtt = t.elapsed();
        phase(hook, "end", &format!("reveal-{n}"))?;
        let cpu = main_thread_cpu(&mut conn).await? - cpu0;
        let (calls, usec) = fcall_stats(&mut conn).await?;
        println!(
            "  reveal (host_skip FCALL): {} µs round trip, {} µs in Redis ({calls} call; main-thread CPU over the call incl. two INFO: {:.0} µs)",
            us(reveal_rtt),
            usec,
            cpu * 1e6
        );
        let mut h = hist();
        h.record(us(reveal_rtt)).ok();
        rec.add(&format!("reveal-{n}"), &h, reveal_rtt);
        // A room past one scoring step: the rest of the scoring in `score` fires, one after the other
        // as the engine makes them (it waits 1 ms between two: `why: "more"`, `retryInMs` 0).
        let scoring: Option<String> = redis::cmd("HGET")
            .arg(keys::room(&code))
            .arg("sq")
            .query_async(&mut conn)
            .await?;
        if scoring.is_some() {
            let entry = bench::timer_of(&mut conn, &code, TimerKind::Score).await?;
            reset_stats(&mut conn).await?;
            let cpu0 = main_thread_cpu(&mut conn).await?;
            let mut h = hist();
            phase(hook, "start", &format!("score-{n}"))?;
            let started = Instant::now();
            loop {
                let t = Instant::now();
                let out = game.fire(&entry).await?;
                h.record(us(t.elapsed())).ok();
                if !out.fired {
                    bail!("score step did not fire: {out:?}");
                }
                if out.retry_after().is_none() {
                    break;
                }
            }
            let wall = started.elapsed();
            phase(hook, "end", &format!("score-{n}"))?;
            let cpu = main_thread_cpu(&mut conn).await? - cpu0;
            let (calls, usec) = fcall_stats(&mut conn).await?;
            println!(
                "  scoring after the reveal's first step: {calls} score fires in {:.1} ms; {:.0} µs in Redis per fire (commandstats); main-thread CPU {:.1} ms = {:.2} µs per player; client per fire {}",
                wall.as_secs_f64() * 1e3,
                usec as f64 / calls.max(1) as f64,
                cpu * 1e3,
                cpu * 1e6 / (n + 1) as f64,
                pct(&h)
            );
            rec.add(&format!("score-{n}"), &h, wall);
        }
        let to_leaderboard = t.elapsed();
        let ids: Vec<String> = (0..=n).map(bench::player_id).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut got = 0;
        phase(hook, "start", &format!("results-{n}"))?;
        for chunk in refs.chunks(ringside_lua::game::RESULTS_MAX) {
            let res = game.results(&code, 0, chunk).await?;
            got += res.iter().filter(|r| r.is_some()).count();
        }
        let to_last = t.elapsed();
        phase(hook, "end", &format!("results-{n}"))?;
        if got != n + 1 {
            bail!("results for {got} of {} players", n + 1);
        }
        println!(
            "  reveal to leaderboard {:.1} ms, reveal to last result {:.1} ms (one client: the reveal, every score fire, then the results in calls of {} one after the other)",
            to_leaderboard.as_secs_f64() * 1e3,
            to_last.as_secs_f64() * 1e3,
            ringside_lua::game::RESULTS_MAX
        );
        for batch in [500usize, 1000] {
            reset_stats(&mut conn).await?;
            let cpu0 = main_thread_cpu(&mut conn).await?;
            let mut h = hist();
            let started = Instant::now();
            let mut got = 0;
            for chunk in refs.chunks(batch) {
                let t = Instant::now();
                let res = game.results_in_batches(&code, 0, chunk, batch).await?;
                h.record(us(t.elapsed())).ok();
                got += res.iter().filter(|r| r.is_some()).count();
            }
            let wall = started.elapsed();
            let cpu = main_thread_cpu(&mut conn).await? - cpu0;
            let (calls, usec) = fcall_stats(&mut conn).await?;
            if got != n + 1 {
                bail!("results for {got} of {} players", n + 1);
            }
            println!(
                "  results, batches of {batch}: all {} players in {:.1} ms ({calls} calls; {:.0} µs in Redis per call (commandstats); main-thread CPU {:.1} ms = {:.2} µs per player); client per call {}",
                n + 1,
                wall.as_secs_f64() * 1e3,
                usec as f64 / calls.max(1) as f64,
                cpu * 1e3,
                cpu * 1e6 / (n + 1) as f64,
                pct(&h)
            );
            rec.add(&format!("results-{n}-batch{batch}"), &h, wall);
        }
        drop_room(&mut conn, &code).await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut redis = Redis::connect(&cli.redis, cli.cluster)
        .await
        .context("connect")?;
    if !cli.no_load {
        ensure_loaded(&mut redis).await?;
    }
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut redis)
        .await?;
    let v = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .to_string();
    println!(
        "redis {v} at {:?}, library ringside {}",
        cli.redis,
        ringside_lua::VERSION
    );
    let mut rec = Recorder { logs: Vec::new() };
    let name = match &cli.mode {
        Mode::Submit {
            players,
            pipeline,
            clients,
        } => {
            submit(
                &cli,
                redis,
                *players,
                (*pipeline).max(1),
                (*clients).max(1),
                &mut rec,
            )
            .await?;
            "lua-submit.hlog"
        }
        Mode::Batch {
            players,
            sizes,
            pipeline,
            clients,
        } => {
            batch(
                redis,
                *players,
                sizes,
                (*pipeline).max(1),
                (*clients).max(1),
                &mut rec,
                cli.phase_cmd.as_deref(),
            )
            .await?;
            "lua-batch.hlog"
        }
        Mode::Reveal { players } => {
            reveal(redis, players, &mut rec, cli.phase_cmd.as_deref()).await?;
            "lua-reveal.hlog"
        }
    };
    if let Some(dir) = &cli.raw {
        rec.write(dir, name)?;
    }
    Ok(())
}
