//! The decoders under fuzz, compiled from the owning crates' own source files.
//!
//! `ringside-edge` and `ringside-lua` pull in redis, tokio, monoio, rustls, clap and more; building
//! them with coverage instrumentation took most of the CI budget. The modules fuzzed here depend on
//! nothing of their crates but `bytes`, `httparse`, `sha1`, `base64`, `serde` and
//! `ringside-protocol`, so they are included by path: the fuzzed code is the shipped code, byte for
//! byte. If one of them starts to use another module of its crate, this build fails and the include
//! must become a real dependency.
#![allow(dead_code)]

/// `edge/src/ws/frame.rs`: the RFC 6455 frame decoder.
#[path = "../../edge/src/ws/frame.rs"]
pub mod frame;

/// `edge/src/ws/handshake.rs`: `parse_request`, HTTP request heads and the upgrade.
#[path = "../../edge/src/ws/handshake.rs"]
pub mod handshake;

/// `edge/src/game/resp.rs`: the RESP2 reader of the sharded pub/sub connections.
#[path = "../../edge/src/game/resp.rs"]
pub mod resp;

/// `lua/src/quiz.rs`: the quiz format and its validation (`ringside-quiz import`).
#[path = "../../lua/src/quiz.rs"]
pub mod quiz;
