//! The rooms of one worker thread: which local sockets are members of which room, and delivery of room
//! events to them in `seq` order.
//!
//! Delivery rule: a member receives room event `n` only if it has received `n - 1` (its `last_seq`).
//! A member that is behind — it joined while the process was not yet subscribed, reconnected with an
//! old `seq`, or the subscription dropped during a Redis failover — catches up from the room log
//! (`XRANGE`), or gets a `reconnect:state` snapshot when the gap is older than the log. Nothing is
//! silently skipped and nothing is delivered twice. The one kind of frame outside this rule is the live
//! tick (`game:answer:progress`, no seq, [`Rooms::deliver_live`]): only members that want it and are in
//! sync get it, and a member that misses one gets the next.
//!
//! Fair start ([`super::seal`]): a `game:question:show` that arrives well before its `showAt` is sealed
//! for the members that open sealed questions and held back from the others; at the key time the
//! sealed members get `game:question:key` and the others the clear show. A catch-up or reconnect in
//! between gets the sealed show, or waits for the key time ([`Rooms::replay_or_snapshot`],
//! [`Rooms::gate_snapshot`]), so no socket reads a question before its key goes out.

use super::address_limits::AddressLimiter;
use super::hub::{class_of, CallError, HubHandle, RoomFrame, WorkerMsg};
use super::members::{Keyed, Members};
use super::seal::{self, FanoutRate, QuestionSeal};
use crate::conn::ConnHandle;
use crate::metrics::GAME;
use crate::sendq::FrameClass;
use crate::ws::frame::{self, Opcode};
use ringside_protocol::events::{ErrorEvent, LeaveReason, ReconnectState, RoomState, ServerEvent};
use ringside_protocol::{CloseCode, Codec, Envelope, ErrorCode};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

struct Member {
    conn: ConnHandle,
    codec: Codec,
    /// The player's id; `None` for the host.
    player: Option<Rc<str>>,
    last_seq: u64,
    /// A catch-up task is running for this member; live events wait for it.
    syncing: bool,
    /// The socket opens sealed questions (game/seal.rs).
    sealed: bool,
    /// The socket gets the live `game:answer:progress` ticks: the host's, and a player's that asked.
    progress: bool,
}

/// The query parameter of the upgrade with which a player's socket asks for the live
/// `game:answer:progress` ticks (`/ws?progress=1`). The host's socket gets them anyway; a player's page
/// that shows no answer count saves them.
pub const PROGRESS_PARAM: &str = "progress";

/// What a socket asked for on its upgrade (`/ws?sealed=1&progress=1`), kept with each membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// It opens sealed questions ([`super::seal::QUERY_PARAM`]).
    pub sealed: bool,
    /// It wants the live progress ticks ([`PROGRESS_PARAM`]).
    pub progress: bool,
}

impl Keyed for Member {
    fn key(&self) -> u64 {
        self.conn.id()
    }
}

#[derive(Default)]
struct LocalRoom {
    /// The highest seq this worker has seen for the room.
    last_seq: u64,
    /// Keyed by connection id; iterated in no particular order.
    members: Members<Member>,
    /// The last question this worker sealed (or held back) ahead of its `showAt`.
    seal: Option<QuestionSeal>,
    /// The last reveal received and not yet followed by its leaderboard: `(qIndex, when)`.
    reveal: Option<(u32, std::time::Instant)>,
    /// How long the room's last leaderboard came after its reveal (as the Redis thread read both): a
    /// players' reveal waits for its leaderboard (and their result) unless that was longer than
    /// `--reveal-hold-ms`.
    board_gap: Option<std::time::Duration>,
    /// The question of the last leaderboard received.
    last_board: Option<u32>,
    /// The seq of the last reveal received: a held reveal's release is left to the newest reveal's.
    reveal_seq: u64,
}

/// The last `game:question:show` among a catch-up's events: `(seq, showAt)`.
pub type ShowMark = Option<(u64, u64)>;

/// The [`ShowMark`] of one room event.
pub fn show_mark(frame: &RoomFrame) -> ShowMark {
    match &frame.event {
        ServerEvent::QuestionShow(s) => s.show_at.map(|at| (frame.seq, at)),
        _ => None,
    }
}

/// Room events a socket missed, for [`Rooms::replay_or_snapshot`].
pub enum Missed {
    /// The missed events in `seq` order: `(seq, frame for the socket's codec, frame class)`.
    Events {
        conn: ConnHandle,
        frames: Vec<(u64, bytes::Bytes, FrameClass)>,
        /// The last question show among them (fair start: it may not be readable yet).
        show: ShowMark,
    },
    /// The gap is older than the room log: only a snapshot can fill it.
    Gap,
}

