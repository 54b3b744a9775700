//! `envelope::json_ping`, the `ping` read without the JSON parser: whatever it accepts, the general
//! decoder reads the same way (same `rid`, the same `t` to the bit); what it refuses still decodes there.

use proptest::prelude::*;
use ringside_protocol::envelope::{decode_request, json_ping, Codec, Envelope};
use ringside_protocol::events::{ClientEvent, Ping};

/// What the general path makes of `body`: `Some((rid, t))` for a valid `ping`.
fn general(body: &[u8]) -> Option<(Option<u32>, f64)> {
    let mut buf = body.to_vec();
    match decode_request::<ClientEvent>(Codec::Json, &mut buf) {
        Ok(Envelope {
            event: ClientEvent::Ping(p),
            rid,
            seq: None,
        }) => Some((rid, p.t)),
        _ => None,
    }
}

fn same(a: Option<(Option<u32>, f64)>, b: Option<(Option<u32>, f64)>) -> bool {
    match (a, b) {
        (Some((ra, ta)), Some((rb, tb))) => ra == rb && ta.to_bits() == tb.to_bits(),
        (None, None) => true,
        _ => false,
    }
}

/// The load generator's ping, as its encoder writes it.
fn loadgen_ping(rid: u32, t: f64) -> Vec<u8> {
    Envelope::new(ClientEvent::Ping(Ping { t }))
        .with_rid(Some(rid))
        .encode(Codec::Json)
}

#[test]
fn the_clients_pings_take_the_fast_path() {
    let cases: [(&[u8], Option<u32>, f64); 5] = [
        // docs/protocol.md's example, and the pages' JSON.stringify({event, data}) (+ rid)
        (
            br#"{"event":"ping","rid":1,"data":{"t":1795500000123}}"#,
            Some(1),
            1795500000123.0,
        ),
        (
            br#"{"event":"ping","data":{"t":1795500000123}}"#,
            None,
            1795500000123.0,
        ),
        (
            br#"{"event":"ping","data":{"t":1795500000123},"rid":42}"#,
            Some(42),
            1795500000123.0,
        ),
        (
            br#"{"event":"ping","rid":4294967295,"data":{"t":0}}"#,
            Some(u32::MAX),
            0.0,
        ),
        (br#"{"event":"ping","data":{"t":12.5}}"#, None, 12.5),
    ];
    for (body, rid, t) in cases {
        let fast = json_ping(body);
        assert!(
            same(fast, Some((rid, t))),
            "{}: {fast:?}",
            String::from_utf8_lossy(body)
        );
        assert!(
            same(fast, general(body)),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let body = loadgen_ping(7, 1795500000123.0);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"event":"ping","rid":7,"data":{"t":1795500000123.0}}"#
    );
    assert!(same(json_ping(&body), Some((Some(7), 1795500000123.0))));
}

#[test]
fn anything_else_takes_the_general_path() {
    let others: [&[u8]; 16] = [
        br#"{ "event":"ping","data":{"t":1}}"#,
        br#"{"event": "ping","data":{"t":1}}"#,
        br#"{"data":{"t":1},"event":"ping"}"#,
        br#"{"event":"ping","seq":3,"data":{"t":1}}"#,
        br#"{"event":"ping","data":{"t":1,"x":2}}"#,
        br#"{"event":"ping","data":{"t":01}}"#,
        br#"{"event":"ping","data":{"t":1e3}}"#,
        br#"{"event":"ping","data":{"t":-1}}"#,
        br#"{"event":"ping","data":{"t":1.}}"#,
        br#"{"event":"ping","data":{"t":1.2.3}}"#,
        br#"{"event":"ping","data":{"t":1234567890123456}}"#,
        br#"{"event":"ping","rid":4294967296,"data":{"t":1}}"#,
        br#"{"event":"ping","rid":1,"data":{"t":1},"rid":2}"#,
        br#"{"event":"ping","data":{"t":1}} "#,
        br#"{"event":"ping","data":{"t":1}}}"#,
        br#"{"event":"pingx","data":{"t":1}}"#,
    ];
    for body in others {
        assert_eq!(json_ping(body), None, "{}", String::from_utf8_lossy(body));
    }
    // the general path still answers the well-formed ones among them
    assert!(general(br#"{ "event":"ping","data":{"t":1}}"#).is_some());
    assert!(general(br#"{"data":{"t":1},"event":"ping"}"#).is_some());
    assert!(general(br#"{"event":"ping","data":{"t":1e3}}"#).is_some());
}

proptest! {
    #[test]
    fn the_fast_path_agrees_with_the_parser(
        int in 0u64..1_000_000_000_000_000,
        frac in proptest::option::of("[0-9]{1,6}"),
        rid in proptest::option::of(any::<u32>()),
        rid_last in any::<bool>(),
    ) {
        let t = match frac {
            Some(f) => format!("{int}.{f}"),
            None => int.to_string(),
        };
        let body = match (rid, rid_last) {
            (Some(r), false) => format!(r#"{{"event":"ping","rid":{r},"data":{{"t":{t}}}}}"#),
            (Some(r), true) => format!(r#"{{"event":"ping","data":{{"t":{t}}},"rid":{r}}}"#),
            (None, _) => format!(r#"{{"event":"ping","data":{{"t":{t}}}}}"#),
        };
        let fast = json_ping(body.as_bytes());
        prop_assert!(fast.is_some(), "{}", body);
        prop_assert!(same(fast, general(body.as_bytes())), "{}", body);
    }

    /// One byte changed, inserted or removed anywhere in a ping: the fast path accepts it only where
    /// the parser reads the same ping.
    #[test]
    fn a_damaged_ping_is_never_misread(
        rid in any::<u32>(),
        t in 0u64..10_000_000_000_000,
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"0123456789.,:{}\"e- rdtaping".to_vec()),
        op in 0u8..3,
    ) {
        let mut body = loadgen_ping(rid, t as f64);
        let i = at.index(body.len());
        match op {
            0 => body[i] = byte,
            1 => body.insert(i, byte),
            _ => { body.remove(i); }
        }
        if let Some(fast) = json_ping(&body) {
            prop_assert!(same(Some(fast), general(&body)), "{}", String::from_utf8_lossy(&body));
        }
    }
}
