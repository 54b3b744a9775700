//! The HTTP request head parser and WebSocket upgrade (`edge/src/ws/handshake.rs`
//! `parse_request`): no panic; a parsed head lies within the buffer, and parsing just that head
//! gives the same answer; every refusal renders a response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringside_fuzz::handshake::{parse_request, switching_protocols, HandshakePolicy, Request};

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let policy = HandshakePolicy {
        allowed_origins: if ctl & 1 == 0 {
            Vec::new()
        } else {
            vec![
                "https://quiz.example".into(),
                "http://localhost:8080".into(),
            ]
        },
        require_subprotocol: ctl & 2 != 0,
        max_header_bytes: if ctl & 4 == 0 { 8192 } else { 64 },
    };
    match parse_request(data, &policy) {
        Ok(Some((req, head_len))) => {
            assert!(head_len <= data.len());
            if let Request::Upgrade(u) = &req {
                assert_eq!(u.accept.len(), 28);
                let _ = switching_protocols(u);
                let _ = u.query_param("token");
            }
            let again = parse_request(&data[..head_len], &policy);
            assert_eq!(again, Ok(Some((req, head_len))));
        }
        Ok(None) => assert!(data.len() < policy.max_header_bytes),
        Err(e) => {
            assert!((400..=499).contains(&e.status), "status {}", e.status);
            let _ = e.response();
        }
    }
});
