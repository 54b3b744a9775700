//! Per-thread state of a worker: a coarse clock, the scratch read buffer shared by all of its
//! sockets, connection ids, the count of connections in their preamble, and its admission gauges
//! (event-loop lag, measured here by the loop clock: every 100 ms, every 10 ms while the loop is
//! behind, every second while the thread is idle; queued bytes, summed by the sweep), and the
//! per-thread releaser of a fan-out's deferred wakes ([`run_deferred_wakes`]: a burst to every
//! member of a room wakes their writers in chunks, so the loop reads answers and picks up Redis
//! replies between two chunks instead of after the whole burst).
//!
//! The registry of the thread's sockets and the once-a-second sweep are in
//! [`registry`](crate::registry), above the [`ConnHandle`](crate::handle::ConnHandle)s they hold; this
//! module names no socket, so a handle can point back to its worker without an import circle.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
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

    /// The thread's loop clock; runs until the worker stops. Each tick records how late it fired (a
    /// loop busy with other tasks polls its timer late) in the `loop_lag_seconds` histogram and, at
    /// most once per [`LAG_TICK`], in the admission gauge (published with the thread's queued bytes);
    /// once a second it runs `every_second` (the registry's sweep). Its pace is [`ClockPace`]'s: every
    /// [`LAG_TICK`] while the loop works and keeps time, every [`CLOCK_FAST`] after a late tick, every
    /// [`CLOCK_IDLE`] while the worker is idle.
    pub async fn run_loop_clock(self: Rc<Self>, mut every_second: impl FnMut()) {
        let ticker = Ticker::new();
        let mut pace = ClockPace::new(Instant::now());
        let mut due = Instant::now() + LAG_TICK;
        let mut next_gauge = due;
        let mut next_second = Instant::now() + SECOND;
        // the end of the previous tick's own work: the thread's CPU and the instant
        let mut mark = (crate::sys::thread_cpu_time(), Instant::now());
        loop {
            ticker
                .sleep(due.saturating_duration_since(Instant::now()))
                .await;
            let now = Instant::now();
            let worked = crate::sys::thread_cpu_time().saturating_sub(mark.0);
            let late = now.saturating_duration_since(due);
            crate::metrics::LOOP_LAG.record(late);
            if now >= next_gauge {
                self.load.lag_sample(late.as_millis() as u64);
                self.shared.admission.publish(self.index, &self.load);
                next_gauge = now + LAG_TICK;
            }
            // the next tick is due from this one's wake: a long sweep makes it late, as it delays the loop
            let period = pace.next(now, late, worked, now.saturating_duration_since(mark.1));
            due = now + period;
            if now >= next_second {
                every_second();
                next_second = now + SECOND;
            }
            if period == CLOCK_IDLE {
                // the first slow tick waits only for the next sweep, so no sweep comes late
                due = due.min(next_second);
            }
            mark = (crate::sys::thread_cpu_time(), Instant::now());
        }
    }
}

/// How often the loop clock ticks ([`Worker::run_loop_clock`]). Every [`LAG_TICK`] while the loop
/// works and keeps time; every [`CLOCK_FAST`] for [`CLOCK_FAST_FOR`] after a tick at least
/// [`CLOCK_LATE`] late, so a busy loop's lag is sampled finely; every [`CLOCK_IDLE`] once the thread
/// has been idle (below [`CLOCK_IDLE_PERCENT`] of a core between ticks, and on time) for
/// [`CLOCK_IDLE_AFTER`] ticks in a row. An idle edge then wakes once a second instead of 10 times
/// (those 10 wakes cost ~0.6 ms of CPU a second per worker, perf/vs-peers.md). The price: a worker
/// that goes from idle to busy is sampled at its next tick, up to [`CLOCK_IDLE`] later, and the
/// admission gauge (the least of its last 3 samples) sees it ~0.2 s after that (docs/admission.md).
#[derive(Debug)]
struct ClockPace {
    fast_until: Instant,
    quiet_ticks: u32,
}

impl ClockPace {
    fn new(now: Instant) -> Self {
        ClockPace {
            fast_until: now,
            quiet_ticks: 0,
        }
    }

