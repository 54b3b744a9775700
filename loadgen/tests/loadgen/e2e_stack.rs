//! A small game end to end, against a stack this test starts itself: a real `redis-server` (testkit), the
//! Functions library loaded and a quiz imported by the real `ringside-quiz`, the real `ringside-engine`
//! and `ringside-edge` binaries, and `ringside-loadgen game` with its coordinator and two workers.
//!
//! It asserts what a player would see, from the report: every player joined, got every question, every
//! reveal and every result, and `game:end`; no room event was missed, duplicated or out of order; every
//! answer was acknowledged. A second game is a reconnect storm: one of two edge processes is SIGKILLed
//! mid-question, and every player must be back with every event and every answer must have an outcome
//! (its ack, or `already_answered` when resent). No timing is asserted.
//!
//! The other binaries are found next to this test's directory (`target/<profile>/`), where
//! `cargo test --workspace` builds them; `RINGSIDE_BIN_DIR` overrides. Needs `redis-server` (see
//! `scripts/setup.sh`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringside_testkit::RedisServer;

/// Every question's correct option is 0, so `--pick-first 0.7` simulates a 70 % accuracy for real.
const QUIZ: &str = r#"{"id":"loadgen-e2e","title":"Loadgen e2e","questions":[
 {"text":"One?","options":["yes","no","maybe","never"],"correct":0,"timeLimitMs":3000},
 {"text":"Two?","options":["yes","no"],"correct":0,"timeLimitMs":3000},
 {"text":"Three?","options":["yes","no","maybe"],"correct":0,"timeLimitMs":3000}]}"#;

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RINGSIDE_BIN_DIR") {
        return d.into();
    }
    // target/<profile>/deps/e2e_stack-<hash> → target/<profile>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build -p ringside-edge -p ringside-engine -p ringside-lua), \
         or point RINGSIDE_BIN_DIR at the directory that has it",
        p.display()
    );
    p
}

/// A child process killed when the test ends, even on panic.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 12 && buf[..n].starts_with(b"HTTP/1.1 200"))
}

/// The edge (its launcher when `--processes` > 1): stopped with SIGTERM, which the launcher forwards to
/// its children, then SIGKILLed with any child left.
struct Edge(Child);

