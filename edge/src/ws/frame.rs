//! RFC 6455 frame codec on `bytes`: pure, no I/O, benchable.
//!
//! The pipeline on the read side is `bytes → Frame → Event`:
//! - [`parse_frame`] finds one complete client frame at the start of a mutable buffer, checks every
//!   framing rule (mask, RSV bits, opcodes, control-frame rules, length limits) and unmasks the
//!   payload in place, word at a time.
//! - [`MessageAssembler`] turns frames into [`Event`]s: it reassembles fragmented messages (control
//!   frames may be interleaved), validates UTF-8 of text messages incrementally — a fragment with an
//!   invalid sequence fails at once, not at the end of the message — and validates close frames.
//! - [`Decoder`] keeps the leftover bytes of a partial frame between reads, so a connection that is
//!   idle between whole frames holds no buffer at all (one null pointer).
//!
//! On the write side, [`encode`] builds an unmasked server frame into a `Bytes` that can be cloned
//! (a reference-count bump) and written to any number of sockets: encode once, fan out everywhere.
//!
//! Errors are a plain enum, [`ProtocolError`], each mapped to the close code the server sends (one
//! table of close codes for every component: [`ringside_protocol::CloseCode`]).

use bytes::{BufMut, Bytes, BytesMut};
use ringside_protocol::CloseCode;

/// WebSocket frame opcodes (RFC 6455 §5.2). Reserved opcodes are rejected by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    #[inline]
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Some(match v {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Whether a close code received from a peer is allowed on the wire (RFC 6455 §7.4).
#[inline]
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Size limits applied while parsing client frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of a single frame, in bytes.
    pub max_frame: usize,
    /// Largest payload of a whole (reassembled) message, in bytes.
    pub max_message: usize,
}

impl Limits {
    /// The game's defaults: 64 KiB frames and messages.
    pub const GAME: Limits = Limits {
        max_frame: 64 * 1024,
        max_message: 64 * 1024,
    };
    /// Echo mode (Autobahn sends messages of up to 16 MiB).
    pub const ECHO: Limits = Limits {
        max_frame: 32 * 1024 * 1024,
        max_message: 32 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::GAME
    }
}

/// Why a client's byte stream was rejected. Each maps to the close code the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without the mask bit (RFC 6455 §5.1: the server must fail the connection).
    Unmasked,
    /// RSV1..3 set with no extension negotiated.
    ReservedBits,
    /// Opcode 0x3..0x7 or 0xB..0xF.
    ReservedOpcode,
    /// Control frame with a payload over 125 bytes.
    ControlTooLong,
    /// Control frame with FIN clear.
    FragmentedControl,
    /// 64-bit payload length with the most significant bit set.
    LengthMsb,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A close frame with a 1-byte payload.
    CloseLengthOne,
    /// A close frame with a code that may not be sent on the wire.
    InvalidCloseCode,
    /// A close frame whose reason is not UTF-8.
    InvalidCloseReason,
    /// A text message that is not valid UTF-8.
    InvalidUtf8,
    /// A frame over `Limits::max_frame`.
    FrameTooBig,
    /// A message over `Limits::max_message`.
    MessageTooBig,
}

impl ProtocolError {
    /// The close code the server sends for this error.
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => {
                CloseCode::InvalidPayload.code()
            }
            ProtocolError::FrameTooBig | ProtocolError::MessageTooBig => {
                CloseCode::MessageTooBig.code()
            }
            _ => CloseCode::ProtocolError.code(),
        }
    }

    /// A short reason sent in the close frame (ASCII, well under 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::Unmasked => "client frame not masked",
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::ReservedOpcode => "reserved opcode",
            ProtocolError::ControlTooLong => "control frame too long",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::LengthMsb => "invalid payload length",
            ProtocolError::UnexpectedContinuation => "unexpected continuation frame",
            ProtocolError::ExpectedContinuation => "expected continuation frame",
            ProtocolError::CloseLengthOne => "close payload of length 1",
            ProtocolError::InvalidCloseCode => "invalid close code",
            ProtocolError::InvalidCloseReason => "close reason not utf-8",
            ProtocolError::InvalidUtf8 => "text not utf-8",
            ProtocolError::FrameTooBig => "frame too big",
            ProtocolError::MessageTooBig => "message too big",
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

