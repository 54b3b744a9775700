//! Heap bytes and allocations per idle socket, counted exactly (perf/edge.md §1).
//!
//! Runs the edge in-process (one worker thread) with a counting wrapper around mimalloc, opens N
//! WebSocket connections to it from plain blocking sockets (no heap on the client side), waits until
//! they are idle, and prints the live heap bytes and allocations added per socket. RSS per socket is
//! measured on the real stack with `perf/raw/edge-idle.sh`; this shows where the bytes are.
//!
//!   cargo run --release -p ringside-edge --example idle_alloc -- 5000 echo
//!   cargo run --release -p ringside-edge --example idle_alloc -- 5000 game redis://127.0.0.1:16590/
//!
//! `game` needs a Redis with the Functions library loaded (`ringside-quiz import`); each socket gets
//! `session:ack` (and with a third argument `lobby:CODE`, joins room CODE as a player).

#![allow(unsafe_code, reason = "a counting GlobalAlloc wrapper around mimalloc")]

use std::alloc::{GlobalAlloc, Layout};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use ringside_edge::config::Config;
use ringside_edge::game::hub::RedisConfig;
use ringside_edge::game::{GameConfig, GameFactory};
use ringside_edge::session::SessionFactory;
use ringside_edge::EchoFactory;

struct Counting;
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to mimalloc's `GlobalAlloc` with the caller's arguments unchanged, so
// this allocator keeps mimalloc's contract; the counters are atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as isize, Relaxed);
        LIVE_ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: `l` comes from the caller of `alloc`, who upholds `GlobalAlloc::alloc`'s contract.
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size() as isize, Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Relaxed);
        // SAFETY: `p` was allocated by this allocator (so by mimalloc) with layout `l`.
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new as isize - l.size() as isize, Relaxed);
        // SAFETY: `p` was allocated by this allocator (so by mimalloc) with layout `l`; `new` is the
        // caller's size, valid per `GlobalAlloc::realloc`'s contract.
        unsafe { mimalloc::MiMalloc.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    // As the ringside-edge binary does at start (KEEP_THP / KEEP_PURGE show the defaults).
    if std::env::var_os("KEEP_THP").is_none() {
        ringside_edge::sys::disable_thp()?;
    }
    if std::env::var_os("KEEP_PURGE").is_none() {
        println!(
            "purge delay: {:?}",
            ringside_edge::sys::shorten_allocator_purge_delay()
        );
    }
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let mode = args.get(2).map_or("echo", String::as_str);
    let mut cfg = Config::echo("127.0.0.1:0".parse()?);
    cfg.threads = 1;
    let (factory, proto): (Arc<dyn SessionFactory>, &str) = if mode == "game" {
        cfg.echo = false;
        cfg.limits = Config::default().limits;
        cfg.sendq = Config::default().sendq;
        let url = args
            .get(3)
            .cloned()
            .unwrap_or("redis://127.0.0.1:6379/".into());
        let f = GameFactory::start(
            GameConfig {
                redis: RedisConfig {
                    urls: vec![url],
                    cluster: false,
                    durability: Default::default(),
                    answer_calls_in_flight: 1,
                    answer_call_gap: std::time::Duration::from_millis(1),
                },
                share_base: "http://bench".into(),
                address_limits: Default::default(),
                leaderboard_hold: ringside_edge::game::DEFAULT_LEADERBOARD_HOLD,
                reveal_hold: ringside_edge::game::DEFAULT_REVEAL_HOLD,
            },
            1,
        )?;
        (Arc::new(f), "ringside.v1.json")
    } else {
        (Arc::new(EchoFactory), "")
    };
    ringside_edge::sys::raise_nofile_limit()?;
    let srv = ringside_edge::start(cfg, factory)?;
    let addr = srv.local_addr();
    let mut socks = Vec::with_capacity(n);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        if proto.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Protocol: {proto}\r\n")
        }
    );
    // Warm up: a first batch makes the worker's one-off buffers (scratch, registry, runtime).
    let warm = n.min(100);
    let connect = |socks: &mut Vec<std::net::TcpStream>, k: usize| -> anyhow::Result<()> {
        for _ in 0..k {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.write_all(req.as_bytes())?;
            let mut buf = [0u8; 512];
            let mut got = 0;
            // The 101 head, plus session:ack in game mode.
            loop {
                let r = s.read(&mut buf[got..])?;
                anyhow::ensure!(r > 0, "closed during upgrade");
                got += r;
                let head_end = buf[..got].windows(4).position(|w| w == b"\r\n\r\n");
                if let Some(h) = head_end {
                    if mode != "game" || got > h + 4 + 2 {
                        break;
                    }
                }
            }
            socks.push(s);
        }
        Ok(())
    };
    connect(&mut socks, warm)?;
    std::thread::sleep(Duration::from_millis(1500));
    let (b0, a0, r0) = (
        LIVE_BYTES.load(Relaxed),
        LIVE_ALLOCS.load(Relaxed),
        rss_kib(),
    );
    connect(&mut socks, n - warm)?;
    std::thread::sleep(Duration::from_millis(2500));
    let (b1, a1, r1) = (
        LIVE_BYTES.load(Relaxed),
        LIVE_ALLOCS.load(Relaxed),
        rss_kib(),
    );
    let k = (n - warm) as f64;
    println!(
        "mode={mode} sockets={} heap_bytes_per_socket={:.0} allocs_per_socket={:.2} rss_bytes_per_socket={:.0} task_future={:?} conn_shared={} ws_state={}",
        n - warm,
        (b1 - b0) as f64 / k,
        (a1 - a0) as f64 / k,
        (r1 - r0) as f64 * 1024.0 / k,
        ringside_edge::conn::task_future_size(),
        ringside_edge::conn::shared_state_size(),
        ringside_edge::conn::ws_state_size(),
    );
    socks.truncate(warm);
    for wait_ms in [500, 3000] {
        std::thread::sleep(Duration::from_millis(wait_ms));
        println!(
            "{wait_ms} ms after closing them: heap bytes over the warm baseline {} in {} allocations; RSS {} KiB over it (baseline {r0} KiB)",
            LIVE_BYTES.load(Relaxed) - b0,
            LIVE_ALLOCS.load(Relaxed) - a0,
            rss_kib() - r0,
        );
    }
    srv.drain();
    srv.join();
    Ok(())
}
