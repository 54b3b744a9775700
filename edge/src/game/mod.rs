//! The game layer of the edge: client events → one FCALL each → the reply to that client; room events →
//! every local member, encoded once. No game rules live here (ARCHITECTURE.md): the edge authenticates,
//! rate-limits, checks the answer HMAC, and moves frames.
//!
//! The pipeline is the module list, frame → event → command → FCALL:
//! - [`socket`]: [`GameSession`], one per socket: decode, per-socket rate limit, the dispatch table
//!   (client event → its `cmd` file).
//! - [`cmd`]: one file per family of client events (`lobby`, `answer`, `host`, `reconnect`), each with
//!   an `apply` that returns the reply or an error; [`cmd::Cx::run`] is the one place that spawns, calls
//!   Redis, and writes the reply or `error` frame.
//! - [`state`]: who a socket is in which room ([`state::Role`]) and its retry ids.
//! - [`rooms`]: [`Rooms`], per worker thread: the local members of each room, in-order fan-out by `seq`,
//!   catch-up from the room log ([`Rooms::replay_or_snapshot`]), personal results after a reveal, kicks.
//! - [`members`]: one room's local members, keyed by connection id (a compact table for big rooms).
//! - [`hub`]: the Redis thread (tokio): FCALLs, one sharded subscription per room per process, encode once.
//! - [`durable`]: an answer's ack only once a replica has it (`WAIT 1`, grouped per partition).
//! - [`answers`]: the answers of a room that arrive together go to Redis in one `answer_batch` call.
//! - [`pubsub`], [`resp`]: the sharded pub/sub subscriber.
//! - [`seal`]: fair start — a question sealed ahead of its `showAt`, its key sent just in time.
//! - [`address_limits`]: joins and failed room-code lookups per source address, shared by the workers.
//!
//! The game's flags ([`GameFlags`]) live here and are flattened into the edge's command line
//! ([`crate::cli`]); nothing outside `game` (but `cli`) imports this module.

pub mod address_limits;
pub mod answers;
pub mod cmd;
pub mod durable;
pub mod hub;
pub mod members;
pub mod pubsub;
pub mod resp;
pub mod rooms;
pub mod seal;
pub mod socket;
pub mod state;

use crate::admission::UpstreamGauge;
use crate::conn::ConnHandle;
use crate::session::{Rejection, Session, SessionFactory};
use crate::ws::handshake::{Subprotocol, UpgradeRequest};
use address_limits::{AddressLimiter, AddressLimits};
use hub::{HubHandle, RedisConfig, WorkerMsg};
use ringside_protocol::Codec;
use rooms::{Rooms, Wants};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub use socket::GameSession;

/// Settings of the game layer.
#[derive(Debug, Clone)]
pub struct GameConfig {
    pub redis: RedisConfig,
    /// Base of `shareUrl` in `room:created`, e.g. `http://127.0.0.1:8080`.
    pub share_base: String,
    /// Joins and failed room-code lookups per source address.
    pub address_limits: AddressLimits,
    /// How long a player's `game:leaderboard` may wait in its send queue for the player's own
    /// `game:answer:result`, so that both leave in one write (`--leaderboard-hold-ms`; zero: at once);
    pub leaderboard_hold: std::time::Duration,
    /// How long a player's `game:question:reveal` may wait for the room's `game:leaderboard`, so that
    /// reveal, leaderboard and result leave in one write (`--reveal-hold-ms`; zero: never held). Not held
    /// in a room whose last leaderboard came later than this after its reveal.
    pub reveal_hold: std::time::Duration,
}

/// `--leaderboard-hold-ms`'s default.
pub const DEFAULT_LEADERBOARD_HOLD: std::time::Duration = std::time::Duration::from_millis(50);

/// `--reveal-hold-ms`'s default.
pub const DEFAULT_REVEAL_HOLD: std::time::Duration = std::time::Duration::from_millis(600);

/// The game layer's command-line flags, flattened into the edge's [`Cli`](crate::cli::Cli).
#[derive(Debug, Clone, clap::Args)]
pub struct GameFlags {
    /// Redis URL for the game layer (repeat for several Redis Cluster nodes).
    #[arg(
        long = "redis",
        env = "RINGSIDE_REDIS",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis: Vec<String>,
    /// The --redis URLs are Redis Cluster nodes.
    #[arg(long, env = "RINGSIDE_REDIS_CLUSTER")]
    pub cluster: bool,
    /// Base of the join link in `room:created` (default: http://<listen>).
    #[arg(long, env = "RINGSIDE_EDGE_SHARE_BASE")]
    pub share_base: Option<String>,
    /// Per source address: `room:join` attempts and failed room-code lookups (docs/protocol.md §3).
    #[command(flatten)]
    pub address_limits: AddressLimits,
    /// Fair start: sealed questions and their keys' lead (docs/protocol.md §7.3).
    #[command(flatten)]
    pub seal: seal::SealFlags,
    /// When an answer's ack may go out: after a replica has it, or on the primary's reply.
    #[command(flatten)]
    pub durability: durable::DurabilityFlags,
    /// Calls of one room's answers on their way to Redis at once per process; the answers that arrive
    /// meanwhile leave together in the next call (group commit, game/answers.rs). 0: no limit.
    #[arg(
        long,
        env = "RINGSIDE_EDGE_ANSWER_CALLS_IN_FLIGHT",
        default_value_t = 1
    )]
    pub answer_calls_in_flight: usize,
    /// The least time between two calls of one room's answers per process: in a busy room an answer
    /// waits up to about this long, and the room costs Redis at most one call per gap (0: no gap).
    #[arg(long, env = "RINGSIDE_EDGE_ANSWER_CALL_GAP_MS", default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub answer_call_gap_ms: u64,
    /// How long a player's leaderboard may wait for the player's own result, so that both leave in
    /// one write instead of two (a results call that takes longer, or fails, releases it; per call: a big
    /// room's later players also wait for the calls before theirs, at most 10× this in all). 0: the
    /// leaderboard goes out at once, the result after it on its own (and no reveal is held).
    #[arg(long, env = "RINGSIDE_EDGE_LEADERBOARD_HOLD_MS",
        default_value_t = DEFAULT_LEADERBOARD_HOLD.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub leaderboard_hold_ms: u64,
    /// How long a player's reveal may wait for the room's leaderboard, so that reveal, leaderboard and
    /// result leave in one write and reach the phone in one repaint. Not held in a room whose last
    /// leaderboard came later than this after its reveal (a room too big to score in time); the host's and
    /// spectators' reveal never waits. 0 (or `--leaderboard-hold-ms 0`): reveals go out at once.
    #[arg(long, env = "RINGSIDE_EDGE_REVEAL_HOLD_MS",
        default_value_t = DEFAULT_REVEAL_HOLD.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(0..=2000))]
    pub reveal_hold_ms: u64,
}

