//! [`Nodes`]: Ringside's own Redis Cluster routing — a slot map and one multiplexed connection per node.
//!
//! Why not redis-rs's cluster client: after a failover it was seen routing a slot to its dead primary
//! for a long time, each request waiting out the response timeout and then again (docs/durability.md).
//! Every Ringside call names keys of one slot, so the routing we need is small, and owning it makes
//! what happens in a failover plain:
//!
//! - **The slot map** is built from `CLUSTER NODES` of every node we know of (the seeds and every node
//!   any of them lists): per slot, the primary with the highest config epoch that no node marks
//!   `fail`. The highest epoch wins, so a restarted old primary that still claims its slots (it wakes
//!   up with its old `nodes.conf`) loses to the replica promoted in its place.
//! - **One multiplexed connection per node**, made on first use and shared by every call to that node.
//!   When a node dies its socket closes and every call in flight on it fails at once: the caller gets
//!   an I/O error (`unavailable` for a client, which resends). A node that hangs without closing its
//!   socket fails its calls at the response timeout.
//! - **The map is re-read** after a connection error, a timeout, `MOVED`, `CLUSTERDOWN`, `TRYAGAIN`,
//!   `READONLY`, `MASTERDOWN` or `LOADING`, and a request for a slot no healthy primary serves fails at
//!   once (`unavailable`). A `MOVED` is also followed at once (twice at most); `ASK` is followed with
//!   `ASKING` for a single command (a pipeline's `ASK` goes back to the caller). A call whose connection failed (not timed out) is sent once more, on a fresh map and
//!   connection (every game function is safe to repeat): a connection that died since the last call
//!   fails the next one without sending it. Nothing else is retried here; the caller (or the player's
//!   client) decides. Owners may also call [`Nodes::refresh`] periodically (the edge does, every
//!   500 ms), which finds a promotion even when no request failed.
//!
//! An answer's ack that waits for a replica (`WAIT 1`) must run on the very connection that ran the
//! answer's `FCALL` (`WAIT` counts that connection's writes only): [`Nodes::route_of`] returns the
//! connection a key's calls go to with a token of the map's generation and the slot's `ASK` count; the
//! same token and connection before and after a call means the call ran on that connection (a call that
//! followed an `ASK` ran on another node: the token changes, and the ack is refused).
//!
//! The addresses asked on refresh (`known`) are the seeds and the nodes the cluster listed at the last
//! refresh: a node forgotten by the cluster is dropped. [`Nodes::dedicated`] makes a connection of the
//! caller's own to a slot's primary, for a blocking read (the engine's partition readers).

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    Arg, AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16384;
/// No healthy primary serves the slot.
const NONE: u16 = u16::MAX;
/// How long reading one node's `CLUSTER NODES` may take during a refresh.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);
/// At most one refresh started by errors per this interval.
const REFRESH_GAP: Duration = Duration::from_millis(100);
/// `MOVED`/`ASK` redirections followed for one request.
const REDIRECTS: usize = 2;

/// One node's connection, shared by every call to that node. `id` is unique per connection made.
#[derive(Clone)]
pub struct NodeConn {
    pub id: u64,
    pub addr: Arc<str>,
    pub conn: MultiplexedConnection,
}

impl std::fmt::Debug for NodeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeConn({} #{})", self.addr, self.id)
    }
}

/// A Redis Cluster through its own slot map and one connection per node. Cheap to clone (shared).
#[derive(Clone)]
pub struct Nodes {
    shared: Arc<Shared>,
}

struct Shared {
    /// `redis://` URL of the first seed, its host and port replaced per node.
    url_template: String,
    /// The addresses given to [`Nodes::connect`]: always kept in `known`.
    seeds: Vec<String>,
    /// `CLIENT SETNAME` of every node connection, when given.
    client_name: Option<String>,
    config: AsyncConnectionConfig,
    next_id: AtomicU64,
    state: Mutex<State>,
    /// Serializes refreshes (the periodic one and those errors start).
    refresh_lock: tokio::sync::Mutex<()>,
    /// Refreshes completed: a caller that waited for `refresh_lock` while another refresh ran uses that
    /// one's map instead of reading every node again (a failover fails many calls at once).
    refreshes: AtomicU64,
}

