//! 10 000 one-shot timers over 1 000 rooms, periodic progress tickers, and stale schedules, fired by one
//! in-process engine against real Redis (standalone and a 3-primary cluster): every timer is applied
//! exactly once, stale ones are no-ops, and nothing is left in the streams or pending lists.

use std::time::Duration;

use crate::common::*;
use rand::Rng;
use redis::Commands;
use ringside_engine::Engine;
use ringside_testkit::Backend;

const KINDS: [&str; 5] = [
    "countdown_end",
    "question_end",
    "next_question",
    "lobby_flush",
    "cleanup",
];

fn every_timer_fires_once_and_stale_ones_are_no_ops(backend: Backend) {
    let redis = redis_with_counting(backend);
    let mut conn = redis.sync_conn().unwrap();
    let now = redis_now_ms(&mut conn);
    let mut rng = rand::rng();

    // 10 one-shot timers in each of 1000 rooms, due from 0.5 s ago (already late) to 6 s ahead.
    let rooms = room_codes("X", 1000);
    let mut timers = Vec::new();
    for room in &rooms {
        for j in 0..10u32 {
            timers.push(Timer {
                room: room.clone(),
                kind: KINDS[j as usize % KINDS.len()],
                q: j,
                gen: 1,
                due: now + rng.random_range(-500..6000),
                every: None,
            });
        }
    }
    // 100 progress tickers, 5 ticks each, every 300 ms.
    let tickers = room_codes("P", 100);
    for room in &tickers {
        let _: () = conn
            .hset(ringside_protocol::keys::room(room), "ticks", 5)
            .unwrap();
    }
    let ticks: Vec<Timer> = tickers
        .iter()
        .map(|room| Timer {
            room: room.clone(),
            kind: "progress",
            q: 0,
            gen: 1,
            due: now + rng.random_range(100..1000),
            every: Some(300),
        })
        .collect();
    // 100 schedules whose question was skipped (room gen moved on), 50 whose room has ended.
    let skipped = room_codes("S", 100);
    let ended = room_codes("E", 50);
    for room in &skipped {
        let _: () = conn
            .hset(ringside_protocol::keys::room(room), "gen", 2)
            .unwrap();
    }
    for room in &ended {
        let _: () = conn
            .hset(ringside_protocol::keys::room(room), "ended", 1)
            .unwrap();
    }
    let stale: Vec<Timer> = skipped
        .iter()
        .chain(&ended)
        .map(|room| Timer {
            room: room.clone(),
            kind: "question_end",
            q: 3,
            gen: 1,
            due: now + rng.random_range(0..3000),
            every: None,
        })
        .collect();

    // Half before the engine starts (read at once), half while it runs (blocking reads).
    let (before, after) = timers.split_at(timers.len() / 2);
    write_timers(&mut conn, before);
    write_timers(&mut conn, &stale);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(Engine::start(config(&redis, "solo")))
        .expect("engine starts");
    write_timers(&mut conn, after);
    write_timers(&mut conn, &ticks);

    let expected = timers.len() as i64 + 5 * tickers.len() as i64;
    let all_applied = wait_until(Duration::from_secs(180), || {
        effects_total(&mut conn) >= expected
    });
    let drained = wait_until(Duration::from_secs(60), || {
        streams_left(&mut conn) == (0, 0)
    });
    let m = engine.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let redis_errors = load(&m.redis_errors_total);
    let drift = m.drift_snapshot();
    eprintln!(
        "{backend}: fired {} stale {} late {} redis errors {redis_errors}; drift p50 {} µs p99 {} µs max {} µs",
        load(&m.timers_fired_total),
        load(&m.timers_stale_total),
        load(&m.timers_late_total),
        drift.value_at_quantile(0.5),
        drift.value_at_quantile(0.99),
        drift.max()
    );
    assert!(
        all_applied,
        "only {} of {expected} effects",
        effects_total(&mut conn)
    );
    assert!(
        drained,
        "left in streams / pending: {:?}",
        streams_left(&mut conn)
    );

    for room in &rooms {
        let key = ringside_protocol::keys::room(room);
        let calls = hash_ints(&mut conn, &format!("{key}:calls"));
        let effects = hash_ints(&mut conn, &format!("{key}:effects"));
        assert_eq!(effects.len(), 10, "{room}: effects {effects:?}");
        assert_eq!(calls.len(), 10, "{room}: calls {calls:?}");
        if redis_errors == 0 {
            // A healthy run never calls twice; after a Redis error a retry may (and is a no-op).
            assert!(
                calls.values().all(|&n| n == 1),
                "{room}: a timer was called twice: {calls:?}"
            );
        }
    }
    for room in &tickers {
        let key = ringside_protocol::keys::room(room);
        let ticked = hash_ints(&mut conn, &format!("{key}:ticks"));
        assert_eq!(ticked.len(), 5, "{room}: ticks {ticked:?}");
        let left: i64 = conn.hget(&key, "ticks").unwrap();
        assert_eq!(left, 0, "{room}");
        let dues: Vec<i64> = ticked.keys().map(|k| k.parse().unwrap()).collect();
        let first = *dues.iter().min().unwrap();
        assert!(
            dues.iter().all(|d| (d - first) % 300 == 0),
            "{room}: ticks off the 300 ms grid: {dues:?}"
        );
    }
    for room in skipped.iter().chain(&ended) {
        let key = ringside_protocol::keys::room(room);
        let calls = hash_ints(&mut conn, &format!("{key}:calls"));
        let effects = hash_ints(&mut conn, &format!("{key}:effects"));
        assert!(effects.is_empty(), "{room}: a stale schedule had an effect");
        assert_eq!(calls.get("question_end:3:1"), Some(&1), "{room}: {calls:?}");
    }
    assert!(load(&m.timers_stale_total) >= stale.len() as u64);
    rt.block_on(engine.shutdown());
}

#[test]
fn every_timer_fires_once_and_stale_ones_are_no_ops_standalone() {
    every_timer_fires_once_and_stale_ones_are_no_ops(Backend::Standalone);
}

#[test]
fn every_timer_fires_once_and_stale_ones_are_no_ops_cluster() {
    every_timer_fires_once_and_stale_ones_are_no_ops(Backend::Cluster);
}
