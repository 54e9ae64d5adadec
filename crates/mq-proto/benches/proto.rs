//! Wire-layer benchmarks (criterion): client request building and signing, response
//! decoding, server-side parsing and encoding, each next to a reference measured in the same
//! run over the same bytes — quick-xml's raw event reader (the parsing limit) and HMAC-SHA1
//! alone (the signing limit).
//!
//! `cargo bench -p mq-proto --bench proto` measures and then writes the ratio table
//! (`proto.md`) into `$MQ_BENCH_OUT` (default `target/bench`), which `cargo xtask bench`
//! splices into BENCHMARKS.md. Under `cargo test` every benchmark runs once, as a smoke test.

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{HeaderMap, Method, StatusCode};
use mq_proto::client::{
    Endpoint, RequestContext, ack_request, decode_consume_response_bytes, publish_request,
};
use mq_proto::server::{Operation, authenticate, encode_messages, parse_request_bytes};
use mq_proto::sign::{self, Credentials};
use mq_proto::wire::consume::{AsMessageView, MessageView, PropertiesView};
use mq_proto::{
    AckKind, GroupId, Message, MessageBody, MessageId, Properties, ReceiptHandle, Tag, TextView,
    TopicMessage, TopicName,
};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const GROUP: &str = "proto";

struct Fixtures {
    endpoint: Endpoint,
    credentials: Credentials,
    topic: TopicName,
    group: GroupId,
    date: SystemTime,
    message: TopicMessage,
    /// A signed publish request, as a server receives it.
    publish_target: String,
    publish_headers: HeaderMap,
    publish_body: Bytes,
    /// A consume response with 16 messages of 1 KiB.
    consume_body: Bytes,
    /// The same response without its `MessageBodyMD5` elements: a decode with no body MD5
    /// to verify (PROTOCOL §3.8), to tell the verification's cost from the rest.
    consume_body_unverified: Bytes,
    /// The same 16 messages with bodies of 16 different lengths (1,024 down to 979 bytes):
    /// no two share md5-simd's multi-buffer lanes, each is verified on its own.
    consume_body_mixed: Bytes,
    messages: Vec<Message>,
    /// What a broker keeps of each of `messages` to encode it: the body as its publish
    /// request's parse gave it (marked verbatim) and the properties in wire form.
    stored: Vec<(MessageBody, String)>,
    handles: Vec<ReceiptHandle>,
    string_to_sign: String,
}

/// A 1 KiB JSON-like body, the typical payload.
fn body_1k(seed: usize) -> String {
    let mut s = String::with_capacity(1024);
    let mut i = 0;
    while s.len() < 1000 {
        s.push_str(&format!(
            "{{\"order\":{},\"item\":\"sku-{:05}\",\"qty\":{},\"note\":\"fast and fresh\"}},",
            seed * 100 + i,
            (seed * 7919 + i * 31) % 100_000,
            i % 9 + 1
        ));
        i += 1;
    }
    s.truncate(1024);
    s
}

