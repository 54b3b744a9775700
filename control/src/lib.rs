//! `ringside-control`: the control plane and the owner of PostgreSQL, Ringside's system of record.
//!
//! The edge keeps no database connection; live games touch only Redis. This service does what needs a
//! durable owner:
//! - **hosts and API keys** ([`auth`]): a host proves who they are with a key made by
//!   `ringside-control host create` (printed once, only its SHA-256 kept);
//! - **the quiz library** ([`store`], [`catalog`]): quizzes are private to their owner or public; a public
//!   quiz is also published to Redis (`quiz:{id}`), the catalog the edge's `room:create` reads, so only
//!   public quizzes can be hosted without a key;
//! - **room creation** ([`api`]): loads the quiz (private ones straight from PostgreSQL into the room,
//!   never into the catalog), calls the room-creation function, records the game;
//! - **results kept exactly once** ([`writer`]): each ended game announces itself in its partition's
//!   `results:{pNN}` stream; the writer exports the game from Redis and stores it in one transaction
//!   with the game's `results_stored_at`, then acknowledges the entry;
//! - **history and export** ([`api`], [`csv`]).
//!
//! Module map: [`config`] flags · [`db`] pool and migrations · [`error`] API errors (JSON, stable codes)
//! · [`metrics`] Prometheus text · [`ops`] the ops page's read-only endpoint.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod csv;
pub mod db;
pub mod error;
pub mod metrics;
pub mod ops;
pub mod store;
pub mod writer;
