//! The RESP2 reader (`edge/src/game/resp.rs`): what a Redis node (or anything at its address)
//! sends, parsed from the whole buffer and again as it arrives in chunks. No panic, no hang, and
//! both give the same values and end the same way.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringside_fuzz::resp::{parse, RespError, Value};

fn run<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Value>, Result<usize, RespError>) {
    let mut buf = BytesMut::new();
    let mut values = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match parse(&mut buf) {
                Ok(Some(v)) => values.push(v),
                Ok(None) => break,
                Err(e) => return (values, Err(e)),
            }
        }
    }
    (values, Ok(buf.len()))
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let whole = run(std::iter::once(data));
    let step = 1 + ctl as usize % 23;
    let chunked = run(data.chunks(step));
    assert_eq!(whole, chunked, "chunks of {step} changed the outcome");
});
