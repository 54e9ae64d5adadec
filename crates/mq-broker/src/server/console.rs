//! The web console at `/console/` (issue 15): static pages embedded in the binary, which
//! show and steer the broker through the admin API only (so nothing they show is computed
//! twice), and the one admin call the console needs that the admin API lacks — publishing
//! a test message.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /console` | 308 to `/console/` |
//! | `GET /console/`, `GET /console/{asset}` | the page and its CSS and JS modules (`Cache-Control: no-cache`, a content type, `nosniff`, a CSP allowing only this origin); unauthenticated: they hold no data. 404 with `--admin off` |
//! | `POST /admin/topics/{topic}/messages[?ns=I]` | authenticated like every admin call; body `{"body", "tag"?, "key"?, "sharding_key"? (a FIFO topic's `__SHARDINGKEY`), "properties"?: {name: value}, "delay_ms"? \| "deliver_at_ms"?, "transactional"?, "check_immunity_s"?}`; published through the same backend call as the protocol's publish: `{"message_id", "body_md5", "receipt_handle"}` (a handle for a transactional message only) |
//!
//! Browsers cannot set `Date` (a forbidden header name in the Fetch standard), so a signed
//! admin call from the console carries its date as `x-mq-date`; [`with_signed_date`] lets
//! the admin API read it there.

use super::admin::{self, AdminError, Params};
use super::backend::Waiting;
use super::state::Shared;
use crate::core::{Call, Outcome};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use mq_proto::{Tag, TopicMessage, TopicName, TransCheckImmunity};
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The path the console is served under.
pub(super) const CONSOLE_PATH: &str = "/console/";

/// The embedded assets: path under `/console/`, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 7] = [
    (
        "",
        "text/html;charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "console.css",
        "text/css;charset=utf-8",
        include_bytes!("../../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript;charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript;charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "ui.js",
        "text/javascript;charset=utf-8",
        include_bytes!("../../console/ui.js"),
    ),
    (
        "pages.js",
        "text/javascript;charset=utf-8",
        include_bytes!("../../console/pages.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../console/favicon.svg"),
    ),
];

/// Scripts, styles, images and calls from this origin only; no inline script, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Whether [`handle`] answers this request: the console's pages, and the admin call it
/// adds (`POST /admin/topics/{topic}/messages`).
pub(super) fn serves(method: &Method, path: &str) -> bool {
    path == "/console" || path.starts_with(CONSOLE_PATH) || is_publish(method, path)
}

fn is_publish(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && path
            .strip_prefix("/admin/topics/")
            .and_then(|rest| rest.strip_suffix("/messages"))
            .is_some_and(|topic| !topic.is_empty() && !topic.contains('/'))
}

/// Answers a request [`serves`] accepted. `operation` (the `mq_requests_total` label)
/// becomes `console` for the pages, and `admin` for the publish call once it is authorized
/// (a refused one keeps the caller's, `refused`).
pub(super) async fn handle(
    shared: &Shared,
    rid: &str,
    req: Request<Incoming>,
    target: &str,
    operation: &mut &'static str,
) -> Response<Full<Bytes>> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if is_publish(req.method(), path) {
        let answer = publish(shared, req, target, path, query, operation).await;
        let close = answer.as_ref().is_err_and(|(_, close)| *close);
        let mut resp = admin::answer(rid, answer.map_err(|(e, _)| e));
        if close {
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        return resp;
    }
    *operation = "console";
    let resp = if shared.admin.is_none() {
        text(
            StatusCode::NOT_FOUND,
            "the console needs the admin API, which is off (--admin off)\n",
            rid,
        )
    } else {
        asset(req.method(), path, rid)
    };
    let (parts, body) = req.into_parts();
    super::admission::without_body(shared, &parts.headers, body, resp).await
}

/// A plain-text answer.
fn text(status: StatusCode, body: &'static str, rid: &str) -> Response<Full<Bytes>> {
    super::admission::plain(
        status,
        "text/plain;charset=utf-8",
        Bytes::from_static(body.as_bytes()),
        rid,
    )
}

/// A static answer: an asset, the redirect to `/console/`, 404 or 405.
fn asset(method: &Method, path: &str, rid: &str) -> Response<Full<Bytes>> {
    if *method != Method::GET && *method != Method::HEAD {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console's pages take GET\n",
            rid,
        );
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == "/console" {
        let mut resp = text(
            StatusCode::PERMANENT_REDIRECT,
            "the console is at /console/\n",
            rid,
        );
        resp.headers_mut()
            .insert(LOCATION, HeaderValue::from_static(CONSOLE_PATH));
        return resp;
    }
    let name = path.strip_prefix(CONSOLE_PATH).unwrap_or(path);
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return text(StatusCode::NOT_FOUND, "no such page in the console\n", rid);
    };
    // Also for `HEAD`: the `Content-Length` a `GET` carries (RFC 9110 §8.6), no content
    // sent (hyper drops it, see `admission::handle`).
    let body = Bytes::from_static(bytes);
    let mut resp = super::admission::plain(StatusCode::OK, content_type, body, rid);
    let headers = resp.headers_mut();
    // Revalidate every time: a broker upgraded under an open tab serves its own assets.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    resp
}

