//! Reconnect: a returning player gets the events it missed from the room log, or a snapshot.

use crate::common::*;
use ringside_lua::Recovery;
use ringside_protocol::{keys, ErrorCode};
use ringside_testkit::Backend;

on_both_backends!(reconnect_returns_missed_events_or_a_snapshot);

async fn reconnect_returns_missed_events_or_a_snapshot(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("reconnect"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let players = join_n(&env, &code, 2).await;
    let p = &players[0];
    let seq_at_join = p.seq;
    open_first_question(&env, &code, &host).await;
    env.game
        .answer_submit(&code, &p.player_id, 0, correct(0) as u32)
        .await
        .unwrap();

    let back = env
        .game
        .reconnect(&code, &p.player_id, &p.session_token, Some(seq_at_join))
        .await
        .unwrap();
    assert_eq!(
        back.answer_secret.as_deref(),
        Some(p.answer_secret.as_str())
    );
    let Recovery::Events(evs) = &back.recovery else {
        panic!("{back:?}")
    };
    let logged: Vec<String> = log(&env, &code)
        .await
        .into_iter()
        .filter(|(s, _, _)| *s > seq_at_join)
        .map(|(_, raw, _)| raw)
        .collect();
    assert_eq!(evs, &logged);
    let Recovery::Events(none) = env
        .game
        .reconnect(&code, &p.player_id, &p.session_token, Some(back.seq))
        .await
        .unwrap()
        .recovery
    else {
        panic!()
    };
    assert!(none.is_empty());
    // wrong token / unknown player
    assert_eq!(
        refusal(
            env.game
                .reconnect(&code, &p.player_id, &players[1].session_token, None)
                .await
        ),
        ErrorCode::Unauthorized
    );
    assert_eq!(
        refusal(
            env.game
                .reconnect(&code, "host", &p.session_token, None)
                .await
        ),
        ErrorCode::Unauthorized,
        "a host reconnect with a wrong token (docs/protocol.md: unauthorized)"
    );

    // no lastSeq: a snapshot; while the question is open it shows no unrevealed points and no rank
    let Recovery::State(s) = env
        .game
        .reconnect(&code, &p.player_id, &p.session_token, None)
        .await
        .unwrap()
        .recovery
    else {
        panic!()
    };
    assert_eq!(s.state, ringside_protocol::events::RoomState::Active);
    assert!(s.answered);
    assert_eq!((s.score, s.rank, s.streak), (0, 0, 0));
    assert_eq!(s.current_q.as_ref().unwrap().q_index, 0);
    assert!(s.time_remaining_ms > 0 && s.time_remaining_ms <= 60_000);
    env.game.skip(&code, &host, None).await.unwrap();
    let s = env.game.snapshot(&code, Some(&p.player_id)).await.unwrap();
    assert!(s.score > 1000 && s.rank == 1 && s.streak == 1, "{s:?}");
    assert_eq!(s.leaderboard.len(), 2);
    // in REVEAL the snapshot carries the revealed question and its reveal (docs/protocol.md)
    assert_eq!(s.current_q.as_ref().map(|q| q.q_index), Some(0));
    assert_eq!(s.reveal.as_ref().map(|r| r.q_index), Some(0));

    // a gap older than the log: simulate the trim, then a snapshot comes back
    let mut conn = env.conn.clone();
    let _: u64 = redis::cmd("XTRIM")
        .arg(keys::room_log(&code))
        .arg("MAXLEN")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = env
        .game
        .reconnect(&code, &p.player_id, &p.session_token, Some(seq_at_join))
        .await
        .unwrap();
    assert!(matches!(r.recovery, Recovery::State(_)), "{r:?}");
    // the host reconnects with the host token
    let h = env
        .game
        .reconnect(&code, "host", &host, None)
        .await
        .unwrap();
    assert!(h.host && h.answer_secret.is_none());
    assert_eq!(
        refusal(env.game.reconnect("ZZZZZZ", "host", &host, None).await),
        ErrorCode::RoomNotFound
    );
}
