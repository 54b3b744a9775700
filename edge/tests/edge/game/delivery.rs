//! Room-event delivery under pressure: a slow consumer is closed with 4008 while the other players get
//! every event in `seq` order.

use super::*;

/// A player that stops reading (4 KiB receive buffer) fills its kernel buffers and then its bounded send
/// queue: queued progress frames are superseded, and past the hard limit the socket is closed with 4008.
/// Meanwhile another player in the same room (on the other subprotocol) receives every room event, in
/// `seq` order, none missed or repeated. The slow player then reconnects with its last `seq` and is back
/// in the game. Asserts ordering and completeness only (no latency), so a busy machine cannot flake it:
/// the fast clients read each round before the next is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4008_while_another_player_gets_every_event_in_order() {
    slow_consumer(Driver::Fusion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4008_while_another_player_gets_every_event_in_order_on_epoll(
) {
    slow_consumer(Driver::Legacy).await;
}

async fn slow_consumer(driver: Driver) {
    use std::sync::atomic::Ordering::SeqCst;
    let s = stack_with(Backend::Standalone, false, |cfg| {
        cfg.driver = driver;
        cfg.sendq.max_bytes = 32 * 1024;
        cfg.sendq.max_frames = 64;
        // The slow player drains megabytes through its small window before it reads the close.
        cfg.close_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = s.edge.local_addr();
    let mut conn = s.conn.clone();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut good = Client::connect(addr, Codec::Msgpack).await;
    let good_ack = join(&mut good, &code, "good").await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let mut slow = Client::over(Box::new(tcp), format!("ws://{addr}/ws"), Codec::Json).await;
    let slow_ack = join(&mut slow, &code, "slow").await;
    // From here on the slow player reads nothing until the end.

    // A big (but valid: 500-char text, 4 × 200-char options) question frame, and small progress ones.
    let show = format!(
        r#"{{"qIndex":0,"totalQuestions":3,"question":"{}","answers":["{o}","{o}","{o}","{o}"],"endsAt":1,"timeLimitMs":60000,"points":1000}}"#,
        "Q".repeat(500),
        o = "o".repeat(200)
    );
    let metrics = s.edge.metrics();
    let mut progress = std::collections::HashSet::new();
    let mut last = 0;
    let mut rounds = 0u32;
    while metrics.slow_consumer_closes_total.load(SeqCst) == 0 {
        assert!(
            rounds < 4000,
            "the slow consumer was not closed after {rounds} rounds"
        );
        rounds += 1;
        // progress, show, progress, show, progress — published back to back, so the worker often
        // queues two progress frames for a socket before its task writes: only a backed-up socket
        // may have the older one superseded, a socket that keeps up gets both.
        for i in 0..3 {
            let p = emit(
                &mut conn,
                &code,
                "game:answer:progress",
                &format!(r#"{{"qIndex":0,"answeredCount":{rounds},"totalCount":2}}"#),
            )
            .await;
            progress.insert(p);
            last = p;
            if i < 2 {
                emit(&mut conn, &code, "game:question:show", &show).await;
            }
        }
        good.read_to_seq(last).await;
        host.read_to_seq(last).await;
    }
    println!(
        "slow consumer closed after {rounds} rounds ({} KiB of room events); superseded frames: {}",
        rounds as usize * (2 * show.len() + 3 * 60) / 1024,
        metrics.dropped_superseded_frames_total.load(SeqCst)
    );
    assert_eq!(metrics.slow_consumer_closes_total.load(SeqCst), 1);
    assert!(
        metrics.dropped_superseded_frames_total.load(SeqCst) > 0,
        "progress frames queued for the slow player were superseded before the hard limit"
    );
    assert_eq!(
        good.backlog.len(),
        0,
        "no error or stray reply for the good player"
    );
    assert_consecutive(&good.seqs, good_ack.seq + 1, "good player");
    assert!(*good.seqs.last().unwrap() >= last);

    // The slow player reads what reached it: frames in seq order where the only gaps are superseded
    // progress frames, then the close 4008.
    assert_eq!(slow.close_code().await, Some(4008));
    let mut prev = slow_ack.seq;
    for &sq in &slow.seqs {
        assert!(sq > prev, "slow player: seqs increase: {:?}", slow.seqs);
        for missing in prev + 1..sq {
            assert!(
                progress.contains(&missing),
                "slow player: only superseded progress frames may be missing, not seq {missing}"
            );
        }
        prev = sq;
    }
    assert!(prev < last, "the slow player was cut off before the end");

    // It reconnects with its last seq: the missed events from the room log, or a snapshot (the gap is
    // older than the log, or its replay would not fit the bounded send queue).
    drop(slow);
    let mut back = Client::connect(addr, Codec::Json).await;
    let rid = back
        .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: slow_ack.player_id.clone(),
            session_token: slow_ack.session_token.clone(),
            last_seq: Some(prev),
        }))
        .await;
    let resumed_at = match back.reply(rid).await.event {
        ServerEvent::Ok(_) => {
            assert_consecutive(&back.seqs, prev + 1, "replayed events");
            *back.seqs.last().unwrap()
        }
        ServerEvent::ReconnectState(st) => {
            back.seqs.clear();
            st.seq
        }
        other => panic!("reconnect:attempt → {other:?}"),
    };
    assert!(resumed_at >= last);

    // The real game goes on: both see the first question, with room seqs continuing without a gap.
    let ServerEvent::Ok(_) = host
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.clone(),
        }))
        .await
    else {
        panic!("game:start")
    };
    for c in [&mut good, &mut back] {
        let q = c
            .until(|e| match e {
                ServerEvent::QuestionShow(s) if s.question != "Q".repeat(500) => Some(s.clone()),
                _ => None,
            })
            .await;
        assert_eq!(q.q_index, 0);
    }
    assert_consecutive(&good.seqs, good_ack.seq + 1, "good player after the start");
    let tail: Vec<u64> = back
        .seqs
        .iter()
        .copied()
        .skip_while(|s| *s <= resumed_at)
        .collect();
    assert_consecutive(&tail, resumed_at + 1, "reconnected player after the start");
}

