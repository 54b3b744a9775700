//! The game, played through the library on real Redis: every test runs on a standalone server and on a
//! 3-primary Redis Cluster. No assertion depends on how long something took; waits are generous and
//! deadlines are read from the server clock.

use crate::common::*;
use ringside_lua::{GameError, Recovery, TimerKind};
use ringside_protocol::events::{AnswerResult, RoomSettings, ServerEvent};
use ringside_protocol::{keys, ErrorCode};
use ringside_testkit::Backend;
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinSet;

on_both_backends!(
    a_full_game_of_50_players_scores_exactly_the_hand_table,
    two_hundred_concurrent_submissions_store_exactly_one_answer,
    late_past_and_future_answers_are_refused_with_their_codes,
    published_events_equal_the_log_and_hide_the_answer_until_the_reveal,
    the_third_answer_event_is_rate_limited_and_five_violations_kick,
    pause_and_resume_move_the_deadline_by_the_paused_time_and_extend_adds_time,
    duplicate_stale_and_superseded_timer_fires_change_nothing,
    rooms_land_on_every_primary_and_their_games_complete,
    lobby_rules_names_capacity_lock_kick_and_host_rights,
    joins_are_announced_at_most_once_per_second_per_room,
    reconnect_returns_missed_events_or_a_snapshot,
    the_time_bonus_is_linear_in_the_server_measured_remaining_time,
    progress_is_published_at_most_once_per_second_slot_and_only_on_change,
    the_loader_refuses_other_library_versions,
    a_repeated_join_with_the_same_ids_returns_the_same_ack_and_changes_nothing,
    an_ended_game_is_announced_once_in_the_results_stream_and_exports_by_rank,
    a_room_about_to_expire_unfinished_is_ended_as_abandoned,
);

