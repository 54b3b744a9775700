//! The edge's Redis side: one OS thread per edge process running a tokio runtime, because the Redis
//! client runs on tokio while the socket workers run on monoio.
//!
//! Workers talk to it through a [`HubHandle`]:
//! - [`HubHandle::call`] runs a closure over a [`Game`] (one FCALL, pipelined with every other call of
//!   the process on one multiplexed connection per Redis node) and hands the result back on a oneshot.
//! - [`HubHandle::interest`] says "worker W has (or no longer has) members in room CODE": the hub keeps one
//!   `SSUBSCRIBE` per room per process, whatever the number of local members.
//!
//! Each room event arrives once per process. The hub decodes it once, builds the WebSocket frame once per
//! subprotocol (the JSON frame carries the published bytes unchanged; the MessagePack one is transcoded
//! once), and sends the same `Arc<RoomFrame>` to every worker with members in that room.

use super::durable::{self, AnswerDurability, Confirmer, DurabilityFlags};
use super::pubsub::{self, PubsubEvent, SubCommand};
use crate::admission::UpstreamGauge;
use crate::sendq::FrameClass;
use crate::ws::frame;
use bytes::Bytes;
use ringside_lua::{Game, GameError, Redis};
use ringside_protocol::events::ServerEvent;
use ringside_protocol::{Codec, Envelope};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// `XRANGE`/`XREVRANGE` reply: (entry id, field/value pairs).
pub type StreamEntries = Vec<(String, Vec<(String, String)>)>;

type Job = Box<dyn FnOnce(Game, Redis) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

enum HubCmd {
    Call(Job),
    Interest {
        code: Arc<str>,
        worker: usize,
        on: bool,
    },
}

/// One room event, encoded once per subprotocol, shared by every local member.
#[derive(Debug)]
pub struct RoomFrame {
    pub code: Arc<str>,
    /// The room's seq of the event; [`LIVE`] for a live tick (`game:answer:progress`), which has none.
    pub seq: u64,
    pub event: ServerEvent,
    /// Text frame with the published JSON, unchanged.
    pub json: Bytes,
    /// Binary frame with the same envelope in MessagePack.
    pub msgpack: Bytes,
    pub class: FrameClass,
    /// When the Redis thread read it: the time between a room's reveal and its leaderboard as Redis
    /// produced them, whatever the worker was busy with meanwhile (`--reveal-hold-ms`).
    pub received: std::time::Instant,
}

/// The `seq` of a live tick: a room event published with no seq and not in the room log
/// (`game:answer:progress`). It goes only to the members that want it, in sync with the room
/// (`Rooms::deliver_live`), and no member's seq moves.
pub const LIVE: u64 = 0;

impl RoomFrame {
    /// A live tick ([`LIVE`]), not a sequenced room event.
    pub fn is_live(&self) -> bool {
        self.seq == LIVE
    }

    pub fn frame(&self, codec: Codec) -> &Bytes {
        match codec {
            Codec::Json => &self.json,
            Codec::Msgpack => &self.msgpack,
        }
    }
}

/// What the hub sends to a worker thread.
#[derive(Debug)]
pub enum WorkerMsg {
    Event(Arc<RoomFrame>),
    /// The room's channel was (re)subscribed and its log ends at `seq`: members behind it catch up.
    Head {
        code: Arc<str>,
        seq: u64,
    },
}

/// The slow-consumer class of a room event (DESIGN.md "Delivery"): superseded progress and leaderboard
/// frames may be replaced in a send queue; nothing else is ever dropped.
pub fn class_of(event: &ServerEvent) -> FrameClass {
    match event {
        ServerEvent::AnswerProgress(_) => FrameClass::Droppable(1),
        ServerEvent::Leaderboard(_) => FrameClass::Droppable(2),
        _ => FrameClass::Reliable,
    }
}

