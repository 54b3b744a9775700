//! Configuration: a [`Config`] struct with defaults and [`Config::validate`], filled from command-line
//! flags or `RINGSIDE_EDGE_*` environment variables by [`Cli`] (flags win over the environment).
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
//! | `--ping-interval` | `RINGSIDE_EDGE_PING_INTERVAL` | 25s |
//! | `--idle-timeout` | `RINGSIDE_EDGE_IDLE_TIMEOUT` | 60s |
//! | `--drain-timeout` | `RINGSIDE_EDGE_DRAIN_TIMEOUT` | 10s |
//! | `--handshake-timeout` | `RINGSIDE_EDGE_HANDSHAKE_TIMEOUT` | 10s |
//! | `--close-timeout` | `RINGSIDE_EDGE_CLOSE_TIMEOUT` | 5s |
//! | `--sendq-max-bytes` / `--sendq-max-frames` | `RINGSIDE_EDGE_SENDQ_MAX_BYTES` / `_FRAMES` | 1 MiB / 1024 (64 MiB / 1M with `--echo`) |
//! | `--tls-cert` / `--tls-key` | `RINGSIDE_EDGE_TLS_CERT` / `_KEY` | off (plain ws) |
//! | `--driver` | `RINGSIDE_EDGE_DRIVER` | `fusion` (io_uring, epoll fallback) |
//! | `--allow-thp` | `RINGSIDE_EDGE_ALLOW_THP` | off: transparent huge pages disabled for the process |
//! | `--metrics-listen` | `RINGSIDE_EDGE_METRICS_LISTEN` | off; `ADDR:PORT`: process *i* also serves `/metrics`, `/healthz`, `/readyz` on `PORT+i` |
//! | `--addr-joins-per-sec` / `--addr-join-burst` | `RINGSIDE_EDGE_ADDR_JOINS_PER_SEC` / `_JOIN_BURST` | 50 / 200 per source address per process (0: off) |
//! | `--addr-code-misses` / `--addr-code-miss-window-secs` | `RINGSIDE_EDGE_ADDR_CODE_MISSES` / `_CODE_MISS_WINDOW_SECS` | 20 per 10 s per source address per process (0: off) |
//! | `--addr-table-size` | `RINGSIDE_EDGE_ADDR_TABLE_SIZE` | 65536 addresses remembered per process |
//!
//! With `--processes N`, the launcher sets `RINGSIDE_EDGE_CHILD_INDEX=i` (0..N) for child *i*; that index is the
//! `process="i"` label on every metric line and the offset of its `--metrics-listen` port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

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
    pub ping_interval: Duration,
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
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            sendq: SendQueueLimits::default(),
            tls: None,
            driver: Driver::Fusion,
            metrics_listen: None,
            process_index: None,
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
        if self.sendq.max_frames == 0 || self.sendq.max_bytes < 1024 {
            return bad(
                "--sendq-max-bytes",
                "needs at least 1 frame and 1024 bytes".into(),
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

/// Command line of `ringside-edge`.
#[derive(Debug, Parser)]
#[command(name = "ringside-edge", version, about = "Ringside WebSocket edge")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on (HTTP, ws, and wss with --tls-cert).
    #[arg(long, env = "RINGSIDE_EDGE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Worker threads (one pinned monoio runtime each). Default: number of CPUs.
    #[arg(long, env = "RINGSIDE_EDGE_THREADS")]
    pub threads: Option<usize>,
    /// Run N processes of the edge on the same port (SO_REUSEPORT); the parent forwards signals.
    #[arg(long, env = "RINGSIDE_EDGE_PROCESSES", default_value_t = 1)]
    pub processes: usize,
    /// Echo mode: echo every message; any or no subprotocol; large limits (Autobahn).
    #[arg(long, env = "RINGSIDE_EDGE_ECHO")]
    pub echo: bool,
    /// Directory of static files served over HTTP.
    #[arg(long, env = "RINGSIDE_EDGE_WEB_ROOT", default_value = "web")]
    pub web_root: PathBuf,
    /// The control plane's HTTP address: requests under `/api/` are forwarded there, so the pages
    /// reach the API from their own origin. Unset: `/api/` answers 404.
    #[arg(long, env = "RINGSIDE_EDGE_API_UPSTREAM")]
    pub api_upstream: Option<SocketAddr>,
    /// Allowed Origin values (comma list). Empty: any.
    #[arg(long, env = "RINGSIDE_EDGE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Largest client frame payload in bytes.
    #[arg(long, env = "RINGSIDE_EDGE_MAX_FRAME")]
    pub max_frame: Option<usize>,
    /// Largest client message in bytes.
    #[arg(long, env = "RINGSIDE_EDGE_MAX_MESSAGE")]
    pub max_message: Option<usize>,
    /// Largest HTTP request head in bytes (431 past it).
    #[arg(long, env = "RINGSIDE_EDGE_MAX_HEADER_BYTES", default_value_t = 8192)]
    pub max_header_bytes: usize,
    #[arg(long, env = "RINGSIDE_EDGE_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    #[arg(long, env = "RINGSIDE_EDGE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    #[arg(long, env = "RINGSIDE_EDGE_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    #[arg(long, env = "RINGSIDE_EDGE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    #[arg(long, env = "RINGSIDE_EDGE_CLOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,
    /// Hard limit of one socket's send queue in bytes (close 4008 past it).
    #[arg(long, env = "RINGSIDE_EDGE_SENDQ_MAX_BYTES")]
    pub sendq_max_bytes: Option<usize>,
    /// Hard limit of one socket's send queue in frames (close 4008 past it).
    #[arg(long, env = "RINGSIDE_EDGE_SENDQ_MAX_FRAMES")]
    pub sendq_max_frames: Option<usize>,
    /// PEM certificate chain: turns on wss.
    #[arg(long, env = "RINGSIDE_EDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "RINGSIDE_EDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[arg(long, env = "RINGSIDE_EDGE_DRIVER", value_enum, default_value_t = Driver::Fusion)]
    pub driver: Driver,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "RINGSIDE_EDGE_LOG_JSON")]
    pub log_json: bool,
    /// Keep transparent huge pages for the heap (off by default: with THP an idle socket costs
    /// ~0.55 KB more RSS, see `sys::disable_thp`).
    #[arg(long, env = "RINGSIDE_EDGE_ALLOW_THP")]
    pub allow_thp: bool,
    /// Redis URL for the game layer (repeat for several Redis Cluster nodes).
    #[arg(
        long = "redis",
        env = "RINGSIDE_REDIS",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis: Vec<String>,
    /// The --redis URLs are Redis Cluster nodes.
    #[arg(long, env = "RINGSIDE_REDIS_CLUSTER")]
    pub cluster: bool,
    /// Base of the join link in `room:created` (default: http://<listen>).
    #[arg(long, env = "RINGSIDE_EDGE_SHARE_BASE")]
    pub share_base: Option<String>,
    /// Per-process metrics: process i (of --processes N) also serves /metrics, /healthz and
    /// /readyz over plain HTTP on ADDR:PORT+i, and every metric line carries process="i". A scrape
    /// of the shared --listen port reaches one random process; scrape these ports instead.
    #[arg(long, env = "RINGSIDE_EDGE_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Per source address: `room:join` attempts and failed room-code lookups (docs/protocol.md §3).
    #[command(flatten)]
    pub address_limits: crate::game::address_limits::AddressLimits,
    /// Set by the --processes launcher for each child (0..N); not for people.
    #[arg(long, env = "RINGSIDE_EDGE_CHILD_INDEX", hide = true)]
    pub process_index: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a self-signed certificate for localhost/127.0.0.1 (cert.pem, key.pem) into DIR.
    GenDevCert {
        #[arg(long)]
        out: PathBuf,
    },
}

