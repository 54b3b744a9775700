//! Configuration: a [`Config`] struct with defaults and [`Config::validate`], filled from command-line
//! flags or `RINGSIDE_EDGE_*` environment variables by [`Cli`](crate::cli::Cli) (flags win over the
//! environment). The game layer's flags (`--redis`, `--cluster`, `--share-base`, `--addr-*`) are defined by
//! [`GameFlags`](crate::game::GameFlags) and flattened into the same command line.
//!
//! | flag | env | default |
//! |---|---|---|
//! | `--listen` | `RINGSIDE_EDGE_LISTEN` | `0.0.0.0:8080` |
//! | `--threads` | `RINGSIDE_EDGE_THREADS` | number of CPUs |
//! | `--processes` | `RINGSIDE_EDGE_PROCESSES` | 1 |
//! | `--echo` | `RINGSIDE_EDGE_ECHO` | off |
//! | `--web-root` | `RINGSIDE_EDGE_WEB_ROOT` | `web` |
//! | `--allowed-origins` | `RINGSIDE_EDGE_ALLOWED_ORIGINS` | any (comma list) |
//! | `--max-frame` / `--max-message` | `RINGSIDE_EDGE_MAX_FRAME` / `_MAX_MESSAGE` | 64 KiB (32 MiB with `--echo`) |
//! | `--max-header-bytes` | `RINGSIDE_EDGE_MAX_HEADER_BYTES` | 8192 |
//! | `--ping-interval` | `RINGSIDE_EDGE_PING_INTERVAL` | 25s: a WebSocket ping to a socket that sent no frame for this long (answered by the transport, `conn.rs`; the game layer never sees it), unless its TCP acknowledged every byte of a frame written to it within this time (`SIOCOUTQ` 0; while an acknowledgement is on its way, checked again each second for up to the ride below; see `--keepalive-acks`). On a socket written to in the last 5 s it waits up to 5 s (at most a quarter of `--idle-timeout` − this, and less than this) for the next frame, to leave in its write (`registry.rs`); on a silent one it goes at once |
//! | `--keepalive-acks` | `RINGSIDE_EDGE_KEEPALIVE_ACKS` | true: a client whose TCP acknowledged every byte of a recent frame needs no WebSocket ping. Set `false` behind a proxy that terminates TCP (an L7 ingress, nginx): the acknowledgements are then the proxy's, and a vanished client would be closed only when the proxy gives up instead of at `--idle-timeout` |
//! | `--app-ping-interval` | `RINGSIDE_EDGE_APP_PING_INTERVAL` | 20s: `session:ack`'s `pingInterval`, how often clients send the app `ping` (clock sync; after 4 quick ones 0.5 s apart). 1s..=120s, shorter than `--idle-timeout`; keep it below `--ping-interval` or pinging clients get the WebSocket ping too. Why 20 s: perf/edge.md, "Pings" |
//! | `--idle-timeout` | `RINGSIDE_EDGE_IDLE_TIMEOUT` | 60s |
//! | `--drain-timeout` | `RINGSIDE_EDGE_DRAIN_TIMEOUT` | 10s |
//! | `--handshake-timeout` | `RINGSIDE_EDGE_HANDSHAKE_TIMEOUT` | 10s |
//! | `--close-timeout` | `RINGSIDE_EDGE_CLOSE_TIMEOUT` | 5s |
//! | `--sendq-max-bytes` / `--sendq-max-frames` | `RINGSIDE_EDGE_SENDQ_MAX_BYTES` / `_FRAMES` | 1 MiB / 1024 (64 MiB / 1M with `--echo`); at most 1 GiB |
//! | `--tls-cert` / `--tls-key` | `RINGSIDE_EDGE_TLS_CERT` / `_KEY` | off (plain ws) |
//! | `--driver` | `RINGSIDE_EDGE_DRIVER` | `fusion` (io_uring, epoll fallback) |
//! | `--allow-thp` | `RINGSIDE_EDGE_ALLOW_THP` | off: transparent huge pages disabled for the process |
//! | `--metrics-listen` | `RINGSIDE_EDGE_METRICS_LISTEN` | off; `ADDR:PORT`: process *i* also serves `/metrics`, `/healthz`, `/readyz` on `PORT+i` |
//! | `--admission-max-loop-lag-ms` | `RINGSIDE_EDGE_ADMISSION_MAX_LOOP_LAG_MS` | 250 (0: off; all admission thresholds off with `--echo`) |
//! | `--admission-max-queued-bytes` | `RINGSIDE_EDGE_ADMISSION_MAX_QUEUED_BYTES` | 64 MiB per worker thread |
//! | `--admission-max-redis-in-flight` | `RINGSIDE_EDGE_ADMISSION_MAX_REDIS_IN_FLIGHT` | 10000 per process |
//! | `--admission-max-redis-latency-ms` | `RINGSIDE_EDGE_ADMISSION_MAX_REDIS_LATENCY_MS` | 500 |
//! | `--admission-max-fds-percent` | `RINGSIDE_EDGE_ADMISSION_MAX_FDS_PERCENT` | 90 % of RLIMIT_NOFILE |
//! | `--admission-retry-after-ms` | `RINGSIDE_EDGE_ADMISSION_RETRY_AFTER_MS` | 2000 (plus up to as much again, random) |
//! | `--reconnect-delay-ms` / `--reconnect-jitter-ms` / `--reconnect-jitter-max-ms` | `RINGSIDE_EDGE_RECONNECT_DELAY_MS` / `_JITTER_MS` / `_JITTER_MAX_MS` | 250 / 1000 / 4000: `session:ack`'s reconnect policy |
//! | `--addr-joins-per-sec` / `--addr-join-burst` | `RINGSIDE_EDGE_ADDR_JOINS_PER_SEC` / `_JOIN_BURST` | 50 / 200 per source address per process (0: off) |
//! | `--addr-code-misses` / `--addr-code-miss-window-secs` | `RINGSIDE_EDGE_ADDR_CODE_MISSES` / `_CODE_MISS_WINDOW_SECS` | 20 per 10 s per source address per process (0: off) |
//! | `--addr-table-size` | `RINGSIDE_EDGE_ADDR_TABLE_SIZE` | 65536 addresses remembered per process |
//! | `--redis` (repeatable, comma list) | `RINGSIDE_REDIS` | `redis://127.0.0.1:6379/` |
//! | `--cluster` | `RINGSIDE_REDIS_CLUSTER` | off: the `--redis` URLs are Redis Cluster nodes when on |
//! | `--answer-durability` | `RINGSIDE_ANSWER_DURABILITY` | `auto`: an answer is acked after `WAIT 1` (a replica has it) when the deployment has a replica at start, else on the primary's reply; `replica` / `primary` force it (docs/durability.md) |
//! | `--answer-wait-timeout-ms` | `RINGSIDE_ANSWER_WAIT_TIMEOUT_MS` | 500: longer without a replica's confirmation → `unavailable` |
//! | `--answer-calls-in-flight` | `RINGSIDE_EDGE_ANSWER_CALLS_IN_FLIGHT` | 1 list of one room's answers on its way to Redis at a time per process (one call, or pipelined calls of 256); answers arriving meanwhile leave together in the next (`answer_batch`), unless the list has been on its way > 250 ms; 0: no limit (every turn's answers leave at once) |
//! | `--answer-call-gap-ms` | `RINGSIDE_EDGE_ANSWER_CALL_GAP_MS` | 1 (0–1000): the least time between two calls of one room's answers per process (a busy room's answers wait a gap, 1–2 ms, or the previous call's round trip if longer, and leave together; 0: no gap) |
//! | `--leaderboard-hold-ms` | `RINGSIDE_EDGE_LEADERBOARD_HOLD_MS` | 50 (0–1000): how long a player's `game:leaderboard` waits in its send queue for the player's `game:answer:result`, so that both leave in one write (a `results` call slower than this, or a failed one, releases it; the bound is per call, so a big room's later players also wait for the calls before theirs, at most 10× this in all; 0: the leaderboard at once, the result on its own); 0 also turns off the reveal's hold below |
//! | `--reveal-hold-ms` | `RINGSIDE_EDGE_REVEAL_HOLD_MS` | 600 (0–2000): how long a player's `game:question:reveal` may wait for the room's `game:leaderboard`, so that reveal, leaderboard and result leave in one write (then as long as the leaderboard waits for the result); not in a room whose last leaderboard came later than this after its reveal (`ringside_edge_board_gap_ms`, timed where the Redis thread reads both); the host's and spectators' reveal never waits; 0 (or `--leaderboard-hold-ms 0`): never held |
//! | `--fanout-wake-chunk` | `RINGSIDE_EDGE_FANOUT_WAKE_CHUNK` | 256 sockets' writers woken at a time by a fan-out, the event loop reaping readiness and Redis replies between chunks (0: all at once) |
//! | `--share-base` | `RINGSIDE_EDGE_SHARE_BASE` | `http(s)://<listen>` |
//!
//! With `--processes N`, the launcher sets `RINGSIDE_EDGE_CHILD_INDEX=i` (0..N) for child *i*; that index is the
//! `process="i"` label on every metric line and the offset of its `--metrics-listen` port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::admission::AdmissionLimits;
use crate::sendq::SendQueueLimits;
use crate::ws::frame::Limits;

