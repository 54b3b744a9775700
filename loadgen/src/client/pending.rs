//! Requests in flight and timers: the request ids, `room:join` / `reconnect:attempt` with their retries,
//! `error` replies matched to their request, pings, and the one wake-up time a socket waits for (request
//! timeout, answer time, next ping, rejoin).

use super::*;

impl Client {
    pub(super) fn rid(&mut self) -> u32 {
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        self.next_rid
    }

    pub(super) fn send_join(&mut self) {
        let (Role::Player { g, .. }, Some(code)) = (self.role, self.code.clone()) else {
            return;
        };
        let ev = ClientEvent::RoomJoin(events::RoomJoin {
            game_code: code.to_string(),
            player_name: format!("lg{g}"),
            avatar_id: (g % 16) as u16,
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.join_attempts += 1;
        self.stats().counters.joins_sent += 1;
        // The join latency counts from the first attempt: what the player waited.
        let at = self.join_first_at.get_or_insert(self.now);
        self.req = Some(Req {
            kind: ReqKind::Join,
            rid,
            at: *at,
        });
    }

    pub(super) fn send_create(&mut self) {
        let p = &self.ctx.plan;
        let ev = ClientEvent::RoomCreate(events::RoomCreate {
            quiz_id: p.quiz.clone(),
            host_name: Some(format!("loadgen host {}", self.room())),
            settings: events::RoomSettings {
                time_per_q_ms: p.time_per_q_ms,
                max_players: Some(
                    u32::try_from(p.players)
                        .unwrap_or(u32::MAX)
                        .clamp(1, 1_000_000),
                ),
                countdown_ms: p.countdown_ms,
                reveal_pause_ms: p.reveal_pause_ms,
                ..Default::default()
            },
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.create_attempts += 1;
        self.req = Some(Req {
            kind: ReqKind::Create,
            rid,
            at: self.now,
        });
    }

    /// Sends the pending answer again, unchanged but for its request id: after a reconnect (its reply
    /// was lost with the old socket) or a retryable refusal. The first answer to a question stands, so
    /// the edge answers with the original ack or `already_answered` (docs/protocol.md §4).
    pub(super) fn resend_answer(&mut self) {
        let (Some(a), Some(code)) = (self.answer_req, self.code.clone()) else {
            return;
        };
        let hash = auth::answer_hash(&self.secret, &code, &self.player_id, a.q, a.idx);
        let ev = ClientEvent::AnswerSubmit(events::AnswerSubmit {
            game_code: code.to_string(),
            q_index: a.q,
            answer_idx: a.idx,
            client_time: a.client_time,
            answer_hash: hash,
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.answer_retry_at = None;
        self.answer_req = Some(AnswerReq {
            rid,
            resent: a.resent + 1,
            ..a
        });
        self.stats().counters.answers_resent += 1;
    }

    /// Sends [`Client::answer_prev`](super::Client) again after a reconnect, like
    /// [`Client::resend_answer`] (its reply was lost with the old socket too).
    pub(super) fn resend_prev_answer(&mut self) {
        let (Some(a), Some(code)) = (self.answer_prev, self.code.clone()) else {
            return;
        };
        let hash = auth::answer_hash(&self.secret, &code, &self.player_id, a.q, a.idx);
        let ev = ClientEvent::AnswerSubmit(events::AnswerSubmit {
            game_code: code.to_string(),
            q_index: a.q,
            answer_idx: a.idx,
            client_time: a.client_time,
            answer_hash: hash,
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.answer_prev = Some(AnswerReq {
            rid,
            resent: a.resent + 1,
            ..a
        });
        self.stats().counters.answers_resent += 1;
    }

    pub(super) fn send_reconnect(&mut self) {
        let Some(code) = self.code.clone() else {
            return;
        };
        let (player_id, token) = match self.role {
            Role::Host { .. } => ("host".to_string(), self.token.clone()),
            _ => (self.player_id.clone(), self.token.clone()),
        };
        let ev = ClientEvent::ReconnectAttempt(events::ReconnectAttempt {
            game_code: code.to_string(),
            player_id,
            session_token: token,
            last_seq: self.seq.as_ref().map(SeqTracker::last),
        });
        let rid = self.rid();
        self.send(ev, Some(rid));
        self.req = Some(Req {
            kind: ReqKind::Reconnect,
            rid,
            at: self.now,
        });
    }

    pub(super) fn on_error(&mut self, body: &mut [u8], rid: Option<u32>) -> Result<(), End> {
        let (code, retry_after) = match decode::<ServerEvent>(self.codec, body) {
            Ok(Envelope {
                event: ServerEvent::Error(e),
                ..
            }) => (e.code, e.retry_after_ms),
            _ => {
                self.stats().counters.decode_errors += 1;
                return Ok(());
            }
        };
        self.stats().error_code(code.as_str());
        // The wait a retryable refusal asked for (500 ms if it named none), plus a little jitter.
        let retry_at = |c: &Client, ms: Option<u64>| {
            c.now + pace::after_refusal(ms.unwrap_or(500), 250, c.ctx.unit())
        };
        if let Some(a) = self.answer_prev.filter(|a| Some(a.rid) == rid) {
            // The previous question's answer: its reply is its outcome, whatever it says.
            self.answer_prev = None;
            if a.resent > 0 && code.as_str() == "already_answered" {
                self.stats().counters.answers_already_answered += 1;
            } else {
                self.stats().counters.answer_errors += 1;
            }
            return Ok(());
        }
        if let Some(a) = self.answer_req {
            if Some(a.rid) == rid {
                if a.resent > 0 && code.as_str() == "already_answered" {
                    // The first answer had been recorded: an outcome.
                    self.answer_req = None;
                    self.stats().counters.answers_already_answered += 1;
                } else if code.retryable() && a.resent + 1 < JOIN_ATTEMPTS {
                    self.answer_retry_at = Some(retry_at(self, retry_after));
                } else {
                    self.answer_req = None;
                    self.stats().counters.answer_errors += 1;
                }
                return Ok(());
            }
        }
        let Some(req) = self.req else { return Ok(()) };
        if Some(req.rid) != rid {
            return Ok(());
        }
        self.req = None;
        if code.as_str() == "overloaded" && matches!(req.kind, ReqKind::Join | ReqKind::Create) {
            self.stats().counters.overloaded_refusals += 1;
        }
        match req.kind {
            // A retryable refusal (overloaded, unavailable, rate_limited): send the same request again
            // after the wait the edge asked for, as a real client would, a few times.
            ReqKind::Create if code.retryable() && self.create_attempts < JOIN_ATTEMPTS => {
                self.resend_at = Some((retry_at(self, retry_after), ReqKind::Create));
                self.stats().counters.create_retries += 1;
                Ok(())
            }
            ReqKind::Create => {
                self.stats().counters.room_create_failed += 1;
                Err(End::Final)
            }
            ReqKind::Join if code.retryable() && self.join_attempts < JOIN_ATTEMPTS => {
                self.resend_at = Some((retry_at(self, retry_after), ReqKind::Join));
                self.stats().counters.join_retries += 1;
                Ok(())
            }
            ReqKind::Join => {
                self.stats().counters.join_failed += 1;
                Err(End::Final)
            }
            // On the same socket, until the reconnect's deadline.
            ReqKind::Reconnect
                if code.retryable()
                    && self.lost_at.is_some_and(|l| {
                        self.now < l + Duration::from_millis(self.ctx.plan.reconnect_give_up_ms)
                    }) =>
            {
                self.resend_at = Some((retry_at(self, retry_after), ReqKind::Reconnect));
                self.stats().counters.reconnect_retries += 1;
                Ok(())
            }
            ReqKind::Reconnect => {
                self.stats().counters.reconnects_failed += 1;
                self.lost_at = None;
                Err(End::Final)
            }
            ReqKind::Start => Ok(()),
        }
    }

    pub(super) fn next_wake(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        add(self.answer_at.map(|a| a.0));
        add(self.answer_retry_at);
        add(self.resend_at.map(|r| r.0));
        add(self.next_ping);
        add(self.req.map(|r| r.at + REQUEST_TIMEOUT));
        t
    }

    pub(super) fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        self.now = now;
        self.now_us = epoch_us();
        if let Some((when, q, idx)) = self.answer_at {
            if when <= now && self.lost_at.is_some() {
                // Still reconnecting: the new socket has no session until the edge answers the
                // `reconnect:attempt` (an answer now would be `unauthorized`). Try again shortly.
                self.answer_at = Some((now + Duration::from_millis(20), q, idx));
            } else if when <= now {
                self.answer_at = None;
                self.answer(q, idx);
            }
        }
        if let Some((at, kind)) = self.resend_at {
            if at <= now {
                self.resend_at = None;
                match kind {
                    ReqKind::Join => self.send_join(),
                    ReqKind::Create => self.send_create(),
                    ReqKind::Reconnect => self.send_reconnect(),
                    ReqKind::Start => {}
                }
            }
        }
        if let Some(at) = self.answer_retry_at {
            if at <= now && self.lost_at.is_none() {
                self.resend_answer();
            }
        }
        if let Some(at) = self.next_ping {
            if at <= now {
                self.ping();
                let fast = self.sync_pings > 0;
                self.sync_pings = self.sync_pings.saturating_sub(1);
                self.next_ping = self
                    .ping_every
                    .map(|e| now + if fast { e.min(SYNC_PING_EVERY) } else { e });
            }
        }
        if let Some(req) = self.req {
            if req.at + REQUEST_TIMEOUT <= now {
                self.req = None;
                if req.kind != ReqKind::Reconnect {
                    self.stats().error_code("timeout");
                }
                return match req.kind {
                    ReqKind::Create => {
                        self.stats().counters.room_create_failed += 1;
                        Err(End::Final)
                    }
                    ReqKind::Join => {
                        self.stats().counters.join_failed += 1;
                        Err(End::Final)
                    }
                    // The edge sent nothing after the attempt (nothing was missed and it sends no
                    // acknowledgement): the socket is usable; the reconnect time is not measured.
                    ReqKind::Reconnect => {
                        self.lost_at = None;
                        self.stats().error_code("reconnect_unanswered");
                        self.resend_answer();
                        Ok(())
                    }
                    ReqKind::Start => Ok(()),
                };
            }
        }
        Ok(())
    }

    pub(super) fn ping(&mut self) {
        let rid = self.rid();
        self.send(
            ClientEvent::Ping(events::Ping {
                t: (self.now_us / 1000) as f64,
            }),
            Some(rid),
        );
        self.ping_req = Some((rid, self.now));
        self.stats().counters.pings_sent += 1;
    }
}
