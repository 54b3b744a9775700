//! One fire: the idempotent transition `FCALL`, then the acknowledgement of its stream entry.
//!
//! ```text
//! FCALL <fire-function> 2 room:{pNN}:CODE timers:{pNN} <kind> <q> <gen> <due_ms>
//! XACK timers:{pNN} <group> <id> ; XDEL timers:{pNN} <id>          (only after the FCALL replied)
//! ```
//!
//! Both keys carry the partition tag, so the call is single-slot on Redis Cluster. The entry is
//! acknowledged only once the function's reply is in hand, i.e. its effect is in Redis; a crash in
//! between leaves the entry pending, the next owner fires it again, and the function finds it stale.
//! Acked entries are deleted, so a timer stream holds only schedules not yet done.

use redis::Value;
use ringside_protocol::keys;

use crate::redis_conn::RedisConn;
use ringside_lua::TimerOutcome;

use crate::schedule::{as_text, Partition, Schedule};

/// What the fire function said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireResult {
    /// The transition happened.
    Fired,
    /// Nothing to do, and nothing more to come: a duplicate, late or superseded fire (skipped
    /// question, early reveal, ended or deleted room), or a final progress tick.
    Stale,
    /// A periodic tick (applied, or a no-op such as "unchanged") and ticking goes on: the next tick
    /// is one period after this one.
    Continue { applied: bool },
    /// Not yet due by Redis's clock (clock skew): fire again after this many ms.
    NotYet { retry_in_ms: i64 },
}

/// Reads `timer_fire`'s reply: JSON text, `ringside_lua::TimerOutcome`
/// (`{"fired":bool,"why"?,"retryInMs"?,"continue"?}`; see `lua/src/timer.rs`). An integer `1`/`0` is
/// accepted too (fired / stale), for simple stand-in functions. `Err` carries the reply's text when
/// it is neither.
pub fn parse_reply(value: &Value) -> Result<FireResult, String> {
    if let Value::Int(n) = value {
        return Ok(if *n > 0 {
            FireResult::Fired
        } else {
            FireResult::Stale
        });
    }
    let Some(text) = as_text(value) else {
        return Err(format!("{value:?}"));
    };
    let outcome: TimerOutcome = serde_json::from_str(&text).map_err(|_| text.clone())?;
    if let Some(wait) = outcome.retry_after() {
        return Ok(FireResult::NotYet {
            retry_in_ms: wait.as_millis() as i64,
        });
    }
    Ok(match (outcome.fired, outcome.keep_ticking) {
        (applied, Some(true)) => FireResult::Continue { applied },
        (true, _) => FireResult::Fired,
        (false, _) => FireResult::Stale,
    })
}

/// Calls the fire function for one schedule (`tick_due_ms` is this fire's due time: the schedule's,
/// or for a periodic schedule the current tick's).
pub async fn call(
    conn: &mut RedisConn,
    function: &str,
    p: Partition,
    sched: &Schedule,
    tick_due_ms: i64,
) -> redis::RedisResult<Value> {
    redis::cmd("FCALL")
        .arg(function)
        .arg(2)
        .arg(room_key(p, &sched.room))
        .arg(keys::timers(p))
        .arg(sched.kind.as_str())
        .arg(&sched.q)
        .arg(&sched.gen)
        .arg(tick_due_ms)
        .query_async(conn)
        .await
}

/// The room's key prefix in partition `p`. The schedule came from `p`'s stream, so the room lives in
/// `p` (the functions write a room's schedules to its own partition's stream); building the key
/// from the stream's partition keeps the FCALL single-slot even if a writer got that wrong.
pub fn room_key(p: Partition, room: &str) -> String {
    format!("room:{}:{room}", keys::partition_tag(p))
}

/// `XACK` + `XDEL` of one entry, in one round trip (same slot).
pub async fn ack(
    conn: &mut RedisConn,
    p: Partition,
    group: &str,
    id: &str,
) -> redis::RedisResult<()> {
    let stream = keys::timers(p);
    redis::pipe()
        .cmd("XACK")
        .arg(&stream)
        .arg(group)
        .arg(id)
        .ignore()
        .cmd("XDEL")
        .arg(&stream)
        .arg(id)
        .ignore()
        .query_async(conn)
        .await
}

