//! The coordinator: the process an SRE starts. It plans the run, spawns the worker processes (itself,
//! with the hidden `worker` subcommand), drives the phases, watches CPU and memory, kills an edge for
//! the reconnect storm, merges the workers' numbers, writes the report and decides the exit code.
//!
//! Phases (each bounded; the hard deadline `--duration` ends any of them):
//! 1. **rooms** — every worker's hosts create their rooms; the coordinator collects the game codes.
//! 2. **join** — the codes and a common start barrier (now + 300 ms) go to every worker; each ramps its
//!    players at `--ramp-rate / W` per second. Ends when every player joined or failed, or at the join
//!    timeout.
//! 3. **game** (game scenarios) — `start_game`; ends when every player finished (or failed), or
//!    **hold** (lobby, connect) — `--hold-secs`.
//! 4. **stop** — workers close their sockets and send their final numbers (15 s at most).
//!
//! Why processes and not threads: the descriptor limit (20000 per process, hard) caps one process's
//! sockets; with ≤ 15K sockets per worker and source addresses 127.0.0.2… (each gives ~28K ephemeral
//! ports towards one server port), 100K+ sockets fit on one machine.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::cli::RunArgs;
use crate::metrics::{Merged, WorkerFinal};
use crate::plan::{AnswerModel, Command, Message, Plan, Progress, Scenario};
use crate::report::{CpuWindow, ProcRow, Report, RunInfo};
use crate::slo::{self, Slo, EXIT_SLO_FAILED};
use crate::sys::{self, MachineCpu, ProcSample};
use crate::worker::WorkerInit;

/// The URL parts the workers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses `ws://host[:port][/path]`. `wss://` is refused: TLS is not implemented in the client yet.
pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = if let Some(r) = url.strip_prefix("ws://") {
        r
    } else if url.starts_with("wss://") {
        bail!("{url}: wss:// (TLS) is not supported by ringside-loadgen yet; run against the edge's plain ws:// port");
    } else {
        bail!("{url}: the URL must start with ws://");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(|c| c == '[' || c == ']').to_string(),
            p.parse().with_context(|| format!("port in {url}"))?,
        ),
        _ => (authority.to_string(), 80),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    Ok(Target {
        host,
        port,
        path: path.to_string(),
    })
}

