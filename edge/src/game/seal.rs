//! Fair start (issue 15): a question goes out ahead of its `showAt` with its content sealed, and a small
//! key frame follows just early enough to land before `showAt` — so every member of a room can show the
//! question at the same instant however many sockets this edge has to write first.
//!
//! Redis Functions cannot encrypt, and each edge worker writes only its own sockets, so the edge seals:
//! when a worker receives a room's `game:question:show` whose `showAt` is far enough ahead, it draws a
//! fresh random 256-bit key (per question, per worker thread), seals the content (`question`, `answers`,
//! `imageUrl`) with AES-256-GCM — the one AEAD that both `ring` (already linked for TLS) and WebCrypto
//! have — encodes the sealed show once per subprotocol, fans it out to the members that declared support
//! (`/ws?sealed=1`), and sends `game:question:key` to them at `showAt − lead` ([`QuestionSeal::key_at`]).
//! Members without support get the clear show at that same instant instead, so nobody reads the content
//! earlier than the key's lead (docs/security.md "Fair start").
//!
//! The lead is `floor + 2 × the worker's sockets in rooms × measured time per frame` ([`FanoutRate`]),
//! capped: the key must reach the last socket of this worker before `showAt`, and each frame costs the
//! kernel's TCP send. All of the worker's sockets count, not only the room's, because rooms that started
//! together send their keys at nearly the same moment. Floor and cap are flags (`--seal-lead-floor-ms`,
//! `--seal-lead-cap-ms`).

use super::hub::RoomFrame;
use crate::ws::frame::{self, Opcode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ringside_protocol::events::{
    QuestionKey, QuestionShow, SealedContent, SealedQuestion, ServerEvent,
};
use ringside_protocol::{Codec, Envelope};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// The name of [`SealedQuestion::alg`].
pub const ALG: &str = "A256GCM";

/// The query parameter of the upgrade by which a client declares that it opens sealed questions.
pub const QUERY_PARAM: &str = "sealed";

static ENABLED: AtomicBool = AtomicBool::new(true);
static FLOOR_MS: AtomicU64 = AtomicU64::new(DEFAULT_FLOOR_MS);
static CAP_MS: AtomicU64 = AtomicU64::new(DEFAULT_CAP_MS);

/// The least lead of a key over `showAt`: one network trip of a slow phone plus its jitter.
pub const DEFAULT_FLOOR_MS: u64 = 150;
/// The most lead: the head start a cheater could get, whatever the room's size.
pub const DEFAULT_CAP_MS: u64 = 1000;
/// Time per frame of a fan-out before this worker has measured one (3.3 µs measured, perf/edge.md).
const DEFAULT_FRAME_NS: f64 = 5_000.0;
/// Fan-outs smaller than this do not update the measured rate (too noisy).
const MEASURE_MIN_FRAMES: usize = 64;

/// The fair-start flags, flattened into the game's flags.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SealFlags {
    /// Seal questions ahead of their showAt for clients that support it (false: every client gets the
    /// question in clear at showAt − lead).
    #[arg(long = "seal", env = "RINGSIDE_EDGE_SEAL", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// The least lead of a question's key over its showAt, ms.
    #[arg(long = "seal-lead-floor-ms", env = "RINGSIDE_EDGE_SEAL_LEAD_FLOOR_MS", default_value_t = DEFAULT_FLOOR_MS)]
    pub floor_ms: u64,
    /// The most lead of a question's key over its showAt, ms (the largest head start anyone gets).
    #[arg(long = "seal-lead-cap-ms", env = "RINGSIDE_EDGE_SEAL_LEAD_CAP_MS", default_value_t = DEFAULT_CAP_MS)]
    pub cap_ms: u64,
}

impl Default for SealFlags {
    fn default() -> Self {
        SealFlags {
            enabled: true,
            floor_ms: DEFAULT_FLOOR_MS,
            cap_ms: DEFAULT_CAP_MS,
        }
    }
}

