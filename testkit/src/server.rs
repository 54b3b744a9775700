//! [`RedisServer`]: one real `redis-server` process on 127.0.0.1, standalone or as a cluster node.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binary::{find_binary, REDIS_SERVER_ENV};
use crate::port::pick_port;
use crate::process::{new_server_dir, spawn_tied_to_process, tail_of};
use crate::HarnessError;

/// How long a starting server may take to answer PING (a busy 2-core machine can be slow).
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often readiness is polled.
const POLL_EVERY: Duration = Duration::from_millis(25);
/// Ports tried when other processes keep winning the race for them.
const START_ATTEMPTS: u32 = 6;
/// Attempts to rebind the same port on restart.
const RESTART_ATTEMPTS: u32 = 5;
const LOG_TAIL_LINES: usize = 30;

/// Whether the server runs alone or as a Redis Cluster node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Standalone,
    ClusterNode,
}

/// A `redis-server` this harness started, listening on `127.0.0.1:port()` with its own temporary
/// directory, no persistence, and its log in `dir()/redis.log`.
///
/// Dropping it kills the process (SIGKILL), waits for it and deletes the directory; this also happens
/// when the test panics. If the whole test process dies, the kernel kills the server (see "Cleanup"
/// in the crate docs).
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    mode: Mode,
    binary: PathBuf,
    version: String,
    child: Option<Child>,
    // Declared last: dropped after `Drop::drop` has killed the process.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits until it answers PING.
    pub fn start() -> Result<RedisServer, HarnessError> {
        let server = Self::start_as(Mode::Standalone)?;
        eprintln!(
            "testkit: started standalone redis {} on 127.0.0.1:{} (pid {})",
            server.version,
            server.port,
            server.pid().unwrap_or_default()
        );
        Ok(server)
    }

    pub(crate) fn start_as(mode: Mode) -> Result<RedisServer, HarnessError> {
        let binary = find_binary("redis-server", REDIS_SERVER_ENV)?;
        let mut last_clash = None;
        for _ in 0..START_ATTEMPTS {
            let mut server = Self::unstarted(pick_port()?, mode, binary.clone())?;
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                // Another process took the port (or bus port) first: `server` is dropped, try another.
                Err(e) if e.is_port_clash() => last_clash = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(HarnessError::PortRetriesExhausted {
            attempts: START_ATTEMPTS,
            last: Box::new(last_clash.expect("START_ATTEMPTS > 0")),
        })
    }

    fn unstarted(port: u16, mode: Mode, binary: PathBuf) -> Result<RedisServer, HarnessError> {
        Ok(RedisServer {
            port,
            mode,
            binary,
            version: String::new(),
            child: None,
            dir: new_server_dir().map_err(HarnessError::TempDir)?,
        })
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`, for `redis::Client::open` and friends.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's working directory (its log, and `nodes.conf` for a cluster node).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Redis version the server reported, e.g. `7.0.15`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The process id, or `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A new synchronous connection, for simple assertions. Fails if the server was killed.
    pub fn sync_conn(&self) -> Result<redis::Connection, HarnessError> {
        if self.child.is_none() {
            return Err(HarnessError::NotRunning { port: self.port });
        }
        let client = redis::Client::open(self.url())?;
        Ok(client.get_connection_with_timeout(Duration::from_secs(5))?)
    }

    /// Kills the server with SIGKILL (no shutdown, nothing saved) and waits until it is gone, to test
    /// what clients do when Redis disappears. The directory is kept for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory, like a Redis restart: data is gone
    /// (nothing is persisted), a cluster node keeps its identity and slots (`nodes.conf`). A running
    /// server is killed first. Fails if the port was taken by someone else meanwhile.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let mut attempt = 1;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => break,
                Err(e) if e.is_port_clash() && attempt < RESTART_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
        eprintln!(
            "testkit: restarted redis on 127.0.0.1:{} (pid {})",
            self.port,
            self.pid().unwrap_or_default()
        );
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    pub(crate) fn log_tail(&self) -> String {
        tail_of(&[&self.log_path(), &self.output_path()], LOG_TAIL_LINES)
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        // Whatever redis-server prints before it opens its log (config errors) lands here.
        let output = File::create(self.output_path()).map_err(HarnessError::TempDir)?;
        let output_err = output.try_clone().map_err(HarnessError::TempDir)?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path());
        if self.mode == Mode::ClusterNode {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "2000"]);
        }
        cmd.stdin(Stdio::null()).stdout(output).stderr(output_err);
        let child = spawn_tied_to_process(cmd).map_err(|source| HarnessError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        self.child = Some(child);
        self.wait_until_ready()
    }

    /// Polls until *our* process answers PING on the port. A PONG from another process (one that
    /// won the race for the port) does not count: `INFO server`'s `process_id` must be our child's.
    fn wait_until_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("spawned just before");
            let pid = child.id();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(HarnessError::ExitedDuringStartup {
                    port: self.port,
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                });
            }
            let last_error = match probe(self.port) {
                Ok(info) if info_field(&info, "process_id") == Some(&*pid.to_string()) => {
                    self.version = info_field(&info, "redis_version")
                        .unwrap_or("unknown")
                        .to_owned();
                    return Ok(());
                }
                Ok(_) => "another process answers on this port".to_owned(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                // The process stays in `self.child`; Drop (or the caller's retry) kills it.
                return Err(HarnessError::NotReady {
                    port: self.port,
                    timeout: READY_TIMEOUT,
                    last_error,
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PING, then `INFO server`.
fn probe(port: u16) -> redis::RedisResult<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    // Short timeouts: if a foreign, non-Redis process won the race for the port, each probe stalls
    // this long before the loop notices that our child has exited.
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    conn.set_write_timeout(Some(Duration::from_secs(1)))?;
    redis::cmd("PING").query::<String>(&mut conn)?;
    redis::cmd("INFO").arg("server").query(&mut conn)
}

/// The value of `field` in INFO / CLUSTER INFO text (`field:value` lines).
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// The retry-on-another-port path depends on recognising redis-server's own words for a lost race.
    #[test]
    fn a_taken_port_is_reported_as_a_port_clash_with_the_log_tail() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let binary = find_binary("redis-server", REDIS_SERVER_ENV).unwrap();
        let mut server = RedisServer::unstarted(port, Mode::Standalone, binary).unwrap();
        let err = server.spawn_and_wait().unwrap_err();
        assert!(err.is_port_clash(), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{port} exited during startup")),
            "{err}"
        );
        assert_eq!(server.pid(), None);
    }

    #[test]
    fn a_taken_bus_port_is_a_port_clash_too() {
        let port = crate::port::pick_port().unwrap();
        let _bus = TcpListener::bind(("127.0.0.1", port + crate::port::BUS_PORT_OFFSET)).unwrap();
        let binary = find_binary("redis-server", REDIS_SERVER_ENV).unwrap();
        let mut server = RedisServer::unstarted(port, Mode::ClusterNode, binary).unwrap();
        let err = server.spawn_and_wait().unwrap_err();
        assert!(err.is_port_clash(), "{err}");
    }
}
