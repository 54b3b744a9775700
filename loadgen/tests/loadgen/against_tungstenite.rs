//! The load generator's own WebSocket client against an independent server implementation
//! (tokio-tungstenite on 127.0.0.1:0), through the real binary and its coordinator/worker processes:
//! the `connect` scenario, which needs no Ringside server.
//!
//! The server checks what the client sends (tungstenite refuses unmasked client frames, so every frame
//! that arrives was masked; the pong must echo the ping's payload; the close must carry 1000), and the
//! report must show that the client handled what the server sent: a text message, a WebSocket ping, and
//! a message fragmented over two frames.
//!
//! A server that answers its first upgrades with `503` + `Retry-After` (an edge past an admission
//! threshold) checks that the client waits and tries again, and counts the refusals apart.
//!
//! The SLO tests run the same scenario with an objective nothing can meet (`connect_p99_ms=0`: every
//! connect takes more than 0 ms) and one nothing can miss (a minute), and check the exit code.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Default)]
struct Seen {
    /// Upgrades still to refuse with `503` + `Retry-After: 1`.
    refuse: usize,
    refused: usize,
    upgrades: usize,
    offered_json: usize,
    pongs_echoed: usize,
    closes_normal: usize,
    client_messages: usize,
    errors: Vec<String>,
}

const SESSION_ACK: &str = r#"{"event":"session:ack","data":{"socketId":"t-1","serverTime":1795500000000,"pingInterval":60000,"protocol":"ringside.v1.json"}}"#;
const JOINED_PART_1: &str =
    r#"{"event":"room:player:joined","seq":1,"data":{"players":[{"id":"p1","#;
const JOINED_PART_2: &str = r#""name":"Ada","avatar":1}],"joinedCount":1,"totalCount":1}}"#;

#[allow(clippy::result_large_err)] // the callback's error type is tungstenite's
async fn serve(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let refuse = {
                let mut s = seen.lock().unwrap();
                let r = s.refuse > 0;
                s.refuse = s.refuse.saturating_sub(1);
                r
            };
            if refuse {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // Read the whole request first (closing with unread bytes would reset the socket).
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let busy = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                if tcp.write_all(busy.as_bytes()).await.is_ok() {
                    seen.lock().unwrap().refused += 1;
                }
                let _ = tcp.shutdown().await;
                return;
            }
            let seen2 = seen.clone();
            let cb = move |req: &Request, mut resp: Response| {
                let offered = req
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if offered.split(',').any(|p| p.trim() == "ringside.v1.json") {
                    seen2.lock().unwrap().offered_json += 1;
                    resp.headers_mut().insert(
                        "Sec-WebSocket-Protocol",
                        "ringside.v1.json".parse().unwrap(),
                    );
                }
                Ok(resp)
            };
            let mut ws = match tokio_tungstenite::accept_hdr_async(tcp, cb).await {
                Ok(ws) => ws,
                Err(e) => {
                    seen.lock().unwrap().errors.push(format!("accept: {e}"));
                    return;
                }
            };
            seen.lock().unwrap().upgrades += 1;
            let sent = async {
                ws.send(Message::Text(SESSION_ACK.into())).await?;
                ws.send(Message::Ping(b"hello".to_vec().into())).await?;
                ws.send(Message::Frame(Frame::message(
                    JOINED_PART_1.as_bytes().to_vec(),
                    OpCode::Data(Data::Text),
                    false,
                )))
                .await?;
                ws.send(Message::Frame(Frame::message(
                    JOINED_PART_2.as_bytes().to_vec(),
                    OpCode::Data(Data::Continue),
                    true,
                )))
                .await
            };
            if let Err(e) = sent.await {
                seen.lock().unwrap().errors.push(format!("send: {e}"));
                return;
            }
            while let Some(m) = ws.next().await {
                match m {
                    Ok(Message::Pong(p)) if &p[..] == b"hello" => {
                        seen.lock().unwrap().pongs_echoed += 1
                    }
                    Ok(Message::Pong(p)) => {
                        seen.lock().unwrap().errors.push(format!("pong with {p:?}"))
                    }
                    Ok(Message::Close(Some(cf))) => {
                        if cf.code == CloseCode::Normal {
                            seen.lock().unwrap().closes_normal += 1;
                        }
                        break;
                    }
                    Ok(Message::Close(None)) => {
                        seen.lock()
                            .unwrap()
                            .errors
                            .push("close without a code".into());
                        break;
                    }
                    Ok(_) => seen.lock().unwrap().client_messages += 1,
                    Err(e) => {
                        seen.lock().unwrap().errors.push(format!("read: {e}"));
                        break;
                    }
                }
            }
        });
    }
}

