//! Fair start (issue 15): a question is published before its `showAt`, sealed for the sockets that opened
//! `/ws?sealed=1` and held back from the others; its key (or the clear show) goes out at `showAt − lead`.
//! Every frame of every socket of one game is recorded with its arrival time (the edge and the test
//! share the machine's clock): no frame carries the key or the question's text before the key time.

use super::*;
use ringside_edge::game::seal::{self, SealFlags};

/// The test's clock, epoch ms (the edge's `serverTime` clock on this machine).
fn now_ms() -> u64 {
    seal::now_ms()
}

/// The key's lead in this test: floor = cap, so the key time is exactly `showAt − LEAD_MS`.
const LEAD_MS: u64 = 300;

async fn sealed_client(addr: std::net::SocketAddr, codec: Codec) -> Client {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    Client::over(Box::new(tcp), format!("ws://{addr}/ws?sealed=1"), codec).await
}

/// Every frame one socket received: (arrival, epoch ms; the event).
type Log = Vec<(u64, Envelope<ServerEvent>)>;

/// Reads (and logs) until `f` matches an event; returns it.
async fn read_until(
    c: &mut Client,
    log: &mut Log,
    mut f: impl FnMut(&Envelope<ServerEvent>) -> bool,
) -> Envelope<ServerEvent> {
    loop {
        let e = c.next().await;
        log.push((now_ms(), e.clone()));
        if f(&e) {
            return e;
        }
    }
}

fn is_show(e: &Envelope<ServerEvent>, q: u32) -> Option<QuestionShow> {
    match &e.event {
        ServerEvent::QuestionShow(s) if s.q_index == q => Some(s.clone()),
        _ => None,
    }
}

fn is_key(e: &Envelope<ServerEvent>) -> Option<QuestionKey> {
    match &e.event {
        ServerEvent::QuestionKey(k) => Some(k.clone()),
        _ => None,
    }
}

fn submit(ack: &RoomJoinAck, code: &str, q: u32, idx: u32) -> ClientEvent {
    ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.into(),
        q_index: q,
        answer_idx: idx,
        client_time: 0.0,
        answer_hash: answer_hash(&ack.answer_secret, code, &ack.player_id, q, idx),
    })
}

