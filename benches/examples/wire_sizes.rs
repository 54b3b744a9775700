//! Prints bytes on the wire per event for both codecs, using the JSON examples of docs/protocol.md.
//! Run: `cargo run -p ringside-benches --example wire_sizes`

use ringside_protocol::envelope::decode;
use ringside_protocol::events::Event;
use ringside_protocol::{ClientEvent, Codec, ServerEvent};

fn main() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .unwrap();
    let mut in_block = false;
    let mut body = String::new();
    println!("| event | JSON bytes | MessagePack bytes | ratio |\n|---|---|---|---|");
    for line in doc.lines() {
        match (in_block, line.trim_end()) {
            (false, "```json") => in_block = true,
            (true, "```") => {
                in_block = false;
                let name = body.split('"').nth(3).unwrap_or("").to_string();
                let (j, m) = if ClientEvent::NAMES.contains(&name.as_str()) {
                    let e =
                        decode::<ClientEvent>(Codec::Json, &mut body.clone().into_bytes()).unwrap();
                    (e.to_json().len(), e.to_msgpack().len())
                } else {
                    let e =
                        decode::<ServerEvent>(Codec::Json, &mut body.clone().into_bytes()).unwrap();
                    (e.to_json().len(), e.to_msgpack().len())
                };
                println!("| `{name}` | {j} | {m} | {:.2} |", m as f64 / j as f64);
                body.clear();
            }
            (true, l) => {
                body.push_str(l);
            }
            _ => {}
        }
    }
}