impl std::error::Error for ProtocolError {}

/// One parsed, unmasked client frame borrowing its payload from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: &'a [u8],
}

/// The parsed fixed part of a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    /// Bytes taken by the header (2..=14).
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    /// Total length of the frame on the wire.
    #[inline]
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses a client frame header at the start of `buf`. `Ok(None)` means more bytes are needed.
/// Checks every rule that can be checked from the header alone, so an oversized or malformed frame
/// fails before its payload arrives.
pub fn parse_header(buf: &[u8], limits: &Limits) -> Result<Option<Header>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode)?;
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Unmasked);
    }
    let len7 = (b1 & 0x7F) as usize;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if len7 > 125 {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let (payload_len, len_bytes) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let v = u64::from_be_bytes(b);
            if v & (1 << 63) != 0 {
                return Err(ProtocolError::LengthMsb);
            }
            (v, 8)
        }
        n => (n as u64, 0),
    };
    if payload_len > limits.max_frame as u64 {
        return Err(ProtocolError::FrameTooBig);
    }
    let mask_at = 2 + len_bytes;
    if buf.len() < mask_at + 4 {
        return Ok(None);
    }
    let mask = [
        buf[mask_at],
        buf[mask_at + 1],
        buf[mask_at + 2],
        buf[mask_at + 3],
    ];
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_len: mask_at + 4,
        payload_len: payload_len as usize,
    }))
}

/// Parses one complete client frame at the start of `buf` and unmasks its payload in place.
/// Returns the frame and the number of bytes it took, or `Ok(None)` if the frame is incomplete.
pub fn parse_frame<'a>(
    buf: &'a mut [u8],
    limits: &Limits,
) -> Result<Option<(Frame<'a>, usize)>, ProtocolError> {
    let Some(h) = parse_header(buf, limits)? else {
        return Ok(None);
    };
    let total = h.frame_len();
    if buf.len() < total {
        return Ok(None);
    }
    let payload = &mut buf[h.header_len..total];
    unmask(payload, h.mask);
    Ok(Some((
        Frame {
            fin: h.fin,
            opcode: h.opcode,
            payload,
        },
        total,
    )))
}

/// XORs `data` with the 4-byte `mask` (RFC 6455 §5.3), eight bytes at a time.
#[inline]
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let m8 = [
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ];
    let m64 = u64::from_ne_bytes(m8);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_ne_bytes(w) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask phase is 0 again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Encodes an unmasked server frame with FIN set. The result can be shared by many sockets.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len_for(payload.len()) + payload.len());
    encode_into(&mut out, true, opcode, payload);
    out.freeze()
}

/// Encodes a text frame.
pub fn encode_text(payload: &str) -> Bytes {
    encode(Opcode::Text, payload.as_bytes())
}

/// Encodes a binary frame.
pub fn encode_binary(payload: &[u8]) -> Bytes {
    encode(Opcode::Binary, payload)
}

/// Encodes a close frame with `code` and a reason (truncated to fit 125 bytes at a char boundary).
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut r = reason;
    if r.len() > 123 {
        let mut cut = 123;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r = &r[..cut];
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + r.len()].copy_from_slice(r.as_bytes());
    encode(Opcode::Close, &payload[..2 + r.len()])
}

/// Length of the server frame header for a payload of `len` bytes.
#[inline]
pub fn header_len_for(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        10
    }
}

/// Appends an unmasked server frame to `out`.
pub fn encode_into(out: &mut BytesMut, fin: bool, opcode: Opcode, payload: &[u8]) {
    out.reserve(header_len_for(payload.len()) + payload.len());
    out.put_u8(if fin { 0x80 } else { 0 } | opcode as u8);
    let len = payload.len();
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.extend_from_slice(payload);
}

/// Encodes a masked client frame (used by tests and load generators, never by the server).
pub fn encode_client(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
    out
}

/// Kind of a complete data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
}

/// What a client sent, after reassembly and validation.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message. Text payloads are valid UTF-8.
    Message {
        kind: MessageKind,
        payload: &'a [u8],
    },
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A valid close frame: `code` is `None` for an empty payload; `reason` is valid UTF-8.
    Close {
        code: Option<u16>,
        reason: &'a str,
    },
}

