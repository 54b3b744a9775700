//! The few OS calls that need `unsafe`, kept in one place with a `SAFETY:` note on each block:
//! non-blocking socket I/O on a monoio-owned fd, RLIMIT_NOFILE, signal masks for
//! SIGTERM/SIGINT handling by a dedicated thread, a wall-clock `timerfd`, and an `eventfd`.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

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

/// Bytes written to TCP socket `fd` that its peer has not acknowledged yet (`SIOCOUTQ`: unsent
/// plus unacknowledged). 0 means the peer's TCP stack has acknowledged every byte written: the
/// keepalive's proof that a client which sends nothing is still there ([`Registry::sweep`](crate::registry::Registry::sweep)).
pub fn unacked_bytes(fd: std::os::fd::RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a live c_int the ioctl writes once; an fd that is not a socket (or not open)
    // makes it fail with an error, and writes nothing.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`; a syscall, not the vDSO:
/// ~0.3 µs). The loop clock reads it once a tick to tell an idle worker from a busy one.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the call writes once; the clock id is a constant.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r < 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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

/// A one-shot `timerfd` that turns readable when the wall clock (`CLOCK_REALTIME`, the clock of
/// `showAt`) reaches `at_ms` (epoch ms; at once if that has passed). Waiting on it ends within the
/// kernel's timer slack of the instant, where monoio's timer wheel rounds a deadline up to its next
/// 1 ms tick.
pub fn wall_clock_timer(at_ms: u64) -> io::Result<OwnedFd> {
    let fd = timerfd(libc::CLOCK_REALTIME)?;
    let at = Duration::from_millis(at_ms);
    arm_timerfd(&fd, at, libc::TFD_TIMER_ABSTIME)?;
    Ok(fd)
}

/// A non-blocking `eventfd` (counter 0): a worker's doorbell ([`crate::doorbell`]). Reads and writes
/// of its 8-byte counter need no `unsafe`: it is used through `std::fs::File`.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers are passed; a non-negative return is a new fd that only we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A disarmed `CLOCK_MONOTONIC` `timerfd` for [`arm_monotonic_timer`]: a periodic task that waits on
/// it wakes its thread once per period. monoio's timer wheel wakes it twice for a sleep of 64 ms or
/// more (once to move the timer down a level of the wheel, once when it is due).
pub fn monotonic_timer() -> io::Result<OwnedFd> {
    timerfd(libc::CLOCK_MONOTONIC)
}

/// Arms a [`monotonic_timer`] to turn readable `after` from now (once). Setting it also clears a past
/// expiry (`timerfd_settime` resets the count a `read` would return), so the next wait is for this one.
pub fn arm_monotonic_timer(fd: &impl AsRawFd, after: Duration) -> io::Result<()> {
    // a zero it_value would disarm it
    arm_timerfd(fd, after.max(Duration::from_nanos(1)), 0)
}

fn timerfd(clock: libc::clockid_t) -> io::Result<OwnedFd> {
    // SAFETY: no pointers are passed; a non-negative return is a new fd that only we own.
    let fd = unsafe { libc::timerfd_create(clock, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One expiry at `value` (absolute with `TFD_TIMER_ABSTIME`, else from now), no interval.
fn arm_timerfd(fd: &impl AsRawFd, value: Duration, flags: libc::c_int) -> io::Result<()> {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let spec = libc::itimerspec {
        it_interval: zero,
        it_value: libc::timespec {
            tv_sec: value.as_secs() as libc::time_t,
            tv_nsec: value.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `fd` is a timerfd we own; `spec` outlives the call; the old value is not asked for.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &spec, std::ptr::null_mut()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// RLIMIT_NOFILE before and after raising the soft limit to the hard limit.
#[derive(Debug, Clone, Copy)]
pub struct NofileLimits {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Turns transparent huge pages off for this process and its children (`PR_SET_THP_DISABLE`,
/// inherited across fork and exec). mimalloc v3 `madvise`s its arenas `MADV_HUGEPAGE`; with THP
/// in `madvise` mode every touched 2 MiB of heap is then resident, which cost ~0.55 KB of RSS per
/// idle socket here (perf/edge.md). The flag is checked at page-fault time, so it also covers the
/// arenas mimalloc mapped before `main`.
pub fn disable_thp() -> io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// mimalloc's C option API (the static library comes with the `mimalloc` crate; its Rust wrapper
// exposes options only with its `extended` feature, which would add a crate to the lockfile).
extern crate mimalloc as _;
extern "C" {
    fn mi_option_get(option: libc::c_int) -> libc::c_long;
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
    fn mi_collect(force: bool);
}

/// `mi_option_purge_delay` in `mi_option_t` of mimalloc 2.x and 3.x (include/mimalloc.h).
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;
/// mimalloc 3's default purge delay (ms); any other value means the option was set elsewhere
/// (`MIMALLOC_PURGE_DELAY`) or the index is not what we know, and it is left alone.
const MI_DEFAULT_PURGE_DELAY_MS: libc::c_long = 1000;

/// Shortens mimalloc's purge delay from 1 s to 10 ms and returns the delay now in effect. With
/// the default, pages freed when thousands of sockets close are only returned to the OS on a later
/// allocation burst of the same thread — an idle edge kept its peak RSS after disconnects
/// (perf/edge.md). Purges are page-granular, so the hot path (frames, per-burst queue buffers)
/// does not trigger them.
pub fn shorten_allocator_purge_delay() -> Option<i64> {
    // SAFETY: the option API takes and returns plain integers; the index is range-checked by
    // mimalloc itself, and we only set it when it holds the default we expect.
    let before = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
    if before != MI_DEFAULT_PURGE_DELAY_MS {
        return None;
    }
    // SAFETY: as above.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
    Some(10)
}

/// Asks mimalloc to return this thread's free memory to the OS now (`mi_collect(true)`): after
/// mass disconnects a worker's pages may be kept (retained free pages, frees from other threads
/// still pending) until its next allocation burst, which an idle worker never has.
pub fn allocator_collect() {
    // SAFETY: mi_collect only walks the calling thread's allocator state; no pointers of ours.
    unsafe { mi_collect(true) }
}

/// The light form, `mi_collect(false)`: frees what other threads handed back to this thread's
/// heap and runs the purges that are due. mimalloc does both only inside allocation calls of the
/// owning thread, so a thread that went quiet (the Redis thread after a lobby filled, a worker
/// whose sockets only idle) otherwise keeps those pages. Cheap: called once a second.
pub fn allocator_collect_light() {
    // SAFETY: as in `allocator_collect`.
    unsafe { mi_collect(false) }
}

/// The CPUs this process may run on (its affinity mask: what `taskset`, systemd's `CPUAffinity=` or a
/// container's cpuset allow), in ascending order; `None` when the kernel does not say.
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most size_of::<cpu_set_t>() bytes.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect();
    (!cpus.is_empty()).then_some(cpus)
}

/// The CPU that worker `worker` of edge process `process` (of `threads` workers each) is pinned to: the
/// processes' workers take the allowed CPUs in turn, so `--processes 4 --threads 1` spreads over four
/// CPUs instead of putting every process's only worker on the first, and a `taskset -c 1` is obeyed.
pub fn worker_cpu(allowed: &[usize], process: usize, threads: usize, worker: usize) -> usize {
    if allowed.is_empty() {
        return worker;
    }
    allowed[(process * threads + worker) % allowed.len()]
}

/// The soft RLIMIT_NOFILE (`None`: unknown or unlimited).
pub fn nofile_soft_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(lim.rlim_cur)
}

/// Descriptors open in this process now (entries of `/proc/self/fd`; `None` off Linux). Walks the
/// directory: call it at start, not per request.
pub fn open_fd_count() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_of_several_processes_spread_over_the_allowed_cpus() {
        let all = [0, 1, 2, 3];
        // --processes 4 --threads 1: one CPU each (not all on CPU 0)
        let one_each: Vec<usize> = (0..4).map(|p| worker_cpu(&all, p, 1, 0)).collect();
        assert_eq!(one_each, [0, 1, 2, 3]);
        // --processes 2 --threads 2
        assert_eq!(
            [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(p, w)| worker_cpu(&all, p, 2, w)),
            [0, 1, 2, 3]
        );
        // more workers than CPUs wrap around; a taskset mask is obeyed
        assert_eq!(worker_cpu(&all, 5, 1, 0), 1);
        assert_eq!(worker_cpu(&[1], 3, 1, 0), 1);
        assert_eq!(worker_cpu(&[2, 5], 1, 1, 0), 5);
        // this process's own mask is readable and not empty
        assert!(!allowed_cpus().expect("sched_getaffinity").is_empty());
    }
}
