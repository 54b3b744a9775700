//! Per-process counters, shared by all worker threads, rendered as Prometheus text on `/metrics`.
//!
//! Hot-path counters (frames, bytes) are added once per read or write syscall with a batch count,
//! not once per frame, so the atomics cost nothing next to the syscall.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::ws::handshake::FailReason;
use ringside_protocol::{CloseCode, ErrorCode};

/// Close codes with their own `protocol_closes_total{code}` series: the protocol's table. Others (a
/// client's own code echoed back, e.g. a browser's 1001) count as "other".
const CLOSE_CODES: &[CloseCode] = CloseCode::ALL;

/// The game layer's series (rooms, players, answers, refusals by code) and the send queues' bytes.
/// Process-wide statics, like the process they describe (one edge per process; several `--processes`
/// are several processes): the game layer counts through [`GAME`] without holding the transport's
/// [`Metrics`], and [`Metrics::render`] adds them. In a test process running several edges they add up.
#[derive(Debug)]
pub struct GameSeries {
    /// Rooms with at least one member on a worker thread of this process (a room with members on two
    /// threads counts twice; the number of live rooms is the control plane's `rooms_live`).
    pub rooms: AtomicI64,
    /// Player sessions (not hosts) on this process.
    pub players: AtomicI64,
    /// Host sessions on this process.
    pub hosts: AtomicI64,
    /// Answers Redis accepted (a `game:answer:ack` sent).
    pub answers_total: AtomicU64,
    /// `WAIT 1` sent to confirm answers on a replica (one per group of answers; `--answer-durability`).
    pub answer_waits_total: AtomicU64,
    /// Of those, the ones no replica confirmed in time (their answers got `unavailable`).
    pub answer_waits_failed_total: AtomicU64,
    /// Fair start: questions a worker sealed (or held back) ahead of their `showAt`.
    pub seals_total: AtomicU64,
    /// Their keys' leads over `showAt`, summed, ms (divided by `seals_total`: the mean head start).
    pub seal_lead_ms_total: AtomicU64,
    /// The lead of the last question sealed on this process, ms.
    pub seal_lead_ms: AtomicI64,
    /// `game:question:key` frames sent.
    pub seal_keys_total: AtomicU64,
    /// How long the last leaderboard seen on this process came after its room's reveal, ms: the time
    /// Redis took to score that question (decides whether reveals wait, `--reveal-hold-ms`).
    pub board_gap_ms: AtomicI64,
    /// `error` replies sent, by code (index in `ErrorCode::ALL`).
    refusals: [AtomicU64; ErrorCode::ALL.len()],
}

/// The game layer's series of this process.
pub static GAME: GameSeries = GameSeries {
    rooms: AtomicI64::new(0),
    players: AtomicI64::new(0),
    hosts: AtomicI64::new(0),
    answers_total: AtomicU64::new(0),
    answer_waits_total: AtomicU64::new(0),
    answer_waits_failed_total: AtomicU64::new(0),
    seals_total: AtomicU64::new(0),
    seal_lead_ms_total: AtomicU64::new(0),
    seal_lead_ms: AtomicI64::new(0),
    seal_keys_total: AtomicU64::new(0),
    board_gap_ms: AtomicI64::new(0),
    refusals: [const { AtomicU64::new(0) }; ErrorCode::ALL.len()],
};

