//! Limits per source address, on top of the per-socket event rate: `room:join` attempts, and failed
//! room-code lookups (`room_not_found` on `room:join` or `reconnect:attempt`). One socket per guess would
//! otherwise multiply the per-socket limit by the number of sockets (issue 11: 10 sockets made 200 guesses
//! in 25 ms). Only joins and reconnects look here; answers and every other event never do.
//!
//! The two buckets have opposite jobs. Classrooms and stadiums put hundreds of phones behind one NAT
//! address, so the join bucket is generous (default 50/s, burst 200). A code guesser is mostly refused with
//! `room_not_found`, while real players almost never are, so failed lookups get a tight bucket (default 20
//! per 10 s, burst 20): an address in debt gets `rate_limited` on its next join or reconnect until the
//! debt is paid back. The bucket is checked before the FCALL and charged after the reply, so a burst of
//! concurrent guesses from many sockets can overshoot by the number in flight; the debt is then capped at
//! one burst, so the lockout lasts at most two windows.
//!
//! The table is per process, shared by its worker threads: 16 shards, each a mutex around two
//! generations of a hash map (the current one and the previous one). An address seen again moves to the
//! current generation; when the current one is full it becomes the previous one and the old previous one
//! is dropped. So memory is bounded by `--addr-table-size` entries whatever the number of addresses, each
//! operation is O(1), and what is forgotten is only the state of addresses not seen for a whole generation
//! (a forgotten address starts again with full buckets). IPv6 addresses count per /64 (one host's usual
//! allocation); IPv4-mapped IPv6 addresses count as their IPv4 address.
//!
//! With `--processes N`, SO_REUSEPORT spreads one address's sockets over the processes, so the effective
//! limit per address is up to N times the configured one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const DEFAULT_JOINS_PER_SEC: f64 = 50.0;
const DEFAULT_JOIN_BURST: u32 = 200;
const DEFAULT_CODE_MISSES: u32 = 20;
const DEFAULT_CODE_MISS_WINDOW_SECS: u32 = 10;
const DEFAULT_TABLE_SIZE: usize = 65_536;
const SHARDS: usize = 16;

/// The per-address limits (flags with `RINGSIDE_EDGE_ADDR_*` env fallbacks; docs/protocol.md §3).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct AddressLimits {
    /// `room:join` attempts per second per source address, per edge process (0: no join limit).
    #[arg(long = "addr-joins-per-sec", env = "RINGSIDE_EDGE_ADDR_JOINS_PER_SEC", default_value_t = DEFAULT_JOINS_PER_SEC)]
    pub joins_per_sec: f64,
    /// Burst of `room:join` attempts per source address.
    #[arg(long = "addr-join-burst", env = "RINGSIDE_EDGE_ADDR_JOIN_BURST", default_value_t = DEFAULT_JOIN_BURST)]
    pub join_burst: u32,
    /// Failed room-code lookups (`room_not_found`) per window per source address, per edge process; also
    /// the burst (0: no limit).
    #[arg(long = "addr-code-misses", env = "RINGSIDE_EDGE_ADDR_CODE_MISSES", default_value_t = DEFAULT_CODE_MISSES)]
    pub code_misses: u32,
    /// The window of --addr-code-misses, in seconds.
    #[arg(long = "addr-code-miss-window-secs", env = "RINGSIDE_EDGE_ADDR_CODE_MISS_WINDOW_SECS", default_value_t = DEFAULT_CODE_MISS_WINDOW_SECS)]
    pub code_miss_window_secs: u32,
    /// Source addresses remembered per process (older ones are forgotten first).
    #[arg(long = "addr-table-size", env = "RINGSIDE_EDGE_ADDR_TABLE_SIZE", default_value_t = DEFAULT_TABLE_SIZE)]
    pub table_size: usize,
}