fn fixtures() -> Fixtures {
    let endpoint: Endpoint = "http://1234567890.mqrest.cn-hangzhou.aliyuncs.com"
        .parse()
        .expect("endpoint");
    let credentials = Credentials::new("LTAI5tBenchAccessKey", "BenchSecretKey0123456789abcdef");
    let topic = TopicName::new("TopicBench").expect("topic");
    let group = GroupId::new("GID_bench").expect("group");
    // A fixed date; the server side is given the same `now` (mq-proto never reads the clock).
    let date = UNIX_EPOCH + Duration::from_secs(1_709_837_398);
    let message = TopicMessage::new(body_1k(0))
        .expect("body")
        .with_tag(Tag::new("TagA").expect("tag"))
        .with_key("order-42")
        .expect("key")
        .with_property("region", "cn-hangzhou")
        .expect("property");
    let ctx = RequestContext {
        endpoint: &endpoint,
        credentials: &credentials,
        instance: None,
        date,
        user_agent: "mq-rust-sdk/bench",
    };
    let req = publish_request(&ctx, &topic, &message);
    let string_to_sign = sign::request_string_to_sign(&req);
    let publish_target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .expect("target");
    let (parts, publish_body) = req.into_parts();
    let messages: Vec<Message> = (0..16)
        .map(|i| {
            let body = body_1k(i + 1);
            Message {
                message_id: MessageId::new(format!("0BC1EF3E1A9C18B4AAC2558D1E4F{i:04X}"))
                    .expect("id"),
                receipt_handle: ReceiptHandle::new(format!(
                    "0BC1EF3E1A9C18B4AAC2558D1E4F{i:04X}-MTcwOTgzODU5ODAwMCAzMDAwMDA="
                ))
                .expect("handle"),
                body_md5: mq_proto::body_md5(&body).into(),
                body: body.into(),
                publish_time: 1_709_837_398_000 + i as u64,
                next_consume_time: 1_709_838_898_000,
                first_consume_time: 1_709_838_598_000,
                consumed_times: 1,
                tag: Some(Tag::new("TagA").expect("tag")),
                properties: Properties::decode("KEYS:order-42|region:cn-hangzhou|")
                    .expect("properties"),
            }
        })
        .collect();
    let stored = messages
        .iter()
        .map(|m| {
            let sent = TopicMessage::new(m.body.as_str()).expect("body");
            let (parts, body) = publish_request(&ctx, &topic, &sent).into_parts();
            let target = parts.uri.path_and_query().expect("target").as_str();
            match parse_request_bytes(&Method::POST, target, &parts.headers, &body) {
                Ok(p) => match p.operation {
                    Operation::Publish(m) => m.message_body().clone(),
                    other => panic!("not a publish: {other:?}"),
                },
                Err(e) => panic!("publish parse: {e:?}"),
            }
        })
        .zip(messages.iter().map(|m| m.properties.encode()))
        .collect();
    let consume_body = encode_messages(&messages);
    let consume_body_unverified = without_element(&consume_body, "MessageBodyMD5");
    let mixed: Vec<Message> = (messages.iter().enumerate())
        .map(|(i, m)| {
            let body = &m.body[..1024 - 3 * i];
            Message {
                body_md5: mq_proto::body_md5(body).into(),
                body: body.into(),
                ..m.clone()
            }
        })
        .collect();
    let consume_body_mixed = encode_messages(&mixed);
    let handles = messages.iter().map(|m| m.receipt_handle.clone()).collect();
    Fixtures {
        endpoint,
        credentials,
        topic,
        group,
        date,
        message,
        publish_target,
        publish_headers: parts.headers,
        publish_body,
        consume_body,
        consume_body_unverified,
        consume_body_mixed,
        messages,
        stored,
        handles,
        string_to_sign,
    }
}

/// `doc` with every `<name>…</name>` element removed.
fn without_element(doc: &[u8], name: &str) -> Bytes {
    let text = std::str::from_utf8(doc).expect("UTF-8 fixture");
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        out.push_str(&rest[..start]);
        let end = rest[start..].find(&close).expect("closed element") + start + close.len();
        rest = &rest[end..];
    }
    out.push_str(rest);
    Bytes::from(out)
}

/// quick-xml's raw event reader over `bytes`: every event, nothing decoded (the limit any
/// XML decoding built on it can reach). Never inlined, so that a profile (callgrind) counts
/// its instructions per call, as it does for the decoders.
#[inline(never)]
fn tokenize(bytes: &[u8]) -> usize {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut events = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) | Err(_) => return events,
            Ok(e) => {
                black_box(&e);
                events += 1;
            }
        }
    }
}

