//! docs/protocol.md §3: `room:join` attempts and failed room-code lookups are limited per source address,
//! across that address's sockets; other addresses are unaffected. Clients bind 127.0.0.2 / 127.0.0.3
//! before connecting.

use super::*;
use std::net::IpAddr;

const GUESSER: &str = "127.0.0.2";
const NEIGHBOUR: &str = "127.0.0.3";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn join_event(code: &str, name: &str) -> ClientEvent {
    ClientEvent::RoomJoin(RoomJoin {
        game_code: code.into(),
        player_name: name.into(),
        avatar_id: 0,
    })
}

/// The `error` reply to `rid`: its code and, for `rate_limited`, its `retryAfterMs`.
async fn refusal(c: &mut Client, rid: u32) -> (ErrorCode, Option<u64>) {
    match c.reply(rid).await.event {
        ServerEvent::Error(e) => (e.code, e.retry_after_ms),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_codes_from_many_sockets_of_one_address_is_rate_limited_and_another_address_is_not(
) {
    let s = stack(Backend::Standalone).await;
    let addr = s.edge.local_addr();
    let mut guessers = Vec::new();
    for i in 0..5 {
        let codec = if i % 2 == 0 {
            Codec::Json
        } else {
            Codec::Msgpack
        };
        guessers.push(Client::connect_from(addr, ip(GUESSER), codec).await);
    }
    // 25 joins with unknown codes, round robin over the 5 sockets: the first 20 (docs: 20 per 10 s,
    // burst 20) are looked up, the rest refused without a lookup.
    let (mut not_found, mut limited) = (0, 0);
    for n in 0..25u8 {
        let c = &mut guessers[usize::from(n) % 5];
        let code = format!(
            "ZZZZ{}{}",
            char::from(b'A' + n / 8),
            char::from(b'A' + n % 8)
        );
        let rid = c.send(join_event(&code, "guess")).await;
        match refusal(c, rid).await {
            (ErrorCode::RoomNotFound, _) => not_found += 1,
            (ErrorCode::RateLimited, Some(wait)) => {
                assert!((1..=10_500).contains(&wait), "retryAfterMs {wait}");
                limited += 1;
            }
            other => panic!("attempt {n}: {other:?}"),
        }
    }
    assert!((20..=21).contains(&not_found), "{not_found} looked up");
    assert_eq!(not_found + limited, 25);

    // Another address hosts, joins and reconnects as usual.
    let mut host = Client::connect_from(addr, ip(NEIGHBOUR), Codec::Json).await;
    let code = create_room(&mut host).await;
    let mut player = Client::connect_from(addr, ip(NEIGHBOUR), Codec::Msgpack).await;
    let ack = join(&mut player, &code, "neighbour").await;
    let mut back = Client::connect_from(addr, ip(NEIGHBOUR), Codec::Json).await;
    let r = back
        .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack.player_id.clone(),
            session_token: ack.session_token.clone(),
            last_seq: None,
        }))
        .await;
    assert!(matches!(
        back.reply(r).await.event,
        ServerEvent::ReconnectState(_)
    ));

    // The guessing address waits, whatever the code and whichever its socket, reconnects included.
    let c = &mut guessers[0];
    let rid = c.send(join_event(&code, "late")).await;
    assert_eq!(refusal(c, rid).await.0, ErrorCode::RateLimited);
    let rid = c
        .send(ClientEvent::ReconnectAttempt(ReconnectAttempt {
            game_code: code.clone(),
            player_id: ack.player_id,
            session_token: ack.session_token,
            last_seq: None,
        }))
        .await;
    assert_eq!(refusal(c, rid).await.0, ErrorCode::RateLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_past_the_per_address_burst_are_rate_limited_with_retry_after() {
    let limits = AddressLimits {
        joins_per_sec: 1.0,
        join_burst: 3,
        ..AddressLimits::default()
    };
    let s = stack_full(Backend::Standalone, false, limits, |_| {}).await;
    let addr = s.edge.local_addr();
    let mut host = Client::connect_from(addr, ip(NEIGHBOUR), Codec::Json).await;
    let code = create_room(&mut host).await;
    for i in 0..3 {
        let mut p = Client::connect_from(addr, ip(GUESSER), Codec::Json).await;
        join(&mut p, &code, &format!("p{i}")).await;
    }
    let mut fourth = Client::connect_from(addr, ip(GUESSER), Codec::Msgpack).await;
    let rid = fourth.send(join_event(&code, "p3")).await;
    let (err, wait) = refusal(&mut fourth, rid).await;
    assert_eq!(err, ErrorCode::RateLimited);
    let wait = wait.expect("retryAfterMs");
    assert!((1..=1000).contains(&wait), "retryAfterMs {wait}");
    // The same socket may join once the wait is over; another address at once.
    let mut other = Client::connect_from(addr, ip(NEIGHBOUR), Codec::Json).await;
    join(&mut other, &code, "other").await;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    join(&mut fourth, &code, "p3").await;
}