/// Reassembles fragmented messages and validates text and close payloads.
///
/// Holds no allocation unless a fragmented message is in progress.
#[derive(Debug, Default)]
pub struct MessageAssembler {
    /// Payload of the message in progress (only while fragmented).
    buf: Vec<u8>,
    /// Kind of the message in progress; `None` when between messages.
    kind: Option<MessageKind>,
    /// How far `buf` has been validated as UTF-8 (text only); the rest is at most an incomplete
    /// trailing sequence waiting for the next fragment.
    utf8_checked: usize,
}

/// Validates `data` as UTF-8, allowing an incomplete sequence at the very end when `partial`.
/// Returns how many bytes form complete valid characters.
#[inline]
fn check_utf8(data: &[u8], partial: bool) -> Result<usize, ProtocolError> {
    match std::str::from_utf8(data) {
        Ok(_) => Ok(data.len()),
        Err(e) if partial && e.error_len().is_none() => Ok(e.valid_up_to()),
        Err(_) => Err(ProtocolError::InvalidUtf8),
    }
}

impl MessageAssembler {
    /// Whether a fragmented message is in progress.
    pub fn in_message(&self) -> bool {
        self.kind.is_some()
    }

    /// Bytes held for the message in progress.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one frame; returns an event when the frame completes something the session should see.
    pub fn push<'a>(
        &'a mut self,
        frame: Frame<'a>,
        limits: &Limits,
    ) -> Result<Option<Event<'a>>, ProtocolError> {
        match frame.opcode {
            Opcode::Ping => Ok(Some(Event::Ping(frame.payload))),
            Opcode::Pong => Ok(Some(Event::Pong(frame.payload))),
            Opcode::Close => parse_close(frame.payload).map(Some),
            Opcode::Text | Opcode::Binary => {
                if self.kind.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                let kind = if frame.opcode == Opcode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                if frame.payload.len() > limits.max_message {
                    return Err(ProtocolError::MessageTooBig);
                }
                if frame.fin {
                    if kind == MessageKind::Text {
                        check_utf8(frame.payload, false)?;
                    }
                    return Ok(Some(Event::Message {
                        kind,
                        payload: frame.payload,
                    }));
                }
                self.utf8_checked = 0;
                if kind == MessageKind::Text {
                    self.utf8_checked = check_utf8(frame.payload, true)?;
                }
                self.buf.clear();
                self.buf.extend_from_slice(frame.payload);
                self.kind = Some(kind);
                Ok(None)
            }
            Opcode::Continuation => {
                let Some(kind) = self.kind else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                if self.buf.len() + frame.payload.len() > limits.max_message {
                    return Err(ProtocolError::MessageTooBig);
                }
                self.buf.extend_from_slice(frame.payload);
                if kind == MessageKind::Text {
                    let n = check_utf8(&self.buf[self.utf8_checked..], !frame.fin)?;
                    self.utf8_checked += n;
                }
                if !frame.fin {
                    return Ok(None);
                }
                self.kind = None;
                self.utf8_checked = 0;
                Ok(Some(Event::Message {
                    kind,
                    payload: &self.buf,
                }))
            }
        }
    }

    /// Drops the buffer of a message that was delivered, so an idle connection holds no memory.
    pub fn release(&mut self) {
        if self.kind.is_none() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
        }
    }
}

/// Validates a close payload (RFC 6455 §5.5.1, §7.4).
pub fn parse_close(payload: &[u8]) -> Result<Event<'_>, ProtocolError> {
    match payload.len() {
        0 => Ok(Event::Close {
            code: None,
            reason: "",
        }),
        1 => Err(ProtocolError::CloseLengthOne),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode);
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Event::Close {
                code: Some(code),
                reason,
            })
        }
    }
}

/// What the event callback of [`Decoder::feed`] wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop parsing (e.g. after a close frame); remaining bytes are discarded.
    Stop,
}

/// Per-connection read state: a partial frame's leftover bytes plus the message assembler.
///
/// Memory: one null pointer while idle (between whole messages). The state is boxed only while a
/// partial frame or a fragmented message is pending, and freed by [`Decoder::shrink`].
#[derive(Debug, Default)]
pub struct Decoder {
    inner: Option<Box<DecoderState>>,
}

