//! Plain HTTP on the WebSocket port: `/healthz`, `/readyz`, `/metrics` (Prometheus text) and static
//! files from `--web-root`. One request per connection (`Connection: close`); files are read
//! synchronously — they are small pages, and this is not the hot path.
//!
//! With `--metrics-listen ADDR:PORT`, [`spawn_metrics_listener`] also serves the probes and
//! `/metrics` of *this* process on `PORT+i` (`i`: its `--processes` index) from one plain blocking
//! thread, so a scraper can reach every process behind the shared SO_REUSEPORT port.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;

use crate::metrics::with_label;
use crate::shared::ServerShared;
use crate::ws::handshake::{http_response, parse_request, HttpRequest, Request};

const TEXT: &str = "text/plain; charset=utf-8";

/// The full response to a plain HTTP request.
pub fn respond(shared: &ServerShared, req: &HttpRequest) -> Vec<u8> {
    if req.method != "GET" {
        return http_response(405, TEXT, b"method not allowed\n", &[("Allow", "GET")]);
    }
    if let Some(r) = probe(shared, &req.path) {
        return r;
    }
    match static_file(&shared.config.web_root, &req.path) {
        Some((body, ctype)) => http_response(200, ctype, &body, &[("Cache-Control", "no-cache")]),
        None => http_response(404, TEXT, b"not found\n", &[]),
    }
}

/// `/healthz`, `/readyz` and `/metrics` (a GET), or `None` for any other path.
pub fn probe(shared: &ServerShared, path: &str) -> Option<Vec<u8>> {
    Some(match path {
        "/healthz" => http_response(200, TEXT, b"ok\n", &[]),
        "/readyz" => {
            if shared.draining() {
                http_response(503, TEXT, b"draining\n", &[])
            } else {
                http_response(200, TEXT, b"ready\n", &[])
            }
        }
        "/metrics" => {
            let mut text = shared.metrics.render();
            shared.admission.render(&mut text);
            if let Some(i) = shared.config.process_label() {
                text = with_label(&text, "process", &i.to_string());
            }
            http_response(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.as_bytes(),
                &[],
            )
        }
        _ => return None,
    })
}

/// How long the metrics listener waits for one request head (in all) or one write.
const METRICS_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `--metrics-listen` (moved up by the process index) and serves [`probe`] there from a
/// thread named `edge-metrics`, one connection at a time (a scrape every few seconds). The thread
/// holds only a weak reference: it ends, closing the port, once the server is gone. `Ok(None)`
/// without `--metrics-listen`.
pub fn spawn_metrics_listener(shared: &Arc<ServerShared>) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = shared.config.metrics_addr() else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("binding --metrics-listen {addr} (this process's port)"))?;
    // accept() returns EAGAIN after this, so the thread notices a dropped server.
    socket2::SockRef::from(&listener).set_read_timeout(Some(Duration::from_millis(250)))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, process = ?shared.config.process_index, "metrics listening");
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("edge-metrics".into())
        .spawn(move || metrics_loop(listener, weak))?;
    Ok(Some(bound))
}

fn metrics_loop(listener: TcpListener, shared: Weak<ServerShared>) {
    loop {
        let accepted = listener.accept();
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match accepted {
            Ok((stream, _)) => {
                if let Err(e) = serve_metrics_conn(&shared, stream) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_metrics_conn(shared: &ServerShared, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(METRICS_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(METRICS_IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    // One deadline for the whole head, so a client trickling bytes cannot hold the thread.
    let deadline = std::time::Instant::now() + METRICS_IO_TIMEOUT;
    let resp = loop {
        if std::time::Instant::now() > deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        match parse_request(&head, &shared.policy) {
            Ok(None) => continue,
            Ok(Some((Request::Http(r), _))) if r.method != "GET" => {
                break http_response(405, TEXT, b"method not allowed\n", &[("Allow", "GET")])
            }
            Ok(Some((Request::Http(r), _))) => {
                break probe(shared, &r.path)
                    .unwrap_or_else(|| http_response(404, TEXT, b"not found\n", &[]))
            }
            Ok(Some((Request::Upgrade(_), _))) => {
                break http_response(404, TEXT, b"no WebSocket on the metrics port\n", &[])
            }
            Err(e) => break e.response(),
        }
    };
    stream.write_all(&resp)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Content type by file extension.
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html") | Some("htm") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        Some("txt") => TEXT,
        _ => "application/octet-stream",
    }
}

/// Maps a request path to a file under `root`, refusing anything that could leave it: `..`,
/// encoded dots or slashes, backslashes, NUL, and symlinks that resolve outside the root.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let lower = url_path.to_ascii_lowercase();
    if lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || url_path.contains('\\')
        || url_path.contains('\0')
    {
        return None;
    }
    let rel = url_path.trim_start_matches('/');
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_string()
    };
    let rel_path = Path::new(&rel);
    if !rel_path
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let full = root.join(rel_path).canonicalize().ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

fn static_file(root: &Path, url_path: &str) -> Option<(Vec<u8>, &'static str)> {
    let p = resolve(root, url_path)?;
    let body = std::fs::read(&p).ok()?;
    Some((body, content_type(&p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        let dir = std::env::temp_dir().join(format!("ringside-http-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("sub/app.js"), "1").unwrap();
        assert!(resolve(&dir, "/").is_some());
        assert!(resolve(&dir, "/sub/app.js").is_some());
        for bad in [
            "/../etc/passwd",
            "/sub/../../x",
            "/%2e%2e/etc/passwd",
            "/..%2fetc",
            "/sub\\..\\x",
            "/missing.html",
        ] {
            assert!(resolve(&dir, bad).is_none(), "{bad}");
        }
        assert_eq!(content_type(Path::new("a.svg")), "image/svg+xml");
        assert_eq!(
            content_type(Path::new("a.JS")),
            "text/javascript; charset=utf-8"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
