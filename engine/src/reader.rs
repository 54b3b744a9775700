//! The reader of one owned partition's timer stream.
//!
//! On start (a fresh lease), on the shared connection so that overdue schedules fire without waiting
//! for a new connection:
//! 1. `XGROUP CREATE timers:{pNN} <group> 0 MKSTREAM` (an existing group is fine);
//! 2. claims *every* pending entry of the group — the previous owner's unfired and still-ticking
//!    schedules, and our own from a previous life under the same instance id — with `XAUTOCLAIM …
//!    0 0-0` until the cursor comes back to `0-0`. Claiming with min-idle 0 is safe because we hold
//!    the lease: nobody else may fire this partition;
//! 3. then, on a dedicated connection to the partition's node (a blocking read occupies it; named
//!    `ringside-engine-reader-pNN`, see `redis_conn`), loops on
//!    `XREADGROUP … BLOCK <block> STREAMS timers:{pNN} >`, handing each batch to the scheduler. A blocking read per partition is what makes a schedule written 100 ms ahead fire on
//!    time: the engine holds it one round trip after the `XADD` (see `perf/engine.md`).
//!
//! After any error the connection is rebuilt and our own pending list is re-read from `0`
//! (`XREADGROUP … 0`), so an entry delivered into a reply that was lost is not lost with it. `NOGROUP`
//! (Redis restarted empty) recreates the group and claims again.
//!
//! Every couple of seconds the reader also sweeps for entries pending under *other* consumers
//! (`XPENDING` summary, then `XCLAIM`): an instance that lost its lease while its blocked read was
//! still registered can be handed a new entry after we took over; nobody else would ever fire it.
//!
//! Malformed entries go to the dead-letter stream `timers:{pNN}:dead` and are acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use ringside_protocol::keys;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::fire;
use crate::redis_conn::{is_nogroup, Backoff, RedisConn};
use crate::schedule::{
    as_seq, as_text, parse_entries, parse_xreadgroup, Partition, RawEntry, Schedule,
};
use crate::scheduler::SchedMsg;
use crate::Shared;

/// Entries per read or claim.
const BATCH: usize = 1000;
/// How often pending lists of other consumers are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Runs until aborted (the lease loop aborts it when the partition is dropped or released).
pub async fn run(
    shared: Arc<Shared>,
    p: Partition,
    epoch: u64,
    tx: mpsc::UnboundedSender<SchedMsg>,
) {
    let started = Instant::now();
    let mut reader = Reader {
        stream: keys::timers(p),
        shared,
        p,
        epoch,
        tx,
    };
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    // This partition's share of `rooms_live` is counted while this reader runs, and dropped with it.
    let _rooms = RoomsLiveSlot(reader.shared.clone(), p);
    // 1. Take over, on the shared connection: overdue schedules fire without waiting for a new
    //    connection to be set up.
    reader.take_over_until_done(&mut backoff).await;
    let claimed_ms = started.elapsed().as_millis() as u64;
    // 2. Read new schedules on a dedicated connection (a blocking read occupies it).
    let mut reread_own = false;
    let name = crate::redis_conn::reader_conn_name(p);
    let mut after_error = false;
    loop {
        let conn = reader
            .shared
            .target
            .reader_conn(
                &reader.conn(),
                &reader.stream,
                &name,
                reader.shared.config.block,
                after_error,
            )
            .await;
        after_error = true;
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                reader.shared.metrics.redis_error();
                debug!(partition = p, error = %e, "reader cannot connect; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if !reread_own {
            debug!(
                partition = p,
                claimed_ms,
                reading_ms = started.elapsed().as_millis() as u64,
                "partition reader up"
            );
        }
        let result = async {
            if reread_own {
                reader.own_history().await?;
            }
            reader.read_loop(&mut conn, &mut backoff).await
        }
        .await;
        let Err(e) = result;
        reader.shared.metrics.redis_error();
        if is_nogroup(&e) {
            info!(
                partition = p,
                "consumer group is gone (Redis restarted?); recreating it"
            );
            reader.take_over_until_done(&mut backoff).await;
            reread_own = false;
        } else {
            let delay = backoff.next_delay();
            warn!(partition = p, error = %e, ?delay, "timer stream read failed; reconnecting");
            reread_own = true;
            tokio::time::sleep(delay).await;
        }
    }
}

/// Zeroes a partition's live-room count when its reader stops (the partition left this engine).
struct RoomsLiveSlot(Arc<Shared>, Partition);

impl Drop for RoomsLiveSlot {
    fn drop(&mut self) {
        self.0.metrics.set_rooms_live(self.1, 0);
    }
}

struct Reader {
    shared: Arc<Shared>,
    stream: String,
    p: Partition,
    epoch: u64,
    tx: mpsc::UnboundedSender<SchedMsg>,
}

/// A read loop only ever ends with an error.
enum Never {}

impl Reader {
    fn me(&self) -> &str {
        &self.shared.config.instance_id
    }

    fn group(&self) -> &str {
        &self.shared.config.group
    }

    /// The shared connection, for everything that does not block.
    fn conn(&self) -> RedisConn {
        self.shared.conn()
    }

