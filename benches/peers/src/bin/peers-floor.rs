//! The floor: the least a server can do to deliver the peers' schedule. One thread, epoll, the WebSocket
//! handshake, then at each scheduled instant the pre-encoded frames due (question; reveal + leaderboard
//! [+ result]) written to every socket — everything due for a socket in ONE `write` (or, with
//! `--write-per-frame`, one `write` per frame). Nothing else: no parsing past the handshake, no state.
//! What it costs is what the kernel alone imposes on this schedule.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ringside_peers::{accept_key, now_us, peer_body, server_frame, KINDS};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18600")]
    listen: String,
    /// Sockets to wait for before the schedule starts.
    #[arg(long)]
    players: usize,
    #[arg(long, default_value_t = 20)]
    questions: u32,
    /// The question's time limit; its reveal goes out `time_ms + grace_ms` after it.
    #[arg(long, default_value_t = 3000)]
    time_ms: u64,
    #[arg(long, default_value_t = 500)]
    grace_ms: u64,
    /// From a reveal to the next question.
    #[arg(long, default_value_t = 3000)]
    pause_ms: u64,
    /// From the last socket's handshake to the first question.
    #[arg(long, default_value_t = 2000)]
    start_delay_ms: u64,
    /// Payload bytes of question, reveal, leaderboard, result (0: not sent).
    #[arg(long, value_delimiter = ',', default_value = "300,250,900,0")]
    sizes: Vec<usize>,
    /// One write per frame instead of one per socket per instant.
    #[arg(long)]
    write_per_frame: bool,
}

struct Conn {
    s: TcpStream,
    inbuf: Vec<u8>,
    ready: bool,
    open: bool,
    pending: Vec<u8>,
}

struct Epoll(i32);

