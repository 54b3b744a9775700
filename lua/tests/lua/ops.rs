//! What the pages and the ops view read besides the game itself: the host's paged player list
//! (`room_players`), a snapshot taken during a reveal (the reveal and the player's own result), and the
//! per-partition index of live rooms (`rooms_list`).

use crate::common::*;
use ringside_lua::{GameError, TimerKind};
use ringside_protocol::events::{RoomState, ServerEvent};
use ringside_protocol::{keys, ErrorCode};
use ringside_testkit::Backend;
use std::collections::BTreeSet;

on_both_backends!(
    room_players_pages_the_players_for_the_host_only,
    a_snapshot_during_a_reveal_has_the_question_the_reveal_and_the_players_result,
    rooms_list_holds_a_room_from_its_creation_until_its_end,
);

fn refusal<T: std::fmt::Debug>(r: Result<T, GameError>) -> ErrorCode {
    match r {
        Err(e @ GameError::Refused { .. }) => e.code(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn room_players_pages_the_players_for_the_host_only(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("players"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let joined = join_n(&env, &code, 5).await;

    let mut seen = Vec::new();
    let mut offset = 0;
    let mut pages = 0;
    loop {
        let page = env.game.players(&code, &host, offset, 2).await.unwrap();
        assert_eq!(page.total_count, 5);
        assert!(page.players.len() <= 2, "{page:?}");
        seen.extend(page.players.iter().map(|p| (p.id.clone(), p.name.clone())));
        pages += 1;
        match page.next {
            Some(n) => {
                assert_eq!(n, offset + 2);
                offset = n;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3, "5 players in pages of 2");
    let want: BTreeSet<(String, String)> = joined
        .iter()
        .enumerate()
        .map(|(i, a)| (a.player_id.clone(), format!("player-{i:03}")))
        .collect();
    assert_eq!(seen.len(), 5, "no player twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), want);

    // the whole room in one page: no next
    let all = env.game.players(&code, &host, 0, 500).await.unwrap();
    assert_eq!((all.players.len(), all.next), (5, None));
    // a kicked player is no longer listed
    env.game
        .kick(&code, &host, &joined[0].player_id)
        .await
        .unwrap();
    let all = env.game.players(&code, &host, 0, 500).await.unwrap();
    assert_eq!(all.total_count, 4);
    assert!(all.players.iter().all(|p| p.id != joined[0].player_id));

    // host only; the page size is bounded
    assert_eq!(
        refusal(
            env.game
                .players(&code, &joined[1].session_token, 0, 10)
                .await
        ),
        ErrorCode::NotHost
    );
    assert_eq!(
        refusal(env.game.players(&code, &host, 0, 501).await),
        ErrorCode::BadPayload
    );
    assert_eq!(
        refusal(env.game.players("ZZZZZZ", &host, 0, 10).await),
        ErrorCode::RoomNotFound
    );
}

async fn a_snapshot_during_a_reveal_has_the_question_the_reveal_and_the_players_result(
    backend: Backend,
) {
    let env = env(backend).await;
    let q = quiz(&unique("reveal-snap"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let players = join_n(&env, &code, 2).await;
    env.game.start(&code, &host).await.unwrap();
    assert!(
        fire_latest(&env, &code, TimerKind::CountdownEnd)
            .await
            .fired
    );
    let (right, wrong_one) = (&players[0], &players[1]);
    env.game
        .answer_submit(&code, &right.player_id, 0, correct(0) as u32)
        .await
        .unwrap();
    // the last answer reveals at once (every player answered); the engine then scores it
    env.game
        .answer_submit(&code, &wrong_one.player_id, 0, wrong(0) as u32)
        .await
        .unwrap();
    // before it is scored a snapshot has no result and no rank yet (the result follows the leaderboard)
    let unscored = env
        .game
        .snapshot(&code, Some(&right.player_id))
        .await
        .unwrap();
    assert_eq!(unscored.state, RoomState::Reveal);
    assert!(unscored.result.is_none(), "{unscored:?}");
    assert_eq!(unscored.rank, 0);
    score_pending(&env, &code).await;
    let published = last(&env, &code, |e| match e {
        ServerEvent::QuestionReveal(r) => Some(r.clone()),
        _ => None,
    })
    .await;

    let s = env
        .game
        .snapshot(&code, Some(&right.player_id))
        .await
        .unwrap();
    assert_eq!(s.state, RoomState::Reveal);
    let cq = s.current_q.as_ref().expect("the revealed question");
    assert_eq!(cq.q_index, 0);
    assert_eq!(cq.answers.len(), q.questions[0].options.len());
    assert_eq!(
        s.reveal.as_deref(),
        Some(&published),
        "the reveal as published"
    );
    let mine = s.result.as_ref().expect("the player's own result");
    assert_eq!(mine.q_index, 0);
    assert_eq!(mine.answer_idx, Some(correct(0) as u32));
    assert!(mine.correct && mine.points > 0, "{mine:?}");
    assert_eq!((mine.total, mine.rank, mine.streak), (s.score, 1, 1));
    assert_eq!(s.rank, 1);

    let theirs = env
        .game
        .snapshot(&code, Some(&wrong_one.player_id))
        .await
        .unwrap()
        .result
        .expect("result");
    assert_eq!(theirs.answer_idx, Some(wrong(0) as u32));
    assert!(!theirs.correct);
    assert_eq!((theirs.points, theirs.rank, theirs.streak), (0, 2, 0));

    // the host (and a reconnect without lastSeq) gets the reveal but no player's result
    let h = env.game.snapshot(&code, Some("host")).await.unwrap();
    assert_eq!(h.reveal.as_deref(), Some(&published));
    assert!(h.result.is_none());

    // once the next question is open, the snapshot is a question again
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    let s = env
        .game
        .snapshot(&code, Some(&right.player_id))
        .await
        .unwrap();
    assert_eq!(s.state, RoomState::Active);
    assert!(s.reveal.is_none() && s.result.is_none());
    assert_eq!(s.current_q.expect("open question").q_index, 1);
}

async fn rooms_list_holds_a_room_from_its_creation_until_its_end(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("live"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let p = keys::partition_of(&code);
    let listed = |rooms: &[(String, u64)]| rooms.iter().any(|(c, at)| *c == code && *at > 0);

    let (live, rooms) = env.game.rooms_list(p, 1000).await.unwrap();
    assert!(listed(&rooms), "{code} in partition {p}: {rooms:?}");
    assert!(live >= 1 && live as usize >= rooms.len());
    // newest first
    assert!(rooms.windows(2).all(|w| w[0].1 >= w[1].1), "{rooms:?}");
    let (_, none) = env.game.rooms_list(p, 0).await.unwrap();
    assert!(none.is_empty());

    // play the one question to the end: the room leaves the index
    let players = join_n(&env, &code, 1).await;
    env.game.start(&code, &host).await.unwrap();
    assert!(
        fire_latest(&env, &code, TimerKind::CountdownEnd)
            .await
            .fired
    );
    env.game
        .answer_submit(&code, &players[0].player_id, 0, correct(0) as u32)
        .await
        .unwrap();
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    let s = env.game.snapshot(&code, None).await.unwrap();
    assert_eq!(s.state, RoomState::Ended);
    let (_, rooms) = env.game.rooms_list(p, 1000).await.unwrap();
    assert!(!listed(&rooms), "an ended room is not live: {rooms:?}");
}
