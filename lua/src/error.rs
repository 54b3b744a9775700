//! [`GameError`]: why a game function call failed, with the wire [`ErrorCode`] the edge sends to the client;
//! [`LoadError`]: why the library could not be loaded or is not the version this build needs.

use ringside_protocol::ErrorCode;

/// The failure of one game function call.
#[derive(Debug, thiserror::Error)]
pub enum GameError {
    /// The function refused the request; `code` is the wire error code for the client.
    #[error("{code}: {detail}")]
    Refused { code: ErrorCode, detail: String },
    /// `room_create`: a live room already has this game code. Retry with another code
    /// ([`Game::create_room`](crate::Game::create_room) does).
    #[error("game code {0} is taken by a live room")]
    CodeTaken(String),
    /// [`Game::create_room`](crate::Game::create_room) drew only taken codes.
    #[error("no free game code after {0} tries")]
    NoFreeCode(u32),
    /// Redis could not be reached, or answered with an error that is not a game refusal.
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// The function answered something this crate cannot decode: a library/crate version skew or a bug.
    #[error("unexpected reply from `{function}`: {detail}")]
    BadReply {
        function: &'static str,
        detail: String,
    },
}

impl GameError {
    /// The wire code to send to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            GameError::Refused { code, .. } => *code,
            GameError::Redis(e)
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() =>
            {
                ErrorCode::Unavailable
            }
            GameError::Redis(e)
                if matches!(
                    e.code(),
                    // MOVED/ASK/READONLY that outlive the client's retries: the cluster is failing
                    // over (a replica still redirects to its dead primary, or a demoted primary
                    // refuses writes) — transient, the client resends.
                    Some(
                        "CLUSTERDOWN"
                            | "TRYAGAIN"
                            | "LOADING"
                            | "MASTERDOWN"
                            | "MOVED"
                            | "ASK"
                            | "READONLY"
                    )
                ) =>
            {
                ErrorCode::Unavailable
            }
            GameError::CodeTaken(_)
            | GameError::NoFreeCode(_)
            | GameError::Redis(_)
            | GameError::BadReply { .. } => ErrorCode::Internal,
        }
    }

    /// A refusal by the game rules (as opposed to an infrastructure failure).
    pub fn is_refusal(&self) -> bool {
        matches!(self, GameError::Refused { .. })
    }

    pub(crate) fn refused(code: ErrorCode, detail: impl Into<String>) -> GameError {
        GameError::Refused {
            code,
            detail: detail.into(),
        }
    }

    /// Maps a Redis error: a function's `redis.error_reply('<code> <detail>')` becomes [`GameError::Refused`]
    /// (or [`GameError::CodeTaken`]); anything else stays a Redis error.
    pub(crate) fn from_redis(e: redis::RedisError) -> GameError {
        let detail = || e.detail().unwrap_or_default().trim().to_string();
        match e.code() {
            Some("code_taken") => GameError::CodeTaken(detail()),
            // `timer_fire` on an entry that can never fire (unknown kind, malformed q/gen)
            Some("bad_timer") => GameError::Refused {
                code: ErrorCode::BadPayload,
                detail: format!("bad timer entry: {}", detail()),
            },
            Some(c) => match ErrorCode::parse(c) {
                Some(code) => GameError::Refused {
                    code,
                    detail: detail(),
                },
                None => GameError::Redis(e),
            },
            None => GameError::Redis(e),
        }
    }
}

/// Why the library could not be loaded, or is not usable by this build.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A primary has no `ringside` library (run the loader: `ensure_loaded`).
    #[error("the ringside Functions library is not loaded on {node}")]
    Missing { node: String },
    /// A primary runs another version of the library. Edges and engines refuse to run against it.
    #[error("{node} runs ringside library version {found}, this build needs version {expected}")]
    VersionMismatch {
        node: String,
        found: u32,
        expected: u32,
    },
    /// `FCALL version` answered something unexpected.
    #[error("{node}: unexpected answer to FCALL version: {detail}")]
    BadVersionReply { node: String, detail: String },
}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn a_redis_timeout_or_dropped_connection_is_unavailable() {
        let timeout: redis::RedisError = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        assert_eq!(GameError::Redis(timeout).code(), ErrorCode::Unavailable);
        let reset: redis::RedisError =
            std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert_eq!(GameError::Redis(reset).code(), ErrorCode::Unavailable);
    }
}
