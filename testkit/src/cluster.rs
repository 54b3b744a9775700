//! [`RedisCluster`]: a Redis Cluster of real `redis-server` nodes, all primaries, built by
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

/// A Redis Cluster of `n` primaries and no replicas, each a [`RedisServer`] on 127.0.0.1.
///
/// Dropping it kills and removes every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
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
        let cluster = RedisCluster { nodes };
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
        let slots = SLOTS.to_string();
        let expected = [
            ("cluster_state", "ok"),
            ("cluster_slots_assigned", &*slots),
            ("cluster_slots_ok", &*slots),
            ("cluster_known_nodes", &*n),
            ("cluster_size", &*n),
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
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
