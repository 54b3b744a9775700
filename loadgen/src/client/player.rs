//! Player (and host) behaviour: what each server event does to the client — the seq check, the join
//! ack, question show and the planned answer, reveal and personal result, reconnect state, the host's
//! `game:start`.

use super::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Opens a sealed question (AES-256-GCM, additional data `"<gameCode>:<qIndex>"`); its option count.
fn open_sealed(key: &[u8], code: &str, q: u32, iv: &[u8], mut ct: Vec<u8>) -> Option<usize> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(iv).ok()?;
    let plain = k
        .open_in_place(nonce, Aad::from(format!("{code}:{q}").as_bytes()), &mut ct)
        .ok()?;
    let c: events::SealedContent = serde_json::from_slice(plain).ok()?;
    Some(c.answers.len())
}

impl Client {
    /// One message (a frame body): count it, check its seq, and act on it.
    pub(super) fn message(&mut self, body: &mut [u8], wire_len: usize) -> Result<(), End> {
        let fmt = self.fmt;
        let (kind, seq, rid, droppable) = match scan::head(fmt, body) {
            Ok(h) => {
                let slot = event_slot(h.event);
                let mut st = self.stats();
                st.counters.frames_received += 1;
                st.counters.bytes_received += wire_len as u64;
                let t = &mut st.events[slot];
                t.count += 1;
                t.bytes += wire_len as u64;
                let droppable = matches!(h.event, b"game:answer:progress" | b"game:leaderboard");
                (Kind::of(h.event), h.seq, h.rid, droppable)
            }
            Err(_) => {
                let mut st = self.stats();
                st.counters.frames_received += 1;
                st.counters.bytes_received += wire_len as u64;
                st.counters.decode_errors += 1;
                return Ok(());
            }
        };
        // The edge answers a reconnect with the missed events then `ok`, or with a `reconnect:state`
        // snapshot: the reconnect is complete at either (replayed events before it go through the
        // seq check like live ones).
        if let Some(Req {
            kind: ReqKind::Reconnect,
            rid: r,
            ..
        }) = self.req
        {
            if kind == Kind::ReconnectState || (kind == Kind::Ok && rid == Some(r)) {
                self.reconnected(kind == Kind::ReconnectState);
            }
        }
        if let Some(s) = seq {
            self.note_seq_kind(s, droppable);
            self.on_seq(s);
        }
        match kind {
            Kind::SessionAck => self.on_session_ack(body),
            Kind::Pong => {
                if let Some((r, at)) = self.ping_req {
                    if Some(r) == rid {
                        self.ping_req = None;
                        self.clock_sample(body, self.now.duration_since(at).as_micros() as u64);
                        let mut st = self.stats();
                        st.counters.pongs_received += 1;
                        st.record(
                            Metric::PingRtt,
                            self.now.duration_since(at).as_micros() as u64,
                        );
                    }
                }
            }
            Kind::AnswerAck => {
                let prev = self.answer_prev.filter(|a| Some(a.rid) == rid);
                if prev.is_some() {
                    self.answer_prev = None;
                }
                if let Some(a) = prev.or(self.answer_req) {
                    if Some(a.rid) == rid {
                        if prev.is_none() {
                            self.answer_req = None;
                            self.answer_retry_at = None;
                        }
                        let mut st = self.stats();
                        st.counters.answer_acks += 1;
                        // A resent answer's wait includes the reconnect: not an ack latency.
                        if a.resent == 0 {
                            st.record(
                                Metric::AnswerAck,
                                self.now.duration_since(a.at).as_micros() as u64,
                            );
                        }
                    }
                }
            }
            Kind::Ok => {
                if let Some(Req {
                    kind: ReqKind::Start,
                    rid: r,
                    ..
                }) = self.req
                {
                    if Some(r) == rid {
                        self.req = None;
                        self.stats().counters.games_started += 1;
                    }
                }
            }
            Kind::RoomCreated => self.on_room_created(body),
            Kind::JoinAck => self.on_join_ack(body),
            Kind::QuestionShow => self.on_show(body),
            Kind::QuestionKey => self.on_key(body),
            Kind::Reveal => self.on_reveal(body),
            Kind::Result => self.on_result(body),
            Kind::GameEnd => {
                if self.counts(0) {
                    self.stats().counters.game_end_receipts += 1;
                }
                self.finish();
            }
            Kind::ReconnectState => self.on_reconnect_state(body),
            Kind::Error => return self.on_error(body, rid),
            Kind::Other => {}
        }
        Ok(())
    }

