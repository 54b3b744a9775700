//! Timer fires: duplicate, stale and superseded fires change nothing.

use crate::common::*;
use ringside_lua::{GameError, TimerKind};
use ringside_protocol::ErrorCode;
use ringside_testkit::Backend;

on_both_backends!(duplicate_stale_and_superseded_timer_fires_change_nothing);

async fn duplicate_stale_and_superseded_timer_fires_change_nothing(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("timers"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    join_n(&env, &code, 2).await;
    env.game.start(&code, &host).await.unwrap();
    let countdown = latest_timer(&env, &code, TimerKind::CountdownEnd).await;
    assert!(fire(&env, &countdown).await.fired);
    let seq_after_show = log(&env, &code).await.len();
    let again = fire(&env, &countdown).await;
    assert_eq!((again.fired, again.why.as_deref()), (false, Some("stale")));
    let q_end = latest_timer(&env, &code, TimerKind::QuestionEnd).await;
    // early: nothing happens, the engine is told when to come back
    let early = env.game.fire(&q_end).await.unwrap();
    assert_eq!((early.fired, early.why.as_deref()), (false, Some("early")));
    assert!(early.retry_after().is_some());
    assert_eq!(log(&env, &code).await.len(), seq_after_show);
    // skip reveals; the question's own end timer is then a no-op, however often it fires
    env.game.skip(&code, &host, None).await.unwrap();
    let after_skip = log(&env, &code).await;
    for _ in 0..2 {
        let out = env.game.fire(&q_end).await.unwrap();
        assert_eq!((out.fired, out.why.as_deref()), (false, Some("stale")));
    }
    // a fire of a kind for the wrong question or an old generation is stale
    let wrong_q = env
        .game
        .timer_fire(&code, TimerKind::QuestionEnd, 1, q_end.gen)
        .await
        .unwrap();
    assert!(!wrong_q.fired);
    let next = latest_timer(&env, &code, TimerKind::NextQuestion).await;
    assert!(
        !env.game
            .timer_fire(&code, TimerKind::NextQuestion, next.q, next.gen - 1)
            .await
            .unwrap()
            .fired
    );
    assert_eq!(
        log(&env, &code).await.len(),
        after_skip.len(),
        "no event from stale fires"
    );
    // the next question fires once
    assert!(fire(&env, &next).await.fired);
    let n = log(&env, &code).await.len();
    assert!(!fire(&env, &next).await.fired);
    // the progress tick of the old question stops
    let old_progress = timers(&env, &code)
        .await
        .into_iter()
        .find(|t| t.kind == TimerKind::Progress && t.q == 0)
        .unwrap();
    let p = env.game.fire(&old_progress).await.unwrap();
    assert!(!p.fired && !p.should_continue());
    assert_eq!(log(&env, &code).await.len(), n);
    // a malformed entry can never fire
    match env
        .game
        .call(
            ringside_lua::Function::TimerFire,
            &code,
            &["nope", "0", "1"],
        )
        .await
    {
        Err(GameError::Refused { code, detail }) => {
            assert_eq!(code, ErrorCode::BadPayload);
            assert!(detail.starts_with("bad timer entry"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // a fire for a room that no longer exists
    let gone = env
        .game
        .timer_fire("ZZZZZZ", TimerKind::QuestionEnd, 0, 1)
        .await
        .unwrap();
    assert_eq!(gone.why.as_deref(), Some("gone"));
}
