//! The library's integration tests: one test binary (linking is the slow part of a build), one module per
//! family, the shared harness in `common` (with `on_both_backends!`). A new test goes in its family's
//! file here, or in a new file declared below.
//!
//! The game is played through the library on real Redis: a test declared with `on_both_backends!` runs
//! on a standalone server and on a 3-primary Redis Cluster. No assertion depends on how long something
//! took; waits are generous and deadlines are read from the server clock.

#[macro_use]
mod common;

mod answers;
mod big_room;
mod host_controls;
mod loader;
mod ops;
mod points;
mod presence;
mod reconnect;
mod results;
mod reveal;
mod rooms;
mod router;
mod scoring;
mod timers;