/// Turns the flags into a plan.
pub fn plan(scenario: Scenario, a: &RunArgs) -> anyhow::Result<Plan> {
    let t = parse_url(&a.url)?;
    let target: SocketAddr = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", t.host))?
        .next()
        .with_context(|| format!("{} resolves to no address", t.host))?;
    let rooms = a
        .rooms
        .unwrap_or(if scenario == Scenario::Stadium { 1 } else { 10 });
    if scenario.has_rooms() && rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    let players = match (a.players, a.players_per_room) {
        (Some(p), _) => p,
        (None, Some(ppr)) => u64::from(rooms) * u64::from(ppr),
        (None, None) if scenario == Scenario::Stadium => 100_000,
        (None, None) => u64::from(rooms) * 100,
    };
    let sockets = if scenario.has_rooms() {
        u64::from(rooms) + players
    } else {
        a.sockets
    };
    let per_worker = a.max_sockets_per_worker.max(1);
    let workers = a
        .workers
        .unwrap_or_else(|| sockets.div_ceil(per_worker).max(1) as u32)
        .max(1);
    let nofile = sys::nofile_limit();
    let biggest = sockets.div_ceil(u64::from(workers));
    if biggest + 64 > nofile {
        bail!(
            "{biggest} sockets per worker do not fit the descriptor limit ({nofile}): use more --workers \
             (or a lower --max-sockets-per-worker)"
        );
    }
    let sources = match &a.source_ips {
        Some(s) => sys::parse_source_ips(s)?,
        None if target.is_ipv4() && sys::is_loopback(&target) => {
            // few enough sockets per address that connect()'s port search stays short
            // (sys::sockets_per_source), and one more for reconnects and TIME_WAIT
            sys::loopback_sources((sockets.div_ceil(sys::sockets_per_source()) + 1) as usize)
        }
        None => Vec::new(),
    };
    for s in &sources {
        std::net::UdpSocket::bind((*s, 0))
            .with_context(|| format!("source address {s} is not usable here"))?;
    }
    for (k, v) in [
        ("--pick-first", a.pick_first),
        ("--skip-answer", a.skip_answer),
        ("--slow-fraction", a.slow_fraction),
    ] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{k} must be within 0..=1");
        }
    }
    if !(0.0..=1.0).contains(&a.answer_median) || a.answer_sigma < 0.0 {
        bail!("--answer-median must be within 0..=1 and --answer-sigma non-negative");
    }
    if a.ramp_rate <= 0.0 {
        bail!("--ramp-rate must be positive");
    }
    let now_ms = crate::client::epoch_us() / 1000;
    let host_header = if t.port == 80 {
        t.host.clone()
    } else {
        format!("{}:{}", t.host, t.port)
    };
    Ok(Plan {
        scenario,
        target,
        host_header,
        path: t.path,
        codec: a.codec,
        workers,
        rooms: if scenario.has_rooms() { rooms } else { 0 },
        players: if scenario.has_rooms() { players } else { 0 },
        sockets: if scenario.has_rooms() { 0 } else { a.sockets },
        quiz: a.quiz.clone(),
        questions: a.questions,
        time_per_q_ms: a.time_per_q_ms,
        countdown_ms: a.countdown_ms,
        reveal_pause_ms: a.reveal_pause_ms,
        answer: AnswerModel {
            median_frac: a.answer_median,
            sigma: a.answer_sigma,
            pick_first: a.pick_first,
            skip: a.skip_answer,
        },
        ping_interval_ms: a.ping_interval_ms,
        ramp_per_sec: a.ramp_rate,
        connect_timeout_ms: a.connect_timeout_ms,
        connect_retries: a.connect_retries,
        slow_fraction: if scenario == Scenario::SlowConsumers {
            a.slow_fraction
        } else {
            0.0
        },
        slow_rcvbuf: a.slow_rcvbuf,
        reconnect: !a.no_reconnect,
        reconnect_jitter_ms: a.reconnect_jitter_ms,
        reconnect_give_up_ms: a.reconnect_give_up_ms,
        storm_after_q: (scenario == Scenario::ReconnectStorm).then_some(a.kill_at_question),
        sources,
        deadline_epoch_ms: now_ms + a.duration * 1000,
        base_epoch_ms: now_ms,
        out_dir: a.out.clone(),
        seed: a.seed,
    })
}

/// The objectives of a run: the defaults, the file, the flags (later ones win on the same key).
pub fn objectives(a: &RunArgs) -> anyhow::Result<Vec<Slo>> {
    let mut all = if a.no_default_slos {
        Vec::new()
    } else {
        slo::defaults()
    };
    if let Some(f) = &a.slo_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        all = slo::combine(
            all,
            slo::parse_file(&text).with_context(|| format!("in {}", f.display()))?,
        );
    }
    let flags = a
        .slo
        .iter()
        .map(|s| slo::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(slo::combine(all, flags))
}

/// A process whose CPU and memory the report shows.
#[derive(Debug, Clone)]
struct Watched {
    name: String,
    pid: u32,
    loadgen: bool,
}

/// Parses `--watch-pid name=PID` (also `name=PID1,PID2`).
fn parse_watch(specs: &[String]) -> anyhow::Result<Vec<Watched>> {
    let mut out = Vec::new();
    for s in specs {
        let (name, pids) = s
            .split_once('=')
            .with_context(|| format!("--watch-pid {s}: expected NAME=PID"))?;
        for p in pids.split(',') {
            let pid: u32 = p
                .trim()
                .parse()
                .with_context(|| format!("--watch-pid {s}: bad pid {p}"))?;
            out.push(Watched {
                name: name.trim().to_string(),
                pid,
                loadgen: false,
            });
        }
    }
    Ok(out)
}

struct Snap {
    at: Instant,
    procs: Vec<ProcSample>,
    machine: Option<MachineCpu>,
    /// Every process's CPU seconds, to name the ones that competed with the run.
    all: std::collections::HashMap<u32, (String, f64)>,
}

/// Samples the watched processes; remembers the last sample of a process that died and the largest
/// resident set seen per window.
struct Sampler {
    procs: Vec<Watched>,
    last: Vec<ProcSample>,
    rss_max: Vec<u64>,
}

