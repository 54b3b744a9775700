//! A minimal RESP2 reader and command writer for the sharded pub/sub connections.
//!
//! redis-rs 1.8 offers `SSUBSCRIBE` only on cluster connections, so the edge keeps its own small
//! subscriber (see [`super::pubsub`]): one plain TCP connection per Redis node, RESP2, where every message
//! arrives as `*3 $8 smessage $<channel> $<payload>` and the payload becomes a `Bytes` without a copy.

use bytes::{Buf, Bytes, BytesMut};

/// A decoded RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(Bytes),
    Error(Bytes),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bulk(Some(b)) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// Why a buffer does not hold a valid RESP value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed RESP from redis: {0}")]
pub struct RespError(pub &'static str);

/// Parses one value from the front of `buf`, consuming it. `Ok(None)`: need more bytes.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Value>, RespError> {
    match scan(buf, 0, 0)? {
        None => Ok(None),
        Some(end) => {
            let mut frame = buf.split_to(end).freeze();
            Ok(Some(build(&mut frame)))
        }
    }
}

const MAX_DEPTH: usize = 8;

/// Returns the end offset of the value starting at `at`, or None when incomplete.
fn scan(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError("nested too deeply"));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(line_end) = find_crlf(buf, at + 1) else {
        return Ok(None);
    };
    let line = &buf[at + 1..line_end];
    let after = line_end + 2;
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Ok(Some(after));
            }
            let end = after + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' => {
            let n = parse_int(line)?;
            let mut pos = after;
            for _ in 0..n.max(0) {
                match scan(buf, pos, depth + 1)? {
                    Some(p) => pos = p,
                    None => return Ok(None),
                }
            }
            Ok(Some(pos))
        }
        _ => Err(RespError("unknown type byte")),
    }
}

/// Builds the value from a buffer known to hold exactly one complete value.
fn build(b: &mut Bytes) -> Value {
    let kind = b[0];
    let line_end = find_crlf(b, 1).expect("scanned");
    let line = b.slice(1..line_end);
    b.advance(line_end + 2);
    match kind {
        b'+' => Value::Simple(line),
        b'-' => Value::Error(line),
        b':' => Value::Int(parse_int(&line).unwrap_or(0)),
        b'$' => {
            let n = parse_int(&line).unwrap_or(-1);
            if n < 0 {
                return Value::Bulk(None);
            }
            let data = b.split_to(n as usize);
            b.advance(2);
            Value::Bulk(Some(data))
        }
        _ => {
            let n = parse_int(&line).unwrap_or(-1);
            if n < 0 {
                return Value::Array(None);
            }
            Value::Array(Some((0..n).map(|_| build(b)).collect()))
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

fn parse_int(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError("bad integer"))
}

/// Appends a command in RESP array form.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The Redis Cluster slot of a key: CRC16/XMODEM of the hash tag (or the whole key) mod 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(tagged) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_smessage_push_split_across_reads() {
        let full = b"*3\r\n$8\r\nsmessage\r\n$5\r\nroom1\r\n$11\r\nhello world\r\n+OK\r\n";
        let mut buf = BytesMut::new();
        for chunk in full.chunks(7) {
            buf.extend_from_slice(chunk);
        }
        let mut partial = BytesMut::from(&full[..20]);
        assert_eq!(parse(&mut partial).unwrap(), None);
        let v = parse(&mut buf).unwrap().unwrap();
        let Value::Array(Some(items)) = v else {
            panic!()
        };
        assert_eq!(items[2].as_bytes().unwrap().as_ref(), b"hello world");
        assert_eq!(
            parse(&mut buf).unwrap(),
            Some(Value::Simple(Bytes::from_static(b"OK")))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"123456789"), 12739);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut b = BytesMut::from(&b"?what\r\n"[..]);
        assert!(parse(&mut b).is_err());
        let mut b = BytesMut::from(&b"$abc\r\n"[..]);
        assert!(parse(&mut b).is_err());
    }
}
