//! Per-thread state of a worker: its registry of open sockets, a coarse clock, the scratch read
//! buffer shared by all of its sockets, and the once-a-second sweep that sends pings, closes idle
//! sockets and aborts sockets stuck in closing — one timer per thread instead of one per socket.
//!
//! Also the cross-thread [`Shutdown`] signal that starts a graceful drain on every worker.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::conn::ConnHandle;
use crate::server::ServerShared;
use crate::ws::frame::{self, Opcode};
use ringside_protocol::CloseCode;

/// Sockets a worker must have had before a halving counts as a mass disconnect.
const MASS_DISCONNECT_MIN: usize = 1024;

/// How long a drain waits for aborted sockets to end after its deadline.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Size of the per-thread scratch buffer every socket reads into.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// One worker thread's context, shared (`Rc`) by its tasks.
pub struct Worker {
    pub index: usize,
    pub shared: Arc<ServerShared>,
    started: Instant,
    /// Seconds since the worker started, advanced by the sweep (cheap to read per frame).
    clock: Cell<u32>,
    registry: RefCell<Registry>,
    scratch: RefCell<Vec<u8>>,
    /// Pre-encoded ping frame, shared by every socket.
    pub ping_frame: Bytes,
    /// Most sockets open since the allocator was last asked to return memory (see `sweep`).
    peak_open: Cell<usize>,
    next_id: Cell<u64>,
    /// Connections in their preamble (TLS, request head, a plain HTTP answer or `/api/` forwarding):
    /// not sockets yet, but a drain lets them finish (bounded by its deadline).
    preambles: Cell<usize>,
}

/// Open sockets of this thread: a slab of handles with a free list.
#[derive(Default)]
struct Registry {
    slots: Vec<Option<ConnHandle>>,
    free: Vec<u32>,
    count: usize,
}

impl Worker {
    pub fn new(index: usize, shared: Arc<ServerShared>) -> Rc<Self> {
        Rc::new(Worker {
            index,
            shared,
            started: Instant::now(),
            clock: Cell::new(0),
            registry: RefCell::default(),
            scratch: RefCell::new(Vec::new()),
            ping_frame: frame::encode(Opcode::Ping, b""),
            peak_open: Cell::new(0),
            next_id: Cell::new(0),
            preambles: Cell::new(0),
        })
    }

    /// A connection entered (`+1`) or left (`-1`) its preamble.
    pub fn preamble(&self, delta: isize) {
        self.preambles
            .set(self.preambles.get().saturating_add_signed(delta));
    }

    /// Coarse seconds since the worker started.
    #[inline]
    pub fn now(&self) -> u32 {
        self.clock.get()
    }

    fn tick(&self) {
        self.clock.set(self.started.elapsed().as_secs() as u32);
    }

