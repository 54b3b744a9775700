//! The engine's counters and histograms, rendered as Prometheus text on `/metrics`.
//!
//! Fire drift is `completion − due`: from the due time (Redis's clock) to the moment the fire
//! function's reply arrived, i.e. when the transition is in Redis. It is kept twice: as fixed
//! Prometheus buckets (cheap atomics) and in an HDR histogram (µs resolution) that the bench and the
//! tests read for exact percentiles.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Upper bounds (seconds) of the drift buckets.
const DRIFT_BUCKETS: [f64; 13] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the schedule lag buckets (XADD → the engine holds it).
const LAG_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0];

/// An HDR histogram of µs, 1 µs .. 1 h, 3 significant digits.
fn hdr() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A Prometheus histogram with fixed buckets, lock-free.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Buckets {
        Buckets {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe_us(&self, us: u64) {
        let secs = us as f64 / 1e6;
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// Everything `/metrics` shows. Shared by all tasks (`Arc<Metrics>`).
#[derive(Debug)]
pub struct Metrics {
    /// Schedules held in memory (waiting, or being fired), across owned partitions.
    pub timers_pending: AtomicI64,
    pub timers_fired_total: AtomicU64,
    pub timers_stale_total: AtomicU64,
    /// Fires that completed more than `late_ms` after their due time.
    pub timers_late_total: AtomicU64,
    /// Periodic ticks re-armed after a fire.
    pub timers_rearmed_total: AtomicU64,
    /// Entries that could not be fired (malformed, or failed permanently) and went to the
    /// dead-letter stream.
    pub timers_dead_total: AtomicU64,
    /// Schedules taken over from another consumer (XAUTOCLAIM/XCLAIM).
    pub timers_claimed_total: AtomicU64,
    pub timers_received_total: AtomicU64,
    pub fires_in_flight: AtomicI64,
    /// `score` fires that ran past `SCORE_SLOT_HOLD` and gave their score slot back early.
    pub score_slots_released_total: AtomicU64,
    pub partitions_owned: AtomicI64,
    /// Live rooms per partition (`ZCARD rooms:{pNN}`), counted by the partition's reader while this
    /// instance owns it, 0 otherwise; `rooms_live` is their sum.
    rooms_live: Vec<AtomicI64>,
    pub lease_acquired_total: AtomicU64,
    pub lease_lost_total: AtomicU64,
    pub lease_released_total: AtomicU64,
    pub redis_errors_total: AtomicU64,
    pub fire_errors_total: AtomicU64,
    pub drift: Buckets,
    pub schedule_lag: Buckets,
    /// Drift in µs at full resolution, for benches and tests.
    pub drift_hdr: Mutex<Histogram<u64>>,
    /// Schedule lag in µs (ms resolution: it comes from the entry id), for benches.
    pub lag_hdr: Mutex<Histogram<u64>>,
    /// Dispatch lateness in µs: from the due instant to the FCALL being handed to the connection
    /// (the engine's own share of the drift: timer wheel, scheduling, CPU starvation), for benches.
    pub dispatch_hdr: Mutex<Histogram<u64>>,
    pub late_ms: u64,
}

impl Metrics {
    pub fn new(late_ms: u64) -> Metrics {
        Metrics {
            timers_pending: AtomicI64::new(0),
            timers_fired_total: AtomicU64::new(0),
            timers_stale_total: AtomicU64::new(0),
            timers_late_total: AtomicU64::new(0),
            timers_rearmed_total: AtomicU64::new(0),
            timers_dead_total: AtomicU64::new(0),
            timers_claimed_total: AtomicU64::new(0),
            timers_received_total: AtomicU64::new(0),
            fires_in_flight: AtomicI64::new(0),
            score_slots_released_total: AtomicU64::new(0),
            partitions_owned: AtomicI64::new(0),
            rooms_live: (0..ringside_protocol::keys::PARTITIONS)
                .map(|_| AtomicI64::new(0))
                .collect(),
            lease_acquired_total: AtomicU64::new(0),
            lease_lost_total: AtomicU64::new(0),
            lease_released_total: AtomicU64::new(0),
            redis_errors_total: AtomicU64::new(0),
            fire_errors_total: AtomicU64::new(0),
            drift: Buckets::new(&DRIFT_BUCKETS),
            schedule_lag: Buckets::new(&LAG_BUCKETS),
            drift_hdr: Mutex::new(hdr()),
            lag_hdr: Mutex::new(hdr()),
            dispatch_hdr: Mutex::new(hdr()),
            late_ms,
        }
    }

    /// Records one completed fire `drift_us` after its due time (negative: early, counted as 0).
    pub fn record_drift(&self, drift_us: i64) {
        let us = drift_us.max(0) as u64;
        self.drift.observe_us(us);
        if us > self.late_ms * 1000 {
            self.timers_late_total.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut h) = self.drift_hdr.lock() {
            h.saturating_record(us.max(1));
        }
    }

    /// Records the time from a schedule's XADD to the engine holding it.
    pub fn record_lag_us(&self, us: u64) {
        self.schedule_lag.observe_us(us);
        if let Ok(mut h) = self.lag_hdr.lock() {
            h.saturating_record(us.max(1));
        }
    }

    /// Records how late a fire was handed to Redis.
    pub fn record_dispatch_us(&self, us: u64) {
        if let Ok(mut h) = self.dispatch_hdr.lock() {
            h.saturating_record(us.max(1));
        }
    }

    /// Empties the HDR histograms (the bench does it after its warm-up).
    pub fn reset_histograms(&self) {
        let _ = self.take_histograms();
    }

    /// The HDR histograms (drift, lag, dispatch) since the last take, leaving them empty.
    pub fn take_histograms(&self) -> (Histogram<u64>, Histogram<u64>, Histogram<u64>) {
        let take = |m: &Mutex<Histogram<u64>>| {
            let mut h = m.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *h, hdr())
        };
        (
            take(&self.drift_hdr),
            take(&self.lag_hdr),
            take(&self.dispatch_hdr),
        )
    }

    /// Sets partition `p`'s live-room count.
    pub fn set_rooms_live(&self, p: u32, n: i64) {
        if let Some(slot) = self.rooms_live.get(p as usize) {
            slot.store(n, Ordering::Relaxed);
        }
    }

    /// Live rooms in the partitions this instance owns.
    pub fn rooms_live(&self) -> i64 {
        self.rooms_live
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    pub fn redis_error(&self) {
        self.redis_errors_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the drift histogram (µs).
    pub fn drift_snapshot(&self) -> Histogram<u64> {
        self.drift_hdr
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Prometheus text exposition.
    pub fn render(&self, clock_offset_us: i64, ready: bool) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let load = |a: &AtomicI64| a.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "timers_pending",
            "Schedules held in memory for owned partitions.",
            load(&self.timers_pending),
        );
        gauge(
            &mut out,
            "timers_in_flight",
            "Fire calls sent and not yet answered.",
            load(&self.fires_in_flight),
        );
        gauge(
            &mut out,
            "partitions_owned",
            "Timer partitions whose lease this instance holds.",
            load(&self.partitions_owned),
        );
        gauge(
            &mut out,
            "rooms_live",
            "Live rooms (LOBBY to REVEAL) in the partitions this instance owns; sum over instances.",
            self.rooms_live(),
        );
        gauge(
            &mut out,
            "engine_ready",
            "1 when /readyz answers 200.",
            i64::from(ready),
        );
        gauge(
            &mut out,
            "redis_clock_offset_microseconds",
            "Estimated Redis clock minus local clock.",
            clock_offset_us,
        );
        counter(
            &mut out,
            "timers_fired_total",
            "Fires the function applied.",
            &self.timers_fired_total,
        );
        counter(
            &mut out,
            "timers_stale_total",
            "Fires the function found stale (no-op).",
            &self.timers_stale_total,
        );
        counter(
            &mut out,
            "timers_late_total",
            "Fires completed more than the late threshold after due.",
            &self.timers_late_total,
        );
        counter(
            &mut out,
            "timers_rearmed_total",
            "Periodic ticks re-armed.",
            &self.timers_rearmed_total,
        );
        counter(
            &mut out,
            "timers_dead_total",
            "Entries moved to the dead-letter stream.",
            &self.timers_dead_total,
        );
        counter(
            &mut out,
            "score_slots_released_total",
            "Score fires that ran past 1 s and gave their --max-score-in-flight slot back early (a slow or hung node).",
            &self.score_slots_released_total,
        );
        counter(
            &mut out,
            "timers_claimed_total",
            "Pending schedules taken over from another consumer.",
            &self.timers_claimed_total,
        );
        counter(
            &mut out,
            "timers_received_total",
            "Schedules read from the streams.",
            &self.timers_received_total,
        );
        counter(
            &mut out,
            "lease_acquired_total",
            "Partition leases acquired.",
            &self.lease_acquired_total,
        );
        counter(
            &mut out,
            "lease_lost_total",
            "Partition leases lost to expiry or another instance.",
            &self.lease_lost_total,
        );
        counter(
            &mut out,
            "lease_released_total",
            "Partition leases given back (rebalance, shutdown).",
            &self.lease_released_total,
        );
        counter(
            &mut out,
            "redis_errors_total",
            "Failed Redis commands (retried).",
            &self.redis_errors_total,
        );
        counter(
            &mut out,
            "fire_errors_total",
            "Fire calls the function rejected with an error.",
            &self.fire_errors_total,
        );
        self.drift.render(
            &mut out,
            "timer_fire_drift_seconds",
            "Fire completion minus due time.",
        );
        self.schedule_lag.render(
            &mut out,
            "timer_schedule_lag_seconds",
            "Stream append to the engine holding the schedule.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_bucketed_cumulatively_and_late_fires_are_counted() {
        let m = Metrics::new(50);
        m.record_drift(500);
        m.record_drift(7_000);
        m.record_drift(80_000);
        m.record_drift(-3);
        let text = m.render(0, true);
        assert!(
            text.contains("timer_fire_drift_seconds_bucket{le=\"0.001\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("timer_fire_drift_seconds_bucket{le=\"0.01\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("timer_fire_drift_seconds_bucket{le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(text.contains("timers_late_total 1"), "{text}");
        m.set_rooms_live(3, 5);
        m.set_rooms_live(63, 2);
        m.set_rooms_live(64, 9); // no such partition: ignored
        assert!(m.render(0, true).contains("\nrooms_live 7\n"));
        assert_eq!(m.drift_snapshot().len(), 4);
    }
}
