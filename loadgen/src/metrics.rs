//! What a run measures: latency histograms ([`Metric`], [`Hists`]), counters ([`Counters`]), tallies per
//! event name and error code, and per-question receipt times ([`QuestionStat`]). A worker fills one
//! [`Stats`]; at the end it serializes it ([`WorkerFinal`]) and the coordinator merges every worker's.
//!
//! Histograms record **microseconds** (1 µs .. 1 h, 3 significant digits). They travel between processes
//! as HdrHistogram V2 (deflate) base64 strings, the same encoding as a line of an `.hlog` interval log,
//! so what the coordinator merges is exactly what the logs hold.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest recordable value: one hour in µs. Larger values saturate.
const HIST_MAX_US: u64 = 3_600_000_000;

/// A latency the load generator records. Names are the report's and the SLO keys' (`<name>_p99_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// TCP connect + upgrade (TLS not supported yet), from `connect()` to the 101 response.
    Connect,
    /// From `connect()` to the `session:ack` frame.
    SessionAck,
    /// `room:create` sent → `room:created`.
    RoomCreate,
    /// `room:join` sent → `room:join:ack`.
    JoinAck,
    /// `game:answer:submit` sent → `game:answer:ack` (or its `error`).
    AnswerAck,
    /// Each `game:question:show` receipt minus the question's server start (`endsAt - timeLimitMs`).
    QuestionDelivery,
    /// reconnect-storm: [`Metric::QuestionDelivery`] of the questions after `--kill-at-question` to the
    /// players that never lost their socket (the storm's unaffected players; a run without a kill
    /// records the same set, its baseline).
    QuestionDeliveryUnaffected,
    /// Per question (room, qIndex): last player's receipt minus the first one's.
    QuestionSpread,
    /// Each `game:question:reveal` receipt minus the deadline (`endsAt` + 500 ms grace); early reveals
    /// (everyone answered) are counted in `reveals_before_deadline` instead.
    RevealDelivery,
    /// Per reveal (room, qIndex): last receipt minus the first.
    RevealSpread,
    /// Socket lost → first reply to `reconnect:attempt` on the new socket.
    Reconnect,
    /// `ping` → `pong`.
    PingRtt,
    /// Per question (room, qIndex): the last player's display minus the first one's. A player displays
    /// at the question's `showAt` translated by its own clock offset (`ping`/`pong`), or when the
    /// content arrives if that is later (fair start, docs/protocol.md §7.3).
    DisplaySpread,
    /// Each `game:question:key` that arrived by its `showAt`: `showAt` minus the arrival.
    KeyLead,
    /// Each `game:question:key` that arrived after its `showAt`: the arrival minus `showAt`.
    KeyLate,
    /// How late the worker's own 10 ms timer fires: the load generator's event loop busy with other
    /// sockets (every latency above includes up to this much of its own delay in reading).
    LoopLag,
}