/// Starts the server on a runtime of its own thread; returns its address and what it saw.
fn start_server() -> (SocketAddr, Arc<Mutex<Seen>>) {
    start_server_refusing(0)
}

/// The server, answering its first `refuse` upgrades with `503` + `Retry-After: 1`.
fn start_server_refusing(refuse: usize) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen {
        refuse,
        ..Seen::default()
    }));
    let (tx, rx) = std::sync::mpsc::channel();
    let s = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            serve(l, s).await;
        });
    });
    (rx.recv().unwrap(), seen)
}

fn loadgen(
    addr: SocketAddr,
    sockets: u32,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringside-loadgen"));
    cmd.args([
        "connect",
        "--url",
        &format!("ws://{addr}/ws"),
        "--sockets",
        &sockets.to_string(),
    ])
    .args([
        "--hold-secs",
        "1",
        "--duration",
        "60",
        "--workers",
        "2",
        "--quiet",
    ])
    .arg("--out")
    .arg(out)
    .args(extra);
    cmd.output().expect("running ringside-loadgen")
}

fn report(out: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
        .expect("valid JSON")
}

#[test]
fn the_client_speaks_rfc_6455_with_an_independent_server() {
    let (addr, seen) = start_server();
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(addr, 40, dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let r = report(dir.path());
    let c = &r["counters"];
    assert_eq!(c["sockets_connected"], 40, "{stdout}");
    assert_eq!(c["connect_failed"], 0);
    assert_eq!(c["session_acks"], 40);
    assert_eq!(c["ws_pings_received"], 40);
    assert_eq!(c["decode_errors"], 0);
    assert_eq!(
        r["events"]["room:player:joined"]["count"], 40,
        "the fragmented message was reassembled"
    );
    assert_eq!(r["latency_ms"]["connect"]["count"], 40);

    // The client closes when the hold ends; give the server a moment to read the close frames.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while seen.lock().unwrap().closes_normal < 40 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let s = seen.lock().unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(
        (s.upgrades, s.offered_json, s.pongs_echoed, s.closes_normal),
        (40, 40, 40, 40),
        "{s:?}"
    );

    // The merged histograms and every worker's interval log are there.
    assert!(dir.path().join("total.hlog").exists());
    assert!(
        dir.path().join("hlog/worker-0.hlog").exists()
            && dir.path().join("hlog/worker-1.hlog").exists()
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("connect"));
    // perf/runs/ keeps report.json and total.hlog only: `report-html` writes the same page from them.
    std::fs::remove_file(dir.path().join("report.html")).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_ringside-loadgen"))
        .arg("report-html")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(again.success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("report.html")).unwrap(),
        html
    );
}

#[test]
fn an_upgrade_refused_with_503_is_tried_again_after_its_retry_after() {
    let (addr, seen) = start_server_refusing(3);
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(addr, 5, dir.path(), &["--connect-retries", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let c = &report(dir.path())["counters"];
    // Every socket got in, though 3 upgrades were refused and no connect retry was allowed: a refusal
    // is waited out (its Retry-After), not counted as a failure or a retry.
    assert_eq!(c["sockets_connected"], 5, "{stdout}");
    assert_eq!(c["upgrade_refused"], 3, "{stdout}");
    assert_eq!(c["sockets_attempted"], 8, "{stdout}");
    assert_eq!(c["upgrade_failed"], 0, "{stdout}");
    assert_eq!(c["connect_retries"], 0, "{stdout}");
    assert_eq!(c["connect_gave_up"], 0, "{stdout}");
    assert!(stdout.contains("admission: 3 upgrades refused"), "{stdout}");
    let s = seen.lock().unwrap();
    assert_eq!((s.refused, s.upgrades), (3, 5), "{s:?}");
}

#[test]
fn an_objective_nothing_can_meet_fails_the_run_with_exit_code_2() {
    let (addr, _) = start_server();
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(addr, 5, dir.path(), &["--slo", "connect_p99_ms=0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("SLO FAILED connect_p99_ms"), "{stdout}");
    assert!(
        stdout.contains("FAILED objectives (1): connect_p99_ms"),
        "{stdout}"
    );
    assert_eq!(report(dir.path())["slo_passed"], false);
}

#[test]
fn an_objective_that_is_met_keeps_exit_code_0() {
    let (addr, _) = start_server();
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(
        addr,
        5,
        dir.path(),
        &[
            "--slo",
            "connect_p99_ms=60000",
            "--slo",
            "sockets_connected>=5",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("SLO ok     connect_p99_ms"), "{stdout}");
}

#[test]
fn an_unknown_objective_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = loadgen(
        "127.0.0.1:9".parse().unwrap(),
        1,
        dir.path(),
        &["--slo", "nonsense_p99_ms=1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key"));
}
