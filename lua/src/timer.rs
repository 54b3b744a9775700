//! The timer stream contract between the functions (which schedule) and the engine (which fires).
//!
//! Every time-driven transition is written by a function into its partition's stream
//! `timers:{pNN}` (`ringside_protocol::keys::timers`) as one entry:
//! `room CODE kind KIND q Q gen G due EPOCH_MS [every MS]`.
//! The engine reads the streams, keeps timers in memory and at `due` calls `timer_fire` with `kind`, `q` and
//! `gen` unchanged ([`Game::fire`](crate::Game::fire)). `timer_fire` is idempotent; see [`TimerOutcome`].

use serde::Deserialize;

/// What a timer entry does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// STARTING → first question (`q` = 0). Due at the countdown's `startsAt`.
    CountdownEnd,
    /// Reveal question `q`. Due at its `endsAt` + 500 ms grace; superseded by pause/extend/skip/early reveal.
    QuestionEnd,
    /// Periodic: publish `game:answer:progress` for question `q` if the count changed. Has `every`: fire
    /// on the grid `due + k·every` (k = 0, 1, 2, …; not "every ms after the previous fire", so drift never
    /// accumulates) while the reply says `continue: true`. The function dedupes per grid slot. Valid for
    /// the `gen` of the question's show or of its last resume (a resume writes a fresh entry).
    Progress,
    /// After the reveal pause: show question `q`, or end the game when `q` = the number of questions.
    NextQuestion,
    /// Publish the coalesced `room:player:joined` batch (`gen` = the room's flush generation).
    LobbyFlush,
    /// Delete the room's keys (they also expire by themselves), due 300 s after `game:end` (or after a
    /// `results_hold`).
    Cleanup,
    /// End a room that is about to expire unfinished (reason `abandoned`, so its results are kept);
    /// otherwise write the next check. `gen` = the room's abandon-check generation `agen`.
    Abandon,
    /// The next step of scoring question `q` after its reveal (a room bigger than one step: a few ms of
    /// Redis each). Due at once; while more remains the reply says `why: "more"` with `retryInMs` 0, and
    /// the engine fires the same entry again (as after an early fire); the last step publishes the
    /// leaderboard, schedules `next_question` and replies `fired: true`.
    Score,
}

