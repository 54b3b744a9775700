//! Partition leases: which engine instance drives which of the 64 timer partitions.
//!
//! A lease is `lease:{pNN} = <instance id>` with a TTL (`SET … NX PX ttl`), in the partition's own
//! hash slot. The [`LeaseManager`] loop, every `renew_every` (≈ ttl/4):
//! 1. heartbeats its membership (`engine:{members}`, a sorted set scored by expiry, plus each
//!    member's owned count in `engine:{members}:owned`) and reads the live members;
//! 2. renews every lease it holds with a compare-and-`PEXPIRE` script (a lease that vanished — a Redis
//!    restart — is taken again on the spot; one held by someone else is *lost*: its reader stops and
//!    its timers leave memory at once);
//! 3. sheds leases above its fair share `ceil(64 / members)` — a few per tick, only while some live
//!    member holds less than `floor(64 / members)`, and one held at the ceiling when that is what the
//!    short member needs (`22/22/20` → `22/21/21`) — releasing each gracefully (see below);
//! 4. acquires free partitions while under its share (only up to the floor share while another member
//!    is below it), best-ranked first (rendezvous hashing of instance id and partition, so concurrent
//!    starters pick different partitions). A partition seen
//!    free on two checks in a row is taken even above the share: an unowned partition is worse than
//!    an uneven split.
//!
//! Architecture invariant: an instance fires a partition's timers only while its local view of the
//! lease is valid: `valid_until = renewal sent + ttl − margin`, which ends before the key can expire
//! in Redis. So after a SIGKILL the lease lapses within `ttl`, a survivor takes it on its next tick,
//! and claims every pending entry of the partition (see `reader`).
//!
//! Graceful release (rebalance, SIGTERM): stop the partition's reader, stop starting fires for it,
//! wait for its in-flight fires, then delete the lease (compare-and-delete) so the next owner can take
//! it at once. Its unfired schedules stay pending in the consumer group and are claimed by that owner.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::Script;
use ringside_protocol::keys::{partition_tag, PARTITIONS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::reader;
use crate::schedule::Partition;
use crate::scheduler::SchedMsg;
use crate::Shared;

/// The lease key of a partition.
pub fn lease_key(p: Partition) -> String {
    format!("lease:{}", partition_tag(p))
}

const MEMBERS_KEY: &str = "engine:{members}";
const OWNED_KEY: &str = "engine:{members}:owned";

/// Extend my lease; take it again if it vanished; 0 if someone else holds it.
const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0";

/// Delete my lease, never someone else's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// How many leases one tick may shed (each costs its partition a short pause).
const SHED_PER_TICK: usize = 8;
/// How long a shed partition is not taken back by the instance that shed it.
const SHED_COOLDOWN: Duration = Duration::from_secs(5);

/// The local view of every partition's lease, read by the scheduler before each fire.
#[derive(Debug)]
pub struct LeaseTable {
    base: Instant,
    /// µs since `base` until which the lease is ours; 0 = not ours.
    valid_until: Vec<AtomicU64>,
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable {
            base: Instant::now(),
            valid_until: (0..PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LeaseTable {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64
    }

    /// Whether this instance may fire partition `p` now.
    pub fn is_valid(&self, p: Partition) -> bool {
        let until = self.valid_until[p as usize].load(Ordering::Acquire);
        until != 0 && self.micros(Instant::now()) < until
    }

    fn set(&self, p: Partition, until: Instant) {
        self.valid_until[p as usize].store(self.micros(until).max(1), Ordering::Release);
    }

    fn clear(&self, p: Partition) {
        self.valid_until[p as usize].store(0, Ordering::Release);
    }

    /// Partitions currently held (valid or not yet known lost).
    pub fn owned_count(&self) -> usize {
        self.valid_until
            .iter()
            .filter(|v| v.load(Ordering::Relaxed) != 0)
            .count()
    }
}

struct Owned {
    epoch: u64,
    reader: JoinHandle<()>,
}

/// The lease loop of one engine instance (see the module docs).
pub struct LeaseManager {
    shared: Arc<Shared>,
    sched: mpsc::UnboundedSender<SchedMsg>,
    owned: HashMap<Partition, Owned>,
    cooldown: HashMap<Partition, Instant>,
    free_streak: Vec<u8>,
    next_epoch: u64,
    members: usize,
    ticks: u64,
    renew_script: Script,
    release_script: Script,
    /// Since when the heartbeat has failed without a break (see [`Self::heal_connection`]).
    failing_since: Option<Instant>,
    last_replaced: Option<Instant>,
}

impl LeaseManager {
    pub fn new(shared: Arc<Shared>, sched: mpsc::UnboundedSender<SchedMsg>) -> LeaseManager {
        LeaseManager {
            shared,
            sched,
            owned: HashMap::new(),
            cooldown: HashMap::new(),
            free_streak: vec![0; PARTITIONS as usize],
            next_epoch: 1,
            members: 1,
            ticks: 0,
            renew_script: Script::new(RENEW),
            release_script: Script::new(RELEASE),
            failing_since: None,
            last_replaced: None,
        }
    }

    fn id(&self) -> &str {
        &self.shared.config.instance_id
    }

    fn ttl(&self) -> Duration {
        self.shared.config.lease_ttl
    }

    /// How long our local view of a lease lasts after a renewal is sent: shorter than the TTL, so we
    /// stop firing before Redis can hand the lease to someone else.
    fn validity(&self) -> Duration {
        let ttl = self.ttl();
        ttl - (ttl / 5).max(Duration::from_millis(50)).min(ttl / 2)
    }

    /// Runs until `shutdown` turns true, then releases every lease and returns.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let every = self.shared.config.renew_every;
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Announce ourselves one tick before taking anything, so instances starting together see
        // each other and split the partitions instead of one taking all and shedding half.
        let _ = self.heartbeat().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            self.tick().await;
        }
        self.shutdown().await;
    }

    async fn tick(&mut self) {
        self.ticks += 1;
        match self.heartbeat().await {
            Ok(under) => {
                self.shared
                    .status
                    .lease_healthy
                    .store(true, Ordering::Relaxed);
                self.renew_all().await;
                self.rebalance(under).await;
                self.acquire(under).await;
            }
            Err(e) => {
                self.shared
                    .status
                    .lease_healthy
                    .store(false, Ordering::Relaxed);
                self.shared.metrics.redis_error();
                warn!(error = %e, "engine membership heartbeat failed; renewing leases anyway");
                self.renew_all().await;
                self.heal_connection().await;
            }
        }
        self.shared
            .metrics
            .partitions_owned
            .store(self.owned.len() as i64, Ordering::Relaxed);
        let now = Instant::now();
        self.cooldown.retain(|_, until| *until > now);
    }

    /// After the heartbeat has failed for a while, tries a brand-new shared connection and swaps it in
    /// if it connects. If Redis is down the attempt just fails; if the old connection is wedged (the
    /// cluster client has been seen never to finish recovering after a node restart) this heals it.
    async fn heal_connection(&mut self) {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let wait = (self.ttl() * 3).max(Duration::from_secs(3));
        let recently = self
            .last_replaced
            .is_some_and(|t| now.duration_since(t) < wait * 2);
        if now.duration_since(since) < wait || recently {
            return;
        }
        self.last_replaced = Some(now);
        match self.shared.target.command_conn().await {
            Ok(conn) => {
                warn!(failing_for = ?now.duration_since(since), "replacing the shared Redis connection");
                self.shared.replace_conn(conn);
            }
            Err(e) => debug!(error = %e, "Redis still unreachable"),
        }
    }

    /// Fair share: `ceil(PARTITIONS / members)`.
    fn quota(&self) -> usize {
        (PARTITIONS as usize).div_ceil(self.members.max(1))
    }

    /// Registers this instance, drops expired members, reads how many are live. Returns whether some
    /// live member holds less than `floor(PARTITIONS / members)` (someone wants more).
    async fn heartbeat(&mut self) -> redis::RedisResult<bool> {
        let now_ms = self.shared.clock.now_ms();
        let expires = now_ms + self.ttl().as_millis() as i64;
        let mut conn = self.shared.conn();
        let (members, owned): (Vec<String>, HashMap<String, i64>) = redis::pipe()
            .cmd("ZADD")
            .arg(MEMBERS_KEY)
            .arg(expires)
            .arg(self.id())
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(MEMBERS_KEY)
            .arg("-inf")
            .arg(now_ms)
            .ignore()
            .cmd("HSET")
            .arg(OWNED_KEY)
            .arg(self.id())
            .arg(self.owned.len())
            .ignore()
            .cmd("PEXPIRE")
            .arg(MEMBERS_KEY)
            .arg(60_000)
            .ignore()
            .cmd("PEXPIRE")
            .arg(OWNED_KEY)
            .arg(60_000)
            .ignore()
            .cmd("ZRANGE")
            .arg(MEMBERS_KEY)
            .arg(0)
            .arg(-1)
            .cmd("HGETALL")
            .arg(OWNED_KEY)
            .query_async(&mut conn)
            .await?;
        let stale: Vec<&String> = owned.keys().filter(|k| !members.contains(k)).collect();
        if !stale.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("HDEL")
                .arg(OWNED_KEY)
                .arg(stale)
                .query_async(&mut conn)
                .await;
        }
        if members.len() != self.members {
            info!(members = members.len(), "engine membership changed");
        }
        self.members = members.len().max(1);
        let floor = PARTITIONS as usize / self.members;
        Ok(members
            .iter()
            .filter(|m| m.as_str() != self.id())
            .any(|m| (owned.get(m).copied().unwrap_or(0) as usize) < floor))
    }

    async fn renew_all(&mut self) {
        let ttl_ms = self.ttl().as_millis() as u64;
        let sent = Instant::now();
        let parts: Vec<Partition> = self.owned.keys().copied().collect();
        let futures = parts.iter().map(|&p| {
            let mut conn = self.shared.conn();
            let mut inv = self.renew_script.key(lease_key(p));
            inv.arg(self.id()).arg(ttl_ms);
            async move { inv.invoke_async::<i64>(&mut conn).await }
        });
        let results = join_all(futures).await;
        let until = sent + self.validity();
        for (p, result) in parts.into_iter().zip(results) {
            match result {
                Ok(1) => self.shared.leases.set(p, until),
                Ok(2) => {
                    info!(
                        partition = p,
                        "lease had vanished (Redis restart?); taken again"
                    );
                    self.shared.leases.set(p, until);
                }
                Ok(_) => {
                    warn!(
                        partition = p,
                        "lease lost to another instance; dropping its timers"
                    );
                    self.shared
                        .metrics
                        .lease_lost_total
                        .fetch_add(1, Ordering::Relaxed);
                    self.drop_partition(p);
                }
                Err(e) => {
                    // Keep the old validity: if Redis stays away, it lapses and fires pause.
                    self.shared.metrics.redis_error();
                    debug!(partition = p, error = %e, "lease renewal failed");
                }
            }
        }
    }

    /// Rendezvous rank of a partition for this instance: higher is preferred.
    fn rank(&self, p: Partition) -> u64 {
        let mut h = DefaultHasher::new();
        self.id().hash(&mut h);
        p.hash(&mut h);
        h.finish()
    }

    /// Sheds leases while some live member holds less than the floor share: everything above the
    /// ceiling share (a few per tick), or — when the shares are uneven (64 is not a multiple of the
    /// member count) — one lease held at the ceiling, so that `22/22/20` settles at `22/21/21`.
    async fn rebalance(&mut self, someone_wants_more: bool) {
        let quota = self.quota();
        let floor = PARTITIONS as usize / self.members.max(1);
        let owned = self.owned.len();
        let excess = if owned > quota {
            (owned - quota).min(SHED_PER_TICK)
        } else if owned == quota && quota > floor {
            1
        } else {
            0
        };
        if excess == 0 || !someone_wants_more {
            return;
        }
        let mut mine: Vec<Partition> = self.owned.keys().copied().collect();
        mine.sort_by_key(|&p| self.rank(p));
        let shed: Vec<Partition> = mine.into_iter().take(excess).collect();
        info!(
            ?shed,
            quota,
            owned = self.owned.len(),
            "shedding partitions to rebalance"
        );
        let until = Instant::now() + SHED_COOLDOWN;
        for &p in &shed {
            self.cooldown.insert(p, until);
        }
        self.release(shed).await;
    }

    /// Takes free partitions up to the ceiling share — or only up to the floor share while another
    /// live member is below the floor, so the partitions shed for that member go to it and do not
    /// ping-pong between instances that already hold their floor.
    async fn acquire(&mut self, someone_wants_more: bool) {
        let floor = PARTITIONS as usize / self.members.max(1);
        let quota = if someone_wants_more {
            floor.max(1)
        } else {
            self.quota()
        };
        let mut candidates: Vec<Partition> = (0..PARTITIONS)
            .filter(|p| !self.owned.contains_key(p))
            .collect();
        candidates.sort_by_key(|&p| std::cmp::Reverse(self.rank(p)));
        if self.owned.len() < quota {
            // Under the share we want more, so a partition we shed a moment ago is fair game too
            // (its new holder may just have died: waiting out the cooldown would delay the takeover).
            // Best-ranked first, in rounds of as many as are still wanted: never more than the share.
            let mut rest = candidates.as_slice();
            while !rest.is_empty() && self.owned.len() < quota {
                let want = (quota - self.owned.len()).min(rest.len());
                let (batch, tail) = rest.split_at(want);
                rest = tail;
                self.try_acquire(batch).await;
            }
        } else if self.ticks.is_multiple_of(4) && !candidates.is_empty() {
            // Safety net: take partitions that nobody has held for two checks in a row — but not one
            // we shed ourselves a moment ago (that would undo the rebalance).
            candidates.retain(|p| !self.cooldown.contains_key(p));
            let futures = candidates.iter().map(|&p| {
                let mut conn = self.shared.conn();
                async move {
                    redis::cmd("EXISTS")
                        .arg(lease_key(p))
                        .query_async::<i64>(&mut conn)
                        .await
                }
            });
            let exists = join_all(futures).await;
            let mut take = Vec::new();
            for (&p, e) in candidates.iter().zip(exists) {
                let slot = &mut self.free_streak[p as usize];
                match e {
                    Ok(0) => {
                        *slot = slot.saturating_add(1);
                        if *slot >= 2 {
                            take.push(p);
                        }
                    }
                    _ => *slot = 0,
                }
            }
            if !take.is_empty() {
                info!(?take, "taking partitions nobody holds");
                self.try_acquire(&take).await;
            }
        }
    }

    /// `SET NX PX` on each; starts owning those won. Returns them.
    async fn try_acquire(&mut self, parts: &[Partition]) -> Vec<Partition> {
        let ttl_ms = self.ttl().as_millis() as u64;
        let sent = Instant::now();
        let futures = parts.iter().map(|&p| {
            let mut conn = self.shared.conn();
            let id = self.id().to_owned();
            async move {
                redis::cmd("SET")
                    .arg(lease_key(p))
                    .arg(id)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            }
        });
        let results = join_all(futures).await;
        let until = sent + self.validity();
        let mut won = Vec::new();
        for (&p, r) in parts.iter().zip(results) {
            match r {
                Ok(Some(_)) => {
                    self.start_owning(p, until);
                    won.push(p);
                }
                Ok(None) => {}
                Err(e) => {
                    self.shared.metrics.redis_error();
                    debug!(partition = p, error = %e, "lease acquire failed");
                }
            }
        }
        if !won.is_empty() {
            info!(?won, owned = self.owned.len(), "acquired partitions");
        }
        won
    }

    fn start_owning(&mut self, p: Partition, until: Instant) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.free_streak[p as usize] = 0;
        self.shared.leases.set(p, until);
        // Tell the scheduler first, so the reader's schedules find the partition known.
        let _ = self.sched.send(SchedMsg::Own { p, epoch });
        let reader = tokio::spawn(reader::run(
            self.shared.clone(),
            p,
            epoch,
            self.sched.clone(),
        ));
        self.owned.insert(p, Owned { epoch, reader });
        self.shared
            .metrics
            .lease_acquired_total
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .metrics
            .partitions_owned
            .store(self.owned.len() as i64, Ordering::Relaxed);
    }

    /// Lost: stop at once, nothing to wait for (someone else owns it now).
    fn drop_partition(&mut self, p: Partition) {
        self.shared.leases.clear(p);
        if let Some(owned) = self.owned.remove(&p) {
            owned.reader.abort();
            let _ = self.sched.send(SchedMsg::Drop {
                p,
                epoch: owned.epoch,
                done: None,
            });
        }
    }

    /// Graceful release of several partitions at once (see the module docs).
    async fn release(&mut self, parts: Vec<Partition>) {
        let drain = self.shared.config.drain_timeout;
        let mut waits = Vec::new();
        for p in &parts {
            let Some(owned) = self.owned.remove(p) else {
                continue;
            };
            owned.reader.abort();
            self.shared.leases.clear(*p);
            let (tx, rx) = oneshot::channel();
            let _ = self.sched.send(SchedMsg::Drop {
                p: *p,
                epoch: owned.epoch,
                done: Some(tx),
            });
            waits.push((*p, rx));
        }
        let deletes = waits.into_iter().map(|(p, rx)| {
            let mut conn = self.shared.conn();
            let mut inv = self.release_script.key(lease_key(p));
            inv.arg(self.id());
            async move {
                if tokio::time::timeout(drain, rx).await.is_err() {
                    warn!(
                        partition = p,
                        "in-flight fires did not finish before the drain timeout"
                    );
                }
                (p, inv.invoke_async::<i64>(&mut conn).await)
            }
        });
        for (p, r) in join_all(deletes).await {
            match r {
                Ok(_) => {
                    self.shared
                        .metrics
                        .lease_released_total
                        .fetch_add(1, Ordering::Relaxed);
                    debug!(partition = p, "lease released");
                }
                Err(e) => {
                    // It expires by itself within the TTL.
                    self.shared.metrics.redis_error();
                    warn!(partition = p, error = %e, "lease release failed; it will expire");
                }
            }
        }
        self.shared
            .metrics
            .partitions_owned
            .store(self.owned.len() as i64, Ordering::Relaxed);
    }

    /// SIGTERM: leave the membership first (so the others' share grows at once), then release
    /// everything gracefully.
    async fn shutdown(&mut self) {
        self.shared
            .status
            .lease_healthy
            .store(false, Ordering::Relaxed);
        let mut conn = self.shared.conn();
        let left: redis::RedisResult<()> = redis::pipe()
            .cmd("ZREM")
            .arg(MEMBERS_KEY)
            .arg(self.id())
            .ignore()
            .cmd("HDEL")
            .arg(OWNED_KEY)
            .arg(self.id())
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = left {
            warn!(error = %e, "could not leave the engine membership; it expires by itself");
        }
        let all: Vec<Partition> = self.owned.keys().copied().collect();
        info!(partitions = all.len(), "releasing every lease");
        self.release(all).await;
    }
}
