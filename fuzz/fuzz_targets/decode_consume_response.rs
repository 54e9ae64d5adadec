//! Fuzzes `client::decode_consume_response`.
//!
//! Input: two bytes choosing the status (`100 + u16::from_be_bytes(..) % 500`; `[0x00, 0x64]`
//! is 200), then the body. Any input must give `Ok` or `Err`, never a panic.
#![no_main]

use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest),
        _ => return,
    };
    let Ok(status) = StatusCode::from_u16(status) else {
        return;
    };
    let _ = mq_proto::client::decode_consume_response(status, &HeaderMap::new(), body);
});
