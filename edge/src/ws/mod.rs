//! The WebSocket protocol, pure and I/O-free: framing ([`frame`]) and the opening handshake
//! ([`handshake`]).

pub mod frame;
pub mod handshake;