impl Metric {
    pub const ALL: [Metric; 16] = [
        Metric::Connect,
        Metric::SessionAck,
        Metric::RoomCreate,
        Metric::JoinAck,
        Metric::AnswerAck,
        Metric::QuestionDelivery,
        Metric::QuestionDeliveryUnaffected,
        Metric::QuestionSpread,
        Metric::RevealDelivery,
        Metric::RevealSpread,
        Metric::Reconnect,
        Metric::PingRtt,
        Metric::DisplaySpread,
        Metric::KeyLead,
        Metric::KeyLate,
        Metric::LoopLag,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Connect => "connect",
            Metric::SessionAck => "session_ack",
            Metric::RoomCreate => "room_create",
            Metric::JoinAck => "join_ack",
            Metric::AnswerAck => "answer_ack",
            Metric::QuestionDelivery => "question_delivery",
            Metric::QuestionDeliveryUnaffected => "question_delivery_unaffected",
            Metric::QuestionSpread => "question_spread",
            Metric::RevealDelivery => "reveal_delivery",
            Metric::RevealSpread => "reveal_spread",
            Metric::Reconnect => "reconnect",
            Metric::PingRtt => "ping_rtt",
            Metric::DisplaySpread => "display_spread",
            Metric::KeyLead => "key_lead",
            Metric::KeyLate => "key_late",
            Metric::LoopLag => "loop_lag",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Metric::Connect => "TCP connect + WebSocket upgrade",
            Metric::SessionAck => "connect() to session:ack",
            Metric::RoomCreate => "room:create to room:created",
            Metric::JoinAck => "room:join to room:join:ack",
            Metric::AnswerAck => "game:answer:submit to game:answer:ack",
            Metric::QuestionDelivery => "question start (endsAt - timeLimitMs) to each receipt",
            Metric::QuestionDeliveryUnaffected => {
                "the same, questions after the kill, players that kept their socket"
            }
            Metric::QuestionSpread => "per question: first to last receipt",
            Metric::RevealDelivery => "deadline (endsAt + 500 ms) to each reveal receipt",
            Metric::RevealSpread => "per reveal: first to last receipt",
            Metric::Reconnect => "socket lost to reply to reconnect:attempt",
            Metric::PingRtt => "ping to pong",
            Metric::DisplaySpread => {
                "per question: first to last display at showAt (own clock offset)"
            }
            Metric::KeyLead => "showAt minus each question key's arrival (keys in time)",
            Metric::KeyLate => "each late question key's arrival minus showAt",
            Metric::LoopLag => "lateness of the worker's own 10 ms timer (its event loop busy)",
        }
    }

    pub fn from_name(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    fn index(self) -> usize {
        Metric::ALL
            .iter()
            .position(|m| *m == self)
            .expect("every metric is in ALL")
    }
}

/// A new empty latency histogram.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static bounds are valid")
}

/// One histogram per [`Metric`].
#[derive(Debug, Clone)]
pub struct Hists {
    h: Vec<Histogram<u64>>,
}

impl Default for Hists {
    fn default() -> Self {
        Hists {
            h: Metric::ALL.iter().map(|_| new_hist()).collect(),
        }
    }
}

impl Hists {
    pub fn record(&mut self, m: Metric, us: u64) {
        self.h[m.index()].saturating_record(us.max(1));
    }

    pub fn get(&self, m: Metric) -> &Histogram<u64> {
        &self.h[m.index()]
    }

    pub fn reset(&mut self) {
        self.h.iter_mut().for_each(|h| h.reset());
    }

    /// The histograms of a merged `.hlog` (tag = metric name, as [`write_hlog_interval`] writes them);
    /// a tag that names no metric is refused.
    pub fn from_tagged(tagged: BTreeMap<String, Histogram<u64>>) -> anyhow::Result<Hists> {
        let mut hists = Hists::default();
        for (tag, h) in tagged {
            let m = Metric::from_name(&tag).ok_or_else(|| anyhow!("unknown metric tag {tag:?}"))?;
            hists.h[m.index()]
                .add(&h)
                .map_err(|e| anyhow!("{tag}: {e:?}"))?;
        }
        Ok(hists)
    }

    /// Adds every histogram of `other`.
    pub fn merge(&mut self, other: &Hists) {
        for (a, b) in self.h.iter_mut().zip(&other.h) {
            a.add(b).expect("same bounds");
        }
    }

    /// Each non-empty histogram as V2-deflate base64, by metric name.
    pub fn encode(&self) -> BTreeMap<String, String> {
        Metric::ALL
            .iter()
            .filter(|m| !self.get(**m).is_empty())
            .map(|m| (m.name().to_string(), encode_hist(self.get(*m))))
            .collect()
    }

    /// Adds histograms encoded by [`Hists::encode`].
    pub fn merge_encoded(&mut self, enc: &BTreeMap<String, String>) -> anyhow::Result<()> {
        for (name, b64) in enc {
            let m = Metric::from_name(name).ok_or_else(|| anyhow!("unknown histogram {name}"))?;
            let h = decode_hist(b64)?;
            self.h[m.index()]
                .add(&h)
                .map_err(|e| anyhow!("merging {name}: {e:?}"))?;
        }
        Ok(())
    }
}

