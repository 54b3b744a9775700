//! The drift bench: `ringside-engine [engine flags] bench --rooms 10000 --seconds 60`.
//!
//! Against a Redis you started (empty, or pass `--flush`), with the real `ringside` library (loaded if
//! missing): stores one quiz, then creates, joins and starts `--rooms` rooms spread evenly over
//! `--ramp-seconds` (so their timers have every phase, as in production where games start whenever),
//! runs one engine in this process, lets every room reach its question/reveal cycle, resets the
//! histograms and measures for `--seconds`. Each room then has a question open ~80 % of the time
//! (progress tick every second, question end, reveal pause, next question): about one fire per room
//! per second.
//!
//! Reported: fire drift (fire completion − due, Redis clock) p50/p90/p99/p99.9/max from the engine's
//! own HDR histogram, fires per second, late/stale counts, schedule lag (XADD → engine holds it, ms
//! resolution), CPU seconds of this process and of Redis. `--hdr-out` writes the raw histograms as an
//! hdrhistogram interval log (one drift and one lag histogram per 10 s interval).

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;
use ringside_lua::{ensure_loaded, Game, Question, Quiz, Redis};
use ringside_protocol::events::RoomSettings;
use tokio::sync::Semaphore;

use crate::{Config, Engine};

/// Bench flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Active rooms.
    #[arg(long, default_value_t = 10_000)]
    pub rooms: usize,
    /// Measured seconds (after the ramp and settling).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Rooms are started evenly over this many seconds.
    #[arg(long, default_value_t = 20)]
    pub ramp_seconds: u64,
    /// Question time limit in ms.
    #[arg(long, default_value_t = 20_000)]
    pub question_ms: u32,
    /// Players joined per room (at least 2 with `--answer`, so one answer never reveals early).
    #[arg(long, default_value_t = 2)]
    pub players: usize,
    /// One player per room answers each question, mid-question (~rooms/25 answers per second), so
    /// progress ticks publish and Redis carries answer traffic as well. Runs in this process too.
    #[arg(long)]
    pub answer: bool,
    /// FLUSHALL every primary first (the bench refuses a non-empty Redis otherwise).
    #[arg(long)]
    pub flush: bool,
    /// Write the raw histograms (hdrhistogram interval log) to this file.
    #[arg(long)]
    pub hdr_out: Option<PathBuf>,
}

fn quiz(question_ms: u32) -> Quiz {
    Quiz {
        id: "engine-bench".to_owned(),
        title: "engine bench".to_owned(),
        questions: (0..30)
            .map(|i| Question {
                text: format!("Bench question {i}?"),
                options: (0..4).map(|k| format!("option {i}.{k}")).collect(),
                correct: (i % 4) as u32,
                explanation: None,
                time_limit_ms: question_ms,
                points: 1000,
                image_url: None,
            })
            .collect(),
    }
}

