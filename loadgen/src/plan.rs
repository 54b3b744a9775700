//! The plan of a run, decided once by the coordinator and handed to every worker (one JSON line on the
//! worker's stdin), and the messages coordinator and workers exchange over their pipes.
//!
//! Who does what is a pure function of the plan and the worker's index ([`Plan::hosts_of`],
//! [`Plan::players_of`]): room `r`'s host lives on worker `r % W`; player `g` (0-based over the whole
//! run) lives on worker `g % W` and joins room `g % rooms`, so every room has members on every worker
//! and rooms fill evenly while the ramp runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::metrics::{Counters, WorkerFinal};

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Open sockets (upgrade + session:ack), hold them, close them. No game.
    Connect,
    /// Hosts create rooms, players join them, everyone idles in the lobby for `--hold-secs`.
    Lobby,
    /// Full games: create, join, start, answer every question, reveal, leaderboard, end.
    Game,
    /// One room with every player (default 100K).
    Stadium,
    /// A game during which an edge process is killed mid-question; everyone reconnects with lastSeq.
    ReconnectStorm,
    /// A game in which a fraction of the players stop reading their socket.
    SlowConsumers,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Connect => "connect",
            Scenario::Lobby => "lobby",
            Scenario::Game => "game",
            Scenario::Stadium => "stadium",
            Scenario::ReconnectStorm => "reconnect-storm",
            Scenario::SlowConsumers => "slow-consumers",
        }
    }

    /// Whether rooms are created and joined.
    pub fn has_rooms(self) -> bool {
        !matches!(self, Scenario::Connect)
    }

    /// Whether a game is played.
    pub fn plays(self) -> bool {
        matches!(
            self,
            Scenario::Game | Scenario::Stadium | Scenario::ReconnectStorm | Scenario::SlowConsumers
        )
    }
}

/// Which subprotocol each socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CodecChoice {
    Json,
    Msgpack,
    /// Alternate by player: even ones JSON, odd ones MessagePack.
    Mixed,
}

/// How simulated players answer. The load generator does not know the correct answer before the reveal
/// (the server never sends it), so "accuracy" is simulated as a bias towards option 0: with probability
/// `pick_first` a player picks option 0, otherwise a uniformly random other option. The real share of
/// correct answers is measured from `game:answer:result` and reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnswerModel {
    /// Median answer time as a fraction of the question's time limit (log-normal distribution).
    pub median_frac: f64,
    /// Sigma of the log-normal (0: everyone answers at the median).
    pub sigma: f64,
    pub pick_first: f64,
    /// Fraction of (player, question) pairs left unanswered.
    pub skip: f64,
}

/// Everything a worker needs to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub scenario: Scenario,
    pub target: SocketAddr,
    /// `Host` header of the upgrade.
    pub host_header: String,
    /// Path and query of the upgrade request, e.g. `/ws`.
    pub path: String,
    pub codec: CodecChoice,
    pub workers: u32,
    pub rooms: u32,
    pub players: u64,
    /// Sockets of the `connect` scenario.
    pub sockets: u64,
    pub quiz: String,
    /// Stop a player after this many questions (0: play the quiz to `game:end`).
    pub questions: u32,
    pub time_per_q_ms: Option<u32>,
    pub countdown_ms: Option<u32>,
    pub reveal_pause_ms: Option<u32>,
    pub answer: AnswerModel,
    /// Interval of `ping` events; None: the server's `pingInterval` from `session:ack`.
    pub ping_interval_ms: Option<u64>,
    /// Connections per second over all workers.
    pub ramp_per_sec: f64,
    pub connect_timeout_ms: u64,
    /// A player's first connect is tried this many more times after a failure.
    pub connect_retries: u32,
    /// Fraction of players that stop reading (slow-consumers).
    pub slow_fraction: f64,
    /// SO_RCVBUF of a slow consumer's socket, so its kernel buffer fills fast.
    pub slow_rcvbuf: u32,
    /// Whether players reconnect (with `reconnect:attempt` + lastSeq) after losing their socket.
    pub reconnect: bool,
    /// Replaces the `jitterMs` of the edge's reconnect policy (docs/protocol.md §4 "Pacing"), and is the
    /// jitter of a client whose edge sent no policy; `None`: the edge's, or 0.
    pub reconnect_jitter_ms: Option<u64>,
    /// A player gives up reconnecting after this long.
    pub reconnect_give_up_ms: u64,
    /// reconnect-storm: the `--kill-at-question`; the questions after it are shown after the kill, and
    /// their delivery to players that never lost their socket is `question_delivery_unaffected`.
    #[serde(default)]
    pub storm_after_q: Option<u32>,
    /// Source addresses for outgoing sockets (empty: the kernel's choice).
    pub sources: Vec<Ipv4Addr>,
    /// Epoch ms at which every worker stops, whatever happens.
    pub deadline_epoch_ms: u64,
    /// Epoch ms of the run's start: the base time of the interval logs.
    pub base_epoch_ms: u64,
    pub out_dir: Option<PathBuf>,
    pub seed: u64,
}

