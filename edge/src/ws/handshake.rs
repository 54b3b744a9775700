//! HTTP/1.1 request parsing and the WebSocket opening handshake (RFC 6455 §4.2), pure and sync.
//!
//! [`parse_request`] reads one request head from a buffer with `httparse` and classifies it: a
//! WebSocket upgrade (validated here: method, `Upgrade`, `Connection`, version 13, key, Origin
//! allow-list, subprotocol negotiation) or a plain HTTP request for [`crate::http`]. Every
//! refusal is a [`HandshakeError`] carrying the HTTP status, body and a metrics label.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// JSON events in text frames.
pub const SUBPROTOCOL_JSON: &str = "ringside.v1.json";
/// MessagePack events in binary frames.
pub const SUBPROTOCOL_MSGPACK: &str = "ringside.v1.msgpack";

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEADERS: usize = 64;

/// The negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// `ringside.v1.json`: text frames.
    Json,
    /// `ringside.v1.msgpack`: binary frames.
    Msgpack,
    /// None negotiated (echo mode only).
    None,
}

impl Subprotocol {
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Subprotocol::Json => Some(SUBPROTOCOL_JSON),
            Subprotocol::Msgpack => Some(SUBPROTOCOL_MSGPACK),
            Subprotocol::None => None,
        }
    }
}

/// A validated upgrade request, handed to the [`crate::session::SessionFactory`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Request path without the query, e.g. `/ws`.
    pub path: String,
    /// Raw query string without `?` (e.g. `token=...&room=...`), if any.
    pub query: Option<String>,
    pub origin: Option<String>,
    pub subprotocol: Subprotocol,
    /// `Sec-WebSocket-Accept` value for the 101 response.
    pub accept: String,
    /// The client's address (the TCP peer), set by the connection after parsing.
    pub peer: Option<std::net::IpAddr>,
}

impl UpgradeRequest {
    /// The value of query parameter `name` (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// A plain HTTP request (no upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Upgrade(UpgradeRequest),
    Http(HttpRequest),
}

/// Why a handshake failed; the label of `handshakes_failed_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    BadRequest,
    Method,
    Version,
    Origin,
    Subprotocol,
    HeaderTooLarge,
    Rejected,
    Tls,
    Timeout,
    Io,
}

impl FailReason {
    pub const ALL: [FailReason; 10] = [
        FailReason::BadRequest,
        FailReason::Method,
        FailReason::Version,
        FailReason::Origin,
        FailReason::Subprotocol,
        FailReason::HeaderTooLarge,
        FailReason::Rejected,
        FailReason::Tls,
        FailReason::Timeout,
        FailReason::Io,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FailReason::BadRequest => "bad_request",
            FailReason::Method => "method",
            FailReason::Version => "version",
            FailReason::Origin => "origin",
            FailReason::Subprotocol => "subprotocol",
            FailReason::HeaderTooLarge => "header_too_large",
            FailReason::Rejected => "rejected",
            FailReason::Tls => "tls",
            FailReason::Timeout => "timeout",
            FailReason::Io => "io",
        }
    }
}

/// A refused request: the HTTP response to send, then close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeError {
    pub status: u16,
    pub body: String,
    /// Extra response headers, e.g. `Sec-WebSocket-Version: 13` on a 426.
    pub headers: Vec<(&'static str, &'static str)>,
    pub reason: FailReason,
}

impl HandshakeError {
    fn new(status: u16, reason: FailReason, body: impl Into<String>) -> Self {
        HandshakeError {
            status,
            body: body.into(),
            headers: Vec::new(),
            reason,
        }
    }

    /// The full HTTP response.
    pub fn response(&self) -> Vec<u8> {
        http_response(
            self.status,
            "text/plain; charset=utf-8",
            self.body.as_bytes(),
            &self.headers,
        )
    }
}