fn refusal<T: std::fmt::Debug>(r: Result<T, GameError>) -> ErrorCode {
    match r {
        Err(e @ GameError::Refused { .. }) => e.code(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn open_first_question(env: &Env, code: &str, host: &str) {
    env.game.start(code, host).await.expect("start");
    let out = fire_latest(env, code, TimerKind::CountdownEnd).await;
    assert!(out.fired, "{out:?}");
}

async fn results_by_id(
    env: &Env,
    code: &str,
    q: u32,
    ids: &[String],
) -> HashMap<String, AnswerResult> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let res = env.game.results(code, q, &refs).await.expect("results");
    ids.iter()
        .cloned()
        .zip(res.into_iter().map(|r| r.expect("a player of the room")))
        .collect()
}

// ───────────────────────────── the hand table ─────────────────────────────

/// One row per answer pattern (c = correct, w = wrong, - = no answer), 5 players each.
/// Settings: maxTimeBonus 0 (so points do not depend on timing), wrongPenalty 50, streak ×1.5 from a
/// streak of 3 *including the current answer*. q0 and q1 are worth 1000, q2 2000 (the question's
/// `points`). Only "ccc" reaches a streak of 3, on q2: floor(2000 × 1.5) = 3000.
/// Final ranks: 1 + the number of players with a strictly higher total (5 players per row).
struct Row {
    pattern: &'static str,
    points: [i64; 3],
    streaks: [u32; 3],
    total: i64,
    rank: u32,
}

const TABLE: [Row; 10] = [
    Row {
        pattern: "ccc",
        points: [1000, 1000, 3000],
        streaks: [1, 2, 3],
        total: 5000,
        rank: 1,
    },
    Row {
        pattern: "-cc",
        points: [0, 1000, 2000],
        streaks: [0, 1, 2],
        total: 3000,
        rank: 6,
    },
    Row {
        pattern: "cwc",
        points: [1000, -50, 2000],
        streaks: [1, 0, 1],
        total: 2950,
        rank: 11,
    },
    Row {
        pattern: "wcc",
        points: [-50, 1000, 2000],
        streaks: [0, 1, 2],
        total: 2950,
        rank: 11,
    },
    Row {
        pattern: "cc-",
        points: [1000, 1000, 0],
        streaks: [1, 2, 0],
        total: 2000,
        rank: 21,
    },
    Row {
        pattern: "ccw",
        points: [1000, 1000, -50],
        streaks: [1, 2, 0],
        total: 1950,
        rank: 26,
    },
    Row {
        pattern: "wc-",
        points: [-50, 1000, 0],
        streaks: [0, 1, 0],
        total: 950,
        rank: 31,
    },
    Row {
        pattern: "-cw",
        points: [0, 1000, -50],
        streaks: [0, 1, 0],
        total: 950,
        rank: 31,
    },
    Row {
        pattern: "-w-",
        points: [0, -50, 0],
        streaks: [0, 0, 0],
        total: -50,
        rank: 41,
    },
    Row {
        pattern: "www",
        points: [-50, -50, -50],
        streaks: [0, 0, 0],
        total: -150,
        rank: 46,
    },
];

async fn a_full_game_of_50_players_scores_exactly_the_hand_table(backend: Backend) {
    let env = env(backend).await;
    let mut q = quiz(&unique("full"), 3, 8000);
    q.questions[2].points = 2000;
    let settings = RoomSettings {
        max_time_bonus: Some(0),
        wrong_penalty: Some(50),
        ..settings()
    };
    let created = room(&env, &q, &settings).await;
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 50).await;
    let ids: Vec<String> = players.iter().map(|p| p.player_id.clone()).collect();
    let row_of = |i: usize| &TABLE[i % TABLE.len()];
    // every reply a player or the host could see before a reveal, scanned for leaks at the end
    let mut replies: Vec<(u32, String)> = Vec::new();

    open_first_question(&env, &code, &created.host_token).await;
    for qi in 0..3u32 {
        if qi > 0 {
            let out = fire_latest(&env, &code, TimerKind::NextQuestion).await;
            assert!(
                out.fired && out.kind.as_deref() == Some("next_question"),
                "{out:?}"
            );
        }
        let show = last(&env, &code, |e| match e {
            ServerEvent::QuestionShow(s) if s.q_index == qi => Some(s.clone()),
            _ => None,
        })
        .await;
        assert_eq!(show.answers.len(), 4);
        // results are refused while the question is open
        assert_eq!(
            refusal(env.game.results(&code, qi, &[ids[0].as_str()]).await),
            ErrorCode::WrongState
        );
        // everyone answering this question, concurrently
        let mut set = JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let answer = match row_of(i).pattern.as_bytes()[qi as usize] {
                b'c' => correct(qi as usize),
                b'w' => wrong(qi as usize),
                _ => continue,
            };
            let (game, code, id) = (env.game.clone(), code.clone(), id.clone());
            set.spawn(async move { game.answer_submit(&code, &id, qi, answer as u32).await });
        }
        while let Some(r) = set.join_next().await {
            let ack = r.unwrap().expect("answer accepted");
            assert!(ack.received);
            assert_eq!(ack.q_index, qi);
            replies.push((qi, serde_json::to_string(&ack).unwrap()));
        }
        let snap = env
            .game
            .snapshot(&code, Some(&ids[0]))
            .await
            .expect("snapshot");
        replies.push((qi, serde_json::to_string(&snap).unwrap()));
        match qi {
            // some did not answer: the question ends by its timer (after endsAt + grace)
            0 => {
                assert_eq!(snap.rank, 0, "no rank while a question is open");
                let out = fire_latest(&env, &code, TimerKind::QuestionEnd).await;
                assert!(out.fired, "{out:?}");
            }
            // everyone answered: revealed early inside answer_submit; the timer is then stale
            1 => {
                let out = fire_latest(&env, &code, TimerKind::QuestionEnd).await;
                assert_eq!((out.fired, out.why.as_deref()), (false, Some("stale")));
            }
            // the host skips: the answers so far are scored
            _ => env
                .game
                .skip(&code, &created.host_token, Some("test"))
                .await
                .expect("skip"),
        }
        let reveal = last(&env, &code, |e| match e {
            ServerEvent::QuestionReveal(r) if r.q_index == qi => Some(r.clone()),
            _ => None,
        })
        .await;
        assert_eq!(reveal.correct_index as usize, correct(qi as usize));
        assert_eq!(reveal.skipped, qi == 2);
        assert_eq!(reveal.total_count, 50);
        assert_eq!(
            reveal.explanation_text.as_deref(),
            Some(secret_explanation(qi as usize).as_str())
        );
        let answered = (0..50)
            .filter(|i| row_of(*i).pattern.as_bytes()[qi as usize] != b'-')
            .count() as u32;
        let right = (0..50)
            .filter(|i| row_of(*i).pattern.as_bytes()[qi as usize] == b'c')
            .count() as u32;
        assert_eq!(reveal.answered_count, answered);
        assert_eq!(reveal.distribution.iter().sum::<u32>(), answered);
        assert_eq!(reveal.distribution[correct(qi as usize)], right);

        // each player's own result equals the table
        let res = results_by_id(&env, &code, qi, &ids).await;
        for (i, id) in ids.iter().enumerate() {
            let row = row_of(i);
            let r = &res[id];
            let qn = qi as usize;
            let total: i64 = row.points[..=qn].iter().sum();
            assert_eq!(r.points, row.points[qn], "{} q{qi} points", row.pattern);
            assert_eq!(r.total, total, "{} q{qi} total", row.pattern);
            assert_eq!(r.streak, row.streaks[qn], "{} q{qi} streak", row.pattern);
            assert_eq!(r.correct, row.pattern.as_bytes()[qn] == b'c');
            assert_eq!(r.answer_idx.is_some(), row.pattern.as_bytes()[qn] != b'-');
            let higher = (0..50)
                .filter(|j| row_of(*j).points[..=qn].iter().sum::<i64>() > total)
                .count() as u32;
            assert_eq!(r.rank, higher + 1, "{} q{qi} rank", row.pattern);
            assert_eq!(r.total_players, 50);
            if qi == 2 {
                assert_eq!(
                    (r.total, r.rank),
                    (row.total, row.rank),
                    "{} final",
                    row.pattern
                );
            }
        }
        // the leaderboard of this question: top 10, consistent with the results
        let lb = last(&env, &code, |e| match e {
            ServerEvent::Leaderboard(l) if l.q_index == qi => Some(l.clone()),
            _ => None,
        })
        .await;
        assert_eq!(lb.rankings.len(), 10);
        for e in &lb.rankings {
            let r = &res[&e.id];
            assert_eq!(
                (e.score, e.delta, e.streak, e.rank),
                (r.total, r.points, r.streak, r.rank),
                "{e:?}"
            );
        }
    }
    // results of an earlier question are gone once a later one opened
    assert_eq!(
        refusal(env.game.results(&code, 0, &[ids[0].as_str()]).await),
        ErrorCode::WrongQuestion
    );

    let out = fire_latest(&env, &code, TimerKind::NextQuestion).await;
    assert_eq!((out.fired, out.kind.as_deref()), (true, Some("game_end")));
    let end = last(&env, &code, |e| match e {
        ServerEvent::GameEnd(g) => Some(g.clone()),
        _ => None,
    })
    .await;
    assert_eq!(end.room_id, created.room_id);
    assert_eq!(end.total_players, 50);
    let scores: Vec<(i64, u32)> = end
        .final_rankings
        .iter()
        .map(|r| (r.score, r.rank))
        .collect();
    assert_eq!(scores, [[(5000, 1); 5], [(3000, 6); 5]].concat());
    assert_eq!(
        refusal(env.game.answer_submit(&code, &ids[0], 2, 0).await),
        ErrorCode::LateAnswer
    );

    // nothing before a question's reveal carried its answer: not the index, not the explanation
    let events = log(&env, &code).await;
    for qi in 0..3u32 {
        let reveal_seq = events
            .iter()
            .find(|(_, _, e)| matches!(e, ServerEvent::QuestionReveal(r) if r.q_index == qi))
            .map(|(s, _, _)| *s)
            .unwrap();
        for (seq, raw, e) in events.iter().filter(|(s, _, _)| *s < reveal_seq) {
            assert!(
                !raw.contains(&secret_explanation(qi as usize)),
                "seq {seq} leaks q{qi}: {raw}"
            );
            if !matches!(e, ServerEvent::QuestionReveal(_)) {
                assert!(!raw.contains("correct"), "seq {seq} leaks: {raw}");
            }
        }
        for (_, raw) in replies.iter().filter(|(q, _)| *q == qi) {
            assert!(
                !raw.contains("correct") && !raw.contains("EXPLAIN-SECRET"),
                "reply leaks: {raw}"
            );
        }
    }
    let seqs: Vec<u64> = events.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq has no gaps"
    );
}

