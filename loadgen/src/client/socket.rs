//! Socket I/O of one simulated client: connect and upgrade (from the run's source addresses), the read
//! loop over the worker's shared scratch buffer, frame parsing, sends (framed and masked into `out`,
//! one syscall), the close, and a slow consumer's drain at the stop. What a message means is
//! [`player`](super::player)'s business.

use super::*;

impl Client {
    /// Opens a socket and upgrades it; frames that came with the upgrade response are processed. An
    /// upgrade answered `503` (admission control) is `Refused` with its `Retry-After` (1 s if it named none).
    /// `resume`: the socket replaces a lost one (`/ws?resume=1`: the edge admits it before new players).
    pub(super) async fn connect(&mut self, resume: bool) -> Result<(), ConnectErr> {
        self.stats().counters.sockets_attempted += 1;
        self.connect_started = Instant::now();
        let plan = &self.ctx.plan;
        let limit = Duration::from_millis(plan.connect_timeout_ms);
        let target = plan.target;
        let sock = match self.make_socket(target) {
            Ok(s) => s,
            Err(e) => {
                self.stats().counters.connect_failed += 1;
                self.stats().error_code(&format!("socket:{}", io_kind(&e)));
                return Err(ConnectErr::Failed);
            }
        };
        let stream = match timeout(limit, sock.connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.stats().counters.connect_failed += 1;
                self.stats().error_code(&format!("connect:{}", io_kind(&e)));
                return Err(ConnectErr::Failed);
            }
            Err(_) => {
                self.stats().counters.connect_failed += 1;
                self.stats().error_code("connect:timeout");
                return Err(ConnectErr::Failed);
            }
        };
        let _ = stream.set_nodelay(true);
        let key = wsframe::make_key({
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&self.ctx.rand().to_ne_bytes());
            k[8..].copy_from_slice(&self.ctx.rand().to_ne_bytes());
            k
        });
        // `connect` scenario: any server (an echo server has no subprotocol); else ours must be chosen.
        let expect = if plan.scenario == Scenario::Connect {
            None
        } else {
            Some(self.codec.protocol())
        };
        self.out.clear();
        let path = if resume {
            resume_path(&plan.path)
        } else {
            plan.path.clone()
        };
        wsframe::write_upgrade_request(
            &mut self.out,
            &plan.host_header,
            &path,
            &key,
            Some(self.codec.protocol()),
        );
        self.leftover.clear();
        let res = timeout(
            limit,
            upgrade(&stream, &self.out, &mut self.leftover, &key, expect),
        )
        .await;
        self.out.clear();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(why)) if why == "http_503" => {
                let secs = wsframe::retry_after_secs(&self.leftover).unwrap_or(1);
                self.leftover.clear();
                self.stats().counters.upgrade_refused += 1;
                return Err(ConnectErr::Refused(secs.saturating_mul(1000)));
            }
            Ok(Err(why)) => {
                self.stats().counters.upgrade_failed += 1;
                self.stats().error_code(&format!("upgrade:{why}"));
                return Err(ConnectErr::Failed);
            }
            Err(_) => {
                self.stats().counters.upgrade_failed += 1;
                self.stats().error_code("upgrade:timeout");
                return Err(ConnectErr::Failed);
            }
        }
        let took = self.connect_started.elapsed().as_micros() as u64;
        {
            let mut st = self.stats();
            st.record(Metric::Connect, took);
            st.counters.sockets_connected += 1;
        }
        self.ctx.open.set(self.ctx.open.get() + 1);
        self.stream = Some(stream);
        self.frag.clear();
        if let Role::Plain { .. } = self.role {
            self.mark_ready();
        }
        if !self.leftover.is_empty() {
            self.set_now();
            let mut first = std::mem::take(&mut self.leftover);
            if let Err(end) = self.ingest(&mut first) {
                // A close that came with the upgrade response: the session loop ends with it.
                self.pending_end = Some(end);
            }
        }
        Ok(())
    }

    pub(super) fn make_socket(&self, target: SocketAddr) -> std::io::Result<TcpSocket> {
        let sock = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if target.is_ipv4() {
            if let Some(src) = self.ctx.source() {
                crate::sys::set_bind_address_no_port(&sock)?;
                sock.bind(src)?;
            }
        }
        if self.is_slow() {
            sock.set_recv_buffer_size(self.ctx.plan.slow_rcvbuf)?;
        }
        Ok(sock)
    }

    pub(super) fn set_now(&mut self) {
        self.now = Instant::now();
        self.now_us = epoch_us();
    }

    /// Reads and handles frames until the stop, a loss, or a final end.
    pub(super) async fn session(&mut self) -> End {
        // Bounded: every pass awaits a socket event, a timer or a phase change, and the worker's stop
        // (at the latest its hard deadline) ends the loop.
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            if let Some(end) = self.pending_end.take() {
                return end;
            }
            let phase = *self.phase.borrow_and_update();
            match phase {
                Phase::Stop => return End::Stop,
                Phase::Game => self.maybe_start_game(),
                Phase::Setup => {}
            }
            if !self.out.is_empty() {
                continue;
            }
            let wake = self.next_wake();
            let Some(stream) = self.stream.as_ref() else {
                return End::Lost;
            };
            tokio::select! {
                r = stream.readable(), if self.reads() => {
                    if r.is_err() {
                        return self.lost("reset");
                    }
                    if let Err(end) = self.read_ready() {
                        return end;
                    }
                }
                _ = sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)).into()), if wake.is_some() => {
                    if let Err(end) = self.on_timer() {
                        return end;
                    }
                }
                r = self.phase.changed() => {
                    if r.is_err() {
                        return End::Stop;
                    }
                }
            }
        }
    }

    pub(super) fn lost(&mut self, why: &str) -> End {
        let mut st = self.stats();
        st.counters.sockets_dropped += 1;
        st.close_code(why);
        End::Lost
    }

    /// Reads what the socket has into the worker's buffer and handles every complete frame.
    pub(super) fn read_ready(&mut self) -> Result<(), End> {
        let ctx = self.ctx.clone();
        let mut scratch = ctx.scratch.borrow_mut();
        self.set_now();
        // Bounded: at most 8 reads per wake, so one busy socket cannot starve the others.
        for _ in 0..8 {
            let Some(stream) = self.stream.as_ref() else {
                return Err(End::Lost);
            };
            match stream.try_read(&mut scratch[..]) {
                Ok(0) => return Err(self.lost("eof")),
                Ok(n) => {
                    self.ingest(&mut scratch[..n])?;
                    if n < scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(self.lost("reset")),
            }
        }
        Ok(())
    }

    /// Handles the complete frames of `fresh` (after the leftover of the previous read).
    pub(super) fn ingest(&mut self, fresh: &mut [u8]) -> Result<(), End> {
        if self.leftover.is_empty() {
            let used = self.frames(fresh)?;
            if used < fresh.len() {
                self.leftover.extend_from_slice(&fresh[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.leftover);
            buf.extend_from_slice(fresh);
            let used = self.frames(&mut buf)?;
            buf.drain(..used);
            if buf.is_empty() && buf.capacity() > 16 * 1024 {
                buf = Vec::new();
            }
            self.leftover = buf;
        }
        Ok(())
    }

    /// Handles whole frames at the start of `buf`; returns the bytes used.
    pub(super) fn frames(&mut self, buf: &mut [u8]) -> Result<usize, End> {
        let mut pos = 0;
        loop {
            let h = match wsframe::parse_header(&buf[pos..]) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(pos),
                Err(_) => {
                    self.stats().counters.decode_errors += 1;
                    self.queue_close(CloseCode::ProtocolError.code());
                    return Err(self.lost("protocol_error"));
                }
            };
            if buf.len() - pos < h.frame_len() {
                return Ok(pos);
            }
            let payload = &mut buf[pos + h.header_len..pos + h.frame_len()];
            self.frame(h, payload)?;
            pos += h.frame_len();
        }
    }

    pub(super) fn frame(&mut self, h: wsframe::FrameHeader, payload: &mut [u8]) -> Result<(), End> {
        match h.opcode {
            opcode::TEXT | opcode::BINARY if h.fin && self.frag.is_empty() => {
                self.message(payload, h.frame_len())
            }
            opcode::TEXT | opcode::BINARY | opcode::CONTINUATION => {
                self.frag.extend_from_slice(payload);
                if h.fin {
                    let mut whole = std::mem::take(&mut self.frag);
                    let n = whole.len();
                    let r = self.message(&mut whole, n);
                    whole.clear();
                    self.frag = whole;
                    r
                } else {
                    Ok(())
                }
            }
            opcode::PING => {
                self.stats().counters.ws_pings_received += 1;
                let mask = (self.ctx.rand() as u32).to_ne_bytes();
                wsframe::append_masked(&mut self.out, opcode::PONG, mask, payload);
                Ok(())
            }
            opcode::CLOSE => {
                let code = wsframe::close_code(payload);
                {
                    let mut st = self.stats();
                    st.counters.closes_received += 1;
                    st.close_code(&code.map_or("1005".to_string(), |c| c.to_string()));
                }
                self.queue_close(code.unwrap_or(CloseCode::Normal.code()));
                // The protocol's table decides (normal, kicked, a complaint about our frames: final).
                Err(match Reconnect::after(code) {
                    Reconnect::Never => End::Final,
                    Reconnect::AtOnce | Reconnect::WithBackoff => End::Lost,
                })
            }
            _ => Ok(()),
        }
    }

    pub(super) fn queue_close(&mut self, code: u16) {
        let mask = (self.ctx.rand() as u32).to_ne_bytes();
        wsframe::append_masked(&mut self.out, opcode::CLOSE, mask, &code.to_be_bytes());
    }

    /// Frames an event into `out` (masked, in place).
    pub(super) fn send(&mut self, ev: ClientEvent, rid: Option<u32>) {
        let env = Envelope {
            event: ev,
            rid,
            seq: None,
        };
        let mask = (self.ctx.rand() as u32).to_ne_bytes();
        let before = self.out.len();
        match self.codec {
            Codec::Json => wsframe::append_masked_frame(&mut self.out, opcode::TEXT, mask, |o| {
                serde_json::to_writer(o, &env).expect("client events encode to JSON");
            }),
            Codec::Msgpack => {
                wsframe::append_masked_frame(&mut self.out, opcode::BINARY, mask, |o| {
                    rmp_serde::encode::write_named(o, &env)
                        .expect("client events encode to MessagePack");
                })
            }
        }
        let n = (self.out.len() - before) as u64;
        let mut st = self.stats();
        st.counters.frames_sent += 1;
        st.counters.bytes_sent += n;
    }

    /// Writes `out`. Client frames are small; the socket's send buffer almost always takes them at once.
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(End::Lost);
        };
        let r = timeout(Duration::from_secs(10), stream.write_all(&self.out)).await;
        self.out.clear();
        if self.out.capacity() > 16 * 1024 {
            self.out = Vec::new();
        }
        match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(self.lost("write_failed")),
        }
    }

    pub(super) async fn close_socket(&mut self, end: End) {
        if self.stream.is_none() {
            return;
        }
        if end == End::Stop {
            if self.is_slow() {
                self.drain_slow().await;
            }
            if self.stream.is_some() {
                self.out.clear();
                self.queue_close(CloseCode::Normal.code());
                if let Some(s) = self.stream.as_ref() {
                    let _ = s.try_write(&self.out);
                }
            }
        } else if !self.out.is_empty() {
            if let Some(s) = self.stream.as_ref() {
                let _ = s.try_write(&self.out);
            }
        }
        self.out.clear();
        self.leftover.clear();
        self.stream = None;
        self.ctx.open.set(self.ctx.open.get() - 1);
    }

    /// A slow consumer at the stop: read what waited in its socket to learn how the edge treated it
    /// (a 4008 close, a reset, or nothing).
    pub(super) async fn drain_slow(&mut self) {
        let before = self.stats().counters.bytes_received;
        let until = Instant::now() + SLOW_DRAIN;
        // Bounded by `until`.
        let outcome = loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(stream) = self.stream.as_ref() else {
                break "slow:closed_by_edge";
            };
            if left.is_zero() {
                break "slow:still_open";
            }
            match timeout(left, stream.readable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break "slow:closed_by_edge",
                Err(_) => break "slow:still_open",
            }
            if self.read_ready().is_err() {
                break "slow:closed_by_edge";
            }
        };
        let mut st = self.stats();
        st.counters.slow_backlog_bytes += st.counters.bytes_received - before;
        st.close_code(outcome);
    }
}