/// `headers`, with `Date` taken from `x-mq-date` when a request has no `Date` (browsers
/// cannot send one). The string to sign is built as always: its `Date` line is that value,
/// and `x-mq-date`, like every `x-mq-*` header, is signed too; the 15-minute window applies.
pub(super) fn with_signed_date(headers: &HeaderMap) -> Cow<'_, HeaderMap> {
    match headers.get("x-mq-date") {
        Some(date) if !headers.contains_key(http::header::DATE) => {
            let mut owned = headers.clone();
            owned.insert(http::header::DATE, date.clone());
            Cow::Owned(owned)
        }
        _ => Cow::Borrowed(headers),
    }
}

/// The body of `POST /admin/topics/{topic}/messages`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    body: String,
    tag: Option<String>,
    key: Option<String>,
    /// The sharding key (`__SHARDINGKEY`) a FIFO topic orders by.
    sharding_key: Option<String>,
    /// A name given twice is refused (a map would keep the last one silently).
    #[serde(default, deserialize_with = "unique_properties")]
    properties: BTreeMap<String, String>,
    /// Delivery this many ms after the broker's now.
    delay_ms: Option<u64>,
    /// Delivery at this time, epoch ms.
    deliver_at_ms: Option<u64>,
    #[serde(default)]
    transactional: bool,
    /// The first transaction check's delay, seconds (10..=300; default 10).
    check_immunity_s: Option<u64>,
}

/// `properties` as a JSON object whose names are all different.
fn unique_properties<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of property names and string values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut properties = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                if properties.contains_key(&name) {
                    return Err(serde::de::Error::custom(format!(
                        "property {name:?} is given twice"
                    )));
                }
                properties.insert(name, value);
            }
            Ok(properties)
        }
    }
    deserializer.deserialize_map(Unique)
}

/// An admin error, and whether the connection must close (part of the body left unread).
type Refused = (AdminError, bool);

async fn publish(
    shared: &Shared,
    req: Request<Incoming>,
    target: &str,
    path: &str,
    query: &str,
    operation: &mut &'static str,
) -> Result<serde_json::Value, Refused> {
    let (parts, body) = req.into_parts();
    let unread = !hyper::body::Body::is_end_stream(&body);
    let producer =
        admin::authorize(shared, &parts.method, target, &parts.headers).map_err(|e| (e, unread))?;
    *operation = admin::OPERATION;
    let invalid = |m: String| (AdminError::invalid(m), false);
    let params = Params::parse(query).map_err(|e| (e, unread))?;
    let instance = admin::instance_param(&params).map_err(|e| (e, unread))?;
    let bytes = super::admission::read_body(shared, body)
        .await
        .map_err(|e| (AdminError::from(e), true))?;
    // The signature covers `Content-MD5`, not the body: the body must match it, as on the
    // protocol's paths (400 `InvalidDigest`).
    mq_proto::server::check_content_md5(&parts.headers, &bytes)
        .map_err(|e| (AdminError::from(e), false))?;
    let topic = path
        .strip_prefix("/admin/topics/")
        .and_then(|rest| rest.strip_suffix("/messages"))
        .unwrap_or_default();
    let topic = percent_encoding::percent_decode_str(topic)
        .decode_utf8()
        .map_err(|_| invalid(format!("topic {topic:?} is not UTF-8")))
        .and_then(|t| TopicName::new(t.as_ref()).map_err(|e| invalid(e.to_string())))?;
    let request: PublishRequest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("the body is not a message to publish: {e}")))?;
    let message = message(request, shared.clock.now_ms()).map_err(invalid)?;
    // The trace names the AccessKey that signed it (none for the admin token).
    let call = Call::Publish {
        instance,
        topic,
        message,
        producer,
    };
    let waiting = Waiting::new(shared, std::time::Instant::now());
    match shared.backend.serve(call, waiting).await {
        Ok(Outcome::Published(p)) => Ok(json!({
            "message_id": p.message_id.as_str(),
            "body_md5": p.body_md5,
            "receipt_handle": p.receipt_handle.as_ref().map(|h| h.as_str()),
        })),
        Ok(_) => Err((
            AdminError::from(mq_proto::wire::error::RequestError::new(
                mq_proto::ErrorCode::InternalError,
                "the backend answered a publish with no receipt",
            )),
            false,
        )),
        Err(e) => Err((AdminError::from(e), false)),
    }
}