/// As a broker encodes: views of the stored messages (bodies marked verbatim by the publish
/// parse, the MD5's digits plain, properties kept in wire form).
fn server_views(f: &Fixtures) -> Vec<MessageView<'_>> {
    (f.messages.iter().zip(&f.stored))
        .map(|(m, (body, properties))| MessageView {
            body: body.view(),
            body_md5: TextView::from_utf8(m.body_md5.as_bytes()).unwrap_or_default(),
            properties: PropertiesView::Encoded(properties),
            ..m.view()
        })
        .collect()
}

fn benches(c: &mut Criterion, f: &Fixtures) {
    let ctx = RequestContext {
        endpoint: &f.endpoint,
        credentials: &f.credentials,
        instance: None,
        date: f.date,
        user_agent: "mq-rust-sdk/bench",
    };
    let mut g = c.benchmark_group(GROUP);

    g.throughput(Throughput::Bytes(f.publish_body.len() as u64));
    g.bench_function("publish_build", |b| {
        b.iter(|| publish_request(black_box(&ctx), &f.topic, black_box(&f.message)))
    });
    g.bench_function("hmac_sha1_only", |b| {
        b.iter(|| {
            sign::signature(
                black_box(f.credentials.access_key_secret()),
                black_box(&f.string_to_sign),
            )
        })
    });
    g.bench_function("server_parse_publish", |b| {
        b.iter(|| {
            parse_request_bytes(
                &Method::POST,
                black_box(&f.publish_target),
                &f.publish_headers,
                black_box(&f.publish_body),
            )
        })
    });
    g.bench_function("server_verify_parse_publish", |b| {
        b.iter(|| {
            let id = authenticate(
                &Method::POST,
                &f.publish_target,
                &f.publish_headers,
                f.date,
                // As a server does: the key prepared once (`SigningKey`), not per request.
                |_| Some(f.credentials.signing_key()),
            );
            let parsed = parse_request_bytes(
                &Method::POST,
                black_box(&f.publish_target),
                &f.publish_headers,
                black_box(&f.publish_body),
            );
            (id, parsed)
        })
    });
    g.bench_function("tokenize_publish", |b| {
        b.iter(|| tokenize(black_box(&f.publish_body)))
    });

    g.throughput(Throughput::Bytes(f.consume_body.len() as u64));
    g.bench_function("decode_consume_16x1k", |b| {
        b.iter(|| {
            decode_consume_response_bytes(
                StatusCode::OK,
                &HeaderMap::new(),
                black_box(&f.consume_body),
            )
        })
    });
    g.bench_function("tokenize_consume_16x1k", |b| {
        b.iter(|| tokenize(black_box(&f.consume_body)))
    });
    g.bench_function("md5_16x1k", |b| {
        b.iter(|| {
            for m in black_box(&f.messages) {
                black_box(mq_proto::body_md5(&m.body));
            }
        })
    });
    g.bench_function("md5_16x1k_md5_crate", |b| {
        b.iter(|| {
            for m in black_box(&f.messages) {
                black_box(<md5::Md5 as md5::Digest>::digest(m.body.as_bytes()));
            }
        })
    });
    g.throughput(Throughput::Bytes(f.consume_body_mixed.len() as u64));
    g.bench_function("decode_consume_16_mixed", |b| {
        b.iter(|| {
            decode_consume_response_bytes(
                StatusCode::OK,
                &HeaderMap::new(),
                black_box(&f.consume_body_mixed),
            )
        })
    });
    g.bench_function("tokenize_consume_16_mixed", |b| {
        b.iter(|| tokenize(black_box(&f.consume_body_mixed)))
    });
    g.throughput(Throughput::Bytes(f.consume_body_unverified.len() as u64));
    g.bench_function("decode_consume_16x1k_unverified", |b| {
        b.iter(|| {
            decode_consume_response_bytes(
                StatusCode::OK,
                &HeaderMap::new(),
                black_box(&f.consume_body_unverified),
            )
        })
    });
    g.bench_function("tokenize_consume_16x1k_unverified", |b| {
        b.iter(|| tokenize(black_box(&f.consume_body_unverified)))
    });
    g.throughput(Throughput::Bytes(f.consume_body.len() as u64));
    let views = server_views(f);
    g.bench_function("server_encode_consume_16x1k", |b| {
        b.iter(|| encode_messages(black_box(&views)))
    });
    g.bench_function("server_encode_consume_16x1k_escaped", |b| {
        b.iter(|| encode_messages(black_box(&f.messages)))
    });

    g.throughput(Throughput::Elements(16));
    g.bench_function("ack_build_16", |b| {
        b.iter(|| {
            ack_request(
                black_box(&ctx),
                &f.topic,
                &f.group,
                AckKind::Ack,
                black_box(&f.handles),
            )
        })
    });
    g.finish();
}

