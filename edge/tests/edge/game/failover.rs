//! A Redis failover mid-question through the edge (issue 13 #3): a cluster with one replica per primary,
//! answers acked only once a replica has them (`--answer-durability replica`), the primary of the room's
//! slot SIGKILLed while ~1,000 answers/s flow. After the replica is promoted (and the killed node is back
//! as its replica, as a supervisor would restart it), every acknowledged answer is in the final scores,
//! none counted twice, every timer fired once, clients got `unavailable` and resent, the game finished.

use super::*;
use ringside_edge::game::durable::{AnswerDurability, DurabilityFlags};
use ringside_testkit::RedisCluster;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Players, one socket each, answering 1 ms apart: about 1,000 answers/s while they flow.
const PLAYERS: usize = 1000;
const SPACING_US: u64 = 1000;
/// The kill lands this far into the answers (of ~1 s).
const KILL_AFTER_MS: u64 = 300;
/// How long one player may take to get its answer's outcome: generous, the machine may be busy.
const OUTCOME_WITHIN: Duration = Duration::from_secs(120);

const FAILOVER_QUIZ: &str = r#"{"id":"failover-test","title":"Failover","questions":[
 {"text":"One?","options":["a","b","c","d"],"correct":1,"timeLimitMs":60000},
 {"text":"Two?","options":["a","b"],"correct":0,"timeLimitMs":60000}]}"#;
const CORRECT: [u32; 2] = [1, 0];

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What a player saw of one answer.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// `game:answer:ack` (false: `already_answered`, the first answer stands).
    acked: bool,
    /// `unavailable` replies before the outcome.
    unavailable: u32,
    /// When the outcome arrived.
    at: Option<Instant>,
}

