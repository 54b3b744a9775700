//! `game:answer:submit`: only a player of the room, with an `answerHash` that verifies against the
//! player's answer secret, reaches `answer_submit` (with the other answers of its room that reached the
//! Redis thread together: `answer_batch`, [`crate::game::answers`]); whether it counts is Redis's decision.

use super::{Applied, Cx, Error, Seat};
use crate::metrics::{ANSWER_STAGES, GAME};
use ringside_protocol::auth::verify_answer_hash;
use ringside_protocol::events::{AnswerSubmit, ServerEvent};
use ringside_protocol::ErrorCode;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// `game:answer:submit` → `answer_submit`; the reply is `game:answer:ack`.
pub fn submit(
    cx: &Cx,
    a: AnswerSubmit,
) -> Applied<impl Future<Output = Result<ServerEvent, Error>>> {
    let Seat { code, id, secret } = cx.player_of(&a.game_code)?;
    if !secret
        .with_str(|k| verify_answer_hash(k, &code, &id, a.q_index, a.answer_idx, &a.answer_hash))
    {
        return Err(Error::refused(
            ErrorCode::BadHash,
            "answerHash does not verify",
        ));
    }
    let hub = cx.rooms.hub.clone();
    let batcher = hub.answers();
    let in_flight = InFlight::new(cx.st.clone());
    Ok(async move {
        let _in_flight = in_flight;
        let pid = id.to_string();
        let handed = Instant::now();
        let (ack, replied) = hub
            .answer(code.clone(), move |game| async move {
                ANSWER_STAGES.to_redis_thread.record(handed.elapsed());
                // with the other answers of the room that reached the Redis thread in this turn
                let ack = batcher
                    .submit(game, code, pid, a.q_index, a.answer_idx)
                    .await?;
                Ok((ack, Instant::now()))
            })
            .await?;
        ANSWER_STAGES.to_worker.record(replied.elapsed());
        GAME.answers_total.fetch_add(1, Relaxed);
        Ok(ServerEvent::AnswerAck(ack))
    })
}

/// Counts an answer in the socket's `answers_in_flight` while its call runs (the close's away report
/// waits for it: state.rs).
struct InFlight(std::rc::Rc<std::cell::RefCell<crate::game::state::State>>);

impl InFlight {
    fn new(st: std::rc::Rc<std::cell::RefCell<crate::game::state::State>>) -> InFlight {
        st.borrow_mut().answers_in_flight += 1;
        InFlight(st)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.borrow_mut();
        st.answers_in_flight = st.answers_in_flight.saturating_sub(1);
    }
}
