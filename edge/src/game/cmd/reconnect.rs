//! `reconnect:attempt`: a socket without a session takes over a player's or the host's session with its
//! session token (`reconnect` checks it) and catches up from its `lastSeq`: the missed events replayed,
//! or a `reconnect:state` snapshot — chosen by [`Rooms::replay_or_snapshot`](crate::game::rooms::Rooms::replay_or_snapshot).
//! The socket joins the room's local members after that, so live events follow the catch-up in order.
//! Fair start: a question whose key has not gone out is sent sealed, or after its key time
//! ([`Rooms::gate_snapshot`](crate::game::rooms::Rooms::gate_snapshot)).

use super::lobby::{address_allows, note_miss, Lookup};
use super::{report_away, Applied, Cx, Error};
use crate::game::hub::room_frame;
use crate::game::rooms::{show_mark, CaughtUp, Missed};
use crate::game::state::{HostSeat, PlayerSeat, Role, Secret};
use crate::sendq::FrameClass;
use ringside_lua::Recovery;
use ringside_protocol::events::{ReconnectAttempt, ServerEvent};
use std::future::Future;
use std::rc::Rc;

/// `reconnect:attempt` → `reconnect`; the reply is `ok` after the replayed events, or
/// `reconnect:state`.
pub fn attempt(
    cx: &Cx,
    r: ReconnectAttempt,
) -> Applied<impl Future<Output = Result<ServerEvent, Error>>> {
    cx.begin_session()?;
    address_allows(cx, Lookup::Reconnect)?;
    let cx = cx.clone();
    Ok(async move {
        let code = cx.rooms.intern(&r.game_code);
        let token: Rc<str> = r.session_token.as_str().into();
        let back = cx
            .rooms
            .hub
            .game(move |game| async move {
                game.reconnect(&r.game_code, &r.player_id, &r.session_token, r.last_seq)
                    .await
            })
            .await
            .map_err(Error::from)
            .inspect_err(|e| {
                cx.forget_session_on(e);
                note_miss(&cx, e);
            })?;
        let player: Option<Rc<str>> = (!back.host).then(|| back.player_id.as_str().into());
        cx.st.borrow_mut().role = match (&player, &back.answer_secret) {
            (Some(id), Some(secret)) => Role::Player(Box::new(PlayerSeat {
                code: code.clone(),
                id: id.clone(),
                secret: Secret::new(secret),
                epoch: back.epoch,
            })),
            _ => Role::Host(Box::new(HostSeat {
                code: code.clone(),
                token,
            })),
        };
        // A socket that closed while the reconnect was in flight made no away report (no seat yet).
        if let (false, Some(id)) = (cx.conn.is_open(), &player) {
            report_away(&cx.rooms, code.clone(), id, back.epoch);
        }
        let wants = cx.st.borrow().wants;
        let sealed = wants.sealed;
        // the leaderboards replayed: their personal results follow once the socket is a member
        let mut boards = Vec::new();
        let (reply, seen) = match back.recovery {
            Recovery::Events(events) => {
                // Replayed as they were published (all reliable), then the `ok` (one more frame).
                let mut show = None;
                let frames = events
                    .iter()
                    .filter_map(|raw| room_frame(code.clone(), raw.as_bytes()).ok())
                    .map(|f| {
                        show = show_mark(&f).or(show);
                        if let ServerEvent::Leaderboard(l) = &f.event {
                            boards.push(l.q_index);
                        }
                        (f.seq, f.frame(cx.codec).clone(), FrameClass::Reliable)
                    })
                    .collect();
                let missed = Missed::Events {
                    conn: cx.conn.clone(),
                    frames,
                    show,
                };
                match cx
                    .rooms
                    .replay_or_snapshot(&code, player.as_ref(), missed, 1, cx.codec, sealed)
                    .await
                    .map_err(Error::from)
                    .inspect_err(|e| cx.forget_session_on(e))?
                {
                    CaughtUp::Replayed { .. } => (cx.ok(), back.seq),
                    CaughtUp::Snapshot(state) => {
                        boards.clear();
                        let seq = state.seq;
                        (ServerEvent::ReconnectState(state), seq)
                    }
                }
            }
            Recovery::State(mut state) => {
                cx.rooms.gate_snapshot(&code, &mut state, sealed).await;
                let seq = state.seq;
                (ServerEvent::ReconnectState(*state), seq)
            }
        };
        // Nothing is written between here and the reply (the catch-up, if any, is its own task).
        cx.rooms
            .add_member(&code, &cx.conn, cx.codec, player.clone(), seen, wants);
        cx.rooms
            .results_after_replay(&code, cx.conn.id(), player.as_ref(), boards);
        Ok(reply)
    })
}
