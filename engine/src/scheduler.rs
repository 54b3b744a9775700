//! The in-memory timer queue of one engine instance: every schedule of every owned partition, in a
//! binary heap by due instant, fired by spawned tasks at the due time.
//!
//! One task owns all the state and is driven by [`SchedMsg`]s: partitions owned and dropped (from
//! the lease loop), schedules read (from the partition readers), and fire reports (from the fire
//! tasks). A fire runs as its own task so that a slow reply never delays the next due timer; at most
//! `max_in_flight` run at once, and of them at most `max_score_in_flight` `score` fires (a reveal's
//! scoring, ms of Redis each): due ones past that wait in `score_waiting` and go back to the heap at
//! their own due time, so the oldest take the slots first, as slots free. A score fire that runs
//! longer than [`SCORE_SLOT_HOLD`] (a node that stopped answering) gives its slot back and runs on.
//!
//! Lifecycle of one schedule: *waiting* in the heap → *in flight* (FCALL, then XACK+XDEL) → forgotten;
//! or, for a periodic one whose function says continue, back to *waiting* at the next tick (its
//! entry stays pending in the consumer group until the function says stop, so a takeover resumes
//! it). A failed call goes back to *waiting* with exponential backoff; a fire whose ack failed
//! retries only the ack.
//!
//! Heap entries are never removed in place: each carries a token, and an entry whose token no longer
//! matches its timer (re-armed, dropped) is skipped when popped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringside_protocol::keys::PARTITIONS;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::fire::{self, FireResult};
use crate::redis_conn::{is_function_missing, is_nogroup, is_transient};
use crate::schedule::{EntryId, Kind, Partition, Schedule};
use crate::Shared;
use ringside_lua::TimerKind;

/// A fire that the function rejects with an error, or whose task panics, this many times goes to the
/// dead-letter stream.
const MAX_FAILED_ATTEMPTS: u32 = 5;
/// How long a schedule is remembered after it was done, so a late duplicate delivery is ignored.
const REMEMBER_DONE: Duration = Duration::from_secs(60);
const REMEMBER_DONE_MAX: usize = 500_000;
/// How often timers parked on a lapsed lease are checked again.
const LEASE_RECHECK: Duration = Duration::from_millis(50);

type Key = (Partition, EntryId);

/// Messages to the scheduler task.
#[derive(Debug)]
pub enum SchedMsg {
    /// This instance now holds partition `p`'s lease; schedules of `epoch` are accepted.
    Own { p: Partition, epoch: u64 },
    /// Schedules read from `p`'s stream (`claimed`: taken over from another consumer's pending list,
    /// or our own pending list after a reconnect).
    Schedules {
        p: Partition,
        epoch: u64,
        items: Vec<Schedule>,
        claimed: bool,
    },
    /// Forget `p`'s timers of `epoch`; answer `done` once its in-flight fires have finished.
    Drop {
        p: Partition,
        epoch: u64,
        done: Option<oneshot::Sender<()>>,
    },
    /// A fire task finished.
    Report(Report),
    /// A `score` fire has run for [`SCORE_SLOT_HOLD`]: its score slot is free (the fire is not done).
    ScoreSlotFree,
    /// Exit once nothing is in flight.
    Stop,
}

/// The result of one fire task.
#[derive(Debug)]
pub struct Report {
    key: Key,
    /// A `score` fire still counted in `score_in_flight` (false once its slot was given back early).
    score: bool,
    epoch: u64,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    /// Acknowledged (or dead-lettered): forget it.
    Done,
    /// Periodic and continuing: next tick at this due time (`None`: one period later).
    Rearm { next_due_ms: Option<i64> },
    /// The call failed; try again after a backoff. `counts`: the function itself rejected it, or the
    /// fire task panicked (a few of those and the schedule is dead-lettered).
    Retry { counts: bool },
    /// Fired, but the ack failed: only ack next time (after a backoff).
    AckRetry,
}

struct Timer {
    sched: Arc<Schedule>,
    epoch: u64,
    /// The due time of the next fire (the schedule's, or the current tick's).
    tick_due_ms: i64,
    token: u64,
    in_flight: bool,
    ack_only: bool,
    /// Times the function rejected it or its fire task panicked.
    attempts: u32,
    /// Consecutive failures of any kind (the backoff).
    failures: u32,
}

