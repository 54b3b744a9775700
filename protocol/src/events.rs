//! Every wire event, as typed payloads. The enum variant names follow the wire names
//! (`game:answer:submit` → [`ClientEvent::AnswerSubmit`]); `docs/protocol.md` documents each field.
//!
//! Units are in the field names' docs: times are epoch milliseconds of the server clock unless the
//! name ends in `Ms` (a duration in ms) or `Seconds`.

use crate::error::DecodeError;
use crate::limits;
use serde::{Deserialize, Serialize};

/// Implemented by [`ClientEvent`] and [`ServerEvent`]: the glue between a typed event and the envelope.
pub trait Event: Sized {
    /// Every wire name of this direction, in documentation order.
    const NAMES: &'static [&'static str];
    /// The wire name, e.g. `room:join`.
    fn name(&self) -> &'static str;
    /// Builds the event named `name` from its `data` value.
    fn from_data<'de, D: serde::Deserializer<'de>>(
        name: &str,
        data: D,
    ) -> Result<Self, DecodeError>;
    /// Serializes the payload (the envelope's `data`).
    fn serialize_data<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    /// Checks limits that types alone do not express (lengths, formats).
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }
}

macro_rules! events {
    ($(#[$m:meta])* pub enum $enum:ident { $( $(#[$doc:meta])* $wire:literal => $variant:ident($payload:ty), )* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum { $( $(#[$doc])* $variant($payload), )* }

        impl $enum {
            fn name_of(&self) -> &'static str {
                match self { $( $enum::$variant(_) => $wire, )* }
            }
            fn data_from<'de, D: serde::Deserializer<'de>>(name: &str, data: D) -> Result<Self, DecodeError> {
                let bad = |e: D::Error| DecodeError::BadPayload { event: name.to_string(), detail: e.to_string() };
                match name {
                    $( $wire => <$payload as Deserialize>::deserialize(data).map($enum::$variant).map_err(bad), )*
                    _ => Err(DecodeError::UnknownEvent(name.chars().take(64).collect())),
                }
            }
            fn data_into<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( $enum::$variant(p) => p.serialize(s), )* }
            }
            const ALL_NAMES: &'static [&'static str] = &[$($wire),*];
        }
    };
}

events! {
    /// Events a client sends (C→S).
    pub enum ClientEvent {
        /// Heartbeat and clock sync; answered with `pong`.
        "ping" => Ping(Ping),
        /// A host creates a room from a stored quiz; answered with `room:created`.
        "room:create" => RoomCreate(RoomCreate),
        /// A player joins a room by its game code; answered with `room:join:ack`.
        "room:join" => RoomJoin(RoomJoin),
        /// A player leaves a room for good; answered with `ok`.
        "room:leave" => RoomLeave(GameRef),
        /// Host only: remove a player; answered with `ok`.
        "room:kick" => RoomKick(RoomKick),
        /// Host only: lock the room and start the countdown; answered with `ok`.
        "game:start" => GameStart(GameRef),
        /// A player answers the current question; answered with `game:answer:ack`.
        "game:answer:submit" => AnswerSubmit(AnswerSubmit),
        /// Host only: freeze the question timer; answered with `ok`.
        "host:pause" => HostPause(GameRef),
        /// Host only: restart a paused timer; answered with `ok`.
        "host:resume" => HostResume(GameRef),
        /// Host only: end the current question now and reveal; answered with `ok`.
        "host:skip:question" => HostSkip(HostSkip),
        /// Host only: add time to the current question; answered with `ok`.
        "host:extend:time" => HostExtend(HostExtend),
        /// Host only: one page of the room's players (the lobby after a reload); answered with
        /// `room:players:list`.
        "room:players" => RoomPlayers(RoomPlayers),
        /// A player or host comes back on a new socket; answered with missed events or `reconnect:state`.
        "reconnect:attempt" => ReconnectAttempt(ReconnectAttempt),
    }
}

