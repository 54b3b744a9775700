//! Ownership through the edge (issue: "any player can learn every answer by hosting the same quiz").
//! A room of a private quiz is created the way the control plane creates it (the quiz passed straight
//! into the room, never into the public catalog). A player of that room reads its quiz id from
//! `room:join:ack` and tries, from a second socket, everything the protocol offers without a key.

use super::*;

const PRIVATE_QUIZ: &str = r#"{"id":"private-final","title":"Finals","questions":[
 {"text":"Secret one?","options":["a","b","c"],"correct":2,"timeLimitMs":60000}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_cannot_host_the_private_quiz_of_the_room_they_joined() {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let game = Game::new(s.conn.clone());
    let created = game
        .create_room_with_quiz(PRIVATE_QUIZ, Some("Owner"), &settings(), "http://test")
        .await
        .expect("the control plane's way of creating a room");
    let mut player = Client::connect(addr, Codec::Json).await;
    let ack = join(&mut player, &created.game_code, "Mallory").await;
    assert_eq!(
        ack.quiz_meta.quiz_id, "private-final",
        "players do see the quiz id"
    );

    let mut cheater = Client::connect(addr, Codec::Json).await;
    // 1. host the same quiz: the key-less room:create only reads the public catalog
    match cheater
        .request(ClientEvent::RoomCreate(RoomCreate {
            quiz_id: ack.quiz_meta.quiz_id.clone(),
            host_name: None,
            settings: settings(),
        }))
        .await
    {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::QuizNotFound, "{e:?}"),
        other => panic!("room:create of a private quiz → {other:?}"),
    }
    // 2. take over the real room as its host with a guessed token
    match cheater
        .request(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: created.game_code.clone(),
            player_id: "host".into(),
            session_token: ack.session_token.clone(),
            last_seq: None,
        }))
        .await
    {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}"),
        other => panic!("host reconnect with a player's token → {other:?}"),
    }
    // 3. drive the real room from the player's own socket
    match player
        .request(ClientEvent::GameStart(GameRef {
            game_code: created.game_code.clone(),
        }))
        .await
    {
        ServerEvent::Error(e) => assert_eq!(e.code, ErrorCode::NotHost),
        other => panic!("a player's game:start → {other:?}"),
    }
    // the private quiz is not in the catalog; the public one of the stack still hosts as before
    let mut conn = s.conn.clone();
    let n: i64 = redis::cmd("EXISTS")
        .arg(ringside_protocol::keys::quiz("private-final"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let mut host = Client::connect(addr, Codec::Json).await;
    create_room(&mut host).await;
}

/// `/api/` is forwarded to `--api-upstream` with the client's address in `X-Forwarded-For` (a client's
/// own header is dropped), the body passes through, and a dead upstream is a JSON 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_are_forwarded_to_the_control_plane() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut sock, _) = upstream.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // read until the 11-byte body after the head
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(i) = text.find("\r\n\r\n") {
                if text.len() >= i + 4 + 11 {
                    break;
                }
            }
            assert!(n > 0, "upstream: request ended early");
        }
        let text = String::from_utf8(buf).unwrap();
        let body = "{\"ok\":true}";
        let resp = format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await.unwrap();
        text
    });
    let s = stack_with(Backend::Standalone, false, |c| {
        c.api_upstream = Some(up_addr)
    })
    .await;
    let addr = s.edge.local_addr();
    let req =
        "POST /api/rooms?x=1 HTTP/1.1\r\nHost: quiz.test\r\nContent-Type: application/json\r\n\
               X-Forwarded-For: 6.6.6.6\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}";
    let resp = common::http_raw(addr, req).await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert!(resp.ends_with("{\"ok\":true}"), "{resp}");
    let seen = server.await.unwrap();
    assert!(
        seen.starts_with("POST /api/rooms?x=1 HTTP/1.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{seen}");
    assert!(!seen.contains("6.6.6.6"), "{seen}");
    assert!(seen.contains("X-Forwarded-Host: quiz.test\r\n"), "{seen}");
    assert!(seen.ends_with("\r\n\r\n{\"a\":\"bcd\"}"), "{seen}");
    // the upstream is gone now
    let resp = common::http_raw(addr, "GET /api/me HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(resp.contains("\"code\":\"unavailable\""), "{resp}");
    // other paths are still the edge's own
    let resp = common::http_raw(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
