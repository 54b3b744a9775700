//! The frame body and the two subprotocols.
//!
//! Every frame carries one envelope: `{"event": NAME, "rid": N?, "seq": N?, "data": {...}}`.
//! `rid` is chosen by the client on a request and copied into the reply (and into an `error`);
//! `seq` is set on room events only, increasing by one per room event. Key order is free.
//!
//! `ringside.v1.json` puts the envelope in text frames as JSON; `ringside.v1.msgpack` in binary frames as
//! a MessagePack map with the same keys (structs are maps with field names, never arrays).
//!
//! Decoding never panics: any input maps to a [`DecodeError`] with a documented code. JSON is parsed
//! with simd-json *in place* (it overwrites the input buffer), so [`decode`] takes `&mut [u8]`.

use crate::error::DecodeError;
use crate::events::Event;
use crate::limits;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// Name of the JSON subprotocol.
pub const JSON_PROTOCOL: &str = "ringside.v1.json";
/// Name of the MessagePack subprotocol.
pub const MSGPACK_PROTOCOL: &str = "ringside.v1.msgpack";

/// A negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Json,
    Msgpack,
}

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Json, Codec::Msgpack];

    /// The `Sec-WebSocket-Protocol` token.
    pub fn protocol(self) -> &'static str {
        match self {
            Codec::Json => JSON_PROTOCOL,
            Codec::Msgpack => MSGPACK_PROTOCOL,
        }
    }

    pub fn from_protocol(token: &str) -> Option<Codec> {
        match token.trim() {
            JSON_PROTOCOL => Some(Codec::Json),
            MSGPACK_PROTOCOL => Some(Codec::Msgpack),
            _ => None,
        }
    }

    /// Whether frames of this codec are WebSocket text frames (else binary).
    pub fn is_text(self) -> bool {
        matches!(self, Codec::Json)
    }
}

/// One frame body: an event with its optional request id and room sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    pub event: E,
    /// Request id, chosen by the client, echoed in the reply.
    pub rid: Option<u32>,
    /// Per-room sequence number of a room event.
    pub seq: Option<u64>,
}

impl<E: Event> Envelope<E> {
    pub fn new(event: E) -> Self {
        Envelope {
            event,
            rid: None,
            seq: None,
        }
    }

    pub fn with_rid(mut self, rid: Option<u32>) -> Self {
        self.rid = rid;
        self
    }

    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// Encodes with the given codec.
    pub fn encode(&self, codec: Codec) -> Vec<u8> {
        match codec {
            Codec::Json => self.to_json(),
            Codec::Msgpack => self.to_msgpack(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        // Writing to a Vec cannot fail, and every map key of our types is a string.
        simd_json::to_writer(&mut out, self).expect("every event encodes to JSON");
        out
    }

    pub fn to_msgpack(&self) -> Vec<u8> {
        // Only fails for types that cannot be expressed (none of ours); a map with string keys always can.
        rmp_serde::to_vec_named(self).expect("every event encodes to MessagePack")
    }

    /// Decodes a frame body of the given codec. JSON input is overwritten (simd-json parses in place).
    pub fn decode(codec: Codec, body: &mut [u8]) -> Result<Self, DecodeError> {
        decode(codec, body)
    }
}

impl<E: Event> Serialize for Envelope<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = 2 + usize::from(self.rid.is_some()) + usize::from(self.seq.is_some());
        let mut m = s.serialize_map(Some(len))?;
        m.serialize_entry("event", self.event.name())?;
        if let Some(rid) = self.rid {
            m.serialize_entry("rid", &rid)?;
        }
        if let Some(seq) = self.seq {
            m.serialize_entry("seq", &seq)?;
        }
        m.serialize_entry("data", &DataOf(&self.event))?;
        m.end()
    }
}

struct DataOf<'a, E>(&'a E);

impl<E: Event> Serialize for DataOf<'_, E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_data(s)
    }
}

/// Decodes one frame body. Checks the size limit, the envelope shape, the event name, the payload
/// types and the payload limits ([`Event::validate`]), in that order.
pub fn decode<E: Event>(codec: Codec, body: &mut [u8]) -> Result<Envelope<E>, DecodeError> {
    decode_request(codec, body).map_err(|r| r.error)
}