/// V2-deflate, base64: the encoding of `.hlog` lines.
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(&buf)
}

pub fn decode_hist(b64: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .context("histogram base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| anyhow!("histogram: {e:?}"))?;
    // Re-home into our bounds so adds never fail on a differently-bounded input.
    let mut out = new_hist();
    out.add(&h)
        .map_err(|e| anyhow!("histogram bounds: {e:?}"))?;
    Ok(out)
}

/// Percentiles of a histogram in milliseconds, for reports and SLOs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// A percentile by its SLO suffix: `p50`, `p90`, `p99`, `p999`, `max`, `mean`, `min`.
    pub fn by_suffix(&self, s: &str) -> Option<f64> {
        Some(match s {
            "p50" => self.p50_ms,
            "p90" => self.p90_ms,
            "p99" => self.p99_ms,
            "p999" => self.p999_ms,
            "max" => self.max_ms,
            "mean" => self.mean_ms,
            "min" => self.min_ms,
            _ => return None,
        })
    }

    pub const SUFFIXES: [&'static str; 7] = ["p50", "p90", "p99", "p999", "max", "mean", "min"];
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// Event counts of a worker or of the whole run (the merge is a sum).
        #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[$doc])* #[serde(default)] pub $name: u64, )*
        }

        impl Counters {
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            pub fn merge(&mut self, o: &Counters) {
                $( self.$name += o.$name; )*
            }

            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $( stringify!($name) => Some(self.$name), )*
                    _ => None,
                }
            }
        }
    };
}

