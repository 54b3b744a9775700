//! ringside-edge: the WebSocket edge of Ringside — accepts players' `ws://`/`wss://` connections,
//! speaks RFC 6455 with its own codec, and hands validated messages to a per-socket [`Session`].
//!
//! # Layout
//! The pipeline is the module list, bytes → frame → event → session:
//! - [`ws::frame`] — RFC 6455 codec (parse, unmask, reassemble, validate, encode-once frames).
//! - [`ws::handshake`] — HTTP/1.1 upgrade, subprotocols `ringside.v1.json` / `ringside.v1.msgpack`.
//! - [`http`] — `/healthz`, `/readyz`, `/metrics`, static files from `--web-root`.
//! - [`proxy`] — `/api/` forwarded to the control plane (`--api-upstream`); the edge keeps no database.
//! - [`server`] — thread-per-core accept loop, SO_REUSEPORT, drain.
//! - [`shared`] — process-wide state (config, counters, admission gauges, drain flag): read by
//!   probes as a value.
//! - [`worker`] — per-thread clock, scratch buffer, the loop clock (event-loop lag, on a `timerfd`;
//!   it also runs the sweep); [`registry`] — the thread's sockets, the once-a-second sweep (pings, idle
//!   timeouts, stuck closes), the drain.
//! - [`doorbell`] — wakes from the Redis thread (replies, room events) that reach a busy worker at
//!   once (an `eventfd` the worker watches like a socket), not only when its loop parks.
//! - [`handle`] — [`ConnHandle`], a socket as the game layer sees it; [`conn`] — the task that owns it.
//! - [`admission`] — saturation gauges and thresholds: new upgrades and joins are refused first.
//! - [`transport`] — readiness-driven non-blocking I/O, plain or TLS (rustls sans-I/O).
//! - [`sendq`] — bounded send queue with the slow-consumer policy.
//! - [`session`] — the seam for the game layer ([`Session`], [`SessionFactory`]) and echo mode.
//! - [`game`] — the game layer above that seam: per-socket sessions, one command file per family of
//!   client events (`game::cmd`), rooms and fan-out, the Redis thread. Nothing below it names it.
//! - [`cli`] — the command line: the transport's flags plus the game's, flattened (the one module that
//!   knows both layers).
//! - [`metrics`], [`config`], [`tls`], [`launcher`] (`--processes`), [`sys`] (the unsafe OS calls).
//!
//! Architecture invariant: the import graph of `edge/src` has no circle at all, and nothing below
//! `game` names it (test: `module_graph.rs`).
//!
//! Architecture invariant: the edge never decides game outcomes; it moves validated frames.
//! Architecture invariant: an idle socket holds no read buffer (readiness wait + per-thread scratch).

pub mod admission;
pub mod cli;
pub mod config;
pub mod conn;
pub mod doorbell;
pub mod game;
pub mod handle;
pub mod http;
pub mod launcher;
pub mod metrics;
#[cfg(test)]
mod module_graph;
pub mod proxy;
pub mod registry;
pub mod sendq;
pub mod server;
pub mod session;
pub mod shared;
pub mod sys;
pub mod tls;
pub mod transport;
pub mod worker;
pub mod ws;

pub use handle::{CloseInfo, ConnHandle, SendError};
pub use sendq::FrameClass;
pub use server::{start, ServerHandle};
pub use session::{EchoFactory, Rejection, Session, SessionFactory};
