//! The RFC 6455 frame decoder (`edge/src/ws/frame.rs`): a client's byte stream fed to
//! [`Decoder::feed`] whole and again in chunks of 1..=17 bytes (as reads split it). Neither may
//! panic, and both must deliver the same events and end the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringside_fuzz::frame::{Decoder, Event, Flow, Limits, MessageKind, ProtocolError};

#[derive(Debug, PartialEq)]
enum Seen {
    Message(MessageKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn own(ev: Event<'_>) -> Seen {
    match ev {
        Event::Message { kind, payload } => Seen::Message(kind, payload.to_vec()),
        Event::Ping(p) => Seen::Ping(p.to_vec()),
        Event::Pong(p) => Seen::Pong(p.to_vec()),
        Event::Close { code, reason } => Seen::Close(code, reason.to_string()),
    }
}

/// Feeds `chunks` in order; returns the events and how the stream ended.
fn run<'a>(
    chunks: impl Iterator<Item = &'a [u8]>,
    limits: &Limits,
) -> (Vec<Seen>, Result<bool, ProtocolError>) {
    let mut dec = Decoder::new();
    let mut seen = Vec::new();
    for c in chunks {
        let mut data = c.to_vec();
        match dec.feed(&mut data, limits, |ev| {
            seen.push(own(ev));
            Flow::Continue
        }) {
            Ok(feed) if feed.stopped => return (seen, Ok(true)),
            Ok(_) => {}
            Err(e) => {
                // Every error maps to a valid close code and a reason the edge can send.
                let _ = (e.close_code(), e.reason());
                return (seen, Err(e));
            }
        }
        dec.shrink();
    }
    assert!(dec.leftover_len() < 14 + limits.max_frame + 1);
    (seen, Ok(false))
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    // Small limits reach the size checks with short inputs.
    let limits = match ctl & 3 {
        0 => Limits::GAME,
        1 => Limits {
            max_frame: 125,
            max_message: 300,
        },
        2 => Limits {
            max_frame: 16,
            max_message: 16,
        },
        _ => Limits {
            max_frame: 300,
            max_message: 40,
        },
    };
    let whole = run(std::iter::once(data), &limits);
    let step = 1 + (ctl >> 2) as usize % 17;
    let chunked = run(data.chunks(step), &limits);
    assert_eq!(whole, chunked, "chunks of {step} changed the outcome");
});
