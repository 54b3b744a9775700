//! docs/protocol.md is the contract: every ```json example in it must decode with this crate, round-trip
//! through both codecs unchanged, and together the examples must cover every event of both directions.

use ringside_protocol::envelope::decode;
use ringside_protocol::events::Event;
use ringside_protocol::{ClientEvent, Codec, Envelope, ServerEvent};

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md is readable")
}

/// The bodies of the ```json fenced blocks.
fn json_examples(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```json") => current = Some(String::new()),
            (Some(body), "```") => {
                out.push(std::mem::take(body));
                current = None;
            }
            (Some(body), l) => {
                body.push_str(l);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unterminated ```json block");
    out
}

fn event_name(example: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(example).unwrap_or_else(|e| panic!("not JSON: {e}\n{example}"));
    v["event"]
        .as_str()
        .unwrap_or_else(|| panic!("no event name in {example}"))
        .to_string()
}

/// Decodes `example` as an `E`, then checks JSON and MessagePack round trips and that re-encoding keeps
/// every field of the example (so the document names no field the code does not have).
fn round_trip<E: Event + PartialEq + std::fmt::Debug>(example: &str) {
    let mut buf = example.as_bytes().to_vec();
    let env: Envelope<E> =
        decode(Codec::Json, &mut buf).unwrap_or_else(|e| panic!("{e}\nin example:\n{example}"));

    let mut json = env.to_json();
    let again: Envelope<E> = decode(Codec::Json, &mut json).expect("re-encoded JSON decodes");
    assert_eq!(again, env, "JSON round trip changed {example}");

    let mut mp = env.to_msgpack();
    let again: Envelope<E> = decode(Codec::Msgpack, &mut mp).expect("MessagePack decodes");
    assert_eq!(again, env, "MessagePack round trip changed {example}");

    let original: serde_json::Value = serde_json::from_str(example).unwrap();
    let reencoded: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
    assert_eq!(
        normalize(original),
        normalize(reencoded),
        "fields differ between the doc and the code"
    );
}

/// Numbers compare by value (the doc writes `1795500000123` where an f64 field re-encodes `1795500000123.0`).
fn normalize(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => Value::from(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

#[test]
fn every_json_example_in_the_protocol_doc_decodes_and_round_trips_in_both_codecs() {
    let doc = doc();
    let examples = json_examples(&doc);
    assert!(
        examples.len() >= 30,
        "found only {} examples",
        examples.len()
    );
    for ex in &examples {
        let name = event_name(ex);
        if ClientEvent::NAMES.contains(&name.as_str()) {
            round_trip::<ClientEvent>(ex);
        } else {
            round_trip::<ServerEvent>(ex);
        }
    }
}

#[test]
fn every_event_has_a_heading_and_an_example_in_the_protocol_doc() {
    let doc = doc();
    let names: Vec<String> = json_examples(&doc).iter().map(|e| event_name(e)).collect();
    for &event in ClientEvent::NAMES.iter().chain(ServerEvent::NAMES) {
        assert!(
            names.iter().any(|n| n == event),
            "no ```json example for `{event}`"
        );
        assert!(
            doc.contains(&format!("#### `{event}`")),
            "no heading for `{event}`"
        );
    }
}

#[test]
fn every_error_code_is_documented() {
    let doc = doc();
    for code in ringside_protocol::ErrorCode::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", code.as_str())),
            "error code {code} missing from the doc table"
        );
    }
}

#[test]
fn seed_003_event_map_is_covered() {
    // The event map of seed 003 (connection is the upgrade itself, see the doc).
    let seed = [
        "session:ack",
        "reconnect:attempt",
        "reconnect:state",
        "ping",
        "pong",
        "room:create",
        "room:created",
        "room:join",
        "room:join:ack",
        "room:player:joined",
        "room:player:left",
        "room:kick",
        "game:start",
        "game:countdown",
        "game:question:show",
        "game:answer:submit",
        "game:answer:ack",
        "game:answer:progress",
        "game:question:reveal",
        "game:leaderboard",
        "game:end",
        "host:pause",
        "host:resume",
        "host:skip:question",
        "host:extend:time",
    ];
    for e in seed {
        assert!(
            ClientEvent::NAMES.contains(&e) || ServerEvent::NAMES.contains(&e),
            "seed event {e} missing"
        );
    }
    assert!(
        doc().contains("`connection`"),
        "the doc explains the seed's `connection` event"
    );
}
