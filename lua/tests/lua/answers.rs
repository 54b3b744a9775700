//! Answers: exactly one stored answer per player and question under concurrency, late, past and
//! future answers refused with their codes, the answer rate limit and its kick, and the pace of the
//! progress broadcast.

use crate::common::*;
use ringside_lua::game::BatchedAnswer;
use ringside_lua::{GameError, TimerKind};
use ringside_protocol::events::AnswerAck;
use ringside_protocol::events::ServerEvent;
use ringside_protocol::{Codec, Envelope, ErrorCode};
use ringside_testkit::Backend;
use std::collections::HashMap;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

on_both_backends!(
    two_hundred_concurrent_submissions_store_exactly_one_answer,
    late_past_and_future_answers_are_refused_with_their_codes,
    the_third_answer_event_is_rate_limited_and_five_violations_kick,
    resending_the_recorded_answer_is_already_answered_and_never_a_violation,
    a_resend_after_the_question_closed_or_the_next_opened_is_already_answered,
    progress_is_published_once_per_second_slot_changed_or_not,
    the_early_reveal_leaves_the_scoring_to_a_score_fire,
    a_batch_replies_to_each_answer_what_answer_submit_would_one_by_one,
    a_batch_acks_its_accepted_answers_with_one_server_time_and_counts_them,
    a_malformed_batch_is_refused_whole_and_writes_nothing,
    a_batch_of_mostly_resends_reads_each_players_fields_once,
    a_lone_answer_takes_the_fast_path_through_every_transition_of_a_question,
    after_an_older_librarys_transitions_answers_to_the_stale_question_are_refused,
    a_small_rooms_answers_and_players_are_hash_tables_and_the_pad_is_no_player,
    a_members_secret_in_the_room_hash_is_the_fast_paths_membership_and_older_joiners_still_answer,
);

/// (player index or None for a stranger, qIndex, answerIdx) — a sequence with every kind of answer: two
/// accepted, a resend of the recorded option, a second answer, a stranger, another question, an option
/// out of range, a rate-limited third event, then the answers that make everyone answered (the early
/// reveal in the middle of the batch) and answers after it.
const MIXED: [(Option<usize>, u32, u32); 16] = [
    (Some(0), 0, 1),
    (Some(1), 0, 0),
    (Some(0), 0, 1),
    (Some(0), 0, 2),
    (None, 0, 0),
    (Some(2), 1, 0),
    (Some(3), 0, 9),
    (Some(3), 0, 3),
    (Some(2), 0, 2),
    (Some(0), 0, 0),
    (Some(4), 0, 1),
    (Some(4), 0, 1),
    (Some(5), 0, 1),
    (Some(1), 0, 2),
    (Some(4), 0, 3),
    (Some(2), 0, 1),
];

/// What one answer got: the ack's qIndex, or the refusal's code.
fn outcome(r: &Result<AnswerAck, GameError>) -> Result<u32, ErrorCode> {
    match r {
        Ok(a) => Ok(a.q_index),
        Err(e) => Err(e.code()),
    }
}

/// What a room kept of question 0: each player's stored option, n and the per-option counters.
async fn question_state(env: &Env, code: &str, ids: &[String]) -> Vec<Option<String>> {
    let mut out = vec![hget(env, code, "", "state").await];
    for f in ["n", "d0", "d1", "d2", "d3"] {
        out.push(hget(env, code, ":q:0", f).await);
    }
    for id in ids {
        let a = hget(env, code, ":q:0", &format!("a:{id}")).await;
        out.push(a.map(|v| v.split(':').next().unwrap().to_string()));
    }
    out
}

/// `answer_batch` is answer_submit called once per answer in order: the same ack or refusal for each
/// (including the early reveal when the last player answers, and late_answer after it), and the same
/// stored answers and counters, against a twin room answered one call at a time.
async fn a_batch_replies_to_each_answer_what_answer_submit_would_one_by_one(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("batch"), 2, 60_000);
    let mut rooms = Vec::new();
    for _ in 0..2 {
        let created = room(&env, &q, &settings()).await;
        let code = created.game_code.clone();
        let ids = join_ids(&env, &code, 6).await;
        open_first_question(&env, &code, &created.host_token).await;
        rooms.push((code, ids));
    }
    let pid = |ids: &[String], who: Option<usize>| match who {
        Some(i) => ids[i].clone(),
        None => "stranger_0123456789".to_string(),
    };
    // room 0: one answer_submit per answer
    let (code, ids) = &rooms[0];
    let mut one_by_one = Vec::new();
    for (who, qi, ai) in MIXED {
        let r = env.game.answer_submit(code, &pid(ids, who), qi, ai).await;
        one_by_one.push(outcome(&r));
    }
    // room 1: all of them in one answer_batch
    let (code_b, ids_b) = &rooms[1];
    let owned: Vec<String> = MIXED.iter().map(|(w, _, _)| pid(ids_b, *w)).collect();
    let batch: Vec<BatchedAnswer> = MIXED
        .iter()
        .zip(&owned)
        .map(|((_, qi, ai), p)| BatchedAnswer {
            player_id: p,
            q_index: *qi,
            answer_idx: *ai,
        })
        .collect();
    let replies = env.game.answer_batch(code_b, &batch).await.expect("batch");
    let batched: Vec<_> = replies.iter().map(outcome).collect();
    assert_eq!(batched, one_by_one);
    // the sequence exercises what it says: acks, the refusals, the reveal at the last player
    assert_eq!(batched[0], Ok(0));
    assert_eq!(batched[2], Err(ErrorCode::AlreadyAnswered));
    assert_eq!(batched[4], Err(ErrorCode::Unauthorized));
    assert_eq!(batched[5], Err(ErrorCode::WrongQuestion));
    assert_eq!(batched[6], Err(ErrorCode::BadPayload));
    assert_eq!(batched[9], Err(ErrorCode::RateLimited));
    assert_eq!(batched[12], Ok(0));
    assert_eq!(batched[13], Err(ErrorCode::LateAnswer));
    assert_eq!(
        question_state(&env, code, ids).await,
        question_state(&env, code_b, ids_b).await
    );
    assert_eq!(
        hget(&env, code_b, "", "state").await.as_deref(),
        Some("REVEAL")
    );
    let reveals = log(&env, code_b)
        .await
        .into_iter()
        .filter(|(_, _, e)| matches!(e, ServerEvent::QuestionReveal(_)))
        .count();
    assert_eq!(reveals, 1);
}

