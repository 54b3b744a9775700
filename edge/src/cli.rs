//! The command line of `ringside-edge`: [`Cli`] holds the transport's flags and flattens the game
//! layer's ([`GameFlags`], defined next to the game). It is the one module that knows both layers, so
//! neither [`config`](crate::config) nor [`game`](crate::game) imports the other. Every flag and its
//! environment variable: the table in [`config`](crate::config).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::admission::AdmissionLimits;
use crate::config::{parse_duration, parse_upstream, Config, Driver, TlsFiles};
use crate::game::{GameConfig, GameFlags};
use crate::sendq::SendQueueLimits;
use crate::ws::frame::Limits;

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
    /// reach the API from their own origin. `HOST:PORT`; a name is resolved once at start. Unset: `/api/`
    /// answers 404.
    #[arg(long, env = "RINGSIDE_EDGE_API_UPSTREAM", value_parser = parse_upstream)]
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
    /// A socket that sent no frame for this long gets a WebSocket ping (answered by the client's
    /// WebSocket stack; the game layer never sees it), unless its TCP stack acknowledged every byte
    /// of a frame the edge wrote to it within this time.
    #[arg(long, env = "RINGSIDE_EDGE_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Skip that ping where the client's TCP acknowledged every byte of a recent frame. `false`
    /// behind a proxy that terminates TCP (its ACKs say nothing of the client).
    #[arg(long, env = "RINGSIDE_EDGE_KEEPALIVE_ACKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub keepalive_acks: bool,
    /// How often clients send the app `ping` (`session:ack`'s `pingInterval`; clock sync). Keep it
    /// below --ping-interval, or pinging clients get the WebSocket ping as well.
    #[arg(long, env = "RINGSIDE_EDGE_APP_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub app_ping_interval: Duration,
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
    /// A fan-out wakes this many sockets' writers at a time; the event loop reaps readiness (answers,
    /// pings) and Redis replies between two chunks. 0: all at once.
    #[arg(long, env = "RINGSIDE_EDGE_FANOUT_WAKE_CHUNK", default_value_t = 256)]
    pub fanout_wake_chunk: usize,
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
    /// Per-process metrics: process i (of --processes N) also serves /metrics, /healthz and
    /// /readyz over plain HTTP on ADDR:PORT+i, and every metric line carries process="i". A scrape
    /// of the shared --listen port reaches one random process; scrape these ports instead.
    #[arg(long, env = "RINGSIDE_EDGE_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// The game layer's flags (`--redis`, `--cluster`, `--share-base`, `--addr-*`).
    #[command(flatten)]
    pub game: GameFlags,
    /// Admission control's thresholds and `session:ack`'s reconnect policy.
    #[command(flatten)]
    pub admission: AdmissionLimits,
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
    pub fn game_config(&self) -> GameConfig {
        self.game.to_config(self.listen, self.tls_cert.is_some())
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
            keepalive_acks: self.keepalive_acks,
            app_ping_interval: self.app_ping_interval,
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
            fanout_wake_chunk: self.fanout_wake_chunk,
            admission: if self.echo {
                base.admission
            } else {
                self.admission.clone()
            },
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn api_upstream_takes_an_address_or_a_name() {
        let c = |v: &str| Cli::try_parse_from(["ringside-edge", "--api-upstream", v]);
        assert_eq!(
            c("127.0.0.1:9200").unwrap().api_upstream,
            Some("127.0.0.1:9200".parse().unwrap())
        );
        let named = c("localhost:9200").unwrap().api_upstream.unwrap();
        assert!(named.ip().is_loopback() && named.port() == 9200, "{named}");
        assert!(c("localhost").is_err(), "no port");
    }

    #[test]
    fn app_ping_interval_defaults_to_the_protocols_and_can_be_set() {
        let cli = Cli::parse_from(["ringside-edge"]);
        assert_eq!(
            cli.to_config().app_ping_interval,
            Duration::from_millis(u64::from(ringside_protocol::limits::PING_INTERVAL_MS))
        );
        assert_eq!(
            Config::default().app_ping_interval,
            cli.to_config().app_ping_interval
        );
        let cli = Cli::parse_from(["ringside-edge", "--app-ping-interval", "15s"]);
        assert_eq!(cli.to_config().app_ping_interval, Duration::from_secs(15));
    }

    #[test]
    fn keepalive_acks_are_on_by_default_and_can_be_turned_off() {
        assert!(
            Cli::parse_from(["ringside-edge"])
                .to_config()
                .keepalive_acks
        );
        assert!(Config::default().keepalive_acks);
        let cli = Cli::parse_from(["ringside-edge", "--keepalive-acks", "false"]);
        assert!(!cli.to_config().keepalive_acks);
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
