//! The control plane's integration tests: one test binary (linking is the slow part of a build), one
//! module per family, the shared stack in `common`. A new test goes in its family's file here, or in a
//! new file declared below.

mod common;

mod api;
mod doc_examples;
mod ops;