    pub(super) fn on_seq(&mut self, s: u64) {
        self.stats().counters.room_events += 1;
        let Some(t) = self.seq.as_mut() else {
            if self.pre_seq.len() < 4096 {
                self.pre_seq.push(s);
            }
            return;
        };
        let v = t.observe(s);
        if v != Verdict::InOrder {
            self.sync_seq(v);
        }
    }

    /// Notes what the room event with seq `s` was, for telling this room's gaps apart at the end.
    pub(super) fn note_seq_kind(&self, s: u64, droppable: bool) {
        if matches!(self.role, Role::Plain { .. }) || s >= SEQ_KIND_LIMIT {
            return;
        }
        let (room, s) = (self.room() as usize, s as usize);
        let mut all = self.ctx.seq_kinds.borrow_mut();
        if all.len() <= room {
            all.resize_with(room + 1, Vec::new);
        }
        let kinds = &mut all[room];
        if kinds.len() <= s {
            kinds.resize((s + 1).next_power_of_two(), SEQ_UNKNOWN);
        }
        kinds[s] = if droppable { SEQ_DROPPABLE } else { SEQ_KEPT };
    }

    /// At the end: each seq this player missed, by what the room's other players on this worker received
    /// with it (superseded progress/leaderboard, another event, or nothing).
    pub(super) fn classify_gaps(&mut self) {
        let Some(t) = self.seq.as_ref() else { return };
        if t.gaps().is_empty() {
            return;
        }
        let (mut superseded, mut real, mut unknown) = (0u64, 0u64, 0u64);
        {
            let all = self.ctx.seq_kinds.borrow();
            let kinds = all.get(self.room() as usize).map_or(&[][..], Vec::as_slice);
            for &(a, b) in t.gaps() {
                for s in a..=b.min(a.saturating_add(SEQ_KIND_LIMIT)) {
                    match kinds.get(s as usize).copied().unwrap_or(SEQ_UNKNOWN) {
                        SEQ_DROPPABLE => superseded += 1,
                        SEQ_KEPT => real += 1,
                        _ => unknown += 1,
                    }
                }
                unknown += (b - a + 1).saturating_sub(SEQ_KIND_LIMIT + 1);
            }
        }
        let mut st = self.stats();
        st.counters.missed_superseded += superseded;
        st.counters.missed_real += real;
        st.counters.missed_unknown += unknown;
    }

    /// Moves a seq verdict into the worker's counters (missed is kept as the tracker's current gaps).
    pub(super) fn sync_seq(&mut self, v: Verdict) {
        let missed = self.seq.as_ref().map_or(0, SeqTracker::missed);
        let prev = self.reported_missed;
        self.reported_missed = missed;
        let mut st = self.stats();
        st.counters.missed_events = (st.counters.missed_events + missed).saturating_sub(prev);
        match v {
            Verdict::Duplicate => st.counters.duplicate_events += 1,
            Verdict::OutOfOrder => st.counters.out_of_order_events += 1,
            Verdict::InOrder | Verdict::Gap(_) => {}
        }
    }

    /// Starts the seq check at `base`, replaying seqs that arrived before the base was known.
    pub(super) fn seq_base(&mut self, base: u64) {
        let mut t = SeqTracker::with_base(base);
        let early = std::mem::take(&mut self.pre_seq);
        let mut verdicts = Vec::new();
        for s in early.into_iter().filter(|s| *s > base) {
            verdicts.push(t.observe(s));
        }
        self.seq = Some(t);
        for v in verdicts.into_iter().filter(|v| *v != Verdict::InOrder) {
            self.sync_seq(v);
        }
    }

