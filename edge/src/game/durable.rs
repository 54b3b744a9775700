//! When an answer's `game:answer:ack` may go out: the durability of an ack (issue 13 #3).
//!
//! Redis replicates asynchronously: a primary that acknowledges an answer and dies before its replica
//! has it loses the answer, and the replica promoted in its place never saw it. With
//! [`AnswerDurability::Replica`] the hub sends `WAIT 1 <timeout>` on the same node connection after an
//! answer's `FCALL` has replied (`WAIT` cannot run inside a Function), and the edge acks only once
//! `WAIT` reports at least one replica; otherwise the client gets `unavailable` and resends (a
//! resent answer is `already_answered` or acked, never counted twice).
//!
//! `WAIT` counts the replicas that acknowledged every write the connection made so far, so one
//! `WAIT` covers every answer whose reply had arrived when it was sent: calls are grouped per room
//! partition (a partition is one hash slot, so one node connection) — while a `WAIT` is in flight the
//! next answers queue, and one `WAIT` confirms them all when it returns (group commit). A `WAIT`
//! blocks its connection until the replica acks (normally one round trip) or the timeout.
//!
//! The setting: `--answer-durability auto|replica|primary` (`RINGSIDE_ANSWER_DURABILITY`, default
//! `auto`: `replica` when the deployment has a replica at start, else `primary`) and
//! `--answer-wait-timeout-ms` (`RINGSIDE_ANSWER_WAIT_TIMEOUT_MS`, default 500).

use ringside_lua::conn::nodes::NodeConn;
use ringside_lua::{GameError, Redis};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How durable an answer is when the player gets its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AnswerDurability {
    /// `replica` when the deployment has a replica when the edge starts, else `primary`.
    #[default]
    Auto,
    /// Ack once one replica has the answer (`WAIT 1`): a failover loses no acked answer.
    Replica,
    /// Ack on the primary's reply: an answer acked just before its primary dies may be lost.
    Primary,
}

/// The durability flags, flattened into the game's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DurabilityFlags {
    /// When an answer is acked: `replica` (after `WAIT 1`), `primary` (on the primary's reply), or
    /// `auto` (`replica` if the deployment has a replica at start). docs/protocol.md §4, ARCHITECTURE.md.
    #[arg(
        long = "answer-durability",
        env = "RINGSIDE_ANSWER_DURABILITY",
        value_enum,
        default_value_t = AnswerDurability::Auto
    )]
    pub answer_durability: AnswerDurability,
    /// How long `WAIT` may wait for a replica before the answer is refused with `unavailable`.
    #[arg(
        long = "answer-wait-timeout-ms",
        env = "RINGSIDE_ANSWER_WAIT_TIMEOUT_MS",
        default_value_t = 500
    )]
    pub answer_wait_timeout_ms: u64,
}

impl Default for DurabilityFlags {
    fn default() -> Self {
        DurabilityFlags {
            answer_durability: AnswerDurability::Auto,
            answer_wait_timeout_ms: 500,
        }
    }
}

impl DurabilityFlags {
    /// Acks on the primary's reply (deployments without replicas, and tests of other things).
    pub fn primary() -> DurabilityFlags {
        DurabilityFlags {
            answer_durability: AnswerDurability::Primary,
            ..Default::default()
        }
    }
}

/// Whether the deployment behind `redis` has a replica: a `slave` in `CLUSTER NODES`, or
/// `connected_slaves` > 0 on a standalone primary.
pub async fn has_replica(redis: &mut Redis) -> redis::RedisResult<bool> {
    if redis.is_cluster() {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(redis)
            .await?;
        Ok(nodes
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .any(|flags| flags.split(',').any(|f| f == "slave")))
    } else {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(redis)
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .is_some_and(|n| n > 0))
    }
}

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Default)]
struct Partition {
    /// A `WAIT` is in flight for this partition.
    running: bool,
    /// Answers whose reply has arrived, for the next `WAIT`.
    pending: Vec<Waiter>,
}

/// The group commit of answers, per room partition. Cheap to clone.
#[derive(Clone)]
pub struct Confirmer {
    /// `None`: acks go out on the primary's reply.
    wait_timeout_ms: Option<u64>,
    /// Per (room partition, node connection id: 0 when not known).
    partitions: Arc<Mutex<HashMap<(u32, u64), Partition>>>,
}

impl Confirmer {
    /// Confirms nothing: acks on the primary's reply.
    pub fn off() -> Confirmer {
        Confirmer {
            wait_timeout_ms: None,
            partitions: Default::default(),
        }
    }