/// `path` with `resume=1` added to its query (docs/admission.md: a resuming upgrade).
fn resume_path(path: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}resume=1")
}

/// Sends the upgrade request and reads until the response is complete; frames after it stay in `buf`.
pub(super) async fn upgrade(
    stream: &TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    key: &str,
    expect: Option<&str>,
) -> Result<(), String> {
    let mut off = 0;
    // Bounded by the caller's timeout.
    while off < request.len() {
        stream.writable().await.map_err(|e| io_kind(&e))?;
        match stream.try_write(&request[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_kind(&e)),
        }
    }
    let mut chunk = [0u8; 2048];
    loop {
        stream.readable().await.map_err(|e| io_kind(&e))?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err("eof".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(io_kind(&e)),
        }
        match wsframe::parse_upgrade_response(buf, key, expect) {
            Ok(Some(n)) => {
                buf.drain(..n);
                return Ok(());
            }
            Ok(None) => {}
            Err(wsframe::UpgradeError::Status(s)) => return Err(format!("http_{s}")),
            Err(wsframe::UpgradeError::BadAccept) => return Err("bad_accept".into()),
            Err(wsframe::UpgradeError::BadProtocol(_)) => return Err("bad_subprotocol".into()),
            Err(wsframe::UpgradeError::Malformed(_)) => return Err("malformed".into()),
        }
    }
}

/// A short name for an I/O error, for the errors table.
pub(super) fn io_kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused".into(),
        Some(libc::EADDRNOTAVAIL) => "no_source_port".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "fd_limit".into(),
        Some(libc::ECONNRESET) => "reset".into(),
        Some(libc::ETIMEDOUT) => "timeout".into(),
        _ => format!("{:?}", e.kind()).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_resuming_upgrade_adds_resume_to_the_query() {
        assert_eq!(super::resume_path("/ws"), "/ws?resume=1");
        assert_eq!(super::resume_path("/ws?sealed=1"), "/ws?sealed=1&resume=1");
    }
}
