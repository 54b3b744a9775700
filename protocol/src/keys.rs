//! Redis key names. Every key of one room carries the same hash tag, so every `FCALL` for a room touches
//! one hash slot and runs unchanged on Redis Cluster.
//!
//! The hash tag is the room's *timer partition* `{pNN}`, not the game code: rooms are spread over
//! [`PARTITIONS`] partitions by a hash of the code, and each partition has one timer stream
//! `timers:{pNN}` in the same slot as its rooms. A room function can therefore append its schedule to
//! the timer stream atomically, and the engine reads [`PARTITIONS`] streams instead of scanning keys.
//!
//! Layout of one room (prefix `room:{pNN}:CODE`, passed to functions as `KEYS[1]`):
//! `…` (hash: state, settings, current question, deadlines, seq), `…:quiz` (the quiz, with answers),
//! `…:players` (hash playerId → name), `…:names` (set of taken lower-cased names), `…:p:<playerId>` (hash),
//! `…:lb` (sorted set: total score), `…:q:<i>:answers` (hash playerId → "answerIdx:serverMs"),
//! `…:log` (stream, capped, entry id = seq), and the sharded pub/sub channel `…:ev`.

/// Number of timer partitions. Changing it re-homes every room: do it only between games.
pub const PARTITIONS: u32 = 64;

/// The partition of a game code: FNV-1a (32 bit) of its bytes, modulo [`PARTITIONS`].
pub fn partition_of(game_code: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in game_code.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % PARTITIONS
}

/// The hash tag of a partition, e.g. `{p07}`.
pub fn partition_tag(partition: u32) -> String {
    format!("{{p{partition:02}}}")
}

/// The key prefix of a room: `room:{pNN}:CODE`. Functions derive the room's other keys from it.
pub fn room(game_code: &str) -> String {
    format!(
        "room:{}:{game_code}",
        partition_tag(partition_of(game_code))
    )
}

/// The sharded pub/sub channel of a room.
pub fn room_channel(game_code: &str) -> String {
    format!("{}:ev", room(game_code))
}

/// The room's capped event log (a stream whose entry ids are `seq-0`).
pub fn room_log(game_code: &str) -> String {
    format!("{}:log", room(game_code))
}

/// The timer stream of a partition.
pub fn timers(partition: u32) -> String {
    format!("timers:{}", partition_tag(partition))
}

/// The timer stream of the partition a room lives in.
pub fn room_timers(game_code: &str) -> String {
    timers(partition_of(game_code))
}

/// The results stream of a partition: one entry per ended game of its rooms (`room`, `roomId`, `reason`,
/// `ended`), read by the control plane's results writer with the consumer group `writer`.
pub fn results(partition: u32) -> String {
    format!("results:{}", partition_tag(partition))
}

/// The index of a partition's live rooms: a sorted set, game code → created (epoch ms), kept by the room
/// functions (added by `room_create`, removed when the game ends) and read by `rooms_list` (the ops view).
pub fn rooms(partition: u32) -> String {
    format!("rooms:{}", partition_tag(partition))
}

/// A quiz of the public catalog (its own slot; read once when a room is created by `room:create`).
pub fn quiz(quiz_id: &str) -> String {
    format!("quiz:{{{quiz_id}}}")
}

/// The library version key is not needed: `FUNCTION LIST` reports it (see lua/).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_room_shares_the_partition_tag() {
        let code = "K7QP2M";
        let tag = partition_tag(partition_of(code));
        for k in [
            room(code),
            room_channel(code),
            room_log(code),
            room_timers(code),
        ] {
            assert!(k.contains(&tag), "{k} lacks {tag}");
            assert_eq!(
                k.matches('{').count(),
                1,
                "{k} must have exactly one hash tag"
            );
        }
    }

    #[test]
    fn codes_spread_over_all_partitions() {
        let alphabet = crate::limits::GAME_CODE_ALPHABET;
        let mut seen = vec![0u32; PARTITIONS as usize];
        for a in alphabet {
            for b in alphabet {
                let code = format!("AB{}{}XY", *a as char, *b as char);
                seen[partition_of(&code) as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }
}