/// Builds a [`RoomFrame`] from the published envelope JSON. Every room event has a seq (a room log
/// entry always has), except a live `game:answer:progress` ([`LIVE`]).
pub fn room_frame(code: Arc<str>, published: &[u8]) -> Result<RoomFrame, String> {
    let mut buf = published.to_vec();
    let env: Envelope<ServerEvent> =
        Envelope::decode(Codec::Json, &mut buf).map_err(|e| e.to_string())?;
    let seq = match (env.seq, &env.event) {
        (Some(LIVE), _) => return Err("room event with seq 0".into()),
        (Some(seq), _) => seq,
        (None, ServerEvent::AnswerProgress(_)) => LIVE,
        (None, _) => return Err("room event without seq".into()),
    };
    Ok(RoomFrame {
        code,
        seq,
        class: class_of(&env.event),
        json: frame::encode(frame::Opcode::Text, published),
        msgpack: frame::encode(frame::Opcode::Binary, &env.to_msgpack()),
        event: env.event,
        received: std::time::Instant::now(),
    })
}

/// The workers' side of the hub. Cheap to clone; `Send`.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::UnboundedSender<HubCmd>,
    /// When an answer's ack may go out (`--answer-durability`, [`super::durable`]).
    confirmer: Confirmer,
    /// Calls in flight and their latency, read by the transport's admission control.
    gauge: Arc<UpstreamGauge>,
    /// The answers of a room coalesced into `answer_batch` calls ([`super::answers`]).
    answers: super::answers::Batcher,
}

/// The hub is gone (the process is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Redis thread has stopped")]
pub struct HubGone;

/// Why a game call through [`HubHandle::game`] gave no result.
#[derive(Debug)]
pub enum CallError {
    /// The Redis function refused, or Redis failed.
    Game(GameError),
    /// The Redis thread has stopped: the process is shutting down.
    ShuttingDown,
}

impl HubHandle {
    /// Runs `f` on the Redis thread and returns its output.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, HubGone>
    where
        T: Send + 'static,
        F: FnOnce(Game, Redis) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let _in_flight = self.gauge.begin();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |game, redis| {
            Box::pin(async move {
                let _ = tx.send(f(game, redis).await);
            })
        });
        self.tx.send(HubCmd::Call(job)).map_err(|_| HubGone)?;
        // the reply reaches a busy worker through its doorbell, not only when its loop parks
        crate::doorbell::across(rx).await.map_err(|_| HubGone)
    }

    /// One `ringside_lua::Game` call on the hub thread, its two failures in one type: the function
    /// refused or Redis failed ([`CallError::Game`]), or the hub has stopped ([`CallError::ShuttingDown`]).
    pub async fn game<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce(Game) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, GameError>> + Send + 'static,
    {
        match self.call(move |game, _| f(game)).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(CallError::Game(e)),
            Err(HubGone) => Err(CallError::ShuttingDown),
        }
    }

    /// An answer's call: like [`game`](Self::game), and when answers wait for a replica
    /// (`--answer-durability`), its result is handed back only once a replica has it (`WAIT 1` on the
    /// room's node connection, grouped with the other answers then waiting: [`super::durable`]);
    /// else `unavailable`. Refusals wait too: an `already_answered` must not stand on an answer the
    /// replica lacks.
    pub async fn answer<T, F, Fut>(&self, code: Arc<str>, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce(Game) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, GameError>> + Send + 'static,
    {
        let confirmer = self.confirmer.clone();
        let res = self
            .call(move |game, redis| async move {
                // Where the room's calls go before the answer runs: its `WAIT` must run on the
                // connection that ran it ([`durable::Confirmer::confirm_on`]).
                let before = confirmer.route(&redis, &code).await;
                let out = f(game).await;
                match out {
                    Err(GameError::Redis(_)) => out,
                    _ if !confirmer.is_on() => out,
                    _ => match confirmer.confirm_on(&redis, &code, before).await {
                        Ok(()) => out,
                        Err(e) => Err(e),
                    },
                }
            })
            .await;
        match res {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(CallError::Game(e)),
            Err(HubGone) => Err(CallError::ShuttingDown),
        }
    }

    /// The answer batcher of this Redis thread: [`submit`](super::answers::Batcher::submit) inside
    /// [`answer`](Self::answer)'s closure.
    pub fn answers(&self) -> super::answers::Batcher {
        self.answers.clone()
    }

    /// Whether answers wait for a replica before their ack.
    pub fn answers_wait_for_replica(&self) -> bool {
        self.confirmer.is_on()
    }

    /// Calls in flight (from sending to the Redis thread until the reply is back) and their latency.
    pub fn gauge(&self) -> Arc<UpstreamGauge> {
        self.gauge.clone()
    }

    /// Worker `worker` starts (`on`) or stops having members in room `code`.
    pub fn interest(&self, code: Arc<str>, worker: usize, on: bool) {
        let _ = self.tx.send(HubCmd::Interest { code, worker, on });
    }
}

