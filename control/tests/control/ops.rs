//! `GET /api/ops` (control/src/ops.rs) against a real redis-server: the ops token, live rooms paged newest
//! first with their state and players, Redis's health, a scrape target that is down, and a room leaving
//! the list when its game ends.

use crate::common::{play_joined, quiz};
use ringside_control::auth::FailureLimiter;
use ringside_control::ops::{self, OpsState};
use ringside_lua::{ensure_loaded, Game, Redis};
use ringside_protocol::events::RoomSettings;
use ringside_testkit::RedisServer;
use serde_json::Value;

struct Ops {
    _redis: RedisServer,
    game: Game,
    base: String,
    http: reqwest::Client,
}

impl Ops {
    async fn get(&self, query: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}/api/ops{query}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("GET /api/ops");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn serve(token: Option<&str>, targets: Vec<ops::Target>) -> Ops {
    serve_with(token, targets, FailureLimiter::new(20, 30)).await
}

async fn serve_with(
    token: Option<&str>,
    targets: Vec<ops::Target>,
    limiter: FailureLimiter,
) -> Ops {
    let redis = RedisServer::start().expect("start redis");
    let mut conn = Redis::connect(&[redis.url()], false).await.expect("redis");
    ensure_loaded(&mut conn).await.expect("load the library");
    let game = Game::new(conn);
    let state = OpsState::new(
        game.clone(),
        token.map(str::to_string),
        std::sync::Arc::new(limiter),
        targets,
        &[redis.url()],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            ops::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    Ops {
        _redis: redis,
        game,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    }
}

#[tokio::test]
async fn ops_lists_live_rooms_newest_first_with_redis_health_and_needs_the_token() {
    // a port nothing listens on: the target is reported down, the rest of the reply still comes
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/metrics", dead.local_addr().unwrap());
    drop(dead);
    let o = serve(
        Some("ops-secret"),
        vec![format!("edge={dead_url}").parse().unwrap()],
    )
    .await;

    assert_eq!(o.get("", None).await.0, 401);
    assert_eq!(o.get("", Some("wrong")).await.0, 401);

    o.game.store_quiz(&quiz("ops-quiz", 2)).await.unwrap();
    let settings = RoomSettings {
        countdown_ms: Some(0),
        reveal_pause_ms: Some(0),
        ..Default::default()
    };
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let r = o
            .game
            .create_room("ops-quiz", Some("Host"), &settings, "http://x")
            .await
            .unwrap();
        rooms.push(r);
        // created times differ by at least a millisecond: a strict newest-first order
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let p = o
        .game
        .join(&rooms[0].game_code, "Ada", 0, None)
        .await
        .unwrap();

    let (status, v) = o.get("?limit=2", Some("ops-secret")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rooms"]["live"], 3, "{v}");
    let list = v["rooms"]["list"].as_array().unwrap();
    let codes: Vec<&str> = list.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, [&rooms[2].game_code, &rooms[1].game_code], "{v}");
    assert_eq!(list[0]["state"], "LOBBY");
    assert_eq!(list[0]["players"], 0);
    // the second page has the oldest room, with its player
    let (_, v2) = o.get("?offset=2&limit=2", Some("ops-secret")).await;
    let page2 = v2["rooms"]["list"].as_array().unwrap();
    assert_eq!(page2.len(), 1, "{v2}");
    assert_eq!(page2[0]["code"], rooms[0].game_code.as_str());
    assert_eq!(page2[0]["players"], 1);

    // a page deeper than one rooms_list call may read (1000 per partition): still every partition answers
    let (_, deep) = o.get("?offset=5000&limit=25", Some("ops-secret")).await;
    assert_eq!(
        (&deep["rooms"]["live"], &deep["rooms"]["partitionErrors"]),
        (&Value::from(3), &Value::from(0)),
        "{deep}"
    );

    // Redis health: the node answered PING and INFO
    let node = &v["redis"]["nodes"][0];
    assert_eq!(node["up"], true, "{v}");
    assert_eq!(node["role"], "master");
    assert!(node["usedMemory"].as_u64().unwrap() > 0);
    // the dead scrape target is down, with a reason
    let svc = &v["services"][0];
    assert_eq!(
        (svc["job"].as_str(), svc["up"].as_bool()),
        (Some("edge"), Some(false)),
        "{v}"
    );
    assert!(svc["error"].is_string());
    // no secret in the reply: no host token
    assert!(!v.to_string().contains(&rooms[0].host_token));

    // a running game shows its question; an ended one leaves the list (after the 500 ms cache)
    play_joined(
        &o.game,
        &rooms[0].game_code,
        &rooms[0].host_token,
        &[p.player_id],
        2,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (_, v) = o.get("?limit=10", Some("ops-secret")).await;
    assert_eq!(v["rooms"]["live"], 2, "{v}");
    assert!(v["rooms"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["code"] != rooms[0].game_code.as_str()));
}

#[tokio::test]
async fn without_a_token_the_ops_endpoint_is_off() {
    let o = serve(None, Vec::new()).await;
    assert_eq!(o.get("", None).await.0, 404);
    assert_eq!(o.get("", Some("")).await.0, 404);
}

/// 10,000 live rooms: one page of /api/ops stays one round of 64 `rooms_list` calls and `limit` snapshots.
/// Ignored (it creates 10,000 rooms, ~10 s in a debug build); run with
/// `cargo test -p ringside-control --test control ops_with_ten_thousand_rooms -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ops_with_ten_thousand_rooms() {
    let o = serve(Some("t"), Vec::new()).await;
    o.game.store_quiz(&quiz("ops-10k", 1)).await.unwrap();
    let settings = RoomSettings::default();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let game = o.game.clone();
        let settings = settings.clone();
        tasks.spawn(async move {
            for _ in 0..625 {
                game.create_room("ops-10k", None, &settings, "http://x")
                    .await
                    .unwrap_or_else(|e| panic!("worker {w}: {e}"));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    for (query, what) in [
        ("?limit=25", "first page"),
        ("?offset=9975&limit=25", "last page"),
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await; // past the cache
            let t = std::time::Instant::now();
            let (status, v) = o.get(query, Some("t")).await;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200);
            assert_eq!(v["rooms"]["live"], 10_000);
            assert_eq!(v["rooms"]["list"].as_array().unwrap().len(), 25);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "GET /api/ops {what} with 10,000 rooms: median {:.1} ms, max {:.1} ms",
            times[2], times[4]
        );
    }
}

#[tokio::test]
async fn wrong_ops_tokens_are_rate_limited_per_address() {
    // a budget of 3 failures, refilled at 1 per minute: the 4th guess is refused without being checked
    let o = serve_with(Some("ops-secret"), vec![], FailureLimiter::new(3, 1)).await;
    assert_eq!(o.get("", Some("ops-secret")).await.0, 200);
    for guess in ["a", "b", "c"] {
        assert_eq!(o.get("", Some(guess)).await.0, 401, "guess {guess}");
    }
    let (status, v) = o.get("", Some("d")).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(v["error"]["retryAfterMs"].as_u64().unwrap() > 0, "{v}");
    // the budget is the address's, so the right token waits too (a guesser cannot probe around it)
    assert_eq!(o.get("", Some("ops-secret")).await.0, 429);
    // another source address (the edge forwards the player's address from loopback) is not affected
    let r = o
        .http
        .get(format!("{}/api/ops", o.base))
        .bearer_auth("ops-secret")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
