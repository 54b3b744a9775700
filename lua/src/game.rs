//! [`Game`]: one typed method per function of the library. Each call is a single `FCALL` with the room's
//! two keys (`keys::room(code)`, `keys::room_timers(code)`), so it runs unchanged on Redis Cluster.
//!
//! Methods that need randomness (game codes, ids, tokens, answer secrets) draw it here from the OS CSPRNG
//! (`rand::rng()`), never in Lua; the raw variants (`room_create`, `room_join`) take it as arguments.

use crate::error::GameError;
use crate::quiz::Quiz;
use crate::timer::{TimerEntry, TimerKind, TimerOutcome};
use crate::Redis;
use rand::RngCore;
use redis::Cmd;
use ringside_protocol::events::{
    is_game_code, is_quiz_id, AnswerAck, AnswerResult, PlayersList, ReconnectState, RoomCreated,
    RoomJoinAck, RoomSettings,
};
use ringside_protocol::{keys, limits, ErrorCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The functions of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Version,
    RoomCreate,
    RoomJoin,
    RoomLeave,
    RoomKick,
    GameStart,
    AnswerSubmit,
    AnswerBatch,
    HostPause,
    HostResume,
    HostSkip,
    HostExtend,
    TimerFire,
    Results,
    Snapshot,
    Reconnect,
    GameExport,
    ResultsHold,
    RoomPlayers,
    RoomsList,
    PlayerAway,
}

impl Function {
    pub const ALL: [Function; 21] = [
        Function::Version,
        Function::RoomCreate,
        Function::RoomJoin,
        Function::RoomLeave,
        Function::RoomKick,
        Function::GameStart,
        Function::AnswerSubmit,
        Function::AnswerBatch,
        Function::HostPause,
        Function::HostResume,
        Function::HostSkip,
        Function::HostExtend,
        Function::TimerFire,
        Function::Results,
        Function::Snapshot,
        Function::Reconnect,
        Function::GameExport,
        Function::ResultsHold,
        Function::RoomPlayers,
        Function::RoomsList,
        Function::PlayerAway,
    ];

    /// The registered name (`FCALL <name> ...`).
    pub fn name(self) -> &'static str {
        match self {
            Function::Version => "version",
            Function::RoomCreate => "room_create",
            Function::RoomJoin => "room_join",
            Function::RoomLeave => "room_leave",
            Function::RoomKick => "room_kick",
            Function::GameStart => "game_start",
            Function::AnswerSubmit => "answer_submit",
            Function::AnswerBatch => "answer_batch",
            Function::HostPause => "host_pause",
            Function::HostResume => "host_resume",
            Function::HostSkip => "host_skip",
            Function::HostExtend => "host_extend",
            Function::TimerFire => "timer_fire",
            Function::Results => "results",
            Function::Snapshot => "snapshot",
            Function::Reconnect => "reconnect",
            Function::GameExport => "game_export",
            Function::ResultsHold => "results_hold",
            Function::RoomPlayers => "room_players",
            Function::RoomsList => "rooms_list",
            Function::PlayerAway => "player_away",
        }
    }

    /// Registered with `flags = { 'no-writes' }` (may also be called with `FCALL_RO`, e.g. on a replica).
    pub fn read_only(self) -> bool {
        matches!(
            self,
            Function::Version
                | Function::Results
                | Function::Snapshot
                | Function::GameExport
                | Function::RoomPlayers
                | Function::RoomsList
        )
    }
}

/// The `FCALL` command for `function` on room `code`: KEYS = [room, timers], then `args`.
/// Exposed so callers can pipeline calls (the bench does).
pub fn fcall_cmd<A: redis::ToRedisArgs>(function: Function, code: &str, args: &[A]) -> Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(function.name())
        .arg(2)
        .arg(keys::room(code))
        .arg(keys::room_timers(code));
    for a in args {
        cmd.arg(a);
    }
    cmd
}

/// Answers per `answer_batch` call at most (`ANSWER_BATCH_MAX` in `lua/ringside.lua`).
pub const ANSWER_BATCH_MAX: usize = 256;

/// One answer of an [`Game::answer_batch`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchedAnswer<'a> {
    pub player_id: &'a str,
    pub q_index: u32,
    pub answer_idx: u32,
}

/// How a player got their state back after `reconnect`.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// The missed room events after `lastSeq`, in order: complete envelope JSON, to forward as they are
    /// (possibly empty: nothing was missed).
    Events(Vec<String>),
    /// The gap is no longer in the room log (or no `lastSeq` was given): a full snapshot to send as
    /// `reconnect:state`.
    State(Box<ReconnectState>),
}

