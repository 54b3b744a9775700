//! The probe and metrics listener: `GET /metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (Redis reachable, library checked, lease loop healthy, not draining).
//!
//! Plain HTTP/1.1 on tokio, one request per connection (`Connection: close`): enough for probes and a
//! scraper, no framework. Requests are capped at 8 KiB of head and 5 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::Observed;

const MAX_HEAD: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the listener (so the caller learns the real port, and a taken port fails start-up).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Observed>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    if tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &shared)).await.is_err() {
                        debug!("http request timed out");
                    }
                });
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

async fn handle(mut stream: TcpStream, shared: &Observed) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            let _ = respond(&mut stream, 431, "text/plain", "request head too large\n").await;
            return;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        let _ = respond(&mut stream, 405, "text/plain", "only GET\n").await;
        return;
    }
    let (status, ctype, body) = match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            shared
                .metrics
                .render(shared.clock.offset_us(), shared.is_ready()),
        ),
        "/healthz" => (200, "text/plain", "ok\n".to_owned()),
        "/readyz" => match shared.not_ready_reason() {
            None => (200, "text/plain", "ready\n".to_owned()),
            Some(why) => (503, "text/plain", format!("not ready: {why}\n")),
        },
        _ => (404, "text/plain", "not found\n".to_owned()),
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    let _ = respond(&mut stream, status, ctype, &body).await;
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
