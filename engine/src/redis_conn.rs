//! Connections to Redis, standalone or cluster, behind one type, and the retry policy.
//!
//! Two kinds of connection, because a blocking `XREADGROUP` occupies its connection until it returns:
//! - [`RedisTarget::command_conn`]: one shared, multiplexed connection for everything that does not
//!   block (FCALL, XACK, leases). It reconnects by itself (`ConnectionManager`; on a cluster,
//!   `ringside_lua::conn::nodes` — our own slot map and one connection per node, re-read after connection
//!   errors and redirects: calls of a dead primary fail at once and the engine's backoff retries them
//!   on the promoted replica).
//! - [`RedisTarget::reader_conn`]: a dedicated connection per owned partition for its blocking
//!   `XREADGROUP`, with a response timeout longer than the block time, named `ringside-engine-reader-pNN`
//!   (`CLIENT LIST`). On a cluster it is one plain connection to the primary serving the partition's
//!   slot, looked up in the command connection's slot map — not a router of its own — so an engine
//!   holds one connection per owned partition plus one per primary (67 on a 3-primary cluster, not one
//!   to every primary per reader). The reader drops and rebuilds it after any error; on a cluster the
//!   slot map is re-read first (a failover, a `MOVED`), so the new connection goes to the new primary.
//!
//! Every command the engine sends names keys of one hash slot (the stream and the room share `{pNN}`),
//! so the same code runs on both deployments.
//!
//! The standalone-or-cluster connection itself is `ringside_lua::Redis` (the same type the loader and
//! `Game` take); this module adds what is the engine's own: its timeouts and retry settings, the
//! reader connection, the engine-side bound on every request, error classes and backoff.

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind,
    Value,
};
use ringside_lua::Redis;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a non-blocking command may take before it counts as failed (and is retried by the caller).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// The engine-side bound on every request, past the client's own response timeout.
const OUTER_MARGIN: Duration = Duration::from_secs(2);
/// `CLIENT SETNAME` of the cluster command connection's node connections (readers: `ringside-engine-reader-pNN`).
pub const COMMAND_CONN_NAME: &str = "ringside-engine";

/// Where Redis is: one standalone server, or the seed nodes of a cluster.
#[derive(Clone)]
pub enum RedisTarget {
    Standalone(redis::Client),
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// `urls` must be exactly one URL unless `cluster`.
    pub fn new(urls: &[String], cluster: bool) -> Result<RedisTarget, RedisError> {
        if cluster {
            // Validate the URLs now; the client itself is built per connection.
            ClusterClient::builder(urls.to_vec()).build()?;
            Ok(RedisTarget::Cluster(urls.to_vec()))
        } else {
            match urls {
                [url] => Ok(RedisTarget::Standalone(redis::Client::open(url.as_str())?)),
                _ => Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "standalone Redis takes exactly one --redis URL (use --cluster for several)",
                ))),
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }

    /// A fresh cluster router and its node connections (for commands).
    async fn cluster_conn(
        urls: &[String],
        response_timeout: Duration,
    ) -> Result<Redis, RedisError> {
        Ok(Redis::Nodes(
            ringside_lua::conn::nodes::Nodes::connect_named(
                urls,
                CONNECT_TIMEOUT,
                response_timeout,
                Some(COMMAND_CONN_NAME),
            )
            .await?,
        ))
    }

    /// The shared, self-reconnecting connection for non-blocking commands. Fails if Redis cannot be
    /// reached now (callers retry with backoff).
    pub async fn command_conn(&self) -> Result<RedisConn, RedisError> {
        let inner = bounded(CONNECT_TIMEOUT * 3, async {
            match self {
                RedisTarget::Standalone(client) => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(COMMAND_TIMEOUT))
                        .set_number_of_retries(2)
                        .set_min_delay(Duration::from_millis(20))
                        .set_max_delay(Duration::from_millis(500));
                    Ok(Inner::Lua(Redis::Single(
                        ConnectionManager::new_with_config(client.clone(), config).await?,
                    )))
                }
                RedisTarget::Cluster(urls) => {
                    Ok(Inner::Lua(Self::cluster_conn(urls, COMMAND_TIMEOUT).await?))
                }
            }
        })
        .await?;
        Ok(RedisConn {
            inner,
            timeout: COMMAND_TIMEOUT + OUTER_MARGIN,
        })
    }

    /// A dedicated connection for one partition's blocking reads of `block` at most, for the timer
    /// stream `stream`, named `name` (`CLIENT SETNAME`). On a cluster it goes to the primary serving
    /// `stream`'s slot in `commands`' slot map (re-read first when `after_error`).
    pub async fn reader_conn(
        &self,
        commands: &RedisConn,
        stream: &str,
        name: &str,
        block: Duration,
        after_error: bool,
    ) -> Result<RedisConn, RedisError> {
        let timeout = block + COMMAND_TIMEOUT;
        let mut conn = bounded(CONNECT_TIMEOUT * 3, async {
            match self {
                RedisTarget::Standalone(client) => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(timeout));
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                }
                RedisTarget::Cluster(_) => {
                    let Some(Redis::Nodes(nodes)) = commands.to_lua() else {
                        return Err(RedisError::from((
                            ErrorKind::InvalidClientConfig,
                            "a cluster reader needs the cluster command connection",
                        )));
                    };
                    if after_error {
                        nodes.refresh().await?;
                    }
                    let (_addr, conn) = nodes.dedicated(stream.as_bytes(), timeout).await?;
                    Ok(conn)
                }
            }
        })
        .await?;
        // The name is for operators (`CLIENT LIST`); an ACL user without `@connection` may refuse it,
        // and the reader must work anyway.
        let named: Result<(), _> = bounded(
            COMMAND_TIMEOUT,
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(name)
                .query_async(&mut conn),
        )
        .await;
        if let Err(e) = named {
            tracing::warn!(name, error = %e, "CLIENT SETNAME refused; the reader's connection stays unnamed");
        }
        Ok(RedisConn {
            inner: Inner::Reader(conn),
            timeout: timeout + OUTER_MARGIN,
        })
    }
}

