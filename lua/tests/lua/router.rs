//! Ringside's own cluster routing (`ringside_lua::conn::nodes::Nodes`) on a real Redis Cluster of its
//! own (3 primaries with a replica each): the node addresses it keeps asking follow the cluster (a
//! forgotten node is dropped), and a call that followed an `ASK` during a real slot migration changes
//! [`Nodes::route_of`]'s token, so the edge's `WAIT` check (`edge/src/game/durable.rs`: same token and
//! connection before and after the answer's call, else `unavailable`) does not vouch for it with a
//! `WAIT` on a connection it did not run on.

use ringside_lua::conn::nodes::{key_slot, Nodes};
use ringside_lua::Redis;
use ringside_testkit::RedisCluster;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

fn sync(cluster: &RedisCluster, i: usize) -> redis::Connection {
    cluster.nodes()[i].sync_conn().expect("connect to a node")
}

fn is_primary(cluster: &RedisCluster, i: usize) -> bool {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut sync(cluster, i)).unwrap();
    matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
}

fn my_id(cluster: &RedisCluster, i: usize) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut sync(cluster, i))
        .unwrap()
}

fn addr(cluster: &RedisCluster, i: usize) -> String {
    format!("127.0.0.1:{}", cluster.nodes()[i].port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_cluster_forgot_is_no_longer_known() {
    let mut cluster = RedisCluster::start_replicated(3).expect("start cluster");
    let seed = (0..6).find(|&i| is_primary(&cluster, i)).unwrap();
    let gone = (0..6).find(|&i| !is_primary(&cluster, i)).unwrap();
    let gone_addr = addr(&cluster, gone);
    let gone_id = my_id(&cluster, gone);
    // One seed only: the replica is known through the cluster's views alone.
    let nodes = Nodes::connect(&[cluster.urls()[seed].clone()], TIMEOUT, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(nodes.known().len(), 6, "{:?}", nodes.known());
    assert!(nodes.known().contains(&gone_addr));

    // Killed: the cluster still lists it (failed), so it is still asked (it may come back).
    cluster.node_mut(gone).kill();
    nodes.refresh().await.unwrap();
    assert!(nodes.known().contains(&gone_addr), "{:?}", nodes.known());

    // Forgotten by every live node: no view lists it, and it is dropped. The seed stays.
    for i in (0..6).filter(|&i| i != gone) {
        let _: () = redis::cmd("CLUSTER")
            .arg("FORGET")
            .arg(&gone_id)
            .query(&mut sync(&cluster, i))
            .unwrap();
    }
    nodes.refresh().await.unwrap();
    let known = nodes.known();
    assert!(!known.contains(&gone_addr), "{known:?}");
    assert_eq!(known.len(), 5, "{known:?}");
    assert!(known.contains(&addr(&cluster, seed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_followed_an_ask_changes_the_route_token() {
    let cluster = RedisCluster::start_replicated(3).expect("start cluster");
    let key = "router:{ask}:answers";
    let slot = key_slot(key.as_bytes());
    let from = cluster.primary_of_key(key).unwrap();
    let to = (0..6)
        .find(|&i| i != from && is_primary(&cluster, i))
        .unwrap();
    let (from_id, to_id) = (my_id(&cluster, from), my_id(&cluster, to));
    let nodes = Nodes::connect(&cluster.urls(), TIMEOUT, TIMEOUT)
        .await
        .unwrap();
    let mut redis = Redis::Nodes(nodes.clone());
    let hset = |v: i64| {
        let mut c = redis::cmd("HSET");
        c.arg(key).arg("f").arg(v);
        c
    };

    // No redirect: the same token and connection before and after (the ack's WAIT may vouch).
    let (t0, n0) = nodes.route_of(key.as_bytes()).await.unwrap();
    assert_eq!(&*n0.addr, addr(&cluster, from));
    let _: i64 = hset(1).query_async(&mut redis).await.unwrap();
    let (t1, n1) = nodes.route_of(key.as_bytes()).await.unwrap();
    assert_eq!((t0, n0.id), (t1, n1.id));

    // A real migration of the slot, its key already moved: the next call gets ASK and runs on `to`.
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&from_id)
        .query(&mut sync(&cluster, to))
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&to_id)
        .query(&mut sync(&cluster, from))
        .unwrap();
    let _: () = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(cluster.nodes()[to].port())
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(key)
        .query(&mut sync(&cluster, from))
        .unwrap();
    let (t2, n2) = nodes.route_of(key.as_bytes()).await.unwrap();
    assert_eq!(
        &*n2.addr,
        addr(&cluster, from),
        "still routed to the source"
    );
    // A pipeline does not follow ASK (ASKING covers one command): the caller gets the ASK, nothing
    // ran on `to`, and the token stays (the pipeline's other calls, if any, ran on the source).
    let piped: redis::RedisResult<(i64,)> = redis::pipe()
        .add_command(hset(9))
        .query_async(&mut redis)
        .await;
    let e = piped.expect_err("a pipeline meeting ASK fails");
    assert_eq!(e.code(), Some("ASK"), "{e}");
    assert_eq!(nodes.route_of(key.as_bytes()).await.unwrap().0, t2);
    // A single command follows it.
    let _: i64 = hset(2).query_async(&mut redis).await.unwrap();
    // It ran on `to` (read there with ASKING).
    let mut on_to = sync(&cluster, to);
    let (v,): (Option<i64>,) = redis::pipe()
        .cmd("ASKING")
        .ignore()
        .cmd("HGET")
        .arg(key)
        .arg("f")
        .query(&mut on_to)
        .unwrap();
    assert_eq!(v, Some(2), "the write ran on the importing node");
    // A WAIT on the route's connection would vouch for it (the source's replica has every write of
    // that connection)...
    let waited: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut n2.conn.clone())
        .await
        .unwrap();
    assert!(waited >= 1);
    // ...but the token changed, so the check refuses the ack (`unavailable`, the client resends).
    let (t3, n3) = nodes.route_of(key.as_bytes()).await.unwrap();
    assert_eq!(n3.id, n2.id, "the same connection: only the token tells");
    assert_ne!(
        t3, t2,
        "a call that followed ASK must change the route token"
    );

    // Migration done: the slot is `to`'s. The next call is MOVED (the map changes once), then the
    // token is stable again and calls run on `to`'s connection.
    for i in 0..6 {
        if is_primary(&cluster, i) {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query(&mut sync(&cluster, i))
                .unwrap();
        }
    }
    let _: i64 = hset(3).query_async(&mut redis).await.unwrap();
    // (the MOVED started a map refresh; let one finish so the map is settled)
    nodes.refresh().await.unwrap();
    let (t4, n4) = nodes.route_of(key.as_bytes()).await.unwrap();
    assert_eq!(&*n4.addr, addr(&cluster, to));
    let _: i64 = hset(4).query_async(&mut redis).await.unwrap();
    let (t5, n5) = nodes.route_of(key.as_bytes()).await.unwrap();
    assert_eq!((t4, n4.id), (t5, n5.id));
}
