//! `ringside-engine`: drives every time-driven transition of every room (countdown end, question end,
//! progress ticks, next question, lobby flushes, cleanup) by firing the schedules the Redis Functions
//! write into the 64 partition timer streams `timers:{pNN}`.
//!
//! The promise: a schedule is fired at its due time (p99 drift ≤ 10 ms, see `perf/engine.md`), is
//! never lost — not when an engine is SIGKILLed, not when Redis restarts or fails over — and is never
//! applied twice: the fire function is idempotent and the engine acknowledges an entry only after the
//! function's reply is in hand.
//!
//! ```text
//!   lease loop ──(own/drop p)──▶ scheduler ◀──(schedules)── reader p (XREADGROUP BLOCK, own conn)
//!   SET lease:{pNN} NX PX          │ heap by due time         XAUTOCLAIM on takeover
//!   renew / shed / acquire         ▼ at due: spawn
//!                               fire task: FCALL timer_fire 2 room:{pNN}:CODE timers:{pNN} kind q gen
//!                                          then XACK + XDEL (or re-arm a progress tick)
//! ```
//!
//! # Layout
//! - [`config`]: flags and env (`RINGSIDE_ENGINE_*`), validation.
//! - [`redis_conn`]: the engine's connections (`ringside_lua::Redis` with the engine's timeouts, plus
//!   the readers'), a bound on every request, error classes, backoff.
//! - [`schedule`]: a timer-stream entry (kinds by `ringside_lua::TimerKind`) and the stream reply decoders.
//! - [`lease`]: partition leases, membership, fair rebalancing, graceful release.
//! - [`reader`]: one task per owned partition: group, takeover claims, blocking reads, orphan sweep.
//! - [`scheduler`]: the in-memory heap, fire dispatch, retries, periodic re-arming.
//! - [`fire`]: the FCALL, its reply, the ack, the dead-letter stream.
//! - [`clock`]: Redis's clock offset (due times are Redis time).
//! - [`metrics`], [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`bench`]: the drift bench (`ringside-engine bench`), writing `perf/engine.md`'s figures.
//!
//! # Shutdown
//! [`Engine::shutdown`] (SIGTERM in the binary): `/readyz` turns 503, the instance leaves the
//! membership, stops its readers, lets in-flight fires finish (bounded by `--drain-timeout-ms`), deletes
//! its leases so the other instances take the partitions on their next lease tick, and returns. Timers
//! not yet due stay pending in the consumer groups; the new owners claim them.

pub mod bench;
pub mod clock;
pub mod config;
pub mod fire;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod reader;
pub mod redis_conn;
pub mod schedule;
pub mod scheduler;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

pub use config::{Config, EngineArgs};
pub use metrics::Metrics;

use clock::RedisClock;
use lease::{LeaseManager, LeaseTable};
use redis_conn::{Backoff, RedisConn, RedisTarget};
use scheduler::{SchedMsg, Scheduler};

/// What every task shares.
pub struct Shared {
    pub config: Config,
    pub target: RedisTarget,
    /// The shared multiplexed connection for FCALL, acks and leases (see [`Shared::conn`]).
    conn: RwLock<RedisConn>,
    pub clock: Arc<RedisClock>,
    pub leases: LeaseTable,
    pub metrics: Arc<Metrics>,
    pub(crate) status: Arc<Status>,
}

/// Readiness inputs, shared with the HTTP listener (which starts before Redis is reachable).
#[derive(Debug, Default)]
pub(crate) struct Status {
    connected: AtomicBool,
    library_ok: AtomicBool,
    /// Set by the lease loop after each heartbeat.
    pub(crate) lease_healthy: AtomicBool,
    draining: AtomicBool,
}