/// `CLIENT SETNAME` of partition `p`'s reader connection: `ringside-engine-reader-pNN`.
pub fn reader_conn_name(p: u32) -> String {
    format!("ringside-engine-reader-p{p:02}")
}

/// A connection to either deployment; `redis::AsyncCommands` and `cmd(..).query_async` work on it.
///
/// Every request is bounded by an engine-side timeout on top of the client's own response timeout:
/// the cluster client has been seen to leave requests hanging after a node restart (a recovery that
/// never completes), and a fire or a lease renewal that hangs forever would stall the engine.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
    timeout: Duration,
}

#[derive(Clone)]
enum Inner {
    /// Standalone reconnecting by itself (`ConnectionManager`), or cluster.
    Lua(Redis),
    /// A partition reader's own plain connection to one node (readers rebuild it themselves).
    Reader(MultiplexedConnection),
}

impl RedisConn {
    /// The same connection as the lua crate's type (for its loader and version check), without the
    /// engine-side bound; `None` for a standalone reader connection.
    pub fn to_lua(&self) -> Option<Redis> {
        match &self.inner {
            Inner::Lua(c) => Some(c.clone()),
            Inner::Reader(_) => None,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let timeout = self.timeout;
        let request = match &mut self.inner {
            Inner::Lua(c) => c.req_packed_command(cmd),
            Inner::Reader(c) => c.req_packed_command(cmd),
        };
        Box::pin(bounded(timeout, request))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let timeout = self.timeout;
        let request = match &mut self.inner {
            Inner::Lua(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Reader(c) => c.req_packed_commands(pipeline, offset, count),
        };
        Box::pin(bounded(timeout, request))
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Lua(c) => c.get_db(),
            Inner::Reader(c) => c.get_db(),
        }
    }
}

/// `fut`, or a timeout error (an I/O `TimedOut`, so it counts as transient) after `limit`.
pub async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no reply within {limit:?} (engine-side timeout)"),
        ))),
    }
}

/// Whether an error is about Redis being unreachable, restarting, failing over or busy — worth
/// retrying as is — rather than about the command itself.
pub fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound | ErrorKind::Parse => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        ),
        ErrorKind::Extension => matches!(e.code(), Some("BUSY") | Some("OOM") | Some("UNBLOCKED")),
        _ => false,
    }
}

/// `NOGROUP`: the stream or its consumer group is gone (a Redis restart without persistence, a
/// failover to an empty replica, or a stream deleted by hand).
pub fn is_nogroup(e: &RedisError) -> bool {
    e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP")
}

/// "Function not found" — the library is not loaded (yet, or any more, after a restart).
pub fn is_function_missing(e: &RedisError) -> bool {
    let s = e.to_string();
    s.contains("Function not found") || s.contains("function not found")
}

/// Bounded exponential backoff with jitter, for every retry loop in the engine.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            next: base,
        }
    }

    /// The next delay (with ±25 % jitter), doubling up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::random_range(0.75..1.25);
        d.mul_f64(jitter).min(self.max)
    }

    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stays_bounded() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(13));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(100)));
        assert!(delays[7] >= Duration::from_millis(75));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(13));
    }

    #[test]
    fn server_errors_are_classified() {
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(is_transient(&loading));
        let script =
            RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "bad arg"));
        assert!(!is_transient(&script));
    }
}
