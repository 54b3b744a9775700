//! Reading the few fields the load generator needs from a frame body without decoding it: the
//! envelope's `event`, `seq` and `rid`, and single fields of `data` (`qIndex`, `endsAt`, ...).
//!
//! Most frames are only counted (progress, leaderboards, joins): for those we need the event name and
//! the room `seq`, and a full decode (a value tree, owned strings) would cost more than the edge spent
//! sending the frame. The walkers here borrow the input, never allocate, and stop as soon as they have
//! what was asked. They are not validators: a frame they cannot walk is a [`ScanError`], counted as a
//! decode error by the caller; a frame whose payload matters in full (`room:join:ack`,
//! `reconnect:state`, `error`) is decoded by `ringside_protocol` instead.
//!
//! Both subprotocols have the same shape (a map with `event`, `rid?`, `seq?`, `data`), so one API covers
//! JSON text and MessagePack binary: [`Head`] for the envelope, [`Members`] to walk a map, and
//! [`as_u64`]/[`as_bool`]/[`as_str`]/[`array_len`] to read one value.

/// Which encoding a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Format {
    Json,
    Msgpack,
}

/// The body is not an envelope we can walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError;

/// One map member: (key, raw value).
type Member<'a> = (&'a [u8], &'a [u8]);

/// Nesting deeper than this is refused (the protocol allows 16).
const MAX_DEPTH: usize = 32;

/// The envelope fields every frame is routed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub event: &'a [u8],
    pub seq: Option<u64>,
    pub rid: Option<u32>,
}

/// Reads `event`, `seq` and `rid` of an envelope. Stops at `seq` when `event` is known (room events
/// carry no `rid`), so a room event is read only up to its `data` in the edge's key order.
pub fn head(fmt: Format, body: &[u8]) -> Result<Head<'_>, ScanError> {
    let mut event = None;
    let (mut seq, mut rid) = (None, None);
    for m in Members::new(fmt, body)? {
        let (k, v) = m?;
        match k {
            b"event" => event = Some(as_str(fmt, v).ok_or(ScanError)?),
            b"seq" => seq = as_u64(fmt, v),
            b"rid" => rid = as_u64(fmt, v).and_then(|r| u32::try_from(r).ok()),
            _ => {}
        }
        if event.is_some() && seq.is_some() {
            break;
        }
    }
    Ok(Head {
        event: event.ok_or(ScanError)?,
        seq,
        rid,
    })
}

/// The raw `data` value of an envelope (a map), or `None` when absent.
pub fn data(fmt: Format, body: &[u8]) -> Result<Option<&[u8]>, ScanError> {
    for m in Members::new(fmt, body)? {
        let (k, v) = m?;
        if k == b"data" {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The value of `key` in the map `map` (one level, no nesting), or `None`.
pub fn field<'a>(fmt: Format, map: &'a [u8], key: &str) -> Option<&'a [u8]> {
    Members::new(fmt, map).ok()?.find_map(|m| match m {
        Ok((k, v)) if k == key.as_bytes() => Some(v),
        _ => None,
    })
}

/// Walks the members of a JSON object or MessagePack map: each item is `(key, raw value)`. Keys are
/// compared raw (protocol keys never contain escapes).
pub struct Members<'a> {
    fmt: Format,
    b: &'a [u8],
    i: usize,
    /// MessagePack: entries left. JSON: 1 until the closing brace was seen.
    left: usize,
    first: bool,
}

impl<'a> Members<'a> {
    pub fn new(fmt: Format, b: &'a [u8]) -> Result<Self, ScanError> {
        match fmt {
            Format::Json => {
                let i = skip_ws(b, 0);
                if b.get(i) != Some(&b'{') {
                    return Err(ScanError);
                }
                Ok(Members {
                    fmt,
                    b,
                    i: i + 1,
                    left: 1,
                    first: true,
                })
            }
            Format::Msgpack => {
                let (n, i) = mp_map_len(b, 0).ok_or(ScanError)?;
                Ok(Members {
                    fmt,
                    b,
                    i,
                    left: n,
                    first: true,
                })
            }
        }
    }

