//! A worker process (`ringside-loadgen worker`, started by the coordinator, never by hand): holds up to
//! ~15K sockets on one single-threaded tokio runtime and reports over its pipes.
//!
//! Protocol with the coordinator, one JSON line per message:
//! 1. stdin: `{"worker": W, "plan": {...}}` ([`Plan`]); stdout: `hello`.
//! 2. The worker's hosts connect (at its share of the ramp rate) and create their rooms; when each has
//!    succeeded or failed, stdout: `rooms` with the game codes.
//! 3. stdin: `join` with every room's code and the start barrier (epoch ms); players connect from the
//!    barrier on, at `ramp / W` per second, and join.
//! 4. stdin: `start_game`: hosts send `game:start`.
//! 5. stdin: `stop` (or the plan's hard deadline): every socket closes; stdout: `final` with the
//!    counters and the serialized histograms; the process exits.
//!
//! Meanwhile, every 500 ms: `progress`; every second: one interval of the `.hlog` file
//! (`<out>/hlog/worker-W.hlog`) when the run has an output directory.

use std::io::{BufRead, BufWriter, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};

use crate::client::{self, epoch_us, Ctx, Phase, Role};
use crate::metrics::{write_hlog_header, write_hlog_interval};
use crate::plan::{Command, Message, Plan, Progress};

/// The first line a worker reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInit {
    pub worker: u32,
    pub plan: Plan,
}

/// How long sockets get to close at the stop before the worker reports without them.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Writes one message line to stdout (the coordinator reads it).
pub fn emit(msg: &Message) {
    let mut out = std::io::stdout().lock();
    // A broken pipe means the coordinator is gone; the deadline ends this process anyway.
    let _ = serde_json::to_writer(&mut out, msg);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The worker process's main.
pub fn main() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the plan from stdin")?;
    let init: WorkerInit = serde_json::from_str(&line).context("parsing the plan")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let r = local.block_on(&rt, run(init));
    if let Err(e) = &r {
        emit(&Message::Fatal {
            message: format!("{e:#}"),
        });
    }
    // Do not wait for sockets that did not close in time: the final report is out.
    std::process::exit(if r.is_ok() { 0 } else { 1 });
}