/// utime + stime of this process, in seconds.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// used_cpu_user + used_cpu_sys summed over every primary.
async fn redis_cpu_seconds(redis: &mut Redis) -> f64 {
    let Ok(answers) = redis.on_every_primary(redis::cmd("INFO").arg("cpu")).await else {
        return f64::NAN;
    };
    answers
        .into_iter()
        .filter_map(|(_, v)| v.ok())
        .filter_map(|v| redis::from_redis_value::<String>(v).ok())
        .map(|info| {
            info.lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
                .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

/// The 1-minute load average (the machine may be shared: it says how quiet the run was).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn summary(h: &Histogram<u64>) -> String {
    format!(
        "n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms",
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

/// Runs the bench (see the module docs).
pub async fn run(mut config: Config, args: BenchArgs) -> anyhow::Result<()> {
    config.http = None;
    let mut redis = Redis::connect(&config.redis, config.cluster)
        .await
        .context("connect to Redis")?;
    let keys: i64 = redis
        .on_every_primary(&redis::cmd("DBSIZE"))
        .await?
        .into_iter()
        .filter_map(|(_, v)| v.ok())
        .filter_map(|v| redis::from_redis_value::<i64>(v).ok())
        .sum();
    if keys > 0 {
        if !args.flush {
            bail!("Redis holds {keys} keys; start an empty one for the bench or pass --flush");
        }
        for (node, r) in redis.on_every_primary(&redis::cmd("FLUSHALL")).await? {
            r.with_context(|| format!("FLUSHALL on {node}"))?;
        }
    }
    ensure_loaded(&mut redis)
        .await
        .context("load the ringside library")?;
    let game = Game::new(redis.clone());
    game.store_quiz(&quiz(args.question_ms)).await?;
    let settings = RoomSettings {
        time_per_q_ms: Some(args.question_ms),
        ..Default::default()
    };

    let engine = Engine::start(config).await?;
    println!("bench: load average at start {}", loadavg());
    println!(
        "bench: {} rooms × {} players, ramp {} s, question {} ms; engine {}",
        args.rooms,
        args.players,
        args.ramp_seconds,
        args.question_ms,
        engine.instance_id()
    );

    // Ramp: rooms started evenly over the ramp window, at most 256 set-ups in flight.
    let ramp_started = Instant::now();
    let gap = Duration::from_secs(args.ramp_seconds).as_secs_f64() / args.rooms.max(1) as f64;
    let limit = Arc::new(Semaphore::new(256));
    let failures = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let mut setups = Vec::with_capacity(args.rooms);
    let answer_every = Duration::from_millis(u64::from(args.question_ms) + 500 + 5000);
    let question = Duration::from_millis(u64::from(args.question_ms));
    let answer = args.answer && args.players >= 2;
    for i in 0..args.rooms {
        tokio::time::sleep_until((ramp_started + Duration::from_secs_f64(gap * i as f64)).into())
            .await;
        let permit = limit.clone().acquire_owned().await?;
        let (game, settings, players) = (game.clone(), settings.clone(), args.players);
        let failures = failures.clone();
        let answers = answers.clone();
        setups.push(tokio::spawn(async move {
            let setup = async {
                let room = game
                    .create_room("engine-bench", Some("Host"), &settings, "")
                    .await?;
                let mut first = None;
                for k in 0..players {
                    let ack = game
                        .join(&room.game_code, &format!("player{k}"), 1, None)
                        .await?;
                    first.get_or_insert(ack.player_id);
                }
                game.start(&room.game_code, &room.host_token).await?;
                Ok::<_, ringside_lua::GameError>((room, first))
            };
            let result = setup.await;
            drop(permit);
            let Ok((room, first)) = result else {
                failures.fetch_add(1, Relaxed);
                return;
            };
            let started = Instant::now();
            // Question q opens about 3 s (countdown) + q cycles after the start; answer mid-question.
            // The schedule drifts by the fire drift per step, far less than the margin.
            if let (true, Some(player)) = (answer, first) {
                for q in 0..30u32 {
                    let offset = question.mul_f64(rand::random_range(0.3..0.7));
                    let at = started + Duration::from_secs(3) + answer_every * q + offset;
                    tokio::time::sleep_until(at.into()).await;
                    match game.answer_submit(&room.game_code, &player, q, q % 4).await {
                        Ok(_) => answers.0.fetch_add(1, Relaxed),
                        Err(_) => answers.1.fetch_add(1, Relaxed),
                    };
                }
            }
        }));
    }
    // Set-ups are done once the semaphore is whole again (answering tasks released their permit).
    let _all = limit.acquire_many(256).await?;
    drop(_all);
    let failed = failures.load(Relaxed);
    println!(
        "bench: {} rooms started in {:.1} s ({failed} set-ups ended early: failed){}",
        args.rooms,
        ramp_started.elapsed().as_secs_f64(),
        if answer {
            "; one player per room answers each question"
        } else {
            ""
        }
    );
    // Settle: the last room's countdown (3 s) and first progress tick.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let m = engine.metrics();
    let fired0 = m.timers_fired_total.load(Relaxed) + m.timers_stale_total.load(Relaxed);
    let (late0, stale0, err0) = (
        m.timers_late_total.load(Relaxed),
        m.timers_stale_total.load(Relaxed),
        m.redis_errors_total.load(Relaxed),
    );
    let (cpu0, rcpu0) = (own_cpu_seconds(), redis_cpu_seconds(&mut redis).await);
    let (answered0, refused0) = (answers.0.load(Relaxed), answers.1.load(Relaxed));
    m.reset_histograms();
    let measured = Instant::now();
    let mut intervals: Vec<(Histogram<u64>, Histogram<u64>, Duration, Duration)> = Vec::new();
    let mut total = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut lag_total = total.clone();
    let mut dispatch_total = total.clone();
    while measured.elapsed() < Duration::from_secs(args.seconds) {
        let left = Duration::from_secs(args.seconds).saturating_sub(measured.elapsed());
        let start = measured.elapsed();
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        let (drift, lag, dispatch) = m.take_histograms();
        total.add(&drift)?;
        lag_total.add(&lag)?;
        dispatch_total.add(&dispatch)?;
        println!(
            "bench: t+{:>4.0}s drift {} | dispatch p99={:.2}ms | load {}",
            measured.elapsed().as_secs_f64(),
            summary(&drift),
            ms(dispatch.value_at_quantile(0.99)),
            loadavg()
        );
        intervals.push((drift, lag, start, measured.elapsed() - start));
    }
    let wall = measured.elapsed().as_secs_f64();
    let fires = m.timers_fired_total.load(Relaxed) + m.timers_stale_total.load(Relaxed) - fired0;
    let (cpu1, rcpu1) = (own_cpu_seconds(), redis_cpu_seconds(&mut redis).await);
    println!(
        "bench: RESULT rooms={} measured={wall:.1}s fires={fires} ({:.0}/s)",
        args.rooms - failed,
        fires as f64 / wall
    );
    if failed > 0 {
        println!("bench: WARNING {failed} rooms failed to set up");
    }
    println!("bench: RESULT drift {}", summary(&total));
    println!(
        "bench: RESULT dispatch lateness (due → FCALL sent; the engine's share) {}",
        summary(&dispatch_total)
    );
    println!(
        "bench: RESULT late(>{}ms)={} stale/no-op={} redis_errors={} pending_now={}",
        m.late_ms,
        m.timers_late_total.load(Relaxed) - late0,
        m.timers_stale_total.load(Relaxed) - stale0,
        m.redis_errors_total.load(Relaxed) - err0,
        m.timers_pending.load(Relaxed)
    );
    if answer {
        println!(
            "bench: RESULT answers accepted={} refused={} ({:.0}/s)",
            answers.0.load(Relaxed) - answered0,
            answers.1.load(Relaxed) - refused0,
            (answers.0.load(Relaxed) - answered0) as f64 / wall
        );
    }
    println!(
        "bench: RESULT schedule lag (XADD → engine holds it; ms resolution) {}",
        summary(&lag_total)
    );
    println!(
        "bench: RESULT cpu: this process (engine + idle bench client) {:.2} s/s, redis {:.2} s/s",
        (cpu1 - cpu0) / wall,
        (rcpu1 - rcpu0) / wall
    );
    if let Some(path) = &args.hdr_out {
        write_log(path, &intervals)?;
        println!("bench: raw histograms (µs) in {}", path.display());
    }
    for s in &setups {
        s.abort();
    }
    engine.shutdown().await;
    Ok(())
}

fn write_log(
    path: &std::path::Path,
    intervals: &[(Histogram<u64>, Histogram<u64>, Duration, Duration)],
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::File::create(path)?;
    let mut ser = V2Serializer::new();
    let mut w = IntervalLogWriterBuilder::new()
        .add_comment("ringside-engine bench: drift = fire completion - due (us); lag = XADD -> engine holds it (us, ms resolution)")
        .with_start_time(SystemTime::now())
        .begin_log_with(&mut file, &mut ser)?;
    for (drift, lag, start, len) in intervals {
        w.write_histogram(drift, *start, *len, Tag::new("drift"))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        w.write_histogram(lag, *start, *len, Tag::new("lag"))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    Ok(())
}