impl Cli {
    /// The game layer's settings.
    pub fn game_config(&self) -> crate::game::GameConfig {
        let share_base = self.share_base.clone().unwrap_or_else(|| {
            let host = if self.listen.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                self.listen.ip().to_string()
            };
            let scheme = if self.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}:{}", self.listen.port())
        });
        crate::game::GameConfig {
            redis: crate::game::hub::RedisConfig {
                urls: self.redis.clone(),
                cluster: self.cluster,
            },
            share_base,
            address_limits: self.address_limits.clone(),
        }
    }

    /// The config these flags describe (not yet validated).
    pub fn to_config(&self) -> Config {
        let base = if self.echo {
            Config::echo(self.listen)
        } else {
            Config {
                listen: self.listen,
                ..Config::default()
            }
        };
        Config {
            threads: self.threads.unwrap_or(base.threads),
            processes: self.processes,
            web_root: self.web_root.clone(),
            api_upstream: self.api_upstream,
            allowed_origins: self
                .allowed_origins
                .iter()
                .filter(|o| !o.is_empty())
                .cloned()
                .collect(),
            limits: Limits {
                max_frame: self.max_frame.unwrap_or(base.limits.max_frame),
                max_message: self.max_message.unwrap_or(base.limits.max_message),
            },
            max_header_bytes: self.max_header_bytes,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.drain_timeout,
            handshake_timeout: self.handshake_timeout,
            close_timeout: self.close_timeout,
            sendq: SendQueueLimits {
                max_bytes: self.sendq_max_bytes.unwrap_or(base.sendq.max_bytes),
                max_frames: self.sendq_max_frames.unwrap_or(base.sendq.max_frames),
            },
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            driver: self.driver,
            metrics_listen: self.metrics_listen,
            process_index: self.process_index,
            ..base
        }
    }
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
    }

    #[test]
    fn metrics_ports_follow_the_process_index() {
        let cli = Cli::parse_from([
            "ringside-edge",
            "--listen",
            "0.0.0.0:8080",
            "--processes",
            "3",
            "--metrics-listen",
            "0.0.0.0:9200",
        ]);
        let c = cli.to_config();
        c.validate().unwrap();
        assert_eq!(c.metrics_addr().unwrap().port(), 9200);
        assert_eq!(c.process_label(), Some(0));
        let child = Config {
            processes: 1,
            process_index: Some(2),
            ..c.clone()
        };
        child.validate().unwrap();
        assert_eq!(child.metrics_addr().unwrap().port(), 9202);
        assert_eq!(child.process_label(), Some(2));
        assert_eq!(Config::default().process_label(), None);
        assert_eq!(Config::default().metrics_addr(), None);
        for (listen, metrics, procs) in [
            ("0.0.0.0:8080", "0.0.0.0:8079", 2), // 8079..=8080 holds the ws port
            ("127.0.0.1:8080", "127.0.0.1:0", 2), // port 0 with several processes
            ("127.0.0.1:8080", "127.0.0.1:65535", 2),
        ] {
            let c = Config {
                listen: listen.parse().unwrap(),
                metrics_listen: Some(metrics.parse().unwrap()),
                processes: procs,
                ..Config::default()
            };
            assert_eq!(
                c.validate().unwrap_err().flag,
                "--metrics-listen",
                "{metrics}"
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

    #[test]
    fn echo_flag_raises_limits() {
        let cli = Cli::parse_from(["ringside-edge", "--echo", "--listen", "127.0.0.1:9001"]);
        let c = cli.to_config();
        assert!(c.limits.max_message >= 16 * 1024 * 1024);
        let cli = Cli::parse_from([
            "ringside-edge",
            "--max-frame",
            "1000",
            "--max-message",
            "2000",
        ]);
        assert_eq!(
            cli.to_config().limits,
            Limits {
                max_frame: 1000,
                max_message: 2000
            }
        );
    }
}
