//! The seam between the transport and the game layer.
//!
//! After a successful upgrade the edge asks the process-wide [`SessionFactory`] for a [`Session`]
//! (one per socket, living on that socket's worker thread). The session sees complete, validated
//! messages and the close; it talks back through the socket's [`ConnHandle`](crate::handle::ConnHandle),
//! which it may clone into per-thread structures (rooms) for fan-out.
//!
//! Threading: a factory is shared by all worker threads (`Send + Sync`); sessions and handles are
//! `!Send` and stay on their thread. Work that must leave the thread (Redis FCALLs on the tokio
//! thread) goes through channels; the reply comes back to a task spawned on this thread with
//! `monoio::spawn`, which calls `ConnHandle::send`.
//!
//! [`EchoFactory`] / [`EchoSession`] implement `--echo` mode.

use std::sync::Arc;

use crate::admission::UpstreamGauge;
use crate::handle::{CloseInfo, ConnHandle};
use crate::sendq::FrameClass;
use crate::ws::frame::{self, MessageKind, Opcode};
use crate::ws::handshake::UpgradeRequest;

/// One socket's protocol handler.
pub trait Session {
    /// A complete message from the client. `payload` of a `Text` message is valid UTF-8. The slice
    /// points into a per-thread buffer: copy what must outlive the call.
    fn on_message(&mut self, conn: &ConnHandle, kind: MessageKind, payload: &[u8]);

    /// The socket is closing or closed. Called once; drop clones of `conn` kept elsewhere (rooms)
    /// so no state outlives the socket.
    fn on_close(&mut self, conn: &ConnHandle, info: &CloseInfo) {
        let _ = (conn, info);
    }
}

/// An upgrade refused by the factory (e.g. bad token): the HTTP response to send instead of 101.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub body: String,
}

/// Creates a [`Session`] per accepted upgrade. Shared by every worker thread.
pub trait SessionFactory: Send + Sync + 'static {
    /// Runs once on each worker thread inside its runtime before it accepts, so per-thread tasks
    /// (e.g. the receiver of room events from the Redis thread) can be spawned with `monoio::spawn`.
    fn on_worker_start(&self, worker_index: usize) {
        let _ = worker_index;
    }

    /// Decides an upgrade: `req` has the path, query and negotiated subprotocol; `conn` is the
    /// socket's handle (frames sent now go out right after the 101). Runs before the 101 is sent.
    fn open(&self, req: &UpgradeRequest, conn: &ConnHandle) -> Result<Box<dyn Session>, Rejection>;

    /// The gauge of this factory's calls to its backend (the game layer's Redis calls in flight and
    /// their latency), read by admission control. Asked once, when the server starts.
    fn upstream_gauge(&self) -> Option<Arc<UpstreamGauge>> {
        None
    }
}

/// Echo mode: every message goes back as it came (text as text, binary as binary).
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoFactory;

impl SessionFactory for EchoFactory {
    fn open(
        &self,
        _req: &UpgradeRequest,
        _conn: &ConnHandle,
    ) -> Result<Box<dyn Session>, Rejection> {
        Ok(Box::new(EchoSession))
    }
}

/// See [`EchoFactory`].
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoSession;

impl Session for EchoSession {
    fn on_message(&mut self, conn: &ConnHandle, kind: MessageKind, payload: &[u8]) {
        let op = match kind {
            MessageKind::Text => Opcode::Text,
            MessageKind::Binary => Opcode::Binary,
        };
        // A refused send means the socket is closing; nothing to do.
        let _ = conn.send(frame::encode(op, payload), FrameClass::Reliable);
    }
}
