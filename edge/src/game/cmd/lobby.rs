//! The lobby: `room:create` (this socket becomes the room's host), `room:join` (a player), `room:leave`.
//! Create and join are refused on a socket that already has a session; join also passes the per-address
//! limits, and a join answered `room_not_found` charges its address's failed-lookup bucket.

use super::{report_away, Applied, Cx, Error, Seat};
use crate::game::address_limits::Refusal;
use crate::game::state::{HostSeat, JoinIds, PlayerSeat, Role, Secret};
use ringside_lua::GameError;
use ringside_protocol::events::{GameRef, RoomCreate, RoomJoin, ServerEvent};
use ringside_protocol::ErrorCode;
use std::future::Future;
use std::rc::Rc;

/// Which per-address limit a session-creating event passes.
#[derive(Clone, Copy)]
pub enum Lookup {
    /// `room:join`: a join token, and no failed-lookup debt.
    Join,
    /// `reconnect:attempt`: no failed-lookup debt.
    Reconnect,
}

/// The per-address limits (module `address_limits`): refused, the socket is back to no session and
/// gets `rate_limited` with `retryAfterMs`.
pub fn address_allows(cx: &Cx, what: Lookup) -> Result<(), Error> {
    let (Some(limiter), Some(ip)) = (&cx.rooms.addresses, cx.peer) else {
        return Ok(());
    };
    let verdict = match what {
        Lookup::Join => limiter.join(ip),
        Lookup::Reconnect => limiter.lookup(ip),
    };
    verdict.map_err(|refusal: Refusal| {
        cx.st.borrow_mut().role = Role::None;
        Error::Refused {
            code: ErrorCode::RateLimited,
            message: refusal.message(),
            retry_after_ms: Some(refusal.retry_after_ms()),
        }
    })
}

/// Admission control (`crate::admission`): while the edge is past a threshold, new sessions
/// (`room:join`, `room:create`) get `overloaded` with `retryAfterMs`; sockets in a game are not asked.
pub fn admitted(cx: &Cx) -> Result<(), Error> {
    cx.conn.admit_session().map_err(|r| {
        cx.st.borrow_mut().role = Role::None;
        Error::Refused {
            code: ErrorCode::Overloaded,
            message: r.reason.describe(),
            retry_after_ms: Some(r.retry_after_ms),
        }
    })
}

/// A join or reconnect answered `room_not_found` charges its address's failed-lookup bucket.
pub fn note_miss(cx: &Cx, e: &Error) {
    if let (Some(limiter), Some(ip), Error::Game(e)) = (&cx.rooms.addresses, cx.peer, e) {
        if GameError::code(e) == ErrorCode::RoomNotFound {
            limiter.missed(ip);
        }
    }
}

/// `room:create` → `room_create`; the socket becomes the room's host and a member of it.
pub fn create(cx: &Cx, c: RoomCreate) -> Applied<impl Future<Output = Result<ServerEvent, Error>>> {
    cx.begin_session()?;
    admitted(cx)?;
    let cx = cx.clone();
    Ok(async move {
        let share = cx.rooms.share_base.clone();
        let created = cx
            .rooms
            .hub
            .game(move |game| async move {
                game.create_room(&c.quiz_id, c.host_name.as_deref(), &c.settings, &share)
                    .await
            })
            .await
            .map_err(Error::from)
            .inspect_err(|e| cx.forget_session_on(e))?;
        let code = cx.rooms.intern(&created.game_code);
        cx.st.borrow_mut().role = Role::Host(Box::new(HostSeat {
            code: code.clone(),
            token: created.host_token.as_str().into(),
        }));
        let wants = cx.st.borrow().wants;
        cx.rooms
            .add_member(&code, &cx.conn, cx.codec, None, 0, wants);
        Ok(ServerEvent::RoomCreated(created))
    })
}

/// `room:join` → `room_join`; the socket becomes a player and a member of the room.
pub fn join(cx: &Cx, j: RoomJoin) -> Applied<impl Future<Output = Result<ServerEvent, Error>>> {
    cx.begin_session()?;
    admitted(cx)?;
    address_allows(cx, Lookup::Join)?;
    // A retry (same room, same name) after a reply-less attempt reuses its ids.
    let (player_id, session, secret) = JoinIds::for_attempt(
        &mut cx.st.borrow_mut().last_join,
        &j.game_code,
        &j.player_name,
    );
    let cx = cx.clone();
    Ok(async move {
        let ack = cx
            .rooms
            .hub
            .game(move |game| async move {
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
            .await
            .map_err(Error::from)
            .inspect_err(|e| {
                cx.forget_session_on(e);
                note_miss(&cx, e);
            })?;
        let code = cx.rooms.intern(&ack.game_code);
        let id: Rc<str> = ack.player_id.as_str().into();
        {
            let mut s = cx.st.borrow_mut();
            s.last_join = None;
            s.role = Role::Player(Box::new(PlayerSeat {
                code: code.clone(),
                id: id.clone(),
                secret: Secret::new(&ack.answer_secret),
                // a joined player's first socket: epoch 0 (reconnects count up from it)
                epoch: 0,
            }));
        }
        // A socket that closed while the join was in flight made no away report (it had no seat yet).
        if !cx.conn.is_open() {
            report_away(&cx.rooms, code.clone(), &id, 0);
        }
        // Nothing is written before the reply: the member's catch-up, if any, runs as its own task.
        let wants = cx.st.borrow().wants;
        cx.rooms
            .add_member(&code, &cx.conn, cx.codec, Some(id), ack.seq, wants);
        Ok(ServerEvent::RoomJoinAck(ack))
    })
}

/// `room:leave` → `room_leave`; the socket leaves the room and has no session.
pub fn leave(cx: &Cx, g: GameRef) -> Applied<impl Future<Output = Result<ServerEvent, Error>>> {
    let Seat { code, id, .. } = cx.player_of(&g.game_code)?;
    let cx = cx.clone();
    Ok(async move {
        let (c, p) = (code.clone(), id.to_string());
        cx.rooms
            .hub
            .game(move |game| async move { game.leave(&c, &p).await })
            .await?;
        cx.rooms.remove_member(&code, cx.conn.id());
        cx.st.borrow_mut().role = Role::None;
        Ok(cx.ok())
    })
}
