//! Answers: exactly one stored answer per player and question under concurrency, late, past and
//! future answers refused with their codes, the answer rate limit and its kick, and the pace of the
//! progress broadcast.

use crate::common::*;
use ringside_lua::TimerKind;
use ringside_protocol::events::ServerEvent;
use ringside_protocol::ErrorCode;
use ringside_testkit::Backend;
use std::collections::HashMap;
use tokio::task::JoinSet;

on_both_backends!(
    two_hundred_concurrent_submissions_store_exactly_one_answer,
    late_past_and_future_answers_are_refused_with_their_codes,
    the_third_answer_event_is_rate_limited_and_five_violations_kick,
    resending_the_recorded_answer_is_already_answered_and_never_a_violation,
    progress_is_published_at_most_once_per_second_slot_and_only_on_change,
);

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

async fn progress_is_published_at_most_once_per_second_slot_and_only_on_change(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("progress"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 3).await;
    open_first_question(&env, &code, &created.host_token).await;
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
    // a later second, unchanged: nothing published
    wait_until_server_ms(&env, fired_at + 1000).await;
    let same = env.game.fire(&tick).await.unwrap();
    assert!(!same.fired && same.should_continue(), "{same:?}");
    let same_at = server_ms(&env).await;
    env.game
        .answer_submit(&code, &players[1].player_id, 0, 1)
        .await
        .unwrap();
    wait_until_server_ms(&env, same_at + 1000).await;
    assert!(env.game.fire(&tick).await.unwrap().fired);
    let progress: Vec<_> = log(&env, &code)
        .await
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            ServerEvent::AnswerProgress(p) => Some((p.answered_count, p.total_count)),
            _ => None,
        })
        .collect();
    assert_eq!(progress, [(1, 3), (2, 3)]);
    env.game
        .skip(&code, &created.host_token, None)
        .await
        .unwrap();
    let stop = env.game.fire(&tick).await.unwrap();
    assert!(!stop.should_continue());
}
