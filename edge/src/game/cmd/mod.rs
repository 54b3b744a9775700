//! The client events, one file per family, each an `apply` that checks what the edge checks (session,
//! role, room, HMAC, per-address limits) and returns either an [`Error`] at once or the Redis part as a
//! future of the reply. [`Cx::run`] is the one place that spawns that future on the socket's thread and
//! writes its outcome: the reply with the request's `rid`, or an `error` with its documented code
//! (`unavailable` "shutting down" when the Redis thread has stopped).
//!
//! | event | file | check here | call (`ringside_lua::Game` → lua/ringside.lua) |
//! |---|---|---|---|
//! | `ping` | — ([`super::socket`]) | — | none: `pong` at once |
//! | `room:create` | [`lobby`] | no session yet | `create_room` → `room_create` |
//! | `room:join` | [`lobby`] | no session yet, per-address limit | `room_join` → `room_join` (a retry reuses the ids: [`JoinIds`](super::state::JoinIds)) |
//! | `room:leave` | [`lobby`] | player of that room | `leave` → `room_leave` |
//! | `reconnect:attempt` | [`reconnect`] | no session yet, per-address limit | `reconnect` → `reconnect`, then [`Rooms::replay_or_snapshot`] |
//! | `game:answer:submit` | [`answer`] | player of that room, HMAC | `answer_submit` → `answer_submit` |
//! | `room:kick`, `game:start`, `host:*` | [`host`] | host of that room | `kick`/`start`/`pause`/`resume`/`skip`/`extend` |
//! | `room:players` | [`host`] | host of that room | `players` → `room_players` |
//! | (a player's socket closes) | [`report_away`] from `on_close` ([`super::socket`]) | the socket's seat and connection epoch | `player_away` → `player_away` (nothing waits for it) |
//!
//! Adding a client event: ARCHITECTURE.md, "Adding a client event".

pub mod answer;
pub mod host;
pub mod lobby;
pub mod reconnect;

use super::hub::CallError;
use super::rooms::{encode, send_error, send_refusal, Rooms};
use super::state::{Role, Secret, State};
use crate::conn::ConnHandle;
use crate::sendq::FrameClass;
use ringside_lua::GameError;
use ringside_protocol::events::{OkReply, ServerEvent};
use ringside_protocol::{Codec, Envelope, ErrorCode};
use std::cell::RefCell;
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

/// What a command works with: the socket, its state, this worker's rooms, and the request it answers.
#[derive(Clone)]
pub struct Cx {
    pub rooms: Rc<Rooms>,
    pub st: Rc<RefCell<State>>,
    pub conn: ConnHandle,
    pub codec: Codec,
    /// The client's address, for the per-address limits of joins and lookups.
    pub peer: Option<IpAddr>,
    /// The request id, copied into the reply or the `error`.
    pub rid: Option<u32>,
    /// The event's wire name, echoed in `error.event` and `ok.event`.
    pub name: &'static str,
}

/// A player's place in a room, as this socket holds it.
pub struct Seat {
    pub code: Arc<str>,
    pub id: Rc<str>,
    /// The key of the answer HMAC.
    pub secret: Secret,
}

/// Why a client event got an `error` instead of its reply.
#[derive(Debug)]
pub enum Error {
    /// Refused by the edge before any Redis call (no session, wrong room, bad hash, a rate limit).
    Refused {
        code: ErrorCode,
        message: &'static str,
        /// A rate limit knows when its next token comes; `None`: derived from the code.
        retry_after_ms: Option<u64>,
    },
    /// The Redis function refused, or Redis failed.
    Game(GameError),
    /// The Redis thread has stopped: the process is shutting down.
    ShuttingDown,
}

impl Error {
    pub fn refused(code: ErrorCode, message: &'static str) -> Error {
        Error::Refused {
            code,
            message,
            retry_after_ms: None,
        }
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        match e {
            CallError::Game(e) => Error::Game(e),
            CallError::ShuttingDown => Error::ShuttingDown,
        }
    }
}

/// What an `apply` returns: an error at once, or the Redis part, whose output is the reply.
pub type Applied<F> = Result<F, Error>;