impl Sampler {
    fn new(procs: Vec<Watched>) -> Sampler {
        let n = procs.len();
        let mut s = Sampler {
            procs,
            last: vec![ProcSample::default(); n],
            rss_max: vec![0; n],
        };
        s.poll();
        s
    }

    fn poll(&mut self) {
        for (i, p) in self.procs.iter().enumerate() {
            if let Some(x) = sys::sample_pid(p.pid) {
                self.last[i] = x;
                self.rss_max[i] = self.rss_max[i].max(x.rss_kib);
            }
        }
    }

    fn snap(&mut self) -> Snap {
        self.poll();
        Snap {
            at: Instant::now(),
            procs: self.last.clone(),
            machine: sys::machine_cpu(),
            all: sys::all_procs_cpu(),
        }
    }

    /// The window between two snapshots; resets the per-window memory maximum.
    fn window(&mut self, name: &str, a: &Snap, b: &Snap) -> CpuWindow {
        let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-6);
        let mut w = CpuWindow {
            name: name.to_string(),
            wall_s: wall,
            ..Default::default()
        };
        for (i, p) in self.procs.iter().enumerate() {
            let cpu = (b.procs[i].cpu_s - a.procs[i].cpu_s).max(0.0);
            let row = ProcRow {
                name: p.name.clone(),
                pid: p.pid,
                cpu_s: cpu,
                cpu_pct: cpu / wall * 100.0,
                rss_max_mib: self.rss_max[i] as f64 / 1024.0,
                loadgen: p.loadgen,
            };
            if p.loadgen {
                w.loadgen_cpu_pct += row.cpu_pct;
            } else {
                w.watched_cpu_pct += row.cpu_pct;
            }
            w.processes.push(row);
        }
        let ours: std::collections::HashSet<u32> = self.procs.iter().map(|p| p.pid).collect();
        let mut others: Vec<ProcRow> = b
            .all
            .iter()
            .filter(|(pid, _)| !ours.contains(pid))
            .map(|(pid, (name, cpu))| {
                let before = a
                    .all
                    .get(pid)
                    .filter(|(n, _)| n == name)
                    .map_or(0.0, |x| x.1);
                let d = (cpu - before).max(0.0);
                ProcRow {
                    name: name.clone(),
                    pid: *pid,
                    cpu_s: d,
                    cpu_pct: d / wall * 100.0,
                    ..Default::default()
                }
            })
            .filter(|r| r.cpu_pct > 2.0)
            .collect();
        others.sort_by(|x, y| y.cpu_pct.total_cmp(&x.cpu_pct));
        others.truncate(8);
        let others_pct: f64 = others.iter().map(|o| o.cpu_pct).sum();
        w.others = others;
        if let (Some(x), Some(y)) = (a.machine, b.machine) {
            let m = sys::machine_busy_pct(&x, &y, crate::sys::machine_info().cores, wall);
            w.unattributed_pct =
                (m.busy_pct - w.loadgen_cpu_pct - w.watched_cpu_pct - others_pct).max(0.0);
            w.machine = Some(m);
        }
        w
    }

    fn reset_rss(&mut self) {
        self.rss_max.iter_mut().for_each(|x| *x = 0);
        self.poll();
    }
}

/// A worker's `rooms` message: (room, game code) created, rooms that failed.
type RoomsReport = (Vec<(u32, String)>, Vec<u32>);

enum Event {
    Line(u32, String),
    Eof(u32),
}

