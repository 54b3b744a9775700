//! The per-connection handler (split from the accept loop in `server.rs`) and [`ConnHandle`], the
//! game layer's way to send to a socket.
//!
//! Life of a connection, one monoio task:
//! 1. **Preamble** (boxed, so its buffers and state are freed before the socket goes idle): TLS
//!    handshake if configured, read the request head, then either answer plain HTTP and close, or
//!    validate the upgrade, ask the [`SessionFactory`](crate::session::SessionFactory) for a session
//!    and send the 101. Bounded by `--handshake-timeout`.
//! 2. **WebSocket loop**: wait for *readable* (a PollAdd; no buffer pinned), for *writable* (only
//!    while the kernel send buffer is full), or for a wake from [`ConnHandle`] (a frame was queued,
//!    a close was requested). Reads go into the worker's scratch buffer; only a partial frame's
//!    leftover stays with the socket. Queued frames go out with one vectored write. While writes are
//!    blocked, reading pauses (backpressure: a client that does not read cannot make us buffer).
//! 3. **Closing**: the server's close frame is queued behind everything already queued; after it is
//!    written and the peer's close arrived (or the input failed), the socket half-closes and lingers
//!    until the peer's EOF, bounded by `--close-timeout` (enforced by the worker's sweep).
//!
//! Admission control (module [`admission`](crate::admission)) refuses an upgrade here, with `503` and
//! `Retry-After`, while the edge is past a threshold; plain HTTP (probes, pages, `/api/`) is not refused.
//!
//! Architecture invariant: no connection state outlives its socket — the task owns the socket,
//! session and decoder; the registry entry is removed when the task ends; a [`ConnHandle`] kept
//! elsewhere only refuses sends after that.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;

use monoio::net::TcpStream;

use crate::admission::Work;
use crate::handle::{CloseReasons, Stage};
use crate::http;
use crate::registry::Registry;
use crate::sendq::{FrameClass, SendQueue};
use crate::session::{Session, SessionFactory};
use crate::sys::RawSock;
use crate::transport::{self, Transport, Written};
use crate::worker::Worker;
use crate::ws::frame::{self, Event, Flow, Opcode};
use crate::ws::handshake::{self, FailReason, Request};
use ringside_protocol::CloseCode;

pub use crate::handle::{shared_state_size, CloseInfo, ConnHandle, SendError};

/// One worker thread's context for its connection tasks: the worker (clock, scratch buffer, gauges),
/// its registry of sockets, and the session factory. Built by the server, one per thread.
pub struct Thread {
    pub worker: Rc<Worker>,
    pub registry: Registry,
    pub factory: Arc<dyn SessionFactory>,
}

/// Counts an accepted socket for the admission's descriptor estimate while its task runs. It owns
/// the task's `Rc<Thread>` (the one word it needs), so the count adds nothing to the task's future.
struct Counted(Rc<Thread>);

impl Counted {
    fn new(t: Rc<Thread>) -> Self {
        t.worker.shared.admission.socket(1);
        Counted(t)
    }
}

impl std::ops::Deref for Counted {
    type Target = Thread;
    fn deref(&self) -> &Thread {
        &self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.worker.shared.admission.socket(-1);
    }
}

/// The preamble under `--handshake-timeout`, boxed (its buffers are freed before the socket goes
/// idle); `None`: answered plain HTTP, refused or failed.
async fn handshake_phase(thread: &Thread, stream: &TcpStream) -> Option<WsConn> {
    let worker = &thread.worker;
    let timeout = worker.shared.config.handshake_timeout;
    worker.preamble(1);
    let pre = Box::pin(monoio::time::timeout(timeout, preamble(thread, stream))).await;
    worker.preamble(-1);
    match pre {
        Ok(Ok(Some(up))) => Some(WsConn::start(thread, up)),
        Ok(Ok(None)) => None,
        Ok(Err(reason)) => {
            worker.shared.metrics.handshake_failed(reason);
            None
        }
        Err(_) => {
            worker.shared.metrics.handshake_failed(FailReason::Timeout);
            None
        }
    }
}

