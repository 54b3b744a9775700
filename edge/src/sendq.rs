//! Bounded per-socket send queue of shared, already-encoded frames, with the slow-consumer policy.
//!
//! Every queued frame is a `Bytes` that may be shared with thousands of other sockets (encode once,
//! fan out everywhere); queueing it costs a reference-count bump, never a copy.
//!
//! Policy (DESIGN.md "Delivery"):
//! - [`FrameClass::Droppable`] frames (progress, leaderboard) carry a kind; when the socket is backed
//!   up (its last write found the kernel buffer full), a newer frame of the same kind *supersedes* a
//!   queued older one: the older one is removed and the newer one appended at the tail, so per-room
//!   `seq` order is kept (the old position would put a newer `seq` before frames that were queued
//!   after the old one). A socket that keeps up keeps both ([`SendQueue::push_with`]): in a fan-out
//!   longer than the interval between two progress frames it is not slow, only not yet written.
//! - [`FrameClass::Reliable`] frames (question, reveal, replies) and [`FrameClass::Control`] frames
//!   (ping, pong, close) are never dropped.
//! - Past the hard limit (bytes or frames, `--sendq-max-bytes`, `--sendq-max-frames`) the push is
//!   refused with [`Push::Overflow`]; the connection then discards its queue and closes with
//!   [`CloseCode::SlowConsumer`](ringside_protocol::CloseCode::SlowConsumer) = **4008** ("slow
//!   consumer", private range: the client should reconnect and recover from its last `seq`). A
//!   standard code would hide the cause: 1008 means "you broke a rule" and 1013 "try later".
//!
//! A frame that is partly written to the socket is never replaced or dropped (the bytes on the wire
//! must stay a valid frame stream).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};

/// How a queued frame may be treated when the client is slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// Never dropped: questions, reveals, replies to this client.
    Reliable,
    /// Superseded by a newer frame of the same kind (e.g. 1 = progress, 2 = leaderboard).
    Droppable(u8),
    /// WebSocket control frames (ping, pong, close): never dropped.
    Control,
}

/// Hard limits of one socket's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendQueueLimits {
    pub max_bytes: usize,
    pub max_frames: usize,
}

impl Default for SendQueueLimits {
    fn default() -> Self {
        SendQueueLimits {
            max_bytes: 1024 * 1024,
            max_frames: 1024,
        }
    }
}

/// Result of [`SendQueue::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Queued, and an older frame of the same droppable kind was removed.
    Replaced,
    /// Not queued: the hard limit would be passed. The caller closes the socket (4008).
    Overflow,
}

#[derive(Debug)]
struct Queued {
    data: Bytes,
    class: FrameClass,
}

/// The queue. Empty queues hold no heap memory.
#[derive(Debug, Default)]
pub struct SendQueue {
    frames: VecDeque<Queued>,
    /// Unwritten bytes in the queue. `u32` (the limit is at most [`MAX_QUEUE_BYTES`]): with the
    /// socket's fd it keeps `ConnShared` in mimalloc's 128 B bin (`handle.rs`).
    bytes: u32,
    /// Whether the front frame has been partly written (its `Bytes` was advanced).
    front_started: bool,
}

/// The most a socket's queue may hold, bytes, whatever `--sendq-max-bytes` says (the config refuses
/// more): 1 GiB, far past any sane limit, and within the queue's `u32` count.
pub const MAX_QUEUE_BYTES: usize = 1 << 30;

/// How many frames one vectored write takes at most.
pub const MAX_IOVECS: usize = 64;

/// Every thread's total of queued bytes (one entry per thread that ever queued a frame), summed by
/// [`queued_bytes_total`] for `/metrics`. Each thread writes only its own entry (a plain store, no
/// shared cache line on the fan-out path).
static THREAD_TOTALS: Mutex<Vec<Arc<AtomicI64>>> = Mutex::new(Vec::new());

thread_local! {
    static QUEUED: Arc<AtomicI64> = {
        let a = Arc::new(AtomicI64::new(0));
        THREAD_TOTALS.lock().unwrap_or_else(|e| e.into_inner()).push(a.clone());
        a
    };
}

