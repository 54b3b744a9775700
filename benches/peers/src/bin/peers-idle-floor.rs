//! The idle floor: the least a server can do to hold idle Ringside sockets that `ping`. One thread,
//! epoll, `SO_REUSEPORT` (run one per edge process the run would use, on the same port), the WebSocket
//! handshake answered with the `session:ack` in the same write, then for every client `ping` a `pong`
//! with its `rid` and `t` and the server's clock — one `read`, one `write` — and nothing else: no
//! timers, no sweep, no per-socket state past the buffer of a partial frame. What it costs is what the
//! kernel alone imposes on idle pinging sockets (perf/edge.md, "An idle socket's ping").
//!
//! It speaks just enough of the protocol for `ringside-loadgen connect` (docs/protocol.md `session:ack`,
//! `ping`/`pong`): a `ping` is found by its `"rid":` and `"t":` in the unmasked text.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ringside_peers::{accept_key, num_after, parse_frame, server_frame};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18480")]
    listen: SocketAddr,
    /// The `pingInterval` the `session:ack` announces (the edge's default `--app-ping-interval`).
    #[arg(long, default_value_t = 20_000)]
    ping_interval_ms: u32,
    /// Exits after this long (every load loop is bounded).
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
}

struct Conn {
    s: TcpStream,
    /// Bytes of an incomplete request head or frame.
    inbuf: Vec<u8>,
    upgraded: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A listening socket with `SO_REUSEPORT`, so that several floors share one port like the edge's processes.
fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let SocketAddr::V4(v4) = addr else {
        bail!("IPv4 only")
    };
    // SAFETY: plain syscalls on a descriptor we own; `sa` lives across `bind`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) != 0
            || libc::listen(fd, 8192) != 0
        {
            bail!("bind/listen {addr}: {}", std::io::Error::last_os_error());
        }
        Ok(TcpListener::from_raw_fd(fd))
    }
}

/// The 101 and the `session:ack`, in one buffer.
fn upgrade_reply(head: &[u8], ping_interval_ms: u32, id: usize) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let key = header("sec-websocket-key").unwrap_or_default();
    let proto = header("sec-websocket-protocol")
        .filter(|p| p.split(',').any(|t| t.trim() == "ringside.v1.json"))
        .map(|_| "Sec-WebSocket-Protocol: ringside.v1.json\r\n")
        .unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{proto}\r\n",
        accept_key(&key)
    )
    .into_bytes();
    let ack = format!(
        r#"{{"event":"session:ack","data":{{"socketId":"floor-{id}","serverTime":{},"pingInterval":{ping_interval_ms},"protocol":"ringside.v1.json"}}}}"#,
        now_ms()
    );
    server_frame(&mut out, 1, ack.as_bytes());
    out
}

/// The `t` of a `ping` as the client wrote it (digits and one `.`).
fn t_text(payload: &[u8]) -> Option<&[u8]> {
    let key = br#""t":"#;
    let i = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let n = payload[i..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    (n > 0).then(|| &payload[i..i + n])
}

/// Answers every complete frame at the head of `buf` into `out`; returns the bytes consumed and whether
/// the client closed.
fn answer(buf: &mut [u8], out: &mut Vec<u8>) -> (usize, bool) {
    let mut used = 0;
    while let Some(f) = parse_frame(&mut buf[used..]) {
        let (start, end) = (used + f.start, used + f.end);
        used = end;
        match f.op {
            1 => {
                let p = &buf[start..end];
                if p.starts_with(br#"{"event":"ping""#) {
                    let mut body = br#"{"event":"pong""#.to_vec();
                    if let Some(rid) = num_after(p, br#""rid":"#) {
                        body.extend_from_slice(format!(r#","rid":{rid}"#).as_bytes());
                    }
                    body.extend_from_slice(br#","data":{"t":"#);
                    body.extend_from_slice(t_text(p).unwrap_or(b"0"));
                    body.extend_from_slice(format!(r#","serverTime":{}}}}}"#, now_ms()).as_bytes());
                    server_frame(out, 1, &body);
                }
            }
            8 => return (used, true),
            9 => {
                let p = buf[start..end].to_vec();
                server_frame(out, 10, &p);
            }
            _ => {}
        }
    }
    (used, false)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let listener = listen(a.listen).with_context(|| format!("listen {}", a.listen))?;
    // SAFETY: plain syscalls; `ev`/`evs` live across the calls.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        bail!("epoll_create1: {}", std::io::Error::last_os_error());
    }
    let ctl = |op: i32, fd: i32, token: u64| {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: as above.
        unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) };
    };
    ctl(libc::EPOLL_CTL_ADD, listener.as_raw_fd(), 0);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut scratch = vec![0u8; 16384];
    let mut out = Vec::with_capacity(4096);
    let (mut pings, mut accepted, mut refused) = (0u64, 0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(a.duration_secs);
    while Instant::now() < end {
        // SAFETY: as above.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, 1000) }.max(0);
        for ev in &evs[..n as usize] {
            if ev.u64 == 0 {
                while let Ok((s, _)) = listener.accept() {
                    // a socket reset before this is dropped, not the floor
                    if s.set_nonblocking(true).is_err() || s.set_nodelay(true).is_err() {
                        continue;
                    }
                    let i = free.pop().unwrap_or(conns.len());
                    ctl(libc::EPOLL_CTL_ADD, s.as_raw_fd(), i as u64 + 1);
                    let c = Conn {
                        s,
                        inbuf: Vec::new(),
                        upgraded: false,
                    };
                    if i == conns.len() {
                        conns.push(Some(c));
                    } else {
                        conns[i] = Some(c);
                    }
                    accepted += 1;
                }
                continue;
            }
            let i = ev.u64 as usize - 1;
            let Some(c) = conns[i].as_mut() else { continue };
            let mut closed = false;
            loop {
                match c.s.read(&mut scratch) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(got) => {
                        out.clear();
                        let data: &mut [u8] = if c.inbuf.is_empty() {
                            &mut scratch[..got]
                        } else {
                            c.inbuf.extend_from_slice(&scratch[..got]);
                            &mut c.inbuf
                        };
                        let used = if c.upgraded {
                            let before = out.len();
                            let (used, bye) = answer(data, &mut out);
                            pings += (out.len() > before) as u64;
                            closed |= bye;
                            used
                        } else if let Some(e) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                            out.extend_from_slice(&upgrade_reply(&data[..e], a.ping_interval_ms, i));
                            c.upgraded = true;
                            e + 4
                        } else {
                            0
                        };
                        let rest = data[used..].to_vec();
                        c.inbuf = rest;
                        // a reply this small fits the empty send buffer of an idle socket; one that
                        // does not (the client stopped reading) ends the socket, counted below
                        if !out.is_empty() && c.s.write_all(&out).is_err() {
                            closed = true;
                            refused += 1;
                        }
                        if got < scratch.len() || closed {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                ctl(libc::EPOLL_CTL_DEL, c.s.as_raw_fd(), 0);
                conns[i] = None;
                free.push(i);
            }
        }
    }
    let open = conns.iter().flatten().count();
    println!(
        "{{\"accepted\":{accepted},\"open\":{open},\"reads_with_a_reply\":{pings},\"closed_on_a_full_buffer\":{refused}}}"
    );
    Ok(())
}
