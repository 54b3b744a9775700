//! [`ConnHandle`]: a cheap handle to one socket, the game layer's way to send to it, and the state
//! a socket's task shares with its handles (the close stage, the send queue, the waker).
//!
//! It sits below [`session`](crate::session) (the seam trait hands sessions a handle) and
//! [`conn`](crate::conn) (the task that owns the socket), and names neither, so the transport's import
//! graph has no circle (test: `module_graph.rs`).
//!
//! Architecture invariant: no connection state outlives its socket — a handle kept elsewhere (rooms)
//! only refuses sends once the socket's task has ended.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Waker};

use bytes::Bytes;

use crate::admission::{Refusal, Work};
use crate::sendq::{FrameClass, Push, SendQueue};
use crate::worker::Worker;
use crate::ws::frame;
use crate::ws::handshake::Subprotocol;
use ringside_protocol::CloseCode;

/// Where a socket is in the close handshake (server side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Open,
    /// A close was requested (drain, idle, slow consumer, game layer); the task sends it. The
    /// reason is an index into this thread's [`CloseReasons`] (a `&str` here would make every
    /// socket's shared state 16 bytes larger, perf/vs-peers.md).
    Requested {
        code: u16,
        reason: u16,
    },
    /// Our close frame is queued or written, at worker second `since`.
    Sent {
        since: u32,
    },
    /// Give up now (close timed out): drop the socket.
    Aborted,
}

/// The close reasons requested on this thread, interned: [`Stage::Requested`] keeps an index, not
/// a `&'static str`. Every caller passes a literal, so the table holds one entry per distinct reason
/// (a handful) and a lookup is a short scan, made once per requested close.
pub(crate) struct CloseReasons;

thread_local! {
    static CLOSE_REASONS: std::cell::RefCell<Vec<&'static str>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

impl CloseReasons {
    /// The index of `reason` (added when new).
    pub(crate) fn intern(reason: &'static str) -> u16 {
        CLOSE_REASONS.with(|t| {
            let mut t = t.borrow_mut();
            match t.iter().position(|r| *r == reason) {
                Some(i) => i as u16,
                None => {
                    t.push(reason);
                    (t.len() - 1) as u16
                }
            }
        })
    }

    /// The reason interned as `index` on this thread ("" if unknown).
    pub(crate) fn get(index: u16) -> &'static str {
        CLOSE_REASONS.with(|t| t.borrow().get(index as usize).copied().unwrap_or(""))
    }
}

/// State shared between a socket's task and its [`ConnHandle`]s.
pub(crate) struct ConnShared {
    pub(crate) id: u64,
    pub(crate) subprotocol: Subprotocol,
    pub(crate) stage: Cell<Stage>,
    pub(crate) queue: RefCell<SendQueue>,
    pub(crate) waker: Cell<Option<Waker>>,
    /// Worker second the peer last showed it is there: bytes received from it, or (the sweep's
    /// keepalive) its TCP acknowledgement of every byte of a frame written to it.
    pub(crate) last_rx: Cell<u32>,
    pub(crate) last_ping: Cell<u32>,
    /// Sweeps (seconds) since a frame was last queued for this socket, saturating: the sweep's test
    /// of whether a due ping may wait for the next frame (only on a socket the game writes to).
    pub(crate) tx_quiet: Cell<u8>,
    /// The last write found the kernel send buffer full (the client is not keeping up): only
    /// then do newer droppable frames supersede queued ones.
    pub(crate) backed_up: Cell<bool>,
    /// A frame was queued with [`ConnHandle::send_held`] and no wake has been asked for since: a
    /// fan-out's frame queued behind it must ask for one (the queue is not empty, yet no wake is
    /// pending). May stay set after the writer flushed for another reason (costs one spare wake).
    pub(crate) held: Cell<bool>,
    /// Index in the worker's registry.
    pub(crate) slot: Cell<u32>,
    /// The socket's fd, for the sweep's [`ConnHandle::all_acked`]; open while the socket is in the
    /// registry (its task owns it and unregisters before it closes it).
    fd: std::os::fd::RawFd,
    pub(crate) worker: Rc<Worker>,
}