impl GameSeries {
    /// Counts one `error` sent with `code`.
    pub fn refused(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.refusals[i].fetch_add(1, Relaxed);
        }
    }

    pub fn refusals(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.refusals[i].load(Relaxed))
    }

    fn render(&self, s: &mut String) {
        let gauges = [
            (
                "rooms",
                "Rooms with members on this process's worker threads (one per thread).",
                &self.rooms,
            ),
            ("players", "Player sessions on this process.", &self.players),
            ("hosts", "Host sessions on this process.", &self.hosts),
            (
                "board_gap_ms",
                "How long the last game:leaderboard seen on this process came after its reveal, ms (the last one of any room; 0 before the first).",
                &self.board_gap_ms,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                s,
                "# HELP ringside_edge_{name} {help}\n# TYPE ringside_edge_{name} gauge\nringside_edge_{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP ringside_edge_sendq_bytes Unwritten bytes in the send queues of this process.\n# TYPE ringside_edge_sendq_bytes gauge\nringside_edge_sendq_bytes {}",
            crate::sendq::queued_bytes_total()
        );
        let _ = writeln!(
            s,
            "# HELP ringside_edge_answers_total Answers accepted (game:answer:ack sent).\n# TYPE ringside_edge_answers_total counter\nringside_edge_answers_total {}",
            self.answers_total.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP ringside_edge_answer_waits_total WAIT 1 sent to confirm answers on a replica (one per group).\n# TYPE ringside_edge_answer_waits_total counter\nringside_edge_answer_waits_total {}\n# HELP ringside_edge_answer_waits_failed_total WAITs no replica confirmed in time (their answers got unavailable).\n# TYPE ringside_edge_answer_waits_failed_total counter\nringside_edge_answer_waits_failed_total {}",
            self.answer_waits_total.load(Relaxed),
            self.answer_waits_failed_total.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP ringside_edge_seals_total Questions sealed or held back ahead of their showAt (fair start).\n# TYPE ringside_edge_seals_total counter\nringside_edge_seals_total {}\n# HELP ringside_edge_seal_lead_ms_total Sum of their keys' leads over showAt, ms (/ seals_total: the mean head start).\n# TYPE ringside_edge_seal_lead_ms_total counter\nringside_edge_seal_lead_ms_total {}\n# HELP ringside_edge_seal_lead_ms The key's lead over showAt of the last question sealed here, ms.\n# TYPE ringside_edge_seal_lead_ms gauge\nringside_edge_seal_lead_ms {}\n# HELP ringside_edge_seal_keys_total game:question:key frames sent.\n# TYPE ringside_edge_seal_keys_total counter\nringside_edge_seal_keys_total {}",
            self.seals_total.load(Relaxed),
            self.seal_lead_ms_total.load(Relaxed),
            self.seal_lead_ms.load(Relaxed),
            self.seal_keys_total.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP ringside_edge_refusals_total Error replies sent to clients, by code (docs/protocol.md §4).\n# TYPE ringside_edge_refusals_total counter"
        );
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            let _ = writeln!(
                s,
                "ringside_edge_refusals_total{{code=\"{}\"}} {}",
                c.as_str(),
                self.refusals[i].load(Relaxed)
            );
        }
    }
}

