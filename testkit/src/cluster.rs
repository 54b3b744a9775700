//! [`RedisCluster`]: a Redis Cluster of real `redis-server` nodes — all primaries, or (with
//! [`RedisCluster::start_replicated`]) one replica per primary for failover tests — built by
//! `redis-cli --cluster create` and handed out only once every node agrees it is healthy.

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary::{find_binary, REDIS_CLI_ENV};
use crate::process::spawn_tied_to_process;
use crate::server::{info_field, Mode, RedisServer};
use crate::HarnessError;

/// All 16384 hash slots of a Redis Cluster.
const SLOTS: usize = 16384;
/// How long `redis-cli --cluster create` may run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes may take to agree on a healthy cluster.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(50);
/// `cluster-node-timeout` of a replicated cluster: how long a primary may be unreachable before its
/// replica is promoted. Small so that a failover test takes seconds (production: 5000–15000 ms).
pub const FAILOVER_NODE_TIMEOUT_MS: u64 = 1000;
/// How long a failover may take in a test: generous, the machine may be busy.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// A Redis Cluster of `n` primaries, each a [`RedisServer`] on 127.0.0.1, with no replicas
/// ([`start`](Self::start)) or one replica per primary ([`start_replicated`](Self::start_replicated)).
///
/// Dropping it kills and removes every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Replicas per primary (0 or 1).
    replicas: usize,
}

impl RedisCluster {
    /// Starts a 3-primary cluster and waits until every node reports `cluster_state:ok`, all 16384
    /// slots covered, and the same slot map as every other node.
    pub fn start() -> Result<RedisCluster, HarnessError> {
        Self::start_with(3)
    }

