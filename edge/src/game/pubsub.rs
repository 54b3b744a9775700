//! Sharded pub/sub subscriber: one connection per Redis node, `SSUBSCRIBE` of every room channel with a
//! local member, routed by slot on Redis Cluster, re-established after disconnects, failovers and slot moves.
//!
//! Runs on the edge's Redis thread (tokio). Room events arrive as [`PubsubEvent::Message`] with the payload
//! as a `Bytes` cut from the read buffer (no copy). After a channel is (re)subscribed it reports
//! [`PubsubEvent::Subscribed`], so the fan-out can check the room log for anything published while it was
//! not subscribed: messages lost during a reconnect are recovered by `seq`, never silently dropped.

use super::resp::{self, Value};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the subscriber reports.
#[derive(Debug)]
pub enum PubsubEvent {
    Message {
        channel: Bytes,
        payload: Bytes,
    },
    /// The channel is (again) subscribed; events published before may have been missed.
    Subscribed {
        channel: String,
    },
}

/// Commands from the fan-out hub.
#[derive(Debug)]
pub enum SubCommand {
    Subscribe(String),
    Unsubscribe(String),
}

/// Node events, internal.
enum NodeEvent {
    Push(String, Value),
    Down(String),
}

struct Node {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Channels whose SSUBSCRIBE awaits its confirmation, in order (RESP2 errors do not name the channel).
    pending: VecDeque<String>,
}

/// Parses `redis://host:port/...` into `host:port` (the cluster router's parser).
pub use ringside_lua::conn::nodes::addr_of_url;

