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
        if let Some((r, _)) = self.answer_req {
            if Some(r) == rid {
                self.answer_req = None;
                self.stats().counters.answer_errors += 1;
                return Ok(());
            }
        }
        let Some(req) = self.req else { return Ok(()) };
        if Some(req.rid) != rid {
            return Ok(());
        }
        self.req = None;
        match req.kind {
            ReqKind::Create => {
                self.stats().counters.room_create_failed += 1;
                Err(End::Final)
            }
            // A retryable refusal (unavailable, overloaded, rate_limited): join again after the wait the
            // edge asked for (500 ms if it named none), as a real client would, a few times.
            ReqKind::Join if code.retryable() && self.join_attempts < JOIN_ATTEMPTS => {
                let wait = retry_after.unwrap_or(500) + (self.ctx.unit() * 250.0) as u64;
                self.rejoin_at = Some(self.now + Duration::from_millis(wait));
                self.stats().counters.join_retries += 1;
                Ok(())
            }
            ReqKind::Join => {
                self.stats().counters.join_failed += 1;
                Err(End::Final)
            }
            // A retryable refusal (unavailable, overloaded): drop this socket and try again.
            ReqKind::Reconnect if code.retryable() => Err(End::Lost),
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
        add(self.rejoin_at);
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
        if let Some(at) = self.rejoin_at {
            if at <= now {
                self.rejoin_at = None;
                self.send_join();
            }
        }
        if let Some(at) = self.next_ping {
            if at <= now {
                self.ping();
                self.next_ping = self.ping_every.map(|e| now + e);
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