impl Status {
    fn not_ready_reason(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Some("draining")
        } else if !self.connected.load(Ordering::Relaxed) {
            Some("connecting to Redis")
        } else if !self.library_ok.load(Ordering::Relaxed) {
            Some("waiting for the ringside Functions library")
        } else if !self.lease_healthy.load(Ordering::Relaxed) {
            Some("lease loop cannot reach Redis")
        } else {
            None
        }
    }
}

/// What the HTTP listener reads.
pub struct Observed {
    pub metrics: Arc<Metrics>,
    pub clock: Arc<RedisClock>,
    status: Arc<Status>,
}

impl Observed {
    pub fn is_ready(&self) -> bool {
        self.status.not_ready_reason().is_none()
    }

    pub fn not_ready_reason(&self) -> Option<&'static str> {
        self.status.not_ready_reason()
    }
}

impl Shared {
    /// The shared multiplexed connection for FCALL, acks, claims and leases (a cheap clone).
    pub fn conn(&self) -> RedisConn {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in a fresh shared connection (the lease loop does it when the current one stays broken
    /// while Redis answers a new one).
    pub(crate) fn replace_conn(&self, conn: RedisConn) {
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = conn;
    }

    pub fn is_ready(&self) -> bool {
        self.status.not_ready_reason().is_none()
    }
}

/// Why the engine refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad Redis configuration: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot listen on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The library in Redis is not the one this build was made for.
    #[error("refusing to run: {0}. Deploy the matching ringside library (or engine) first.")]
    Library(ringside_lua::LoadError),
    #[error("shut down before start-up finished")]
    Cancelled,
}

/// A running engine instance.
pub struct Engine {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    lease_task: JoinHandle<()>,
    sched_task: JoinHandle<()>,
    sched_tx: mpsc::UnboundedSender<SchedMsg>,
    http_addr: Option<SocketAddr>,
}

impl Engine {
    /// Connects (retrying until Redis answers or `cancel` turns true), checks the library, and starts
    /// taking partitions.
    pub async fn start(config: Config) -> Result<Engine, StartError> {
        let (_never, cancel) = watch::channel(false);
        Self::start_until(config, cancel).await
    }