/// What the handshake checks, from the config.
#[derive(Debug, Clone, Default)]
pub struct HandshakePolicy {
    /// Allowed `Origin` values; empty means any. Requests without `Origin` (non-browser clients)
    /// are allowed: browsers always send it, and a client that does not could forge it.
    pub allowed_origins: Vec<String>,
    /// Refuse upgrades that offer neither ringside subprotocol (off in echo mode).
    pub require_subprotocol: bool,
    /// Largest request head; past it the answer is 431.
    pub max_header_bytes: usize,
}

/// The body of the 400 sent to a client that offers no supported subprotocol.
pub fn unsupported_subprotocol_body() -> String {
    format!(
        "unsupported WebSocket subprotocol: this server speaks {SUBPROTOCOL_JSON} (text frames) and \
         {SUBPROTOCOL_MSGPACK} (binary frames); offer one of them in Sec-WebSocket-Protocol\n"
    )
}

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

fn header_has_token(value: &[u8], token: &str) -> bool {
    std::str::from_utf8(value)
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

fn split_target(target: &str) -> (String, Option<String>) {
    match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    }
}

/// Parses one request head at the start of `buf`. `Ok(None)`: incomplete, read more.
/// On success returns the request and the length of the head (bytes after it belong to the
/// WebSocket stream).
pub fn parse_request(
    buf: &[u8],
    policy: &HandshakePolicy,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= policy.max_header_bytes {
                return Err(HandshakeError::new(
                    431,
                    FailReason::HeaderTooLarge,
                    "request header too large\n",
                ));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::new(
                431,
                FailReason::HeaderTooLarge,
                "too many request headers\n",
            ))
        }
        Err(e) => {
            return Err(HandshakeError::new(
                400,
                FailReason::BadRequest,
                format!("bad request: {e}\n"),
            ))
        }
    };
    if head_len > policy.max_header_bytes {
        return Err(HandshakeError::new(
            431,
            FailReason::HeaderTooLarge,
            "request header too large\n",
        ));
    }
    // RFC 9112 §3.2: an HTTP/1.1 request with no Host header, or more than one, is answered 400.
    // HTTP/1.0 predates Host and may omit it. Checked before the request is classified, so plain
    // requests, /api/ forwarding, the metrics port and upgrades all refuse it.
    if req.version == Some(1) {
        match req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"))
            .count()
        {
            1 => {}
            0 => {
                return Err(HandshakeError::new(
                    400,
                    FailReason::BadRequest,
                    "missing Host header\n",
                ))
            }
            _ => {
                return Err(HandshakeError::new(
                    400,
                    FailReason::BadRequest,
                    "more than one Host header\n",
                ))
            }
        }
    }
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("/");
    let (path, query) = split_target(target);

    let find = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let is_upgrade = find("upgrade").is_some() || find("sec-websocket-key").is_some();
    if !is_upgrade {
        return Ok(Some((
            Request::Http(HttpRequest {
                method: method.to_string(),
                path,
                query,
            }),
            head_len,
        )));
    }

    if method != "GET" {
        let mut e =
            HandshakeError::new(405, FailReason::Method, "WebSocket upgrade requires GET\n");
        e.headers.push(("Allow", "GET"));
        return Err(e);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::new(
            400,
            FailReason::BadRequest,
            "WebSocket upgrade requires HTTP/1.1\n",
        ));
    }
    if !find("upgrade").is_some_and(|v| header_has_token(v, "websocket")) {
        return Err(HandshakeError::new(
            400,
            FailReason::BadRequest,
            "missing Upgrade: websocket\n",
        ));
    }
    let has_conn_upgrade = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| header_has_token(h.value, "upgrade"));
    if !has_conn_upgrade {
        return Err(HandshakeError::new(
            400,
            FailReason::BadRequest,
            "missing Connection: upgrade\n",
        ));
    }
    if find("sec-websocket-version").map(|v| v.trim_ascii()) != Some(b"13") {
        let mut e = HandshakeError::new(
            426,
            FailReason::Version,
            "unsupported WebSocket version; use 13\n",
        );
        e.headers.push(("Sec-WebSocket-Version", "13"));
        return Err(e);
    }
    let key = find("sec-websocket-key")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|d| d.len() == 16)
        })
        .ok_or_else(|| {
            HandshakeError::new(
                400,
                FailReason::BadRequest,
                "missing or invalid Sec-WebSocket-Key\n",
            )
        })?;

    // The allow-list keeps other sites' pages from opening sockets in a visitor's browser, and every
    // browser sends `Origin` on a WebSocket upgrade. A request without one is not from a browser
    // page: a native client or the load generator, which could send any Origin it liked, so refusing
    // it would protect nothing (docs/protocol.md §1). Origins compare case-insensitively (scheme
    // and host are), so `https://Quiz.Example` in the config matches what browsers send.
    let origin = find("origin")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|s| s.trim().to_string());
    if let Some(o) = &origin {
        if !policy.allowed_origins.is_empty()
            && !policy
                .allowed_origins
                .iter()
                .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
        {
            return Err(HandshakeError::new(
                403,
                FailReason::Origin,
                format!("origin not allowed: {o}\n"),
            ));
        }
    }

    // Subprotocol: the first one the client offers that we speak, in the client's order.
    let mut subprotocol = Subprotocol::None;
    'outer: for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
    {
        let Ok(v) = std::str::from_utf8(h.value) else {
            continue;
        };
        for p in v.split(',').map(str::trim) {
            if p == SUBPROTOCOL_JSON {
                subprotocol = Subprotocol::Json;
                break 'outer;
            }
            if p == SUBPROTOCOL_MSGPACK {
                subprotocol = Subprotocol::Msgpack;
                break 'outer;
            }
        }
    }
    if subprotocol == Subprotocol::None && policy.require_subprotocol {
        return Err(HandshakeError::new(
            400,
            FailReason::Subprotocol,
            unsupported_subprotocol_body(),
        ));
    }

    Ok(Some((
        Request::Upgrade(UpgradeRequest {
            path,
            query,
            origin,
            subprotocol,
            accept: accept_key(key),
            peer: None,
        }),
        head_len,
    )))
}

