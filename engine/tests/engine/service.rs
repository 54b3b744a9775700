//! The binary as a service: it refuses a mismatched Functions library with a clear error, waits (not
//! ready) for a missing one, serves /healthz, /readyz and /metrics, and exits 0 on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use ringside_testkit::{Backend, TestRedis};

const NEWER_LIBRARY: &str = "#!lua name=ringside\nredis.register_function('version', function() return 'ringside 999' end)\n";

fn engine_cmd(redis: &TestRedis, http_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringside-engine"));
    for url in redis.urls() {
        cmd.arg("--redis").arg(url);
    }
    if redis.is_cluster() {
        cmd.arg("--cluster");
    }
    cmd.args(["--http", &format!("127.0.0.1:{http_port}")])
        .env_remove("RINGSIDE_REDIS")
        .env_remove("RINGSIDE_ENGINE_REDIS")
        .env("RUST_LOG", "info");
    cmd
}

fn refuses_a_mismatched_library(backend: Backend) {
    let redis = TestRedis::start(backend).unwrap();
    for url in redis.urls() {
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(NEWER_LIBRARY)
            .query(&mut conn)
            .unwrap();
    }
    let out = engine_cmd(&redis, free_port())
        .stdin(Stdio::null())
        .output()
        .expect("run ringside-engine");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to run"), "{stderr}");
    assert!(stderr.contains("version 999"), "{stderr}");
}

fn waits_for_the_library_then_serves_probes_and_drains(backend: Backend) {
    let redis = TestRedis::start(backend).unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("engine.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = engine_cmd(&redis, port)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // No library yet: alive, not ready, and says why.
    assert!(
        wait_until(Duration::from_secs(30), || http_get(port, "/healthz")
            .is_some_and(|(s, _)| s == 200)),
        "{}",
        log_text()
    );
    // It may still be connecting to Redis (a busy machine): it says so first, then why it waits.
    assert!(
        wait_until(Duration::from_secs(30), || http_get(port, "/readyz")
            .is_some_and(|(_, body)| !body.contains("connecting"))),
        "{}",
        log_text()
    );
    let (status, body) = http_get(port, "/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("library"), "{body}");

    // Load it: the engine notices, becomes ready and takes every partition.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = ringside_lua::Redis::connect(&redis.urls(), redis.is_cluster())
            .await
            .unwrap();
        ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    });
    let ready = wait_until(Duration::from_secs(60), || {
        http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)
            && http_get(port, "/metrics").and_then(|(_, b)| metric_value(&b, "partitions_owned"))
                == Some(64.0)
    });
    assert!(ready, "{}", log_text());
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    for name in [
        "timers_pending ",
        "timers_fired_total ",
        "timers_stale_total ",
        "timers_late_total ",
        "timer_fire_drift_seconds_bucket{le=\"0.01\"}",
        "timer_fire_drift_seconds_count ",
        "partitions_owned 64",
        "redis_errors_total ",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    assert_eq!(http_get(port, "/nope").map(|(s, _)| s), Some(404));

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "no exit after SIGTERM: {}", log_text());
    assert!(child.wait().unwrap().success(), "{}", log_text());
    let mut conn = redis.sync_conn().unwrap();
    let leases: Vec<Option<String>> = (0..64)
        .map(|p| {
            redis::cmd("GET")
                .arg(format!(
                    "lease:{}",
                    ringside_protocol::keys::partition_tag(p)
                ))
                .query(&mut conn)
                .unwrap()
        })
        .collect();
    assert!(
        leases.iter().all(Option::is_none),
        "leases left after a graceful stop: {leases:?}"
    );
}

#[test]
fn refuses_a_mismatched_library_standalone() {
    refuses_a_mismatched_library(Backend::Standalone);
}

#[test]
fn refuses_a_mismatched_library_cluster() {
    refuses_a_mismatched_library(Backend::Cluster);
}

#[test]
fn waits_for_the_library_then_serves_probes_and_drains_standalone() {
    waits_for_the_library_then_serves_probes_and_drains(Backend::Standalone);
}

#[test]
fn waits_for_the_library_then_serves_probes_and_drains_cluster() {
    waits_for_the_library_then_serves_probes_and_drains(Backend::Cluster);
}
