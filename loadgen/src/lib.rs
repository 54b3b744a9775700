//! `ringside-loadgen`: simulated players for Ringside, from a few hundred to 100K+ on one machine,
//! with HdrHistogram measurements, a JSON/HTML report and SLO checks that set the exit code.
//!
//! # Layout
//! The pipeline of one socket is the module list, bottom up:
//! - [`wsframe`]: our minimal RFC 6455 client codec (upgrade, header parse, masked frames).
//! - [`scan`]: reads `event`/`seq`/`rid` and single payload fields without decoding (JSON and MessagePack).
//! - [`seq`]: the per-room sequence check (missed, duplicated, out-of-order events).
//! - [`client`]: one socket's life: connect from a source address, upgrade, join, answer, reconnect —
//!   `client/mod.rs` (state, lifecycle, the `Stage` of the game), `socket.rs` (I/O), `player.rs`
//!   (server events), `pending.rs` (requests in flight, timers).
//! - [`worker`]: a worker process: one single-threaded runtime, up to ~15K sockets, reports on stdout.
//! - [`coordinator`]: plans the run, spawns workers, drives the phases, samples CPU, writes the report.
//! - [`plan`]: the run's plan and the coordinator ↔ worker messages.
//! - [`metrics`]: histograms, counters, per-question receipts, `.hlog` interval logs, merging.
//! - [`report`]: report.json, report.html (SVG percentile plots), the terminal summary.
//! - [`slo`]: objectives from flags or a file, and the exit code.
//! - [`sys`]: `/proc` sampling, source addresses, the descriptor limit, killing a process.
//! - [`cli`]: the command line.

pub mod cli;
pub mod client;
pub mod coordinator;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod scan;
pub mod seq;
pub mod slo;
pub mod sys;
pub mod worker;
pub mod wsframe;
