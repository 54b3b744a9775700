//! Shared harness of the engine's integration tests: real Redis (testkit), a stand-in fire function
//! that counts calls and effects, helpers to write schedules like the Redis Functions do, and engine
//! processes (the real binary) for the crash tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;
use ringside_engine::Config;
use ringside_protocol::keys;
use ringside_testkit::{Backend, SyncConn, TestRedis};

/// A stand-in for `timer_fire` with the same calling convention and reply shape, that records what
/// happened in the room's own slot:
/// - `P:calls` hash `kind:q:gen` → number of calls (raw: duplicates show here);
/// - `P:effects` hash `kind:q:gen` → Redis ms of the one call that applied it (HSETNX: at most once);
/// - `P:ticks` hash `<tick due>` → Redis ms, for `progress`; `P.ticks` counts down the ticks wanted;
/// - `enginetest:{pNN}:n` counts effects per partition (so a test can poll 64 keys, not every room).
///
/// A one-shot schedule is stale when the room's `gen` field is set and differs (a skipped question),
/// gone when `ended` is 1.
pub const COUNTING_LIBRARY: &str = r#"#!lua name=enginetest
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- KEYS: room, timers. ARGV: kind, q, gen, due (this fire's due time).
local function fire(keys, args)
  local P, T = keys[1], keys[2]
  local tag = string.match(T, '{p%d+}')
  local kind, q, gen, due = args[1], args[2], args[3], args[4]
  local id = kind .. ':' .. q .. ':' .. gen
  local now = now_ms()
  redis.call('HINCRBY', P .. ':calls', id, 1)
  local room = redis.call('HMGET', P, 'gen', 'ended', 'ticks')
  if room[2] == '1' then
    if kind == 'progress' then return '{"fired":false,"why":"gone","continue":false}' end
    return '{"fired":false,"why":"gone"}'
  end
  if kind == 'progress' then
    local left = tonumber(room[3] or '0')
    if left <= 0 then return '{"fired":false,"why":"stale","continue":false}' end
    if redis.call('HSETNX', P .. ':ticks', due, now) == 0 then
      return '{"fired":false,"why":"duplicate","continue":true}'
    end
    redis.call('INCR', 'enginetest:' .. tag .. ':n')
    left = redis.call('HINCRBY', P, 'ticks', -1)
    if left > 0 then return '{"fired":true,"kind":"progress","continue":true}' end
    return '{"fired":true,"kind":"progress","continue":false}'
  end
  if room[1] and room[1] ~= gen then return '{"fired":false,"why":"stale"}' end
  if redis.call('HSETNX', P .. ':effects', id, now) == 0 then return '{"fired":false,"why":"stale"}' end
  redis.call('INCR', 'enginetest:' .. tag .. ':n')
  return '{"fired":true,"kind":"' .. kind .. '"}'
end

redis.register_function('enginetest_fire', fire)
"#;

pub const FIRE_FUNCTION: &str = "enginetest_fire";

/// Loads [`COUNTING_LIBRARY`] on every primary.
pub fn load_counting_library(redis: &TestRedis) {
    let urls = redis.urls();
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(COUNTING_LIBRARY)
            .query(&mut conn)
            .unwrap();
    }
}

/// Starts Redis of `backend` with the counting library loaded.
pub fn redis_with_counting(backend: Backend) -> TestRedis {
    let redis = TestRedis::start(backend).expect("start redis");
    load_counting_library(&redis);
    redis
}

/// Logs of in-process engines, when `ENGINE_TEST_LOG` is set (e.g. `info,ringside_engine=debug`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("ENGINE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// An in-process engine configuration against `redis` using the counting function.
pub fn config(redis: &TestRedis, instance: &str) -> Config {
    init_logs();
    let mut c = Config::for_redis(redis.urls(), redis.is_cluster());
    c.instance_id = instance.to_owned();
    c.fire_function = FIRE_FUNCTION.to_owned();
    c.skip_library_check = true;
    c
}

/// One schedule to write.
#[derive(Debug, Clone)]
pub struct Timer {
    pub room: String,
    pub kind: &'static str,
    pub q: u32,
    pub gen: u32,
    pub due: i64,
    pub every: Option<i64>,
}

impl Timer {
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.kind, self.q, self.gen)
    }
}

/// Redis's clock in ms.
pub fn redis_now_ms(conn: &mut SyncConn) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query(conn).unwrap();
    s * 1000 + us / 1000
}