    /// `WAIT 1 wait_timeout_ms` before each ack.
    pub fn replica(wait_timeout_ms: u64) -> Confirmer {
        Confirmer {
            wait_timeout_ms: Some(wait_timeout_ms),
            partitions: Default::default(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.wait_timeout_ms.is_some()
    }

    /// With [`Redis::Nodes`] and acks that wait: the connection `code`'s calls go to now and the slot
    /// map's generation ([`ringside_lua::conn::nodes::Nodes::route_of`]), taken before the answer's call and
    /// handed to [`confirm_on`](Self::confirm_on). `None` otherwise (or when no primary serves the room).
    pub async fn route(&self, redis: &Redis, code: &str) -> Option<(u64, NodeConn)> {
        match redis {
            Redis::Nodes(n) if self.is_on() => n
                .route_of(ringside_protocol::keys::room(code).as_bytes())
                .await
                .ok(),
            _ => None,
        }
    }

    /// [`confirm_on`](Self::confirm_on) without a route taken before the call: for
    /// [`Redis::Single`] and [`Redis::Cluster`] (with [`Redis::Nodes`] it refuses the answer).
    pub async fn confirm(&self, redis: &Redis, code: &str) -> Result<(), GameError> {
        self.confirm_on(redis, code, None).await
    }

    /// Resolves once a replica has every write this process made to `code`'s node so far (call it
    /// after the answer's reply has arrived). With [`Redis::Nodes`], `before` is [`route`](Self::route)
    /// taken before the answer's call: the `WAIT` must run on the connection that ran the answer
    /// (`WAIT` counts only that connection's writes), so when the slot map or the connection changed
    /// meanwhile the answer is refused (`unavailable`, the client resends). Errs with an `unavailable`
    /// error when no replica confirmed within the timeout or Redis failed.
    pub async fn confirm_on(
        &self,
        redis: &Redis,
        code: &str,
        before: Option<(u64, NodeConn)>,
    ) -> Result<(), GameError> {
        let Some(timeout_ms) = self.wait_timeout_ms else {
            return Ok(());
        };
        let node = match redis {
            Redis::Nodes(_) => {
                let after = self.route(redis, code).await;
                match (before, after) {
                    (Some((g0, n0)), Some((g1, n1))) if g0 == g1 && n0.id == n1.id => Some(n0),
                    _ => {
                        return Err(unavailable(
                            "the room's node connection changed while the answer ran".into(),
                        ))
                    }
                }
            }
            _ => None,
        };
        // One group per connection: a WAIT covers every earlier write of its connection, whatever the
        // room partition (on our own node connections several partitions share one; a WAIT per partition
        // would block that connection once per partition). Without them, per partition (its node).
        let partition = match &node {
            Some(n) => (u32::MAX, n.id),
            None => (ringside_protocol::keys::partition_of(code), 0),
        };
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
            let p = parts.entry(partition).or_default();
            p.pending.push(tx);
            !std::mem::replace(&mut p.running, true)
        };
        if start {
            let me = self.clone();
            let route_key = ringside_protocol::keys::room(code);
            tokio::spawn(me.flush(redis.clone(), node, partition, route_key, timeout_ms));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(unavailable(why)),
            Err(_) => Err(unavailable("the confirmation was dropped".into())),
        }
    }

    /// Sends one `WAIT` for everything pending on `partition`, answers them, and goes on while more
    /// arrived meanwhile.
    async fn flush(
        self,
        mut redis: Redis,
        node: Option<NodeConn>,
        partition: (u32, u64),
        route_key: String,
        timeout_ms: u64,
    ) {
        loop {
            let batch = {
                let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
                let p = parts.entry(partition).or_default();
                if p.pending.is_empty() {
                    p.running = false;
                    parts.remove(&partition);
                    return;
                }
                std::mem::take(&mut p.pending)
            };
            let outcome = match &node {
                Some(n) => wait_on_node(n, timeout_ms).await,
                None => wait_one_replica(&mut redis, &route_key, timeout_ms).await,
            };
            crate::metrics::GAME
                .answer_waits_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if outcome.is_err() {
                crate::metrics::GAME
                    .answer_waits_failed_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            for w in batch {
                let _ = w.send(outcome.clone());
            }
        }
    }
}

/// `WAIT 1 timeout_ms` on `node`, the connection that ran the answers.
async fn wait_on_node(node: &NodeConn, timeout_ms: u64) -> Result<(), String> {
    use redis::aio::ConnectionLike;
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(1).arg(timeout_ms);
    let reply = node
        .conn
        .clone()
        .req_packed_command(&cmd)
        .await
        .and_then(|v| redis::from_redis_value::<i64>(v).map_err(Into::into));
    replicas_confirmed(reply, timeout_ms)
}

fn replicas_confirmed(reply: redis::RedisResult<i64>, timeout_ms: u64) -> Result<(), String> {
    match reply {
        Ok(n) if n >= 1 => Ok(()),
        Ok(_) => Err(format!(
            "no replica confirmed the answer within {timeout_ms} ms"
        )),
        Err(e) => Err(format!("WAIT failed: {e}")),
    }
}

/// `WAIT 1 timeout_ms` on the connection to the primary of `route_key`'s slot.
async fn wait_one_replica(
    redis: &mut Redis,
    route_key: &str,
    timeout_ms: u64,
) -> Result<(), String> {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(1).arg(timeout_ms);
    let reply = match redis {
        Redis::Cluster(c) => {
            use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
            let route = Route::with_key(route_key, SlotAddr::Master);
            c.route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
            )
            .await
            .and_then(|v| redis::from_redis_value::<i64>(v).map_err(Into::into))
        }
        Redis::Single(_) | Redis::Nodes(_) => cmd.query_async::<i64>(redis).await,
    };
    replicas_confirmed(reply, timeout_ms)
}

fn unavailable(why: String) -> GameError {
    GameError::Redis(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        why,
    )))
}