static TASK_FUTURE_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Records the size of a connection task's future (logged once at debug level).
pub(crate) fn record_task_future_size(n: usize) {
    if TASK_FUTURE_SIZE.swap(n, Relaxed) != n {
        tracing::debug!(
            task_future = n,
            conn_shared = shared_state_size(),
            ws_state = ws_state_size(),
            "per-connection sizes in bytes"
        );
    }
}

/// Size in bytes of a connection task's future (its whole async state machine, which embeds
/// the task-owned state), once a connection was accepted in this process.
pub fn task_future_size() -> Option<usize> {
    match TASK_FUTURE_SIZE.load(Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Handles one accepted TCP connection to the end.
///
/// Written as one async fn with the WebSocket loop inline (no nested async fn taking the socket
/// by value) and the one-off phases boxed: its future is what every idle socket keeps, so its size
/// is the per-socket budget (see `task_future_size`).
// Deliberately not `async fn`: see the comment in the body (measured 528 -> 440 bytes).
#[allow(clippy::manual_async_fn)]
pub fn serve(thread: Rc<Thread>, stream: TcpStream) -> impl Future<Output = ()> {
    // An async block, not an async fn: the captured socket is used in place instead of being
    // moved from the argument slot into a local (which would store it twice in the future).
    //
    // Every idle socket keeps this future (perf/vs-peers.md, "Memory per socket"), so no local that
    // is only needed before the WebSocket loop may live across its awaits: the preamble's result is
    // consumed inside `handshake_phase`, the socket count guard owns `thread`, and `worker` is read
    // through `thread` at each use instead of being held as a reference in the state.
    let thread = Counted::new(thread);
    async move {
        thread
            .worker
            .shared
            .metrics
            .connections_accepted_total
            .fetch_add(1, Relaxed);
        {
            let sock = RawSock::new(&stream);
            if sock.set_nonblocking().is_err() {
                return;
            }
            let _ = sock.set_nodelay();
        }
        let Some(mut c) = handshake_phase(&thread, &stream).await else {
            return;
        };

        // The WebSocket loop. One readiness wait is armed at a time: readable while we may read,
        // writable while the kernel send buffer is full (reading pauses then).
        let sock = RawSock::new(&stream);
        let mut armed = pin!(None);
        let mut armed_for_write = false;
        let mut read_more = false;
        let linger = loop {
            c.apply_close_request(&thread.worker);
            if c.handle.0.stage.get() == Stage::Aborted {
                break false;
            }
            if !c.write_blocked && c.flush(&thread.worker, sock).is_err() {
                break false;
            }
            if c.close_complete() {
                break true;
            }
            if c.read_eof && (c.sent.is_none() || c.write_blocked) {
                // The peer went away without the close handshake, or stopped reading while closing.
                break false;
            }
            let want_read = !c.read_eof && !c.write_blocked;
            if want_read && read_more {
                crate::worker::yield_now().await;
                read_more = c.read_ready(&thread.worker, sock);
                continue;
            }
            let want = if c.write_blocked {
                Some(true)
            } else if want_read {
                Some(false)
            } else {
                None
            };
            match want {
                Some(w) if armed.is_none() || armed_for_write != w => {
                    armed.set(Some(ready(&stream, w)));
                    armed_for_write = w;
                }
                None => armed.set(None),
                _ => {}
            }
            let write_blocked = c.write_blocked;
            let handle = &c.handle;
            let ev = std::future::poll_fn(|cx| {
                if handle.has_work(write_blocked) {
                    return Poll::Ready(None);
                }
                handle.park(cx);
                match armed.as_mut().as_pin_mut() {
                    Some(f) => f.poll(cx).map(Some),
                    None => Poll::Pending,
                }
            })
            .await;
            let Some(r) = ev else { continue };
            armed.set(None);
            if r.is_err() {
                break false;
            }
            if armed_for_write {
                c.write_blocked = false;
            } else {
                read_more = c.read_ready(&thread.worker, sock);
            }
        };
        if linger {
            // Bounded by --close-timeout, and ended early by an abort (drain deadline).
            let timeout = thread.worker.shared.config.close_timeout;
            let handle = &c.handle;
            let mut lf = Box::pin(transport::linger_close(&stream, &mut c.transport, timeout));
            std::future::poll_fn(|cx| {
                if handle.0.stage.get() == Stage::Aborted {
                    return Poll::Ready(());
                }
                handle.park(cx);
                lf.as_mut().poll(cx)
            })
            .await;
        }
        c.finish(&thread);
    }
}

/// Waits until the socket is writable (`write`) or readable.
async fn ready(stream: &TcpStream, write: bool) -> io::Result<()> {
    if write {
        stream.writable(false).await
    } else {
        stream.readable(false).await
    }
}

/// What the preamble hands to the WebSocket loop.
struct Upgraded {
    transport: Transport,
    handle: ConnHandle,
    session: Box<dyn Session>,
    /// Frame bytes that arrived with the request head.
    leftover: Vec<u8>,
}

/// TLS, request head, HTTP answer or upgrade. `Ok(None)`: answered and closed.
async fn preamble(thread: &Thread, stream: &TcpStream) -> Result<Option<Upgraded>, FailReason> {
    let worker = &thread.worker;
    let shared = &worker.shared;
    let sock = RawSock::new(stream);
    let mut transport = match &shared.tls {
        Some(cfg) => transport::tls_accept(stream, cfg.clone())
            .await
            .map_err(|_| FailReason::Tls)?,
        None => Transport::Plain,
    };
    let mut head: Vec<u8> = Vec::new();
    loop {
        let mut scratch = worker.take_scratch();
        let r = transport.read(sock, &mut scratch);
        if let Ok(n) = r {
            head.extend_from_slice(&scratch[..n]);
        }
        worker.put_scratch(scratch);
        match r {
            Ok(0) => return Err(FailReason::Io),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                while !transport.flush(sock).map_err(|_| FailReason::Io)? {
                    stream.writable(false).await.map_err(|_| FailReason::Io)?;
                }
                stream.readable(false).await.map_err(|_| FailReason::Io)?;
                continue;
            }
            Err(_) => return Err(FailReason::Io),
        }
        let (req, head_len) = match handshake::parse_request(&head, &shared.policy) {
            Ok(None) => continue,
            Ok(Some(x)) => x,
            Err(e) => {
                shared.metrics.handshake_failed(e.reason);
                let _ = transport::write_all(stream, &mut transport, &e.response()).await;
                transport::linger_close(stream, &mut transport, shared.config.close_timeout).await;
                return Ok(None);
            }
        };
        let up = match req {
            Request::Http(r)
                if r.path.starts_with("/api/") && shared.config.api_upstream.is_some() =>
            {
                let upstream = shared.config.api_upstream.expect("checked");
                let peer = stream.peer_addr().ok().map(|a| a.ip());
                let resp = crate::proxy::forward(
                    stream,
                    sock,
                    &mut transport,
                    head,
                    head_len,
                    upstream,
                    peer,
                    shared.tls.is_some(),
                )
                .await;
                let _ = transport::write_all(stream, &mut transport, &resp).await;
                transport::linger_close(stream, &mut transport, shared.config.close_timeout).await;
                return Ok(None);
            }
            Request::Http(r) => {
                let resp = http::respond(shared, &r);
                let _ = transport::write_all(stream, &mut transport, &resp).await;
                transport::linger_close(stream, &mut transport, shared.config.close_timeout).await;
                return Ok(None);
            }
            Request::Upgrade(mut u) => {
                u.peer = stream.peer_addr().ok().map(|a| a.ip());
                u
            }
        };
        // A client coming back after losing its socket says so (`/ws?resume=1`): admitted up to twice
        // the thresholds (admission::Work::Resume).
        let work = if up.query_param("resume") == Some("1") {
            Work::Resume
        } else {
            Work::Upgrade
        };
        if let Err(r) = shared.admission.admit(work, &worker.load) {
            let body = format!(
                "overloaded ({}): retry after {} s\n",
                r.reason.describe(),
                r.retry_after_secs()
            );
            let secs = r.retry_after_secs().to_string();
            let resp = handshake::http_response(
                503,
                "text/plain; charset=utf-8",
                body.as_bytes(),
                &[("Retry-After", &secs)],
            );
            let _ = transport::write_all(stream, &mut transport, &resp).await;
            transport::linger_close(stream, &mut transport, shared.config.close_timeout).await;
            return Ok(None);
        }
        let handle = ConnHandle::new(worker.clone(), up.subprotocol, stream.as_raw_fd());
        let session = match thread.factory.open(&up, &handle) {
            Ok(s) => s,
            Err(rej) => {
                shared.metrics.handshake_failed(FailReason::Rejected);
                let resp = handshake::http_response(
                    rej.status,
                    "text/plain; charset=utf-8",
                    rej.body.as_bytes(),
                    &[],
                );
                let _ = transport::write_all(stream, &mut transport, &resp).await;
                transport::linger_close(stream, &mut transport, shared.config.close_timeout).await;
                return Ok(None);
            }
        };
        transport::write_all(stream, &mut transport, &handshake::switching_protocols(&up))
            .await
            .map_err(|_| FailReason::Io)?;
        let leftover = head.split_off(head_len);
        return Ok(Some(Upgraded {
            transport,
            handle,
            session,
            leftover,
        }));
    }
}

/// The WebSocket part of a connection's state, owned by its task.
struct WsConn {
    handle: ConnHandle,
    session: Box<dyn Session>,
    decoder: frame::Decoder,
    transport: Transport,
    read_eof: bool,
    /// A protocol error happened: further input is discarded.
    input_failed: bool,
    write_blocked: bool,
    received: Option<Option<u16>>,
    sent: Option<u16>,
}

/// Size in bytes of the connection state owned by the task (for the ≤ 1 KiB idle budget).
pub const fn ws_state_size() -> usize {
    std::mem::size_of::<WsConn>()
}

impl WsConn {
    /// Registers the upgraded socket and processes frame bytes that came with the request head.
    fn start(thread: &Thread, up: Upgraded) -> WsConn {
        let worker = &thread.worker;
        let Upgraded {
            transport,
            handle,
            session,
            mut leftover,
        } = up;
        thread.registry.register(&handle);
        worker.shared.metrics.connections_open.fetch_add(1, Relaxed);
        if worker.shared.draining() {
            handle.close(CloseCode::ServiceRestart.code(), "service restart");
        }
        let mut c = WsConn {
            handle,
            session,
            decoder: frame::Decoder::new(),
            transport,
            read_eof: false,
            input_failed: false,
            write_blocked: false,
            received: None,
            sent: None,
        };
        if !leftover.is_empty() {
            c.process_input(worker, &mut leftover);
            c.handle.0.last_rx.set(worker.now());
        }
        c
    }

    /// Turns a requested close into a queued close frame.
    fn apply_close_request(&mut self, worker: &Worker) {
        if let Stage::Requested { code, reason } = self.handle.0.stage.get() {
            self.queue_close(worker, code, CloseReasons::get(reason));
        }
    }

    fn queue_close(&mut self, worker: &Worker, code: u16, reason: &str) {
        if self.sent.is_some() {
            return;
        }
        self.handle
            .0
            .queue
            .borrow_mut()
            .push_unbounded(frame::encode_close(code, reason), FrameClass::Control);
        self.mark_close_sent(worker, Some(code));
    }

    fn mark_close_sent(&mut self, worker: &Worker, code: Option<u16>) {
        self.sent = Some(code.unwrap_or(CloseCode::Normal.code()));
        self.handle.0.stage.set(Stage::Sent {
            since: worker.now(),
        });
        if let Some(code) = code {
            worker.shared.metrics.protocol_close(code);
        }
    }

    /// Our close is on the wire and there is nothing more to wait for (other than EOF).
    fn close_complete(&self) -> bool {
        self.sent.is_some()
            && self.handle.0.queue.borrow().is_empty()
            && !self.transport.wants_write()
            && (self.received.is_some() || self.input_failed || self.read_eof)
    }

    fn flush(&mut self, worker: &Worker, sock: RawSock<'_>) -> io::Result<()> {
        let mut q = self.handle.0.queue.borrow_mut();
        if q.is_empty() && !self.transport.wants_write() {
            return Ok(());
        }
        let mut w = Written::default();
        let done = self.transport.flush_queue(sock, &mut q, &mut w)?;
        self.write_blocked = !done;
        self.handle.0.backed_up.set(!done);
        let m = &worker.shared.metrics;
        if w.writes > 0 {
            m.writes_total.fetch_add(w.writes as u64, Relaxed);
        }
        if w.frames > 0 {
            m.frames_out_total.fetch_add(w.frames as u64, Relaxed);
        }
        if w.bytes > 0 {
            m.bytes_out_total.fetch_add(w.bytes as u64, Relaxed);
        }
        Ok(())
    }

    /// Reads what is available (bounded per wake for fairness). Returns whether more may be
    /// pending without a readiness event.
    fn read_ready(&mut self, worker: &Worker, sock: RawSock<'_>) -> bool {
        let mut scratch = worker.take_scratch();
        let mut budget = 4;
        let mut got = false;
        let more = loop {
            match self.transport.read(sock, &mut scratch) {
                Ok(0) => {
                    self.read_eof = true;
                    break false;
                }
                Ok(n) => {
                    got = true;
                    self.process_input(worker, &mut scratch[..n]);
                    budget -= 1;
                    if budget == 0 {
                        break true;
                    }
                    if n < scratch.len() && matches!(self.transport, Transport::Plain) {
                        // A short read emptied the kernel's buffer: the next readiness wait
                        // (armed next) reports anything that arrives after it, so a second
                        // `recv` here would only return EAGAIN (one syscall per read frame).
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => {
                    self.read_eof = true;
                    break false;
                }
            }
        };
        worker.put_scratch(scratch);
        if got {
            self.handle.0.last_rx.set(worker.now());
        }
        more
    }

    /// Parses bytes from the client and dispatches events.
    fn process_input(&mut self, worker: &Worker, data: &mut [u8]) {
        if self.input_failed || self.received.is_some() {
            return;
        }
        let limits = &worker.shared.config.limits;
        let handle = &self.handle;
        let session = &mut self.session;
        let mut peer_close: Option<Option<u16>> = None;
        let res = self.decoder.feed(data, limits, |ev| {
            match ev {
                Event::Message { kind, payload } => {
                    if handle.is_open() {
                        session.on_message(handle, kind, payload);
                    }
                }
                Event::Ping(p) => {
                    if handle.is_open() {
                        let _ = handle.send(frame::encode(Opcode::Pong, p), FrameClass::Control);
                    }
                }
                Event::Pong(_) => {}
                Event::Close { code, .. } => peer_close = Some(code),
            }
            Flow::Continue
        });
        self.decoder.shrink();
        match res {
            Ok(feed) => {
                worker
                    .shared
                    .metrics
                    .frames_in_total
                    .fetch_add(feed.frames as u64, Relaxed);
            }
            Err(e) => {
                tracing::debug!(conn = self.handle.id(), error = %e, "protocol error");
                self.input_failed = true;
                self.queue_close(worker, e.close_code(), e.reason());
                return;
            }
        }
        if let Some(code) = peer_close {
            self.received = Some(code);
            if self.sent.is_none() {
                // Echo the peer's close code (RFC 6455 §5.5.1); an empty close gets an empty close.
                let f = match code {
                    Some(c) => frame::encode_close(c, ""),
                    None => frame::encode(Opcode::Close, b""),
                };
                self.handle
                    .0
                    .queue
                    .borrow_mut()
                    .push_unbounded(f, FrameClass::Control);
                self.mark_close_sent(worker, code);
            }
        }
    }

    fn finish(mut self, thread: &Thread) {
        let worker = &thread.worker;
        if self.handle.0.stage.get() != Stage::Aborted {
            self.handle.0.stage.set(Stage::Aborted);
        }
        thread.registry.unregister(&self.handle);
        worker.shared.metrics.connections_open.fetch_sub(1, Relaxed);
        let info = CloseInfo {
            received: self.received,
            sent: self.sent,
        };
        self.session.on_close(&self.handle, &info);
        // Frames queued after the end are dropped with the queue.
        *self.handle.0.queue.borrow_mut() = SendQueue::new();
        self.handle.0.waker.take();
    }
}
