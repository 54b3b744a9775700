//! The load generator's own minimal RFC 6455 *client* codec: the upgrade request and the check of its
//! response, the frame header parser for server frames, and the masked encoder for client frames.
//!
//! Why our own and not tungstenite: a load generator shares the machine with the server it measures, so
//! every cycle it spends per received frame is a cycle the edge does not get. This codec parses a
//! header in place, never copies a payload, and never allocates per frame; the caller owns every buffer.
//! It is also independent of the edge's codec (`edge/src/ws/frame.rs`), so a bug common to both is
//! unlikely: the two were written separately from the RFC.
//!
//! Rules enforced on server frames (RFC 6455 §5): a server frame must not be masked, reserved bits must be
//! 0 (we negotiate no extension), control frames are at most 125 bytes and never fragmented, opcodes
//! 3–7 and 11–15 are reserved. A violation is a [`FrameError`]; the caller closes with 1002.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Frame opcodes.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The GUID of RFC 6455 §1.3, appended to the key to compute `Sec-WebSocket-Accept`.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest server frame payload we accept (a guard against a corrupt length, not a protocol limit).
pub const MAX_SERVER_FRAME: usize = 16 << 20;

/// The value of `Sec-WebSocket-Accept` the server must answer to `key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A `Sec-WebSocket-Key`: base64 of 16 bytes (from the caller's generator).
pub fn make_key(random: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(random)
}

/// Writes the HTTP/1.1 upgrade request into `out`.
pub fn write_upgrade_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key: &str,
    protocol: Option<&str>,
) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        let _ = write!(out, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    out.extend_from_slice(b"User-Agent: ringside-loadgen\r\n\r\n");
}

/// Why an upgrade failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// The server answered with another status than 101.
    Status(u16),
    /// `Sec-WebSocket-Accept` missing or wrong.
    BadAccept,
    /// The server chose no subprotocol or one we did not offer.
    BadProtocol(Option<String>),
    /// Not HTTP, or headers over the size limit.
    Malformed(String),
}

impl std::fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpgradeError::Status(s) => write!(f, "HTTP status {s} instead of 101"),
            UpgradeError::BadAccept => f.write_str("wrong or missing Sec-WebSocket-Accept"),
            UpgradeError::BadProtocol(p) => write!(f, "unexpected subprotocol {p:?}"),
            UpgradeError::Malformed(m) => write!(f, "malformed upgrade response: {m}"),
        }
    }
}

/// Checks the upgrade response at the start of `buf`. `Ok(None)`: incomplete, read more.
/// `Ok(Some(n))`: the response is `buf[..n]`; frames may follow it in the same buffer.
/// `expect_protocol`: when `Some`, the server must have chosen exactly that subprotocol.
pub fn parse_upgrade_response(
    buf: &[u8],
    key: &str,
    expect_protocol: Option<&str>,
) -> Result<Option<usize>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 16 * 1024 => {
            return Err(UpgradeError::Malformed("headers over 16 KiB".into()))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(UpgradeError::Malformed(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(UpgradeError::Status(code));
    }
    let want = accept_key(key);
    let mut accept_ok = false;
    let mut proto: Option<String> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept_ok = h.value == want.as_bytes();
        } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
            proto = Some(String::from_utf8_lossy(h.value).trim().to_string());
        }
    }
    if !accept_ok {
        return Err(UpgradeError::BadAccept);
    }
    if let Some(p) = expect_protocol {
        if proto.as_deref() != Some(p) {
            return Err(UpgradeError::BadProtocol(proto));
        }
    }
    Ok(Some(n))
}

/// The `Retry-After` of a (complete) HTTP response at the start of `buf`, in seconds (the delta-seconds
/// form, the one the edge sends with a 503); `None` without one or with an HTTP date.
pub fn retry_after_secs(buf: &[u8]) -> Option<u64> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    if !resp.parse(buf).ok()?.is_complete() {
        return None;
    }
    let h = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))?;
    std::str::from_utf8(h.value).ok()?.trim().parse().ok()
}

