//! Admission control: the edge measures its own saturation and, past the thresholds below, refuses
//! **new** work — an upgrade gets `503` with `Retry-After`, a `room:join` or `room:create` gets `error
//! overloaded` with `retryAfterMs` — while sockets that already have a session keep everything they
//! do (answers, reconnects, pings, room events). Thresholds, defaults and their reasons:
//! docs/admission.md.
//!
//! The gauges, all cheap to read (a few atomics or thread-local cells; nothing here walks sockets on
//! the hot path):
//! - **event-loop lag**, per worker thread: how late a 100 ms timer fires (1 s while the thread is
//!   idle), the smallest lateness of the last [`LAG_SAMPLES`] ticks (so one descheduled tick on a busy
//!   machine does not count, a saturated loop does);
//! - **queued bytes**, per worker thread: the bytes waiting in its sockets' send queues, summed by the
//!   once-a-second sweep;
//! - **Redis calls in flight** and their **latency** (an average over recent calls that forgets itself
//!   after [`LATENCY_FRESH_MS`] without a completed call), per process: an [`UpstreamGauge`] the game
//!   layer's Redis thread updates on every call, handed to the transport as a value;
//! - **file descriptors**, per process: the descriptors open when the server started plus its sockets,
//!   against the soft `RLIMIT_NOFILE`.
//!
//! The same gauges set the reconnect policy of `session:ack` ([`Admission::reconnect_policy`]): the
//! jitter window clients spread their reconnects over grows with the edge's load.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lateness samples of the loop clock ([`crate::worker::Worker::run_loop_clock`]) kept per worker, at
/// most one per [`LAG_TICK`] (one a second while the worker is idle); the gauge is their minimum.
pub const LAG_SAMPLES: usize = 3;
/// How often the loop clock samples the admission gauge (and its period while the loop keeps time).
pub const LAG_TICK: Duration = Duration::from_millis(100);
/// A latency average older than this (no call completed since) reads as 0.
pub const LATENCY_FRESH_MS: u64 = 2000;
/// `updated_ms` before the first completed call.
const NEVER: u64 = u64::MAX;

/// Why new work was refused: one `ringside_edge_admission_refusals_total{reason}` series each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    LoopLag,
    SendQueue,
    RedisInFlight,
    RedisLatency,
    Fds,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::LoopLag,
        Reason::SendQueue,
        Reason::RedisInFlight,
        Reason::RedisLatency,
        Reason::Fds,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::LoopLag => "loop_lag",
            Reason::SendQueue => "send_queue",
            Reason::RedisInFlight => "redis_in_flight",
            Reason::RedisLatency => "redis_latency",
            Reason::Fds => "fds",
        }
    }

    /// For humans (the 503 body, the error's message).
    pub fn describe(self) -> &'static str {
        match self {
            Reason::LoopLag => "event loop lagging",
            Reason::SendQueue => "send queues full",
            Reason::RedisInFlight => "too many Redis calls in flight",
            Reason::RedisLatency => "Redis answering slowly",
            Reason::Fds => "near the file descriptor limit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What was refused: the `what` label of the refusal counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A WebSocket upgrade (HTTP 503 + `Retry-After`).
    Upgrade,
    /// A `room:join` or `room:create` (`error overloaded` + `retryAfterMs`).
    Join,
    /// An upgrade that says it resumes a session (`/ws?resume=1`, a client coming back after losing its
    /// socket): refused only past [`RESUME_FACTOR`] times a threshold (or at the descriptor limit), so a
    /// reconnect storm's players get back before new players while the edge is busy. Claiming it gains a
    /// new player nothing more than a socket: its `room:join` is still a [`Work::Join`].
    Resume,
}

/// A resuming upgrade is refused only past this many times a gauge's threshold.
pub const RESUME_FACTOR: u64 = 2;

impl Work {
    pub const ALL: [Work; 3] = [Work::Upgrade, Work::Join, Work::Resume];

    pub fn label(self) -> &'static str {
        match self {
            Work::Upgrade => "upgrade",
            Work::Join => "join",
            Work::Resume => "resume",
        }
    }
}

/// A refusal: why, and how long the client should wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub retry_after_ms: u64,
}

impl Refusal {
    /// `Retry-After` in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }
}

