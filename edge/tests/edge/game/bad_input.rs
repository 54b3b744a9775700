//! Bad input closes or refuses only the socket that sent it: precise error codes, close 1009 / 1007,
//! and the other players of the room unaffected.

use super::*;

/// Bad input gets a precise error for that socket only; the other player in the room is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_code_and_others_are_unaffected() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut good = Client::connect(addr, Codec::Msgpack).await;
    let good_ack = join(&mut good, &code, "good").await;
    let mut bad = Client::connect(addr, Codec::Json).await;
    let bad_ack = join(&mut bad, &code, "bad").await;

    let expect_error = |e: Envelope<ServerEvent>, code: ErrorCode| match e.event {
        ServerEvent::Error(err) => assert_eq!(err.code, code, "{err:?}"),
        other => panic!("expected {code}, got {other:?}"),
    };
    bad.raw(Message::Text("{not json".into())).await;
    expect_error(bad.next().await, ErrorCode::BadFrame);
    bad.raw(Message::Text(r#"{"event":"room:nuke","data":{}}"#.into()))
        .await;
    expect_error(bad.next().await, ErrorCode::UnknownEvent);
    bad.raw(Message::Text(
        r#"{"event":"room:join","data":{"gameCode":7}}"#.into(),
    ))
    .await;
    expect_error(bad.next().await, ErrorCode::BadPayload);
    bad.raw(Message::Binary(vec![0x81, 0xa5].into())).await;
    expect_error(bad.next().await, ErrorCode::BadFrame);
    // Unknown room for a second session on another socket.
    let mut lost = Client::connect(addr, Codec::Json).await;
    let r = lost
        .send(ClientEvent::RoomJoin(RoomJoin {
            game_code: "ZZZZZZ".into(),
            player_name: "x".into(),
            avatar_id: 0,
        }))
        .await;
    expect_error(lost.reply(r).await, ErrorCode::RoomNotFound);

    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    let show = bad
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    // A forged answer (wrong HMAC), and one for a future question.
    let forged = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 0,
        answer_idx: 1,
        client_time: 0.0,
        answer_hash: "00".repeat(32),
    });
    let r = bad.send(forged).await;
    expect_error(bad.reply(r).await, ErrorCode::BadHash);
    let future = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 2,
        answer_idx: 0,
        client_time: 0.0,
        answer_hash: answer_hash(&bad_ack.answer_secret, &code, &bad_ack.player_id, 2, 0),
    });
    let r = bad.send(future).await;
    expect_error(bad.reply(r).await, ErrorCode::WrongQuestion);
    // A host action from a player.
    let r = bad
        .send(ClientEvent::HostSkip(HostSkip {
            game_code: code.clone(),
            reason: None,
        }))
        .await;
    expect_error(bad.reply(r).await, ErrorCode::NotHost);

    // The bad player's first answer counts; a second one is refused (before everyone answered, so the
    // question is still open). The refused future-question answer above was one of its 2 answer events
    // of this question, so anti-cheat layer 5 (`rate_limited`) refuses it before layer 4 would say
    // `already_answered` (lua/ringside.lua `answer_submit`).
    let a = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 0,
        answer_idx: 0,
        client_time: 0.0,
        answer_hash: answer_hash(&bad_ack.answer_secret, &code, &bad_ack.player_id, 0, 0),
    });
    assert!(matches!(
        bad.request(a.clone()).await,
        ServerEvent::AnswerAck(_)
    ));
    // Resending the recorded answer (as after `unavailable`) is `already_answered`, not an answer event
    // (docs/durability.md); another option is, and layer 5 refuses it.
    let r = bad.send(a).await;
    expect_error(bad.reply(r).await, ErrorCode::AlreadyAnswered);
    let other = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 0,
        answer_idx: 1,
        client_time: 0.0,
        answer_hash: answer_hash(&bad_ack.answer_secret, &code, &bad_ack.player_id, 0, 1),
    });
    let r = bad.send(other).await;
    expect_error(bad.reply(r).await, ErrorCode::RateLimited);
    // The good player sees the same question and answers normally.
    let seen = good
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!(seen, show);
    let ok = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: 0,
        answer_idx: 1,
        client_time: 0.0,
        answer_hash: answer_hash(&good_ack.answer_secret, &code, &good_ack.player_id, 0, 1),
    });
    assert!(matches!(good.request(ok).await, ServerEvent::AnswerAck(_)));
    let reveal = good
        .until(|e| match e {
            ServerEvent::QuestionReveal(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reveal.answered_count, 2);
}

/// A message over the game's 64 KiB limit gets close 1009, a text frame that is not UTF-8 gets 1007 —
/// each closes only its own socket: a player in the same room keeps playing and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_non_utf8_messages_close_only_their_socket() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect(addr, Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut good = Client::connect(addr, Codec::Msgpack).await;
    let good_ack = join(&mut good, &code, "good").await;
    let mut big = Client::connect(addr, Codec::Json).await;
    join(&mut big, &code, "big").await;
    let mut mangled = Client::connect(addr, Codec::Json).await;
    join(&mut mangled, &code, "mangled").await;

    big.raw(Message::Text("x".repeat(70 * 1024).into())).await;
    assert_eq!(big.close_code().await, Some(1009));
    mangled
        .raw(Message::Frame(Frame::message(
            vec![b'{', b'"', 0xC3, 0x28, b'"', b'}'],
            OpCode::Data(Data::Text),
            true,
        )))
        .await;
    assert_eq!(mangled.close_code().await, Some(1007));
    assert_eq!(s.edge.metrics().protocol_closes(1009), 1);
    assert_eq!(s.edge.metrics().protocol_closes(1007), 1);

    // The good player plays on: question, answer, reveal (skipped by the host: the two closed players
    // never answer), with every room event since its join in order.
    host.request(ClientEvent::GameStart(GameRef {
        game_code: code.clone(),
    }))
    .await;
    let show = good
        .until(|e| match e {
            ServerEvent::QuestionShow(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    let a = ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: code.clone(),
        q_index: show.q_index,
        answer_idx: 1,
        client_time: 0.0,
        answer_hash: answer_hash(
            &good_ack.answer_secret,
            &code,
            &good_ack.player_id,
            show.q_index,
            1,
        ),
    });
    assert!(matches!(good.request(a).await, ServerEvent::AnswerAck(_)));
    host.request(ClientEvent::HostSkip(HostSkip {
        game_code: code.clone(),
        reason: None,
    }))
    .await;
    let reveal = good
        .until(|e| match e {
            ServerEvent::QuestionReveal(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reveal.q_index, 0);
    assert_eq!(reveal.answered_count, 1);
    assert_consecutive(&good.seqs, good_ack.seq + 1, "good player");
}