/// The reply of `reconnect`: who this is, and what the edge sends to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnected {
    pub player_id: String,
    /// The host (reconnected with `playerId = "host"` and the host token).
    pub host: bool,
    /// The player's answer HMAC key, for the edge to verify answers on the new socket (absent for the host).
    pub answer_secret: Option<String>,
    /// The player's connection epoch after this reconnect (0 for the host): pass it to
    /// [`Game::player_away`] when this socket closes.
    pub epoch: u32,
    /// The room's latest seq.
    pub seq: u64,
    pub recovery: Recovery,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReconnectReply {
    player_id: String,
    host: bool,
    #[serde(default)]
    answer_secret: Option<String>,
    #[serde(default)]
    epoch: u32,
    seq: u64,
    #[serde(default)]
    events: Option<Vec<Box<serde_json::value::RawValue>>>,
    #[serde(default)]
    state: Option<Box<ReconnectState>>,
}

/// Random lower-case hex of `bytes` random bytes, from the OS-seeded CSPRNG.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A random game code of [`limits::GAME_CODE_LEN`] characters of [`limits::GAME_CODE_ALPHABET`].
pub fn random_game_code() -> String {
    let mut buf = [0u8; limits::GAME_CODE_LEN];
    rand::rng().fill_bytes(&mut buf);
    // The alphabet has 32 letters: the low 5 bits of a uniform byte are uniform.
    buf.iter()
        .map(|b| {
            limits::GAME_CODE_ALPHABET[(*b as usize) % limits::GAME_CODE_ALPHABET.len()] as char
        })
        .collect()
}

/// Attempts at drawing a free game code before [`GameError::NoFreeCode`].
const CODE_ATTEMPTS: u32 = 16;

/// Typed access to the game functions. Cheap to clone; methods take `&self` and may run concurrently.
#[derive(Clone, Debug)]
pub struct Game {
    conn: Redis,
}

impl Game {
    pub fn new(conn: Redis) -> Game {
        Game { conn }
    }

    /// The underlying connection (e.g. for `ensure_loaded` or extra commands).
    pub fn conn(&self) -> Redis {
        self.conn.clone()
    }

    /// Calls `function` for room `code` and returns its raw (JSON) reply.
    pub async fn call(
        &self,
        function: Function,
        code: &str,
        args: &[&str],
    ) -> Result<String, GameError> {
        self.call_reply(function, code, args).await
    }

    /// Calls `function` for room `code` (refused without a call when `code` is not a game code) and
    /// converts its reply to `T`.
    async fn call_reply<T: redis::FromRedisValue, A: redis::ToRedisArgs>(
        &self,
        function: Function,
        code: &str,
        args: &[A],
    ) -> Result<T, GameError> {
        if !is_game_code(code) {
            return Err(GameError::refused(
                ErrorCode::BadPayload,
                "gameCode must be 6 characters of the code alphabet",
            ));
        }
        let mut conn = self.conn.clone();
        fcall_cmd(function, code, args)
            .query_async::<T>(&mut conn)
            .await
            .map_err(GameError::from_redis)
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        function: Function,
        code: &str,
        args: &[&str],
    ) -> Result<T, GameError> {
        let raw = self.call(function, code, args).await?;
        decode(function, &raw)
    }

    async fn call_ok(
        &self,
        function: Function,
        code: &str,
        args: &[&str],
    ) -> Result<(), GameError> {
        self.call(function, code, args).await.map(drop)
    }

    // ── quizzes ──

    /// Validates and stores a quiz at `keys::quiz(id)` (replacing one with the same id).
    pub async fn store_quiz(&self, quiz: &Quiz) -> Result<(), GameError> {
        quiz.validate()
            .map_err(|e| GameError::refused(ErrorCode::BadPayload, e.to_string()))?;
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(keys::quiz(&quiz.id))
            .arg(quiz.to_json())
            .query_async::<()>(&mut conn)
            .await
            .map_err(GameError::Redis)
    }

    /// The stored quiz JSON; `quiz_not_found` when there is none.
    pub async fn quiz_json(&self, quiz_id: &str) -> Result<String, GameError> {
        if !is_quiz_id(quiz_id) {
            return Err(GameError::refused(
                ErrorCode::BadPayload,
                "quizId must be 1..=64 characters of [A-Za-z0-9_-]",
            ));
        }
        let mut conn = self.conn.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(keys::quiz(quiz_id))
            .query_async(&mut conn)
            .await
            .map_err(GameError::Redis)?;
        json.ok_or_else(|| {
            GameError::refused(ErrorCode::QuizNotFound, format!("no quiz {quiz_id}"))
        })
    }