    /// [`start`](Self::start), giving up when `cancel` turns true (SIGTERM during start-up).
    pub async fn start_until(
        config: Config,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Engine, StartError> {
        let metrics = Arc::new(Metrics::new(config.late_ms));
        let clock = Arc::new(RedisClock::default());
        let status = Arc::new(Status::default());
        let observed = Arc::new(Observed {
            metrics: metrics.clone(),
            clock: clock.clone(),
            status: status.clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);

        let mut http_addr = None;
        if let Some(addr) = config.http {
            let listener = http::bind(addr)
                .await
                .map_err(|source| StartError::Http { addr, source })?;
            http_addr = listener.local_addr().ok();
            info!(addr = ?http_addr, "http listener (/metrics, /healthz, /readyz)");
            tokio::spawn(http::serve(listener, observed, shutdown_rx.clone()));
        }

        let target = RedisTarget::new(&config.redis, config.cluster)?;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut conn = loop {
            match target.command_conn().await {
                Ok(c) => break c,
                Err(e) => {
                    metrics.redis_error();
                    let delay = backoff.next_delay();
                    warn!(error = %e, ?delay, "cannot connect to Redis yet; retrying");
                    cancellable_sleep(delay, &mut cancel).await?;
                }
            }
        };
        status.connected.store(true, Ordering::Relaxed);

        if config.skip_library_check {
            warn!("library version check skipped (--skip-library-check)");
        } else {
            check_library(&mut conn, config.load_library, &metrics, &mut cancel).await?;
        }
        status.library_ok.store(true, Ordering::Relaxed);

        match clock.sync(&mut conn, 5).await {
            Ok((offset, rtt)) => info!(
                offset_us = offset,
                rtt_us = rtt.as_micros() as u64,
                "Redis clock offset"
            ),
            Err(e) => warn!(error = %e, "could not read Redis's clock; assuming it matches ours"),
        }

        info!(instance = %config.instance_id, redis = ?config.redis, cluster = config.cluster,
            lease_ttl_ms = config.lease_ttl.as_millis() as u64, "engine starting");
        let shared = Arc::new(Shared {
            config,
            target,
            conn: RwLock::new(conn),
            clock,
            leases: LeaseTable::default(),
            metrics,
            status,
        });
        let (sched_tx, sched_rx) = mpsc::unbounded_channel();
        let scheduler = Scheduler::new(shared.clone(), sched_tx.clone());
        let sched_task = tokio::spawn(scheduler.run(sched_rx));
        let leases = LeaseManager::new(shared.clone(), sched_tx.clone());
        let lease_task = tokio::spawn(leases.run(shutdown_rx.clone()));
        tokio::spawn(resync_clock(shared.clone(), shutdown_rx));
        Ok(Engine {
            shared,
            shutdown,
            lease_task,
            sched_task,
            sched_tx,
            http_addr,
        })
    }

    /// The bound HTTP address (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn instance_id(&self) -> &str {
        &self.shared.config.instance_id
    }

    /// Partitions whose lease this instance holds now.
    pub fn partitions_owned(&self) -> usize {
        self.shared.leases.owned_count()
    }

    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    /// Graceful stop (see the crate docs). Returns when every lease is released and nothing is in
    /// flight, or after the drain timeout.
    pub async fn shutdown(self) {
        info!("draining: releasing leases, finishing in-flight fires");
        self.shared.status.draining.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        if let Err(e) = self.lease_task.await {
            error!(error = %e, "lease loop ended abnormally");
        }
        let _ = self.sched_tx.send(SchedMsg::Stop);
        let grace = self.shared.config.drain_timeout + Duration::from_secs(1);
        if tokio::time::timeout(grace, self.sched_task).await.is_err() {
            warn!("scheduler did not stop within the drain timeout");
        }
        info!("engine stopped");
    }
}

async fn cancellable_sleep(
    d: Duration,
    cancel: &mut watch::Receiver<bool>,
) -> Result<(), StartError> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = cancel.wait_for(|c| *c) => Err(StartError::Cancelled),
    }
}

/// Refuses a mismatched library; waits for (or, with `load`, loads) a missing one.
async fn check_library(
    conn: &mut RedisConn,
    load: bool,
    metrics: &Metrics,
    cancel: &mut watch::Receiver<bool>,
) -> Result<(), StartError> {
    use ringside_lua::LoadError;
    let mut lua = conn
        .to_lua()
        .expect("the command connection is never a reader connection");
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let result = if load {
            ringside_lua::ensure_loaded(&mut lua).await.map(|outcome| {
                info!(?outcome, "ringside library ensured");
            })
        } else {
            ringside_lua::check_version(&mut lua).await
        };
        match result {
            Ok(()) => {
                info!(
                    version = ringside_lua::VERSION,
                    "ringside Functions library version checked"
                );
                return Ok(());
            }
            Err(e @ (LoadError::VersionMismatch { .. } | LoadError::BadVersionReply { .. })) => {
                error!(error = %e, "ringside library mismatch");
                return Err(StartError::Library(e));
            }
            Err(e) => {
                if matches!(e, LoadError::Redis(_)) {
                    metrics.redis_error();
                }
                let delay = backoff.next_delay();
                warn!(error = %e, ?delay, "ringside library not usable yet; waiting (not ready meanwhile)");
                cancellable_sleep(delay, cancel).await?;
            }
        }
    }
}

/// Re-estimates Redis's clock offset every 30 s (clocks drift; NTP steps).
async fn resync_clock(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.changed() => return,
        }
        let mut conn = shared.conn();
        if let Err(e) = shared.clock.sync(&mut conn, 3).await {
            shared.metrics.redis_error();
            warn!(error = %e, "clock resync failed");
        }
    }
}
