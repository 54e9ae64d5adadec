//! Fuzzes `server::parse_request` and `server::authenticate`.
//!
//! Input: one byte choosing the method (`% 4`: GET, POST, DELETE, PUT), the request-target up
//! to the first `\n`, then header lines `name: value\n` up to an empty line, then the body.
//! Any input must give `Ok` or `Err`, never a panic.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

/// Sun, 22 Nov 2026 22:07:39 GMT: the date of the capture seeds, so their signatures verify.
const NOW_SECS: u64 = 1_795_385_259;

fn split_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = data.iter().position(|&b| b == b'\n')?;
    Some((&data[..i], &data[i + 1..]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = match m % 4 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::DELETE,
        _ => Method::PUT,
    };
    let (target, mut rest) = split_line(rest).unwrap_or((rest, &[]));
    let target = String::from_utf8_lossy(target);
    let mut headers = HeaderMap::new();
    while let Some((line, after)) = split_line(rest) {
        rest = after;
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let body = rest;
    let _ = mq_proto::server::parse_request(&method, &target, &headers, body);
    let now = UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    let _ = mq_proto::server::authenticate(&method, &target, &headers, now, |id| {
        (id == "testAK").then(|| "testSK".to_owned())
    });
});