counters! {
    /// Sockets the run tried to open (hosts, players, reconnects).
    sockets_attempted,
    /// TCP connect + upgrade succeeded.
    sockets_connected,
    /// TCP connect failed (refused, timeout, no ports).
    connect_failed,
    /// The upgrade failed (another status than 101 or 503, a bad handshake, a timeout).
    upgrade_failed,
    /// Upgrades answered `503` + `Retry-After` (the edge's admission control), tried again after it.
    upgrade_refused,
    /// First connects tried again after a failure (`--connect-retries`).
    connect_retries,
    /// Sockets that never connected after every retry.
    connect_gave_up,
    session_acks,
    /// Hosts whose `room:create` succeeded.
    rooms_created,
    room_create_failed,
    joins_sent,
    /// Players with a `room:join:ack`.
    players_joined,
    /// Players that never joined (a final error, or every retry refused).
    join_failed,
    /// `room:join` sent again after a retryable error (unavailable, overloaded, rate_limited).
    join_retries,
    /// `room:create` sent again after a retryable error.
    create_retries,
    /// `room:join` / `room:create` refused with `overloaded` (admission control; sent again after
    /// `retryAfterMs`, a few times).
    overloaded_refusals,
    /// `reconnect:attempt` sent again on the same socket after a retryable error.
    reconnect_retries,
    /// `game:start` accepted (`ok`).
    games_started,
    answers_sent,
    answer_acks,
    /// `error` replies to an answer (not counting `already_answered` to a resent one).
    answer_errors,
    /// Answers whose reply was lost with their socket, sent again unchanged after the reconnect (or
    /// after a retryable refusal's `retryAfterMs`).
    answers_resent,
    /// Resent answers answered `already_answered`: the first had been recorded (an outcome, not an error).
    answers_already_answered,
    /// Answers that never got an outcome (no ack, no error, before the player's end or its next answer):
    /// a player cannot know whether they counted (must be 0).
    answers_without_outcome,
    /// Questions a player had scheduled an answer for but the game moved on first.
    answers_skipped,
    /// `game:question:show` receipts (first per player and question; a sealed one counts when its key
    /// opens it).
    question_receipts,
    /// Sealed `game:question:show` receipts (fair start).
    sealed_shows,
    /// `game:question:key` frames that opened a sealed show this player held.
    keys_received,
    /// Of those, keys that arrived after the question's `showAt`.
    keys_late,
    /// Sealed shows the key did not open (must be 0).
    seal_errors,
    /// `game:question:reveal` receipts (first per player and question).
    reveal_receipts,
    /// Reveals that came before the deadline (everyone had answered).
    reveals_before_deadline,
    /// `game:answer:result` receipts.
    result_receipts,
    /// Results with `correct: true`.
    results_correct,
    /// `game:end` receipts.
    game_end_receipts,
    /// Room events seen (all kinds, with `seq`).
    room_events,
    /// Seqs skipped and never delivered (must be 0).
    missed_events,
    /// Of the missed seqs at the end, those another player of the room on the same worker received as a
    /// `game:answer:progress` or `game:leaderboard`: superseded while the socket was behind, which
    /// docs/protocol.md §5 allows (the wire carries no mark, so the room's other players tell).
    missed_superseded,
    /// Of the missed seqs at the end, those another player of the room on the same worker received as any
    /// other event: real gaps (must be 0).
    missed_real,
    /// Of the missed seqs at the end, those no player of the room on the same worker received.
    missed_unknown,
    /// Seqs delivered twice (must be 0).
    duplicate_events,
    /// Seqs that arrived after a higher one (must be 0).
    out_of_order_events,
    /// Seqs replaced by a `reconnect:state` snapshot (not missed: the snapshot carries the state).
    snapshot_covered_events,
    /// `error` events received (every code; see errors_by_code).
    errors,
    frames_received,
    bytes_received,
    frames_sent,
    bytes_sent,
    pings_sent,
    pongs_received,
    /// WebSocket ping frames from the server (answered with pong frames).
    ws_pings_received,
    /// Frames or bodies we could not parse (protocol violations by the server).
    decode_errors,
    /// Close frames received (codes in close_codes).
    closes_received,
    /// Sockets that ended without a close frame (EOF, reset).
    sockets_dropped,
    /// Sockets lost during the game that set out to reconnect.
    disconnects,
    reconnect_attempts,
    /// Reconnects answered with missed events or a snapshot.
    reconnects_ok,
    /// Players that gave up reconnecting (deadline, final error).
    reconnects_failed,
    /// Reconnects answered with a `reconnect:state` snapshot.
    reconnect_snapshots,
    /// Players simulated as slow consumers (they stop reading).
    slow_consumers,
    /// Bytes a slow consumer found waiting in its socket when it read again at the stop.
    slow_backlog_bytes,
    /// Players (not slow) that saw the end of the game or of `--questions`.
    players_finished,
    /// Players (not slow) still short of the end at the stop.
    players_unfinished,
}

/// How many frames and bytes (WebSocket header included) of one server event were received.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

fn u64_max() -> u64 {
    u64::MAX
}

/// Receipts of one question of one room, on one worker (merged across workers by the coordinator).
/// Times are epoch µs of this machine's clock (the server's clock too, on one machine).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuestionStat {
    pub room: u32,
    pub q: u32,
    /// The server's start of the question: `endsAt - timeLimitMs`.
    pub start_us: u64,
    /// `endsAt`.
    pub ends_us: u64,
    pub show_first_us: u64,
    pub show_last_us: u64,
    pub show_count: u64,
    /// When players would display the question (see [`Metric::DisplaySpread`]).
    #[serde(default = "u64_max")]
    pub display_first_us: u64,
    #[serde(default)]
    pub display_last_us: u64,
    #[serde(default)]
    pub display_count: u64,
    pub reveal_first_us: u64,
    pub reveal_last_us: u64,
    pub reveal_count: u64,
    pub result_count: u64,
    pub answers: u64,
}

impl QuestionStat {
    pub fn new(room: u32, q: u32) -> Self {
        QuestionStat {
            room,
            q,
            start_us: 0,
            ends_us: 0,
            show_first_us: u64::MAX,
            show_last_us: 0,
            show_count: 0,
            display_first_us: u64::MAX,
            display_last_us: 0,
            display_count: 0,
            reveal_first_us: u64::MAX,
            reveal_last_us: 0,
            reveal_count: 0,
            result_count: 0,
            answers: 0,
        }
    }

