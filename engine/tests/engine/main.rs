//! The engine's integration tests: one test binary (linking is the slow part of a build), one module per
//! family, shared helpers in `common`. A new test goes in its family's file here, or in a new file
//! declared below.

mod common;

mod connections;
mod exactly_once;
mod game_e2e;
mod rebalance;
mod redis_restart;
mod service;
mod takeover;