/// The answers a batch accepts share one serverTime (one TIME per batch) and are each stored once and
/// counted once; a player twice in one batch is acked once.
async fn a_batch_acks_its_accepted_answers_with_one_server_time_and_counts_them(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("batch-time"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let ids = join_ids(&env, &code, 41).await; // one never answers: no early reveal
    open_first_question(&env, &code, &created.host_token).await;
    let mut batch: Vec<BatchedAnswer> = ids[..40]
        .iter()
        .enumerate()
        .map(|(i, id)| BatchedAnswer {
            player_id: id,
            q_index: 0,
            answer_idx: (i % 4) as u32,
        })
        .collect();
    batch.push(BatchedAnswer {
        player_id: &ids[7],
        q_index: 0,
        answer_idx: 0,
    });
    let replies = env.game.answer_batch(&code, &batch).await.expect("batch");
    assert_eq!(replies.len(), 41);
    let acks: Vec<&AnswerAck> = replies[..40]
        .iter()
        .map(|r| r.as_ref().expect("ack"))
        .collect();
    assert!(acks.iter().all(|a| a.received && a.q_index == 0));
    assert!(acks.iter().all(|a| a.server_time == acks[0].server_time));
    assert_eq!(
        replies[40].as_ref().map_err(|e| e.code()).err(),
        Some(ErrorCode::AlreadyAnswered)
    );
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("40"));
    for d in 0..4 {
        assert_eq!(
            hget(&env, &code, ":q:0", &format!("d{d}")).await.as_deref(),
            Some("10")
        );
    }
    assert_eq!(
        answered_at(&env, &code, 0, &ids[0]).await,
        acks[0].server_time
    );
    assert_eq!(
        hget(&env, &code, "", "state").await.as_deref(),
        Some("ACTIVE")
    );
}

/// An empty batch, one past ANSWER_BATCH_MAX or not whole triples: refused whole, nothing stored.
async fn a_malformed_batch_is_refused_whole_and_writes_nothing(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("batch-bad"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 2).await;
    open_first_question(&env, &code, &created.host_token).await;
    assert_eq!(
        refusal(env.game.answer_batch(&code, &[]).await),
        ErrorCode::BadPayload
    );
    let one = BatchedAnswer {
        player_id: &players[0].player_id,
        q_index: 0,
        answer_idx: 1,
    };
    let too_many = vec![one; ringside_lua::game::ANSWER_BATCH_MAX + 1];
    assert_eq!(
        refusal(env.game.answer_batch(&code, &too_many).await),
        ErrorCode::BadPayload
    );
    // not whole triples (only a raw FCALL can send that)
    let mut conn = env.conn.clone();
    let err = ringside_lua::game::fcall_cmd(
        ringside_lua::Function::AnswerBatch,
        &code,
        &[players[0].player_id.as_str(), "0"],
    )
    .query_async::<redis::Value>(&mut conn)
    .await
    .expect_err("two arguments");
    assert_eq!(err.code(), Some("bad_payload"));
    let a = format!("a:{}", players[0].player_id);
    assert_eq!(hget(&env, &code, ":q:0", &a).await, None);
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("0"));
}

