//! Admission control (docs/admission.md) and the reconnect policy of `session:ack`: past a threshold the
//! edge refuses new work — an upgrade gets 503 + `Retry-After`, a `room:join` gets `overloaded` +
//! `retryAfterMs` — while a member already in a game gets its answer acked and its room events.
//!
//! The edge is driven past its threshold deterministically: `--admission-max-redis-in-flight 1`, and
//! Redis writes paused (`CLIENT PAUSE … WRITE`) while a member's answer is in flight, so the gauge reads
//! 1 until the test unpauses. No timing is asserted.

use super::*;
use ringside_edge::admission::{AdmissionLimits, Reason, Work};

/// Every threshold off but Redis calls in flight: one call in flight is "overloaded".
fn one_call_in_flight(cfg: &mut Config) {
    cfg.admission = AdmissionLimits {
        max_redis_in_flight: 1,
        ..AdmissionLimits::off()
    };
}

async fn redis_cmd(conn: &mut Redis, args: &[&str]) {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    let _: redis::Value = c.query_async(conn).await.expect("redis command");
}

/// Waits (bounded) until `f` holds, polling; panics with `what` if it never does.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// An upgrade that a background Redis call of the edge (a member's catch-up, a reveal's results) may
/// briefly turn away at a threshold of 1: retried until admitted.
async fn connect_admitted(addr: std::net::SocketAddr, codec: Codec) -> Client {
    for _ in 0..500 {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", codec.protocol().parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        match tokio_tungstenite::client_async(req, Box::new(tcp) as Box<dyn Io>).await {
            Ok((ws, _)) => {
                let mut c = Client {
                    ws,
                    codec,
                    rid: 0,
                    seqs: Vec::new(),
                    backlog: Default::default(),
                };
                let first = c.next().await;
                assert!(
                    matches!(first.event, ServerEvent::SessionAck(_)),
                    "{first:?}"
                );
                return c;
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("upgrade → {e}"),
        }
    }
    panic!("never admitted");
}

/// A request retried while it is refused with `overloaded` (see [`connect_admitted`]).
async fn request_admitted(c: &mut Client, ev: ClientEvent) -> ServerEvent {
    for _ in 0..500 {
        match c.request(ev.clone()).await {
            ServerEvent::Error(e) if e.code == ErrorCode::Overloaded => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
    panic!("never admitted: {ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_threshold_new_upgrades_and_joins_are_refused_and_members_keep_playing() {
    let s = stack_with(Backend::Standalone, false, one_call_in_flight).await;
    let addr = s.edge.local_addr();
    let mut host = connect_admitted(addr, Codec::Json).await;
    let code = match request_admitted(
        &mut host,
        ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "edge-test".into(),
            host_name: None,
            settings: settings(),
        }),
    )
    .await
    {
        ServerEvent::RoomCreated(c) => c.game_code,
        other => panic!("room:create → {other:?}"),
    };
    let mut p = connect_admitted(addr, Codec::Msgpack).await;
    let ack = match request_admitted(
        &mut p,
        ClientEvent::RoomJoin(RoomJoin {
            game_code: code.clone(),
            player_name: "steady".into(),
            avatar_id: 0,
        }),
    )
    .await
    {
        ServerEvent::RoomJoinAck(a) => a,
        other => panic!("room:join → {other:?}"),
    };
    // Upgraded before the overload, no session yet.
    let mut newcomer = connect_admitted(addr, Codec::Json).await;
    start_game(&mut host, &code).await;
    let show = p
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;

    // Redis stops taking writes: the member's answer stays in flight, and the edge is past its threshold.
    let mut admin = s.conn.clone();
    redis_cmd(&mut admin, &["CLIENT", "PAUSE", "60000", "WRITE"]).await;
    let hash = answer_hash(&ack.answer_secret, &code, &ack.player_id, show.q_index, 1);
    let answer_rid = p
        .send(ClientEvent::AnswerSubmit(AnswerSubmit {
            game_code: code.clone(),
            q_index: show.q_index,
            answer_idx: 1,
            client_time: 0.0,
            answer_hash: hash,
        }))
        .await;
    let gauge = s
        .edge
        .admission()
        .upstream()
        .expect("the game layer's gauge");
    eventually("the answer is in flight", || gauge.in_flight() >= 1).await;
    // Setting up may have met a background call; only what follows counts.
    let a = s.edge.admission();
    let (upgrades, joins) = (
        a.refusals(Reason::RedisInFlight, Work::Upgrade),
        a.refusals(Reason::RedisInFlight, Work::Join),
    );

    // A new upgrade: 503 with Retry-After.
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "ringside.v1.json".parse().unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let secs: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .expect("Retry-After in seconds");
            assert!(secs >= 1, "Retry-After {secs}");
        }
        Ok(_) => panic!("an upgrade past the threshold was accepted"),
        Err(e) => panic!("upgrade → {e}"),
    }

    // A client replacing a lost socket says so and is admitted up to twice the threshold (1 call in flight
    // of a limit of 1 refuses new upgrades, not resuming ones).
    let mut req = format!("ws://{addr}/ws?resume=1")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "ringside.v1.json".parse().unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            drop(ws);
        }
        Err(e) => panic!("a resuming upgrade at 1x the threshold → {e}"),
    }

    // A new join on a socket without a session: overloaded with retryAfterMs.
    match newcomer
        .request(ClientEvent::RoomJoin(RoomJoin {
            game_code: code.clone(),
            player_name: "late".into(),
            avatar_id: 0,
        }))
        .await
    {
        ServerEvent::Error(e) => {
            assert_eq!(e.code, ErrorCode::Overloaded);
            assert_eq!(e.event.as_deref(), Some("room:join"));
            let wait = e.retry_after_ms.expect("retryAfterMs");
            assert!(wait >= AdmissionLimits::default().retry_after_ms, "{wait}");
        }
        other => panic!("room:join past the threshold → {other:?}"),
    }
    assert_eq!(
        a.refusals(Reason::RedisInFlight, Work::Upgrade),
        upgrades + 1
    );
    assert_eq!(a.refusals(Reason::RedisInFlight, Work::Join), joins + 1);

    // Redis takes writes again: the member's answer is acked, and its room events keep coming (everyone
    // answered: the reveal comes early).
    redis_cmd(&mut admin, &["CLIENT", "UNPAUSE"]).await;
    match p.reply(answer_rid).await.event {
        ServerEvent::AnswerAck(a) => assert!(a.received && a.q_index == show.q_index),
        other => panic!("the member's answer → {other:?}"),
    }
    let reveal = p
        .until(|e| match e {
            ServerEvent::QuestionReveal(r) => Some(r.q_index),
            _ => None,
        })
        .await;
    assert_eq!(reveal, show.q_index);

    // Back under the threshold, a newcomer gets in (retried past background calls like any client).
    let mut again = connect_admitted(addr, Codec::Json).await;
    match request_admitted(
        &mut again,
        ClientEvent::RoomJoin(RoomJoin {
            game_code: code.clone(),
            player_name: "late".into(),
            avatar_id: 0,
        }),
    )
    .await
    {
        // The game started: late joins are the room's setting; either way it is not `overloaded`.
        ServerEvent::RoomJoinAck(_) => {}
        ServerEvent::Error(e) => assert_ne!(e.code, ErrorCode::Overloaded, "{e:?}"),
        other => panic!("room:join after the overload → {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ack_carries_the_reconnect_policy() {
    let s = stack_with(Backend::Standalone, false, |cfg| {
        cfg.admission = AdmissionLimits {
            reconnect_delay_ms: 300,
            reconnect_jitter_ms: 1500,
            reconnect_jitter_max_ms: 6000,
            ..AdmissionLimits::off()
        };
    })
    .await;
    for codec in [Codec::Json, Codec::Msgpack] {
        let mut req = format!("ws://{}/ws", s.edge.local_addr())
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", codec.protocol().parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(s.edge.local_addr())
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, Box::new(tcp) as Box<dyn Io>)
            .await
            .expect("upgrade");
        let mut c = Client {
            ws,
            codec,
            rid: 0,
            seqs: Vec::new(),
            backlog: Default::default(),
        };
        match c.next().await.event {
            // No threshold set, so no load: the idle window.
            ServerEvent::SessionAck(a) => assert_eq!(
                a.reconnect,
                Some(ReconnectPolicy {
                    delay_ms: 300,
                    jitter_ms: 1500
                }),
                "{codec:?}"
            ),
            other => panic!("first frame → {other:?}"),
        }
    }
}

