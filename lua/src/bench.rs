//! Room setup for the measurement tools (`lua-bench`, the edge's `answer_burst` example): a one-question
//! quiz, many players joined fast, and the timer entries to fire by hand. Not used by the services.

use crate::{GameError, Quiz, Redis, TimerEntry, TimerKind};
use ringside_protocol::keys;

/// A quiz `id` of one 4-option question (correct: option 1) open for 300 s.
pub fn quiz(id: &str) -> Quiz {
    Quiz::from_json(&format!(
        r#"{{"id":"{id}","title":"bench","questions":[{{"text":"Pick one","options":["a","b","c","d"],"correct":1,"timeLimitMs":300000}}]}}"#
    ))
    .expect("bench quiz")
}

/// Player `i`'s id (and the base of its session, secret and name).
pub fn player_id(i: usize) -> String {
    format!("p{i:07}")
}

/// Joins players `0..players` ([`player_id`]) to room `code` by `room_join` calls pipelined 256 at a time.
pub async fn join_players(conn: &mut Redis, code: &str, players: usize) -> Result<(), GameError> {
    for chunk in (0..players).collect::<Vec<_>>().chunks(256) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let (p, s, a, n) = (
                player_id(i),
                format!("session{i:016}"),
                format!("secret{i:017}"),
                format!("n{i}"),
            );
            pipe.add_command(crate::game::fcall_cmd(
                crate::Function::RoomJoin,
                code,
                &[&p, &s, &a, &n, &n, "0", ""],
            ));
        }
        let replies: Vec<redis::RedisResult<String>> = pipe
            .ignore_errors()
            .query_async(conn)
            .await
            .map_err(GameError::Redis)?;
        if let Some(Err(e)) = replies.into_iter().find(|r| r.is_err()) {
            return Err(GameError::Redis(e));
        }
    }
    Ok(())
}

/// The newest `kind` timer entry of room `code` in its timer stream (to fire it by hand).
pub async fn timer_of(
    conn: &mut Redis,
    code: &str,
    kind: TimerKind,
) -> Result<TimerEntry, GameError> {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg(keys::room_timers(code))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1000)
        .query_async(conn)
        .await
        .map_err(GameError::Redis)?;
    entries
        .into_iter()
        .filter_map(|(_, f)| TimerEntry::from_flat(&f).ok())
        .find(|t| t.room == code && t.kind == kind)
        .ok_or_else(|| GameError::BadReply {
            function: "XREVRANGE",
            detail: format!("no {kind:?} timer entry for room {code}"),
        })
}
