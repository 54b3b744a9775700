//! [`Redis`]: one async connection type for a standalone server and for Redis Cluster, so the edge, the
//! engine, the tools and the tests run the same code on both.
//!
//! Standalone uses a [`ConnectionManager`] (reconnects by itself). Cluster: [`Redis::connect`] uses
//! redis-rs's cluster client, which routes each `FCALL` by its first key — every Ringside call names
//! keys of one slot; [`Redis::connect_nodes`] uses Ringside's own routing ([`nodes`]: its own slot
//! map, one connection per node, calls of a dead node failed at once), which is what the edge and the
//! engine use, because redis-rs's client was seen hanging a slot's requests after a failover.
//!
//! [`Redis::connect`] uses the timeouts below. A caller that needs its own timeouts or retry settings
//! builds the variant itself (the engine does, and wraps it with its own per-request bound).

use nodes::Nodes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

pub mod nodes;

/// How long connecting to a node may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply may take. The client's default (500 ms) is too short for a big pipelined batch on a
/// busy server; a timed-out call may still have run (every game function is safe to repeat: a repeated
/// answer is `already_answered`, a repeated timer fire is `stale`, a repeated join with the same ids gets
/// its ack again).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Internal retries of one cluster request (redirects, reconnects, a slot-map refresh), 10–200 ms
/// apart: a failover is followed within a few hundred ms of the promotion, and a request to a slot
/// whose primary is gone fails fast (`unavailable`, the caller or client resends) instead of queueing.
pub const CLUSTER_RETRIES: u32 = 3;

/// A connection to a standalone Redis or to a Redis Cluster. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub enum Redis {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A cluster through [`Nodes`]: our slot map, one multiplexed connection per node.
    Nodes(Nodes),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redis::Single(_) => "Redis::Single",
            Redis::Cluster(_) => "Redis::Cluster",
            Redis::Nodes(_) => "Redis::Nodes",
        })
    }
}

impl Redis {
    /// Connects to `urls[0]` (standalone) or to the cluster reachable through any of `urls`.
    pub async fn connect(urls: &[String], cluster: bool) -> RedisResult<Redis> {
        let Some(first) = urls.first() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no Redis URL given",
            )));
        };
        if cluster {
            let client = redis::cluster::ClusterClient::builder(urls.to_vec())
                .connection_timeout(CONNECTION_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(CLUSTER_RETRIES)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .build()?;
            Ok(Redis::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(first.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            Ok(Redis::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
    }

    /// A cluster through [`Nodes`] (its own slot map and one connection per node), with the default
    /// timeouts.
    pub async fn connect_nodes(urls: &[String]) -> RedisResult<Redis> {
        Ok(Redis::Nodes(
            Nodes::connect(urls, CONNECTION_TIMEOUT, RESPONSE_TIMEOUT).await?,
        ))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_) | Redis::Nodes(_))
    }

    /// Runs `cmd` on every primary (the only server when standalone) and returns each node's answer,
    /// errors included, keyed by node address.
    pub async fn on_every_primary(
        &mut self,
        cmd: &Cmd,
    ) -> RedisResult<Vec<(String, RedisResult<Value>)>> {
        match self {
            Redis::Single(c) => {
                let v = c
                    .req_packed_command(cmd)
                    .await
                    .and_then(Value::extract_error);
                Ok(vec![("standalone".to_string(), v)])
            }
            Redis::Nodes(n) => {
                let mut out = Vec::new();
                for addr in n.primaries() {
                    let v = n.on_node(&addr, cmd).await.and_then(Value::extract_error);
                    out.push((addr, v));
                }
                Ok(out)
            }
            Redis::Cluster(c) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let v = c.route_command(cmd.clone(), routing).await?;
                let Value::Map(entries) = v else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "per-node answers",
                        format!("{v:?}"),
                    )));
                };
                Ok(entries
                    .into_iter()
                    .map(|(node, value)| {
                        let node = match node {
                            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                            other => format!("{other:?}"),
                        };
                        let value = match value {
                            Value::ServerError(e) => Err(redis::RedisError::from(e)),
                            v => Ok(v),
                        };
                        (node, value)
                    })
                    .collect())
            }
        }
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Single(c) => c.req_packed_command(cmd),
            Redis::Cluster(c) => c.req_packed_command(cmd),
            Redis::Nodes(n) => n.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Redis::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Redis::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Redis::Nodes(n) => n.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Single(c) => c.get_db(),
            Redis::Cluster(c) => c.get_db(),
            Redis::Nodes(n) => n.get_db(),
        }
    }
}