/// The thresholds (flags `--admission-*`, env `RINGSIDE_EDGE_ADMISSION_*`). `0` turns one off.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AdmissionLimits {
    /// Refuse new work while a worker's event loop runs this many ms late (sustained). 0: off.
    #[arg(
        long = "admission-max-loop-lag-ms",
        env = "RINGSIDE_EDGE_ADMISSION_MAX_LOOP_LAG_MS",
        default_value_t = AdmissionLimits::DEFAULT.max_loop_lag_ms
    )]
    pub max_loop_lag_ms: u64,
    /// Refuse new work while a worker's send queues hold this many bytes in all. 0: off.
    #[arg(
        long = "admission-max-queued-bytes",
        env = "RINGSIDE_EDGE_ADMISSION_MAX_QUEUED_BYTES",
        default_value_t = AdmissionLimits::DEFAULT.max_queued_bytes
    )]
    pub max_queued_bytes: u64,
    /// Refuse new work while this many Redis calls of the process are in flight. 0: off.
    #[arg(
        long = "admission-max-redis-in-flight",
        env = "RINGSIDE_EDGE_ADMISSION_MAX_REDIS_IN_FLIGHT",
        default_value_t = AdmissionLimits::DEFAULT.max_redis_in_flight
    )]
    pub max_redis_in_flight: u64,
    /// Refuse new work while recent Redis calls take this many ms on average. 0: off.
    #[arg(
        long = "admission-max-redis-latency-ms",
        env = "RINGSIDE_EDGE_ADMISSION_MAX_REDIS_LATENCY_MS",
        default_value_t = AdmissionLimits::DEFAULT.max_redis_latency_ms
    )]
    pub max_redis_latency_ms: u64,
    /// Refuse new work past this percentage of the open-file limit (RLIMIT_NOFILE). 0: off.
    #[arg(
        long = "admission-max-fds-percent",
        env = "RINGSIDE_EDGE_ADMISSION_MAX_FDS_PERCENT",
        default_value_t = AdmissionLimits::DEFAULT.max_fds_percent
    )]
    pub max_fds_percent: u64,
    /// The least `retryAfterMs` / `Retry-After` of a refusal; a random share of it up to as much
    /// again is added, so refused clients do not come back together.
    #[arg(
        long = "admission-retry-after-ms",
        env = "RINGSIDE_EDGE_ADMISSION_RETRY_AFTER_MS",
        default_value_t = AdmissionLimits::DEFAULT.retry_after_ms
    )]
    pub retry_after_ms: u64,
    /// `session:ack`'s reconnect policy: the delay before a client's first reconnect, in ms.
    #[arg(
        long = "reconnect-delay-ms",
        env = "RINGSIDE_EDGE_RECONNECT_DELAY_MS",
        default_value_t = AdmissionLimits::DEFAULT.reconnect_delay_ms
    )]
    pub reconnect_delay_ms: u64,
    /// `session:ack`'s reconnect policy: the jitter window of an idle edge, in ms.
    #[arg(
        long = "reconnect-jitter-ms",
        env = "RINGSIDE_EDGE_RECONNECT_JITTER_MS",
        default_value_t = AdmissionLimits::DEFAULT.reconnect_jitter_ms
    )]
    pub reconnect_jitter_ms: u64,
    /// `session:ack`'s reconnect policy: the jitter window of an edge at a threshold, in ms.
    #[arg(
        long = "reconnect-jitter-max-ms",
        env = "RINGSIDE_EDGE_RECONNECT_JITTER_MAX_MS",
        default_value_t = AdmissionLimits::DEFAULT.reconnect_jitter_max_ms
    )]
    pub reconnect_jitter_max_ms: u64,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits::DEFAULT
    }
}

impl AdmissionLimits {
    /// The flags' defaults (and [`Default`]'s), in one place.
    pub const DEFAULT: AdmissionLimits = AdmissionLimits {
        max_loop_lag_ms: 250,
        max_queued_bytes: 64 << 20,
        max_redis_in_flight: 10_000,
        max_redis_latency_ms: 500,
        max_fds_percent: 90,
        retry_after_ms: 2000,
        reconnect_delay_ms: 250,
        reconnect_jitter_ms: 1000,
        reconnect_jitter_max_ms: 4000,
    };

    /// Every threshold off (echo benchmarks); the reconnect policy keeps its defaults.
    pub fn off() -> Self {
        AdmissionLimits {
            max_loop_lag_ms: 0,
            max_queued_bytes: 0,
            max_redis_in_flight: 0,
            max_redis_latency_ms: 0,
            max_fds_percent: 0,
            ..AdmissionLimits::default()
        }
    }