struct HeapEntry {
    when: Instant,
    token: u64,
    key: Key,
}

impl PartialEq for HeapEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.token) == (other.when, other.token)
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.when, self.token).cmp(&(other.when, other.token))
    }
}

/// The scheduler's state (see the module docs).
pub struct Scheduler {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<SchedMsg>,
    timers: HashMap<Key, Timer>,
    heap: BinaryHeap<Reverse<HeapEntry>>,
    next_token: u64,
    owned_epoch: Vec<Option<u64>>,
    in_flight: Vec<u32>,
    in_flight_total: usize,
    score_in_flight: usize,
    /// Due `score` fires held back by `max_score_in_flight`: (key, token, due), in the order held.
    score_waiting: VecDeque<(Key, u64, Instant)>,
    drop_waiters: Vec<Vec<oneshot::Sender<()>>>,
    done: HashSet<Key>,
    done_order: VecDeque<(Instant, Key)>,
    /// Due timers of partitions whose lease is momentarily not valid (renewal late, Redis away):
    /// held here, not spun through the heap, until the lease is valid again or the partition dropped.
    parked: Vec<Vec<Key>>,
    parked_count: usize,
    last_unpark: Instant,
    stopping: bool,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>, tx: mpsc::UnboundedSender<SchedMsg>) -> Scheduler {
        let n = PARTITIONS as usize;
        Scheduler {
            shared,
            tx,
            timers: HashMap::new(),
            heap: BinaryHeap::new(),
            next_token: 1,
            owned_epoch: vec![None; n],
            in_flight: vec![0; n],
            in_flight_total: 0,
            score_in_flight: 0,
            score_waiting: VecDeque::new(),
            drop_waiters: (0..n).map(|_| Vec::new()).collect(),
            done: HashSet::new(),
            done_order: VecDeque::new(),
            parked: (0..n).map(|_| Vec::new()).collect(),
            parked_count: 0,
            last_unpark: Instant::now(),
            stopping: false,
        }
    }

    /// The scheduler task: runs until [`SchedMsg::Stop`] and nothing is in flight.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<SchedMsg>) {
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        loop {
            self.unpark();
            let saturated = self.fire_due();
            if self.stopping && self.in_flight_total == 0 {
                break;
            }
            let mut wake = match self.heap.peek() {
                Some(Reverse(top)) if !saturated => tokio::time::Instant::from_std(top.when),
                _ => far(),
            };
            if self.parked_count > 0 {
                wake = wake.min(tokio::time::Instant::from_std(
                    self.last_unpark + LEASE_RECHECK,
                ));
            }
            if sleep.deadline() != wake {
                sleep.as_mut().reset(wake);
            }
            tokio::select! {
                biased;
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    // Take what else is queued, but not forever: due timers come first.
                    for _ in 0..1024 {
                        match rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                }
                _ = &mut sleep => {}
            }
            self.shared
                .metrics
                .timers_pending
                .store(self.timers.len() as i64, Ordering::Relaxed);
        }
        debug!("scheduler stopped");
    }

    fn push(&mut self, key: Key, when: Instant) {
        let token = self.next_token;
        self.next_token += 1;
        if let Some(t) = self.timers.get_mut(&key) {
            t.token = token;
        }
        self.heap.push(Reverse(HeapEntry { when, token, key }));
    }

    /// Starts every due fire. Returns true when it stopped at the in-flight limit. Held-back `score`
    /// fires go back to the heap first, at their own due time, so they take the free score slots
    /// before score fires that became due after them.
    fn fire_due(&mut self) -> bool {
        loop {
            self.readmit_scores();
            let saturated = self.fire_due_heap();
            if saturated || self.score_free() == 0 || self.score_waiting.is_empty() {
                return saturated;
            }
        }
    }

    fn score_free(&self) -> usize {
        self.shared
            .config
            .max_score_in_flight
            .saturating_sub(self.score_in_flight)
    }

    /// Puts as many held-back `score` fires back in the heap as there are free score slots, each with
    /// its token and due time; one whose timer was dropped, re-armed or re-read meanwhile (another
    /// token) is forgotten: its current heap entry, if any, stands.
    fn readmit_scores(&mut self) {
        let mut free = self.score_free();
        while free > 0 {
            let Some((key, token, when)) = self.score_waiting.pop_front() else {
                return;
            };
            if self
                .timers
                .get(&key)
                .is_some_and(|t| t.token == token && !t.in_flight)
            {
                self.heap.push(Reverse(HeapEntry { when, token, key }));
                free -= 1;
            }
        }
    }

    fn fire_due_heap(&mut self) -> bool {
        let now = Instant::now();
        let max = self.shared.config.max_in_flight;
        while let Some(Reverse(top)) = self.heap.peek() {
            if top.when > now {
                break;
            }
            if self.in_flight_total >= max {
                return true;
            }
            let Reverse(entry) = self.heap.pop().expect("peeked");
            let Some(timer) = self.timers.get(&entry.key) else {
                continue;
            };
            if timer.token != entry.token || timer.in_flight {
                continue;
            }
            // An ack-only retry of a score fire calls no function: it takes no score slot.
            let score = timer.sched.kind == Kind::Known(TimerKind::Score) && !timer.ack_only;
            if score && self.score_free() == 0 {
                self.score_waiting
                    .push_back((entry.key, entry.token, entry.when));
                continue;
            }
            let p = entry.key.0;
            if !self.shared.leases.is_valid(p) {
                // Renewal late, or the partition is being dropped: hold the fire, never lose it.
                self.parked[p as usize].push(entry.key);
                self.parked_count += 1;
                continue;
            }
            let timer = self.timers.get_mut(&entry.key).expect("checked");
            timer.in_flight = true;
            if !timer.ack_only {
                let late = now.saturating_duration_since(entry.when).as_micros() as u64;
                self.shared.metrics.record_dispatch_us(late);
            }
            let job = Job {
                key: entry.key,
                score,
                epoch: timer.epoch,
                sched: timer.sched.clone(),
                tick_due_ms: timer.tick_due_ms,
                ack_only: timer.ack_only,
                attempts: timer.attempts,
            };
            self.in_flight[p as usize] += 1;
            self.in_flight_total += 1;
            self.score_in_flight += usize::from(score);
            self.shared
                .metrics
                .fires_in_flight
                .fetch_add(1, Ordering::Relaxed);
            tokio::spawn(run_job(self.shared.clone(), self.tx.clone(), job));
        }
        false
    }

    /// Every `LEASE_RECHECK`, puts parked timers of partitions whose lease is valid again back in
    /// the heap, due now.
    fn unpark(&mut self) {
        if self.parked_count == 0 || self.last_unpark.elapsed() < LEASE_RECHECK {
            return;
        }
        let now = Instant::now();
        self.last_unpark = now;
        for p in 0..self.parked.len() {
            if self.parked[p].is_empty() || !self.shared.leases.is_valid(p as Partition) {
                continue;
            }
            let keys = std::mem::take(&mut self.parked[p]);
            self.parked_count -= keys.len();
            for key in keys {
                if self.timers.contains_key(&key) {
                    self.push(key, now);
                }
            }
        }
    }

    fn handle(&mut self, msg: SchedMsg) {
        match msg {
            SchedMsg::Own { p, epoch } => self.owned_epoch[p as usize] = Some(epoch),
            SchedMsg::Schedules {
                p,
                epoch,
                items,
                claimed,
            } => self.add(p, epoch, items, claimed),
            SchedMsg::Drop { p, epoch, done } => {
                if self.owned_epoch[p as usize] == Some(epoch) {
                    self.owned_epoch[p as usize] = None;
                }
                self.timers.retain(|k, t| k.0 != p || t.epoch != epoch);
                self.parked_count -= self.parked[p as usize].len();
                self.parked[p as usize].clear();
                if let Some(done) = done {
                    if self.in_flight[p as usize] == 0 {
                        let _ = done.send(());
                    } else {
                        self.drop_waiters[p as usize].push(done);
                    }
                }
            }
            SchedMsg::Report(report) => self.report(report),
            SchedMsg::ScoreSlotFree => {
                self.score_in_flight -= 1;
                self.shared
                    .metrics
                    .score_slots_released_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            SchedMsg::Stop => self.stopping = true,
        }
    }

    fn add(&mut self, p: Partition, epoch: u64, items: Vec<Schedule>, claimed: bool) {
        if self.owned_epoch[p as usize] != Some(epoch) {
            return; // a reader of a partition we no longer own
        }
        self.forget_old_done();
        let metrics = self.shared.metrics.clone();
        let now_ms = self.shared.clock.now_ms();
        for sched in items {
            let key = (p, sched.id);
            if self.timers.contains_key(&key) || self.done.contains(&key) {
                continue;
            }
            metrics
                .timers_received_total
                .fetch_add(1, Ordering::Relaxed);
            if claimed {
                metrics.timers_claimed_total.fetch_add(1, Ordering::Relaxed);
            } else {
                let lag_ms = (now_ms - sched.id.ms as i64).max(0) as u64;
                metrics.record_lag_us(lag_ms * 1000);
            }
            let tick_due_ms = first_tick(&sched, now_ms);
            let when = self.shared.clock.instant_of(tick_due_ms);
            self.timers.insert(
                key,
                Timer {
                    sched: Arc::new(sched),
                    epoch,
                    tick_due_ms,
                    token: 0,
                    in_flight: false,
                    ack_only: false,
                    attempts: 0,
                    failures: 0,
                },
            );
            self.push(key, when);
        }
    }

    fn report(&mut self, report: Report) {
        let p = report.key.0 as usize;
        self.in_flight[p] -= 1;
        self.in_flight_total -= 1;
        if report.score {
            self.score_in_flight -= 1;
        }
        self.shared
            .metrics
            .fires_in_flight
            .fetch_sub(1, Ordering::Relaxed);
        if self.in_flight[p] == 0 {
            for done in self.drop_waiters[p].drain(..) {
                let _ = done.send(());
            }
        }
        let Some(timer) = self.timers.get_mut(&report.key) else {
            return;
        };
        if timer.epoch != report.epoch {
            return;
        }
        timer.in_flight = false;
        let now = Instant::now();
        match report.outcome {
            Outcome::Done => {
                self.timers.remove(&report.key);
                self.done.insert(report.key);
                self.done_order.push_back((now, report.key));
            }
            Outcome::Rearm { next_due_ms } => {
                let now_ms = self.shared.clock.now_ms();
                let next = next_tick(&timer.sched, timer.tick_due_ms, next_due_ms, now_ms);
                timer.tick_due_ms = next;
                timer.attempts = 0;
                timer.failures = 0;
                self.shared
                    .metrics
                    .timers_rearmed_total
                    .fetch_add(1, Ordering::Relaxed);
                let when = self.shared.clock.instant_of(next);
                self.push(report.key, when);
            }
            Outcome::Retry { counts } => {
                if counts {
                    timer.attempts += 1;
                }
                let delay = retry_delay(timer.failures);
                timer.failures += 1;
                self.push(report.key, now + delay);
            }
            Outcome::AckRetry => {
                timer.ack_only = true;
                let delay = retry_delay(timer.failures);
                timer.failures += 1;
                self.push(report.key, now + delay);
            }
        }
    }

    fn forget_old_done(&mut self) {
        let now = Instant::now();
        while let Some((at, key)) = self.done_order.front() {
            if now.duration_since(*at) < REMEMBER_DONE && self.done_order.len() <= REMEMBER_DONE_MAX
            {
                break;
            }
            self.done.remove(key);
            self.done_order.pop_front();
        }
    }
}

