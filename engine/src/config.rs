//! Configuration: `clap` flags, each with a `RINGSIDE_ENGINE_*` environment fallback (Redis: the shared
//! `RINGSIDE_REDIS*`), then
//! [`EngineArgs::into_config`] validates them into a [`Config`].
//!
//! | flag | env | default | meaning |
//! |---|---|---|---|
//! | `--redis URL` (repeatable, or comma-separated) | `RINGSIDE_REDIS` (the name every service reads; the old `RINGSIDE_ENGINE_REDIS` still works, deprecated) | `redis://127.0.0.1:6379/` | the server, or cluster seed nodes |
//! | `--cluster` | `RINGSIDE_REDIS_CLUSTER` (old: `RINGSIDE_ENGINE_CLUSTER`, deprecated) | off | Redis Cluster |
//! | `--instance-id ID` | `RINGSIDE_ENGINE_INSTANCE_ID` | `<host>-<pid>-<random>` | lease owner and consumer name |
//! | `--http ADDR` | `RINGSIDE_ENGINE_HTTP` | `127.0.0.1:9100` | `/metrics`, `/healthz`, `/readyz` |
//! | `--lease-ttl-ms N` | `RINGSIDE_ENGINE_LEASE_TTL_MS` | 1200 | partition lease TTL: a dead instance's partitions are taken within about this long plus one renew interval |
//! | `--renew-every-ms N` | `RINGSIDE_ENGINE_RENEW_EVERY_MS` | ttl/4 | lease loop period (renew, rebalance, acquire) |
//! | `--group NAME` | `RINGSIDE_ENGINE_GROUP` | `engine` | consumer group on every timer stream |
//! | `--fire-function NAME` | `RINGSIDE_ENGINE_FIRE_FUNCTION` | `timer_fire` | the idempotent transition function |
//! | `--block-ms N` | `RINGSIDE_ENGINE_BLOCK_MS` | 1000 | XREADGROUP BLOCK per partition reader |
//! | `--max-in-flight N` | `RINGSIDE_ENGINE_MAX_IN_FLIGHT` | 4096 | fire calls outstanding at once |
//! | `--max-score-in-flight N` | `RINGSIDE_ENGINE_MAX_SCORE_IN_FLIGHT` | 16 | `score` fires (a reveal's scoring, ~1–2 ms of Redis each) outstanding at once, at least 1, at most `--max-in-flight` ([`DEFAULT_MAX_SCORE_IN_FLIGHT`]); one still running after 1 s gives its slot back (`SCORE_SLOT_HOLD`) |
//! | `--drain-timeout-ms N` | `RINGSIDE_ENGINE_DRAIN_TIMEOUT_MS` | 5000 | SIGTERM/rebalance: wait this long for in-flight fires |
//! | `--late-ms N` | `RINGSIDE_ENGINE_LATE_MS` | 50 | a fire completing later than this after due counts in `timers_late_total` |
//! | `--load-library` | `RINGSIDE_ENGINE_LOAD_LIBRARY` | off | load the `ringside` library where it is missing or older (never downgrades) |
//! | `--skip-library-check` | `RINGSIDE_ENGINE_SKIP_LIBRARY_CHECK` | off | tests/benches with a stand-in fire function only |
//! | `--log-format text\|json` | `RINGSIDE_ENGINE_LOG_FORMAT` | `text` | log output; filter with `RUST_LOG` |
//! | `--threads N` (binary only) | `RINGSIDE_ENGINE_THREADS` | one per CPU | tokio worker threads |

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// `--max-score-in-flight`'s default. Redis serves each client's pipelined commands (up to ~16 KB of them
/// per read) before it turns to the next client, so N `score` fires in flight can hold a node for N
/// scorings before the edges' answer calls get their turn. With every fire in one pipeline, the scoring
/// fires of 500 rooms that all completed at once (each ~1–2 ms on a busy 2-core host) kept the answers of
/// the same instant waiting for up to ~1 s; at 16 they wait for about 16 scorings (perf/edge.md, "Fewer
/// frames to the phones, and the answers' ack at the instant every room completes"). Only `score` fires
/// are held: every other kind is a cheap transition, and keeps the `--max-in-flight` throughput.
pub const DEFAULT_MAX_SCORE_IN_FLIGHT: usize = 16;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The engine's flags (shared by the service and the `bench` subcommand).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Redis URL; repeat (or comma-separate) to give several cluster seed nodes. Default:
    /// redis://127.0.0.1:6379/ (or the deprecated RINGSIDE_ENGINE_REDIS when set).
    #[arg(long = "redis", env = "RINGSIDE_REDIS", value_delimiter = ',')]
    pub redis: Vec<String>,
    /// Connect to a Redis Cluster (or the deprecated RINGSIDE_ENGINE_CLUSTER=true).
    #[arg(long, env = "RINGSIDE_REDIS_CLUSTER")]
    pub cluster: bool,
    /// This instance's name: the owner written in leases and the consumer name in the groups.
    /// Defaults to `<hostname>-<pid>-<random>`; give a stable one to resume its own pending entries
    /// after a restart.
    #[arg(long, env = "RINGSIDE_ENGINE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Address of the HTTP listener (/metrics, /healthz, /readyz); port 0 picks a free port.
    #[arg(long, env = "RINGSIDE_ENGINE_HTTP", default_value = "127.0.0.1:9100")]
    pub http: SocketAddr,
    /// Partition lease TTL in ms.
    #[arg(long, env = "RINGSIDE_ENGINE_LEASE_TTL_MS", default_value_t = 1200)]
    pub lease_ttl_ms: u64,
    /// Lease loop period in ms (default: a quarter of the TTL).
    #[arg(long, env = "RINGSIDE_ENGINE_RENEW_EVERY_MS")]
    pub renew_every_ms: Option<u64>,
    /// Consumer group name on the timer streams.
    #[arg(long, env = "RINGSIDE_ENGINE_GROUP", default_value = "engine")]
    pub group: String,
    /// The idempotent fire function (`FCALL <name> 2 room timers kind q gen due`).
    #[arg(
        long,
        env = "RINGSIDE_ENGINE_FIRE_FUNCTION",
        default_value = "timer_fire"
    )]
    pub fire_function: String,
    /// XREADGROUP BLOCK time of each partition reader, in ms.
    #[arg(long, env = "RINGSIDE_ENGINE_BLOCK_MS", default_value_t = 1000)]
    pub block_ms: u64,
    /// Fire calls outstanding at once.
    #[arg(long, env = "RINGSIDE_ENGINE_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// `score` fires outstanding at once (at least 1; at most --max-in-flight; one running past 1 s frees its slot).
    #[arg(long, env = "RINGSIDE_ENGINE_MAX_SCORE_IN_FLIGHT", default_value_t = DEFAULT_MAX_SCORE_IN_FLIGHT)]
    pub max_score_in_flight: usize,
    /// How long SIGTERM (and a rebalance) waits for in-flight fires, in ms.
    #[arg(long, env = "RINGSIDE_ENGINE_DRAIN_TIMEOUT_MS", default_value_t = 5000)]
    pub drain_timeout_ms: u64,
    /// A fire completing more than this many ms after due counts as late.
    #[arg(long, env = "RINGSIDE_ENGINE_LATE_MS", default_value_t = 50)]
    pub late_ms: u64,
    /// Load the ringside Functions library where it is missing or older (never downgrades).
    #[arg(long, env = "RINGSIDE_ENGINE_LOAD_LIBRARY")]
    pub load_library: bool,
    /// Do not check the ringside library version (only for a stand-in fire function).
    #[arg(long, env = "RINGSIDE_ENGINE_SKIP_LIBRARY_CHECK")]
    pub skip_library_check: bool,
    /// Log format.
    #[arg(
        long,
        env = "RINGSIDE_ENGINE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub redis: Vec<String>,
    pub cluster: bool,
    pub instance_id: String,
    pub http: Option<SocketAddr>,
    pub lease_ttl: Duration,
    pub renew_every: Duration,
    pub group: String,
    pub fire_function: String,
    pub block: Duration,
    pub max_in_flight: usize,
    /// `score` fires in flight at most ([`DEFAULT_MAX_SCORE_IN_FLIGHT`]).
    pub max_score_in_flight: usize,
    pub drain_timeout: Duration,
    pub late_ms: u64,
    pub load_library: bool,
    pub skip_library_check: bool,
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--redis: give at least one URL")]
    NoRedis,
    #[error(
        "--redis: standalone Redis takes exactly one URL, got {0} (add --cluster for a cluster)"
    )]
    SeveralStandalone(usize),
    #[error("--lease-ttl-ms must be between 300 and 60000, got {0}")]
    LeaseTtl(u64),
    #[error("--renew-every-ms must be at least 20 and at most a third of the lease TTL ({max}), got {got}")]
    RenewEvery { got: u64, max: u64 },
    #[error("--block-ms must be between 10 and 60000, got {0}")]
    Block(u64),
    #[error("--max-in-flight must be at least 1")]
    MaxInFlight,
    #[error("--max-score-in-flight must be at least 1")]
    MaxScoreInFlight,
    #[error("--instance-id must be 1..128 visible ASCII characters, got {0:?}")]
    InstanceId(String),
    #[error("--group and --fire-function must not be empty")]
    EmptyName,
}