    // ── lobby ──

    /// Creates a room from a quiz of the public catalog in Redis (`keys::quiz(id)`): draws a free game
    /// code (retrying on collisions), a room id and a host token. `share_base` (e.g.
    /// `https://play.example`) becomes `shareUrl = {base}/play.html?code=CODE`.
    pub async fn create_room(
        &self,
        quiz_id: &str,
        host_name: Option<&str>,
        settings: &RoomSettings,
        share_base: &str,
    ) -> Result<RoomCreated, GameError> {
        let quiz = self.quiz_json(quiz_id).await?;
        self.create_room_with_quiz(&quiz, host_name, settings, share_base)
            .await
    }

    /// [`create_room`](Self::create_room) with the quiz JSON given by the caller (the control plane
    /// passes a private quiz from PostgreSQL; it never enters the public catalog).
    pub async fn create_room_with_quiz(
        &self,
        quiz: &str,
        host_name: Option<&str>,
        settings: &RoomSettings,
        share_base: &str,
    ) -> Result<RoomCreated, GameError> {
        let room_id = random_hex(16);
        let host_token = random_hex(32);
        for _ in 0..CODE_ATTEMPTS {
            let code = random_game_code();
            let share = if share_base.is_empty() {
                String::new()
            } else {
                format!("{}/play.html?code={code}", share_base.trim_end_matches('/'))
            };
            match self
                .room_create(
                    &code,
                    &room_id,
                    &host_token,
                    quiz,
                    settings,
                    host_name.unwrap_or(""),
                    &share,
                )
                .await
            {
                Err(GameError::CodeTaken(_)) => continue,
                other => return other,
            }
        }
        Err(GameError::NoFreeCode(CODE_ATTEMPTS))
    }

    /// `room_create` with caller-chosen randomness. `quiz_json` is the stored quiz.
    #[allow(clippy::too_many_arguments)]
    pub async fn room_create(
        &self,
        code: &str,
        room_id: &str,
        host_token: &str,
        quiz_json: &str,
        settings: &RoomSettings,
        host_name: &str,
        share_url: &str,
    ) -> Result<RoomCreated, GameError> {
        let settings = serde_json::to_string(settings).expect("settings serialize");
        let host_name = host_name.trim();
        self.call_json(
            Function::RoomCreate,
            code,
            &[
                code, room_id, host_token, quiz_json, &settings, host_name, share_url,
            ],
        )
        .await
    }

    /// A player joins: draws the player id, session token and answer secret. `prior_session` is a session
    /// token this socket already held in the room (a kicked one is refused with `kicked`).
    pub async fn join(
        &self,
        code: &str,
        name: &str,
        avatar: u16,
        prior_session: Option<&str>,
    ) -> Result<RoomJoinAck, GameError> {
        let player_id = random_hex(8);
        let session = random_hex(32);
        let secret = random_hex(32);
        self.room_join(
            code,
            &player_id,
            &session,
            &secret,
            name,
            avatar,
            prior_session,
        )
        .await
    }

    /// `room_join` with caller-chosen randomness. The name is trimmed; names are compared by their
    /// Unicode lower case.
    #[allow(clippy::too_many_arguments)]
    pub async fn room_join(
        &self,
        code: &str,
        player_id: &str,
        session_token: &str,
        answer_secret: &str,
        name: &str,
        avatar: u16,
        prior_session: Option<&str>,
    ) -> Result<RoomJoinAck, GameError> {
        let name = name.trim();
        let folded = name.to_lowercase();
        let avatar = avatar.to_string();
        self.call_json(
            Function::RoomJoin,
            code,
            &[
                player_id,
                session_token,
                answer_secret,
                name,
                &folded,
                &avatar,
                prior_session.unwrap_or(""),
            ],
        )
        .await
    }

    pub async fn leave(&self, code: &str, player_id: &str) -> Result<(), GameError> {
        self.call_ok(Function::RoomLeave, code, &[player_id]).await
    }

    pub async fn kick(
        &self,
        code: &str,
        host_token: &str,
        target_player_id: &str,
    ) -> Result<(), GameError> {
        self.call_ok(Function::RoomKick, code, &[host_token, target_player_id])
            .await
    }

    // ── game ──

    pub async fn start(&self, code: &str, host_token: &str) -> Result<(), GameError> {
        self.call_ok(Function::GameStart, code, &[host_token]).await
    }

