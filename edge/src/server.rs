//! The accept loop: thread-per-core, one monoio runtime per pinned worker thread, each with its own
//! listener on the same port (SO_REUSEPORT, set explicitly), so the kernel spreads connections
//! over threads — and over processes, when `--processes` runs several copies on one port.
//!
//! Runtime: `RuntimeBuilder::<FusionDriver>` by default (io_uring when the kernel allows it, epoll
//! otherwise; the choice is logged per worker), with 4096 ring entries (SQ 4096 × 64 B + CQ
//! 8192 × 16 B ≈ 384 KiB per thread; in-flight PollAdds do not hold SQ entries once submitted).
//!
//! Graceful shutdown happens here: [`ServerHandle::drain`] (SIGTERM in `main`) marks the process
//! draining (`/readyz` → 503), fires the cross-thread [`Shutdown`] so every worker leaves its
//! accept loop and closes its listener, then each worker sends close 1012 to its sockets and exits
//! when they are all gone or at `--drain-timeout`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context as _;

use crate::admission::Admission;
use crate::config::{Config, Driver};
use crate::conn::{self, Thread};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::SessionFactory;
use crate::shared::ServerShared;
use crate::worker::Worker;
use crate::ws::handshake::HandshakePolicy;

/// A running edge (all worker threads of this process).
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<ServerShared>,
    threads: Vec<JoinHandle<()>>,
    drivers: Vec<&'static str>,
}

/// Starts draining a server from another thread (e.g. a signal thread).
#[derive(Clone)]
pub struct Drainer(Arc<ServerShared>);

impl Drainer {
    pub fn drain(&self) {
        start_drain(&self.0);
    }
}

fn start_drain(shared: &ServerShared) {
    shared.start_drain();
}

impl ServerHandle {
    /// The bound address (the real port when `--listen` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Admission control's gauges, thresholds and refusal counts.
    pub fn admission(&self) -> &Admission {
        &self.shared.admission
    }

    /// The driver each worker runs: "io_uring" or "epoll".
    pub fn drivers(&self) -> &[&'static str] {
        &self.drivers
    }

    /// Stop accepting, close 1012 to every socket; workers exit when empty or at the deadline.
    pub fn drain(&self) {
        start_drain(&self.shared);
    }

    pub fn drainer(&self) -> Drainer {
        Drainer(self.shared.clone())
    }

    /// Waits for every worker thread to exit (after a drain).
    pub fn join(mut self) {
        self.join_threads();
    }

    fn join_threads(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            start_drain(&self.shared);
            self.join_threads();
        }
    }
}

/// Binds one listener per worker on the same address with SO_REUSEPORT. With port 0 the first
/// bind picks the port and the others reuse it.
fn bind_listeners(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        s.set_reuse_address(true)?;
        // Explicit: several threads and processes share the port on purpose.
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())
            .with_context(|| format!("binding {addr}"))?;
        s.listen(4096)?;
        let l: std::net::TcpListener = s.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// Starts the workers. Returns once every worker has its runtime and listener.
pub fn start(config: Config, factory: Arc<dyn SessionFactory>) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    let tls = config
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?;
    let listeners = bind_listeners(config.listen, config.threads)?;
    let addr = listeners[0].local_addr()?;
    let policy = HandshakePolicy {
        allowed_origins: config.allowed_origins.clone(),
        require_subprotocol: !config.echo,
        max_header_bytes: config.max_header_bytes,
    };
    let admission = Admission::new(
        config.admission.clone(),
        config.threads,
        factory.upstream_gauge(),
        crate::sys::open_fd_count().unwrap_or(0),
        crate::sys::nofile_soft_limit().unwrap_or(0),
    );
    let shared = Arc::new(ServerShared::new(config, policy, tls, admission));
    crate::http::spawn_metrics_listener(&shared)?; // --metrics-listen: this process's own port
    tracing::info!(%addr, threads = shared.config.threads, reuse_port = true, tls = shared.tls.is_some(), echo = shared.config.echo, "edge listening");
    // Worker i of process p runs on the allowed CPUs in turn (sys::worker_cpu); without an affinity
    // mask, on CPUs 0..available_parallelism.
    let allowed = crate::sys::allowed_cpus().unwrap_or_else(|| {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    });
    let process = shared.config.process_index.unwrap_or(0);
    let nthreads = shared.config.threads;
    let mut threads = Vec::new();
    let mut drivers = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let shared2 = shared.clone();
        let factory2 = factory.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::Builder::new()
            .name(format!("edge-w{i}"))
            .spawn({
                let cpu = crate::sys::worker_cpu(&allowed, process, nthreads, i);
                move || worker_main(i, cpu, l, shared2, factory2, tx)
            })?;
        match rx.recv() {
            Ok(Ok(d)) => drivers.push(d),
            Ok(Err(e)) => {
                start_drain(&shared);
                let _ = t.join();
                for t in threads {
                    let _ = JoinHandle::join(t);
                }
                return Err(e);
            }
            Err(_) => anyhow::bail!("worker {i} died while starting"),
        }
        threads.push(t);
    }
    Ok(ServerHandle {
        addr,
        shared,
        threads,
        drivers,
    })
}

