//! The lean client of benches/peers: the same plain-WebSocket client against Ringside, node `ws`,
//! Socket.IO (Engine.IO v4 over websocket) and the floor. It opens `--players` sockets (bound to source
//! addresses 127.0.0.2…), joins them (Ringside: `room:join` through the protocol, a host socket creates
//! the room and starts the game; Socket.IO: the `40` connect), records the delivery latency of every
//! frame (receipt − the instant the server meant to send it), and reads the server processes' RSS and CPU
//! from /proc around the game. One JSON object on stdout (and `--out`).
//!
//! Latency bases. Peers and floor: the frame's `t` (its scheduled send, epoch µs). Ringside: a question's
//! clear `game:question:show` goes out at `showAt − lead` (the edge runs with a fixed seal lead,
//! `--seal-lead-floor-ms = --seal-lead-cap-ms = --lead-ms`), its reveal, leaderboard and result at the
//! question's deadline `endsAt + grace` (nobody answers, so the reveal waits for it).

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use ringside_peers::{client_frame, kind_of, now_us, num_after, parse_frame, peer_fields, KINDS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

#[derive(Parser, Clone)]
struct Args {
    /// ringside | ws | sio | floor
    #[arg(long)]
    mode: String,
    #[arg(long, default_value = "127.0.0.1:18600")]
    addr: SocketAddr,
    #[arg(long)]
    players: usize,
    /// Source addresses, `a.b.c.X-Y` or one address.
    #[arg(long, default_value = "127.0.0.2-127.0.0.9")]
    source_ips: String,
    /// Connects (and joins) in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    #[arg(long, default_value_t = 20)]
    questions: u32,
    /// NAME=PID[,PID…]: server processes whose RSS and CPU are read (repeatable).
    #[arg(long)]
    watch: Vec<String>,
    /// Ringside: the quiz, room settings, the edge's fixed seal lead.
    #[arg(long, default_value = "peers-20")]
    quiz_id: String,
    #[arg(long, default_value_t = 3000)]
    time_ms: u64,
    #[arg(long, default_value_t = 3000)]
    pause_ms: u64,
    #[arg(long, default_value_t = 3000)]
    countdown_ms: u64,
    #[arg(long, default_value_t = 500)]
    lead_ms: u64,
    #[arg(long, default_value_t = 500)]
    grace_ms: u64,
    /// After every socket has the last leaderboard, wait this long before the CPU is read again.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Before connecting, read the servers' CPU over this long with no socket open: their fixed
    /// cost per second (timers, leases), reported apart (`idle_ms_per_s`). 0: not measured.
    #[arg(long, default_value_t = 5000)]
    idle_ms: u64,
    #[arg(long, default_value_t = 420)]
    timeout_s: u64,
    #[arg(long)]
    out: Option<String>,
}

/// One received frame: receipt (epoch µs), kind (0-3 as `KINDS`, 9 other), question, latency µs, bytes.
#[derive(Clone, Copy)]
struct Rec {
    at: u64,
    kind: u8,
    q: u16,
    lat: i64,
    size: u32,
}

struct Shared {
    a: Args,
    joined: AtomicUsize,
    failed: AtomicUsize,
    retries: AtomicUsize,
    done: AtomicUsize,
    code: String,
}

struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
    mask: u32,
}

impl Ws {
    async fn connect(
        src: Ipv4Addr,
        addr: SocketAddr,
        path: &str,
        proto: Option<&str>,
    ) -> Result<Self> {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(src.into(), 0))?;
        let mut s = sock.connect(addr).await?;
        s.set_nodelay(true)?;
        let proto = proto
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(2048);
        loop {
            if s.read_buf(&mut buf).await? == 0 {
                bail!("closed during the upgrade");
            }
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if !buf.starts_with(b"HTTP/1.1 101") {
                    bail!(
                        "upgrade refused: {}",
                        String::from_utf8_lossy(&buf[..end.min(80)])
                    );
                }
                buf.drain(..end + 4);
                break;
            }
        }
        Ok(Self {
            s,
            buf,
            mask: 0x9e37_79b9,
        })
    }

    async fn send(&mut self, op: u8, payload: &[u8]) -> Result<()> {
        self.mask = self
            .mask
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let mut f = Vec::with_capacity(payload.len() + 14);
        client_frame(&mut f, op, payload, self.mask.to_be_bytes());
        self.s.write_all(&f).await?;
        Ok(())
    }

    /// The next data frame's payload (answers pings on the way); `None` at close/EOF.
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(f) = parse_frame(&mut self.buf) {
                let payload = self.buf[f.start..f.end].to_vec();
                self.buf.drain(..f.end);
                match f.op {
                    9 => self.send(10, &payload).await?,
                    8 => return Ok(None),
                    10 => {}
                    _ => return Ok(Some(payload)),
                }
                continue;
            }
            self.buf.reserve(4096);
            if self.s.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

