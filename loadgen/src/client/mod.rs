//! One simulated socket: a host, a player or a plain connection, from `connect()` to the stop.
//!
//! Pipeline per socket: TCP bytes → [`wsframe`] frames → [`scan`] envelope head → seq check → the
//! event's handler. Each socket is one task on its worker's single-threaded runtime; tasks share the
//! worker's [`Ctx`] (stats, one read buffer, the game codes) through an `Rc`.
//!
//! # Costs (why it is shaped like this)
//! - **One read buffer per worker.** A socket waits with `readable()` and holds no buffer while idle;
//!   when data is ready it is read into the worker's 64 KiB scratch buffer and parsed there. Only the
//!   tail of a frame that was cut by the read is copied into the socket's own `leftover`.
//! - **No per-frame allocation or full parse.** Frames are counted from their head (`event`, `seq`);
//!   only the events whose payload matters are read further: `game:question:show` and
//!   `game:question:reveal` field by field without allocation, `room:join:ack`, `room:created`,
//!   `reconnect:state` and `error` (once per socket) with the protocol crate's decoder.
//! - **Sends are rare** (join, answers, pings): each is framed into the socket's `out` buffer, masked
//!   in place, and written with one syscall.
//!
//! # Layout
//! - this file: the worker's [`Ctx`], the client's state and its lifecycle (connect, play, reconnect,
//!   settle), with its progress through the game as one `Stage`;
//! - `socket`: socket I/O (connect, upgrade, reads into the shared buffer, frames, sends, close);
//! - `player`: what each server event does (seq check, join ack, show → answer, reveal, result, end);
//! - `pending`: requests in flight (ids, join/reconnect retries, `error` replies, pings) and the timers.
//!
//! # Reconnects
//! A player that loses its socket during a game (EOF, reset, or a close code that allows it) waits as
//! the reconnect policy of its last `session:ack` says (`pace`: attempt n waits
//! `min(delayMs·2ⁿ, 8 s) + uniform(0, jitterMs)`), opens a new socket and sends `reconnect:attempt` with
//! its `sessionToken` and the last `seq` it processed; the time from loss to the first answer is the
//! `reconnect` metric. Replayed events go through the same seq check, so a replay that skips or repeats an
//! event is counted. An upgrade refused with `503` is tried again after its `Retry-After`; a
//! `reconnect:attempt`, `room:join` or `room:create` refused with a retryable error is sent again after its
//! `retryAfterMs`. An answer whose reply was lost with the socket is sent again, unchanged, once the
//! session is resumed: it gets its ack or `already_answered`; one that never gets either is counted in
//! `answers_without_outcome` (docs/protocol.md §4).

mod pace;
mod pending;
mod player;
mod socket;

use std::cell::{Cell, RefCell, RefMut};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringside_protocol::envelope::{decode, Envelope};
use ringside_protocol::events::{self, ClientEvent, ReconnectPolicy, ServerEvent};
use ringside_protocol::{auth, CloseCode, Codec, Reconnect};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout};

use crate::metrics::{event_slot, Metric, Stats};
use crate::plan::{splitmix, unit, Plan, Scenario};
use crate::scan::{self, Format};
use crate::seq::{SeqTracker, Verdict};
use crate::wsframe::{self, opcode};

/// Size of the worker's shared read buffer.
const SCRATCH: usize = 64 * 1024;
/// A request without an answer for this long counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The answer grace of docs/protocol.md §3.
const GRACE_MS: u64 = 500;
/// How many times a player sends `room:join` (a host `room:create`, a player an answer) when the edge
/// answers with a retryable error.
const JOIN_ATTEMPTS: u32 = 5;
/// How many `503` refusals a first connect takes before it gives up (each waits its `Retry-After`).
const UPGRADE_REFUSALS: u32 = 8;
/// The jitter added to a first connect's `Retry-After` (no `session:ack` has told a policy yet).
const FIRST_REFUSAL_JITTER_MS: u64 = 1000;
/// How long a slow consumer may read at the stop to find its close code.
const SLOW_DRAIN: Duration = Duration::from_secs(1);