/// `game:answer:progress` as the library publishes it since v8: a live tick, with no `seq` and not in
/// the room log. The host and a player that opened with `/ws?progress=1` get it; a player that did not
/// ask gets none, and every member's room seqs stay consecutive around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_progress_goes_to_the_host_and_to_players_that_asked_and_moves_no_seq() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut conn = s.conn.clone();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut plain = Client::connect(addr, Codec::Json).await;
    let plain_ack = join(&mut plain, &code, "plain").await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/ws?progress=1");
    let mut asked = Client::over(Box::new(tcp), url, Codec::Msgpack).await;
    let asked_ack = join(&mut asked, &code, "asked").await;
    let paused = |q: u32| format!(r#"{{"qIndex":{q},"remainingMs":5000,"pausedAt":1}}"#);
    // every member has every room event so far (and the process follows the room's channel)
    let first = emit(&mut conn, &code, "game:paused", &paused(0)).await;
    for c in [&mut host, &mut plain, &mut asked] {
        c.read_to_seq(first).await;
        c.backlog.clear();
    }
    let live =
        r#"{"event":"game:answer:progress","data":{"qIndex":0,"answeredCount":7,"totalCount":2}}"#;
    let receivers: u32 = redis::cmd("SPUBLISH")
        .arg(ringside_protocol::keys::room_channel(&code))
        .arg(live)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(receivers, 1, "the edge process follows the room");
    let last = emit(&mut conn, &code, "game:paused", &paused(1)).await;
    let progress = |c: &Client| -> Vec<(Option<u64>, u32)> {
        c.backlog
            .iter()
            .filter_map(|e| match &e.event {
                ServerEvent::AnswerProgress(p) => Some((e.seq, p.answered_count)),
                _ => None,
            })
            .collect()
    };
    for (c, who) in [(&mut host, "host"), (&mut asked, "asked")] {
        c.read_to_seq(last).await;
        assert_eq!(
            progress(c),
            [(None, 7)],
            "{who}: the live tick, once, with no seq"
        );
    }
    plain.read_to_seq(last).await;
    assert!(
        progress(&plain).is_empty(),
        "a player that did not ask gets no tick"
    );
    assert_consecutive(&plain.seqs, plain_ack.seq + 1, "plain player");
    assert_consecutive(&asked.seqs, asked_ack.seq + 1, "player that asked");
    assert_eq!(*plain.seqs.last().unwrap(), last);
    assert_eq!(*asked.seqs.last().unwrap(), last);
}