/// Where the hub connects.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub urls: Vec<String>,
    pub cluster: bool,
    /// When an answer's ack may go out ([`super::durable`]).
    pub durability: DurabilityFlags,
    /// Calls of one room's answers on their way at once (`--answer-calls-in-flight`; 0: no limit):
    /// the answers that arrive meanwhile leave together in the next call ([`super::answers`]).
    pub answer_calls_in_flight: usize,
    /// The least time between two calls of one room's answers (`--answer-call-gap-ms`).
    pub answer_call_gap: std::time::Duration,
}

/// Starts the Redis thread: connects, checks the Functions library version (refusing a mismatch), and
/// serves calls and subscriptions until every [`HubHandle`] is dropped.
pub fn start(
    cfg: RedisConfig,
    workers: Vec<mpsc::UnboundedSender<WorkerMsg>>,
) -> anyhow::Result<HubHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let answers = super::answers::Batcher::new(cfg.answer_calls_in_flight, cfg.answer_call_gap);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Confirmer>>();
    std::thread::Builder::new()
        .name("ringside-redis".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                // A cluster through our own slot map and node connections (`ringside_lua::conn::nodes`).
                let connected = if cfg.cluster {
                    Redis::connect_nodes(&cfg.urls).await
                } else {
                    Redis::connect(&cfg.urls, false).await
                };
                let mut redis = match connected {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!(
                            "cannot connect to Redis at {:?}: {e}",
                            cfg.urls
                        )));
                        return;
                    }
                };
                if let Err(e) = ringside_lua::check_version(&mut redis).await {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("{e}")));
                    return;
                }
                let confirmer = match confirmer_for(&cfg.durability, &mut redis).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(confirmer));
                run(cfg, redis, rx, workers).await;
            });
        })?;
    let confirmer = ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the Redis thread died while starting"))??;
    Ok(HubHandle {
        tx,
        confirmer,
        gauge: UpstreamGauge::new(),
        answers,
    })
}

/// Resolves `--answer-durability` against the deployment (`auto`: a replica at start → `replica`).
async fn confirmer_for(flags: &DurabilityFlags, redis: &mut Redis) -> anyhow::Result<Confirmer> {
    let wait = match flags.answer_durability {
        AnswerDurability::Replica => true,
        AnswerDurability::Primary => false,
        AnswerDurability::Auto => durable::has_replica(redis)
            .await
            .map_err(|e| anyhow::anyhow!("--answer-durability auto: cannot see replicas: {e}"))?,
    };
    tracing::info!(
        answer_durability = ?flags.answer_durability,
        waits_for_replica = wait,
        wait_timeout_ms = flags.answer_wait_timeout_ms,
        "answer acks"
    );
    Ok(if wait {
        Confirmer::replica(flags.answer_wait_timeout_ms)
    } else {
        Confirmer::off()
    })
}

/// How often the hub re-reads the cluster's slot map (besides after errors): finds a promotion even
/// when no call failed.
const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Cluster only: re-reads the slot map (`ringside_lua::conn::nodes`). Calls of a dead node fail by
/// themselves (its socket closes) and start a refresh; this one is the periodic backstop.
async fn refresh_slots(redis: Redis) {
    if let Redis::Nodes(nodes) = redis {
        if let Err(e) = nodes.refresh().await {
            tracing::warn!(error = %e, "cannot read the cluster's slot map");
        }
    }
}

