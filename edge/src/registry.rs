//! The per-thread registry of open sockets and the once-a-second sweep over it: pings, idle
//! timeouts, sockets stuck in closing, freeing drained send queues, summing queued bytes for
//! admission control — one timer per thread instead of one per socket — and the drain of a thread.

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::handle::ConnHandle;
use crate::worker::Worker;
use crate::ws::frame::{self, Opcode};
use ringside_protocol::CloseCode;

/// Sockets a worker must have had before a halving counts as a mass disconnect.
const MASS_DISCONNECT_MIN: usize = 1024;

/// The longest a due WebSocket ping waits for a game frame to carry it, s: a socket the game writes to
/// every few seconds (a question, its reveal) then gets its keepalive without a write of its own. Only a
/// socket sent a frame within the last as many seconds waits, so a waiting socket hears from the edge
/// again within twice this of its last frame (a silent socket gets its ping at once, as ever).
const PING_RIDE_MAX_SECS: u32 = 5;

/// How long a drain waits for aborted sockets to end after its deadline.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Open sockets of one worker thread: a slab of handles with a free list.
pub struct Registry {
    slab: RefCell<Slab>,
    /// Pre-encoded ping frame, shared by every socket.
    ping_frame: Bytes,
    /// Most sockets open since the allocator was last asked to return memory (see `sweep`).
    peak_open: Cell<usize>,
}

#[derive(Default)]
struct Slab {
    slots: Vec<Option<ConnHandle>>,
    free: Vec<u32>,
    count: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            slab: RefCell::default(),
            ping_frame: frame::encode(Opcode::Ping, b""),
            peak_open: Cell::new(0),
        }
    }
}

impl Registry {
    pub fn register(&self, h: &ConnHandle) {
        let mut r = self.slab.borrow_mut();
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
        let mut r = self.slab.borrow_mut();
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
        self.slab.borrow().count
    }

    /// Handles of every open socket on this thread (a snapshot; cheap `Rc` clones).
    pub fn connections(&self) -> Vec<ConnHandle> {
        self.slab.borrow().slots.iter().flatten().cloned().collect()
    }

    /// Runs `f` on every open socket of this thread without allocating. `f` must not open or
    /// close sockets synchronously (sending and requesting a close are fine: they only queue).
    pub fn for_each_connection(&self, mut f: impl FnMut(&ConnHandle)) {
        let r = self.slab.borrow();
        for h in r.slots.iter().flatten() {
            f(h);
        }
    }

    /// The once-a-second sweep (run by the worker's loop clock, [`Worker::run_loop_clock`]): pings,
    /// idle timeouts, stuck closes, freeing the buffers of drained send queues, and the thread's
    /// queued bytes for admission control.
    pub(crate) fn sweep(&self, worker: &Worker) {
        worker.tick();
        let now = worker.now();
        let cfg = &worker.shared.config;
        let ping = cfg.ping_interval.as_secs().max(1) as u32;
        let idle = cfg.idle_timeout.as_secs().max(1) as u32;
        let close_to = cfg.close_timeout.as_secs().max(1) as u32;
        let ride = ping_ride_secs(ping, idle);
        let metrics = &worker.shared.metrics;
        self.return_memory_after_mass_disconnect(worker);
        crate::sys::allocator_collect_light();
        let mut queued = 0u64;
        self.for_each_connection(|h| {
            queued += h.queued_bytes() as u64;
            if let Some(since) = h.closing_since() {
                if now.saturating_sub(since) >= close_to {
                    h.abort();
                }
                return;
            }
            let tx_quiet = h.sweep_queue();
            let mut quiet = now.saturating_sub(h.last_rx());
            if cfg.keepalive_acks
                && quiet >= ping
                && tx_quiet < u8::MAX
                && u32::from(tx_quiet) + 1 < ping
                && now.saturating_sub(h.last_ping()) >= ping
                && h.last_ping() <= h.last_rx()
            {
                // The client sent nothing for --ping-interval, but the edge wrote to it since, and
                // no ping of ours waits for its pong (a client that does not answer one is judged by
                // that, not by its acknowledgements: else the ping's own ACK would keep it forever).
                if h.all_acked() {
                    // Its TCP stack acknowledged every byte, including a frame queued within the last
                    // `tx_quiet` + 1 sweeps (about as many seconds): it is there, and the path to it
                    // carries traffic both ways. No ping (its pong would cost a read and a wake here,
                    // a write on the phone).
                    h.heard_at(now.saturating_sub(u32::from(tx_quiet) + 1));
                    quiet = now.saturating_sub(h.last_rx());
                    metrics.keepalives_acked_total.fetch_add(1, Relaxed);
                } else if quiet < ping + ride {
                    // Bytes in flight (a frame written a moment ago, its ACK not back yet): look
                    // again at the next sweep, for up to `ride` s; then the ping goes as before.
                    return;
                }
            }
            if quiet >= idle {
                h.close(CloseCode::IdleTimeout.code(), "idle timeout");
            } else if quiet >= ping {
                let since_ping = now.saturating_sub(h.last_ping());
                if ride > 0 && since_ping >= ride && h.has_unsent(&self.ping_frame) {
                    // no frame came to carry it: the ping leaves now (before any new one is due)
                    h.release();
                    metrics.pings_released_total.fetch_add(1, Relaxed);
                } else if since_ping >= ping {
                    // it waits for the next frame only on a socket the game is writing to, so an idle
                    // socket still hears from the edge every --ping-interval
                    let rides = ride > 0 && u32::from(tx_quiet) <= ride;
                    if h.send_ping(&self.ping_frame, now, rides) {
                        metrics.pings_total.fetch_add(1, Relaxed);
                    }
                }
            }
        });
        worker.load.set_queued_bytes(queued);
        worker.shared.admission.publish(worker.index, &worker.load);
    }