/// A frame body that did not become an event, with the request id when the envelope got as far as a
/// valid `rid`: the server's `error` carries it, so the client can match it to its request
/// (docs/protocol.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub rid: Option<u32>,
    pub error: DecodeError,
}

/// [`decode`], keeping the `rid` of a request whose envelope is readable but whose event or payload is
/// not (unknown event, wrong types, a limit broken, `event` missing).
pub fn decode_request<E: Event>(codec: Codec, body: &mut [u8]) -> Result<Envelope<E>, Refused> {
    if body.len() > limits::MAX_MESSAGE_BYTES {
        return Err(Refused {
            rid: None,
            error: DecodeError::TooLarge(body.len()),
        });
    }
    let env: Envelope<E> = match codec {
        Codec::Json => decode_json(body)?,
        Codec::Msgpack => decode_msgpack(body)?,
    };
    if let Err(error) = env.event.validate() {
        return Err(Refused {
            rid: env.rid,
            error,
        });
    }
    Ok(env)
}

/// An error before the envelope's `rid` is known.
impl From<DecodeError> for Refused {
    fn from(error: DecodeError) -> Refused {
        Refused { rid: None, error }
    }
}

fn bad_frame(codec: Codec, detail: impl Into<String>) -> DecodeError {
    let codec = match codec {
        Codec::Json => "JSON",
        Codec::Msgpack => "MessagePack",
    };
    DecodeError::BadFrame {
        codec,
        detail: detail.into(),
    }
}

fn decode_json<E: Event>(body: &mut [u8]) -> Result<Envelope<E>, Refused> {
    use simd_json::prelude::*;
    use simd_json::BorrowedValue;

    let value =
        simd_json::to_borrowed_value(body).map_err(|e| bad_frame(Codec::Json, e.to_string()))?;
    if depth_json(&value) > limits::MAX_DEPTH {
        return Err(bad_frame(Codec::Json, "nested too deeply").into());
    }
    let BorrowedValue::Object(mut obj) = value else {
        return Err(bad_frame(Codec::Json, "the envelope must be an object").into());
    };
    let rid = match obj.get("rid") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(
            v.as_u32()
                .ok_or_else(|| bad_frame(Codec::Json, "`rid` must be an integer 0..=4294967295"))?,
        ),
    };
    let with_rid = |error| Refused { rid, error };
    let name = match obj.get("event").and_then(|v| v.as_str()) {
        Some(n) => n.to_string(),
        None => return Err(with_rid(bad_frame(Codec::Json, "`event` must be a string"))),
    };
    let seq = match obj.get("seq") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            with_rid(bad_frame(
                Codec::Json,
                "`seq` must be a non-negative integer",
            ))
        })?),
    };
    let data = obj
        .remove("data")
        .unwrap_or_else(|| BorrowedValue::Object(Box::default()));
    let event = E::from_data(&name, data).map_err(with_rid)?;
    Ok(Envelope { event, rid, seq })
}