/// When a queued frame's writer is woken.
#[derive(Clone, Copy)]
enum Wake {
    /// At once ([`ConnHandle::send`]).
    Now,
    /// In its turn among the thread's fan-out writers, if the queue was empty ([`ConnHandle::send_fanout`]).
    Deferred,
    /// Not now ([`ConnHandle::send_held`]).
    Held,
}

/// Why [`ConnHandle::send`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("connection is closing or closed")]
    Closed,
    #[error("send queue passed its hard limit; closing with 4008")]
    SlowConsumer,
}

/// How a socket ended, for [`Session::on_close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code the peer sent (`Some(None)`: a close frame without a code).
    pub received: Option<Option<u16>>,
    /// The close code the server sent.
    pub sent: Option<u16>,
}

/// A cheap (`Rc`) handle to one socket, usable from anywhere on the socket's worker thread.
///
/// Frames are encoded once with [`crate::ws::frame::encode`] and the same `Bytes` is passed to
/// every handle of a fan-out.
#[derive(Clone)]
pub struct ConnHandle(pub(crate) Rc<ConnShared>);

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle")
            .field("id", &self.0.id)
            .field("stage", &self.0.stage.get())
            .finish()
    }
}

impl ConnHandle {
    pub(crate) fn new(
        worker: Rc<Worker>,
        subprotocol: Subprotocol,
        fd: std::os::fd::RawFd,
    ) -> Self {
        let now = worker.now();
        ConnHandle(Rc::new(ConnShared {
            id: worker.next_conn_id(),
            subprotocol,
            stage: Cell::new(Stage::Open),
            queue: RefCell::new(SendQueue::new()),
            waker: Cell::new(None),
            last_rx: Cell::new(now),
            last_ping: Cell::new(now),
            tx_quiet: Cell::new(0),
            backed_up: Cell::new(false),
            held: Cell::new(false),
            slot: Cell::new(u32::MAX),
            fd,
            worker,
        }))
    }

    /// Process-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The negotiated subprotocol (decides text vs binary frames for the game layer).
    pub fn subprotocol(&self) -> Subprotocol {
        self.0.subprotocol
    }

    /// Whether frames are still accepted (no close requested or sent).
    pub fn is_open(&self) -> bool {
        self.0.stage.get() == Stage::Open
    }

    /// Unwritten bytes queued for this socket.
    pub fn queued_bytes(&self) -> usize {
        self.0.queue.borrow().bytes()
    }

    /// The index of the worker thread that owns this socket.
    pub fn worker_index(&self) -> usize {
        self.0.worker.index
    }

    /// Queues an encoded server frame. Past the hard limit the socket is closed with 4008 and
    /// counted in `slow_consumer_closes_total`.
    pub fn send(&self, frame: Bytes, class: FrameClass) -> Result<(), SendError> {
        self.push(frame, class, Wake::Now)
    }

    /// [`send`](Self::send) for a fan-out: the socket's writer is woken in its turn among this
    /// thread's other fan-out writers ([`crate::worker::defer_wake`]), so that a burst to every
    /// socket of a room leaves the event loop free, between chunks, to read answers and write
    /// replies. A later [`send`](Self::send) to the same socket wakes it at once (its frames go out
    /// in queue order either way).
    pub fn send_fanout(&self, frame: Bytes, class: FrameClass) -> Result<(), SendError> {
        self.push(frame, class, Wake::Deferred)
    }

    /// Queues a frame without waking the socket's writer, so that it leaves in one write with the
    /// frame that follows it (a player's leaderboard with the player's own result). It goes out with
    /// the next frame sent with [`send`](Self::send) (which wakes at once) or
    /// [`send_fanout`](Self::send_fanout) (in its turn), or at [`release`](Self::release); the caller
    /// must make sure one of them comes, soon.
    pub fn send_held(&self, frame: Bytes, class: FrameClass) -> Result<(), SendError> {
        self.push(frame, class, Wake::Held)
    }

    /// Wakes the socket's writer in its turn among this thread's fan-out writers (as
    /// [`send_fanout`](Self::send_fanout) does): what [`send_held`](Self::send_held) queued leaves.
    pub fn release(&self) {
        let s = &*self.0;
        s.held.set(false);
        if s.queue.borrow().is_empty() {
            return;
        }
        if let Some(w) = s.waker.take() {
            crate::worker::defer_wake(w.clone());
            s.waker.set(Some(w));
        }
    }