async fn run(init: WorkerInit) -> anyhow::Result<()> {
    let WorkerInit { worker, plan } = init;
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let ctx = Rc::new(Ctx::new(plan.clone(), worker, phase_rx));
    emit(&Message::Hello {
        worker,
        pid: std::process::id(),
    });

    let mut hlog = match &plan.out_dir {
        Some(dir) => {
            let dir = dir.join("hlog");
            std::fs::create_dir_all(&dir)?;
            let f = std::fs::File::create(dir.join(format!("worker-{worker}.hlog")))?;
            let mut w = BufWriter::new(f);
            let base = Duration::from_millis(plan.base_epoch_ms);
            write_hlog_header(
                &mut w,
                base,
                &format!(
                    "ringside-loadgen worker {worker} ({})",
                    plan.scenario.name()
                ),
            )?;
            Some(w)
        }
        None => None,
    };

    // Commands from the coordinator.
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Command>();
    tokio::task::spawn_local(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        // Ends at EOF (the coordinator closed our stdin or died).
        while let Ok(Some(l)) = lines.next_line().await {
            match serde_json::from_str::<Command>(&l) {
                Ok(c) => {
                    if cmd_tx.send(c).is_err() {
                        break;
                    }
                }
                Err(e) => emit(&Message::Fatal {
                    message: format!("bad command {l:?}: {e}"),
                }),
            }
        }
        let _ = cmd_tx.send(Command::Stop);
    });

    let per_worker_rate = (plan.ramp_per_sec / f64::from(plan.workers)).max(0.1);
    let hosts: Vec<Role> = plan
        .hosts_of(worker)
        .map(|room| Role::Host { room })
        .collect();
    let n_hosts = hosts.len() as u64;
    tokio::task::spawn_local(ramp(ctx.clone(), hosts, per_worker_rate, Instant::now()));
    let assigned = plan.players_of(worker).count() as u64;

    tokio::task::spawn_local(loop_lag(ctx.clone()));
    let mut rooms_reported = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_hlog = Instant::now();
    let mut last_hlog_rel =
        Duration::from_millis((epoch_us() / 1000).saturating_sub(plan.base_epoch_ms));
    // Bounded: ends at `stop` or at the hard deadline, checked every 500 ms.
    loop {
        tokio::select! {
            c = cmd_rx.recv() => match c {
                Some(Command::Join { codes, start_at_ms }) => {
                    *ctx.codes.borrow_mut() = codes.into_iter().map(|c| c.map(Rc::from)).collect();
                    let now_ms = epoch_us() / 1000;
                    let start = Instant::now() + Duration::from_millis(start_at_ms.saturating_sub(now_ms));
                    let players: Vec<Role> = plan
                        .players_of(worker)
                        .map(|g| {
                            if plan.scenario.has_rooms() {
                                Role::Player { g, room: plan.room_of(g), slow: plan.is_slow(g) }
                            } else {
                                Role::Plain { g }
                            }
                        })
                        .collect();
                    tokio::task::spawn_local(ramp(ctx.clone(), players, per_worker_rate, start));
                }
                Some(Command::StartGame) => {
                    let _ = phase_tx.send(Phase::Game);
                }
                Some(Command::Stop) | None => break,
            },
            _ = tick.tick() => {
                if !rooms_reported && ctx.hosts_settled.get() >= n_hosts {
                    rooms_reported = true;
                    emit(&Message::Rooms {
                        created: ctx.created.borrow().clone(),
                        failed: ctx.create_failed.borrow().clone(),
                    });
                }
                emit(&Message::Progress(Box::new(progress(&ctx, assigned))));
                if let Some(w) = hlog.as_mut() {
                    if last_hlog.elapsed() >= Duration::from_secs(1) {
                        let len = last_hlog.elapsed();
                        write_interval(w, &ctx, last_hlog_rel, len)?;
                        last_hlog_rel += len;
                        last_hlog = Instant::now();
                    }
                }
                if epoch_us() / 1000 >= plan.deadline_epoch_ms {
                    break;
                }
            }
        }
    }

    let _ = phase_tx.send(Phase::Stop);
    let until = Instant::now() + STOP_GRACE;
    // Bounded by STOP_GRACE.
    while ctx.live.get() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(mut w) = hlog.take() {
        write_interval(&mut w, &ctx, last_hlog_rel, last_hlog.elapsed())?;
        w.flush()?;
    }
    emit(&Message::Progress(Box::new(progress(&ctx, assigned))));
    let fin = ctx.stats.borrow().to_final();
    emit(&Message::Final(Box::new(fin)));
    Ok(())
}

fn write_interval(
    w: &mut impl Write,
    ctx: &Ctx,
    start: Duration,
    len: Duration,
) -> anyhow::Result<()> {
    let mut st = ctx.stats.borrow_mut();
    write_hlog_interval(w, &st.interval, start, len)?;
    st.interval.reset();
    Ok(())
}

fn progress(ctx: &Ctx, assigned: u64) -> Progress {
    let st = ctx.stats.borrow();
    Progress {
        worker: ctx.worker,
        counters: st.counters.clone(),
        open: ctx.open.get(),
        ready: ctx.ready.get(),
        settled: ctx.settled.get(),
        assigned,
        max_q_shown: st.max_q_shown,
    }
}

/// Spawns one socket task per role at `rate` per second from `start`, in batches of what is due.
async fn ramp(ctx: Rc<Ctx>, roles: Vec<Role>, rate: f64, start: Instant) {
    let mut phase = ctx.phase.clone();
    // Bounded: one pass per role.
    for (i, role) in roles.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due > Instant::now() + Duration::from_millis(1) {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = phase.wait_for(|p| *p == Phase::Stop) => return,
            }
        }
        if *phase.borrow() == Phase::Stop {
            return;
        }
        tokio::task::spawn_local(client::run(ctx.clone(), role));
    }
}

/// Records how late a 10 ms timer fires ([`Metric::LoopLag`](crate::metrics::Metric::LoopLag)): this
/// worker's event loop busy with its other sockets. Ends at the stop.
async fn loop_lag(ctx: Rc<Ctx>) {
    const TICK: Duration = Duration::from_millis(10);
    let mut due = Instant::now() + TICK;
    // Bounded: ends when the phase becomes Stop.
    while *ctx.phase.borrow() != Phase::Stop {
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        let late = now.saturating_duration_since(due).as_micros() as u64;
        ctx.stats
            .borrow_mut()
            .record(crate::metrics::Metric::LoopLag, late.max(1));
        due = now + TICK;
    }
}
