//! Process-wide state every worker thread reads: the configuration, the counters, the handshake
//! policy, the TLS config, the admission gauges, and the drain flag with its cross-thread
//! [`Shutdown`] signal.
//!
//! It sits below the modules that use it (`worker`, `conn`, `http`, `server`) and names none of them:
//! probes read it as a value, and the session factory is held by each worker thread instead, so the
//! transport's import graph has no circle (test: `module_graph.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::admission::Admission;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ws::handshake::HandshakePolicy;

/// Process-wide state shared by every worker thread.
pub struct ServerShared {
    pub config: Config,
    pub metrics: Metrics,
    pub policy: HandshakePolicy,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub shutdown: Shutdown,
    /// The saturation gauges and thresholds of admission control.
    pub admission: Admission,
    draining: AtomicBool,
}

impl ServerShared {
    pub fn new(
        config: Config,
        policy: HandshakePolicy,
        tls: Option<Arc<rustls::ServerConfig>>,
        admission: Admission,
    ) -> Self {
        ServerShared {
            shutdown: Shutdown::new(config.threads),
            config,
            metrics: Metrics::new(),
            policy,
            tls,
            admission,
            draining: AtomicBool::new(false),
        }
    }

    /// Whether a drain has started.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks the process draining (`/readyz` → 503) and fires [`Shutdown`]. Idempotent.
    pub fn start_drain(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            tracing::info!("draining: closing listeners, sending close 1012 to every socket");
        }
        self.shutdown.fire();
    }
}

/// A cross-thread "stop accepting and drain" signal. Each worker waits in its own waker slot.
#[derive(Debug)]
pub struct Shutdown {
    fired: AtomicBool,
    wakers: Mutex<Vec<Option<Waker>>>,
}

impl Shutdown {
    pub fn new(workers: usize) -> Self {
        Shutdown {
            fired: AtomicBool::new(false),
            wakers: Mutex::new(vec![None; workers]),
        }
    }

    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self
            .wakers
            .lock()
            .expect("not poisoned")
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Resolves once [`Shutdown::fire`] was called.
    pub fn wait(&self, worker: usize) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.is_fired() {
                return Poll::Ready(());
            }
            self.wakers.lock().expect("not poisoned")[worker] = Some(cx.waker().clone());
            if self.is_fired() {
                return Poll::Ready(());
            }
            Poll::Pending
        })
    }
}