/// Sends answer `idx` to question `q` until it gets an ack or `already_answered`, resending after
/// `unavailable` (and `too_early`, `rate_limited`), as a client does. Any other reply is an `Err`
/// with what the player saw (the test then prints the room's state and log before it fails).
async fn answer_until_outcome(
    c: &mut Client,
    ack: &RoomJoinAck,
    q: u32,
    idx: u32,
) -> Result<Outcome, String> {
    let hash = answer_hash(&ack.answer_secret, &ack.game_code, &ack.player_id, q, idx);
    let mut out = Outcome::default();
    let deadline = Instant::now() + OUTCOME_WITHIN;
    loop {
        assert!(
            Instant::now() < deadline,
            "{}: no outcome for q{q} within {OUTCOME_WITHIN:?}: {out:?}",
            ack.player_id
        );
        let ev = ClientEvent::AnswerSubmit(AnswerSubmit {
            game_code: ack.game_code.clone(),
            q_index: q,
            answer_idx: idx,
            client_time: 0.0,
            answer_hash: hash.clone(),
        });
        match c.request(ev).await {
            ServerEvent::AnswerAck(a) => {
                assert_eq!(a.q_index, q);
                out.acked = true;
                out.at = Some(Instant::now());
                return Ok(out);
            }
            ServerEvent::Error(e) if e.code == ErrorCode::AlreadyAnswered => {
                out.at = Some(Instant::now());
                return Ok(out);
            }
            ServerEvent::Error(e) if e.code == ErrorCode::Unavailable => {
                out.unavailable += 1;
                let wait = e.retry_after_ms.unwrap_or(100).clamp(50, 1000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            ServerEvent::Error(e)
                if matches!(e.code, ErrorCode::TooEarly | ErrorCode::RateLimited) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                return Err(format!(
                    "{}: answer q{q} at {} ms → {other:?} after {out:?}",
                    ack.player_id,
                    now_ms()
                ))
            }
        }
    }
}

async fn show_of(c: &mut Client, q: u32) -> QuestionShow {
    c.until(|e| match e {
        ServerEvent::QuestionShow(s) if s.q_index == q => Some(s.clone()),
        _ => None,
    })
    .await
}

/// A replicated cluster (3 primaries, 1 replica each) with the library and [`FAILOVER_QUIZ`] loaded,
/// the engine, and an edge whose answers ack with `durability`.
async fn replicated_stack(
    durability: AnswerDurability,
) -> (
    RedisCluster,
    Redis,
    ringside_engine::Engine,
    ringside_edge::ServerHandle,
) {
    let cluster = RedisCluster::start_replicated(3).expect("replicated cluster starts");
    let urls = cluster.urls();
    // Our own slot map (as the edge and the engine use): this connection reads the results after the
    // failover.
    let mut conn = Redis::connect_nodes(&urls).await.unwrap();
    ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    Game::new(conn.clone())
        .store_quiz(&Quiz::from_json(FAILOVER_QUIZ).unwrap())
        .await
        .unwrap();
    let engine = start_engine(urls.clone(), true).await;
    let mut cfg = Config::echo("127.0.0.1:0".parse().unwrap());
    cfg.echo = false;
    cfg.threads = 2;
    cfg.limits = Config::default().limits;
    cfg.sendq = Config::default().sendq;
    cfg.driver = suite_driver();
    let factory = GameFactory::start(
        GameConfig {
            redis: RedisConfig {
                urls,
                cluster: true,
                durability: DurabilityFlags {
                    answer_durability: durability,
                    answer_wait_timeout_ms: 500,
                },
                answer_calls_in_flight: 1,
                answer_call_gap: std::time::Duration::from_millis(1),
            },
            share_base: "http://test".into(),
            address_limits: AddressLimits {
                joins_per_sec: 1e6,
                join_burst: 1_000_000,
                ..AddressLimits::default()
            },
            leaderboard_hold: ringside_edge::game::DEFAULT_LEADERBOARD_HOLD,
            reveal_hold: ringside_edge::game::DEFAULT_REVEAL_HOLD,
        },
        cfg.threads,
    )
    .expect("game layer connects");
    let edge = common::start_with(cfg, Arc::new(factory));
    (cluster, conn, engine, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_mid_question_loses_no_acked_answer_and_the_game_finishes() {
    let (cluster, mut conn, _engine, edge) = replicated_stack(AnswerDurability::Replica).await;
    let game = Game::new(conn.clone());
    let addr = edge.local_addr();

    let mut host = Client::connect(addr, Codec::Json).await;
    let code = match host
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "failover-test".into(),
            host_name: None,
            settings: settings(),
        }))
        .await
    {
        ServerEvent::RoomCreated(c) => c.game_code,
        other => panic!("room:create → {other:?}"),
    };
    let room_key = ringside_protocol::keys::room(&code);

    // Players join, 50 at a time; each then runs on its own task, reading its socket throughout.
    let mut seated = Vec::new();
    for chunk in (0..PLAYERS).collect::<Vec<_>>().chunks(50) {
        let joins = chunk.iter().map(|&i| {
            let code = code.clone();
            async move { seat(addr, &code, i).await }
        });
        seated.extend(futures_util::future::join_all(joins).await);
    }

    let kill_at = Arc::new(AtomicU64::new(0));
    let (go_tx, go_rx) = tokio::sync::watch::channel(0u64);
    let mut tasks = Vec::new();
    for (i, (mut c, ack)) in seated.into_iter().enumerate() {
        let mut go_rx = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            show_of(&mut c, 0).await;
            let go = *go_rx.wait_for(|g| *g > 0).await.unwrap();
            let at = go * 1000 + i as u64 * SPACING_US;
            let wait = (at / 1000).saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let sent = Instant::now();
            let q0 = answer_until_outcome(&mut c, &ack, 0, CORRECT[0]).await?;
            show_of(&mut c, 1).await;
            let q1 = answer_until_outcome(&mut c, &ack, 1, CORRECT[1]).await?;
            c.until(|e| matches!(e, ServerEvent::GameEnd(_)).then_some(()))
                .await;
            Ok::<_, String>((ack.player_id.clone(), sent, q0, q1))
        }));
    }

    start_game(&mut host, &code).await;
    let show = show_of(&mut host, 0).await;
    // Answers start 300 ms after showAt (every socket has the show by then or soon after).
    let go = show.show_at.unwrap_or_else(now_ms) + 300;
    go_tx.send(go).unwrap();
    eprintln!(
        "failover: q0 shows at {:?}, ends at {}, answers from {go} ms",
        show.show_at, show.ends_at
    );

    // The kill, mid-answers: the primary serving the room's slot, SIGKILL.
    let kill_wait = (go + KILL_AFTER_MS).saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(kill_wait)).await;
    let host_reader = tokio::spawn(async move {
        // The host keeps reading (it is a member too) until the end.
        host.until(|e| matches!(e, ServerEvent::GameEnd(_)).then_some(()))
            .await;
        host
    });
    let kill_at_ms = kill_at.clone();
    let (cluster, primary, killed_at, failover, rejoined) =
        tokio::task::spawn_blocking(move || {
            let mut cluster = cluster;
            let primary = cluster.primary_of_key(&room_key).unwrap();
            let killed_at = Instant::now();
            cluster.node_mut(primary).kill();
            kill_at.store(now_ms(), Relaxed);
            eprintln!("failover: killed node {primary} at {} ms", now_ms());
            let promoted = cluster
                .wait_for_failover(primary, &room_key)
                .expect("the replica is promoted");
            let failover = killed_at.elapsed();
            eprintln!("failover: promoted node {promoted} at {} ms", now_ms());
            assert_ne!(promoted, primary);
            // A supervisor restarts the dead node: it rejoins as the new primary's replica.
            cluster
                .restart_node(primary)
                .expect("the killed node rejoins");
            eprintln!(
                "failover: node {primary} back as replica at {} ms",
                now_ms()
            );
            (cluster, primary, killed_at, failover, killed_at.elapsed())
        })
        .await
        .unwrap();

    let mut results = Vec::new();
    let mut failed = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(300), t)
            .await
            .expect("every player finishes the game")
        {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => failed.push(e),
            Err(panicked) => failed.push(format!("player task: {panicked}")),
        }
    }
    if !failed.is_empty() {
        let state = room_state(&mut conn, &code).await;
        panic!(
            "{} players got an unexpected answer reply (killed at {} ms); the first: {}\n{state}",
            failed.len(),
            kill_at_ms.load(Relaxed),
            failed[0]
        );
    }
    let mut host = host_reader.await.unwrap();

    // Rate of answers sent around the kill (first sends, by the players' own clocks).
    let first = results.iter().map(|r| r.1).min().unwrap();
    let last = results.iter().map(|r| r.1).max().unwrap();
    let rate = PLAYERS as f64 / (last - first).as_secs_f64().max(1e-3);
    let sent_before_kill = results.iter().filter(|r| r.1 < killed_at).count();
    let unavailable: u32 = results
        .iter()
        .map(|r| r.2.unavailable + r.3.unavailable)
        .sum();
    let retried = results.iter().filter(|r| r.2.unavailable > 0).count();
    let q0_outcomes_done = results
        .iter()
        .filter_map(|r| r.2.at)
        .max()
        .unwrap()
        .saturating_duration_since(killed_at);
    let first_ack_after_kill = results
        .iter()
        .filter(|r| r.2.unavailable > 0)
        .filter_map(|r| r.2.at)
        .min()
        .map(|t| t.saturating_duration_since(killed_at));
    eprintln!(
        "failover: {PLAYERS} players, first answers sent at {rate:.0}/s ({sent_before_kill} before the kill), \
         node {primary} killed; replica promoted after {failover:?}, killed node back as replica after \
         {rejoined:?}; first ack of a retried answer {first_ack_after_kill:?} and every q0 outcome \
         {q0_outcomes_done:?} after the kill; {unavailable} unavailable replies, {retried} players resent"
    );
    assert!(
        sent_before_kill > 0 && sent_before_kill < PLAYERS,
        "the kill lands mid-answers"
    );
    assert!(
        unavailable > 0 && retried > 0,
        "clients got unavailable and resent"
    );

    // Every acknowledged answer is in the final scores, once.
    let mut exported = std::collections::HashMap::new();
    let mut offset = 0;
    loop {
        let page = game.export(&code, offset, 1000).await.expect("export");
        assert_eq!(page.game.end_reason, "finished");
        assert_eq!(page.game.questions_played, 2);
        for p in page.players {
            exported.insert(p.player_id.clone(), p);
        }
        match page.next {
            Some(n) => offset = n,
            None => break,
        }
    }
    assert_eq!(exported.len(), PLAYERS);
    for (pid, _, q0, q1) in &results {
        let p = &exported[pid];
        for (q, out) in [q0, q1].into_iter().enumerate() {
            let a = p.answers[q]
                .as_ref()
                .unwrap_or_else(|| panic!("{pid}: answer to q{q} ({out:?}) is not in the results"));
            assert_eq!(a.answer_idx, CORRECT[q], "{pid} q{q}");
            assert!(a.points > 0, "{pid} q{q}: the correct answer scored");
        }
        let sum: i64 = p.answers.iter().flatten().map(|a| a.points).sum();
        assert_eq!(p.score, sum, "{pid}: each answer counted once");
        assert_eq!(p.correct, 2, "{pid}");
    }

    // Every timer fired once: one show and one reveal per question, one end, in the room log.
    let log: StreamLog = redis::cmd("XRANGE")
        .arg(ringside_protocol::keys::room_log(&code))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut count = std::collections::HashMap::<String, u32>::new();
    for (_, fields) in &log {
        let env = &fields.iter().find(|(k, _)| k == "e").expect("log entry").1;
        let v: serde_json::Value = serde_json::from_str(env).unwrap();
        let name = v["event"].as_str().unwrap().to_string();
        let q = v["data"]["qIndex"]
            .as_u64()
            .map(|q| format!(" q{q}"))
            .unwrap_or_default();
        *count.entry(format!("{name}{q}")).or_default() += 1;
    }
    for ev in [
        "game:question:show q0",
        "game:question:reveal q0",
        "game:question:show q1",
        "game:question:reveal q1",
        "game:end",
    ] {
        assert_eq!(
            count.get(ev),
            Some(&1),
            "{ev} once in the room log: {count:?}"
        );
    }
    // The host, a member throughout, saw every room event in order.
    let seqs = std::mem::take(&mut host.seqs);
    let first_seq = seqs[0];
    assert_consecutive(&seqs, first_seq, "host");
    drop(cluster);
}