/// How [`Rooms::replay_or_snapshot`] brought a socket up to date.
pub enum CaughtUp {
    /// The missed events were written to the socket; `last_seq` is the last one's (`None`: none).
    Replayed { last_seq: Option<u64> },
    /// They would not fit (or the log no longer holds them): this snapshot replaces them.
    Snapshot(ReconnectState),
}

/// The per-thread room registry.
pub struct Rooms {
    pub worker: usize,
    pub hub: HubHandle,
    pub share_base: String,
    /// The process's per-address limits of joins and room-code lookups (`None`: off).
    pub addresses: Option<Arc<AddressLimiter>>,
    rooms: RefCell<HashMap<Arc<str>, LocalRoom>>,
    /// This worker's measured time per frame of a fan-out (the keys' lead).
    pub rate: FanoutRate,
    /// How long a player's leaderboard may wait for the player's result (`--leaderboard-hold-ms`).
    leaderboard_hold: std::time::Duration,
    /// How long a player's reveal may wait for the room's leaderboard (`--reveal-hold-ms`).
    reveal_hold: std::time::Duration,
}

/// Encodes a server event for one socket (replies and personal events; room events use [`RoomFrame`]).
pub fn encode(codec: Codec, env: &Envelope<ServerEvent>) -> bytes::Bytes {
    let body = env.encode(codec);
    frame::encode(
        if codec.is_text() {
            Opcode::Text
        } else {
            Opcode::Binary
        },
        &body,
    )
}

/// Sends an `error` to one socket.
pub fn send_error(
    conn: &ConnHandle,
    codec: Codec,
    rid: Option<u32>,
    code: ErrorCode,
    message: String,
    event: Option<&str>,
) {
    let retry_after_ms = code.retryable().then_some(1000);
    send_refusal(conn, codec, rid, code, message, event, retry_after_ms)
}

/// The `players`/`hosts` gauges of `/metrics` ([`GAME`]): `delta` members of one role.
fn count_member(player: bool, delta: i64) {
    let g = if player { &GAME.players } else { &GAME.hosts };
    g.fetch_add(delta, Relaxed);
}

/// [`send_error`] with a `retryAfterMs` of the caller's (a rate limit knows when its next token comes).
pub fn send_refusal(
    conn: &ConnHandle,
    codec: Codec,
    rid: Option<u32>,
    code: ErrorCode,
    message: String,
    event: Option<&str>,
    retry_after_ms: Option<u64>,
) {
    GAME.refused(code);
    let env = Envelope::new(ServerEvent::Error(ErrorEvent {
        code,
        message,
        event: event.map(str::to_string),
        retry_after_ms,
    }))
    .with_rid(rid);
    let _ = conn.send(encode(codec, &env), FrameClass::Reliable);
}

impl Rooms {
    pub fn new(
        worker: usize,
        hub: HubHandle,
        share_base: String,
        addresses: Option<Arc<AddressLimiter>>,
        leaderboard_hold: std::time::Duration,
        reveal_hold: std::time::Duration,
    ) -> Rooms {
        Rooms {
            worker,
            hub,
            share_base,
            addresses,
            rooms: RefCell::new(HashMap::new()),
            rate: FanoutRate::default(),
            leaderboard_hold,
            reveal_hold,
        }
    }

    /// Adds a socket to a room; it has seen every event up to `last_seq`.
    /// The room code as this worker's room map already holds it, so that every member's session
    /// shares one allocation (a fresh one when the room has no member here yet).
    pub fn intern(&self, code: &str) -> Arc<str> {
        match self.rooms.borrow().get_key_value(code) {
            Some((k, _)) => k.clone(),
            None => code.into(),
        }
    }

    pub fn add_member(
        self: &Rc<Self>,
        code: &Arc<str>,
        conn: &ConnHandle,
        codec: Codec,
        player: Option<Rc<str>>,
        last_seq: u64,
        wants: Wants,
    ) {
        if !conn.is_open() {
            return; // closed while its join was in flight: nothing may outlive the socket
        }
        let behind = {
            let mut rooms = self.rooms.borrow_mut();
            let first = !rooms.contains_key(code);
            let room = rooms.entry(code.clone()).or_default();
            count_member(player.is_some(), 1);
            let old = room.members.insert(Member {
                conn: conn.clone(),
                codec,
                progress: wants.progress || player.is_none(),
                player,
                last_seq,
                syncing: false,
                sealed: wants.sealed,
            });
            if let Some(old) = old {
                count_member(old.player.is_some(), -1);
            }
            if first {
                GAME.rooms.fetch_add(1, Relaxed);
                self.hub.interest(code.clone(), self.worker, true);
            }
            room.last_seq > last_seq
        };
        if behind {
            self.catch_up(code.clone(), conn.id());
        }
    }

