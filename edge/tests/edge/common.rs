//! Shared helpers for the edge's integration tests: an in-process edge on 127.0.0.1:0 and small
//! raw-socket clients for what an honest client library refuses to send.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ringside_edge::config::{Config, Driver};
use ringside_edge::session::SessionFactory;
use ringside_edge::{EchoFactory, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DRIVERS: [Driver; 2] = [Driver::Fusion, Driver::Legacy];

pub fn echo_config() -> Config {
    let mut c = Config::echo("127.0.0.1:0".parse().unwrap());
    c.threads = 2;
    c.web_root = web_root();
    // Tests stop the edge while their clients are still connected; don't linger 5 s for them.
    c.close_timeout = Duration::from_secs(1);
    c
}

pub fn start(cfg: Config) -> ServerHandle {
    start_with(cfg, Arc::new(EchoFactory))
}

pub fn start_with(cfg: Config, f: Arc<dyn SessionFactory>) -> ServerHandle {
    ringside_edge::start(cfg, f).expect("edge starts")
}

/// A web root with a few files, made once per test process.
pub fn web_root() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringside-edge-web-{}", std::process::id()));
    if !dir.join("index.html").exists() {
        std::fs::create_dir_all(dir.join("js")).unwrap();
        std::fs::write(
            dir.join("index.html"),
            "<!doctype html><title>ringside</title>",
        )
        .unwrap();
        std::fs::write(dir.join("js/app.js"), "console.log('ringside');").unwrap();
        std::fs::write(
            dir.join("logo.svg"),
            "<svg xmlns='http://www.w3.org/2000/svg'/>",
        )
        .unwrap();
    }
    dir
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Sends a raw HTTP request and returns the whole response (the server closes after it).
pub async fn http_raw(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends a raw request and returns the response head only (for upgrades that stay open).
pub async fn http_head(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(TIMEOUT, s.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
    .await
}

pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A raw WebSocket client after a successful upgrade.
pub struct RawWs {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    pub async fn connect(addr: std::net::SocketAddr) -> RawWs {
        RawWs::connect_with(addr, "").await
    }

    /// [`RawWs::connect`] with `extra` header lines (each ending in `\r\n`) in the upgrade.
    pub async fn connect_with(addr: std::net::SocketAddr, extra: &str) -> RawWs {
        RawWs::upgrade(TcpStream::connect(addr).await.unwrap(), extra).await
    }

    /// [`RawWs::connect`] from a socket whose receive buffer is `bytes` (the kernel doubles it): a
    /// client that stops reading soon stops acknowledging what it is sent.
    pub async fn connect_with_rcvbuf(addr: std::net::SocketAddr, bytes: u32) -> RawWs {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(bytes).unwrap();
        RawWs::upgrade(sock.connect(addr).await.unwrap(), "").await
    }

    async fn upgrade(mut s: TcpStream, extra: &str) -> RawWs {
        s.write_all(upgrade_request("/ws", extra).as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = tokio::time::timeout(TIMEOUT, s.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed during upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                buf.drain(..i + 4);
                return RawWs { s, buf };
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads one server frame: (opcode, payload). `None` on EOF.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0F;
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are unmasked");
                let len7 = (self.buf[1] & 0x7F) as usize;
                let (len, hl) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= hl + len {
                    let payload = self.buf[hl..hl + len].to_vec();
                    self.buf.drain(..hl + len);
                    return Some((op, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(TIMEOUT, self.s.read(&mut chunk))
                .await
                .expect("frame in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until a close frame; returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        while let Some((op, p)) = self.next_frame().await {
            if op == 8 {
                return (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
            }
        }
        None
    }
}

// ───────────── the real binary, for launcher / multi-process tests ─────────────

/// Two free ports `p` and `p + 1` on 127.0.0.1 (held together while checking, then released).
pub fn free_port_pair(avoid: u16) -> u16 {
    for _ in 0..200 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p == u16::MAX || p == avoid || p + 1 == avoid {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two adjacent free ports");
}

/// The real `ringside-edge` binary; SIGTERM (the launcher forwards it) and then SIGKILL on drop.
pub struct EdgeProcess(pub std::process::Child);

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = ringside_edge::sys::kill(self.0.id(), libc::SIGTERM);
            for _ in 0..100 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The value of the sample line starting with `series` (`name{labels}`) in a `/metrics` response.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Waits until `GET /healthz` on `addr` answers 200, while the edge launcher is still running.
pub async fn wait_healthz(
    edge: &mut EdgeProcess,
    addr: std::net::SocketAddr,
    deadline: std::time::Instant,
) {
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut out = String::new();
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_ok()
                && s.read_to_string(&mut out).await.is_ok()
                && out.starts_with("HTTP/1.1 200")
            {
                return;
            }
        }
        assert!(
            matches!(edge.0.try_wait(), Ok(None)),
            "edge exited before {addr} answered"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Process i's metrics address under `--metrics-listen 127.0.0.1:mport`.
pub fn metrics_addr(mport: u16, i: u16) -> std::net::SocketAddr {
    format!("127.0.0.1:{}", mport + i).parse().unwrap()
}

/// Waits (at most `within`) for the launcher to exit.
pub async fn wait_exit(edge: &mut EdgeProcess, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = edge.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edge launcher did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pids of a process's children.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