/// Where criterion keeps its results: the same rule criterion uses (`CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    target_dir().join("criterion")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// The median time per iteration of one benchmark, from criterion's `estimates.json`.
fn median(name: &str) -> Option<Duration> {
    let path = criterion_dir()
        .join(GROUP)
        .join(name)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ns = v.get("median")?.get("point_estimate")?.as_f64()?;
    Some(Duration::from_secs_f64(ns / 1e9))
}

fn fmt_time(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn mib_s(bytes: usize, d: Duration) -> String {
    format!("{:.0}", bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0))
}

/// The Markdown table of the results, or why there is none.
fn table(f: &Fixtures) -> Result<String, String> {
    let get = |name: &str| median(name).ok_or_else(|| format!("no estimate for {GROUP}/{name}"));
    let publish_build = get("publish_build")?;
    let hmac = get("hmac_sha1_only")?;
    let parse = get("server_parse_publish")?;
    let verify_parse = get("server_verify_parse_publish")?;
    let tok_publish = get("tokenize_publish")?;
    let decode = get("decode_consume_16x1k")?;
    let tok_consume = get("tokenize_consume_16x1k")?;
    let md5 = get("md5_16x1k")?;
    let md5_crate = get("md5_16x1k_md5_crate")?;
    let decode_mixed = get("decode_consume_16_mixed")?;
    let tok_mixed = get("tokenize_consume_16_mixed")?;
    let decode_unverified = get("decode_consume_16x1k_unverified")?;
    let tok_unverified = get("tokenize_consume_16x1k_unverified")?;
    let encode = get("server_encode_consume_16x1k")?;
    let encode_escaped = get("server_encode_consume_16x1k_escaped")?;
    let ack = get("ack_build_16")?;
    let pct = |reference: Duration, ours: Duration| {
        format!(
            "{:.0}%",
            100.0 * reference.as_secs_f64() / ours.as_secs_f64()
        )
    };
    let (pb, cb, cu, cm) = (
        f.publish_body.len(),
        f.consume_body.len(),
        f.consume_body_unverified.len(),
        f.consume_body_mixed.len(),
    );
    let mut t = String::new();
    t.push_str("| Operation | Bytes | Median time | MiB/s | Reference (same run) | Reference time | Ours at % of reference throughput | Target |\n");
    t.push_str("|---|---:|---:|---:|---|---:|---:|---|\n");
    let mut row = |op: &str,
                   bytes: usize,
                   ours: Duration,
                   reference: &str,
                   rt: Option<Duration>,
                   target: &str| {
        let (rt_s, p) = match rt {
            Some(r) => (fmt_time(r), pct(r, ours)),
            None => ("—".into(), "—".into()),
        };
        t.push_str(&format!(
            "| {op} | {bytes} | {} | {} | {reference} | {rt_s} | {p} | {target} |\n",
            fmt_time(ours),
            mib_s(bytes, ours)
        ));
    };
    row(
        "Decode consume response, 16 × 1 KiB (client)",
        cb,
        decode,
        "quick-xml raw events, same bytes",
        Some(tok_consume),
        "≥ 50%",
    );
    row(
        "Decode the same without `MessageBodyMD5` (nothing to verify)",
        cu,
        decode_unverified,
        "quick-xml raw events, same bytes",
        Some(tok_unverified),
        "—",
    );
    row(
        "Decode the same with bodies of 16 different lengths (each verified on its own)",
        cm,
        decode_mixed,
        "quick-xml raw events, same bytes",
        Some(tok_mixed),
        "—",
    );
    row(
        "MD5 of the 16 bodies one after another (md5-simd single stream)",
        16 * 1024,
        md5,
        "quick-xml raw events, the whole response",
        Some(tok_consume),
        "—",
    );
    row(
        "MD5 of the 16 bodies one after another (md5-simd single stream)",
        16 * 1024,
        md5,
        "md-5 crate (RustCrypto), same bodies",
        Some(md5_crate),
        "—",
    );
    row(
        "Parse publish request (server)",
        pb,
        parse,
        "quick-xml raw events, same body",
        Some(tok_publish),
        "≥ 50%",
    );
    row(
        "Verify signature + parse publish (server)",
        pb,
        verify_parse,
        "quick-xml raw events, same body",
        Some(tok_publish),
        "—",
    );
    row(
        "Sign + build publish request, 1 KiB body (client)",
        pb,
        publish_build,
        "HMAC-SHA1 of the string to sign alone",
        Some(hmac),
        "—",
    );
    row(
        "Build ack of 16 handles (client)",
        0,
        ack,
        "HMAC-SHA1 of the string to sign alone",
        Some(hmac),
        "—",
    );
    row(
        "Encode consume response, 16 × 1 KiB (server: stored bodies, verbatim)",
        cb,
        encode,
        "—",
        None,
        "—",
    );
    row(
        "Encode the same from owned messages (every body scanned for escapes)",
        cb,
        encode_escaped,
        "—",
        None,
        "—",
    );
    Ok(t)
}