#[derive(Debug, Default)]
struct DecoderState {
    leftover: Vec<u8>,
    assembler: MessageAssembler,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held for a partial frame.
    pub fn leftover_len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.leftover.len())
    }

    /// Whether a fragmented message is in progress.
    pub fn in_message(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.assembler.in_message())
    }

    /// Whether any heap memory is held.
    pub fn is_idle(&self) -> bool {
        self.inner.is_none()
    }

    /// Feeds bytes just read from the socket (from a per-thread scratch buffer; they may be
    /// modified in place). Calls `on_event` for each event in order. Keeps only an incomplete
    /// trailing frame. After a close frame (or `Flow::Stop`) the rest of `data` is discarded.
    pub fn feed(
        &mut self,
        data: &mut [u8],
        limits: &Limits,
        mut on_event: impl FnMut(Event<'_>) -> Flow,
    ) -> Result<Feed, ProtocolError> {
        let mut feed = Feed {
            stopped: false,
            frames: 0,
        };
        let st = self.inner.get_or_insert_with(Default::default);
        if st.leftover.is_empty() {
            let consumed = Self::run(&mut st.assembler, data, limits, &mut on_event, &mut feed)?;
            if !feed.stopped && consumed < data.len() {
                st.leftover.extend_from_slice(&data[consumed..]);
            }
            return Ok(feed);
        }
        // Reserve for the whole frame once its header is known, to avoid repeated regrowth.
        if let Ok(Some(h)) = parse_header(&st.leftover, limits) {
            let want = h.frame_len().saturating_sub(st.leftover.len());
            st.leftover.reserve(want.max(data.len()));
        }
        st.leftover.extend_from_slice(data);
        let mut leftover = std::mem::take(&mut st.leftover);
        let consumed = Self::run(
            &mut st.assembler,
            &mut leftover,
            limits,
            &mut on_event,
            &mut feed,
        )?;
        if !feed.stopped && consumed < leftover.len() {
            leftover.drain(..consumed);
            st.leftover = leftover;
        }
        Ok(feed)
    }

    fn run(
        asm: &mut MessageAssembler,
        buf: &mut [u8],
        limits: &Limits,
        on_event: &mut impl FnMut(Event<'_>) -> Flow,
        feed: &mut Feed,
    ) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        loop {
            asm.release_if_done();
            let Some((frame, n)) = parse_frame(&mut buf[pos..], limits)? else {
                return Ok(pos);
            };
            pos += n;
            feed.frames += 1;
            if let Some(ev) = asm.push(frame, limits)? {
                let is_close = matches!(ev, Event::Close { .. });
                if on_event(ev) == Flow::Stop || is_close {
                    feed.stopped = true;
                    return Ok(pos);
                }
            }
        }
    }
}

/// Result of one [`Decoder::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// A close frame was seen or the callback returned `Flow::Stop`.
    pub stopped: bool,
    /// Complete frames parsed.
    pub frames: usize,
}
impl MessageAssembler {
    #[inline]
    fn release_if_done(&mut self) {
        if self.kind.is_none() && !self.buf.is_empty() {
            self.buf.clear();
        }
    }
}