/// A client that lost its socket before its answer's ack resends the same answer after
/// `reconnect:attempt`, and gets the original ack or `already_answered` — never a second count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_resent_after_a_reconnect_gets_its_ack_or_already_answered() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut p = Client::connect(addr, Codec::Json).await;
    let ack = join(&mut p, &code, "flaky").await;
    let mut other = Client::connect(addr, Codec::Json).await;
    let other_ack = join(&mut other, &code, "other").await;
    start_game(&mut host, &code).await;
    let show = p
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    let submit = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: show.q_index,
        answer_idx: 0,
        client_time: 0.0,
        answer_hash: answer_hash(&ack.answer_secret, &code, &ack.player_id, show.q_index, 0),
    });
    // Sent, and the socket dropped before the reply could be read.
    p.send(submit.clone()).await;
    drop(p);

    let mut back = Client::connect(addr, Codec::Json).await;
    match back
        .request(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack.player_id.clone(),
            session_token: ack.session_token.clone(),
            last_seq: None,
        }))
        .await
    {
        ServerEvent::ReconnectState(_) | ServerEvent::Ok(_) => {}
        other => panic!("reconnect:attempt → {other:?}"),
    }
    match back.request(submit).await {
        ServerEvent::AnswerAck(a) => assert_eq!(a.q_index, show.q_index),
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::AlreadyAnswered, "{e:?}"),
        other => panic!("the resent answer → {other:?}"),
    }
    // Counted once: the other player answers, everyone has, and the early reveal shows two answers,
    // one on option 0.
    let hash = answer_hash(
        &other_ack.answer_secret,
        &code,
        &other_ack.player_id,
        show.q_index,
        1,
    );
    match other
        .request(ClientEvent::AnswerSubmit(AnswerSubmit {
            game_code: code.clone(),
            q_index: show.q_index,
            answer_idx: 1,
            client_time: 0.0,
            answer_hash: hash,
        }))
        .await
    {
        ServerEvent::AnswerAck(_) => {}
        other => panic!("the other answer → {other:?}"),
    }
    let reveal = back
        .until(|e| match e {
            ServerEvent::QuestionReveal(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reveal.answered_count, 2, "{reveal:?}");
    assert_eq!(reveal.distribution[0], 1, "{reveal:?}");
}
