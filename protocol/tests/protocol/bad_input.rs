//! Garbage, truncated, mutated and oversized inputs give documented error codes, never a panic.

use proptest::prelude::*;
use ringside_protocol::envelope::decode;
use ringside_protocol::events::*;
use ringside_protocol::{ClientEvent, Codec, DecodeError, Envelope, ErrorCode, ServerEvent};

fn client(codec: Codec, bytes: &[u8]) -> Result<Envelope<ClientEvent>, DecodeError> {
    decode(codec, &mut bytes.to_vec())
}

fn code_of(codec: Codec, bytes: &[u8]) -> ErrorCode {
    client(codec, bytes).expect_err("must be refused").code()
}

fn submit() -> Envelope<ClientEvent> {
    Envelope::new(ClientEvent::AnswerSubmit(AnswerSubmit {
        game_code: "K7QP2M".into(),
        q_index: 3,
        answer_idx: 1,
        client_time: 1795500009412.0,
        answer_hash: "ab".repeat(32),
    }))
    .with_rid(Some(17))
}

fn samples() -> Vec<Vec<u8>> {
    let e = submit();
    vec![e.to_json(), e.to_msgpack()]
}

#[test]
fn json_garbage_is_bad_frame() {
    for input in [
        &b""[..],
        b"{",
        b"nul",
        b"[1,2,3]",
        b"42",
        b"\"str\"",
        b"{\"event\":5}",
        b"{\"data\":{}}",
        b"\xff\xfe",
    ] {
        assert_eq!(
            code_of(Codec::Json, input),
            ErrorCode::BadFrame,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn unknown_and_server_only_events_are_unknown_event() {
    assert_eq!(
        code_of(Codec::Json, br#"{"event":"room:nuke","data":{}}"#),
        ErrorCode::UnknownEvent
    );
    // A client may not send a server event.
    assert_eq!(
        code_of(
            Codec::Json,
            br#"{"event":"pong","data":{"t":1,"serverTime":2}}"#
        ),
        ErrorCode::UnknownEvent
    );
}

#[test]
fn wrong_types_and_broken_limits_are_bad_payload() {
    let cases: &[&[u8]] = &[
        br#"{"event":"room:join","data":{"gameCode":5,"playerName":"x"}}"#,
        br#"{"event":"room:join","data":{"playerName":"x"}}"#,
        br#"{"event":"room:join","data":{"gameCode":"SHORT","playerName":"x"}}"#,
        br#"{"event":"game:answer:submit","data":{"gameCode":"K7QP2M","qIndex":-1,"answerIdx":0,"answerHash":"00"}}"#,
        br#"{"event":"game:answer:submit","data":{"gameCode":"K7QP2M","qIndex":0,"answerIdx":99,"answerHash":"00"}}"#,
        br#"{"event":"host:extend:time","data":{"gameCode":"K7QP2M","addSeconds":100000}}"#,
        br#"{"event":"room:create","data":{"quizId":"../etc/passwd"}}"#,
        br#"{"event":"ping","data":{"t":"soon"}}"#,
    ];
    for input in cases {
        assert_eq!(
            code_of(Codec::Json, input),
            ErrorCode::BadPayload,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn a_bad_rid_is_bad_frame() {
    assert_eq!(
        code_of(Codec::Json, br#"{"event":"ping","rid":-3,"data":{"t":1}}"#),
        ErrorCode::BadFrame
    );
    assert_eq!(
        code_of(Codec::Json, br#"{"event":"ping","rid":"x","data":{"t":1}}"#),
        ErrorCode::BadFrame
    );
}

#[test]
fn oversized_messages_are_too_large_in_both_codecs() {
    let mut big = br#"{"event":"ping","data":{"t":1,"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(
        b'a',
        ringside_protocol::limits::MAX_MESSAGE_BYTES,
    ));
    big.extend(br#""}}"#);
    assert_eq!(code_of(Codec::Json, &big), ErrorCode::TooLarge);
    assert_eq!(code_of(Codec::Msgpack, &big), ErrorCode::TooLarge);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let mut json = b"{\"event\":\"ping\",\"data\":{\"t\":1,\"x\":".to_vec();
    json.extend(std::iter::repeat_n(b'[', depth));
    json.extend(std::iter::repeat_n(b']', depth));
    json.extend(b"}}");
    // Too large anyway at this depth; use a small one under the size limit, too.
    assert!(client(Codec::Json, &json).is_err());
    let mut json = b"{\"event\":\"ping\",\"data\":{\"t\":1,\"x\":".to_vec();
    json.extend(std::iter::repeat_n(b'[', 5000));
    json.extend(std::iter::repeat_n(b']', 5000));
    json.extend(b"}}");
    assert_eq!(code_of(Codec::Json, &json), ErrorCode::BadFrame);
    // MessagePack: 5000 nested one-element arrays (0x91).
    let mut mp = vec![0x82, 0xa5];
    mp.extend(b"event");
    mp.push(0xa4);
    mp.extend(b"ping");
    mp.push(0xa4);
    mp.extend(b"data");
    mp.extend(std::iter::repeat_n(0x91, 5000));
    mp.push(0x01);
    assert_eq!(code_of(Codec::Msgpack, &mp), ErrorCode::BadFrame);
}

#[test]
fn every_truncation_of_a_valid_message_is_an_error_not_a_panic() {
    for (codec, full) in [Codec::Json, Codec::Msgpack].into_iter().zip(samples()) {
        assert!(client(codec, &full).is_ok());
        for cut in 0..full.len() {
            let err = client(codec, &full[..cut]).expect_err("a truncated message must not decode");
            assert_eq!(
                err.code(),
                ErrorCode::BadFrame,
                "cut at {cut} of {codec:?}: {err}"
            );
        }
    }
}

#[test]
fn the_wrong_codec_is_an_error() {
    let e = submit();
    assert_eq!(code_of(Codec::Json, &e.to_msgpack()), ErrorCode::BadFrame);
    assert_eq!(code_of(Codec::Msgpack, &e.to_json()), ErrorCode::BadFrame);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for codec in Codec::ALL {
            let _ = client(codec, &bytes);
            let _ = decode::<ServerEvent>(codec, &mut bytes.clone());
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        for (codec, mut msg) in Codec::ALL.into_iter().zip(samples()) {
            for (pos, byte) in &flips {
                let n = msg.len();
                msg[pos % n] = *byte;
            }
            if let Err(e) = client(codec, &msg) {
                // Every failure maps to one of the decode codes.
                prop_assert!(matches!(e.code(), ErrorCode::BadFrame | ErrorCode::UnknownEvent | ErrorCode::BadPayload));
            }
        }
    }

    #[test]
    fn answer_submit_round_trips_for_any_values(q in any::<u32>(), a in 0u32..8, rid in proptest::option::of(any::<u32>()), t in -1e15f64..1e15) {
        let env = Envelope::new(ClientEvent::AnswerSubmit(AnswerSubmit {
            game_code: "ABCDEF".into(), q_index: q, answer_idx: a, client_time: t, answer_hash: "0f".repeat(32),
        })).with_rid(rid);
        for codec in Codec::ALL {
            let back: Envelope<ClientEvent> = decode(codec, &mut env.encode(codec)).unwrap();
            prop_assert_eq!(&back, &env);
        }
    }
}

/// docs/protocol.md §2: the server copies `rid` into the `error` of a request whose envelope was readable —
/// whatever is wrong after it (unknown event, wrong types, a broken limit, no `event`), in both codecs.
#[test]
fn a_refusal_after_a_readable_rid_keeps_it_in_both_codecs() {
    use ringside_protocol::envelope::decode_request;
    let cases: &[(&str, ErrorCode)] = &[
        (
            r#"{"event":"room:nuke","rid":7,"data":{}}"#,
            ErrorCode::UnknownEvent,
        ),
        (
            r#"{"event":"ping","rid":7,"data":7}"#,
            ErrorCode::BadPayload,
        ),
        (
            r#"{"event":"room:join","rid":7,"data":{"gameCode":"SHORT","playerName":"x"}}"#,
            ErrorCode::BadPayload,
        ),
        (
            r#"{"event":"game:answer:submit","rid":7,"data":{"gameCode":"K7QP2M","qIndex":0,"answerIdx":99,"answerHash":"00"}}"#,
            ErrorCode::BadPayload,
        ),
        (r#"{"rid":7,"data":{}}"#, ErrorCode::BadFrame),
        (
            r#"{"event":"ping","rid":7,"seq":-1,"data":{"t":1}}"#,
            ErrorCode::BadFrame,
        ),
    ];
    for (json, code) in cases {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let msgpack = rmp_serde::to_vec_named(&value).unwrap();
        for (codec, mut body) in [
            (Codec::Json, json.as_bytes().to_vec()),
            (Codec::Msgpack, msgpack),
        ] {
            let r = decode_request::<ClientEvent>(codec, &mut body).expect_err(json);
            assert_eq!(
                (r.rid, r.error.code()),
                (Some(7), *code),
                "{codec:?} {json}"
            );
        }
    }
    // Before a valid rid there is none to copy.
    for json in [
        &b"{not json"[..],
        br#"[7]"#,
        br#"{"event":"ping","rid":-7}"#,
    ] {
        let r = decode_request::<ClientEvent>(Codec::Json, &mut json.to_vec()).unwrap_err();
        assert_eq!((r.rid, r.error.code()), (None, ErrorCode::BadFrame));
    }
}