events! {
    /// Events the server sends (S→C): replies to one client, or room events (with `seq`) to every member.
    pub enum ServerEvent {
        /// First frame on every socket.
        "session:ack" => SessionAck(SessionAck),
        /// Reply to `ping`.
        "pong" => Pong(Pong),
        /// A request failed; only the sender receives it.
        "error" => Error(ErrorEvent),
        /// A request without a specific reply succeeded.
        "ok" => Ok(OkReply),
        /// Reply to `room:create`.
        "room:created" => RoomCreated(RoomCreated),
        /// Reply to `room:join`, with a lobby snapshot.
        "room:join:ack" => RoomJoinAck(RoomJoinAck),
        /// Room event: players joined since the last such event (coalesced).
        "room:player:joined" => PlayerJoined(PlayerJoined),
        /// Room event: a player left, disconnected or was kicked.
        "room:player:left" => PlayerLeft(PlayerLeft),
        /// Room event: players whose socket dropped (away) or who came back since the last such event
        /// (coalesced, at most one per second per room).
        "room:player:presence" => PlayerPresence(PlayerPresence),
        /// Room event: the game starts at `startsAt`.
        "game:countdown" => Countdown(Countdown),
        /// Room event: a question, without its correct answer.
        "game:question:show" => QuestionShow(QuestionShow),
        /// To each member that got a sealed `game:question:show`: the key that opens it (no `seq`).
        "game:question:key" => QuestionKey(QuestionKey),
        /// Reply to `game:answer:submit`.
        "game:answer:ack" => AnswerAck(AnswerAck),
        /// Live tick (no `seq`, not in the room log), to the host and to players that asked for it
        /// (`/ws?progress=1`): how many answered, at most once per second per room.
        "game:answer:progress" => AnswerProgress(AnswerProgress),
        /// Room event: the correct answer and the distribution.
        "game:question:reveal" => QuestionReveal(QuestionReveal),
        /// To one player after each reveal: their own points, total, rank, streak.
        "game:answer:result" => AnswerResult(AnswerResult),
        /// Room event: the top N after a reveal.
        "game:leaderboard" => Leaderboard(Leaderboard),
        /// Room event: the host paused the question timer.
        "game:paused" => Paused(Paused),
        /// Room event: the timer runs again with a new deadline.
        "game:resumed" => Resumed(Resumed),
        /// Room event: the host added time; new deadline.
        "game:time:extended" => TimeExtended(TimeExtended),
        /// Room event: final top N; the game is over.
        "game:end" => GameEnd(GameEnd),
        /// Reply to `reconnect:attempt` when the missed events are no longer in the room log.
        "reconnect:state" => ReconnectState(ReconnectState),
        /// Reply to `room:players`: one page of the room's players.
        "room:players:list" => PlayersList(PlayersList),
    }
}

impl Event for ClientEvent {
    const NAMES: &'static [&'static str] = ClientEvent::ALL_NAMES;
    fn name(&self) -> &'static str {
        self.name_of()
    }
    fn from_data<'de, D: serde::Deserializer<'de>>(
        name: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        Self::data_from(name, data)
    }
    fn serialize_data<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.data_into(s)
    }
    fn validate(&self) -> Result<(), DecodeError> {
        let bad = |detail: &str| {
            Err(DecodeError::BadPayload {
                event: self.name().to_string(),
                detail: detail.to_string(),
            })
        };
        let code_ok = |c: &str| is_game_code(c);
        match self {
            ClientEvent::Ping(_) => Ok(()),
            ClientEvent::RoomCreate(c) => {
                if !is_quiz_id(&c.quiz_id) {
                    return bad("quizId must be 1..=64 characters of [A-Za-z0-9_-]");
                }
                if let Some(n) = &c.host_name {
                    if !is_valid_name(n) {
                        return bad(
                            "hostName must be 1..=24 characters without control characters",
                        );
                    }
                }
                Ok(())
            }
            ClientEvent::RoomJoin(j) if !code_ok(&j.game_code) => {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::RoomJoin(_) => Ok(()), // name rules are the room's: reported as bad_name
            ClientEvent::RoomKick(k) if !code_ok(&k.game_code) => {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::RoomKick(k)
                if k.target_player_id.is_empty() || k.target_player_id.len() > 64 =>
            {
                bad("targetPlayerId must be 1..=64 bytes")
            }
            ClientEvent::AnswerSubmit(a) if !code_ok(&a.game_code) => {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::AnswerSubmit(a) if a.answer_idx as usize >= limits::MAX_OPTIONS => {
                bad("answerIdx is out of range")
            }
            ClientEvent::AnswerSubmit(a) if a.answer_hash.len() != 64 => {
                bad("answerHash must be 64 hex digits")
            }
            ClientEvent::HostExtend(e)
                if e.add_seconds == 0 || e.add_seconds > limits::MAX_EXTEND_SECONDS =>
            {
                bad("addSeconds must be 1..=120")
            }
            ClientEvent::ReconnectAttempt(r) if !code_ok(&r.game_code) => {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::ReconnectAttempt(r)
                if r.session_token.len() > 128 || r.player_id.len() > 64 =>
            {
                bad("token or playerId too long")
            }
            ClientEvent::RoomLeave(g)
            | ClientEvent::GameStart(g)
            | ClientEvent::HostPause(g)
            | ClientEvent::HostResume(g)
                if !code_ok(&g.game_code) =>
            {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::HostSkip(s) if !code_ok(&s.game_code) => {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::HostExtend(e) if !code_ok(&e.game_code) => {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::RoomPlayers(p) if !code_ok(&p.game_code) => {
                bad("gameCode must be 6 characters")
            }
            ClientEvent::RoomPlayers(p) if p.count == 0 || p.count > limits::PLAYERS_PAGE_MAX => {
                bad("count must be 1..=500")
            }
            _ => Ok(()),
        }
    }
}

impl Event for ServerEvent {
    const NAMES: &'static [&'static str] = ServerEvent::ALL_NAMES;
    fn name(&self) -> &'static str {
        self.name_of()
    }
    fn from_data<'de, D: serde::Deserializer<'de>>(
        name: &str,
        data: D,
    ) -> Result<Self, DecodeError> {
        Self::data_from(name, data)
    }
    fn serialize_data<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.data_into(s)
    }
}

/// A game code is exactly 6 characters of the code alphabet. Lower case is accepted by clients'
/// keyboards but must be upper-cased before sending.
pub fn is_game_code(code: &str) -> bool {
    code.len() == limits::GAME_CODE_LEN
        && code
            .bytes()
            .all(|b| limits::GAME_CODE_ALPHABET.contains(&b))
}

/// Quiz ids: 1..=64 characters of `[A-Za-z0-9_-]`.
pub fn is_quiz_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= limits::QUIZ_ID_MAX_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Nicknames: 1..=24 Unicode scalar values after trimming, no control characters.
pub fn is_valid_name(name: &str) -> bool {
    let n = name.trim().chars().count();
    (limits::NAME_MIN_CHARS..=limits::NAME_MAX_CHARS).contains(&n)
        && !name.chars().any(char::is_control)
}

// ───────────────────────────── shared pieces ─────────────────────────────

/// Enums that travel as plain strings. rmpv's deserializer does not accept a string for a derived enum,
/// so these deserialize through `&str` by hand; both codecs then agree.
macro_rules! string_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($variant:ident = $wire:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)* }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)* _ => None }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::unknown_variant(&s, &[$($wire),*]))
            }
        }
    };
}

