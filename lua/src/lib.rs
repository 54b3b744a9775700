//! Ringside's game logic: one Redis Functions library (`lua/ringside.lua`, library `ringside`), the code
//! that loads it, and typed Rust wrappers the edge and the engine call.
//!
//! Every authoritative transition of a room (join, start, answer, reveal, host controls, timers) runs in
//! Redis as one atomic `FCALL` in the room's hash slot; this crate never decides game outcomes itself.
//! `lua/README.md` is the contract of every function (KEYS, ARGV, reply, errors), the timer stream format
//! and the scoring rules.
//!
//! # Layout
//! - [`LIBRARY`], [`VERSION`]: the Lua source and the version it declares.
//! - [`conn`]: [`Redis`], one connection type for a standalone server and for Redis Cluster.
//! - [`loader`]: [`ensure_loaded`], [`check_version`], [`load`] — `FUNCTION LOAD` on every primary.
//! - [`game`]: [`Game`], one typed method per function, returning `ringside_protocol` types.
//! - [`timer`]: the timer stream entry ([`TimerEntry`]) and the reply of `timer_fire` ([`TimerOutcome`]).
//! - [`error`]: [`GameError`], carrying the wire [`ErrorCode`](ringside_protocol::ErrorCode).
//! - [`quiz`]: the JSON quiz format and its validation ([`Quiz::validate`]).
//! - binaries: `ringside-quiz` (validate / import a quiz), `lua-bench` (perf/lua.md figures).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ringside_lua::{ensure_loaded, Game, Redis};
//! let mut redis = Redis::connect(&["redis://127.0.0.1:7000/".to_string()], true).await?;
//! ensure_loaded(&mut redis).await?;
//! let game = Game::new(redis);
//! let created = game.create_room("general-knowledge", None, &Default::default(), "https://ringside.example").await?;
//! let ack = game.join(&created.game_code, "Blaze99", 3, None).await?;
//! # let _ = ack; Ok(()) }
//! ```

pub mod bench;
pub mod conn;
pub mod error;
pub mod game;
pub mod loader;
pub mod quiz;
pub mod timer;

pub use conn::Redis;
pub use error::{GameError, LoadError};
pub use game::{Function, Game, Reconnected, Recovery};
pub use loader::{check_version, ensure_loaded, load, LoadOutcome};
pub use quiz::{Question, Quiz, QuizError};
pub use timer::{TimerEntry, TimerKind, TimerOutcome};

/// The Lua source of the `ringside` Functions library.
pub const LIBRARY: &str = include_str!("../ringside.lua");

/// The library version this crate was built with; `FCALL version` answers `ringside <VERSION>`.
/// Bump it (here and in `ringside.lua`, twice) whenever a function's behaviour or contract changes.
pub const VERSION: u32 = 10;

/// The library name (`#!lua name=ringside`).
pub const LIBRARY_NAME: &str = "ringside";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lua_source_declares_the_crate_version() {
        assert!(LIBRARY.starts_with("#!lua name=ringside\n"));
        assert!(
            LIBRARY.contains(&format!("Library version: {VERSION} ")),
            "header comment"
        );
        assert!(
            LIBRARY.contains(&format!("local VERSION = {VERSION}\n")),
            "VERSION constant"
        );
    }

    #[test]
    fn every_function_is_registered_and_read_only_ones_say_so() {
        for f in Function::ALL {
            let plain = format!("register('{}', ", f.name());
            assert!(LIBRARY.contains(&plain), "{} is not registered", f.name());
            let ro = LIBRARY
                .lines()
                .any(|l| l.starts_with(&plain) && l.ends_with(", true)"));
            assert_eq!(
                ro,
                f.read_only(),
                "{}: no-writes flag differs from Function::read_only",
                f.name()
            );
        }
    }

    /// The field names a Lua call writes into the room hash `R.P`: the keys of `HSET R.P k v …`
    /// (string literals at even positions) and the field of `HINCRBY R.P 'f' n`.
    fn room_hash_fields_written() -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (call, all_keys) in [
            ("redis.call('HSET', R.P, ", true),
            ("redis.call('HINCRBY', R.P, ", false),
        ] {
            let mut rest = LIBRARY;
            while let Some(i) = rest.find(call) {
                rest = &rest[i + call.len()..];
                // The arguments up to the call's closing parenthesis, split at top-level commas.
                let (mut depth, mut end) = (0i32, rest.len());
                for (j, ch) in rest.char_indices() {
                    match ch {
                        '(' | '{' => depth += 1,
                        ')' | '}' if depth == 0 => {
                            end = j;
                            break;
                        }
                        ')' | '}' => depth -= 1,
                        _ => {}
                    }
                }
                let (mut args, mut depth, mut start) = (Vec::new(), 0i32, 0);
                let body = &rest[..end];
                for (j, ch) in body.char_indices() {
                    match ch {
                        '(' | '{' => depth += 1,
                        ')' | '}' => depth -= 1,
                        ',' if depth == 0 => {
                            args.push(body[start..j].trim());
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                args.push(body[start..].trim());
                let keys = if all_keys {
                    args.iter().step_by(2).copied().collect()
                } else {
                    vec![args[0]]
                };
                for k in keys {
                    if let Some(name) = k.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
                        out.insert(name.to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_room_hash_field_is_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("### Fields of the room hash `P`")
            .nth(1)
            .expect("lua/README.md has the room hash table")
            .split("\n\n")
            .find(|block| block.starts_with("| field"))
            .expect("the table under that heading");
        let fields = room_hash_fields_written();
        assert!(
            fields.contains("pjn") && fields.contains("s_rp"),
            "{fields:?}"
        );
        let missing: Vec<_> = fields
            .iter()
            .filter(|f| {
                !table.lines().any(|l| {
                    l.starts_with('|')
                        && l.split('|')
                            .nth(1)
                            .is_some_and(|c| c.contains(&format!("`{f}`")))
                })
            })
            .collect();
        assert!(
            missing.is_empty(),
            "room hash fields missing from lua/README.md's table: {missing:?}"
        );
    }

    #[test]
    fn lua_limits_match_the_protocol_crate() {
        use ringside_protocol::limits;
        for (name, value) in [
            ("GRACE_MS", limits::ANSWER_GRACE_MS as usize),
            ("TOP_N", limits::LEADERBOARD_TOP_N),
            ("ANSWER_EVENTS", limits::ANSWER_EVENTS_PER_QUESTION as usize),
            ("VIOLATIONS_KICK", limits::VIOLATIONS_BEFORE_KICK as usize),
            ("MAX_EXTEND_S", limits::MAX_EXTEND_SECONDS as usize),
            ("MAX_OPTIONS", limits::MAX_OPTIONS),
        ] {
            let line = format!("local {name} = {value} ");
            assert!(
                LIBRARY.contains(&line) || LIBRARY.contains(&format!("local {name} = {value}\n")),
                "{line}"
            );
        }
    }
}
