//! The harness against real redis-server: servers start, answer, route, restart, and leave nothing
//! behind — also when the test panics.

use std::ffi::OsStr;
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use redis::Commands;
use ringside_testkit::{
    backends, find_binary_in, shared_cluster, Backend, RedisCluster, RedisServer, TestRedis,
};

fn port_refuses_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn cluster_info(node: &RedisServer) -> String {
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut node.sync_conn().unwrap())
        .unwrap()
}

#[test]
fn standalone_server_starts_answers_commands_and_is_removed_on_drop() {
    let server = RedisServer::start().unwrap();
    let (port, pid, dir) = (
        server.port(),
        server.pid().unwrap(),
        server.dir().to_path_buf(),
    );
    assert_ne!(port, 6379, "never the developer's Redis");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}/"));

    let mut conn = server.sync_conn().unwrap();
    let _: () = conn.set("room:{1}:state", "lobby").unwrap();
    let state: String = conn.get("room:{1}:state").unwrap();
    assert_eq!(state, "lobby");
    assert!(dir.join("redis.log").exists());

    drop(conn);
    drop(server);
    assert!(
        port_refuses_connections(port),
        "port {port} still accepts connections"
    );
    assert!(!process_exists(pid), "redis-server pid {pid} still exists");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn three_primary_cluster_starts_and_routes_commands_to_all_primaries() {
    let cluster = RedisCluster::start().unwrap();
    assert_eq!(cluster.urls().len(), 3);
    for node in cluster.nodes() {
        let info = cluster_info(node);
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_size:3"), "{info}");
    }

    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut cluster.nodes()[0].sync_conn().unwrap())
        .unwrap();
    let masters = nodes.lines().filter(|l| l.contains("master")).count();
    assert_eq!(masters, 3, "{nodes}");
    let shards: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query(&mut cluster.nodes()[1].sync_conn().unwrap())
        .unwrap();
    assert_eq!(shards.len(), 3);

    let mut conn = cluster.sync_conn().unwrap();
    let keys_on = |node: &RedisServer| -> usize {
        redis::cmd("DBSIZE")
            .query(&mut node.sync_conn().unwrap())
            .unwrap()
    };
    let mut written = Vec::new();
    while cluster.nodes().iter().any(|n| keys_on(n) == 0) {
        assert!(
            written.len() < 1000,
            "1000 keys and still a primary without any"
        );
        for _ in 0..10 {
            let key = format!("room:{}:state", written.len());
            let _: () = conn.set(&key, written.len()).unwrap();
            written.push(key);
        }
    }
    for (i, key) in written.iter().enumerate() {
        let value: usize = conn.get(key).unwrap();
        assert_eq!(value, i, "{key}");
    }
    let total: usize = cluster.nodes().iter().map(keys_on).sum();
    assert_eq!(total, written.len());
}

#[test]
fn server_is_removed_when_a_test_panics() {
    let mut started: Option<(u16, u32, PathBuf)> = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = RedisServer::start().unwrap();
        started = Some((
            server.port(),
            server.pid().unwrap(),
            server.dir().to_path_buf(),
        ));
        panic!("intentional panic: a test body failing while its redis-server runs");
    }));
    assert!(outcome.is_err());
    let (port, pid, dir) = started.expect("the server started before the panic");
    assert!(
        !process_exists(pid),
        "redis-server pid {pid} outlived the panic"
    );
    assert!(
        port_refuses_connections(port),
        "port {port} still accepts connections"
    );
    assert!(!dir.exists(), "{} outlived the panic", dir.display());
}

