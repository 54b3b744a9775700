//! Presence through the edge: a player whose socket drops is reported away (`player_away` from the
//! socket's close), so "everyone answered" stops waiting for them and the question is revealed before its
//! timer; back on a new socket they count again; the close of an older socket, processed after the
//! player's reconnect, changes nothing.

use super::*;

async fn show(c: &mut Client, q: u32) -> QuestionShow {
    c.until(|e| match e {
        ServerEvent::QuestionShow(s) if s.q_index == q => Some(s.clone()),
        _ => None,
    })
    .await
}

async fn answer(c: &mut Client, code: &str, player_id: &str, secret: &str, q: u32, idx: u32) {
    let ev = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.to_string(),
        q_index: q,
        answer_idx: idx,
        client_time: 0.0,
        answer_hash: answer_hash(secret, code, player_id, q, idx),
    });
    match c.request(ev).await {
        ServerEvent::AnswerAck(a) => assert!(a.received && a.q_index == q),
        other => panic!("answer → {other:?}"),
    }
}

async fn reveal(c: &mut Client, q: u32) -> QuestionReveal {
    c.until(|e| match e {
        ServerEvent::QuestionReveal(r) if r.q_index == q => Some(r.clone()),
        _ => None,
    })
    .await
}

/// Reconnects player `ack` on a new socket with its last seen seq.
async fn reconnect(addr: std::net::SocketAddr, code: &str, ack: &RoomJoinAck, last: u64) -> Client {
    let mut c = Client::connect(addr, Codec::Json).await;
    match c
        .request(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.to_string(),
            player_id: ack.player_id.clone(),
            session_token: ack.session_token.clone(),
            last_seq: Some(last),
        }))
        .await
    {
        ServerEvent::Ok(_) | ServerEvent::ReconnectState(_) => c,
        other => panic!("reconnect:attempt → {other:?}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Three players; one's socket drops without answering, the other two answer: the reveal comes at once,
/// long before the question's 60 s timer. The dropped one reconnects during the next question and
/// counts again: that question waits for their answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_player_does_not_hold_up_the_reveal_and_counts_again_once_back() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut p0 = Client::connect(addr, Codec::Json).await;
    let mut p1 = Client::connect(addr, Codec::Msgpack).await;
    let mut p2 = Client::connect(addr, Codec::Json).await;
    let a0 = join(&mut p0, &code, "ada").await;
    let a1 = join(&mut p1, &code, "bo").await;
    let a2 = join(&mut p2, &code, "cy").await;
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    let q0 = show(&mut host, 0).await;
    for p in [&mut p0, &mut p1, &mut p2] {
        show(p, 0).await;
    }
    let last2 = *p2.seqs.last().unwrap();
    drop(p2); // p2's phone loses its network

    // the host is told (coalesced room:player:presence) ...
    let pres = host
        .until(|e| match e {
            ServerEvent::PlayerPresence(p) if p.away.contains(&a2.player_id) => Some(p.clone()),
            _ => None,
        })
        .await;
    assert_eq!((pres.away_count, pres.total_count), (1, 3));
    // ... and the two connected players' answers are everyone's
    answer(&mut p0, &code, &a0.player_id, &a0.answer_secret, 0, 1).await;
    answer(&mut p1, &code, &a1.player_id, &a1.answer_secret, 0, 0).await;
    let r0 = reveal(&mut host, 0).await;
    assert_eq!((r0.answered_count, r0.total_count), (2, 3));
    assert!(
        now_ms() < q0.ends_at,
        "revealed when the connected players had answered, not by the question's timer"
    );

    // question 1: p2 comes back in the middle of it, without having answered, and counts again
    show(&mut host, 1).await;
    show(&mut p0, 1).await;
    show(&mut p1, 1).await;
    let mut p2 = reconnect(addr, &code, &a2, last2).await;
    host.until(|e| match e {
        ServerEvent::PlayerPresence(p) if p.back.contains(&a2.player_id) => Some(()),
        _ => None,
    })
    .await;
    answer(&mut p0, &code, &a0.player_id, &a0.answer_secret, 1, 0).await;
    answer(&mut p1, &code, &a1.player_id, &a1.answer_secret, 1, 0).await;
    // the question waited for p2: p2's answer is accepted (not late), and the reveal counts all three
    answer(&mut p2, &code, &a2.player_id, &a2.answer_secret, 1, 0).await;
    let r1 = reveal(&mut host, 1).await;
    assert_eq!((r1.answered_count, r1.total_count), (3, 3));
    let r1p = reveal(&mut p2, 1).await;
    assert_eq!(r1p.answered_count, 3);
}

/// The race: a player's new socket (a reconnect, perhaps to another edge process) is in before the old
/// socket's close is processed. That close must not mark the player away: the question still waits for
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_of_an_older_socket_after_a_reconnect_changes_nothing() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut p0 = Client::connect(addr, Codec::Json).await;
    let mut p1 = Client::connect(addr, Codec::Json).await;
    let a0 = join(&mut p0, &code, "ada").await;
    let a1 = join(&mut p1, &code, "bo").await;
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    show(&mut host, 0).await;
    show(&mut p0, 0).await;
    show(&mut p1, 0).await;
    let last0 = *p0.seqs.last().unwrap();
    // p0 reconnects on a second socket while the first is still open (the edge has not seen it die) ...
    let mut p0b = reconnect(addr, &code, &a0, last0).await;
    // ... then the first socket's close is processed
    let open = s
        .edge
        .metrics()
        .connections_open
        .load(std::sync::atomic::Ordering::SeqCst);
    drop(p0);
    while s
        .edge
        .metrics()
        .connections_open
        .load(std::sync::atomic::Ordering::SeqCst)
        >= open
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    answer(&mut p1, &code, &a1.player_id, &a1.answer_secret, 0, 1).await;
    // p0 is connected (the newer socket) and has not answered: no reveal yet; p0's answer is accepted
    answer(&mut p0b, &code, &a0.player_id, &a0.answer_secret, 0, 1).await;
    let r = reveal(&mut host, 0).await;
    assert_eq!((r.answered_count, r.total_count), (2, 2));
    let mut conn = s.conn.clone();
    let away: Option<String> = redis::cmd("HGET")
        .arg(format!("{}:conn", ringside_protocol::keys::room(&code)))
        .arg(format!("a:{}", a0.player_id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(away, None, "p0 was never marked away");

    // the newer socket's close does mark p0 away (question 1 then waits for p1 only)
    show(&mut host, 1).await;
    show(&mut p1, 1).await;
    drop(p0b);
    host.until(|e| match e {
        ServerEvent::PlayerPresence(p) if p.away.contains(&a0.player_id) => Some(()),
        _ => None,
    })
    .await;
    answer(&mut p1, &code, &a1.player_id, &a1.answer_secret, 1, 0).await;
    let r = reveal(&mut host, 1).await;
    assert_eq!((r.answered_count, r.total_count), (1, 2));
}