struct State {
    /// Per slot: index into `primaries`, or [`NONE`].
    slots: Vec<u16>,
    primaries: Vec<Arc<str>>,
    /// The seeds and every node address the last refresh's views listed (a node the cluster no longer
    /// lists — forgotten, removed — is dropped), asked on refresh when a primary does not answer.
    known: BTreeSet<String>,
    conns: HashMap<Arc<str>, Arc<OnceCell<NodeConn>>>,
    /// Changes whenever the slot map does.
    gen: u64,
    /// Per slot: `ASK` redirections followed for it (wrapping). Part of [`Nodes::route_of`]'s token: a
    /// call that ran on another node after an `ASK` ran on a connection other than its route's.
    asks: Vec<u32>,
    /// A refresh started by an error is running or queued.
    refresh_pending: bool,
    last_refresh: Option<Instant>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nodes")
    }
}

fn io_error(kind: std::io::ErrorKind, msg: String) -> RedisError {
    RedisError::from(std::io::Error::new(kind, msg))
}

impl Nodes {
    /// Reads the slot map from `urls` (any reachable node will do) and returns the router.
    pub async fn connect(
        urls: &[String],
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> RedisResult<Nodes> {
        Self::connect_named(urls, connect_timeout, response_timeout, None).await
    }

    /// [`connect`](Self::connect), naming every node connection `client_name` (`CLIENT SETNAME`, seen
    /// in `CLIENT LIST`) when given.
    pub async fn connect_named(
        urls: &[String],
        connect_timeout: Duration,
        response_timeout: Duration,
        client_name: Option<&str>,
    ) -> RedisResult<Nodes> {
        let Some(first) = urls.first() else {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no Redis URL given",
            )));
        };
        let seeds: Vec<String> = urls.iter().map(|u| addr_of_url(u)).collect();
        let nodes = Nodes {
            shared: Arc::new(Shared {
                url_template: first.clone(),
                seeds: seeds.clone(),
                client_name: client_name.map(str::to_owned),
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout)),
                next_id: AtomicU64::new(1),
                state: Mutex::new(State {
                    slots: vec![NONE; SLOTS],
                    primaries: Vec::new(),
                    known: seeds.into_iter().collect(),
                    conns: HashMap::new(),
                    gen: 0,
                    asks: vec![0; SLOTS],
                    refresh_pending: false,
                    last_refresh: None,
                }),
                refresh_lock: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(0),
            }),
        };
        nodes.refresh().await?;
        Ok(nodes)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the slot map now: from the primaries (whose connections stay open) when every one of them
    /// answers, else from every known node (replicas too). A caller that waited while another refresh ran
    /// takes that one's result. Errs only when no node answered.
    pub async fn refresh(&self) -> RedisResult<()> {
        let seen = self.shared.refreshes.load(Ordering::Acquire);
        let _one = self.shared.refresh_lock.lock().await;
        if self.shared.refreshes.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let (primaries, known): (Vec<String>, Vec<String>) = {
            let st = self.state();
            (
                st.primaries.iter().map(|a| a.to_string()).collect(),
                st.known.iter().cloned().collect(),
            )
        };
        let (mut texts, mut last_error) = if primaries.is_empty() {
            (Vec::new(), String::from("no primary known"))
        } else {
            self.ask_cluster_nodes(primaries.clone()).await
        };
        if texts.len() < primaries.len() || texts.is_empty() {
            (texts, last_error) = self.ask_cluster_nodes(known).await;
        }
        let result = self.apply_views(texts, last_error);
        self.shared.refreshes.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// `CLUSTER NODES` of each of `addrs` at once (each within [`REFRESH_TIMEOUT`]): the views that came,
    /// and the last error.
    async fn ask_cluster_nodes(&self, addrs: Vec<String>) -> (Vec<(String, String)>, String) {
        let mut asks = tokio::task::JoinSet::new();
        for addr in addrs {
            let me = self.clone();
            asks.spawn(async move {
                let view = tokio::time::timeout(REFRESH_TIMEOUT, me.cluster_nodes(&addr)).await;
                (addr, view)
            });
        }
        let mut texts = Vec::new();
        let mut last_error = String::from("no node known");
        while let Some(joined) = asks.join_next().await {
            let Ok((addr, view)) = joined else { continue };
            match view {
                Ok(Ok(text)) => texts.push((addr, text)),
                Ok(Err(e)) => last_error = format!("{addr}: {e}"),
                Err(_) => {
                    last_error =
                        format!("{addr}: no CLUSTER NODES reply within {REFRESH_TIMEOUT:?}")
                }
            }
        }
        (texts, last_error)
    }

    /// Makes the views' merged slot map the current one.
    fn apply_views(&self, texts: Vec<(String, String)>, last_error: String) -> RedisResult<()> {
        if texts.is_empty() {
            return Err(io_error(
                std::io::ErrorKind::NotConnected,
                format!("cannot read the cluster's slot map: {last_error}"),
            ));
        }
        let map = SlotMap::merge(texts.iter().map(|(addr, t)| (addr.as_str(), t.as_str())));
        let mut st = self.state();
        // Known: the seeds and what the cluster lists now. A node every view has forgotten (`CLUSTER
        // FORGET`, a node removed) is no longer asked; a failed node still listed is kept (it may come
        // back as a replica).
        st.known = self
            .shared
            .seeds
            .iter()
            .cloned()
            .chain(map.seen.iter().cloned())
            .collect();
        // Only connections to primaries stay open (a replica's, made to read its view, is closed again).
        let primaries: Vec<Arc<str>> = map
            .primaries
            .iter()
            .map(|a| Arc::from(a.as_str()))
            .collect();
        st.conns.retain(|addr, _| primaries.contains(addr));
        if st.slots != map.slots || st.primaries != primaries {
            st.gen += 1;
        }
        st.slots = map.slots;
        st.primaries = primaries;
        st.last_refresh = Some(Instant::now());
        Ok(())
    }

    /// Starts a refresh soon (at most one per [`REFRESH_GAP`]), without waiting for it.
    fn refresh_soon(&self) {
        let wait = {
            let mut st = self.state();
            if st.refresh_pending {
                return;
            }
            st.refresh_pending = true;
            st.last_refresh
                .map(|t| REFRESH_GAP.saturating_sub(t.elapsed()))
                .unwrap_or_default()
        };
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            me.state().refresh_pending = false;
            if let Err(e) = me.refresh().await {
                tracing::warn!(error = %e, "cluster slot map refresh failed");
            }
        });
    }

    /// `CLUSTER NODES` of `addr`, on its node connection (replicas are asked too).
    async fn cluster_nodes(&self, addr: &str) -> RedisResult<String> {
        let node = self.node(addr).await?;
        let res = node
            .conn
            .clone()
            .req_packed_command(redis::cmd("CLUSTER").arg("NODES"))
            .await
            .and_then(Value::extract_error);
        match res {
            Ok(v) => redis::from_redis_value(v).map_err(Into::into),
            Err(e) => {
                self.forget(&node);
                Err(e)
            }
        }
    }

    /// The connection to `addr`, made now if there is none.
    async fn node(&self, addr: &str) -> RedisResult<NodeConn> {
        let cell = {
            let mut st = self.state();
            st.conns
                .entry(Arc::from(addr))
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let made = cell
            .get_or_try_init(|| async {
                let url = url_with_addr(&self.shared.url_template, addr);
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&self.shared.config)
                    .await?;
                if let Some(name) = &self.shared.client_name {
                    // For operators only (`CLIENT LIST`): an ACL user without `@connection` may
                    // refuse it, and the connection must work anyway.
                    let named = conn
                        .req_packed_command(redis::cmd("CLIENT").arg("SETNAME").arg(name))
                        .await
                        .and_then(Value::extract_error);
                    if let Err(e) = named {
                        tracing::warn!(%addr, name, error = %e, "CLIENT SETNAME refused; the connection stays unnamed");
                    }
                }
                Ok::<_, RedisError>(NodeConn {
                    id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
                    addr: Arc::from(addr),
                    conn,
                })
            })
            .await;
        match made {
            Ok(n) => Ok(n.clone()),
            Err(e) => {
                // Forget the empty cell so the next call tries again.
                let mut st = self.state();
                if st.conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    st.conns.remove(addr);
                }
                Err(e)
            }
        }
    }

    /// Drops `node`'s connection (if it is still the current one to its address): the next call
    /// connects afresh.
    fn forget(&self, node: &NodeConn) {
        let mut st = self.state();
        if st
            .conns
            .get(&node.addr)
            .and_then(|c| c.get())
            .is_some_and(|c| c.id == node.id)
        {
            st.conns.remove(&node.addr);
        }
    }

    /// The primary serving `slot` (any primary for a keyless command).
    fn primary_for(&self, slot: Option<u16>) -> Result<Arc<str>, RedisError> {
        let st = self.state();
        let idx = match slot {
            Some(s) => st.slots[s as usize],
            None if !st.primaries.is_empty() => 0,
            None => NONE,
        };
        match st.primaries.get(idx as usize) {
            Some(a) => Ok(a.clone()),
            None => Err(io_error(
                std::io::ErrorKind::NotConnected,
                match slot {
                    Some(s) => {
                        format!("no healthy primary serves slot {s} (cluster failing over?)")
                    }
                    None => "no healthy primary known".into(),
                },
            )),
        }
    }

    /// Points `slot` at `addr` (after a `MOVED`).
    fn set_slot(&self, slot: u16, addr: &str) {
        let mut st = self.state();
        let idx = match st.primaries.iter().position(|p| &**p == addr) {
            Some(i) => i,
            None => {
                st.primaries.push(Arc::from(addr));
                st.primaries.len() - 1
            }
        };
        if let Some(s) = st.slots.get_mut(slot as usize) {
            if *s != idx as u16 {
                *s = idx as u16;
                st.gen += 1;
            }
        }
    }

    /// The connection that calls for `key`'s slot go to now (made if there is none), with a token of
    /// the slot map's generation and the `ASK` redirections followed for the slot. Equal tokens and
    /// connection ids before and after a call mean the call ran on that connection: a `MOVED` changes
    /// the map (so the token), and a call that followed an `ASK` to another node changes the slot's
    /// count (so the token) — a `WAIT` on the route's connection would not cover it.
    pub async fn route_of(&self, key: &[u8]) -> RedisResult<(u64, NodeConn)> {
        let slot = key_slot(key);
        let token = {
            let st = self.state();
            (st.gen << 32) ^ u64::from(st.asks[slot as usize])
        };
        let addr = self.primary_for(Some(slot))?;
        let node = self.node(&addr).await?;
        Ok((token, node))
    }

    /// Every node address this router asks on refresh: the seeds and the nodes the cluster listed at
    /// the last refresh.
    pub fn known(&self) -> Vec<String> {
        self.state().known.iter().cloned().collect()
    }

    /// The address of the primary serving `key`'s slot in the current map (no connection made).
    pub fn primary_of(&self, key: &[u8]) -> RedisResult<String> {
        self.primary_for(Some(key_slot(key))).map(|a| a.to_string())
    }

    /// A new connection of its own (not shared, not kept here) to the primary serving `key`'s slot,
    /// with `response_timeout`, and that primary's address: for a blocking command that would hold a
    /// shared connection (the engine's partition readers). Redirects are the caller's: a `MOVED` or
    /// `ASK` comes back as an error; call [`refresh`](Self::refresh) and connect again.
    pub async fn dedicated(
        &self,
        key: &[u8],
        response_timeout: Duration,
    ) -> RedisResult<(String, MultiplexedConnection)> {
        let addr = self.primary_of(key)?;
        let url = url_with_addr(&self.shared.url_template, &addr);
        let client = redis::Client::open(url.as_str())?;
        let config = self
            .shared
            .config
            .clone()
            .set_response_timeout(Some(response_timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok((addr, conn))
    }

    /// The addresses of every primary in the slot map now.
    pub fn primaries(&self) -> Vec<String> {
        self.state()
            .primaries
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// Sends `cmd` to the primary at `addr`.
    pub async fn on_node(&self, addr: &str, cmd: &Cmd) -> RedisResult<Value> {
        let node = self.node(addr).await?;
        let res = node.conn.clone().req_packed_command(cmd).await;
        if let Err(e) = &res {
            self.failed(&node, e);
        }
        res
    }

    fn failed(&self, node: &NodeConn, e: &RedisError) {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            self.forget(node);
        }
        self.refresh_soon();
    }

    /// Routes `send` (one command or a pipeline) by `slot`, following `MOVED`, and `ASK` when
    /// `follow_ask` (`send` then gets `true`: prefix the command with `ASKING`).
    async fn route<'a, T, F>(
        &self,
        slot: Option<u16>,
        follow_ask: bool,
        mut send: F,
    ) -> RedisResult<T>
    where
        F: FnMut(MultiplexedConnection, bool) -> RedisFuture<'a, T>,
        T: Redirect,
    {
        let mut target: Option<Arc<str>> = None;
        let mut asking = false;
        let mut redirects = 0;
        let mut reconnected = false;
        loop {
            let addr = match target.take() {
                Some(a) => a,
                None => match self.primary_for(slot) {
                    Ok(a) => a,
                    Err(e) => {
                        self.refresh_soon();
                        return Err(e);
                    }
                },
            };
            let node = match self.node(&addr).await {
                Ok(n) => n,
                Err(e) if !reconnected && is_connection_error(&e) => {
                    // Once: the map may be stale (a failover since the last call).
                    reconnected = true;
                    let _ = self.refresh().await;
                    continue;
                }
                Err(e) => {
                    self.refresh_soon();
                    return Err(e);
                }
            };
            let res = send(node.conn.clone(), asking).await;
            let reply = match res {
                Ok(r) => r,
                Err(e) if !reconnected && is_connection_error(&e) => {
                    // Once, on a fresh map and connection: a connection that died since the last call
                    // (its node killed, a failover) fails the next call without sending it. Every
                    // Ringside call is safe to repeat.
                    reconnected = true;
                    self.forget(&node);
                    let _ = self.refresh().await;
                    continue;
                }
                Err(e) => {
                    self.failed(&node, &e);
                    return Err(e);
                }
            };
            match reply.server_error() {
                Some((code, detail)) => match code.as_str() {
                    "MOVED" | "ASK" if redirects < REDIRECTS && (code == "MOVED" || follow_ask) => {
                        let mut it = detail.split_ascii_whitespace();
                        let (Some(s), Some(to)) =
                            (it.next().and_then(|s| s.parse::<u16>().ok()), it.next())
                        else {
                            self.refresh_soon();
                            return Ok(reply);
                        };
                        redirects += 1;
                        asking = code == "ASK";
                        if asking {
                            // The call runs on `to`'s connection: route_of's token changes.
                            let mut st = self.state();
                            if let Some(n) = st.asks.get_mut(s as usize) {
                                *n = n.wrapping_add(1);
                            }
                        } else {
                            self.set_slot(s, to);
                            self.refresh_soon();
                        }
                        target = Some(Arc::from(to));
                    }
                    "MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN" | "READONLY" | "MASTERDOWN"
                    | "LOADING" => {
                        self.refresh_soon();
                        return Ok(reply);
                    }
                    _ => return Ok(reply),
                },
                None => return Ok(reply),
            }
        }
    }
}

