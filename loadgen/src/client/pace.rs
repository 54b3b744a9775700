//! Reconnect pacing as docs/protocol.md §4 "Pacing" asks of a client: attempt *n* (0-based, counted since
//! the last `session:ack`) waits `min(delayMs × 2ⁿ, 8000) + uniform(0, jitterMs)` ms, with the policy of
//! the last `session:ack` (an edge widens `jitterMs` with its load); a client without a policy (an older
//! edge) uses `delayMs` 500 and `jitterMs` 0. `--reconnect-jitter-ms`, when given, replaces the policy's
//! `jitterMs` (and is the fallback's). Pure functions of their inputs, `u` being the uniform draw.

use std::time::Duration;

use ringside_protocol::events::ReconnectPolicy;

/// The cap on the exponential share of a wait, ms.
pub const MAX_BACKOFF_MS: u64 = 8000;

/// The policy of a client whose edge sent none.
pub const FALLBACK: ReconnectPolicy = ReconnectPolicy {
    delay_ms: 500,
    jitter_ms: 0,
};

/// The policy followed: the session's, or [`FALLBACK`]; `jitter_override` (`--reconnect-jitter-ms`)
/// replaces its `jitterMs` when given.
pub fn effective(
    session: Option<ReconnectPolicy>,
    jitter_override: Option<u64>,
) -> ReconnectPolicy {
    let mut p = session.unwrap_or(FALLBACK);
    if let Some(j) = jitter_override {
        p.jitter_ms = j;
    }
    p
}

/// The share of `width` ms picked by the uniform draw `u` in [0, 1): in [0, width).
fn share(width: u64, u: f64) -> u64 {
    ((u.clamp(0.0, 1.0) * width as f64) as u64).min(width.saturating_sub(1))
}

/// How long reconnect attempt `attempt` (0-based) waits before it opens a socket.
pub fn wait(p: ReconnectPolicy, attempt: u32, u: f64) -> Duration {
    let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
    let backoff = p.delay_ms.saturating_mul(factor).min(MAX_BACKOFF_MS);
    Duration::from_millis(backoff + share(p.jitter_ms, u))
}

/// How long a client waits after a refusal that named its wait (`Retry-After` of a 503, `retryAfterMs` of
/// an `overloaded` or `unavailable`): that wait plus a share of `jitter_ms`, so that clients refused at the
/// same moment do not all come back at the same moment either.
pub fn after_refusal(retry_after_ms: u64, jitter_ms: u64, u: f64) -> Duration {
    Duration::from_millis(retry_after_ms.saturating_add(share(jitter_ms, u)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ReconnectPolicy = ReconnectPolicy {
        delay_ms: 250,
        jitter_ms: 1000,
    };

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn the_exponential_share_doubles_per_attempt_up_to_8_s() {
        let waits: Vec<u64> = (0..8).map(|n| ms(wait(P, n, 0.0))).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        // Far attempts neither overflow nor pass the cap.
        assert_eq!(ms(wait(P, 63, 0.0)), 8000);
        assert_eq!(ms(wait(P, 64, 0.0)), 8000);
        assert_eq!(ms(wait(P, u32::MAX, 0.0)), 8000);
        let big = ReconnectPolicy {
            delay_ms: u64::MAX,
            jitter_ms: 0,
        };
        assert_eq!(ms(wait(big, 3, 0.5)), 8000);
    }

    #[test]
    fn the_jitter_adds_a_uniform_share_of_its_window() {
        assert_eq!(ms(wait(P, 0, 0.5)), 250 + 500);
        assert_eq!(ms(wait(P, 2, 0.25)), 1000 + 250);
        // Within [0, jitterMs) whatever the draw, also a draw out of range.
        for u in [0.0, 0.001, 0.999_999, 1.0, 7.0, -1.0] {
            let w = ms(wait(P, 0, u));
            assert!((250..1250).contains(&w), "u {u}: {w}");
        }
        // At the cap the jitter still spreads the attempts.
        assert_eq!(ms(wait(P, 10, 0.5)), 8000 + 500);
        let none = ReconnectPolicy {
            delay_ms: 100,
            jitter_ms: 0,
        };
        assert_eq!(ms(wait(none, 0, 0.9)), 100);
    }

    #[test]
    fn the_flag_replaces_the_sessions_jitter_and_a_missing_policy_falls_back() {
        assert_eq!(effective(Some(P), None), P);
        assert_eq!(
            effective(Some(P), Some(40)),
            ReconnectPolicy {
                delay_ms: 250,
                jitter_ms: 40
            }
        );
        assert_eq!(effective(None, None), FALLBACK);
        assert_eq!(
            effective(None, Some(300)),
            ReconnectPolicy {
                delay_ms: 500,
                jitter_ms: 300
            }
        );
        assert_eq!(ms(wait(effective(None, None), 1, 0.7)), 1000);
    }

    #[test]
    fn a_refusal_waits_what_it_named_plus_a_share_of_the_jitter() {
        assert_eq!(ms(after_refusal(2000, 1000, 0.0)), 2000);
        assert_eq!(ms(after_refusal(2000, 1000, 0.5)), 2500);
        assert_eq!(ms(after_refusal(2000, 0, 0.5)), 2000);
        assert_eq!(ms(after_refusal(u64::MAX, 1000, 0.5)), u64::MAX);
    }
}