// ───────────────────────────── anti-cheat ─────────────────────────────

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

/// Reads the room's sharded channel on the node that owns its slot, through a plain connection.
fn subscribe(env: &Env, code: &str) -> redis::Connection {
    let channel = keys::room_channel(code);
    let url = match env.backend {
        Backend::Standalone => env.urls[0].clone(),
        Backend::Cluster => node_of(env, &channel),
    };
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    conn.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(&channel).get_packed_command())
        .unwrap();
    let _confirm = conn.recv_response().unwrap();
    conn
}

/// The URL of the cluster node serving `key`'s slot.
fn node_of(env: &Env, key: &str) -> String {
    let mut c = redis::Client::open(env.urls[0].as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut c)
        .unwrap();
    let slots: Vec<(u16, u16, Vec<redis::Value>)> = {
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        raw.into_iter()
            .map(|v| {
                let redis::Value::Array(items) = v else {
                    panic!("CLUSTER SLOTS")
                };
                let lo: u16 = redis::from_redis_value(items[0].clone()).unwrap();
                let hi: u16 = redis::from_redis_value(items[1].clone()).unwrap();
                (lo, hi, items[2..].to_vec())
            })
            .collect()
    };
    let (_, _, nodes) = slots
        .into_iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .unwrap();
    let redis::Value::Array(primary) = &nodes[0] else {
        panic!("node")
    };
    let host: String = redis::from_redis_value(primary[0].clone()).unwrap();
    let port: u16 = redis::from_redis_value(primary[1].clone()).unwrap();
    format!("redis://{host}:{port}/")
}

