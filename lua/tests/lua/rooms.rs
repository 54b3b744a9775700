//! Rooms and joins, through the library on real Redis (standalone and cluster): the lobby's rules
//! (names, capacity, lock, kick, host rights), coalesced join announcements, a repeated join that
//! changes nothing, and rooms spread over every primary of the cluster.

use crate::common::*;
use ringside_lua::{GameError, TimerKind};
use ringside_protocol::events::{RoomSettings, ServerEvent};
use ringside_protocol::{keys, ErrorCode};
use ringside_testkit::Backend;
use std::collections::HashMap;

on_both_backends!(
    rooms_land_on_every_primary_and_their_games_complete,
    lobby_rules_names_capacity_lock_kick_and_host_rights,
    joins_are_announced_at_most_once_per_second_per_room,
    a_repeated_join_with_the_same_ids_returns_the_same_ack_and_changes_nothing,
);

async fn rooms_land_on_every_primary_and_their_games_complete(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("spread"), 1, 60_000);
    env.game.store_quiz(&q).await.unwrap();
    let mut by_node: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for _ in 0..40 {
        let c = env
            .game
            .create_room(&q.id, None, &settings(), "")
            .await
            .unwrap();
        let node = match backend {
            Backend::Standalone => env.urls[0].clone(),
            Backend::Cluster => {
                tokio::task::block_in_place(|| node_of(&env, &keys::room(&c.game_code)))
            }
        };
        by_node
            .entry(node)
            .or_default()
            .push((c.game_code, c.host_token));
    }
    let expected_nodes = if backend == Backend::Cluster { 3 } else { 1 };
    assert_eq!(
        by_node.len(),
        expected_nodes,
        "rooms on {:?}",
        by_node.keys().collect::<Vec<_>>()
    );
    for rooms in by_node.values() {
        let (code, host) = &rooms[0];
        let p = env.game.join(code, "Solo", 1, None).await.unwrap();
        open_first_question(&env, code, host).await;
        env.game
            .answer_submit(code, &p.player_id, 0, correct(0) as u32)
            .await
            .unwrap(); // early reveal
        score_pending(&env, code).await;
        let r = env
            .game
            .results(code, 0, &[p.player_id.as_str()])
            .await
            .unwrap();
        assert!(r[0].as_ref().unwrap().correct);
        let end = fire_latest(&env, code, TimerKind::NextQuestion).await;
        assert_eq!(end.kind.as_deref(), Some("game_end"));
        assert_eq!(
            hget(&env, code, "", "state").await.as_deref(),
            Some("ENDED")
        );
    }
}

