//! The host's controls: `room:kick`, `game:start`, `host:pause`, `host:resume`, `host:skip`,
//! `host:extend`, and the host's read of the player list, `room:players`. The socket must hold the host
//! session of that room (a player socket of the room gets `not_host`, any other `unauthorized`); the
//! function checks the host token again. The reply is `ok` (`room:players:list` for `room:players`).

use super::{Applied, Cx, Error};
use crate::game::state::Role;
use ringside_lua::{Game, GameError};
use ringside_protocol::events::{
    GameRef, HostExtend, HostSkip, RoomKick, RoomPlayers, ServerEvent,
};
use ringside_protocol::ErrorCode;
use std::future::Future;

/// The reply future of every host control.
pub trait Reply: Future<Output = Result<ServerEvent, Error>> {}
impl<F: Future<Output = Result<ServerEvent, Error>>> Reply for F {}

/// The host token this socket holds for `game_code`, or the refusal: `not_host` for a player of that
/// room, `unauthorized` for any other socket.
fn host_token(cx: &Cx, game_code: &str) -> Result<String, Error> {
    match &cx.st.borrow().role {
        Role::Host(h) if *h.code == *game_code => Ok(h.token.to_string()),
        Role::Player(p) if *p.code == *game_code => Err(Error::refused(
            ErrorCode::NotHost,
            "only the host may do this",
        )),
        _ => Err(Error::refused(
            ErrorCode::Unauthorized,
            "no session in this room",
        )),
    }
}

/// Runs a host action `f(game, code, token)` once the socket is the host of `game_code`.
fn host_call<F, Fut>(cx: &Cx, game_code: String, f: F) -> Applied<impl Reply>
where
    F: FnOnce(Game, String, String) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), GameError>> + Send + 'static,
{
    let token = host_token(cx, &game_code)?;
    let cx = cx.clone();
    Ok(async move {
        cx.rooms
            .hub
            .game(move |game| f(game, game_code, token))
            .await?;
        Ok(cx.ok())
    })
}

/// `room:kick` → `kick`.
pub fn kick(cx: &Cx, k: RoomKick) -> Applied<impl Reply> {
    host_call(
        cx,
        k.game_code.clone(),
        move |game, code, token| async move { game.kick(&code, &token, &k.target_player_id).await },
    )
}

/// `game:start` → `start`.
pub fn start(cx: &Cx, g: GameRef) -> Applied<impl Reply> {
    host_call(cx, g.game_code, |game, code, token| async move {
        game.start(&code, &token).await
    })
}

/// `host:pause` → `pause`.
pub fn pause(cx: &Cx, g: GameRef) -> Applied<impl Reply> {
    host_call(cx, g.game_code, |game, code, token| async move {
        game.pause(&code, &token).await
    })
}

/// `host:resume` → `resume`.
pub fn resume(cx: &Cx, g: GameRef) -> Applied<impl Reply> {
    host_call(cx, g.game_code, |game, code, token| async move {
        game.resume(&code, &token).await
    })
}

/// `host:skip` → `skip`.
pub fn skip(cx: &Cx, s: HostSkip) -> Applied<impl Reply> {
    host_call(
        cx,
        s.game_code.clone(),
        move |game, code, token| async move { game.skip(&code, &token, s.reason.as_deref()).await },
    )
}

/// `host:extend` → `extend`.
pub fn extend(cx: &Cx, e: HostExtend) -> Applied<impl Reply> {
    host_call(
        cx,
        e.game_code.clone(),
        move |game, code, token| async move { game.extend(&code, &token, e.add_seconds).await },
    )
}

/// `room:players` → `players` (`room_players`): one page of the room's players, for the host's lobby
/// after a reload (the `room:player:joined` events it missed are not replayed as a list).
pub fn players(cx: &Cx, p: RoomPlayers) -> Applied<impl Reply> {
    let token = host_token(cx, &p.game_code)?;
    let cx = cx.clone();
    Ok(async move {
        let page =
            cx.rooms
                .hub
                .game(move |game| async move {
                    game.players(&p.game_code, &token, p.offset, p.count).await
                })
                .await?;
        Ok(ServerEvent::PlayersList(page))
    })
}