fn drain(conn: &mut redis::Connection) -> Vec<String> {
    conn.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut out = Vec::new();
    while let Ok(v) = conn.recv_response() {
        let items: Vec<redis::Value> = match v {
            redis::Value::Array(items) => items,
            redis::Value::Push { data, .. } => data,
            _ => continue,
        };
        let payload: String = redis::from_redis_value(items.last().unwrap().clone()).unwrap();
        out.push(payload);
    }
    out
}

async fn published_events_equal_the_log_and_hide_the_answer_until_the_reveal(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("pub"), 2, 60_000);
    let created = room(&env, &q, &settings()).await;
    let code = created.game_code.clone();
    let mut sub = subscribe(&env, &code);
    let players = join_n(&env, &code, 3).await;
    open_first_question(&env, &code, &created.host_token).await;
    for qi in 0..2u32 {
        if qi == 1 {
            assert!(
                fire_latest(&env, &code, TimerKind::NextQuestion)
                    .await
                    .fired
            );
        }
        for (i, p) in players.iter().enumerate() {
            let answer = if i == 0 {
                correct(qi as usize)
            } else {
                wrong(qi as usize)
            } as u32;
            let ack = env
                .game
                .answer_submit(&code, &p.player_id, qi, answer)
                .await
                .unwrap();
            let text = serde_json::to_string(&ack).unwrap();
            assert!(!text.contains("correct"), "{text}");
        }
    }
    assert!(
        fire_latest(&env, &code, TimerKind::NextQuestion)
            .await
            .fired
    );
    let published = tokio::task::block_in_place(|| drain(&mut sub));
    let logged: Vec<String> = log(&env, &code)
        .await
        .into_iter()
        .map(|(_, raw, _)| raw)
        .collect();
    assert_eq!(
        published, logged,
        "every published message is the logged envelope, byte for byte"
    );
    let mut revealed = 0;
    for raw in &published {
        if raw.contains("\"event\":\"game:question:reveal\"") {
            revealed += 1;
            continue;
        }
        for qi in revealed..2 {
            assert!(!raw.contains(&secret_explanation(qi)), "{raw}");
        }
        assert!(!raw.contains("correctIndex"), "{raw}");
    }
    assert_eq!(revealed, 2);
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

// ───────────────────────────── host controls ─────────────────────────────

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

// ───────────────────────────── cluster placement ─────────────────────────────

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

// ───────────────────────────── lobby ─────────────────────────────

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

// ───────────────────────────── reconnect ─────────────────────────────

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
    assert!(s.current_q.is_none());

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

// ───────────────────────────── scoring ─────────────────────────────