string_enum! {
    /// The room lifecycle (seed 003): LOBBY → STARTING → ACTIVE ⇄ REVEAL → ENDED.
    pub enum RoomState {
        Lobby = "LOBBY",
        Starting = "STARTING",
        Active = "ACTIVE",
        Reveal = "REVEAL",
        Ended = "ENDED",
    }
}

/// A player as others see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerInfo {
    pub id: String,
    pub name: String,
    /// Index into the client's avatar set.
    pub avatar: u16,
}

/// One row of a top-N list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RankEntry {
    /// 1-based; ties share the better rank of the ordering Redis returns (score desc, then id).
    pub rank: u32,
    pub id: String,
    pub name: String,
    /// Total points.
    pub score: i64,
    /// Points of the last question.
    pub delta: i64,
    /// Consecutive correct answers.
    pub streak: u32,
}

/// What a client may show about the quiz before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuizMeta {
    pub quiz_id: String,
    pub title: String,
    pub question_count: u32,
}

/// The `data` of events that only name a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameRef {
    pub game_code: String,
}

// ───────────────────────────── client events ─────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ping {
    /// The client's clock when sent (any unit; echoed back unchanged), e.g. `Date.now()`.
    pub t: f64,
}

/// Per-room settings; every field is optional and falls back to the quiz's or the server's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSettings {
    /// Overrides every question's time limit, in ms (1000..=300000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_per_q_ms: Option<u32>,
    /// Player limit (1..=1000000, default 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_players: Option<u32>,
    /// Allow joins after the game started (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_join: Option<bool>,
    /// Points for a correct answer before bonuses (default: the question's `points`, else 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_points: Option<u32>,
    /// Largest time bonus, for an instant answer (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_bonus: Option<u32>,
    /// Multiplier once a streak reaches `streakThreshold` (default 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streak_multiplier: Option<f64>,
    /// Consecutive correct answers that turn the multiplier on (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streak_threshold: Option<u32>,
    /// Points subtracted for a wrong answer (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrong_penalty: Option<u32>,
    /// Countdown before the first question, in ms (default 3000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countdown_ms: Option<u32>,
    /// Pause between a reveal and the next question, in ms (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_pause_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCreate {
    pub quiz_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    #[serde(default)]
    pub settings: RoomSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomJoin {
    pub game_code: String,
    pub player_name: String,
    #[serde(default)]
    pub avatar_id: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomKick {
    pub game_code: String,
    pub target_player_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomPlayers {
    pub game_code: String,
    /// Position of the first player of the page (0-based; `next` of the previous page).
    #[serde(default)]
    pub offset: u32,
    /// Players per page, 1..=[`limits::PLAYERS_PAGE_MAX`].
    #[serde(default = "default_players_page")]
    pub count: u32,
}

fn default_players_page() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerSubmit {
    pub game_code: String,
    /// 0-based index of the question being answered; must be the current one.
    pub q_index: u32,
    /// 0-based index into the question's `answers`.
    pub answer_idx: u32,
    /// The client's clock (epoch ms); informational only, never used for scoring.
    #[serde(default)]
    pub client_time: f64,
    /// hex(HMAC-SHA256(answerSecret, "gameCode:playerId:qIndex:answerIdx")), 64 hex digits.
    pub answer_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSkip {
    pub game_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostExtend {
    pub game_code: String,
    /// Seconds to add to the current deadline (1..=120).
    pub add_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectAttempt {
    pub game_code: String,
    /// The player's id, or `"host"` for the host.
    pub player_id: String,
    /// The player's `sessionToken` (or the host's `hostToken`).
    pub session_token: String,
    /// The `seq` of the last room event this client processed; absent = send a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

// ───────────────────────────── server events ─────────────────────────────

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionAck {
    /// Opaque id of this socket, for support logs.
    pub socket_id: String,
    /// Server clock, epoch ms.
    pub server_time: u64,
    /// How often the client should send `ping`, in ms.
    pub ping_interval: u32,
    /// The negotiated subprotocol.
    pub protocol: String,
    /// How to pace the reconnect after this socket drops (docs/protocol.md §7.1); absent: the client's
    /// own backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<ReconnectPolicy>,
}

/// `session:ack`'s reconnect policy: attempt *n* (0-based) after a drop waits
/// `min(delayMs × 2ⁿ, 8000) + uniform(0, jitterMs)` ms. The edge widens `jitterMs` with its load, so the
/// sockets of a killed or draining edge come back spread over the window instead of all at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectPolicy {
    /// The least wait before the first attempt, in ms.
    pub delay_ms: u64,
    /// The width of the random share added to every wait, in ms.
    pub jitter_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    /// The `t` of the ping, unchanged.
    pub t: f64,
    /// Server clock when the ping was handled, epoch ms.
    pub server_time: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEvent {
    pub code: crate::error::ErrorCode,
    /// Human-readable detail; do not parse it.
    pub message: String,
    /// The event that failed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// For retryable codes: wait at least this long, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OkReply {
    /// The event that succeeded.
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCreated {
    pub game_code: String,
    /// Unique id of this game (the code is reused after the room expires; this is not).
    pub room_id: String,
    /// Where players join, e.g. `https://host/play.html?code=K7QP2M`.
    pub share_url: String,
    /// Secret proving host rights on reconnect; keep it private.
    pub host_token: String,
    pub quiz_meta: QuizMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomJoinAck {
    pub player_id: String,
    pub game_code: String,
    /// Proves this player's identity on `reconnect:attempt`; keep it private.
    pub session_token: String,
    /// Key of the answer HMAC (64 hex digits); keep it private.
    pub answer_secret: String,
    /// The most recent joiners (at most 50), newest last.
    pub players: Vec<PlayerInfo>,
    pub total_count: u32,
    pub quiz_meta: QuizMeta,
    pub state: RoomState,
    /// The room's latest `seq`: events after it will follow on this socket.
    pub seq: u64,
}

/// One page of a room's players, in leaderboard order (total desc, then id desc: stable in the lobby).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayersList {
    pub players: Vec<PlayerInfo>,
    pub total_count: u32,
    /// The `offset` of the next page; absent after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerJoined {
    /// Some of the players who joined since the previous `room:player:joined` (at most 20).
    pub players: Vec<PlayerInfo>,
    /// How many joined since the previous `room:player:joined`.
    pub joined_count: u32,
    pub total_count: u32,
}

string_enum! {
    /// Why a player left a room.
    pub enum LeaveReason {
        Leave = "leave",
        Disconnect = "disconnect",
        Kick = "kick",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerLeft {
    pub player_id: String,
    pub reason: LeaveReason,
    pub total_count: u32,
}

/// Presence changes since the previous `room:player:presence`: each player in their latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerPresence {
    /// Players now away: their socket dropped; they keep their place and may come back (at most 20).
    #[serde(default)]
    pub away: Vec<String>,
    /// Players back on a new socket (at most 20).
    #[serde(default)]
    pub back: Vec<String>,
    /// Players away now, in the whole room.
    pub away_count: u32,
    pub total_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Countdown {
    /// When the first question appears, epoch ms (server clock).
    pub starts_at: u64,
    /// Seconds of countdown to display.
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionShow {
    pub q_index: u32,
    pub total_questions: u32,
    pub question: String,
    /// The options, in display order. The correct one is not marked.
    pub answers: Vec<String>,
    /// When answering closes, epoch ms (server clock; 500 ms grace is not included).
    pub ends_at: u64,
    /// The full time limit of this question, in ms.
    pub time_limit_ms: u32,
    /// Base points of this question.
    pub points: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// When every client shows the question, epoch ms (server clock): answers are accepted from then on
    /// and the time bonus counts from it. Absent from servers that show questions on arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_at: Option<u64>,
    /// The question's content sealed until its `game:question:key`: then `question` is `""`, `answers`
    /// is empty and `imageUrl` absent; they are inside (a [`SealedContent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedQuestion>,
}

/// The sealed content of a `game:question:show`: AES-256-GCM of the JSON of a [`SealedContent`] with
/// the question's key, additional data `"<gameCode>:<qIndex>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedQuestion {
    /// Always `A256GCM`.
    pub alg: String,
    /// The 12-byte nonce, base64 (standard alphabet, padded).
    pub iv: String,
    /// Ciphertext followed by the 16-byte tag, base64.
    pub ct: String,
}

/// What a [`SealedQuestion`] opens to (its plaintext is this object as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedContent {
    pub question: String,
    pub answers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

/// The key of a sealed question, sent shortly before its `showAt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionKey {
    pub q_index: u32,
    /// The question's `showAt`, epoch ms.
    pub show_at: u64,
    /// The 32-byte AES-256-GCM key, base64.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerAck {
    /// Always true: a refused answer gets an `error` instead.
    pub received: bool,
    pub q_index: u32,
    /// When the server recorded the answer, epoch ms.
    pub server_time: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerProgress {
    pub q_index: u32,
    pub answered_count: u32,
    pub total_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionReveal {
    pub q_index: u32,
    pub correct_index: u32,
    /// Answers per option, indexed like `answers`.
    pub distribution: Vec<u32>,
    pub answered_count: u32,
    pub total_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_text: Option<String>,
    /// Whether the host skipped the question (answers so far were still scored).
    #[serde(default)]
    pub skipped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerResult {
    pub q_index: u32,
    /// The player's answer, absent when they did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_idx: Option<u32>,
    pub correct: bool,
    /// Points of this question (negative with a wrong-answer penalty).
    pub points: i64,
    /// Total after this question.
    pub total: i64,
    /// 1-based rank after this question.
    pub rank: u32,
    pub streak: u32,
    pub total_players: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Leaderboard {
    pub q_index: u32,
    pub rankings: Vec<RankEntry>,
    pub total_players: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Paused {
    pub q_index: u32,
    /// Time left on the question when paused, in ms.
    pub remaining_ms: u64,
    pub paused_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resumed {
    pub q_index: u32,
    /// The new deadline, epoch ms.
    pub ends_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeExtended {
    pub q_index: u32,
    pub ends_at: u64,
    pub add_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameEnd {
    pub room_id: String,
    pub final_rankings: Vec<RankEntry>,
    pub total_players: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectState {
    pub game_code: String,
    pub player_id: String,
    pub state: RoomState,
    /// The room's latest `seq`: later events follow on this socket.
    pub seq: u64,
    /// The current question when one is open (ACTIVE), or the question just revealed (REVEAL), as
    /// `game:question:show` had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_q: Option<Box<QuestionShow>>,
    /// Whether the question timer is paused.
    #[serde(default)]
    pub paused: bool,
    /// Time left on the current question, in ms (0 when none).
    pub time_remaining_ms: u64,
    /// Whether this player already answered the current question.
    #[serde(default)]
    pub answered: bool,
    /// Total as of the last reveal (points of a still-open question are not included).
    pub score: i64,
    /// Streak as of the last reveal.
    pub streak: u32,
    /// 1-based rank as of the last reveal; 0 while a question is open (ranks would move with unrevealed
    /// answers and leak their correctness, so they wait for the reveal).
    pub rank: u32,
    pub total_players: u32,
    pub leaderboard: Vec<RankEntry>,
    pub server_time: u64,
    /// In REVEAL: the reveal of `current_q`, as `game:question:reveal` had it (`skipped` is not kept:
    /// false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal: Option<Box<QuestionReveal>>,
    /// In REVEAL, for a player: their own `game:answer:result` of `current_q`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<AnswerResult>>,
}
