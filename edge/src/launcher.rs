//! `--processes N`: runs N copies of this binary on the same port (SO_REUSEPORT) and forwards
//! SIGTERM/SIGINT to them. The per-process fd limit (20000 here, not raisable) caps one process
//! near 20K sockets, so 100K sockets need about six processes.
//!
//! Child `i` gets `RINGSIDE_EDGE_CHILD_INDEX=i`: the `process="i"` label on its metrics, and with
//! `--metrics-listen ADDR:PORT` its own metrics port `PORT+i` (a scrape of the shared port reaches
//! one random child, so per-process counters could not be summed from it).

use std::ffi::OsString;
use std::process::{Command, ExitCode};
use std::sync::Arc;

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

/// Spawns `n` children with the same arguments and waits for all of them.
pub fn run(n: usize) -> anyhow::Result<ExitCode> {
    let signals = sys::TermSignals::block()?;
    let exe = std::env::current_exe()?;
    let args = child_args(std::env::args_os().skip(1));
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let child = Command::new(&exe)
            .args(&args)
            .env("RINGSIDE_EDGE_PROCESSES", "1")
            .env("RINGSIDE_EDGE_CHILD_INDEX", i.to_string())
            .spawn()?;
        tracing::info!(child = i, pid = child.id(), "started edge process");
        children.push(child);
    }
    let pids: Arc<Vec<u32>> = Arc::new(children.iter().map(|c| c.id()).collect());
    let fwd = pids.clone();
    std::thread::Builder::new()
        .name("edge-signals".into())
        .spawn(move || loop {
            let sig = signals.wait();
            tracing::info!(signal = sig, "forwarding signal to edge processes");
            for pid in fwd.iter() {
                let _ = sys::kill(*pid, sig);
            }
        })?;
    let mut ok = true;
    for (i, mut c) in children.into_iter().enumerate() {
        let status = c.wait()?;
        tracing::info!(child = i, %status, "edge process exited");
        ok &= status.success();
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
