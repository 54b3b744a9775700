//! Results for the system of record: an ended game is announced once in the partition's results
//! stream and exports by rank; a room about to expire unfinished is ended as abandoned.

use crate::common::*;
use ringside_lua::TimerKind;
use ringside_protocol::events::{RoomSettings, ServerEvent};
use ringside_protocol::{keys, ErrorCode};
use ringside_testkit::Backend;
use std::collections::HashMap;

on_both_backends!(
    an_ended_game_is_announced_once_in_the_results_stream_and_exports_by_rank,
    a_room_about_to_expire_unfinished_is_ended_as_abandoned,
);

/// The `results:{pNN}` entries of this room: (roomId, reason).
async fn results_entries(env: &Env, code: &str) -> Vec<(String, String)> {
    let mut conn = env.conn.clone();
    let stream = format!("results:{}", keys::partition_tag(keys::partition_of(code)));
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE results");
    entries
        .into_iter()
        .filter(|(_, f)| f.get("room").map(String::as_str) == Some(code))
        .map(|(_, f)| (f["roomId"].clone(), f["reason"].clone()))
        .collect()
}

async fn an_ended_game_is_announced_once_in_the_results_stream_and_exports_by_rank(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("export"), 2, 60_000);
    let no_bonus = RoomSettings {
        max_time_bonus: Some(0),
        ..settings()
    };
    let created = room(&env, &q, &no_bonus).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 5).await;
    assert_eq!(
        refusal(env.game.export(&code, 0, 10).await),
        ErrorCode::WrongState,
        "a live game does not export"
    );
    open_first_question(&env, &code, &created.host_token).await;
    for qi in 0..2u32 {
        // players 0..3 answer, 0 and 1 correctly; player 4 never answers
        for (k, p) in players.iter().enumerate().take(4) {
            let idx = if k < 2 {
                correct(qi as usize)
            } else {
                wrong(qi as usize)
            };
            env.game
                .answer_submit(&code, &p.player_id, qi, idx as u32)
                .await
                .expect("answer");
        }
        // player 4 never answers: the host closes the question
        env.game
            .skip(&code, &created.host_token, None)
            .await
            .expect("skip");
        let next = fire_latest(&env, &code, TimerKind::NextQuestion).await;
        assert!(next.fired, "{next:?}");
    }
    let entries = results_entries(&env, &code).await;
    assert_eq!(
        entries,
        vec![(created.room_id.clone(), "finished".to_string())]
    );

    // page through 2 at a time: every player once, in rank order, ranks shared by equal scores
    let mut all = Vec::new();
    let mut off = 0;
    loop {
        let page = env.game.export(&code, off, 2).await.expect("export");
        assert_eq!(page.game.room_id, created.room_id);
        assert_eq!(page.game.end_reason, "finished");
        assert_eq!(
            (page.game.question_count, page.game.questions_played),
            (2, 2)
        );
        all.extend(page.players);
        match page.next {
            Some(n) => off = n,
            None => break,
        }
    }
    assert_eq!(all.len(), 5);
    let ranks: Vec<u64> = all.iter().map(|p| p.rank).collect();
    assert_eq!(
        ranks,
        [1, 1, 3, 3, 3],
        "two correct players tie first, three with 0 tie third"
    );
    let scores: Vec<i64> = all.iter().map(|p| p.score).collect();
    assert!(
        scores[0] > 0 && scores[0] == scores[1] && scores[2..] == [0, 0, 0],
        "{scores:?}"
    );
    for p in &all {
        let k = players
            .iter()
            .position(|j| j.player_id == p.player_id)
            .expect("a player");
        assert_eq!(p.name, format!("player-{k:03}"));
        assert_eq!(p.answers.len(), 2);
        if k == 4 {
            assert!(
                p.answers.iter().all(Option::is_none),
                "player 4 never answered"
            );
            assert_eq!(p.correct, 0);
        } else {
            assert_eq!(p.correct, if k < 2 { 2 } else { 0 });
            for (qi, a) in p.answers.iter().enumerate() {
                let a = a.as_ref().expect("answered");
                let want = if k < 2 { correct(qi) } else { wrong(qi) };
                assert_eq!(a.answer_idx as usize, want);
                let ms = a.ms.expect("show time known");
                assert!((0..60_000).contains(&ms), "answer time {ms} ms");
            }
        }
    }
    assert_eq!(
        all.iter().map(|p| p.score).sum::<i64>(),
        scores.iter().sum::<i64>()
    );

    // a hold keeps the ended room past its cleanup time; 0 releases it
    assert!(env.game.results_hold(&code, 600_000).await.unwrap());
    let cleanup = latest_timer(&env, &code, TimerKind::Cleanup).await;
    let out = env.game.fire(&cleanup).await.unwrap();
    assert!(!out.fired && out.retry_after().is_some(), "held: {out:?}");
    assert!(env.game.results_hold(&code, 0).await.unwrap());
    assert_eq!(
        results_entries(&env, &code).await.len(),
        1,
        "announced once"
    );
}

async fn a_room_about_to_expire_unfinished_is_ended_as_abandoned(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("abandon"), 3, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    join_n(&env, &code, 2).await;
    open_first_question(&env, &code, &created.host_token).await;
    // far from expiry: nothing changes, a fresh check is written (generation 1), the old one is stale
    let first = latest_timer(&env, &code, TimerKind::Abandon).await;
    assert_eq!(first.gen, 0);
    let out = env.game.fire(&first).await.unwrap();
    assert!(!out.fired, "{out:?}");
    let second = latest_timer(&env, &code, TimerKind::Abandon).await;
    assert_eq!(second.gen, 1);
    assert!(
        !env.game.fire(&first).await.unwrap().fired,
        "a superseded check"
    );
    assert!(results_entries(&env, &code).await.is_empty());
    // nobody touched the room for ~2 h: its expiry is close
    let mut conn = env.conn.clone();
    let _: () = redis::cmd("PEXPIRE")
        .arg(keys::room(&code))
        .arg(200_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let out = env.game.fire(&second).await.unwrap();
    assert!(out.fired, "{out:?}");
    let end = last(&env, &code, |e| match e {
        ServerEvent::GameEnd(g) => Some(g.clone()),
        _ => None,
    })
    .await;
    assert_eq!(end.room_id, created.room_id);
    assert_eq!(
        results_entries(&env, &code).await,
        vec![(created.room_id.clone(), "abandoned".to_string())]
    );
    let page = env.game.export(&code, 0, 10).await.unwrap();
    assert_eq!(page.game.end_reason, "abandoned");
    assert_eq!((page.game.questions_played, page.players.len()), (1, 2));
    assert!(!env.game.fire(&second).await.unwrap().fired, "fires once");
}
