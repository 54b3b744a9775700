//! What the edge remembers about one socket of the game: who it is in which room ([`Role`]), the ids of
//! its last unanswered `room:join` ([`JoinIds`]), and its event-rate bucket. Every socket holds one
//! [`State`], so it stays small (perf/edge.md: ≤ 1 KiB per idle socket).

use super::rooms::Wants;
use crate::conn::ConnHandle;
use ringside_protocol::Codec;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Who this socket is in which room. A seat is boxed: every socket holds a [`State`], and an idle
/// socket or one that is waiting for its join has no seat (perf/vs-peers.md, "Memory per socket").
pub enum Role {
    None,
    /// A create, join or reconnect is in flight.
    Pending,
    Host(Box<HostSeat>),
    Player(Box<PlayerSeat>),
}

/// A host's seat.
pub struct HostSeat {
    pub code: Arc<str>,
    pub token: Rc<str>,
}

/// A player's seat.
pub struct PlayerSeat {
    pub code: Arc<str>,
    pub id: Rc<str>,
    /// The key of the answer HMAC.
    pub secret: Secret,
    /// The connection epoch of this socket's session (0 after `room:join`, else what `reconnect`
    /// answered): passed to `player_away` when the socket closes.
    pub epoch: u32,
}

/// A player's answer secret. The edge makes them as 64 lower-case hex digits (`random_hex(32)`), kept
/// here as their 32 bytes inline (an `Rc<str>` was an 80-byte allocation per player); any other text
/// (a secret Redis holds from elsewhere) is kept as it is. [`Secret::with_str`] gives back the text.
#[derive(Clone)]
pub enum Secret {
    Hex([u8; 32]),
    Other(Rc<str>),
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Secret {
    pub fn new(s: &str) -> Secret {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let b = s.as_bytes();
        if b.len() == 64 {
            let mut out = [0u8; 32];
            let all = out.iter_mut().zip(b.chunks_exact(2)).all(|(o, pair)| {
                match (nibble(pair[0]), nibble(pair[1])) {
                    (Some(h), Some(l)) => {
                        *o = (h << 4) | l;
                        true
                    }
                    _ => false,
                }
            });
            if all {
                return Secret::Hex(out);
            }
        }
        Secret::Other(s.into())
    }

    /// Runs `f` on the secret's text (rebuilt on the stack for the hex form: no allocation).
    pub fn with_str<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        match self {
            Secret::Hex(bytes) => {
                let mut buf = [0u8; 64];
                for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
                    pair[0] = HEX[(b >> 4) as usize];
                    pair[1] = HEX[(b & 15) as usize];
                }
                f(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
            }
            Secret::Other(s) => f(s),
        }
    }
}

/// The ids of this socket's last `room:join` attempt that got no ack. A retry to the same room with the
/// same name reuses them: a join answered `unavailable` may still have run in Redis, and `room_join` with
/// the same ids answers its ack again instead of `name_taken`.
pub struct JoinIds {
    code: String,
    /// The name as `room_join` compares it (trimmed, Unicode lower case).
    name_key: String,
    player_id: String,
    session_token: String,
    answer_secret: String,
}

impl JoinIds {
    /// The ids for a join to `code` as `name`: the last attempt's when it was to the same room with the
    /// same name, else fresh ones (which become the last attempt's).
    pub fn for_attempt(
        last: &mut Option<Box<JoinIds>>,
        code: &str,
        name: &str,
    ) -> (String, String, String) {
        let name_key = name.trim().to_lowercase();
        let reuse = matches!(last, Some(l) if l.code == code && l.name_key == name_key);
        if !reuse {
            use ringside_lua::game::random_hex;
            *last = Some(Box::new(JoinIds {
                code: code.to_string(),
                name_key,
                player_id: random_hex(8),
                session_token: random_hex(32),
                answer_secret: random_hex(32),
            }));
        }
        let l = last.as_ref().expect("set above");
        (
            l.player_id.clone(),
            l.session_token.clone(),
            l.answer_secret.clone(),
        )
    }
}

/// One socket's game state.
pub struct State {
    pub conn: ConnHandle,
    pub codec: Codec,
    pub role: Role,
    /// See [`JoinIds`]; cleared by the ack. Boxed: every socket has a `State`, few have this.
    pub last_join: Option<Box<JoinIds>>,
    /// Token bucket of client events (limits::EVENTS_PER_SECOND, burst limits::EVENTS_BURST).
    pub tokens: f32,
    pub refilled: Instant,
    /// Events refused by the rate limit; past a threshold the socket is closed with 1008.
    pub strikes: u32,
    /// What the client asked for on its upgrade: sealed questions (`/ws?sealed=1`, game/seal.rs), the
    /// live progress ticks (`/ws?progress=1`); kept with each of its room memberships.
    pub wants: Wants,
    /// Answers of this socket sent to Redis and not yet replied to: the close's `player_away` waits for
    /// them (socket.rs `on_close`), so that Redis never sees the away report before an answer the player
    /// sent just before closing (it would count them away without an answer and could reveal early).
    pub answers_in_flight: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket holds one `State` (perf/edge.md: ≤ 1 KiB per idle socket); what only some
    /// sockets need is boxed. This catches a field that silently adds a hundred bytes to all of them.
    #[test]
    fn session_state_stays_small() {
        let size = std::mem::size_of::<State>();
        assert!(size <= 64, "State is {size} B");
        assert_eq!(std::mem::size_of::<Option<Box<JoinIds>>>(), 8);
        assert_eq!(std::mem::size_of::<Role>(), 16);
        // a joined player's seat stays in mimalloc's 80-byte bin
        assert!(std::mem::size_of::<PlayerSeat>() <= 80);
    }

    /// The secret's text comes back exactly, whether it was kept as bytes or as given.
    #[test]
    fn secret_round_trips() {
        let hex = ringside_lua::game::random_hex(32);
        for s in [
            hex.as_str(),
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "short",
            "",
            "zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let k = Secret::new(s);
            assert_eq!(k.with_str(str::to_string), s);
            let lower_hex =
                s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            assert_eq!(matches!(k, Secret::Hex(_)), lower_hex, "{s}");
        }
    }
}