type StreamLog = Vec<(String, Vec<(String, String)>)>;

/// The room hash (without per-player fields), its question hashes' counters, and the room log, for a
/// failure message.
async fn room_state(conn: &mut Redis, code: &str) -> String {
    let room_key = ringside_protocol::keys::room(code);
    let mut out = String::new();
    let room: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(&room_key)
        .query_async(conn)
        .await
        .unwrap_or_default();
    out.push_str(&format!("room {room_key}:"));
    for (k, v) in &room {
        // m:<playerId> holds a member's answerSecret: per player, and not for a log
        if v.len() < 80 && !k.starts_with("m:") {
            let v = String::from_utf8_lossy(v);
            out.push_str(&format!(" {k}={v}"));
        }
    }
    for q in 0..2 {
        let qk = format!("{room_key}:q:{q}");
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&qk)
            .query_async(conn)
            .await
            .unwrap_or_default();
        let count = |p: &str| fields.iter().filter(|(k, _)| k.starts_with(p)).count();
        let small: Vec<String> = fields
            .iter()
            .filter(|(k, _)| !k.contains(':'))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "\n{qk}: {} a: {} x: {} r: {}",
            small.join(" "),
            count("a:"),
            count("x:"),
            count("r:")
        ));
    }
    let log: StreamLog = redis::cmd("XRANGE")
        .arg(ringside_protocol::keys::room_log(code))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap_or_default();
    for (id, fields) in &log {
        let e = fields
            .iter()
            .find(|(k, _)| k == "e")
            .map(|(_, v)| v.as_str())
            .unwrap_or("?");
        let e: String = e.chars().take(200).collect();
        out.push_str(&format!("\nlog {id}: {e}"));
    }
    out
}

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu_secs(prefix: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let (utime, stime): (f64, f64) = (fields[11].parse().unwrap(), fields[12].parse().unwrap());
        total += (utime + stime) / tick;
    }
    total
}

