//! Scoring at the reveal, in steps: `answer_submit` only records the answer (`idx:serverMs:remainingMs`);
//! the reveal scores a room of up to 500 players in its own call and a bigger one in `score` timer
//! fires (a few ms of Redis each), then publishes the leaderboard. `results` answers the last scored
//! question and the three before it, whatever is open now: points, totals and streaks as after that
//! question, ranks among the room as it was when the next one had been scored. Checked here against
//! totals the test computes itself from the stored server times, in a room of 2,600 players (six scoring
//! steps), with a late join and a leave while a question is being scored.
//! Standalone only: the cluster runs the same functions, and 2,600 joins twice would only slow the suite.

use crate::common::*;
use ringside_lua::{GameError, TimerKind};
use ringside_protocol::events::{AnswerResult, RoomSettings, ServerEvent};
use ringside_protocol::{keys, ErrorCode};
use ringside_testkit::Backend;
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinSet;

const PLAYERS: usize = 2_600;
const QUESTIONS: usize = 3;
const TIME_MS: u32 = 60_000;

/// What player i does on question q: answer right, wrong, or not at all (never everyone, so no early
/// reveal; enough right answers in a row for the streak multiplier).
fn choice(i: usize, q: usize) -> Option<bool> {
    match (i + q) % 7 {
        0 => None,
        1 | 2 => Some(false),
        _ => Some(true),
    }
}

/// Fires the room's latest `score` entry like the engine: again while the reply says `why: "more"`.
/// Returns the number of fires.
async fn score_until_done(env: &Env, code: &str) -> usize {
    let entry = latest_timer(env, code, TimerKind::Score).await;
    let mut fires = 0;
    loop {
        let out = env.game.fire(&entry).await.expect("timer_fire score");
        fires += 1;
        assert!(out.fired, "{out:?}");
        match out.why.as_deref() {
            None => return fires,
            Some("more") => assert_eq!(out.retry_after(), Some(Duration::from_millis(1))),
            other => panic!("score step: {other:?}"),
        }
        assert!(fires < 100, "scoring does not end");
    }
}