    pub fn merge(&mut self, o: &QuestionStat) {
        self.start_us = self.start_us.max(o.start_us);
        self.ends_us = self.ends_us.max(o.ends_us);
        self.show_first_us = self.show_first_us.min(o.show_first_us);
        self.show_last_us = self.show_last_us.max(o.show_last_us);
        self.show_count += o.show_count;
        self.display_first_us = self.display_first_us.min(o.display_first_us);
        self.display_last_us = self.display_last_us.max(o.display_last_us);
        self.display_count += o.display_count;
        self.reveal_first_us = self.reveal_first_us.min(o.reveal_first_us);
        self.reveal_last_us = self.reveal_last_us.max(o.reveal_last_us);
        self.reveal_count += o.reveal_count;
        self.result_count += o.result_count;
        self.answers += o.answers;
    }

    /// First to last receipt of the question, µs (None before any receipt).
    pub fn show_spread_us(&self) -> Option<u64> {
        (self.show_count > 0).then(|| self.show_last_us - self.show_first_us)
    }

    /// First to last display of the question, µs (None before any).
    pub fn display_spread_us(&self) -> Option<u64> {
        (self.display_count > 0).then(|| self.display_last_us - self.display_first_us)
    }

    pub fn reveal_spread_us(&self) -> Option<u64> {
        (self.reveal_count > 0).then(|| self.reveal_last_us - self.reveal_first_us)
    }
}

/// Everything one worker measured.
#[derive(Debug, Default)]
pub struct Stats {
    pub counters: Counters,
    /// Since the start of the run.
    pub hists: Hists,
    /// Since the last interval-log line.
    pub interval: Hists,
    /// By index in `ServerEvent::NAMES`; the last slot is for unknown names.
    pub events: Vec<Tally>,
    pub errors_by_code: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub questions: HashMap<(u32, u32), QuestionStat>,
    /// Local players with a join ack, per room index.
    pub joined_per_room: HashMap<u32, u64>,
    /// Highest `qIndex` any local socket has seen shown (-1: none yet).
    pub max_q_shown: i64,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            events: vec![Tally::default(); event_slots()],
            max_q_shown: -1,
            ..Default::default()
        }
    }

    pub fn record(&mut self, m: Metric, us: u64) {
        self.hists.record(m, us);
        self.interval.record(m, us);
    }

    pub fn question(&mut self, room: u32, q: u32) -> &mut QuestionStat {
        self.questions
            .entry((room, q))
            .or_insert_with(|| QuestionStat::new(room, q))
    }

    pub fn error_code(&mut self, code: &str) {
        self.counters.errors += 1;
        *self.errors_by_code.entry(code.to_string()).or_default() += 1;
    }

    pub fn close_code(&mut self, code: &str) {
        *self.close_codes.entry(code.to_string()).or_default() += 1;
    }

    /// The final report of a worker, ready to serialize.
    pub fn to_final(&self) -> WorkerFinal {
        let names =
            <ringside_protocol::events::ServerEvent as ringside_protocol::events::Event>::NAMES;
        let events = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, t)| t.count > 0)
            .map(|(i, t)| (names.get(i).copied().unwrap_or("(unknown)").to_string(), *t))
            .collect();
        let mut questions: Vec<QuestionStat> = self.questions.values().copied().collect();
        questions.sort_by_key(|q| (q.room, q.q));
        WorkerFinal {
            counters: self.counters.clone(),
            hists: self.hists.encode(),
            events,
            errors_by_code: self.errors_by_code.clone(),
            close_codes: self.close_codes.clone(),
            questions,
            joined_per_room: self.joined_per_room.iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }
}

/// Number of per-event tally slots: every server event name plus one for unknown names.
pub fn event_slots() -> usize {
    <ringside_protocol::events::ServerEvent as ringside_protocol::events::Event>::NAMES.len() + 1
}

/// The tally slot of an event name.
pub fn event_slot(name: &[u8]) -> usize {
    let names = <ringside_protocol::events::ServerEvent as ringside_protocol::events::Event>::NAMES;
    names
        .iter()
        .position(|n| n.as_bytes() == name)
        .unwrap_or(names.len())
}