impl Epoll {
    fn new() -> Result<Self> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            bail!("epoll_create1: {}", std::io::Error::last_os_error());
        }
        Ok(Self(fd))
    }
    fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` lives across the call; the kernel copies it.
        unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) };
    }
    fn wait(&self, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: `evs` is a valid buffer of `evs.len()` events.
        let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), evs.len() as i32, timeout_ms) };
        n.max(0) as usize
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let listener = TcpListener::bind(&a.listen).with_context(|| format!("bind {}", a.listen))?;
    listener.set_nonblocking(true)?;
    // SAFETY: re-listening on a listening socket only raises its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 8192) };
    let ep = Epoll::new()?;
    ep.ctl(
        libc::EPOLL_CTL_ADD,
        listener.as_raw_fd(),
        libc::EPOLLIN as u32,
        0,
    );
    let mut conns: Vec<Conn> = Vec::with_capacity(a.players);
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut ready = 0usize;
    let mut scratch = vec![0u8; 16384];
    let (mut writes, mut bytes, mut partial) = (0u64, 0u64, 0u64);
    let mut schedule: Vec<(u64, Vec<(usize, u32)>)> = Vec::new();
    let mut next = 0usize;
    let mut end_at = u64::MAX;
    loop {
        let now = now_us();
        if schedule.is_empty() && ready >= a.players {
            let t0 = now + a.start_delay_ms * 1000;
            let period = (a.time_ms + a.grace_ms + a.pause_ms) * 1000;
            for q in 0..a.questions {
                let tq = t0 + q as u64 * period;
                schedule.push((tq, vec![(0, q)]));
                let after: Vec<(usize, u32)> = (1..4)
                    .filter(|&k| a.sizes.get(k).copied().unwrap_or(0) > 0)
                    .map(|k| (k, q))
                    .collect();
                schedule.push((tq + (a.time_ms + a.grace_ms) * 1000, after));
            }
            end_at = schedule.last().map(|s| s.0).unwrap_or(now) + 10_000_000;
            eprintln!(
                "floor: {ready} sockets ready, first question in {} ms",
                a.start_delay_ms
            );
        }
        if next < schedule.len() && now >= schedule[next].0 {
            let (at, ref kinds) = schedule[next];
            let frames: Vec<Vec<u8>> = kinds
                .iter()
                .map(|&(k, q)| {
                    let mut f = Vec::new();
                    server_frame(
                        &mut f,
                        1,
                        peer_body(KINDS[k], at, q, a.sizes[k], 0).as_bytes(),
                    );
                    f
                })
                .collect();
            let all: Vec<u8> = frames.concat();
            let parts: Vec<&[u8]> = if a.write_per_frame {
                frames.iter().map(Vec::as_slice).collect()
            } else {
                vec![&all]
            };
            for (i, c) in conns.iter_mut().enumerate() {
                if !c.ready || !c.open {
                    continue;
                }
                for p in &parts {
                    if !c.pending.is_empty() {
                        c.pending.extend_from_slice(p);
                        continue;
                    }
                    writes += 1;
                    match c.s.write(p) {
                        Ok(n) => {
                            bytes += n as u64;
                            if n < p.len() {
                                partial += 1;
                                c.pending.extend_from_slice(&p[n..]);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            c.pending.extend_from_slice(p)
                        }
                        Err(_) => c.open = false,
                    }
                }
                if !c.pending.is_empty() {
                    let ev = (libc::EPOLLIN | libc::EPOLLOUT) as u32;
                    ep.ctl(libc::EPOLL_CTL_MOD, c.s.as_raw_fd(), ev, i as u64 + 1);
                }
            }
            next += 1;
            continue;
        }
        let all_flushed = conns.iter().all(|c| c.pending.is_empty() || !c.open);
        let open = conns.iter().filter(|c| c.open).count();
        if next == schedule.len()
            && !schedule.is_empty()
            && all_flushed
            && (open == 0 || now >= end_at)
        {
            break;
        }
        let timeout = if next < schedule.len() {
            ((schedule[next].0.saturating_sub(now)) / 1000).min(100) as i32
        } else {
            100
        };
        let n = ep.wait(&mut evs, timeout);
        for ev in &evs[..n] {
            let (token, flags) = (ev.u64, ev.events);
            if token == 0 {
                while let Ok((s, _)) = listener.accept() {
                    s.set_nonblocking(true)?;
                    s.set_nodelay(true)?;
                    ep.ctl(
                        libc::EPOLL_CTL_ADD,
                        s.as_raw_fd(),
                        libc::EPOLLIN as u32,
                        conns.len() as u64 + 1,
                    );
                    conns.push(Conn {
                        s,
                        inbuf: Vec::new(),
                        ready: false,
                        open: true,
                        pending: Vec::new(),
                    });
                }
                continue;
            }
            let i = token as usize - 1;
            let c = &mut conns[i];
            if !c.open {
                continue;
            }
            if flags & libc::EPOLLOUT as u32 != 0 && !c.pending.is_empty() {
                writes += 1;
                match c.s.write(&c.pending) {
                    Ok(n) => {
                        bytes += n as u64;
                        c.pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => c.open = false,
                }
                if c.pending.is_empty() {
                    ep.ctl(
                        libc::EPOLL_CTL_MOD,
                        c.s.as_raw_fd(),
                        libc::EPOLLIN as u32,
                        token,
                    );
                }
            }
            if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                loop {
                    match c.s.read(&mut scratch) {
                        Ok(0) => {
                            c.open = false;
                            break;
                        }
                        Ok(n) if !c.ready => {
                            c.inbuf.extend_from_slice(&scratch[..n]);
                            if let Some(end) = c.inbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&c.inbuf[..end]).to_string();
                                let key = head
                                    .lines()
                                    .find_map(|l| {
                                        let (k, v) = l.split_once(':')?;
                                        k.eq_ignore_ascii_case("sec-websocket-key")
                                            .then(|| v.trim().to_string())
                                    })
                                    .unwrap_or_default();
                                let resp = format!(
                                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                                    accept_key(&key)
                                );
                                let _ = c.s.write_all(resp.as_bytes());
                                c.ready = true;
                                c.inbuf = Vec::new();
                                ready += 1;
                            }
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            c.open = false;
                            break;
                        }
                    }
                }
                if !c.open {
                    ep.ctl(libc::EPOLL_CTL_DEL, c.s.as_raw_fd(), 0, 0);
                }
            }
        }
    }
    println!(
        "{{\"sockets\":{},\"writes\":{writes},\"bytes\":{bytes},\"partial_writes\":{partial},\"write_per_frame\":{}}}",
        conns.len(),
        a.write_per_frame
    );
    Ok(())
}
