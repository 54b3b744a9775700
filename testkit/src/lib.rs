//! Real Redis and PostgreSQL for Ringside's integration tests: `redis-server` processes started on free
//! ports, a standalone server or a Redis Cluster of primaries, and throwaway PostgreSQL servers
//! ([`TestPostgres`]: initdb + postgres on a free port), ready before a test sees them and removed after.
//!
//! No mocks: the Lua functions, the engine and the edge are tested against the same Redis the services
//! use, both standalone and clustered. A test never talks to a Redis it did not start — a developer's
//! Redis on 6379 is never used, and readiness checks that the answering process is our own child.
//!
//! ```no_run
//! use ringside_testkit::{backends, TestRedis};
//! use redis::Commands;
//!
//! for backend in backends() {
//!     let redis = TestRedis::start(backend).unwrap();
//!     let mut conn = redis.sync_conn().unwrap();
//!     let _: () = conn.set("room:{42}:state", "lobby").unwrap();
//!     // ... build the crate's own (async) connections from `redis.urls()` ...
//! }
//! ```
//!
//! # Layout
//! - [`binary`]: finds `redis-server` / `redis-cli` (`REDIS_SERVER`, `REDIS_CLI`, then `PATH`).
//! - `port`: picks ports whose cluster bus port (+10000) is free too, below the ephemeral range.
//! - `process`: spawns children that die with the test process, and sweeps directories of dead runs.
//! - [`RedisServer`] (`server`): one process; start, kill, restart, Drop cleanup.
//! - [`RedisCluster`] (`cluster`): N primaries joined by `redis-cli --cluster create`, polled until
//!   every node agrees the cluster is healthy; or N primaries with one replica each
//!   ([`RedisCluster::start_replicated`], short `cluster-node-timeout`) for failover tests: kill the
//!   primary of a key, [`RedisCluster::wait_for_failover`], [`RedisCluster::restart_node`].
//! - [`TestRedis`] / [`Backend`] (here): one test body, both deployments.
//! - [`shared_cluster`] (`shared`): one lazily started cluster per test binary.
//!
//! # Cleanup
//! Dropping a server kills it and deletes its directory, also when a test panics. If the test process
//! dies outright, the kernel kills every server (`PR_SET_PDEATHSIG`, armed from a spawner thread that
//! lives as long as the process — the signal follows the forking *thread*, not the process), and the
//! next run deletes the directories it left behind.
//!
//! Requirements: Linux, and `redis-server` + `redis-cli` installed
//! (`apt-get update && apt-get install -y redis-server`) or named by `REDIS_SERVER` / `REDIS_CLI`.

pub mod binary;
mod cluster;
mod error;
mod port;
mod postgres;
mod process;
mod server;
mod shared;

pub use binary::{find_binary, find_binary_in};
pub use cluster::{RedisCluster, FAILOVER_NODE_TIMEOUT_MS};
pub use error::HarnessError;
pub use postgres::{pg_bin_dir, TestPostgres, PG_BIN_ENV};
pub use server::RedisServer;
pub use shared::shared_cluster;

use redis::{Cmd, ConnectionLike, RedisResult, Value};

/// Which Redis deployment a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One `redis-server`.
    Standalone,
    /// A 3-primary Redis Cluster.
    Cluster,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Standalone => "standalone",
            Backend::Cluster => "cluster",
        })
    }
}

/// Both backends, to run one test body against each:
/// `for backend in backends() { let redis = TestRedis::start(backend)?; … }`.
pub fn backends() -> [Backend; 2] {
    [Backend::Standalone, Backend::Cluster]
}

/// A Redis of either backend, owned by the test (dropping it removes it).
#[derive(Debug)]
pub enum TestRedis {
    /// A standalone server.
    Standalone(RedisServer),
    /// A 3-primary cluster.
    Cluster(RedisCluster),
}

impl TestRedis {
    /// Starts a standalone server or a 3-primary cluster.
    pub fn start(backend: Backend) -> Result<TestRedis, HarnessError> {
        Ok(match backend {
            Backend::Standalone => TestRedis::Standalone(RedisServer::start()?),
            Backend::Cluster => TestRedis::Cluster(RedisCluster::start()?),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            TestRedis::Standalone(_) => Backend::Standalone,
            TestRedis::Cluster(_) => Backend::Cluster,
        }
    }

    /// True for a cluster: build a cluster client from [`urls`](Self::urls).
    pub fn is_cluster(&self) -> bool {
        matches!(self, TestRedis::Cluster(_))
    }

    /// One URL for a standalone server, every node's for a cluster.
    pub fn urls(&self) -> Vec<String> {
        match self {
            TestRedis::Standalone(server) => vec![server.url()],
            TestRedis::Cluster(cluster) => cluster.urls(),
        }
    }

    /// A synchronous connection of the right kind, for simple assertions.
    pub fn sync_conn(&self) -> Result<SyncConn, HarnessError> {
        Ok(match self {
            TestRedis::Standalone(server) => SyncConn::Standalone(server.sync_conn()?),
            TestRedis::Cluster(cluster) => SyncConn::Cluster(Box::new(cluster.sync_conn()?)),
        })
    }
}

/// A synchronous connection to either backend. It implements `redis::ConnectionLike`, so
/// `redis::Commands` methods and `redis::cmd(..).query(&mut conn)` work on it; a cluster connection
/// routes each command by its keys.
pub enum SyncConn {
    /// To a standalone server.
    Standalone(redis::Connection),
    /// To a cluster (boxed: a cluster connection is several times larger).
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl ConnectionLike for SyncConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            SyncConn::Standalone(c) => c.req_packed_command(cmd),
            SyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            SyncConn::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            SyncConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            SyncConn::Standalone(c) => c.req_command(cmd),
            SyncConn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            SyncConn::Standalone(c) => c.get_db(),
            SyncConn::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            SyncConn::Standalone(c) => c.supports_pipelining(),
            SyncConn::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            SyncConn::Standalone(c) => c.check_connection(),
            SyncConn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            SyncConn::Standalone(c) => c.is_open(),
            SyncConn::Cluster(c) => c.is_open(),
        }
    }
}