async fn two_hundred_concurrent_submissions_store_exactly_one_answer(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("race"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 2).await; // the second one keeps the question open
    open_first_question(&env, &code, &created.host_token).await;
    let id = players[0].player_id.clone();
    let mut set = JoinSet::new();
    for k in 0..200u32 {
        let (game, code, id) = (env.game.clone(), code.clone(), id.clone());
        set.spawn(async move { game.answer_submit(&code, &id, 0, k % 4).await });
    }
    let mut ok = 0;
    let mut codes: HashMap<ErrorCode, u32> = HashMap::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => *codes.entry(e.code()).or_default() += 1,
        }
    }
    assert_eq!(ok, 1, "{codes:?}");
    for c in codes.keys() {
        assert!(
            matches!(
                c,
                ErrorCode::AlreadyAnswered
                    | ErrorCode::RateLimited
                    | ErrorCode::Kicked
                    | ErrorCode::LateAnswer
            ),
            "{codes:?}"
        );
    }
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("1"));
    // it hammered the limit: auto-kicked, and the question is revealed with exactly one answer
    if hget(&env, &code, "", "state").await.as_deref() == Some("ACTIVE") {
        env.game
            .skip(&code, &created.host_token, None)
            .await
            .unwrap();
    }
    let reveal = last(&env, &code, |e| match e {
        ServerEvent::QuestionReveal(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reveal.answered_count, 1);
    assert_eq!(reveal.distribution.iter().sum::<u32>(), 1);
}

async fn late_past_and_future_answers_are_refused_with_their_codes(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("late"), 2, 1000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 3).await;
    let (a, b, c) = (
        &players[0].player_id,
        &players[1].player_id,
        &players[2].player_id,
    );
    open_first_question(&env, &code, &created.host_token).await;
    // future question
    assert_eq!(
        refusal(env.game.answer_submit(&code, a, 1, 0).await),
        ErrorCode::WrongQuestion
    );
    assert_eq!(
        refusal(env.game.answer_submit(&code, a, 7, 0).await),
        ErrorCode::WrongQuestion
    );
    // out-of-range option
    assert_eq!(
        refusal(env.game.answer_submit(&code, c, 0, 6).await),
        ErrorCode::BadPayload
    );
    // after endsAt + 500 ms grace (the reveal timer has not been fired: the state is still ACTIVE)
    let show = last(&env, &code, |e| match e {
        ServerEvent::QuestionShow(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    wait_until_server_ms(&env, show.ends_at + 600).await;
    assert_eq!(
        hget(&env, &code, "", "state").await.as_deref(),
        Some("ACTIVE")
    );
    assert_eq!(
        refusal(env.game.answer_submit(&code, b, 0, 0).await),
        ErrorCode::LateAnswer
    );
    // after the reveal: still late for q0
    assert!(fire_latest(&env, &code, TimerKind::QuestionEnd).await.fired);
    assert_eq!(
        refusal(env.game.answer_submit(&code, b, 0, 0).await),
        ErrorCode::LateAnswer
    );
    // past question, once q1 is open
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    assert_eq!(
        refusal(env.game.answer_submit(&code, b, 0, 0).await),
        ErrorCode::WrongQuestion
    );
    env.game
        .answer_submit(&code, b, 1, 0)
        .await
        .expect("the open question still takes answers");
    // unknown players are unauthorized
    assert_eq!(
        refusal(env.game.answer_submit(&code, "nobody", 1, 0).await),
        ErrorCode::Unauthorized
    );
    // nothing was stored for the refused answers
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("0"));
}

/// An edge that acks only once a replica has the answer (`--answer-durability replica`) answers
/// `unavailable` when none confirmed in time, and the client resends the same answer: however often,
/// that is `already_answered` (the first answer stands), never an answer event, a violation or a kick;
/// another option is still counted.
async fn resending_the_recorded_answer_is_already_answered_and_never_a_violation(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("resend"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 2).await;
    let p = &players[0];
    open_first_question(&env, &code, &created.host_token).await;
    env.game
        .answer_submit(&code, &p.player_id, 0, 1)
        .await
        .expect("first answer");
    for _ in 0..8 {
        assert_eq!(
            refusal(env.game.answer_submit(&code, &p.player_id, 0, 1).await),
            ErrorCode::AlreadyAnswered
        );
    }
    assert_eq!(hget(&env, &code, ":viol", &p.player_id).await, None);
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("1"));
    // another option is a second answer event, then a violation
    assert_eq!(
        refusal(env.game.answer_submit(&code, &p.player_id, 0, 2).await),
        ErrorCode::AlreadyAnswered
    );
    assert_eq!(
        refusal(env.game.answer_submit(&code, &p.player_id, 0, 2).await),
        ErrorCode::RateLimited
    );
}

/// A player resending after `unavailable` whose answer was recorded meanwhile may resend after the
/// question closed (everyone else answered: the early reveal) or after the next one opened (seen in the
/// failover test): the resend of the recorded option is `already_answered` (the answer stands), not
/// `late_answer` or `wrong_question`, and never an answer event — so never a violation or a kick.
async fn a_resend_after_the_question_closed_or_the_next_opened_is_already_answered(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("resend-closed"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 2).await;
    let (a, b) = (&players[0].player_id, &players[1].player_id);
    open_first_question(&env, &code, &created.host_token).await;
    env.game
        .answer_submit(&code, a, 0, 1)
        .await
        .expect("a answers");
    env.game
        .answer_submit(&code, b, 0, 2)
        .await
        .expect("b answers: everyone answered");
    assert_eq!(
        hget(&env, &code, "", "state").await.as_deref(),
        Some("REVEAL")
    );
    for _ in 0..6 {
        assert_eq!(
            refusal(env.game.answer_submit(&code, a, 0, 1).await),
            ErrorCode::AlreadyAnswered
        );
    }
    // another option than the recorded one is late
    assert_eq!(
        refusal(env.game.answer_submit(&code, a, 0, 0).await),
        ErrorCode::LateAnswer
    );
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    for _ in 0..6 {
        assert_eq!(
            refusal(env.game.answer_submit(&code, b, 0, 2).await),
            ErrorCode::AlreadyAnswered
        );
    }
    assert_eq!(hget(&env, &code, ":viol", a).await, None);
    assert_eq!(hget(&env, &code, ":viol", b).await, None);
    assert_eq!(hget(&env, &code, ":q:1", &format!("r:{b}")).await, None);
    env.game
        .answer_submit(&code, b, 1, 0)
        .await
        .expect("the open question still takes b's answer");
}

async fn the_third_answer_event_is_rate_limited_and_five_violations_kick(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("rate"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 2).await;
    let p = &players[0];
    open_first_question(&env, &code, &created.host_token).await;
    env.game
        .answer_submit(&code, &p.player_id, 0, 1)
        .await
        .expect("first answer");
    assert_eq!(
        refusal(env.game.answer_submit(&code, &p.player_id, 0, 2).await),
        ErrorCode::AlreadyAnswered
    );
    for v in 1..=4 {
        assert_eq!(
            refusal(env.game.answer_submit(&code, &p.player_id, 0, 2).await),
            ErrorCode::RateLimited,
            "violation {v}"
        );
        assert_eq!(
            hget(&env, &code, ":viol", &p.player_id).await,
            Some(v.to_string())
        );
    }
    assert_eq!(
        refusal(env.game.answer_submit(&code, &p.player_id, 0, 2).await),
        ErrorCode::Kicked,
        "5th violation"
    );
    let left = last(&env, &code, |e| match e {
        ServerEvent::PlayerLeft(l) => Some(l.clone()),
        _ => None,
    })
    .await;
    assert_eq!(left.player_id, p.player_id);
    assert_eq!(left.reason, ringside_protocol::events::LeaveReason::Kick);
    assert_eq!(left.total_count, 1);
    // the first answer stood: recorded once
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("1"));
    // the session is barred everywhere
    assert_eq!(
        refusal(env.game.answer_submit(&code, &p.player_id, 0, 1).await),
        ErrorCode::Kicked
    );
    assert_eq!(
        refusal(
            env.game
                .reconnect(&code, &p.player_id, &p.session_token, None)
                .await
        ),
        ErrorCode::Kicked
    );
    assert_eq!(
        refusal(
            env.game
                .join(&code, "Again", 0, Some(&p.session_token))
                .await
        ),
        ErrorCode::Kicked
    );
}

