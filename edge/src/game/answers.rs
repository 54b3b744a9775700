//! The answers of one room that reach this process together go to Redis in one `answer_batch` call
//! (issue 16 #4): the call's fixed cost in Redis (the `FCALL`, the room's fields, the clock) is paid
//! once per batch instead of once per answer.
//!
//! Group commit, per room: on the Redis thread an answer joins its room's pending list. When the room
//! has fewer than `calls_in_flight` calls on their way (`--answer-calls-in-flight`, default 1), a call
//! starts: it yields once (every answer already queued on the thread in this turn joins), then sends the
//! whole list — one `answer_submit` for one answer, else `answer_batch` calls of at most
//! [`ANSWER_BATCH_MAX`] answers, in arrival order (pipelined calls when more are pending). Answers that
//! arrive while the room's list is on its way wait for the next one, which leaves when the calls have
//! returned and at least `call_gap` (`--answer-call-gap-ms`, default 1 ms) has passed since they left.
//! So an answer in a quiet room leaves at once; one in a busy room waits about a gap (tokio's timer
//! rounds up to whole ms) or the previous call's round trip if that is longer — at most
//! [`STALLED_CALL`] (250 ms): a list on its way longer than that (a Redis that hangs) no longer holds the
//! room's next answers back, they start a slot of their own. A room costs each edge process one
//! list per gap however fast its answers come (one call up to 256 answers): Redis pays the
//! call's fixed cost (the `FCALL`, the room's fields, the clock, and the read and write of a request on
//! its socket) once per batch — the burst of a big room is recorded at `answer_batch`'s cost per answer,
//! not `answer_submit`'s (perf/lua.md). `calls_in_flight` 0: no limit and no gap, every turn's list
//! leaves at once (pipelined; the behaviour before).
//!
//! Order: an answer may wait up to the above while the same edge's other calls for the room (a host's
//! `next`, the player's own `room:leave`) go at once, so such a call sent within that time after an answer
//! can reach Redis first (the answer then gets the refusal of the new state) — a race the network's own
//! jitter makes anyway. The edge's Redis latency metric (`ringside_edge_redis_latency_ms`, which admission
//! control reads) includes an answer's wait here.
//!
//! Each answer gets exactly its own reply (the ack or refusal `answer_submit` would have given it at
//! that point); durability (`WAIT`, [`super::durable`]) follows per answer after its reply, outside the
//! room's calls. Batch sizes are counted in the `ringside_edge_answer_batch_size` histogram (a call of
//! one answer is a batch of 1).

use crate::metrics::{ANSWER_BATCH, ANSWER_STAGES};
use ringside_lua::game::{BatchedAnswer, ANSWER_BATCH_MAX};
use ringside_lua::{Game, GameError};
use ringside_protocol::events::AnswerAck;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<AnswerAck, GameError>>;

struct Pending {
    player_id: String,
    q_index: u32,
    answer_idx: u32,
    reply: Reply,
    /// When it joined its room's list (`ringside_edge_answer_stage_seconds`, `batch_wait`).
    queued: Instant,
}

/// One room's answers on this Redis thread: those waiting for a call, and the slots sending them.
#[derive(Default)]
struct Room {
    pending: Vec<Pending>,
    /// Slots held: flush tasks started and not yet ended (each sends one list at a time, as one call,
    /// or as pipelined calls of at most [`ANSWER_BATCH_MAX`] when more are pending).
    calls: usize,
    /// Since when a slot's list has been on its way (None: no list on its way).
    sending_since: Option<Instant>,
}

/// A room's list on its way longer than this no longer holds up the room's next answers: they start
/// a slot of their own despite `calls_in_flight`, so a call that hangs (Redis stopped, a partition: up
/// to the connection's response timeout) costs the answers behind it at most this much more.
pub const STALLED_CALL: Duration = Duration::from_millis(250);

type Rooms = Arc<Mutex<HashMap<Arc<str>, Room>>>;

/// The pending answers per room, on the Redis thread. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    rooms: Rooms,
    /// Calls of one room on their way at once; 0: no limit.
    calls_in_flight: usize,
    /// The least time between two calls of one room's slot.
    call_gap: Duration,
}

impl Default for Batcher {
    fn default() -> Batcher {
        Batcher::new(1, Duration::from_millis(1))
    }
}

impl Batcher {
    /// `calls_in_flight`: how many calls of one room may be on their way at once (0: no limit, and no
    /// gap); `call_gap`: the least time from one call of a slot to its next.
    pub fn new(calls_in_flight: usize, call_gap: Duration) -> Batcher {
        Batcher {
            rooms: Rooms::default(),
            calls_in_flight,
            call_gap,
        }
    }

