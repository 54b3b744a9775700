//! `/api/` on the edge's port is forwarded to the control plane (`--api-upstream`), so the pages call
//! the API from their own origin (no CORS) while the edge itself keeps no database connection and no
//! API logic. One request per connection, as for every plain HTTP request here: the request head is
//! rewritten (hop-by-hop headers dropped; `X-Forwarded-For` = the peer address, replacing any the client
//! sent; `X-Forwarded-Proto`, `X-Forwarded-Host`; `Connection: close`), the body (`Content-Length`
//! only, at most [`MAX_BODY`]) follows, and the upstream's response (at most [`MAX_RESPONSE`]) is passed
//! back unchanged. Not a hot path: a host creates a room or downloads a CSV now and then.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::sys::RawSock;
use crate::transport::Transport;
use crate::ws::handshake::http_response;

/// Largest request body forwarded (the control plane has its own, lower limit).
pub const MAX_BODY: usize = 4 << 20;
/// Largest response passed back (a CSV of a 100K-player game is ~10 MB).
pub const MAX_RESPONSE: usize = 64 << 20;
/// The whole exchange with the upstream.
const TIMEOUT: Duration = Duration::from_secs(60);

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

const TEXT: &str = "application/json";

fn error(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body = format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"{message}\"}}}}");
    http_response(status, TEXT, body.as_bytes(), &[])
}

/// Forwards the request whose head (and maybe part of its body) is in `head`; returns the response
/// bytes to write to the client.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    stream: &TcpStream,
    sock: RawSock<'_>,
    transport: &mut Transport,
    mut head: Vec<u8>,
    head_len: usize,
    upstream: SocketAddr,
    peer: Option<IpAddr>,
    tls: bool,
) -> Vec<u8> {
    let (request, body_len) = match rewrite(&head[..head_len], peer, tls) {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if body_len > MAX_BODY {
        return error(413, "too_large", "the request body is too large");
    }
    // the rest of the body
    let mut body = head.split_off(head_len);
    while body.len() < body_len {
        let mut buf = vec![0u8; 64 * 1024];
        match transport.read(sock, &mut buf) {
            Ok(0) => return error(400, "bad_request", "the body ended early"),
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if monoio::time::timeout(TIMEOUT, stream.readable(false))
                    .await
                    .is_err()
                {
                    return error(408, "timeout", "the request body did not arrive in time");
                }
            }
            Err(_) => return Vec::new(),
        }
    }
    body.truncate(body_len);
    match monoio::time::timeout(TIMEOUT, exchange(upstream, request, body)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::warn!(%upstream, error = %e, "api upstream failed");
            error(
                502,
                "unavailable",
                "the control plane is unreachable; retry",
            )
        }
        Err(_) => error(
            504,
            "unavailable",
            "the control plane did not answer in time; retry",
        ),
    }
}

/// The rewritten request head and the body length, or the response refusing the request.
fn rewrite(head: &[u8], peer: Option<IpAddr>, tls: bool) -> Result<(Vec<u8>, usize), Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Err(error(400, "bad_request", "malformed request"));
    }
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    let mut body_len = 0usize;
    let mut host = None;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name == "transfer-encoding" {
            return Err(error(
                411,
                "bad_request",
                "send the body with Content-Length",
            ));
        }
        if name == "content-length" {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| error(400, "bad_request", "bad Content-Length"))?;
        }
        if name == "host" {
            host = std::str::from_utf8(h.value).ok().map(str::to_string);
        }
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(ip) = peer {
        out.extend_from_slice(format!("X-Forwarded-For: {ip}\r\n").as_bytes());
    }
    let proto = if tls { "https" } else { "http" };
    out.extend_from_slice(format!("X-Forwarded-Proto: {proto}\r\n").as_bytes());
    if let Some(h) = host {
        out.extend_from_slice(format!("X-Forwarded-Host: {h}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok((out, body_len))
}

async fn exchange(upstream: SocketAddr, head: Vec<u8>, body: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    let (r, _) = up.write_all(head).await;
    r?;
    if !body.is_empty() {
        let (r, _) = up.write_all(body).await;
        r?;
    }
    let mut resp = Vec::new();
    loop {
        let buf = Vec::with_capacity(64 * 1024);
        let (r, buf) = up.read(buf).await;
        match r? {
            0 => break,
            _ => {
                resp.extend_from_slice(&buf);
                if resp.len() > MAX_RESPONSE {
                    return Err(io::Error::other("the upstream response is too large"));
                }
            }
        }
    }
    if resp.is_empty() {
        return Err(io::Error::other("the upstream closed without a response"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_rewritten_for_the_upstream() {
        let head = b"POST /api/rooms HTTP/1.1\r\nHost: quiz.example:8080\r\nContent-Length: 12\r\n\
                     X-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive\r\nAuthorization: Bearer k\r\n\r\n";
        let (out, len) = rewrite(head, Some("10.0.0.7".parse().unwrap()), true).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(len, 12);
        assert!(out.starts_with("POST /api/rooms HTTP/1.1\r\n"));
        assert!(out.contains("Authorization: Bearer k\r\n"));
        assert!(out.contains("X-Forwarded-For: 10.0.0.7\r\n"), "{out}");
        assert!(
            !out.contains("6.6.6.6"),
            "a client's own X-Forwarded-For is dropped"
        );
        assert!(out.contains("X-Forwarded-Proto: https\r\n"));
        assert!(out.contains("X-Forwarded-Host: quiz.example:8080\r\n"));
        assert!(out.ends_with("Connection: close\r\n\r\n"));
        assert!(!out.contains("keep-alive"));
        let chunked = b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(rewrite(chunked, None, false).is_err());
    }
}
