//! End to end with the real `ringside` Functions library: rooms created, joined and started through
//! `ringside_lua::Game`, then driven only by the engine — lobby flush, countdown, every question's end
//! and reveal, the next question after the pause, game end — on both backends. A question revealed early
//! (everyone answered) or skipped by the host leaves a `question_end` schedule behind that must fire as
//! a harmless no-op. Malformed schedules end in the dead-letter stream.

use std::collections::HashMap;
use std::time::Duration;

use ringside_engine::{Config, Engine};
use ringside_lua::{ensure_loaded, Game, Question, Quiz, Redis};
use ringside_protocol::events::RoomSettings;
use ringside_protocol::keys;
use ringside_testkit::{Backend, TestRedis};
use std::sync::atomic::Ordering::Relaxed;

const QUESTIONS: u32 = 3;

fn quiz(id: &str) -> Quiz {
    Quiz {
        id: id.to_owned(),
        title: "engine e2e".to_owned(),
        questions: (0..QUESTIONS)
            .map(|i| Question {
                text: format!("Q{i}?"),
                options: (0..4).map(|k| format!("o{i}{k}")).collect(),
                correct: 1,
                explanation: None,
                time_limit_ms: 1000,
                points: 1000,
                image_url: None,
            })
            .collect(),
    }
}

/// (event name, qIndex if any, joinedCount if any) of every logged room event, in seq order.
async fn events(conn: &mut Redis, code: &str) -> Vec<(String, Option<u64>, Option<u64>)> {
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(keys::room_log(code))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    let mut last_seq = 0;
    entries
        .into_iter()
        .map(|(_, f)| {
            let v: serde_json::Value = serde_json::from_str(&f[1]).unwrap();
            let seq = v["seq"].as_u64().unwrap();
            assert!(seq > last_seq, "{code}: seq out of order");
            last_seq = seq;
            (
                v["event"].as_str().unwrap().to_owned(),
                v["data"]["qIndex"].as_u64(),
                v["data"]["joinedCount"].as_u64(),
            )
        })
        .collect()
}

/// The kinds of the schedules still in the room's timer stream.
async fn schedules_left(conn: &mut Redis, code: &str) -> Vec<String> {
    let left: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(keys::room_timers(code))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    left.iter()
        .filter(|(_, f)| f.windows(2).any(|w| w[0] == "room" && w[1] == *code))
        .map(|(_, f)| {
            f.windows(2)
                .find(|w| w[0] == "kind")
                .map(|w| w[1].clone())
                .unwrap_or_default()
        })
        .collect()
}

fn count(evs: &[(String, Option<u64>, Option<u64>)], name: &str, q: Option<u64>) -> usize {
    evs.iter()
        .filter(|(n, qi, _)| n == name && (q.is_none() || *qi == q))
        .count()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    /// Nobody answers: every question ends by its timer.
    Timers,
    /// Every player answers question 0: it is revealed at once; its question_end fires stale.
    EarlyReveal,
    /// The host skips question 1; its question_end fires stale.
    Skip,
}