/// The dead-letter stream of a partition: entries that could not be fired, with the reason.
pub fn dead_letter_key(p: Partition) -> String {
    format!("{}:dead", keys::timers(p))
}

/// Moves an entry to the dead-letter stream (capped), then acks and deletes it.
pub async fn dead_letter(
    conn: &mut RedisConn,
    p: Partition,
    group: &str,
    id: &str,
    fields: &[(String, String)],
    reason: &str,
) -> redis::RedisResult<()> {
    let stream = keys::timers(p);
    let mut xadd = redis::cmd("XADD");
    xadd.arg(dead_letter_key(p))
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*");
    xadd.arg("id").arg(id).arg("reason").arg(reason);
    for (k, v) in fields {
        xadd.arg(k).arg(v);
    }
    redis::pipe()
        .add_command(xadd)
        .ignore()
        .cmd("XACK")
        .arg(&stream)
        .arg(group)
        .arg(id)
        .ignore()
        .cmd("XDEL")
        .arg(&stream)
        .arg(id)
        .ignore()
        .query_async(conn)
        .await
}

/// The fields of a schedule, to keep them in the dead-letter stream.
pub fn fields_of(s: &Schedule) -> Vec<(String, String)> {
    let mut f = vec![
        ("room".to_owned(), s.room.clone()),
        ("kind".to_owned(), s.kind.as_str().to_owned()),
        ("q".to_owned(), s.q.clone()),
        ("gen".to_owned(), s.gen.clone()),
        ("due".to_owned(), s.due_ms.to_string()),
    ];
    if let Some(e) = s.every_ms {
        f.push(("every".to_owned(), e.to_string()));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn every_timer_fire_reply_parses() {
        let cases = [
            (
                r#"{"fired":true,"kind":"question_end","q":3}"#,
                FireResult::Fired,
            ),
            (
                r#"{"fired":true,"kind":"game_end","q":5}"#,
                FireResult::Fired,
            ),
            (r#"{"fired":false,"why":"stale"}"#, FireResult::Stale),
            (r#"{"fired":false,"why":"gone"}"#, FireResult::Stale),
            (r#"{"fired":false,"why":"unchanged"}"#, FireResult::Stale),
            (
                r#"{"fired":false,"why":"gone","continue":false}"#,
                FireResult::Stale,
            ),
            (
                r#"{"fired":true,"kind":"progress","q":1,"continue":true}"#,
                FireResult::Continue { applied: true },
            ),
            (
                r#"{"fired":false,"why":"duplicate","continue":true}"#,
                FireResult::Continue { applied: false },
            ),
            (
                r#"{"fired":false,"why":"early","retryInMs":12}"#,
                FireResult::NotYet { retry_in_ms: 12 },
            ),
            (
                r#"{"fired":false,"why":"early","retryInMs":0}"#,
                FireResult::NotYet { retry_in_ms: 1 },
            ),
            // a scoring step with more to do: the same entry again at once
            (
                r#"{"fired":true,"kind":"score","q":2,"why":"more","retryInMs":0}"#,
                FireResult::NotYet { retry_in_ms: 1 },
            ),
            (r#"{"fired":true,"kind":"score","q":2}"#, FireResult::Fired),
        ];
        for (json, want) in cases {
            assert_eq!(parse_reply(&bulk(json)), Ok(want), "{json}");
        }
        assert_eq!(parse_reply(&Value::Int(1)), Ok(FireResult::Fired));
        assert_eq!(parse_reply(&Value::Int(0)), Ok(FireResult::Stale));
        assert!(parse_reply(&bulk("what")).is_err());
        assert!(parse_reply(&Value::Nil).is_err());
    }

    #[test]
    fn the_room_key_takes_the_streams_partition() {
        assert_eq!(room_key(7, "K7QP2M"), "room:{p07}:K7QP2M");
    }
}
