//! Host controls: pause and resume move the question's deadline by the paused time; extend adds time.

use crate::common::*;
use ringside_lua::TimerKind;
use ringside_protocol::events::ServerEvent;
use ringside_protocol::ErrorCode;
use ringside_testkit::Backend;
use std::time::Duration;

on_both_backends!(pause_and_resume_move_the_deadline_by_the_paused_time_and_extend_adds_time);

async fn pause_and_resume_move_the_deadline_by_the_paused_time_and_extend_adds_time(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("pause"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let players = join_n(&env, &code, 2).await;
    assert_eq!(
        refusal(env.game.pause(&code, &host).await),
        ErrorCode::WrongState,
        "nothing to pause in the lobby"
    );
    open_first_question(&env, &code, &host).await;
    let show = last(&env, &code, |e| match e {
        ServerEvent::QuestionShow(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    let first_end = latest_timer(&env, &code, TimerKind::QuestionEnd).await;
    assert_eq!(first_end.due, show.ends_at + 500);

    assert_eq!(
        refusal(env.game.pause(&code, &players[0].session_token).await),
        ErrorCode::NotHost
    );
    env.game.pause(&code, &host).await.unwrap();
    assert_eq!(
        refusal(env.game.pause(&code, &host).await),
        ErrorCode::WrongState,
        "already paused"
    );
    let paused = last(&env, &code, |e| match e {
        ServerEvent::Paused(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(paused.remaining_ms, show.ends_at - paused.paused_at);
    // the old deadline no longer ends the question
    let out = env.game.fire(&first_end).await.unwrap();
    assert_eq!((out.fired, out.why.as_deref()), (false, Some("stale")));
    // an answer while paused is accepted
    env.game
        .answer_submit(&code, &players[0].player_id, 0, correct(0) as u32)
        .await
        .expect("answer while paused");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server_ms(&env).await;
    env.game.resume(&code, &host).await.unwrap();
    let after = server_ms(&env).await;
    let resumed = last(&env, &code, |e| match e {
        ServerEvent::Resumed(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    // new endsAt = resume time + remaining: the deadline moved by exactly the paused time
    let resumed_at = resumed.ends_at - paused.remaining_ms;
    assert!(
        (before..=after).contains(&resumed_at),
        "{before} <= {resumed_at} <= {after}"
    );
    assert_eq!(
        resumed.ends_at - show.ends_at,
        resumed_at - paused.paused_at
    );
    assert!(resumed.ends_at >= show.ends_at + 300);
    assert_eq!(
        latest_timer(&env, &code, TimerKind::QuestionEnd).await.due,
        resumed.ends_at + 500
    );
    assert_eq!(
        refusal(env.game.resume(&code, &host).await),
        ErrorCode::WrongState,
        "not paused"
    );
    // the resume wrote a fresh progress ticker on the question's 1 s grid; the first one is now stale
    let tickers: Vec<_> = timers(&env, &code)
        .await
        .into_iter()
        .filter(|t| t.kind == TimerKind::Progress)
        .collect();
    assert_eq!(tickers.len(), 2);
    let old_tick = env.game.fire(&tickers[0]).await.unwrap();
    assert!(
        !old_tick.fired && !old_tick.should_continue(),
        "{old_tick:?}"
    );
    assert_eq!(
        (tickers[1].due - (show.ends_at - show.time_limit_ms as u64)) % 1000,
        0,
        "on the grid"
    );
    wait_until_server_ms(&env, tickers[1].due).await;
    assert!(env.game.fire(&tickers[1]).await.unwrap().should_continue());

    env.game.extend(&code, &host, 10).await.unwrap();
    let ext = last(&env, &code, |e| match e {
        ServerEvent::TimeExtended(t) => Some(t.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (ext.ends_at, ext.add_seconds),
        (resumed.ends_at + 10_000, 10)
    );
    assert_eq!(
        latest_timer(&env, &code, TimerKind::QuestionEnd).await.due,
        ext.ends_at + 500
    );
    assert_eq!(
        refusal(env.game.extend(&code, &host, 0).await),
        ErrorCode::BadPayload
    );
    assert_eq!(
        refusal(env.game.extend(&code, &host, 121).await),
        ErrorCode::BadPayload
    );
    for _ in 0..14 {
        env.game.extend(&code, &host, 120).await.unwrap(); // ~70 s + 14 × 120 s = 1750 s < 30 min
    }
    assert_eq!(
        refusal(env.game.extend(&code, &host, 120).await),
        ErrorCode::BadPayload,
        "30 min cap"
    );
    let ext = last(&env, &code, |e| match e {
        ServerEvent::TimeExtended(t) => Some(t.clone()),
        _ => None,
    })
    .await;
    let snap = env.game.snapshot(&code, None).await.unwrap();
    assert_eq!(snap.current_q.unwrap().ends_at, ext.ends_at);
    // skip ends it now, scored
    env.game.skip(&code, &host, None).await.unwrap();
    let reveal = last(&env, &code, |e| match e {
        ServerEvent::QuestionReveal(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert!(reveal.skipped);
    assert_eq!(reveal.answered_count, 1);
    assert_eq!(
        refusal(env.game.skip(&code, &host, None).await),
        ErrorCode::WrongState,
        "nothing left to skip"
    );
}
