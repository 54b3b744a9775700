//! Reconnects: with the last `seq` (missed events replayed, or a snapshot when they would not fit the
//! send queue), a join retried after `unavailable`, and every player of a SIGKILLed edge process.

use super::*;

/// A player whose socket dies mid-game reconnects on a new socket with its last seq and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_last_seq_misses_nothing() {
    reconnect_with_last_seq(Driver::Fusion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_last_seq_misses_nothing_on_epoll() {
    reconnect_with_last_seq(Driver::Legacy).await;
}

async fn reconnect_with_last_seq(driver: Driver) {
    let s = stack_with(Backend::Standalone, false, |c| c.driver = driver).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut p = Client::connect(addr, Codec::Msgpack).await;
    let ack = join(&mut p, &code, "tunnel").await;
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    p.until(|e| match e {
        ServerEvent::QuestionShow(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    let last = *p.seqs.last().unwrap();
    drop(p); // the train enters the tunnel

    // While it is away, the host skips question 0: reveal, leaderboard, and later question 1 are missed.
    host.request(ClientEvent::HostSkip(HostSkip {
        game_code: code.clone(),
        reason: None,
    }))
    .await;
    host.until(|e| match e {
        ServerEvent::QuestionShow(s) if s.q_index == 1 => Some(()),
        _ => None,
    })
    .await;

    let mut back = Client::connect(addr, Codec::Msgpack).await;
    let rid = back
        .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack.player_id.clone(),
            session_token: ack.session_token.clone(),
            last_seq: Some(last),
        }))
        .await;
    // The missed events arrive first, in order, then the reply.
    let mut got = Vec::new();
    loop {
        let e = back.next().await;
        if e.rid == Some(rid) {
            assert!(matches!(e.event, ServerEvent::Ok(_)), "{e:?}");
            break;
        }
        got.push(e);
    }
    assert!(got
        .iter()
        .any(|e| matches!(&e.event, ServerEvent::QuestionReveal(r) if r.skipped)));
    assert!(got
        .iter()
        .any(|e| matches!(&e.event, ServerEvent::QuestionShow(s) if s.q_index == 1)));
    for (expect, s) in (last + 1..).zip(back.seqs.iter()) {
        assert_eq!(*s, expect, "missed events in order from lastSeq+1");
    }
    // The new socket can answer the current question with the same identity.
    let a = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 1,
        answer_idx: 0,
        client_time: 0.0,
        answer_hash: answer_hash(&ack.answer_secret, &code, &ack.player_id, 1, 0),
    });
    assert!(matches!(back.request(a).await, ServerEvent::AnswerAck(_)));
}