    fn push(&self, frame: Bytes, class: FrameClass, wake: Wake) -> Result<(), SendError> {
        let s = &*self.0;
        if s.stage.get() != Stage::Open {
            return Err(SendError::Closed);
        }
        let metrics = &s.worker.shared.metrics;
        let mut q = s.queue.borrow_mut();
        let was_empty = q.is_empty();
        match q.push_with(
            frame,
            class,
            &s.worker.shared.config.sendq,
            s.backed_up.get(),
        ) {
            Push::Queued => {}
            Push::Replaced => {
                metrics
                    .dropped_superseded_frames_total
                    .fetch_add(1, Relaxed);
            }
            Push::Overflow => {
                metrics.slow_consumer_closes_total.fetch_add(1, Relaxed);
                q.discard_unstarted();
                drop(q);
                s.stage.set(Stage::Requested {
                    code: CloseCode::SlowConsumer.code(),
                    reason: CloseReasons::intern("slow consumer"),
                });
                self.wake();
                return Err(SendError::SlowConsumer);
            }
        }
        drop(q);
        match wake {
            // Also when frames were queued before: their writer may wait for a deferred (or no) wake.
            Wake::Now => self.wake(),
            Wake::Deferred if was_empty || s.held.get() => {
                s.held.set(false);
                // The waker stays in place, so a later direct send still wakes the task at once.
                let w = s.waker.take();
                if let Some(w) = w {
                    crate::worker::defer_wake(w.clone());
                    s.waker.set(Some(w));
                }
            }
            Wake::Deferred => {}
            Wake::Held => s.held.set(true),
        }
        Ok(())
    }

    /// Whether `frames` more frames of `bytes` in all would keep this socket's send queue within
    /// half of its hard limit: the test before queueing a burst at once (a reconnect's replay, a
    /// catch-up from the room log), which would otherwise close a client with 4008 before it could
    /// read any of it. Callers send a snapshot instead.
    pub fn has_room_for(&self, frames: usize, bytes: usize) -> bool {
        let lim = &self.0.worker.shared.config.sendq;
        let q = self.0.queue.borrow();
        q.len() + frames <= lim.max_frames / 2 && q.bytes() + bytes <= lim.max_bytes / 2
    }

    /// Admission control for a new session on this socket (`room:join`, `room:create`): refused
    /// (and counted) while the edge is past a threshold (module [`admission`](crate::admission)).
    pub fn admit_session(&self) -> Result<(), Refusal> {
        let w = &self.0.worker;
        w.shared.admission.admit(Work::Join, &w.load)
    }

    /// The reconnect policy for `session:ack`: `(delayMs, jitterMs)`, the jitter window growing
    /// with the edge's load.
    pub fn reconnect_policy(&self) -> (u64, u64) {
        let w = &self.0.worker;
        w.shared.admission.reconnect_policy(&w.load)
    }

    /// `session:ack`'s `pingInterval` in ms: how often the client should send the app `ping`
    /// (`--app-ping-interval`).
    pub fn app_ping_interval_ms(&self) -> u32 {
        let ms = self.0.worker.shared.config.app_ping_interval.as_millis();
        u32::try_from(ms).unwrap_or(u32::MAX)
    }