fn event_name(v: &Value) -> &str {
    v.get("event").and_then(Value::as_str).unwrap_or("")
}

/// A peers' frame: its kind from the `"event":"…"` inside.
fn peer_kind(p: &[u8]) -> u8 {
    let key = b"\"event\":\"";
    let Some(i) = p.windows(key.len()).position(|w| w == key) else {
        return 9;
    };
    let rest = &p[i + key.len()..];
    let end = rest.iter().position(|&b| b == b'"').unwrap_or(0);
    std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(kind_of)
        .unwrap_or(9)
}

async fn player(
    sh: Arc<Shared>,
    i: usize,
    src: Ipv4Addr,
    sem: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Rec> {
    let a = &sh.a;
    let mut recs = Vec::with_capacity(a.questions as usize * 4 + 8);
    let permit = sem.acquire_owned().await;
    // A refused or failed join (admission control, a full backlog) is tried again on a new socket.
    let mut attempt = 0;
    let mut ws = loop {
        match join(&sh, i, attempt, src).await {
            Ok(ws) => break ws,
            Err(e) if attempt < 5 => {
                attempt += 1;
                sh.retries.fetch_add(1, Relaxed);
                if attempt == 1 && sh.retries.load(Relaxed) < 5 {
                    eprintln!("player {i}: {e:#}; trying again");
                }
                tokio::time::sleep(Duration::from_millis(500 * attempt as u64)).await;
            }
            Err(e) => {
                if sh.failed.fetch_add(1, Relaxed) < 5 {
                    eprintln!("player {i}: {e:#}");
                }
                return recs;
            }
        }
    };
    drop(permit);
    sh.joined.fetch_add(1, Relaxed);
    let last = a.questions.saturating_sub(1) as u16;
    let mut ends_at: BTreeMap<u16, i64> = BTreeMap::new();
    let mut done = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let Ok(Some(p)) = msg else { break };
        let at = now_us();
        let (mut q, mut lat) = (0u16, 0i64);
        let kind;
        if a.mode == "ringside" {
            // Scanned like a peers' frame (no JSON tree per frame): the client's own work per frame
            // must not differ between the servers it compares (perf/vs-peers.md).
            kind = peer_kind(&p);
            if kind < 4 {
                q = num_after(&p, b"\"qIndex\":").unwrap_or(0) as u16;
                lat = if kind == 0 {
                    let show_at = num_after(&p, b"\"showAt\":").unwrap_or(0) as i64;
                    ends_at.insert(q, num_after(&p, b"\"endsAt\":").unwrap_or(0) as i64);
                    at as i64 - (show_at - a.lead_ms as i64) * 1000
                } else {
                    let base = ends_at.get(&q).copied().unwrap_or(0) + a.grace_ms as i64;
                    at as i64 - base * 1000
                };
            }
        } else {
            let body: &[u8] = if a.mode == "sio" {
                match p.as_slice() {
                    b"2" => {
                        if ws.send(1, b"3").await.is_err() {
                            break;
                        }
                        continue;
                    }
                    x if x.starts_with(b"42") => x,
                    _ => {
                        recs.push(Rec {
                            at,
                            kind: 9,
                            q: 0,
                            lat: 0,
                            size: p.len() as u32,
                        });
                        continue;
                    }
                }
            } else {
                &p
            };
            kind = peer_kind(body);
            if let Some((t, qq)) = peer_fields(body) {
                (q, lat) = (qq as u16, at as i64 - t as i64);
            }
        }
        recs.push(Rec {
            at,
            kind,
            q,
            lat,
            size: p.len() as u32,
        });
        if !done && kind == 2 && q == last {
            done = true;
            sh.done.fetch_add(1, Relaxed);
        }
    }
    recs
}

