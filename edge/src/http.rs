//! Plain HTTP on the WebSocket port: `/healthz`, `/readyz`, `/metrics` (Prometheus text) and static
//! files from `--web-root`. One request per connection (`Connection: close`); files are read
//! synchronously — they are small pages, and this is not the hot path.

use std::path::{Component, Path, PathBuf};

use crate::server::ServerShared;
use crate::ws::handshake::{http_response, HttpRequest};

const TEXT: &str = "text/plain; charset=utf-8";

/// The full response to a plain HTTP request.
pub fn respond(shared: &ServerShared, req: &HttpRequest) -> Vec<u8> {
    if req.method != "GET" {
        return http_response(405, TEXT, b"method not allowed\n", &[("Allow", "GET")]);
    }
    match req.path.as_str() {
        "/healthz" => http_response(200, TEXT, b"ok\n", &[]),
        "/readyz" => {
            if shared.draining() {
                http_response(503, TEXT, b"draining\n", &[])
            } else {
                http_response(200, TEXT, b"ready\n", &[])
            }
        }
        "/metrics" => http_response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render().as_bytes(),
            &[],
        ),
        path => match static_file(&shared.config.web_root, path) {
            Some((body, ctype)) => {
                http_response(200, ctype, &body, &[("Cache-Control", "no-cache")])
            }
            None => http_response(404, TEXT, b"not found\n", &[]),
        },
    }
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