    /// Records an answer (the edge has verified its HMAC). The ack says nothing about correctness.
    pub async fn answer_submit(
        &self,
        code: &str,
        player_id: &str,
        q_index: u32,
        answer_idx: u32,
    ) -> Result<AnswerAck, GameError> {
        let (q, a) = (q_index.to_string(), answer_idx.to_string());
        self.call_json(Function::AnswerSubmit, code, &[player_id, &q, &a])
            .await
    }

    /// Records the answers of one room that arrived together, in order, in one `answer_batch` call
    /// (at most [`ANSWER_BATCH_MAX`]): one result per answer, each what [`answer_submit`](Self::answer_submit)
    /// would have returned for it. The outer error is the call's (Redis failed, or a malformed batch).
    pub async fn answer_batch(
        &self,
        code: &str,
        answers: &[BatchedAnswer<'_>],
    ) -> Result<Vec<Result<AnswerAck, GameError>>, GameError> {
        if !is_game_code(code) {
            return Err(GameError::refused(
                ErrorCode::BadPayload,
                "gameCode must be 6 characters of the code alphabet",
            ));
        }
        if answers.is_empty() || answers.len() > ANSWER_BATCH_MAX {
            return Err(GameError::refused(
                ErrorCode::BadPayload,
                format!("a batch holds 1..{ANSWER_BATCH_MAX} answers"),
            ));
        }
        let mut args: Vec<String> = Vec::with_capacity(3 * answers.len());
        for a in answers {
            args.push(a.player_id.to_string());
            args.push(a.q_index.to_string());
            args.push(a.answer_idx.to_string());
        }
        let cmd = fcall_cmd(Function::AnswerBatch, code, &args);
        let mut conn = self.conn.clone();
        let reply = redis::aio::ConnectionLike::req_packed_command(&mut conn, &cmd)
            .await
            .map_err(GameError::from_redis)?;
        let bad = |detail: String| GameError::BadReply {
            function: Function::AnswerBatch.name(),
            detail,
        };
        let items = match reply {
            redis::Value::Array(items) => items,
            redis::Value::ServerError(e) => {
                return Err(GameError::from_redis(redis::RedisError::from(e)))
            }
            other => return Err(bad(format!("not an array: {other:?}"))),
        };
        if items.len() != answers.len() {
            return Err(bad(format!(
                "{} replies for {} answers",
                items.len(),
                answers.len()
            )));
        }
        Ok(items
            .into_iter()
            .map(|v| match v {
                redis::Value::ServerError(e) => {
                    Err(GameError::from_redis(redis::RedisError::from(e)))
                }
                v => match redis::from_redis_value::<String>(v) {
                    Ok(raw) => decode(Function::AnswerBatch, &raw),
                    Err(e) => Err(bad(e.to_string())),
                },
            })
            .collect())
    }

    pub async fn pause(&self, code: &str, host_token: &str) -> Result<(), GameError> {
        self.call_ok(Function::HostPause, code, &[host_token]).await
    }

    pub async fn resume(&self, code: &str, host_token: &str) -> Result<(), GameError> {
        self.call_ok(Function::HostResume, code, &[host_token])
            .await
    }

    pub async fn skip(
        &self,
        code: &str,
        host_token: &str,
        reason: Option<&str>,
    ) -> Result<(), GameError> {
        self.call_ok(
            Function::HostSkip,
            code,
            &[host_token, reason.unwrap_or("")],
        )
        .await
    }

    pub async fn extend(
        &self,
        code: &str,
        host_token: &str,
        add_seconds: u32,
    ) -> Result<(), GameError> {
        self.call_ok(
            Function::HostExtend,
            code,
            &[host_token, &add_seconds.to_string()],
        )
        .await
    }

    // ── timers ──

    /// Fires a timer entry (the engine calls this at `entry.due`).
    pub async fn fire(&self, entry: &TimerEntry) -> Result<TimerOutcome, GameError> {
        self.timer_fire(&entry.room, entry.kind, entry.q, entry.gen)
            .await
    }

    pub async fn timer_fire(
        &self,
        code: &str,
        kind: TimerKind,
        q: u32,
        gen: u64,
    ) -> Result<TimerOutcome, GameError> {
        let (q, gen) = (q.to_string(), gen.to_string());
        self.call_json(Function::TimerFire, code, &[kind.as_str(), &q, &gen])
            .await
    }

    // ── reads ──

    /// Each player's own result of the latest revealed question, aligned with `player_ids` (`None` for an
    /// id that is not in the room). Ids are sent in calls of at most 1000. Refused before the reveal
    /// (`wrong_state`) and once the next question has opened (`wrong_question`).
    pub async fn results(
        &self,
        code: &str,
        q_index: u32,
        player_ids: &[&str],
    ) -> Result<Vec<Option<AnswerResult>>, GameError> {
        self.results_in_batches(code, q_index, player_ids, RESULTS_MAX)
            .await
    }

    /// [`results`](Self::results) with a chosen batch size (1..=1000).
    pub async fn results_in_batches(
        &self,
        code: &str,
        q_index: u32,
        player_ids: &[&str],
        batch: usize,
    ) -> Result<Vec<Option<AnswerResult>>, GameError> {
        let batch = batch.clamp(1, RESULTS_MAX);
        let q = q_index.to_string();
        let mut out = Vec::with_capacity(player_ids.len());
        for chunk in player_ids.chunks(batch) {
            let mut args = Vec::with_capacity(chunk.len() + 1);
            args.push(q.as_str());
            args.extend_from_slice(chunk);
            let v = self.call_reply(Function::Results, code, &args).await?;
            let part = results_from_reply(v, q_index, chunk.len()).map_err(|detail| {
                GameError::BadReply {
                    function: "results",
                    detail,
                }
            })?;
            out.extend(part);
        }
        Ok(out)
    }

    /// One page of an ended game's results: `count` (1..=[`EXPORT_MAX`]) players from rank position
    /// `offset`. `wrong_state` until the game has ended; `room_not_found` once the room is gone.
    pub async fn export(
        &self,
        code: &str,
        offset: u64,
        count: usize,
    ) -> Result<ExportPage, GameError> {
        let v = self
            .call_reply(
                Function::GameExport,
                code,
                &[offset.to_string(), count.to_string()],
            )
            .await?;
        ExportPage::from_reply(v).map_err(|detail| GameError::BadReply {
            function: "game_export",
            detail,
        })
    }

    /// Keeps an ended room (and its results) for `ms` more milliseconds, or releases the hold with 0.
    /// Returns whether the room was there to hold.
    pub async fn results_hold(&self, code: &str, ms: u64) -> Result<bool, GameError> {
        #[derive(Deserialize)]
        struct Held {
            held: bool,
        }
        let h: Held = self
            .call_json(Function::ResultsHold, code, &[&ms.to_string()])
            .await?;
        Ok(h.held)
    }

    /// One page of the room's players for its host (`room:players`): `count` (1..=500) from `offset`,
    /// in leaderboard order.
    pub async fn players(
        &self,
        code: &str,
        host_token: &str,
        offset: u32,
        count: u32,
    ) -> Result<PlayersList, GameError> {
        self.call_json(
            Function::RoomPlayers,
            code,
            &[host_token, &offset.to_string(), &count.to_string()],
        )
        .await
    }

    /// The live rooms of `partition` (`keys::rooms`): how many, and the newest `count` (0..=1000) as
    /// (game code, created epoch ms), newest first. For the ops view; read each room with [`Game::snapshot`].
    pub async fn rooms_list(
        &self,
        partition: u32,
        count: u32,
    ) -> Result<(u64, Vec<(String, u64)>), GameError> {
        let mut conn = self.conn.clone();
        let v: Vec<redis::Value> = redis::cmd("FCALL")
            .arg(Function::RoomsList.name())
            .arg(1)
            .arg(keys::rooms(partition))
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(GameError::from_redis)?;
        let bad = |detail: &str| GameError::BadReply {
            function: "rooms_list",
            detail: detail.into(),
        };
        let mut it = v.into_iter();
        let live: u64 = it
            .next()
            .and_then(|x| redis::from_redis_value(x).ok())
            .ok_or_else(|| bad("no count"))?;
        let mut rooms = Vec::new();
        while let (Some(c), Some(t)) = (it.next(), it.next()) {
            let code: String = redis::from_redis_value(c).map_err(|_| bad("code"))?;
            let created: String = redis::from_redis_value(t).map_err(|_| bad("created"))?;
            rooms.push((
                code,
                created.parse::<f64>().map_err(|_| bad("created"))? as u64,
            ));
        }
        Ok((live, rooms))
    }

    /// The room as a `reconnect:state` for `player_id` (`None`: no player's own figures).
    pub async fn snapshot(
        &self,
        code: &str,
        player_id: Option<&str>,
    ) -> Result<ReconnectState, GameError> {
        self.call_json(Function::Snapshot, code, &[player_id.unwrap_or("")])
            .await
    }

    /// Verifies a returning player (`player_id` + session token) or host (`"host"` + host token) and
    /// returns the missed events after `last_seq`, or a snapshot when they are gone from the log.
    pub async fn reconnect(
        &self,
        code: &str,
        player_id: &str,
        token: &str,
        last_seq: Option<u64>,
    ) -> Result<Reconnected, GameError> {
        let last = last_seq.map(|s| s.to_string()).unwrap_or_default();
        let r: ReconnectReply = self
            .call_json(Function::Reconnect, code, &[player_id, token, &last])
            .await?;
        let recovery = match (r.events, r.state) {
            (Some(evs), _) => {
                Recovery::Events(evs.into_iter().map(|e| e.get().to_string()).collect())
            }
            (None, Some(state)) => Recovery::State(state),
            (None, None) => {
                return Err(GameError::BadReply {
                    function: "reconnect",
                    detail: "neither events nor state".into(),
                })
            }
        };
        Ok(Reconnected {
            player_id: r.player_id,
            host: r.host,
            answer_secret: r.answer_secret,
            epoch: r.epoch,
            seq: r.seq,
            recovery,
        })
    }

    /// The socket of `player_id` with connection `epoch` (0: the socket of its join; else the
    /// [`Reconnected::epoch`] of the reconnect that opened it) has closed: the player is away — kept in
    /// the room, but "everyone answered" no longer waits for them (an early reveal may happen in this
    /// call). `Ok(false)`: nothing changed (not in the room, already away, a newer connection, or the
    /// game is over).
    pub async fn player_away(
        &self,
        code: &str,
        player_id: &str,
        epoch: u32,
    ) -> Result<bool, GameError> {
        #[derive(Deserialize)]
        struct Away {
            away: bool,
        }
        let epoch = epoch.to_string();
        let r: Away = self
            .call_json(Function::PlayerAway, code, &[player_id, &epoch])
            .await?;
        Ok(r.away)
    }
}

/// One page of an ended game's results (`game_export`), players in rank order.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportPage {
    pub game: ExportedGame,
    pub players: Vec<ExportedPlayer>,
    /// The offset of the next page, `None` after the last.
    pub next: Option<u64>,
}