/// Adds `delta` to this thread's queued bytes.
fn account(delta: i64) {
    if delta != 0 {
        // try_with: a queue dropped while its thread exits (after this slot is gone) is not counted
        let _ = QUEUED.try_with(|q| q.store(q.load(Relaxed) + delta, Relaxed));
    }
}

/// Unwritten bytes in every send queue of this process (the `sendq_bytes` gauge).
pub fn queued_bytes_total() -> i64 {
    THREAD_TOTALS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|a| a.load(Relaxed))
        .sum()
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        account(-i64::from(self.bytes));
    }
}

impl SendQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames queued (including a partly written one).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Unwritten bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Queues `data` under `class`, applying the replacement policy and the hard limit.
    pub fn push(&mut self, data: Bytes, class: FrameClass, limits: &SendQueueLimits) -> Push {
        self.push_with(data, class, limits, true)
    }

    /// [`push`](Self::push), where `supersede: false` keeps an older queued frame of the same
    /// droppable kind: the socket keeps up and its queue only waits for its turn in a long fan-out,
    /// so both frames go out, in order (a client that is not slow sees no `seq` gap).
    pub fn push_with(
        &mut self,
        data: Bytes,
        class: FrameClass,
        limits: &SendQueueLimits,
        supersede: bool,
    ) -> Push {
        let mut replaced = false;
        if let (FrameClass::Droppable(kind), true) = (class, supersede) {
            let skip = usize::from(self.front_started);
            if let Some(i) = self
                .frames
                .iter()
                .skip(skip)
                .position(|q| q.class == FrameClass::Droppable(kind))
            {
                let old = self.frames.remove(i + skip).expect("index in range");
                self.bytes -= old.data.len() as u32;
                account(-(old.data.len() as i64));
                replaced = true;
            }
        }
        if self.bytes as usize + data.len() > limits.max_bytes.min(MAX_QUEUE_BYTES)
            || self.frames.len() + 1 > limits.max_frames
        {
            return Push::Overflow;
        }
        self.bytes += data.len() as u32;
        account(data.len() as i64);
        self.frames.push_back(Queued { data, class });
        if replaced {
            Push::Replaced
        } else {
            Push::Queued
        }
    }

    /// Whether `frame` itself (the same buffer, not equal bytes) is queued and not yet started.
    pub fn has_unsent(&self, frame: &Bytes) -> bool {
        let skip = usize::from(self.front_started);
        self.frames
            .iter()
            .skip(skip)
            .any(|q| q.data.as_ptr() == frame.as_ptr() && q.data.len() == frame.len())
    }

    /// Fills `dst` with slices of the queued frames, front first; returns how many were filled.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (q, slot) in self.frames.iter().zip(dst.iter_mut()) {
            *slot = IoSlice::new(&q.data);
            n += 1;
        }
        n
    }

    /// Marks `written` bytes as sent. Returns how many whole frames were completed.
    pub fn consume(&mut self, mut written: usize) -> usize {
        let mut done = 0;
        let written_queued = written.min(self.bytes as usize) as u32;
        account(-i64::from(written_queued));
        self.bytes -= written_queued;
        while written > 0 {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            if written >= front.data.len() {
                written -= front.data.len();
                self.frames.pop_front();
                self.front_started = false;
                done += 1;
            } else {
                front.data.advance(written);
                self.front_started = true;
                written = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 8 {
            self.frames = VecDeque::new();
        }
        done
    }

    /// Frees the queue's buffer when it is empty (an idle socket then holds no queue memory: a
    /// drained queue otherwise keeps its capacity, 4 × 40 B after the first frame). Returns whether
    /// memory was freed.
    pub fn release_if_empty(&mut self) -> bool {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
            true
        } else {
            false
        }
    }

    /// Discards every frame that has not started going out (used before a slow-consumer close),
    /// keeping a partly written front frame so the stream stays well-formed.
    pub fn discard_unstarted(&mut self) -> usize {
        let keep = usize::from(self.front_started);
        let dropped = self.frames.len().saturating_sub(keep);
        self.frames.truncate(keep);
        let before = self.bytes;
        self.bytes = self.frames.iter().map(|q| q.data.len() as u32).sum();
        account(i64::from(self.bytes) - i64::from(before));
        dropped
    }

    /// Pushes a frame past the limits (a close frame after `discard_unstarted`).
    pub fn push_unbounded(&mut self, data: Bytes, class: FrameClass) {
        self.bytes = self
            .bytes
            .saturating_add(data.len().min(u32::MAX as usize) as u32);
        account(data.len() as i64);
        self.frames.push_back(Queued { data, class });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn contents(q: &SendQueue) -> Vec<String> {
        let mut sl = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.io_slices(&mut sl);
        sl[..n]
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    const LIM: SendQueueLimits = SendQueueLimits {
        max_bytes: 100,
        max_frames: 10,
    };

    /// This thread's entry of the process-wide queued-bytes gauge (tests run on their own threads).
    fn thread_queued() -> i64 {
        QUEUED.with(|q| q.load(Relaxed))
    }

    #[test]
    fn the_queued_bytes_gauge_follows_pushes_replacements_writes_discards_and_drops() {
        let base = thread_queued();
        let mut q = SendQueue::new();
        q.push(b("p1"), FrameClass::Droppable(1), &LIM);
        q.push(b("question"), FrameClass::Reliable, &LIM);
        q.push(b("p22"), FrameClass::Droppable(1), &LIM); // replaces p1
        assert_eq!(thread_queued() - base, q.bytes() as i64);
        q.consume(3); // part of "question"
        assert_eq!(thread_queued() - base, q.bytes() as i64);
        q.push(b("more"), FrameClass::Reliable, &LIM);
        q.discard_unstarted();
        q.push_unbounded(b("close"), FrameClass::Reliable);
        assert_eq!(thread_queued() - base, q.bytes() as i64);
        let mut other = SendQueue::new();
        other.push(b("abc"), FrameClass::Reliable, &LIM);
        assert_eq!(thread_queued() - base, (q.bytes() + 3) as i64);
        drop(q);
        drop(other);
        assert_eq!(thread_queued(), base);
    }

    #[test]
    fn newer_progress_frame_supersedes_the_queued_one_and_goes_to_the_tail() {
        let mut q = SendQueue::new();
        assert_eq!(
            q.push(b("p1"), FrameClass::Droppable(1), &LIM),
            Push::Queued
        );
        assert_eq!(
            q.push(b("question"), FrameClass::Reliable, &LIM),
            Push::Queued
        );
        assert_eq!(
            q.push(b("lb1"), FrameClass::Droppable(2), &LIM),
            Push::Queued
        );
        assert_eq!(
            q.push(b("p2"), FrameClass::Droppable(1), &LIM),
            Push::Replaced
        );
        assert_eq!(contents(&q), vec!["question", "lb1", "p2"]);
        assert_eq!(q.bytes(), 8 + 3 + 2);
    }

    #[test]
    fn without_supersede_a_newer_progress_frame_queues_behind_the_older() {
        let mut q = SendQueue::new();
        q.push(b("p1"), FrameClass::Droppable(1), &LIM);
        assert_eq!(
            q.push_with(b("p2"), FrameClass::Droppable(1), &LIM, false),
            Push::Queued
        );
        assert_eq!(contents(&q), vec!["p1", "p2"]);
        // Once the socket is backed up, the next one replaces the queued older frame.
        assert_eq!(
            q.push(b("p3"), FrameClass::Droppable(1), &LIM),
            Push::Replaced
        );
        assert_eq!(contents(&q), vec!["p2", "p3"]);
    }

    #[test]
    fn reliable_frames_are_never_dropped() {
        let mut q = SendQueue::new();
        for _ in 0..5 {
            assert_eq!(
                q.push(b("reveal"), FrameClass::Reliable, &LIM),
                Push::Queued
            );
        }
        assert_eq!(q.len(), 5);
    }

    #[test]
    fn a_partly_written_frame_is_not_replaced() {
        let mut q = SendQueue::new();
        q.push(b("progress-1"), FrameClass::Droppable(1), &LIM);
        assert_eq!(q.consume(3), 0);
        assert_eq!(
            q.push(b("progress-2"), FrameClass::Droppable(1), &LIM),
            Push::Queued
        );
        assert_eq!(contents(&q), vec!["gress-1", "progress-2"]);
        assert_eq!(q.consume(7), 1);
        assert_eq!(contents(&q), vec!["progress-2"]);
    }

    /// The sweep's test for a ping still waiting: the same buffer, not equal bytes, and not once it
    /// started going out.
    #[test]
    fn has_unsent_finds_the_same_buffer_until_it_starts_going_out() {
        let ping = Bytes::from(b"ping".to_vec());
        let mut q = SendQueue::new();
        q.push(Bytes::from(b"ping".to_vec()), FrameClass::Control, &LIM);
        assert!(!q.has_unsent(&ping), "equal bytes, another buffer");
        q.push(ping.clone(), FrameClass::Control, &LIM);
        assert!(q.has_unsent(&ping));
        assert_eq!(q.consume(4), 1);
        assert!(q.has_unsent(&ping), "the other frame went out");
        assert_eq!(q.consume(1), 0);
        assert!(!q.has_unsent(&ping), "partly written: on its way");
        assert_eq!(q.consume(3), 1);
        assert!(!q.has_unsent(&ping));
    }

    #[test]
    fn hard_limit_on_bytes_and_frames_overflows() {
        let mut q = SendQueue::new();
        assert_eq!(
            q.push(Bytes::from(vec![0u8; 90]), FrameClass::Reliable, &LIM),
            Push::Queued
        );
        assert_eq!(
            q.push(Bytes::from(vec![0u8; 11]), FrameClass::Reliable, &LIM),
            Push::Overflow
        );
        let mut q = SendQueue::new();
        for _ in 0..10 {
            assert_eq!(q.push(b("x"), FrameClass::Reliable, &LIM), Push::Queued);
        }
        assert_eq!(q.push(b("x"), FrameClass::Reliable, &LIM), Push::Overflow);
        // A superseding frame does not count twice against the limit.
        let mut q = SendQueue::new();
        for _ in 0..9 {
            q.push(b("x"), FrameClass::Reliable, &LIM);
        }
        q.push(b("p"), FrameClass::Droppable(1), &LIM);
        assert_eq!(
            q.push(b("p"), FrameClass::Droppable(1), &LIM),
            Push::Replaced
        );
    }

    #[test]
    fn an_emptied_queue_releases_its_buffer_only_when_asked_and_empty() {
        let mut q = SendQueue::new();
        assert!(!q.release_if_empty());
        q.push(b("ack"), FrameClass::Reliable, &LIM);
        assert!(!q.release_if_empty(), "not empty");
        q.consume(3);
        assert!(
            q.frames.capacity() > 0,
            "consume keeps a small buffer for the next burst"
        );
        assert!(q.release_if_empty());
        assert_eq!(q.frames.capacity(), 0);
        assert_eq!(q.push(b("x"), FrameClass::Reliable, &LIM), Push::Queued);
    }

    #[test]
    fn consume_across_frames_and_discard_keeps_started_frame() {
        let mut q = SendQueue::new();
        q.push(b("abc"), FrameClass::Reliable, &LIM);
        q.push(b("defg"), FrameClass::Reliable, &LIM);
        q.push(b("hi"), FrameClass::Reliable, &LIM);
        assert_eq!(q.consume(5), 1);
        assert_eq!(contents(&q), vec!["fg", "hi"]);
        assert_eq!(q.discard_unstarted(), 1);
        assert_eq!(contents(&q), vec!["fg"]);
        assert_eq!(q.bytes(), 2);
        q.push_unbounded(b("close"), FrameClass::Control);
        assert_eq!(q.consume(7), 2);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }
}