/// The connection failed or was refused (not a timeout: a call that timed out may still be running).
fn is_connection_error(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal())
}

/// A reply that may be a cluster redirection.
trait Redirect {
    /// (code, detail) of a server error reply.
    fn server_error(&self) -> Option<(String, String)>;
}

impl Redirect for Value {
    fn server_error(&self) -> Option<(String, String)> {
        match self {
            Value::ServerError(e) => Some((
                e.code().to_string(),
                e.details().unwrap_or_default().to_string(),
            )),
            _ => None,
        }
    }
}

impl Redirect for Vec<Value> {
    fn server_error(&self) -> Option<(String, String)> {
        // the first reply that redirects: an ordinary error before it must not hide a MOVED or ASK
        self.iter()
            .filter_map(Redirect::server_error)
            .find(|(c, _)| {
                matches!(
                    c.as_str(),
                    "MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN" | "READONLY"
                )
            })
    }
}

impl ConnectionLike for Nodes {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if is_script_load(cmd) {
                // A script must be on every primary (`redis::Script` loads it after `NOSCRIPT`).
                let mut first = None;
                for addr in self.primaries() {
                    let v = self.on_node(&addr, cmd).await?;
                    if let Value::ServerError(_) = v {
                        return Ok(v);
                    }
                    first.get_or_insert(v);
                }
                return first.ok_or_else(|| {
                    io_error(
                        std::io::ErrorKind::NotConnected,
                        "no healthy primary known".into(),
                    )
                });
            }
            self.route(slot_of(cmd), true, |mut conn, asking| {
                Box::pin(async move {
                    if asking {
                        let mut p = redis::pipe();
                        p.cmd("ASKING").ignore().add_command(cmd.clone());
                        let mut v = conn.req_packed_commands(&p, 1, 1).await?;
                        Ok(v.pop().unwrap_or(Value::Nil))
                    } else {
                        conn.req_packed_command(cmd).await
                    }
                })
            })
            .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let slot = pipeline.cmd_iter().find_map(slot_of);
        // ASK is not followed for pipelines: `ASKING` covers one command, and only the commands that
        // got `ASK` may run on the importing node (the others' keys are still on the source). An
        // `ASK` reply refreshes the map and goes back to the caller (those calls fail, `unavailable`);
        // a `MOVED` (the whole slot moved) is followed with the whole pipeline (every call is safe to
        // repeat).
        Box::pin(async move {
            self.route(slot, false, |mut conn, _| {
                Box::pin(async move { conn.req_packed_commands(pipeline, offset, count).await })
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The slot map merged from several nodes' `CLUSTER NODES`.
#[derive(Debug)]
struct SlotMap {
    slots: Vec<u16>,
    primaries: Vec<String>,
    /// Every address any view listed.
    seen: Vec<String>,
}

impl SlotMap {
    /// Per slot, the primary with the highest config epoch that the viewing node does not mark failed.
    fn merge<'a>(views: impl Iterator<Item = (&'a str, &'a str)>) -> SlotMap {
        let mut best: Vec<(u64, u16)> = vec![(0, NONE); SLOTS];
        let mut primaries: Vec<String> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (asked, text) in views {
            let asked_host = asked.rsplit_once(':').map(|(h, _)| h).unwrap_or(asked);
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 8 {
                    continue;
                }
                // ip:port@cport[,hostname]
                let hostport = f[1].split(['@', ',']).next().unwrap_or("");
                let Some((host, port)) = hostport.rsplit_once(':') else {
                    continue;
                };
                if port == "0" || port.is_empty() {
                    continue;
                }
                let host = if host.is_empty() { asked_host } else { host };
                let addr = format!("{host}:{port}");
                seen.insert(addr.clone());
                let flags: Vec<&str> = f[2].split(',').collect();
                if !flags.contains(&"master")
                    || flags
                        .iter()
                        .any(|x| matches!(*x, "fail" | "handshake" | "noaddr"))
                {
                    continue;
                }
                let epoch: u64 = f[6].parse().unwrap_or(0);
                let idx = match primaries.iter().position(|p| *p == addr) {
                    Some(i) => i,
                    None => {
                        primaries.push(addr.clone());
                        primaries.len() - 1
                    }
                } as u16;
                for range in &f[8..] {
                    if range.starts_with('[') {
                        continue;
                    }
                    let mut ends = range.splitn(2, '-').map(|x| x.parse::<usize>().ok());
                    let (a, b) = match (ends.next().flatten(), ends.next()) {
                        (Some(a), None) => (a, a),
                        (Some(a), Some(Some(b))) => (a, b),
                        _ => continue,
                    };
                    for s in best.iter_mut().take(b.min(SLOTS - 1) + 1).skip(a) {
                        if s.1 == NONE || epoch > s.0 {
                            *s = (epoch, idx);
                        }
                    }
                }
            }
        }
        // Keep only primaries that won a slot, renumbered.
        let mut used: Vec<Option<u16>> = vec![None; primaries.len()];
        let mut kept: Vec<String> = Vec::new();
        let slots = best
            .iter()
            .map(|&(_, i)| {
                if i == NONE {
                    return NONE;
                }
                *used[i as usize].get_or_insert_with(|| {
                    kept.push(primaries[i as usize].clone());
                    (kept.len() - 1) as u16
                })
            })
            .collect();
        SlotMap {
            slots,
            primaries: kept,
            seen: seen.into_iter().collect(),
        }
    }
}

/// `SCRIPT LOAD` or `SCRIPT FLUSH`: for every primary.
fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(s) => Some(s),
        _ => None,
    });
    args.next()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"SCRIPT"))
        && args
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case(b"LOAD") || s.eq_ignore_ascii_case(b"FLUSH"))
}

