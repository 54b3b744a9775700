//! Error codes sent to clients in `error` events, WebSocket close codes, and decode errors.
//!
//! Error codes are stable strings: clients and the load generator key behaviour off them. The table in
//! `docs/protocol.md` says for each who caused it and whether retrying can help.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, retry: $retry:literal; )*) => {
        /// A stable error code of an `error` event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl Serialize for ErrorCode {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for ErrorCode {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                ErrorCode::parse(&s).ok_or_else(|| serde::de::Error::unknown_variant(&s, &[$($wire),*]))
            }
        }

        impl ErrorCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears on the wire, e.g. `late_answer`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $wire, )* }
            }

            /// Parses a wire code (also the first word of a Redis Function error reply).
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $( $wire => Some(ErrorCode::$variant), )* _ => None }
            }

            /// Whether the same request may succeed if sent again later.
            pub fn retryable(self) -> bool {
                match self { $( ErrorCode::$variant => $retry, )* }
            }
        }
    };
}

error_codes! {
    /// The frame body is not valid JSON / MessagePack, or not an envelope object.
    BadFrame = "bad_frame", retry: false;
    /// The envelope names an event the server does not know (or one only the server sends).
    UnknownEvent = "unknown_event", retry: false;
    /// The event is known but its `data` is missing fields, has wrong types, or breaks a limit.
    BadPayload = "bad_payload", retry: false;
    /// A message is larger than the limit (the socket is also closed with 1009).
    TooLarge = "too_large", retry: false;
    /// The socket has no session for this action (join or reconnect first), or a token is wrong.
    Unauthorized = "unauthorized", retry: false;
    /// A host action from someone who is not the room's host.
    NotHost = "not_host", retry: false;
    /// No live room has this game code.
    RoomNotFound = "room_not_found", retry: false;
    /// The quiz id names no stored quiz.
    QuizNotFound = "quiz_not_found", retry: false;
    /// The room has reached its player limit.
    RoomFull = "room_full", retry: false;
    /// The game has started and the room does not allow late joins.
    RoomLocked = "room_locked", retry: false;
    /// Another player in the room already uses this nickname (compared case-insensitively).
    NameTaken = "name_taken", retry: false;
    /// The nickname breaks the name rules (length, control characters).
    BadName = "bad_name", retry: false;
    /// The action is not valid in the room's current state (e.g. start twice, pause in the lobby).
    WrongState = "wrong_state", retry: false;
    /// The answer names a question other than the current one.
    WrongQuestion = "wrong_question", retry: false;
    /// The answer arrived before the question's `showAt` (the question is not on screen yet).
    TooEarly = "too_early", retry: false;
    /// The answer arrived after the question's end plus the 500 ms grace.
    LateAnswer = "late_answer", retry: false;
    /// This player already answered this question; the first answer stands.
    AlreadyAnswered = "already_answered", retry: false;
    /// The answer's HMAC does not match the session's answer secret.
    BadHash = "bad_hash", retry: false;
    /// Too many events: the per-socket rate, the per-question answer limit, or the per-address limits of
    /// joins and failed room-code lookups were exceeded.
    RateLimited = "rate_limited", retry: true;
    /// The player was removed by the host or by anti-cheat; final.
    Kicked = "kicked", retry: false;
    /// The server is shedding load; retry after `retryAfterMs`.
    Overloaded = "overloaded", retry: true;
    /// Redis (or another dependency) is unreachable; retry after `retryAfterMs`.
    Unavailable = "unavailable", retry: true;
    /// A bug on our side; reported in logs.
    Internal = "internal", retry: true;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client should do after a close: the one place clients, the load generator and the web pages
/// (through `web/close-codes.js`, kept equal to this table by `protocol/tests/protocol/close_codes.rs`) read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Final: reconnecting would be refused again or repeat the same fault.
    Never,
    /// Reconnect right away (to any edge) and resume with the last `seq`.
    AtOnce,
    /// Reconnect after an exponential backoff, then resume with the last `seq`.
    WithBackoff,
}