    /// The period to the next tick, given this tick's lateness and the thread's CPU time `worked`
    /// over the `elapsed` wall time since the previous tick's own work ended.
    fn next(
        &mut self,
        now: Instant,
        late: std::time::Duration,
        worked: std::time::Duration,
        elapsed: std::time::Duration,
    ) -> std::time::Duration {
        if late >= CLOCK_LATE {
            self.fast_until = now + CLOCK_FAST_FOR;
        }
        let quiet =
            late < CLOCK_LATE && worked.as_nanos() * 100 < elapsed.as_nanos() * CLOCK_IDLE_PERCENT;
        self.quiet_ticks = if quiet {
            self.quiet_ticks.saturating_add(1)
        } else {
            0
        };
        if now < self.fast_until {
            CLOCK_FAST
        } else if self.quiet_ticks >= CLOCK_IDLE_AFTER {
            CLOCK_IDLE
        } else {
            LAG_TICK
        }
    }
}

const SECOND: std::time::Duration = std::time::Duration::from_secs(1);

/// What the loop clock waits on: a monotonic `timerfd`, one wake per tick (monoio's timer wheel
/// wakes the thread twice for a sleep of 64 ms or more), or monoio's timer if none can be had.
struct Ticker(Option<monoio::net::UnixStream>);

impl Ticker {
    fn new() -> Self {
        let timer = crate::sys::monotonic_timer().ok().and_then(|fd| {
            monoio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)).ok()
        });
        Ticker(timer)
    }

    /// Waits `d`; true when the `timerfd` ended the wait.
    async fn sleep(&self, d: std::time::Duration) -> bool {
        if let Some(t) = &self.0 {
            if crate::sys::arm_monotonic_timer(t, d).is_ok() && t.readable(false).await.is_ok() {
                return true;
            }
        }
        monoio::time::sleep(d).await;
        false
    }
}

/// The loop clock's period while the loop is behind ([`Worker::run_loop_clock`]).
pub const CLOCK_FAST: std::time::Duration = std::time::Duration::from_millis(10);
/// A tick this late switches the loop clock to [`CLOCK_FAST`]. monoio rounds a timer up to its next
/// 1 ms tick, so an idle loop's ticks are 1–2.5 ms late: the threshold is above that.
pub const CLOCK_LATE: std::time::Duration = std::time::Duration::from_millis(5);
/// How long the loop clock stays fast after a late tick.
pub const CLOCK_FAST_FOR: std::time::Duration = std::time::Duration::from_secs(1);
/// The loop clock's period while the worker is idle ([`ClockPace`]): the sweep's.
pub const CLOCK_IDLE: std::time::Duration = SECOND;
/// Quiet ticks in a row (on time, the thread below [`CLOCK_IDLE_PERCENT`]) before the clock slows to
/// [`CLOCK_IDLE`]: a second at [`LAG_TICK`].
pub const CLOCK_IDLE_AFTER: u32 = 10;
/// The share of a core, in percent, below which the thread counts as idle between two ticks. The
/// tick's own wake is ~0.07 % of a 100 ms period.
pub const CLOCK_IDLE_PERCENT: u128 = 1;

