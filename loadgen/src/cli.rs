//! The command line: one subcommand per scenario, all sharing [`RunArgs`]; `hlog-merge` to merge interval
//! logs; the hidden `worker` the coordinator starts. Exit codes: 0 all objectives met, 1 the run could not
//! be made (bad flags, no workers), 2 an objective failed (a line names each).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::metrics::{merge_hlogs, Summary};
use crate::plan::{CodecChoice, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "ringside-loadgen",
    version,
    about = "Simulated Ringside players at scale, with an SLO exit code"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Open sockets (upgrade + session:ack), hold them for --hold-secs, close. Works against any WebSocket server.
    Connect(RunArgs),
    /// Hosts create --rooms rooms, players join them and idle in the lobby for --hold-secs.
    Lobby(RunArgs),
    /// Full games: create, join, start, answer every question, reveal, results, end.
    Game(RunArgs),
    /// One room with every player (--players, default 100000).
    Stadium(RunArgs),
    /// A game during which --kill-pid / --kill-cmd kills an edge process mid-question; everyone reconnects.
    ReconnectStorm(RunArgs),
    /// A game in which --slow-fraction of the players stop reading their socket after joining.
    SlowConsumers(RunArgs),
    /// Merge .hlog interval logs (e.g. every worker's) per tag and print the percentiles as JSON.
    HlogMerge {
        /// The .hlog files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write DIR/report.html again from DIR/report.json and DIR/total.hlog (what a run with --out DIR
    /// wrote): perf/runs/ keeps only those two.
    ReportHtml {
        /// A run's --out directory.
        dir: PathBuf,
    },
    /// A worker process (started by the coordinator; reads its plan on stdin).
    #[command(hide = true)]
    Worker,
}

impl Cmd {
    /// The scenario and its flags, for the scenario subcommands.
    pub fn scenario(&self) -> Option<(Scenario, &RunArgs)> {
        Some(match self {
            Cmd::Connect(a) => (Scenario::Connect, a),
            Cmd::Lobby(a) => (Scenario::Lobby, a),
            Cmd::Game(a) => (Scenario::Game, a),
            Cmd::Stadium(a) => (Scenario::Stadium, a),
            Cmd::ReconnectStorm(a) => (Scenario::ReconnectStorm, a),
            Cmd::SlowConsumers(a) => (Scenario::SlowConsumers, a),
            Cmd::HlogMerge { .. } | Cmd::ReportHtml { .. } | Cmd::Worker => return None,
        })
    }
}

/// Flags of every scenario (each scenario uses the ones that concern it).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The edge's WebSocket URL (ws:// only; TLS is not implemented yet).
    #[arg(
        long,
        env = "RINGSIDE_LOADGEN_URL",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub url: String,
    /// Subprotocol of the players: json, msgpack, or mixed (alternating).
    #[arg(long, value_enum, default_value_t = CodecChoice::Json)]
    pub codec: CodecChoice,

    // ── scale ──
    /// Rooms (one host each). Default 10; stadium: 1.
    #[arg(long)]
    pub rooms: Option<u32>,
    /// Players per room. Default 100.
    #[arg(long)]
    pub players_per_room: Option<u32>,
    /// Total players, spread over the rooms (overrides --players-per-room). Stadium default 100000.
    #[arg(long)]
    pub players: Option<u64>,
    /// Sockets of the `connect` scenario.
    #[arg(long, default_value_t = 1000)]
    pub sockets: u64,
    /// New connections per second over all workers (hosts and players).
    #[arg(long, default_value_t = 2000.0)]
    pub ramp_rate: f64,
    /// Worker processes. Default: sockets / --max-sockets-per-worker, rounded up.
    #[arg(long)]
    pub workers: Option<u32>,
    /// Sockets per worker process when --workers is not given (the fd limit is 20000 per process).
    #[arg(long, default_value_t = 15_000)]
    pub max_sockets_per_worker: u64,
    /// Source addresses to spread sockets over, e.g. 127.0.0.2-127.0.0.9 or a comma list. Default for a
    /// loopback target: 127.0.0.2…, one address per ~9.9K sockets (70 % of half the ephemeral port
    /// range), plus one.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Timeout of TCP connect and of the upgrade, each, in ms.
    #[arg(long, default_value_t = 5000)]
    pub connect_timeout_ms: u64,
    /// A socket's first connect (TCP + upgrade) is retried this many times, with back-off from 500 ms.
    #[arg(long, default_value_t = 2)]
    pub connect_retries: u32,

    // ── the game ──
    /// The quiz id hosts create rooms from.
    #[arg(long, default_value = "general-knowledge")]
    pub quiz: String,
    /// Stop each player after this many questions (0: play the whole quiz to game:end).
    #[arg(long, default_value_t = 0)]
    pub questions: u32,
    /// Room setting timePerQMs: every question's time limit, ms (1000–300000).
    #[arg(long)]
    pub time_per_q_ms: Option<u32>,
    /// Room setting countdownMs.
    #[arg(long)]
    pub countdown_ms: Option<u32>,
    /// Room setting revealPauseMs.
    #[arg(long)]
    pub reveal_pause_ms: Option<u32>,
    /// Median answer time as a fraction of the time limit (log-normal around it).
    #[arg(long, default_value_t = 0.4)]
    pub answer_median: f64,
    /// Sigma of the log-normal answer time.
    #[arg(long, default_value_t = 0.5)]
    pub answer_sigma: f64,
    /// Probability of picking option 0 (else a uniformly random other option). The load generator never
    /// knows the correct answer; the measured share of correct results is reported.
    #[arg(long, default_value_t = 0.7)]
    pub pick_first: f64,
    /// Fraction of questions a player leaves unanswered.
    #[arg(long, default_value_t = 0.0)]
    pub skip_answer: f64,
    /// Interval of `ping` events per socket, ms. Default: the server's pingInterval from session:ack.
    #[arg(long)]
    pub ping_interval_ms: Option<u64>,

    // ── durations ──
    /// Hard deadline of the whole run, seconds: everything stops then, whatever happens.
    #[arg(long, default_value_t = 300)]
    pub duration: u64,
    /// How long lobby/connect hold their sockets after everyone joined, seconds.
    #[arg(long, default_value_t = 10)]
    pub hold_secs: u64,
    /// Extra seconds the join phase may take beyond players / --ramp-rate.
    #[arg(long, default_value_t = 60)]
    pub join_timeout_secs: u64,

    // ── reconnects and failures ──
    /// Do not reconnect lost sockets.
    #[arg(long)]
    pub no_reconnect: bool,
    /// Reconnects are paced by the policy of the edge's session:ack (attempt n waits
    /// min(delayMs*2^n, 8 s) + uniform(0, jitterMs)); this replaces its jitterMs (without a policy:
    /// delayMs 500 and this jitter, default 0).
    #[arg(long)]
    pub reconnect_jitter_ms: Option<u64>,
    /// A player gives up reconnecting after N ms.
    #[arg(long, default_value_t = 30_000)]
    pub reconnect_give_up_ms: u64,
    /// reconnect-storm: SIGKILL this pid (repeatable), e.g. one edge process.
    #[arg(long)]
    pub kill_pid: Vec<u32>,
    /// reconnect-storm: run this shell command instead of / besides --kill-pid.
    #[arg(long)]
    pub kill_cmd: Option<String>,
    /// reconnect-storm: kill once this qIndex has been shown...
    #[arg(long, default_value_t = 1)]
    pub kill_at_question: u32,
    /// ...and this many ms have passed (default: 30 % of --time-per-q-ms, or 3000).
    #[arg(long)]
    pub kill_delay_ms: Option<u64>,
    /// slow-consumers: fraction of players that stop reading after their join.
    #[arg(long, default_value_t = 0.05)]
    pub slow_fraction: f64,
    /// slow-consumers: SO_RCVBUF of a slow player's socket (small, so it fills fast).
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf: u32,

    // ── output ──
    /// Directory for report.json, report.html, total.hlog and hlog/worker-N.hlog.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar (it is also off when stdout is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    /// An objective, e.g. answer_ack_p99_ms=10, question_spread_p99_ms<=100, players_joined>=1000 (repeatable).
    #[arg(long = "slo")]
    pub slo: Vec<String>,
    /// Objectives from a file: JSON {"key": value} or TOML-style `key = value` lines.
    #[arg(long)]
    pub slo_file: Option<PathBuf>,
    /// Do not check the default objectives (missed/duplicate/out-of-order events = 0).
    #[arg(long)]
    pub no_default_slos: bool,
    /// Report this process's CPU and memory next to ours: NAME=PID or NAME=PID1,PID2 (repeatable).
    #[arg(long = "watch-pid")]
    pub watch_pid: Vec<String>,
    /// Seed of every random choice (answer times, options, slow players, jitter).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `hlog-merge`: merges the files per tag and prints `{tag: percentiles}` as JSON.
pub fn hlog_merge(files: &[PathBuf]) -> anyhow::Result<()> {
    let texts = files
        .iter()
        .map(|f| std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge_hlogs(&texts)?;
    let out: std::collections::BTreeMap<String, Summary> = merged
        .iter()
        .map(|(k, h)| (k.clone(), Summary::of(h)))
        .collect();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `report-html DIR`: the report page of a finished run, from its `report.json` and `total.hlog` (the same
/// page the run wrote: the merged histograms are stored losslessly in `total.hlog`).
pub fn report_html(dir: &std::path::Path) -> anyhow::Result<()> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    };
    let report: crate::report::Report = serde_json::from_slice(&read("report.json")?)?;
    let total = String::from_utf8(read("total.hlog")?)?;
    let hists = crate::metrics::Hists::from_tagged(merge_hlogs(&[total])?)?;
    std::fs::write(dir.join("report.html"), report.html(&hists))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_game_command_parses() {
        let cli = Cli::try_parse_from([
            "ringside-loadgen",
            "game",
            "--url",
            "ws://127.0.0.1:8080/ws",
            "--rooms",
            "5",
            "--players-per-room",
            "40",
            "--questions",
            "3",
            "--slo",
            "answer_ack_p99_ms=10",
            "--slo",
            "missed_events=0",
            "--watch-pid",
            "edge=1",
        ])
        .unwrap();
        let (s, a) = cli.cmd.scenario().unwrap();
        assert_eq!(s, Scenario::Game);
        assert_eq!(
            (a.rooms, a.players_per_room, a.questions),
            (Some(5), Some(40), 3)
        );
        assert_eq!(a.slo.len(), 2);
    }
}