async fn progress_is_published_once_per_second_slot_changed_or_not(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("progress"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 3).await;
    open_first_question(&env, &code, &created.host_token).await;
    let mut sub = subscribe(&env, &code);
    let tick = latest_timer(&env, &code, TimerKind::Progress).await;
    assert_eq!(tick.every, Some(1000));
    env.game
        .answer_submit(&code, &players[0].player_id, 0, 0)
        .await
        .unwrap();
    wait_until_server_ms(&env, tick.due).await;
    let first = env.game.fire(&tick).await.unwrap();
    assert!(first.fired && first.should_continue(), "{first:?}");
    let fired_at = server_ms(&env).await;
    let dup = env.game.fire(&tick).await.unwrap();
    assert!(!dup.fired && dup.should_continue(), "{dup:?}");
    // a later second, unchanged: published all the same (a host that reloads has the count within a
    // tick: a live tick is never replayed)
    wait_until_server_ms(&env, fired_at + 1000).await;
    let same = env.game.fire(&tick).await.unwrap();
    assert!(same.fired && same.should_continue(), "{same:?}");
    let same_at = server_ms(&env).await;
    env.game
        .answer_submit(&code, &players[1].player_id, 0, 1)
        .await
        .unwrap();
    wait_until_server_ms(&env, same_at + 1000).await;
    assert!(env.game.fire(&tick).await.unwrap().fired);
    // a live tick: published without a seq, and not in the room log (a reconnect never replays it)
    let published = tokio::task::block_in_place(|| drain(&mut sub));
    let progress: Vec<_> = published
        .iter()
        .map(|raw| {
            let env = Envelope::<ServerEvent>::decode(Codec::Json, &mut raw.clone().into_bytes())
                .unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(env.seq, None, "{raw}");
            match env.event {
                ServerEvent::AnswerProgress(p) => (p.answered_count, p.total_count),
                other => panic!("only progress was published: {other:?}"),
            }
        })
        .collect();
    assert_eq!(progress, [(1, 3), (1, 3), (2, 3)]);
    let logged = log(&env, &code).await;
    assert!(
        !logged
            .iter()
            .any(|(_, _, e)| matches!(e, ServerEvent::AnswerProgress(_))),
        "{logged:?}"
    );
    env.game
        .skip(&code, &created.host_token, None)
        .await
        .unwrap();
    let stop = env.game.fire(&tick).await.unwrap();
    assert!(!stop.should_continue());
}