type Ready = std::sync::mpsc::Sender<anyhow::Result<&'static str>>;

fn worker_main(
    index: usize,
    cpu: usize,
    listener: std::net::TcpListener,
    shared: Arc<ServerShared>,
    factory: Arc<dyn SessionFactory>,
    ready: Ready,
) {
    if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
        tracing::warn!(worker = index, cpu, error = ?e, "could not pin worker to CPU");
    }
    let driver = shared.config.driver;
    let fut = worker_loop(index, listener, shared, factory, ready.clone());
    let entries = 4096;
    let res = match driver {
        Driver::Fusion => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(fut)),
        Driver::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(fut)),
        Driver::Uring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(fut)),
    };
    if let Err(e) = res {
        let _ = ready.send(Err(anyhow::anyhow!(
            "worker {index}: could not start a monoio runtime with driver {driver:?} (neither io_uring nor epoll usable?): {e}"
        )));
    }
}

/// Which driver a runtime of `driver` really uses on this kernel.
fn driver_name(driver: Driver) -> &'static str {
    match driver {
        Driver::Legacy => "epoll",
        Driver::Uring => "io_uring",
        Driver::Fusion => {
            if monoio::utils::detect_uring() {
                "io_uring"
            } else {
                "epoll"
            }
        }
    }
}

async fn worker_loop(
    index: usize,
    listener: std::net::TcpListener,
    shared: Arc<ServerShared>,
    factory: Arc<dyn SessionFactory>,
    ready: Ready,
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("worker {index}: listener: {e}")));
            return;
        }
    };
    let worker = Worker::new(index, shared.clone());
    let driver = driver_name(shared.config.driver);
    if driver == "io_uring" {
        // before the game layer starts: its inbox and calls wait for the Redis thread through it
        crate::doorbell::install();
    }
    factory.on_worker_start(index);
    let thread = Rc::new(Thread {
        worker,
        registry: Registry::default(),
        factory,
    });
    tracing::info!(worker = index, driver, "worker started");
    let _ = ready.send(Ok(driver));
    let sweeper = thread.clone();
    monoio::spawn(
        thread
            .worker
            .clone()
            .run_loop_clock(move || sweeper.registry.sweep(&sweeper.worker)),
    );
    monoio::spawn(crate::worker::run_deferred_wakes(
        shared.config.fanout_wake_chunk,
    ));
    accept_loop(&thread, &listener).await;
    drop(listener);
    let deadline = Instant::now() + shared.config.drain_timeout;
    thread.registry.drain(&thread.worker, deadline).await;
    crate::worker::release_deferred_wakes();
    tracing::info!(worker = index, "worker stopped");
}

async fn accept_loop(thread: &Rc<Thread>, listener: &monoio::net::TcpListener) {
    let worker = &thread.worker;
    let shutdown = &worker.shared.shutdown;
    loop {
        if shutdown.is_fired() {
            return;
        }
        monoio::select! {
            _ = shutdown.wait(worker.index) => return,
            r = listener.accept() => match r {
                Ok((stream, _peer)) => {
                    let task = conn::serve(thread.clone(), stream);
                    conn::record_task_future_size(std::mem::size_of_val(&task));
                    monoio::spawn(task);
                }
                Err(e) => {
                    // EMFILE/ENFILE: back off instead of spinning; connections wait in the backlog.
                    tracing::warn!(worker = worker.index, error = %e, "accept failed");
                    monoio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}