struct WorkerProc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl WorkerProc {
    fn send(&mut self, c: &Command) {
        if let Some(s) = self.stdin.as_mut() {
            let line = serde_json::to_string(c).expect("commands serialize");
            if writeln!(s, "{line}").and_then(|_| s.flush()).is_err() {
                self.stdin = None;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Rooms,
    Joining,
    Playing,
    Holding,
    Stopping,
}

/// Runs a scenario; returns the process exit code.
pub fn run(scenario: Scenario, args: &RunArgs) -> anyhow::Result<i32> {
    let slos = objectives(args)?;
    let mut watch = parse_watch(&args.watch_pid)?;
    let plan = plan(scenario, args)?;
    if let Some(dir) = &plan.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let started = Instant::now();
    let started_epoch_ms = plan.base_epoch_ms;
    let deadline = started + Duration::from_millis(plan.deadline_epoch_ms - plan.base_epoch_ms);
    let show_bar = !args.quiet && std::io::stdout().is_terminal();

    // Workers.
    let exe = std::env::current_exe().context("finding our own executable")?;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut workers = Vec::new();
    for w in 0..plan.workers {
        let mut child = std::process::Command::new(&exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting worker {w}"))?;
        let mut stdin = child.stdin.take();
        let init = serde_json::to_string(&WorkerInit {
            worker: w,
            plan: plan.clone(),
        })?;
        if let Some(s) = stdin.as_mut() {
            writeln!(s, "{init}")?;
            s.flush()?;
        }
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Event::Line(w, line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Eof(w));
        });
        watch.push(Watched {
            name: format!("loadgen-worker-{w}"),
            pid: child.id(),
            loadgen: true,
        });
        workers.push(WorkerProc { child, stdin });
    }
    drop(tx);
    watch.push(Watched {
        name: "loadgen-coordinator".into(),
        pid: std::process::id(),
        loadgen: true,
    });
    let mut sampler = Sampler::new(watch);
    let snap_start = sampler.snap();
    let mut snap_joined: Option<Snap> = None;
    let mut snap_stop: Option<Snap> = None;

    let n = plan.workers as usize;
    let mut progress: Vec<Progress> = vec![Progress::default(); n];
    let mut rooms_msgs: Vec<Option<RoomsReport>> = vec![None; n];
    let mut finals: Vec<Option<WorkerFinal>> = vec![None; n];
    let mut eof = vec![false; n];
    let mut notes: Vec<String> = Vec::new();
    let mut state = State::Rooms;
    let mut stopped_by = String::new();
    let mut join_deadline = deadline;
    let mut hold_until = deadline;
    let mut stop_deadline = deadline + Duration::from_secs(15);
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let mut last_bar = Instant::now();
    let mut last_sample = Instant::now();
    let assigned_total = plan.player_sockets();
    let rooms_deadline = (started + Duration::from_secs(120)).min(deadline);

    // Bounded: every state has a deadline; the loop ends at `stop_deadline` at the latest.
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Line(w, line)) => match serde_json::from_str::<Message>(&line) {
                Ok(Message::Hello { .. }) => {}
                Ok(Message::Rooms { created, failed }) => {
                    rooms_msgs[w as usize] = Some((created, failed))
                }
                Ok(Message::Progress(p)) => progress[w as usize] = *p,
                Ok(Message::Final(f)) => finals[w as usize] = Some(*f),
                Ok(Message::Fatal { message }) => {
                    eprintln!("worker {w}: {message}");
                    notes.push(format!("worker {w} failed: {message}"));
                }
                Err(e) => eprintln!("worker {w}: unreadable line ({e}): {line}"),
            },
            Ok(Event::Eof(w)) => eof[w as usize] = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if last_sample.elapsed() >= Duration::from_secs(1) {
            sampler.poll();
            last_sample = now;
        }
        let ready: u64 = progress.iter().map(|p| p.ready).sum();
        let settled: u64 = progress.iter().map(|p| p.settled).sum();
        let max_q = progress.iter().map(|p| p.max_q_shown).max().unwrap_or(-1);

        if state != State::Stopping && now >= deadline {
            stopped_by = "deadline (--duration)".into();
            notes.push(format!(
                "the hard deadline ({} s) ended the run during the {state:?} phase",
                args.duration
            ));
            state = stop(&mut workers, &mut sampler, &mut snap_stop);
            stop_deadline = Instant::now() + Duration::from_secs(15);
        }
        match state {
            State::Rooms => {
                let all = rooms_msgs.iter().all(Option::is_some);
                if all || now >= rooms_deadline {
                    let mut codes: Vec<Option<String>> = vec![None; plan.rooms as usize];
                    for (created, _) in rooms_msgs.iter().flatten() {
                        for (r, c) in created {
                            if let Some(slot) = codes.get_mut(*r as usize) {
                                *slot = Some(c.clone());
                            }
                        }
                    }
                    let missing = codes.iter().filter(|c| c.is_none()).count();
                    if missing > 0 {
                        notes.push(format!(
                            "{missing} of {} rooms could not be created",
                            plan.rooms
                        ));
                    }
                    if !all {
                        notes.push("not every worker reported its rooms in time".into());
                    }
                    let start_at_ms = crate::client::epoch_us() / 1000 + 300;
                    for wp in workers.iter_mut() {
                        wp.send(&Command::Join {
                            codes: codes.clone(),
                            start_at_ms,
                        });
                    }
                    let ramp = Duration::from_secs_f64(assigned_total as f64 / plan.ramp_per_sec);
                    join_deadline =
                        (now + ramp + Duration::from_secs(args.join_timeout_secs)).min(deadline);
                    state = State::Joining;
                }
            }
            State::Joining => {
                if ready >= assigned_total || now >= join_deadline {
                    if ready < assigned_total {
                        notes.push(format!(
                            "join phase timed out with {ready} of {assigned_total} players settled"
                        ));
                    }
                    snap_joined = Some(sampler.snap());
                    sampler.reset_rss();
                    if plan.scenario.plays() {
                        for wp in workers.iter_mut() {
                            wp.send(&Command::StartGame);
                        }
                        state = State::Playing;
                    } else {
                        hold_until = (now + Duration::from_secs(args.hold_secs)).min(deadline);
                        state = State::Holding;
                    }
                }
            }
            State::Playing => {
                if settled >= assigned_total {
                    stopped_by = "completed".into();
                    state = stop(&mut workers, &mut sampler, &mut snap_stop);
                    stop_deadline = Instant::now() + Duration::from_secs(15);
                } else if plan.scenario == Scenario::ReconnectStorm && !killed {
                    if kill_at.is_none() && max_q >= i64::from(args.kill_at_question) {
                        let delay = args.kill_delay_ms.unwrap_or_else(|| {
                            u64::from(plan.time_per_q_ms.unwrap_or(10_000)) * 3 / 10
                        });
                        kill_at = Some(now + Duration::from_millis(delay));
                    }
                    if kill_at.is_some_and(|k| now >= k) {
                        killed = true;
                        notes.push(kill(args, max_q));
                    }
                }
            }
            State::Holding => {
                if now >= hold_until {
                    stopped_by = "hold elapsed".into();
                    state = stop(&mut workers, &mut sampler, &mut snap_stop);
                    stop_deadline = Instant::now() + Duration::from_secs(15);
                }
            }
            State::Stopping => {
                let done = (0..n).all(|i| finals[i].is_some() || eof[i]);
                if done || now >= stop_deadline {
                    break;
                }
            }
        }
        if show_bar && last_bar.elapsed() >= Duration::from_millis(250) {
            last_bar = now;
            print_bar(state, &progress, assigned_total, started.elapsed());
        }
    }
    if show_bar {
        println!();
    }
    for (i, wp) in workers.iter_mut().enumerate() {
        wp.stdin = None;
        if finals[i].is_none() {
            notes.push(format!(
                "worker {i} sent no final report: its numbers are missing"
            ));
        }
        // Our own child: end it if it is still there, and reap it.
        if wp.child.try_wait().ok().flatten().is_none() {
            let _ = wp.child.kill();
        }
        let _ = wp.child.wait();
    }
    if plan.scenario == Scenario::ReconnectStorm && !killed {
        notes.push(format!(
            "no edge process was killed: question {} was never shown",
            args.kill_at_question
        ));
    }