impl Plan {
    /// Room indices whose host lives on worker `w`.
    pub fn hosts_of(&self, w: u32) -> impl Iterator<Item = u32> + '_ {
        let n = if self.scenario.has_rooms() {
            self.rooms
        } else {
            0
        };
        (0..n).filter(move |r| r % self.workers == w)
    }

    /// How many sockets of the run are players (or plain sockets for `connect`).
    pub fn player_sockets(&self) -> u64 {
        if self.scenario.has_rooms() {
            self.players
        } else {
            self.sockets
        }
    }

    /// Global player indices of worker `w`.
    pub fn players_of(&self, w: u32) -> impl Iterator<Item = u64> + '_ {
        let total = self.player_sockets();
        let w = u64::from(w);
        let n = u64::from(self.workers);
        (0..total.saturating_sub(w).div_ceil(n)).map(move |i| i * n + w)
    }

    /// The room a player joins.
    pub fn room_of(&self, g: u64) -> u32 {
        (g % u64::from(self.rooms.max(1))) as u32
    }

    /// Sockets worker `w` opens (without reconnects).
    pub fn sockets_of(&self, w: u32) -> u64 {
        self.hosts_of(w).count() as u64 + self.players_of(w).count() as u64
    }

    /// Whether player `g` is a slow consumer: a deterministic draw from the seed.
    pub fn is_slow(&self, g: u64) -> bool {
        self.scenario == Scenario::SlowConsumers
            && unit(splitmix(self.seed ^ g.wrapping_mul(0x9E37_79B9))) < self.slow_fraction
    }

    /// Whether player `g` speaks MessagePack.
    pub fn msgpack_for(&self, g: u64) -> bool {
        match self.codec {
            CodecChoice::Json => false,
            CodecChoice::Msgpack => true,
            CodecChoice::Mixed => g % 2 == 1,
        }
    }
}

/// SplitMix64: a tiny, fast generator; good enough for jitter, answer times and mask keys.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A u64 mapped to [0, 1).
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Coordinator → worker, one JSON line each on the worker's stdin (after the plan line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// The rooms' game codes (index = room; None = the room could not be created) and the common start
    /// barrier of the player ramp (epoch ms).
    Join {
        codes: Vec<Option<String>>,
        start_at_ms: u64,
    },
    /// Hosts send `game:start`.
    StartGame,
    /// Close everything and send the final numbers.
    Stop,
}

/// Worker → coordinator, one JSON line each on the worker's stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Message {
    Hello {
        worker: u32,
        pid: u32,
    },
    /// Every local host has created its room or failed.
    Rooms {
        created: Vec<(u32, String)>,
        failed: Vec<u32>,
    },
    Progress(Box<Progress>),
    Final(Box<WorkerFinal>),
    Fatal {
        message: String,
    },
}