/// XADDs the timers into their rooms' partition streams, one pipeline per partition (one slot).
pub fn write_timers(conn: &mut SyncConn, timers: &[Timer]) {
    let mut by_partition: HashMap<String, Vec<&Timer>> = HashMap::new();
    for t in timers {
        by_partition
            .entry(keys::room_timers(&t.room))
            .or_default()
            .push(t);
    }
    for (stream, list) in by_partition {
        for chunk in list.chunks(500) {
            let cmds: Vec<redis::Cmd> = chunk
                .iter()
                .map(|t| {
                    let mut cmd = redis::cmd("XADD");
                    cmd.arg(&stream)
                        .arg("*")
                        .arg("room")
                        .arg(&t.room)
                        .arg("kind")
                        .arg(t.kind);
                    cmd.arg("q")
                        .arg(t.q)
                        .arg("gen")
                        .arg(t.gen)
                        .arg("due")
                        .arg(t.due);
                    if let Some(e) = t.every {
                        cmd.arg("every").arg(e);
                    }
                    cmd
                })
                .collect();
            pipeline(conn, cmds);
        }
    }
}

/// Runs `cmds` (all in one slot) as one pipeline on either backend.
pub fn pipeline(conn: &mut SyncConn, cmds: Vec<redis::Cmd>) {
    match conn {
        SyncConn::Standalone(c) => {
            let mut pipe = redis::pipe();
            for cmd in cmds {
                pipe.add_command(cmd).ignore();
            }
            let _: () = pipe.query(c).unwrap();
        }
        SyncConn::Cluster(c) => {
            let mut pipe = redis::cluster::cluster_pipe();
            for cmd in cmds {
                pipe.add_command(cmd).ignore();
            }
            let _: () = pipe.query(c).unwrap();
        }
    }
}

/// Sum of the per-partition effect counters.
pub fn effects_total(conn: &mut SyncConn) -> i64 {
    (0..keys::PARTITIONS)
        .map(|p| {
            let n: Option<i64> = conn
                .get(format!("enginetest:{}:n", keys::partition_tag(p)))
                .unwrap_or(None);
            n.unwrap_or(0)
        })
        .sum()
}

/// Entries left in all timer streams, and entries pending in the engine group.
pub fn streams_left(conn: &mut SyncConn) -> (i64, i64) {
    let mut len = 0;
    let mut pending = 0;
    for p in 0..keys::PARTITIONS {
        let stream = keys::timers(p);
        let l: i64 = conn.xlen(&stream).unwrap_or(0);
        len += l;
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("engine")
            .query(conn)
            .unwrap_or(redis::Value::Nil);
        if let redis::Value::Array(items) = v {
            if let Some(redis::Value::Int(n)) = items.first() {
                pending += n;
            }
        }
    }
    (len, pending)
}

/// `HGETALL` as a map of integers.
pub fn hash_ints(conn: &mut SyncConn, key: &str) -> HashMap<String, i64> {
    conn.hgetall(key).unwrap()
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` distinct room codes (upper-case alphanumerics, like game codes), spread over the partitions.
pub fn room_codes(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:05}")).collect()
}

/// A free TCP port on 127.0.0.1 (for an engine's HTTP listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `ringside-engine` process.
pub struct EngineProcess {
    pub child: Child,
    pub id: String,
    pub http_port: u16,
    pub log: PathBuf,
}

impl EngineProcess {
    /// Starts the real binary against `redis` with the counting function.
    pub fn spawn(redis: &TestRedis, id: &str, log_dir: &std::path::Path) -> EngineProcess {
        let http_port = free_port();
        let log = log_dir.join(format!("{id}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringside-engine"));
        for url in redis.urls() {
            cmd.arg("--redis").arg(url);
        }
        if redis.is_cluster() {
            cmd.arg("--cluster");
        }
        cmd.args(["--instance-id", id])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--fire-function", FIRE_FUNCTION, "--skip-library-check"])
            .env(
                "RUST_LOG",
                std::env::var("ENGINE_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env_remove("RINGSIDE_REDIS")
            .env_remove("RINGSIDE_ENGINE_REDIS")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().expect("spawn ringside-engine");
        EngineProcess {
            child,
            id: id.to_owned(),
            http_port,
            log,
        }
    }

    /// `GET path` on the engine's HTTP listener: (status, body), or None if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path)
    }

    /// A counter or gauge from /metrics.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        metric_value(&body, name)
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-request HTTP GET.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