    /// Records one answer through the next call of its room; call it on the Redis thread (inside a
    /// hub job). Resolves with this answer's own reply.
    pub async fn submit(
        &self,
        game: Game,
        code: Arc<str>,
        player_id: String,
        q_index: u32,
        answer_idx: u32,
    ) -> Result<AnswerAck, GameError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut rooms = lock(&self.rooms);
            let room = rooms.entry(code.clone()).or_default();
            room.pending.push(Pending {
                player_id,
                q_index,
                answer_idx,
                reply: tx,
                queued: Instant::now(),
            });
            // a call that has not yet taken its list will take this answer too
            let waiting = room.pending.len() > 1;
            let stalled = room
                .sending_since
                .is_some_and(|t| t.elapsed() > STALLED_CALL);
            let room_for_one =
                self.calls_in_flight == 0 || room.calls < self.calls_in_flight || stalled;
            let start = !waiting && room_for_one;
            if start {
                room.calls += 1;
            }
            start
        };
        if start {
            // held from here: given back if the task is dropped, even before its first poll
            let slot = Slot {
                rooms: self.rooms.clone(),
                code: code.clone(),
                held: true,
            };
            tokio::spawn(self.clone().flush(game, code, slot));
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(dropped()),
        }
    }

    /// One call slot of room `code`: once the answers queued in this turn joined, sends the pending
    /// list and, when its calls return, the list that gathered meanwhile, until none is left.
    async fn flush(self, game: Game, code: Arc<str>, mut slot: Slot) {
        tokio::task::yield_now().await;
        loop {
            let mut list = {
                let mut rooms = lock(&self.rooms);
                let room = rooms.entry(code.clone()).or_default();
                if room.pending.is_empty() {
                    // under the same lock as the check: an answer queued after it starts a call
                    slot.give_back(&mut rooms);
                    return;
                }
                room.sending_since = Some(Instant::now());
                std::mem::take(&mut room.pending)
            };
            let started = tokio::time::Instant::now();
            let mut calls = Vec::new();
            while !list.is_empty() {
                let rest = list.split_off(list.len().min(ANSWER_BATCH_MAX));
                let chunk = std::mem::replace(&mut list, rest);
                ANSWER_BATCH.record(chunk.len() as u64);
                // one task per call: spawned in order, so sent in order, and pipelined
                calls.push(tokio::spawn(send(game.clone(), code.clone(), chunk)));
            }
            for call in calls {
                let _ = call.await;
            }
            if let Some(room) = lock(&self.rooms).get_mut(&code) {
                room.sending_since = None;
            }
            if self.calls_in_flight == 0 {
                // no limit: the answers that came meanwhile started calls of their own
                let mut rooms = lock(&self.rooms);
                slot.give_back(&mut rooms);
                return;
            }
            if !self.call_gap.is_zero() {
                tokio::time::sleep_until(started + self.call_gap).await;
            }
        }
    }
}

/// A room's call slot while a [`Batcher::flush`] holds it.
struct Slot {
    rooms: Rooms,
    code: Arc<str>,
    held: bool,
}

impl Slot {
    /// Gives the slot back; the room's entry goes with its last call (nothing is pending then: every
    /// pending answer has a call that will take it).
    fn give_back(&mut self, rooms: &mut HashMap<Arc<str>, Room>) {
        if !std::mem::take(&mut self.held) {
            return;
        }
        if let Some(room) = rooms.get_mut(&self.code) {
            room.calls = room.calls.saturating_sub(1);
            if room.calls == 0 {
                // after a dropped flush answers may be pending with no call left: dropping their
                // replies answers them with `dropped` instead of leaving them waiting forever
                rooms.remove(&self.code);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            let rooms = self.rooms.clone();
            self.give_back(&mut lock(&rooms));
        }
    }
}

fn lock(rooms: &Rooms) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Room>> {
    rooms.lock().unwrap_or_else(|p| p.into_inner())
}

/// One call for `chunk` (1..=ANSWER_BATCH_MAX answers of room `code`), each answer's reply to its sender.
async fn send(game: Game, code: Arc<str>, chunk: Vec<Pending>) {
    let sent = Instant::now();
    for p in &chunk {
        ANSWER_STAGES.batch_wait.record(sent - p.queued);
    }
    // the call's round trip, once per answer it carried
    let returned = |n: usize| ANSWER_STAGES.redis_call.record_n(sent.elapsed(), n as u64);
    if let [one] = chunk.as_slice() {
        let r = game
            .answer_submit(&code, &one.player_id, one.q_index, one.answer_idx)
            .await;
        returned(1);
        if let Some(p) = chunk.into_iter().next() {
            let _ = p.reply.send(r);
        }
        return;
    }
    let batch: Vec<BatchedAnswer> = chunk
        .iter()
        .map(|p| BatchedAnswer {
            player_id: &p.player_id,
            q_index: p.q_index,
            answer_idx: p.answer_idx,
        })
        .collect();
    let r = game.answer_batch(&code, &batch).await;
    returned(chunk.len());
    match r {
        Ok(replies) => {
            for (p, r) in chunk.into_iter().zip(replies) {
                let _ = p.reply.send(r);
            }
        }
        Err(e) => {
            for p in chunk {
                let _ = p.reply.send(Err(copy(&e)));
            }
        }
    }
}

/// The call's failure, for each answer of the batch.
fn copy(e: &GameError) -> GameError {
    match e {
        GameError::Refused { code, detail } => GameError::Refused {
            code: *code,
            detail: detail.clone(),
        },
        GameError::Redis(r) => GameError::Redis(r.clone()),
        GameError::BadReply { function, detail } => GameError::BadReply {
            function,
            detail: detail.clone(),
        },
        other => GameError::BadReply {
            function: "answer_batch",
            detail: other.to_string(),
        },
    }
}

fn dropped() -> GameError {
    GameError::Redis(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the answer's batch was dropped",
    )))
}