/// The question of a show, opened with its key when sealed.
fn content(code: &str, show: &QuestionShow, key: Option<&QuestionKey>) -> String {
    match (&show.sealed, key) {
        (None, _) => show.question.clone(),
        (Some(_), Some(k)) => {
            seal::open(&k.key, code, show)
                .expect("the key opens the sealed show")
                .question
        }
        (Some(_), None) => panic!("a sealed show without its key"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_question_is_readable_only_from_its_key_time_and_answers_count_from_show_at() {
    SealFlags {
        enabled: true,
        floor_ms: LEAD_MS,
        cap_ms: LEAD_MS,
    }
    .install();
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = sealed_client(addr, Codec::Json).await;
    let code = match host
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: "edge-test".into(),
            host_name: None,
            settings: RoomSettings {
                // a 4 s countdown: the first question opens (and is published) 2 s before its showAt
                countdown_ms: Some(4000),
                reveal_pause_ms: Some(2000),
                ..Default::default()
            },
        }))
        .await
    {
        ServerEvent::RoomCreated(c) => c.game_code,
        other => panic!("room:create → {other:?}"),
    };
    // a: sealed JSON, b: sealed MessagePack, c: no support (clear at the key time), d: sealed, reconnects
    let mut a = sealed_client(addr, Codec::Json).await;
    let mut b = sealed_client(addr, Codec::Msgpack).await;
    let mut c = Client::connect(addr, Codec::Json).await;
    let mut d = sealed_client(addr, Codec::Msgpack).await;
    let ack_a = join(&mut a, &code, "Ann").await;
    let ack_b = join(&mut b, &code, "Bob").await;
    let ack_c = join(&mut c, &code, "Cy").await;
    let ack_d = join(&mut d, &code, "Dee").await;
    let (mut la, mut lb, mut lc, mut ld, mut lh) =
        (Log::new(), Log::new(), Log::new(), Log::new(), Log::new());
    let start = host
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.clone(),
        }))
        .await;
    assert!(
        matches!(start, ServerEvent::Ok(_)),
        "game:start → {start:?}"
    );

    // The sealed members get the show early, sealed.
    let show_a = is_show(
        &read_until(&mut a, &mut la, |e| is_show(e, 0).is_some()).await,
        0,
    )
    .unwrap();
    let show_at = show_a.show_at.expect("the show has showAt");
    let seq = la.last().unwrap().1.seq.unwrap();
    assert!(show_a.sealed.is_some() && show_a.question.is_empty() && show_a.answers.is_empty());
    assert!(now_ms() < show_at, "the sealed show arrives before showAt");
    assert_eq!(show_a.ends_at, show_at + u64::from(show_a.time_limit_ms));
    // An answer before showAt is refused: too_early.
    let rid = a.send(submit(&ack_a, &code, 0, 1)).await;
    let refused = a.reply(rid).await;
    match &refused.event {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::TooEarly, "{e:?}"),
        other => panic!("an answer before showAt → {other:?}"),
    }

    // d gets its sealed show, drops the socket before the key, and resumes with lastSeq = seq − 1.
    let show_d = read_until(&mut d, &mut ld, |e| is_show(e, 0).is_some()).await;
    assert!(is_show(&show_d, 0).unwrap().sealed.is_some());
    // (it resumes before the key time unless this machine stalled for over 1.5 s; either way the resumed
    // socket must end up with a question it can show)
    drop(d);
    let mut d = sealed_client(addr, Codec::Msgpack).await;
    let back = d
        .request(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack_d.player_id.clone(),
            session_token: ack_d.session_token.clone(),
            last_seq: Some(seq - 1),
        }))
        .await;
    ld.push((now_ms(), Envelope::new(back.clone())));

    // Everyone reads until they can show question 0.
    let key_a = is_key(&read_until(&mut a, &mut la, |e| is_key(e).is_some()).await).unwrap();
    let show_b = is_show(
        &read_until(&mut b, &mut lb, |e| is_show(e, 0).is_some()).await,
        0,
    )
    .unwrap();
    let key_b = is_key(&read_until(&mut b, &mut lb, |e| is_key(e).is_some()).await).unwrap();
    let show_h = is_show(
        &read_until(&mut host, &mut lh, |e| is_show(e, 0).is_some()).await,
        0,
    )
    .unwrap();
    let key_h = is_key(&read_until(&mut host, &mut lh, |e| is_key(e).is_some()).await).unwrap();
    let show_c = is_show(
        &read_until(&mut c, &mut lc, |e| is_show(e, 0).is_some()).await,
        0,
    )
    .unwrap();
    assert!(show_c.sealed.is_none(), "c did not declare support: clear");
    // d: the show again (sealed with this worker's key, then the key) or in clear at the key time
    let show_d = match &back {
        ServerEvent::ReconnectState(st) => *st.current_q.clone().expect("currentQ"),
        _ => is_show(
            &read_until(&mut d, &mut ld, |e| is_show(e, 0).is_some()).await,
            0,
        )
        .unwrap(),
    };
    let key_d = if show_d.sealed.is_some() {
        Some(is_key(&read_until(&mut d, &mut ld, |e| is_key(e).is_some()).await).unwrap())
    } else {
        None
    };
    for (who, show, key) in [
        ("a", &show_a, Some(&key_a)),
        ("b", &show_b, Some(&key_b)),
        ("host", &show_h, Some(&key_h)),
        ("c", &show_c, None),
        ("d", &show_d, key_d.as_ref()),
    ] {
        assert_eq!(
            content(&code, show, key),
            "One?",
            "{who} can show the question"
        );
        assert_eq!(show.show_at, Some(show_at), "{who}: one showAt");
    }

    // The edge counts what it sealed and the keys it sent (/metrics; process-wide in this test binary).
    let g = &ringside_edge::metrics::GAME;
    use std::sync::atomic::Ordering::Relaxed;
    assert!(g.seals_total.load(Relaxed) >= 1);
    assert!(
        g.seal_keys_total.load(Relaxed) >= 3,
        "keys to a, b and the host"
    );
    assert!(g.seal_lead_ms_total.load(Relaxed) >= LEAD_MS);

    // No frame of any socket carries the key or the question's text before the key time.
    let key_time = show_at - LEAD_MS;
    let keys = [&key_a.key, &key_b.key, &key_h.key];
    for (who, log) in [
        ("a", &la),
        ("b", &lb),
        ("c", &lc),
        ("d", &ld),
        ("host", &lh),
    ] {
        for (at, e) in log.iter() {
            let json = String::from_utf8(e.encode(Codec::Json)).unwrap();
            if json.contains("One?") || keys.iter().any(|k| json.contains(k.as_str())) {
                assert!(
                    *at >= key_time,
                    "{who} read the question or its key at {at}, before the key time {key_time}: {json}"
                );
            }
        }
    }

    // Answers equally fast after showAt score the same time bonus, whatever the delivery order (a and
    // b got the sealed show a second early, c got it in clear at the key time).
    let wait = Duration::from_millis((show_at + 250).saturating_sub(now_ms()));
    tokio::time::sleep(wait).await;
    let (ra, rc) = (
        a.send(submit(&ack_a, &code, 0, 1)).await,
        c.send(submit(&ack_c, &code, 0, 1)).await,
    );
    let acks = [a.reply(ra).await.event, c.reply(rc).await.event];
    let mut times = Vec::new();
    for ack in &acks {
        match ack {
            ServerEvent::AnswerAck(k) => times.push(k.server_time),
            other => panic!("an answer after showAt → {other:?}"),
        }
    }
    for (cl, ack) in [(&mut b, &ack_b), (&mut d, &ack_d)] {
        let r = cl.send(submit(ack, &code, 0, 0)).await;
        assert!(matches!(cl.reply(r).await.event, ServerEvent::AnswerAck(_)));
    }
    let result = |e: &ServerEvent| match e {
        ServerEvent::AnswerResult(r) => Some(r.clone()),
        _ => None,
    };
    let res_a = a.until(result).await;
    let res_c = c.until(result).await;
    // the bonus counts from showAt: base 1000 (the quiz's default) + floor(500 × (endsAt − t) / limit)
    let tlim = u64::from(show_a.time_limit_ms);
    for (r, t) in [(&res_a, times[0]), (&res_c, times[1])] {
        assert!(r.correct);
        let bonus = 500 * (show_a.ends_at - t) / tlim;
        assert_eq!(
            r.points,
            1000 + bonus as i64,
            "points from showAt for an answer at {t}"
        );
    }
    // so two answers recorded at the same Redis time score the same, whoever got the question first
    if times[0] == times[1] {
        assert_eq!(res_a.points, res_c.points);
    }
}