/// The `101 Switching Protocols` response.
pub fn switching_protocols(req: &UpgradeRequest) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        req.accept
    );
    if let Some(p) = req.subprotocol.as_str() {
        r.push_str("Sec-WebSocket-Protocol: ");
        r.push_str(p);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Reason phrase of the statuses we send.
pub fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        101 => "Switching Protocols",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn http_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        status_text(status),
        body.len()
    );
    for (k, v) in headers {
        r.push_str(k);
        r.push_str(": ");
        r.push_str(v);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut out = r.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(require: bool) -> HandshakePolicy {
        HandshakePolicy {
            allowed_origins: vec![],
            require_subprotocol: require,
            max_header_bytes: 8192,
        }
    }

    fn upgrade(extra: &str) -> String {
        format!(
            "GET /ws?token=abc&room=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn rfc_sample_key_gives_rfc_accept() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_upgrade_negotiates_first_supported_subprotocol() {
        let r = upgrade("Sec-WebSocket-Protocol: chat, ringside.v1.msgpack, ringside.v1.json\r\n");
        let (req, n) = parse_request(r.as_bytes(), &policy(true)).unwrap().unwrap();
        assert_eq!(n, r.len());
        let Request::Upgrade(u) = req else { panic!() };
        assert_eq!(u.subprotocol, Subprotocol::Msgpack);
        assert_eq!(u.path, "/ws");
        assert_eq!(u.query_param("token"), Some("abc"));
        assert_eq!(u.query_param("room"), Some("7"));
        let resp = String::from_utf8(switching_protocols(&u)).unwrap();
        assert!(resp.contains("Sec-WebSocket-Protocol: ringside.v1.msgpack\r\n"));
    }

    #[test]
    fn no_supported_subprotocol_is_400_with_clear_body() {
        let e = parse_request(
            upgrade("Sec-WebSocket-Protocol: chat\r\n").as_bytes(),
            &policy(true),
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.body.contains("ringside.v1.json") && e.body.contains("ringside.v1.msgpack"));
        // Echo mode accepts none.
        assert!(parse_request(upgrade("").as_bytes(), &policy(false))
            .unwrap()
            .is_some());
    }

    #[test]
    fn wrong_version_is_426_with_version_header() {
        let r = upgrade("").replace("Version: 13", "Version: 8");
        let e = parse_request(r.as_bytes(), &policy(false)).unwrap_err();
        assert_eq!(e.status, 426);
        assert!(String::from_utf8(e.response())
            .unwrap()
            .contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn origin_allow_list() {
        let mut p = policy(false);
        p.allowed_origins = vec!["https://quiz.example".into()];
        let e =
            parse_request(upgrade("Origin: https://evil.example\r\n").as_bytes(), &p).unwrap_err();
        assert_eq!(e.status, 403);
        assert!(
            parse_request(upgrade("Origin: https://quiz.example\r\n").as_bytes(), &p)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn origin_allow_list_admits_clients_without_origin_and_refuses_null() {
        let mut p = policy(false);
        p.allowed_origins = vec!["https://Quiz.Example/".into()];
        // No Origin: not a browser page (the load generator, native apps); documented in §1.
        assert!(matches!(
            parse_request(upgrade("").as_bytes(), &p),
            Ok(Some((Request::Upgrade(_), _)))
        ));
        // Origins compare case-insensitively, without the trailing slash people paste.
        assert!(
            parse_request(upgrade("Origin: https://quiz.example\r\n").as_bytes(), &p)
                .unwrap()
                .is_some()
        );
        // A sandboxed iframe or file:// page sends `null`: a browser, and not on the list.
        let e = parse_request(upgrade("Origin: null\r\n").as_bytes(), &p).unwrap_err();
        assert_eq!((e.status, e.reason), (403, FailReason::Origin));
    }

    #[test]
    fn http11_request_without_exactly_one_host_is_400() {
        let no_host = "GET /healthz HTTP/1.1\r\n\r\n";
        let e = parse_request(no_host.as_bytes(), &policy(false)).unwrap_err();
        assert_eq!((e.status, e.reason), (400, FailReason::BadRequest));
        assert!(e.body.contains("Host"), "{}", e.body);
        let two = "GET /healthz HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n";
        assert_eq!(
            parse_request(two.as_bytes(), &policy(false))
                .unwrap_err()
                .status,
            400
        );
        let upgrade_no_host = upgrade("").replace("Host: x\r\n", "");
        assert_eq!(
            parse_request(upgrade_no_host.as_bytes(), &policy(false))
                .unwrap_err()
                .status,
            400
        );
        // HTTP/1.0 has no Host requirement.
        assert!(
            parse_request(b"GET /healthz HTTP/1.0\r\n\r\n", &policy(false))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn partial_and_oversized_heads() {
        let r = upgrade("");
        assert!(parse_request(&r.as_bytes()[..20], &policy(false))
            .unwrap()
            .is_none());
        let mut p = policy(false);
        p.max_header_bytes = 64;
        assert_eq!(parse_request(r.as_bytes(), &p).unwrap_err().status, 431);
    }

    #[test]
    fn plain_http_is_classified() {
        let (req, _) = parse_request(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &policy(true))
            .unwrap()
            .unwrap();
        assert_eq!(
            req,
            Request::Http(HttpRequest {
                method: "GET".into(),
                path: "/healthz".into(),
                query: None
            })
        );
    }

    #[test]
    fn missing_key_or_connection_is_400() {
        let r = upgrade("").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
        assert_eq!(
            parse_request(r.as_bytes(), &policy(false))
                .unwrap_err()
                .status,
            400
        );
        let r = upgrade("").replace("keep-alive, Upgrade", "keep-alive");
        assert_eq!(
            parse_request(r.as_bytes(), &policy(false))
                .unwrap_err()
                .status,
            400
        );
    }
}