/// The counters. One instance per process (`Arc`), aggregated across threads by atomics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicI64,
    pub connections_accepted_total: AtomicU64,
    handshakes_failed: [AtomicU64; FailReason::ALL.len()],
    pub frames_in_total: AtomicU64,
    pub frames_out_total: AtomicU64,
    pub bytes_out_total: AtomicU64,
    /// `sendmsg` calls that wrote WebSocket frames (the send syscalls per delivered frame).
    pub writes_total: AtomicU64,
    /// WebSocket keepalive pings queued by the sweep.
    pub pings_total: AtomicU64,
    /// Of those, the ones the sweep let go after their ride: no frame came to carry them.
    pub pings_released_total: AtomicU64,
    /// Due keepalives not sent: the client had acknowledged every byte of a recent frame.
    pub keepalives_acked_total: AtomicU64,
    pub slow_consumer_closes_total: AtomicU64,
    pub dropped_superseded_frames_total: AtomicU64,
    protocol_closes: [AtomicU64; CLOSE_CODES.len() + 1],
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn handshake_failed(&self, reason: FailReason) {
        let i = FailReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.handshakes_failed[i].fetch_add(1, Relaxed);
    }

    pub fn handshakes_failed(&self, reason: FailReason) -> u64 {
        let i = FailReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.handshakes_failed[i].load(Relaxed)
    }

    /// Counts a close frame sent by the server with `code`.
    pub fn protocol_close(&self, code: u16) {
        let i = CLOSE_CODES
            .iter()
            .position(|c| c.code() == code)
            .unwrap_or(CLOSE_CODES.len());
        self.protocol_closes[i].fetch_add(1, Relaxed);
    }

    pub fn protocol_closes(&self, code: u16) -> u64 {
        let i = CLOSE_CODES
            .iter()
            .position(|c| c.code() == code)
            .unwrap_or(CLOSE_CODES.len());
        self.protocol_closes[i].load(Relaxed)
    }

    /// [`Metrics::render`] with `process="i"` on every sample line when `process` is given (the
    /// `--processes` child index), so the processes behind one port can be told apart and summed.
    pub fn render_labeled(&self, process: Option<usize>) -> String {
        let text = self.render();
        match process {
            Some(i) => with_label(&text, "process", &i.to_string()),
            None => text,
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                s,
                "# HELP ringside_edge_{name} {help}\n# TYPE ringside_edge_{name} counter"
            );
            let _ = writeln!(s, "ringside_edge_{name} {v}");
        };
        counter(
            "connections_accepted_total",
            "TCP connections accepted.",
            self.connections_accepted_total.load(Relaxed),
        );
        counter(
            "frames_in_total",
            "WebSocket frames received.",
            self.frames_in_total.load(Relaxed),
        );
        counter(
            "frames_out_total",
            "WebSocket frames written.",
            self.frames_out_total.load(Relaxed),
        );
        counter(
            "bytes_out_total",
            "Bytes of WebSocket frames written.",
            self.bytes_out_total.load(Relaxed),
        );
        counter(
            "writes_total",
            "Send syscalls that wrote WebSocket frames.",
            self.writes_total.load(Relaxed),
        );
        counter(
            "pings_total",
            "WebSocket keepalive pings queued for sockets that sent nothing for --ping-interval.",
            self.pings_total.load(Relaxed),
        );
        counter(
            "pings_released_total",
            "Keepalive pings let go by the sweep after waiting for a frame to carry them (none came).",
            self.pings_released_total.load(Relaxed),
        );
        counter(
            "keepalives_acked_total",
            "Due keepalive pings not sent: the client, silent for --ping-interval, had acknowledged (TCP) every byte of a frame written to it within that time.",
            self.keepalives_acked_total.load(Relaxed),
        );
        counter(
            "slow_consumer_closes_total",
            "Sockets closed (4008) because their send queue passed the hard limit.",
            self.slow_consumer_closes_total.load(Relaxed),
        );
        counter(
            "dropped_superseded_frames_total",
            "Queued droppable frames replaced by a newer frame of the same kind.",
            self.dropped_superseded_frames_total.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP ringside_edge_connections_open Open WebSocket connections.\n# TYPE ringside_edge_connections_open gauge\nringside_edge_connections_open {}",
            self.connections_open.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP ringside_edge_handshakes_failed_total Refused or failed upgrades and TLS handshakes.\n# TYPE ringside_edge_handshakes_failed_total counter"
        );
        for (i, r) in FailReason::ALL.iter().enumerate() {
            let _ = writeln!(
                s,
                "ringside_edge_handshakes_failed_total{{reason=\"{}\"}} {}",
                r.label(),
                self.handshakes_failed[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP ringside_edge_protocol_closes_total Close frames sent by the server, by code.\n# TYPE ringside_edge_protocol_closes_total counter"
        );
        for (i, c) in CLOSE_CODES.iter().enumerate() {
            let _ = writeln!(
                s,
                "ringside_edge_protocol_closes_total{{code=\"{}\"}} {}",
                c.code(),
                self.protocol_closes[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "ringside_edge_protocol_closes_total{{code=\"other\"}} {}",
            self.protocol_closes[CLOSE_CODES.len()].load(Relaxed)
        );
        GAME.render(&mut s);
        LOOP_LAG.render(
            &mut s,
            "loop_lag_seconds",
            "How late each worker's loop clock fired (its event loop busy with other tasks): every 100 ms, every 10 ms for 1 s after a tick 5 ms late, every 1 s while the thread is idle.",
        );
        ANSWER_LATENCY.render(
            &mut s,
            "answer_seconds",
            "game:answer:submit read to its reply queued (Redis round trip and the Redis thread included).",
        );
        ANSWER_STAGES.render(&mut s);
        DOORBELL_WAIT.render(
            &mut s,
            "doorbell_wait_seconds",
            "A wake from the Redis thread (a reply, a room event) to the worker taking it from its doorbell (io_uring workers; each wake).",
        );
        ANSWER_BATCH.render(
            &mut s,
            "answer_batch_size",
            "Answers per Redis call: the answers of one room that reached the Redis thread together.",
        );
        s
    }
}

/// Upper bounds (µs) of [`Hist`]'s buckets; a last bucket takes the rest (`+Inf`).
const HIST_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A process-wide latency histogram with fixed buckets, rendered as a Prometheus histogram (seconds).
/// Recording is one relaxed add on one of 17 counters.
#[derive(Debug)]
pub struct Hist {
    buckets: [AtomicU64; HIST_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Hist {
    pub const fn new() -> Self {
        Hist {
            buckets: [const { AtomicU64::new(0) }; HIST_BOUNDS_US.len() + 1],
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn record(&self, d: std::time::Duration) {
        self.record_n(d, 1);
    }

    /// Records `n` samples of `d`.
    pub fn record_n(&self, d: std::time::Duration, n: u64) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = HIST_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(HIST_BOUNDS_US.len());
        self.buckets[i].fetch_add(n, Relaxed);
        self.sum_us.fetch_add(us.saturating_mul(n), Relaxed);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        header(s, name, help);
        self.series(s, name);
    }

    /// The buckets, sum and count of series `name`.
    fn series(&self, s: &mut String, name: &str) {
        let mut cum = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cum += b.load(Relaxed);
            match HIST_BOUNDS_US.get(i) {
                Some(us) => {
                    let le = *us as f64 / 1e6;
                    let _ = writeln!(s, "ringside_edge_{name}_bucket{{le=\"{le}\"}} {cum}");
                }
                None => {
                    let _ = writeln!(s, "ringside_edge_{name}_bucket{{le=\"+Inf\"}} {cum}");
                }
            }
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "ringside_edge_{name}_sum {sum}");
        let _ = writeln!(s, "ringside_edge_{name}_count {cum}");
    }
}

fn header(s: &mut String, name: &str, help: &str) {
    let _ = writeln!(
        s,
        "# HELP ringside_edge_{name} {help}\n# TYPE ringside_edge_{name} histogram"
    );
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

/// Lateness of every worker's loop clock ([`crate::worker::Worker::run_loop_clock`]: every 100 ms,
/// every 10 ms for a second after a tick ≥ 5 ms late, every second while the thread is idle).
pub static LOOP_LAG: Hist = Hist::new();
/// `game:answer:submit` read → its reply (ack or error) queued on the socket.
pub static ANSWER_LATENCY: Hist = Hist::new();

/// From a wake on another thread (a Redis reply, a room event) to the worker taking it from its
/// doorbell ([`crate::doorbell`]), for each wake.
pub static DOORBELL_WAIT: Hist = Hist::new();

/// Where an answer's time in the edge goes, stage by stage (`ringside_edge_answer_stage_seconds`):
/// the worker hands it to the Redis thread; it waits there for its room's call
/// ([`crate::game::answers`]); the call's round trip to Redis; the reply's way back to the worker
/// (with a replica's `WAIT` when answers wait for one, and the Redis thread's hop from the call to
/// the answer's job). `to_redis_thread` includes the room's route lookup when answers wait for a
/// replica. Every answer that reaches the Redis thread counts in the first three (but one whose call
/// was dropped: only in the first); `to_worker` counts the acks (a refusal's way back is not timed).
/// The stages do not add up to `answer_seconds`: the worker's own time before and after them is in
/// neither.
pub struct AnswerStages {
    pub to_redis_thread: Hist,
    pub batch_wait: Hist,
    pub redis_call: Hist,
    pub to_worker: Hist,
}

pub static ANSWER_STAGES: AnswerStages = AnswerStages {
    to_redis_thread: Hist::new(),
    batch_wait: Hist::new(),
    redis_call: Hist::new(),
    to_worker: Hist::new(),
};

impl AnswerStages {
    fn render(&self, s: &mut String) {
        let name = "answer_stage_seconds";
        header(
            s,
            name,
            "An answer's time in the edge by stage: to_redis_thread (worker to the Redis thread), batch_wait (for its room's call), redis_call (the call's round trip), to_worker (the reply back to the worker, a replica's WAIT included when on).",
        );
        for (stage, h) in [
            ("to_redis_thread", &self.to_redis_thread),
            ("batch_wait", &self.batch_wait),
            ("redis_call", &self.redis_call),
            ("to_worker", &self.to_worker),
        ] {
            let mut one = String::new();
            h.series(&mut one, name);
            s.push_str(&with_label(&one, "stage", stage));
        }
    }
}

/// Upper bounds of [`SizeHist`]'s buckets; a last bucket takes the rest (`+Inf`).
const SIZE_BOUNDS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// A process-wide histogram of counts (not durations), rendered as a Prometheus histogram.
#[derive(Debug)]
pub struct SizeHist {
    buckets: [AtomicU64; SIZE_BOUNDS.len() + 1],
    sum: AtomicU64,
}

impl SizeHist {
    pub const fn new() -> Self {
        SizeHist {
            buckets: [const { AtomicU64::new(0) }; SIZE_BOUNDS.len() + 1],
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, n: u64) {
        let i = SIZE_BOUNDS
            .iter()
            .position(|b| n <= *b)
            .unwrap_or(SIZE_BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(n, Relaxed);
    }

    /// The counts recorded, summed (for a batch histogram: the answers).
    pub fn sum(&self) -> u64 {
        self.sum.load(Relaxed)
    }

    /// Samples recorded in buckets up to `le` (Prometheus' cumulative bucket).
    pub fn at_most(&self, le: u64) -> u64 {
        SIZE_BOUNDS
            .iter()
            .zip(&self.buckets)
            .take_while(|(b, _)| **b <= le)
            .map(|(_, c)| c.load(Relaxed))
            .sum()
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(
            s,
            "# HELP ringside_edge_{name} {help}\n# TYPE ringside_edge_{name} histogram"
        );
        let mut cum = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cum += b.load(Relaxed);
            match SIZE_BOUNDS.get(i) {
                Some(le) => {
                    let _ = writeln!(s, "ringside_edge_{name}_bucket{{le=\"{le}\"}} {cum}");
                }
                None => {
                    let _ = writeln!(s, "ringside_edge_{name}_bucket{{le=\"+Inf\"}} {cum}");
                }
            }
        }
        let _ = writeln!(s, "ringside_edge_{name}_sum {}", self.sum.load(Relaxed));
        let _ = writeln!(s, "ringside_edge_{name}_count {cum}");
    }
}

impl Default for SizeHist {
    fn default() -> Self {
        Self::new()
    }
}

/// Answers per Redis call (`answer_batch`, or `answer_submit` for one), counted by the game layer.
pub static ANSWER_BATCH: SizeHist = SizeHist::new();

/// Adds `name="value"` (first) to the labels of every sample line of a Prometheus text exposition;
/// `# HELP`/`# TYPE` lines and blank lines pass through. `value` must not need escaping.
pub fn with_label(text: &str, name: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
        } else if let Some(i) = line.find(['{', ' ']) {
            let (metric, rest) = line.split_at(i);
            out.push_str(metric);
            match rest.strip_prefix('{') {
                Some(labels) if labels.starts_with('}') => {
                    let _ = write!(out, "{{{name}=\"{value}\"{labels}");
                }
                Some(labels) => {
                    let _ = write!(out, "{{{name}=\"{value}\",{labels}");
                }
                None => {
                    let _ = write!(out, "{{{name}=\"{value}\"}}{rest}");
                }
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_series() {
        let m = Metrics::new();
        m.handshake_failed(FailReason::Subprotocol);
        m.protocol_close(1012);
        m.protocol_close(3999);
        let t = m.render();
        assert!(t.contains("ringside_edge_handshakes_failed_total{reason=\"subprotocol\"} 1"));
        assert!(t.contains("ringside_edge_protocol_closes_total{code=\"1012\"} 1"));
        assert!(t.contains("ringside_edge_protocol_closes_total{code=\"other\"} 1"));
        assert!(t.contains("ringside_edge_connections_open 0"));
        GAME.refused(ErrorCode::NotHost);
        let t = m.render();
        for series in [
            "ringside_edge_rooms ",
            "ringside_edge_players ",
            "ringside_edge_hosts ",
            "ringside_edge_sendq_bytes ",
            "ringside_edge_answers_total ",
            "ringside_edge_seals_total ",
            "ringside_edge_seal_lead_ms ",
            "ringside_edge_seal_keys_total ",
            "ringside_edge_board_gap_ms ",
            "ringside_edge_refusals_total{code=\"bad_hash\"} ",
            "ringside_edge_answer_stage_seconds_bucket{stage=\"to_redis_thread\",le=\"0.0001\"} ",
            "ringside_edge_answer_stage_seconds_count{stage=\"redis_call\"} ",
            "ringside_edge_answer_stage_seconds_sum{stage=\"to_worker\"} ",
            "ringside_edge_answer_seconds_count ",
            "ringside_edge_doorbell_wait_seconds_count ",
        ] {
            assert!(t.contains(series), "{series} in {t}");
        }
        assert!(GAME.refusals(ErrorCode::NotHost) >= 1);
        assert!(!t.contains("ringside_edge_refusals_total{code=\"not_host\"} 0\n"));
        assert_eq!(m.render_labeled(None), m.render());
    }

    #[test]
    fn process_label_is_on_every_sample_line() {
        let m = Metrics::new();
        m.connections_open.fetch_add(2, Relaxed);
        m.protocol_close(1012);
        let t = m.render_labeled(Some(3));
        assert!(
            t.contains("ringside_edge_connections_open{process=\"3\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("ringside_edge_protocol_closes_total{process=\"3\",code=\"1012\"} 1\n"));
        assert!(t.contains("# TYPE ringside_edge_connections_open gauge\n"));
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains("{process=\"3\""), "{line}");
        }
        assert_eq!(
            with_label("a{} 1\nb{x=\"y\"} 2\n", "p", "0"),
            "a{p=\"0\"} 1\nb{p=\"0\",x=\"y\"} 2\n"
        );
    }
}