    /// Like [`start`](Self::start) with `primaries` primaries.
    ///
    /// # Panics
    /// If `primaries < 3`: `redis-cli --cluster create` refuses smaller clusters.
    pub fn start_with(primaries: usize) -> Result<RedisCluster, HarnessError> {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries, got {primaries}"
        );
        let began = Instant::now();
        // Before starting any node, so a missing redis-cli fails fast with its install hint.
        let cli = find_binary("redis-cli", REDIS_CLI_ENV)?;
        let nodes = (0..primaries)
            .map(|_| RedisServer::start_as(Mode::ClusterNode))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes, replicas: 0 };
        cluster.create(&cli)?;
        cluster.wait_until_ready()?;
        eprintln!(
            "testkit: started {primaries}-primary cluster (redis {}) on ports {:?} in {:.1?}",
            cluster.nodes[0].version(),
            cluster.ports(),
            began.elapsed()
        );
        Ok(cluster)
    }

    /// Starts `primaries` primaries with one replica each (`2 × primaries` nodes), with
    /// `cluster-node-timeout` [`FAILOVER_NODE_TIMEOUT_MS`] so that a replica takes over a killed
    /// primary within seconds, and waits until the cluster is healthy and every replica's link to its
    /// primary is up (so `WAIT 1` can succeed from the start).
    ///
    /// # Panics
    /// If `primaries < 3`.
    pub fn start_replicated(primaries: usize) -> Result<RedisCluster, HarnessError> {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries, got {primaries}"
        );
        let began = Instant::now();
        let cli = find_binary("redis-cli", REDIS_CLI_ENV)?;
        let nodes = (0..2 * primaries)
            .map(|_| RedisServer::start_as(Mode::ClusterNode))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes, replicas: 1 };
        for node in &cluster.nodes {
            tune_for_failover(node)?;
        }
        cluster.create(&cli)?;
        cluster.wait_until_ready()?;
        eprintln!(
            "testkit: started {primaries}-primary cluster with 1 replica each (redis {}) on ports {:?} in {:.1?}",
            cluster.nodes[0].version(),
            cluster.ports(),
            began.elapsed()
        );
        Ok(cluster)
    }

    /// The index (in [`nodes`](Self::nodes)) of the node serving `key`'s slot as primary now, asked of
    /// the first live node that answers.
    pub fn primary_of_key(&self, key: &str) -> Result<usize, HarnessError> {
        let mut last = String::from("no live node");
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            match self.primary_of_key_per(node, key) {
                Ok(Some(i)) => return Ok(i),
                Ok(None) => last = format!("no primary serves the slot of {key}"),
                Err(e) => last = e,
            }
        }
        Err(HarnessError::ClusterNotReady {
            ports: self.ports(),
            timeout: Duration::ZERO,
            last_state: format!("  {last}\n"),
        })
    }

    fn primary_of_key_per(&self, node: &RedisServer, key: &str) -> Result<Option<usize>, String> {
        let mut conn = node.sync_conn().map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        Ok(primary_port_of_slot(&nodes, slot)
            .and_then(|port| self.nodes.iter().position(|n| n.port() == port)))
    }

    /// After the primary at `killed` was [`kill`](RedisServer::kill)ed: waits until its replica is
    /// promoted — every live node reports `cluster_state:ok` and a live node other than `killed`
    /// serves `key`'s slot as primary — and returns that node's index. Gives up after 60 s.
    pub fn wait_for_failover(&self, killed: usize, key: &str) -> Result<usize, HarnessError> {
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            let mut last = String::new();
            let all_ok = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| *i != killed && n.pid().is_some())
                .all(|(_, n)| match cluster_info(n) {
                    Ok(info) if info_field(&info, "cluster_state") == Some("ok") => true,
                    Ok(info) => {
                        last = format!(
                            "  node 127.0.0.1:{}: cluster_state:{}\n",
                            n.port(),
                            info_field(&info, "cluster_state").unwrap_or("?")
                        );
                        false
                    }
                    Err(e) => {
                        last = format!("  node 127.0.0.1:{}: {e}\n", n.port());
                        false
                    }
                });
            if all_ok {
                match self.primary_of_key(key) {
                    Ok(i) if i != killed => return Ok(i),
                    Ok(_) => last = format!("  the killed node still serves {key}\n"),
                    Err(e) => last = format!("  {e}\n"),
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::ClusterNotReady {
                    ports: self.ports(),
                    timeout: FAILOVER_TIMEOUT,
                    last_state: last,
                });
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Restarts the node at `index` (killed before) with the failover settings of
    /// [`start_replicated`](Self::start_replicated) and waits until the whole cluster is healthy again
    /// with every replica's link up: a killed primary comes back as a replica of its successor.
    pub fn restart_node(&mut self, index: usize) -> Result<(), HarnessError> {
        self.nodes[index].restart()?;
        if self.replicas > 0 {
            tune_for_failover(&self.nodes[index])?;
        }
        self.wait_until_ready()
    }

    /// `redis://127.0.0.1:<port>/` of every node, for `redis::cluster::ClusterClient::new` and the
    /// async cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The client port of every node.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The nodes, in start order (not slot order).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to [`kill`](RedisServer::kill) or [`restart`](RedisServer::restart) it. After a
    /// restart, [`wait_until_ready`](Self::wait_until_ready) waits for the cluster to heal.
    ///
    /// # Panics
    /// If `index >= nodes().len()`.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// A synchronous cluster connection (`redis::cluster::ClusterClient`), for simple assertions.
    pub fn sync_conn(&self) -> Result<redis::cluster::ClusterConnection, HarnessError> {
        let client = redis::cluster::ClusterClient::builder(self.urls())
            .connection_timeout(Duration::from_secs(5))
            .build()?;
        Ok(client.get_connection()?)
    }

    /// Polls `CLUSTER INFO` and `CLUSTER NODES` on every node until each reports `cluster_state:ok`,
    /// all slots assigned and ok, every node known and connected, and all report the same slot map.
    /// Gives up after 20 s with what each node said last.
    pub fn wait_until_ready(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let views: Vec<Result<String, String>> =
                self.nodes.iter().map(|node| self.view_of(node)).collect();
            let healthy: Vec<&String> = views.iter().filter_map(|v| v.as_ref().ok()).collect();
            let consistent =
                healthy.len() == views.len() && healthy.windows(2).all(|w| w[0] == w[1]);
            if consistent {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let mut last_state = String::new();
                for (node, view) in self.nodes.iter().zip(&views) {
                    let said = match view {
                        Ok(slot_map) => format!("healthy; slot map: {slot_map}"),
                        Err(problem) => problem.clone(),
                    };
                    last_state.push_str(&format!("  node 127.0.0.1:{}: {said}\n", node.port()));
                }
                if healthy.len() == views.len() {
                    last_state
                        .push_str("  (every node is healthy but they disagree on the slot map)\n");
                }
                return Err(HarnessError::ClusterNotReady {
                    ports: self.ports(),
                    timeout: READY_TIMEOUT,
                    last_state,
                });
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// This node's slot map (`id port role slots` per node, sorted) if it sees a healthy cluster,
    /// else what is wrong.
    fn view_of(&self, node: &RedisServer) -> Result<String, String> {
        let mut conn = node.sync_conn().map_err(|e| e.to_string())?;
        let timeout = Some(Duration::from_secs(2));
        conn.set_read_timeout(timeout).map_err(|e| e.to_string())?;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut conn)
            .map_err(|e| format!("CLUSTER INFO failed: {e}"))?;
        let n = self.nodes.len().to_string();
        let primaries = (self.nodes.len() / (1 + self.replicas)).to_string();
        let slots = SLOTS.to_string();
        let expected = [
            ("cluster_state", "ok"),
            ("cluster_slots_assigned", &*slots),
            ("cluster_slots_ok", &*slots),
            ("cluster_known_nodes", &*n),
            ("cluster_size", &*primaries),
        ];
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(field, want)| info_field(&info, field) != Some(*want))
            .map(|(field, want)| {
                format!(
                    "{field}:{} (want {want})",
                    info_field(&info, field).unwrap_or("?")
                )
            })
            .collect();
        if !wrong.is_empty() {
            return Err(wrong.join(" "));
        }
        if self.replicas > 0 {
            let repl: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .map_err(|e| format!("INFO replication failed: {e}"))?;
            if info_field(&repl, "role") == Some("slave")
                && info_field(&repl, "master_link_status") != Some("up")
            {
                return Err("replica's link to its primary is not up".into());
            }
        }
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut conn)
            .map_err(|e| format!("CLUSTER NODES failed: {e}"))?;
        slot_map(&nodes)
    }

    fn create(&self, cli: &std::path::Path) -> Result<(), HarnessError> {
        let create_error =
            |status: String, output: String| HarnessError::ClusterCreate { status, output };
        // An unnamed temporary file: no pipe to drain while waiting, nothing left behind.
        let mut output = tempfile::tempfile().map_err(HarnessError::TempDir)?;
        let mut cmd = Command::new(cli);
        cmd.args(["--cluster", "create"])
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args([
                "--cluster-replicas",
                &self.replicas.to_string(),
                "--cluster-yes",
            ])
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(HarnessError::TempDir)?)
            .stderr(output.try_clone().map_err(HarnessError::TempDir)?);
        let mut child = spawn_tied_to_process(cmd).map_err(|source| HarnessError::Spawn {
            binary: cli.to_path_buf(),
            source,
        })?;
        let deadline = Instant::now() + CREATE_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_EVERY),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("killed after {CREATE_TIMEOUT:?}"));
                }
                Err(e) => break Err(format!("waiting for it failed: {e}")),
            }
        };
        let mut text = String::new();
        let _ = output.seek(SeekFrom::Start(0));
        let _ = output.read_to_string(&mut text);
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(create_error(status.to_string(), text)),
            Err(why) => Err(create_error(why, text)),
        }
    }
}

