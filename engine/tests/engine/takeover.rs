//! Two real `ringside-engine` processes split the partitions; one is SIGKILLed (or SIGTERMed) mid-run.
//! Every timer is still applied exactly once in effect — none lost, none doubled — and the survivor
//! takes the dead instance's partitions over. The takeover time is measured and printed, not asserted.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use rand::Rng;
use redis::Commands;
use ringside_protocol::keys;
use ringside_testkit::{Backend, SyncConn};

fn owned(e: &EngineProcess) -> i64 {
    e.metric("partitions_owned").unwrap_or(-1.0) as i64
}

/// Which instance holds each partition's lease.
fn lease_owners(conn: &mut SyncConn) -> HashMap<u32, String> {
    (0..keys::PARTITIONS)
        .filter_map(|p| {
            let owner: Option<String> =
                conn.get(format!("lease:{}", keys::partition_tag(p))).ok()?;
            Some((p, owner?))
        })
        .collect()
}

struct Run {
    one_shots: Vec<Timer>,
    tickers: Vec<String>,
}

/// 3000 one-shot timers over 300 rooms due 1–9 s from now, and 40 progress tickers of 16 ticks every
/// 250 ms (ticking across the moment an engine dies).
fn write_workload(conn: &mut SyncConn) -> Run {
    let now = redis_now_ms(conn);
    let mut rng = rand::rng();
    let rooms = room_codes("K", 300);
    let mut one_shots = Vec::new();
    for room in &rooms {
        for j in 0..10u32 {
            one_shots.push(Timer {
                room: room.clone(),
                kind: ["question_end", "next_question", "countdown_end"][j as usize % 3],
                q: j,
                gen: 1,
                due: now + rng.random_range(1000..9000),
                every: None,
            });
        }
    }
    let tickers = room_codes("T", 40);
    for room in &tickers {
        let _: () = conn.hset(keys::room(room), "ticks", 16).unwrap();
    }
    let ticks: Vec<Timer> = tickers
        .iter()
        .map(|room| Timer {
            room: room.clone(),
            kind: "progress",
            q: 0,
            gen: 1,
            due: now + rng.random_range(200..800),
            every: Some(250),
        })
        .collect();
    write_timers(conn, &one_shots);
    write_timers(conn, &ticks);
    Run { one_shots, tickers }
}

/// Waits for everything to be applied and acknowledged, then checks each timer's effect.
/// Returns the number of raw duplicate calls (harmless no-ops, allowed only around a crash).
fn check_all_applied_once(conn: &mut SyncConn, run: &Run) -> usize {
    let expected = run.one_shots.len() as i64 + 16 * run.tickers.len() as i64;
    let applied = wait_until(Duration::from_secs(180), || effects_total(conn) >= expected);
    assert!(
        applied,
        "only {} of {expected} effects applied",
        effects_total(conn)
    );
    let drained = wait_until(Duration::from_secs(60), || streams_left(conn) == (0, 0));
    assert!(
        drained,
        "left in streams / pending: {:?}",
        streams_left(conn)
    );
    assert_eq!(effects_total(conn), expected, "an effect was applied twice");
    let mut duplicates = 0;
    let mut by_room: HashMap<&str, Vec<&Timer>> = HashMap::new();
    for t in &run.one_shots {
        by_room.entry(&t.room).or_default().push(t);
    }
    for (room, timers) in by_room {
        let key = keys::room(room);
        let effects = hash_ints(conn, &format!("{key}:effects"));
        let calls = hash_ints(conn, &format!("{key}:calls"));
        for t in timers {
            assert!(effects.contains_key(&t.id()), "{room} {}: lost", t.id());
            duplicates += (calls[&t.id()] - 1) as usize;
        }
        assert_eq!(effects.len(), 10, "{room}: {effects:?}");
    }
    for room in &run.tickers {
        let key = keys::room(room);
        let ticked = hash_ints(conn, &format!("{key}:ticks"));
        assert_eq!(ticked.len(), 16, "{room}: {ticked:?}");
        let left: i64 = conn.hget(&key, "ticks").unwrap();
        assert_eq!(left, 0, "{room}");
    }
    duplicates
}

/// The earliest effect (Redis ms) in `partitions` at or after `since`.
fn first_effect_after(
    conn: &mut SyncConn,
    run: &Run,
    partitions: &[u32],
    since: i64,
) -> Option<i64> {
    let mut first: Option<i64> = None;
    let rooms: std::collections::BTreeSet<&str> = run
        .one_shots
        .iter()
        .map(|t| t.room.as_str())
        .filter(|r| partitions.contains(&keys::partition_of(r)))
        .collect();
    for room in rooms {
        let effects = hash_ints(conn, &format!("{}:effects", keys::room(room)));
        for at in effects.values().copied().filter(|at| *at >= since) {
            first = Some(first.map_or(at, |f: i64| f.min(at)));
        }
    }
    first
}

