//! The answers of one room that reach this process together go to Redis in one `answer_batch` call
//! (issue 16 #4): the call's fixed cost in Redis (the `FCALL`, the room's fields, the clock) is paid
//! once per batch instead of once per answer.
//!
//! On the Redis thread, an answer joins its room's pending list; the first one of a list spawns the
//! flush, which yields once (every answer already queued on the thread in this turn joins) and then
//! sends the list — one `answer_submit` when it holds one answer, else `answer_batch` calls of at most
//! [`ANSWER_BATCH_MAX`] answers, in arrival order. Answers arriving while a batch is in flight start the
//! next one: batches of a room are pipelined like any calls, never waiting on each other. Each answer
//! gets exactly its own reply (the ack or refusal `answer_submit` would have given it at that point);
//! durability (`WAIT`, [`super::durable`]) follows per answer after its reply, as before.
//!
//! Batch sizes are counted in the `ringside_edge_answer_batch_size` histogram (a call of one answer is
//! a batch of 1).

use crate::metrics::ANSWER_BATCH;
use ringside_lua::game::{BatchedAnswer, ANSWER_BATCH_MAX};
use ringside_lua::{Game, GameError};
use ringside_protocol::events::AnswerAck;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<AnswerAck, GameError>>;

struct Pending {
    player_id: String,
    q_index: u32,
    answer_idx: u32,
    reply: Reply,
}

/// The pending answers per room, on the Redis thread. Cheap to clone.
#[derive(Clone, Default)]
pub struct Batcher {
    rooms: Arc<Mutex<HashMap<Arc<str>, Vec<Pending>>>>,
}

impl Batcher {
    pub fn new() -> Batcher {
        Batcher::default()
    }

    /// Records one answer through the next batch of its room; call it on the Redis thread (inside a
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
        let first = {
            let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            let list = rooms.entry(code.clone()).or_default();
            list.push(Pending {
                player_id,
                q_index,
                answer_idx,
                reply: tx,
            });
            list.len() == 1
        };
        if first {
            tokio::spawn(self.clone().flush(game, code));
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(dropped()),
        }
    }

    /// Sends the room's pending answers once the answers queued in this turn of the thread joined.
    async fn flush(self, game: Game, code: Arc<str>) {
        tokio::task::yield_now().await;
        let mut list = {
            let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.remove(&code).unwrap_or_default()
        };
        while !list.is_empty() {
            let rest = list.split_off(list.len().min(ANSWER_BATCH_MAX));
            let chunk = std::mem::replace(&mut list, rest);
            ANSWER_BATCH.record(chunk.len() as u64);
            // one task per call: spawned in order, so sent in order, and pipelined
            tokio::spawn(send(game.clone(), code.clone(), chunk));
        }
    }
}

/// One call for `chunk` (1..=ANSWER_BATCH_MAX answers of room `code`), each answer's reply to its sender.
async fn send(game: Game, code: Arc<str>, chunk: Vec<Pending>) {
    if let [one] = chunk.as_slice() {
        let r = game
            .answer_submit(&code, &one.player_id, one.q_index, one.answer_idx)
            .await;
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
    match game.answer_batch(&code, &batch).await {
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
