//! [`TestPostgres`]: a throwaway PostgreSQL server on a free 127.0.0.1 port, with a private data
//! directory made by `initdb`, removed when it is dropped (also when a test panics).
//!
//! The server is the `postgres` binary run in the foreground (not through `pg_ctl start`, which would
//! detach it): then it is our child, the kernel kills it if the test process dies (the same
//! parent-death signal as the Redis servers, see `process`), and `Drop` can stop it. `Drop` asks for an
//! immediate shutdown (SIGQUIT) and waits, so nothing is left in shared memory; SIGKILL only if that
//! hangs. `fsync=off` (these databases live for one test) keeps a commit safe from a server crash,
//! not from an operating-system crash: [`TestPostgres::stop`] is a crash, and committed data survives it.
//!
//! `initdb` and `postgres` refuse to run as root. Run as root (CI, containers), the harness runs them as
//! the `postgres` user that Debian's package creates, and hands the directory to that user.
//!
//! Binaries: `PG_BIN` (a directory holding `initdb` and `postgres`), else the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`), else `PATH`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::port::pick_port;
use crate::process::{new_server_dir, spawn_tied_to_process, tail_of};
use crate::HarnessError;

/// The environment variable naming the directory of `initdb` and `postgres`.
pub const PG_BIN_ENV: &str = "PG_BIN";
/// A cold start on a busy 2-core machine (initdb ran just before) can take a few seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(25);
const START_ATTEMPTS: u32 = 6;
const LOG_TAIL_LINES: usize = 30;
/// The superuser `initdb` creates; trust authentication on 127.0.0.1 only.
pub const SUPERUSER: &str = "postgres";

/// A PostgreSQL server this harness started on `127.0.0.1:port()`.
#[derive(Debug)]
pub struct TestPostgres {
    port: u16,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    // Declared last: removed after `Drop::drop` has stopped the server.
    dir: TempDir,
}

impl TestPostgres {
    /// Runs `initdb` into a fresh directory and starts the server on a free port; returns once it
    /// accepts connections.
    pub fn start() -> Result<TestPostgres, HarnessError> {
        let bin = pg_bin_dir()?;
        let run_as = run_as_user()?;
        let dir = new_server_dir().map_err(HarnessError::TempDir)?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(HarnessError::TempDir)?;
        if let Some((uid, gid)) = run_as {
            for p in [dir.path(), data.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(HarnessError::TempDir)?;
            }
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-N",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .stdout(Stdio::from(log_file(dir.path(), "initdb.log")?))
            .stderr(Stdio::from(log_file(dir.path(), "initdb.log")?));
        set_user(&mut initdb, run_as);
        let status = spawn_tied_to_process(initdb)
            .and_then(|mut c| c.wait())
            .map_err(|source| HarnessError::Spawn {
                binary: bin.join("initdb"),
                source,
            })?;
        if !status.success() {
            return Err(HarnessError::Postgres(format!(
                "initdb failed ({status}):\n{}",
                tail_of(&[&dir.path().join("initdb.log")], LOG_TAIL_LINES)
            )));
        }
        let mut server = TestPostgres {
            port: 0,
            bin,
            run_as,
            child: None,
            dir,
        };
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            server.port = pick_port()?;
            match server.spawn_and_wait() {
                Ok(()) => {
                    eprintln!(
                        "testkit: started postgres on 127.0.0.1:{} (pid {}, data {})",
                        server.port,
                        server.pid().unwrap_or_default(),
                        server.dir.path().display()
                    );
                    return Ok(server);
                }
                Err(e) if e.to_string().contains("already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Postgres("no start attempt".into())))
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser, e.g. `postgres://postgres@127.0.0.1:P/test`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's process id, or `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory holding `data/` and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (immediate shutdown, like a crash: clients get errors, nothing is flushed
    /// beyond what was committed). [`start_again`](Self::start_again) brings it back with its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child process, which has not been reaped yet.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGQUIT);
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_EVERY),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Starts a stopped server again on the same port with the same data.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment.
                Err(e) if Instant::now() < deadline && e.to_string().contains("already in use") => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let log = self.dir.path().join("postgres.log");
        // A fresh log per start, so readiness is read from this start's lines only.
        let out = File::create(&log).map_err(HarnessError::TempDir)?;
        if let Some((uid, gid)) = self.run_as {
            let _ = std::os::unix::fs::chown(&log, Some(uid), Some(gid));
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "dynamic_shared_memory_type=mmap",
                "-c",
                "max_connections=100",
                "-c",
                "shared_buffers=32MB",
            ])
            .stdout(Stdio::from(out.try_clone().map_err(HarnessError::TempDir)?))
            .stderr(Stdio::from(out));
        set_user(&mut cmd, self.run_as);
        let child = spawn_tied_to_process(cmd).map_err(|source| HarnessError::Spawn {
            binary: self.bin.join("postgres"),
            source,
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready to accept connections") {
                return Ok(());
            }
            let child = self.child.as_mut().expect("just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(HarnessError::Postgres(format!(
                    "postgres on 127.0.0.1:{} exited during startup ({status}):\n{}",
                    self.port,
                    tail_of(&[&log], LOG_TAIL_LINES)
                )));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(HarnessError::Postgres(format!(
                    "postgres on 127.0.0.1:{} not ready after {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    tail_of(&[&log], LOG_TAIL_LINES)
                )));
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_file(dir: &Path, name: &str) -> Result<File, HarnessError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(HarnessError::TempDir)
}

/// The directory of `initdb` and `postgres`.
pub fn pg_bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    // On PATH?
    if let Ok(found) = crate::binary::find_binary("initdb", PG_BIN_ENV) {
        if let Some(dir) = found.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    Err(HarnessError::BinaryNotFound {
        binary: "initdb".into(),
        env_var: PG_BIN_ENV.into(),
        detail: "not in /usr/lib/postgresql/*/bin nor on PATH; install it with \
                 `apt-get update && apt-get install -y postgresql`"
            .into(),
    })
}

/// `Some((uid, gid))` of the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn run_as_user() -> Result<Option<(u32, u32)>, HarnessError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == SUPERUSER {
            if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                return Ok(Some((uid, gid)));
            }
        }
    }
    Err(HarnessError::Postgres(
        "running as root, and there is no `postgres` user to run PostgreSQL as \
         (PostgreSQL refuses to run as root; `apt-get install -y postgresql` creates the user)"
            .into(),
    ))
}

fn set_user(cmd: &mut Command, run_as: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
        // The environment still names root's home; PostgreSQL does not need it.
        cmd.env("HOME", "/tmp");
    }
}