/// What the worker tells every socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Rooms are created and joined.
    Setup,
    /// Hosts start their games.
    Game,
    /// Close and report.
    Stop,
}

/// The worker's state shared by its sockets (single thread: `Cell`/`RefCell`, borrows never held across
/// an `.await`).
pub struct Ctx {
    pub plan: Plan,
    pub worker: u32,
    pub stats: RefCell<Stats>,
    scratch: RefCell<Vec<u8>>,
    rng: Cell<u64>,
    pub phase: watch::Receiver<Phase>,
    /// Game code per room index, filled by the coordinator's `join` command.
    pub codes: RefCell<Vec<Option<Rc<str>>>>,
    /// Rooms created by local hosts, and those that failed.
    pub created: RefCell<Vec<(u32, String)>>,
    pub create_failed: RefCell<Vec<u32>>,
    pub hosts_settled: Cell<u64>,
    /// Sockets open now.
    pub open: Cell<u64>,
    /// Local players (or plain sockets) past their join: joined, or failed to.
    pub ready: Cell<u64>,
    /// Local players done with the game: finished, failed, or gave up.
    pub settled: Cell<u64>,
    /// Socket tasks alive.
    pub live: Cell<u64>,
    next_source: Cell<usize>,
    /// Per room index and seq, the class of the room event a local player received with it (`SEQ_*`),
    /// so that a gap one player has at its end can be told apart: a superseded progress or leaderboard
    /// (allowed, docs/protocol.md §5) or any other event (a real gap).
    seq_kinds: RefCell<Vec<Vec<u8>>>,
}

/// [`Ctx::seq_kinds`]: no local player received the seq.
const SEQ_UNKNOWN: u8 = 0;
/// A `game:answer:progress` or `game:leaderboard`: a newer one may replace it in a slow socket's queue.
const SEQ_DROPPABLE: u8 = 1;
/// Any other room event: never dropped.
const SEQ_KEPT: u8 = 2;
/// Seqs above this are not classified (a room of a run never gets near it).
const SEQ_KIND_LIMIT: u64 = 1 << 22;

impl Ctx {
    pub fn new(plan: Plan, worker: u32, phase: watch::Receiver<Phase>) -> Ctx {
        let seed = splitmix(plan.seed ^ (u64::from(worker) << 32) ^ 0xC0FFEE);
        Ctx {
            plan,
            worker,
            stats: RefCell::new(Stats::new()),
            scratch: RefCell::new(vec![0; SCRATCH]),
            rng: Cell::new(seed),
            phase,
            codes: RefCell::new(Vec::new()),
            created: RefCell::new(Vec::new()),
            create_failed: RefCell::new(Vec::new()),
            hosts_settled: Cell::new(0),
            open: Cell::new(0),
            ready: Cell::new(0),
            settled: Cell::new(0),
            live: Cell::new(0),
            next_source: Cell::new(worker as usize),
            seq_kinds: RefCell::new(Vec::new()),
        }
    }

    pub fn rand(&self) -> u64 {
        let x = splitmix(self.rng.get());
        self.rng.set(x);
        x
    }

    /// Uniform in [0, 1).
    pub fn unit(&self) -> f64 {
        unit(self.rand())
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// The next source address, round robin (workers start at different offsets).
    fn source(&self) -> Option<SocketAddr> {
        let s = &self.plan.sources;
        if s.is_empty() {
            return None;
        }
        let i = self.next_source.get();
        self.next_source
            .set(i.wrapping_add(self.plan.workers as usize));
        Some(SocketAddr::new(s[i % s.len()].into(), 0))
    }
}

/// Epoch microseconds of the machine clock (the server's clock too, on one machine).
pub fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Who a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Creates room `room` and starts its game.
    Host { room: u32 },
    /// Player `g` of the run, in room `room`.
    Player { g: u64, room: u32, slow: bool },
    /// A socket without a session (`connect` scenario).
    Plain { g: u64 },
}

