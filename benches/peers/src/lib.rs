//! The little WebSocket (RFC 6455) both binaries need: the handshake key, server frames (unmasked) and
//! client frames (masked), and a frame parser over a byte buffer. Plus the peers' frame body, the same for
//! the floor and the node peers: `{"event":…,"t":<scheduled send, epoch µs>,"q":…,"pad":"xxx…"}` padded to
//! the byte size Ringside's frame of that kind has.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::time::{SystemTime, UNIX_EPOCH};

pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Epoch microseconds now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Appends a server (unmasked) frame with opcode `op` to `out`.
pub fn server_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    out.push(0x80 | op);
    push_len(out, payload.len(), 0);
    out.extend_from_slice(payload);
}

/// Appends a client (masked) frame with opcode `op` to `out`.
pub fn client_frame(out: &mut Vec<u8>, op: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | op);
    push_len(out, payload.len(), 0x80);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

fn push_len(out: &mut Vec<u8>, n: usize, maskbit: u8) {
    if n < 126 {
        out.push(maskbit | n as u8);
    } else if n <= 0xffff {
        out.push(maskbit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(maskbit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
}

/// One parsed frame: opcode, payload range in the buffer, total bytes it took.
pub struct Frame {
    pub op: u8,
    pub start: usize,
    pub end: usize,
}

/// Parses one frame (unmasking a masked one in place) at the head of `buf`; `None` when incomplete.
/// Fragmented messages are not used by any server here (each sends whole messages).
pub fn parse_frame(buf: &mut [u8]) -> Option<Frame> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let mut len = (buf[1] & 0x7f) as usize;
    let mut pos = 2;
    if len == 126 {
        if buf.len() < 4 {
            return None;
        }
        len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        pos = 4;
    } else if len == 127 {
        if buf.len() < 10 {
            return None;
        }
        len = u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize;
        pos = 10;
    }
    let mask = if masked {
        if buf.len() < pos + 4 {
            return None;
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < pos + len {
        return None;
    }
    if let Some(m) = mask {
        for (i, b) in buf[pos..pos + len].iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Some(Frame {
        op,
        start: pos,
        end: pos + len,
    })
}

/// The peers' frame body of `size` bytes (at least the unpadded length): event name, scheduled send time
/// (epoch µs), question index, padding. `overhead` is what the transport wraps around it inside the same
/// WebSocket payload (Socket.IO's `42["m",` … `]`: 8), so the payload on the wire is exactly `size`.
pub fn peer_body(event: &str, t_us: u64, q: u32, size: usize, overhead: usize) -> String {
    let head = format!("{{\"event\":\"{event}\",\"t\":{t_us},\"q\":{q},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2 + overhead);
    let mut s = head;
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// The `"t":` and `"q":` numbers of a peers' frame (any wrapping around it).
pub fn peer_fields(payload: &[u8]) -> Option<(u64, u32)> {
    let t = num_after(payload, b"\"t\":")?;
    let q = num_after(payload, b"\"q\":")?;
    Some((t, q as u32))
}

/// The whole number right after the first `key` in `hay` (e.g. `"qIndex":`).
pub fn num_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let i = hay.windows(key.len()).position(|w| w == key)? + key.len();
    let mut v = 0u64;
    let mut any = false;
    for &b in &hay[i..] {
        if b.is_ascii_digit() {
            v = v * 10 + (b - b'0') as u64;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

/// Which frame of a question a peers' event name is: 0 question, 1 reveal, 2 leaderboard, 3 result.
pub fn kind_of(event: &str) -> Option<u8> {
    match event {
        "game:question:show" => Some(0),
        "game:question:reveal" => Some(1),
        "game:leaderboard" => Some(2),
        "game:answer:result" => Some(3),
        _ => None,
    }
}

pub const KINDS: [&str; 4] = [
    "game:question:show",
    "game:question:reveal",
    "game:leaderboard",
    "game:answer:result",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn body_has_the_size_and_fields() {
        let b = peer_body("game:leaderboard", 1_700_000_000_123_456, 7, 900, 0);
        assert_eq!(b.len(), 900);
        assert_eq!(peer_fields(b.as_bytes()), Some((1_700_000_000_123_456, 7)));
        let w = format!("42[\"m\",{}]", peer_body("game:leaderboard", 5, 1, 300, 8));
        assert_eq!(w.len(), 300);
    }

    #[test]
    fn ringside_frames_scan_to_the_fields_a_json_tree_gives() {
        let show = br#"{"event":"game:question:show","data":{"qIndex":3,"text":"Q","options":["a","b"],"showAt":1700000001000,"endsAt":1700000003000,"timeLimitMs":2000},"ts":1700000000500}"#;
        assert_eq!(num_after(show, br#""qIndex":"#), Some(3));
        assert_eq!(num_after(show, br#""showAt":"#), Some(1_700_000_001_000));
        assert_eq!(num_after(show, br#""endsAt":"#), Some(1_700_000_003_000));
        // a player named `"qIndex":9` appears escaped and is not read as the field
        let board = br#"{"event":"game:leaderboard","data":{"rankings":[{"name":"\"qIndex\":9","score":1}],"qIndex":4}}"#;
        assert_eq!(num_after(board, br#""qIndex":"#), Some(4));
    }

    #[test]
    fn frames_round_trip() {
        let mut v = Vec::new();
        client_frame(&mut v, 1, &[b'a'; 300], [1, 2, 3, 4]);
        let f = parse_frame(&mut v).unwrap();
        assert_eq!((f.op, f.end - f.start), (1, 300));
        assert!(v[f.start..f.end].iter().all(|&b| b == b'a'));
        let mut s = Vec::new();
        server_frame(&mut s, 1, b"hi");
        let f = parse_frame(&mut s[..3]);
        assert!(f.is_none());
        let f = parse_frame(&mut s).unwrap();
        assert_eq!(&s[f.start..f.end], b"hi");
    }
}
