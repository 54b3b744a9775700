//! Whole games through the edge: standalone Redis, the cluster, the epoll fallback, wss in both
//! subprotocols — every player sees every question, its own result and the end, seqs in order.

use super::*;

/// A whole game: a host and players on both subprotocols; every player sees every question, its own result
/// after each reveal, and the end, with room seqs in order and without gaps.
async fn full_game(backend: Backend) {
    full_game_on(stack(backend).await).await;
}

async fn full_game_on(s: Stack) {
    let addr = s.edge.local_addr();
    let mut host = Client::dial(&s.dial, addr, Codec::Json).await;
    let code = create_room(&mut host).await;

    let mut players = Vec::new();
    for (i, codec) in [Codec::Json, Codec::Msgpack, Codec::Json, Codec::Msgpack]
        .into_iter()
        .enumerate()
    {
        let mut c = Client::dial(&s.dial, addr, codec).await;
        let ack = join(&mut c, &code, &format!("p{i}")).await;
        players.push((c, ack));
    }

    // A non-host may not start the game.
    let (p0, _) = &mut players[0];
    match p0
        .request(ClientEvent::GameStart(GameRef {
            game_code: code.clone(),
        }))
        .await
    {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::NotHost),
        other => panic!("player game:start → {other:?}"),
    }
    start_game(&mut host, &code).await;

    for q in 0..3u32 {
        for (i, (c, ack)) in players.iter_mut().enumerate() {
            let show = c
                .until(|e| match e {
                    ServerEvent::QuestionShow(s) => Some(s.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(show.q_index, q);
            let answer = (i as u32) % show.answers.len() as u32;
            match c.request(answer_submit(&code, ack, q, answer)).await {
                ServerEvent::AnswerAck(a) => assert!(a.received && a.q_index == q),
                other => panic!("answer → {other:?}"),
            }
        }
        // Everyone answered: the reveal comes early, then each player's own result.
        for (c, _) in players.iter_mut() {
            let r = c
                .until(|e| match e {
                    ServerEvent::QuestionReveal(r) => Some(r.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(r.q_index, q);
            let mine = c
                .until(|e| match e {
                    ServerEvent::AnswerResult(r) => Some(r.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(mine.q_index, q);
            assert_eq!(mine.total_players, 4);
        }
    }
    for (c, _) in players.iter_mut() {
        let end = c
            .until(|e| match e {
                ServerEvent::GameEnd(g) => Some(g.clone()),
                _ => None,
            })
            .await;
        assert_eq!(end.total_players, 4);
        assert!(!c.seqs.is_empty());
        for w in c.seqs.windows(2) {
            assert_eq!(
                w[1],
                w[0] + 1,
                "room events in seq order without gaps: {:?}",
                c.seqs
            );
        }
    }
    let end = host
        .until(|e| match e {
            ServerEvent::GameEnd(g) => Some(g.clone()),
            _ => None,
        })
        .await;
    assert_eq!(end.final_rankings.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_through_the_edge_on_standalone_redis() {
    full_game(Backend::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_through_the_edge_on_the_cluster() {
    full_game(Backend::Cluster).await;
}

/// The same game with the edge on its epoll fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_through_the_edge_on_epoll() {
    let s = stack_with(Backend::Standalone, false, |c| c.driver = Driver::Legacy).await;
    assert!(
        s.edge.drivers().iter().all(|d| *d == "epoll"),
        "{:?}",
        s.edge.drivers()
    );
    full_game_on(s).await;
}

/// The same game over `wss://` (the edge with a generated dev certificate, clients on tokio-rustls
/// trusting it), host and players on both subprotocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_game_over_wss_in_both_subprotocols() {
    full_game_on(stack_with(Backend::Standalone, true, |_| {}).await).await;
}

/// Many players of one room answer at the same moment: the edge hands their answers to Redis together
/// (`answer_batch`, edge/src/game/answers.rs), and each player gets exactly its own reply — one ack for
/// the answer, then `already_answered` for a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_answers_of_one_room_are_each_acked_once() {
    const PLAYERS: usize = 40;
    let s = stack(Backend::Standalone).await;
    let (_host, code, mut players) = room_at_question_0(&s, PLAYERS).await;
    let batched_before = ringside_edge::metrics::ANSWER_BATCH.sum();
    let stages = &ringside_edge::metrics::ANSWER_STAGES;
    let stages_before = [
        stages.to_redis_thread.count(),
        stages.batch_wait.count(),
        stages.redis_call.count(),
        stages.to_worker.count(),
    ];
    // all but the last player answer at once (the last keeps the question open: no early reveal)
    let answerers = PLAYERS - 1;
    for round in 0..2u32 {
        let mut rids = Vec::new();
        for (i, (c, ack)) in players.iter_mut().take(answerers).enumerate() {
            let answer = (i as u32 + round) % 4;
            rids.push(c.send(answer_submit(&code, ack, 0, answer)).await);
        }
        for ((c, _), rid) in players.iter_mut().zip(rids) {
            match (round, c.reply(rid).await.event) {
                (0, ServerEvent::AnswerAck(a)) => assert!(a.received && a.q_index == 0),
                (1, ServerEvent::Error(e)) => assert_eq!(e.code, ErrorCode::AlreadyAnswered),
                (r, other) => panic!("answer round {r} → {other:?}"),
            }
        }
    }
    // every answer went through the batcher (the metric is process-wide: other tests add to it)
    assert!(ringside_edge::metrics::ANSWER_BATCH.sum() >= batched_before + 2 * answerers as u64);
    // and each was timed in every stage on its way (acks only on the way back)
    let all = 2 * answerers as u64;
    assert!(stages.to_redis_thread.count() >= stages_before[0] + all);
    assert!(stages.batch_wait.count() >= stages_before[1] + all);
    assert!(stages.redis_call.count() >= stages_before[2] + all);
    assert!(stages.to_worker.count() >= stages_before[3] + answerers as u64);
    // nothing more arrives for anyone: no second ack, no reveal (one player has not answered)
    for (c, _) in players.iter_mut().take(answerers) {
        assert!(c.backlog.iter().all(|e| !matches!(
            e.event,
            ServerEvent::AnswerAck(_) | ServerEvent::QuestionReveal(_)
        )));
    }
}

/// Group commit (edge/src/game/answers.rs, `--answer-calls-in-flight 1`): while a room's answer call is
/// on its way, the room's answers that reach the edge meanwhile — each in a turn of its own — wait and
/// leave together in one `answer_batch` when it returns, instead of one `answer_submit` each. Redis is
/// held with `CLIENT PAUSE WRITE` so that the first call is surely on its way; MONITOR shows the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_arriving_during_a_call_of_their_room_leave_together_in_the_next() {
    // all within answers::STALLED_CALL (250 ms) of the first call
    let calls = answer_calls_while_redis_is_paused(&[100, 30, 30, 30]).await;
    // one call for the first answer, one for the others that came while it was on its way (more only
    // if the machine delayed an answer past the unpause); one call each without group commit
    assert!(calls.len() < 5, "{calls:#?}");
    assert!(
        calls.iter().any(|c| c.contains("\"answer_batch\"")),
        "{calls:#?}"
    );
}

/// A call that hangs does not hold its room's next answers for longer than `answers::STALLED_CALL`:
/// an answer arriving after that starts a call of its own (while Redis is still paused), so a stopped
/// Redis costs it at most its own call's timeout, not that plus the stuck call's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_behind_a_stalled_call_of_its_room_does_not_wait_for_it() {
    let stalled = ringside_edge::game::answers::STALLED_CALL;
    let calls = answer_calls_while_redis_is_paused(&[stalled.as_millis() as u64 + 300, 30]).await;
    // the second answer left while the first call was still held (a slot of its own), and the third,
    // right behind it, waited for one of the two: three single calls. Without the rule the second
    // and third would have waited for the first together: one answer_submit, one answer_batch.
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert!(
        calls.iter().all(|c| c.contains("\"answer_submit\"")),
        "{calls:#?}"
    );
}

/// A room of 6 players at question 0; Redis paused (CLIENT PAUSE WRITE); player 0 answers, then player
/// i + 1 answers `gaps_ms[i]` ms after the one before; 500 ms later Redis runs again. Returns the
/// room's answer calls (FCALL lines, in the order Redis ran them) once every answer is acked.
async fn answer_calls_while_redis_is_paused(gaps_ms: &[u64]) -> Vec<String> {
    const PLAYERS: usize = 6;
    let s = stack(Backend::Standalone).await;
    let (_host, code, mut players) = room_at_question_0(&s, PLAYERS).await;
    // every command Redis runs, from here on
    let url = s._redis.urls()[0].clone();
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in the Redis URL");
    let mut monitor = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut monitor, b"MONITOR\r\n")
        .await
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(monitor));
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("+OK"));

    let mut conn = s.conn.clone();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(30_000)
        .arg("WRITE")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    // the last player never answers: no early reveal
    let answerers = gaps_ms.len() + 1;
    assert!(answerers < PLAYERS);
    let mut rids = Vec::new();
    for (i, (c, ack)) in players.iter_mut().take(answerers).enumerate() {
        let answer = i as u32 % 4;
        rids.push(c.send(answer_submit(&code, ack, 0, answer)).await);
        // the first answer's call leaves (and waits in the paused Redis); the others arrive apart
        if let Some(gap) = gaps_ms.get(i) {
            tokio::time::sleep(Duration::from_millis(*gap)).await;
        }
    }
    // time for the last one to reach the Redis thread before Redis runs again (a slow machine that
    // takes longer only splits the waiting answers over more calls, which the assertions allow)
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    for ((c, _), rid) in players.iter_mut().zip(rids) {
        match c.reply(rid).await.event {
            ServerEvent::AnswerAck(a) => assert!(a.received && a.q_index == 0),
            other => panic!("answer → {other:?}"),
        }
    }
    // the answer calls of this room, as Redis ran them (FCALL lines, not the calls inside them)
    let mut calls: Vec<String> = Vec::new();
    let mut answers_seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while answers_seen < answerers {
        // one deadline for the whole search: MONITOR shows other commands every second
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("MONITOR showed only these answer calls: {calls:#?}"))
            .unwrap()
            .expect("MONITOR stream open");
        if !line.contains("\"FCALL\"") || !line.contains(code.as_str()) {
            continue;
        }
        if line.contains("\"answer_submit\"") {
            answers_seen += 1;
        } else if line.contains("\"answer_batch\"") {
            answers_seen += players
                .iter()
                .filter(|(_, a)| line.contains(&format!("\"{}\"", a.player_id)))
                .count();
        } else {
            continue;
        }
        calls.push(line);
    }
    assert_eq!(answers_seen, answerers, "{calls:#?}");
    calls
}

/// A room of `players` players (every other one on MessagePack) with its question 0 shown to all: the
/// host's client, the room code and each player's client with its join ack.
async fn room_at_question_0(
    s: &Stack,
    players: usize,
) -> (Client, String, Vec<(Client, RoomJoinAck)>) {
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut joined = Vec::new();
    for i in 0..players {
        joined.push(seat(addr, &code, i).await);
    }
    start_game(&mut host, &code).await;
    for (c, _) in joined.iter_mut() {
        c.until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.q_index),
            _ => None,
        })
        .await;
    }
    (host, code, joined)
}
