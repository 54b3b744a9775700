//! The `ringside-edge` binary with a counting allocator: where the heap of a real run goes, by
//! allocation size (perf/vs-peers.md, "Memory per socket").
//!
//! Same command line as `ringside-edge` (run it with `--processes 1`). Every 500 ms it appends one
//! line to stderr (`probe t=… live_bytes=… live_allocs=… rss_kib=… players=…`); once the `players`
//! gauge has stood still for 1 s after growing (the lobby is full), and again when it falls back to
//! 0, it prints the live allocations added since the first sample, by size, largest total first.
//! `benches/peers/run.sh` runs it in place of the edge with `PEERS_EDGE_BIN=…/mem_probe`.
//!
//!   cargo build --release -p ringside-edge --example mem_probe

#![allow(unsafe_code, reason = "a counting GlobalAlloc wrapper around mimalloc")]

use std::alloc::{GlobalAlloc, Layout};
use std::process::ExitCode;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use ringside_edge::cli::Cli;
use ringside_edge::game::GameFactory;
use ringside_edge::metrics::GAME;
use ringside_edge::session::SessionFactory;
use ringside_edge::{server, sys, EchoFactory};

/// Exact sizes up to this; larger ones by power of two.
const EXACT: usize = 4096;
const BUCKETS: usize = EXACT + 64;

struct Counting;
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicIsize = AtomicIsize::new(0);
static BY_SIZE: [AtomicIsize; BUCKETS] = [ZERO; BUCKETS];
static BY_SIZE_BYTES: [AtomicIsize; BUCKETS] = [ZERO; BUCKETS];

fn bucket(size: usize) -> usize {
    if size <= EXACT {
        size
    } else {
        EXACT + (usize::BITS - size.leading_zeros()) as usize
    }
}

fn count(size: usize, sign: isize) {
    let b = bucket(size);
    BY_SIZE[b].fetch_add(sign, Relaxed);
    BY_SIZE_BYTES[b].fetch_add(sign * size as isize, Relaxed);
    LIVE_BYTES.fetch_add(sign * size as isize, Relaxed);
    LIVE_ALLOCS.fetch_add(sign, Relaxed);
}

// SAFETY: every method forwards to mimalloc's `GlobalAlloc` with the caller's arguments unchanged, so
// this allocator keeps mimalloc's contract; the counters are atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size(), 1);
        // SAFETY: `l` comes from the caller of `alloc`, who upholds `GlobalAlloc::alloc`'s contract.
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size(), 1);
        // SAFETY: as in `alloc`.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(l.size(), -1);
        // SAFETY: `p` was allocated by this allocator (so by mimalloc) with layout `l`.
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(l.size(), -1);
        count(new, 1);
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

fn snapshot() -> Vec<(isize, isize)> {
    (0..BUCKETS)
        .map(|b| (BY_SIZE[b].load(Relaxed), BY_SIZE_BYTES[b].load(Relaxed)))
        .collect()
}

fn dump(label: &str, base: &[(isize, isize)], per: i64) {
    let now = snapshot();
    let mut rows: Vec<(usize, isize, isize)> = (0..BUCKETS)
        .map(|b| (b, now[b].0 - base[b].0, now[b].1 - base[b].1))
        .filter(|r| r.2 != 0)
        .collect();
    rows.sort_by_key(|r| -r.2.abs());
    let per = per.max(1) as f64;
    eprintln!("probe-dump {label}: per = {per} sockets; size: allocs added (per socket), bytes per socket");
    for (b, n, bytes) in rows.iter().take(40) {
        let size = if *b <= EXACT {
            format!("{b}")
        } else {
            format!("<=2^{}", b - EXACT)
        };
        eprintln!(
            "probe-dump {label}: size {size:>8}: {n:>8} ({:>6.2}) {:>8.1} B",
            *n as f64 / per,
            *bytes as f64 / per
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    sys::shorten_allocator_purge_delay();
    if !cli.allow_thp {
        let _ = sys::disable_thp();
    }
    let cfg = cli.to_config();
    let _ = sys::raise_nofile_limit();
    let factory: Arc<dyn SessionFactory> = if cfg.echo {
        Arc::new(EchoFactory)
    } else {
        match GameFactory::start(cli.game_config(), cfg.threads) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                eprintln!("mem_probe: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let srv = match server::start(cfg, factory) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mem_probe: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let _ = std::thread::Builder::new()
        .name("probe".into())
        .spawn(|| {
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(500));
            let base = snapshot();
            let (b0, a0, r0) = (LIVE_BYTES.load(Relaxed), LIVE_ALLOCS.load(Relaxed), rss_kib());
            let (mut last, mut still, mut peak, mut full_dumped) = (0i64, 0u32, 0i64, false);
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let p = GAME.players.load(Relaxed) + GAME.hosts.load(Relaxed);
                let (b, a, r) = (LIVE_BYTES.load(Relaxed), LIVE_ALLOCS.load(Relaxed), rss_kib());
                eprintln!(
                    "probe t={:.1} live_bytes={} live_allocs={} rss_kib={} members={p} heap_per_member={:.0} rss_per_member={:.0}",
                    t0.elapsed().as_secs_f64(),
                    b - b0,
                    a - a0,
                    r - r0,
                    (b - b0) as f64 / p.max(1) as f64,
                    (r - r0) as f64 * 1024.0 / p.max(1) as f64,
                );
                peak = peak.max(p);
                still = if p == last && p > 0 { still + 1 } else { 0 };
                if still == 2 && !full_dumped {
                    dump("lobby", &base, p);
                    full_dumped = true;
                }
                if p == 0 && full_dumped && last > 0 {
                    dump("after", &base, peak);
                }
                last = p;
            }
        });
    srv.join();
    ExitCode::SUCCESS
}