/// A server frame that broke the rules; the client closes with 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A server frame had the mask bit set.
    Masked,
    /// RSV1–3 set without a negotiated extension.
    ReservedBits,
    /// Opcode 3–7 or 11–15.
    ReservedOpcode(u8),
    /// A control frame longer than 125 bytes or not final.
    BadControl,
    /// Payload length over [`MAX_SERVER_FRAME`] or not minimally encoded in 64 bits.
    TooLarge,
}

/// The parsed header of one frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    /// Bytes of header (2..=14).
    pub header_len: usize,
    pub payload_len: usize,
}

impl FrameHeader {
    /// Header plus payload.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses the header of a server frame at the start of `buf`. `Ok(None)`: need more bytes for the header
/// (the payload may be incomplete even when `Some` is returned: check `frame_len()` against `buf.len()`).
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = b0 & 0x0F;
    match opcode {
        0x0..=0x2 => {}
        0x8..=0xA => {
            if !fin || (b1 & 0x7F) > 125 {
                return Err(FrameError::BadControl);
            }
        }
        other => return Err(FrameError::ReservedOpcode(other)),
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (header_len, payload_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([buf[2], buf[3]]) as usize)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(b);
            if n > MAX_SERVER_FRAME as u64 {
                return Err(FrameError::TooLarge);
            }
            (10, n as usize)
        }
        n => (2, n as usize),
    };
    if payload_len > MAX_SERVER_FRAME {
        return Err(FrameError::TooLarge);
    }
    Ok(Some(FrameHeader {
        fin,
        opcode,
        header_len,
        payload_len,
    }))
}

