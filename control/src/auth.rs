//! API keys. A key reads `rsk_<keyId>_<secret>`: `keyId` (16 hex) finds the row, `secret` (64 hex, 32
//! random bytes) is checked against its SHA-256, compared in constant time. The key is printed once by
//! `ringside-control host create`; PostgreSQL holds only the hash, so a database dump yields no key.
//! A 256-bit random secret needs no slow hash: nobody can search that space.
//!
//! Failed authentications are limited per source address ([`FailureLimiter`]), so keys cannot be guessed
//! at speed (they cannot be guessed at all, but the limit also keeps a scanner off the database).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of every key (lets secret scanners and people recognise one).
pub const KEY_PREFIX: &str = "rsk_";

/// A new key: (key id, the full key to print once, the hash to store).
pub fn new_key() -> (String, String, Vec<u8>) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = hex::encode(secret);
    let hash = secret_hash(&secret);
    (
        key_id.clone(),
        format!("{KEY_PREFIX}{key_id}_{secret}"),
        hash,
    )
}

/// SHA-256 of the secret part.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits a key into (key id, secret); `None` when it is not shaped like one.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex16 = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex16(id, 16) && hex16(secret, 64)).then_some((id, secret))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failed authentications per source address: `burst` allowed, refilled at `per_minute`. Bounded:
/// beyond `MAX_ADDRESSES` tracked addresses the oldest half is forgotten.
pub struct FailureLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

const MAX_ADDRESSES: usize = 100_000;

impl FailureLimiter {
    pub fn new(burst: u32, per_minute: u32) -> FailureLimiter {
        FailureLimiter {
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `ip` has no failures left.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some((tokens, at)) = b.get(&ip).copied() else {
            return Ok(());
        };
        let now_tokens = (tokens + at.elapsed().as_secs_f64() * self.per_sec).min(self.burst);
        if now_tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - now_tokens) / self.per_sec))
        }
    }

    /// Counts one failure of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_ADDRESSES {
            let mut ages: Vec<(Instant, IpAddr)> = b.iter().map(|(k, v)| (v.1, *k)).collect();
            ages.sort();
            for (_, k) in ages.iter().take(MAX_ADDRESSES / 2) {
                b.remove(k);
            }
        }
        let now = Instant::now();
        let e = b.entry(ip).or_insert((self.burst, now));
        e.0 = (e.0 + e.1.elapsed().as_secs_f64() * self.per_sec).min(self.burst) - 1.0;
        e.1 = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_hash() {
        let (id, key, hash) = new_key();
        let (pid, secret) = parse_key(&key).expect("a new key parses");
        assert_eq!(pid, id);
        assert!(constant_time_eq(&secret_hash(secret), &hash));
        assert!(!constant_time_eq(&secret_hash("0"), &hash));
        for bad in [
            "",
            "rsk_",
            "rsk_zz_00",
            &key[..key.len() - 1],
            &key.replace("rsk_", "rs_"),
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn failures_are_limited_per_address() {
        let l = FailureLimiter::new(3, 60);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
            l.failed(a);
        }
        let wait = l.check(a).expect_err("limited after the burst");
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(l.check(b).is_ok(), "another address is not affected");
    }
}
