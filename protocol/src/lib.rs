//! The Ringside wire contract in code: typed events, the envelope, both codecs, error and close codes,
//! limits, the answer HMAC and the Redis key names. `docs/protocol.md` is the prose form of the same
//! contract; a test decodes every JSON example of that document with this crate so the two cannot drift.
//!
//! # Layout
//! - [`events`]: one enum of client events ([`ClientEvent`]) and one of server events ([`ServerEvent`]),
//!   each variant a payload struct, named exactly as on the wire (`game:answer:submit`, ...).
//! - [`envelope`]: the frame body `{event, rid?, seq?, data}` and the two subprotocols
//!   (`ringside.v1.json` in text frames, `ringside.v1.msgpack` in binary frames).
//! - [`error`]: stable error codes sent to clients, WebSocket close codes, decode errors.
//! - [`limits`]: sizes and rates every component enforces.
//! - [`auth`]: the per-session answer HMAC.
//! - [`keys`]: Redis key names; every key of a room shares one hash slot.

pub mod auth;
pub mod envelope;
pub mod error;
pub mod events;
pub mod keys;
pub mod limits;

pub use envelope::{Codec, Envelope};
pub use error::{CloseCode, DecodeError, ErrorCode, Reconnect};
pub use events::{ClientEvent, ServerEvent};