/// XORs `data` with the 4-byte mask, the mask's phase starting at 0.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask) as u64;
    let word = word | (word << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let v = u64::from_ne_bytes(b) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Room reserved in front of a payload so its header can be written afterwards without moving it.
pub const HEADER_RESERVE: usize = 14;

/// Appends one masked client frame to `out`: reserves the header room, lets `write_payload` append the
/// payload, then writes the header right before the payload and masks it in place. When the header is
/// shorter than the reserve, the payload is moved down once (a memmove of a small client frame).
pub fn append_masked_frame(
    out: &mut Vec<u8>,
    opcode: u8,
    mask: [u8; 4],
    write_payload: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.resize(start + HEADER_RESERVE, 0);
    write_payload(out);
    let payload_len = out.len() - start - HEADER_RESERVE;
    let mut header = [0u8; HEADER_RESERVE];
    header[0] = 0x80 | (opcode & 0x0F);
    let hlen = if payload_len < 126 {
        header[1] = 0x80 | payload_len as u8;
        2
    } else if payload_len <= u16::MAX as usize {
        header[1] = 0x80 | 126;
        header[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        header[1] = 0x80 | 127;
        header[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    };
    header[hlen..hlen + 4].copy_from_slice(&mask);
    let hlen = hlen + 4;
    let payload_at = start + HEADER_RESERVE;
    apply_mask(&mut out[payload_at..], mask);
    let header_at = payload_at - hlen;
    out[header_at..payload_at].copy_from_slice(&header[..hlen]);
    if header_at > start {
        out.drain(start..header_at);
    }
}

/// Appends a masked frame with a ready payload.
pub fn append_masked(out: &mut Vec<u8>, opcode: u8, mask: [u8; 4], payload: &[u8]) {
    append_masked_frame(out, opcode, mask, |o| o.extend_from_slice(payload));
}

/// The close code in a close frame's payload; `None` when the payload is empty (no status, 1005).
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmasked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else if payload.len() <= 65535 {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_short_medium_and_long_lengths_and_waits_for_more() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 200_000] {
            let payload = vec![7u8; len];
            let f = unmasked(opcode::BINARY, true, &payload);
            let h = parse_header(&f).unwrap().unwrap();
            assert_eq!(h.payload_len, len);
            assert_eq!(h.frame_len(), f.len());
            assert_eq!(h.opcode, opcode::BINARY);
            // Any strict prefix of the header is "need more".
            for cut in 0..h.header_len {
                assert_eq!(
                    parse_header(&f[..cut]).unwrap(),
                    None,
                    "len {len} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn refuses_masked_reserved_and_bad_control_frames() {
        let mut f = unmasked(opcode::TEXT, true, b"hi");
        f[1] |= 0x80;
        assert_eq!(parse_header(&f), Err(FrameError::Masked));
        let mut f = unmasked(opcode::TEXT, true, b"hi");
        f[0] |= 0x40;
        assert_eq!(parse_header(&f), Err(FrameError::ReservedBits));
        assert_eq!(
            parse_header(&unmasked(0x3, true, b"")),
            Err(FrameError::ReservedOpcode(3))
        );
        assert_eq!(
            parse_header(&unmasked(0xB, true, b"")),
            Err(FrameError::ReservedOpcode(0xB))
        );
        assert_eq!(
            parse_header(&unmasked(opcode::PING, false, b"")),
            Err(FrameError::BadControl)
        );
        assert_eq!(
            parse_header(&unmasked(opcode::PING, true, &[0; 126])),
            Err(FrameError::BadControl)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert_eq!(parse_header(&huge), Err(FrameError::TooLarge));
    }

    #[test]
    fn masked_frames_round_trip_for_every_length_class() {
        for len in [0usize, 5, 125, 126, 1000, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut out = b"prefix".to_vec();
            append_masked(&mut out, opcode::TEXT, mask, &payload);
            let frame = &out[6..];
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(frame[0], 0x81);
            assert!(frame[1] & 0x80 != 0, "client frames are masked");
            let (hlen, plen) = match frame[1] & 0x7F {
                126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
                127 => (
                    10,
                    u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, n as usize),
            };
            assert_eq!(plen, len);
            let key: [u8; 4] = frame[hlen..hlen + 4].try_into().unwrap();
            assert_eq!(key, mask);
            let mut body = frame[hlen + 4..].to_vec();
            assert_eq!(body.len(), len);
            apply_mask(&mut body, key);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn mask_is_its_own_inverse_at_any_alignment() {
        let data: Vec<u8> = (0..37u8).collect();
        let mut d = data.clone();
        apply_mask(&mut d[3..], [1, 2, 3, 4]);
        assert_ne!(d, data);
        apply_mask(&mut d[3..], [1, 2, 3, 4]);
        assert_eq!(d, data);
    }

    #[test]
    fn upgrade_response_is_checked() {
        let key = make_key([9; 16]);
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: ringside.v1.json\r\n\r\n\x01\x00",
            accept_key(&key)
        );
        let n = parse_upgrade_response(ok.as_bytes(), &key, Some("ringside.v1.json"))
            .unwrap()
            .unwrap();
        assert_eq!(
            &ok.as_bytes()[n..],
            b"\x01\x00",
            "frames after the response stay in the buffer"
        );
        assert_eq!(
            parse_upgrade_response(&ok.as_bytes()[..40], &key, None),
            Ok(None)
        );
        assert!(matches!(
            parse_upgrade_response(ok.as_bytes(), &key, Some("ringside.v1.msgpack")),
            Err(UpgradeError::BadProtocol(_))
        ));
        assert_eq!(
            parse_upgrade_response(ok.as_bytes(), "other", None),
            Err(UpgradeError::BadAccept)
        );
        let bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(bad, &key, None),
            Err(UpgradeError::Status(400))
        );
    }

    #[test]
    fn retry_after_is_read_from_a_refusal() {
        let busy =
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(busy, "k", None),
            Err(UpgradeError::Status(503))
        );
        assert_eq!(retry_after_secs(busy), Some(3));
        assert_eq!(
            retry_after_secs(b"HTTP/1.1 503 Service Unavailable\r\nretry-after:  12 \r\n\r\n"),
            Some(12)
        );
        let date = b"HTTP/1.1 503 x\r\nRetry-After: Wed, 21 Oct 2026 07:28:00 GMT\r\n\r\n";
        assert_eq!(retry_after_secs(date), None);
        assert_eq!(retry_after_secs(b"HTTP/1.1 503 x\r\n\r\n"), None);
        assert_eq!(
            retry_after_secs(b"HTTP/1.1 503 x\r\nRetry-After: 3\r\n"),
            None
        );
    }

    #[test]
    fn close_code_reads_the_first_two_bytes() {
        assert_eq!(close_code(&[0x0F, 0xA8, b'x']), Some(4008));
        assert_eq!(close_code(&[]), None);
    }
}
