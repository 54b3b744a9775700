//! Points: a full 50-player game scored exactly as a hand-computed table (points, penalties, streaks,
//! ranks), and the time bonus linear in the server-measured remaining time.

use crate::common::*;
use ringside_lua::TimerKind;
use ringside_protocol::events::{RoomSettings, ServerEvent};
use ringside_protocol::ErrorCode;
use ringside_testkit::Backend;
use std::time::Duration;
use tokio::task::JoinSet;

on_both_backends!(
    a_full_game_of_50_players_scores_exactly_the_hand_table,
    the_time_bonus_is_linear_in_the_server_measured_remaining_time,
);

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
    let mut per_question = Vec::new();
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
        // Question 1 was revealed inside the last answer_submit: that snapshot is taken after its
        // reveal and carries it (a reload mid-reveal shows it), so only the others are checked for leaks.
        let raw_snap = serde_json::to_string(&snap).unwrap();
        if qi == 1 {
            assert!(raw_snap.contains(r#""state":"REVEAL""#), "{raw_snap}");
            assert!(raw_snap.contains(r#""reveal":{"#), "{raw_snap}");
        } else {
            replies.push((qi, raw_snap));
        }
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
        per_question.push(res.clone());
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
    // results of earlier questions stay as they were after each question, while later ones are open
    // and after (a slow edge, or revealPauseMs 0, fetches them late)
    for (qi, res) in per_question.iter().enumerate() {
        assert_eq!(
            &results_by_id(&env, &code, qi as u32, &ids).await,
            res,
            "q{qi}"
        );
    }

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