/// The message a [`PublishRequest`] describes, `now_ms` being the broker's clock.
fn message(r: PublishRequest, now_ms: u64) -> Result<TopicMessage, String> {
    let mut m = TopicMessage::new(r.body).map_err(|e| e.to_string())?;
    // An empty one is refused, as on the protocol's paths (an empty `__SHARDINGKEY` is
    // 400 there), not taken for none: leave the field out for none.
    for (field, value) in [
        ("tag", &r.tag),
        ("key", &r.key),
        ("sharding_key", &r.sharding_key),
    ] {
        if value.as_deref() == Some("") {
            return Err(format!("{field} is empty: leave it out for none"));
        }
    }
    if let Some(tag) = r.tag {
        m = m.with_tag(Tag::new(&tag).map_err(|e| format!("tag {tag:?}: {e}"))?);
    }
    if let Some(key) = r.key {
        m = m.with_key(key).map_err(|e| format!("key: {e}"))?;
    }
    if let Some(key) = r.sharding_key {
        m = m
            .with_sharding_key(key)
            .map_err(|e| format!("sharding_key: {e}"))?;
    }
    for (name, value) in r.properties {
        m = m
            .with_property(name.as_str(), value)
            .map_err(|e| format!("property {name:?}: {e}"))?;
    }
    match (r.delay_ms, r.deliver_at_ms) {
        (Some(_), Some(_)) => return Err("give delay_ms or deliver_at_ms, not both".to_owned()),
        (Some(delay), None) => m = m.with_start_deliver_time(now_ms.saturating_add(delay)),
        (None, Some(at)) => m = m.with_start_deliver_time(at),
        (None, None) => {}
    }
    match (r.transactional, r.check_immunity_s) {
        (false, Some(_)) => {
            return Err("check_immunity_s applies to a transactional message only".to_owned());
        }
        (false, None) => {}
        (true, seconds) => {
            let seconds = u32::try_from(seconds.unwrap_or(10)).unwrap_or(u32::MAX);
            m = m.with_trans_check_immunity(
                TransCheckImmunity::new(seconds).map_err(|e| format!("check_immunity_s: {e}"))?,
            );
        }
    }
    m.check_schedule(now_ms).map_err(|e| e.to_string())?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> PublishRequest {
        serde_json::from_value(json).expect("a publish request")
    }

    /// Fresh-eyes finding: `{"a":"1","a":"2"}` kept `a=2` silently.
    #[test]
    fn a_property_name_given_twice_is_refused() {
        let twice = r#"{"body": "x", "properties": {"a": "1", "a": "2"}}"#;
        let err = serde_json::from_str::<PublishRequest>(twice)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("property \"a\" is given twice"),
            "{err}"
        );
        let once = r#"{"body": "x", "properties": {"a": "1", "b": "2"}}"#;
        let request = serde_json::from_str::<PublishRequest>(once).expect("accepted");
        assert_eq!(request.properties.len(), 2);
    }

    #[test]
    fn a_publish_request_becomes_the_protocol_message() {
        let m = message(
            request(json!({
                "body": "hi", "tag": "A", "key": "k1", "sharding_key": "order-7",
                "properties": {"color": "red"},
                "delay_ms": 5000, "transactional": true, "check_immunity_s": 20
            })),
            1_000,
        )
        .expect("valid");
        assert_eq!(m.tag().map(Tag::as_str), Some("A"));
        assert_eq!(m.key(), Some("k1"));
        assert_eq!(m.sharding_key(), Some("order-7"));
        assert_eq!(m.properties().get("color"), Some("red"));
        assert_eq!(m.start_deliver_time(), Some(6_000));
        assert_eq!(m.trans_check_immunity().map(|i| i.get()), Some(20));
    }

    #[test]
    fn a_bad_publish_request_is_refused_with_the_reason() {
        for (bad, says) in [
            (json!({"body": ""}), "empty"),
            (json!({"body": "x", "tag": "a||b"}), "tag"),
            (json!({"body": "x", "tag": ""}), "tag is empty"),
            (json!({"body": "x", "key": ""}), "key is empty"),
            (
                json!({"body": "x", "sharding_key": ""}),
                "sharding_key is empty",
            ),
            (
                json!({"body": "x", "delay_ms": 1, "deliver_at_ms": 2}),
                "not both",
            ),
            (
                json!({"body": "x", "check_immunity_s": 20}),
                "transactional",
            ),
            (
                json!({"body": "x", "transactional": true, "check_immunity_s": 5}),
                "",
            ),
            (
                json!({"body": "x", "properties": {"__STARTDELIVERTIME": "1"}}),
                "",
            ),
            (json!({"body": "x", "deliver_at_ms": u64::MAX}), ""),
        ] {
            let err = message(request(bad.clone()), 1_000).expect_err(&bad.to_string());
            assert!(err.to_lowercase().contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_browser_date_is_read_only_when_date_is_absent() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-mq-date",
            HeaderValue::from_static("Tue, 01 Dec 2026 12:00:00 GMT"),
        );
        assert_eq!(
            with_signed_date(&h).get(http::header::DATE),
            h.get("x-mq-date")
        );
        h.insert(http::header::DATE, HeaderValue::from_static("other"));
        assert_eq!(
            with_signed_date(&h)
                .get(http::header::DATE)
                .map(|v| v.as_bytes()),
            Some(&b"other"[..])
        );
    }
}
