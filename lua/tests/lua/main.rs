//! The library's integration tests: one test binary (linking is the slow part of a build), one module per
//! family, the shared harness in `common`. A new test goes in its family's file here, or in a new file
//! declared below.

mod common;

mod big_room;
mod game;
mod ops;
