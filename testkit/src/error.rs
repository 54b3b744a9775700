//! [`HarnessError`]: every way starting or checking a test Redis can fail, each saying what to do next.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why the harness could not give a test its Redis.
///
/// Messages are meant to be read in a failed test's output: they name the port, include the tail of
/// redis-server's log where there is one, and say how to install a missing binary.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `redis-server` or `redis-cli` is neither where its environment variable points nor on `PATH`.
    #[error(
        "{binary} not found ({detail}). Install it with \
         `apt-get update && apt-get install -y redis-server` (Debian/Ubuntu; it brings redis-cli too), \
         or set {env_var}=/path/to/{binary}"
    )]
    BinaryNotFound {
        /// The binary looked for, e.g. `redis-server`.
        binary: String,
        /// The environment variable that overrides where it is, e.g. `REDIS_SERVER`.
        env_var: String,
        /// Where it was looked for.
        detail: String,
    },

    /// PostgreSQL could not be set up or started (`initdb` failed, the server exited or never became
    /// ready); the message carries the log tail.
    #[error("{0}")]
    Postgres(String),

    /// The per-server temporary directory could not be created.
    #[error("could not create a temporary directory for redis-server: {0}")]
    TempDir(#[source] io::Error),

    /// The operating system refused to start a process.
    #[error("could not spawn {}: {source}", binary.display())]
    Spawn {
        /// The program that was to be run.
        binary: PathBuf,
        /// Why it could not be run.
        #[source]
        source: io::Error,
    },

    /// No port (with its cluster bus port, +10000) was free.
    #[error("no free port for redis-server: {0}")]
    NoFreePort(String),

    /// redis-server exited before it answered PING.
    #[error(
        "redis-server on 127.0.0.1:{port} exited during startup ({status}); log tail:\n{log_tail}"
    )]
    ExitedDuringStartup {
        /// The port it was told to listen on.
        port: u16,
        /// Its exit status.
        status: String,
        /// The last lines of its log and of its stdout/stderr.
        log_tail: String,
    },

    /// redis-server kept running but did not answer PING in time.
    #[error(
        "redis-server on 127.0.0.1:{port} did not answer PING within {timeout:?} \
         (last error: {last_error}); log tail:\n{log_tail}"
    )]
    NotReady {
        /// The port it listens on.
        port: u16,
        /// How long the harness waited.
        timeout: Duration,
        /// The last failure seen while polling.
        last_error: String,
        /// The last lines of its log.
        log_tail: String,
    },

    /// Every attempt lost a race for its port with another process.
    #[error("gave up after {attempts} attempts to start redis-server on a free port; last failure: {last}")]
    PortRetriesExhausted {
        /// How many ports were tried.
        attempts: u32,
        /// The failure of the last attempt.
        last: Box<HarnessError>,
    },

    /// `redis-cli --cluster create` failed or hung.
    #[error("`redis-cli --cluster create` failed ({status}); its output:\n{output}")]
    ClusterCreate {
        /// Its exit status, or that it timed out.
        status: String,
        /// What it printed.
        output: String,
    },

    /// The cluster's nodes did not all report a healthy, identical view in time.
    #[error(
        "cluster on ports {ports:?} was not ready and consistent within {timeout:?}; \
         last observed state:\n{last_state}"
    )]
    ClusterNotReady {
        /// The client ports of its nodes.
        ports: Vec<u16>,
        /// How long the harness waited.
        timeout: Duration,
        /// What each node reported last.
        last_state: String,
    },

    /// A connection was asked of a server that was killed and not restarted.
    #[error("redis-server on 127.0.0.1:{port} is not running (killed and not restarted)")]
    NotRunning {
        /// Its port.
        port: u16,
    },

    /// A command or connection to a server the harness started failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl HarnessError {
    /// True when redis-server died because another process took its port (or bus port) between the
    /// harness checking the port and redis-server binding it: worth retrying on another port.
    pub(crate) fn is_port_clash(&self) -> bool {
        matches!(self, HarnessError::ExitedDuringStartup { log_tail, .. }
            if log_tail.contains("Address already in use"))
    }
}