/// The subscriber task. `seeds` are node addresses (`host:port`); with `cluster` the slot map is read from
/// them and refreshed on every MOVED, disconnect or slot migration.
pub async fn run(
    seeds: Vec<String>,
    cluster: bool,
    mut commands: mpsc::UnboundedReceiver<SubCommand>,
    events: mpsc::UnboundedSender<PubsubEvent>,
) {
    let (node_tx, mut node_rx) = mpsc::unbounded_channel::<NodeEvent>();
    let mut wanted: HashSet<String> = HashSet::new();
    let mut placed: HashMap<String, String> = HashMap::new(); // channel -> node addr
    let mut nodes: HashMap<String, Node> = HashMap::new();
    let mut slots: Vec<(u16, u16, String)> = Vec::new();
    let mut retry: HashSet<String> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    let mut tick = tokio::time::interval(Duration::from_millis(100));

    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return };
                match cmd {
                    SubCommand::Subscribe(ch) => {
                        if wanted.insert(ch.clone()) {
                            retry.insert(ch);
                        }
                    }
                    SubCommand::Unsubscribe(ch) => {
                        wanted.remove(&ch);
                        retry.remove(&ch);
                        if let Some(addr) = placed.remove(&ch) {
                            if let Some(n) = nodes.get(&addr) {
                                let mut out = Vec::new();
                                resp::write_command(&mut out, &[b"SUNSUBSCRIBE", ch.as_bytes()]);
                                let _ = n.tx.send(out);
                            }
                        }
                    }
                }
            }
            ev = node_rx.recv() => {
                let Some(ev) = ev else { return };
                match ev {
                    NodeEvent::Down(addr) => {
                        tracing::warn!(node = %addr, "pub/sub connection lost; resubscribing");
                        nodes.remove(&addr);
                        for (ch, a) in placed.iter() {
                            if *a == addr { retry.insert(ch.clone()); }
                        }
                        placed.retain(|_, a| *a != addr);
                        slots.clear();
                    }
                    NodeEvent::Push(addr, v) => {
                        handle_push(&addr, v, &mut nodes, &mut placed, &wanted, &mut retry, &mut slots, &events);
                    }
                }
            }
            _ = tick.tick(), if !retry.is_empty() => {
                if cluster && slots.is_empty() {
                    match fetch_slots(&seeds).await {
                        Ok(s) => { slots = s; backoff = Duration::from_millis(100); }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the cluster slot map; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                            continue;
                        }
                    }
                }
                let todo: Vec<String> = retry.drain().collect();
                for ch in todo {
                    if !wanted.contains(&ch) { continue; }
                    let addr = if cluster {
                        let slot = resp::key_slot(ch.as_bytes());
                        match slots.iter().find(|(a, b, _)| (*a..=*b).contains(&slot)) {
                            Some((_, _, addr)) => addr.clone(),
                            None => { retry.insert(ch); slots.clear(); continue; }
                        }
                    } else {
                        seeds[0].clone()
                    };
                    if !nodes.contains_key(&addr) {
                        match TcpStream::connect(&addr).await {
                            Ok(stream) => {
                                let _ = stream.set_nodelay(true);
                                nodes.insert(addr.clone(), spawn_node(addr.clone(), stream, node_tx.clone()));
                            }
                            Err(e) => {
                                tracing::warn!(node = %addr, error = %e, "cannot connect for pub/sub; retrying");
                                retry.insert(ch);
                                slots.clear();
                                continue;
                            }
                        }
                    }
                    let node = nodes.get_mut(&addr).expect("just inserted");
                    let mut out = Vec::new();
                    resp::write_command(&mut out, &[b"SSUBSCRIBE", ch.as_bytes()]);
                    node.pending.push_back(ch.clone());
                    placed.insert(ch, addr.clone());
                    let _ = node.tx.send(out);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_push(
    addr: &str,
    v: Value,
    nodes: &mut HashMap<String, Node>,
    placed: &mut HashMap<String, String>,
    wanted: &HashSet<String>,
    retry: &mut HashSet<String>,
    slots: &mut Vec<(u16, u16, String)>,
    events: &mpsc::UnboundedSender<PubsubEvent>,
) {
    match v {
        Value::Array(Some(items)) if items.len() == 3 => {
            let kind = items[0].as_bytes().map(|b| b.as_ref()).unwrap_or_default();
            match kind {
                b"smessage" => {
                    if let (Some(ch), Some(p)) = (items[1].as_bytes(), items[2].as_bytes()) {
                        let _ = events.send(PubsubEvent::Message {
                            channel: ch.clone(),
                            payload: p.clone(),
                        });
                    }
                }
                b"ssubscribe" => {
                    if let Some(node) = nodes.get_mut(addr) {
                        node.pending.pop_front();
                    }
                    if let Some(ch) = items[1].as_bytes() {
                        let ch = String::from_utf8_lossy(ch).into_owned();
                        let _ = events.send(PubsubEvent::Subscribed { channel: ch });
                    }
                }
                b"sunsubscribe" => {
                    // Unsolicited when the slot moved away: subscribe again where it lives now.
                    if let Some(ch) = items[1].as_bytes() {
                        let ch = String::from_utf8_lossy(ch).into_owned();
                        if wanted.contains(&ch) && placed.get(&ch).map(String::as_str) == Some(addr)
                        {
                            placed.remove(&ch);
                            retry.insert(ch);
                            slots.clear();
                        }
                    }
                }
                _ => {}
            }
        }
        Value::Error(e) => {
            // The oldest pending SSUBSCRIBE of this node failed (MOVED after a failover or reshard, or CLUSTERDOWN).
            let ch = nodes.get_mut(addr).and_then(|n| n.pending.pop_front());
            tracing::warn!(node = %addr, error = %String::from_utf8_lossy(&e), channel = ?ch, "SSUBSCRIBE refused; retrying");
            if let Some(ch) = ch {
                placed.remove(&ch);
                if wanted.contains(&ch) {
                    retry.insert(ch);
                }
            }
            slots.clear();
        }
        _ => {}
    }
}

fn spawn_node(addr: String, stream: TcpStream, events: mpsc::UnboundedSender<NodeEvent>) -> Node {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (mut rd, mut wr) = stream.into_split();
    let a = addr.clone();
    let ev = events.clone();
    tokio::spawn(async move {
        while let Some(buf) = rx.recv().await {
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = ev.send(NodeEvent::Down(a));
    });
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            loop {
                match resp::parse(&mut buf) {
                    Ok(Some(v)) => {
                        if events.send(NodeEvent::Push(addr.clone(), v)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(node = %addr, error = %e, "bad pub/sub stream");
                        let _ = events.send(NodeEvent::Down(addr));
                        return;
                    }
                }
            }
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = events.send(NodeEvent::Down(addr));
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    Node {
        tx,
        pending: VecDeque::new(),
    }
}

/// Reads `CLUSTER SLOTS` from the first seed that answers.
async fn fetch_slots(seeds: &[String]) -> Result<Vec<(u16, u16, String)>, String> {
    let mut last = String::from("no seed nodes");
    for seed in seeds {
        match fetch_slots_from(seed).await {
            Ok(s) if !s.is_empty() => return Ok(s),
            Ok(_) => last = format!("{seed}: empty slot map"),
            Err(e) => last = format!("{seed}: {e}"),
        }
    }
    Err(last)
}

async fn fetch_slots_from(seed: &str) -> Result<Vec<(u16, u16, String)>, String> {
    let fut = async {
        let mut s = TcpStream::connect(seed).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        resp::write_command(&mut out, &[b"CLUSTER", b"SLOTS"]);
        s.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            if let Some(v) = resp::parse(&mut buf).map_err(|e| e.to_string())? {
                return Ok(v);
            }
            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".to_string());
            }
        }
    };
    let v = tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .map_err(|_| "timeout".to_string())??;
    let Value::Array(Some(ranges)) = v else {
        return Err(format!("unexpected CLUSTER SLOTS reply {v:?}"));
    };
    let seed_host = seed.rsplit_once(':').map(|(h, _)| h).unwrap_or(seed);
    let mut map = Vec::new();
    for r in ranges {
        let Value::Array(Some(r)) = r else { continue };
        let (Some(a), Some(b)) = (
            r.first().and_then(Value::as_int),
            r.get(1).and_then(Value::as_int),
        ) else {
            continue;
        };
        let Some(Value::Array(Some(master))) = r.get(2) else {
            continue;
        };
        let host = master
            .first()
            .and_then(Value::as_bytes)
            .map(|h| String::from_utf8_lossy(h).into_owned());
        let port = master.get(1).and_then(Value::as_int);
        if let (Some(host), Some(port)) = (host, port) {
            let host = if host.is_empty() {
                seed_host.to_string()
            } else {
                host
            };
            map.push((a as u16, b as u16, format!("{host}:{port}")));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::addr_of_url;

    #[test]
    fn urls_become_addresses() {
        assert_eq!(addr_of_url("redis://127.0.0.1:7001/"), "127.0.0.1:7001");
        assert_eq!(
            addr_of_url("redis://:pw@10.0.0.1:6380/0?protocol=3"),
            "10.0.0.1:6380"
        );
        assert_eq!(addr_of_url("redis://localhost"), "localhost:6379");
    }
}
