//! Every case of `tests/data/signature_vectors.json` (PROTOCOL §2.7): the string to sign, the
//! Authorization value, verification, and rejection of tampered inputs.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use mq_proto::sign::{self, Credentials};
use serde_json::Value;

struct Case {
    name: String,
    access_key_id: String,
    secret: String,
    method: Method,
    resource: String,
    headers: HeaderMap,
    string_to_sign: String,
    authorization: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/signature_vectors.json"
    ))
    .expect("vectors file");
    let json: Value = serde_json::from_str(&text).expect("vectors JSON");
    let cases = json["cases"].as_array().expect("cases array");
    cases
        .iter()
        .map(|c| {
            let mut headers = HeaderMap::new();
            for (k, v) in c["signed_headers"].as_object().expect("headers") {
                headers.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(v.as_str().expect("header value")).expect("value"),
                );
            }
            let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("{k}")).to_owned();
            Case {
                name: s("name"),
                access_key_id: s("access_key_id"),
                secret: s("access_key_secret"),
                method: Method::from_bytes(s("method").as_bytes()).expect("method"),
                resource: s("resource"),
                headers,
                string_to_sign: s("string_to_sign"),
                authorization: s("authorization"),
            }
        })
        .collect()
}

#[test]
fn there_are_fourteen_cases() {
    assert_eq!(cases().len(), 14);
}

#[test]
fn string_to_sign_matches_every_vector() {
    for c in cases() {
        let got = sign::string_to_sign(&c.method, &c.headers, &c.resource);
        assert_eq!(got, c.string_to_sign, "case {}", c.name);
    }
}

#[test]
fn client_signing_produces_the_expected_authorization() {
    for c in cases() {
        let creds = Credentials::new(&c.access_key_id, &c.secret);
        let info = sign::sign_request(&creds, &c.method, &c.headers, &c.resource);
        assert_eq!(info.string_to_sign, c.string_to_sign, "case {}", c.name);
        assert_eq!(info.authorization, c.authorization, "case {}", c.name);
        let sig = sign::signature(&c.secret, &c.string_to_sign);
        assert_eq!(
            sign::authorization(&c.access_key_id, &sig),
            c.authorization,
            "case {}",
            c.name
        );
    }
}

fn provided_signature(c: &Case) -> &str {
    c.authorization
        .split_once(':')
        .map(|(_, sig)| sig)
        .expect("MQ id:sig")
}

/// Changes one byte of `s` at `i` into another character of the same class, keeping the
/// length (and base64 validity for letters and digits).
fn flip(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = match b[i] {
        b'A' => b'B',
        b'z' => b'y',
        b'9' => b'8',
        b'\n' => b'x',
        x if x.is_ascii_alphanumeric() => x ^ 1,
        _ => b'Q',
    };
    String::from_utf8(b).expect("ascii")
}

#[test]
fn server_verification_accepts_and_rejects_tampering() {
    for c in cases() {
        let sig = provided_signature(&c);
        assert!(
            sign::verify_signature(&c.secret, &c.string_to_sign, sig),
            "case {}",
            c.name
        );
        for i in 0..sig.len() - 1 {
            // The last character carries padding bits only partly; every other position must
            // change the decoded digest.
            let bad = flip(sig, i);
            assert!(
                !sign::verify_signature(&c.secret, &c.string_to_sign, &bad),
                "case {} accepted signature tampered at {i}: {bad}",
                c.name
            );
        }
        for i in [0, c.string_to_sign.len() / 2, c.string_to_sign.len() - 1] {
            let bad = flip(&c.string_to_sign, i);
            assert!(
                !sign::verify_signature(&c.secret, &bad, sig),
                "case {} accepted string to sign tampered at {i}",
                c.name
            );
        }
        assert!(!sign::verify_signature(
            "wrong-secret",
            &c.string_to_sign,
            sig
        ));
    }
}

#[test]
fn security_token_is_not_signed() {
    let all = cases();
    let with = all
        .iter()
        .find(|c| c.name == "security_token_not_signed")
        .expect("case");
    let mut without = with.headers.clone();
    assert!(without.remove("security-token").is_some());
    assert_eq!(
        sign::string_to_sign(&with.method, &without, &with.resource),
        with.string_to_sign
    );
}