    /// A process-unique connection id: worker index in the top 16 bits.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_id.get() + 1;
        self.next_id.set(n);
        ((self.index as u64) << 48) | n
    }

    /// Borrows the scratch buffer (a nested borrower gets a fresh one).
    pub fn take_scratch(&self) -> Vec<u8> {
        let v = std::mem::take(&mut *self.scratch.borrow_mut());
        if v.len() == SCRATCH_SIZE {
            v
        } else {
            vec![0; SCRATCH_SIZE]
        }
    }

    pub fn put_scratch(&self, v: Vec<u8>) {
        *self.scratch.borrow_mut() = v;
    }

    pub fn register(&self, h: &ConnHandle) {
        let mut r = self.registry.borrow_mut();
        let slot = match r.free.pop() {
            Some(s) => {
                r.slots[s as usize] = Some(h.clone());
                s
            }
            None => {
                r.slots.push(Some(h.clone()));
                (r.slots.len() - 1) as u32
            }
        };
        r.count += 1;
        h.set_slot(slot);
    }

    pub fn unregister(&self, h: &ConnHandle) {
        let mut r = self.registry.borrow_mut();
        let slot = h.slot() as usize;
        if r.slots
            .get(slot)
            .and_then(|s| s.as_ref())
            .is_some_and(|x| x.id() == h.id())
        {
            r.slots[slot] = None;
            r.free.push(slot as u32);
            r.count -= 1;
        }
    }

    /// Open sockets on this thread.
    pub fn open_count(&self) -> usize {
        self.registry.borrow().count
    }

    /// Handles of every open socket on this thread (a snapshot; cheap `Rc` clones).
    pub fn connections(&self) -> Vec<ConnHandle> {
        self.registry
            .borrow()
            .slots
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Runs `f` on every open socket of this thread without allocating. `f` must not open or
    /// close sockets synchronously (sending and requesting a close are fine: they only queue).
    pub fn for_each_connection(&self, mut f: impl FnMut(&ConnHandle)) {
        let r = self.registry.borrow();
        for h in r.slots.iter().flatten() {
            f(h);
        }
    }

    /// The once-a-second sweep: pings, idle timeouts, stuck closes, and freeing the buffers of
    /// drained send queues.
    fn sweep(&self) {
        self.tick();
        let now = self.now();
        let cfg = &self.shared.config;
        let ping = cfg.ping_interval.as_secs().max(1) as u32;
        let idle = cfg.idle_timeout.as_secs().max(1) as u32;
        let close_to = cfg.close_timeout.as_secs().max(1) as u32;
        self.return_memory_after_mass_disconnect();
        crate::sys::allocator_collect_light();
        self.for_each_connection(|h| {
            if let Some(since) = h.closing_since() {
                if now.saturating_sub(since) >= close_to {
                    h.abort();
                }
                return;
            }
            h.release_idle_queue();
            let quiet = now.saturating_sub(h.last_rx());
            if quiet >= idle {
                h.close(CloseCode::IdleTimeout.code(), "idle timeout");
            } else if quiet >= ping && now.saturating_sub(h.last_ping()) >= ping {
                h.send_ping(&self.ping_frame, now);
            }
        });
    }

    /// Once at least half of ≥ 1024 sockets went away since the last time, asks the allocator to
    /// return this thread's free pages to the OS, so RSS follows the socket count down (otherwise
    /// an idle worker keeps its peak; perf/edge.md). Rare by construction: it needs a halving.
    fn return_memory_after_mass_disconnect(&self) {
        let open = self.open_count();
        let peak = self.peak_open.get().max(open);
        if peak >= MASS_DISCONNECT_MIN && open <= peak / 2 {
            if open == 0 {
                // Nothing left: give back the buffers sized for the peak too (the registry's slab
                // and free list, the scratch buffer), so an emptied worker is back at its start.
                let mut r = self.registry.borrow_mut();
                r.slots = Vec::new();
                r.free = Vec::new();
                *self.scratch.borrow_mut() = Vec::new();
            }
            crate::sys::allocator_collect();
            self.peak_open.set(open);
        } else {
            self.peak_open.set(peak);
        }
    }

    /// The sweep task; runs until the worker stops.
    pub async fn run_sweeper(self: Rc<Self>) {
        loop {
            monoio::time::sleep(Duration::from_secs(1)).await;
            self.sweep();
        }
    }

    /// Graceful drain of this thread: close 1012 to every socket, then wait until all are gone or
    /// the deadline passes. Sockets still open at the deadline are aborted, and their tasks end
    /// the normal way (unregistered, `connections_open` decremented, the session's `on_close`),
    /// instead of being dropped with the runtime.
    pub async fn drain(&self, deadline: Instant) {
        self.for_each_connection(|h| h.close(CloseCode::ServiceRestart.code(), "service restart"));
        // HTTP requests in flight (a /readyz probe, an /api/ call) are answered too.
        while (self.open_count() > 0 || self.preambles.get() > 0) && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.open_count() == 0 {
            return;
        }
        tracing::warn!(
            worker = self.index,
            open = self.open_count(),
            "drain deadline passed; aborting sockets"
        );
        self.for_each_connection(ConnHandle::abort);
        // An aborted task ends at its next poll (no I/O to wait for); bound the wait anyway.
        let grace = Instant::now() + ABORT_GRACE;
        while self.open_count() > 0 && Instant::now() < grace {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.open_count() > 0 {
            tracing::warn!(
                worker = self.index,
                open = self.open_count(),
                "sockets did not end after abort; dropping them with the runtime"
            );
        }
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