impl GameFlags {
    /// The settings these flags describe for an edge listening on `listen` (`tls`: it serves wss, so the
    /// default join link is https).
    /// The seal settings are process-wide: this installs them ([`seal::SealFlags::install`]).
    pub fn to_config(&self, listen: SocketAddr, tls: bool) -> GameConfig {
        self.seal.install();
        let share_base = self.share_base.clone().unwrap_or_else(|| {
            let host = if listen.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                listen.ip().to_string()
            };
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{host}:{}", listen.port())
        });
        GameConfig {
            redis: RedisConfig {
                urls: self.redis.clone(),
                cluster: self.cluster,
                durability: self.durability.clone(),
                answer_calls_in_flight: self.answer_calls_in_flight,
                answer_call_gap: std::time::Duration::from_millis(self.answer_call_gap_ms),
            },
            share_base,
            address_limits: self.address_limits.clone(),
            leaderboard_hold: std::time::Duration::from_millis(self.leaderboard_hold_ms),
            reveal_hold: std::time::Duration::from_millis(self.reveal_hold_ms),
        }
    }
}

thread_local! {
    static ROOMS: RefCell<Option<Rc<Rooms>>> = const { RefCell::new(None) };
}

/// Creates a [`GameSession`] per socket; owns the hub handle and each worker's inbox until it starts.
pub struct GameFactory {
    hub: HubHandle,
    inboxes: Mutex<Vec<Option<mpsc::UnboundedReceiver<WorkerMsg>>>>,
    share_base: String,
    addresses: Option<Arc<AddressLimiter>>,
    leaderboard_hold: std::time::Duration,
    reveal_hold: std::time::Duration,
}

impl GameFactory {
    /// Connects to Redis (checking the Functions library version) and prepares `workers` inboxes.
    pub fn start(cfg: GameConfig, workers: usize) -> anyhow::Result<GameFactory> {
        cfg.address_limits.validate().map_err(anyhow::Error::msg)?;
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let hub = hub::start(cfg.redis, txs)?;
        Ok(GameFactory {
            hub,
            inboxes: Mutex::new(rxs.into_iter().map(Some).collect()),
            share_base: cfg.share_base,
            addresses: AddressLimiter::new(cfg.address_limits).map(Arc::new),
            leaderboard_hold: cfg.leaderboard_hold,
            reveal_hold: cfg.reveal_hold,
        })
    }
}

impl SessionFactory for GameFactory {
    fn on_worker_start(&self, worker_index: usize) {
        let inbox = self
            .inboxes
            .lock()
            .expect("inbox lock")
            .get_mut(worker_index)
            .and_then(Option::take);
        let rooms = Rc::new(Rooms::new(
            worker_index,
            self.hub.clone(),
            self.share_base.clone(),
            self.addresses.clone(),
            self.leaderboard_hold,
            self.reveal_hold,
        ));
        ROOMS.with(|r| *r.borrow_mut() = Some(rooms.clone()));
        if let Some(mut inbox) = inbox {
            monoio::spawn(async move {
                // the Redis thread's events reach a busy worker through its doorbell
                let mut next =
                    crate::doorbell::across(std::future::poll_fn(move |cx| inbox.poll_recv(cx)));
                while let Some(msg) = (&mut next).await {
                    rooms.on_hub_message(msg);
                }
            });
        }
    }

    fn open(&self, req: &UpgradeRequest, conn: &ConnHandle) -> Result<Box<dyn Session>, Rejection> {
        let codec =
            match req.subprotocol {
                Subprotocol::Json => Codec::Json,
                Subprotocol::Msgpack => Codec::Msgpack,
                Subprotocol::None => return Err(Rejection {
                    status: 400,
                    body:
                        "Sec-WebSocket-Protocol must be ringside.v1.json or ringside.v1.msgpack\n"
                            .into(),
                }),
            };
        let rooms = ROOMS
            .with(|r| r.borrow().clone())
            .ok_or_else(|| Rejection {
                status: 503,
                body: "worker not ready\n".into(),
            })?;
        let wants = Wants {
            sealed: req.query_param(seal::QUERY_PARAM) == Some("1"),
            progress: req.query_param(rooms::PROGRESS_PARAM) == Some("1"),
        };
        Ok(Box::new(GameSession::open(
            rooms, conn, codec, req.peer, wants,
        )))
    }

    fn upstream_gauge(&self) -> Option<Arc<UpstreamGauge>> {
        Some(self.hub.gauge())
    }
}
