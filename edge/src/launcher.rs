//! `--processes N`: runs N copies of this binary on the same port (SO_REUSEPORT), restarts one
//! that dies (with back-off when it keeps dying young) and forwards SIGTERM/SIGINT to them. The per-process fd limit (20000 here, not raisable) caps one process
//! near 20K sockets, so 100K sockets need about six processes.
//!
//! Child `i` gets `RINGSIDE_EDGE_CHILD_INDEX=i`: the `process="i"` label on its metrics, and with
//! `--metrics-listen ADDR:PORT` its own metrics port `PORT+i` (a scrape of the shared port reaches
//! one random child, so per-process counters could not be summed from it).

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sys;

/// The arguments without `--processes N` / `--processes=N`.
pub fn child_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for a in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--processes" {
            skip_next = true;
            continue;
        }
        if s.starts_with("--processes=") {
            continue;
        }
        out.push(a);
    }
    out
}

/// A child that ends before it ran this long counts as a crash loop: the next start waits longer.
const QUICK_EXIT: Duration = Duration::from_secs(30);
/// Deaths in a row, each within [`QUICK_EXIT`] of its start, after which the launcher gives up.
const GIVE_UP_AFTER: u32 = 4;
/// How often the launcher looks for exited children.
const POLL: Duration = Duration::from_millis(100);

/// Spawns `n` children with the same arguments and supervises them: a child that exits while no
/// SIGTERM/SIGINT was received is started again with the same index (its sockets' clients reconnect
/// to the other processes meanwhile; the restarted one takes its share of new connections again).
/// After a signal it waits for every child and exits with success only if all of them did. A child
/// that dies [`GIVE_UP_AFTER`] times in a row right after starting is not started again; when no
/// child is left the launcher exits with a failure.
pub fn run(n: usize) -> anyhow::Result<ExitCode> {
    let signals = sys::TermSignals::block()?;
    let exe = std::env::current_exe()?;
    let args = child_args(std::env::args_os().skip(1));
    let spawn = |i: usize| -> std::io::Result<Child> {
        let child = Command::new(&exe)
            .args(&args)
            .env("RINGSIDE_EDGE_PROCESSES", "1")
            .env("RINGSIDE_EDGE_CHILD_INDEX", i.to_string())
            .spawn()?;
        tracing::info!(child = i, pid = child.id(), "started edge process");
        Ok(child)
    };
    // pids[i] is child i's current pid (0 while it is being restarted), for the signal thread.
    let pids: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(vec![0; n]));
    let stopping: Arc<(AtomicBool, AtomicI32)> =
        Arc::new((AtomicBool::new(false), AtomicI32::new(0)));
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let c = spawn(i)?;
        pids.lock().expect("not poisoned")[i] = c.id();
        children.push(Slot {
            child: Some(c),
            started: Instant::now(),
            backoff: Duration::ZERO,
            quick_deaths: 0,
            restart_at: None,
            ok: true,
        });
    }
    let (fwd, stop) = (pids.clone(), stopping.clone());
    std::thread::Builder::new()
        .name("edge-signals".into())
        .spawn(move || loop {
            let sig = signals.wait();
            stop.1.store(sig, Ordering::SeqCst);
            stop.0.store(true, Ordering::SeqCst);
            tracing::info!(signal = sig, "forwarding signal to edge processes");
            for pid in fwd
                .lock()
                .expect("not poisoned")
                .iter()
                .filter(|p| **p != 0)
            {
                let _ = sys::kill(*pid, sig);
            }
        })?;

    loop {
        let stopping_now = stopping.0.load(Ordering::SeqCst);
        let mut running = 0;
        for (i, slot) in children.iter_mut().enumerate() {
            let Some(c) = slot.child.as_mut() else {
                running += usize::from(slot.restart_at.is_some());
                continue;
            };
            let Some(status) = c.try_wait()? else {
                running += 1;
                continue;
            };
            slot.child = None;
            pids.lock().expect("not poisoned")[i] = 0;
            if stopping_now || stopping.0.load(Ordering::SeqCst) {
                tracing::info!(child = i, %status, "edge process exited");
                slot.ok &= status.success();
                continue;
            }
            // Unexpected: restart it, waiting longer each time it dies young (1 s, 2 s, … 30 s).
            if slot.started.elapsed() < QUICK_EXIT {
                slot.quick_deaths += 1;
                slot.backoff = longer(slot.backoff);
            } else {
                slot.quick_deaths = 0;
                slot.backoff = Duration::ZERO;
            }
            if slot.quick_deaths >= GIVE_UP_AFTER {
                // It cannot start (bad config, wrong library version, Redis unreachable): this
                // slot stays empty; the others keep serving. Once none is left the launcher exits
                // with a failure, so the service manager sees it instead of a restart loop.
                tracing::error!(child = i, %status, "edge process keeps dying at start; not restarting it");
                slot.ok = false;
                continue;
            }
            tracing::error!(child = i, %status, restart_in = ?slot.backoff, "edge process died; restarting it");
            slot.restart_at = Some(Instant::now() + slot.backoff);
            running += 1;
        }
        // Restarts that are due (none once a signal arrived).
        for (i, slot) in children.iter_mut().enumerate() {
            let due = slot.restart_at.is_some_and(|t| Instant::now() >= t);
            if slot.restart_at.is_some() && stopping.0.load(Ordering::SeqCst) {
                slot.restart_at = None;
                running -= 1;
            } else if due {
                let c = match spawn(i) {
                    Ok(c) => c,
                    Err(e) => {
                        // Try again later rather than leave the other children unsupervised.
                        slot.backoff = longer(slot.backoff);
                        tracing::error!(child = i, error = %e, retry_in = ?slot.backoff, "could not restart edge process");
                        slot.restart_at = Some(Instant::now() + slot.backoff);
                        continue;
                    }
                };
                slot.restart_at = None;
                pids.lock().expect("not poisoned")[i] = c.id();
                // A signal that arrived while it started was not forwarded to it.
                if stopping.0.load(Ordering::SeqCst) {
                    let _ = sys::kill(c.id(), stopping.1.load(Ordering::SeqCst));
                }
                slot.child = Some(c);
                slot.started = Instant::now();
            }
        }
        if running == 0 {
            break;
        }
        std::thread::sleep(POLL);
    }
    Ok(if children.iter().all(|s| s.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The next restart delay after `b`: 1 s, 2 s, 4 s, … at most 30 s.
fn longer(b: Duration) -> Duration {
    (b * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// One supervised child.
struct Slot {
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    /// Consecutive deaths within [`QUICK_EXIT`] of a start.
    quick_deaths: u32,
    restart_at: Option<Instant>,
    /// Every exit after the stop signal was a success.
    ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_flag_is_stripped() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            child_args(a(&[
                "--processes",
                "6",
                "--listen",
                "0.0.0.0:80",
                "--processes=3",
                "--echo"
            ])),
            a(&["--listen", "0.0.0.0:80", "--echo"])
        );
    }
}