/// The answer that completes the room reveals at once but scores nothing in its own call (its ack and the
/// calls queued behind it do not wait for the room's scoring): the reveal is logged, the leaderboard is
/// not, and a `score` entry due at once is written; the engine's fire of it scores the room and
/// publishes the leaderboard.
async fn the_early_reveal_leaves_the_scoring_to_a_score_fire(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("early"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 2).await;
    open_first_question(&env, &code, &created.host_token).await;
    for p in &players {
        env.game
            .answer_submit(&code, &p.player_id, 0, correct(0) as u32)
            .await
            .unwrap();
    }
    let kinds = |events: Vec<(u64, String, ServerEvent)>| -> (usize, usize) {
        let reveals = events
            .iter()
            .filter(|(_, _, e)| matches!(e, ServerEvent::QuestionReveal(_)))
            .count();
        let boards = events
            .iter()
            .filter(|(_, _, e)| matches!(e, ServerEvent::Leaderboard(_)))
            .count();
        (reveals, boards)
    };
    assert_eq!(
        kinds(log(&env, &code).await),
        (1, 0),
        "revealed, not scored"
    );
    assert_eq!(
        hget(&env, &code, "", "state").await.as_deref(),
        Some("REVEAL")
    );
    assert_eq!(hget(&env, &code, "", "sq").await.as_deref(), Some("0"));
    let score = latest_timer(&env, &code, TimerKind::Score).await;
    assert_eq!(score.q, 0);
    assert!(score.due <= server_ms(&env).await, "due at once: {score:?}");
    assert!(fire(&env, &score).await.fired);
    assert_eq!(kinds(log(&env, &code).await), (1, 1), "scored by the fire");
    assert_eq!(hget(&env, &code, "", "sq").await, None);
    let results = results_by_id(
        &env,
        &code,
        0,
        &players
            .iter()
            .map(|p| p.player_id.clone())
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(
        results.values().all(|r| r.correct && r.points > 0),
        "{results:?}"
    );
}

/// The commands the node of room `code` runs while `during` runs, as MONITOR lines that name the room's
/// key prefix (the functions' own calls included). On the cluster: the node of the room's slot.
async fn monitored<F: std::future::Future>(
    env: &Env,
    code: &str,
    during: F,
) -> (F::Output, Vec<String>) {
    let prefix = ringside_protocol::keys::room(code);
    let url = match env.backend {
        Backend::Standalone => env.urls[0].clone(),
        Backend::Cluster => node_of(env, &prefix),
    };
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let mut mon = BufReader::new(TcpStream::connect(&addr).await.expect("monitor connect"));
    mon.get_mut().write_all(b"MONITOR\r\n").await.unwrap();
    let mut line = String::new();
    mon.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim_end(), "+OK");
    let out = during.await;
    // a marker after the call: every line of the call comes before it
    let marker = format!("end-of-{code}");
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(format!("*2\r\n$4\r\nECHO\r\n${}\r\n{marker}\r\n", marker.len()).as_bytes())
        .await
        .unwrap();
    let mut lines = Vec::new();
    loop {
        line.clear();
        assert!(
            mon.read_line(&mut line).await.unwrap() > 0,
            "monitor closed"
        );
        if line.contains(&marker) {
            break;
        }
        if line.contains(&prefix) {
            lines.push(line.trim_end().to_string());
        }
    }
    (out, lines)
}

/// The number of fields `HMGET` read from keys of the room ending in one of `suffixes`, in MONITOR lines.
fn hmget_fields(lines: &[String], prefix: &str, suffixes: &[&str]) -> usize {
    lines
        .iter()
        .filter_map(|l| {
            let args: Vec<&str> = l.split('"').skip(1).step_by(2).collect();
            (args.len() >= 2
                && args[0].eq_ignore_ascii_case("HMGET")
                && suffixes.iter().any(|s| args[1] == format!("{prefix}{s}")))
            .then(|| args.len() - 2)
        })
        .sum()
}

/// The number of `m:<pid>` fields (membership) `HMGET` read from the room hash, in MONITOR lines.
fn hmget_member_fields(lines: &[String], prefix: &str) -> usize {
    lines
        .iter()
        .map(|l| {
            let args: Vec<&str> = l.split('"').skip(1).step_by(2).collect();
            if args.len() >= 2 && args[0].eq_ignore_ascii_case("HMGET") && args[1] == prefix {
                args[2..].iter().filter(|a| a.starts_with("m:")).count()
            } else {
                0
            }
        })
        .sum()
}