/// The due time of a schedule's first fire once it is in memory. A periodic schedule whose first
/// tick is past (a takeover, a slow read) resumes at its latest tick not in the future — fired at
/// once — and keeps its phase; missed ticks in between are not replayed (progress is a throttled
/// snapshot, only the latest one matters).
pub fn first_tick(sched: &Schedule, now_ms: i64) -> i64 {
    match sched.every_ms {
        Some(every) if sched.due_ms < now_ms => {
            sched.due_ms + (now_ms - sched.due_ms) / every * every
        }
        _ => sched.due_ms,
    }
}

/// The next tick after the one due at `tick_due_ms`: the function's word if it gave one, else one
/// period later — or, if that is already past (the fire was very late), the first tick after now.
pub fn next_tick(sched: &Schedule, tick_due_ms: i64, told: Option<i64>, now_ms: i64) -> i64 {
    if let Some(next) = told {
        return next;
    }
    let every = sched.every_ms.unwrap_or(1000);
    let next = tick_due_ms + every;
    if next >= now_ms {
        next
    } else {
        tick_due_ms + ((now_ms - tick_due_ms) / every + 1) * every
    }
}

struct Job {
    key: Key,
    score: bool,
    epoch: u64,
    sched: Arc<Schedule>,
    tick_due_ms: i64,
    ack_only: bool,
    attempts: u32,
}