impl ExportPage {
    /// Decodes the array `game_export` answers (see `lua/ringside.lua`).
    fn from_reply(v: redis::Value) -> Result<ExportPage, String> {
        use redis::Value;
        let (text, int) = (reply_text, reply_int);
        fn list(v: &Value) -> Option<&[Value]> {
            match v {
                Value::Array(a) => Some(a),
                Value::Nil => Some(&[]),
                _ => None,
            }
        }
        let Value::Array(parts) = v else {
            return Err(format!("not an array: {v:?}"));
        };
        if parts.len() != 5 {
            return Err(format!("{} parts, want 5", parts.len()));
        }
        let game: ExportedGame = serde_json::from_str(&text(&parts[0]).ok_or("game is not text")?)
            .map_err(|e| format!("game: {e}"))?;
        let next = int(&parts[1]).ok_or("next is not an integer")?;
        let shown: Vec<Option<i64>> = list(&parts[2]).ok_or("shown")?.iter().map(int).collect();
        let correct: Vec<Option<i64>> = list(&parts[3]).ok_or("correct")?.iter().map(int).collect();
        let played = game.questions_played as usize;
        if shown.len() != played || correct.len() != played {
            return Err(format!(
                "{played} questions played, {} shown times",
                shown.len()
            ));
        }
        let flat = list(&parts[4]).ok_or("players")?;
        let width = 4 + played;
        if flat.len() % width != 0 {
            return Err(format!(
                "{} player values, not a multiple of {width}",
                flat.len()
            ));
        }
        let mut players = Vec::with_capacity(flat.len() / width);
        for p in flat.chunks(width) {
            let player = text(&p[1]).unwrap_or_default();
            let (avatar, name) = player.split_once(':').unwrap_or(("0", ""));
            let mut answers = Vec::with_capacity(played);
            let mut right = 0;
            for (q, a) in p[4..].iter().enumerate() {
                let answer = text(a).and_then(|a| {
                    let mut f = a.split(':').map(|x| x.parse::<i64>().ok());
                    let (idx, at, points) = (f.next()??, f.next()??, f.next()??);
                    Some(ExportedAnswer {
                        answer_idx: u32::try_from(idx).ok()?,
                        ms: shown[q].map(|s| at - s),
                        points,
                    })
                });
                if let Some(a) = &answer {
                    if Some(i64::from(a.answer_idx)) == correct[q] {
                        right += 1;
                    }
                }
                answers.push(answer);
            }
            players.push(ExportedPlayer {
                player_id: text(&p[0]).ok_or("playerId")?.into_owned(),
                name: name.to_string(),
                avatar: avatar.parse().unwrap_or(0),
                rank: int(&p[3]).ok_or("rank")? as u64,
                // totals are whole points, kept as the sorted set's double
                score: text(&p[2])
                    .and_then(|t| t.parse::<f64>().ok())
                    .ok_or("score")? as i64,
                correct: right,
                answers,
            });
        }
        Ok(ExportPage {
            game,
            players,
            next: u64::try_from(next).ok(),
        })
    }
}