fn main() {
    let f = fixtures();
    // Sanity: the fixtures decode to what was encoded (also under `cargo test`).
    let decoded = decode_consume_response_bytes(StatusCode::OK, &HeaderMap::new(), &f.consume_body)
        .expect("decode fixture");
    assert_eq!(decoded, f.messages, "fixture round trip");
    // The broker's encoding takes the verbatim path and writes the same document.
    assert!(f.stored.iter().all(|(body, _)| body.is_verbatim()));
    assert_eq!(encode_messages(&server_views(&f)), f.consume_body);
    assert!(tokenize(&f.consume_body) > 16 * 10);
    let mixed =
        decode_consume_response_bytes(StatusCode::OK, &HeaderMap::new(), &f.consume_body_mixed)
            .expect("decode fixture of mixed lengths");
    let lengths: std::collections::BTreeSet<usize> = mixed.iter().map(|m| m.body.len()).collect();
    assert_eq!(lengths.len(), 16, "16 different body lengths");
    let unverified = decode_consume_response_bytes(
        StatusCode::OK,
        &HeaderMap::new(),
        &f.consume_body_unverified,
    )
    .expect("decode fixture without MD5");
    assert!(
        unverified
            .iter()
            .zip(&f.messages)
            .all(|(u, m)| u.body == m.body && u.body_md5.is_empty()),
        "the MD5-less fixture carries the same bodies and no MD5"
    );

    let measuring = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c, &f);
    c.final_summary();
    if !measuring {
        return;
    }
    let out_dir = std::env::var_os("MQ_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench"));
    match table(&f) {
        Ok(t) => {
            let path = out_dir.join("proto.md");
            if let Err(e) =
                std::fs::create_dir_all(&out_dir).and_then(|()| std::fs::write(&path, &t))
            {
                eprintln!("proto bench: cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
            println!("\n{t}\nwritten to {}", path.display());
        }
        // A filtered run (`cargo bench -- decode`) measures only some benchmarks.
        Err(e) => eprintln!("proto bench: no table ({e})"),
    }
}