/// `INFO` section `section` of one node as (field, value) pairs.
fn info_of(node: &ringside_testkit::RedisServer, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query(&mut node.sync_conn().unwrap())
        .unwrap()
}

/// `calls` and `usec` of `cmdstat_<cmd>` in `INFO commandstats`.
fn cmdstat(info: &str, cmd: &str) -> (u64, u64) {
    let Some(line) = info
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
    else {
        return (0, 0);
    };
    let field = |name: &str| -> u64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("calls"), field("usec"))
}

fn used_cpu(info: &str) -> f64 {
    ["used_cpu_sys:", "used_cpu_user:"]
        .iter()
        .filter_map(|f| info.lines().find_map(|l| l.strip_prefix(f)))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// The cost of an ack that waits for a replica (perf/lua.md "Answer durability"): the same burst of
/// answers through the edge with `--answer-durability primary` and `replica`, on the replicated
/// cluster, in the order primary, replica, replica, primary (the first run also warms up). Prints ack latency, answers/s, the hub thread's CPU per answer, and Redis-side
/// `FCALL`/`WAIT` figures. Run: `cargo test -p ringside-edge --test edge failover::answer_ack_cost
/// -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (perf/lua.md), not a check"]
async fn answer_ack_cost() {
    const N: usize = 500;
    for durability in [
        AnswerDurability::Primary,
        AnswerDurability::Replica,
        AnswerDurability::Replica,
        AnswerDurability::Primary,
    ] {
        let (cluster, _conn, _engine, edge) = replicated_stack(durability).await;
        let addr = edge.local_addr();
        let mut host = Client::connect(addr, Codec::Json).await;
        let code = match host
            .request(ClientEvent::RoomCreate(RoomCreate {
                quiz_id: "failover-test".into(),
                host_name: None,
                settings: settings(),
            }))
            .await
        {
            ServerEvent::RoomCreated(c) => c.game_code,
            other => panic!("room:create → {other:?}"),
        };
        let mut seated = Vec::new();
        for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
            let joins = chunk.iter().map(|&i| {
                let code = code.clone();
                async move {
                    let mut c = Client::connect(addr, Codec::Json).await;
                    let ack = join(&mut c, &code, &format!("p{i}")).await;
                    (c, ack)
                }
            });
            seated.extend(futures_util::future::join_all(joins).await);
        }
        let primary = cluster
            .primary_of_key(&ringside_protocol::keys::room(&code))
            .unwrap();
        let node = &cluster.nodes()[primary];
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for (mut c, ack) in seated {
            let mut go_rx = go_rx.clone();
            tasks.push(tokio::spawn(async move {
                let show = show_of(&mut c, 0).await;
                go_rx.wait_for(|g| *g).await.unwrap();
                let wait = show.show_at.unwrap_or(0).saturating_sub(now_ms()) + 100;
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let sent = Instant::now();
                let out = answer_until_outcome(&mut c, &ack, 0, CORRECT[0])
                    .await
                    .unwrap();
                assert!(out.acked && out.unavailable == 0, "{out:?}");
                (sent, out.at.unwrap())
            }));
        }
        start_game(&mut host, &code).await;
        show_of(&mut host, 0).await;
        let (stats0, cpu0) = (info_of(node, "commandstats"), info_of(node, "cpu"));
        let hub0 = thread_cpu_secs("ringside-redis");
        go_tx.send(true).unwrap();
        let mut lat = Vec::new();
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        for t in tasks {
            let (sent, at) = t.await.unwrap();
            lat.push(at - sent);
            first = Some(first.map_or(sent, |f| f.min(sent)));
            last = Some(last.map_or(at, |l| l.max(at)));
        }
        let hub = thread_cpu_secs("ringside-redis") - hub0;
        let (stats1, cpu1) = (info_of(node, "commandstats"), info_of(node, "cpu"));
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        let span = (last.unwrap() - first.unwrap()).as_secs_f64();
        let (fc0, fu0) = cmdstat(&stats0, "fcall");
        let (fc1, fu1) = cmdstat(&stats1, "fcall");
        let (wc0, wu0) = cmdstat(&stats0, "wait");
        let (wc1, wu1) = cmdstat(&stats1, "wait");
        eprintln!(
            "answer-ack-cost durability={durability:?} answers={N} ack p50={:?} p99={:?} max={:?} \
             burst={:.0} answers/s hub_thread_cpu={:.3}s ({:.0} answers/s per hub core) \
             primary: fcall calls={} usec/call={:.1} wait calls={} ({:.1} answers/WAIT) \
             redis_cpu={:.3}s",
            pct(0.5),
            pct(0.99),
            lat[lat.len() - 1],
            N as f64 / span,
            hub,
            N as f64 / hub.max(1e-3),
            fc1 - fc0,
            (fu1 - fu0) as f64 / (fc1 - fc0).max(1) as f64,
            wc1 - wc0,
            N as f64 / (wc1 - wc0).max(1) as f64,
            used_cpu(&cpu1) - used_cpu(&cpu0),
        );
        let _ = wu1 - wu0;
        drop(edge);
    }
}