    /// Removes a socket from a room (leave, kick, close). The last local member ends the subscription.
    pub fn remove_member(&self, code: &Arc<str>, conn_id: u64) {
        let mut rooms = self.rooms.borrow_mut();
        if let Some(room) = rooms.get_mut(code) {
            if let Some(gone) = room.members.remove(conn_id) {
                count_member(gone.player.is_some(), -1);
            }
            if room.members.is_empty() {
                rooms.remove(code);
                GAME.rooms.fetch_sub(1, Relaxed);
                self.hub.interest(code.clone(), self.worker, false);
            }
        }
    }

    /// Local members of `code` (for tests and metrics).
    pub fn member_count(&self, code: &str) -> usize {
        self.rooms.borrow().get(code).map_or(0, |r| r.members.len())
    }

    pub fn on_hub_message(self: &Rc<Self>, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Event(frame) => self.on_event(frame),
            WorkerMsg::Head { code, seq } => {
                let behind: Vec<u64> = {
                    let mut rooms = self.rooms.borrow_mut();
                    let Some(room) = rooms.get_mut(&code) else {
                        return;
                    };
                    room.last_seq = room.last_seq.max(seq);
                    room.members
                        .iter()
                        .filter(|m| !m.syncing && m.last_seq < seq)
                        .map(|m| m.conn.id())
                        .collect()
                };
                for id in behind {
                    self.catch_up(code.clone(), id);
                }
            }
        }
    }

    fn on_event(self: &Rc<Self>, frame: Arc<RoomFrame>) {
        if frame.is_live() {
            return self.deliver_live(&frame);
        }
        let mut behind = Vec::new();
        let mut players = Vec::new();
        let mut waiting = Vec::new();
        let mut held_reveals = Vec::new();
        let started = std::time::Instant::now();
        let mut sent = 0usize;
        let mut key_at = None;
        {
            let mut rooms = self.rooms.borrow_mut();
            // The key's lead covers every socket of this worker, not only the room's: rooms that
            // started together send their keys at nearly the same moment.
            let sockets: usize = match frame.event {
                ServerEvent::QuestionShow(_) => rooms.values().map(|r| r.members.len()).sum(),
                _ => 0,
            };
            let Some(room) = rooms.get_mut(&frame.code) else {
                return;
            };
            room.last_seq = room.last_seq.max(frame.seq);
            if let ServerEvent::QuestionShow(show) = &frame.event {
                let lead = self.rate.lead_ms(sockets);
                if let Some(at) = seal::wants_seal(show, lead, seal::now_ms()) {
                    room.seal = Some(QuestionSeal::new(&frame, show, at));
                    key_at = Some(at);
                    GAME.seals_total.fetch_add(1, Relaxed);
                    GAME.seal_lead_ms_total.fetch_add(lead, Relaxed);
                    GAME.seal_lead_ms.store(lead as i64, Relaxed);
                }
            }
            let held = room
                .seal
                .as_ref()
                .filter(|s| s.seq == frame.seq && s.pending());
            let sealing = seal::enabled();
            // personal results follow the leaderboard: it is published once the question is scored
            let board = matches!(frame.event, ServerEvent::Leaderboard(_));
            let holding = !self.leaderboard_hold.is_zero();
            // as the Redis thread read them: the gap is Redis's scoring time, not also how long
            // this worker took to fan the reveal out (which the hold itself would have saved)
            let now = frame.received;
            // a player's leaderboard waits for the player's result: one write for both; the reveal
            // before it waits too, so all three leave in one write, unless the room's last
            // leaderboard came later than the reveal's hold (a room too big to score in time)
            let hold = match &frame.event {
                ServerEvent::Leaderboard(l) => {
                    room.last_board = Some(l.q_index);
                    if let Some((q, at)) = room.reveal.take() {
                        if q == l.q_index {
                            let gap = now.saturating_duration_since(at);
                            room.board_gap = Some(gap);
                            GAME.board_gap_ms.store(gap.as_millis() as i64, Relaxed);
                            tracing::debug!(room = %frame.code, q = l.q_index, gap_ms = gap.as_millis() as u64, "leaderboard after its reveal");
                        }
                    }
                    holding
                }
                ServerEvent::QuestionReveal(r) => {
                    room.reveal = Some((r.q_index, now));
                    room.reveal_seq = frame.seq;
                    // a reveal after its own leaderboard (a replayed publish) waits for a new one
                    room.last_board = None;
                    holding
                        && !self.reveal_hold.is_zero()
                        && room.board_gap.is_none_or(|g| g <= self.reveal_hold)
                }
                _ => false,
            };
            let kicked = match &frame.event {
                ServerEvent::PlayerLeft(l) if l.reason == LeaveReason::Kick => {
                    Some(l.player_id.as_str())
                }
                _ => None,
            };
            for m in room.members.iter_mut() {
                if m.syncing || frame.seq <= m.last_seq {
                    continue;
                }
                if frame.seq != m.last_seq + 1 {
                    behind.push(m.conn.id());
                    continue;
                }
                let bytes = match held {
                    // sealed now, its key at the key time; the others wait for the key time
                    Some(s) if m.sealed && sealing => s.sealed_frame(m.codec),
                    Some(_) => continue,
                    None => frame.frame(m.codec),
                };
                if hold && m.player.is_some() {
                    // written with the player's result, later: not part of this fan-out's timing
                    let _ = m.conn.send_held(bytes.clone(), frame.class);
                    if !board {
                        held_reveals.push(m.conn.clone());
                    }
                } else {
                    let _ = m.conn.send_fanout(bytes.clone(), frame.class);
                    sent += 1;
                }
                m.last_seq = frame.seq;
                if let (Some(k), Some(p)) = (kicked, &m.player) {
                    if **p == *k {
                        send_error(
                            &m.conn,
                            m.codec,
                            None,
                            ErrorCode::Kicked,
                            "removed from the room".into(),
                            None,
                        );
                        m.conn.close(CloseCode::Kicked.code(), "kicked");
                    }
                }
                if board {
                    if let Some(p) = &m.player {
                        players.push((m.conn.id(), p.clone()));
                        if hold {
                            waiting.push(Some(m.conn.clone()));
                        }
                    }
                }
            }
        }
        for id in behind {
            self.catch_up(frame.code.clone(), id);
        }
        self.measure(sent, started);
        if let Some(at) = key_at {
            let this = self.clone();
            let (code, seq) = (frame.code.clone(), frame.seq);
            monoio::spawn(async move {
                seal::sleep_until_key_time(at).await;
                this.send_key(&code, seq);
            });
        }
        if let ServerEvent::Leaderboard(l) = &frame.event {
            if !players.is_empty() {
                self.deliver_results(frame.code.clone(), l.q_index, players, waiting);
            }
        }
        if let ServerEvent::QuestionReveal(r) = &frame.event {
            if !held_reveals.is_empty() {
                self.release_reveals(frame.code.clone(), r.q_index, frame.seq, held_reveals);
            }
        }
    }

    /// A live tick (`game:answer:progress`, no seq): to the members that want it and have every event
    /// of the room so far, so that it never overtakes the show it counts the answers of. No seq moves;
    /// a member that misses one gets the next.
    /// Like any room event it also retries the catch-up of members left behind (a failed log read
    /// waits for the room's next event), outside a question's key time, when members that do not open
    /// sealed questions wait for the show on purpose.
    fn deliver_live(self: &Rc<Self>, frame: &RoomFrame) {
        let started = std::time::Instant::now();
        let mut sent = 0usize;
        let mut behind = Vec::new();
        {
            let rooms = self.rooms.borrow();
            let Some(room) = rooms.get(&frame.code) else {
                return;
            };
            let seal_pending = room.seal.as_ref().is_some_and(|s| s.pending());
            for m in room.members.iter() {
                if m.syncing {
                    continue;
                }
                if m.last_seq < room.last_seq {
                    if !seal_pending {
                        behind.push(m.conn.id());
                    }
                } else if m.progress && m.last_seq == room.last_seq {
                    let _ = m
                        .conn
                        .send_fanout(frame.frame(m.codec).clone(), frame.class);
                    sent += 1;
                }
            }
        }
        for id in behind {
            self.catch_up(frame.code.clone(), id);
        }
        self.measure(sent, started);
    }

    /// The players' reveal of question `q`, held for its leaderboard: if that has not come within
    /// `--reveal-hold-ms`, they leave alone. Once it has, the leaderboard's hold releases them
    /// with it ([`Rooms::deliver_results`]); [`RESULTS_HOLD_CALLS`] holds later every one is released
    /// anyway (a socket the leaderboard's fan-out skipped, catching up, whose catch-up failed), when the
    /// leaderboard's own hold has ended too, so this never splits a reveal from its result early. Once
    /// a newer reveal of the room has come, its release (or its fan-out's write) is the one that
    /// lets the sockets go: this one then does nothing, or it would release the newer held reveal
    /// before its leaderboard (a room's first reveal is held too, so question 0's release could).
    fn release_reveals(self: &Rc<Self>, code: Arc<str>, q: u32, seq: u64, conns: Vec<ConnHandle>) {
        let this = self.clone();
        let (reveal_hold, hold) = (self.reveal_hold, self.leaderboard_hold);
        monoio::spawn(async move {
            monoio::time::sleep(reveal_hold).await;
            // (the room's newest reveal, whether its leaderboard has come)
            let state = |this: &Rc<Self>| {
                this.rooms
                    .borrow()
                    .get(&code)
                    .map(|r| (r.reveal_seq, r.last_board == Some(q)))
            };
            if state(&this).is_some_and(|(newest, boarded)| newest == seq && boarded) {
                monoio::time::sleep(hold * RESULTS_HOLD_CALLS).await;
            }
            // A newer reveal of the room holds these sockets now: its own release lets them go (with
            // whatever of this one is still held), so this one must not split it from its result.
            if state(&this).is_some_and(|(newest, _)| newest != seq) {
                return;
            }
            for c in conns {
                c.release();
            }
        });
    }

    /// Records how long a fan-out of `sent` frames took, once the sockets' writers it woke (in chunks,
    /// `ConnHandle::send_fanout`) have all run.
    fn measure(self: &Rc<Self>, sent: usize, started: std::time::Instant) {
        if sent < 64 {
            return;
        }
        let this = self.clone();
        monoio::spawn(async move {
            crate::worker::after_deferred_wakes().await;
            this.rate.observe(sent, started.elapsed())
        });
    }

    /// The key time of the question shown at `seq`: `game:question:key` to the members that got it
    /// sealed, the clear show to those it was held back from (they then catch up on anything after it).
    fn send_key(self: &Rc<Self>, code: &Arc<str>, seq: u64) {
        let mut behind = Vec::new();
        {
            let mut rooms = self.rooms.borrow_mut();
            let Some(room) = rooms.get_mut(code) else {
                return;
            };
            let LocalRoom {
                seal,
                members,
                last_seq,
                ..
            } = room;
            let Some(s) = seal.as_mut().filter(|s| s.seq == seq && s.pending()) else {
                return;
            };
            s.key_sent = true;
            let sealing = seal::enabled();
            let mut clear: Option<Arc<RoomFrame>> = None;
            let mut keys = 0u64;
            for m in members.iter_mut() {
                if m.last_seq >= seq {
                    if m.sealed && sealing {
                        let _ = m
                            .conn
                            .send(s.key_frame(m.codec).clone(), FrameClass::Reliable);
                        keys += 1;
                    }
                } else if !m.syncing && m.last_seq + 1 == seq {
                    let f = clear.get_or_insert_with(|| s.clear.clone());
                    let _ = m.conn.send(f.frame(m.codec).clone(), FrameClass::Reliable);
                    m.last_seq = seq;
                    if *last_seq > seq {
                        behind.push(m.conn.id());
                    }
                }
            }
            GAME.seal_keys_total.fetch_add(keys, Relaxed);
        }
        for id in behind {
            self.catch_up(code.clone(), id);
        }
    }

    /// Fair start for a snapshot: while the key of its open question has not gone out, a socket that
    /// opens sealed questions gets the question sealed with this worker's key (the key follows with the
    /// room's), any other waits for the key time. A question this worker did not seal (the room had no
    /// member here) is released at `showAt − floor`.
    pub async fn gate_snapshot(&self, code: &Arc<str>, state: &mut ReconnectState, sealed: bool) {
        if state.state != RoomState::Active {
            return;
        }
        let Some(cur) = state.current_q.as_mut() else {
            return;
        };
        let Some(show_at) = cur.show_at else { return };
        if cur.sealed.is_some() {
            return;
        }
        let wait = {
            let rooms = self.rooms.borrow();
            let local = rooms
                .get(code)
                .and_then(|r| r.seal.as_ref())
                .filter(|s| s.q == cur.q_index && s.show_at == show_at);
            match local {
                Some(s) if !s.pending() => return,
                Some(s) if sealed && seal::enabled() => {
                    **cur = s.seal(cur);
                    return;
                }
                Some(s) => s.key_at,
                None => seal::fallback_key_at(show_at),
            }
        };
        if wait > seal::now_ms() {
            monoio::time::sleep(seal::until(wait)).await;
        }
    }

    /// Fair start for replayed events (see [`Rooms::gate_snapshot`]): the show of a question whose
    /// key has not gone out is replaced by its sealed frame, or the replay waits for the key time.
    async fn gate_replay(
        &self,
        code: &Arc<str>,
        frames: &mut [(u64, bytes::Bytes, FrameClass)],
        show: ShowMark,
        codec: Codec,
        sealed: bool,
    ) {
        let Some((seq, show_at)) = show else { return };
        let wait = {
            let rooms = self.rooms.borrow();
            let local = rooms
                .get(code)
                .and_then(|r| r.seal.as_ref())
                .filter(|s| s.seq == seq);
            match local {
                Some(s) if !s.pending() => return,
                Some(s) if sealed && seal::enabled() => {
                    for f in frames.iter_mut().filter(|f| f.0 == seq) {
                        f.1 = s.sealed_frame(codec).clone();
                    }
                    return;
                }
                Some(s) => s.key_at,
                None => seal::fallback_key_at(show_at),
            }
        };
        if wait > seal::now_ms() {
            monoio::time::sleep(seal::until(wait)).await;
        }
    }

    /// The personal results of the leaderboards a member got in a replay instead of live (a catch-up
    /// from the room log, a reconnect's missed events): fetched and sent as after a live one (`results`
    /// keeps the last four scored questions). `player` `None` (the host): nothing.
    pub fn results_after_replay(
        self: &Rc<Self>,
        code: &Arc<str>,
        conn_id: u64,
        player: Option<&Rc<str>>,
        boards: Vec<u32>,
    ) {
        let Some(p) = player else { return };
        for q in boards {
            self.deliver_results(code.clone(), q, vec![(conn_id, p.clone())], Vec::new());
        }
    }

    /// Fetches each local player's own result of question `q` (batched FCALLs, one after the other) and
    /// sends it to them alone. `waiting[i]`: `players[i]`'s socket, its leaderboard held back for the
    /// result (live leaderboards; empty for a replay's): the result's send takes both out in one write. A
    /// player with no result, a failed call or one slower than `--leaderboard-hold-ms` releases it alone;
    /// the bound is per call, so a big room's later players wait for the calls before theirs (each
    /// about 6 ms of Redis per 1,000 players, perf/lua.md) and still get both in one write — up to
    /// [`RESULTS_HOLD_CALLS`] holds in all, after which the rest go alone.
    fn deliver_results(
        self: &Rc<Self>,
        code: Arc<str>,
        q: u32,
        players: Vec<(u64, Rc<str>)>,
        waiting: Vec<Option<ConnHandle>>,
    ) {
        let this = self.clone();
        let hold = self.leaderboard_hold;
        let hold_until = std::time::Instant::now() + hold * RESULTS_HOLD_CALLS;
        monoio::spawn(async move {
            let mut waiting = HeldBoards::new(waiting);
            let mut base = 0;
            for chunk in players.chunks(ringside_lua::game::RESULTS_MAX) {
                let ids: Vec<String> = chunk.iter().map(|(_, p)| p.to_string()).collect();
                let c = code.clone();
                let call = this.hub.call(move |game, _| async move {
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    game.results(&c, q, &refs).await
                });
                let until = (std::time::Instant::now() + hold).min(hold_until);
                let res = waiting.bounded(call, until).await;
                match res {
                    Ok(Ok(results)) => {
                        let rooms = this.rooms.borrow();
                        let Some(room) = rooms.get(&code) else { return };
                        for (k, ((conn_id, _), result)) in chunk.iter().zip(results).enumerate() {
                            let (Some(result), Some(m)) = (result, room.members.get(*conn_id))
                            else {
                                continue;
                            };
                            let env = Envelope::new(ServerEvent::AnswerResult(result));
                            // wakes the writer at once: the held leaderboard leaves with it
                            let _ = m.conn.send(encode(m.codec, &env), FrameClass::Reliable);
                            waiting.sent(base + k);
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(room = %code, q, error = %e, "cannot fetch personal results");
                    }
                    Err(_) => return,
                }
                base += chunk.len();
                waiting.release_to(base);
            }
        });
    }

    /// Brings one member up to the room's latest seq from the room log, or with a snapshot.
    fn catch_up(self: &Rc<Self>, code: Arc<str>, conn_id: u64) {
        {
            let mut rooms = self.rooms.borrow_mut();
            let Some(m) = rooms
                .get_mut(&code)
                .and_then(|r| r.members.get_mut(conn_id))
            else {
                return;
            };
            if m.syncing {
                return;
            }
            m.syncing = true;
        }
        let this = self.clone();
        monoio::spawn(async move {
            loop {
                let Some((from, player, codec, sealed)) = this.member(&code, conn_id, |m| {
                    (m.last_seq, m.player.clone(), m.codec, m.sealed)
                }) else {
                    return;
                };
                let key = ringside_protocol::keys::room_log(&code);
                let res = this
                    .hub
                    .call(move |_, mut redis| async move {
                        let r: redis::RedisResult<super::hub::StreamEntries> = redis::cmd("XRANGE")
                            .arg(&key)
                            .arg(format!("{}-0", from + 1))
                            .arg("+")
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut redis)
                            .await;
                        r
                    })
                    .await;
                let entries = match res {
                    Ok(Ok(e)) => e,
                    Ok(Err(e)) => {
                        tracing::warn!(room = %code, error = %e, "catch-up read failed; will retry on the next event");
                        break;
                    }
                    Err(_) => return,
                };
                let first = entries.first().and_then(|(id, _)| seq_of(id));
                // the leaderboards in the replay: their personal results follow, as after a live one
                let mut boards = Vec::new();
                let missed = if first.is_some_and(|s| s != from + 1) {
                    Missed::Gap
                } else {
                    let Some((conn, frames, show)) = this.member(&code, conn_id, |m| {
                        let mut show = None;
                        let frames = entries
                            .iter()
                            .filter_map(|(id, fields)| {
                                let seq = seq_of(id).filter(|s| *s > m.last_seq)?;
                                let (_, json) = fields.iter().find(|(k, _)| k == "e")?;
                                let f =
                                    super::hub::room_frame(code.clone(), json.as_bytes()).ok()?;
                                show = show_mark(&f).or(show);
                                if let ServerEvent::Leaderboard(l) = &f.event {
                                    boards.push(l.q_index);
                                }
                                Some((seq, f.frame(m.codec).clone(), class_of(&f.event)))
                            })
                            .collect();
                        (m.conn.clone(), frames, show)
                    }) else {
                        return;
                    };
                    Missed::Events { conn, frames, show }
                };
                match this
                    .replay_or_snapshot(&code, player.as_ref(), missed, 0, codec, sealed)
                    .await
                {
                    Ok(CaughtUp::Replayed { last_seq }) => {
                        if let (Some(seq), Some(mut m)) =
                            (last_seq, this.member_mut(&code, conn_id))
                        {
                            m.last_seq = seq;
                        }
                        this.results_after_replay(&code, conn_id, player.as_ref(), boards);
                    }
                    Ok(CaughtUp::Snapshot(state)) => {
                        let mut rooms = this.rooms.borrow_mut();
                        let Some(m) = rooms
                            .get_mut(&code)
                            .and_then(|r| r.members.get_mut(conn_id))
                        else {
                            break;
                        };
                        m.last_seq = m.last_seq.max(state.seq);
                        let env = Envelope::new(ServerEvent::ReconnectState(state));
                        let _ = m.conn.send(encode(m.codec, &env), FrameClass::Reliable);
                    }
                    Err(_) => break,
                }
                let done = this.rooms.borrow().get(&code).is_none_or(|r| {
                    r.members
                        .get(conn_id)
                        .is_none_or(|m| m.last_seq >= r.last_seq)
                        || entries.is_empty()
                });
                if done {
                    break;
                }
            }
            if let Some(m) = this
                .rooms
                .borrow_mut()
                .get_mut(&code)
                .and_then(|r| r.members.get_mut(conn_id))
            {
                m.syncing = false;
            }
        });
    }

    /// The one home of "replay the missed events or send a snapshot" (a reconnect's missed events, a
    /// member's catch-up from the room log): the missed events as they were published when they fit
    /// the socket's bounded send queue with `reserve` more frames after them — else, and when the gap is
    /// older than the room log, a `reconnect:state` snapshot of the room (for `player`, or the host),
    /// which the caller sends. Replayed frames are written here, before this returns.
    ///
    /// Why not always replay: events that fill most of the send queue at once would close the socket
    /// with 4008 before the client could read them, and again on every retry.
    pub async fn replay_or_snapshot(
        &self,
        code: &Arc<str>,
        player: Option<&Rc<str>>,
        missed: Missed,
        reserve: usize,
        codec: Codec,
        sealed: bool,
    ) -> Result<CaughtUp, CallError> {
        if let Missed::Events {
            conn,
            mut frames,
            show,
        } = missed
        {
            self.gate_replay(code, &mut frames, show, codec, sealed)
                .await;
            let bytes = frames.iter().map(|(_, b, _)| b.len()).sum();
            if conn.has_room_for(frames.len() + reserve, bytes) {
                let last_seq = frames.last().map(|(seq, _, _)| *seq);
                for (_, frame, class) in frames {
                    let _ = conn.send(frame, class);
                }
                return Ok(CaughtUp::Replayed { last_seq });
            }
        }
        let c = code.to_string();
        let pid = player.map(|p| p.to_string());
        let mut state = self
            .hub
            .game(move |game| async move { game.snapshot(&c, pid.as_deref()).await })
            .await?;
        self.gate_snapshot(code, &mut state, sealed).await;
        Ok(CaughtUp::Snapshot(state))
    }

    fn member_mut(&self, code: &Arc<str>, conn_id: u64) -> Option<std::cell::RefMut<'_, Member>> {
        std::cell::RefMut::filter_map(self.rooms.borrow_mut(), |rooms| {
            rooms.get_mut(code).and_then(|r| r.members.get_mut(conn_id))
        })
        .ok()
    }

    fn member<T>(&self, code: &Arc<str>, conn_id: u64, f: impl FnOnce(&Member) -> T) -> Option<T> {
        self.rooms
            .borrow()
            .get(code)
            .and_then(|r| r.members.get(conn_id))
            .map(f)
    }
}

