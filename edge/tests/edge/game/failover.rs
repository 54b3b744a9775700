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
/// `unavailable` (and `too_early`, `rate_limited`), as a client does.
async fn answer_until_outcome(c: &mut Client, ack: &RoomJoinAck, q: u32, idx: u32) -> Outcome {
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
                return out;
            }
            ServerEvent::Error(e) if e.code == ErrorCode::AlreadyAnswered => {
                out.at = Some(Instant::now());
                return out;
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
            other => panic!(
                "{}: answer q{q} at {} ms → {other:?} after {out:?}",
                ack.player_id,
                now_ms()
            ),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_mid_question_loses_no_acked_answer_and_the_game_finishes() {
    let cluster = RedisCluster::start_replicated(3).expect("replicated cluster starts");
    let urls = cluster.urls();
    let mut conn = Redis::connect(&urls, true).await.unwrap();
    ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    let game = Game::new(conn.clone());
    game.store_quiz(&Quiz::from_json(FAILOVER_QUIZ).unwrap())
        .await
        .unwrap();
    let _engine = start_engine(urls.clone(), true).await;
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
                    answer_durability: AnswerDurability::Replica,
                    answer_wait_timeout_ms: 500,
                },
            },
            share_base: "http://test".into(),
            address_limits: AddressLimits {
                joins_per_sec: 1e6,
                join_burst: 1_000_000,
                ..AddressLimits::default()
            },
        },
        cfg.threads,
    )
    .expect("game layer connects");
    let edge = common::start_with(cfg, Arc::new(factory));
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
            async move {
                let codec = if i % 2 == 0 {
                    Codec::Json
                } else {
                    Codec::Msgpack
                };
                let mut c = Client::connect(addr, codec).await;
                let ack = join(&mut c, &code, &format!("p{i}")).await;
                (c, ack)
            }
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
            let q0 = answer_until_outcome(&mut c, &ack, 0, CORRECT[0]).await;
            show_of(&mut c, 1).await;
            let q1 = answer_until_outcome(&mut c, &ack, 1, CORRECT[1]).await;
            c.until(|e| matches!(e, ServerEvent::GameEnd(_)).then_some(()))
                .await;
            (ack.player_id.clone(), sent, q0, q1)
        }));
    }

    match host
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.clone(),
        }))
        .await
    {
        ServerEvent::Ok(_) => {}
        other => panic!("game:start → {other:?}"),
    }
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
    for t in tasks {
        results.push(
            tokio::time::timeout(Duration::from_secs(300), t)
                .await
                .expect("every player finishes the game")
                .expect("player task"),
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