/// Releases the socket-task wakes a fan-out deferred ([`defer_wake`]), `chunk` at a time, and lets
/// the event loop reap its completions once between two chunks: readiness (a player's answer, a
/// `ping`) and replies from the Redis thread (through the doorbell, [`crate::doorbell`]) are then
/// served within one chunk's writes instead of waiting behind the whole burst. `chunk` 0: no
/// deferral (every wake at once). Runs until the worker stops.
pub async fn run_deferred_wakes(chunk: usize) {
    if chunk == 0 {
        return;
    }
    // An always-writable socket: waiting for it is an io_uring PollAdd that completes at once,
    // so the next chunk is released only after the loop has reaped its completions (between two
    // rounds of tasks, or in a park). On io_uring that is not where monoio hands over the wakes of
    // other threads (only in a park): those reach a busy worker through its doorbell
    // (crate::doorbell).
    let Ok((a, b)) = std::os::unix::net::UnixStream::pair() else {
        return;
    };
    let (Ok(a), Ok(_b)) = (
        monoio::net::UnixStream::from_std(a),
        monoio::net::UnixStream::from_std(b),
    ) else {
        return;
    };
    DEFERRED.with(|d| d.running.set(true));
    loop {
        std::future::poll_fn(|cx| {
            DEFERRED.with(|d| {
                if d.wakers.borrow().is_empty() {
                    d.flusher.replace(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
        })
        .await;
        let batch: Vec<Waker> = DEFERRED.with(|d| {
            let mut w = d.wakers.borrow_mut();
            let n = chunk.min(w.len());
            let batch = w.drain(..n).collect();
            if w.is_empty() && w.capacity() > KEEP_DEFERRED_CAPACITY {
                // The burst is released: a room's fan-out grew the queue to one entry per member
                // (16 B each, 512 KiB for 19K members, perf/vs-peers.md); it is not kept until
                // the next one.
                *w = VecDeque::new();
            }
            batch
        });
        for w in batch {
            w.wake();
        }
        if a.writable(false).await.is_err() {
            yield_now().await;
        }
    }
}

/// Capacity of the deferred-wake queue kept after a burst is released (larger: freed).
const KEEP_DEFERRED_CAPACITY: usize = 1024;

/// This thread's deferred wakes (see [`run_deferred_wakes`]).
#[derive(Default)]
struct Deferred {
    /// A releaser runs on this thread (else [`defer_wake`] wakes at once).
    running: Cell<bool>,
    wakers: RefCell<VecDeque<Waker>>,
    flusher: RefCell<Option<Waker>>,
}

thread_local! {
    static DEFERRED: Deferred = Deferred::default();
}

/// Wakes `w` in its turn among this thread's deferred wakes (a fan-out's socket writers), or at
/// once when no releaser runs on this thread.
pub fn defer_wake(w: Waker) {
    let queued = DEFERRED
        .try_with(|d| {
            if !d.running.get() {
                return Err(w);
            }
            let was_empty = d.wakers.borrow().is_empty();
            d.wakers.borrow_mut().push_back(w);
            if was_empty {
                if let Some(f) = d.flusher.borrow_mut().take() {
                    f.wake();
                }
            }
            Ok(())
        })
        .unwrap_or(Ok(()));
    if let Err(w) = queued {
        w.wake();
    }
}

/// Wakes every deferred wake at once and stops deferring on this thread (the worker is stopping:
/// nothing may wait for a releaser that is about to be dropped).
pub fn release_deferred_wakes() {
    let all: Vec<Waker> = DEFERRED
        .try_with(|d| {
            d.running.set(false);
            d.flusher.borrow_mut().take();
            d.wakers.borrow_mut().drain(..).collect()
        })
        .unwrap_or_default();
    for w in all {
        w.wake();
    }
}

/// Completes after every wake deferred before it has been released and the woken tasks have run
/// (a fan-out's writers): how the fan-out rate is measured. Without deferral, after one yield.
pub fn after_deferred_wakes() -> impl Future<Output = ()> {
    let mut queued = false;
    std::future::poll_fn(move |cx| {
        if queued {
            return Poll::Ready(());
        }
        queued = true;
        defer_wake(cx.waker().clone());
        Poll::Pending
    })
}

/// Yields once to let other tasks on this thread run.
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

/// An epoll and (where the kernel allows it) an io_uring runtime with timers, for tests that must
/// hold on both drivers.
#[cfg(test)]
pub(crate) fn test_runtimes() -> (
    monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>,
    Option<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>>,
) {
    let epoll = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime");
    let uring = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .ok();
    (epoll, uring)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every deferred wake is released (in chunks, or at once without a releaser), in the order
    /// they were deferred.
    #[test]
    fn deferred_wakes_are_all_released_in_order() {
        for chunk in [2, 0] {
            let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
                .expect("runtime");
            let order = rt.block_on(async move {
                monoio::spawn(run_deferred_wakes(chunk));
                let order = Rc::new(RefCell::new(Vec::new()));
                for i in 0..5 {
                    let o = order.clone();
                    monoio::spawn(async move {
                        after_deferred_wakes().await;
                        o.borrow_mut().push(i);
                    });
                }
                // Bounded: 2 s at most.
                for _ in 0..2000 {
                    if order.borrow().len() == 5 {
                        break;
                    }
                    monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                order.take()
            });
            release_deferred_wakes();
            assert_eq!(order, vec![0, 1, 2, 3, 4], "chunk {chunk}");
        }
    }

    /// The loop clock's pace: 100 ms while the thread works, 10 ms for a second after a late tick, 1 s
    /// after ten quiet ticks in a row (on time, below 1 % of a core), and back to 100 ms at the first
    /// tick that finds work (1 % or more) or is late.
    #[test]
    fn the_loop_clock_slows_only_while_the_thread_is_idle() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut pace = ClockPace::new(t0);
        let mut now = t0;
        let mut tick =
            |pace: &mut ClockPace, late: Duration, worked: Duration, elapsed: Duration| {
                now += elapsed;
                pace.next(now, late, worked, elapsed)
            };
        // busy: 5 ms of CPU in 100 ms (5 %)
        for _ in 0..20 {
            assert_eq!(tick(&mut pace, ms(1), ms(5), ms(100)), LAG_TICK);
        }
        // quiet: 0.5 ms in 100 ms; the tenth quiet tick slows the clock
        for i in 1..=CLOCK_IDLE_AFTER {
            let want = if i < CLOCK_IDLE_AFTER {
                LAG_TICK
            } else {
                CLOCK_IDLE
            };
            assert_eq!(
                tick(&mut pace, ms(1), Duration::from_micros(500), ms(100)),
                want,
                "quiet tick {i}"
            );
        }
        // idle at 1 s: 5 ms of CPU in a second (0.5 %) keeps it slow; exactly 1 % is work
        assert_eq!(tick(&mut pace, ms(1), ms(5), ms(1000)), CLOCK_IDLE);
        assert_eq!(tick(&mut pace, ms(1), ms(10), ms(1000)), LAG_TICK);
        for _ in 1..CLOCK_IDLE_AFTER {
            assert_eq!(tick(&mut pace, ms(0), Duration::ZERO, ms(100)), LAG_TICK);
        }
        assert_eq!(tick(&mut pace, ms(1), ms(5), ms(1000)), CLOCK_IDLE);
        // work found (20 ms in a second, 2 %): back to 100 ms, and ten quiet ticks again before it slows
        assert_eq!(tick(&mut pace, ms(1), ms(20), ms(1000)), LAG_TICK);
        for _ in 1..CLOCK_IDLE_AFTER {
            assert_eq!(tick(&mut pace, ms(0), Duration::ZERO, ms(100)), LAG_TICK);
        }
        assert_eq!(tick(&mut pace, ms(0), Duration::ZERO, ms(100)), CLOCK_IDLE);
        // a late tick is not quiet, even of an idle thread: nine quiet ticks, a late one, and the
        // first on-time tick after its fast second keeps 100 ms
        let mut pace = ClockPace::new(t0);
        for _ in 1..CLOCK_IDLE_AFTER {
            assert_eq!(tick(&mut pace, ms(0), Duration::ZERO, ms(100)), LAG_TICK);
        }
        assert_eq!(
            tick(&mut pace, CLOCK_LATE, Duration::ZERO, ms(100)),
            CLOCK_FAST
        );
        assert_eq!(
            tick(&mut pace, ms(0), Duration::ZERO, CLOCK_FAST_FOR),
            LAG_TICK
        );
        // a late tick, even of an idle thread (a descheduled VM): 10 ms for a second, then (the thread
        // quiet all along) 1 s
        assert_eq!(
            tick(&mut pace, CLOCK_LATE, Duration::ZERO, ms(1000)),
            CLOCK_FAST
        );
        for _ in 0..(CLOCK_FAST_FOR.as_millis() / CLOCK_FAST.as_millis() - 1) {
            assert_eq!(
                tick(&mut pace, ms(0), Duration::ZERO, CLOCK_FAST),
                CLOCK_FAST
            );
        }
        assert_eq!(
            tick(&mut pace, ms(0), Duration::ZERO, CLOCK_FAST),
            CLOCK_IDLE
        );
    }

    /// The loop clock's ticker waits its whole period every time, on both drivers, through its
    /// `timerfd`: a fired timer's readiness must not end the next wait at once (epoll caches it).
    /// Nothing asserts how soon after the period a wait ends (a loaded machine may be late).
    #[test]
    fn the_ticker_waits_its_period_every_time() {
        fn check<D: monoio::Driver>(mut rt: monoio::Runtime<D>) {
            rt.block_on(async {
                let ticker = Ticker::new();
                assert!(ticker.0.is_some(), "no timerfd");
                for ms in [15u64, 1, 15, 30, 15] {
                    let d = std::time::Duration::from_millis(ms);
                    let started = Instant::now();
                    let waited =
                        monoio::time::timeout(std::time::Duration::from_secs(10), ticker.sleep(d))
                            .await;
                    assert_eq!(
                        waited,
                        Ok(true),
                        "a {ms} ms tick did not end on the timerfd"
                    );
                    assert!(started.elapsed() >= d, "a {ms} ms tick ended early");
                }
            });
        }
        let (epoll, uring) = crate::worker::test_runtimes();
        check(epoll);
        if let Some(rt) = uring {
            check(rt);
        }
    }
}