/// An ended game as `game_export` describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedGame {
    pub game_code: String,
    pub room_id: String,
    pub quiz_id: String,
    pub title: String,
    /// `finished` or `abandoned`.
    pub end_reason: String,
    pub question_count: u32,
    pub questions_played: u32,
    pub player_count: u64,
    /// Epoch ms, Redis clock.
    pub created_at: i64,
    #[serde(default)]
    pub started_at: Option<i64>,
    pub ended_at: i64,
}

/// One player's final result.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedPlayer {
    pub player_id: String,
    pub name: String,
    pub avatar: u32,
    pub rank: u64,
    pub score: i64,
    pub correct: u32,
    /// One entry per question played: `None` when the player did not answer it.
    pub answers: Vec<Option<ExportedAnswer>>,
}

/// A player's answer to one question, as the server timed it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedAnswer {
    pub answer_idx: u32,
    /// Milliseconds from the question's show to the answer, by Redis's clock (`None` if unknown).
    pub ms: Option<i64>,
    pub points: i64,
}

/// Players per `game_export` call (the function's limit).
pub const EXPORT_MAX: usize = 1000;

/// Player ids per `results` call (the function's limit).
pub const RESULTS_MAX: usize = 1000;

/// The `results` reply (a flat array, `lua/ringside.lua`): totalPlayers, the correct index, then per id
/// its total after question `q`, its rank and its stored answer ("idx:ms:points:streak"), nil for an id
/// not in the leaderboard. Built here rather than as JSON in Redis: Redis is the room's one core.
fn results_from_reply(
    v: redis::Value,
    q: u32,
    ids: usize,
) -> Result<Vec<Option<AnswerResult>>, String> {
    let redis::Value::Array(parts) = v else {
        return Err(format!("not an array: {v:?}"));
    };
    if parts.len() != 2 + 3 * ids {
        return Err(format!(
            "{} values for {ids} ids, want {}",
            parts.len(),
            2 + 3 * ids
        ));
    }
    let total_players = reply_int(&parts[0])
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("totalPlayers is not a count")?;
    let correct = reply_int(&parts[1]);
    let mut out = Vec::with_capacity(ids);
    for p in parts[2..].chunks(3) {
        if matches!(p[0], redis::Value::Nil) {
            out.push(None);
            continue;
        }
        // a sorted-set score: a whole number here, written by Redis as one ("12" or "-3")
        let total = reply_text(&p[0])
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| t.is_finite())
            .ok_or_else(|| format!("total {:?} is not a number", p[0]))? as i64;
        let rank = reply_int(&p[1])
            .and_then(|r| u32::try_from(r).ok())
            .ok_or_else(|| format!("rank {:?} is not a rank", p[1]))?;
        let answer = reply_text(&p[2])
            .map(|a| StoredAnswer::parse(&a))
            .unwrap_or_default();
        out.push(Some(AnswerResult {
            q_index: q,
            answer_idx: answer.idx,
            correct: answer.idx.is_some_and(|a| Some(i64::from(a)) == correct),
            points: answer.points,
            total,
            rank,
            streak: answer.streak,
            total_players,
        }));
    }
    Ok(out)
}

