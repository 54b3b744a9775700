//! A small game end to end, against a stack this test starts itself: a real `redis-server` (testkit), the
//! Functions library loaded and a quiz imported by the real `ringside-quiz`, the real `ringside-engine`
//! and `ringside-edge` binaries, and `ringside-loadgen game` with its coordinator and two workers.
//!
//! It asserts what a player would see, from the report: every player joined, got every question, every
//! reveal and every result, and `game:end`; no room event was missed, duplicated or out of order; every
//! answer was acknowledged. No timing is asserted.
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

#[test]
fn a_small_game_delivers_every_question_reveal_and_result_to_every_player() {
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

    let _engine = Proc(
        Command::new(bin("ringside-engine"))
            .args(["--redis", &url, "--http", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = free_port();
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
    let _edge = Proc(
        Command::new(bin("ringside-edge"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--redis",
                &url,
                "--threads",
                "1",
            ])
            .arg("--web-root")
            .arg(&web)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = Instant::now() + Duration::from_secs(20);
    while !http_ok(port, "/readyz") {
        assert!(
            Instant::now() < up,
            "the edge did not become ready on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

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