/// A batch whose answers are mostly resends (an edge resending after `unavailable`) takes each resend
/// through the checked path (already_answered) and still reads each player's answer and membership
/// fields once: linear in the batch (it read the rest of the batch again after every refusal before).
async fn a_batch_of_mostly_resends_reads_each_players_fields_once(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("batch-resend"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let ids = join_ids(&env, &code, 201).await; // one never answers: no early reveal
    open_first_question(&env, &code, &created.host_token).await;
    // 180 answers recorded; the batch resends them with 20 new ones among them
    for (i, id) in ids[..180].iter().enumerate() {
        env.game
            .answer_submit(&code, id, 0, (i % 4) as u32)
            .await
            .expect("answer");
    }
    let batch: Vec<BatchedAnswer> = (0..200)
        .map(|k| {
            // every tenth answer is new (players 180..200), the others resend 0..180
            let i = if k % 10 == 9 {
                180 + k / 10
            } else {
                k - (k + 1) / 10
            };
            BatchedAnswer {
                player_id: &ids[i],
                q_index: 0,
                answer_idx: (i % 4) as u32,
            }
        })
        .collect();
    let (replies, lines) = monitored(&env, &code, env.game.answer_batch(&code, &batch)).await;
    let replies = replies.expect("batch");
    for (k, r) in replies.iter().enumerate() {
        if k % 10 == 9 {
            assert!(r.is_ok(), "answer {k}: {r:?}");
        } else {
            assert_eq!(
                r.as_ref().map_err(|e| e.code()).err(),
                Some(ErrorCode::AlreadyAnswered),
                "answer {k}"
            );
        }
    }
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("200"));
    assert_eq!(
        hget(&env, &code, "", "state").await.as_deref(),
        Some("ACTIVE")
    );
    // per answer: its a:<pid> and membership once in the batch's reads, 2 fields (a:<pid>, r:<pid>) in
    // the checked path of a resend; the quadratic reading was ~100 per answer here
    let prefix = ringside_protocol::keys::room(&code);
    let members = hmget_member_fields(&lines, &prefix);
    assert_eq!(members, batch.len(), "each player's membership read once");
    let fields = hmget_fields(&lines, &prefix, &[":q:0", ":players"]) + members;
    assert!(
        fields <= 5 * batch.len(),
        "{fields} fields read for {} answers",
        batch.len()
    );
}

/// The lone `answer_submit` calls in MONITOR lines that went through the checked path: its read of the
/// room's real fields (`HMGET P state cur endsAt …`; the fast path reads `HMGET P qopen np aw gen`).
fn checked_path_reads(lines: &[String], prefix: &str) -> usize {
    lines
        .iter()
        .filter(|l| {
            let args: Vec<&str> = l.split('"').skip(1).step_by(2).collect();
            args.len() >= 3
                && args[0].eq_ignore_ascii_case("HMGET")
                && args[1] == prefix
                && args[2] == "state"
        })
        .count()
}

/// One accepted lone answer, monitored: how many times it took the checked path.
async fn checked_reads_of_an_answer(env: &Env, code: &str, pid: &str, q: u32) -> usize {
    let prefix = ringside_protocol::keys::room(code);
    let (ack, lines) = monitored(env, code, env.game.answer_submit(code, pid, q, 1)).await;
    assert_eq!(ack.expect("answer accepted").q_index, q);
    assert!(
        lines.iter().any(|l| l.contains("\"qopen\"")),
        "the answer read the room: {lines:?}"
    );
    checked_path_reads(&lines, &prefix)
}