/// Which monoio driver the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// io_uring when the kernel allows it, else epoll.
    Fusion,
    /// epoll only.
    Legacy,
    /// io_uring only (fails if unavailable).
    Uring,
}

/// The edge's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub threads: usize,
    pub processes: usize,
    /// Echo mode: every message is echoed back; any or no subprotocol is accepted.
    pub echo: bool,
    pub web_root: PathBuf,
    /// Where `/api/` requests go (the control plane); `None`: `/api/` answers 404.
    pub api_upstream: Option<SocketAddr>,
    pub allowed_origins: Vec<String>,
    pub limits: Limits,
    pub max_header_bytes: usize,
    /// A socket that sent nothing for this long gets a WebSocket ping (the sweep in `registry.rs`).
    pub ping_interval: Duration,
    /// A due ping is skipped where the client's TCP acknowledged every byte of a recent frame
    /// (`registry.rs`). Off behind a proxy that terminates TCP: its ACKs say nothing of the client.
    pub keepalive_acks: bool,
    /// `session:ack`'s `pingInterval`: how often clients send the app `ping` (clock sync, keepalive).
    pub app_ping_interval: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's close frame / EOF after the server sent its close.
    pub close_timeout: Duration,
    pub sendq: SendQueueLimits,
    pub tls: Option<TlsFiles>,
    pub driver: Driver,
    /// Base address of the per-process metrics listener: process `i` binds `PORT+i`.
    pub metrics_listen: Option<SocketAddr>,
    /// This process's index under the `--processes` launcher (`RINGSIDE_EDGE_CHILD_INDEX`).
    pub process_index: Option<usize>,
    /// Admission control's thresholds and `session:ack`'s reconnect policy
    /// (docs/admission.md).
    pub admission: AdmissionLimits,
    /// A fan-out wakes its sockets' writers this many at a time, letting the event loop reap
    /// readiness and Redis replies between two chunks (`worker::run_deferred_wakes`); 0 wakes
    /// them all at once.
    pub fanout_wake_chunk: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:8080".parse().expect("valid literal"),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            processes: 1,
            echo: false,
            web_root: PathBuf::from("web"),
            api_upstream: None,
            allowed_origins: Vec::new(),
            limits: Limits::GAME,
            max_header_bytes: 8192,
            ping_interval: Duration::from_secs(25),
            keepalive_acks: true,
            app_ping_interval: Duration::from_millis(u64::from(
                ringside_protocol::limits::PING_INTERVAL_MS,
            )),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            sendq: SendQueueLimits::default(),
            tls: None,
            driver: Driver::Fusion,
            metrics_listen: None,
            process_index: None,
            admission: AdmissionLimits::default(),
            fanout_wake_chunk: 256,
        }
    }
}

