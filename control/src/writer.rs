//! The results writer: every ended game reaches PostgreSQL exactly once.
//!
//! When a game ends (or is ended as abandoned) its room function appends `{room, roomId, reason, ended}`
//! to the partition's stream `results:{pNN}` in the same atomic call. The writer reads the
//! [`PARTITIONS`] streams with the consumer group [`GROUP`] and, per entry:
//! 1. holds the ended room in Redis (`results_hold`, [`HOLD_MS`]) so its cleanup waits while PostgreSQL
//!    is slow or down — the hold is renewed on every attempt;
//! 2. in one PostgreSQL transaction: upserts the game's row and locks it; if its results are already
//!    stored (a redelivery after a crash between commit and ack) it stops there; otherwise it streams the
//!    export (`game_export`, `--export-page` players per call, rank order) into `COPY results … FROM STDIN
//!    BINARY` and marks the game `results_stored_at`; commits;
//! 3. acknowledges the entry (`XACK`) and releases the hold.
//!
//! A crash anywhere before the commit rolls the transaction back and leaves the entry pending: the
//! writer (same `--writer-name`) reads its own pending entries first when it comes back, and another
//! instance claims entries idle for [`CLAIM_IDLE_MS`]. A crash after the commit only repeats step 3.
//! Hence exactly once: the stored flag and the rows commit together.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use deadpool_postgres::Pool;
use ringside_lua::{Game, GameError, Redis};
use ringside_protocol::keys::{self, PARTITIONS};
use ringside_protocol::ErrorCode;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::metrics::METRICS;

/// The consumer group of the results streams.
pub const GROUP: &str = "writer";
/// How long a room is held per attempt.
pub const HOLD_MS: u64 = 10 * 60 * 1000;
/// Players per `game_export` call by default. Each call runs atomically in Redis and blocks the shard
/// meanwhile: ~10 ms for 1,000 players × 10 questions on the 2-core machine, ~1.3 ms for 250
/// (perf/api.md), so the default keeps a live game's answers on the same shard waiting at most a few ms.
pub const DEFAULT_PAGE: usize = 250;
/// The default pause between two export calls, in ms.
pub const DEFAULT_PAGE_PAUSE_MS: u64 = 2;
/// Entries of a dead writer are claimed after this long.
pub const CLAIM_IDLE_MS: u64 = 60_000;
const ENTRIES_PER_READ: usize = 16;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The writer's settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The consumer name: keep it stable across restarts of one instance (its pending entries are read
    /// first when it comes back).
    pub name: String,
    /// How often the streams are polled when idle.
    pub poll: Duration,
    /// Players per `game_export` call (1..=1000).
    pub page: usize,
    /// Pause between two export calls of one game.
    pub page_pause: Duration,
    /// Test hook: abort the process after copying this many export pages (a crash mid-write).
    pub crash_after_pages: Option<u32>,
}

/// One `results:{pNN}` entry.
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    room: String,
    room_id: String,
    reason: String,
}