impl SealFlags {
    /// Makes these the process's settings (every worker reads them when a question arrives).
    pub fn install(&self) {
        ENABLED.store(self.enabled, Relaxed);
        FLOOR_MS.store(self.floor_ms, Relaxed);
        CAP_MS.store(self.cap_ms.max(self.floor_ms), Relaxed);
    }
}

/// The edge's clock, epoch ms (the same clock as `serverTime` in `pong`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One worker's measured fan-out rate: the time per frame from the start of a room event's fan-out
/// until the worker's tasks have written it (the writes happen in each socket's writer task after the
/// frames are queued), as a moving average.
pub struct FanoutRate {
    ns_per_frame: Cell<f64>,
}

impl Default for FanoutRate {
    fn default() -> Self {
        FanoutRate {
            ns_per_frame: Cell::new(DEFAULT_FRAME_NS),
        }
    }
}

impl FanoutRate {
    /// One fan-out of `frames` frames took `took`.
    pub fn observe(&self, frames: usize, took: Duration) {
        if frames < MEASURE_MIN_FRAMES {
            return;
        }
        let sample = took.as_nanos() as f64 / frames as f64;
        let old = self.ns_per_frame.get();
        self.ns_per_frame.set(old * 0.7 + sample * 0.3);
    }

    pub fn ns_per_frame(&self) -> f64 {
        self.ns_per_frame.get()
    }

    /// The key's lead over `showAt` when this worker has `members` sockets in rooms, ms.
    pub fn lead_ms(&self, members: usize) -> u64 {
        let floor = FLOOR_MS.load(Relaxed);
        let cap = CAP_MS.load(Relaxed).max(floor);
        let fanout = (2.0 * members as f64 * self.ns_per_frame() / 1e6).ceil() as u64;
        (floor + fanout).min(cap)
    }
}

/// The seal of one question on one worker: the key, the sealed show frames and the key frames.
pub struct QuestionSeal {
    pub q: u32,
    /// The `seq` of the question's `game:question:show`.
    pub seq: u64,
    pub show_at: u64,
    /// When the key goes out (edge clock, epoch ms).
    pub key_at: u64,
    pub key_sent: bool,
    /// The clear show, for the members it was held back from.
    pub clear: Arc<RoomFrame>,
    code: Arc<str>,
    key: [u8; 32],
    sealed_json: Bytes,
    sealed_msgpack: Bytes,
    key_json: Bytes,
    key_msgpack: Bytes,
}

/// The key time of a show that arrived before it (`showAt − lead`); `None` when its `showAt` is too
/// close (or absent): the clear show then goes out at once, as before. With sealing off (`--seal false`)
/// a question is still held back to its key time, only never sealed: everyone gets it in clear then.
pub fn wants_seal(show: &QuestionShow, lead_ms: u64, now: u64) -> Option<u64> {
    if show.sealed.is_some() {
        return None;
    }
    let key_at = show.show_at?.checked_sub(lead_ms)?;
    (key_at > now).then_some(key_at)
}

fn frame_of(codec: Codec, env: &Envelope<ServerEvent>) -> Bytes {
    let op = if codec.is_text() {
        Opcode::Text
    } else {
        Opcode::Binary
    };
    frame::encode(op, &env.encode(codec))
}

fn aad(code: &str, q: u32) -> String {
    format!("{code}:{q}")
}

/// Seals `show`'s content with `key` (a fresh random nonce): the show as a member without the key sees it.
pub fn seal_show(key: &[u8; 32], code: &str, show: &QuestionShow) -> QuestionShow {
    let mut iv = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut iv).expect("system random");
    seal_with(key, iv, code, show)
}