    /// Creates the group if needed and claims every pending entry, retrying until it succeeds.
    async fn take_over_until_done(&mut self, backoff: &mut Backoff) {
        loop {
            let result = async {
                self.ensure_group().await?;
                self.claim_all().await
            }
            .await;
            match result {
                Ok(()) => {
                    backoff.reset();
                    return;
                }
                Err(e) => {
                    self.shared.metrics.redis_error();
                    let delay = backoff.next_delay();
                    warn!(partition = self.p, error = %e, ?delay, "taking over the partition's pending schedules failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Blocking reads of new entries until an error; sweeps orphans now and then.
    async fn read_loop(
        &mut self,
        conn: &mut RedisConn,
        backoff: &mut Backoff,
    ) -> redis::RedisResult<Never> {
        let block_ms = self.shared.config.block.as_millis() as u64;
        let mut last_sweep = Instant::now();
        self.count_rooms().await?;
        loop {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(self.group())
                .arg(self.me())
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">")
                .query_async(conn)
                .await?;
            backoff.reset();
            self.deliver(parse_xreadgroup(&reply), false).await?;
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep_orphans().await?;
                self.count_rooms().await?;
                last_sweep = Instant::now();
            }
        }
    }

    async fn ensure_group(&self) -> redis::RedisResult<()> {
        let conn = &mut self.conn();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(self.group())
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") || e.to_string().contains("BUSYGROUP") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `XAUTOCLAIM` everything pending in the group to us.
    async fn claim_all(&mut self) -> redis::RedisResult<()> {
        let conn = &mut self.conn();
        let mut cursor = "0-0".to_owned();
        let mut claimed = 0usize;
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(self.group())
                .arg(self.me())
                .arg(0)
                .arg(&cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(conn)
                .await?;
            let parts = as_seq(&reply).unwrap_or(&[]);
            let next = parts
                .first()
                .and_then(as_text)
                .unwrap_or_else(|| "0-0".to_owned());
            let entries = parts.get(1).map(parse_entries).unwrap_or_default();
            claimed += entries.len();
            self.deliver(entries, true).await?;
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        if claimed > 0 {
            info!(partition = self.p, claimed, "took over pending schedules");
        }
        Ok(())
    }

    /// Re-reads our own pending list from the start.
    async fn own_history(&mut self) -> redis::RedisResult<()> {
        let conn = &mut self.conn();
        let mut from = "0".to_owned();
        loop {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(self.group())
                .arg(self.me())
                .arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&from)
                .query_async(conn)
                .await?;
            let entries = parse_xreadgroup(&reply);
            let Some(last) = entries.last().map(|e| e.id) else {
                break;
            };
            self.deliver(entries, true).await?;
            from = last.to_string();
        }
        Ok(())
    }

    /// Reads the partition's live-room count (`ZCARD rooms:{pNN}`, the index the room functions keep)
    /// into the `rooms_live` gauge: summed over the engines, every live room once.
    async fn count_rooms(&mut self) -> redis::RedisResult<()> {
        let n: i64 = redis::cmd("ZCARD")
            .arg(keys::rooms(self.p))
            .query_async(&mut self.conn())
            .await?;
        self.shared.metrics.set_rooms_live(self.p, n);
        Ok(())
    }

    /// Claims entries pending under any other consumer.
    async fn sweep_orphans(&mut self) -> redis::RedisResult<()> {
        let conn = &mut self.conn();
        let summary: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(self.group())
            .query_async(conn)
            .await?;
        let consumers: Vec<String> = as_seq(&summary)
            .and_then(|s| s.get(3))
            .and_then(as_seq)
            .map(|list| {
                list.iter()
                    .filter_map(as_seq)
                    .filter_map(|c| c.first().and_then(as_text))
                    .filter(|name| name != self.me())
                    .collect()
            })
            .unwrap_or_default();
        for consumer in consumers {
            let pending: Value = redis::cmd("XPENDING")
                .arg(&self.stream)
                .arg(self.group())
                .arg("-")
                .arg("+")
                .arg(BATCH)
                .arg(&consumer)
                .query_async(conn)
                .await?;
            let ids: Vec<String> = as_seq(&pending)
                .unwrap_or(&[])
                .iter()
                .filter_map(|e| as_seq(e).and_then(|e| e.first()).and_then(as_text))
                .collect();
            if ids.is_empty() {
                continue;
            }
            let reply: Value = redis::cmd("XCLAIM")
                .arg(&self.stream)
                .arg(self.group())
                .arg(self.me())
                .arg(0)
                .arg(&ids)
                .query_async(conn)
                .await?;
            let entries = parse_entries(&reply);
            warn!(partition = self.p, from = %consumer, count = entries.len(),
                "claimed schedules left pending by another consumer");
            self.deliver(entries, true).await?;
        }
        Ok(())
    }

    /// Parses entries, dead-letters malformed ones, acks deleted ones, hands the rest over.
    async fn deliver(&mut self, entries: Vec<RawEntry>, claimed: bool) -> redis::RedisResult<()> {
        let conn = &mut self.conn();
        if entries.is_empty() {
            return Ok(());
        }
        let mut items: Vec<Schedule> = Vec::with_capacity(entries.len());
        for raw in entries {
            let id = raw.id.to_string();
            let Some(fields) = raw.fields else {
                // Deleted while pending: nothing to fire, just clear it from the pending list.
                fire::ack(conn, self.p, self.group(), &id).await?;
                continue;
            };
            match Schedule::from_fields(
                raw.id,
                fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ) {
                Ok(s) => items.push(s),
                Err(e) => {
                    warn!(partition = self.p, error = %e, "malformed schedule; moving it to the dead-letter stream");
                    let group = self.shared.config.group.clone();
                    fire::dead_letter(conn, self.p, &group, &id, &fields, &e.to_string()).await?;
                    self.shared
                        .metrics
                        .timers_dead_total
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        if !items.is_empty() {
            let _ = self.tx.send(SchedMsg::Schedules {
                p: self.p,
                epoch: self.epoch,
                items,
                claimed,
            });
        }
        Ok(())
    }
}