/// Connects one player and takes it into the room (or the Socket.IO namespace).
async fn join(sh: &Shared, i: usize, attempt: u32, src: Ipv4Addr) -> Result<Ws> {
    let a = &sh.a;
    match a.mode.as_str() {
        "ringside" => {
            let mut ws = Ws::connect(src, a.addr, "/ws", Some("ringside.v1.json")).await?;
            let ack = ws.next().await?.context("no session:ack")?;
            let _: Value = serde_json::from_slice(&ack)?;
            let j = json!({"event":"room:join","rid":1,"data":{"gameCode":sh.code,"playerName":format!("p{i}r{attempt}")}});
            ws.send(1, j.to_string().as_bytes()).await?;
            loop {
                let m = ws.next().await?.context("closed before room:join:ack")?;
                let v: Value = serde_json::from_slice(&m)?;
                match event_name(&v) {
                    "room:join:ack" => return Ok(ws),
                    "error" => bail!("join refused: {v}"),
                    _ => {}
                }
            }
        }
        "sio" => {
            let mut ws =
                Ws::connect(src, a.addr, "/socket.io/?EIO=4&transport=websocket", None).await?;
            let open = ws.next().await?.context("no Engine.IO open")?;
            if !open.starts_with(b"0") {
                bail!("not an Engine.IO open packet");
            }
            ws.send(1, b"40").await?;
            let c = ws.next().await?.context("no 40 connect")?;
            if !c.starts_with(b"40") {
                bail!("not a Socket.IO connect: {}", String::from_utf8_lossy(&c));
            }
            Ok(ws)
        }
        "ws" | "floor" => Ws::connect(src, a.addr, "/", None).await,
        m => bail!("unknown mode {m}"),
    }
}

fn source_ips(spec: &str) -> Result<Vec<Ipv4Addr>> {
    let Some((from, to)) = spec.split_once('-') else {
        return Ok(vec![spec.parse()?]);
    };
    let from: Ipv4Addr = from.parse()?;
    let last: u8 = to.rsplit('.').next().unwrap_or(to).parse()?;
    let o = from.octets();
    Ok((o[3]..=last)
        .map(|x| Ipv4Addr::new(o[0], o[1], o[2], x))
        .collect())
}

/// utime, stime (seconds) and RSS (KiB) of a process.
fn proc_sample(pid: &str) -> (f64, f64, u64) {
    let tck = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ut = f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) / tck;
    let st = f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) / tck;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (ut, st, rss)
}

/// CPU time of every thread of `pid` so far, in ns (`/proc/<pid>/task/*/schedstat`: ns, where
/// `stat`'s utime and stime count 10 ms ticks, too coarse for an idle second).
fn sched_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Per watched name: CPU ns of its pids, summed ([`sched_ns`]).
fn sched_sample(watch: &[(String, Vec<String>)]) -> BTreeMap<String, u64> {
    watch
        .iter()
        .map(|(name, pids)| (name.clone(), pids.iter().map(|p| sched_ns(p)).sum()))
        .collect()
}