impl Decoder {
    /// Frees the buffers of delivered messages, so an idle connection holds no heap memory.
    /// Call after each `feed`.
    pub fn shrink(&mut self) {
        if let Some(st) = &mut self.inner {
            if st.leftover.is_empty() && !st.assembler.in_message() {
                self.inner = None;
            } else {
                st.assembler.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn events(
        dec: &mut Decoder,
        data: &[u8],
        limits: &Limits,
    ) -> Result<Vec<String>, ProtocolError> {
        let mut out = Vec::new();
        let mut d = data.to_vec();
        dec.feed(&mut d, limits, |ev| {
            out.push(match ev {
                Event::Message { kind, payload } => {
                    format!("{kind:?}:{}", String::from_utf8_lossy(payload))
                }
                Event::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                Event::Pong(p) => format!("pong:{}", String::from_utf8_lossy(p)),
                Event::Close { code, reason } => format!("close:{code:?}:{reason}"),
            });
            Flow::Continue
        })?;
        Ok(out)
    }

    #[test]
    fn unmask_matches_bytewise_for_every_length() {
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut fast = orig.clone();
            unmask(&mut fast, MASK);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn single_text_frame_is_one_message() {
        let f = encode_client(true, 1, MASK, b"Hello");
        let mut d = Decoder::new();
        assert_eq!(
            events(&mut d, &f, &Limits::GAME).unwrap(),
            vec!["Text:Hello"]
        );
        assert_eq!(d.leftover_len(), 0);
    }

    #[test]
    fn frame_split_at_every_byte_is_reassembled() {
        let f = encode_client(true, 2, MASK, &[7u8; 300]);
        for cut in 0..f.len() {
            let mut d = Decoder::new();
            let mut got = events(&mut d, &f[..cut], &Limits::GAME).unwrap();
            got.extend(events(&mut d, &f[cut..], &Limits::GAME).unwrap());
            assert_eq!(got.len(), 1, "cut {cut}");
            assert_eq!(d.leftover_len(), 0);
        }
    }

    #[test]
    fn fragments_with_interleaved_ping_assemble() {
        let mut data = encode_client(false, 1, MASK, b"Hel");
        data.extend(encode_client(true, 9, MASK, b"p"));
        data.extend(encode_client(false, 0, MASK, b"l"));
        data.extend(encode_client(true, 0, MASK, b"o"));
        let mut d = Decoder::new();
        assert_eq!(
            events(&mut d, &data, &Limits::GAME).unwrap(),
            vec!["ping:p", "Text:Hello"]
        );
    }

    #[test]
    fn unmasked_frame_is_protocol_error() {
        let data = [0x81u8, 0x02, b'h', b'i'];
        let e = events(&mut Decoder::new(), &data, &Limits::GAME).unwrap_err();
        assert_eq!(e, ProtocolError::Unmasked);
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn rsv_bits_and_reserved_opcodes_are_protocol_errors() {
        let mut f = encode_client(true, 1, MASK, b"x");
        f[0] |= 0x40;
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::ReservedBits)
        );
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let f = encode_client(true, op, MASK, b"");
            assert_eq!(
                events(&mut Decoder::new(), &f, &Limits::GAME),
                Err(ProtocolError::ReservedOpcode)
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        let f = encode_client(true, 9, MASK, &[0u8; 126]);
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::ControlTooLong)
        );
        let f = encode_client(false, 9, MASK, b"x");
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::FragmentedControl)
        );
    }