fn start_two(
    redis: &ringside_testkit::TestRedis,
    dir: &std::path::Path,
) -> (EngineProcess, EngineProcess) {
    let a = EngineProcess::spawn(redis, "engine-a", dir);
    let b = EngineProcess::spawn(redis, "engine-b", dir);
    let split = wait_until(Duration::from_secs(60), || {
        let (oa, ob) = (owned(&a), owned(&b));
        oa > 0 && ob > 0 && oa + ob == 64
    });
    assert!(
        split,
        "partitions not split: a={} b={}\n--- a ---\n{}\n--- b ---\n{}",
        owned(&a),
        owned(&b),
        a.log_text(),
        b.log_text()
    );
    eprintln!("split: a={} b={}", owned(&a), owned(&b));
    (a, b)
}

fn sigkill_mid_run_loses_and_doubles_nothing(backend: Backend) {
    let redis = redis_with_counting(backend);
    let dir = tempfile::tempdir().unwrap();
    let mut conn = redis.sync_conn().unwrap();
    let (mut a, b) = start_two(&redis, dir.path());
    let run = write_workload(&mut conn);

    std::thread::sleep(Duration::from_millis(3000));
    let owners = lease_owners(&mut conn);
    let a_parts: Vec<u32> = owners
        .iter()
        .filter(|(_, o)| o.as_str() == a.id)
        .map(|(p, _)| *p)
        .collect();
    let killed_at = redis_now_ms(&mut conn);
    a.sigkill();
    eprintln!(
        "{backend}: SIGKILLed {} holding {} partitions at {killed_at}",
        a.id,
        a_parts.len()
    );

    let took_all = wait_until(Duration::from_secs(30), || owned(&b) == 64);
    assert!(
        took_all,
        "survivor owns {} partitions\n{}",
        owned(&b),
        b.log_text()
    );
    let duplicates = check_all_applied_once(&mut conn, &run);
    // Effects within 50 ms of the kill are the killed engine's own last calls (sent before it died).
    let takeover =
        first_effect_after(&mut conn, &run, &a_parts, killed_at + 50).map(|t| t - killed_at);
    if std::env::var("ENGINE_TEST_LOG").is_ok() {
        eprintln!("--- survivor log ---\n{}", b.log_text());
    }
    eprintln!(
        "{backend}: takeover (kill → first fire in a taken-over partition, not counting the first 50 ms): {takeover:?} ms; \
         raw duplicate calls (no-op re-fires): {duplicates}; survivor claimed {:?}, late {:?}",
        b.metric("timers_claimed_total"),
        b.metric("timers_late_total"),
    );
}

fn sigterm_hands_over_at_once_and_loses_nothing(backend: Backend) {
    let redis = redis_with_counting(backend);
    let dir = tempfile::tempdir().unwrap();
    let mut conn = redis.sync_conn().unwrap();
    let (mut a, b) = start_two(&redis, dir.path());
    let run = write_workload(&mut conn);

    std::thread::sleep(Duration::from_millis(3000));
    let owners = lease_owners(&mut conn);
    let a_parts: Vec<u32> = owners
        .iter()
        .filter(|(_, o)| o.as_str() == a.id)
        .map(|(p, _)| *p)
        .collect();
    let a_errors = a.metric("redis_errors_total").unwrap_or(f64::NAN);
    let stopped_at = redis_now_ms(&mut conn);
    a.sigterm();
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(a.child.try_wait(), Ok(Some(_)))
    });
    assert!(
        exited,
        "engine did not exit after SIGTERM\n{}",
        a.log_text()
    );
    let status = a.child.wait().unwrap();
    assert!(status.success(), "exit status {status}\n{}", a.log_text());
    let still_held = lease_owners(&mut conn)
        .values()
        .filter(|o| o.as_str() == a.id)
        .count();
    assert_eq!(still_held, 0, "a stopped instance must release its leases");
    assert!(
        wait_until(Duration::from_secs(30), || owned(&b) == 64),
        "survivor owns {}",
        owned(&b)
    );
    let duplicates = check_all_applied_once(&mut conn, &run);
    let takeover =
        first_effect_after(&mut conn, &run, &a_parts, stopped_at).map(|t| t - stopped_at);
    eprintln!("{backend}: SIGTERM → first fire in a handed-over partition: {takeover:?} ms; duplicates {duplicates}");
    // A graceful hand-over re-fires nothing — unless a Redis error forced a retry (a no-op re-fire).
    let b_errors = b.metric("redis_errors_total").unwrap_or(f64::NAN);
    if a_errors == 0.0 && b_errors == 0.0 {
        assert_eq!(
            duplicates, 0,
            "a graceful hand-over must not re-fire anything"
        );
    }
}

#[test]
fn sigkill_mid_run_loses_and_doubles_nothing_standalone() {
    sigkill_mid_run_loses_and_doubles_nothing(Backend::Standalone);
}

#[test]
fn sigkill_mid_run_loses_and_doubles_nothing_cluster() {
    sigkill_mid_run_loses_and_doubles_nothing(Backend::Cluster);
}

#[test]
fn sigterm_hands_over_at_once_and_loses_nothing_standalone() {
    sigterm_hands_over_at_once_and_loses_nothing(Backend::Standalone);
}

#[test]
fn sigterm_hands_over_at_once_and_loses_nothing_cluster() {
    sigterm_hands_over_at_once_and_loses_nothing(Backend::Cluster);
}
