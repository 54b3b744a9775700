//! A schedule: one entry of a partition timer stream `timers:{pNN}`, as the Redis Functions write it.
//!
//! ```text
//! XADD timers:{p07} * room K7QP2M kind question_end q 3 gen 7 due 1732412345678
//! XADD timers:{p07} * room K7QP2M kind progress q 3 gen 7 due 1732412340678 every 1000
//! ```
//!
//! `due` is milliseconds since the Unix epoch by Redis's clock (`TIME` inside the function). `q` and
//! `gen` are passed back to the fire function untouched: together with `kind` they tell it whether the
//! schedule is still current (a skipped question, an ended game or an early reveal make it stale).
//! `every` marks a periodic schedule (`progress`): the engine re-arms it in memory until the function
//! says stop, and only then acknowledges the entry.
//!
//! The kind names are `ringside_lua::TimerKind`'s. The entry itself is not parsed with
//! `ringside_lua::TimerEntry`, on purpose: that parser is strict (known kinds, numeric `q` and `gen`),
//! while the engine passes `kind`, `q` and `gen` through untouched so the fire function stays the one
//! judge of them (it refuses a malformed schedule with `bad_timer`, which the engine dead-letters), and
//! refuses only what it needs itself: a `room` that could break the key, a missing or bad `due`, a bad
//! `every`.

use std::fmt;

use redis::Value;
use ringside_lua::TimerKind;

/// The partition of a stream, `0..PARTITIONS`.
pub type Partition = u32;

/// A stream entry id `ms-seq`, ordered like Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Milliseconds part: when Redis appended the entry (Redis's clock).
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl EntryId {
    /// Parses `1732412345678-0`.
    pub fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-')?;
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What a schedule drives: one of the kinds the library writes ([`TimerKind`], the names live in
/// `ringside_lua`), or one this engine does not know by name. Unknown kinds are still fired, as is
/// (the function decides, and refuses a malformed one with `bad_timer`); the engine only needs to know
/// which schedules are periodic, and that comes from the `every` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Known(TimerKind),
    /// A kind this engine does not know by name; passed through as is.
    Other(String),
}

impl Kind {
    pub fn parse(s: &str) -> Kind {
        TimerKind::parse(s).map_or_else(|| Kind::Other(s.to_owned()), Kind::Known)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Kind::Known(k) => k.as_str(),
            Kind::Other(s) => s,
        }
    }
}

/// One parsed timer-stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: EntryId,
    /// The room's game code (`room` field).
    pub room: String,
    pub kind: Kind,
    /// Question index, passed through (`q`; "" when absent).
    pub q: String,
    /// The room's generation when the schedule was written, passed through (`gen`; "" when absent).
    pub gen: String,
    /// Due time, ms since the epoch by Redis's clock. For a periodic schedule: its first tick.
    pub due_ms: i64,
    /// Period in ms for a periodic schedule (`every`).
    pub every_ms: Option<i64>,
}

/// Why an entry is not a schedule. Such entries are moved to the dead-letter stream, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("entry {0} has no `{1}` field")]
    Missing(String, &'static str),
    #[error("entry {0}: field `{1}` is not a valid number: {2:?}")]
    BadNumber(String, &'static str, String),
    #[error("entry {0}: room code {1:?} has characters a game code cannot have")]
    BadRoom(String, String),
    #[error("entry {0}: `every` must be at least 10 ms, got {1}")]
    BadPeriod(String, i64),
}

impl Schedule {
    /// Builds a schedule from the field/value pairs of an entry.
    pub fn from_fields<'a>(
        id: EntryId,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Schedule, ScheduleError> {
        let (mut room, mut kind, mut q, mut gen, mut due, mut every) =
            (None, None, None, None, None, None);
        for (k, v) in fields {
            match k {
                "room" => room = Some(v),
                "kind" => kind = Some(v),
                "q" => q = Some(v),
                "gen" => gen = Some(v),
                "due" => due = Some(v),
                "every" => every = Some(v),
                _ => {}
            }
        }
        let ids = || id.to_string();
        let room = room.ok_or_else(|| ScheduleError::Missing(ids(), "room"))?;
        if room.is_empty()
            || room.len() > 64
            || !room
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ScheduleError::BadRoom(ids(), room.to_owned()));
        }
        let kind = kind.ok_or_else(|| ScheduleError::Missing(ids(), "kind"))?;
        let due = due.ok_or_else(|| ScheduleError::Missing(ids(), "due"))?;
        let due_ms =
            parse_ms(due).ok_or_else(|| ScheduleError::BadNumber(ids(), "due", due.into()))?;
        let every_ms = match every {
            None | Some("") | Some("0") => None,
            Some(e) => {
                let n = parse_ms(e)
                    .ok_or_else(|| ScheduleError::BadNumber(ids(), "every", e.into()))?;
                if n < 10 {
                    return Err(ScheduleError::BadPeriod(ids(), n));
                }
                Some(n)
            }
        };
        Ok(Schedule {
            id,
            room: room.to_owned(),
            kind: Kind::parse(kind),
            q: q.unwrap_or("").to_owned(),
            gen: gen.unwrap_or("").to_owned(),
            due_ms,
            every_ms,
        })
    }

    /// Whether the engine re-arms this schedule after each fire until the function says stop.
    pub fn is_periodic(&self) -> bool {
        self.every_ms.is_some()
    }
}