    #[test]
    fn length_with_msb_set_is_rejected() {
        let mut f = vec![0x82u8, 0xFF];
        f.extend_from_slice(&(1u64 << 63).to_be_bytes());
        f.extend_from_slice(&MASK);
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::ECHO),
            Err(ProtocolError::LengthMsb)
        );
    }

    #[test]
    fn continuation_rules() {
        let f = encode_client(true, 0, MASK, b"x");
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut f = encode_client(false, 1, MASK, b"x");
        f.extend(encode_client(true, 1, MASK, b"y"));
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn invalid_utf8_fails_on_the_fragment_that_breaks_it() {
        let mut d = Decoder::new();
        // "κ" split across fragments is fine.
        let k = "κόσμε".as_bytes();
        let mut f = encode_client(false, 1, MASK, &k[..1]);
        f.extend(encode_client(false, 0, MASK, &k[1..3]));
        assert_eq!(
            events(&mut d, &f, &Limits::GAME).unwrap(),
            Vec::<String>::new()
        );
        // An invalid byte in a middle fragment fails before the final fragment.
        let bad = encode_client(false, 0, MASK, &[0xF5]);
        assert_eq!(
            events(&mut d, &bad, &Limits::GAME),
            Err(ProtocolError::InvalidUtf8)
        );
        // A truncated sequence at the end of the message fails.
        let mut f = encode_client(false, 1, MASK, b"a");
        f.extend(encode_client(true, 0, MASK, &[0xCE]));
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::InvalidUtf8)
        );
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
    }

    #[test]
    fn size_limits_give_1009() {
        let lim = Limits {
            max_frame: 10,
            max_message: 15,
        };
        let f = encode_client(true, 2, MASK, &[0; 11]);
        assert_eq!(
            events(&mut Decoder::new(), &f, &lim),
            Err(ProtocolError::FrameTooBig)
        );
        // The header alone is enough to reject.
        assert_eq!(
            events(&mut Decoder::new(), &f[..6], &lim),
            Err(ProtocolError::FrameTooBig)
        );
        let mut f = encode_client(false, 2, MASK, &[0; 10]);
        f.extend(encode_client(true, 0, MASK, &[0; 6]));
        assert_eq!(
            events(&mut Decoder::new(), &f, &lim),
            Err(ProtocolError::MessageTooBig)
        );
        assert_eq!(ProtocolError::MessageTooBig.close_code(), 1009);
    }

    #[test]
    fn close_codes_are_validated() {
        for (code, ok) in [
            (1000u16, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1011, true),
            (1012, false),
            (1015, false),
            (999, false),
            (2999, false),
            (3000, true),
            (4999, true),
            (5000, false),
        ] {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(b"bye");
            let f = encode_client(true, 8, MASK, &p);
            let r = events(&mut Decoder::new(), &f, &Limits::GAME);
            if ok {
                assert_eq!(r.unwrap(), vec![format!("close:Some({code}):bye")]);
            } else {
                assert_eq!(r, Err(ProtocolError::InvalidCloseCode), "{code}");
            }
        }
        let f = encode_client(true, 8, MASK, &[3]);
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::CloseLengthOne)
        );
        let f = encode_client(true, 8, MASK, &[3, 232, 0xFF]);
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME),
            Err(ProtocolError::InvalidCloseReason)
        );
        let f = encode_client(true, 8, MASK, &[]);
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME).unwrap(),
            vec!["close:None:"]
        );
    }

    #[test]
    fn close_in_the_middle_of_a_fragmented_message_is_delivered() {
        let mut f = encode_client(false, 1, MASK, b"frag");
        f.extend(encode_client(true, 8, MASK, &1000u16.to_be_bytes()));
        f.extend(encode_client(true, 0, MASK, b"ment"));
        // Parsing stops after the close frame.
        assert_eq!(
            events(&mut Decoder::new(), &f, &Limits::GAME).unwrap(),
            vec!["close:Some(1000):"]
        );
    }

    #[test]
    fn server_frames_encode_every_length_class() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let p = vec![b'a'; len];
            let b = encode(Opcode::Binary, &p);
            assert_eq!(b.len(), header_len_for(len) + len);
            assert_eq!(b[0], 0x82);
        }
        let c = encode_close(1012, "service restart");
        assert_eq!(&c[..4], &[0x88, 17, 0x03, 0xF4]);
        let long = "é".repeat(100);
        assert!(encode_close(1000, &long).len() <= 127);
    }

    #[test]
    fn decoder_holds_no_memory_when_idle() {
        let mut d = Decoder::new();
        let f = encode_client(true, 1, MASK, b"hi");
        events(&mut d, &f[..3], &Limits::GAME).unwrap();
        assert_eq!(d.leftover_len(), 3);
        events(&mut d, &f[3..], &Limits::GAME).unwrap();
        d.shrink();
        assert!(d.is_idle());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn parser_never_panics_on_arbitrary_bytes(
                data in proptest::collection::vec(any::<u8>(), 0..512),
                split in 0usize..512,
            ) {
                let lim = Limits { max_frame: 300, max_message: 400 };
                let mut d = Decoder::new();
                let split = split.min(data.len());
                let mut a = data[..split].to_vec();
                let mut b = data[split..].to_vec();
                if d.feed(&mut a, &lim, |_| Flow::Continue).is_ok() {
                    let _ = d.feed(&mut b, &lim, |_| Flow::Continue);
                }
            }

            #[test]
            fn valid_frames_round_trip_through_any_split(
                payload in proptest::collection::vec(any::<u8>(), 0..300),
                split in 0usize..400,
                mask in any::<[u8; 4]>(),
            ) {
                let f = encode_client(true, 2, mask, &payload);
                let split = split.min(f.len());
                let mut d = Decoder::new();
                let mut got = Vec::new();
                let mut a = f[..split].to_vec();
                let mut b = f[split..].to_vec();
                d.feed(&mut a, &Limits::GAME, |ev| { if let Event::Message { payload, .. } = ev { got.push(payload.to_vec()) } Flow::Continue }).unwrap();
                d.feed(&mut b, &Limits::GAME, |ev| { if let Event::Message { payload, .. } = ev { got.push(payload.to_vec()) } Flow::Continue }).unwrap();
                prop_assert_eq!(got, vec![payload]);
            }
        }
    }
}