    pub(super) fn on_session_ack(&mut self, body: &[u8]) {
        let took = self.now.duration_since(self.connect_started).as_micros() as u64;
        {
            let mut st = self.stats();
            st.counters.session_acks += 1;
            st.record(Metric::SessionAck, took);
        }
        // Every session:ack says it again: a reconnect may land on an edge with another setting.
        let ms = self.ctx.plan.ping_interval_ms.or_else(|| {
            let d = scan::data(self.fmt, body).ok().flatten()?;
            scan::field(self.fmt, d, "pingInterval")
                .and_then(|v| scan::as_u64(self.fmt, v))
                .filter(|m| *m > 0)
                .map(|m| m.max(u64::from(ringside_protocol::limits::PING_INTERVAL_MIN_MS)))
        });
        self.ping_every = ms.filter(|m| *m > 0).map(Duration::from_millis);
        // A reconnect may land on an edge on another host (another clock): the next sample wins.
        self.best_rtt_us = u32::MAX;
        if let Some(every) = self.ping_every {
            // the first pings come faster, so the clock offset is known before the first question
            self.sync_pings = SYNC_PINGS;
            self.next_ping = Some(self.now + every.min(SYNC_PING_EVERY));
        }
        self.policy = self.reconnect_policy(body);
        if self.lost_at.is_some() {
            self.send_reconnect();
            return;
        }
        match self.role {
            Role::Host { .. } => self.send_create(),
            Role::Player { .. } => self.send_join(),
            Role::Plain { .. } => {}
        }
    }

    /// `session:ack`'s `reconnect` policy (`{delayMs, jitterMs}`), if it has one.
    fn reconnect_policy(&self, body: &[u8]) -> Option<ReconnectPolicy> {
        let fmt = self.fmt;
        let d = scan::data(fmt, body).ok().flatten()?;
        let r = scan::field(fmt, d, "reconnect")?;
        let num = |k: &str| scan::field(fmt, r, k).and_then(|v| scan::as_u64(fmt, v));
        Some(ReconnectPolicy {
            delay_ms: num("delayMs")?,
            jitter_ms: num("jitterMs")?,
        })
    }

    pub(super) fn reconnected(&mut self, snapshot: bool) {
        self.req = None;
        // Answers whose reply was lost with the old socket: the session is back, send them again.
        self.resend_prev_answer();
        self.resend_answer();
        if let Some(lost) = self.lost_at.take() {
            let mut st = self.stats();
            st.counters.reconnects_ok += 1;
            if snapshot {
                st.counters.reconnect_snapshots += 1;
            }
            st.record(
                Metric::Reconnect,
                self.now.duration_since(lost).as_micros() as u64,
            );
        }
    }

    pub(super) fn on_room_created(&mut self, body: &mut [u8]) {
        let Role::Host { room } = self.role else {
            return;
        };
        let Ok(Envelope {
            event: ServerEvent::RoomCreated(c),
            ..
        }) = decode::<ServerEvent>(self.codec, body)
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        if let Some(Req {
            kind: ReqKind::Create,
            at,
            ..
        }) = self.req.take()
        {
            let mut st = self.stats();
            st.counters.rooms_created += 1;
            st.record(
                Metric::RoomCreate,
                self.now.duration_since(at).as_micros() as u64,
            );
        }
        self.ctx
            .created
            .borrow_mut()
            .push((room, c.game_code.clone()));
        self.ctx.hosts_settled.set(self.ctx.hosts_settled.get() + 1);
        self.code = Some(c.game_code.into());
        self.token = c.host_token;
        self.seq_base(0);
    }

    pub(super) fn on_join_ack(&mut self, body: &mut [u8]) {
        let Ok(Envelope {
            event: ServerEvent::RoomJoinAck(a),
            ..
        }) = decode::<ServerEvent>(self.codec, body)
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        if let Some(Req {
            kind: ReqKind::Join,
            at,
            ..
        }) = self.req.take()
        {
            let room = self.room();
            let slow = self.is_slow();
            let mut st = self.stats();
            st.counters.players_joined += 1;
            if !slow {
                *st.joined_per_room.entry(room).or_default() += 1;
            }
            st.record(
                Metric::JoinAck,
                self.now.duration_since(at).as_micros() as u64,
            );
        }
        self.player_id = a.player_id;
        self.token = a.session_token;
        self.secret = a.answer_secret;
        self.seq_base(a.seq);
        self.mark_ready();
        if self.is_slow() {
            // From now on this player never reads: the edge's send queue for it fills up. It is not
            // expected to finish, so the end of the game does not wait for it.
            self.advance(Stage::Done(Outcome::SlowConsumer));
        }
    }

