//! Byte transport of one socket: plain TCP or TLS, driven by readiness.
//!
//! The edge never parks a buffer in the kernel or in a pending read: it waits with monoio's
//! `readable()`/`writable()` (an io_uring PollAdd, or epoll readiness on the fallback driver), then
//! does non-blocking syscalls itself into the worker's scratch buffer. Cancelling a readiness wait
//! loses no data, so one task per socket can wait for "readable" and "something to send" at once.
//!
//! TLS uses rustls' sans-I/O `ServerConnection` on the same readiness loop rather than
//! monoio-rustls' stream wrapper: that wrapper owns two I/O buffers per socket and needs a split
//! read/write task pair, while this way plain and TLS sockets share one code path and one task.

use std::io::{self, IoSlice, Read as _, Write as _};
use std::sync::Arc;

use monoio::net::TcpStream;

use crate::sendq::{SendQueue, MAX_IOVECS};
use crate::sys::RawSock;

/// Plain TCP or TLS.
pub enum Transport {
    Plain,
    Tls(Box<rustls::ServerConnection>),
}

/// Bytes and whole frames written by one flush.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub bytes: usize,
    pub frames: usize,
    /// Send syscalls made.
    pub writes: usize,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Transport {
    /// Reads application bytes. `Ok(0)`: the peer closed; `WouldBlock`: nothing more for now (for
    /// TLS, every buffered plaintext byte has been returned by then).
    pub fn read(&mut self, sock: RawSock<'_>, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => sock.read(buf),
            Transport::Tls(tls) => loop {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
                let mut s = sock;
                match tls.read_tls(&mut s) {
                    Ok(0) => return Ok(0),
                    Ok(_) => {
                        if let Err(e) = tls.process_new_packets() {
                            // Best effort: tell the peer why (the alert is queued by rustls).
                            let _ = tls.write_tls(&mut s);
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                    }
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Whether TLS records wait to be written.
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(tls) => tls.wants_write(),
        }
    }

    /// Writes queued frames (one `sendmsg` of up to 64 frames at a time on plain sockets).
    /// Returns `Ok(true)` when everything is on the wire, `Ok(false)` when the socket would block.
    pub fn flush_queue(
        &mut self,
        sock: RawSock<'_>,
        q: &mut SendQueue,
        w: &mut Written,
    ) -> io::Result<bool> {
        match self {
            Transport::Plain => loop {
                if q.is_empty() {
                    return Ok(true);
                }
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let n = q.io_slices(&mut iov);
                w.writes += 1;
                match sock.write_vectored(&iov[..n]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(k) => {
                        w.bytes += k;
                        w.frames += q.consume(k);
                    }
                    Err(e) if would_block(&e) => return Ok(false),
                    Err(e) => return Err(e),
                }
            },
            Transport::Tls(tls) => loop {
                // Move plaintext into rustls (it encrypts at once) as far as its buffer allows.
                while !q.is_empty() {
                    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                    let n = q.io_slices(&mut iov);
                    let k = tls.writer().write_vectored(&iov[..n])?;
                    if k == 0 {
                        break;
                    }
                    w.bytes += k;
                    w.frames += q.consume(k);
                }
                if !tls.wants_write() {
                    if q.is_empty() {
                        return Ok(true);
                    }
                    return Err(io::Error::other("tls buffer full but nothing to write"));
                }
                let mut s = sock;
                w.writes += 1;
                match tls.write_tls(&mut s) {
                    Ok(_) => {}
                    Err(e) if would_block(&e) => return Ok(false),
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Writes `data[*pos..]`, advancing `pos`. `Ok(true)` when all of it is on the wire.
    pub fn write_some(
        &mut self,
        sock: RawSock<'_>,
        data: &[u8],
        pos: &mut usize,
    ) -> io::Result<bool> {
        match self {
            Transport::Plain => {
                while *pos < data.len() {
                    match sock.write_vectored(&[IoSlice::new(&data[*pos..])]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(k) => *pos += k,
                        Err(e) if would_block(&e) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
                Ok(true)
            }
            Transport::Tls(tls) => {
                if *pos < data.len() {
                    tls.writer().write_all(&data[*pos..])?;
                    *pos = data.len();
                }
                flush_tls(tls, sock)
            }
        }
    }

    /// Flushes buffered TLS records. `Ok(true)` when none remain.
    pub fn flush(&mut self, sock: RawSock<'_>) -> io::Result<bool> {
        match self {
            Transport::Plain => Ok(true),
            Transport::Tls(tls) => flush_tls(tls, sock),
        }
    }

    /// Queues a TLS close_notify (no-op on plain TCP).
    pub fn send_close_notify(&mut self) {
        if let Transport::Tls(tls) = self {
            tls.send_close_notify();
        }
    }
}

fn flush_tls(tls: &mut rustls::ServerConnection, sock: RawSock<'_>) -> io::Result<bool> {
    let mut s = sock;
    while tls.wants_write() {
        match tls.write_tls(&mut s) {
            Ok(_) => {}
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes all of `data`, waiting for writability as needed.
pub async fn write_all(stream: &TcpStream, t: &mut Transport, data: &[u8]) -> io::Result<()> {
    let sock = RawSock::new(stream);
    let mut pos = 0;
    while !t.write_some(sock, data, &mut pos)? {
        stream.writable(false).await?;
    }
    Ok(())
}

/// Runs the TLS handshake on the readiness loop.
pub async fn tls_accept(
    stream: &TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<Transport> {
    let mut tls = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let sock = RawSock::new(stream);
    let mut s = sock;
    while tls.is_handshaking() {
        if !flush_tls(&mut tls, sock)? {
            stream.writable(false).await?;
            continue;
        }
        if !tls.is_handshaking() {
            break;
        }
        match tls.read_tls(&mut s) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    let _ = flush_tls(&mut tls, sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            Err(e) if would_block(&e) => stream.readable(false).await?,
            Err(e) => return Err(e),
        }
    }
    let mut t = Transport::Tls(Box::new(tls));
    while !t.flush(sock)? {
        stream.writable(false).await?;
    }
    Ok(t)
}

/// Closes gracefully: TLS close_notify, FIN after everything written, then read and discard until
/// the peer's EOF (or `timeout`), so the kernel never answers unread data with a RST that could
/// destroy our last frames in the peer's receive buffer.
pub async fn linger_close(stream: &TcpStream, t: &mut Transport, timeout: std::time::Duration) {
    let sock = RawSock::new(stream);
    let _ = monoio::time::timeout(timeout, async {
        t.send_close_notify();
        while let Ok(false) = t.flush(sock) {
            if stream.writable(false).await.is_err() {
                return;
            }
        }
        sock.shutdown_write();
        let mut buf = [0u8; 512];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if would_block(&e) => {
                    if stream.readable(false).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    })
    .await;
}