/// Integer milliseconds; Lua may write `1732412345678` or `1.732412345678e+12`-free decimals like
/// `1732412345678.0`, so a float with a zero fraction is accepted too.
fn parse_ms(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let f: f64 = s.parse().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// One entry of an XREADGROUP / XAUTOCLAIM / XCLAIM reply: its id and either its fields or, for an
/// entry deleted while pending, nothing.
#[derive(Debug)]
pub struct RawEntry {
    pub id: EntryId,
    pub fields: Option<Vec<(String, String)>>,
}

impl RawEntry {
    pub fn into_schedule(self) -> Option<Result<Schedule, ScheduleError>> {
        let fields = self.fields?;
        Some(Schedule::from_fields(
            self.id,
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
    }
}

/// Decodes a list of stream entries `[[id, [f, v, ...]], ...]` (an entry may be `[id, nil]` when
/// it was deleted while still pending).
pub fn parse_entries(value: &Value) -> Vec<RawEntry> {
    let mut out = Vec::new();
    let Some(items) = as_seq(value) else {
        return out;
    };
    for item in items {
        let Some(pair) = as_seq(item) else { continue };
        let Some(id) = pair
            .first()
            .and_then(as_text)
            .and_then(|s| EntryId::parse(&s))
        else {
            continue;
        };
        let fields = pair.get(1).and_then(|f| match f {
            Value::Nil => None,
            Value::Map(kvs) => Some(
                kvs.iter()
                    .filter_map(|(k, v)| Some((as_text(k)?, as_text(v)?)))
                    .collect(),
            ),
            other => as_seq(other).map(|flat| {
                flat.chunks(2)
                    .filter_map(|kv| match kv {
                        [k, v] => Some((as_text(k)?, as_text(v)?)),
                        _ => None,
                    })
                    .collect()
            }),
        });
        out.push(RawEntry { id, fields });
    }
    out
}

/// Decodes an XREADGROUP reply for one stream: `[[stream, entries]]` (RESP2) or `{stream: entries}`
/// (RESP3), or nil on timeout.
pub fn parse_xreadgroup(value: &Value) -> Vec<RawEntry> {
    match value {
        Value::Nil => Vec::new(),
        Value::Map(kvs) => kvs.iter().flat_map(|(_, v)| parse_entries(v)).collect(),
        other => as_seq(other)
            .map(|streams| {
                streams
                    .iter()
                    .filter_map(as_seq)
                    .filter_map(|s| s.get(1))
                    .flat_map(parse_entries)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Array-ish values.
pub(crate) fn as_seq(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(v) | Value::Set(v) => Some(v),
        _ => None,
    }
}

/// String-ish values (bulk, simple, verbatim) and integers as text.
pub(crate) fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EntryId {
        EntryId {
            ms: 1700000000000,
            seq: 3,
        }
    }

    #[test]
    fn a_full_entry_parses_with_its_period() {
        let s = Schedule::from_fields(
            id(),
            [
                ("room", "K7QP2M"),
                ("kind", "progress"),
                ("q", "3"),
                ("gen", "7"),
                ("due", "1732412345678"),
                ("every", "1000"),
            ],
        )
        .unwrap();
        assert_eq!(s.kind, Kind::Known(TimerKind::Progress));
        assert_eq!(s.due_ms, 1732412345678);
        assert_eq!(s.every_ms, Some(1000));
        assert!(s.is_periodic());
    }

    #[test]
    fn the_library_kinds_are_known_by_name() {
        for k in TimerKind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Kind::Known(k));
            assert_eq!(Kind::parse(k.as_str()).as_str(), k.as_str());
        }
    }

    #[test]
    fn unknown_kinds_pass_through_and_missing_due_is_refused() {
        let s =
            Schedule::from_fields(id(), [("room", "AB"), ("kind", "boom"), ("due", "5")]).unwrap();
        assert_eq!(s.kind.as_str(), "boom");
        assert!(!s.is_periodic());
        let e = Schedule::from_fields(id(), [("room", "AB"), ("kind", "cleanup")]).unwrap_err();
        assert_eq!(e, ScheduleError::Missing(id().to_string(), "due"));
    }

    #[test]
    fn a_room_code_that_could_break_the_key_is_refused() {
        for bad in ["", "A}B", "A{p01}B", "A:B", "A B"] {
            let e = Schedule::from_fields(id(), [("room", bad), ("kind", "cleanup"), ("due", "1")]);
            assert!(
                matches!(e, Err(ScheduleError::BadRoom(..))),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn a_float_due_with_zero_fraction_is_accepted() {
        assert_eq!(parse_ms("1732412345678.0"), Some(1732412345678));
        assert_eq!(parse_ms("12.5"), None);
        assert_eq!(parse_ms("x"), None);
    }

    #[test]
    fn entry_ids_order_like_redis() {
        let a = EntryId::parse("5-1").unwrap();
        let b = EntryId::parse("10-0").unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "10-0");
        assert_eq!(EntryId::parse("5"), None);
    }

    #[test]
    fn xreadgroup_replies_decode_in_resp2_and_resp3_shapes() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![
                bulk("room"),
                bulk("AB"),
                bulk("kind"),
                bulk("cleanup"),
                bulk("due"),
                bulk("9"),
            ]),
        ]);
        let deleted = Value::Array(vec![bulk("2-0"), Value::Nil]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("timers:{p01}"),
            Value::Array(vec![entry.clone(), deleted.clone()]),
        ])]);
        let resp3 = Value::Map(vec![(
            bulk("timers:{p01}"),
            Value::Array(vec![entry, deleted]),
        )]);
        for v in [resp2, resp3] {
            let got = parse_xreadgroup(&v);
            assert_eq!(got.len(), 2);
            assert!(got[1].fields.is_none());
            let s = got
                .into_iter()
                .next()
                .unwrap()
                .into_schedule()
                .unwrap()
                .unwrap();
            assert_eq!(s.room, "AB");
            assert_eq!(s.due_ms, 9);
        }
        assert!(parse_xreadgroup(&Value::Nil).is_empty());
    }
}
