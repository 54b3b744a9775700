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
//! # Reconnects
//! A player that loses its socket during a game (EOF, reset, or a close code that allows it) waits a
//! random jitter, opens a new socket and sends `reconnect:attempt` with its `sessionToken` and the last
//! `seq` it processed; the time from loss to the first answer is the `reconnect` metric. Replayed events
//! go through the same seq check, so a replay that skips or repeats an event is counted.

use std::cell::{Cell, RefCell, RefMut};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringside_protocol::envelope::{decode, Envelope};
use ringside_protocol::events::{self, ClientEvent, ServerEvent};
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
/// How many times a player sends `room:join` when the edge answers with a retryable error.
const JOIN_ATTEMPTS: u32 = 5;
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
}

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
    answer_req: Option<(u32, Instant)>,
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
    answer_at: Option<(Instant, u32, u32)>,
    ping_every: Option<Duration>,
    next_ping: Option<Instant>,

    ready: bool,
    settled: bool,
    finished: bool,
    failed: bool,
    started_game: bool,
    reading: bool,
    /// When the socket was lost, while reconnecting.
    lost_at: Option<Instant>,
    /// An end decided while handling the frames that came with the upgrade response.
    pending_end: Option<End>,
    join_attempts: u32,
    join_first_at: Option<Instant>,
    /// When to send `room:join` again after a retryable refusal.
    rejoin_at: Option<Instant>,
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
            answer_at: None,
            ping_every: None,
            next_ping: None,
            ready: false,
            settled: false,
            finished: false,
            failed: false,
            started_game: false,
            reading: true,
            lost_at: None,
            pending_end: None,
            join_attempts: 0,
            join_first_at: None,
            rejoin_at: None,
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

    fn rid(&mut self) -> u32 {
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        self.next_rid
    }

    /// Past the join (or its failure): counted once, for the coordinator's join barrier.
    fn mark_ready(&mut self) {
        if !self.ready && !matches!(self.role, Role::Host { .. }) {
            self.ready = true;
            self.ctx.ready.set(self.ctx.ready.get() + 1);
        }
    }

    /// Done with the game: counted once, for the coordinator's end-of-game check.
    fn settle(&mut self) {
        self.mark_ready();
        if !self.settled && !matches!(self.role, Role::Host { .. }) {
            self.settled = true;
            self.ctx.settled.set(self.ctx.settled.get() + 1);
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        if let Role::Host { room } = self.role {
            if self.code.is_none() {
                self.ctx.create_failed.borrow_mut().push(room);
                self.ctx.hosts_settled.set(self.ctx.hosts_settled.get() + 1);
            }
        }
        self.settle();
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            if matches!(self.role, Role::Player { slow: false, .. }) {
                self.stats().counters.players_finished += 1;
            }
            self.settle();
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
                    if !self.finished {
                        self.fail();
                    }
                    return;
                }
                End::Lost => {
                    if !self.may_reconnect() {
                        if !self.ready && self.is_player() {
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
            && !self.finished
            && *self.phase.borrow() != Phase::Stop
            && match self.role {
                Role::Player { .. } => self.seq.is_some(),
                Role::Host { .. } => self.code.is_some(),
                Role::Plain { .. } => false,
            }
    }

    /// The first socket, retried like a real client would (`--connect-retries`, back-off from 500 ms).
    async fn first_connect(&mut self) -> bool {
        let mut backoff = Duration::from_millis(500);
        // Bounded: at most 1 + connect_retries attempts.
        for attempt in 0..=self.ctx.plan.connect_retries {
            if attempt > 0 {
                self.stats().counters.connect_retries += 1;
                let wait = backoff + Duration::from_millis((self.ctx.unit() * 500.0) as u64);
                backoff *= 2;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.phase.wait_for(|p| *p == Phase::Stop) => return false,
                }
            }
            if self.connect().await.is_ok() {
                return true;
            }
        }
        false
    }

    async fn reconnect(&mut self) -> bool {
        let lost = Instant::now();
        self.lost_at = Some(lost);
        let plan = &self.ctx.plan;
        let give_up = lost + Duration::from_millis(plan.reconnect_give_up_ms);
        let jitter =
            Duration::from_millis((self.ctx.unit() * plan.reconnect_jitter_ms as f64) as u64);
        let mut backoff = Duration::from_millis(100);
        let mut wait = jitter;
        // Bounded: every pass either returns or waits at least 100 ms, and the loop ends at `give_up`.
        loop {
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
            if self.connect().await.is_ok() {
                return true;
            }
            wait = backoff + Duration::from_millis((self.ctx.unit() * 100.0) as u64);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Opens a socket and upgrades it; frames that came with the upgrade response are processed.
    async fn connect(&mut self) -> Result<(), ()> {
        self.stats().counters.sockets_attempted += 1;
        self.connect_started = Instant::now();
        let plan = &self.ctx.plan;
        let limit = Duration::from_millis(plan.connect_timeout_ms);
        let target = plan.target;
        let sock = match self.make_socket(target) {
            Ok(s) => s,
            Err(e) => {
                self.stats().counters.connect_failed += 1;
                self.stats().error_code(&format!("socket:{}", io_kind(&e)));
                return Err(());
            }
        };
        let stream = match timeout(limit, sock.connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.stats().counters.connect_failed += 1;
                self.stats().error_code(&format!("connect:{}", io_kind(&e)));
                return Err(());
            }
            Err(_) => {
                self.stats().counters.connect_failed += 1;
                self.stats().error_code("connect:timeout");
                return Err(());
            }
        };
        let _ = stream.set_nodelay(true);
        let key = wsframe::make_key({
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&self.ctx.rand().to_ne_bytes());
            k[8..].copy_from_slice(&self.ctx.rand().to_ne_bytes());
            k
        });
        // `connect` scenario: any server (an echo server has no subprotocol); else ours must be chosen.
        let expect = if plan.scenario == Scenario::Connect {
            None
        } else {
            Some(self.codec.protocol())
        };
        self.out.clear();
        wsframe::write_upgrade_request(
            &mut self.out,
            &plan.host_header,
            &plan.path,
            &key,
            Some(self.codec.protocol()),
        );
        self.leftover.clear();
        let res = timeout(
            limit,
            upgrade(&stream, &self.out, &mut self.leftover, &key, expect),
        )
        .await;
        self.out.clear();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                self.stats().counters.upgrade_failed += 1;
                self.stats().error_code(&format!("upgrade:{why}"));
                return Err(());
            }
            Err(_) => {
                self.stats().counters.upgrade_failed += 1;
                self.stats().error_code("upgrade:timeout");
                return Err(());
            }
        }
        let took = self.connect_started.elapsed().as_micros() as u64;
        {
            let mut st = self.stats();
            st.record(Metric::Connect, took);
            st.counters.sockets_connected += 1;
        }
        self.ctx.open.set(self.ctx.open.get() + 1);
        self.stream = Some(stream);
        self.reading = true;
        self.frag.clear();
        if let Role::Plain { .. } = self.role {
            self.mark_ready();
        }
        if !self.leftover.is_empty() {
            self.set_now();
            let mut first = std::mem::take(&mut self.leftover);
            if let Err(end) = self.ingest(&mut first) {
                // A close that came with the upgrade response: the session loop ends with it.
                self.pending_end = Some(end);
            }
        }
        Ok(())
    }

    fn make_socket(&self, target: SocketAddr) -> std::io::Result<TcpSocket> {
        let sock = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if target.is_ipv4() {
            if let Some(src) = self.ctx.source() {
                crate::sys::set_bind_address_no_port(&sock)?;
                sock.bind(src)?;
            }
        }
        if self.is_slow() {
            sock.set_recv_buffer_size(self.ctx.plan.slow_rcvbuf)?;
        }
        Ok(sock)
    }

    fn set_now(&mut self) {
        self.now = Instant::now();
        self.now_us = epoch_us();
    }

    /// Reads and handles frames until the stop, a loss, or a final end.
    async fn session(&mut self) -> End {
        // Bounded: every pass awaits a socket event, a timer or a phase change, and the worker's stop
        // (at the latest its hard deadline) ends the loop.
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            if let Some(end) = self.pending_end.take() {
                return end;
            }
            let phase = *self.phase.borrow_and_update();
            match phase {
                Phase::Stop => return End::Stop,
                Phase::Game => self.maybe_start_game(),
                Phase::Setup => {}
            }
            if !self.out.is_empty() {
                continue;
            }
            let wake = self.next_wake();
            let Some(stream) = self.stream.as_ref() else {
                return End::Lost;
            };
            tokio::select! {
                r = stream.readable(), if self.reading => {
                    if r.is_err() {
                        return self.lost("reset");
                    }
                    if let Err(end) = self.read_ready() {
                        return end;
                    }
                }
                _ = sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)).into()), if wake.is_some() => {
                    if let Err(end) = self.on_timer() {
                        return end;
                    }
                }
                r = self.phase.changed() => {
                    if r.is_err() {
                        return End::Stop;
                    }
                }
            }
        }
    }

    fn lost(&mut self, why: &str) -> End {
        let mut st = self.stats();
        st.counters.sockets_dropped += 1;
        st.close_code(why);
        End::Lost
    }

    /// Reads what the socket has into the worker's buffer and handles every complete frame.
    fn read_ready(&mut self) -> Result<(), End> {
        let ctx = self.ctx.clone();
        let mut scratch = ctx.scratch.borrow_mut();
        self.set_now();
        // Bounded: at most 8 reads per wake, so one busy socket cannot starve the others.
        for _ in 0..8 {
            let Some(stream) = self.stream.as_ref() else {
                return Err(End::Lost);
            };
            match stream.try_read(&mut scratch[..]) {
                Ok(0) => return Err(self.lost("eof")),
                Ok(n) => {
                    self.ingest(&mut scratch[..n])?;
                    if n < scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(self.lost("reset")),
            }
        }
        Ok(())
    }

    /// Handles the complete frames of `fresh` (after the leftover of the previous read).
    fn ingest(&mut self, fresh: &mut [u8]) -> Result<(), End> {
        if self.leftover.is_empty() {
            let used = self.frames(fresh)?;
            if used < fresh.len() {
                self.leftover.extend_from_slice(&fresh[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.leftover);
            buf.extend_from_slice(fresh);
            let used = self.frames(&mut buf)?;
            buf.drain(..used);
            if buf.is_empty() && buf.capacity() > 16 * 1024 {
                buf = Vec::new();
            }
            self.leftover = buf;
        }
        Ok(())
    }

    /// Handles whole frames at the start of `buf`; returns the bytes used.
    fn frames(&mut self, buf: &mut [u8]) -> Result<usize, End> {
        let mut pos = 0;
        loop {
            let h = match wsframe::parse_header(&buf[pos..]) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(pos),
                Err(_) => {
                    self.stats().counters.decode_errors += 1;
                    self.queue_close(CloseCode::ProtocolError.code());
                    return Err(self.lost("protocol_error"));
                }
            };
            if buf.len() - pos < h.frame_len() {
                return Ok(pos);
            }
            let payload = &mut buf[pos + h.header_len..pos + h.frame_len()];
            self.frame(h, payload)?;
            pos += h.frame_len();
        }
    }

    fn frame(&mut self, h: wsframe::FrameHeader, payload: &mut [u8]) -> Result<(), End> {
        match h.opcode {
            opcode::TEXT | opcode::BINARY if h.fin && self.frag.is_empty() => {
                self.message(payload, h.frame_len())
            }
            opcode::TEXT | opcode::BINARY | opcode::CONTINUATION => {
                self.frag.extend_from_slice(payload);
                if h.fin {
                    let mut whole = std::mem::take(&mut self.frag);
                    let n = whole.len();
                    let r = self.message(&mut whole, n);
                    whole.clear();
                    self.frag = whole;
                    r
                } else {
                    Ok(())
                }
            }
            opcode::PING => {
                self.stats().counters.ws_pings_received += 1;
                let mask = (self.ctx.rand() as u32).to_ne_bytes();
                wsframe::append_masked(&mut self.out, opcode::PONG, mask, payload);
                Ok(())
            }
            opcode::CLOSE => {
                let code = wsframe::close_code(payload);
                {
                    let mut st = self.stats();
                    st.counters.closes_received += 1;
                    st.close_code(&code.map_or("1005".to_string(), |c| c.to_string()));
                }
                self.queue_close(code.unwrap_or(CloseCode::Normal.code()));
                // The protocol's table decides (normal, kicked, a complaint about our frames: final).
                Err(match Reconnect::after(code) {
                    Reconnect::Never => End::Final,
                    Reconnect::AtOnce | Reconnect::WithBackoff => End::Lost,
                })
            }
            _ => Ok(()),
        }
    }

    fn queue_close(&mut self, code: u16) {
        let mask = (self.ctx.rand() as u32).to_ne_bytes();
        wsframe::append_masked(&mut self.out, opcode::CLOSE, mask, &code.to_be_bytes());
    }

    /// One message (a frame body): count it, check its seq, and act on it.
    fn message(&mut self, body: &mut [u8], wire_len: usize) -> Result<(), End> {
        let fmt = self.fmt;
        let (kind, seq, rid) = match scan::head(fmt, body) {
            Ok(h) => {
                let slot = event_slot(h.event);
                let mut st = self.stats();
                st.counters.frames_received += 1;
                st.counters.bytes_received += wire_len as u64;
                let t = &mut st.events[slot];
                t.count += 1;
                t.bytes += wire_len as u64;
                (Kind::of(h.event), h.seq, h.rid)
            }
            Err(_) => {
                let mut st = self.stats();
                st.counters.frames_received += 1;
                st.counters.bytes_received += wire_len as u64;
                st.counters.decode_errors += 1;
                return Ok(());
            }
        };
        // The edge answers a reconnect with the missed events then `ok`, or with a `reconnect:state`
        // snapshot: the reconnect is complete at either (replayed events before it go through the
        // seq check like live ones).
        if let Some(Req {
            kind: ReqKind::Reconnect,
            rid: r,
            ..
        }) = self.req
        {
            if kind == Kind::ReconnectState || (kind == Kind::Ok && rid == Some(r)) {
                self.reconnected(kind == Kind::ReconnectState);
            }
        }
        if let Some(s) = seq {
            self.on_seq(s);
        }
        match kind {
            Kind::SessionAck => self.on_session_ack(body),
            Kind::Pong => {
                if let Some((r, at)) = self.ping_req {
                    if Some(r) == rid {
                        self.ping_req = None;
                        let mut st = self.stats();
                        st.counters.pongs_received += 1;
                        st.record(
                            Metric::PingRtt,
                            self.now.duration_since(at).as_micros() as u64,
                        );
                    }
                }
            }
            Kind::AnswerAck => {
                if let Some((r, at)) = self.answer_req {
                    if Some(r) == rid {
                        self.answer_req = None;
                        let mut st = self.stats();
                        st.counters.answer_acks += 1;
                        st.record(
                            Metric::AnswerAck,
                            self.now.duration_since(at).as_micros() as u64,
                        );
                    }
                }
            }
            Kind::Ok => {
                if let Some(Req {
                    kind: ReqKind::Start,
                    rid: r,
                    ..
                }) = self.req
                {
                    if Some(r) == rid {
                        self.req = None;
                        self.stats().counters.games_started += 1;
                    }
                }
            }
            Kind::RoomCreated => self.on_room_created(body),
            Kind::JoinAck => self.on_join_ack(body),
            Kind::QuestionShow => self.on_show(body),
            Kind::Reveal => self.on_reveal(body),
            Kind::Result => self.on_result(body),
            Kind::GameEnd => {
                if self.counts(0) {
                    self.stats().counters.game_end_receipts += 1;
                }
                self.finish();
            }
            Kind::ReconnectState => self.on_reconnect_state(body),
            Kind::Error => return self.on_error(body, rid),
            Kind::Other => {}
        }
        Ok(())
    }

    fn on_seq(&mut self, s: u64) {
        self.stats().counters.room_events += 1;
        let Some(t) = self.seq.as_mut() else {
            if self.pre_seq.len() < 4096 {
                self.pre_seq.push(s);
            }
            return;
        };
        let v = t.observe(s);
        if v != Verdict::InOrder {
            self.sync_seq(v);
        }
    }

    /// Moves a seq verdict into the worker's counters (missed is kept as the tracker's current gaps).
    fn sync_seq(&mut self, v: Verdict) {
        let missed = self.seq.as_ref().map_or(0, SeqTracker::missed);
        let prev = self.reported_missed;
        self.reported_missed = missed;
        let mut st = self.stats();
        st.counters.missed_events = (st.counters.missed_events + missed).saturating_sub(prev);
        match v {
            Verdict::Duplicate => st.counters.duplicate_events += 1,
            Verdict::OutOfOrder => st.counters.out_of_order_events += 1,
            Verdict::InOrder | Verdict::Gap(_) => {}
        }
    }

    /// Starts the seq check at `base`, replaying seqs that arrived before the base was known.
    fn seq_base(&mut self, base: u64) {
        let mut t = SeqTracker::with_base(base);
        let early = std::mem::take(&mut self.pre_seq);
        let mut verdicts = Vec::new();
        for s in early.into_iter().filter(|s| *s > base) {
            verdicts.push(t.observe(s));
        }
        self.seq = Some(t);
        for v in verdicts.into_iter().filter(|v| *v != Verdict::InOrder) {
            self.sync_seq(v);
        }
    }

    fn on_session_ack(&mut self, body: &[u8]) {
        let took = self.now.duration_since(self.connect_started).as_micros() as u64;
        {
            let mut st = self.stats();
            st.counters.session_acks += 1;
            st.record(Metric::SessionAck, took);
        }
        if self.ping_every.is_none() {
            let ms = self.ctx.plan.ping_interval_ms.or_else(|| {
                let d = scan::data(self.fmt, body).ok().flatten()?;
                scan::field(self.fmt, d, "pingInterval").and_then(|v| scan::as_u64(self.fmt, v))
            });
            self.ping_every = ms.filter(|m| *m > 0).map(Duration::from_millis);
        }
        if let Some(every) = self.ping_every {
            self.next_ping = Some(self.now + every);
        }
        if self.lost_at.is_some() {
            self.send_reconnect();
            return;
        }
        match self.role {
            Role::Host { .. } => {
                let p = &self.ctx.plan;
                let ev = ClientEvent::RoomCreate(events::RoomCreate {
                    quiz_id: p.quiz.clone(),
                    host_name: Some(format!("loadgen host {}", self.room())),
                    settings: events::RoomSettings {
                        time_per_q_ms: p.time_per_q_ms,
                        max_players: Some(
                            u32::try_from(p.players)
                                .unwrap_or(u32::MAX)
                                .clamp(1, 1_000_000),
                        ),
                        countdown_ms: p.countdown_ms,
                        reveal_pause_ms: p.reveal_pause_ms,
                        ..Default::default()
                    },
                });
                let rid = self.rid();
                self.send(ev, Some(rid));
                self.req = Some(Req {
                    kind: ReqKind::Create,
                    rid,
                    at: self.now,
                });
            }
            Role::Player { .. } => self.send_join(),
            Role::Plain { .. } => {}
        }
    }

    fn send_join(&mut self) {
        let (Role::Player { g, .. }, Some(code)) = (self.role, self.code.clone()) else {
            return;
        };
        let ev = ClientEvent::RoomJoin(events::RoomJoin {
            game_code: code.to_string(),
            player_name: format!("lg{g}"),
            avatar_id: (g % 16) as u16,
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.join_attempts += 1;
        self.stats().counters.joins_sent += 1;
        // The join latency counts from the first attempt: what the player waited.
        let at = self.join_first_at.get_or_insert(self.now);
        self.req = Some(Req {
            kind: ReqKind::Join,
            rid,
            at: *at,
        });
    }

    fn send_reconnect(&mut self) {
        let Some(code) = self.code.clone() else {
            return;
        };
        let (player_id, token) = match self.role {
            Role::Host { .. } => ("host".to_string(), self.token.clone()),
            _ => (self.player_id.clone(), self.token.clone()),
        };
        let ev = ClientEvent::ReconnectAttempt(events::ReconnectAttempt {
            game_code: code.to_string(),
            player_id,
            session_token: token,
            last_seq: self.seq.as_ref().map(SeqTracker::last),
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.req = Some(Req {
            kind: ReqKind::Reconnect,
            rid,
            at: self.now,
        });
    }

    fn reconnected(&mut self, snapshot: bool) {
        self.req = None;
        if let Some(lost) = self.lost_at.take() {
            let mut st = self.stats();
            st.counters.reconnects_ok += 1;
            if snapshot {
                st.counters.reconnect_snapshots += 1;
            }
            st.record(
                Metric::Reconnect,
                self.now.duration_since(lost).as_micros() as u64,
            );
        }
    }

    fn on_room_created(&mut self, body: &mut [u8]) {
        let Role::Host { room } = self.role else {
            return;
        };
        let Ok(Envelope {
            event: ServerEvent::RoomCreated(c),
            ..
        }) = decode::<ServerEvent>(self.codec, body)
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        if let Some(Req {
            kind: ReqKind::Create,
            at,
            ..
        }) = self.req.take()
        {
            let mut st = self.stats();
            st.counters.rooms_created += 1;
            st.record(
                Metric::RoomCreate,
                self.now.duration_since(at).as_micros() as u64,
            );
        }
        self.ctx
            .created
            .borrow_mut()
            .push((room, c.game_code.clone()));
        self.ctx.hosts_settled.set(self.ctx.hosts_settled.get() + 1);
        self.code = Some(c.game_code.into());
        self.token = c.host_token;
        self.seq_base(0);
    }

    fn on_join_ack(&mut self, body: &mut [u8]) {
        let Ok(Envelope {
            event: ServerEvent::RoomJoinAck(a),
            ..
        }) = decode::<ServerEvent>(self.codec, body)
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        if let Some(Req {
            kind: ReqKind::Join,
            at,
            ..
        }) = self.req.take()
        {
            let room = self.room();
            let slow = self.is_slow();
            let mut st = self.stats();
            st.counters.players_joined += 1;
            if !slow {
                *st.joined_per_room.entry(room).or_default() += 1;
            }
            st.record(
                Metric::JoinAck,
                self.now.duration_since(at).as_micros() as u64,
            );
        }
        self.player_id = a.player_id;
        self.token = a.session_token;
        self.secret = a.answer_secret;
        self.seq_base(a.seq);
        self.mark_ready();
        if self.is_slow() {
            // From now on this player never reads: the edge's send queue for it fills up. It is not
            // expected to finish, so the end of the game does not wait for it.
            self.reading = false;
            self.settle();
        }
    }

    fn on_show(&mut self, body: &[u8]) {
        let fmt = self.fmt;
        let Some(d) = scan::data(fmt, body).ok().flatten() else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let num = |k: &str| scan::field(fmt, d, k).and_then(|v| scan::as_u64(fmt, v));
        let (Some(q), Some(ends_at), Some(limit)) =
            (num("qIndex"), num("endsAt"), num("timeLimitMs"))
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let options = scan::field(fmt, d, "answers")
            .and_then(|v| scan::array_len(fmt, v))
            .unwrap_or(0);
        let q = q as u32;
        self.show(q, ends_at, limit, options);
    }

    /// A question reached this socket (live, replayed, or in a snapshot).
    fn show(&mut self, q: u32, ends_at: u64, limit_ms: u64, options: usize) {
        if !self.shows.insert(q) {
            return;
        }
        self.cur_q = Some((q, ends_at));
        let start_ms = ends_at.saturating_sub(limit_ms);
        let counts = self.counts(q);
        let room = self.room();
        {
            let now_us = self.now_us;
            let mut st = self.stats();
            st.max_q_shown = st.max_q_shown.max(i64::from(q));
            if counts {
                st.counters.question_receipts += 1;
                st.record(
                    Metric::QuestionDelivery,
                    now_us.saturating_sub(start_ms * 1000),
                );
                let qs = st.question(room, q);
                qs.start_us = start_ms * 1000;
                qs.ends_us = ends_at * 1000;
                qs.show_first_us = qs.show_first_us.min(now_us);
                qs.show_last_us = qs.show_last_us.max(now_us);
                qs.show_count += 1;
            }
        }
        if !counts || self.answered.contains(q) || options == 0 {
            return;
        }
        let a = self.ctx.plan.answer;
        if self.ctx.unit() < a.skip {
            return;
        }
        if self.answer_at.is_some() {
            self.stats().counters.answers_skipped += 1;
        }
        // Log-normal answer time around the median, measured from the question's server start, kept
        // inside the window (at least 200 ms, at most 95 % of the limit).
        let median = a.median_frac * limit_ms as f64;
        let delay_ms = (median * (a.sigma * self.ctx.normal()).exp())
            .clamp(200f64.min(limit_ms as f64 / 2.0), limit_ms as f64 * 0.95);
        let due_us = start_ms * 1000 + (delay_ms * 1000.0) as u64;
        let when = self.now + Duration::from_micros(due_us.saturating_sub(self.now_us));
        let idx = if options <= 1 || self.ctx.unit() < a.pick_first {
            0
        } else {
            1 + (self.ctx.rand() % (options as u64 - 1)) as u32
        };
        self.answer_at = Some((when, q, idx));
    }

    fn on_reveal(&mut self, body: &[u8]) {
        let fmt = self.fmt;
        let Some(q) = scan::data(fmt, body)
            .ok()
            .flatten()
            .and_then(|d| scan::field(fmt, d, "qIndex"))
            .and_then(|v| scan::as_u64(fmt, v))
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let q = q as u32;
        if !self.reveals.insert(q) {
            return;
        }
        if let Some((_, aq, _)) = self.answer_at {
            if aq == q {
                self.answer_at = None;
                self.stats().counters.answers_skipped += 1;
            }
        }
        if self.counts(q) {
            let (room, now_us) = (self.room(), self.now_us);
            let deadline_us = self
                .cur_q
                .filter(|(cq, _)| *cq == q)
                .map(|(_, ends)| (ends + GRACE_MS) * 1000);
            let mut st = self.stats();
            st.counters.reveal_receipts += 1;
            match deadline_us {
                Some(d) if now_us >= d => st.record(Metric::RevealDelivery, now_us - d),
                Some(_) => st.counters.reveals_before_deadline += 1,
                None => {}
            }
            let qs = st.question(room, q);
            qs.reveal_first_us = qs.reveal_first_us.min(now_us);
            qs.reveal_last_us = qs.reveal_last_us.max(now_us);
            qs.reveal_count += 1;
        }
        let limit = self.ctx.plan.questions;
        if limit > 0 && q + 1 >= limit && self.is_player() {
            self.finish();
        }
    }

    fn on_result(&mut self, body: &[u8]) {
        let fmt = self.fmt;
        let d = scan::data(fmt, body).ok().flatten();
        let field = |k: &str| d.and_then(|d| scan::field(fmt, d, k));
        let q = field("qIndex")
            .and_then(|v| scan::as_u64(fmt, v))
            .unwrap_or(u64::MAX) as u32;
        let correct = field("correct")
            .and_then(|v| scan::as_bool(fmt, v))
            .unwrap_or(false);
        if self.counts(q) {
            let room = self.room();
            let mut st = self.stats();
            st.counters.result_receipts += 1;
            if correct {
                st.counters.results_correct += 1;
            }
            st.question(room, q).result_count += 1;
        }
    }

    fn on_reconnect_state(&mut self, body: &mut [u8]) {
        let Ok(Envelope {
            event: ServerEvent::ReconnectState(s),
            ..
        }) = decode::<ServerEvent>(self.codec, body)
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        match self.seq.as_mut() {
            Some(t) => {
                let covered = t.jump_to_snapshot(s.seq);
                let missed = t.missed();
                let prev = self.reported_missed;
                self.reported_missed = missed;
                let mut st = self.stats();
                st.counters.snapshot_covered_events += covered;
                st.counters.missed_events =
                    (st.counters.missed_events + missed).saturating_sub(prev);
            }
            None => self.seq_base(s.seq),
        }
        if s.answered {
            if let Some(q) = &s.current_q {
                self.answered.insert(q.q_index);
            }
        }
        if let Some(q) = s.current_q {
            self.show(
                q.q_index,
                q.ends_at,
                u64::from(q.time_limit_ms),
                q.answers.len(),
            );
        }
        if s.state == events::RoomState::Ended {
            self.finish();
        }
    }

    fn on_error(&mut self, body: &mut [u8], rid: Option<u32>) -> Result<(), End> {
        let (code, retry_after) = match decode::<ServerEvent>(self.codec, body) {
            Ok(Envelope {
                event: ServerEvent::Error(e),
                ..
            }) => (e.code, e.retry_after_ms),
            _ => {
                self.stats().counters.decode_errors += 1;
                return Ok(());
            }
        };
        self.stats().error_code(code.as_str());
        if let Some((r, _)) = self.answer_req {
            if Some(r) == rid {
                self.answer_req = None;
                self.stats().counters.answer_errors += 1;
                return Ok(());
            }
        }
        let Some(req) = self.req else { return Ok(()) };
        if Some(req.rid) != rid {
            return Ok(());
        }
        self.req = None;
        match req.kind {
            ReqKind::Create => {
                self.stats().counters.room_create_failed += 1;
                Err(End::Final)
            }
            // A retryable refusal (unavailable, overloaded, rate_limited): join again after the wait the
            // edge asked for (500 ms if it named none), as a real client would, a few times.
            ReqKind::Join if code.retryable() && self.join_attempts < JOIN_ATTEMPTS => {
                let wait = retry_after.unwrap_or(500) + (self.ctx.unit() * 250.0) as u64;
                self.rejoin_at = Some(self.now + Duration::from_millis(wait));
                self.stats().counters.join_retries += 1;
                Ok(())
            }
            ReqKind::Join => {
                self.stats().counters.join_failed += 1;
                Err(End::Final)
            }
            // A retryable refusal (unavailable, overloaded): drop this socket and try again.
            ReqKind::Reconnect if code.retryable() => Err(End::Lost),
            ReqKind::Reconnect => {
                self.stats().counters.reconnects_failed += 1;
                self.lost_at = None;
                Err(End::Final)
            }
            ReqKind::Start => Ok(()),
        }
    }

    fn maybe_start_game(&mut self) {
        if self.started_game || self.req.is_some() || self.stream.is_none() {
            return;
        }
        let (Role::Host { .. }, Some(code)) = (self.role, self.code.clone()) else {
            return;
        };
        if !self.ctx.plan.scenario.plays() {
            return;
        }
        self.started_game = true;
        let rid = self.rid();
        self.send(
            ClientEvent::GameStart(events::GameRef {
                game_code: code.to_string(),
            }),
            Some(rid),
        );
        self.req = Some(Req {
            kind: ReqKind::Start,
            rid,
            at: Instant::now(),
        });
    }

    fn next_wake(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        add(self.answer_at.map(|a| a.0));
        add(self.rejoin_at);
        add(self.next_ping);
        add(self.req.map(|r| r.at + REQUEST_TIMEOUT));
        t
    }

    fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        self.now = now;
        self.now_us = epoch_us();
        if let Some((when, q, idx)) = self.answer_at {
            if when <= now && self.lost_at.is_some() {
                // Still reconnecting: the new socket has no session until the edge answers the
                // `reconnect:attempt` (an answer now would be `unauthorized`). Try again shortly.
                self.answer_at = Some((now + Duration::from_millis(20), q, idx));
            } else if when <= now {
                self.answer_at = None;
                self.answer(q, idx);
            }
        }
        if let Some(at) = self.rejoin_at {
            if at <= now {
                self.rejoin_at = None;
                self.send_join();
            }
        }
        if let Some(at) = self.next_ping {
            if at <= now {
                self.ping();
                self.next_ping = self.ping_every.map(|e| now + e);
            }
        }
        if let Some(req) = self.req {
            if req.at + REQUEST_TIMEOUT <= now {
                self.req = None;
                if req.kind != ReqKind::Reconnect {
                    self.stats().error_code("timeout");
                }
                return match req.kind {
                    ReqKind::Create => {
                        self.stats().counters.room_create_failed += 1;
                        Err(End::Final)
                    }
                    ReqKind::Join => {
                        self.stats().counters.join_failed += 1;
                        Err(End::Final)
                    }
                    // The edge sent nothing after the attempt (nothing was missed and it sends no
                    // acknowledgement): the socket is usable; the reconnect time is not measured.
                    ReqKind::Reconnect => {
                        self.lost_at = None;
                        self.stats().error_code("reconnect_unanswered");
                        Ok(())
                    }
                    ReqKind::Start => Ok(()),
                };
            }
        }
        Ok(())
    }

    fn answer(&mut self, q: u32, idx: u32) {
        if self.cur_q.map(|c| c.0) != Some(q)
            || self.reveals.contains(q)
            || !self.answered.insert(q)
        {
            self.stats().counters.answers_skipped += 1;
            return;
        }
        let Some(code) = self.code.clone() else {
            return;
        };
        let hash = auth::answer_hash(&self.secret, &code, &self.player_id, q, idx);
        let ev = ClientEvent::AnswerSubmit(events::AnswerSubmit {
            game_code: code.to_string(),
            q_index: q,
            answer_idx: idx,
            client_time: (self.now_us / 1000) as f64,
            answer_hash: hash,
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.answer_req = Some((rid, self.now));
        let room = self.room();
        let mut st = self.stats();
        st.counters.answers_sent += 1;
        st.question(room, q).answers += 1;
    }

    fn ping(&mut self) {
        let rid = self.rid();
        self.send(
            ClientEvent::Ping(events::Ping {
                t: (self.now_us / 1000) as f64,
            }),
            Some(rid),
        );
        self.ping_req = Some((rid, self.now));
        self.stats().counters.pings_sent += 1;
    }

    /// Frames an event into `out` (masked, in place).
    fn send(&mut self, ev: ClientEvent, rid: Option<u32>) {
        let env = Envelope {
            event: ev,
            rid,
            seq: None,
        };
        let mask = (self.ctx.rand() as u32).to_ne_bytes();
        let before = self.out.len();
        match self.codec {
            Codec::Json => wsframe::append_masked_frame(&mut self.out, opcode::TEXT, mask, |o| {
                serde_json::to_writer(o, &env).expect("client events encode to JSON");
            }),
            Codec::Msgpack => {
                wsframe::append_masked_frame(&mut self.out, opcode::BINARY, mask, |o| {
                    rmp_serde::encode::write_named(o, &env)
                        .expect("client events encode to MessagePack");
                })
            }
        }
        let n = (self.out.len() - before) as u64;
        let mut st = self.stats();
        st.counters.frames_sent += 1;
        st.counters.bytes_sent += n;
    }

    /// Writes `out`. Client frames are small; the socket's send buffer almost always takes them at once.
    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(End::Lost);
        };
        let r = timeout(Duration::from_secs(10), stream.write_all(&self.out)).await;
        self.out.clear();
        if self.out.capacity() > 16 * 1024 {
            self.out = Vec::new();
        }
        match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(self.lost("write_failed")),
        }
    }

    async fn close_socket(&mut self, end: End) {
        if self.stream.is_none() {
            return;
        }
        if end == End::Stop {
            if self.is_slow() {
                self.drain_slow().await;
            }
            if self.stream.is_some() {
                self.out.clear();
                self.queue_close(CloseCode::Normal.code());
                if let Some(s) = self.stream.as_ref() {
                    let _ = s.try_write(&self.out);
                }
            }
        } else if !self.out.is_empty() {
            if let Some(s) = self.stream.as_ref() {
                let _ = s.try_write(&self.out);
            }
        }
        self.out.clear();
        self.leftover.clear();
        self.stream = None;
        self.ctx.open.set(self.ctx.open.get() - 1);
    }

    /// A slow consumer at the stop: read what waited in its socket to learn how the edge treated it
    /// (a 4008 close, a reset, or nothing).
    async fn drain_slow(&mut self) {
        self.reading = true;
        let before = self.stats().counters.bytes_received;
        let until = Instant::now() + SLOW_DRAIN;
        // Bounded by `until`.
        let outcome = loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(stream) = self.stream.as_ref() else {
                break "slow:closed_by_edge";
            };
            if left.is_zero() {
                break "slow:still_open";
            }
            match timeout(left, stream.readable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break "slow:closed_by_edge",
                Err(_) => break "slow:still_open",
            }
            if self.read_ready().is_err() {
                break "slow:closed_by_edge";
            }
        };
        let mut st = self.stats();
        st.counters.slow_backlog_bytes += st.counters.bytes_received - before;
        st.close_code(outcome);
    }

    /// Books what this socket leaves unfinished at its end.
    fn at_end(&mut self) {
        if matches!(self.role, Role::Player { slow: false, .. }) && !self.finished && !self.failed {
            self.stats().counters.players_unfinished += 1;
        }
        if self.stream.is_some() {
            self.stream = None;
            self.ctx.open.set(self.ctx.open.get() - 1);
        }
        self.settle();
    }
}

/// Sends the upgrade request and reads until the response is complete; frames after it stay in `buf`.
async fn upgrade(
    stream: &TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    key: &str,
    expect: Option<&str>,
) -> Result<(), String> {
    let mut off = 0;
    // Bounded by the caller's timeout.
    while off < request.len() {
        stream.writable().await.map_err(|e| io_kind(&e))?;
        match stream.try_write(&request[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_kind(&e)),
        }
    }
    let mut chunk = [0u8; 2048];
    loop {
        stream.readable().await.map_err(|e| io_kind(&e))?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err("eof".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(io_kind(&e)),
        }
        match wsframe::parse_upgrade_response(buf, key, expect) {
            Ok(Some(n)) => {
                buf.drain(..n);
                return Ok(());
            }
            Ok(None) => {}
            Err(wsframe::UpgradeError::Status(s)) => return Err(format!("http_{s}")),
            Err(wsframe::UpgradeError::BadAccept) => return Err("bad_accept".into()),
            Err(wsframe::UpgradeError::BadProtocol(_)) => return Err("bad_subprotocol".into()),
            Err(wsframe::UpgradeError::Malformed(_)) => return Err("malformed".into()),
        }
    }
}

/// A short name for an I/O error, for the errors table.
fn io_kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused".into(),
        Some(libc::EADDRNOTAVAIL) => "no_source_port".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "fd_limit".into(),
        Some(libc::ECONNRESET) => "reset".into(),
        Some(libc::ETIMEDOUT) => "timeout".into(),
        _ => format!("{:?}", e.kind()).to_lowercase(),
    }
}
