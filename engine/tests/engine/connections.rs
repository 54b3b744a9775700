//! How many connections an engine holds on a cluster, read from each node's `CLIENT LIST`: one
//! dedicated reader connection per owned partition, on the primary that serves the partition, plus at
//! most one command connection per primary — also after a failover moved partitions to a promoted
//! replica (each partition reader follows its partition there, and the timers still fire).

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use ringside_engine::redis_conn::{reader_conn_name, COMMAND_CONN_NAME};
use ringside_engine::Engine;
use ringside_lua::conn::nodes::key_slot;
use ringside_protocol::keys;
use ringside_testkit::{RedisCluster, TestRedis};

/// Per live node index: the names of its normal clients (ours excluded).
fn client_names(cluster: &RedisCluster) -> HashMap<usize, Vec<String>> {
    let mut out = HashMap::new();
    for (i, node) in cluster.nodes().iter().enumerate() {
        if node.pid().is_none() {
            continue;
        }
        let Ok(mut conn) = node.sync_conn() else {
            continue;
        };
        let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut conn).unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("normal")
            .query(&mut conn)
            .unwrap();
        let names = list
            .lines()
            .filter(|l| !l.starts_with(&format!("id={me} ")))
            .map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("name="))
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        out.insert(i, names);
    }
    out
}

/// Per partition, the index of the node that serves its timer stream as primary now (one live node's
/// `CLUSTER NODES`).
fn partition_nodes(cluster: &RedisCluster) -> Result<Vec<usize>, String> {
    let node = cluster
        .nodes()
        .iter()
        .find(|n| n.pid().is_some())
        .ok_or("no live node")?;
    let mut conn = node.sync_conn().map_err(|e| e.to_string())?;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut conn)
        .map_err(|e| e.to_string())?;
    let mut owner = vec![None; 16384];
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags: Vec<&str> = f[2].split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|x| x.starts_with("fail")) {
            continue;
        }
        let port: u16 = f[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or("bad address")?;
        let Some(index) = cluster.nodes().iter().position(|n| n.port() == port) else {
            continue;
        };
        for range in f[8..].iter().filter(|r| !r.starts_with('[')) {
            let mut ends = range.splitn(2, '-').map(|x| x.parse::<usize>().ok());
            let (a, b) = match (ends.next().flatten(), ends.next()) {
                (Some(a), None) => (a, a),
                (Some(a), Some(Some(b))) => (a, b),
                _ => continue,
            };
            for o in owner.iter_mut().take(b + 1).skip(a) {
                *o = Some(index);
            }
        }
    }
    (0..keys::PARTITIONS)
        .map(|p| {
            let slot = key_slot(keys::timers(p).as_bytes()) as usize;
            owner[slot].ok_or(format!("no primary serves partition {p}"))
        })
        .collect()
}

/// Whether every partition's reader is connected exactly once, to the node serving the partition,
/// and the engine's command connection holds at most one per node: the engine's connections on the
/// cluster (every one is named; the test's own are not counted). The failure text says what was seen.
fn readers_in_place(cluster: &RedisCluster) -> Result<usize, String> {
    let home = partition_nodes(cluster)?;
    let names = client_names(cluster);
    let mut engine_total = 0;
    for (node, list) in &names {
        let commands = list.iter().filter(|n| *n == COMMAND_CONN_NAME).count();
        let readers: Vec<&String> = list
            .iter()
            .filter(|n| n.starts_with("ringside-engine-reader-"))
            .collect();
        let expected: Vec<String> = (0..keys::PARTITIONS)
            .filter(|p| home[*p as usize] == *node)
            .map(reader_conn_name)
            .collect();
        let mut got: Vec<String> = readers.iter().map(|s| s.to_string()).collect();
        got.sort();
        if got != expected {
            return Err(format!(
                "node {node}: readers {got:?}, expected those of its partitions {expected:?}"
            ));
        }
        if commands > 1 {
            return Err(format!("node {node}: {commands} command connections"));
        }
        engine_total += commands + readers.len();
    }
    Ok(engine_total)
}

/// Loads the counting library on every primary (replicas get it by replication).
fn load_on_primaries(cluster: &RedisCluster) {
    for node in cluster.nodes() {
        let mut conn = node.sync_conn().unwrap();
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).unwrap();
        if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            let _: String = redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(COUNTING_LIBRARY)
                .query(&mut conn)
                .unwrap();
        }
    }
}

#[test]
fn one_reader_connection_per_partition_on_its_node_also_after_a_failover() {
    let cluster = RedisCluster::start_replicated(3).expect("start cluster");
    load_on_primaries(&cluster);
    let nodes = cluster.nodes().len();
    let mut redis = TestRedis::Cluster(cluster);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = rt
        .block_on(Engine::start(config(&redis, "counted")))
        .unwrap();
    let TestRedis::Cluster(cluster) = &redis else {
        unreachable!()
    };
    assert!(wait_until(Duration::from_secs(60), || engine
        .partitions_owned()
        == 64));
    let mut last = Err(String::new());
    assert!(
        wait_until(Duration::from_secs(60), || {
            last = readers_in_place(cluster);
            last.is_ok()
        }),
        "before the failover: {last:?}"
    );
    let total = last.clone().unwrap();
    eprintln!("engine connections on a {nodes}-node cluster: {total}");
    // 64 readers + one command connection per primary (3): before, every reader held a router of its
    // own with a connection to every primary (~200).
    assert!(total <= 64 + 3, "{total} connections");

    // Kill the primary of partition 0; its partitions' readers follow them to the promoted replica.
    let stream = keys::timers(0);
    let killed = cluster.primary_of_key(&stream).unwrap();
    let TestRedis::Cluster(cluster) = &mut redis else {
        unreachable!()
    };
    cluster.node_mut(killed).kill();
    let promoted = cluster.wait_for_failover(killed, &stream).unwrap();
    eprintln!("node {killed} killed, node {promoted} promoted");
    let cluster = &*cluster;
    assert!(
        wait_until(Duration::from_secs(90), || {
            last = readers_in_place(cluster);
            last.is_ok() && engine.partitions_owned() == 64
        }),
        "after the failover: {last:?}, owned {}",
        engine.partitions_owned()
    );
    let total = last.clone().unwrap();
    assert!(total <= 64 + 3, "{total} connections after the failover");

    // And the partitions' timers still fire, the moved ones included.
    let mut conn = redis.sync_conn().unwrap();
    let rooms = room_codes("F", 200);
    let now = redis_now_ms(&mut conn);
    let timers: Vec<Timer> = rooms
        .iter()
        .map(|room| Timer {
            room: room.clone(),
            kind: "question_end",
            q: 1,
            gen: 1,
            due: now + 300,
            every: None,
        })
        .collect();
    write_timers(&mut conn, &timers);
    assert!(
        wait_until(Duration::from_secs(60), || rooms.iter().all(|room| {
            hash_ints(&mut conn, &format!("{}:effects", keys::room(room))).len() == 1
        })),
        "timers written after the failover were not all fired"
    );
    rt.block_on(engine.shutdown());
}