    let snap_end = sampler.snap();
    let snap_stop = snap_stop.unwrap_or_else(|| sampler.snap());
    let mut cpu = Vec::new();
    if let Some(j) = &snap_joined {
        cpu.push(sampler.window("setup", &snap_start, j));
        let name = if plan.scenario.plays() {
            "game"
        } else {
            "hold"
        };
        cpu.push(sampler.window(name, j, &snap_stop));
    }
    cpu.push(sampler.window("total", &snap_start, &snap_end));

    let mut merged = Merged::default();
    for f in finals.iter().flatten() {
        merged.add(f)?;
    }
    merged.record_spreads();
    if stopped_by.is_empty() {
        stopped_by = "workers ended".into();
    }
    let info = RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at_epoch_ms: started_epoch_ms,
        duration_s: started.elapsed().as_secs_f64(),
        stopped_by,
        cpu,
        notes,
    };
    let mut report = Report::build(&plan, &merged, info);
    report.apply_slos(&slos);
    if let Some(dir) = &plan.out_dir {
        report.write(dir, &merged)?;
    }
    print!("{}", report.summary());
    if let Some(dir) = &plan.out_dir {
        println!(
            "report: {}/report.json, report.html, total.hlog, hlog/worker-*.hlog",
            dir.display()
        );
    }
    for o in &report.slo {
        println!("{}", o.line());
    }
    let failed: Vec<&str> = report
        .slo
        .iter()
        .filter(|o| !o.pass)
        .map(|o| o.key.as_str())
        .collect();
    if failed.is_empty() {
        Ok(0)
    } else {
        println!(
            "FAILED objectives ({}): {}",
            failed.len(),
            failed.join(", ")
        );
        Ok(EXIT_SLO_FAILED)
    }
}