/// The JSON `ping` in the two shapes the clients send, read without the parser:
/// `{"event":"ping","rid":N,"data":{"t":T}}` (the load generator) and
/// `{"event":"ping","data":{"t":T}}` or with `,"rid":N` after `data` (the pages' `JSON.stringify`).
/// `T` is an unsigned JSON number of ≤ 15 integer and ≤ 6 fraction digits. Returns `(rid, t)`,
/// exactly what [`decode_request`] would; `None` for anything else (spaces, other key orders, `seq`,
/// exponents, …), which then takes the general path.
///
/// Why: an idle socket's only traffic is its `ping` every `pingInterval`, and at 100K sockets that is
/// 5,000 a second, each on a cold cache; the general path (a copy, a parsed tree, serde) was the
/// largest part of the edge's own CPU per ping, ~40 % of it (perf/edge.md, "An idle socket's ping").
pub fn json_ping(body: &[u8]) -> Option<(Option<u32>, f64)> {
    let rest = body.strip_prefix(br#"{"event":"ping","#)?;
    let (first, rest) = match json_rid(rest) {
        Some((n, r)) => (Some(n), r.strip_prefix(b",")?),
        None => (None, rest),
    };
    let rest = rest.strip_prefix(br#""data":{"t":"#)?;
    let (t, rest) = json_ms(rest)?;
    let rest = rest.strip_prefix(b"}")?;
    let (rid, rest) = match (first, rest.strip_prefix(b",")) {
        (None, Some(r)) => {
            let (n, r) = json_rid(r)?;
            (Some(n), r)
        }
        _ => (first, rest),
    };
    (rest == b"}").then_some((rid, t))
}

/// `"rid":N` (a u32) at the head of `s`, and what follows it.
fn json_rid(s: &[u8]) -> Option<(u32, &[u8])> {
    let (n, rest) = json_uint(s.strip_prefix(br#""rid":"#)?, 10)?;
    Some((u32::try_from(n).ok()?, rest))
}

/// A JSON unsigned integer of at most `max` digits (no leading zero) and what follows it.
fn json_uint(s: &[u8], max: usize) -> Option<(u64, &[u8])> {
    let n = s
        .iter()
        .take(max + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n == 0 || n > max || (n > 1 && s[0] == b'0') {
        return None;
    }
    let v = s[..n]
        .iter()
        .fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
    Some((v, &s[n..]))
}

/// `T` of [`json_ping`]: an integer part and an optional fraction, parsed as Rust parses floats
/// (correctly rounded, like simd-json).
fn json_ms(s: &[u8]) -> Option<(f64, &[u8])> {
    let (_, after) = json_uint(s, 15)?;
    let mut end = s.len() - after.len();
    if let Some(frac) = after.strip_prefix(b".") {
        let n = frac
            .iter()
            .take(7)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n == 0 || n > 6 {
            return None;
        }
        end += 1 + n;
    }
    if s.get(end)
        .is_some_and(|b| matches!(b, b'e' | b'E' | b'.' | b'0'..=b'9'))
    {
        return None;
    }
    let text = std::str::from_utf8(&s[..end]).ok()?;
    Some((text.parse().ok()?, &s[end..]))
}

fn depth_json(v: &simd_json::BorrowedValue) -> usize {
    use simd_json::BorrowedValue as V;
    match v {
        V::Array(a) => 1 + a.iter().map(depth_json).max().unwrap_or(0),
        V::Object(o) => 1 + o.values().map(depth_json).max().unwrap_or(0),
        _ => 0,
    }
}

fn decode_msgpack<E: Event>(body: &mut [u8]) -> Result<Envelope<E>, Refused> {
    use rmpv::ValueRef;

    let mut rd: &[u8] = body;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rd, limits::MAX_DEPTH)
        .map_err(|e| bad_frame(Codec::Msgpack, e.to_string()))?;
    if !rd.is_empty() {
        return Err(bad_frame(Codec::Msgpack, "trailing bytes after the envelope").into());
    }
    let ValueRef::Map(entries) = value else {
        return Err(bad_frame(Codec::Msgpack, "the envelope must be a map").into());
    };
    // Every key is read before any is judged, so an error after a valid `rid` carries it.
    let (mut event, mut rid, mut seq, mut data) = (None, None, None, None);
    for (k, v) in entries {
        let ValueRef::String(k) = k else { continue };
        match k.as_str() {
            Some("event") => event = Some(v),
            Some("rid") => rid = Some(v),
            Some("seq") => seq = Some(v),
            Some("data") => data = Some(v),
            _ => {}
        }
    }
    let rid = match rid {
        None | Some(ValueRef::Nil) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    bad_frame(Codec::Msgpack, "`rid` must be an integer 0..=4294967295")
                })?,
        ),
    };
    let with_rid = |error| Refused { rid, error };
    let name = match event {
        Some(ValueRef::String(s)) => s.as_str().map(str::to_string),
        _ => None,
    }
    .ok_or_else(|| with_rid(bad_frame(Codec::Msgpack, "`event` must be a string")))?;
    let seq = match seq {
        None | Some(ValueRef::Nil) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            with_rid(bad_frame(
                Codec::Msgpack,
                "`seq` must be a non-negative integer",
            ))
        })?),
    };
    let data = data.unwrap_or(ValueRef::Map(Vec::new()));
    let event = E::from_data(&name, data).map_err(with_rid)?;
    Ok(Envelope { event, rid, seq })
}