/// Where the engine connects when neither `--redis` nor an environment variable says.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379/";

impl EngineArgs {
    /// Every service reads its Redis from `RINGSIDE_REDIS` / `RINGSIDE_REDIS_CLUSTER`; the engine's old
    /// names `RINGSIDE_ENGINE_REDIS` / `RINGSIDE_ENGINE_CLUSTER` still work when the new ones (and the
    /// flags) are absent. Returns the old names that were used, for a warning.
    fn apply_deprecated_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Vec<&'static str> {
        let mut used = Vec::new();
        if self.redis.is_empty() {
            match env("RINGSIDE_ENGINE_REDIS") {
                Some(v) => {
                    used.push("RINGSIDE_ENGINE_REDIS");
                    self.redis = v.split(',').map(str::to_owned).collect();
                }
                None => self.redis = vec![DEFAULT_REDIS.to_owned()],
            }
        }
        if !self.cluster && env("RINGSIDE_REDIS_CLUSTER").is_none() {
            if let Some(v) = env("RINGSIDE_ENGINE_CLUSTER") {
                used.push("RINGSIDE_ENGINE_CLUSTER");
                self.cluster = matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                );
            }
        }
        used
    }

    /// Validates the flags.
    pub fn into_config(mut self) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        for old in self.apply_deprecated_env(env) {
            eprintln!(
                "ringside-engine: {old} is deprecated, use {}",
                old.replace("ENGINE_", "")
            );
        }
        let redis: Vec<String> = self
            .redis
            .into_iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if redis.is_empty() {
            return Err(ConfigError::NoRedis);
        }
        if !self.cluster && redis.len() != 1 {
            return Err(ConfigError::SeveralStandalone(redis.len()));
        }
        if !(300..=60_000).contains(&self.lease_ttl_ms) {
            return Err(ConfigError::LeaseTtl(self.lease_ttl_ms));
        }
        let max_renew = self.lease_ttl_ms / 3;
        let renew = self.renew_every_ms.unwrap_or(self.lease_ttl_ms / 4);
        if !(20..=max_renew).contains(&renew) {
            return Err(ConfigError::RenewEvery {
                got: renew,
                max: max_renew,
            });
        }
        if !(10..=60_000).contains(&self.block_ms) {
            return Err(ConfigError::Block(self.block_ms));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::MaxInFlight);
        }
        if self.max_score_in_flight == 0 {
            return Err(ConfigError::MaxScoreInFlight);
        }
        let instance_id = self.instance_id.unwrap_or_else(default_instance_id);
        if instance_id.is_empty()
            || instance_id.len() > 128
            || !instance_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::InstanceId(instance_id));
        }
        if self.group.is_empty() || self.fire_function.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        Ok(Config {
            redis,
            cluster: self.cluster,
            instance_id,
            http: Some(self.http),
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            renew_every: Duration::from_millis(renew),
            group: self.group,
            fire_function: self.fire_function,
            block: Duration::from_millis(self.block_ms),
            max_in_flight: self.max_in_flight,
            // within --max-in-flight: a smaller --max-in-flight bounds the score fires too
            max_score_in_flight: self.max_score_in_flight.min(self.max_in_flight),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            late_ms: self.late_ms,
            load_library: self.load_library,
            skip_library_check: self.skip_library_check,
        })
    }
}