/// The fire function's `bad_timer` refusal: a malformed entry that no retry can fix.
fn is_bad_timer(e: &redis::RedisError) -> bool {
    e.code() == Some("bad_timer")
}

fn retry_delay(attempts: u32) -> Duration {
    Duration::from_millis(25u64 << attempts.min(7)).min(Duration::from_secs(2))
}

/// How long a `score` fire keeps its score slot. One still running after this (a hung or failing
/// Redis node: a call waits up to its 5 s timeout) gives the slot back and runs on within
/// `--max-in-flight` only, so that a node that stops answering holds up the scoring of rooms on the
/// other nodes for at most this long. A healthy node scores a room in a few ms.
pub const SCORE_SLOT_HOLD: Duration = Duration::from_secs(1);

async fn run_job(shared: Arc<Shared>, tx: mpsc::UnboundedSender<SchedMsg>, job: Job) {
    let mut reporter = Reporter {
        tx,
        key: job.key,
        score: job.score,
        epoch: job.epoch,
        outcome: Outcome::Retry { counts: true },
    };
    let fire = fire_and_ack(&shared, &job);
    reporter.outcome = if job.score {
        let tx = reporter.tx.clone();
        let score = &mut reporter.score;
        hold_slot(fire, SCORE_SLOT_HOLD, || {
            // the slot is back now: the report (even a panicked fire's) must not free it again
            *score = false;
            let _ = tx.send(SchedMsg::ScoreSlotFree);
        })
        .await
    } else {
        fire.await
    };
}

