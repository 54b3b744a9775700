//! One socket's game session: decodes each client event, applies the per-socket rate limit, and hands
//! the event to its command (module [`cmd`](super::cmd), one file per family, where the table of events
//! and checks lives). The reply (or an `error` with a documented code) goes to this socket only.

use super::cmd::{answer, host, lobby, reconnect, report_away, Cx};
use super::rooms::{encode, send_error, send_refusal, Rooms, Wants};
use super::state::{PlayerSeat, Role, State};
use crate::conn::{CloseInfo, ConnHandle};
use crate::sendq::FrameClass;
use crate::session::Session;
use crate::ws::frame::MessageKind;
use ringside_protocol::envelope::{decode_request, json_ping};
use ringside_protocol::events::Event as _;
use ringside_protocol::events::{Pong, ReconnectPolicy, ServerEvent, SessionAck};
use ringside_protocol::{limits, ClientEvent, CloseCode, Codec, DecodeError, Envelope, ErrorCode};
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A closed socket's away report waits for its answers in flight in steps of this, at most
/// `AWAY_WAIT_STEPS` (12 s: past the Redis response timeout, so every answer has its reply by then).
const AWAY_WAIT_STEP: Duration = Duration::from_millis(5);
const AWAY_WAIT_STEPS: u32 = 2400;

/// See the module docs.
pub struct GameSession {
    rooms: Rc<Rooms>,
    st: Rc<RefCell<State>>,
    /// The client's address, for the per-address limits of joins and lookups.
    peer: Option<IpAddr>,
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
        wants: Wants,
    ) -> GameSession {
        let ack = ServerEvent::SessionAck(SessionAck {
            socket_id: format!("{:x}-{}-{:x}", std::process::id(), rooms.worker, conn.id()),
            server_time: now_ms(),
            ping_interval: conn.app_ping_interval_ms(),
            protocol: codec.protocol().to_string(),
            reconnect: Some({
                let (delay_ms, jitter_ms) = conn.reconnect_policy();
                ReconnectPolicy {
                    delay_ms,
                    jitter_ms,
                }
            }),
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
            wants,
            answers_in_flight: 0,
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

    /// The dispatch table: each client event to its command (module [`cmd`](super::cmd)).
    fn dispatch(&self, env: Envelope<ClientEvent>) {
        let (conn, codec) = {
            let st = self.st.borrow();
            (st.conn.clone(), st.codec)
        };
        let cx = Cx {
            rooms: self.rooms.clone(),
            st: self.st.clone(),
            conn,
            codec,
            peer: self.peer,
            rid: env.rid,
            name: env.event.name(),
        };
        match env.event {
            ClientEvent::Ping(p) => pong(&cx.conn, cx.codec, cx.rid, p.t),
            ClientEvent::RoomCreate(c) => cx.clone().run(lobby::create(&cx, c)),
            ClientEvent::RoomJoin(j) => cx.clone().run(lobby::join(&cx, j)),
            ClientEvent::RoomLeave(g) => cx.clone().run(lobby::leave(&cx, g)),
            ClientEvent::ReconnectAttempt(r) => cx.clone().run(reconnect::attempt(&cx, r)),
            ClientEvent::AnswerSubmit(a) => cx.clone().run(answer::submit(&cx, a)),
            ClientEvent::RoomKick(k) => cx.clone().run(host::kick(&cx, k)),
            ClientEvent::GameStart(g) => cx.clone().run(host::start(&cx, g)),
            ClientEvent::HostPause(g) => cx.clone().run(host::pause(&cx, g)),
            ClientEvent::HostResume(g) => cx.clone().run(host::resume(&cx, g)),
            ClientEvent::HostSkip(s) => cx.clone().run(host::skip(&cx, s)),
            ClientEvent::HostExtend(e) => cx.clone().run(host::extend(&cx, e)),
            ClientEvent::RoomPlayers(p) => cx.clone().run(host::players(&cx, p)),
        }
    }
}

/// The `pong` to a `ping` sent at the client's time `t`.
fn pong(conn: &ConnHandle, codec: Codec, rid: Option<u32>, t: f64) {
    let env = Envelope::new(ServerEvent::Pong(Pong {
        t,
        server_time: now_ms(),
    }))
    .with_rid(rid);
    let _ = conn.send(encode(codec, &env), FrameClass::Reliable);
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
        if let Err(wait_ms) = self.allow() {
            if self.st.borrow().strikes > MAX_STRIKES {
                conn.close(CloseCode::PolicyViolation.code(), "event rate exceeded");
                return;
            }
            // Decoded only for its rid, so that the client can tell which request was refused.
            let mut buf = payload.to_vec();
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
        // an idle socket's only traffic: answered without the parser (same reply, same `t`)
        if let Some((rid, t)) = (codec == Codec::Json).then(|| json_ping(payload)).flatten() {
            return pong(conn, codec, rid, t);
        }
        let mut buf = payload.to_vec();
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

    /// The socket is gone: it leaves its room's local members, and a player's is reported to the room
    /// (`player_away` with this socket's connection epoch, on the Redis thread; nothing waits for it): they
    /// keep their place, but "everyone answered" stops waiting for them until they reconnect. The room
    /// ignores the report when the player is already back on a newer connection (a reconnect, perhaps to
    /// another edge, processed before this close). A process that dies makes no report (ARCHITECTURE.md).
    fn on_close(&mut self, conn: &ConnHandle, _info: &CloseInfo) {
        let role = std::mem::replace(&mut self.st.borrow_mut().role, Role::None);
        match role {
            Role::Host(h) => self.rooms.remove_member(&h.code, conn.id()),
            Role::Player(p) => {
                let PlayerSeat {
                    code, id, epoch, ..
                } = *p;
                self.rooms.remove_member(&code, conn.id());
                if self.st.borrow().answers_in_flight == 0 {
                    report_away(&self.rooms, code, &id, epoch);
                } else {
                    // after the answers it sent (bounded: a reply comes within the Redis response timeout)
                    let (st, rooms) = (self.st.clone(), self.rooms.clone());
                    monoio::spawn(async move {
                        for _ in 0..AWAY_WAIT_STEPS {
                            if st.borrow().answers_in_flight == 0 {
                                break;
                            }
                            monoio::time::sleep(AWAY_WAIT_STEP).await;
                        }
                        report_away(&rooms, code, &id, epoch);
                    });
                }
            }
            Role::None | Role::Pending => {}
        }
    }
}