async fn run(
    cfg: RedisConfig,
    redis: Redis,
    mut rx: mpsc::UnboundedReceiver<HubCmd>,
    workers: Vec<mpsc::UnboundedSender<WorkerMsg>>,
) {
    let game = Game::new(redis.clone());
    // Topology refresh (cluster): a periodic re-read of the slot map.
    let mut health = tokio::time::interval(HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check: Option<tokio::task::JoinHandle<()>> = None;
    let (sub_tx, sub_rx) = mpsc::unbounded_channel();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let seeds = cfg.urls.iter().map(|u| pubsub::addr_of_url(u)).collect();
    tokio::spawn(pubsub::run(seeds, cfg.cluster, sub_rx, ev_tx));

    // room code -> number of interested sockets per worker is kept by the workers; here: which workers.
    let mut interest: HashMap<Arc<str>, Vec<bool>> = HashMap::new();
    let channel_of = |code: &str| ringside_protocol::keys::room_channel(code);
    // channel name -> code, for incoming messages.
    let mut codes: HashMap<String, Arc<str>> = HashMap::new();

    // See `sys::allocator_collect_light`: most of what this thread allocates (replies, frames) is
    // freed by the worker threads.
    let mut collect = tokio::time::interval(std::time::Duration::from_secs(1));
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = collect.tick() => crate::sys::allocator_collect_light(),
            _ = health.tick(), if cfg.cluster => {
                if check.as_ref().is_none_or(|c| c.is_finished()) {
                    check = Some(tokio::spawn(refresh_slots(redis.clone())));
                }
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                match cmd {
                    HubCmd::Call(job) => { tokio::spawn(job(game.clone(), redis.clone())); }
                    HubCmd::Interest { code, worker, on } => {
                        let entry = interest.entry(code.clone()).or_insert_with(|| vec![false; workers.len()]);
                        let before = entry.iter().any(|&w| w);
                        if let Some(w) = entry.get_mut(worker) { *w = on; }
                        let after = entry.iter().any(|&w| w);
                        let ch = channel_of(&code);
                        if !before && after {
                            codes.insert(ch.clone(), code.clone());
                            let _ = sub_tx.send(SubCommand::Subscribe(ch));
                        } else if before && !after {
                            interest.remove(&code);
                            codes.remove(&ch);
                            let _ = sub_tx.send(SubCommand::Unsubscribe(ch));
                        } else if after {
                            // A worker joined a room the process already follows: tell it where the log ends.
                            spawn_head(redis.clone(), code.clone(), vec![workers[worker].clone()]);
                        }
                    }
                }
            }
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { return };
                match ev {
                    PubsubEvent::Message { channel, payload } => {
                        let Ok(ch) = std::str::from_utf8(&channel) else { continue };
                        let Some(code) = codes.get(ch) else { continue };
                        let frame = match room_frame(code.clone(), &payload) {
                            Ok(f) => Arc::new(f),
                            Err(e) => { tracing::error!(channel = ch, error = %e, "undecodable room event"); continue; }
                        };
                        if let Some(ws) = interest.get(code) {
                            for (i, on) in ws.iter().enumerate() {
                                if *on { let _ = workers[i].send(WorkerMsg::Event(frame.clone())); }
                            }
                        }
                    }
                    PubsubEvent::Subscribed { channel } => {
                        let Some(code) = codes.get(&channel) else { continue };
                        let targets = interest.get(code).map(|ws| ws.iter().enumerate().filter(|(_, on)| **on).map(|(i, _)| workers[i].clone()).collect()).unwrap_or_default();
                        spawn_head(redis.clone(), code.clone(), targets);
                    }
                }
            }
        }
    }
}

/// Reads the last `seq` of a room's log and tells `targets`.
fn spawn_head(mut redis: Redis, code: Arc<str>, targets: Vec<mpsc::UnboundedSender<WorkerMsg>>) {
    tokio::spawn(async move {
        let key = ringside_protocol::keys::room_log(&code);
        let res: redis::RedisResult<StreamEntries> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut redis)
            .await;
        let seq = match res {
            Ok(v) => v
                .first()
                .and_then(|(id, _)| id.split('-').next()?.parse().ok())
                .unwrap_or(0),
            Err(e) => {
                tracing::warn!(room = %code, error = %e, "cannot read the room log head");
                return;
            }
        };
        for t in targets {
            let _ = t.send(WorkerMsg::Head {
                code: code.clone(),
                seq,
            });
        }
    });
}