/// Tells every worker to stop; the CPU window of the game (or hold) ends here.
fn stop(workers: &mut [WorkerProc], sampler: &mut Sampler, snap_stop: &mut Option<Snap>) -> State {
    *snap_stop = Some(sampler.snap());
    for wp in workers.iter_mut() {
        wp.send(&Command::Stop);
    }
    State::Stopping
}

/// Kills the edge process(es) named by `--kill-pid` / `--kill-cmd`; returns a note for the report.
fn kill(args: &RunArgs, q: i64) -> String {
    let mut done = Vec::new();
    for pid in &args.kill_pid {
        match sys::kill_pid(*pid) {
            Ok(()) => done.push(format!("SIGKILL pid {pid}")),
            Err(e) => done.push(format!("kill pid {pid} failed: {e}")),
        }
    }
    if let Some(cmd) = &args.kill_cmd {
        match std::process::Command::new("sh").arg("-c").arg(cmd).status() {
            Ok(s) => done.push(format!("ran `{cmd}` ({s})")),
            Err(e) => done.push(format!("`{cmd}` failed: {e}")),
        }
    }
    if done.is_empty() {
        done.push("nothing to kill: give --kill-pid or --kill-cmd".into());
    }
    format!(
        "reconnect storm: during question {q} at {} ms epoch: {}",
        crate::client::epoch_us() / 1000,
        done.join("; ")
    )
}

fn print_bar(state: State, progress: &[Progress], assigned: u64, elapsed: Duration) {
    let sum = |f: fn(&Progress) -> u64| progress.iter().map(f).sum::<u64>();
    let open = sum(|p| p.open);
    let ready = sum(|p| p.ready);
    let settled = sum(|p| p.settled);
    let frames = sum(|p| p.counters.frames_received);
    let errors = sum(|p| p.counters.errors);
    let missed = sum(|p| p.counters.missed_events);
    let q = progress.iter().map(|p| p.max_q_shown).max().unwrap_or(-1);
    let (done, label) = match state {
        State::Rooms => (0, "rooms"),
        State::Joining => (ready, "join"),
        State::Playing => (settled, "game"),
        State::Holding => (ready, "hold"),
        State::Stopping => (settled, "stop"),
    };
    let width = 24usize;
    let filled = if assigned == 0 {
        width
    } else {
        (done.min(assigned) as usize * width) / assigned as usize
    };
    let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
    print!(
        "\r\x1b[2K[{bar}] {label} {done}/{assigned} | open {open} | q {} | frames {frames} | errors {errors} | missed {missed} | {:.0}s",
        if q < 0 { "-".to_string() } else { q.to_string() },
        elapsed.as_secs_f64()
    );
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_path() {
        assert_eq!(
            parse_url("ws://127.0.0.1:8080/ws").unwrap(),
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/ws".into()
            }
        );
        assert_eq!(
            parse_url("ws://example.org/ws?region=eu").unwrap().path,
            "/ws?region=eu"
        );
        assert_eq!(
            parse_url("ws://example.org").unwrap(),
            Target {
                host: "example.org".into(),
                port: 80,
                path: "/".into()
            }
        );
        assert_eq!(parse_url("ws://[::1]:9000/ws").unwrap().host, "::1");
        assert!(parse_url("wss://example.org/ws")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_url("http://x").is_err());
    }

    #[test]
    fn watch_specs_name_one_or_more_pids() {
        let w = parse_watch(&["edge=10,11".into(), "redis=12".into()]).unwrap();
        assert_eq!(
            w.iter().map(|x| x.pid).collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        assert!(parse_watch(&["edge".into()]).is_err());
    }
}
