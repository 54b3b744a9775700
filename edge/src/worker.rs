//! Per-thread state of a worker: a coarse clock, the scratch read buffer shared by all of its
//! sockets, connection ids, the count of connections in their preamble, and its admission gauges
//! (event-loop lag, measured here by a 100 ms timer; queued bytes, summed by the sweep).
//!
//! The registry of the thread's sockets and the once-a-second sweep are in
//! [`registry`](crate::registry), above the [`ConnHandle`](crate::handle::ConnHandle)s they hold; this
//! module names no socket, so a handle can point back to its worker without an import circle.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::admission::{LocalLoad, LAG_TICK};
use crate::shared::ServerShared;

/// Size of the per-thread scratch buffer every socket reads into.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// One worker thread's context, shared (`Rc`) by its tasks.
pub struct Worker {
    pub index: usize,
    pub shared: Arc<ServerShared>,
    started: Instant,
    /// Seconds since the worker started, advanced by the sweep (cheap to read per frame).
    clock: Cell<u32>,
    scratch: RefCell<Vec<u8>>,
    next_id: Cell<u64>,
    /// Connections in their preamble (TLS, request head, a plain HTTP answer or `/api/` forwarding):
    /// not sockets yet, but a drain lets them finish (bounded by its deadline).
    preambles: Cell<usize>,
    /// This thread's admission gauges.
    pub load: LocalLoad,
}

impl Worker {
    pub fn new(index: usize, shared: Arc<ServerShared>) -> Rc<Self> {
        Rc::new(Worker {
            index,
            shared,
            started: Instant::now(),
            clock: Cell::new(0),
            scratch: RefCell::new(Vec::new()),
            next_id: Cell::new(0),
            preambles: Cell::new(0),
            load: LocalLoad::default(),
        })
    }

    /// A connection entered (`+1`) or left (`-1`) its preamble.
    pub fn preamble(&self, delta: isize) {
        self.preambles
            .set(self.preambles.get().saturating_add_signed(delta));
    }

    /// Connections in their preamble.
    pub fn preambles(&self) -> usize {
        self.preambles.get()
    }

    /// Coarse seconds since the worker started.
    #[inline]
    pub fn now(&self) -> u32 {
        self.clock.get()
    }

    /// Advances the coarse clock (the sweep, once a second).
    pub fn tick(&self) {
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

    /// Frees the scratch buffer (the thread has no sockets left).
    pub fn release_scratch(&self) {
        *self.scratch.borrow_mut() = Vec::new();
    }

    /// The event-loop lag timer; runs until the worker stops. Each tick records how late it fired
    /// (a loop busy with other tasks polls the timer late) and publishes the thread's gauges.
    pub async fn run_lag_timer(self: Rc<Self>) {
        let mut due = Instant::now() + LAG_TICK;
        loop {
            monoio::time::sleep_until(due.into()).await;
            let now = Instant::now();
            self.load
                .lag_sample(now.saturating_duration_since(due).as_millis() as u64);
            self.shared.admission.publish(self.index, &self.load);
            due = now + LAG_TICK;
        }
    }
}