#[test]
fn missing_redis_server_gives_install_instructions() {
    let path = std::env::var_os("PATH");
    let err = find_binary_in(
        "redis-server",
        "REDIS_SERVER",
        Some(OsStr::new("/nonexistent/redis-server")),
        path.as_deref(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("apt-get update && apt-get install -y redis-server"),
        "{err}"
    );
    assert!(err.contains("REDIS_SERVER=/path/to/redis-server"), "{err}");
    assert!(err.contains("/nonexistent/redis-server"), "{err}");

    let err = find_binary_in(
        "redis-cli",
        "REDIS_CLI",
        None,
        Some(OsStr::new("/nonexistent")),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("apt-get install -y redis-server"), "{err}");
    assert!(err.contains("REDIS_CLI=/path/to/redis-cli"), "{err}");
}

#[test]
fn binary_is_found_on_path_when_no_override_is_set() {
    let path = std::env::var_os("PATH");
    let found = find_binary_in("redis-server", "REDIS_SERVER", None, path.as_deref()).unwrap();
    assert!(found.ends_with("redis-server"), "{}", found.display());
}

#[test]
fn restart_keeps_port() {
    let mut server = RedisServer::start().unwrap();
    let (port, first_pid, dir) = (
        server.port(),
        server.pid().unwrap(),
        server.dir().to_path_buf(),
    );
    let _: () = server.sync_conn().unwrap().set("game:{7}:q", 3).unwrap();

    server.kill();
    assert_eq!(server.pid(), None);
    assert!(
        port_refuses_connections(port),
        "killed server still accepts on {port}"
    );
    assert!(server.sync_conn().is_err());

    server.restart().unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(server.dir(), dir);
    assert_ne!(server.pid(), Some(first_pid));
    let mut conn = server.sync_conn().unwrap();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let lost: Option<i64> = conn.get("game:{7}:q").unwrap();
    assert_eq!(lost, None, "nothing is persisted across a restart");
}

#[test]
fn restarted_cluster_node_rejoins_with_its_slots() {
    let mut cluster = RedisCluster::start().unwrap();
    cluster.node_mut(1).kill();
    cluster.node_mut(1).restart().unwrap();
    cluster.wait_until_ready().unwrap();
    let mut conn = cluster.sync_conn().unwrap();
    for i in 0..30 {
        let _: () = conn.set(format!("room:{i}:state"), i).unwrap();
    }
    let keys: usize = redis::cmd("DBSIZE")
        .query(&mut cluster.nodes()[1].sync_conn().unwrap())
        .unwrap();
    assert!(keys > 0, "the restarted node serves its slots again");
}

#[test]
fn replicated_cluster_fails_over_to_the_replica_and_keeps_what_wait_confirmed() {
    let mut cluster = RedisCluster::start_replicated(3).unwrap();
    assert_eq!(cluster.nodes().len(), 6);
    assert!(cluster_info(&cluster.nodes()[0]).contains("cluster_size:3"));
    let key = "room:{p07}:state";
    let primary = cluster.primary_of_key(key).unwrap();
    let mut direct = cluster.nodes()[primary].sync_conn().unwrap();
    let _: () = direct.set(key, "kept").unwrap();
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut direct)
        .unwrap();
    assert_eq!(replicas, 1, "the primary's replica confirms the write");
    drop(direct);

    cluster.node_mut(primary).kill();
    let promoted = cluster.wait_for_failover(primary, key).unwrap();
    assert_ne!(promoted, primary);
    let value: Option<String> = cluster.nodes()[promoted]
        .sync_conn()
        .unwrap()
        .get(key)
        .unwrap();
    assert_eq!(
        value.as_deref(),
        Some("kept"),
        "a WAIT-confirmed write survives"
    );

    // The killed primary comes back as the replica of its successor: the cluster is whole again.
    cluster.restart_node(primary).unwrap();
    assert_eq!(cluster.primary_of_key(key).unwrap(), promoted);
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut cluster.nodes()[primary].sync_conn().unwrap())
        .unwrap();
    assert!(role.contains("role:slave"), "{role}");
}

#[test]
fn one_test_body_runs_against_both_backends() {
    let mut seen = Vec::new();
    for backend in backends() {
        let redis = TestRedis::start(backend).unwrap();
        assert_eq!(redis.backend(), backend);
        assert_eq!(redis.is_cluster(), backend == Backend::Cluster);
        assert_eq!(redis.urls().len(), if redis.is_cluster() { 3 } else { 1 });
        let mut conn = redis.sync_conn().unwrap();
        for room in 0..20 {
            let _: () = conn
                .hset(format!("room:{{{room}}}:meta"), "host", "ana")
                .unwrap();
        }
        let host: String = conn.hget("room:{19}:meta", "host").unwrap();
        assert_eq!(host, "ana");
        seen.push(backend);
    }
    assert_eq!(seen, [Backend::Standalone, Backend::Cluster]);
}

#[test]
fn shared_cluster_is_started_once_and_lent_to_every_caller() {
    let first = shared_cluster().unwrap();
    let second = shared_cluster().unwrap();
    assert!(std::ptr::eq(first, second));
    let from_thread = std::thread::spawn(|| shared_cluster().unwrap().ports())
        .join()
        .unwrap();
    assert_eq!(from_thread, first.ports());
    // The thread that first asked for it may be gone; the cluster still answers.
    let mut conn = first.sync_conn().unwrap();
    let _: () = conn.set("testkit:{shared}:probe", 1).unwrap();
    let value: i64 = conn.get("testkit:{shared}:probe").unwrap();
    assert_eq!(value, 1);
}

#[test]
fn server_started_on_a_short_lived_thread_outlives_that_thread() {
    let server = std::thread::spawn(|| RedisServer::start().unwrap())
        .join()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pong: String = redis::cmd("PING")
        .query(&mut server.sync_conn().unwrap())
        .unwrap();
    assert_eq!(pong, "PONG");
}

/// A throwaway PostgreSQL answers SQL on its port, survives stop/start with its data, and is gone
/// (process and directory) once dropped.
#[test]
fn postgres_starts_keeps_data_across_restart_and_is_removed_on_drop() {
    use ringside_testkit::TestPostgres;
    let psql = |pg: &TestPostgres, sql: &str| -> String {
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &pg.url("postgres"),
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut pg = TestPostgres::start().expect("postgres starts");
    psql(
        &pg,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1)",
    );
    assert_eq!(psql(&pg, "SELECT sum(x) FROM t"), "42");
    pg.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg.port())).is_err(),
        "stopped server still listens"
    );
    pg.start_again().expect("starts again");
    assert_eq!(
        psql(&pg, "SELECT sum(x) FROM t"),
        "42",
        "data kept across a restart"
    );
    let (dir, pid) = (pg.dir().to_path_buf(), pg.pid().unwrap());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "postgres {pid} still running"
    );
}
