//! docs/protocol.md §2: the server copies a request's `rid` into its `error`. One test per way a request
//! whose envelope is readable can be refused, each in both subprotocols, through the real edge and Redis.

use super::*;

/// A tiny value tree written as JSON or as MessagePack (maps with string keys), for frames the protocol
/// crate would refuse to build.
enum V {
    S(&'static str),
    I(i64),
    M(Vec<(&'static str, V)>),
}

impl V {
    fn json(&self) -> String {
        match self {
            V::S(s) => format!("{s:?}"),
            V::I(i) => i.to_string(),
            V::M(kv) => {
                let items: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{k:?}:{}", v.json()))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    fn msgpack(&self, out: &mut Vec<u8>) {
        let str = |s: &str, out: &mut Vec<u8>| {
            assert!(s.len() < 32, "fixstr only");
            out.push(0xa0 | s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        };
        match self {
            V::S(s) => str(s, out),
            V::I(i) if (0..128).contains(i) => out.push(*i as u8),
            V::I(i) => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
            V::M(kv) => {
                assert!(kv.len() < 16, "fixmap only");
                out.push(0x80 | kv.len() as u8);
                for (k, v) in kv {
                    str(k, out);
                    v.msgpack(out);
                }
            }
        }
    }

    fn frame(&self, codec: Codec) -> Message {
        match codec {
            Codec::Json => Message::Text(self.json().into()),
            Codec::Msgpack => {
                let mut b = Vec::new();
                self.msgpack(&mut b);
                Message::Binary(b.into())
            }
        }
    }
}

fn encoded(ev: ClientEvent, rid: u32, codec: Codec) -> Message {
    let body = Envelope::new(ev).with_rid(Some(rid)).encode(codec);
    match codec {
        Codec::Json => Message::Text(String::from_utf8(body).unwrap().into()),
        Codec::Msgpack => Message::Binary(body.into()),
    }
}

/// The next frame is an `error` with `code` that carries `rid`.
async fn expect_refusal(c: &mut Client, rid: u32, code: ErrorCode) -> ErrorEvent {
    let e = c.next().await;
    match e.event {
        ServerEvent::Error(err) => {
            assert_eq!(
                (e.rid, err.code),
                (Some(rid), code),
                "{:?}: {err:?}",
                c.codec
            );
            err
        }
        other => panic!("{:?}: expected error {code}, got {other:?}", c.codec),
    }
}

/// On a fresh socket of each subprotocol, `frame` (built for that codec with rid 41) is refused with
/// `code` and rid 41.
async fn refused_with_rid(frame: impl Fn(Codec) -> Message, code: ErrorCode) {
    let s = stack(Backend::Standalone).await;
    for codec in [Codec::Json, Codec::Msgpack] {
        let mut c = Client::connect(s.edge.local_addr(), codec).await;
        c.raw(frame(codec)).await;
        expect_refusal(&mut c, 41, code).await;
        // The socket still works.
        assert!(matches!(
            c.request(ClientEvent::Ping(Ping { t: 1.0 })).await,
            ServerEvent::Pong(_)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_is_unknown_event_with_its_rid() {
    let frame = |codec| {
        V::M(vec![
            ("event", V::S("room:nuke")),
            ("rid", V::I(41)),
            ("data", V::M(vec![])),
        ])
        .frame(codec)
    };
    refused_with_rid(frame, ErrorCode::UnknownEvent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_a_map_is_bad_payload_with_its_rid() {
    let frame = |codec| {
        V::M(vec![
            ("event", V::S("room:join")),
            ("rid", V::I(41)),
            ("data", V::I(7)),
        ])
        .frame(codec)
    };
    refused_with_rid(frame, ErrorCode::BadPayload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_without_an_event_is_bad_frame_with_its_rid() {
    let frame = |codec| V::M(vec![("rid", V::I(41)), ("data", V::M(vec![]))]).frame(codec);
    refused_with_rid(frame, ErrorCode::BadFrame).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_game_code_is_bad_payload_with_its_rid() {
    let join = || {
        ClientEvent::RoomJoin(RoomJoin {
            game_code: "SHORT".into(),
            player_name: "x".into(),
            avatar_id: 0,
        })
    };
    refused_with_rid(|codec| encoded(join(), 41, codec), ErrorCode::BadPayload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_index_out_of_range_is_bad_payload_with_its_rid() {
    let answer = || {
        ClientEvent::AnswerSubmit(AnswerSubmit {
            game_code: "K7QP2M".into(),
            q_index: 0,
            answer_idx: 99,
            client_time: 0.0,
            answer_hash: "00".repeat(32),
        })
    };
    refused_with_rid(|codec| encoded(answer(), 41, codec), ErrorCode::BadPayload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_without_a_session_is_unauthorized_with_its_rid() {
    let leave = || {
        ClientEvent::RoomLeave(GameRef {
            game_code: "K7QP2M".into(),
        })
    };
    refused_with_rid(|codec| encoded(leave(), 41, codec), ErrorCode::Unauthorized).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_to_an_unknown_room_is_room_not_found_with_its_rid() {
    let join = || {
        ClientEvent::RoomJoin(RoomJoin {
            game_code: "ZZZZZZ".into(),
            player_name: "x".into(),
            avatar_id: 0,
        })
    };
    refused_with_rid(|codec| encoded(join(), 41, codec), ErrorCode::RoomNotFound).await;
}

/// Past the per-socket burst (docs §3: 40), each refused event still names its request and says when a
/// token is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_the_socket_rate_is_rate_limited_with_its_rid_and_retry_after() {
    let s = stack(Backend::Standalone).await;
    for codec in [Codec::Json, Codec::Msgpack] {
        let mut c = Client::connect(s.edge.local_addr(), codec).await;
        let n = ringside_protocol::limits::EVENTS_BURST + 5;
        for rid in 1..=n {
            c.raw(encoded(ClientEvent::Ping(Ping { t: 1.0 }), rid, codec))
                .await;
        }
        let mut refused = Vec::new();
        for _ in 1..=n {
            let e = c.next().await;
            match e.event {
                ServerEvent::Pong(_) => {}
                ServerEvent::Error(err) => {
                    assert_eq!(err.code, ErrorCode::RateLimited, "{err:?}");
                    let wait = err.retry_after_ms.expect("retryAfterMs");
                    assert!((1..=1000).contains(&wait), "retryAfterMs {wait}");
                    assert_eq!(err.event.as_deref(), Some("ping"));
                    refused.push(e.rid.expect("the refused request's rid"));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(!refused.is_empty(), "{codec:?}: nothing refused");
        assert!(refused.iter().all(|r| *r > 30), "{codec:?}: {refused:?}");
    }
}
