//! One socket's game session: decodes each client event, applies the per-socket rate limit, checks that
//! the socket may do it (role, room, host token, answer HMAC), and turns it into one FCALL through the
//! hub. The reply (or an `error` with a documented code) goes to this socket only.
//!
//! Where each client event goes (docs/protocol.md → `ringside_lua::Game` → lua/ringside.lua):
//!
//! | event | check here | call |
//! |---|---|---|
//! | `ping` | — | none: `pong` at once |
//! | `room:create` | no session yet | `Game::create_room` → `room_create` |
//! | `room:join` | no session yet | `Game::room_join` → `room_join` (a retry reuses the ids: [`JoinIds`]) |
//! | `reconnect:attempt` | no session yet | `Game::reconnect` → `reconnect` |
//! | `room:leave` | player of that room | `Game::leave` → `room_leave` |
//! | `game:answer:submit` | player of that room, HMAC | `Game::answer_submit` → `answer_submit` |
//! | `room:kick`, `game:start`, `host:*` | host of that room | `kick`/`start`/`pause`/`resume`/`skip`/`extend` |

use super::rooms::{encode, send_error, send_refusal, Rooms};
use crate::conn::{CloseInfo, ConnHandle};
use crate::sendq::FrameClass;
use crate::session::Session;
use crate::ws::frame::MessageKind;
use ringside_lua::{GameError, Recovery};
use ringside_protocol::auth::verify_answer_hash;
use ringside_protocol::envelope::decode_request;
use ringside_protocol::events::*;
use ringside_protocol::{limits, ClientEvent, CloseCode, Codec, DecodeError, Envelope, ErrorCode};
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Who this socket is in which room.
enum Role {
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
    },
}

