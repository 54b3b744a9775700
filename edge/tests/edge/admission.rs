//! Admission control at the transport (docs/admission.md): a client that stops reading fills its send
//! queue past `--admission-max-queued-bytes`; from the next sweep on, a new upgrade gets 503 with
//! `Retry-After` (counted as `reason="send_queue"`), while a socket already open keeps being served; once
//! the client reads again and its queue drains, upgrades are admitted again. No timing is asserted: each
//! step waits (bounded) for the state it needs.

use std::sync::Arc;
use std::time::Duration;

use ringside_edge::admission::{AdmissionLimits, Reason, Work};
use ringside_edge::session::{Rejection, Session, SessionFactory};
use ringside_edge::ws::frame::{encode_client, MessageKind};
use ringside_edge::ws::handshake::UpgradeRequest;
use ringside_edge::{ConnHandle, FrameClass};
use tokio::io::AsyncReadExt;

use crate::common::*;

const MASK: [u8; 4] = [9, 8, 7, 6];
/// Queued for the client that stops reading: 256 frames of 64 KiB, 16 MiB — far more than the kernel's
/// socket buffers hold.
const FLOOD_FRAMES: usize = 256;

fn flood_frame() -> bytes::Bytes {
    ringside_edge::ws::frame::encode_binary(&vec![b'x'; 64 * 1024])
}

/// Echoes, and answers "flood" with [`FLOOD_FRAMES`] reliable frames at once (one shared buffer).
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
        if payload == b"flood" {
            let frame = flood_frame();
            for _ in 0..FLOOD_FRAMES {
                conn.send(frame.clone(), FrameClass::Reliable)
                    .expect("within the send queue's hard limit");
            }
        } else {
            let _ = conn.send_text(&String::from_utf8_lossy(payload));
        }
    }
}

/// Waits (bounded) until `f` holds, polling.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// An upgrade's response head.
async fn upgrade_head(addr: std::net::SocketAddr) -> String {
    http_head(addr, &upgrade_request("/ws", "")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_past_the_queue_threshold_turns_new_upgrades_away() {
    let mut cfg = echo_config();
    cfg.threads = 1; // one worker: its queued bytes are the ones the threshold sees
    cfg.admission = AdmissionLimits {
        max_queued_bytes: 1 << 20,
        ..AdmissionLimits::off()
    };
    let srv = start_with(cfg, Arc::new(Flood));
    let addr = srv.local_addr();
    let mut live = RawWs::connect(addr).await;
    let mut stalled = RawWs::connect(addr).await;
    stalled.send(&encode_client(true, 1, MASK, b"flood")).await;
    // The flooded client reads nothing; the next sweep sees its queue.
    eventually("the sweep sees the queued bytes", || {
        let m = render(&srv);
        sample(&m, "ringside_edge_queued_bytes{worker=\"0\"}").unwrap_or(0.0) >= f64::from(1 << 20)
    })
    .await;
    let a = srv.admission();

    let head = upgrade_head(addr).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .expect("Retry-After")
        .trim()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{head}");
    assert_eq!(a.refusals(Reason::SendQueue, Work::Upgrade), 1);
    assert_eq!(
        sample(
            &render(&srv),
            "ringside_edge_admission_refusals_total{reason=\"send_queue\",what=\"upgrade\"}"
        ),
        Some(1.0)
    );

    // The socket that was already open is still served.
    live.send(&encode_client(true, 1, MASK, b"still here"))
        .await;
    assert_eq!(live.next_frame().await, Some((1, b"still here".to_vec())));

    // The stalled client reads again; once its queue has drained, upgrades are admitted again.
    let mut read = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    while read < FLOOD_FRAMES * flood_frame().len() {
        let n = tokio::time::timeout(TIMEOUT, stalled.s.read(&mut chunk))
            .await
            .expect("the flood drains")
            .unwrap();
        assert!(n > 0, "closed while draining");
        read += n;
    }
    let mut admitted = false;
    for _ in 0..300 {
        if upgrade_head(addr).await.starts_with("HTTP/1.1 101") {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "upgrades admitted again once the queue drained");
    drop((live, stalled));
    srv.drain();
    tokio::task::spawn_blocking(move || srv.join())
        .await
        .unwrap();
}

fn render(srv: &ringside_edge::ServerHandle) -> String {
    let mut s = String::new();
    srv.admission().render(&mut s);
    s
}
