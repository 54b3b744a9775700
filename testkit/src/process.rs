//! Child processes and their directories, and how they are cleaned up whatever happens to the test.
//!
//! Three layers, from the common case to the worst:
//! 1. `Drop` of a server kills it (SIGKILL), waits for it and deletes its directory — also when the test
//!    panics, because unwinding runs `Drop`.
//! 2. If the test process itself dies (SIGKILL, abort, a nextest timeout), every child gets SIGKILL from
//!    the kernel: `PR_SET_PDEATHSIG`. That signal fires when the *thread* that forked the child exits,
//!    not the process, so all children are forked by one spawner thread that lives until the process
//!    exits. A server started on a short-lived thread (a `spawn_blocking` worker, a helper thread) and
//!    used elsewhere therefore stays up until it is dropped.
//! 3. Directories cannot be removed by a dead process. Their names carry the owning process id
//!    (`ringside-testkit-<pid>-…`); the first server a process starts removes those of processes that
//!    no longer exist.

use std::io;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Once, OnceLock};

use tempfile::TempDir;

const DIR_PREFIX: &str = "ringside-testkit-";

type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-lifetime spawner thread, with SIGKILL as its parent-death signal.
pub(crate) fn spawn_tied_to_process(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("ringside-testkit-spawner".into())
            // The sender lives in a static, so this loop (and the thread) ends only with the process.
            .spawn(move || {
                for (cmd, reply) in incoming {
                    let _ = reply.send(spawn_with_parent_death_signal(cmd));
                }
            })
            .expect("testkit: could not start its spawner thread");
        requests
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?
}

fn spawn_with_parent_death_signal(mut cmd: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe calls are
    // allowed: it calls prctl and getppid and allocates nothing (`last_os_error` and
    // `from_raw_os_error` do not allocate).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then no signal will ever come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A fresh directory for one server, named after this process so a later run can remove it if this
/// process dies without cleaning up.
pub(crate) fn new_server_dir() -> io::Result<TempDir> {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(remove_dirs_of_dead_processes);
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
}

fn remove_dirs_of_dead_processes() {
    // Without procfs every process would look dead; then leave everything alone.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The last `lines` lines of each file, labelled, for error messages.
pub(crate) fn tail_of(files: &[&Path], lines: usize) -> String {
    let mut out = String::new();
    for file in files {
        let text = match std::fs::read(file) {
            Ok(bytes) if bytes.is_empty() => continue,
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(unreadable: {e})"),
        };
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        out.push_str(&format!("--- {} ---\n", file.display()));
        for line in &all[start..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
