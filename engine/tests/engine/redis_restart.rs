//! Redis dies and comes back empty (no persistence): the standalone server, or one primary of the
//! cluster. The engine keeps running, logs and counts the errors, recreates the consumer groups and
//! leases, and fires every schedule written after the restart. (Schedules Redis itself lost with its
//! memory are gone for everyone: that is Redis's durability setting, not the engine's.)

use std::time::Duration;

use crate::common::*;
use rand::Rng;
use ringside_engine::Engine;
use ringside_protocol::keys;
use ringside_testkit::{Backend, SyncConn, TestRedis};
use std::sync::atomic::Ordering::Relaxed;

fn timers_for(rooms: &[String], now: i64, spread: std::ops::Range<i64>) -> Vec<Timer> {
    let mut rng = rand::rng();
    let mut out = Vec::new();
    for room in rooms {
        for j in 0..5u32 {
            let due = now + rng.random_range(spread.clone());
            out.push(Timer {
                room: room.clone(),
                kind: "question_end",
                q: j,
                gen: 1,
                due,
                every: None,
            });
        }
    }
    out
}

fn all_applied(conn: &mut SyncConn, rooms: &[String]) -> bool {
    rooms
        .iter()
        .all(|room| hash_ints(conn, &format!("{}:effects", keys::room(room))).len() == 5)
}

fn restart(redis: &mut TestRedis) {
    match redis {
        TestRedis::Standalone(server) => {
            server.kill();
            std::thread::sleep(Duration::from_secs(3));
            server.restart().unwrap();
        }
        TestRedis::Cluster(cluster) => {
            cluster.node_mut(0).kill();
            std::thread::sleep(Duration::from_secs(3));
            cluster.node_mut(0).restart().unwrap();
            cluster.wait_until_ready().unwrap();
        }
    }
    load_counting_library(redis);
}

fn the_engine_survives_a_redis_restart(backend: Backend) {
    let mut redis = redis_with_counting(backend);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(Engine::start(config(&redis, "survivor")))
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || engine
        .partitions_owned()
        == 64));

    let mut conn = redis.sync_conn().unwrap();
    let before = room_codes("B", 100);
    let now = redis_now_ms(&mut conn);
    write_timers(&mut conn, &timers_for(&before, now, 200..1500));
    assert!(
        wait_until(Duration::from_secs(60), || all_applied(&mut conn, &before)),
        "before the restart"
    );
    drop(conn);

    restart(&mut redis);
    let errors_during = engine.metrics().redis_errors_total.load(Relaxed);
    eprintln!(
        "{backend}: Redis restarted; engine counted {errors_during} Redis errors; ready={}",
        engine.is_ready()
    );

    let mut conn = redis.sync_conn().unwrap();
    let after = room_codes("A", 200);
    let now = redis_now_ms(&mut conn);
    write_timers(&mut conn, &timers_for(&after, now, 300..3000));
    let applied = wait_until(Duration::from_secs(120), || all_applied(&mut conn, &after));
    assert!(
        applied,
        "schedules written after the restart were not all fired"
    );
    assert!(
        wait_until(Duration::from_secs(60), || streams_left(&mut conn)
            == (0, 0)),
        "{:?}",
        streams_left(&mut conn)
    );
    for room in &after {
        let calls = hash_ints(&mut conn, &format!("{}:calls", keys::room(room)));
        assert!(calls.values().all(|&n| n >= 1), "{room}: {calls:?}");
    }
    assert!(wait_until(Duration::from_secs(30), || engine.is_ready()
        && engine.partitions_owned() == 64));
    assert!(errors_during > 0, "the outage should have been noticed");
    rt.block_on(engine.shutdown());
}

#[test]
fn the_engine_survives_a_redis_restart_standalone() {
    the_engine_survives_a_redis_restart(Backend::Standalone);
}

#[test]
fn the_engine_survives_a_primary_restart_cluster() {
    the_engine_survives_a_redis_restart(Backend::Cluster);
}