/// Every transition of an open question (show, pause, extend while paused, resume, extend, the next
/// show) leaves `qopen` matching the room's `gen`: an ordinary answer after each takes the fast path,
/// never the checked one.
async fn a_lone_answer_takes_the_fast_path_through_every_transition_of_a_question(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("fast-path"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    // one player never answers: no early reveal
    let ids = join_ids(&env, &code, 7).await;
    open_first_question(&env, &code, &host).await;
    assert_eq!(checked_reads_of_an_answer(&env, &code, &ids[0], 0).await, 0);
    env.game.pause(&code, &host).await.unwrap();
    assert_eq!(checked_reads_of_an_answer(&env, &code, &ids[1], 0).await, 0);
    env.game.extend(&code, &host, 5).await.unwrap();
    assert_eq!(checked_reads_of_an_answer(&env, &code, &ids[2], 0).await, 0);
    env.game.resume(&code, &host).await.unwrap();
    assert_eq!(checked_reads_of_an_answer(&env, &code, &ids[3], 0).await, 0);
    env.game.extend(&code, &host, 5).await.unwrap();
    assert_eq!(checked_reads_of_an_answer(&env, &code, &ids[4], 0).await, 0);
    env.game.skip(&code, &host, None).await.unwrap();
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    assert_eq!(checked_reads_of_an_answer(&env, &code, &ids[5], 1).await, 0);
    // a refusal does take the checked path (the count sees it)
    let prefix = ringside_protocol::keys::room(&code);
    let (r, lines) = monitored(&env, &code, env.game.answer_submit(&code, &ids[5], 0, 1)).await;
    assert_eq!(refusal(r), ErrorCode::WrongQuestion);
    assert_eq!(checked_path_reads(&lines, &prefix), 1);
}

/// A small room's question hash and players hash are hash tables from the start (their pads): as
/// listpacks, every answer's HSETNX, counters and membership check, and the scoring's reads and writes,
/// would scan every field (perf/lua.md, "Redis instructions per player, counted"). The players hash's pad
/// is not a player: an answer in its name is refused as a malformed id and counted nowhere.
async fn a_small_rooms_answers_and_players_are_hash_tables_and_the_pad_is_no_player(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("pads"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let ids = join_ids(&env, &code, 3).await;
    open_first_question(&env, &code, &host).await;
    env.game.answer_submit(&code, &ids[0], 0, 1).await.unwrap();
    let prefix = ringside_protocol::keys::room(&code);
    for suffix in ["", ":players", ":q:0"] {
        let mut conn = env.conn.clone();
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(format!("{prefix}{suffix}"))
            .query_async(&mut conn)
            .await
            .expect("OBJECT ENCODING");
        assert_eq!(encoding, "hashtable", "room key {prefix}{suffix}");
    }
    assert_eq!(
        refusal(env.game.answer_submit(&code, ":pad", 0, 1).await),
        ErrorCode::BadPayload
    );
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("1"));
    assert_eq!(hget(&env, &code, ":q:0", "a::pad").await, None);
}

/// Since v10 a member's answerSecret is the room hash's `m:<playerId>`, from the join to the removal,
/// and the lone answer's only membership check. A removed player has none, so their answer is refused by
/// the checked path (kicked, unauthorized), alone or in a batch. A player who joined under v9 has theirs in
/// `P:secret`: their answer is accepted through the checked path, alone or in a batch, and a retried join
/// and a reconnect still give the secret.
async fn a_members_secret_in_the_room_hash_is_the_fast_paths_membership_and_older_joiners_still_answer(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("member-secret"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let p = ringside_protocol::keys::room(&code);
    let acks = join_n(&env, &code, 7).await; // player 6 never answers: no early reveal
    let id = |i: usize| acks[i].player_id.clone();
    for a in &acks {
        let m = format!("m:{}", a.player_id);
        assert_eq!(
            hget(&env, &code, "", &m).await.as_deref(),
            Some(a.answer_secret.as_str())
        );
        assert_eq!(hget(&env, &code, ":secret", &a.player_id).await, None);
    }
    // players 1 and 4 as if joined under v9: the secret in P:secret, no m: field
    for i in [1, 4] {
        raw(&env, redis::cmd("HDEL").arg(&p).arg(format!("m:{}", id(i)))).await;
        raw(
            &env,
            redis::cmd("HSET")
                .arg(format!("{p}:secret"))
                .arg(id(i))
                .arg(&acks[i].answer_secret),
        )
        .await;
    }
    let again = env
        .game
        .room_join(
            &code,
            &id(1),
            &acks[1].session_token,
            "a-retry-brings-another-secret",
            "player-001",
            1,
            None,
        )
        .await
        .expect("a retried join");
    assert_eq!(again.answer_secret, acks[1].answer_secret);
    // a reconnect gives the secret wherever it is kept (P:secret for player 1, m: for player 0)
    for i in [1, 0] {
        let back = env
            .game
            .reconnect(&code, &id(i), &acks[i].session_token, None)
            .await
            .unwrap();
        assert_eq!(
            back.answer_secret.as_deref(),
            Some(acks[i].answer_secret.as_str())
        );
    }

    open_first_question(&env, &code, &host).await;
    env.game.kick(&code, &host, &id(2)).await.unwrap();
    env.game.leave(&code, &id(3)).await.unwrap();
    for i in [2, 3] {
        assert_eq!(hget(&env, &code, "", &format!("m:{}", id(i))).await, None);
    }
    assert_eq!(checked_reads_of_an_answer(&env, &code, &id(0), 0).await, 0);
    assert_eq!(checked_reads_of_an_answer(&env, &code, &id(1), 0).await, 1);
    assert_eq!(
        refusal(env.game.answer_submit(&code, &id(2), 0, 1).await),
        ErrorCode::Kicked
    );
    assert_eq!(
        refusal(env.game.answer_submit(&code, &id(3), 0, 1).await),
        ErrorCode::Unauthorized
    );
    // in a batch: the older joiner through the checked path, a member in the batch, the kicked refused
    let batch: Vec<BatchedAnswer> = [4, 5, 2]
        .iter()
        .map(|&i| BatchedAnswer {
            player_id: &acks[i].player_id,
            q_index: 0,
            answer_idx: 2,
        })
        .collect();
    let replies = env.game.answer_batch(&code, &batch).await.expect("batch");
    assert!(replies[0].is_ok() && replies[1].is_ok(), "{replies:?}");
    assert_eq!(
        replies[2].as_ref().map_err(|e| e.code()).err(),
        Some(ErrorCode::Kicked)
    );
    // four answers counted, nothing recorded for the removed players; player 6 has not answered
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("4"));
    for i in [2, 3] {
        assert_eq!(
            hget(&env, &code, ":q:0", &format!("a:{}", id(i))).await,
            None
        );
    }
    // the v9 joiner's leave removes their P:secret field too
    env.game.leave(&code, &id(1)).await.unwrap();
    assert_eq!(hget(&env, &code, ":secret", &id(1)).await, None);
}

/// A raw command on the room's slot.
async fn raw(env: &Env, cmd: &mut redis::Cmd) -> redis::Value {
    let mut conn = env.conn.clone();
    cmd.query_async(&mut conn).await.expect("raw command")
}

/// What a library older than v6 (which knows nothing of `qopen`) does to the room at its reveal of the
/// open question: bumps `gen` and sets the real fields, leaves `qopen` as it was.
async fn reveal_as_an_older_library(env: &Env, code: &str, q: u32) {
    let p = ringside_protocol::keys::room(code);
    let now = server_ms(env).await;
    raw(env, redis::cmd("HINCRBY").arg(&p).arg("gen").arg(1)).await;
    raw(
        env,
        redis::cmd("HSET")
            .arg(&p)
            .arg(&["state", "REVEAL", "paused", "0", "scur", "0"])
            .arg("revAt")
            .arg(now)
            .arg("sq")
            .arg(q),
    )
    .await;
}

/// ... and at its show of question q (a 60 s question of 4 options, open now).
async fn show_as_an_older_library(env: &Env, code: &str, q: u32) {
    let p = ringside_protocol::keys::room(code);
    let now = server_ms(env).await;
    let gen: u64 = match raw(env, redis::cmd("HINCRBY").arg(&p).arg("gen").arg(1)).await {
        redis::Value::Int(g) => g as u64,
        other => panic!("HINCRBY gen: {other:?}"),
    };
    raw(
        env,
        redis::cmd("HSET")
            .arg(&p)
            .arg(&["state", "ACTIVE", "paused", "0", "prem", "0", "qno", "4"])
            .arg(&["tlim", "60000", "aw", "0"])
            .arg("cur")
            .arg(q)
            .arg("qstart")
            .arg(now)
            .arg("endsAt")
            .arg(now + 60_000)
            .arg("qc")
            .arg(correct(q as usize))
            .arg("pgen")
            .arg(gen),
    )
    .await;
    let qk = format!("{p}:q:{q}");
    raw(env, redis::cmd("DEL").arg(&qk)).await;
    raw(
        env,
        redis::cmd("HSET")
            .arg(&qk)
            .arg("n")
            .arg(0)
            .arg("at")
            .arg(now),
    )
    .await;
}

/// The library rolled back to v5 in the middle of a game and forward again: the v5 transitions (reveal
/// of question 0, show of question 1) bump `gen` but leave the `qopen` that v6 wrote at question 0's
/// show. Rolled forward, answer_submit must not trust it: an answer to question 0 is refused as the
/// real fields say (late_answer at the reveal, wrong_question once question 1 is open), question 1 takes
/// answers, and the next v6 transition puts the answers back on the fast path.
async fn after_an_older_librarys_transitions_answers_to_the_stale_question_are_refused(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("rollback"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    // one player never answers: no early reveal
    let ids = join_ids(&env, &code, 4).await;
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    open_first_question(&env, &code, &host).await;
    let qopen = hget(&env, &code, "", "qopen").await;
    assert!(qopen.is_some(), "v6 wrote qopen at the show");

    reveal_as_an_older_library(&env, &code, 0).await;
    assert_eq!(hget(&env, &code, "", "qopen").await, qopen, "left stale");
    assert_eq!(
        refusal(env.game.answer_submit(&code, a, 0, 1).await),
        ErrorCode::LateAnswer,
        "question 0 was revealed"
    );

    show_as_an_older_library(&env, &code, 1).await;
    assert_eq!(hget(&env, &code, "", "qopen").await, qopen, "left stale");
    assert_eq!(
        refusal(env.game.answer_submit(&code, b, 0, 1).await),
        ErrorCode::WrongQuestion,
        "question 1 is open"
    );
    assert_eq!(hget(&env, &code, ":q:0", &format!("a:{a}")).await, None);
    assert_eq!(hget(&env, &code, ":q:0", &format!("a:{b}")).await, None);
    assert_eq!(hget(&env, &code, ":q:0", "n").await.as_deref(), Some("0"));
    let ack = env
        .game
        .answer_submit(&code, a, 1, 1)
        .await
        .expect("question 1 takes answers");
    assert_eq!(ack.q_index, 1);
    assert_eq!(hget(&env, &code, ":q:1", "n").await.as_deref(), Some("1"));

    // rolled forward: v6's next transition rewrites qopen, and answers are on the fast path again
    env.game.pause(&code, &host).await.unwrap();
    assert_ne!(hget(&env, &code, "", "qopen").await, qopen);
    assert_eq!(checked_reads_of_an_answer(&env, &code, b, 1).await, 0);
    assert_eq!(
        refusal(env.game.answer_submit(&code, c, 0, 1).await),
        ErrorCode::WrongQuestion
    );
    assert_eq!(hget(&env, &code, ":q:1", "n").await.as_deref(), Some("2"));
}