/// How many `--leaderboard-hold-ms` a player's leaderboard may wait in all for the results calls before
/// theirs and their own (500 ms at the default 50: a room of ~60,000 players at one edge, at ~8 ms a call).
const RESULTS_HOLD_CALLS: u32 = 10;

/// The sockets whose leaderboard waits in their queue for their result ([`Rooms::deliver_results`]),
/// in the order of the players' results. Every one is released — its writer woken — once its result is
/// sent or cannot come, when a call outlasts the hold, or when this is dropped (the fetch ended early),
/// so none keeps its leaderboard past `--leaderboard-hold-ms` beyond the calls before its own, nor
/// past [`RESULTS_HOLD_CALLS`] holds in all.
struct HeldBoards {
    conns: Vec<Option<ConnHandle>>,
    /// `conns[..released]` are released.
    released: usize,
}

impl HeldBoards {
    fn new(conns: Vec<Option<ConnHandle>>) -> Self {
        HeldBoards { conns, released: 0 }
    }

    /// Player `i`'s result went out with a wake: nothing left to release.
    fn sent(&mut self, i: usize) {
        if let Some(c) = self.conns.get_mut(i) {
            *c = None;
        }
    }

    /// Releases the players before `end`.
    fn release_to(&mut self, end: usize) {
        let end = end.min(self.conns.len());
        for c in self.conns[self.released.min(end)..end].iter_mut() {
            if let Some(c) = c.take() {
                c.release();
            }
        }
        self.released = self.released.max(end);
    }

    /// `call`'s output; past `until` every held leaderboard is released first (their results
    /// follow on their own).
    async fn bounded<F: std::future::Future>(
        &mut self,
        call: F,
        until: std::time::Instant,
    ) -> F::Output {
        if self.released >= self.conns.len() {
            return call.await;
        }
        let mut call = std::pin::pin!(call);
        monoio::select! {
            out = &mut call => return out,
            _ = monoio::time::sleep_until(until.into()) => {}
        }
        self.release_to(self.conns.len());
        call.await
    }
}

impl Drop for HeldBoards {
    fn drop(&mut self) {
        self.release_to(self.conns.len());
    }
}

fn seq_of(stream_id: &str) -> Option<u64> {
    stream_id.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member is 40 B in the room's table (game/members.rs sizes its chunks and perf/vs-peers.md its
    /// bytes per socket on that): the socket, the player id, `last_seq`, the codec and two flags.
    #[test]
    fn a_member_takes_40_bytes() {
        assert_eq!(std::mem::size_of::<Member>(), 40);
    }
}