/// Why a socket's session loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The worker stops.
    Stop,
    /// The socket is gone; a player in a game may reconnect.
    Lost,
    /// Over for this socket (final error, kicked, room closed).
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqKind {
    Create,
    Join,
    Reconnect,
    Start,
}

#[derive(Debug, Clone, Copy)]
struct Req {
    kind: ReqKind,
    rid: u32,
    at: Instant,
}

/// An answer waiting for its outcome (`game:answer:ack` or an `error`), kept across a reconnect so that
/// it can be sent again unchanged.
#[derive(Debug, Clone, Copy)]
struct AnswerReq {
    rid: u32,
    /// When it was first sent.
    at: Instant,
    q: u32,
    idx: u32,
    client_time: f64,
    /// Times it was sent again (after a reconnect or a retryable refusal).
    resent: u32,
}

/// Why a connect failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectErr {
    /// Refused by admission control: `503` with this `Retry-After`, in ms.
    Refused(u64),
    /// Anything else (connect, handshake, timeout).
    Failed,
}

/// After `session:ack` the first pings go this often, this many of them: the clock offset (from the
/// lowest-RTT `pong`) is settled before the first question (fair start: display at `showAt`).
const SYNC_PING_EVERY: Duration =
    Duration::from_millis(ringside_protocol::limits::SYNC_PING_EVERY_MS as u64);
const SYNC_PINGS: u8 = ringside_protocol::limits::SYNC_PINGS as u8;
/// How fast a clock sample is assumed to go stale: a phone's clock may drift this much against the
/// server's (perf/edge.md, "Pings"); web/ringside.js uses the same figure.
const CLOCK_DRIFT_PPM: u64 = 100;

/// A sealed `game:question:show` (docs/protocol.md §7.3) until its key opens it.
#[derive(Debug)]
struct SealedShow {
    q: u32,
    ends_at: u64,
    limit_ms: u64,
    show_at: u64,
    iv: Vec<u8>,
    ct: Vec<u8>,
}

/// A set of question indices (0..128; larger ones are never deduplicated).
#[derive(Debug, Default, Clone, Copy)]
struct Bits(u128);

impl Bits {
    /// Inserts `q`; true when it was not there.
    fn insert(&mut self, q: u32) -> bool {
        if q >= 128 {
            return true;
        }
        let had = self.0 & (1u128 << q) != 0;
        self.0 |= 1u128 << q;
        !had
    }

    fn contains(&self, q: u32) -> bool {
        q < 128 && self.0 & (1u128 << q) != 0
    }
}

/// What an event is, for routing (decided from the head's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SessionAck,
    Pong,
    Error,
    Ok,
    RoomCreated,
    JoinAck,
    QuestionShow,
    QuestionKey,
    AnswerAck,
    Reveal,
    Result,
    GameEnd,
    ReconnectState,
    Other,
}

impl Kind {
    fn of(name: &[u8]) -> Kind {
        match name {
            b"session:ack" => Kind::SessionAck,
            b"pong" => Kind::Pong,
            b"error" => Kind::Error,
            b"ok" => Kind::Ok,
            b"room:created" => Kind::RoomCreated,
            b"room:join:ack" => Kind::JoinAck,
            b"game:question:show" => Kind::QuestionShow,
            b"game:question:key" => Kind::QuestionKey,
            b"game:answer:ack" => Kind::AnswerAck,
            b"game:question:reveal" => Kind::Reveal,
            b"game:answer:result" => Kind::Result,
            b"game:end" => Kind::GameEnd,
            b"reconnect:state" => Kind::ReconnectState,
            _ => Kind::Other,
        }
    }
}

/// Keeps the worker's count of live socket tasks.
struct LiveGuard(Rc<Ctx>);