    /// The flag at fault, and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_fds_percent > 100 {
            return Err((
                "--admission-max-fds-percent",
                format!("must be 0..=100, got {}", self.max_fds_percent),
            ));
        }
        if self.retry_after_ms == 0 || self.retry_after_ms > 600_000 {
            return Err((
                "--admission-retry-after-ms",
                format!("must be 1..=600000, got {}", self.retry_after_ms),
            ));
        }
        if self.reconnect_jitter_max_ms < self.reconnect_jitter_ms {
            return Err((
                "--reconnect-jitter-max-ms",
                format!(
                    "must be at least --reconnect-jitter-ms ({}), got {}",
                    self.reconnect_jitter_ms, self.reconnect_jitter_max_ms
                ),
            ));
        }
        Ok(())
    }
}

/// Redis calls in flight and their recent latency, per process. The game layer's Redis thread
/// updates it ([`UpstreamGauge::begin`] per call); the transport only reads it.
#[derive(Debug)]
pub struct UpstreamGauge {
    in_flight: AtomicU64,
    /// Exponential average (weight 1/8) of completed calls' latency, in µs.
    latency_us: AtomicU64,
    /// When the average last moved, ms since `base` ([`NEVER`]: no call completed yet).
    updated_ms: AtomicU64,
    base: Instant,
}

impl Default for UpstreamGauge {
    fn default() -> Self {
        UpstreamGauge {
            in_flight: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            updated_ms: AtomicU64::new(NEVER),
            base: Instant::now(),
        }
    }
}

impl UpstreamGauge {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A call starts; it counts as in flight until the returned guard is dropped (completed or
    /// cancelled), which also records its latency.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight {
            gauge: self.clone(),
            started: Instant::now(),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// The recent average latency in ms (0 when no call completed in the last [`LATENCY_FRESH_MS`]).
    pub fn latency_ms(&self) -> u64 {
        if !self.fresh() {
            return 0;
        }
        self.latency_us.load(Relaxed) / 1000
    }

    /// Whether a call completed in the last [`LATENCY_FRESH_MS`].
    fn fresh(&self) -> bool {
        let updated = self.updated_ms.load(Relaxed);
        let now = self.base.elapsed().as_millis() as u64;
        updated != NEVER && now.saturating_sub(updated) <= LATENCY_FRESH_MS
    }

    fn record(&self, took: Duration) {
        let sample = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.latency_us.load(Relaxed);
        let now = self.base.elapsed().as_millis() as u64;
        // A race between two threads loses one sample of an average: harmless.
        let new = if self.fresh() {
            old - old / 8 + sample / 8
        } else {
            sample
        };
        self.latency_us.store(new, Relaxed);
        self.updated_ms.store(now, Relaxed);
    }
}

/// One Redis call in flight; see [`UpstreamGauge::begin`].
#[derive(Debug)]
pub struct InFlight {
    gauge: Arc<UpstreamGauge>,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.in_flight.fetch_sub(1, Relaxed);
        self.gauge.record(self.started.elapsed());
    }
}

/// One worker thread's own gauges (thread-local: read by its tasks without atomics).
#[derive(Debug, Default)]
pub struct LocalLoad {
    lag: Cell<[u64; LAG_SAMPLES]>,
    next: Cell<usize>,
    queued_bytes: Cell<u64>,
}

impl LocalLoad {
    /// The loop clock fired `late_ms` late.
    pub fn lag_sample(&self, late_ms: u64) {
        let mut s = self.lag.get();
        let i = self.next.get() % LAG_SAMPLES;
        s[i] = late_ms;
        self.lag.set(s);
        self.next.set(i + 1);
    }

    /// The sustained lag: the smallest of the last samples, in ms.
    pub fn lag_ms(&self) -> u64 {
        self.lag.get().into_iter().min().unwrap_or(0)
    }

    pub fn set_queued_bytes(&self, n: u64) {
        self.queued_bytes.set(n);
    }

    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.get()
    }
}

/// The process's admission state: thresholds, the process-wide gauges, and each worker's last
/// readings (for `/metrics`).
#[derive(Debug)]
pub struct Admission {
    pub limits: AdmissionLimits,
    upstream: Option<Arc<UpstreamGauge>>,
    /// Descriptors open when the server started (listeners, Redis, logs, ...).
    fd_base: usize,
    /// The soft RLIMIT_NOFILE (0: unknown, the check is off).
    fd_limit: u64,
    /// Accepted TCP connections whose task has not ended.
    sockets: AtomicUsize,
    /// Per worker: the last lag and queued-bytes readings, for `/metrics`.
    lag_ms: Vec<AtomicU64>,
    queued_bytes: Vec<AtomicU64>,
    refusals: [[AtomicU64; Work::ALL.len()]; Reason::ALL.len()],
    seed: AtomicU64,
}