impl Default for AddressLimits {
    fn default() -> Self {
        AddressLimits {
            joins_per_sec: DEFAULT_JOINS_PER_SEC,
            join_burst: DEFAULT_JOIN_BURST,
            code_misses: DEFAULT_CODE_MISSES,
            code_miss_window_secs: DEFAULT_CODE_MISS_WINDOW_SECS,
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

impl AddressLimits {
    /// No per-address limit at all.
    pub fn off() -> AddressLimits {
        AddressLimits {
            joins_per_sec: 0.0,
            code_misses: 0,
            ..AddressLimits::default()
        }
    }

    /// Precise complaints about values that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.joins_per_sec >= 0.0 && self.joins_per_sec.is_finite()) {
            return Err(format!(
                "--addr-joins-per-sec must be a finite number ≥ 0, not {}",
                self.joins_per_sec
            ));
        }
        if self.joins_on() && self.join_burst == 0 {
            return Err("--addr-join-burst must be ≥ 1 while --addr-joins-per-sec is on".into());
        }
        if self.code_misses > 0 && self.code_miss_window_secs == 0 {
            return Err(
                "--addr-code-miss-window-secs must be ≥ 1 while --addr-code-misses is on".into(),
            );
        }
        Ok(())
    }

    fn joins_on(&self) -> bool {
        self.joins_per_sec > 0.0
    }

    fn misses_on(&self) -> bool {
        self.code_misses > 0 && self.code_miss_window_secs > 0
    }

    /// Refill rate of the failed-lookup bucket, per second.
    fn miss_rate(&self) -> f64 {
        f64::from(self.code_misses) / f64::from(self.code_miss_window_secs.max(1))
    }
}

/// Why an address was refused, with the wait until it may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many `room:join` attempts.
    Joins { retry_after_ms: u64 },
    /// Too many failed room-code lookups.
    CodeMisses { retry_after_ms: u64 },
}

impl Refusal {
    pub fn retry_after_ms(self) -> u64 {
        match self {
            Refusal::Joins { retry_after_ms } | Refusal::CodeMisses { retry_after_ms } => {
                retry_after_ms
            }
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Joins { .. } => "too many room:join attempts from this address",
            Refusal::CodeMisses { .. } => "too many unknown game codes from this address",
        }
    }
}

/// One address's buckets.
#[derive(Debug, Clone, Copy)]
struct Entry {
    joins: f32,
    misses: f32,
    /// When the buckets were last refilled, ms since the limiter's epoch.
    at_ms: u64,
}

#[derive(Default)]
struct Shard {
    current: HashMap<u128, Entry>,
    previous: HashMap<u128, Entry>,
}

/// See the module docs. One per process, shared by the worker threads.
pub struct AddressLimiter {
    limits: AddressLimits,
    /// Entries per generation per shard.
    generation_cap: usize,
    epoch: Instant,
    shards: Box<[Mutex<Shard>]>,
}

/// The table key of an address: IPv4 (also IPv4-mapped IPv6) as itself, IPv6 by its /64.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
    }
}

impl AddressLimiter {
    /// `None` when both limits are off.
    pub fn new(limits: AddressLimits) -> Option<AddressLimiter> {
        if !limits.joins_on() && !limits.misses_on() {
            return None;
        }
        let generation_cap = (limits.table_size / SHARDS / 2).max(1);
        Some(AddressLimiter {
            limits,
            generation_cap,
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        })
    }