impl LiveGuard {
    fn new(ctx: &Rc<Ctx>) -> Self {
        ctx.live.set(ctx.live.get() + 1);
        LiveGuard(ctx.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
    }
}

/// Runs one socket from connect to stop.
pub async fn run(ctx: Rc<Ctx>, role: Role) {
    let _live = LiveGuard::new(&ctx);
    let mut c = Client::new(ctx, role);
    c.lifecycle().await;
    c.at_end();
}

/// Where a client is in the game: one value instead of a flag per fact, so that "finished and still
/// joining" or "failed and still reading" cannot be written down. Only forward:
/// `Joining` → `Playing` → `Done(_)` (or `Joining` → `Done(_)` when the join fails), and a `Done` is
/// final. [`Client::advance`] makes every move and counts it for the coordinator's barriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connecting and joining (a host: creating its room, until it sends `game:start`). The
    /// coordinator's join barrier waits for the players and plain sockets here.
    Joining,
    /// Joined (a plain socket: connected; a host: `game:start` sent), in the game. Players and plain
    /// sockets are counted in `Ctx::ready` once they leave `Joining`.
    Playing,
    /// Done with the game; players and plain sockets are counted in `Ctx::settled` (and in
    /// `Ctx::ready` if they never got past the join).
    Done(Outcome),
}

impl Stage {
    /// The state machine's moves: forward only, and a `Done` is final.
    fn may_become(self, to: Stage) -> bool {
        matches!(
            (self, to),
            (Stage::Joining, Stage::Playing | Stage::Done(_)) | (Stage::Playing, Stage::Done(_))
        )
    }
}

/// How a client's game ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Saw the end: `game:end`, the last question of `--questions`, or the snapshot of an ended room.
    Finished,
    /// No room to join, no connection, no reconnect, or a close that allows none before the end.
    Failed,
    /// A slow consumer past its join: it never reads again (the edge's send queue for it fills up)
    /// until the stop, and the end of the game does not wait for it.
    SlowConsumer,
    /// Still in the game when its socket task ended (the stop).
    Unfinished,
}

struct Client {
    ctx: Rc<Ctx>,
    role: Role,
    codec: Codec,
    fmt: Format,
    phase: watch::Receiver<Phase>,

    stream: Option<TcpStream>,
    /// The unparsed tail of the last read (a frame cut in two), or the upgrade response.
    leftover: Vec<u8>,
    out: Vec<u8>,
    /// A fragmented message being assembled (rare: our edge sends whole frames).
    frag: Vec<u8>,
    connect_started: Instant,
    /// Set per read: every frame of one read gets the same receipt time.
    now: Instant,
    now_us: u64,

    next_rid: u32,
    req: Option<Req>,
    answer_req: Option<AnswerReq>,
    /// The previous question's answer, still waiting for its reply when the next one was sent (a busy
    /// edge can ack after the next question arrived): its reply still counts.
    answer_prev: Option<AnswerReq>,
    /// When to send `answer_req` again after a retryable refusal.
    answer_retry_at: Option<Instant>,
    ping_req: Option<(u32, Instant)>,

    code: Option<Rc<str>>,
    player_id: String,
    token: String,
    secret: String,
    seq: Option<SeqTracker>,
    /// Room seqs received before the join ack told the base.
    pre_seq: Vec<u64>,
    reported_missed: u64,

    shows: Bits,
    reveals: Bits,
    answered: Bits,
    /// The last question shown: (qIndex, endsAt epoch ms).
    cur_q: Option<(u32, u64)>,
    /// A sealed question waiting for its `game:question:key` (fair start).
    sealed: Option<Box<SealedShow>>,
    /// Server clock minus this machine's clock, µs, from the `pong` with the smallest error bound (half
    /// its round trip plus its age × [`CLOCK_DRIFT_PPM`]).
    offset_us: i64,
    /// That `pong`'s round trip (µs) and when it came (this machine's epoch seconds).
    best_rtt_us: u32,
    best_at_s: u32,
    /// Pings left of the fast ones after `session:ack` (clock sync).
    sync_pings: u8,
    answer_at: Option<(Instant, u32, u32)>,
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,