fn seal_with(key: &[u8; 32], iv: [u8; NONCE_LEN], code: &str, show: &QuestionShow) -> QuestionShow {
    let content = SealedContent {
        question: show.question.clone(),
        answers: show.answers.clone(),
        image_url: show.image_url.clone(),
    };
    let mut buf = serde_json::to_vec(&content).expect("content serializes");
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(iv),
        Aad::from(aad(code, show.q_index).as_bytes()),
        &mut buf,
    )
    .expect("seal");
    QuestionShow {
        question: String::new(),
        answers: Vec::new(),
        image_url: None,
        sealed: Some(SealedQuestion {
            alg: ALG.into(),
            iv: B64.encode(iv),
            ct: B64.encode(&buf),
        }),
        ..show.clone()
    }
}

/// Opens a sealed show with its key (base64, as `game:question:key` carries it); for tests and tools.
pub fn open(key_b64: &str, code: &str, show: &QuestionShow) -> Result<SealedContent, String> {
    let s = show.sealed.as_ref().ok_or("not sealed")?;
    let key = B64.decode(key_b64).map_err(|e| e.to_string())?;
    let iv: [u8; NONCE_LEN] = B64
        .decode(&s.iv)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "iv is not 12 bytes")?;
    let mut ct = B64.decode(&s.ct).map_err(|e| e.to_string())?;
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| "bad key")?);
    let plain = k
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad(code, show.q_index).as_bytes()),
            &mut ct,
        )
        .map_err(|_| "does not open")?;
    serde_json::from_slice(plain).map_err(|e| e.to_string())
}

impl QuestionSeal {
    /// Seals the show of `frame` (a `game:question:show` with `showAt`), its key to go out at `key_at`.
    pub fn new(frame: &Arc<RoomFrame>, show: &QuestionShow, key_at: u64) -> QuestionSeal {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).expect("system random");
        let sealed = Envelope::new(ServerEvent::QuestionShow(seal_show(
            &key,
            &frame.code,
            show,
        )))
        .with_seq(frame.seq);
        let key_ev = Envelope::new(ServerEvent::QuestionKey(QuestionKey {
            q_index: show.q_index,
            show_at: show.show_at.unwrap_or_default(),
            key: B64.encode(key),
        }));
        QuestionSeal {
            q: show.q_index,
            seq: frame.seq,
            show_at: show.show_at.unwrap_or_default(),
            key_at,
            key_sent: false,
            clear: frame.clone(),
            code: frame.code.clone(),
            key,
            sealed_json: frame_of(Codec::Json, &sealed),
            sealed_msgpack: frame_of(Codec::Msgpack, &sealed),
            key_json: frame_of(Codec::Json, &key_ev),
            key_msgpack: frame_of(Codec::Msgpack, &key_ev),
        }
    }

    /// The sealed `game:question:show` frame (with its `seq`).
    pub fn sealed_frame(&self, codec: Codec) -> &Bytes {
        match codec {
            Codec::Json => &self.sealed_json,
            Codec::Msgpack => &self.sealed_msgpack,
        }
    }

    /// The `game:question:key` frame.
    pub fn key_frame(&self, codec: Codec) -> &Bytes {
        match codec {
            Codec::Json => &self.key_json,
            Codec::Msgpack => &self.key_msgpack,
        }
    }

    /// Whether a member must not see this question's content yet.
    pub fn pending(&self) -> bool {
        !self.key_sent
    }

    /// `show` (this question, e.g. a snapshot's `currentQ`) sealed with this question's key.
    pub fn seal(&self, show: &QuestionShow) -> QuestionShow {
        seal_show(&self.key, &self.code, show)
    }
}

/// How long until `at` (edge clock, epoch ms), to the microsecond.
pub fn until(at: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_millis(at).saturating_sub(now)
}

/// Waits until the edge clock reads `at` (epoch ms): a room's key time, when its question goes out in
/// clear and its key to the sealed sockets. Through a wall-clock `timerfd`, so the burst starts on the
/// instant; monoio's timer (the fallback when no timerfd can be had) fires on its next whole 1 ms tick,
/// and the whole-ms `until` this replaced added up to another ms (perf/vs-peers.md).
pub async fn sleep_until_key_time(at: u64) {
    wait_key_time(at).await;
}