/// A stored answer as `results` reads it: "idx:ms:points:streak" once scored, "idx:ms:remainingMs" before
/// (points and streak 0 then), `x` (refused without an answer) or anything else: no answer.
#[derive(Debug, Default, PartialEq)]
struct StoredAnswer {
    idx: Option<u32>,
    points: i64,
    streak: u32,
}

impl StoredAnswer {
    /// As the library's `split_answer` reads it: `^(\d+):(\d+):(-?\d+):(-?\d+)$` scored,
    /// `^(\d+):(\d+):-?\d+$` not yet; anything else is no answer.
    fn parse(v: &str) -> StoredAnswer {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let signed = |s: &str| digits(s.strip_prefix('-').unwrap_or(s));
        let mut f = v.split(':');
        let (Some(idx), Some(ms), Some(third), fourth, None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return StoredAnswer::default();
        };
        let well_formed = digits(idx) && digits(ms) && signed(third) && fourth.is_none_or(signed);
        let Some(idx) = idx.parse::<u32>().ok().filter(|_| well_formed) else {
            return StoredAnswer::default();
        };
        match fourth {
            Some(st) => StoredAnswer {
                idx: Some(idx),
                points: third.parse().unwrap_or(0),
                streak: st.parse().unwrap_or(0),
            },
            None => StoredAnswer {
                idx: Some(idx),
                ..StoredAnswer::default()
            },
        }
    }
}