/// The ids of this socket's last `room:join` attempt that got no ack. A retry to the same room with the
/// same name reuses them: a join answered `unavailable` may still have run in Redis, and `room_join` with
/// the same ids answers its ack again instead of `name_taken`.
struct JoinIds {
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
    fn for_attempt(
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

struct State {
    conn: ConnHandle,
    codec: Codec,
    role: Role,
    /// See [`JoinIds`]; cleared by the ack. Boxed: every socket has a `State`, few have this.
    last_join: Option<Box<JoinIds>>,
    /// Token bucket of client events (limits::EVENTS_PER_SECOND, burst limits::EVENTS_BURST).
    tokens: f32,
    refilled: Instant,
    /// Events refused by the rate limit; past a threshold the socket is closed with 1008.
    strikes: u32,
}

/// See the module docs.
pub struct GameSession {
    rooms: Rc<Rooms>,
    st: Rc<RefCell<State>>,
    /// The client's address, for the per-address limits of joins and lookups.
    peer: Option<IpAddr>,
}

/// Which per-address limit a session-creating event passes.
#[derive(Clone, Copy)]
enum Lookup {
    /// `room:join`: a join token, and no failed-lookup debt.
    Join,
    /// `reconnect:attempt`: no failed-lookup debt.
    Reconnect,
}

/// A join or reconnect answered `room_not_found` charges its address's failed-lookup bucket.
fn note_miss(rooms: &Rooms, peer: Option<IpAddr>, e: &GameError) {
    if let (Some(limiter), Some(ip)) = (&rooms.addresses, peer) {
        if e.code() == ErrorCode::RoomNotFound {
            limiter.missed(ip);
        }
    }
}

/// Refusals of the rate limit before the socket is closed with 1008.
const MAX_STRIKES: u32 = 100;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl GameSession {
    /// A new session; sends `session:ack` at once.
    pub fn open(
        rooms: Rc<Rooms>,
        conn: &ConnHandle,
        codec: Codec,
        peer: Option<IpAddr>,
    ) -> GameSession {
        let ack = ServerEvent::SessionAck(SessionAck {
            socket_id: format!("{:x}-{}-{:x}", std::process::id(), rooms.worker, conn.id()),
            server_time: now_ms(),
            ping_interval: limits::PING_INTERVAL_MS,
            protocol: codec.protocol().to_string(),
        });
        let _ = conn.send(encode(codec, &Envelope::new(ack)), FrameClass::Reliable);
        let st = State {
            conn: conn.clone(),
            codec,
            role: Role::None,
            last_join: None,
            tokens: limits::EVENTS_BURST as f32,
            refilled: Instant::now(),
            strikes: 0,
        };
        GameSession {
            rooms,
            st: Rc::new(RefCell::new(st)),
            peer,
        }
    }

    /// Takes a token of the per-socket event rate; refused: the ms until the next one.
    fn allow(&self) -> Result<(), u64> {
        let mut st = self.st.borrow_mut();
        let now = Instant::now();
        let dt = now.duration_since(st.refilled).as_secs_f32();
        st.refilled = now;
        st.tokens =
            (st.tokens + dt * limits::EVENTS_PER_SECOND as f32).min(limits::EVENTS_BURST as f32);
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            Ok(())
        } else {
            st.strikes += 1;
            let wait = (1.0 - st.tokens) / limits::EVENTS_PER_SECOND as f32;
            Err((wait * 1000.0).ceil() as u64)
        }
    }

    fn dispatch(&self, env: Envelope<ClientEvent>) {
        let rid = env.rid;
        let name = env.event.name();
        let (conn, codec) = {
            let st = self.st.borrow();
            (st.conn.clone(), st.codec)
        };
        let reply = move |conn: &ConnHandle, ev: ServerEvent| {
            let _ = conn.send(
                encode(codec, &Envelope::new(ev).with_rid(rid)),
                FrameClass::Reliable,
            );
        };
        let fail = move |conn: &ConnHandle, code: ErrorCode, msg: String| {
            send_error(conn, codec, rid, code, msg, Some(name))
        };
        let game_err = move |conn: &ConnHandle, e: GameError| {
            if !e.is_refusal() {
                tracing::warn!(event = name, error = %e, "game call failed");
            }
            send_error(conn, codec, rid, e.code(), e.to_string(), Some(name))
        };

        match env.event {
            ClientEvent::Ping(p) => reply(
                &conn,
                ServerEvent::Pong(Pong {
                    t: p.t,
                    server_time: now_ms(),
                }),
            ),

            ClientEvent::RoomCreate(c) => {
                if !self.begin_session(&conn, codec, rid, name) {
                    return;
                }
                let (rooms, st) = (self.rooms.clone(), self.st.clone());
                let share = rooms.share_base.clone();
                monoio::spawn(async move {
                    let res = rooms
                        .hub
                        .call(move |game, _| async move {
                            game.create_room(
                                &c.quiz_id,
                                c.host_name.as_deref(),
                                &c.settings,
                                &share,
                            )
                            .await
                        })
                        .await;
                    match res {
                        Ok(Ok(created)) => {
                            let code = rooms.intern(&created.game_code);
                            st.borrow_mut().role = Role::Host {
                                code: code.clone(),
                                token: created.host_token.as_str().into(),
                            };
                            rooms.add_member(&code, &conn, codec, None, 0);
                            reply(&conn, ServerEvent::RoomCreated(created));
                        }
                        Ok(Err(e)) => {
                            st.borrow_mut().role = Role::None;
                            game_err(&conn, e);
                        }
                        Err(_) => fail(&conn, ErrorCode::Unavailable, "shutting down".into()),
                    }
                });
            }

            ClientEvent::RoomJoin(j) => {
                if !self.begin_session(&conn, codec, rid, name)
                    || !self.address_allows(&conn, codec, rid, name, Lookup::Join)
                {
                    return;
                }
                let peer = self.peer;
                // A retry (same room, same name) after a reply-less attempt reuses its ids.
                let (player_id, session, secret) = JoinIds::for_attempt(
                    &mut self.st.borrow_mut().last_join,
                    &j.game_code,
                    &j.player_name,
                );
                let (rooms, st) = (self.rooms.clone(), self.st.clone());
                monoio::spawn(async move {
                    let res = rooms
                        .hub
                        .call(move |game, _| async move {
                            game.room_join(
                                &j.game_code,
                                &player_id,
                                &session,
                                &secret,
                                &j.player_name,
                                j.avatar_id,
                                None,
                            )
                            .await
                        })
                        .await;
                    match res {
                        Ok(Ok(ack)) => {
                            let code = rooms.intern(&ack.game_code);
                            let id: Rc<str> = ack.player_id.as_str().into();
                            let mut s = st.borrow_mut();
                            s.last_join = None;
                            s.role = Role::Player {
                                code: code.clone(),
                                id: id.clone(),
                                secret: ack.answer_secret.as_str().into(),
                            };
                            drop(s);
                            let seq = ack.seq;
                            reply(&conn, ServerEvent::RoomJoinAck(ack));
                            rooms.add_member(&code, &conn, codec, Some(id), seq);
                        }
                        Ok(Err(e)) => {
                            st.borrow_mut().role = Role::None;
                            note_miss(&rooms, peer, &e);
                            game_err(&conn, e);
                        }
                        Err(_) => fail(&conn, ErrorCode::Unavailable, "shutting down".into()),
                    }
                });
            }

            ClientEvent::ReconnectAttempt(r) => {
                if !self.begin_session(&conn, codec, rid, name)
                    || !self.address_allows(&conn, codec, rid, name, Lookup::Reconnect)
                {
                    return;
                }
                let peer = self.peer;
                let (rooms, st) = (self.rooms.clone(), self.st.clone());
                monoio::spawn(async move {
                    let code = rooms.intern(&r.game_code);
                    let token: Rc<str> = r.session_token.as_str().into();
                    let res = rooms
                        .hub
                        .call(move |game, _| async move {
                            game.reconnect(&r.game_code, &r.player_id, &r.session_token, r.last_seq)
                                .await
                        })
                        .await;
                    let back = match res {
                        Ok(Ok(back)) => back,
                        Ok(Err(e)) => {
                            st.borrow_mut().role = Role::None;
                            note_miss(&rooms, peer, &e);
                            return game_err(&conn, e);
                        }
                        Err(_) => {
                            return fail(&conn, ErrorCode::Unavailable, "shutting down".into())
                        }
                    };
                    let player: Option<Rc<str>> =
                        (!back.host).then(|| back.player_id.as_str().into());
                    st.borrow_mut().role = match (&player, &back.answer_secret) {
                        (Some(id), Some(secret)) => Role::Player {
                            code: code.clone(),
                            id: id.clone(),
                            secret: secret.as_str().into(),
                        },
                        _ => Role::Host {
                            code: code.clone(),
                            token,
                        },
                    };
                    let mut seen = back.seq;
                    match back.recovery {
                        Recovery::Events(events) => {
                            // The missed events, as they were published, then live ones — unless
                            // they would fill most of the bounded send queue at once: the socket
                            // would be closed with 4008 before the client could read them, and
                            // again on every retry. Then a snapshot replaces them.
                            let frames: Vec<bytes::Bytes> = events
                                .iter()
                                .filter_map(|raw| {
                                    super::hub::room_frame(code.clone(), raw.as_bytes()).ok()
                                })
                                .map(|f| f.frame(codec).clone())
                                .collect();
                            let bytes = frames.iter().map(bytes::Bytes::len).sum();
                            if conn.has_room_for(frames.len() + 1, bytes) {
                                for f in frames {
                                    let _ = conn.send(f, FrameClass::Reliable);
                                }
                                reply(
                                    &conn,
                                    ServerEvent::Ok(OkReply {
                                        event: name.to_string(),
                                    }),
                                );
                            } else {
                                drop(frames);
                                let c = code.to_string();
                                let pid = player.as_ref().map(|p| p.to_string());
                                let res = rooms
                                    .hub
                                    .call(move |game, _| async move {
                                        game.snapshot(&c, pid.as_deref()).await
                                    })
                                    .await;
                                match res {
                                    Ok(Ok(state)) => {
                                        seen = state.seq;
                                        reply(&conn, ServerEvent::ReconnectState(state));
                                    }
                                    Ok(Err(e)) => {
                                        st.borrow_mut().role = Role::None;
                                        return game_err(&conn, e);
                                    }
                                    Err(_) => {
                                        return fail(
                                            &conn,
                                            ErrorCode::Unavailable,
                                            "shutting down".into(),
                                        )
                                    }
                                }
                            }
                        }
                        Recovery::State(state) => {
                            seen = state.seq;
                            reply(&conn, ServerEvent::ReconnectState(*state));
                        }
                    }
                    rooms.add_member(&code, &conn, codec, player, seen);
                });
            }

            ClientEvent::RoomLeave(g) => {
                let Some((code, id, _)) = self.player_of(&g.game_code) else {
                    return fail(
                        &conn,
                        ErrorCode::Unauthorized,
                        "not a player of this room".into(),
                    );
                };
                let (rooms, st) = (self.rooms.clone(), self.st.clone());
                monoio::spawn(async move {
                    let (c, p) = (code.clone(), id.clone().to_string());
                    match rooms
                        .hub
                        .call(move |game, _| async move { game.leave(&c, &p).await })
                        .await
                    {
                        Ok(Ok(())) => {
                            rooms.remove_member(&code, conn.id());
                            st.borrow_mut().role = Role::None;
                            reply(
                                &conn,
                                ServerEvent::Ok(OkReply {
                                    event: name.to_string(),
                                }),
                            );
                        }
                        Ok(Err(e)) => game_err(&conn, e),
                        Err(_) => fail(&conn, ErrorCode::Unavailable, "shutting down".into()),
                    }
                });
            }

            ClientEvent::AnswerSubmit(a) => {
                let Some((code, id, secret)) = self.player_of(&a.game_code) else {
                    return fail(
                        &conn,
                        ErrorCode::Unauthorized,
                        "not a player of this room".into(),
                    );
                };
                if !verify_answer_hash(&secret, &code, &id, a.q_index, a.answer_idx, &a.answer_hash)
                {
                    return fail(
                        &conn,
                        ErrorCode::BadHash,
                        "answerHash does not verify".into(),
                    );
                }
                let rooms = self.rooms.clone();
                monoio::spawn(async move {
                    let pid = id.to_string();
                    let res = rooms
                        .hub
                        .call(move |game, _| async move {
                            game.answer_submit(&code, &pid, a.q_index, a.answer_idx)
                                .await
                        })
                        .await;
                    match res {
                        Ok(Ok(ack)) => reply(&conn, ServerEvent::AnswerAck(ack)),
                        Ok(Err(e)) => game_err(&conn, e),
                        Err(_) => fail(&conn, ErrorCode::Unavailable, "shutting down".into()),
                    }
                });
            }

            ClientEvent::RoomKick(k) => self.host_call(
                rid,
                name,
                k.game_code.clone(),
                move |game, code, token| async move {
                    game.kick(&code, &token, &k.target_player_id).await
                },
            ),
            ClientEvent::GameStart(g) => {
                self.host_call(rid, name, g.game_code, |game, code, token| async move {
                    game.start(&code, &token).await
                })
            }
            ClientEvent::HostPause(g) => {
                self.host_call(rid, name, g.game_code, |game, code, token| async move {
                    game.pause(&code, &token).await
                })
            }
            ClientEvent::HostResume(g) => {
                self.host_call(rid, name, g.game_code, |game, code, token| async move {
                    game.resume(&code, &token).await
                })
            }
            ClientEvent::HostSkip(s) => self.host_call(
                rid,
                name,
                s.game_code.clone(),
                move |game, code, token| async move {
                    game.skip(&code, &token, s.reason.as_deref()).await
                },
            ),
            ClientEvent::HostExtend(e) => {
                self.host_call(
                    rid,
                    name,
                    e.game_code.clone(),
                    move |game, code, token| async move {
                        game.extend(&code, &token, e.add_seconds).await
                    },
                )
            }
        }
    }

    /// Marks the session as being created; refuses when the socket already has one.
    fn begin_session(&self, conn: &ConnHandle, codec: Codec, rid: Option<u32>, name: &str) -> bool {
        let mut st = self.st.borrow_mut();
        if !matches!(st.role, Role::None) {
            drop(st);
            send_error(
                conn,
                codec,
                rid,
                ErrorCode::WrongState,
                "this socket already has a session".into(),
                Some(name),
            );
            return false;
        }
        st.role = Role::Pending;
        true
    }

    /// The per-address limits (module `address_limits`): refused, the socket is back to no session and
    /// gets `rate_limited` with `retryAfterMs`.
    fn address_allows(
        &self,
        conn: &ConnHandle,
        codec: Codec,
        rid: Option<u32>,
        name: &str,
        what: Lookup,
    ) -> bool {
        let (Some(limiter), Some(ip)) = (&self.rooms.addresses, self.peer) else {
            return true;
        };
        let verdict = match what {
            Lookup::Join => limiter.join(ip),
            Lookup::Reconnect => limiter.lookup(ip),
        };
        let Err(refusal) = verdict else {
            return true;
        };
        self.st.borrow_mut().role = Role::None;
        send_refusal(
            conn,
            codec,
            rid,
            ErrorCode::RateLimited,
            refusal.message().into(),
            Some(name),
            Some(refusal.retry_after_ms()),
        );
        false
    }

    fn player_of(&self, game_code: &str) -> Option<(Arc<str>, Rc<str>, Rc<str>)> {
        match &self.st.borrow().role {
            Role::Player { code, id, secret } if **code == *game_code => {
                Some((code.clone(), id.clone(), secret.clone()))
            }
            _ => None,
        }
    }

    /// Runs a host action: the socket must hold the host session of `game_code`; the function checks the
    /// token (a player socket gets `not_host`).
    fn host_call<F, Fut>(&self, rid: Option<u32>, name: &'static str, game_code: String, f: F)
    where
        F: FnOnce(ringside_lua::Game, String, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), GameError>> + Send + 'static,
    {
        let (conn, codec, role) = {
            let st = self.st.borrow();
            let role = match &st.role {
                Role::Host { code, token } if **code == *game_code => Ok(token.to_string()),
                Role::Player { code, .. } if **code == *game_code => Err(ErrorCode::NotHost),
                _ => Err(ErrorCode::Unauthorized),
            };
            (st.conn.clone(), st.codec, role)
        };
        let token = match role {
            Ok(t) => t,
            Err(code) => {
                let msg = if code == ErrorCode::NotHost {
                    "only the host may do this"
                } else {
                    "no session in this room"
                };
                return send_error(&conn, codec, rid, code, msg.into(), Some(name));
            }
        };
        let rooms = self.rooms.clone();
        monoio::spawn(async move {
            match rooms
                .hub
                .call(move |game, _| f(game, game_code, token))
                .await
            {
                Ok(Ok(())) => {
                    let ok = Envelope::new(ServerEvent::Ok(OkReply {
                        event: name.to_string(),
                    }))
                    .with_rid(rid);
                    let _ = conn.send(encode(codec, &ok), FrameClass::Reliable);
                }
                Ok(Err(e)) => send_error(&conn, codec, rid, e.code(), e.to_string(), Some(name)),
                Err(_) => send_error(
                    &conn,
                    codec,
                    rid,
                    ErrorCode::Unavailable,
                    "shutting down".into(),
                    Some(name),
                ),
            }
        });
    }
}

impl Session for GameSession {
    fn on_message(&mut self, conn: &ConnHandle, kind: MessageKind, payload: &[u8]) {
        let codec = self.st.borrow().codec;
        if (kind == MessageKind::Text) != codec.is_text() {
            let msg = if codec.is_text() {
                "ringside.v1.json uses text frames"
            } else {
                "ringside.v1.msgpack uses binary frames"
            };
            return send_error(conn, codec, None, ErrorCode::BadFrame, msg.into(), None);
        }
        let mut buf = payload.to_vec();
        if let Err(wait_ms) = self.allow() {
            if self.st.borrow().strikes > MAX_STRIKES {
                conn.close(CloseCode::PolicyViolation.code(), "event rate exceeded");
                return;
            }
            // Decoded only for its rid, so that the client can tell which request was refused.
            let (rid, event) = match decode_request::<ClientEvent>(codec, &mut buf) {
                Ok(env) => (env.rid, Some(env.event.name())),
                Err(r) => (r.rid, None),
            };
            return send_refusal(
                conn,
                codec,
                rid,
                ErrorCode::RateLimited,
                format!("more than {} events per second", limits::EVENTS_PER_SECOND),
                event,
                Some(wait_ms),
            );
        }
        match decode_request::<ClientEvent>(codec, &mut buf) {
            Ok(env) => self.dispatch(env),
            Err(r) => {
                let event = match &r.error {
                    DecodeError::BadPayload { event, .. } => Some(event.as_str()),
                    _ => None,
                };
                send_error(
                    conn,
                    codec,
                    r.rid,
                    r.error.code(),
                    r.error.to_string(),
                    event,
                )
            }
        }
    }

    fn on_close(&mut self, conn: &ConnHandle, _info: &CloseInfo) {
        let role = std::mem::replace(&mut self.st.borrow_mut().role, Role::None);
        match role {
            Role::Host { code, .. } | Role::Player { code, .. } => {
                self.rooms.remove_member(&code, conn.id())
            }
            Role::None | Role::Pending => {}
        }
    }
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
