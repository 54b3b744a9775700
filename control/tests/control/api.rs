//! The control plane against real PostgreSQL and Redis, over real HTTP: ownership, errors, results kept
//! exactly once (writer killed mid-write, PostgreSQL down at a game's end), history and CSV export.

use std::time::Duration;

use crate::common::*;
use ringside_protocol::keys;
use serde_json::{json, Value};

const FAST: &str = r#"{"countdownMs":0,"revealPauseMs":0,"maxTimeBonus":0}"#;

fn fast() -> Value {
    serde_json::from_str(FAST).unwrap()
}

async fn in_catalog(s: &Stack, id: &str) -> bool {
    let mut c = s.conn.clone();
    redis::cmd("EXISTS")
        .arg(keys::quiz(id))
        .query_async::<i64>(&mut c)
        .await
        .unwrap()
        == 1
}

/// The cheater's sequence, at the API: a player learns a private quiz's id from `quizMeta`, but neither
/// another host's key nor the key-less `room:create` path (the public catalog) can host it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_hosts_a_private_quiz_and_public_ones_are_hostable_by_anyone() {
    let s = stack(Options::default()).await;
    let (_, alice) = s.host("Alice").await;
    let (_, bob) = s.host("Bob").await;
    let (st, v) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&alice),
            Some(json!({"visibility":"private","quiz":quiz_json("secret-final", 3)})),
        )
        .await;
    assert_eq!(
        (st, v["visibility"].as_str()),
        (201, Some("private")),
        "{v}"
    );
    let (st, _) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&alice),
            Some(json!({"visibility":"public","quiz":quiz_json("warmup", 2)})),
        )
        .await;
    assert_eq!(st, 201);
    assert!(
        !in_catalog(&s, "secret-final").await,
        "a private quiz never enters the public catalog"
    );
    assert!(
        in_catalog(&s, "warmup").await,
        "a public quiz is in the catalog"
    );

    // Alice hosts her private quiz; a player of that room reads its quizId
    let (st, room) = s
        .call(
            "POST",
            "/api/rooms",
            Some(&alice),
            Some(json!({"quizId":"secret-final","hostName":"Alice","settings":fast()})),
        )
        .await;
    assert_eq!(st, 201, "{room}");
    let code = room["gameCode"].as_str().unwrap();
    let ack = s.game.join(code, "Mallory", 0, None).await.unwrap();
    assert_eq!(ack.quiz_meta.quiz_id, "secret-final");
    // ... and tries to host it: with another host's key, and without any key (the edge's room:create)
    let (st, v) = s
        .call(
            "POST",
            "/api/rooms",
            Some(&bob),
            Some(json!({"quizId":"secret-final"})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("quiz_not_found")),
        "{v}"
    );
    let e = s
        .game
        .create_room("secret-final", Some("Mallory"), &Default::default(), "")
        .await
        .expect_err("the key-less path reads the public catalog only");
    assert_eq!(e.code(), ringside_protocol::ErrorCode::QuizNotFound);
    // nor can Bob read, list, change or delete it
    let (st, _) = s
        .call("GET", "/api/quizzes/secret-final", Some(&bob), None)
        .await;
    assert_eq!(st, 404);
    let (_, list) = s.call("GET", "/api/quizzes", Some(&bob), None).await;
    let ids: Vec<&str> = list["quizzes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["warmup"], "Bob sees public quizzes only");
    let (st, _) = s
        .call(
            "PUT",
            "/api/quizzes/secret-final",
            Some(&bob),
            Some(json!({"visibility":"public"})),
        )
        .await;
    assert_eq!(st, 404);
    let (st, v) = s
        .call(
            "PUT",
            "/api/quizzes/warmup",
            Some(&bob),
            Some(json!({"visibility":"private"})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "someone else's public quiz"
    );
    // anyone with a key can host a public quiz; the key-less catalog path can too
    let (st, _) = s
        .call(
            "POST",
            "/api/rooms",
            Some(&bob),
            Some(json!({"quizId":"warmup"})),
        )
        .await;
    assert_eq!(st, 201);
    s.game
        .create_room("warmup", None, &Default::default(), "")
        .await
        .expect("public quizzes stay hostable through room:create");
    // the owner sees the body; visibility changes move the quiz in and out of the catalog
    let (_, v) = s
        .call("GET", "/api/quizzes/secret-final", Some(&alice), None)
        .await;
    assert_eq!(v["quiz"]["questions"][0]["correct"], json!(0));
    let (_, v) = s.call("GET", "/api/quizzes/warmup", Some(&bob), None).await;
    assert!(
        v.get("quiz").is_none(),
        "only the owner gets a quiz's body: {v}"
    );
    let (st, v) = s
        .call(
            "PUT",
            "/api/quizzes/warmup",
            Some(&alice),
            Some(json!({"visibility":"private"})),
        )
        .await;
    assert_eq!((st, v["version"].as_i64()), (200, Some(2)));
    assert!(!in_catalog(&s, "warmup").await);
    let (st, _) = s
        .call("DELETE", "/api/quizzes/secret-final", Some(&alice), None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .call("GET", "/api/quizzes/secret-final", Some(&alice), None)
        .await;
    assert_eq!(st, 404);
    // the catalog sync repairs Redis from PostgreSQL (after a Redis restart, say)
    let mut c = s.conn.clone();
    let _: () = redis::cmd("SET")
        .arg(keys::quiz("warmup"))
        .arg("{}")
        .query_async(&mut c)
        .await
        .unwrap();
    ringside_control::catalog::sync(&s.pool, &s.game)
        .await
        .unwrap();
    assert!(
        !in_catalog(&s, "warmup").await,
        "private again after the sync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_with_a_stable_code_and_status() {
    let s = stack(Options {
        max_body: 4096,
        auth_failures_burst: 5,
        ..Options::default()
    })
    .await;
    let (_, key) = s.host("Ada").await;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("?").to_string();
    let (st, v) = s.call("GET", "/api/me", None, None).await;
    assert_eq!((st, code(&v)), (401, "unauthorized".into()));
    let (st, v) = s.call("GET", "/api/me", Some(&key), None).await;
    assert_eq!((st, v["name"].as_str()), (200, Some("Ada")));
    let (st, v) = s.call("GET", "/api/nope", Some(&key), None).await;
    assert_eq!((st, code(&v)), (404, "not_found".into()));
    let (st, v) = s.call("PATCH", "/api/rooms", Some(&key), None).await;
    assert_eq!((st, code(&v)), (405, "method_not_allowed".into()));
    // a quiz with a bad question names the field and the question
    let mut bad = quiz_json("bad-quiz", 3);
    bad["questions"][1]["correct"] = json!(7);
    let (st, v) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&key),
            Some(json!({"quiz": bad})),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "invalid_quiz".into()), "{v}");
    assert_eq!(v["error"]["field"], json!("questions[1].correct"));
    let mut typo = quiz_json("typo-quiz", 1);
    typo["questions"][0]["correctIndex"] = json!(1);
    let (st, v) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&key),
            Some(json!({"quiz": typo})),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "invalid_quiz".into()));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("correctIndex"),
        "{v}"
    );
    let (st, v) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&key),
            Some(json!({"visibility":"secret","quiz":quiz_json("v", 1)})),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "bad_request".into()));
    // over the body limit
    let mut big = quiz_json("big", 1);
    big["title"] = json!("x".repeat(5000));
    let (st, v) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&key),
            Some(json!({"quiz": big})),
        )
        .await;
    assert_eq!((st, code(&v)), (413, "too_large".into()));
    // not JSON
    let resp = s
        .http
        .post(format!("{}/api/quizzes", s.base))
        .bearer_auth(&key)
        .body("quiz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = s
        .http
        .post(format!("{}/api/quizzes", s.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // the same id twice
    let (st, _) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&key),
            Some(json!({"quiz": quiz_json("dup", 1)})),
        )
        .await;
    assert_eq!(st, 201);
    let (st, v) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&key),
            Some(json!({"quiz": quiz_json("dup", 1)})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "quiz_id_taken".into()));
    // an id imported straight into Redis (ringside-quiz import) is taken too
    s.game.store_quiz(&quiz("legacy", 1)).await.unwrap();
    let (st, v) = s
        .call(
            "POST",
            "/api/quizzes",
            Some(&key),
            Some(json!({"quiz": quiz_json("legacy", 1)})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "quiz_id_taken".into()));
    // room settings out of range; unknown quiz
    let (st, v) = s
        .call(
            "POST",
            "/api/rooms",
            Some(&key),
            Some(json!({"quizId":"dup","settings":{"timePerQMs":5}})),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "invalid_settings".into()), "{v}");
    let (st, v) = s
        .call(
            "POST",
            "/api/rooms",
            Some(&key),
            Some(json!({"quizId":"nothing-here"})),
        )
        .await;
    assert_eq!((st, code(&v)), (404, "quiz_not_found".into()));
    let (st, v) = s
        .call("GET", "/api/games/not-a-room", Some(&key), None)
        .await;
    assert_eq!((st, code(&v)), (404, "game_not_found".into()));
    // wrong keys from one address: 401 until the burst is spent, then 429 with retryAfterMs
    let wrong = format!("rsk_{}_{}", "0".repeat(16), "0".repeat(64));
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let (st, v) = s.call("GET", "/api/me", Some(&wrong), None).await;
        statuses.push(st);
        if st == 429 {
            assert_eq!(code(&v), "rate_limited");
            assert!(v["error"]["retryAfterMs"].as_u64().unwrap() > 0);
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    let resp = s
        .http
        .get(format!("{}/api/me", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        429,
        "the address is limited, whatever the key"
    );
    assert!(resp.headers().get("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_game_is_kept_once_listed_newest_first_and_exported_as_csv() {
    let s = stack(Options::default()).await;
    let (_, key) = s.host("Ms. Rivera").await;
    let (_, other) = s.host("Other").await;
    s.quiz(&key, "history", 2).await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let (st, r) = s.room(&key, "history").await;
        assert_eq!(st, 201);
        assert!(
            r["shareUrl"].as_str().unwrap().contains("/play.html?code="),
            "{r}"
        );
        rooms.push(r);
    }
    let last = &rooms[2];
    let names = [
        "Ada",
        "=HYPERLINK(\"http://e\")",
        "+cmd",
        "Bo, the \"Great\"",
    ];
    play(
        &s.game,
        last["gameCode"].as_str().unwrap(),
        last["hostToken"].as_str().unwrap(),
        &names,
        2,
    )
    .await;
    let room_id = last["roomId"].as_str().unwrap();
    let v = s.wait_stored(&key, room_id, Duration::from_secs(30)).await;
    assert_eq!(v["game"]["endReason"], json!("finished"));
    assert_eq!(v["game"]["playerCount"], json!(4));
    assert_eq!(v["game"]["questionsPlayed"], json!(2));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    // players 0 and 2 answered correctly twice: they share rank 1; 1 and 3 share rank 3
    let ranks: Vec<i64> = results
        .iter()
        .map(|r| r["rank"].as_i64().unwrap())
        .collect();
    assert_eq!(ranks, [1, 1, 3, 3]);
    for r in results {
        let correct = r["correct"].as_i64().unwrap();
        assert_eq!(correct, if r["rank"] == json!(1) { 2 } else { 0 });
        for a in r["answers"].as_array().unwrap() {
            assert!(a["ms"].as_i64().unwrap() >= 0, "server-measured time: {a}");
        }
    }
    assert_eq!(
        s.sql_count("SELECT count(*) FROM results").await,
        4,
        "stored once"
    );
    // history: newest first, paged
    let (_, p1) = s.call("GET", "/api/games?limit=2", Some(&key), None).await;
    let got: Vec<&str> = p1["games"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["roomId"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            rooms[2]["roomId"].as_str().unwrap(),
            rooms[1]["roomId"].as_str().unwrap()
        ]
    );
    let next = p1["next"].as_i64().expect("a next page");
    let (_, p2) = s
        .call(
            "GET",
            &format!("/api/games?limit=2&before={next}"),
            Some(&key),
            None,
        )
        .await;
    let got: Vec<&str> = p2["games"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["roomId"].as_str().unwrap())
        .collect();
    assert_eq!(got, [rooms[0]["roomId"].as_str().unwrap()]);
    assert_eq!(p2["next"], Value::Null);
    // another host sees none of it
    let (st, _) = s
        .call("GET", &format!("/api/games/{room_id}"), Some(&other), None)
        .await;
    assert_eq!(st, 404);
    let (_, none) = s.call("GET", "/api/games", Some(&other), None).await;
    assert_eq!(none["games"], json!([]));
    // a game still running has no CSV yet
    let (st, v) = s
        .call(
            "GET",
            &format!(
                "/api/games/{}/results.csv",
                rooms[0]["roomId"].as_str().unwrap()
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (409, Some("results_pending"))
    );
    // CSV: RFC 4180, formulas neutralised
    let resp = s
        .http
        .get(format!("{}/api/games/{room_id}/results.csv", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "rank,name,score,correct,q1_answer,q1_ms,q1_points,q2_answer,q2_ms,q2_points"
    );
    assert_eq!(lines.len(), 6, "header, 4 rows, and the final CRLF: {csv}");
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://e\"\")\""), "{csv}");
    assert!(csv.contains(",'+cmd,"), "{csv}");
    assert!(csv.contains(",\"Bo, the \"\"Great\"\"\","), "{csv}");
    for line in &lines[1..5] {
        assert!(!line.split(',').nth(1).unwrap().starts_with('='), "{line}");
    }
}

/// Kill the writer (a separate `ringside-control serve` process) in the middle of a game's COPY: nothing
/// of that game is in PostgreSQL, and the next writer stores every result exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_killed_mid_write_leaves_nothing_and_the_next_one_stores_everything_once() {
    let s = stack(Options {
        writer: false,
        ..Options::default()
    })
    .await;
    let (_, key) = s.host("Stadium").await;
    s.quiz(&key, "stadium", 1).await;
    let (_, room) = s.room(&key, "stadium").await;
    let code = room["gameCode"].as_str().unwrap().to_string();
    let room_id = room["roomId"].as_str().unwrap().to_string();
    // 2,500 players: three export pages of 1,000
    let mut ids = Vec::new();
    for chunk in 0..25 {
        let mut set = tokio::task::JoinSet::new();
        for k in 0..100 {
            let g = s.game.clone();
            let c = code.clone();
            set.spawn(async move {
                g.join(&c, &format!("p{}", chunk * 100 + k), 0, None)
                    .await
                    .unwrap()
                    .player_id
            });
        }
        ids.extend(set.join_all().await);
    }
    play_joined(&s.game, &code, room["hostToken"].as_str().unwrap(), &ids, 1).await;

    let run = |crash: Option<u32>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ringside-control"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--writer-name",
            "w1",
            "--writer-poll-ms",
            "50",
        ])
        .env("RINGSIDE_DATABASE_URL", &s.db_url)
        .env("RINGSIDE_REDIS", s.redis.url())
        .env("RUST_LOG", "info");
        if let Some(n) = crash {
            cmd.env("RINGSIDE_CONTROL_TEST_CRASH_AFTER_PAGES", n.to_string());
        }
        cmd.spawn().expect("ringside-control")
    };
    let mut first = run(Some(2));
    let status = tokio::task::spawn_blocking(move || first.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !status.success(),
        "the writer aborted mid-write: {status:?}"
    );
    assert_eq!(
        s.sql_count("SELECT count(*) FROM results").await,
        0,
        "the aborted COPY left nothing"
    );
    assert_eq!(
        s.sql_count("SELECT count(*) FROM games WHERE results_stored_at IS NOT NULL")
            .await,
        0
    );
    let mut second = run(None);
    let v = s.wait_stored(&key, &room_id, Duration::from_secs(60)).await;
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(v["game"]["playerCount"], json!(2500));
    assert_eq!(s.sql_count("SELECT count(*) FROM results").await, 2500);
    assert_eq!(
        s.sql_count("SELECT count(DISTINCT player_id) FROM results")
            .await,
        2500
    );
    let mut c = s.conn.clone();
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(keys::results(keys::partition_of(&code)))
        .arg("writer")
        .query_async(&mut c)
        .await
        .unwrap();
    let pending: i64 = match v {
        redis::Value::Array(a) => redis::from_redis_value(a[0].clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(pending, 0, "the entry is acknowledged");
}

/// PostgreSQL is down when the game ends: the writer holds the room and retries; once PostgreSQL is
/// back every result is stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_the_end_of_a_game_delays_its_results_and_loses_none() {
    let mut s = stack(Options::default()).await;
    let (_, key) = s.host("Host").await;
    s.quiz(&key, "outage", 2).await;
    let (_, room) = s.room(&key, "outage").await;
    let code = room["gameCode"].as_str().unwrap().to_string();
    let names: Vec<String> = (0..30).map(|i| format!("player {i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    s.pg.stop();
    play(
        &s.game,
        &code,
        room["hostToken"].as_str().unwrap(),
        &refs,
        2,
    )
    .await;
    // the writer keeps failing while PostgreSQL is down, and holds the room meanwhile
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let retries = ringside_control::metrics::METRICS
            .results_retries
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut c = s.conn.clone();
        let hold: Option<i64> = redis::cmd("HGET")
            .arg(keys::room(&code))
            .arg("holdUntil")
            .query_async(&mut c)
            .await
            .unwrap();
        if retries >= 2 && hold.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer did not retry ({retries}) or hold ({hold:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.pg.start_again().expect("postgres back");
    let v = s
        .wait_stored(
            &key,
            room["roomId"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(v["results"].as_array().unwrap().len(), 30);
    assert_eq!(
        s.sql_count("SELECT count(*) FROM results").await,
        30,
        "stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let s = stack(Options {
        writer: false,
        ..Options::default()
    })
    .await;
    let v = ringside_control::db::migrate(&s.pool).await.unwrap();
    assert_eq!(
        v,
        ringside_control::db::known_version(),
        "a second run applies nothing"
    );
    assert_eq!(
        s.sql_count("SELECT count(*)::bigint FROM schema_migrations")
            .await,
        v as i64
    );
    let c = s.pool.get().await.unwrap();
    c.execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
        .await
        .unwrap();
    let e = ringside_control::db::migrate(&s.pool)
        .await
        .expect_err("newer schema");
    assert!(e.to_string().contains("version 99"), "{e}");
}

/// A results entry whose room is already gone (or whose code a newer room took) cannot be exported: the
/// writer keeps what it knows (the game's end), counts it as lost, acknowledges it and moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_room_is_gone_is_counted_lost_and_does_not_block_the_others() {
    let s = stack(Options {
        writer: false,
        ..Options::default()
    })
    .await;
    let (_, key) = s.host("Host").await;
    s.quiz(&key, "gone", 1).await;
    let mut rooms = Vec::new();
    for _ in 0..2 {
        let (_, room) = s.room(&key, "gone").await;
        play(
            &s.game,
            room["gameCode"].as_str().unwrap(),
            room["hostToken"].as_str().unwrap(),
            &["Ada", "Bo"],
            1,
        )
        .await;
        rooms.push(room);
    }
    // the first room vanishes before any writer runs
    let mut c = s.conn.clone();
    let _: i64 = redis::cmd("DEL")
        .arg(keys::room(rooms[0]["gameCode"].as_str().unwrap()))
        .query_async(&mut c)
        .await
        .unwrap();
    let lost_before = ringside_control::metrics::METRICS
        .results_lost
        .load(std::sync::atomic::Ordering::Relaxed);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(ringside_control::writer::run(
        s.pool.clone(),
        s.game.clone(),
        ringside_control::writer::WriterConfig {
            name: "w".into(),
            poll: Duration::from_millis(50),
            page: ringside_control::writer::DEFAULT_PAGE,
            page_pause: Duration::ZERO,
            crash_after_pages: None,
        },
        rx,
    ));
    s.wait_stored(
        &key,
        rooms[1]["roomId"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, g) = s
            .call(
                "GET",
                &format!("/api/games/{}", rooms[0]["roomId"].as_str().unwrap()),
                Some(&key),
                None,
            )
            .await;
        if g["game"]["endReason"] == json!("finished") {
            assert_eq!(g["game"]["resultsStored"], json!(false));
            assert_eq!(g["results"], json!([]));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lost game was not recorded: {g}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost = ringside_control::metrics::METRICS
        .results_lost
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(lost > lost_before, "counted as lost");
    let _ = stop.send(true);
}
