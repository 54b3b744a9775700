//! Limits of the wire protocol. The edge enforces them; clients can rely on them.

/// Largest WebSocket frame payload a client may send, in bytes (larger: close 1009).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest assembled client message, in bytes (larger: close 1009).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Sustained client events per second per socket (token bucket refill rate).
pub const EVENTS_PER_SECOND: u32 = 20;
/// Burst of client events a socket may send at once (token bucket size).
pub const EVENTS_BURST: u32 = 40;
/// Nickname length in Unicode scalar values.
pub const NAME_MIN_CHARS: usize = 1;
pub const NAME_MAX_CHARS: usize = 24;
/// A game code (PIN) is exactly this many characters of [`GAME_CODE_ALPHABET`].
pub const GAME_CODE_LEN: usize = 6;
/// Upper-case letters and digits without the look-alikes 0/O and 1/I.
pub const GAME_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Quiz ids: 1..=64 characters of `[A-Za-z0-9_-]`.
pub const QUIZ_ID_MAX_CHARS: usize = 64;
/// Answer options per question.
pub const MIN_OPTIONS: usize = 2;
pub const MAX_OPTIONS: usize = 8;
/// At most this many answer events per player per question (anti-cheat layer 5).
pub const ANSWER_EVENTS_PER_QUESTION: u32 = 2;
/// Violations after which a player is kicked automatically.
pub const VIOLATIONS_BEFORE_KICK: u32 = 5;
/// Grace after a question's end during which an answer still counts, in ms (anti-cheat layer 3).
pub const ANSWER_GRACE_MS: u64 = 500;
/// Entries of `top N` lists in reveal, leaderboard and end events.
pub const LEADERBOARD_TOP_N: usize = 10;
/// Default interval between client `ping`s that `session:ack` asks for, in ms (the edge's
/// `--app-ping-interval`). Chosen in perf/edge.md ("Pings"): short enough that a client clock drifting
/// 100 ppm moves its offset ≤ 2 ms between two pings (the fair start's display spread goal is 10 ms), that a
/// NAT or proxy idle timeout of 30 s never sees a silent socket, and that a pinging client never gets the
/// edge's WebSocket keepalive ping (sent after 25 s without a frame). It is the longest interval within those
/// bounds; 100K idle players then cost the edge 0.14–0.16 core on loopback (0.49 at the former 5 s).
pub const PING_INTERVAL_MS: u32 = 20_000;
/// Bounds of the interval an edge may announce, in ms.
pub const PING_INTERVAL_MIN_MS: u32 = 1_000;
pub const PING_INTERVAL_MAX_MS: u32 = 120_000;
/// After `session:ack` a client sends this many `ping`s [`SYNC_PING_EVERY_MS`] apart before it follows
/// `pingInterval`: its clock offset is settled before the first question is shown.
pub const SYNC_PINGS: u32 = 4;
pub const SYNC_PING_EVERY_MS: u32 = 500;
/// Longest `host:extend:time` step, in seconds.
pub const MAX_EXTEND_SECONDS: u32 = 120;
/// Decoding depth limit for nested values (defends the decoders against deep nesting).
pub const MAX_DEPTH: usize = 16;
/// Players per `room:players` page (`room_players` in lua/ringside.lua: PLAYERS_PAGE_MAX).
pub const PLAYERS_PAGE_MAX: u32 = 500;