    fn next_json(&mut self) -> Result<Option<Member<'a>>, ScanError> {
        let b = self.b;
        let mut i = skip_ws(b, self.i);
        if b.get(i) == Some(&b'}') {
            self.left = 0;
            return Ok(None);
        }
        if !self.first {
            if b.get(i) != Some(&b',') {
                return Err(ScanError);
            }
            i = skip_ws(b, i + 1);
        }
        self.first = false;
        let (ks, ke, after) = json_string(b, i).ok_or(ScanError)?;
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return Err(ScanError);
        }
        let vs = skip_ws(b, i + 1);
        let ve = json_skip(b, vs, 0).ok_or(ScanError)?;
        self.i = ve;
        Ok(Some((&b[ks..ke], &b[vs..ve])))
    }

    fn next_msgpack(&mut self) -> Result<Option<Member<'a>>, ScanError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let b = self.b;
        let (ks, ke) = mp_str(b, self.i).ok_or(ScanError)?;
        let vs = ke;
        let ve = mp_skip(b, vs, 0).ok_or(ScanError)?;
        self.i = ve;
        Ok(Some((&b[ks..ke], &b[vs..ve])))
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Result<Member<'a>, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let r = match self.fmt {
            Format::Json => self.next_json(),
            Format::Msgpack => self.next_msgpack(),
        };
        match r {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => None,
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

/// A non-negative integer value (a JSON number's integer part; MessagePack ints and floats).
pub fn as_u64(fmt: Format, v: &[u8]) -> Option<u64> {
    match fmt {
        Format::Json => {
            let mut n: u64 = 0;
            let mut any = false;
            for &c in v {
                match c {
                    b'0'..=b'9' => {
                        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                        any = true;
                    }
                    b'.' | b'e' | b'E' if any => break,
                    _ => return None,
                }
            }
            any.then_some(n)
        }
        Format::Msgpack => {
            let t = *v.first()?;
            match t {
                0x00..=0x7f => Some(u64::from(t)),
                0xcc => Some(u64::from(*v.get(1)?)),
                0xcd => Some(u64::from(u16::from_be_bytes(v.get(1..3)?.try_into().ok()?))),
                0xce => Some(u64::from(u32::from_be_bytes(v.get(1..5)?.try_into().ok()?))),
                0xcf => Some(u64::from_be_bytes(v.get(1..9)?.try_into().ok()?)),
                0xd0 => u64::try_from(i8::from_be_bytes([*v.get(1)?])).ok(),
                0xd1 => u64::try_from(i16::from_be_bytes(v.get(1..3)?.try_into().ok()?)).ok(),
                0xd2 => u64::try_from(i32::from_be_bytes(v.get(1..5)?.try_into().ok()?)).ok(),
                0xd3 => u64::try_from(i64::from_be_bytes(v.get(1..9)?.try_into().ok()?)).ok(),
                0xca => {
                    let f = f32::from_be_bytes(v.get(1..5)?.try_into().ok()?);
                    (f >= 0.0).then_some(f as u64)
                }
                0xcb => {
                    let f = f64::from_be_bytes(v.get(1..9)?.try_into().ok()?);
                    (f >= 0.0).then_some(f as u64)
                }
                _ => None,
            }
        }
    }
}

/// A boolean value.
pub fn as_bool(fmt: Format, v: &[u8]) -> Option<bool> {
    match (fmt, v) {
        (Format::Json, b"true") | (Format::Msgpack, [0xc3]) => Some(true),
        (Format::Json, b"false") | (Format::Msgpack, [0xc2]) => Some(false),
        _ => None,
    }
}

/// A string value's raw bytes (JSON: between the quotes, escapes not decoded).
pub fn as_str(fmt: Format, v: &[u8]) -> Option<&[u8]> {
    match fmt {
        Format::Json => {
            let (s, e, after) = json_string(v, 0)?;
            (after == v.len()).then(|| &v[s..e])
        }
        Format::Msgpack => {
            let (s, e) = mp_str(v, 0)?;
            Some(&v[s..e])
        }
    }
}

/// The number of elements of an array value.
pub fn array_len(fmt: Format, v: &[u8]) -> Option<usize> {
    match fmt {
        Format::Json => {
            if v.first() != Some(&b'[') {
                return None;
            }
            let mut i = skip_ws(v, 1);
            if v.get(i) == Some(&b']') {
                return Some(0);
            }
            let mut n = 0;
            loop {
                i = json_skip(v, i, 1)?;
                n += 1;
                i = skip_ws(v, i);
                match v.get(i)? {
                    b',' => i = skip_ws(v, i + 1),
                    b']' => return Some(n),
                    _ => return None,
                }
            }
        }
        Format::Msgpack => match *v.first()? {
            t @ 0x90..=0x9f => Some(usize::from(t & 0x0f)),
            0xdc => Some(usize::from(u16::from_be_bytes(
                v.get(1..3)?.try_into().ok()?,
            ))),
            0xdd => Some(u32::from_be_bytes(v.get(1..5)?.try_into().ok()?) as usize),
            _ => None,
        },
    }
}

// ───────────────────────────── JSON ─────────────────────────────

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// A string starting at `b[i] == '"'`: (content start, content end, index after the closing quote).
fn json_string(b: &[u8], i: usize) -> Option<(usize, usize, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return Some((i + 1, j, j + 1)),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
    None
}

/// The index just after the value starting at `b[i]`.
fn json_skip(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match *b.get(i)? {
        b'"' => json_string(b, i).map(|(_, _, after)| after),
        b'{' => {
            let mut j = skip_ws(b, i + 1);
            if b.get(j) == Some(&b'}') {
                return Some(j + 1);
            }
            loop {
                let (_, _, after) = json_string(b, j)?;
                j = skip_ws(b, after);
                if b.get(j) != Some(&b':') {
                    return None;
                }
                j = json_skip(b, skip_ws(b, j + 1), depth + 1)?;
                j = skip_ws(b, j);
                match b.get(j)? {
                    b',' => j = skip_ws(b, j + 1),
                    b'}' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b'[' => {
            let mut j = skip_ws(b, i + 1);
            if b.get(j) == Some(&b']') {
                return Some(j + 1);
            }
            loop {
                j = json_skip(b, j, depth + 1)?;
                j = skip_ws(b, j);
                match b.get(j)? {
                    b',' => j = skip_ws(b, j + 1),
                    b']' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b't' => b.get(i..i + 4).filter(|s| *s == b"true").map(|_| i + 4),
        b'f' => b.get(i..i + 5).filter(|s| *s == b"false").map(|_| i + 5),
        b'n' => b.get(i..i + 4).filter(|s| *s == b"null").map(|_| i + 4),
        b'-' | b'0'..=b'9' => {
            let mut j = i + 1;
            while j < b.len() && matches!(b[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                j += 1;
            }
            Some(j)
        }
        _ => None,
    }
}

// ───────────────────────────── MessagePack ─────────────────────────────

fn be_len(b: &[u8], at: usize, n: usize) -> Option<usize> {
    let s = b.get(at..at + n)?;
    Some(s.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
}

/// A map header at `i`: (entries, index of the first key).
fn mp_map_len(b: &[u8], i: usize) -> Option<(usize, usize)> {
    match *b.get(i)? {
        t @ 0x80..=0x8f => Some((usize::from(t & 0x0f), i + 1)),
        0xde => Some((be_len(b, i + 1, 2)?, i + 3)),
        0xdf => Some((be_len(b, i + 1, 4)?, i + 5)),
        _ => None,
    }
}

/// A string at `i`: (content start, content end).
fn mp_str(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let (len, s) = match *b.get(i)? {
        t @ 0xa0..=0xbf => (usize::from(t & 0x1f), i + 1),
        0xd9 => (be_len(b, i + 1, 1)?, i + 2),
        0xda => (be_len(b, i + 1, 2)?, i + 3),
        0xdb => (be_len(b, i + 1, 4)?, i + 5),
        _ => return None,
    };
    let e = s.checked_add(len)?;
    (e <= b.len()).then_some((s, e))
}

/// The index just after the value starting at `b[i]`.
fn mp_skip(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let t = *b.get(i)?;
    let end = |n: usize| -> Option<usize> {
        let e = i.checked_add(n)?;
        (e <= b.len()).then_some(e)
    };
    let seq = |count: usize, first: usize, per: usize| -> Option<usize> {
        let mut j = first;
        for _ in 0..count.checked_mul(per)? {
            j = mp_skip(b, j, depth + 1)?;
        }
        Some(j)
    };
    match t {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => end(1),
        0x80..=0x8f => seq(usize::from(t & 0x0f), i + 1, 2),
        0x90..=0x9f => seq(usize::from(t & 0x0f), i + 1, 1),
        0xa0..=0xbf | 0xd9..=0xdb => mp_str(b, i).map(|(_, e)| e),
        0xc4 => end(2 + be_len(b, i + 1, 1)?),
        0xc5 => end(3 + be_len(b, i + 1, 2)?),
        0xc6 => end(5 + be_len(b, i + 1, 4)?),
        0xc7 => end(3 + be_len(b, i + 1, 1)?),
        0xc8 => end(4 + be_len(b, i + 1, 2)?),
        0xc9 => end(6 + be_len(b, i + 1, 4)?),
        0xca => end(5),
        0xcb => end(9),
        0xcc | 0xd0 => end(2),
        0xcd | 0xd1 => end(3),
        0xce | 0xd2 => end(5),
        0xcf | 0xd3 => end(9),
        0xd4 => end(3),
        0xd5 => end(4),
        0xd6 => end(6),
        0xd7 => end(10),
        0xd8 => end(18),
        0xdc => seq(be_len(b, i + 1, 2)?, i + 3, 1),
        0xdd => seq(be_len(b, i + 1, 4)?, i + 5, 1),
        0xde => seq(be_len(b, i + 1, 2)?, i + 3, 2),
        0xdf => seq(be_len(b, i + 1, 4)?, i + 5, 2),
        0xc1 => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringside_protocol::envelope::Envelope;
    use ringside_protocol::events::{self, ServerEvent};
    use ringside_protocol::Codec;

    fn show() -> Envelope<ServerEvent> {
        Envelope::new(ServerEvent::QuestionShow(events::QuestionShow {
            q_index: 3,
            total_questions: 10,
            // Quotes and a fake "seq" inside a string must not confuse the walker.
            question: "Which \"seq\":99 is {not} a [key]?".into(),
            answers: vec!["a".into(), "b\"".into(), "c".into(), "d".into()],
            ends_at: 1_795_500_023_000,
            time_limit_ms: 20_000,
            points: 1000,
            image_url: None,
            show_at: None,
            sealed: None,
        }))
        .with_seq(4_000_000_000)
    }

    fn both(env: &Envelope<ServerEvent>) -> [(Format, Vec<u8>); 2] {
        [
            (Format::Json, env.encode(Codec::Json)),
            (Format::Msgpack, env.encode(Codec::Msgpack)),
        ]
    }

    #[test]
    fn head_reads_event_and_seq_of_a_room_event_in_both_codecs() {
        for (fmt, body) in both(&show()) {
            let h = head(fmt, &body).unwrap();
            assert_eq!(h.event, b"game:question:show", "{fmt:?}");
            assert_eq!(h.seq, Some(4_000_000_000));
            assert_eq!(h.rid, None);
            let d = data(fmt, &body).unwrap().unwrap();
            assert_eq!(
                field(fmt, d, "qIndex").and_then(|v| as_u64(fmt, v)),
                Some(3)
            );
            assert_eq!(
                field(fmt, d, "endsAt").and_then(|v| as_u64(fmt, v)),
                Some(1_795_500_023_000)
            );
            assert_eq!(
                field(fmt, d, "timeLimitMs").and_then(|v| as_u64(fmt, v)),
                Some(20_000)
            );
            assert_eq!(
                field(fmt, d, "answers").and_then(|v| array_len(fmt, v)),
                Some(4)
            );
            assert_eq!(field(fmt, d, "seq"), None, "only top-level keys of data");
        }
    }

    #[test]
    fn head_reads_rid_of_a_reply_and_bools_of_a_result() {
        let ack = Envelope::new(ServerEvent::AnswerAck(events::AnswerAck {
            received: true,
            q_index: 0,
            server_time: 5,
        }))
        .with_rid(Some(17));
        for (fmt, body) in both(&ack) {
            let h = head(fmt, &body).unwrap();
            assert_eq!(
                (h.event, h.seq, h.rid),
                (&b"game:answer:ack"[..], None, Some(17))
            );
            let d = data(fmt, &body).unwrap().unwrap();
            assert_eq!(
                field(fmt, d, "received").and_then(|v| as_bool(fmt, v)),
                Some(true)
            );
        }
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter_in_json() {
        let body = br#" { "data" : {"qIndex" : 2 , "x":[1,{"a":[]}]} , "seq":12, "event" : "game:question:reveal" } "#;
        let h = head(Format::Json, body).unwrap();
        assert_eq!((h.event, h.seq), (&b"game:question:reveal"[..], Some(12)));
        let d = data(Format::Json, body).unwrap().unwrap();
        assert_eq!(
            field(Format::Json, d, "qIndex").and_then(|v| as_u64(Format::Json, v)),
            Some(2)
        );
        assert_eq!(
            field(Format::Json, d, "x").and_then(|v| array_len(Format::Json, v)),
            Some(2)
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_a_partial_answer_never_a_panic() {
        for (fmt, body) in both(&show()) {
            for cut in 0..body.len() {
                let part = &body[..cut];
                let _ = head(fmt, part);
                let _ = data(fmt, part);
                if let Ok(Some(d)) = data(fmt, part) {
                    let _ = field(fmt, d, "answers").and_then(|v| array_len(fmt, v));
                }
            }
        }
    }

    #[test]
    fn garbage_is_a_scan_error() {
        assert_eq!(head(Format::Json, b"[1,2]"), Err(ScanError));
        assert_eq!(
            head(Format::Json, b"{\"seq\":1}"),
            Err(ScanError),
            "no event"
        );
        assert_eq!(head(Format::Msgpack, &[0xc1]), Err(ScanError));
        assert_eq!(
            head(
                Format::Msgpack,
                &[0x81, 0xa5, b'e', b'v', b'e', b'n', b't', 0x05]
            ),
            Err(ScanError)
        );
    }
}