async fn the_engine_drives_whole_games(backend: Backend) {
    let redis = TestRedis::start(backend).unwrap();
    let mut conn = Redis::connect(&redis.urls(), redis.is_cluster())
        .await
        .unwrap();
    ensure_loaded(&mut conn).await.unwrap();
    let game = Game::new(conn.clone());
    let mut config = Config::for_redis(redis.urls(), redis.is_cluster());
    config.instance_id = "e2e".to_owned();
    // fewer score slots than rooms revealed early at once: the held-back score fires must all run
    config.max_score_in_flight = 1;
    let engine = Engine::start(config)
        .await
        .expect("engine starts (library version checked)");

    game.store_quiz(&quiz("e2e")).await.unwrap();
    let settings = RoomSettings {
        countdown_ms: Some(500),
        reveal_pause_ms: Some(300),
        ..Default::default()
    };
    let plans = [Plan::Timers, Plan::EarlyReveal, Plan::Skip];
    let mut rooms = Vec::new();
    for i in 0..24 {
        let created = game
            .create_room("e2e", Some("Host"), &settings, "")
            .await
            .unwrap();
        let mut players = Vec::new();
        for k in 0..3 {
            players.push(
                game.join(&created.game_code, &format!("p{k}"), 1, None)
                    .await
                    .unwrap()
                    .player_id,
            );
        }
        rooms.push((created, players, plans[i % plans.len()]));
    }
    // Let the lobby flushes fire, then start every game.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (created, _, _) in &rooms {
        game.start(&created.game_code, &created.host_token)
            .await
            .unwrap();
    }

    // Act on questions as they open.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut done: HashMap<String, bool> = HashMap::new();
    let mut acted: HashMap<String, bool> = HashMap::new();
    loop {
        for (created, players, plan) in &rooms {
            let code = &created.game_code;
            let evs = events(&mut conn, code).await;
            if count(&evs, "game:end", None) > 0 {
                done.insert(code.clone(), true);
                continue;
            }
            if acted.get(code).copied().unwrap_or(false) {
                continue;
            }
            match plan {
                Plan::EarlyReveal if count(&evs, "game:question:show", Some(0)) == 1 => {
                    for p in players {
                        game.answer_submit(code, p, 0, 1).await.unwrap();
                    }
                    acted.insert(code.clone(), true);
                }
                Plan::Skip if count(&evs, "game:question:show", Some(1)) == 1 => {
                    game.skip(code, &created.host_token, None).await.unwrap();
                    acted.insert(code.clone(), true);
                }
                _ => {}
            }
        }
        if done.len() == rooms.len() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done.len(), rooms.len(), "not every game ended");

    for (created, _, plan) in &rooms {
        let code = &created.game_code;
        let evs = events(&mut conn, code).await;
        let joined: u64 = evs
            .iter()
            .filter(|(n, _, _)| n == "room:player:joined")
            .filter_map(|e| e.2)
            .sum();
        assert_eq!(
            joined, 3,
            "{code}: lobby joins announced {joined} times, want 3: {evs:?}"
        );
        assert_eq!(count(&evs, "game:countdown", None), 1, "{code}: {evs:?}");
        for q in 0..u64::from(QUESTIONS) {
            assert_eq!(
                count(&evs, "game:question:show", Some(q)),
                1,
                "{code} ({plan:?}) q{q}: {evs:?}"
            );
            assert_eq!(
                count(&evs, "game:question:reveal", Some(q)),
                1,
                "{code} ({plan:?}) q{q}: {evs:?}"
            );
        }
        assert_eq!(count(&evs, "game:end", None), 1, "{code}: {evs:?}");
        // Everything but the abandon check written at create (due 30 min later; stale once the game
        // has ended) and the cleanup (due 300 s after the end) is fired and acknowledged; the last
        // progress ticker stops at its next tick after the reveal, so give it a moment.
        let mut mine = Vec::new();
        for _ in 0..200 {
            mine = schedules_left(&mut conn, code).await;
            if mine == ["abandon", "cleanup"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            mine,
            vec!["abandon".to_owned(), "cleanup".to_owned()],
            "{code}: schedules left {mine:?}"
        );
    }
    // Malformed schedules: an unknown kind (the function refuses it with `bad_timer`) and one without
    // a due time (the engine refuses it) both end in the partition's dead-letter stream, at once.
    let code = &rooms[0].0.game_code;
    let stream = keys::room_timers(code);
    let bogus: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("room")
        .arg(code)
        .arg("kind")
        .arg("bogus")
        .arg("q")
        .arg(0)
        .arg("gen")
        .arg(1)
        .arg("due")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    let undated: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("room")
        .arg(code)
        .arg("kind")
        .arg("cleanup")
        .arg("q")
        .arg(0)
        .arg("gen")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let dead_key = format!("{stream}:dead");
    let mut dead: Vec<(String, Vec<String>)> = Vec::new();
    for _ in 0..300 {
        dead = redis::cmd("XRANGE")
            .arg(&dead_key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        if dead.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<&str> = dead
        .iter()
        .filter_map(|(_, f)| f.windows(2).find(|w| w[0] == "id").map(|w| w[1].as_str()))
        .collect();
    assert!(
        ids.contains(&bogus.as_str()) && ids.contains(&undated.as_str()),
        "dead letters: {dead:?}"
    );
    assert!(format!("{dead:?}").contains("bad_timer"), "{dead:?}");
    let left: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg(&bogus)
        .arg(&bogus)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "the bad entry is still in the stream");

    let m = engine.metrics();
    let stale = m.timers_stale_total.load(Relaxed);
    eprintln!(
        "{backend}: fired {} stale {stale} late {} errors {}",
        m.timers_fired_total.load(Relaxed),
        m.timers_late_total.load(Relaxed),
        m.redis_errors_total.load(Relaxed)
    );
    // At least the superseded question_end of each early-revealed and skipped question.
    assert!(stale >= 16, "stale fires: {stale}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_drives_whole_games_standalone() {
    the_engine_drives_whole_games(Backend::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_drives_whole_games_cluster() {
    the_engine_drives_whole_games(Backend::Cluster).await;
}
