//! Redis's clock, as seen from here.
//!
//! A schedule's `due` comes from `TIME` inside a Redis Function, so "on time" means on Redis's clock.
//! The engine estimates `offset = redis_time − local_time` from a few `TIME` round trips (keeping the
//! sample with the shortest round trip, its error is at most half of it) and converts every due time
//! to a local [`Instant`]. On one machine the offset is ~0; across machines it absorbs NTP skew.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;

/// The estimated offset of Redis's clock, shared by every task.
#[derive(Debug, Default)]
pub struct RedisClock {
    offset_us: AtomicI64,
}

/// Local wall-clock time in µs since the epoch.
pub fn local_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl RedisClock {
    /// Redis's time now, µs since the epoch.
    pub fn now_us(&self) -> i64 {
        local_now_us() + self.offset_us.load(Ordering::Relaxed)
    }

    /// Redis's time now, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.now_us().div_euclid(1000)
    }

    /// The current offset estimate in µs (for /metrics).
    pub fn offset_us(&self) -> i64 {
        self.offset_us.load(Ordering::Relaxed)
    }

    /// The local instant at which Redis's clock reads `due_ms`. Past due times map to instants in
    /// the past (the scheduler fires them at once).
    pub fn instant_of(&self, due_ms: i64) -> Instant {
        let now = Instant::now();
        let delta_us = due_ms * 1000 - self.now_us();
        if delta_us >= 0 {
            now + Duration::from_micros(delta_us as u64)
        } else {
            now.checked_sub(Duration::from_micros(delta_us.unsigned_abs()))
                .unwrap_or(now)
        }
    }

    /// Takes `samples` TIME round trips and keeps the offset of the fastest. Returns the offset and
    /// that round trip.
    pub async fn sync<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        samples: usize,
    ) -> redis::RedisResult<(i64, Duration)> {
        let mut best: Option<(i64, Duration)> = None;
        for _ in 0..samples.max(1) {
            let t0 = Instant::now();
            let local0 = local_now_us();
            let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
            let rtt = t0.elapsed();
            let redis_us = secs * 1_000_000 + micros;
            let offset = redis_us - (local0 + rtt.as_micros() as i64 / 2);
            if best.is_none_or(|(_, r)| rtt < r) {
                best = Some((offset, rtt));
            }
        }
        let (offset, rtt) = best.expect("at least one sample");
        self.offset_us.store(offset, Ordering::Relaxed);
        Ok((offset, rtt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_map_to_instants_around_now() {
        let clock = RedisClock::default();
        let now_ms = clock.now_ms();
        let soon = clock.instant_of(now_ms + 1000);
        let past = clock.instant_of(now_ms - 1000);
        let now = Instant::now();
        assert!(soon > now + Duration::from_millis(900));
        assert!(past < now);
    }
}