/// Per watched name: (utime, stime, RSS) summed over its pids.
fn sample(watch: &[(String, Vec<String>)]) -> BTreeMap<String, (f64, f64, u64)> {
    let mut m = BTreeMap::new();
    for (name, pids) in watch {
        let mut s = (0.0, 0.0, 0);
        for p in pids {
            let (u, st, r) = proc_sample(p);
            s = (s.0 + u, s.1 + st, s.2 + r);
        }
        m.insert(name.clone(), s);
    }
    m.insert("client".into(), {
        let (u, st, r) = proc_sample("self");
        (u, st, r)
    });
    m
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 10.0).round() / 10.0
}

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<()> {
    let a = Args::parse();
    let watch: Vec<(String, Vec<String>)> = a
        .watch
        .iter()
        .filter_map(|w| {
            let (n, p) = w.split_once('=')?;
            Some((
                n.to_string(),
                p.split(',')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect(),
            ))
        })
        .collect();
    let ips = source_ips(&a.source_ips)?;
    // The servers' fixed cost: CPU per second with no socket open.
    let mut idle_ms_per_s: BTreeMap<String, f64> = BTreeMap::new();
    if a.idle_ms > 0 {
        let i0 = sched_sample(&watch);
        tokio::time::sleep(Duration::from_millis(a.idle_ms)).await;
        let i1 = sched_sample(&watch);
        for (name, ns) in i1 {
            let d = ns.saturating_sub(i0.get(&name).copied().unwrap_or(0));
            idle_ms_per_s.insert(name, d as f64 / 1e6 / (a.idle_ms as f64 / 1e3));
        }
    }
    let before = sample(&watch);

    // Ringside: the host creates the room.
    let mut host = None;
    let mut code = String::new();
    if a.mode == "ringside" {
        let mut ws = Ws::connect(ips[0], a.addr, "/ws", Some("ringside.v1.json")).await?;
        ws.next().await?.context("host: no session:ack")?;
        let c = json!({"event":"room:create","rid":1,"data":{"quizId":a.quiz_id,"hostName":"peers",
            "settings":{"timePerQMs":a.time_ms,"revealPauseMs":a.pause_ms,"countdownMs":a.countdown_ms,
            "maxPlayers":a.players + 10}}});
        ws.send(1, c.to_string().as_bytes()).await?;
        loop {
            let m = ws.next().await?.context("host: closed")?;
            let v: Value = serde_json::from_slice(&m)?;
            match event_name(&v) {
                "room:created" => {
                    code = v["data"]["gameCode"].as_str().unwrap_or("").to_string();
                    break;
                }
                "error" => bail!("room:create refused: {v}"),
                _ => {}
            }
        }
        host = Some(ws);
    }
    let sh = Arc::new(Shared {
        a: a.clone(),
        joined: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        retries: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        code,
    });
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let t_connect = now_us();
    let tasks: Vec<_> = (0..a.players)
        .map(|i| {
            tokio::spawn(player(
                sh.clone(),
                i,
                ips[i % ips.len()],
                sem.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout_s);
    while sh.joined.load(Relaxed) + sh.failed.load(Relaxed) < a.players {
        if tokio::time::Instant::now() > deadline {
            bail!("join phase timed out");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = (now_us() - t_connect) as f64 / 1e6;
    let joined = sh.joined.load(Relaxed);
    eprintln!(
        "{} joined, {} failed in {connect_s:.1} s",
        joined,
        sh.failed.load(Relaxed)
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after_connect = sample(&watch);
    let t_start = now_us();
    if let Some(ws) = host.as_mut() {
        let s = json!({"event":"game:start","rid":2,"data":{"gameCode":sh.code}});
        ws.send(1, s.to_string().as_bytes()).await?;
    }
    // The host keeps reading (pongs) in its own task.
    let host_task =
        host.map(|mut ws| tokio::spawn(async move { while let Ok(Some(_)) = ws.next().await {} }));
    while sh.done.load(Relaxed) < joined {
        if tokio::time::Instant::now() > deadline {
            eprintln!(
                "timed out: {} of {joined} saw the last leaderboard",
                sh.done.load(Relaxed)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_last = now_us();
    tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;
    let end = sample(&watch);
    let t_end = now_us();
    let _ = stop_tx.send(true);
    let mut recs: Vec<Vec<Rec>> = Vec::with_capacity(tasks.len());
    for t in tasks {
        recs.push(t.await.unwrap_or_default());
    }
    if let Some(h) = host_task {
        h.abort();
    }

    // Figures.
    let mut frames = 0u64;
    let mut by_kind = [0u64; 5];
    let mut hist: Vec<Histogram<u64>> = (0..4)
        .map(|_| Histogram::new_with_bounds(1, 600_000_000, 3).unwrap())
        .collect();
    let mut negative = 0u64;
    let mut to_last: BTreeMap<u16, i64> = BTreeMap::new();
    let mut sizes: Vec<BTreeMap<u32, u64>> = vec![BTreeMap::new(); 5];
    for r in recs.iter().flatten() {
        if r.at < t_start || r.at > t_end {
            continue;
        }
        frames += 1;
        let k = (r.kind as usize).min(4);
        by_kind[k] += 1;
        *sizes[k].entry(r.size).or_default() += 1;
        if k < 4 {
            if r.lat < 0 {
                negative += 1;
            }
            hist[k].saturating_record(r.lat.max(1) as u64);
            if k == 0 {
                let e = to_last.entry(r.q).or_insert(i64::MIN);
                *e = (*e).max(r.lat);
            }
        }
    }
    let mut ttl: Vec<i64> = to_last.values().copied().collect();
    ttl.sort_unstable();
    let mode_size =
        |m: &BTreeMap<u32, u64>| m.iter().max_by_key(|x| x.1).map(|x| *x.0).unwrap_or(0);
    let mut procs = serde_json::Map::new();
    let (mut cpu_total, mut cpu_user) = (0.0, 0.0);
    let window_s = (t_end - t_start) as f64 / 1e6;
    let idle_total: f64 = idle_ms_per_s.values().sum();
    for (name, (u1, s1, r1)) in &end {
        let (u0, s0, r0) = after_connect[name];
        let rb = before.get(name).map(|x| x.2).unwrap_or(0);
        let (du, ds) = (u1 - u0, s1 - s0);
        if name != "client" {
            cpu_total += du + ds;
            cpu_user += du;
        }
        procs.insert(
            name.clone(),
            json!({"user_s": (du * 100.0).round() / 100.0, "sys_s": (ds * 100.0).round() / 100.0,
                   "rss_before_kib": rb, "rss_connected_kib": r0, "rss_end_kib": r1,
                   "kib_per_socket": ((r0 as f64 - rb as f64) / joined.max(1) as f64 * 100.0).round() / 100.0,
                   "cpu_s_per_1m_frames": ((du + ds) / (frames.max(1) as f64 / 1e6) * 1000.0).round() / 1000.0,
                   "idle_ms_per_s": idle_ms_per_s.get(name).map(|x| (x * 1000.0).round() / 1000.0),
                   "cpu_s_per_1m_frames_less_idle": idle_ms_per_s.get(name).map(|i| {
                       ((du + ds - i / 1e3 * window_s) / (frames.max(1) as f64 / 1e6) * 1000.0).round() / 1000.0
                   })}),
        );
    }
    let h = &hist[0];
    let kinds: serde_json::Map<String, Value> = (0..5)
        .map(|k| {
            let name = KINDS.get(k).copied().unwrap_or("other");
            let lat = (k < 4 && !hist[k].is_empty()).then(|| {
                json!({"p50_ms": ms(hist[k].value_at_quantile(0.5)), "p99_ms": ms(hist[k].value_at_quantile(0.99)),
                       "max_ms": ms(hist[k].max())})
            });
            (name.to_string(), json!({"frames": by_kind[k], "bytes": mode_size(&sizes[k]), "latency": lat}))
        })
        .collect();
    let out = json!({
        "mode": a.mode, "players": a.players, "joined": joined, "failed": sh.failed.load(Relaxed), "join_retries": sh.retries.load(Relaxed),
        "done": sh.done.load(Relaxed), "questions": a.questions, "connect_s": connect_s,
        "window_s": window_s, "last_leaderboard_s": (t_last - t_start) as f64 / 1e6,
        "frames": frames, "kinds": kinds, "negative_latencies": negative,
        "question_ms": {"p50": ms(h.value_at_quantile(0.5)), "p99": ms(h.value_at_quantile(0.99)),
                        "max": ms(h.max()), "count": h.len()},
        "time_to_last_ms": {"median": ttl.get(ttl.len() / 2).map(|&x| ms(x.max(0) as u64)),
                            "max": ttl.last().map(|&x| ms(x.max(0) as u64)), "per_question": ttl.iter().map(|&x| ms(x.max(0) as u64)).collect::<Vec<_>>(),
                            "by_question": to_last.values().map(|&x| ms(x.max(0) as u64)).collect::<Vec<_>>()},
        "server_cpu_s": (cpu_total * 100.0).round() / 100.0, "server_user_s": (cpu_user * 100.0).round() / 100.0,
        "server_cpu_s_per_1m_frames": (cpu_total / (frames.max(1) as f64 / 1e6) * 1000.0).round() / 1000.0,
        "server_cpu_s_per_question": (cpu_total / a.questions.max(1) as f64 * 1000.0).round() / 1000.0,
        "server_idle_ms_per_s": (a.idle_ms > 0).then(|| (idle_total * 1000.0).round() / 1000.0),
        "server_cpu_s_per_1m_frames_less_idle": (a.idle_ms > 0).then(|| {
            ((cpu_total - idle_total / 1e3 * window_s) / (frames.max(1) as f64 / 1e6) * 1000.0).round() / 1000.0
        }),
        "procs": procs,
        "utc_start": t_start / 1_000_000,
    });
    let text = serde_json::to_string_pretty(&out)?;
    println!("{text}");
    if let Some(p) = &a.out {
        std::fs::write(p, text + "\n")?;
    }
    Ok(())
}