impl Reconnect {
    /// The advice as docs/protocol.md's close-code table writes it.
    pub fn as_doc(self) -> &'static str {
        match self {
            Reconnect::Never => "no",
            Reconnect::AtOnce => "yes, at once",
            Reconnect::WithBackoff => "yes, with backoff",
        }
    }

    /// The advice as `web/close-codes.js` spells it.
    pub fn as_js(self) -> &'static str {
        match self {
            Reconnect::Never => "never",
            Reconnect::AtOnce => "now",
            Reconnect::WithBackoff => "backoff",
        }
    }

    /// The advice after a close with `code`, also for codes the edge never sends: `None` (1005, a close
    /// without a code) and 1006 (the connection dropped without a close frame), codes a proxy or the
    /// browser sends (1001, 1011, 1013, ...) and unknown private codes all get [`Reconnect::WithBackoff`];
    /// only the codes of [`CloseCode::ALL`] that say otherwise are final or immediate.
    pub fn after(code: Option<u16>) -> Reconnect {
        code.and_then(CloseCode::from_u16)
            .map_or(Reconnect::WithBackoff, CloseCode::reconnect)
    }
}

macro_rules! close_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal, $advice:ident; )*) => {
        /// WebSocket close codes the edge sends, each with its reconnect advice. 1xxx are RFC 6455;
        /// 4xxx are Ringside's own. docs/protocol.md §4 has the same table (checked by a test).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u16)]
        pub enum CloseCode {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl CloseCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [CloseCode] = &[$(CloseCode::$variant),*];

            /// The code on the wire.
            pub const fn code(self) -> u16 {
                self as u16
            }

            /// The code's name in docs/protocol.md, e.g. `slow consumer`.
            pub fn name(self) -> &'static str {
                match self { $( CloseCode::$variant => $name, )* }
            }

            /// Whether and when a client reconnects after this close.
            pub const fn reconnect(self) -> Reconnect {
                match self { $( CloseCode::$variant => Reconnect::$advice, )* }
            }

            /// The code with this number, if the edge sends it.
            pub fn from_u16(code: u16) -> Option<CloseCode> {
                match code { $( $code => Some(CloseCode::$variant), )* _ => None }
            }
        }
    };
}

close_codes! {
    /// Normal closure: the answer to the client's close (the edge echoes the client's code).
    Normal = 1000, "normal", Never;
    /// Malformed WebSocket framing (unmasked frame, bad opcode, bad close payload...): our client is broken.
    ProtocolError = 1002, "protocol error", Never;
    /// A text message or close reason that is not valid UTF-8.
    InvalidPayload = 1007, "invalid payload", Never;
    /// Policy violation: the socket kept breaking the event rate limit.
    PolicyViolation = 1008, "policy violation", WithBackoff;
    /// A frame or message larger than the limits: sending it again would close again.
    MessageTooBig = 1009, "message too big", Never;
    /// The edge is draining (deploy, SIGTERM): reconnect at once, to another edge, with the last seq.
    ServiceRestart = 1012, "service restart", AtOnce;
    /// No frame received within the idle timeout (`--idle-timeout`, 60 s).
    IdleTimeout = 4000, "idle timeout", WithBackoff;
    /// The player was kicked (host or anti-cheat). Final.
    Kicked = 4003, "kicked", Never;
    /// The client could not keep up (send queue over its hard limit): reconnect with the last seq.
    SlowConsumer = 4008, "slow consumer", WithBackoff;
}

/// Why a frame body could not become an event. Each maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("not a valid {codec} envelope: {detail}")]
    BadFrame { codec: &'static str, detail: String },
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    #[error("bad payload for `{event}`: {detail}")]
    BadPayload { event: String, detail: String },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge(_) => ErrorCode::TooLarge,
            DecodeError::BadFrame { .. } => ErrorCode::BadFrame,
            DecodeError::UnknownEvent(_) => ErrorCode::UnknownEvent,
            DecodeError::BadPayload { .. } => ErrorCode::BadPayload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_from_its_wire_name() {
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn close_codes_parse_back_and_unknown_ones_get_a_backoff() {
        for &c in CloseCode::ALL {
            assert_eq!(CloseCode::from_u16(c.code()), Some(c));
            assert_eq!(Reconnect::after(Some(c.code())), c.reconnect());
        }
        for unknown in [
            None,
            Some(1001),
            Some(1006),
            Some(1011),
            Some(1013),
            Some(4999),
        ] {
            assert_eq!(Reconnect::after(unknown), Reconnect::WithBackoff);
        }
        for fin in [1000, 1009, 4003] {
            assert_eq!(Reconnect::after(Some(fin)), Reconnect::Never, "{fin}");
        }
    }
}
