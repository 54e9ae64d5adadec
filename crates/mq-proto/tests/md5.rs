//! The MD5 of `MessageBodyMD5` (PROTOCOL §3.8), computed by md5-simd's kernels, against the
//! RustCrypto `md-5` crate as the reference: the single-stream digest of any body, and the
//! consume decode's batched verification (equal-length bodies share the multi-buffer lanes)
//! judging every message as a check of one body at a time would.

use http::{HeaderMap, StatusCode};
use md5::{Digest, Md5};
use mq_proto::Entry;
use mq_proto::client::decode_consume_entries;
use proptest::prelude::*;

fn reference(body: &str) -> String {
    Md5::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn consume_document(messages: &[(String, String)]) -> Vec<u8> {
    let mut d = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Messages xmlns="http://mq.aliyuncs.com/doc/v1/">"#,
    );
    for (n, (body, md5)) in messages.iter().enumerate() {
        d.push_str(&format!(
            "<Message><MessageId>ID{n}</MessageId><ReceiptHandle>ID{n}-h</ReceiptHandle>\
             <MessageBodyMD5>{md5}</MessageBodyMD5><MessageBody>{body}</MessageBody>\
             <PublishTime>1</PublishTime><NextConsumeTime>2</NextConsumeTime>\
             <FirstConsumeTime>1</FirstConsumeTime><ConsumedTimes>1</ConsumedTimes></Message>"
        ));
    }
    d.push_str("</Messages>");
    d.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every length class of the kernels: empty, under one block, block boundaries (55, 56,
    /// 63, 64 bytes of padding), several blocks, multi-byte characters.
    #[test]
    fn body_md5_is_the_reference_md5(body in "(.|[a-z]{60,70}){0,120}") {
        prop_assert_eq!(mq_proto::body_md5(&body), reference(&body));
    }

    /// Batches of up to 40 bodies, all of one length or of mixed lengths, some of them with
    /// a wrong or lower-case digest: exactly the wrong ones are poison.
    #[test]
    fn batched_verification_judges_each_body(
        same_length in any::<bool>(),
        bodies in prop::collection::vec(("[a-z0-9]{1,200}", 0u8..4), 1..40),
    ) {
        let len = bodies[0].0.len();
        let messages: Vec<(String, String, bool)> = bodies
            .iter()
            .map(|(b, kind)| {
                let body = if same_length { format!("{:a<len$}", &b[..b.len().min(len)]) } else { b.clone() };
                let (md5, good) = match kind {
                    0 => (reference(&format!("{body}!")), false),
                    1 => (reference(&body).to_lowercase(), true),
                    _ => (reference(&body), true),
                };
                (body, md5, good)
            })
            .collect();
        let doc = consume_document(
            &messages.iter().map(|(b, m, _)| (b.clone(), m.clone())).collect::<Vec<_>>(),
        );
        let got = decode_consume_entries(StatusCode::OK, &HeaderMap::new(), &doc)
            .expect("the document decodes");
        prop_assert_eq!(got.len(), messages.len());
        for (e, (body, _, good)) in got.iter().zip(&messages) {
            match e {
                Entry::Message(m) => {
                    prop_assert!(*good);
                    prop_assert_eq!(&*m.body, body.as_str());
                    prop_assert!(m.body_md5_matches());
                }
                Entry::Poison(p) => {
                    prop_assert!(!*good, "{:?}", p);
                    prop_assert!(p.reason.to_string().contains(&reference(body)), "{}", p.reason);
                }
            }
        }
    }
}