    pub(super) fn on_show(&mut self, body: &[u8]) {
        let fmt = self.fmt;
        let Some(d) = scan::data(fmt, body).ok().flatten() else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let num = |k: &str| scan::field(fmt, d, k).and_then(|v| scan::as_u64(fmt, v));
        let (Some(q), Some(ends_at), Some(limit)) =
            (num("qIndex"), num("endsAt"), num("timeLimitMs"))
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let options = scan::field(fmt, d, "answers")
            .and_then(|v| scan::array_len(fmt, v))
            .unwrap_or(0);
        let show_at = num("showAt");
        let q = q as u32;
        if let Some(s) = scan::field(fmt, d, "sealed") {
            let b64 = |k: &str| {
                scan::field(fmt, s, k)
                    .and_then(|v| scan::as_str(fmt, v))
                    .and_then(|v| B64.decode(v).ok())
            };
            let (Some(iv), Some(ct), Some(show_at)) = (b64("iv"), b64("ct"), show_at) else {
                self.stats().counters.decode_errors += 1;
                return;
            };
            if self.counts(q) {
                self.stats().counters.sealed_shows += 1;
            }
            self.sealed = Some(Box::new(SealedShow {
                q,
                ends_at,
                limit_ms: limit,
                show_at,
                iv,
                ct,
            }));
            return;
        }
        self.show(q, ends_at, limit, options, show_at);
    }

    /// `game:question:key`: records its lead over `showAt` and opens the sealed show it belongs to.
    pub(super) fn on_key(&mut self, body: &[u8]) {
        let fmt = self.fmt;
        let Some(d) = scan::data(fmt, body).ok().flatten() else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let q = scan::field(fmt, d, "qIndex").and_then(|v| scan::as_u64(fmt, v));
        let key = scan::field(fmt, d, "key")
            .and_then(|v| scan::as_str(fmt, v))
            .and_then(|v| B64.decode(v).ok());
        let (Some(q), Some(key)) = (q, key) else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let Some(s) = self.sealed.take_if(|s| u64::from(s.q) == q) else {
            return; // a key for a question this socket does not hold (it joined after the show)
        };
        let (now_us, show_us) = (self.now_us, s.show_at * 1000);
        if self.counts(s.q) {
            let mut st = self.stats();
            st.counters.keys_received += 1;
            if now_us <= show_us {
                st.record(Metric::KeyLead, show_us - now_us);
            } else {
                st.counters.keys_late += 1;
                st.record(Metric::KeyLate, now_us - show_us);
            }
        }
        let code = self.code.clone().unwrap_or_else(|| "".into());
        match open_sealed(&key, &code, s.q, &s.iv, s.ct) {
            Some(options) => self.show(s.q, s.ends_at, s.limit_ms, options, Some(s.show_at)),
            None => self.stats().counters.seal_errors += 1,
        }
    }

    /// A `pong` to a ping sent `rtt_us` ago: the clock offset from the round trip with the least delay.
    fn clock_sample(&mut self, body: &[u8], rtt_us: u64) {
        let fmt = self.fmt;
        let server_ms = scan::data(fmt, body)
            .ok()
            .flatten()
            .and_then(|d| scan::field(fmt, d, "serverTime"))
            .and_then(|v| scan::as_u64(fmt, v));
        if let Some(ms) = server_ms {
            // Error bounds in µs: half the round trip, plus the kept sample's drift since it came.
            let now_s = (self.now_us / 1_000_000) as u32;
            let age_s = u64::from(now_s.saturating_sub(self.best_at_s));
            let kept = (u64::from(self.best_rtt_us) / 2).saturating_add(age_s * CLOCK_DRIFT_PPM);
            if rtt_us / 2 <= kept {
                self.best_rtt_us = u32::try_from(rtt_us).unwrap_or(u32::MAX);
                self.best_at_s = now_s;
                let mid = self.now_us.saturating_sub(rtt_us / 2);
                self.offset_us = (ms * 1000) as i64 - mid as i64;
            }
        }
    }

