//! What the edge remembers about one socket of the game: who it is in which room ([`Role`]), the ids of
//! its last unanswered `room:join` ([`JoinIds`]), and its event-rate bucket. Every socket holds one
//! [`State`], so it stays small (perf/edge.md: ≤ 1 KiB per idle socket).

use crate::conn::ConnHandle;
use ringside_protocol::Codec;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Who this socket is in which room.
pub enum Role {
    None,
    /// A create, join or reconnect is in flight.
    Pending,
    Host {
        code: Arc<str>,
        token: Rc<str>,
    },
    Player {
        code: Arc<str>,
        id: Rc<str>,
        secret: Rc<str>,
        /// The connection epoch of this socket's session (0 after `room:join`, else what `reconnect`
        /// answered): passed to `player_away` when the socket closes.
        epoch: u32,
    },
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
    /// The client opens sealed questions (`/ws?sealed=1`, game/seal.rs).
    pub sealed: bool,
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
        assert!(size <= 112, "State is {size} B");
        assert_eq!(std::mem::size_of::<Option<Box<JoinIds>>>(), 8);
    }
}