/// A worker's final numbers, as sent to the coordinator (one JSON line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerFinal {
    pub counters: Counters,
    pub hists: BTreeMap<String, String>,
    pub events: BTreeMap<String, Tally>,
    pub errors_by_code: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub questions: Vec<QuestionStat>,
    pub joined_per_room: Vec<(u32, u64)>,
}

/// Workers' finals merged.
#[derive(Debug, Default)]
pub struct Merged {
    pub counters: Counters,
    pub hists: Hists,
    pub events: BTreeMap<String, Tally>,
    pub errors_by_code: BTreeMap<String, u64>,
    pub close_codes: BTreeMap<String, u64>,
    pub questions: BTreeMap<(u32, u32), QuestionStat>,
    pub joined_per_room: BTreeMap<u32, u64>,
}

impl Merged {
    pub fn add(&mut self, w: &WorkerFinal) -> anyhow::Result<()> {
        self.counters.merge(&w.counters);
        self.hists.merge_encoded(&w.hists)?;
        for (k, t) in &w.events {
            let e = self.events.entry(k.clone()).or_default();
            e.count += t.count;
            e.bytes += t.bytes;
        }
        for (k, n) in &w.errors_by_code {
            *self.errors_by_code.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &w.close_codes {
            *self.close_codes.entry(k.clone()).or_default() += n;
        }
        for q in &w.questions {
            self.questions
                .entry((q.room, q.q))
                .or_insert_with(|| QuestionStat::new(q.room, q.q))
                .merge(q);
        }
        for (r, n) in &w.joined_per_room {
            *self.joined_per_room.entry(*r).or_default() += n;
        }
        Ok(())
    }

    /// Adds the per-question spreads (known only once every worker's receipts are merged) to the
    /// histograms.
    pub fn record_spreads(&mut self) {
        for q in self.questions.values() {
            if let Some(s) = q.show_spread_us() {
                self.hists.record(Metric::QuestionSpread, s);
            }
            if let Some(s) = q.reveal_spread_us() {
                self.hists.record(Metric::RevealSpread, s);
            }
            if let Some(s) = q.display_spread_us() {
                self.hists.record(Metric::DisplaySpread, s);
            }
        }
    }
}

// ───────────────────────────── interval logs ─────────────────────────────

/// Writes the header of an `.hlog` file: start/base time and the column legend. Values are µs.
pub fn write_hlog_header(
    out: &mut impl Write,
    base_epoch: Duration,
    comment: &str,
) -> std::io::Result<()> {
    writeln!(out, "#{comment}")?;
    writeln!(
        out,
        "#Values are microseconds; tags are ringside-loadgen metric names"
    )?;
    writeln!(
        out,
        "#[StartTime: {:.3} (seconds since epoch)]",
        base_epoch.as_secs_f64()
    )?;
    writeln!(
        out,
        "#[BaseTime: {:.3} (seconds since epoch)]",
        base_epoch.as_secs_f64()
    )?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )
}

/// Appends one interval line per non-empty histogram of `hists`, tagged with the metric name.
/// `start` is relative to the log's base time.
pub fn write_hlog_interval(
    out: &mut impl Write,
    hists: &Hists,
    start: Duration,
    length: Duration,
) -> anyhow::Result<()> {
    let mut ser = V2DeflateSerializer::new();
    let mut w = hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder::new()
        .begin_log_with(out, &mut ser)
        .context("hlog writer")?;
    for m in Metric::ALL {
        let h = hists.get(m);
        if h.is_empty() {
            continue;
        }
        w.write_histogram(h, start, length, Tag::new(m.name()))
            .map_err(|e| anyhow!("hlog write: {e:?}"))?;
    }
    Ok(())
}