    /// Runs `f` on the refilled entry of `ip`.
    fn with_entry<T>(&self, ip: IpAddr, f: impl FnOnce(&mut Entry, &AddressLimits) -> T) -> T {
        let k = key(ip);
        let h = (k as u64 ^ (k >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let shard = &self.shards[(h >> 60) as usize % SHARDS];
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let l = &self.limits;
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !s.current.contains_key(&k) {
            let moved = s.previous.remove(&k);
            if s.current.len() >= self.generation_cap {
                let Shard { current, previous } = &mut *s;
                std::mem::swap(current, previous);
                current.clear();
            }
            s.current.insert(
                k,
                moved.unwrap_or(Entry {
                    joins: l.join_burst as f32,
                    misses: l.code_misses as f32,
                    at_ms: now_ms,
                }),
            );
        }
        let e = s.current.get_mut(&k).expect("inserted above");
        let dt = now_ms.saturating_sub(e.at_ms) as f64 / 1000.0;
        e.at_ms = now_ms;
        e.joins = (f64::from(e.joins) + dt * l.joins_per_sec).min(f64::from(l.join_burst)) as f32;
        e.misses = (f64::from(e.misses) + dt * l.miss_rate()).min(f64::from(l.code_misses)) as f32;
        f(e, l)
    }

    fn wait_ms(tokens: f32, rate: f64) -> u64 {
        ((1.0 - f64::from(tokens)) / rate * 1000.0).ceil().max(1.0) as u64
    }

    /// A `room:join` from `ip`: refused while the address is in failed-lookup debt or out of join tokens;
    /// else takes a join token.
    pub fn join(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.with_entry(ip, |e, l| {
            if l.misses_on() && e.misses < 1.0 {
                return Err(Refusal::CodeMisses {
                    retry_after_ms: Self::wait_ms(e.misses, l.miss_rate()),
                });
            }
            if l.joins_on() {
                if e.joins < 1.0 {
                    return Err(Refusal::Joins {
                        retry_after_ms: Self::wait_ms(e.joins, l.joins_per_sec),
                    });
                }
                e.joins -= 1.0;
            }
            Ok(())
        })
    }

    /// A room-code lookup other than a join (`reconnect:attempt`): refused while the address is in
    /// failed-lookup debt.
    pub fn lookup(&self, ip: IpAddr) -> Result<(), Refusal> {
        if !self.limits.misses_on() {
            return Ok(());
        }
        self.with_entry(ip, |e, l| {
            if e.misses < 1.0 {
                return Err(Refusal::CodeMisses {
                    retry_after_ms: Self::wait_ms(e.misses, l.miss_rate()),
                });
            }
            Ok(())
        })
    }

    /// A lookup from `ip` answered `room_not_found`: one failed-lookup token (the debt is capped at one
    /// burst).
    pub fn missed(&self, ip: IpAddr) {
        if !self.limits.misses_on() {
            return;
        }
        self.with_entry(ip, |e, l| {
            e.misses = (e.misses - 1.0).max(-(l.code_misses as f32));
        });
    }

    /// Addresses remembered now (both generations).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.current.len() + s.previous.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn joins_are_limited_to_the_burst_then_the_rate() {
        let l = AddressLimiter::new(AddressLimits {
            joins_per_sec: 1.0,
            join_burst: 3,
            ..AddressLimits::default()
        })
        .unwrap();
        for _ in 0..3 {
            l.join(ip("10.0.0.1")).unwrap();
        }
        let r = l.join(ip("10.0.0.1")).unwrap_err();
        assert!(
            matches!(r, Refusal::Joins { retry_after_ms } if (1..=1000).contains(&retry_after_ms))
        );
        // Another address is unaffected.
        l.join(ip("10.0.0.2")).unwrap();
    }

    #[test]
    fn failed_lookups_lock_joins_and_reconnects_of_that_address_only() {
        let l = AddressLimiter::new(AddressLimits::default()).unwrap();
        let a = ip("10.0.0.1");
        for _ in 0..20 {
            l.join(a).unwrap();
            l.missed(a);
        }
        let r = l.join(a).unwrap_err();
        // 20 per 10 s: a token every 500 ms.
        assert!(
            matches!(r, Refusal::CodeMisses { retry_after_ms } if (400..=500).contains(&retry_after_ms)),
            "{r:?}"
        );
        assert!(l.lookup(a).is_err());
        assert!(l.join(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn the_debt_of_concurrent_misses_is_capped_at_one_burst() {
        let l = AddressLimiter::new(AddressLimits::default()).unwrap();
        let a = ip("10.0.0.1");
        for _ in 0..500 {
            l.missed(a);
        }
        let wait = l.lookup(a).unwrap_err().retry_after_ms();
        assert!((10_000..=10_500).contains(&wait), "{wait}");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key(ip("2001:db8::1")), key(ip("2001:db8::ffff:2")));
        assert_ne!(key(ip("2001:db8::1")), key(ip("2001:db8:0:1::1")));
        assert_eq!(key(ip("::ffff:10.0.0.1")), key(ip("10.0.0.1")));
    }

    #[test]
    fn the_table_stays_bounded_under_many_addresses() {
        let l = AddressLimiter::new(AddressLimits {
            table_size: 1024,
            ..AddressLimits::default()
        })
        .unwrap();
        for i in 0..100_000u32 {
            let _ = l.join(IpAddr::V4(i.into()));
        }
        assert!(l.remembered() <= 1024, "{}", l.remembered());
        // A recently seen address keeps its state.
        let a = ip("10.9.9.9");
        for _ in 0..20 {
            l.missed(a);
        }
        for i in 0..100u32 {
            let _ = l.join(IpAddr::V4(i.into()));
        }
        assert!(l.join(a).is_err());
    }

    #[test]
    fn values_that_cannot_work_are_refused() {
        assert!(AddressLimits::default().validate().is_ok());
        assert!(AddressLimits::off().validate().is_ok());
        for bad in [
            AddressLimits {
                joins_per_sec: -1.0,
                ..AddressLimits::default()
            },
            AddressLimits {
                joins_per_sec: f64::NAN,
                ..AddressLimits::default()
            },
            AddressLimits {
                join_burst: 0,
                ..AddressLimits::default()
            },
            AddressLimits {
                code_miss_window_secs: 0,
                ..AddressLimits::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zero_turns_a_limit_off() {
        assert!(AddressLimiter::new(AddressLimits::off()).is_none());
        let l = AddressLimiter::new(AddressLimits {
            joins_per_sec: 0.0,
            ..AddressLimits::default()
        })
        .unwrap();
        for _ in 0..1000 {
            l.join(ip("10.0.0.1")).unwrap();
        }
    }
}
