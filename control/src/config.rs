//! Flags (with `RINGSIDE_*` environment fallbacks). Defaults run against a local PostgreSQL and Redis;
//! `deploy/local/up.sh` passes its own.
//!
//! | flag | env | default |
//! |---|---|---|
//! | `--database-url` | `RINGSIDE_DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/ringside` |
//! | `--redis` | `RINGSIDE_REDIS` | `redis://127.0.0.1:6379/` (comma-separated nodes for a cluster) |
//! | `--cluster` | `RINGSIDE_REDIS_CLUSTER` | off |
//! | `serve --listen` | `RINGSIDE_CONTROL_LISTEN` | `127.0.0.1:9200` |
//! | `serve --public-url` | `RINGSIDE_PUBLIC_URL` | from the request (`X-Forwarded-Proto`/`Host`) |
//! | `serve --writer-name` | `RINGSIDE_CONTROL_WRITER_NAME` | `control` |
//! | `serve --no-writer` | `RINGSIDE_CONTROL_NO_WRITER` | off |
//! | `serve --export-page` | `RINGSIDE_CONTROL_EXPORT_PAGE` | 250 players per `game_export` call |
//! | `serve --export-pause-ms` | `RINGSIDE_CONTROL_EXPORT_PAUSE_MS` | 2 ms between two export calls |
//! | `serve --pool-size` | `RINGSIDE_CONTROL_POOL_SIZE` | 16 |
//! | `serve --max-body-bytes` | `RINGSIDE_CONTROL_MAX_BODY_BYTES` | 1048576 |
//! | `serve --auth-failures-burst`, `--auth-failures-per-minute` | `RINGSIDE_CONTROL_AUTH_FAILURES_*` | 20, 30 |
//! | `serve --ops-token-file` | `RINGSIDE_CONTROL_OPS_TOKEN_FILE` | none: `GET /api/ops` is off |
//! | `serve --ops-scrape JOB=URL,…` | `RINGSIDE_CONTROL_OPS_SCRAPE` | none: the ops page shows no services |

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ringside-control",
    version,
    about = "Ringside's control plane: hosts, quizzes, rooms, results (PostgreSQL)"
)]
pub struct Cli {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "RINGSIDE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ringside",
        global = true
    )]
    pub database_url: String,
    /// Redis URL (repeat or comma-separate for several Redis Cluster nodes).
    #[arg(
        long = "redis",
        env = "RINGSIDE_REDIS",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    pub redis: Vec<String>,
    /// The --redis URLs are Redis Cluster nodes.
    #[arg(long, env = "RINGSIDE_REDIS_CLUSTER", global = true)]
    pub cluster: bool,
    /// Log as JSON lines.
    #[arg(long, env = "RINGSIDE_CONTROL_LOG_JSON", global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve the API and run the results writer.
    Serve(ServeArgs),
    /// Apply the migrations this database lacks, then exit.
    Migrate,
    /// Hosts and their API keys.
    #[command(subcommand)]
    Host(HostCommand),
    /// The quiz library.
    #[command(subcommand)]
    Quiz(QuizCommand),
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Create a host and print its API key (shown once; only a hash is kept).
    Create {
        /// The host's display name.
        #[arg(long)]
        name: String,
        /// Also write the key to this file (mode 0600), e.g. for scripts.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// List hosts.
    List,
}

#[derive(Debug, Subcommand)]
pub enum QuizCommand {
    /// Import quiz JSON files for a host (validated as the API does; an existing id of theirs is replaced).
    Import {
        /// The owner (see `host list`).
        #[arg(long)]
        host_id: i64,
        /// `private` (only the owner can host it) or `public` (anyone can; its answers are then learnable).
        #[arg(long, default_value = "private")]
        visibility: String,
        /// Quiz JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTP address of the API (the edge forwards `/api/` here).
    #[arg(
        long,
        env = "RINGSIDE_CONTROL_LISTEN",
        default_value = "127.0.0.1:9200"
    )]
    pub listen: SocketAddr,
    /// Base URL of the pages for join links (`{base}/play.html?code=…`); by default taken from the request.
    #[arg(long, env = "RINGSIDE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Consumer name of this instance's results writer (keep it stable across restarts).
    #[arg(long, env = "RINGSIDE_CONTROL_WRITER_NAME", default_value = "control")]
    pub writer_name: String,
    /// Do not run the results writer in this instance.
    #[arg(long, env = "RINGSIDE_CONTROL_NO_WRITER")]
    pub no_writer: bool,
    /// Players per export call of the results writer (1..1000): smaller blocks Redis for less time
    /// per call (each call is atomic), larger stores a big game sooner.
    #[arg(long, env = "RINGSIDE_CONTROL_EXPORT_PAGE", default_value_t = crate::writer::DEFAULT_PAGE as u64,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub export_page: u64,
    /// Pause between two export calls of one game, in ms (live games on the shard go first).
    #[arg(long, env = "RINGSIDE_CONTROL_EXPORT_PAUSE_MS", default_value_t = crate::writer::DEFAULT_PAGE_PAUSE_MS)]
    pub export_pause_ms: u64,
    /// Poll interval of the results streams, in ms.
    #[arg(long, env = "RINGSIDE_CONTROL_WRITER_POLL_MS", default_value_t = 250)]
    pub writer_poll_ms: u64,
    /// PostgreSQL connections.
    #[arg(long, env = "RINGSIDE_CONTROL_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,
    /// Largest request body, in bytes (413 above).
    #[arg(long, env = "RINGSIDE_CONTROL_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Failed authentications allowed at once per source address ...
    #[arg(
        long,
        env = "RINGSIDE_CONTROL_AUTH_FAILURES_BURST",
        default_value_t = 20
    )]
    pub auth_failures_burst: u32,
    /// ... and refilled at this rate (429 `rate_limited` beyond).
    #[arg(
        long,
        env = "RINGSIDE_CONTROL_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 30
    )]
    pub auth_failures_per_minute: u32,
    /// File holding the ops token: `GET /api/ops` (the ops page) answers only `Authorization: Bearer
    /// <token>`; without it the endpoint is off.
    #[arg(long, env = "RINGSIDE_CONTROL_OPS_TOKEN_FILE")]
    pub ops_token_file: Option<PathBuf>,
    /// A `/metrics` the ops page shows, as JOB=http://HOST:PORT/metrics (repeat, or comma-separated):
    /// each edge process's --metrics-listen port, each engine.
    #[arg(long, env = "RINGSIDE_CONTROL_OPS_SCRAPE", value_delimiter = ',')]
    pub ops_scrape: Vec<crate::ops::Target>,
    /// Test hook: abort after copying this many export pages of a game (a crash mid-write).
    #[arg(long, env = "RINGSIDE_CONTROL_TEST_CRASH_AFTER_PAGES", hide = true)]
    pub test_crash_after_pages: Option<u32>,
}