    /// Encodes and queues a reliable text frame.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send(frame::encode_text(text), FrameClass::Reliable)
    }

    /// Encodes and queues a reliable binary frame.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), SendError> {
        self.send(frame::encode_binary(data), FrameClass::Reliable)
    }

    /// Starts the close handshake with `code` (sent after frames already queued).
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.0.stage.get() == Stage::Open {
            self.0.stage.set(Stage::Requested {
                code,
                reason: CloseReasons::intern(reason),
            });
            self.wake();
        }
    }

    /// Frees the send queue's buffer if nothing is queued (the once-a-second sweep: an idle
    /// socket keeps no queue memory, a busy one is not re-allocating per frame), and counts the
    /// sweeps since a frame was last queued: the queue holds a buffer only if one was, since the last
    /// sweep freed it. Returns that count.
    pub(crate) fn sweep_queue(&self) -> u8 {
        let s = &*self.0;
        let used = match s.queue.try_borrow_mut() {
            Ok(mut q) => !q.is_empty() || q.release_if_empty(),
            Err(_) => true,
        };
        let quiet = if used {
            0
        } else {
            s.tx_quiet.get().saturating_add(1)
        };
        s.tx_quiet.set(quiet);
        quiet
    }

    pub(crate) fn abort(&self) {
        self.0.stage.set(Stage::Aborted);
        self.wake();
    }

    /// Queues the keepalive ping. `ride`: it waits, unwoken, for the socket's next frame and leaves
    /// in that frame's write (a socket the game writes to every few seconds gets its ping for free);
    /// the sweep writes it alone when nothing came to carry it ([`Registry::sweep`](crate::registry::Registry::sweep)).
    /// Returns whether it was queued.
    pub(crate) fn send_ping(&self, ping: &Bytes, now: u32, ride: bool) -> bool {
        self.0.last_ping.set(now);
        let wake = if ride { Wake::Held } else { Wake::Now };
        self.push(ping.clone(), FrameClass::Control, wake).is_ok()
    }

    /// Whether `frame` (the same buffer) waits in the queue, not yet started.
    pub(crate) fn has_unsent(&self, frame: &Bytes) -> bool {
        self.0.queue.borrow().has_unsent(frame)
    }

    pub(crate) fn closing_since(&self) -> Option<u32> {
        match self.0.stage.get() {
            Stage::Sent { since } => Some(since),
            _ => None,
        }
    }

    pub(crate) fn last_rx(&self) -> u32 {
        self.0.last_rx.get()
    }

    /// Whether everything queued for this socket is written and its peer's TCP stack has
    /// acknowledged every byte (no queued frame, `SIOCOUTQ` 0). Only for a registered socket (the
    /// sweep): its fd is open.
    pub(crate) fn all_acked(&self) -> bool {
        self.0.queue.try_borrow().is_ok_and(|q| q.is_empty())
            && crate::sys::unacked_bytes(self.0.fd).is_ok_and(|n| n == 0)
    }

    /// The peer showed it is there at worker second `at` (see [`ConnShared::last_rx`]).
    pub(crate) fn heard_at(&self, at: u32) {
        if at > self.0.last_rx.get() {
            self.0.last_rx.set(at);
        }
    }

    pub(crate) fn last_ping(&self) -> u32 {
        self.0.last_ping.get()
    }

    pub(crate) fn slot(&self) -> u32 {
        self.0.slot.get()
    }

    pub(crate) fn set_slot(&self, s: u32) {
        self.0.slot.set(s);
    }

    pub(crate) fn wake(&self) {
        self.0.held.set(false);
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
    }

    /// Whether the task has something to do without I/O readiness.
    pub(crate) fn has_work(&self, write_blocked: bool) -> bool {
        matches!(self.0.stage.get(), Stage::Requested { .. } | Stage::Aborted)
            || (!write_blocked && !self.0.queue.borrow().is_empty())
    }

    pub(crate) fn park(&self, cx: &Context<'_>) {
        let w = self.0.waker.take();
        match w {
            Some(w) if w.will_wake(cx.waker()) => self.0.waker.set(Some(w)),
            _ => self.0.waker.set(Some(cx.waker().clone())),
        }
    }
}

/// Size in bytes of the shared per-connection state (for the ≤ 1 KiB idle budget).
pub const fn shared_state_size() -> usize {
    std::mem::size_of::<ConnShared>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket holds one `ConnShared` in an `Rc`: at ≤ 112 B its allocation stays in mimalloc's
    /// 128 B bin (perf/vs-peers.md, "Memory per socket"), which needs `Stage` at 8 B.
    #[test]
    fn shared_state_stays_small() {
        assert!(
            shared_state_size() <= 112,
            "ConnShared is {} B",
            shared_state_size()
        );
        assert_eq!(std::mem::size_of::<Stage>(), 8);
    }

    /// A requested close keeps its reason's text.
    #[test]
    fn close_reasons_intern() {
        let a = CloseReasons::intern("idle timeout");
        let b = CloseReasons::intern("kicked");
        assert_eq!(CloseReasons::intern("idle timeout"), a);
        assert_ne!(a, b);
        assert_eq!(CloseReasons::get(a), "idle timeout");
        assert_eq!(CloseReasons::get(b), "kicked");
    }
}