    /// A question reached this socket (live, replayed, in a snapshot, or opened by its key).
    /// `show_at`: when every client shows it (server clock, epoch ms), if the server said.
    pub(super) fn show(
        &mut self,
        q: u32,
        ends_at: u64,
        limit_ms: u64,
        options: usize,
        show_at: Option<u64>,
    ) {
        if !self.shows.insert(q) {
            return;
        }
        self.cur_q = Some((q, ends_at));
        let start_ms = ends_at.saturating_sub(limit_ms);
        let counts = self.counts(q);
        let room = self.room();
        {
            let now_us = self.now_us;
            // where this player would draw it: showAt on its own clock, or now if the content came later
            let display_us = show_at.map_or(now_us, |s| {
                let local = (s * 1000) as i64 - self.offset_us;
                now_us.max(local.max(0) as u64)
            });
            let mut st = self.stats();
            st.max_q_shown = st.max_q_shown.max(i64::from(q));
            if counts {
                st.counters.question_receipts += 1;
                let delivery = now_us.saturating_sub(start_ms * 1000);
                st.record(Metric::QuestionDelivery, delivery);
                if !self.lost_once && self.ctx.plan.storm_after_q.is_some_and(|k| q > k) {
                    st.record(Metric::QuestionDeliveryUnaffected, delivery);
                }
                let qs = st.question(room, q);
                qs.start_us = start_ms * 1000;
                qs.ends_us = ends_at * 1000;
                qs.show_first_us = qs.show_first_us.min(now_us);
                qs.show_last_us = qs.show_last_us.max(now_us);
                qs.show_count += 1;
                qs.display_first_us = qs.display_first_us.min(display_us);
                qs.display_last_us = qs.display_last_us.max(display_us);
                qs.display_count += 1;
            }
        }
        if !counts || self.answered.contains(q) || options == 0 {
            return;
        }
        let a = self.ctx.plan.answer;
        if self.ctx.unit() < a.skip {
            return;
        }
        if self.answer_at.is_some() {
            self.stats().counters.answers_skipped += 1;
        }
        // Log-normal answer time around the median, measured from the question's server start, kept
        // inside the window (at least 200 ms, at most 95 % of the limit).
        let median = a.median_frac * limit_ms as f64;
        let delay_ms = (median * (a.sigma * self.ctx.normal()).exp())
            .clamp(200f64.min(limit_ms as f64 / 2.0), limit_ms as f64 * 0.95);
        let due_us = start_ms * 1000 + (delay_ms * 1000.0) as u64;
        let when = self.now + Duration::from_micros(due_us.saturating_sub(self.now_us));
        let idx = if options <= 1 || self.ctx.unit() < a.pick_first {
            0
        } else {
            1 + (self.ctx.rand() % (options as u64 - 1)) as u32
        };
        self.answer_at = Some((when, q, idx));
    }

    pub(super) fn on_reveal(&mut self, body: &[u8]) {
        let fmt = self.fmt;
        let Some(q) = scan::data(fmt, body)
            .ok()
            .flatten()
            .and_then(|d| scan::field(fmt, d, "qIndex"))
            .and_then(|v| scan::as_u64(fmt, v))
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        let q = q as u32;
        if !self.reveals.insert(q) {
            return;
        }
        if let Some((_, aq, _)) = self.answer_at {
            if aq == q {
                self.answer_at = None;
                self.stats().counters.answers_skipped += 1;
            }
        }
        if self.counts(q) {
            let (room, now_us) = (self.room(), self.now_us);
            let deadline_us = self
                .cur_q
                .filter(|(cq, _)| *cq == q)
                .map(|(_, ends)| (ends + GRACE_MS) * 1000);
            let mut st = self.stats();
            st.counters.reveal_receipts += 1;
            match deadline_us {
                Some(d) if now_us >= d => st.record(Metric::RevealDelivery, now_us - d),
                Some(_) => st.counters.reveals_before_deadline += 1,
                None => {}
            }
            let qs = st.question(room, q);
            qs.reveal_first_us = qs.reveal_first_us.min(now_us);
            qs.reveal_last_us = qs.reveal_last_us.max(now_us);
            qs.reveal_count += 1;
        }
        let limit = self.ctx.plan.questions;
        if limit > 0 && q + 1 >= limit && self.is_player() {
            self.finish();
        }
    }

    pub(super) fn on_result(&mut self, body: &[u8]) {
        let fmt = self.fmt;
        let d = scan::data(fmt, body).ok().flatten();
        let field = |k: &str| d.and_then(|d| scan::field(fmt, d, k));
        let q = field("qIndex")
            .and_then(|v| scan::as_u64(fmt, v))
            .unwrap_or(u64::MAX) as u32;
        let correct = field("correct")
            .and_then(|v| scan::as_bool(fmt, v))
            .unwrap_or(false);
        if self.counts(q) {
            let room = self.room();
            let mut st = self.stats();
            st.counters.result_receipts += 1;
            if correct {
                st.counters.results_correct += 1;
            }
            st.question(room, q).result_count += 1;
        }
    }