    /// Where this client is in the game (see [`Stage`]).
    stage: Stage,
    /// When the socket was lost, while reconnecting.
    lost_at: Option<Instant>,
    /// Whether this client ever lost its socket during the game (a reconnect-storm's affected player).
    lost_once: bool,
    /// An end decided while handling the frames that came with the upgrade response.
    pending_end: Option<End>,
    join_attempts: u32,
    create_attempts: u32,
    join_first_at: Option<Instant>,
    /// When to send a request again (`room:join`, `room:create`, `reconnect:attempt`) after a
    /// retryable refusal.
    resend_at: Option<(Instant, ReqKind)>,
    /// The reconnect policy of the last `session:ack` (docs/protocol.md §7.1), if it had one.
    policy: Option<ReconnectPolicy>,
}

impl Client {
    fn new(ctx: Rc<Ctx>, role: Role) -> Client {
        let g = match role {
            Role::Player { g, .. } | Role::Plain { g } => g,
            Role::Host { room } => u64::from(room),
        };
        let msgpack = ctx.plan.msgpack_for(g);
        let (codec, fmt) = if msgpack {
            (Codec::Msgpack, Format::Msgpack)
        } else {
            (Codec::Json, Format::Json)
        };
        let phase = ctx.phase.clone();
        let now = Instant::now();
        Client {
            ctx,
            role,
            codec,
            fmt,
            phase,
            stream: None,
            leftover: Vec::new(),
            out: Vec::new(),
            frag: Vec::new(),
            connect_started: now,
            now,
            now_us: 0,
            next_rid: 0,
            req: None,
            answer_req: None,
            answer_prev: None,
            answer_retry_at: None,
            ping_req: None,
            code: None,
            player_id: String::new(),
            token: String::new(),
            secret: String::new(),
            seq: None,
            pre_seq: Vec::new(),
            reported_missed: 0,
            shows: Bits::default(),
            reveals: Bits::default(),
            answered: Bits::default(),
            cur_q: None,
            sealed: None,
            offset_us: 0,
            best_rtt_us: u32::MAX,
            best_at_s: 0,
            sync_pings: 0,
            answer_at: None,
            ping_every: None,
            next_ping: None,
            stage: Stage::Joining,
            lost_at: None,
            lost_once: false,
            pending_end: None,
            join_attempts: 0,
            create_attempts: 0,
            join_first_at: None,
            resend_at: None,
            policy: None,
        }
    }

