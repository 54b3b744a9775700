//! Both envelope decoders (`protocol/src/envelope.rs`): each input is decoded as JSON (simd-json,
//! which parses in place) and as MessagePack, as a client event (`decode_request`, what the edge
//! runs) and as a server event (what clients run). No panic; an event that decodes re-encodes and
//! decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringside_protocol::envelope::{decode, decode_request, Codec};
use ringside_protocol::events::Event;
use ringside_protocol::{ClientEvent, ServerEvent};

fn check<E: Event + std::fmt::Debug + PartialEq>(codec: Codec, data: &[u8]) {
    let mut body = data.to_vec();
    if let Ok(env) = decode_request::<E>(codec, &mut body) {
        let mut again = env.encode(codec);
        let back = decode::<E>(codec, &mut again)
            .unwrap_or_else(|e| panic!("{codec:?} re-encoding of {env:?} does not decode: {e}"));
        assert_eq!(back, env, "{codec:?} round trip changed the envelope");
    }
}

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::Json, Codec::Msgpack] {
        check::<ClientEvent>(codec, data);
        check::<ServerEvent>(codec, data);
    }
});