async fn lobby_rules_names_capacity_lock_kick_and_host_rights(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("lobby"), 1, 60_000);
    let small = RoomSettings {
        max_players: Some(3),
        ..settings()
    };
    let created = room(&env, &q, &small).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let emile = env.game.join(&code, "  Émile ", 0, None).await.unwrap();
    assert_eq!(emile.players.last().unwrap().name, "Émile", "trimmed");
    assert_eq!(
        refusal(env.game.join(&code, "ÉMILE", 0, None).await),
        ErrorCode::NameTaken,
        "case-insensitive"
    );
    assert_eq!(
        refusal(env.game.join(&code, "bad\u{7}name", 0, None).await),
        ErrorCode::BadName
    );
    assert_eq!(
        refusal(env.game.join(&code, "bad\u{85}name", 0, None).await),
        ErrorCode::BadName,
        "C1 control"
    );
    assert_eq!(
        refusal(env.game.join(&code, &"x".repeat(25), 0, None).await),
        ErrorCode::BadName
    );
    assert_eq!(
        refusal(env.game.join(&code, "   ", 0, None).await),
        ErrorCode::BadName
    );
    env.game
        .join(&code, &"é".repeat(24), 0, None)
        .await
        .expect("24 characters (48 bytes) is fine");
    let bob = env.game.join(&code, "Bob", 0, None).await.unwrap();
    assert_eq!(bob.total_count, 3);
    assert_eq!(
        refusal(env.game.join(&code, "Carol", 0, None).await),
        ErrorCode::RoomFull
    );
    // kick: not by a player; the kicked session cannot come back, nor the kicked name from a new session
    assert_eq!(
        refusal(
            env.game
                .kick(&code, &bob.session_token, &emile.player_id)
                .await
        ),
        ErrorCode::NotHost
    );
    env.game.kick(&code, &host, &bob.player_id).await.unwrap();
    assert_eq!(
        refusal(env.game.kick(&code, &host, &bob.player_id).await),
        ErrorCode::BadPayload,
        "no longer a player"
    );
    assert_eq!(
        refusal(
            env.game
                .join(&code, "Bob", 0, Some(&bob.session_token))
                .await
        ),
        ErrorCode::Kicked
    );
    assert_eq!(
        refusal(env.game.leave(&code, &bob.player_id).await),
        ErrorCode::Kicked
    );
    assert_eq!(
        refusal(env.game.join(&code, " BOB ", 0, None).await),
        ErrorCode::Kicked,
        "a kicked name stays barred from a new socket (case-folded, trimmed)"
    );
    let bob2 = env
        .game
        .join(&code, "Bobby", 0, None)
        .await
        .expect("another name joins");
    assert!(
        !bob2.players.iter().any(|p| p.id == bob.player_id),
        "a kicked player leaves the lobby list"
    );
    assert_eq!(bob2.players.last().unwrap().id, bob2.player_id);
    env.game.leave(&code, &bob2.player_id).await.unwrap();
    assert_eq!(
        refusal(env.game.leave(&code, &bob2.player_id).await),
        ErrorCode::Unauthorized
    );
    // start: host only, once; then the room is locked
    assert_eq!(
        refusal(env.game.start(&code, "not-the-host-token").await),
        ErrorCode::NotHost
    );
    env.game.start(&code, &host).await.unwrap();
    assert_eq!(
        refusal(env.game.start(&code, &host).await),
        ErrorCode::WrongState
    );
    assert_eq!(
        refusal(env.game.join(&code, "Late", 0, None).await),
        ErrorCode::RoomLocked
    );
    let countdown = last(&env, &code, |e| match e {
        ServerEvent::Countdown(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(countdown.count, 0);
    // a late-join room takes players after the start
    let late = room(
        &env,
        &quiz(&unique("late-join"), 1, 60_000),
        &RoomSettings {
            late_join: Some(true),
            ..settings()
        },
    )
    .await;
    env.game
        .join(&late.game_code, "Early", 0, None)
        .await
        .unwrap();
    open_first_question(&env, &late.game_code, &late.host_token).await;
    let lj = env
        .game
        .join(&late.game_code, "Late", 0, None)
        .await
        .expect("late join");
    assert_eq!(lj.state, ringside_protocol::events::RoomState::Active);
    env.game
        .answer_submit(&late.game_code, &lj.player_id, 0, 0)
        .await
        .expect("a late joiner can answer");
    // unknown rooms and bad codes
    assert_eq!(
        refusal(env.game.join("ZZZZZZ", "X", 0, None).await),
        ErrorCode::RoomNotFound
    );
    assert_eq!(
        refusal(env.game.join("nope", "X", 0, None).await),
        ErrorCode::BadPayload
    );
    assert_eq!(
        refusal(
            env.game
                .create_room(&unique("missing"), None, &settings(), "")
                .await
        ),
        ErrorCode::QuizNotFound
    );
    let bad = RoomSettings {
        time_per_q_ms: Some(10),
        ..settings()
    };
    env.game.store_quiz(&q).await.unwrap();
    assert_eq!(
        refusal(env.game.create_room(&q.id, None, &bad, "").await),
        ErrorCode::BadPayload
    );
    // a colliding code is reported as such (create_room retries with another)
    let taken = env
        .game
        .room_create(
            &code,
            "rid",
            &"h".repeat(32),
            &q.to_json(),
            &settings(),
            "",
            "",
        )
        .await;
    assert!(matches!(taken, Err(GameError::CodeTaken(_))), "{taken:?}");
}

async fn joins_are_announced_at_most_once_per_second_per_room(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("coalesce"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let t0 = server_ms(&env).await;
    join_n(&env, &code, 30).await;
    let t1 = server_ms(&env).await;
    let joined =
        |events: Vec<(u64, String, ServerEvent)>| -> Vec<ringside_protocol::events::PlayerJoined> {
            events
                .into_iter()
                .filter_map(|(_, _, e)| match e {
                    ServerEvent::PlayerJoined(j) => Some(j),
                    _ => None,
                })
                .collect()
        };
    let before_flush = joined(log(&env, &code).await);
    // the first join is announced at once, later ones at most once per second of the server clock
    let seconds = (t1 - t0) / 1000;
    assert!(
        !before_flush.is_empty() && before_flush.len() as u64 <= 1 + seconds,
        "{} announcements in {seconds} s",
        before_flush.len()
    );
    // the engine's flush announces the rest; a duplicate flush does nothing
    let flush = latest_timer(&env, &code, TimerKind::LobbyFlush).await;
    let out = fire(&env, &flush).await;
    let again = fire(&env, &flush).await;
    assert!(!again.fired);
    let all = joined(log(&env, &code).await);
    assert!(out.fired || all.len() == before_flush.len(), "{out:?}");
    assert_eq!(all.iter().map(|j| j.joined_count).sum::<u32>(), 30);
    assert_eq!(all.last().unwrap().total_count, 30);
    for j in &all {
        assert!(j.players.len() <= 20 && !j.players.is_empty());
    }
    let ack = env.game.join(&code, "One more", 0, None).await.unwrap();
    assert_eq!(
        ack.players.len(),
        31,
        "all 31 joiners (the list keeps the last 50)"
    );
    assert_eq!(ack.players.last().unwrap().name, "One more", "newest last");
}

/// Everything a join writes, to compare before and after a repeated one.
async fn join_footprint(
    env: &Env,
    code: &str,
) -> (Vec<Option<String>>, usize, usize, usize, usize) {
    let mut conn = env.conn.clone();
    let room = keys::room(code);
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&room)
        .arg(&["np", "pjn", "seq", "fgen", "pflush", "lflush", "state"])
        .query_async(&mut conn)
        .await
        .expect("HMGET");
    let len = |cmd: &str, suffix: &str| redis::cmd(cmd).arg(format!("{room}{suffix}")).clone();
    let players: usize = len("HLEN", ":players")
        .query_async(&mut conn)
        .await
        .unwrap();
    let names: usize = len("HLEN", ":names").query_async(&mut conn).await.unwrap();
    let recent: usize = len("LLEN", ":recent").query_async(&mut conn).await.unwrap();
    let timers = timers(env, code).await.len();
    (fields, players, names, recent, timers)
}

/// A join whose reply was lost (the edge answered `unavailable`) is retried by the edge with the same
/// playerId, sessionToken and answerSecret: the retry gets the same ack, and nothing is written, counted
/// or announced twice. Any mismatch keeps the usual errors.
async fn a_repeated_join_with_the_same_ids_returns_the_same_ack_and_changes_nothing(
    backend: Backend,
) {
    use ringside_lua::game::random_hex;
    use ringside_protocol::events::{PlayerJoined, RoomState};
    let env = env(backend).await;
    let q = quiz(&unique("rejoin"), 1, 60_000);
    let created = room(&env, &q, &settings()).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let (pid, sess, secret) = (random_hex(8), random_hex(32), random_hex(32));
    let first = env
        .game
        .room_join(&code, &pid, &sess, &secret, "Blaze99", 3, None)
        .await
        .expect("first join");
    assert_eq!(first.total_count, 1);
    let before = join_footprint(&env, &code).await;
    let raw_log = |events: Vec<(u64, String, ServerEvent)>| -> Vec<String> {
        events.into_iter().map(|(_, raw, _)| raw).collect()
    };
    let log_before = raw_log(log(&env, &code).await);
    for _ in 0..3 {
        let again = env
            .game
            .room_join(&code, &pid, &sess, &secret, "Blaze99", 3, None)
            .await
            .expect("a repeated join is acknowledged");
        assert_eq!(again, first, "the same ack");
    }
    assert_eq!(join_footprint(&env, &code).await, before, "nothing written");
    assert_eq!(
        raw_log(log(&env, &code).await),
        log_before,
        "nothing published"
    );

    // mismatches keep the usual errors
    assert_eq!(
        refusal(
            env.game
                .room_join(&code, &pid, &random_hex(32), &secret, "Blaze99", 3, None)
                .await
        ),
        ErrorCode::NameTaken,
        "another session token with the same playerId and name"
    );
    assert_eq!(
        refusal(
            env.game
                .room_join(&code, &pid, &random_hex(32), &secret, "Other", 3, None)
                .await
        ),
        ErrorCode::BadPayload,
        "another session token with the same playerId"
    );
    assert_eq!(
        refusal(
            env.game
                .room_join(&code, &pid, &sess, &secret, "Someone else", 3, None)
                .await
        ),
        ErrorCode::BadPayload,
        "the same ids with another name"
    );
    assert_eq!(
        refusal(
            env.game
                .room_join(
                    &code,
                    &random_hex(8),
                    &random_hex(32),
                    &random_hex(32),
                    "BLAZE99",
                    0,
                    None
                )
                .await
        ),
        ErrorCode::NameTaken,
        "another player with the same name"
    );
    assert_eq!(
        join_footprint(&env, &code).await,
        before,
        "refusals write nothing"
    );

    // exactly one announcement of Blaze99: a second player joins, the pending batch is flushed
    let other = env.game.join(&code, "Ada", 1, None).await.unwrap();
    assert_eq!(other.total_count, 2);
    if let Some(flush) = timers(&env, &code)
        .await
        .into_iter()
        .rfind(|t| t.kind == TimerKind::LobbyFlush)
    {
        fire(&env, &flush).await;
    }
    let joined: Vec<PlayerJoined> = log(&env, &code)
        .await
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            ServerEvent::PlayerJoined(j) => Some(j),
            _ => None,
        })
        .collect();
    assert_eq!(joined.iter().map(|j| j.joined_count).sum::<u32>(), 2);
    assert_eq!(
        joined
            .iter()
            .flat_map(|j| &j.players)
            .filter(|p| p.id == pid)
            .count(),
        1,
        "Blaze99 announced once: {joined:?}"
    );
    assert_eq!(joined.last().unwrap().total_count, 2);

    // a retry after the start (late join off) is still acknowledged, as the room is now
    env.game.start(&code, &host).await.expect("start");
    let late = env
        .game
        .room_join(&code, &pid, &sess, &secret, "Blaze99", 3, None)
        .await
        .expect("a repeated join after the start");
    assert_eq!(
        (&late.player_id, &late.session_token, &late.answer_secret),
        (&first.player_id, &first.session_token, &first.answer_secret)
    );
    assert_eq!(late.total_count, 2);
    assert_ne!(late.state, RoomState::Lobby);
    assert!(late.seq > first.seq);

    // a retry after a kick is `kicked`
    env.game.kick(&code, &host, &pid).await.expect("kick");
    assert_eq!(
        refusal(
            env.game
                .room_join(&code, &pid, &sess, &secret, "Blaze99", 3, None)
                .await
        ),
        ErrorCode::Kicked
    );
}
