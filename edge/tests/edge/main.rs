//! The edge's integration tests: one test binary (linking is the slow part of a build), shared helpers
//! in `common`. `transport` is the edge in echo mode (WebSocket, HTTP, drain, launcher); `admission` its
//! overload refusals at the transport (a client that stops reading); `game` is the
//! game through the edge, one file per family under `game/` with the game's helpers in `game/mod.rs`.
//! A new test goes in its family's file, or in a new file declared in its parent module.

mod common;

mod admission;
mod game;
mod transport;
