//! The protocol crate's integration tests: one test binary (linking is the slow part of a build), one
//! module per family. A new test goes in its family's file here, or in a new file declared below.

mod bad_input;
mod close_codes;
mod doc_examples;
mod fast_ping;