    fn stats(&self) -> RefMut<'_, Stats> {
        self.ctx.stats.borrow_mut()
    }

    fn is_player(&self) -> bool {
        matches!(self.role, Role::Player { .. })
    }

    fn is_slow(&self) -> bool {
        matches!(self.role, Role::Player { slow: true, .. })
    }

    /// A player whose receipts count towards delivery (not a slow consumer, within `--questions`).
    fn counts(&self, q: u32) -> bool {
        matches!(self.role, Role::Player { slow: false, .. })
            && (self.ctx.plan.questions == 0 || q < self.ctx.plan.questions)
    }

    fn room(&self) -> u32 {
        match self.role {
            Role::Host { room } | Role::Player { room, .. } => room,
            Role::Plain { .. } => 0,
        }
    }

    /// Moves the stage forward to `to`; a move backward, sideways or out of `Done` is ignored. Counts
    /// players and plain sockets (not hosts) for the coordinator: once past the join (or its failure) in
    /// `Ctx::ready`, once done in `Ctx::settled`. Returns whether it moved.
    fn advance(&mut self, to: Stage) -> bool {
        let from = self.stage;
        if !from.may_become(to) {
            return false;
        }
        self.stage = to;
        if !matches!(self.role, Role::Host { .. }) {
            if from == Stage::Joining {
                self.ctx.ready.set(self.ctx.ready.get() + 1);
            }
            if matches!(to, Stage::Done(_)) {
                self.ctx.settled.set(self.ctx.settled.get() + 1);
            }
        }
        true
    }

    /// Past the join: a player's ack, a plain socket's connect. A host leaves `Joining` only by sending
    /// `game:start` (`maybe_start_game`).
    fn mark_ready(&mut self) {
        if !matches!(self.role, Role::Host { .. }) {
            self.advance(Stage::Playing);
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done(_))
    }

    fn is_finished(&self) -> bool {
        self.stage == Stage::Done(Outcome::Finished)
    }

    /// Whether the session loop reads the socket: always, except a slow consumer past its join.
    fn reads(&self) -> bool {
        self.stage != Stage::Done(Outcome::SlowConsumer)
    }

    fn fail(&mut self) {
        if let Role::Host { room } = self.role {
            if self.code.is_none() {
                self.ctx.create_failed.borrow_mut().push(room);
                self.ctx.hosts_settled.set(self.ctx.hosts_settled.get() + 1);
            }
        }
        self.advance(Stage::Done(Outcome::Failed));
    }

    fn finish(&mut self) {
        if self.advance(Stage::Done(Outcome::Finished))
            && matches!(self.role, Role::Player { slow: false, .. })
        {
            self.stats().counters.players_finished += 1;
        }
    }

    async fn lifecycle(&mut self) {
        if let Role::Player { room, slow, .. } = self.role {
            if slow {
                self.stats().counters.slow_consumers += 1;
            }
            let code = self
                .ctx
                .codes
                .borrow()
                .get(room as usize)
                .cloned()
                .flatten();
            match code {
                Some(c) => self.code = Some(c),
                None => {
                    // The room's host could not create it.
                    self.stats().counters.join_failed += 1;
                    self.stats().error_code("no_room");
                    self.fail();
                    return;
                }
            }
        }
        if !self.first_connect().await {
            self.stats().counters.connect_gave_up += 1;
            self.fail();
            return;
        }
        loop {
            let end = self.session().await;
            self.close_socket(end).await;
            match end {
                End::Stop => return,
                End::Final => {
                    if !self.is_finished() {
                        self.fail();
                    }
                    return;
                }
                End::Lost => {
                    if !self.may_reconnect() {
                        if self.stage == Stage::Joining && self.is_player() {
                            self.stats().counters.join_failed += 1;
                        }
                        self.fail();
                        return;
                    }
                    self.stats().counters.disconnects += 1;
                    if !self.reconnect().await {
                        self.stats().counters.reconnects_failed += 1;
                        self.fail();
                        return;
                    }
                }
            }
        }
    }

    /// Whether a lost socket should come back: a player in a running game (or a host), unless slow.
    fn may_reconnect(&self) -> bool {
        let p = &self.ctx.plan;
        p.reconnect
            && !self.is_slow()
            && !self.is_finished()
            && *self.phase.borrow() != Phase::Stop
            && match self.role {
                Role::Player { .. } => self.seq.is_some(),
                Role::Host { .. } => self.code.is_some(),
                Role::Plain { .. } => false,
            }
    }

    /// The first socket, retried like a real client would (`--connect-retries`, back-off from 500 ms);
    /// a `503` refusal waits its `Retry-After` and does not use a retry (at most `UPGRADE_REFUSALS`).
    async fn first_connect(&mut self) -> bool {
        let mut backoff = Duration::from_millis(500);
        let (mut failures, mut refusals) = (0u32, 0u32);
        // Bounded: each pass ends in a connect, a refusal (at most UPGRADE_REFUSALS) or a failure (at
        // most connect_retries + 1).
        loop {
            let wait = match self.connect(false).await {
                Ok(()) => return true,
                Err(ConnectErr::Refused(ms)) => {
                    refusals += 1;
                    if refusals > UPGRADE_REFUSALS {
                        return false;
                    }
                    let jitter = self
                        .ctx
                        .plan
                        .reconnect_jitter_ms
                        .unwrap_or(FIRST_REFUSAL_JITTER_MS);
                    pace::after_refusal(ms, jitter, self.ctx.unit())
                }
                Err(ConnectErr::Failed) => {
                    failures += 1;
                    if failures > self.ctx.plan.connect_retries {
                        return false;
                    }
                    self.stats().counters.connect_retries += 1;
                    let wait = backoff + Duration::from_millis((self.ctx.unit() * 500.0) as u64);
                    backoff *= 2;
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.phase.wait_for(|p| *p == Phase::Stop) => return false,
            }
        }
    }

    /// The reconnect policy followed now (the last `session:ack`'s, `--reconnect-jitter-ms` over it).
    fn pace_policy(&self) -> ReconnectPolicy {
        pace::effective(self.policy, self.ctx.plan.reconnect_jitter_ms)
    }

    /// A new socket for a lost one, paced by the reconnect policy (docs/protocol.md §4 "Pacing"): attempt
    /// n waits `min(delayMs·2ⁿ, 8 s) + uniform(0, jitterMs)`, an upgrade refused with `503` its
    /// `Retry-After` (it counts as an attempt); gives up after `--reconnect-give-up-ms`.
    async fn reconnect(&mut self) -> bool {
        let lost = Instant::now();
        self.lost_at = Some(lost);
        self.lost_once = true;
        let give_up = lost + Duration::from_millis(self.ctx.plan.reconnect_give_up_ms);
        let mut attempt = 0u32;
        let mut refused: Option<u64> = None;
        // Bounded: every pass waits at least the policy's delay (or a Retry-After) or reaches
        // `give_up`, and the loop ends at `give_up`.
        loop {
            let p = self.pace_policy();
            let u = self.ctx.unit();
            let wait = match refused.take() {
                Some(ms) => pace::after_refusal(ms, p.jitter_ms, u),
                None => pace::wait(p, attempt, u),
            };
            if !wait.is_zero() {
                let until = (Instant::now() + wait).min(give_up);
                tokio::select! {
                    _ = sleep_until(until.into()) => {}
                    _ = self.phase.wait_for(|p| *p == Phase::Stop) => return false,
                }
            }
            if Instant::now() >= give_up || *self.phase.borrow() == Phase::Stop {
                return false;
            }
            self.stats().counters.reconnect_attempts += 1;
            match self.connect(true).await {
                Ok(()) => return true,
                Err(ConnectErr::Refused(ms)) => refused = Some(ms),
                Err(ConnectErr::Failed) => {}
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// Books what this socket leaves unfinished at its end.
    fn at_end(&mut self) {
        if matches!(self.role, Role::Player { slow: false, .. }) && !self.is_done() {
            self.stats().counters.players_unfinished += 1;
        }
        for a in [self.answer_prev.take(), self.answer_req.take()]
            .into_iter()
            .flatten()
        {
            let why = format!(
                "no_outcome:at_end:{}:q{}:resent{}",
                match self.stage {
                    Stage::Done(Outcome::Finished) => "finished",
                    Stage::Done(_) => "failed",
                    _ => "playing",
                },
                a.q,
                a.resent
            );
            let mut st = self.stats();
            st.counters.answers_without_outcome += 1;
            st.error_code(&why);
        }
        self.classify_gaps();
        if self.stream.is_some() {
            self.stream = None;
            self.ctx.open.set(self.ctx.open.get() - 1);
        }
        self.advance(Stage::Done(Outcome::Unfinished));
    }
}

#[cfg(test)]
mod tests {
    use super::{Client, Ctx, Outcome, Phase, Role, Stage};
    use std::rc::Rc;

    #[test]
    fn a_players_gaps_are_told_apart_by_what_the_rooms_other_players_got() {
        let (_tx, rx) = tokio::sync::watch::channel(Phase::Game);
        let ctx = Rc::new(Ctx::new(crate::plan::tests::plan(1, 2, 4), 0, rx));
        let player = |g, room| Role::Player {
            g,
            room,
            slow: false,
        };
        // Another player of room 0 got seqs 1..=5, seq 3 a progress; one of room 1 got seq 6.
        let witness = Client::new(ctx.clone(), player(0, 0));
        for s in 1..=5 {
            witness.note_seq_kind(s, s == 3);
        }
        Client::new(ctx.clone(), player(2, 1)).note_seq_kind(6, false);
        let mut c = Client::new(ctx.clone(), player(1, 0));
        c.seq_base(0);
        for s in [1, 2, 5, 7, 8] {
            c.on_seq(s);
        }
        c.classify_gaps();
        let st = ctx.stats.borrow();
        let n = &st.counters;
        assert_eq!(n.missed_events, 3, "3 and 4, then 6");
        assert_eq!(
            (n.missed_superseded, n.missed_real, n.missed_unknown),
            (1, 1, 1),
            "3 was a progress, 4 another event, 6 seen only in another room"
        );
    }

    #[test]
    fn unaffected_delivery_counts_only_kept_sockets_and_questions_after_the_kill() {
        use crate::metrics::Metric;
        let (_tx, rx) = tokio::sync::watch::channel(Phase::Game);
        let mut plan = crate::plan::tests::plan(1, 1, 2);
        plan.storm_after_q = Some(1);
        let ctx = Rc::new(Ctx::new(plan, 0, rx));
        let player = |g| Role::Player {
            g,
            room: 0,
            slow: false,
        };
        let mut kept = Client::new(ctx.clone(), player(0));
        let mut lost = Client::new(ctx.clone(), player(1));
        lost.lost_once = true;
        for c in [&mut kept, &mut lost] {
            for q in 0..3 {
                c.show(q, 10_000 * u64::from(q + 1), 5_000, 0, None);
            }
        }
        let st = ctx.stats.borrow();
        assert_eq!(st.hists.get(Metric::QuestionDelivery).len(), 6);
        assert_eq!(
            st.hists.get(Metric::QuestionDeliveryUnaffected).len(),
            1,
            "question 2 to the player that kept its socket"
        );
    }

    #[test]
    fn a_late_ack_of_the_previous_answer_is_its_outcome() {
        let (_tx, rx) = tokio::sync::watch::channel(Phase::Game);
        let ctx = Rc::new(Ctx::new(crate::plan::tests::plan(1, 1, 1), 0, rx));
        let mut c = Client::new(
            ctx.clone(),
            Role::Player {
                g: 0,
                room: 0,
                slow: false,
            },
        );
        c.code = Some("K7QP2M".into());
        c.cur_q = Some((0, 0));
        c.answer(0, 0);
        let first = c.answer_req.expect("sent").rid;
        // the next question arrives, and is answered, before the first answer's ack
        c.cur_q = Some((1, 0));
        c.answer(1, 0);
        let mut ack = format!(
            r#"{{"event":"game:answer:ack","rid":{first},"data":{{"qIndex":0,"accepted":true}}}}"#
        )
        .into_bytes();
        let n = ack.len();
        assert!(c.message(&mut ack, n).is_ok());
        c.at_end();
        let st = ctx.stats.borrow();
        let n = &st.counters;
        assert_eq!(n.answers_sent, 2);
        assert_eq!(n.answer_acks, 1, "the first answer's late ack");
        assert_eq!(n.answers_without_outcome, 1, "the second one, never acked");
        assert!(st
            .errors_by_code
            .contains_key("no_outcome:at_end:playing:q1:resent0"));
    }

    #[test]
    fn stages_only_move_forward_and_done_is_final() {
        let outcomes = [
            Outcome::Finished,
            Outcome::Failed,
            Outcome::SlowConsumer,
            Outcome::Unfinished,
        ];
        let mut all = vec![Stage::Joining, Stage::Playing];
        all.extend(outcomes.map(Stage::Done));
        for from in all.iter().copied() {
            for to in all.iter().copied() {
                let expected = match from {
                    Stage::Joining => to != Stage::Joining,
                    Stage::Playing => matches!(to, Stage::Done(_)),
                    Stage::Done(_) => false,
                };
                assert_eq!(from.may_become(to), expected, "{from:?} -> {to:?}");
            }
        }
    }
}
