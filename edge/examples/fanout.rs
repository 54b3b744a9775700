//! Fan-out cost: one encoded frame written to every socket of a worker, measured on the worker
//! thread itself (perf/edge.md §3).
//!
//! Runs the edge in-process with one worker thread and a session factory that puts every socket
//! into one local "room". Every `--every-ms` the worker sends one frame (encoded once, shared by
//! every socket: `ConnHandle::send`, as `game/rooms.rs` does) to every member, then yields until
//! every socket task has written it, and prints: members, wall time to the last write, the
//! worker thread's CPU (schedstat ns; utime/stime from /proc/thread-self/stat), and frames per
//! CPU-second. The clients are another process, e.g.
//!   ringside-loadgen connect --url ws://127.0.0.1:PORT/ws --sockets 15000 --hold-secs 60
//!
//!   cargo run --release -p ringside-edge --example fanout -- PORT [bytes=195] [every_ms=1000] [rounds=20]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringside_edge::config::Config;
use ringside_edge::session::{Rejection, Session, SessionFactory};
use ringside_edge::ws::frame::{self, MessageKind};
use ringside_edge::ws::handshake::UpgradeRequest;
use ringside_edge::{ConnHandle, FrameClass};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

thread_local! {
    static ROOM: RefCell<Vec<ConnHandle>> = const { RefCell::new(Vec::new()) };
}

struct Bench {
    bytes: usize,
    every: Duration,
    rounds: usize,
}

struct Member;

impl Session for Member {
    fn on_message(&mut self, _conn: &ConnHandle, _kind: MessageKind, _payload: &[u8]) {}
    fn on_close(&mut self, conn: &ConnHandle, _info: &ringside_edge::CloseInfo) {
        let id = conn.id();
        ROOM.with(|r| r.borrow_mut().retain(|m| m.id() != id));
    }
}

impl SessionFactory for Bench {
    fn on_worker_start(&self, worker: usize) {
        let (bytes, every, rounds) = (self.bytes, self.every, self.rounds);
        monoio::spawn(async move {
            let text = format!(
                "{{\"event\":\"bench\",\"data\":\"{}\"}}",
                "x".repeat(bytes - 30)
            );
            let payload = frame::encode_text(&text[..bytes.min(text.len())]);
            let mut done = 0;
            while done < rounds {
                monoio::time::sleep(every).await;
                let members: Vec<ConnHandle> = ROOM.with(|r| r.borrow().clone());
                if members.len() < 100 {
                    continue;
                }
                let (cpu0, u0, s0) = thread_cpu();
                let t0 = Instant::now();
                for m in &members {
                    let _ = m.send(payload.clone(), FrameClass::Reliable);
                }
                let queued = t0.elapsed();
                let (cpu_q, _, _) = thread_cpu();
                // A short timer (not a self-wake, which monoio polls again at once) lets the woken
                // socket tasks run; checked every 100 µs until every queue is written out.
                let mut yields = 0;
                while members.iter().any(|m| m.queued_bytes() > 0) && yields < 100_000 {
                    monoio::time::sleep(Duration::from_micros(100)).await;
                    yields += 1;
                }
                let wall = t0.elapsed();
                let (cpu1, u1, s1) = thread_cpu();
                let cpu_s = (cpu1 - cpu0) as f64 / 1e9;
                println!(
                    "worker={worker} members={} frame_bytes={} queue_all_ms={:.2} (cpu {:.2} ms) last_write_ms={:.2} worker_cpu_ms={:.2} utime_ms={} stime_ms={} frames_per_cpu_s={:.0} yields={yields}",
                    members.len(),
                    payload.len(),
                    queued.as_secs_f64() * 1e3,
                    (cpu_q - cpu0) as f64 / 1e6,
                    wall.as_secs_f64() * 1e3,
                    cpu_s * 1e3,
                    (u1 - u0) * 10,
                    (s1 - s0) * 10,
                    members.len() as f64 / cpu_s,
                );
                done += 1;
            }
            std::process::exit(0);
        });
    }

    fn open(
        &self,
        _req: &UpgradeRequest,
        conn: &ConnHandle,
    ) -> Result<Box<dyn Session>, Rejection> {
        ROOM.with(|r| r.borrow_mut().push(conn.clone()));
        Ok(Box::new(Member))
    }
}

/// (schedstat ns on CPU, utime ticks, stime ticks) of the calling thread.
fn thread_cpu() -> (u64, u64, u64) {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime is field 14 of stat, i.e. [11]; stime [12].
    let ut = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let st = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (ns, ut, st)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).map_or(Ok(18490), |s| s.parse())?;
    let bytes: usize = args.get(2).map_or(Ok(195), |s| s.parse())?;
    let every_ms: u64 = args.get(3).map_or(Ok(1000), |s| s.parse())?;
    let rounds: usize = args.get(4).map_or(Ok(20), |s| s.parse())?;
    ringside_edge::sys::disable_thp()?;
    ringside_edge::sys::raise_nofile_limit()?;
    let mut cfg = Config::echo(format!("127.0.0.1:{port}").parse()?);
    cfg.threads = 1;
    cfg.sendq = Config::default().sendq;
    let srv = ringside_edge::start(
        cfg,
        Arc::new(Bench {
            bytes: bytes.max(40),
            every: Duration::from_millis(every_ms),
            rounds,
        }),
    )?;
    eprintln!(
        "fanout bench on {} (driver {:?})",
        srv.local_addr(),
        srv.drivers()
    );
    srv.join();
    Ok(())
}
