//! Criterion benches for Ringside's hot paths live in `benches/benches/*.rs`:
//! - `protocol`: encode and decode of the hot events (question:show, answer:submit, reveal) in both codecs.
//!
//! Run: `cargo bench -p ringside-benches`. Results and the machine they ran on are kept in `perf/`.