    pub(super) fn on_reconnect_state(&mut self, body: &mut [u8]) {
        let Ok(Envelope {
            event: ServerEvent::ReconnectState(s),
            ..
        }) = decode::<ServerEvent>(self.codec, body)
        else {
            self.stats().counters.decode_errors += 1;
            return;
        };
        match self.seq.as_mut() {
            Some(t) => {
                let covered = t.jump_to_snapshot(s.seq);
                let missed = t.missed();
                let prev = self.reported_missed;
                self.reported_missed = missed;
                let mut st = self.stats();
                st.counters.snapshot_covered_events += covered;
                st.counters.missed_events =
                    (st.counters.missed_events + missed).saturating_sub(prev);
            }
            None => self.seq_base(s.seq),
        }
        if s.answered {
            if let Some(q) = &s.current_q {
                self.answered.insert(q.q_index);
            }
        }
        if let Some(q) = s.current_q {
            match &q.sealed {
                // sealed until the key this socket's worker sends before showAt
                Some(sealed) => {
                    let (iv, ct) = (B64.decode(&sealed.iv), B64.decode(&sealed.ct));
                    if let (Ok(iv), Ok(ct), Some(show_at)) = (iv, ct, q.show_at) {
                        self.sealed = Some(Box::new(SealedShow {
                            q: q.q_index,
                            ends_at: q.ends_at,
                            limit_ms: u64::from(q.time_limit_ms),
                            show_at,
                            iv,
                            ct,
                        }));
                    }
                }
                None => self.show(
                    q.q_index,
                    q.ends_at,
                    u64::from(q.time_limit_ms),
                    q.answers.len(),
                    q.show_at,
                ),
            }
        }
        if s.state == events::RoomState::Ended {
            self.finish();
        }
    }

    pub(super) fn maybe_start_game(&mut self) {
        if self.stage != Stage::Joining || self.req.is_some() || self.stream.is_none() {
            return;
        }
        let (Role::Host { .. }, Some(code)) = (self.role, self.code.clone()) else {
            return;
        };
        if !self.ctx.plan.scenario.plays() {
            return;
        }
        self.advance(Stage::Playing);
        let rid = self.rid();
        self.send(
            ClientEvent::GameStart(events::GameRef {
                game_code: code.to_string(),
            }),
            Some(rid),
        );
        self.req = Some(Req {
            kind: ReqKind::Start,
            rid,
            at: Instant::now(),
        });
    }

    pub(super) fn answer(&mut self, q: u32, idx: u32) {
        if self.cur_q.map(|c| c.0) != Some(q)
            || self.reveals.contains(q)
            || !self.answered.insert(q)
        {
            self.stats().counters.answers_skipped += 1;
            return;
        }
        let Some(code) = self.code.clone() else {
            return;
        };
        let hash = auth::answer_hash(&self.secret, &code, &self.player_id, q, idx);
        let ev = ClientEvent::AnswerSubmit(events::AnswerSubmit {
            game_code: code.to_string(),
            q_index: q,
            answer_idx: idx,
            client_time: (self.now_us / 1000) as f64,
            answer_hash: hash,
        });
        let rid = self.rid();
        let client_time = (self.now_us / 1000) as f64;
        self.send(ev, Some(rid));
        let before = self.answer_req.replace(AnswerReq {
            rid,
            at: self.now,
            q,
            idx,
            client_time,
            resent: 0,
        });
        self.answer_retry_at = None;
        let room = self.room();
        // The previous answer's reply may still come (a busy edge acks late); one older than that
        // has had a whole question's time: this player stops waiting for it.
        let older = before.and_then(|b| self.answer_prev.replace(b));
        let mut st = self.stats();
        if let Some(old) = older {
            st.counters.answers_without_outcome += 1;
            st.error_code(&format!(
                "no_outcome:replaced:q{}:resent{}",
                old.q, old.resent
            ));
        }
        st.counters.answers_sent += 1;
        st.question(room, q).answers += 1;
    }
}