fn refusal<T: std::fmt::Debug>(r: Result<T, GameError>) -> ErrorCode {
    match r {
        Err(e @ GameError::Refused { .. }) => e.code(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn results_of(env: &Env, code: &str, q: u32, ids: &[String]) -> Vec<Option<AnswerResult>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(1000) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(env.game.results(code, q, &refs).await.expect("results"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_room_is_scored_in_steps_and_every_result_is_exact_and_kept() {
    let env = env(Backend::Standalone).await;
    let settings = RoomSettings {
        late_join: Some(true),
        wrong_penalty: Some(100),
        ..settings()
    };
    let created = room(&env, &quiz(&unique("steps"), QUESTIONS, TIME_MS), &settings).await;
    let (code, host) = (created.game_code.clone(), created.host_token.clone());
    let mut tasks = JoinSet::new();
    for t in 0..16 {
        let (game, code) = (env.game.clone(), code.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in (t..PLAYERS).step_by(16) {
                let ack = game
                    .join(&code, &format!("p{i}"), 0, None)
                    .await
                    .expect("join");
                ids.push((i, ack.player_id));
            }
            ids
        });
    }
    let mut ids = vec![String::new(); PLAYERS];
    while let Some(r) = tasks.join_next().await {
        for (i, id) in r.unwrap() {
            ids[i] = id;
        }
    }
    env.game.start(&code, &host).await.unwrap();
    assert!(
        fire_latest(&env, &code, TimerKind::CountdownEnd)
            .await
            .fired
    );

    // the test's own books: total and streak per player id
    let mut total: HashMap<String, i64> = ids.iter().map(|id| (id.clone(), 0)).collect();
    let mut streak: HashMap<String, u32> = HashMap::new();
    let mut kept: Vec<HashMap<String, AnswerResult>> = Vec::new();
    let mut totals_after: Vec<HashMap<String, i64>> = Vec::new();
    let mut members = ids.clone();
    let mut late = None;
    for q in 0..QUESTIONS {
        let qi = q as u32;
        if q > 0 {
            let out = fire_latest(&env, &code, TimerKind::NextQuestion).await;
            assert!(out.fired, "{out:?}");
        }
        let mut set = JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let Some(right) = choice(i, q) else { continue };
            if !members.contains(id) {
                continue;
            }
            let answer = if right { correct(q) } else { wrong(q) } as u32;
            let (game, code, id) = (env.game.clone(), code.clone(), id.clone());
            set.spawn(async move { game.answer_submit(&code, &id, qi, answer).await });
        }
        while let Some(r) = set.join_next().await {
            assert!(r.unwrap().expect("answer accepted").received);
        }
        // what each answer scores, from the stored server time (remaining ms at the answer)
        let mut conn = env.conn.clone();
        let stored: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{}:q:{q}", keys::room(&code)))
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut points: HashMap<String, i64> = HashMap::new();
        for id in &members {
            let (pts, st) = match stored.get(&format!("a:{id}")) {
                None => (0, 0),
                Some(v) => {
                    let f: Vec<i64> = v.split(':').map(|x| x.parse().unwrap()).collect();
                    assert_eq!(f.len(), 3, "stored unscored as idx:ms:remainingMs: {v}");
                    if f[0] as usize == correct(q) {
                        let bonus = (500 * f[2].max(0) / i64::from(TIME_MS)).clamp(0, 500);
                        let st = streak.get(id).copied().unwrap_or(0) + 1;
                        let mult = if st >= 3 { 1.5 } else { 1.0 };
                        (((1000 + bonus) as f64 * mult).floor() as i64, st)
                    } else {
                        (-100, 0)
                    }
                }
            };
            points.insert(id.clone(), pts);
            streak.insert(id.clone(), st);
        }
        // nothing scored before the reveal: the leaderboard still holds the totals after q-1
        if q == 1 {
            let snap = env.game.snapshot(&code, Some(&members[1])).await.unwrap();
            assert_eq!(snap.score, total[&members[1]], "no unrevealed points");
        }

        // answers per option, as the reveal must count them
        let mut dist = vec![0u32; 4];
        for (f, v) in &stored {
            if f.starts_with("a:") {
                dist[v.split(':').next().unwrap().parse::<usize>().unwrap()] += 1;
            }
        }
        env.game.skip(&code, &host, None).await.expect("skip");
        // the reveal is out at once (the distribution was counted as answers came in); 2,600 players:
        // the reveal scored the first step only, the leaderboard waits for the rest
        match log(&env, &code).await.last() {
            Some((_, _, ServerEvent::QuestionReveal(r))) => {
                assert_eq!(r.q_index, qi);
                assert!(r.skipped);
                assert_eq!(r.distribution, dist, "q{q} distribution");
                assert_eq!(r.answered_count, dist.iter().sum::<u32>());
                assert_eq!(r.total_count as usize, PLAYERS, "the room at the reveal");
            }
            other => panic!("expected the reveal, got {other:?}"),
        }
        assert_eq!(
            refusal(env.game.results(&code, qi, &[members[0].as_str()]).await),
            ErrorCode::WrongState
        );
        if q == 1 {
            // a late join and a leave while the question is being scored
            let joined = env.game.join(&code, "late one", 0, None).await.unwrap();
            env.game.leave(&code, &members[2]).await.unwrap();
            let gone = members.remove(2);
            total.remove(&gone);
            total.insert(joined.player_id.clone(), 0);
            late = Some(joined.player_id);
        }
        let fires = score_until_done(&env, &code).await;
        assert!(fires >= 2, "{fires} score fires for {PLAYERS} players");
        assert!(matches!(
            log(&env, &code).await.last(),
            Some((_, _, ServerEvent::Leaderboard(l))) if l.q_index == qi
        ));
        let lb = last(&env, &code, |e| match e {
            ServerEvent::Leaderboard(l) if l.q_index == qi => Some(l.clone()),
            _ => None,
        })
        .await;
        for id in &members {
            *total.get_mut(id).unwrap() += points[id];
        }
        // every result, exactly
        let res = results_of(&env, &code, qi, &members).await;
        let mut mine = HashMap::new();
        for (id, r) in members.iter().zip(res) {
            let r = r.expect("a player");
            let t = total[id];
            let higher = total.values().filter(|v| **v > t).count() as u32;
            assert_eq!(r.points, points[id], "q{q} points of {id}");
            assert_eq!(r.total, t, "q{q} total of {id}");
            assert_eq!(r.streak, streak[id], "q{q} streak of {id}");
            assert_eq!(r.rank, higher + 1, "q{q} rank of {id}");
            assert_eq!(r.correct, r.answer_idx == Some(correct(q) as u32));
            mine.insert(id.clone(), r);
        }
        for e in &lb.rankings {
            assert_eq!((e.score, e.rank), (total[&e.id], mine[&e.id].rank), "{e:?}");
        }
        kept.push(mine);
        totals_after.push(total.clone());
        if let Some(l) = &late {
            // the late joiner is on the new leaderboard, the leaver is not
            let mut conn = env.conn.clone();
            let lbk = format!("{}:lb", keys::room(&code));
            let card: u64 = redis::cmd("ZCARD")
                .arg(&lbk)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(card as usize, members.len() + 1);
            let s: Option<f64> = redis::cmd("ZSCORE")
                .arg(&lbk)
                .arg(l)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(s, Some(0.0));
        }
    }
    // results of every question while later ones are scored: the same points, totals and streaks; the
    // rank among the room as it was when the next question had been scored (here: after the join and
    // the leave of question 1), the late joiner at 0 before they joined
    let room: Vec<&String> = total.keys().collect();
    for (q, mine) in kept.iter().enumerate() {
        let ids: Vec<String> = mine
            .keys()
            .filter(|id| total.contains_key(*id))
            .cloned()
            .collect();
        let res = results_of(&env, &code, q as u32, &ids).await;
        let after = &totals_after[q];
        for (id, r) in ids.iter().zip(res) {
            let r = r.expect("a player");
            let t = after[id];
            let higher = room
                .iter()
                .filter(|p| after.get(**p).copied().unwrap_or(0) > t)
                .count() as u32;
            let want = AnswerResult {
                rank: higher + 1,
                ..mine[id].clone()
            };
            assert_eq!(r, want, "q{q} again");
        }
    }
    let out = fire_latest(&env, &code, TimerKind::NextQuestion).await;
    assert_eq!(out.kind.as_deref(), Some("game_end"));
    let (mut offset, mut exported) = (Some(0), 0);
    while let Some(o) = offset {
        let page = env.game.export(&code, o, 1000).await.expect("export");
        for p in &page.players {
            assert_eq!(
                p.score, total[&p.player_id],
                "exported total of {}",
                p.player_id
            );
            exported += 1;
        }
        offset = page.next;
    }
    assert_eq!(exported, total.len());
}