impl TimerKind {
    pub const ALL: [TimerKind; 8] = [
        TimerKind::CountdownEnd,
        TimerKind::QuestionEnd,
        TimerKind::Progress,
        TimerKind::NextQuestion,
        TimerKind::LobbyFlush,
        TimerKind::Cleanup,
        TimerKind::Abandon,
        TimerKind::Score,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::CountdownEnd => "countdown_end",
            TimerKind::QuestionEnd => "question_end",
            TimerKind::Progress => "progress",
            TimerKind::NextQuestion => "next_question",
            TimerKind::LobbyFlush => "lobby_flush",
            TimerKind::Cleanup => "cleanup",
            TimerKind::Score => "score",
            TimerKind::Abandon => "abandon",
        }
    }

    pub fn parse(s: &str) -> Option<TimerKind> {
        TimerKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for TimerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a timer stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerEntry {
    /// The room's game code: `keys::room(&room)` and `keys::room_timers(&room)` are the call's keys.
    pub room: String,
    pub kind: TimerKind,
    pub q: u32,
    pub gen: u64,
    /// When to fire, epoch ms of the Redis server clock.
    pub due: u64,
    /// For [`TimerKind::Progress`]: the grid step, in ms: fire at `due + k·every` while `continue` is true.
    pub every: Option<u64>,
}

/// A malformed timer entry (a bug or a foreign writer); the engine should log and acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad timer entry: {0}")]
pub struct BadTimerEntry(pub String);

impl TimerEntry {
    /// Parses the field/value pairs of a stream entry.
    pub fn from_fields<K: AsRef<str>, V: AsRef<str>>(
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<TimerEntry, BadTimerEntry> {
        let (mut room, mut kind, mut q, mut gen, mut due, mut every) =
            (None, None, None, None, None, None);
        for (k, v) in fields {
            let v = v.as_ref();
            let n = || {
                v.parse::<u64>()
                    .map_err(|_| BadTimerEntry(format!("{} is not a number: {v}", k.as_ref())))
            };
            match k.as_ref() {
                "room" => room = Some(v.to_string()),
                "kind" => {
                    kind = Some(
                        TimerKind::parse(v)
                            .ok_or_else(|| BadTimerEntry(format!("unknown kind {v}")))?,
                    )
                }
                "q" => {
                    q = Some(
                        u32::try_from(n()?)
                            .map_err(|_| BadTimerEntry(format!("q out of range: {v}")))?,
                    )
                }
                "gen" => gen = Some(n()?),
                "due" => due = Some(n()?),
                "every" => every = Some(n()?),
                _ => {}
            }
        }
        let missing = |f: &str| BadTimerEntry(format!("missing field {f}"));
        Ok(TimerEntry {
            room: room.ok_or_else(|| missing("room"))?,
            kind: kind.ok_or_else(|| missing("kind"))?,
            q: q.ok_or_else(|| missing("q"))?,
            gen: gen.ok_or_else(|| missing("gen"))?,
            due: due.ok_or_else(|| missing("due"))?,
            every,
        })
    }

    /// Parses a flat `[field, value, field, value, ...]` list, as XRANGE/XREADGROUP return it.
    pub fn from_flat<S: AsRef<str>>(flat: &[S]) -> Result<TimerEntry, BadTimerEntry> {
        if flat.len() % 2 == 1 {
            return Err(BadTimerEntry("odd number of field/value items".into()));
        }
        Self::from_fields(flat.chunks(2).map(|c| (c[0].as_ref(), c[1].as_ref())))
    }
}

/// The reply of `timer_fire`.
///
/// - `fired: true`: the timer changed the room (`kind` is what happened: the entry's kind, or `game_end`
///   for a `next_question` past the last question).
/// - `fired: false`, `why`:
///   - `"stale"`: a duplicate, late or superseded fire (wrong state, wrong question, older `gen`): drop it;
///   - `"gone"`: the room no longer exists: drop it;
///   - `"early"`: the due time has not come by the Redis clock: fire again after `retryInMs`;
///   - `"duplicate"` (progress), `"unchanged"` (lobby_flush): nothing to publish this time.
/// - `why: "more"` with `fired: true` (score): a step was done and more remain: fire the same entry
///   again after `retryInMs`, like an early fire.
/// - `continue` (progress only): keep ticking every `every` ms while true.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerOutcome {
    pub fired: bool,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub q: Option<u32>,
    #[serde(default)]
    pub why: Option<String>,
    #[serde(default)]
    pub retry_in_ms: Option<u64>,
    #[serde(default, rename = "continue")]
    pub keep_ticking: Option<bool>,
}

impl TimerOutcome {
    /// For `progress`: whether the engine should fire it again after `every` ms.
    pub fn should_continue(&self) -> bool {
        self.keep_ticking.unwrap_or(false)
    }

    /// For an early fire, or a `score` step with more to do: fire the same entry again after this many
    /// ms (at least 1).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self.why.as_deref() {
            Some("early" | "more") => Some(std::time::Duration::from_millis(
                self.retry_in_ms.unwrap_or(1).max(1),
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_entry_parses() {
        let flat = [
            "room",
            "K7QP2M",
            "kind",
            "progress",
            "q",
            "3",
            "gen",
            "7",
            "due",
            "1732412345678",
            "every",
            "1000",
        ];
        let e = TimerEntry::from_flat(&flat).unwrap();
        assert_eq!(
            e,
            TimerEntry {
                room: "K7QP2M".into(),
                kind: TimerKind::Progress,
                q: 3,
                gen: 7,
                due: 1_732_412_345_678,
                every: Some(1000)
            }
        );
        assert!(TimerEntry::from_flat(&[
            "room", "X", "kind", "nope", "q", "1", "gen", "1", "due", "1"
        ])
        .is_err());
        assert!(TimerEntry::from_flat(&["room", "X", "kind", "cleanup"]).is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in TimerKind::ALL {
            assert_eq!(TimerKind::parse(k.as_str()), Some(k));
        }
    }
}