/// [`sleep_until_key_time`]; true when the timerfd ended the wait. monoio's timer, set 2 ms past the
/// instant, bounds it: a wall clock stepped back while waiting delays the key by 2 ms, not by the step.
async fn wait_key_time(at: u64) -> bool {
    let backstop = until(at) + Duration::from_millis(2);
    if let Ok(fd) = crate::sys::wall_clock_timer(at) {
        if let Ok(timer) = monoio::net::UnixStream::from_std(fd.into()) {
            monoio::select! {
                r = timer.readable(false) => if r.is_ok() { return true },
                _ = monoio::time::sleep(backstop) => return false,
            }
        }
    }
    monoio::time::sleep(until(at)).await;
    false
}

/// The key time of a question whose show this worker did not seal (a socket caught up from the log in
/// a room that had no member here): `showAt − floor`.
pub fn fallback_key_at(show_at: u64) -> u64 {
    show_at.saturating_sub(FLOOR_MS.load(Relaxed))
}

/// Whether sealing is on in this process.
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ```json blocks of docs/protocol.md.
    fn doc_examples() -> Vec<Envelope<ServerEvent>> {
        let doc = include_str!("../../../docs/protocol.md");
        let mut out = Vec::new();
        let mut block: Option<String> = None;
        for line in doc.lines() {
            match (&mut block, line.trim_end()) {
                (None, "```json") => block = Some(String::new()),
                (Some(b), "```") => {
                    let mut bytes = std::mem::take(b).into_bytes();
                    if let Ok(env) = Envelope::<ServerEvent>::decode(Codec::Json, &mut bytes) {
                        out.push(env);
                    }
                    block = None;
                }
                (Some(b), l) => b.push_str(l),
                (None, _) => {}
            }
        }
        out
    }

    fn show() -> QuestionShow {
        QuestionShow {
            q_index: 0,
            total_questions: 10,
            question: "What is the capital of Australia?".into(),
            answers: vec![
                "Sydney".into(),
                "Canberra".into(),
                "Melbourne".into(),
                "Perth".into(),
            ],
            ends_at: 1_795_500_023_000,
            time_limit_ms: 20_000,
            points: 1000,
            image_url: Some("https://example.org/img/australia.png".into()),
            show_at: Some(1_795_500_003_000),
            sealed: None,
        }
    }

    #[test]
    fn a_sealed_show_opens_with_its_key_only_and_only_for_its_room_and_question() {
        let key = [7u8; 32];
        let sealed = seal_show(&key, "K7QP2M", &show());
        assert!(
            sealed.question.is_empty() && sealed.answers.is_empty() && sealed.image_url.is_none()
        );
        let opened = open(&B64.encode(key), "K7QP2M", &sealed).unwrap();
        assert_eq!(opened.question, show().question);
        assert_eq!(opened.answers, show().answers);
        assert_eq!(opened.image_url, show().image_url);
        assert!(
            open(&B64.encode([8u8; 32]), "K7QP2M", &sealed).is_err(),
            "another key"
        );
        assert!(
            open(&B64.encode(key), "AAAAAA", &sealed).is_err(),
            "another room"
        );
        let mut moved = sealed.clone();
        moved.q_index = 1;
        assert!(
            open(&B64.encode(key), "K7QP2M", &moved).is_err(),
            "another question"
        );
        // a fresh nonce each time: the same content never seals to the same bytes
        assert_ne!(seal_show(&key, "K7QP2M", &show()).sealed, sealed.sealed);
    }

    /// docs/protocol.md's sealed example opens with its key example (room K7QP2M) to its clear example.
    #[test]
    fn the_protocol_docs_sealed_example_opens_with_its_key_example() {
        let ex = doc_examples();
        let sealed = ex.iter().find_map(|e| match &e.event {
            ServerEvent::QuestionShow(s) if s.sealed.is_some() => Some(s.clone()),
            _ => None,
        });
        let key = ex.iter().find_map(|e| match &e.event {
            ServerEvent::QuestionKey(k) => Some(k.clone()),
            _ => None,
        });
        let (sealed, key) = (
            sealed.expect("a sealed example"),
            key.expect("a key example"),
        );
        let opened =
            open(&key.key, "K7QP2M", &sealed).expect("the doc's key opens the doc's sealed show");
        assert_eq!(opened.question, show().question);
        assert_eq!(opened.answers, show().answers);
        assert_eq!(key.show_at, sealed.show_at.unwrap());
    }

    #[test]
    fn a_show_is_held_to_its_key_time_only_when_that_is_still_ahead() {
        let s = show(); // showAt 1_795_500_003_000
        assert_eq!(
            wants_seal(&s, 300, 1_795_500_000_000),
            Some(1_795_500_002_700)
        );
        assert_eq!(
            wants_seal(&s, 300, 1_795_500_002_700),
            None,
            "key time now: clear at once"
        );
        let old = QuestionShow {
            show_at: None,
            ..show()
        };
        assert_eq!(
            wants_seal(&old, 300, 0),
            None,
            "no showAt: shown on arrival"
        );
        let sealed = seal_show(&[1; 32], "K7QP2M", &s);
        assert_eq!(wants_seal(&sealed, 300, 0), None, "never sealed twice");
    }

    #[test]
    fn the_lead_grows_with_the_room_between_floor_and_cap() {
        let r = FanoutRate::default();
        r.observe(1000, Duration::from_millis(5)); // 5 us per frame
        let (floor, cap) = (FLOOR_MS.load(Relaxed), CAP_MS.load(Relaxed));
        assert_eq!(r.lead_ms(0), floor);
        assert!(r.lead_ms(10_000) > floor);
        assert_eq!(r.lead_ms(10_000_000), cap);
    }

    /// Prints a sealed example for the doc (run with --ignored --nocapture).
    #[test]
    #[ignore]
    fn print_doc_example() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let iv: [u8; NONCE_LEN] = std::array::from_fn(|i| (0xa0 + i) as u8);
        let s = seal_with(&key, iv, "K7QP2M", &show());
        println!(
            "{}",
            String::from_utf8(
                Envelope::new(ServerEvent::QuestionShow(s))
                    .with_seq(7)
                    .to_json()
            )
            .unwrap()
        );
        println!("{}", B64.encode(key));
    }

    /// The key-time wait never ends before its instant (the fair start: nobody gets the question
    /// early), on both drivers, and a key time already past does not wait. Nothing asserts how soon
    /// after the instant it ends (that is measured: perf/vs-peers.md).
    #[test]
    fn the_key_time_wait_ends_on_or_after_its_instant() {
        fn now_us() -> u128 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros()
        }
        fn check<D: monoio::Driver>(mut rt: monoio::Runtime<D>) {
            rt.block_on(async {
                let mut by_timerfd = 0;
                for ahead_ms in [0u64, 3, 25] {
                    let at = now_ms() + ahead_ms;
                    let waited =
                        monoio::time::timeout(Duration::from_secs(10), wait_key_time(at)).await;
                    assert!(waited.is_ok(), "the wait for +{ahead_ms} ms never ended");
                    by_timerfd += usize::from(waited == Ok(true));
                    assert!(
                        now_us() >= u128::from(at) * 1000,
                        "woke before the key time (+{ahead_ms} ms)"
                    );
                }
                // the backstop (2 ms late) may win a wait on a busy machine, not all three
                assert!(by_timerfd > 0, "the timerfd never ended a wait");
                let past = now_ms() - 5_000;
                let waited =
                    monoio::time::timeout(Duration::from_secs(10), sleep_until_key_time(past))
                        .await;
                assert!(waited.is_ok(), "a past key time waited");
            });
        }
        assert!(
            crate::sys::wall_clock_timer(now_ms() + 1).is_ok(),
            "no timerfd"
        );
        let (epoll, uring) = crate::worker::test_runtimes();
        check(epoll);
        if let Some(rt) = uring {
            check(rt);
        }
    }
}
