//! End-to-end tests of the edge in echo mode over real sockets on 127.0.0.1, with
//! tokio-tungstenite as the independent client and raw sockets for what it refuses to send.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use ringside_edge::config::{Config, Driver};
use ringside_edge::session::{Rejection, Session, SessionFactory};
use ringside_edge::ws::frame::{encode_client, MessageKind};
use ringside_edge::ws::handshake::UpgradeRequest;
use ringside_edge::{ConnHandle, FrameClass, ServerHandle};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const MASK: [u8; 4] = [1, 2, 3, 4];

async fn stop(srv: ServerHandle) {
    srv.drain();
    tokio::task::spawn_blocking(move || srv.join())
        .await
        .unwrap();
}

async fn next_msg<S>(ws: &mut S) -> Message
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("message in time")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_text_binary_and_fragmented_messages_under_every_driver() {
    for driver in DRIVERS {
        let mut cfg = echo_config();
        cfg.driver = driver;
        let srv = start(cfg);
        let url = format!("ws://{}/ws", srv.local_addr());
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();

        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(
            next_msg(&mut ws).await,
            Message::text("hello"),
            "{driver:?}"
        );

        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        assert_eq!(
            next_msg(&mut ws).await,
            Message::binary(vec![0u8, 1, 2, 255])
        );

        ws.send(Message::Frame(Frame::message(
            "Hel",
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
        ws.send(Message::Ping("p".into())).await.unwrap();
        ws.send(Message::Frame(Frame::message(
            "lo wor",
            OpCode::Data(Data::Continue),
            false,
        )))
        .await
        .unwrap();
        ws.send(Message::Frame(Frame::message(
            "ld",
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
        assert_eq!(next_msg(&mut ws).await, Message::Pong("p".into()));
        assert_eq!(next_msg(&mut ws).await, Message::text("Hello world"));

        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(next_msg(&mut ws).await, Message::binary(big));

        ws.close(None).await.unwrap();
        match next_msg(&mut ws).await {
            Message::Close(_) => {}
            m => panic!("expected close, got {m:?}"),
        }
        stop(srv).await;
    }
}

#[tokio::test]
async fn unmasked_client_frame_gets_close_1002() {
    let srv = start(echo_config());
    let mut ws = RawWs::connect(srv.local_addr()).await;
    ws.send(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(ws.close_code().await, Some(1002));
    assert_eq!(srv.metrics().protocol_closes(1002), 1);
    stop(srv).await;
}

#[tokio::test]
async fn invalid_utf8_text_gets_close_1007() {
    let srv = start(echo_config());
    let mut ws = RawWs::connect(srv.local_addr()).await;
    ws.send(&encode_client(true, 1, MASK, &[b'o', b'k', 0xC3, 0x28]))
        .await;
    assert_eq!(ws.close_code().await, Some(1007));
    stop(srv).await;
}

#[tokio::test]
async fn oversized_message_gets_close_1009() {
    let mut cfg = echo_config();
    cfg.limits.max_frame = 1024;
    cfg.limits.max_message = 2048;
    let srv = start(cfg);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", srv.local_addr()))
        .await
        .unwrap();
    // Fragments within the frame limit whose sum passes the message limit.
    for (i, fin) in [(0, false), (1, false), (2, true)] {
        let op = if i == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let _ = ws
            .send(Message::Frame(Frame::message(vec![7u8; 1000], op, fin)))
            .await;
    }
    match next_msg(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Size),
        m => panic!("expected close 1009, got {m:?}"),
    }
    stop(srv).await;
}

#[tokio::test]
async fn wrong_subprotocol_gets_400_with_a_clear_body() {
    let mut cfg = echo_config();
    cfg.echo = false; // the game's rule: a ringside subprotocol is required
    let srv = start(cfg);
    let r = http_raw(
        srv.local_addr(),
        &upgrade_request("/ws", "Sec-WebSocket-Protocol: chat, superchat\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(
        r.contains("ringside.v1.json") && r.contains("ringside.v1.msgpack"),
        "{r}"
    );
    stop(srv).await;
}

#[tokio::test]
async fn supported_subprotocol_is_negotiated() {
    let srv = start(echo_config());
    let r = http_head(
        srv.local_addr(),
        &upgrade_request("/ws", "Sec-WebSocket-Protocol: x, ringside.v1.json\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    assert!(
        r.contains("Sec-WebSocket-Protocol: ringside.v1.json\r\n"),
        "{r}"
    );
    stop(srv).await;
}

#[tokio::test]
async fn missing_or_bad_version_gets_426() {
    let srv = start(echo_config());
    let bad = upgrade_request("/ws", "").replace(
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Version: 8\r\n",
    );
    let r = http_raw(srv.local_addr(), &bad).await;
    assert!(
        r.starts_with("HTTP/1.1 426") && r.contains("Sec-WebSocket-Version: 13"),
        "{r}"
    );
    let missing = upgrade_request("/ws", "").replace("Sec-WebSocket-Version: 13\r\n", "");
    assert!(http_raw(srv.local_addr(), &missing)
        .await
        .starts_with("HTTP/1.1 426"));
    stop(srv).await;
}

#[tokio::test]
async fn origin_not_allowed_gets_403() {
    let mut cfg = echo_config();
    cfg.allowed_origins = vec!["https://play.ringside.example".into()];
    let srv = start(cfg);
    let r = http_raw(
        srv.local_addr(),
        &upgrade_request("/ws", "Origin: https://evil.example\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = http_head(
        srv.local_addr(),
        &upgrade_request("/ws", "Origin: https://play.ringside.example\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    stop(srv).await;
}

#[tokio::test]
async fn upgrade_without_origin_is_accepted_with_an_allow_list() {
    // Browsers always send Origin; a client without one (the load generator, a native app) could
    // forge any, so the list does not refuse it (docs/protocol.md §1). `null` is a browser: refused.
    let mut cfg = echo_config();
    cfg.allowed_origins = vec!["https://play.ringside.example".into()];
    let srv = start(cfg);
    let r = http_head(srv.local_addr(), &upgrade_request("/ws", "")).await;
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    let r = http_raw(
        srv.local_addr(),
        &upgrade_request("/ws", "Origin: null\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    stop(srv).await;
}

#[tokio::test]
async fn http11_request_without_host_gets_400() {
    let srv = start(echo_config());
    let a = srv.local_addr();
    let r = http_raw(a, "GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400") && r.contains("Host"), "{r}");
    let upgrade = upgrade_request("/ws", "").replace("Host: localhost\r\n", "");
    assert!(!upgrade.contains("Host:"), "{upgrade}");
    let r = http_raw(a, &upgrade).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // HTTP/1.0 predates Host.
    let r = http_raw(a, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    stop(srv).await;
}

#[tokio::test]
async fn http_endpoints_and_static_files() {
    let srv = start(echo_config());
    let a = srv.local_addr();
    let r = http_get(a, "/healthz").await;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok\n"), "{r}");
    assert!(http_get(a, "/readyz").await.starts_with("HTTP/1.1 200"));
    let r = http_get(a, "/").await;
    assert!(
        r.contains("Content-Type: text/html") && r.contains("<title>ringside</title>"),
        "{r}"
    );
    let r = http_get(a, "/js/app.js").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("Content-Type: text/javascript"),
        "{r}"
    );
    assert!(http_get(a, "/logo.svg")
        .await
        .contains("Content-Type: image/svg+xml"));
    for bad in [
        "/../Cargo.toml",
        "/js/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/nope.html",
    ] {
        let r = http_get(a, bad).await;
        assert!(r.starts_with("HTTP/1.1 404"), "{bad}: {r}");
    }
    let r = http_get(a, "/metrics").await;
    assert!(
        r.contains("ringside_edge_connections_accepted_total "),
        "{r}"
    );
    assert!(
        r.contains("ringside_edge_handshakes_failed_total{reason=\"subprotocol\"} 0"),
        "{r}"
    );
    assert!(
        r.contains("ringside_edge_protocol_closes_total{code=\"1012\"} 0"),
        "{r}"
    );
    stop(srv).await;
}

#[tokio::test]
async fn a_second_client_is_unaffected_by_a_garbage_sender() {
    let srv = start(echo_config());
    let (mut good, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", srv.local_addr()))
        .await
        .unwrap();
    let mut bad = RawWs::connect(srv.local_addr()).await;
    bad.send(&[0xFF; 64]).await;
    good.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_msg(&mut good).await, Message::text("still here"));
    assert_eq!(bad.close_code().await, Some(1002));
    good.send(Message::text("and here")).await.unwrap();
    assert_eq!(next_msg(&mut good).await, Message::text("and here"));
    stop(srv).await;
}

#[tokio::test]
async fn drain_sends_close_1012_to_every_client_and_readyz_turns_503_under_every_driver() {
    for driver in DRIVERS {
        drain_sends_close_1012(driver).await;
    }
}

async fn drain_sends_close_1012(driver: Driver) {
    let mut cfg = echo_config();
    cfg.driver = driver;
    let srv = start(cfg);
    let url = format!("ws://{}/ws", srv.local_addr());
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        clients.push(ws);
    }
    // An HTTP connection that is open before the drain and asks afterwards.
    let mut probe = tokio::net::TcpStream::connect(srv.local_addr())
        .await
        .unwrap();
    // Wait until every socket is registered (the upgrade finished on the server side).
    for ws in clients.iter_mut() {
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(next_msg(ws).await, Message::text("hi"));
    }
    // ... and the probe is accepted, not just queued in the kernel's backlog (a connection the server
    // has not accepted before the drain is never served: that is the drain).
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while srv
        .metrics()
        .connections_accepted_total
        .load(std::sync::atomic::Ordering::Relaxed)
        < 5
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the probe was never accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    srv.drain();
    for ws in clients.iter_mut() {
        match next_msg(ws).await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1012),
            m => panic!("expected close 1012, got {m:?}"),
        }
    }
    // Every socket is gone now; the probe, accepted before the drain, is still answered (the drain waits
    // for requests in flight, up to its deadline) however late it asks.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    probe
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, probe.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || srv.join()))
        .await
        .unwrap()
        .unwrap();
}

/// A session that answers "flood" with 100 reliable frames, and "progress" with superseding ones.
struct Flood;
struct FloodSession;

impl SessionFactory for Flood {
    fn open(
        &self,
        _req: &UpgradeRequest,
        _conn: &ConnHandle,
    ) -> Result<Box<dyn Session>, Rejection> {
        Ok(Box::new(FloodSession))
    }
}

impl Session for FloodSession {
    fn on_message(&mut self, conn: &ConnHandle, _kind: MessageKind, payload: &[u8]) {
        let frame = ringside_edge::ws::frame::encode_text(&"q".repeat(200));
        match payload {
            b"flood" => {
                for _ in 0..100 {
                    if conn.send(frame.clone(), FrameClass::Reliable).is_err() {
                        break;
                    }
                }
            }
            _ => {
                let _ = conn.send_text("pong");
            }
        }
    }
}

#[tokio::test]
async fn slow_consumer_past_the_hard_limit_is_closed_with_4008_under_every_driver() {
    for driver in DRIVERS {
        slow_consumer_closed_with_4008(driver).await;
    }
}

async fn slow_consumer_closed_with_4008(driver: Driver) {
    let mut cfg = echo_config();
    cfg.driver = driver;
    cfg.sendq.max_frames = 8;
    cfg.sendq.max_bytes = 64 * 1024;
    let srv = start_with(cfg, Arc::new(Flood));
    let mut ws = RawWs::connect(srv.local_addr()).await;
    ws.send(&encode_client(true, 1, MASK, b"flood")).await;
    assert_eq!(ws.close_code().await, Some(4008));
    assert_eq!(
        srv.metrics()
            .slow_consumer_closes_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    stop(srv).await;
}

/// The echo server with a WebSocket ping after `ping` s of quiet and the idle close after `idle` s.
fn ping_config(ping: u64, idle: u64) -> Config {
    let mut cfg = echo_config();
    cfg.ping_interval = Duration::from_secs(ping);
    cfg.idle_timeout = Duration::from_secs(idle);
    cfg
}

#[tokio::test]
async fn idle_socket_is_pinged_and_then_closed_with_4000() {
    let cfg = ping_config(1, 3);
    let srv = start(cfg);
    let mut ws = RawWs::connect(srv.local_addr()).await;
    // The raw client never answers pings, so it is idle: a ping first, then close 4000 (docs §3/§4).
    let (op, _) = ws.next_frame().await.expect("a ping");
    assert_eq!(op, 9);
    assert_eq!(ws.close_code().await, Some(4000));
    stop(srv).await;
}

/// Sends `ticks` frames of `size` bytes (`tick` and padding) to its socket, one every `every_ms`,
/// unprompted (the game's questions and reveals).
struct Ticker {
    ticks: usize,
    every_ms: u64,
    size: usize,
}
struct TickerSession;

impl SessionFactory for Ticker {
    fn open(
        &self,
        _req: &UpgradeRequest,
        conn: &ConnHandle,
    ) -> Result<Box<dyn Session>, Rejection> {
        let (conn, ticks, every) = (conn.clone(), self.ticks, self.every_ms);
        let text = format!("tick{}", "-".repeat(self.size.saturating_sub(4)));
        monoio::spawn(async move {
            for _ in 0..ticks {
                monoio::time::sleep(Duration::from_millis(every)).await;
                if conn.send_text(&text).is_err() {
                    break;
                }
            }
        });
        Ok(Box::new(TickerSession))
    }
}

impl Session for TickerSession {
    fn on_message(&mut self, _conn: &ConnHandle, _kind: MessageKind, _payload: &[u8]) {}
}

/// On the client's first message, `bursts` bursts of `per` numbered text frames of `size` bytes, 5 ms
/// apart, each frame sent with `send_fanout` (a room's fan-out: the socket's writer is woken in its
/// turn among the thread's deferred wakes).
#[derive(Clone, Copy)]
struct Burster {
    bursts: usize,
    per: usize,
    size: usize,
}
struct BurstSession {
    started: bool,
    burst: Burster,
}

impl SessionFactory for Burster {
    fn open(
        &self,
        _req: &UpgradeRequest,
        _conn: &ConnHandle,
    ) -> Result<Box<dyn Session>, Rejection> {
        Ok(Box::new(BurstSession {
            started: false,
            burst: *self,
        }))
    }
}

impl Session for BurstSession {
    fn on_message(&mut self, conn: &ConnHandle, _kind: MessageKind, _payload: &[u8]) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let (conn, Burster { bursts, per, size }) = (conn.clone(), self.burst);
        monoio::spawn(async move {
            for b in 0..bursts {
                for i in 0..per {
                    let text = format!("{:08}{}", b * per + i, "-".repeat(size - 8));
                    let frame = ringside_edge::ws::frame::encode_text(&text);
                    if conn.send_fanout(frame, FrameClass::Reliable).is_err() {
                        return;
                    }
                }
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
}

/// Reads `n` text frames numbered 0.. in order (keepalive pings skipped; any other frame fails the test).
async fn numbered_frames_in_order(ws: &mut RawWs, n: usize, size: usize) {
    for want in 0..n {
        let (mut op, mut p) = ws.next_frame().await.expect("a frame");
        while op == 9 {
            (op, p) = ws.next_frame().await.expect("a frame");
        }
        assert_eq!(op, 1, "frame {want}: opcode");
        assert_eq!(p.len(), size, "frame {want}: size");
        let got: usize = std::str::from_utf8(&p[..8]).unwrap().parse().unwrap();
        assert_eq!(got, want, "frames in order");
    }
}

/// A fan-out's frames arrive whole and in order, also at a client with a small receive buffer (4 KB
/// asked, 8 KB given) that starts reading late, while 3.2 MB are queued for it.
#[tokio::test]
async fn a_fan_out_burst_arrives_whole_and_in_order_also_at_a_client_that_reads_late() {
    let (bursts, per, size) = (8, 50, 8 * 1024);
    let srv = start_with(echo_config(), Arc::new(Burster { bursts, per, size }));
    let mut fast = RawWs::connect(srv.local_addr()).await;
    let mut late = RawWs::connect_with_rcvbuf(srv.local_addr(), 4096).await;
    let go = encode_client(true, 1, MASK, b"go");
    fast.send(&go).await;
    late.send(&go).await;
    numbered_frames_in_order(&mut fast, bursts * per, size).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    numbered_frames_in_order(&mut late, bursts * per, size).await;
    assert_eq!(srv.metrics().slow_consumer_closes_total.load(Relaxed), 0);
    stop(srv).await;
}

/// Reads `ticks` ticks; returns how many pings came among them.
async fn pings_among_ticks(ws: &mut RawWs, ticks: usize) -> usize {
    let (mut pings, mut seen) = (0, 0);
    while seen < ticks {
        let (op, p) = ws.next_frame().await.expect("a frame");
        match op {
            9 => pings += 1,
            1 => {
                assert!(p.starts_with(b"tick"));
                seen += 1;
            }
            _ => panic!("unexpected opcode {op}"),
        }
    }
    pings
}

/// A client that sends nothing, but whose TCP stack acknowledges every frame the edge writes to it,
/// is there: it gets no keepalive ping (nor a pong to send) and is not closed as idle while the frames
/// come. Once they stop it is a silent socket again: pinged, then closed with 4000.
#[tokio::test]
async fn a_client_that_acknowledges_its_frames_needs_no_ping() {
    // ping after 3 s of quiet (an ACK on its way is waited for 2 s more), idle close after 12 s;
    // 30 ticks 500 ms apart: 15 s of frames
    let cfg = ping_config(3, 12);
    let ticker = Ticker {
        ticks: 30,
        every_ms: 500,
        size: 4,
    };
    let srv = start_with(cfg, Arc::new(ticker));
    let mut ws = RawWs::connect(srv.local_addr()).await;
    assert_eq!(pings_among_ticks(&mut ws, 30).await, 0);
    let m = srv.metrics();
    assert_eq!(m.pings_total.load(Relaxed), 0);
    assert!(
        m.keepalives_acked_total.load(Relaxed) >= 2,
        "15 s of frames span at least two --ping-interval's"
    );
    let (op, _) = ws
        .next_frame()
        .await
        .expect("a ping once the frames stopped");
    assert_eq!(op, 9);
    assert_eq!(ws.close_code().await, Some(4000));
    stop(srv).await;
}

/// A client that stops reading stops acknowledging (its receive window closes): the edge's frames
/// prove nothing, so it gets its ping as ever (queued behind the frames) and, silent, is closed with
/// 4000 at the idle timeout.
#[tokio::test]
async fn a_client_that_stops_reading_is_pinged_and_closed_as_idle() {
    let mut cfg = ping_config(3, 8);
    // the close frame waits behind the unread ticks until the client reads, at 10 s: no abort first
    cfg.close_timeout = Duration::from_secs(30);
    // 16 KiB frames every 300 ms for 9 s: the client's 4 KiB window is full after the first one
    let ticker = Ticker {
        ticks: 30,
        every_ms: 300,
        size: 16 * 1024,
    };
    let srv = start_with(cfg, Arc::new(ticker));
    let mut ws = RawWs::connect_with_rcvbuf(srv.local_addr(), 4096).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let m = srv.metrics();
    assert_eq!(m.keepalives_acked_total.load(Relaxed), 0);
    assert!(m.pings_total.load(Relaxed) >= 1);
    let (mut pings, mut ticks) = (0, 0);
    let code = loop {
        match ws.next_frame().await.expect("frames, then a close") {
            (9, _) => pings += 1,
            (1, p) if p.starts_with(b"tick") => ticks += 1,
            (8, p) => break u16::from_be_bytes([p[0], p[1]]),
            (op, _) => panic!("unexpected opcode {op}"),
        }
    };
    assert!(pings >= 1, "a ping among {ticks} ticks");
    assert_eq!(code, 4000);
    stop(srv).await;
}

/// With `--keepalive-acks false` (behind a proxy that terminates TCP) acknowledgements prove nothing:
/// a client that sends nothing but is written to every 200 ms gets its keepalive pings, each in the
/// write of a tick: none is let go alone, and none is skipped.
#[tokio::test]
async fn without_keepalive_acks_a_due_ping_rides_with_the_next_frame() {
    // a ping every 5 s, which may wait 4 s for a frame to ride with (a stall of the test machine
    // shorter than that cannot make one go alone)
    let mut cfg = ping_config(5, 60);
    cfg.keepalive_acks = false;
    let ticker = Ticker {
        ticks: 60,
        every_ms: 200,
        size: 4,
    };
    let srv = start_with(cfg, Arc::new(ticker));
    let mut ws = RawWs::connect(srv.local_addr()).await;
    let pings = pings_among_ticks(&mut ws, 60).await as u64;
    let m = srv.metrics();
    let (queued, released) = (
        m.pings_total.load(Relaxed),
        m.pings_released_total.load(Relaxed),
    );
    let (frames, writes) = (
        m.frames_out_total.load(Relaxed),
        m.writes_total.load(Relaxed),
    );
    assert!(pings >= 1, "a ping every 5 s for 12 s, got {pings}");
    assert_eq!(released, 0, "every ping had a tick to ride with");
    assert_eq!(m.keepalives_acked_total.load(Relaxed), 0);
    assert!(queued >= pings, "{queued} queued, {pings} received");
    // each ping shared its write with a tick (ticks may share one too, never fewer)
    assert!(
        frames - writes >= pings,
        "{frames} frames in {writes} writes for {pings} pings"
    );
    stop(srv).await;
}

/// A socket nothing was written to gets its ping at once, as ever (it does not wait for a frame that
/// is not coming, so no socket goes without traffic for longer than `--ping-interval`), and is still
/// closed with 4000 at the idle timeout.
#[tokio::test]
async fn a_silent_socket_gets_its_ping_at_once() {
    let cfg = ping_config(3, 11); // a ride of 2 s, for sockets written to
    let srv = start(cfg);
    let mut ws = RawWs::connect(srv.local_addr()).await;
    let (op, _) = ws.next_frame().await.expect("a ping");
    assert_eq!(op, 9);
    let m = srv.metrics();
    assert!(m.pings_total.load(Relaxed) >= 1);
    assert_eq!(m.pings_released_total.load(Relaxed), 0, "it never waited");
    assert_eq!(ws.close_code().await, Some(4000));
    stop(srv).await;
}

#[tokio::test]
async fn wss_echo_with_a_generated_self_signed_cert() {
    let dir = std::env::temp_dir().join(format!("ringside-edge-cert-{}", std::process::id()));
    let (cert, key) = ringside_edge::tls::gen_dev_cert(&dir).unwrap();
    let mut cfg: Config = echo_config();
    cfg.tls = Some(ringside_edge::config::TlsFiles {
        cert: cert.clone(),
        key,
    });
    let srv = start(cfg);

    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client_cfg = rustls::ClientConfig::builder_with_provider(ringside_edge::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    for host in ["localhost", "127.0.0.1"] {
        let tcp = tokio::net::TcpStream::connect(srv.local_addr())
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let url = format!("wss://{host}:{}/ws", srv.local_addr().port());
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
        ws.send(Message::text("over tls")).await.unwrap();
        assert_eq!(next_msg(&mut ws).await, Message::text("over tls"));
        let big = vec![42u8; 200_000];
        ws.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(next_msg(&mut ws).await, Message::binary(big));
        ws.close(None).await.unwrap();
    }
    stop(srv).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn per_connection_state_fits_the_idle_budget() {
    let srv = start(echo_config());
    let mut ws = RawWs::connect(srv.local_addr()).await;
    ws.send(&encode_client(true, 1, MASK, b"x")).await;
    assert_eq!(ws.next_frame().await, Some((1, b"x".to_vec())));
    let shared = ringside_edge::conn::shared_state_size();
    let ws_state = ringside_edge::conn::ws_state_size();
    let task = ringside_edge::conn::task_future_size().expect("a connection was accepted");
    // The task future embeds the task-owned state (WsConn); ConnShared is its own Rc allocation.
    // Not counted here: monoio's task header, the in-flight PollAdd, the registry slot (8 B).
    println!("per idle socket: task future {task} B (embeds WsConn {ws_state} B) + ConnShared {shared} B");
    assert!(
        task + shared <= 768,
        "task {task} + shared {shared} > 768 B"
    );
    drop(ws);
    stop(srv).await;
}

/// Echoes and counts `on_close` calls (for the drain deadline test).
struct CountingEcho(Arc<std::sync::atomic::AtomicUsize>);
struct CountingEchoSession(Arc<std::sync::atomic::AtomicUsize>);

impl SessionFactory for CountingEcho {
    fn open(
        &self,
        _req: &UpgradeRequest,
        _conn: &ConnHandle,
    ) -> Result<Box<dyn Session>, Rejection> {
        Ok(Box::new(CountingEchoSession(self.0.clone())))
    }
}

impl Session for CountingEchoSession {
    fn on_message(&mut self, conn: &ConnHandle, _kind: MessageKind, payload: &[u8]) {
        let _ = conn.send(
            ringside_edge::ws::frame::encode_text(&String::from_utf8_lossy(payload)),
            FrameClass::Reliable,
        );
    }

    fn on_close(&mut self, _conn: &ConnHandle, _info: &ringside_edge::CloseInfo) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Clients that never answer the drain's close 1012 are still open at the drain deadline: their
/// sockets end through the normal path (the session's `on_close` runs, `connections_open` drops
/// to 0), they are not silently dropped with the runtime.
#[tokio::test]
async fn sockets_still_open_at_the_drain_deadline_get_on_close_and_are_uncounted() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut cfg = echo_config();
    cfg.drain_timeout = Duration::from_millis(300);
    // Longer than the test: only the drain deadline can end these sockets.
    cfg.close_timeout = Duration::from_secs(60);
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let srv = start_with(cfg, Arc::new(CountingEcho(closed.clone())));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = RawWs::connect(srv.local_addr()).await;
        ws.send(&encode_client(true, 1, MASK, b"x")).await;
        assert_eq!(ws.next_frame().await, Some((1, b"x".to_vec())));
        clients.push(ws);
    }
    assert_eq!(srv.metrics().connections_open.load(SeqCst), 3);
    // The clients stay connected and silent: they never send their close frame.
    srv.drain();
    let t0 = std::time::Instant::now();
    while (srv.metrics().connections_open.load(SeqCst) != 0 || closed.load(SeqCst) != 3)
        && t0.elapsed() < TIMEOUT
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.metrics().connections_open.load(SeqCst), 0);
    assert_eq!(closed.load(SeqCst), 3, "on_close ran for every socket");
    tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || srv.join()))
        .await
        .expect("workers exit after the drain deadline")
        .unwrap();
    // Each client got the close 1012 before its socket was aborted.
    for ws in clients.iter_mut() {
        assert_eq!(ws.close_code().await, Some(1012));
    }
}

/// `ringside-edge --echo --processes 2` on a free port, with `--metrics-listen` on the two ports
/// after `mport`.
fn start_two_processes(listen_port: u16, mport: u16) -> EdgeProcess {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringside-edge"))
        .args(["--echo", "--processes", "2", "--threads", "1"])
        .args(["--listen", &format!("127.0.0.1:{listen_port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .args(["--drain-timeout", "2s", "--close-timeout", "1s"])
        .arg("--web-root")
        .arg(web_root())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ringside-edge binary starts");
    EdgeProcess(child)
}

/// `ringside-edge --echo --processes 2` on a free port with `--metrics-listen` on the two ports
/// after `mport`, once both metrics ports answer `/healthz` (waiting on the shared port instead would
/// count the probe as a connection of one process): (edge, ws port, mport).
async fn two_processes_ready() -> (EdgeProcess, u16, u16) {
    let listen_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mport = free_port_pair(listen_port);
    let mut edge = start_two_processes(listen_port, mport);
    let deadline = std::time::Instant::now() + TIMEOUT;
    for i in 0..2 {
        wait_healthz(&mut edge, metrics_addr(mport, i), deadline).await;
    }
    (edge, listen_port, mport)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_restarts_a_process_that_dies() {
    let (mut edge, listen_port, mport) = two_processes_ready().await;
    let maddr = |i: u16| metrics_addr(mport, i);
    let before = children_of(edge.0.id());
    assert_eq!(before.len(), 2, "{before:?}");

    // SIGKILL one process: the launcher starts a new one in its place (same index, same metrics port).
    ringside_edge::sys::kill(before[0], libc::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let after = loop {
        let now = children_of(edge.0.id());
        if now.len() == 2 && !now.contains(&before[0]) {
            break now;
        }
        assert!(
            matches!(edge.0.try_wait(), Ok(None)),
            "the launcher exited when a child died"
        );
        assert!(std::time::Instant::now() < deadline, "no restart: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(after.contains(&before[1]), "the other process kept running");
    for i in 0..2 {
        wait_healthz(&mut edge, maddr(i), deadline).await;
    }
    let url = format!("ws://127.0.0.1:{listen_port}/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    ws.send(Message::text("after restart")).await.unwrap();
    assert_eq!(next_msg(&mut ws).await, Message::text("after restart"));
    drop(ws);

    // A stop signal is not a crash: every process exits and none is restarted; exit status 0.
    ringside_edge::sys::kill(edge.0.id(), libc::SIGTERM).unwrap();
    let status = wait_exit(&mut edge, TIMEOUT).await;
    assert!(status.success(), "{status}");
}

/// A process that cannot start (here: its port is held by a listener without SO_REUSEPORT) is
/// restarted a few times with back-off and then given up; with no process left the launcher exits with
/// a failure, so a service manager sees it instead of a launcher that restarts forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_gives_up_when_its_processes_cannot_start() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut edge = EdgeProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringside-edge"))
            .args(["--echo", "--processes", "2", "--threads", "1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ringside-edge binary starts"),
    );
    // 1 + 2 + 4 s of back-off before the fourth failure; allow a slow machine plenty more.
    let status = wait_exit(&mut edge, Duration::from_secs(120)).await;
    assert!(!status.success(), "{status}");
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_serve_their_own_labeled_metrics_on_metrics_listen_ports() {
    let (mut edge, listen_port, mport) = two_processes_ready().await;
    let maddr = |i: u16| metrics_addr(mport, i);
    // Both worker listeners are up once /healthz answers on the metrics port (bound first, but the
    // ws port must accept too): connect and round-trip a message so the socket is registered.
    let url = format!("ws://127.0.0.1:{listen_port}/ws");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut ws = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "ws connect: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    ws.send(Message::text("counted")).await.unwrap();
    assert_eq!(next_msg(&mut ws).await, Message::text("counted"));

    let mut open = Vec::new();
    let mut accepted = Vec::new();
    for i in 0..2u16 {
        let r = http_get(maddr(i), "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let label = format!("{{process=\"{i}\"}}");
        for line in r.lines().filter(|l| l.starts_with("ringside_edge_")) {
            assert!(
                line.contains(&format!("process=\"{i}\"")),
                "port {}: {line}",
                mport + i
            );
        }
        open.push(
            sample(&r, &format!("ringside_edge_connections_open{label}"))
                .expect("connections_open"),
        );
        accepted.push(
            sample(
                &r,
                &format!("ringside_edge_connections_accepted_total{label}"),
            )
            .expect("connections_accepted_total"),
        );
        assert!(http_get(maddr(i), "/readyz")
            .await
            .starts_with("HTTP/1.1 200"));
        assert!(http_get(maddr(i), "/index.html")
            .await
            .starts_with("HTTP/1.1 404"));
    }
    let mut sorted = open.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(
        sorted,
        vec![0.0, 1.0],
        "connections_open per process: {open:?}"
    );
    let holder = open.iter().position(|v| *v == 1.0).unwrap();
    assert_eq!(accepted[holder], 1.0, "accepted per process: {accepted:?}");
    assert_eq!(
        accepted[1 - holder],
        0.0,
        "accepted per process: {accepted:?}"
    );

    // SIGTERM to the launcher drains both processes: the socket gets 1012 and everything exits 0.
    ringside_edge::sys::kill(edge.0.id(), libc::SIGTERM).unwrap();
    match next_msg(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1012),
        m => panic!("expected close 1012, got {m:?}"),
    }
    drop(ws);
    let status = wait_exit(&mut edge, TIMEOUT).await;
    assert!(status.success(), "{status}");
}