/// Sets what a failover test needs on a running node: a short `cluster-node-timeout`, and a replica
/// that may always take over (`cluster-replica-validity-factor 0`: its data is never "too old" on a
/// busy machine where replication pings come late).
fn tune_for_failover(node: &RedisServer) -> Result<(), HarnessError> {
    let mut conn = node.sync_conn()?;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("cluster-node-timeout")
        .arg(FAILOVER_NODE_TIMEOUT_MS)
        .arg("cluster-replica-validity-factor")
        .arg(0)
        .query(&mut conn)?;
    Ok(())
}

fn cluster_info(node: &RedisServer) -> Result<String, String> {
    let mut conn = node.sync_conn().map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut conn)
        .map_err(|e| format!("CLUSTER INFO failed: {e}"))
}

/// The client port of the node that `CLUSTER NODES` says serves `slot` as a healthy primary.
fn primary_port_of_slot(cluster_nodes: &str, slot: u16) -> Option<u16> {
    for line in cluster_nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, addr, flags, _, _, _, _, _, slots @ ..] = fields.as_slice() else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| *f == "fail" || *f == "fail?") {
            continue;
        }
        let owns = slots.iter().filter(|s| !s.starts_with('[')).any(|range| {
            let mut ends = range.splitn(2, '-').map(|x| x.parse::<u16>().ok());
            match (ends.next().flatten(), ends.next()) {
                (Some(a), None) => a == slot,
                (Some(a), Some(Some(b))) => (a..=b).contains(&slot),
                _ => false,
            }
        });
        if owns {
            let port = addr.split('@').next()?.rsplit(':').next()?;
            return port.parse().ok();
        }
    }
    None
}

/// Parses `CLUSTER NODES` into a canonical slot map, or says why the cluster is not healthy from this
/// node's point of view (a node failing, still in handshake, or disconnected).
fn slot_map(cluster_nodes: &str) -> Result<String, String> {
    let mut entries = Vec::new();
    for line in cluster_nodes.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [id, addr, flags, _, _, _, _, link, slots @ ..] = fields.as_slice() else {
            return Err(format!("unexpected CLUSTER NODES line: {line}"));
        };
        let flags: Vec<&str> = flags.split(',').filter(|f| *f != "myself").collect();
        if let Some(bad) = flags
            .iter()
            .find(|f| matches!(**f, "fail" | "fail?" | "handshake" | "noaddr"))
        {
            return Err(format!("node {addr} is flagged {bad}"));
        }
        if *link != "connected" {
            return Err(format!("node {addr} is {link}"));
        }
        // `ip:port@cport[,hostname]` → `ip:port`; slots being migrated (`[...]`) are not ownership.
        let addr = addr.split('@').next().unwrap_or(addr);
        let owned: Vec<&str> = slots
            .iter()
            .copied()
            .filter(|s| !s.starts_with('['))
            .collect();
        entries.push(format!(
            "{id} {addr} {} {}",
            flags.join(","),
            owned.join(",")
        ));
    }
    entries.sort();
    Ok(entries.join("; "))
}