impl Cx {
    /// Runs what an `apply` returned: an error is written at once; the future runs as a task on this
    /// thread and its reply (or error) is written when it completes.
    pub fn run<F>(self, applied: Applied<F>)
    where
        F: Future<Output = Result<ServerEvent, Error>> + 'static,
    {
        match applied {
            Err(e) => self.fail(e),
            Ok(fut) => {
                // Read → reply queued, for answers (`ringside_edge_answer_seconds`).
                let timed = (self.name == "game:answer:submit").then(std::time::Instant::now);
                monoio::spawn(async move {
                    match fut.await {
                        Ok(reply) => self.reply(reply),
                        Err(e) => self.fail(e),
                    }
                    if let Some(t) = timed {
                        crate::metrics::ANSWER_LATENCY.record(t.elapsed());
                    }
                });
            }
        }
    }

    /// Writes `ev` to this socket with the request's `rid`.
    pub fn reply(&self, ev: ServerEvent) {
        let env = Envelope::new(ev).with_rid(self.rid);
        let _ = self
            .conn
            .send(encode(self.codec, &env), FrameClass::Reliable);
    }

    /// The `ok` reply to this event.
    pub fn ok(&self) -> ServerEvent {
        ServerEvent::Ok(OkReply {
            event: self.name.to_string(),
        })
    }

    /// Writes the `error` for `e`, with the request's `rid` and event name.
    pub fn fail(&self, e: Error) {
        let (conn, codec, rid, name) = (&self.conn, self.codec, self.rid, Some(self.name));
        match e {
            Error::Refused {
                code,
                message,
                retry_after_ms: None,
            } => send_error(conn, codec, rid, code, message.into(), name),
            Error::Refused {
                code,
                message,
                retry_after_ms,
            } => send_refusal(conn, codec, rid, code, message.into(), name, retry_after_ms),
            Error::Game(e) => {
                if !e.is_refusal() {
                    tracing::warn!(event = self.name, error = %e, "game call failed");
                }
                send_error(conn, codec, rid, e.code(), e.to_string(), name)
            }
            Error::ShuttingDown => send_error(
                conn,
                codec,
                rid,
                ErrorCode::Unavailable,
                "shutting down".into(),
                name,
            ),
        }
    }

    /// Marks the socket's session as being created; refused when it already has one.
    pub fn begin_session(&self) -> Result<(), Error> {
        let mut st = self.st.borrow_mut();
        if !matches!(st.role, Role::None) {
            return Err(Error::refused(
                ErrorCode::WrongState,
                "this socket already has a session",
            ));
        }
        st.role = Role::Pending;
        Ok(())
    }

    /// This socket's seat when it is a player of `game_code`.
    pub fn player_of(&self, game_code: &str) -> Result<Seat, Error> {
        match &self.st.borrow().role {
            Role::Player(p) if *p.code == *game_code => Ok(Seat {
                code: p.code.clone(),
                id: p.id.clone(),
                secret: p.secret.clone(),
            }),
            _ => Err(Error::refused(
                ErrorCode::Unauthorized,
                "not a player of this room",
            )),
        }
    }

    /// After a session-creating call the function refused (or Redis failed), the socket has no
    /// session again. (When the hub has stopped it stays pending: the process is exiting.)
    pub fn forget_session_on(&self, e: &Error) {
        if matches!(e, Error::Game(_)) {
            self.st.borrow_mut().role = Role::None;
        }
    }
}

/// Reports player `id`'s socket of connection `epoch` gone (`player_away`), as a task on this thread:
/// nothing waits for it, and its failure (Redis down, the process exiting) is only logged — the player
/// then counts as connected until they reconnect, as before presence existed.
pub fn report_away(rooms: &Rooms, code: Arc<str>, id: &str, epoch: u32) {
    let hub = rooms.hub.clone();
    let id = id.to_string();
    monoio::spawn(async move {
        let c = code.clone();
        let res = hub
            .game(move |game| async move { game.player_away(&c, &id, epoch).await })
            .await;
        if let Err(CallError::Game(e)) = res {
            if !e.is_refusal() {
                tracing::warn!(room = %code, error = %e, "player_away failed");
            }
        }
    });
}