/// Runs until `shutdown` turns true.
pub async fn run(
    pool: Pool,
    game: Game,
    cfg: WriterConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut conn = game.conn();
    let mut groups_ready = false;
    let mut backoff = cfg.poll;
    let mut last_claim = Instant::now() - Duration::from_secs(3600);
    let mut pages = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut failed = false;
        if !groups_ready {
            match create_groups(&mut conn).await {
                Ok(()) => groups_ready = true,
                Err(e) => {
                    tracing::warn!(error = %e, "results writer: cannot create consumer groups yet");
                    failed = true;
                }
            }
        }
        if groups_ready {
            if last_claim.elapsed() > Duration::from_millis(CLAIM_IDLE_MS / 2) {
                last_claim = Instant::now();
                if let Err(e) = claim_idle(&mut conn, &cfg.name).await {
                    tracing::warn!(error = %e, "results writer: claiming idle entries failed");
                }
            }
            'partitions: for p in 0..PARTITIONS {
                // own pending entries first (a previous run of this name crashed), then new ones
                for from in ["0", ">"] {
                    let entries = match read(&mut conn, p, &cfg.name, from).await {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(partition = p, error = %e, "results writer: read failed");
                            failed = true;
                            break 'partitions;
                        }
                    };
                    let n = entries.len();
                    for entry in entries {
                        let t0 = Instant::now();
                        match store(&pool, &game, &entry, &cfg, &mut pages).await {
                            Ok(rows) => {
                                METRICS.results_seconds_total_ms.fetch_add(
                                    t0.elapsed().as_millis() as u64,
                                    std::sync::atomic::Ordering::Relaxed,
                                );
                                if let Err(e) = ack(&mut conn, p, &entry.id).await {
                                    tracing::warn!(error = %e, "results writer: XACK failed (stored; the redelivery will only ack)");
                                    failed = true;
                                    break 'partitions;
                                }
                                let _ = game.results_hold(&entry.room, 0).await;
                                tracing::info!(room = %entry.room, room_id = %entry.room_id, reason = %entry.reason, rows, ms = t0.elapsed().as_millis() as u64, "results stored");
                            }
                            Err(e) => {
                                METRICS
                                    .results_retries
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tracing::warn!(room = %entry.room, error = %format!("{e:#}"), "results writer: storing failed; will retry");
                                failed = true;
                                break 'partitions;
                            }
                        }
                    }
                    if from == "0" && n > 0 {
                        break; // pending ones this round; new ones next round
                    }
                }
            }
        }
        backoff = if failed {
            (backoff * 2).min(MAX_BACKOFF)
        } else {
            cfg.poll
        };
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn create_groups(conn: &mut Redis) -> redis::RedisResult<()> {
    for p in 0..PARTITIONS {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys::results(p))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match r {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

type RawEntries = Vec<(String, Option<Vec<(String, String)>>)>;

async fn read(conn: &mut Redis, p: u32, name: &str, from: &str) -> redis::RedisResult<Vec<Entry>> {
    let reply: Option<Vec<(String, RawEntries)>> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(name)
        .arg("COUNT")
        .arg(ENTRIES_PER_READ)
        .arg("STREAMS")
        .arg(keys::results(p))
        .arg(from)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    for (_, entries) in reply.unwrap_or_default() {
        for (id, fields) in entries {
            let Some(fields) = fields else {
                // trimmed away while pending: nothing to store
                let _ = ack(conn, p, &id).await;
                continue;
            };
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(f, _)| f == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            out.push(Entry {
                id,
                room: get("room"),
                room_id: get("roomId"),
                reason: get("reason"),
            });
        }
    }
    Ok(out)
}

async fn ack(conn: &mut Redis, p: u32, id: &str) -> redis::RedisResult<()> {
    redis::cmd("XACK")
        .arg(keys::results(p))
        .arg(GROUP)
        .arg(id)
        .query_async::<i64>(conn)
        .await
        .map(drop)
}

/// Moves entries that another consumer left pending for [`CLAIM_IDLE_MS`] to `name`.
async fn claim_idle(conn: &mut Redis, name: &str) -> redis::RedisResult<()> {
    for p in 0..PARTITIONS {
        let _: redis::Value = redis::cmd("XAUTOCLAIM")
            .arg(keys::results(p))
            .arg(GROUP)
            .arg(name)
            .arg(CLAIM_IDLE_MS)
            .arg("0")
            .arg("COUNT")
            .arg(100)
            .arg("JUSTID")
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// Stores one ended game's results; returns the rows written (0 when they already were).
async fn store(
    pool: &Pool,
    game: &Game,
    entry: &Entry,
    cfg: &WriterConfig,
    pages: &mut u32,
) -> anyhow::Result<u64> {
    let held = game
        .results_hold(&entry.room, HOLD_MS)
        .await
        .context("holding the room")?;
    let mut client = pool.get().await.context("database connection")?;
    let tx = client.transaction().await?;
    let stored: Option<(i64, bool)> = tx
        .query_opt(
            "SELECT id, results_stored_at IS NOT NULL FROM games WHERE room_id = $1 FOR UPDATE",
            &[&entry.room_id],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    if let Some((_, true)) = stored {
        tx.commit().await?;
        return Ok(0);
    }
    // The entry's game, if its room is still there (the code may have been reused by a newer room).
    let first = if held {
        match game.export(&entry.room, 0, cfg.page).await {
            Ok(p) if p.game.room_id == entry.room_id => Some(p),
            Ok(_) => None,
            Err(GameError::Refused {
                code: ErrorCode::RoomNotFound | ErrorCode::WrongState,
                ..
            }) => None,
            Err(e) => return Err(export_err(e)),
        }
    } else {
        None
    };
    let Some(first) = first else {
        // The room is gone: nothing left to export. Keep what is known, count it, and move on.
        tx.execute(
            "INSERT INTO games (room_id, game_code, quiz_id, quiz_title, question_count, end_reason)
             VALUES ($1, $2, '', '', 0, $3)
             ON CONFLICT (room_id) DO UPDATE SET end_reason = coalesce(games.end_reason, EXCLUDED.end_reason)",
            &[&entry.room_id, &entry.room, &entry.reason],
        )
        .await?;
        tx.commit().await?;
        METRICS
            .results_lost
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(room = %entry.room, room_id = %entry.room_id, "results lost: the room expired before it could be exported");
        return Ok(0);
    };
    let g = &first.game;
    let game_id: i64 = tx
        .query_one(
            "INSERT INTO games (room_id, game_code, quiz_id, quiz_title, question_count)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (room_id) DO UPDATE SET room_id = EXCLUDED.room_id RETURNING id",
            &[
                &g.room_id,
                &g.game_code,
                &g.quiz_id,
                &g.title,
                &(g.question_count as i32),
            ],
        )
        .await?
        .get(0);
    // Belt and braces: no rows can exist for an unstored game (they commit with the flag).
    tx.execute("DELETE FROM results WHERE game_id = $1", &[&game_id])
        .await?;
    let sink = tx
        .copy_in(
            "COPY results (game_id, player_id, name, avatar, rank, score, correct_count, answers) \
             FROM STDIN BINARY",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::INT4,
            Type::INT8,
            Type::INT4,
            Type::JSONB,
        ],
    );
    futures_util::pin_mut!(writer);
    let mut page = first.clone();
    loop {
        for p in &page.players {
            let answers = serde_json::to_value(&p.answers)?;
            writer
                .as_mut()
                .write(&[
                    &game_id,
                    &p.player_id,
                    &p.name,
                    &(p.avatar as i32),
                    &(p.rank as i32),
                    &p.score,
                    &(p.correct as i32),
                    &answers,
                ])
                .await?;
        }
        *pages += 1;
        if cfg.crash_after_pages == Some(*pages) {
            tracing::error!(pages = *pages, "test hook: aborting mid-write");
            std::process::abort();
        }
        let Some(next) = page.next else { break };
        // Each export call holds the Redis shard (~1.3 ms per 250 players × 10 questions): leave it to
        // the live games between calls.
        if !cfg.page_pause.is_zero() {
            tokio::time::sleep(cfg.page_pause).await;
        }
        page = game
            .export(&entry.room, next, cfg.page)
            .await
            .map_err(export_err)?;
    }
    let rows = writer.as_mut().finish().await?;
    let ms_to_ts = |ms: Option<i64>| ms.map(|m| m as f64 / 1000.0);
    tx.execute(
        "UPDATE games SET started_at = to_timestamp($2), ended_at = to_timestamp($3), end_reason = $4,
           questions_played = $5, player_count = $6, results_stored_at = now() WHERE id = $1",
        &[
            &game_id,
            &ms_to_ts(g.started_at),
            &ms_to_ts(Some(g.ended_at)),
            &g.end_reason,
            &(g.questions_played as i32),
            &(rows as i32),
        ],
    )
    .await?;
    tx.commit().await?;
    METRICS
        .games_stored
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    METRICS
        .results_rows
        .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
    Ok(rows)
}

fn export_err(e: GameError) -> anyhow::Error {
    match &e {
        GameError::Refused {
            code: ErrorCode::RoomNotFound,
            ..
        } => anyhow::anyhow!("the room is gone: {e}"),
        _ => anyhow::Error::new(e).context("exporting from redis"),
    }
}