/// Reads `.hlog` files (ours or any tagged HdrHistogram log with µs values) and merges every interval
/// per tag: the cross-worker total of each metric.
pub fn merge_hlogs(texts: &[String]) -> anyhow::Result<BTreeMap<String, Histogram<u64>>> {
    let mut out: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for t in texts {
        for e in IntervalLogIterator::new(t.as_bytes()) {
            let e = e.map_err(|e| anyhow!("hlog parse: {e:?}"))?;
            if let LogEntry::Interval(iv) = e {
                let tag = iv.tag().map(|t| t.as_str().to_string()).unwrap_or_default();
                let h = decode_hist(iv.encoded_histogram())?;
                out.entry(tag)
                    .or_insert_with(new_hist)
                    .add(&h)
                    .map_err(|e| anyhow!("{e:?}"))?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_encoded_histograms_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Hists::default(), Hists::default(), Hists::default());
        for v in 1..=1000u64 {
            let (target, m) = if v % 3 == 0 {
                (&mut a, Metric::AnswerAck)
            } else {
                (&mut b, Metric::AnswerAck)
            };
            target.record(m, v * 10);
            all.record(m, v * 10);
        }
        b.record(Metric::Connect, 777);
        all.record(Metric::Connect, 777);
        let mut merged = Hists::default();
        merged.merge_encoded(&a.encode()).unwrap();
        merged.merge_encoded(&b.encode()).unwrap();
        for m in Metric::ALL {
            assert_eq!(merged.get(m), all.get(m), "{}", m.name());
        }
        let s = Summary::of(merged.get(Metric::AnswerAck));
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 10.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn interval_logs_of_two_workers_merge_per_tag() {
        let mut logs = Vec::new();
        for worker in 0..2u64 {
            let mut out = Vec::new();
            write_hlog_header(&mut out, Duration::from_secs(1_700_000_000), "worker").unwrap();
            for second in 0..3u64 {
                let mut h = Hists::default();
                h.record(Metric::QuestionDelivery, 1000 * (worker + 1) + second);
                h.record(Metric::PingRtt, 50);
                write_hlog_interval(
                    &mut out,
                    &h,
                    Duration::from_secs(second),
                    Duration::from_secs(1),
                )
                .unwrap();
            }
            logs.push(String::from_utf8(out).unwrap());
        }
        let merged = merge_hlogs(&logs).unwrap();
        assert_eq!(merged["question_delivery"].len(), 6);
        assert_eq!(merged["ping_rtt"].len(), 6);
        assert_eq!(
            merged["question_delivery"].max(),
            merged["question_delivery"].highest_equivalent(2002)
        );
    }

    #[test]
    fn counters_merge_by_sum_and_are_found_by_name() {
        let mut a = Counters {
            missed_events: 2,
            frames_received: 10,
            ..Default::default()
        };
        let b = Counters {
            missed_events: 1,
            frames_received: 5,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.get("missed_events"), Some(3));
        assert_eq!(a.get("frames_received"), Some(15));
        assert_eq!(a.get("nope"), None);
        assert!(Counters::NAMES.contains(&"duplicate_events"));
    }

    #[test]
    fn question_receipts_merge_into_first_and_last() {
        let mut q = QuestionStat::new(1, 2);
        let mut a = QuestionStat::new(1, 2);
        a.show_first_us = 100;
        a.show_last_us = 150;
        a.show_count = 3;
        let mut b = QuestionStat::new(1, 2);
        b.show_first_us = 90;
        b.show_last_us = 400;
        b.show_count = 2;
        q.merge(&a);
        q.merge(&b);
        assert_eq!(q.show_spread_us(), Some(310));
        assert_eq!(q.show_count, 5);
        assert_eq!(q.reveal_spread_us(), None);
    }

    #[test]
    fn event_slots_cover_every_server_event_and_unknown() {
        let names =
            <ringside_protocol::events::ServerEvent as ringside_protocol::events::Event>::NAMES;
        for (i, n) in names.iter().enumerate() {
            assert_eq!(event_slot(n.as_bytes()), i, "{n}");
        }
        assert!(names.contains(&"game:question:show"));
        assert_eq!(event_slot(b"nope"), event_slots() - 1);
    }
}
