//! The harness's integration tests: one test binary (linking is the slow part of a build), one module
//! per family. A new test goes in its family's file here, or in a new file declared below.

mod harness;
mod layout;
