//! The few OS calls that need `unsafe`, kept in one place with a `SAFETY:` note on each block:
//! non-blocking socket I/O on a monoio-owned fd, RLIMIT_NOFILE, and signal masks for
//! SIGTERM/SIGINT handling by a dedicated thread.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockRef;

/// A borrowed view of a socket owned by a monoio `TcpStream`, for synchronous non-blocking
/// syscalls after monoio reported readiness.
#[derive(Clone, Copy)]
pub struct RawSock<'a> {
    fd: BorrowedFd<'a>,
}

impl<'a> RawSock<'a> {
    pub fn new(stream: &'a monoio::net::TcpStream) -> Self {
        // SAFETY: `stream` owns this fd and keeps it open for at least 'a, which bounds the
        // borrow; monoio closes the fd only when the stream is dropped.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        RawSock { fd }
    }

    fn sock(&self) -> SockRef<'_> {
        SockRef::from(&self.fd)
    }

    /// Reads available bytes; `WouldBlock` when none.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&*self.sock()).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// One `sendmsg` of all slices (no SIGPIPE).
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match self
                .sock()
                .send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.sock().shutdown(Shutdown::Write);
    }

    pub fn set_nonblocking(&self) -> io::Result<()> {
        self.sock().set_nonblocking(true)
    }

    pub fn set_nodelay(&self) -> io::Result<()> {
        self.sock().set_tcp_nodelay(true)
    }
}

impl io::Read for RawSock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        RawSock::read(self, buf)
    }
}

impl io::Write for RawSock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        RawSock::write_vectored(self, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// RLIMIT_NOFILE before and after raising the soft limit to the hard limit.
#[derive(Debug, Clone, Copy)]
pub struct NofileLimits {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit.
pub fn raise_nofile_limit() -> io::Result<NofileLimits> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let soft_before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit struct read above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(NofileLimits {
        soft_before,
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// The set {SIGTERM, SIGINT}, blocked in the calling thread (and the threads it spawns later) so
/// that only [`TermSignals::wait`] receives them.
pub struct TermSignals {
    set: libc::sigset_t,
}

impl TermSignals {
    /// Blocks SIGTERM and SIGINT in this thread; call before spawning other threads.
    pub fn block() -> io::Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
        let rc = unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(TermSignals { set })
    }

    /// Waits for SIGTERM or SIGINT; returns the signal number.
    pub fn wait(&self) -> i32 {
        let mut sig = 0;
        // SAFETY: `self.set` is an initialised sigset_t and `sig` a valid out-pointer.
        unsafe { libc::sigwait(&self.set, &mut sig) };
        sig
    }
}

// SAFETY: sigset_t is plain data with no thread affinity.
unsafe impl Send for TermSignals {}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