impl Drop for Edge {
    fn drop(&mut self) {
        let pid = self.0.id();
        let kids = children_of(pid);
        signal("-TERM", pid);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for k in kids {
            signal("-KILL", k); // gone already, usually
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `sig` to one process with kill(1).
fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The pids whose parent is `pid` (from /proc/*/stat).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces, so read after its closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Redis with the quiz imported, the engine and the edge (`processes` processes on one port).
struct Stack {
    _redis: RedisServer,
    url: String,
    _engine: Proc,
    edge: Edge,
    port: u16,
    dir: tempfile::TempDir,
}

impl Stack {
    fn start(processes: usize) -> Stack {
        let redis = RedisServer::start().expect("redis-server (see scripts/setup.sh)");
        let url = redis.url();
        let dir = tempfile::tempdir().unwrap();
        let quiz = dir.path().join("quiz.json");
        std::fs::write(&quiz, QUIZ).unwrap();

        let st = Command::new(bin("ringside-quiz"))
            .arg("import")
            .arg(&quiz)
            .args(["--redis", &url])
            .status()
            .unwrap();
        assert!(st.success(), "ringside-quiz import failed");

        let engine = Proc(
            Command::new(bin("ringside-engine"))
                .args(["--redis", &url, "--http", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let port = free_port();
        let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
        let edge = Edge(
            Command::new(bin("ringside-edge"))
                .args([
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--redis",
                    &url,
                    "--threads",
                    "1",
                    "--processes",
                    &processes.to_string(),
                ])
                .arg("--web-root")
                .arg(&web)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let up = Instant::now() + Duration::from_secs(20);
        while !http_ok(port, "/readyz")
            || (processes > 1 && children_of(edge.0.id()).len() < processes)
        {
            assert!(
                Instant::now() < up,
                "the edge did not become ready on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Stack {
            _redis: redis,
            url,
            _engine: engine,
            edge,
            port,
            dir,
        }
    }
}

#[test]
fn a_small_game_delivers_every_question_reveal_and_result_to_every_player() {
    let stack = Stack::start(1);
    let (port, dir) = (stack.port, &stack.dir);

    let out_dir = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_ringside-loadgen"))
        .args([
            "game",
            "--url",
            // sealed questions (fair start): 1 s pauses, so each question is published 500 ms early
            &format!("ws://127.0.0.1:{port}/ws?sealed=1"),
            "--quiz",
            "loadgen-e2e",
        ])
        .args([
            "--rooms",
            "4",
            "--players-per-room",
            "50",
            "--workers",
            "2",
            "--codec",
            "mixed",
        ])
        .args([
            "--time-per-q-ms",
            "3000",
            "--countdown-ms",
            "1000",
            "--reveal-pause-ms",
            "1000",
        ])
        .args([
            "--ramp-rate",
            "1000",
            "--duration",
            "120",
            "--quiet",
            "--pick-first",
            "0.7",
        ])
        .args([
            "--slo",
            "missing_question_receipts=0",
            "--slo",
            "missing_reveal_receipts=0",
        ])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    let c = &r["counters"];
    let d = &r["delivery"];
    let players = 200u64;
    assert_eq!(r["stopped_by"], "completed", "{stdout}");
    assert_eq!(c["rooms_created"], 4, "{stdout}");
    assert_eq!(c["players_joined"], players, "{stdout}");
    assert_eq!(c["games_started"], 4, "{stdout}");
    assert_eq!(d["questions_played"], 4 * 3, "{stdout}");
    assert_eq!(c["question_receipts"], players * 3, "{stdout}");
    assert_eq!(c["reveal_receipts"], players * 3, "{stdout}");
    assert_eq!(c["result_receipts"], players * 3, "{stdout}");
    assert_eq!(c["game_end_receipts"], players, "{stdout}");
    assert_eq!(c["players_finished"], players, "{stdout}");
    assert_eq!(d["missing_question_receipts"], 0);
    assert_eq!(d["missing_reveal_receipts"], 0);
    assert_eq!(d["missing_result_receipts"], 0);
    assert_eq!(c["missed_events"], 0, "{stdout}");
    assert_eq!(c["duplicate_events"], 0, "{stdout}");
    assert_eq!(c["out_of_order_events"], 0, "{stdout}");
    assert_eq!(c["decode_errors"], 0, "{stdout}");
    assert_eq!(
        c["answers_sent"], c["answer_acks"],
        "every answer acknowledged: {stdout}"
    );
    assert_eq!(r["errors_by_code"], serde_json::json!({}), "{stdout}");
    // Both subprotocols were spoken (mixed): JSON text and MessagePack binary question frames.
    assert!(r["events"]["game:question:show"]["count"].as_u64().unwrap() >= players * 3);
    // Fair start: every question came sealed and was opened by its key; every player displayed it, so
    // each (room, question) has a display spread; the keys' lead and the share in time are reported.
    assert_eq!(c["sealed_shows"], players * 3, "{stdout}");
    assert_eq!(c["keys_received"], players * 3, "{stdout}");
    assert_eq!(c["seal_errors"], 0, "{stdout}");
    assert_eq!(d["keys_received"], players * 3);
    let in_time = d["keys_in_time_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&in_time), "{in_time}");
    let lat = &r["latency_ms"];
    assert_eq!(lat["display_spread"]["count"], 4 * 3, "{stdout}");
    assert_eq!(
        lat["key_lead"]["count"].as_u64().unwrap() + lat["key_late"]["count"].as_u64().unwrap(),
        players * 3,
        "{stdout}"
    );
}

/// A reconnect storm: 1.2 s into question 1 Redis pauses its writes for 2 s (answers are due around 40 %
/// of the 4 s limit, so many are sent in that second and wait for their reply), and 1 s later one of the
/// edge's two processes is SIGKILLed: the answers its players had in flight lose their reply with the
/// socket. The players reconnect to the other process, paced by `session:ack`'s policy, and send those
/// answers again, which get their ack or `already_answered`. Every player must be back, get every
/// question, reveal and result, miss no room event, and every answer must have an outcome.
#[test]
fn a_killed_edge_process_leaves_every_answer_with_an_outcome_and_every_player_back() {
    let stack = Stack::start(2);
    let kids = children_of(stack.edge.0.id());
    assert_eq!(kids.len(), 2, "two edge processes: {kids:?}");
    let out_dir = stack.dir.path().join("storm");
    let out = Command::new(env!("CARGO_BIN_EXE_ringside-loadgen"))
        .args([
            "reconnect-storm",
            "--url",
            &format!("ws://127.0.0.1:{}/ws", stack.port),
            "--quiz",
            "loadgen-e2e",
        ])
        .args([
            "--kill-cmd",
            &format!(
                "redis-cli -u {} CLIENT PAUSE 2000 WRITE >/dev/null && sleep 1 && kill -9 {}",
                stack.url, kids[0]
            ),
        ])
        .args(["--kill-at-question", "1", "--kill-delay-ms", "1200"])
        .args([
            "--rooms",
            "4",
            "--players-per-room",
            "50",
            "--workers",
            "2",
            "--codec",
            "mixed",
        ])
        .args([
            "--time-per-q-ms",
            "4000",
            "--countdown-ms",
            "1000",
            "--reveal-pause-ms",
            "1000",
        ])
        .args(["--ramp-rate", "1000", "--duration", "120", "--quiet"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The default objectives include missed/duplicate/out-of-order events = 0 and
    // answers_without_outcome = 0.
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    eprintln!("{stdout}"); // the storm's summary, for `--nocapture`
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    let c = &r["counters"];
    let d = &r["delivery"];
    let n = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("counter {k}: {stdout}"))
    };
    let players = 200u64;
    assert_eq!(r["stopped_by"], "completed", "{stdout}");
    assert_eq!(n("players_joined"), players, "{stdout}");
    // The storm happened, and everyone it hit is back.
    assert!(n("disconnects") > 0, "nobody lost a socket: {stdout}");
    assert_eq!(n("reconnects_ok"), n("disconnects"), "{stdout}");
    assert_eq!(n("reconnects_failed"), 0, "{stdout}");
    assert_eq!(n("players_finished"), players, "{stdout}");
    assert_eq!(n("players_unfinished"), 0, "{stdout}");
    assert_eq!(n("question_receipts"), players * 3, "{stdout}");
    assert_eq!(n("reveal_receipts"), players * 3, "{stdout}");
    // Personal results too, also those of a leaderboard a member replayed (a868565).
    assert_eq!(
        n("result_receipts"),
        players * 3,
        "{stdout}\nper question: {}",
        r["questions"]
    );
    assert_eq!(d["missing_question_receipts"], 0, "{stdout}");
    assert_eq!(n("missed_events"), 0, "{stdout}");
    assert_eq!(n("duplicate_events"), 0, "{stdout}");
    assert_eq!(n("out_of_order_events"), 0, "{stdout}");
    assert_eq!(n("decode_errors"), 0, "{stdout}");
    // Every answer has exactly one outcome: an ack, `already_answered` to its resend, or another error
    // (e.g. late_answer after a long reconnect) — never silence.
    assert_eq!(n("answers_without_outcome"), 0, "{stdout}");
    assert_eq!(
        n("answers_sent"),
        n("answer_acks") + n("answers_already_answered") + n("answer_errors"),
        "{stdout}"
    );
    assert!(
        n("answers_already_answered") <= n("answers_resent"),
        "{stdout}"
    );
    // The answers in flight at the kill were sent again (the second of paused writes makes sure some were).
    assert!(
        n("answers_resent") > 0,
        "no answer was in flight at the kill: {stdout}"
    );
    assert!(n("answer_acks") > 0, "{stdout}");
}