impl Admission {
    /// `upstream`: the Redis gauge of the session factory, when it has one.
    pub fn new(
        limits: AdmissionLimits,
        workers: usize,
        upstream: Option<Arc<UpstreamGauge>>,
        fd_base: usize,
        fd_limit: u64,
    ) -> Self {
        Admission {
            limits,
            upstream,
            fd_base,
            fd_limit,
            sockets: AtomicUsize::new(0),
            lag_ms: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            queued_bytes: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            refusals: Default::default(),
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id())),
        }
    }

    /// An accepted connection's task started (`+1`) or ended (`-1`).
    pub fn socket(&self, delta: isize) {
        if delta > 0 {
            self.sockets.fetch_add(1, Relaxed);
        } else {
            self.sockets.fetch_sub(1, Relaxed);
        }
    }

    /// The Redis gauge, when the session factory has one.
    pub fn upstream(&self) -> Option<&UpstreamGauge> {
        self.upstream.as_deref()
    }

    /// Descriptors in use, estimated: those at start plus the sockets.
    pub fn fds(&self) -> usize {
        self.fd_base + self.sockets.load(Relaxed)
    }

    /// Publishes a worker's readings for `/metrics`.
    pub fn publish(&self, worker: usize, local: &LocalLoad) {
        if let Some(a) = self.lag_ms.get(worker) {
            a.store(local.lag_ms(), Relaxed);
        }
        if let Some(a) = self.queued_bytes.get(worker) {
            a.store(local.queued_bytes(), Relaxed);
        }
    }

    /// The first threshold passed, if any (the order of [`Reason::ALL`]).
    pub fn over(&self, local: &LocalLoad) -> Option<Reason> {
        self.over_by(local, 1)
    }

    /// Which gauge is past `factor` times its threshold (the descriptor limit is never scaled: past it
    /// the edge cannot answer its probes), if any.
    fn over_by(&self, local: &LocalLoad, factor: u64) -> Option<Reason> {
        let l = &self.limits;
        let past = |v: u64, max: u64| max > 0 && v >= max.saturating_mul(factor);
        if past(local.lag_ms(), l.max_loop_lag_ms) {
            return Some(Reason::LoopLag);
        }
        if past(local.queued_bytes(), l.max_queued_bytes) {
            return Some(Reason::SendQueue);
        }
        if let Some(u) = &self.upstream {
            if past(u.in_flight(), l.max_redis_in_flight) {
                return Some(Reason::RedisInFlight);
            }
            if past(u.latency_ms(), l.max_redis_latency_ms) {
                return Some(Reason::RedisLatency);
            }
        }
        if l.max_fds_percent > 0
            && self.fd_limit > 0
            && (self.fds() as u64) * 100 >= self.fd_limit * l.max_fds_percent
        {
            return Some(Reason::Fds);
        }
        None
    }

    /// Admits `what`, or refuses it and counts the refusal.
    pub fn admit(&self, what: Work, local: &LocalLoad) -> Result<(), Refusal> {
        let factor = if what == Work::Resume {
            RESUME_FACTOR
        } else {
            1
        };
        let Some(reason) = self.over_by(local, factor) else {
            return Ok(());
        };
        self.refusals[reason.index()][what as usize].fetch_add(1, Relaxed);
        let base = self.limits.retry_after_ms;
        Err(Refusal {
            reason,
            retry_after_ms: base + self.random() % (base + 1),
        })
    }

    /// Refusals so far of `what` for `reason`.
    pub fn refusals(&self, reason: Reason, what: Work) -> u64 {
        self.refusals[reason.index()][what as usize].load(Relaxed)
    }

    /// The edge's load as the largest share of a threshold any gauge has reached, 0.0..=1.0.
    pub fn load(&self, local: &LocalLoad) -> f64 {
        let l = &self.limits;
        let share = |v: u64, max: u64| {
            if max == 0 {
                0.0
            } else {
                v as f64 / max as f64
            }
        };
        let mut m = share(local.lag_ms(), l.max_loop_lag_ms)
            .max(share(local.queued_bytes(), l.max_queued_bytes));
        if let Some(u) = &self.upstream {
            m = m
                .max(share(u.in_flight(), l.max_redis_in_flight))
                .max(share(u.latency_ms(), l.max_redis_latency_ms));
        }
        if self.fd_limit > 0 && l.max_fds_percent > 0 {
            m = m.max(share(
                self.fds() as u64 * 100,
                self.fd_limit * l.max_fds_percent,
            ));
        }
        m.clamp(0.0, 1.0)
    }

    /// `session:ack`'s reconnect policy: `(delayMs, jitterMs)`, the jitter window growing linearly
    /// from `--reconnect-jitter-ms` (idle) to `--reconnect-jitter-max-ms` (at a threshold).
    pub fn reconnect_policy(&self, local: &LocalLoad) -> (u64, u64) {
        let l = &self.limits;
        let span = l.reconnect_jitter_max_ms - l.reconnect_jitter_ms;
        let jitter = l.reconnect_jitter_ms + (span as f64 * self.load(local)).round() as u64;
        (l.reconnect_delay_ms, jitter)
    }

    /// Prometheus text of the gauges and refusal counters (appended to `/metrics`).
    pub fn render(&self, s: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            s,
            "# HELP ringside_edge_admission_refusals_total New work refused by admission control, by reason and what (upgrade, resume: HTTP 503; join: error overloaded).\n# TYPE ringside_edge_admission_refusals_total counter"
        );
        for r in Reason::ALL {
            for w in Work::ALL {
                let _ = writeln!(
                    s,
                    "ringside_edge_admission_refusals_total{{reason=\"{}\",what=\"{}\"}} {}",
                    r.label(),
                    w.label(),
                    self.refusals(r, w)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP ringside_edge_loop_lag_ms Sustained lateness of each worker's loop clock (100 ms; 1 s while idle).\n# TYPE ringside_edge_loop_lag_ms gauge"
        );
        for (i, v) in self.lag_ms.iter().enumerate() {
            let _ = writeln!(
                s,
                "ringside_edge_loop_lag_ms{{worker=\"{i}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP ringside_edge_queued_bytes Bytes in each worker's send queues (the last sweep).\n# TYPE ringside_edge_queued_bytes gauge"
        );
        for (i, v) in self.queued_bytes.iter().enumerate() {
            let _ = writeln!(
                s,
                "ringside_edge_queued_bytes{{worker=\"{i}\"}} {}",
                v.load(Relaxed)
            );
        }
        if let Some(u) = &self.upstream {
            let _ = writeln!(
                s,
                "# HELP ringside_edge_redis_in_flight Redis calls of the game layer in flight.\n# TYPE ringside_edge_redis_in_flight gauge\nringside_edge_redis_in_flight {}",
                u.in_flight()
            );
            let _ = writeln!(
                s,
                "# HELP ringside_edge_redis_latency_ms Recent average latency of the game layer's Redis calls.\n# TYPE ringside_edge_redis_latency_ms gauge\nringside_edge_redis_latency_ms {}",
                u.latency_ms()
            );
        }
        let _ = writeln!(
            s,
            "# HELP ringside_edge_fds_estimate File descriptors in use (open at start plus sockets).\n# TYPE ringside_edge_fds_estimate gauge\nringside_edge_fds_estimate {}",
            self.fds()
        );
        let _ = writeln!(
            s,
            "# HELP ringside_edge_fds_limit The soft RLIMIT_NOFILE.\n# TYPE ringside_edge_fds_limit gauge\nringside_edge_fds_limit {}",
            self.fd_limit
        );
    }

    /// A cheap pseudo-random number (splitmix64 over a shared counter): jitter, not secrets.
    fn random(&self) -> u64 {
        let mut z = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limits: AdmissionLimits, upstream: Option<Arc<UpstreamGauge>>) -> Admission {
        Admission::new(limits, 1, upstream, 10, 1000)
    }

    #[test]
    fn refuses_past_each_threshold_and_counts_it() {
        let up = UpstreamGauge::new();
        let a = admission(
            AdmissionLimits {
                max_loop_lag_ms: 100,
                max_queued_bytes: 1000,
                max_redis_in_flight: 2,
                ..AdmissionLimits::default()
            },
            Some(up.clone()),
        );
        let local = LocalLoad::default();
        assert_eq!(a.admit(Work::Join, &local), Ok(()));
        // One late tick is not sustained lag; three are.
        local.lag_sample(500);
        assert_eq!(a.over(&local), None);
        local.lag_sample(500);
        local.lag_sample(500);
        let r = a.admit(Work::Upgrade, &local).unwrap_err();
        assert_eq!(r.reason, Reason::LoopLag);
        assert!((2000..=4000).contains(&r.retry_after_ms), "{r:?}");
        assert!(r.retry_after_secs() >= 2);
        assert_eq!(a.refusals(Reason::LoopLag, Work::Upgrade), 1);
        for _ in 0..LAG_SAMPLES {
            local.lag_sample(0);
        }
        local.set_queued_bytes(1000);
        assert_eq!(a.over(&local), Some(Reason::SendQueue));
        local.set_queued_bytes(0);
        let calls = [up.begin(), up.begin()];
        assert_eq!(a.over(&local), Some(Reason::RedisInFlight));
        drop(calls);
        assert_eq!(up.in_flight(), 0);
        assert_eq!(a.over(&local), None);
    }

    #[test]
    fn a_resuming_upgrade_is_refused_only_past_twice_a_threshold() {
        let a = admission(
            AdmissionLimits {
                max_loop_lag_ms: 100,
                max_queued_bytes: 1000,
                ..AdmissionLimits::default()
            },
            None,
        );
        let local = LocalLoad::default();
        local.set_queued_bytes(1500);
        assert_eq!(
            a.admit(Work::Upgrade, &local).unwrap_err().reason,
            Reason::SendQueue
        );
        assert_eq!(
            a.admit(Work::Resume, &local),
            Ok(()),
            "1.5x: a resume passes"
        );
        local.set_queued_bytes(2000);
        let r = a.admit(Work::Resume, &local).unwrap_err();
        assert_eq!(r.reason, Reason::SendQueue);
        assert_eq!(a.refusals(Reason::SendQueue, Work::Resume), 1);
        // the descriptor limit is not scaled
        local.set_queued_bytes(0);
        for _ in 0..900 {
            a.socket(1);
        }
        assert_eq!(
            a.admit(Work::Resume, &local).unwrap_err().reason,
            Reason::Fds
        );
    }

    #[test]
    fn fds_count_the_sockets_against_the_limit() {
        let a = admission(AdmissionLimits::default(), None);
        let local = LocalLoad::default();
        for _ in 0..889 {
            a.socket(1);
        }
        assert_eq!(a.over(&local), None, "899 of 1000 fds is under 90 %");
        a.socket(1);
        assert_eq!(a.over(&local), Some(Reason::Fds));
        a.socket(-1);
        assert_eq!(a.over(&local), None);
    }

    #[test]
    fn off_refuses_nothing_and_the_jitter_window_grows_with_load() {
        let a = admission(AdmissionLimits::off(), None);
        let local = LocalLoad::default();
        for _ in 0..LAG_SAMPLES {
            local.lag_sample(10_000);
        }
        local.set_queued_bytes(u64::MAX / 2);
        assert_eq!(a.over(&local), None);
        assert_eq!(a.reconnect_policy(&local), (250, 1000));

        // No descriptors counted here: the load comes from the lag alone.
        let a = Admission::new(AdmissionLimits::default(), 1, None, 0, 0);
        let idle = LocalLoad::default();
        let (delay, low) = a.reconnect_policy(&idle);
        for _ in 0..LAG_SAMPLES {
            local.lag_sample(125);
        }
        local.set_queued_bytes(0);
        let (_, half) = a.reconnect_policy(&local);
        for _ in 0..LAG_SAMPLES {
            local.lag_sample(1000);
        }
        let (_, full) = a.reconnect_policy(&local);
        assert_eq!((delay, low, half, full), (250, 1000, 2500, 4000));
    }

    #[test]
    fn latency_is_averaged_and_forgotten() {
        let up = UpstreamGauge::new();
        up.record(Duration::from_millis(800));
        assert_eq!(up.latency_ms(), 800, "the first sample after a quiet spell");
        up.record(Duration::from_millis(0));
        assert_eq!(up.latency_ms(), 700);
        let stale = UpstreamGauge {
            base: Instant::now() - Duration::from_millis(LATENCY_FRESH_MS + 100),
            ..UpstreamGauge::default()
        };
        stale.latency_us.store(900_000, Relaxed);
        stale.updated_ms.store(0, Relaxed);
        assert_eq!(stale.latency_ms(), 0, "no call for a while: no latency");
    }
}