/// A reply value as text, borrowed from the reply where it can be (no copy per player in `results`).
fn reply_text(v: &redis::Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b)),
        redis::Value::SimpleString(s) => Some(s.as_str().into()),
        redis::Value::Int(i) => Some(i.to_string().into()),
        _ => None,
    }
}

fn reply_int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        other => reply_text(other)?.parse().ok(),
    }
}

fn decode<T: DeserializeOwned>(function: Function, raw: &str) -> Result<T, GameError> {
    serde_json::from_str(raw).map_err(|e| GameError::BadReply {
        function: function.name(),
        detail: format!("{e}: {}", raw.chars().take(200).collect::<String>()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_results_reply_becomes_answer_results() {
        use redis::Value::{Array, Int, Nil};
        let reply = Array(vec![
            Int(5),
            Int(2),
            // scored, correct, on a streak
            bulk("1250"),
            Int(1),
            bulk("2:1733500000123:1250:3"),
            // scored, wrong with a penalty
            bulk("-100"),
            Int(5),
            bulk("0:1733500000456:-100:0"),
            // in the room, no answer
            bulk("0"),
            Int(4),
            Nil,
            // refused without an answer (NO_ANSWER)
            bulk("0"),
            Int(4),
            bulk("x"),
            // not in the room
            Nil,
            Nil,
            Nil,
        ]);
        let got = results_from_reply(reply, 7, 5).expect("parses");
        let r = |answer_idx, correct, points, total, rank, streak| {
            Some(AnswerResult {
                q_index: 7,
                answer_idx,
                correct,
                points,
                total,
                rank,
                streak,
                total_players: 5,
            })
        };
        assert_eq!(
            got,
            vec![
                r(Some(2), true, 1250, 1250, 1, 3),
                r(Some(0), false, -100, -100, 5, 0),
                r(None, false, 0, 0, 4, 0),
                r(None, false, 0, 0, 4, 0),
                None,
            ]
        );
    }

    #[test]
    fn a_results_reply_of_the_wrong_shape_is_refused() {
        use redis::Value::{Array, Int, Nil};
        assert!(results_from_reply(bulk("[]"), 0, 1).is_err());
        // one id short
        assert!(results_from_reply(Array(vec![Int(1), Int(0)]), 0, 1).is_err());
        // a total that is not a number
        let bad = Array(vec![Int(1), Int(0), bulk("lots"), Int(1), Nil]);
        assert!(results_from_reply(bad, 0, 1).is_err());
        // a rank that is not one
        let bad = Array(vec![Int(1), Int(0), bulk("0"), Int(-1), Nil]);
        assert!(results_from_reply(bad, 0, 1).is_err());
    }

    #[test]
    fn stored_answers_read_as_the_library_writes_them() {
        let a = |s| StoredAnswer::parse(s);
        let some = |idx, points, streak| StoredAnswer {
            idx: Some(idx),
            points,
            streak,
        };
        assert_eq!(a("3:1733500000123:900:2"), some(3, 900, 2));
        assert_eq!(a("1:1733500000123:-50:0"), some(1, -50, 0));
        // recorded, not scored yet: "idx:ms:remainingMs"
        assert_eq!(a("1:1733500000123:4200"), some(1, 0, 0));
        assert_eq!(a("1:1733500000123:-20"), some(1, 0, 0));
        for none in [
            "x",
            "",
            "1",
            "1:5",
            "1:5:x",
            "1:5:x:0",
            "1:5:0:+2",
            "a:1:2:3",
            "1:2:3:4:5",
            "-1:5:0:0",
            "1::0:0",
        ] {
            assert_eq!(a(none), StoredAnswer::default(), "{none:?}");
        }
    }

    #[test]
    fn random_codes_are_valid_game_codes() {
        for _ in 0..1000 {
            assert!(is_game_code(&random_game_code()));
        }
        assert_eq!(random_hex(32).len(), 64);
    }

    #[test]
    fn fcall_names_both_keys_of_the_room() {
        let cmd = fcall_cmd(Function::AnswerSubmit, "K7QP2M", &["p1", "0", "1"]);
        let args: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            args[..4],
            ["FCALL", "answer_submit", "2", &keys::room("K7QP2M")]
        );
        assert_eq!(args[4], keys::room_timers("K7QP2M"));
    }
}