/// The hash slot of the first key `cmd` names (`None`: a command without keys).
fn slot_of(cmd: &Cmd) -> Option<u16> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(s) => Some(s),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"FCALL" | b"FCALL_RO" | b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" => {
            let n: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if n == 0 {
                return None;
            }
            args.get(3)?
        }
        b"XREAD" | b"XREADGROUP" => {
            let at = args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            args.get(at + 1)?
        }
        b"PING" | b"INFO" | b"CLUSTER" | b"FUNCTION" | b"WAIT" | b"TIME" | b"CONFIG"
        | b"SCRIPT" | b"DBSIZE" | b"ECHO" | b"HELLO" | b"CLIENT" | b"COMMAND" | b"MULTI"
        | b"EXEC" => return None,
        _ => args.get(1)?,
    };
    Some(key_slot(key))
}

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of the `{hash tag}` if any, mod 16384).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

/// `host:port` of a `redis://[user:pw@]host[:port][/db][?..]` URL.
pub fn addr_of_url(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let hostport = rest.split(['/', '?']).next().unwrap_or(rest);
    if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    }
}

/// `template` (a `redis://` URL) with its host and port replaced by `addr`.
fn url_with_addr(template: &str, addr: &str) -> String {
    let (scheme, rest) = template.split_once("://").unwrap_or(("redis", template));
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let tail = rest.find(['/', '?']).map(|i| &rest[i..]).unwrap_or("/");
    format!("{scheme}://{userinfo}{addr}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Known values from `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"123456789"), 0x31C3);
    }

    #[test]
    fn the_highest_epoch_wins_and_failed_primaries_serve_nothing() {
        // The old primary (b, epoch 1) restarted and still claims 0-99 in its own view; the others
        // know c (epoch 4) serves them now.
        let old = "b1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-99\n\
                   c1 127.0.0.1:7002@17002 master - 0 0 2 connected 100-16383\n";
        let others = "b1 127.0.0.1:7001@17001 master,fail - 0 0 1 disconnected\n\
                      c1 127.0.0.1:7002@17002 myself,master - 0 0 2 connected 100-16383\n\
                      d1 127.0.0.1:7003@17003 master - 0 0 4 connected 0-99\n";
        let m = SlotMap::merge([("127.0.0.1:7001", old), ("127.0.0.1:7002", others)].into_iter());
        let at = |s: usize| m.primaries[m.slots[s] as usize].as_str();
        assert_eq!(at(0), "127.0.0.1:7003");
        assert_eq!(at(99), "127.0.0.1:7003");
        assert_eq!(at(100), "127.0.0.1:7002");
        assert_eq!(m.seen.len(), 3);
        // Only a view that marks it failed: the slot has no primary.
        let m = SlotMap::merge(
            [(
                "127.0.0.1:7002",
                "b1 127.0.0.1:7001@17001 master,fail - 0 0 1 disconnected 0-99\n",
            )]
            .into_iter(),
        );
        assert_eq!(m.slots[0], NONE);
    }

    #[test]
    fn commands_route_by_their_first_key() {
        let fcall = redis::cmd("FCALL")
            .arg("answer_submit")
            .arg(2)
            .arg("room:{p07}:ABC")
            .arg("timers:{p07}")
            .clone();
        assert_eq!(slot_of(&fcall), Some(key_slot(b"p07")));
        let read = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg("timers:{p01}")
            .arg(">")
            .clone();
        assert_eq!(slot_of(&read), Some(key_slot(b"p01")));
        assert_eq!(slot_of(redis::cmd("WAIT").arg(1).arg(500)), None);
        assert_eq!(slot_of(redis::cmd("FCALL").arg("version").arg(0)), None);
    }

    #[test]
    fn urls_take_the_node_address() {
        assert_eq!(
            url_with_addr("redis://:pw@10.0.0.1:6380/0?protocol=3", "10.0.0.2:7000"),
            "redis://:pw@10.0.0.2:7000/0?protocol=3"
        );
        assert_eq!(
            url_with_addr("redis://127.0.0.1:7001", "127.0.0.1:7002"),
            "redis://127.0.0.1:7002/"
        );
        assert_eq!(addr_of_url("redis://127.0.0.1:7001/"), "127.0.0.1:7001");
    }
}