async fn the_time_bonus_is_linear_in_the_server_measured_remaining_time(backend: Backend) {
    let env = env(backend).await;
    let q = quiz(&unique("bonus"), 1, 20_000);
    let created = room(&env, &q, &settings()).await; // maxTimeBonus 500 (default), base 1000
    let code = created.game_code.clone();
    let players = join_n(&env, &code, 7).await; // the 7th does not answer: no early reveal
    open_first_question(&env, &code, &created.host_token).await;
    let show = last(&env, &code, |e| match e {
        ServerEvent::QuestionShow(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(show.time_limit_ms, 20_000);
    for p in &players[..5] {
        env.game
            .answer_submit(&code, &p.player_id, 0, correct(0) as u32)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    env.game
        .answer_submit(&code, &players[5].player_id, 0, wrong(0) as u32)
        .await
        .unwrap();
    env.game
        .skip(&code, &created.host_token, None)
        .await
        .unwrap();
    let ids: Vec<String> = players.iter().map(|p| p.player_id.clone()).collect();
    let res = results_by_id(&env, &code, 0, &ids).await;
    for p in &players[..5] {
        let at = answered_at(&env, &code, 0, &p.player_id).await;
        let remaining = show.ends_at - at;
        let bonus = (500 * remaining / 20_000).min(500);
        assert_eq!(
            res[&p.player_id].points,
            1000 + bonus as i64,
            "answered {remaining} ms before the end"
        );
        assert!(bonus > 0, "answered well before the end: some bonus");
    }
    assert_eq!(
        res[&players[5].player_id].points, 0,
        "wrong: no points (penalty 0)"
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

// ───────────────────────────── loader ─────────────────────────────

async fn the_loader_refuses_other_library_versions(backend: Backend) {
    // its own Redis: replacing the library must not disturb tests sharing the cluster
    let own = ringside_testkit::TestRedis::start(backend).unwrap();
    let mut conn = ringside_lua::Redis::connect(&own.urls(), own.is_cluster())
        .await
        .unwrap();
    assert!(matches!(
        ringside_lua::check_version(&mut conn).await,
        Err(ringside_lua::LoadError::Missing { .. })
    ));
    let fake = |v: u32| {
        format!("#!lua name=ringside\nredis.register_function{{function_name='version', callback=function() return 'ringside {v}' end, flags={{'no-writes'}}}}\n")
    };
    // an older version is replaced
    let load = |src: String| {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(src)
            .clone()
    };
    conn.on_every_primary(&load(fake(0))).await.unwrap();
    let out = ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    assert!(
        matches!(out, ringside_lua::LoadOutcome::Loaded { ref replaced } if replaced.iter().all(|(_, v)| *v == 0)),
        "{out:?}"
    );
    ringside_lua::check_version(&mut conn).await.unwrap();
    assert_eq!(
        ringside_lua::ensure_loaded(&mut conn).await.unwrap(),
        ringside_lua::LoadOutcome::AlreadyCurrent
    );
    // the same version with other code (a forgotten version bump) is replaced too
    conn.on_every_primary(&load(fake(ringside_lua::VERSION)))
        .await
        .unwrap();
    assert!(matches!(
        ringside_lua::ensure_loaded(&mut conn).await.unwrap(),
        ringside_lua::LoadOutcome::Loaded { .. }
    ));
    assert_eq!(
        ringside_lua::ensure_loaded(&mut conn).await.unwrap(),
        ringside_lua::LoadOutcome::AlreadyCurrent
    );
    // a newer one is never downgraded, and this build refuses to run against it
    conn.on_every_primary(&load(fake(ringside_lua::VERSION + 1)))
        .await
        .unwrap();
    let err = ringside_lua::ensure_loaded(&mut conn).await.unwrap_err();
    assert!(
        matches!(err, ringside_lua::LoadError::VersionMismatch { found, .. } if found == ringside_lua::VERSION + 1),
        "{err}"
    );
    assert!(matches!(
        ringside_lua::check_version(&mut conn).await,
        Err(ringside_lua::LoadError::VersionMismatch { .. })
    ));
}

// ───────────────────────────── idempotent join ─────────────────────────────

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

// ───────────────────────────── results for the system of record ─────────────────────────────

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