    /// Once at least half of ≥ 1024 sockets went away since the last time, asks the allocator to
    /// return this thread's free pages to the OS, so RSS follows the socket count down (otherwise
    /// an idle worker keeps its peak; perf/edge.md). Rare by construction: it needs a halving.
    fn return_memory_after_mass_disconnect(&self, worker: &Worker) {
        let open = self.open_count();
        let peak = self.peak_open.get().max(open);
        if peak >= MASS_DISCONNECT_MIN && open <= peak / 2 {
            if open == 0 {
                // Nothing left: give back the buffers sized for the peak too (the registry's slab
                // and free list, the scratch buffer), so an emptied worker is back at its start.
                let mut r = self.slab.borrow_mut();
                r.slots = Vec::new();
                r.free = Vec::new();
                worker.release_scratch();
            }
            crate::sys::allocator_collect();
            self.peak_open.set(open);
        } else {
            self.peak_open.set(peak);
        }
    }

    /// Graceful drain of this thread: close 1012 to every socket, then wait until all are gone or
    /// the deadline passes. Sockets still open at the deadline are aborted, and their tasks end
    /// the normal way (unregistered, `connections_open` decremented, the session's `on_close`),
    /// instead of being dropped with the runtime.
    pub async fn drain(&self, worker: &Worker, deadline: Instant) {
        self.for_each_connection(|h| h.close(CloseCode::ServiceRestart.code(), "service restart"));
        // HTTP requests in flight (a /readyz probe, an /api/ call) are answered too.
        while (self.open_count() > 0 || worker.preambles() > 0) && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.open_count() == 0 {
            return;
        }
        tracing::warn!(
            worker = worker.index,
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
                worker = worker.index,
                open = self.open_count(),
                "sockets did not end after abort; dropping them with the runtime"
            );
        }
    }
}

/// How long a due WebSocket ping may wait for a frame to ride with (on a socket that was sent a frame in the
/// last as many seconds), s: [`PING_RIDE_MAX_SECS`], at most a
/// quarter of the time between the ping and the idle timeout (the client keeps most of that time to
/// answer) and less than the ping interval (one ping waits at a time); 0, written at once, when
/// either margin is too small.
fn ping_ride_secs(ping: u32, idle: u32) -> u32 {
    (idle.saturating_sub(ping) / 4)
        .min(ping.saturating_sub(1))
        .min(PING_RIDE_MAX_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_rides_only_where_the_client_keeps_time_to_answer() {
        assert_eq!(ping_ride_secs(25, 60), 5, "the defaults");
        assert_eq!(ping_ride_secs(25, 35), 2);
        assert_eq!(ping_ride_secs(1, 3), 0, "a tight idle timeout: at once");
        assert_eq!(ping_ride_secs(1, 60), 0, "a ping every second: at once");
        assert_eq!(ping_ride_secs(3, 11), 2);
        assert_eq!(ping_ride_secs(30, 20), 0, "rejected by the config anyway");
    }
}