/// A worker's progress, every 500 ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub worker: u32,
    pub counters: Counters,
    /// Sockets open now.
    pub open: u64,
    /// Local players past their join (joined or failed): when every worker's equals its `assigned`,
    /// the join phase is over.
    pub ready: u64,
    /// Local players that finished (ended, failed or gave up): when every worker's equals its
    /// `assigned`, the game is over.
    pub settled: u64,
    pub assigned: u64,
    /// Highest qIndex shown to any local socket (-1: none).
    pub max_q_shown: i64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plan for unit tests (also the client's).
    pub(crate) fn plan(workers: u32, rooms: u32, players: u64) -> Plan {
        Plan {
            scenario: Scenario::Game,
            target: "127.0.0.1:8080".parse().unwrap(),
            host_header: "127.0.0.1:8080".into(),
            path: "/ws".into(),
            codec: CodecChoice::Mixed,
            workers,
            rooms,
            players,
            sockets: 0,
            quiz: "q".into(),
            questions: 0,
            time_per_q_ms: None,
            countdown_ms: None,
            reveal_pause_ms: None,
            answer: AnswerModel {
                median_frac: 0.4,
                sigma: 0.5,
                pick_first: 0.7,
                skip: 0.0,
            },
            ping_interval_ms: None,
            ramp_per_sec: 1000.0,
            connect_timeout_ms: 5000,
            connect_retries: 2,
            slow_fraction: 0.25,
            slow_rcvbuf: 4096,
            reconnect: true,
            reconnect_jitter_ms: Some(0),
            reconnect_give_up_ms: 1000,
            storm_after_q: None,
            sources: vec![],
            deadline_epoch_ms: 0,
            base_epoch_ms: 0,
            out_dir: None,
            seed: 7,
        }
    }

    #[test]
    fn every_player_and_host_is_on_exactly_one_worker() {
        let p = plan(3, 5, 101);
        let mut players: Vec<u64> = (0..3)
            .flat_map(|w| p.players_of(w).collect::<Vec<_>>())
            .collect();
        players.sort();
        assert_eq!(players, (0..101).collect::<Vec<_>>());
        let mut hosts: Vec<u32> = (0..3)
            .flat_map(|w| p.hosts_of(w).collect::<Vec<_>>())
            .collect();
        hosts.sort();
        assert_eq!(hosts, (0..5).collect::<Vec<_>>());
        assert_eq!((0..3).map(|w| p.sockets_of(w)).sum::<u64>(), 106);
        let per_room: Vec<usize> = (0..5)
            .map(|r| (0..101).filter(|g| p.room_of(*g) == r).count())
            .collect();
        assert_eq!(per_room, vec![21, 20, 20, 20, 20]);
    }

    #[test]
    fn slow_consumers_are_a_stable_fraction() {
        let mut p = plan(1, 1, 10_000);
        p.scenario = Scenario::SlowConsumers;
        let slow = (0..10_000).filter(|g| p.is_slow(*g)).count();
        assert!((2200..2800).contains(&slow), "{slow}");
        assert_eq!(slow, (0..10_000).filter(|g| p.is_slow(*g)).count());
        p.scenario = Scenario::Game;
        assert_eq!((0..100).filter(|g| p.is_slow(*g)).count(), 0);
    }

    #[test]
    fn messages_round_trip_as_json_lines() {
        let m = Message::Rooms {
            created: vec![(0, "K7QP2M".into())],
            failed: vec![1],
        };
        let line = serde_json::to_string(&m).unwrap();
        assert!(!line.contains('\n'));
        assert!(matches!(
            serde_json::from_str::<Message>(&line).unwrap(),
            Message::Rooms { .. }
        ));
        let c = serde_json::to_string(&Command::StartGame).unwrap();
        assert_eq!(c, r#"{"cmd":"start_game"}"#);
    }
}