impl Config {
    /// Defaults for `urls` (used by tests and the bench): no HTTP listener, a random instance id.
    pub fn for_redis(urls: Vec<String>, cluster: bool) -> Config {
        Config {
            redis: urls,
            cluster,
            instance_id: default_instance_id(),
            http: None,
            lease_ttl: Duration::from_millis(1200),
            renew_every: Duration::from_millis(300),
            group: "engine".to_owned(),
            fire_function: "timer_fire".to_owned(),
            block: Duration::from_millis(1000),
            max_in_flight: 4096,
            max_score_in_flight: DEFAULT_MAX_SCORE_IN_FLIGHT,
            drain_timeout: Duration::from_secs(5),
            late_ms: 50,
            load_library: false,
            skip_library_check: false,
        }
    }
}

/// `<hostname>-<pid>-<4 hex>`.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "engine".to_owned());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EngineArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["engine"];
        all.extend_from_slice(args);
        Cli::parse_from(all).args.into_config()
    }

    #[test]
    fn defaults_are_valid_and_renew_is_a_quarter_of_the_ttl() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.lease_ttl, Duration::from_millis(1200));
        assert_eq!(c.renew_every, Duration::from_millis(300));
        assert_eq!(c.redis, vec!["redis://127.0.0.1:6379/".to_owned()]);
        assert!(!c.instance_id.is_empty());
    }

    #[test]
    fn cluster_seeds_repeat_or_comma_separate() {
        let c = parse(&[
            "--cluster",
            "--redis",
            "redis://a:1,redis://b:2",
            "--redis",
            "redis://c:3",
        ])
        .unwrap();
        assert_eq!(c.redis.len(), 3);
        assert_eq!(
            parse(&["--redis", "redis://a:1", "--redis", "redis://b:2"]).unwrap_err(),
            ConfigError::SeveralStandalone(2)
        );
    }

    #[test]
    fn the_old_engine_redis_names_still_work_when_the_new_ones_are_absent() {
        fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |k| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        }
        let args = |argv: &[&str]| {
            let mut all = vec!["engine"];
            all.extend_from_slice(argv);
            Cli::parse_from(all).args
        };
        let mut a = args(&[]);
        let old = [
            ("RINGSIDE_ENGINE_REDIS", "redis://a:1,redis://b:2"),
            ("RINGSIDE_ENGINE_CLUSTER", "true"),
        ];
        assert_eq!(
            a.apply_deprecated_env(env(&old)),
            ["RINGSIDE_ENGINE_REDIS", "RINGSIDE_ENGINE_CLUSTER"]
        );
        assert_eq!((a.redis.len(), a.cluster), (2, true));
        // A flag (or RINGSIDE_REDIS, which clap reads into the same field) wins over the old name.
        let mut a = args(&["--redis", "redis://new:1"]);
        assert_eq!(
            a.apply_deprecated_env(env(&old)),
            ["RINGSIDE_ENGINE_CLUSTER"]
        );
        assert_eq!(a.redis, ["redis://new:1"]);
        let mut a = args(&[]);
        assert!(a.apply_deprecated_env(env(&[])).is_empty());
        assert_eq!(a.redis, [DEFAULT_REDIS]);
        assert!(!a.cluster);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_name() {
        assert_eq!(
            parse(&["--lease-ttl-ms", "100"]).unwrap_err(),
            ConfigError::LeaseTtl(100)
        );
        let e = parse(&["--lease-ttl-ms", "1200", "--renew-every-ms", "600"]).unwrap_err();
        assert!(e.to_string().contains("--renew-every-ms"), "{e}");
        assert!(matches!(
            parse(&["--instance-id", "a b"]),
            Err(ConfigError::InstanceId(_))
        ));
        let e = parse(&["--max-score-in-flight", "0"]).unwrap_err();
        assert!(e.to_string().contains("--max-score-in-flight"), "{e}");
        // a --max-in-flight below the default score limit bounds the score fires too
        let small = parse(&["--max-in-flight", "8"]).unwrap();
        assert_eq!((small.max_in_flight, small.max_score_in_flight), (8, 8));
        let both = parse(&["--max-in-flight", "100", "--max-score-in-flight", "4"]).unwrap();
        assert_eq!((both.max_in_flight, both.max_score_in_flight), (100, 4));
    }
}