/// A reconnect whose replay from the room log would fill the bounded send queue at once gets a
/// `reconnect:state` snapshot instead (otherwise it would be closed with 4008 before reading anything,
/// and again on every retry); a small gap is replayed event by event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_too_big_for_the_send_queue_becomes_a_snapshot() {
    replay_too_big(Driver::Fusion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_too_big_for_the_send_queue_becomes_a_snapshot_on_epoll() {
    replay_too_big(Driver::Legacy).await;
}

async fn replay_too_big(driver: Driver) {
    let s = stack_with(Backend::Standalone, false, |cfg| {
        cfg.driver = driver;
        cfg.sendq.max_bytes = 32 * 1024;
        cfg.sendq.max_frames = 64;
    })
    .await;
    let addr = s.edge.local_addr();
    let mut conn = s.conn.clone();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut p = Client::connect(addr, Codec::Msgpack).await;
    let ack = join(&mut p, &code, "tunnel").await;
    let progress = |n: u32| format!(r#"{{"qIndex":0,"answeredCount":{n},"totalCount":1}}"#);
    let first = emit(&mut conn, &code, "game:answer:progress", &progress(0)).await;
    p.read_to_seq(first).await;
    let gone_at = *p.seqs.last().unwrap();
    drop(p);
    let attempt = |last: u64| {
        ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack.player_id.clone(),
            session_token: ack.session_token.clone(),
            last_seq: Some(last),
        })
    };

    // A small gap (3 events): replayed in order, then `ok`.
    let mut last = 0;
    for n in 1..=3 {
        last = emit(&mut conn, &code, "game:answer:progress", &progress(n)).await;
    }
    let mut back = Client::connect(addr, Codec::Msgpack).await;
    match back.request(attempt(gone_at)).await {
        ServerEvent::Ok(_) => {}
        other => panic!("small gap → {other:?}"),
    }
    assert_consecutive(&back.seqs, gone_at + 1, "replay");
    assert_eq!(*back.seqs.last().unwrap(), last);
    let gone_at = last;
    drop(back);
    // Until the edge has seen that socket close it is still a member, and the 60 big frames
    // below would overflow its queue (a slow-consumer close that is not what this test is about).
    connections_down_to(&s, 1).await;

    // A big gap (60 question frames of ~1.4 KB, ~84 KB > half of the 32 KiB queue) but within the
    // room log: a snapshot, and live events after it.
    let show = format!(
        r#"{{"qIndex":0,"totalQuestions":3,"question":"{}","answers":["{o}","{o}","{o}","{o}"],"endsAt":1,"timeLimitMs":60000,"points":1000}}"#,
        "Q".repeat(500),
        o = "o".repeat(200)
    );
    for _ in 0..60 {
        last = emit(&mut conn, &code, "game:question:show", &show).await;
        // The host is a member too: it reads each frame before the next is sent, so its own
        // 32 KiB queue never fills on a busy machine (that slow-consumer close is not this test's).
        host.read_to_seq(last).await;
    }
    let mut back = Client::connect(addr, Codec::Msgpack).await;
    match back.request(attempt(gone_at)).await {
        ServerEvent::ReconnectState(st) => assert_eq!(st.seq, last),
        other => panic!("big gap → {other:?}"),
    }
    assert!(back.seqs.is_empty(), "no replayed events: {:?}", back.seqs);
    let live = emit(&mut conn, &code, "game:answer:progress", &progress(9)).await;
    back.read_to_seq(live).await;
    assert_eq!(back.seqs, vec![live]);
    assert_eq!(
        s.edge
            .metrics()
            .slow_consumer_closes_total
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// Waits (polling, no deadline but the test harness's) until the edge has `n` connections open.
async fn connections_down_to(s: &Stack, n: i64) {
    let open = || {
        s.edge
            .metrics()
            .connections_open
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    while open() > n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `room:join` whose FCALL ran in Redis only after the edge gave up on it (the client got
/// `unavailable`) and that the client then retries on the same socket gets its join's ack, not
/// `name_taken`: the edge reuses the attempt's ids and `room_join` answers a repeat with the same ack.
/// Redis holds the call with `CLIENT PAUSE WRITE` until the edge's response timeout
/// (`ringside_lua::conn::RESPONSE_TIMEOUT`, 10 s) has answered `unavailable`, then lets it run; no step
/// depends on how long something took (the only sleep polls for the held call to have run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_retried_after_unavailable_gets_its_ack_not_name_taken() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    // A connection of its own: the stack's is shared with the timer driver, whose writes pause too.
    let client = redis::Client::open(s._redis.urls()[0].as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let players_key = format!("{}:players", ringside_protocol::keys::room(&code));
    // the room's players, counted where the library lists them: every player is in P:lb from the join
    // (P:players also holds a pad field, not a player)
    let lb_key = format!("{}:lb", ringside_protocol::keys::room(&code));
    let players = |mut c: redis::aio::MultiplexedConnection, key: String| async move {
        redis::cmd("ZCARD")
            .arg(key)
            .query_async::<usize>(&mut c)
            .await
            .unwrap()
    };

    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "60000", "WRITE"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut p = Client::connect(addr, Codec::Msgpack).await;
    let attempt = ClientEvent::RoomJoin(RoomJoin {
        game_code: code.clone(),
        player_name: "Blaze99".into(),
        avatar_id: 3,
    });
    match p.request(attempt.clone()).await {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}"),
        other => panic!("a join Redis holds → {other:?}"),
    }
    assert_eq!(players(admin.clone(), lb_key.clone()).await, 0);
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut admin)
        .await
        .unwrap();
    // The held call now runs: the player is in the room although the client got `unavailable`.
    let mut polls = 0;
    while players(admin.clone(), lb_key.clone()).await == 0 {
        polls += 1;
        assert!(polls < 1000, "the held join never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let ack = match p.request(attempt).await {
        ServerEvent::RoomJoinAck(a) => a,
        other => panic!("the retried join → {other:?}"),
    };
    assert_eq!(ack.total_count, 1);
    assert_eq!(players(admin.clone(), lb_key.clone()).await, 1);
    let in_room: Option<String> = redis::cmd("HGET")
        .arg(&players_key)
        .arg(&ack.player_id)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        in_room.as_deref(),
        Some("3:Blaze99"),
        "the held join's player"
    );
    // announced once
    let log: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(ringside_protocol::keys::room_log(&code))
        .arg("-")
        .arg("+")
        .query_async(&mut admin)
        .await
        .unwrap();
    let joined: u32 = log
        .into_iter()
        .filter_map(|(_, f)| {
            let mut b = f[1].clone().into_bytes();
            match Envelope::<ServerEvent>::decode(Codec::Json, &mut b)
                .unwrap()
                .event
            {
                ServerEvent::PlayerJoined(j) => Some(j.joined_count),
                _ => None,
            }
        })
        .sum();
    assert_eq!(joined, 1);
    // The session works: a player action is accepted (not `unauthorized`).
    match p
        .request(ClientEvent::RoomLeave(GameRef {
            game_code: code.clone(),
        }))
        .await
    {
        ServerEvent::Ok(_) => {}
        other => panic!("room:leave → {other:?}"),
    }
}

/// DESIGN.md "Failure": an edge process dies and its players reconnect to another one, losing nothing.
/// The real binary with `--processes 2`: players spread over both processes (SO_REUSEPORT); in the middle
/// of a question the process holding the most sockets is SIGKILLed. Every client whose socket died
/// reconnects on the shared port with its last `seq` (landing on the survivor or on the process the
/// launcher restarted) and gets the missed events; then the game is played to the end. Every player,
/// and the host, must have seen every room event exactly once, in order, across the two sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_of_a_killed_edge_process_reconnect_and_miss_nothing() {
    let redis = TestRedis::start(Backend::Standalone).expect("redis starts");
    let urls = redis.urls();
    let mut conn = Redis::connect(&urls, false).await.unwrap();
    ringside_lua::ensure_loaded(&mut conn).await.unwrap();
    let game = Game::new(conn.clone());
    game.store_quiz(&Quiz::from_json(QUIZ).unwrap())
        .await
        .unwrap();
    let engine = start_engine(urls.clone(), false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mport = common::free_port_pair(port);
    let mut edge = common::EdgeProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_ringside-edge"))
            .args(["--processes", "2", "--threads", "1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
            .args(["--redis", &urls[0]])
            .arg("--web-root")
            .arg(common::web_root())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ringside-edge binary starts"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for i in 0..2 {
        common::wait_healthz(&mut edge, common::metrics_addr(mport, i), deadline).await;
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // A host and 16 players (both codecs): with two processes, all 17 on one is a 1 in 65,536 chance,
    // and the process with the most sockets is the one killed anyway.
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut players = Vec::new();
    for i in 0..16 {
        players.push(seat(addr, &code, i).await);
    }
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    for c in std::iter::once(&mut host).chain(players.iter_mut().map(|(c, _)| c)) {
        c.until(|e| matches!(e, ServerEvent::QuestionShow(q) if q.q_index == 0).then_some(()))
            .await;
    }

    // Kill the process with the most open sockets.
    let open = |m: &str, i: u16| {
        common::sample(
            m,
            &format!("ringside_edge_connections_open{{process=\"{i}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let counts = [
        open(
            &common::http_get(common::metrics_addr(mport, 0), "/metrics").await,
            0,
        ),
        open(
            &common::http_get(common::metrics_addr(mport, 1), "/metrics").await,
            1,
        ),
    ];
    let victim_index = if counts[0] >= counts[1] { 0 } else { 1 };
    let victim = common::children_of(edge.0.id())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|kv| kv == format!("RINGSIDE_EDGE_CHILD_INDEX={victim_index}").as_bytes())
            })
        })
        .expect("the child with that index");
    ringside_edge::sys::kill(victim, libc::SIGKILL).unwrap();

    // Every client asks for a pong: a live socket answers, a dead one ends.
    let mut dead = Vec::new();
    let mut everyone: Vec<(&mut Client, String, String)> =
        vec![(&mut host, "host".into(), String::new())];
    for (c, ack) in players.iter_mut() {
        everyone.push((c, ack.player_id.clone(), ack.session_token.clone()));
    }
    for (k, (c, _, _)) in everyone.iter_mut().enumerate() {
        let rid = c.send(ClientEvent::Ping(Ping { t: 0.0 })).await;
        loop {
            match c.recv_or_closed().await {
                Some(e) if e.rid == Some(rid) => break,
                Some(e) => c.backlog.push_back(e),
                None => {
                    dead.push(k);
                    break;
                }
            }
        }
    }
    assert!(
        !dead.is_empty(),
        "sockets per process {counts:?}: nobody was on the killed process"
    );
    assert!(
        dead.len() < everyone.len(),
        "sockets per process {counts:?}: everybody was"
    );
    eprintln!(
        "killed edge process {victim_index} (sockets per process {counts:?}): {} of {} clients lost their socket",
        dead.len(),
        everyone.len()
    );
    // (the ping replies of live sockets were read; room events that came first wait in their backlog)
    for c in everyone.iter_mut().map(|(c, _, _)| &mut **c) {
        let kept: Vec<_> = c.backlog.drain(..).filter(|e| e.seq.is_some()).collect();
        c.backlog.extend(kept);
    }

    // The dead ones reconnect on the shared port with their last seq.
    let host_token = hget_host_token(&mut conn, &code).await;
    for &k in &dead {
        let (old, id, token) = &mut everyone[k];
        let token = if id == "host" {
            host_token.clone()
        } else {
            token.clone()
        };
        let last = *old.seqs.last().expect("saw the question");
        let mut back = Client::connect(addr, old.codec).await;
        let rid = back
            .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
                game_code: code.clone(),
                player_id: id.clone(),
                session_token: token,
                last_seq: Some(last),
            }))
            .await;
        let reply = back.reply(rid).await;
        assert!(matches!(reply.event, ServerEvent::Ok(_)), "{id}: {reply:?}");
        // One history per client: the old socket's seqs, then the new one's.
        back.seqs.splice(0..0, old.seqs.iter().copied());
        **old = back;
    }

    // Play on: the host skips the three questions (waiting for each next one); everyone reads to game:end.
    for q in 1..=3u32 {
        let r = everyone[0]
            .0
            .request(ClientEvent::HostSkip(HostSkip {
                game_code: code.clone(),
                reason: None,
            }))
            .await;
        assert!(matches!(r, ServerEvent::Ok(_)), "skip {q}: {r:?}");
        if q < 3 {
            everyone[0]
                .0
                .until(|e| {
                    matches!(e, ServerEvent::QuestionShow(s) if s.q_index == q).then_some(())
                })
                .await;
        }
    }
    let mut last_seq = None;
    for (c, id, _) in everyone.iter_mut() {
        c.until(|e| matches!(e, ServerEvent::GameEnd(_)).then_some(()))
            .await;
        let first = c.seqs[0];
        assert_consecutive(&c.seqs, first, id);
        let end = *c.seqs.last().unwrap();
        assert_eq!(
            *last_seq.get_or_insert(end),
            end,
            "{id} ends at the same seq as the others"
        );
    }
    drop(everyone);
    drop(players);
    engine.shutdown().await;
}

/// The room's host token, read from the room hash (a reconnecting host presents it).
async fn hget_host_token(conn: &mut Redis, code: &str) -> String {
    redis::cmd("HGET")
        .arg(ringside_protocol::keys::room(code))
        .arg("host")
        .query_async(conn)
        .await
        .expect("HGET host")
}