/// Runs `work` to its end; if it is still running after `hold`, calls `release` once, then goes on.
async fn hold_slot<T>(
    work: impl std::future::Future<Output = T>,
    hold: Duration,
    release: impl FnOnce(),
) -> T {
    tokio::pin!(work);
    tokio::select! {
        biased;
        out = &mut work => out,
        _ = tokio::time::sleep(hold) => {
            release();
            work.await
        }
    }
}

/// Sends a fire's report when the fire task ends, so its in-flight slots always come back: with the
/// fire's outcome, or, if the task panicked before it had one, as a retry (after a backoff) that counts
/// as a failed attempt (at the limit the schedule is dead-lettered unfired: `fire_and_ack`).
struct Reporter {
    tx: mpsc::UnboundedSender<SchedMsg>,
    key: Key,
    score: bool,
    epoch: u64,
    outcome: Outcome,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!(
                partition = self.key.0,
                "a fire task panicked; the timer will be retried (dead-lettered after 5 attempts)"
            );
        }
        let outcome = std::mem::replace(&mut self.outcome, Outcome::Retry { counts: true });
        let _ = self.tx.send(SchedMsg::Report(Report {
            key: self.key,
            score: self.score,
            epoch: self.epoch,
            outcome,
        }));
    }
}

async fn fire_and_ack(shared: &Shared, job: &Job) -> Outcome {
    let config = &shared.config;
    let metrics = &shared.metrics;
    let (p, sched) = (job.key.0, &*job.sched);
    let mut conn = shared.conn();
    if !job.ack_only {
        if job.attempts >= MAX_FAILED_ATTEMPTS {
            // Only a fire task that panicked gets here (a rejecting function is dead-lettered at its
            // last attempt, below): a schedule that makes the fire panic every time is not fired again.
            error!(partition = p, id = %sched.id, room = %sched.room, kind = sched.kind.as_str(),
                attempts = job.attempts, "fire task panicked; moving the schedule to the dead-letter stream");
            let reason = format!(
                "fire failed {} times, the last by a panic of the fire task",
                job.attempts
            );
            return dead_letter_job(shared, &mut conn, job, &reason).await;
        }
        match fire::call(&mut conn, &config.fire_function, p, sched, job.tick_due_ms).await {
            Ok(reply) => {
                let drift_us = shared.clock.now_us() - job.tick_due_ms * 1000;
                let result = fire::parse_reply(&reply).unwrap_or_else(|text| {
                    warn!(partition = p, id = %sched.id, reply = %text,
                        "fire function gave a reply this engine does not know; treating it as fired");
                    FireResult::Fired
                });
                if let FireResult::NotYet { retry_in_ms } = result {
                    // Redis's clock is behind our estimate of it: not a fire, so no drift recorded.
                    return Outcome::Rearm {
                        next_due_ms: Some(shared.clock.now_ms() + retry_in_ms.max(1)),
                    };
                }
                metrics.record_drift(drift_us);
                let counter = match result {
                    FireResult::Fired | FireResult::Continue { applied: true } => {
                        &metrics.timers_fired_total
                    }
                    _ => &metrics.timers_stale_total,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let FireResult::Continue { .. } = result {
                    if sched.is_periodic() {
                        return Outcome::Rearm { next_due_ms: None };
                    }
                }
            }
            Err(e) if is_transient(&e) || is_function_missing(&e) => {
                metrics.redis_error();
                debug!(partition = p, id = %sched.id, error = %e, "fire failed; retrying");
                return Outcome::Retry { counts: false };
            }
            Err(e) => {
                metrics.fire_errors_total.fetch_add(1, Ordering::Relaxed);
                // `bad_timer`: the function says this entry can never fire (unknown kind, bad q/gen).
                let never = is_bad_timer(&e);
                if !never && job.attempts + 1 < MAX_FAILED_ATTEMPTS {
                    warn!(partition = p, id = %sched.id, room = %sched.room, kind = sched.kind.as_str(),
                        error = %e, "fire function failed; retrying");
                    return Outcome::Retry { counts: true };
                }
                error!(partition = p, id = %sched.id, room = %sched.room, kind = sched.kind.as_str(),
                    error = %e, "schedule cannot be fired; moving it to the dead-letter stream");
                let reason = if never {
                    format!("{e}")
                } else {
                    format!("fire failed {MAX_FAILED_ATTEMPTS} times: {e}")
                };
                return dead_letter_job(shared, &mut conn, job, &reason).await;
            }
        }
    }
    match fire::ack(&mut conn, p, &config.group, &sched.id.to_string()).await {
        Ok(()) => Outcome::Done,
        // The stream or group is gone (Redis restarted empty): nothing left to acknowledge.
        Err(e) if is_nogroup(&e) => Outcome::Done,
        Err(e) => {
            metrics.redis_error();
            debug!(partition = p, id = %sched.id, error = %e, "ack failed; retrying the ack only");
            Outcome::AckRetry
        }
    }
}

/// Moves the job's schedule to its partition's dead-letter stream (acked there): `Done`, or a retry
/// that does not count when Redis could not be reached.
async fn dead_letter_job(
    shared: &Shared,
    conn: &mut crate::redis_conn::RedisConn,
    job: &Job,
    reason: &str,
) -> Outcome {
    let (p, sched) = (job.key.0, &*job.sched);
    let id = sched.id.to_string();
    let fields = fire::fields_of(sched);
    match fire::dead_letter(conn, p, &shared.config.group, &id, &fields, reason).await {
        Ok(()) => {
            shared
                .metrics
                .timers_dead_total
                .fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        }
        Err(e) => {
            shared.metrics.redis_error();
            debug!(error = %e, "dead-lettering failed; retrying");
            Outcome::Retry { counts: false }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::redis_conn::RedisTarget;
    use crate::schedule::Kind;
    use ringside_lua::TimerKind;

    fn progress(due: i64) -> Schedule {
        Schedule {
            id: EntryId { ms: 1, seq: 0 },
            room: "AB".into(),
            kind: Kind::Known(TimerKind::Progress),
            q: "0".into(),
            gen: "1".into(),
            due_ms: due,
            every_ms: Some(1000),
        }
    }

    #[test]
    fn a_late_periodic_schedule_resumes_at_its_latest_tick_keeping_phase() {
        let s = progress(10_000);
        assert_eq!(first_tick(&s, 9_000), 10_000);
        assert_eq!(first_tick(&s, 12_500), 12_000);
        assert_eq!(first_tick(&s, 12_000), 12_000);
    }

    #[test]
    fn the_next_tick_is_one_period_on_or_the_first_after_now() {
        let s = progress(10_000);
        assert_eq!(next_tick(&s, 10_000, None, 10_004), 11_000);
        assert_eq!(next_tick(&s, 10_000, None, 13_500), 14_000);
        assert_eq!(next_tick(&s, 10_000, Some(10_700), 10_004), 10_700);
    }

    #[test]
    fn retry_delays_grow_and_are_bounded() {
        assert_eq!(retry_delay(0), Duration::from_millis(25));
        assert_eq!(retry_delay(2), Duration::from_millis(100));
        assert_eq!(retry_delay(30), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_fire_task_that_panics_still_reports_so_its_slots_come_back() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let key = (3, EntryId { ms: 7, seq: 1 });
        let task = tokio::spawn(async move {
            let _reporter = Reporter {
                tx,
                key,
                score: true,
                epoch: 9,
                outcome: Outcome::Retry { counts: true },
            };
            panic!("a bug in a fire");
        });
        assert!(task.await.unwrap_err().is_panic());
        let Some(SchedMsg::Report(r)) = rx.recv().await else {
            panic!("no report from the panicked fire task");
        };
        assert_eq!((r.key, r.score, r.epoch), (key, true, 9));
        assert!(matches!(r.outcome, Outcome::Retry { counts: true }));
    }

    /// A schedule whose fire task panicked MAX_FAILED_ATTEMPTS times (the scheduler counts each panic as a
    /// failed attempt) is moved to the dead-letter stream at its next turn, without being fired: a real
    /// redis-server, and no fire function loaded, so a call would fail and come back as a retry.
    #[tokio::test]
    async fn a_schedule_whose_fire_keeps_panicking_is_dead_lettered_not_fired_again() {
        let server = ringside_testkit::RedisServer::start().expect("redis-server");
        let config = Config::for_redis(vec![server.url()], false);
        let target = RedisTarget::new(&config.redis, false).unwrap();
        let conn = target.command_conn().await.unwrap();
        let shared = Shared {
            config,
            target,
            conn: std::sync::RwLock::new(conn),
            clock: Default::default(),
            leases: Default::default(),
            metrics: Arc::new(crate::metrics::Metrics::new(50)),
            status: Default::default(),
        };
        let p = 2;
        let stream = ringside_protocol::keys::timers(p);
        let mut c = shared.conn();
        let _: () = redis::cmd("XADD")
            .arg(&stream)
            .arg("5-1")
            .arg("room")
            .arg("AB")
            .query_async(&mut c)
            .await
            .unwrap();
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(&shared.config.group)
            .arg("0")
            .query_async(&mut c)
            .await
            .unwrap();
        let mut sched = progress(1_000);
        sched.id = EntryId { ms: 5, seq: 1 };
        let job = |attempts| Job {
            key: (p, sched.id),
            score: false,
            epoch: 1,
            sched: Arc::new(sched.clone()),
            tick_due_ms: 1_000,
            ack_only: false,
            attempts,
        };
        // one attempt short: it is fired (and fails: no such function), not dead-lettered
        let fired = fire_and_ack(&shared, &job(MAX_FAILED_ATTEMPTS - 1)).await;
        assert!(matches!(fired, Outcome::Retry { counts: false }));
        let outcome = fire_and_ack(&shared, &job(MAX_FAILED_ATTEMPTS)).await;
        assert!(matches!(outcome, Outcome::Done));
        let dead: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(fire::dead_letter_key(p))
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        let fields = &dead[0].1;
        let reason = fields.iter().position(|f| f == "reason").unwrap() + 1;
        assert!(fields[reason].contains("panic"), "{fields:?}");
        assert_eq!(
            fields[fields.iter().position(|f| f == "id").unwrap() + 1],
            "5-1"
        );
        let left: i64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(left, 0, "the entry leaves the timer stream");
        assert_eq!(shared.metrics.timers_dead_total.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_slot_is_released_once_when_the_work_outlasts_the_hold() {
        let hold = Duration::from_millis(20);
        let mut released = 0;
        let quick = hold_slot(async { 7 }, hold, || released += 1).await;
        assert_eq!((quick, released), (7, 0));
        // work that can only end after the release: it outlasts the hold whatever the machine's load
        let (tx, rx) = oneshot::channel();
        let slow = hold_slot(async { rx.await.unwrap() }, hold, || {
            released += 1;
            tx.send(8).unwrap();
        })
        .await;
        assert_eq!((slow, released), (8, 1));
    }
}