/// Echo-mode send-queue limits: the client drives the traffic, so they only bound a runaway.
pub const ECHO_SENDQ: SendQueueLimits = SendQueueLimits {
    max_bytes: 64 * 1024 * 1024,
    max_frames: 1 << 20,
};

impl Config {
    /// Echo mode on `listen` with echo limits (tests, Autobahn).
    pub fn echo(listen: SocketAddr) -> Self {
        Config {
            listen,
            echo: true,
            limits: Limits::ECHO,
            sendq: ECHO_SENDQ,
            // The client drives the traffic (benchmarks, Autobahn): nothing to protect.
            admission: AdmissionLimits::off(),
            ..Config::default()
        }
    }

    /// The `process` label of every metric line: the launcher's child index, or 0 for a single
    /// process with `--metrics-listen`; `None` (no label) for a plain single process.
    pub fn process_label(&self) -> Option<usize> {
        match (self.process_index, self.metrics_listen) {
            (Some(i), _) => Some(i),
            (None, Some(_)) => Some(0),
            (None, None) => None,
        }
    }

    /// Where this process serves its own `/metrics`: `--metrics-listen` with the port moved up by
    /// the process index (port 0 stays 0: any free port, single process only).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let mut a = self.metrics_listen?;
        if a.port() != 0 {
            let port = usize::from(a.port()) + self.process_index.unwrap_or(0);
            a.set_port(u16::try_from(port).unwrap_or(u16::MAX));
        }
        Some(a)
    }

    /// Checks every value; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |flag: &'static str, why: String| Err(ConfigError { flag, why });
        if self.threads == 0 || self.threads > 1024 {
            return bad(
                "--threads",
                format!("must be 1..=1024, got {}", self.threads),
            );
        }
        if self.processes == 0 || self.processes > 256 {
            return bad(
                "--processes",
                format!("must be 1..=256, got {}", self.processes),
            );
        }
        if self.processes > 1 && self.listen.port() == 0 {
            return bad(
                "--processes",
                "several processes need a fixed --listen port, not 0".into(),
            );
        }
        if let Some(m) = self.metrics_listen {
            // The launcher's parent checks the whole range PORT..PORT+N-1; a child (1 process, index
            // i) checks PORT..PORT+i, which holds its own port.
            let n = self.processes.max(self.process_index.map_or(1, |i| i + 1));
            let first = usize::from(m.port());
            let last = first + n - 1;
            if n > 1 && first == 0 {
                return bad(
                    "--metrics-listen",
                    "several processes need a fixed port (process i serves PORT+i), not 0".into(),
                );
            }
            if last > usize::from(u16::MAX) {
                return bad(
                    "--metrics-listen",
                    format!("ports {first}..={last} (one per process) pass 65535"),
                );
            }
            let same_ip = m.ip() == self.listen.ip()
                || m.ip().is_unspecified()
                || self.listen.ip().is_unspecified();
            let lp = usize::from(self.listen.port());
            if first != 0 && same_ip && (first..=last).contains(&lp) {
                return bad(
                    "--metrics-listen",
                    format!(
                        "ports {first}..={last} (one per process) include the --listen port {lp}"
                    ),
                );
            }
        }
        if self.limits.max_frame < 125 {
            return bad(
                "--max-frame",
                format!("must be at least 125 bytes, got {}", self.limits.max_frame),
            );
        }
        if self.limits.max_message < self.limits.max_frame {
            return bad(
                "--max-message",
                format!(
                    "must be >= --max-frame ({}), got {}",
                    self.limits.max_frame, self.limits.max_message
                ),
            );
        }
        if self.max_header_bytes < 256 || self.max_header_bytes > 1 << 20 {
            return bad(
                "--max-header-bytes",
                format!("must be 256..=1048576, got {}", self.max_header_bytes),
            );
        }
        for (flag, d) in [
            ("--ping-interval", self.ping_interval),
            ("--idle-timeout", self.idle_timeout),
            ("--drain-timeout", self.drain_timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--close-timeout", self.close_timeout),
        ] {
            if d.is_zero() {
                return bad(flag, "must be greater than zero".into());
            }
        }
        if self.idle_timeout <= self.ping_interval {
            return bad(
                "--idle-timeout",
                format!(
                    "must be longer than --ping-interval ({:?}) or pinged clients time out, got {:?}",
                    self.ping_interval, self.idle_timeout
                ),
            );
        }
        let (lo, hi) = (
            ringside_protocol::limits::PING_INTERVAL_MIN_MS,
            ringside_protocol::limits::PING_INTERVAL_MAX_MS,
        );
        let app_ms = self.app_ping_interval.as_millis();
        if app_ms < u128::from(lo) || app_ms > u128::from(hi) {
            return bad(
                "--app-ping-interval",
                format!("must be {lo}ms..={hi}ms, got {:?}", self.app_ping_interval),
            );
        }
        // Echo mode sends no `session:ack`, so the app interval means nothing there.
        if !self.echo && self.app_ping_interval >= self.idle_timeout {
            return bad(
                "--app-ping-interval",
                format!(
                    "must be shorter than --idle-timeout ({:?}), got {:?}",
                    self.idle_timeout, self.app_ping_interval
                ),
            );
        }
        if let Err((flag, why)) = self.admission.validate() {
            return bad(flag, why);
        }
        if self.sendq.max_frames == 0 || self.sendq.max_bytes < 1024 {
            return bad(
                "--sendq-max-bytes",
                "needs at least 1 frame and 1024 bytes".into(),
            );
        }
        if self.sendq.max_bytes > crate::sendq::MAX_QUEUE_BYTES {
            return bad(
                "--sendq-max-bytes",
                format!("at most {} bytes", crate::sendq::MAX_QUEUE_BYTES),
            );
        }
        if let Some(t) = &self.tls {
            for p in [&t.cert, &t.key] {
                if !p.is_file() {
                    return bad(
                        "--tls-cert/--tls-key",
                        format!("{} is not a readable file", p.display()),
                    );
                }
            }
        }
        Ok(())
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag}: {why}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub why: String,
}

/// Parses `HOST:PORT` (an address, or a name resolved once at start: e.g. a Kubernetes Service, whose
/// cluster IP is stable) into the first address it resolves to.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e} (use HOST:PORT)"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Parses `25s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 25s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("unknown unit in {s:?} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        Config::echo("127.0.0.1:0".parse().unwrap())
            .validate()
            .unwrap();
    }

    #[test]
    fn validate_names_the_flag() {
        let c = Config {
            idle_timeout: Duration::from_secs(10),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().flag, "--idle-timeout");
        let c = Config {
            processes: 3,
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().flag, "--processes");
        for (app, idle) in [(500, 60_000), (121_000, 180_000), (60_000, 60_000)] {
            let c = Config {
                app_ping_interval: Duration::from_millis(app),
                idle_timeout: Duration::from_millis(idle),
                ..Config::default()
            };
            assert_eq!(
                c.validate().unwrap_err().flag,
                "--app-ping-interval",
                "{app} {idle}"
            );
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("25s").unwrap(), Duration::from_secs(25));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("7h").is_err());
    }
}
