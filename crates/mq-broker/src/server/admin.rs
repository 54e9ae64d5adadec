//! The admin API under `/admin/` (JSON; off the protocol's paths, so the official SDKs never
//! meet it). Every call is signed like a protocol call (PROTOCOL §2.5) by a configured
//! credential that is not limited to an instance, or carries `Authorization: Bearer <token>`
//! (the admin token, generated at start unless configured); nothing changes state through a
//! `GET`. With `--admin off` every `/admin/…` call is 404.
//!
//! | call | what |
//! | --- | --- |
//! | `GET /admin/clock` | `{"now_ms", "offset_ms", "test_clock"}`: the broker's clock |
//! | `POST /admin/clock?advance_ms=N` | moves a test clock (`--test-clock`) forward by N ms; what came due (delayed messages, redeliveries, transaction checks) happens at once; journaled with `--data-dir` (a restart goes on from there); answers as `GET` |
//! | `POST /admin/topics/{topic}/purge[?ns=I]` | drops every message of the topic (stored, pending, in flight, dead letters, half); groups stay: `{"purged": N}` |
//! | `POST /admin/reset` | forgets every message, group position and counter (declared and created topics stay, empty; created groups stay with their settings; auto-created topics go) and takes the clock back to the configured one (a test clock's moves are dropped; the core's time goes back with it): `{"reset": true}` |
//! | `GET /admin/faults`, `DELETE /admin/faults` | the fault rules in force (`{"enabled", "rules"}`); remove them all |
//! | `POST /admin/faults?operation=OP&(error=CODE\|reset=true\|latency_ms=N)[&probability=P][&latency_ms=N][&count=N]` | with `--faults`: a rule making calls of `OP` (`any`, `publish`, `consume`, `consume_orderly`, `consume_half`, `ack`, `commit`, `rollback`) fail with a protocol error, a closed connection, or only latency, with probability `P` (default 1), `count` times (default: until removed) |
//! | `GET /admin/topics/{topic}/messages?id=ID` or `?key=K[&after=ID]` `[&ns=I][&limit=N]` | the messages with that id or key, wherever they are (stored, half, dead letter), each with every group's position: `{"messages": [{…, "groups": [{"group", "state", "consumed_times", "next_visible_time"}]}], "next"}` (`state` null: the group holds it no more; its `consumed_times` then the last delivery's, as the message's trace shows); by id with the whole body, by key with previews in publish order; an id not kept is 404 `MessageNotExist`; `id=` / `key=` without a value is 400; `after` with `id=` is 400 |
//! | `GET /admin/topics/{topic}/messages?state=S[&group=G][&after=ID][&ns=I][&limit=N]` | a non-destructive peek: `{"messages": [...], "next"}`, ordered by visible time (half: check time; dead: dead-lettering), S = `ready`, `in_flight`, `delayed`, `dead` (these need `group`; 404 `SubscriptionNotExist` for a group not on the topic) or `half`; at most N (default 100, at most 1000) |
//! | `GET /admin/topics/{topic}/messages?begin_ms=B&end_ms=E[&after=ID][&ns=I][&limit=N]` | the messages published in `[B, E)` (either bound may be left out) in publish order, each with every group's position, held or kept after consumption: `{"messages": [...], "next"}` (`next`: the `after` of the next page, null on the last — also when it ends at the range's last message) |
//! | `GET /admin/topics`, `GET /admin/topics/{topic}` `[?ns=I]` | topics with their message type and per-group ready / in flight / delayed / dead / accumulation / last consume time |
//! | `POST /admin/topics?topic=T[&message_type=M][&ns=I]`, `DELETE /admin/topics/{topic}[?ns=I]` | create a topic taking messages of type M (default `MIXED`); delete one with its messages |
//! | `GET /admin/groups[?ns=I]` | groups, created or registered, with their settings and per-topic counters |
//! | `POST /admin/groups?group=G[&topic=T]...[&invisibility_ms=N][&max_deliveries=N][&ns=I]`, `DELETE /admin/groups/{group}[?ns=I]` | create (subscribed to the topics) or update a group; an update changes only the settings it passes (an empty value, `invisibility_ms=`, returns one to the broker's) and adds topics; `invisibility_ms` is 1..=43200000 (12 h); delete one |
//! | `GET /admin/topics/{topic}/groups/{group}/dead_letters[?after=ID][&ns=I][&limit=N]` | the group's dead letters in the order they died, with body previews while kept: `{"messages": [...], "next"}`; 404 `SubscriptionNotExist` for a group not on the topic |
//! | `POST /admin/topics/{topic}/groups/{group}/dead_letters/resend[?id=ID][&ns=I]`, `DELETE …/dead_letters[?id=ID][&ns=I]` | hand the dead letters (all, or one) to the group again: `{"resent": N}`; or drop them: `{"deleted": N}` |
//! | `POST /admin/topics/{topic}/groups/{group}/reset_offset?time_ms=T[&ns=I]` | messages published since T are delivered to the group again, earlier ones it holds are skipped: `{"redelivered", "skipped"}` |
//! | `POST /admin/topics/{topic}/half/{id}/commit`, `POST …/half/{id}/rollback` `[?ns=I]` | decide a waiting half (transactional) message by its id, as its producer's commit or rollback would: committed, it goes to the topic's groups; rolled back, it is never delivered; its trace records the decision: `{"message_id", "resolution"}`; an id that is not a waiting half message of the topic is 404 `MessageNotExist` |
//! | `GET /admin/messages/{id}/trace` | the message's events (published, delivered, expired, acked, filtered, dead-lettered, resent, offset reset, checked, committed, rolled back), while it is kept |
//!
//! A wrong method on a known path is 405 `MethodNotAllowed` with an `Allow` header. A query
//! parameter given twice is 400 (only `topic` repeats, in `POST /admin/groups`), and so is one
//! the call does not take (`accepted_params`, one table beside `allowed_methods`), a listing
//! selecting by two of `id`, `key`, `state` and a time range, `group` with anything but a
//! group state, and a number that is not plain digits (`+5`, ` 5`).
//!
//! Listings (peek by state, page by time, find by key, dead letters) carry each body's first
//! [`BODY_PREVIEW_BYTES`](crate::core::BODY_PREVIEW_BYTES) with `body_size` (bytes) and
//! `body_truncated`, and copy at most
//! [`LISTING_BUDGET_BYTES`](crate::core::LISTING_BUDGET_BYTES) of bodies and properties while
//! the core is locked, so they may end before `limit`. Every listing answers
//! `{"messages", "next"}`: `next` is null when the listing is complete, else the id to pass as
//! `after` for the next page (an `after` no longer in the listing — a peeked message that
//! changed state since — is 400: list again from the start).
//!
//! Errors are `{"code", "message", "request_id"}` with the status of the code: the
//! protocol's authentication codes (403 `SignatureDoesNotMatch`, …), 400
//! `InvalidArgument`, 404 `TopicNotExist` / `SubscriptionNotExist` / `MessageNotExist` /
//! `NotFound`, 405 `MethodNotAllowed`, 501 `NotSupported` (a test-clock call without
//! `--test-clock`; on the gateway backend, every call its engine cannot answer — topics and
//! groups are created, listed and deleted on the engine, `gateway/catalog.rs`).

use super::admission::plain;
use super::backend::Waiting;
use super::faults::{FaultAction, FaultRule};
use super::state::MAX_ADVANCE_MS;
use super::state::Shared;
use crate::core::{
    Call, DeadLetterAction, GroupSettings, Lookup, MAX_INVISIBILITY_MS, Outcome, PeekState,
    TopicMessageType, TransactionResolution,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use mq_proto::server::authenticate_key;
use mq_proto::wire::error::RequestError;
use mq_proto::{ErrorCode, GroupId, InstanceId, TopicName};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Longest peek.
const MAX_PEEK: usize = 1000;
const DEFAULT_PEEK: usize = 100;

/// An admin refusal: a status, a code and a message.
pub(super) struct AdminError {
    status: StatusCode,
    code: String,
    message: String,
    /// The methods the path takes (for a 405's `Allow` header).
    allow: Option<String>,
}

impl AdminError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            allow: None,
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    fn not_supported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, NOT_SUPPORTED, message)
    }
}

/// The code of a backend call the backend cannot serve (answered 501).
pub(crate) const NOT_SUPPORTED: &str = "NotSupported";

/// The refusal of a backend call the backend cannot serve: `NotSupported` (answered 501),
/// with a message naming what does it instead.
pub(crate) fn not_supported(message: &str) -> RequestError {
    RequestError::new(ErrorCode::Other(NOT_SUPPORTED.into()), message)
}

impl From<RequestError> for AdminError {
    fn from(e: RequestError) -> Self {
        let status = if e.code.as_str() == NOT_SUPPORTED {
            StatusCode::NOT_IMPLEMENTED
        } else {
            e.status()
        };
        Self {
            status,
            code: e.code.as_str().to_owned(),
            message: e.message,
            allow: None,
        }
    }
}

fn json_response(status: StatusCode, value: &impl Serialize, rid: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
        format!("{{\"code\":\"InternalError\",\"message\":\"{e}\"}}").into_bytes()
    });
    plain(status, "application/json", body.into(), rid)
}

/// Answers one `/admin/…` request. Admin calls take their arguments in the query: an
/// authorized call that comes with a body (`has_body`) is refused with 400 and the
/// connection closed (the body is not read); a `Content-MD5` must be the empty body's (400
/// `InvalidDigest`), as the protocol's paths check it. `operation` (the `mq_requests_total`
/// label) becomes `admin` once the call is authorized; a refused call keeps the caller's
/// (`refused`).
pub(super) async fn handle(
    shared: &Shared,
    rid: &str,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    has_body: bool,
    operation: &mut &'static str,
) -> Response<Full<Bytes>> {
    let result = match authorize(shared, method, target, headers) {
        Ok(_) => {
            *operation = OPERATION;
            if has_body {
                Err(AdminError::invalid(
                    "admin calls take their arguments in the query, not in a body",
                ))
            } else {
                match mq_proto::server::check_content_md5(headers, b"") {
                    Ok(()) => route(shared, method, target).await,
                    Err(e) => Err(e.into()),
                }
            }
        }
        Err(e) => Err(e),
    };
    let mut response = answer(rid, result);
    if has_body {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The `operation` label of an authorized admin call in `mq_requests_total`.
pub(super) const OPERATION: &str = "admin";

/// An admin call's answer: 200 with its JSON, or the error's status with
/// `{"code", "message", "request_id"}`.
pub(super) fn answer(
    rid: &str,
    result: Result<serde_json::Value, AdminError>,
) -> Response<Full<Bytes>> {
    match result {
        Ok(value) => json_response(StatusCode::OK, &value, rid),
        Err(e) => {
            let mut response = json_response(
                e.status,
                &json!({ "code": e.code, "message": e.message, "request_id": rid }),
                rid,
            );
            if let Some(allow) = e.allow.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
                response.headers_mut().insert(http::header::ALLOW, allow);
            }
            response
        }
    }
}

/// Lets an admin call through, or says why not: 404 when the API is off, else the admin
/// token (`Authorization: Bearer …`, compared in constant time) or a signature by a
/// configured credential that is not limited to one instance (PROTOCOL §2.5; the date may
/// come as `x-mq-date`, see [`with_signed_date`](super::console::with_signed_date)).
/// Checks an admin call's bearer token or signature; the AccessKey id that signed it
/// (`None` for the admin token).
pub(super) fn authorize(
    shared: &Shared,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
) -> Result<Option<Arc<str>>, AdminError> {
    let Some((token, _)) = &shared.admin else {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the admin API is off (--admin off)",
        ));
    };
    let headers = super::console::with_signed_date(headers);
    let authorization = mq_proto::server::authorization_header(&headers)?.as_bytes();
    let bearer = (authorization.len() > 7 && authorization[..7].eq_ignore_ascii_case(b"bearer "))
        .then(|| &authorization[7..]);
    if let Some(given) = bearer {
        if !bool::from(given.ct_eq(token.as_str().as_bytes())) {
            return Err(AdminError::new(
                StatusCode::FORBIDDEN,
                "InvalidAdminToken",
                "the admin token is not this broker's",
            ));
        }
    } else {
        let key = authenticate_key(method, target, &headers, shared.clock.signing_now(), |id| {
            shared.credentials.get(id)
        })?;
        if key.instance.is_some() {
            return Err(AdminError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!(
                    "The AccessKey {} is limited to one instance; admin calls need an unlimited one.",
                    key.id
                ),
            ));
        }
        return Ok(Some(Arc::clone(&key.id)));
    }
    Ok(None)
}

async fn route(
    shared: &Shared,
    method: &Method,
    target: &str,
) -> Result<serde_json::Value, AdminError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = Params::parse(query)?;
    // Path segments percent-decoded, as query values are (a topic name has no `/`).
    let decoded: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| AdminError::invalid(format!("path segment {s:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    if let Some(accepted) = accepted_params(method, &segments) {
        params.only(accepted, method, path)?;
    }
    match (method, segments.as_slice()) {
        (&Method::GET, ["admin", "clock"]) => Ok(clock(shared)),
        (&Method::GET, ["admin", "stats"]) => super::admission::stats_value(shared).map_err(|e| {
            AdminError::from(RequestError::new(ErrorCode::InternalError, e.to_string()))
        }),
        (&Method::POST, ["admin", "clock"]) => {
            let ms: u64 = whole_number(params.required("advance_ms")?)
                .filter(|ms| *ms <= MAX_ADVANCE_MS)
                .ok_or_else(|| {
                    AdminError::invalid(format!(
                        "advance_ms must be a whole number of ms, at most {MAX_ADVANCE_MS} (400 days)"
                    ))
                })?;
            shared
                .backend
                .advance_clock(ms, shared.clock.is_test_clock())
                .await?;
            Ok(clock(shared))
        }
        (&Method::GET, ["admin", "topics", topic, "messages"]) => peek(shared, topic, &params),
        (&Method::GET, ["admin", "messages", id, "trace"]) => {
            match shared.backend.trace(message_id(id)?)? {
                Some(trace) => Ok(json!(trace)),
                None => Err(AdminError::new(
                    StatusCode::NOT_FOUND,
                    "MessageNotExist",
                    format!(
                        "message {id} is not kept: never published here, or dropped (retention, the consumed-message retention: --consumed-retention-secs or -bytes, purge)"
                    ),
                )),
            }
        }
        (&Method::GET, ["admin", "topics", topic, "groups", group, "dead_letters"]) => {
            let (topic, group) = (topic_name(topic)?, group_id(group)?);
            let listing = shared.backend.peek(
                instance_param(&params)?.as_ref(),
                &topic,
                Some(&group),
                PeekState::Dead,
                params.non_empty("after")?,
                limit_param(&params)?,
            )?;
            Ok(json!(listing))
        }
        (
            method,
            [
                "admin",
                "topics",
                topic,
                "groups",
                group,
                "dead_letters",
                rest @ ..,
            ],
        ) if (method == Method::POST && rest == ["resend"])
            || (method == Method::DELETE && rest.is_empty()) =>
        {
            let (instance, topic, group) = (
                instance_param(&params)?,
                topic_name(topic)?,
                group_id(group)?,
            );
            let call = Call::DeadLetters {
                instance,
                topic,
                group,
                message_id: params
                    .non_empty("id")?
                    .map(message_id)
                    .transpose()?
                    .map(str::to_owned),
                action: if method == Method::POST {
                    DeadLetterAction::Resend
                } else {
                    DeadLetterAction::Delete
                },
            };
            match apply(shared, call).await? {
                Outcome::Resent { messages } => Ok(json!({ "resent": messages })),
                outcome => Ok(json!({ "deleted": deleted(outcome) })),
            }
        }
        (&Method::POST, ["admin", "topics", topic, "groups", group, "reset_offset"]) => {
            let since_ms = whole_number(params.required("time_ms")?)
                .ok_or_else(|| AdminError::invalid("time_ms must be epoch milliseconds"))?;
            let call = Call::ResetOffset {
                instance: instance_param(&params)?,
                topic: topic_name(topic)?,
                group: group_id(group)?,
                since_ms,
            };
            match apply(shared, call).await? {
                Outcome::OffsetReset(reset) => Ok(json!(reset)),
                _ => Ok(json!(crate::core::OffsetReset::default())),
            }
        }
        (
            &Method::POST,
            [
                "admin",
                "topics",
                topic,
                "half",
                id,
                action @ ("commit" | "rollback"),
            ],
        ) => {
            let resolution = if *action == "commit" {
                TransactionResolution::Commit
            } else {
                TransactionResolution::Rollback
            };
            let call = Call::DecideHalf {
                instance: instance_param(&params)?,
                topic: topic_name(topic)?,
                message_id: message_id(id)?.to_owned(),
                resolution,
            };
            apply(shared, call).await?;
            Ok(json!({ "message_id": id, "resolution": action }))
        }
        (&Method::POST, ["admin", "topics", topic, "purge"]) => {
            let call = Call::Purge {
                instance: instance_param(&params)?,
                topic: topic_name(topic)?,
            };
            match apply(shared, call).await? {
                Outcome::Purged { messages } => Ok(json!({ "purged": messages })),
                _ => Ok(json!({ "purged": 0 })),
            }
        }
        (&Method::POST, ["admin", "reset"]) => {
            apply(shared, Call::Reset).await?;
            Ok(json!({ "reset": true }))
        }
        (&Method::GET, ["admin", "faults"]) => Ok(faults(shared)),
        (&Method::POST, ["admin", "faults"]) => {
            let rule = fault_rule(&params)?;
            if !shared.faults.add(rule) {
                return Err(AdminError::not_supported(
                    "fault injection needs a broker started with --faults",
                ));
            }
            Ok(faults(shared))
        }
        (&Method::DELETE, ["admin", "faults"]) => {
            shared.faults.clear();
            Ok(faults(shared))
        }
        (&Method::GET, ["admin", "topics"]) => {
            let instance = instance_param(&params)?;
            let topics: Vec<_> = shared
                .backend
                .topics()
                .await?
                .into_iter()
                .filter(|t| in_scope(instance.as_ref(), params.get("ns"), listed_instance(t)))
                .collect();
            Ok(json!({ "topics": topics }))
        }
        (&Method::GET, ["admin", "topics", topic]) => {
            let (instance, topic) = (instance_param(&params)?, topic_name(topic)?);
            listed_topic(shared, instance.as_ref(), &topic).await
        }
        (&Method::POST, ["admin", "topics"]) => {
            let instance = instance_param(&params)?;
            if params.all("topic").nth(1).is_some() {
                return Err(AdminError::invalid(
                    "create one topic per call (one topic=)",
                ));
            }
            let topic = topic_name(params.required("topic")?)?;
            let message_type = match params.get("message_type") {
                None => TopicMessageType::Mixed,
                Some(t) => t.parse().map_err(AdminError::invalid)?,
            };
            let call = Call::CreateTopic {
                instance: instance.clone(),
                topic: topic.clone(),
                message_type,
            };
            apply(shared, call).await?;
            listed_topic(shared, instance.as_ref(), &topic).await
        }
        (&Method::DELETE, ["admin", "topics", topic]) => {
            let topic = topic_name(topic)?;
            let call = Call::DeleteTopic {
                instance: instance_param(&params)?,
                topic: topic.clone(),
            };
            let outcome = apply(shared, call).await?;
            Ok(deletion(topic.as_str(), outcome))
        }
        (&Method::GET, ["admin", "groups"]) => {
            let instance = instance_param(&params)?;
            let groups: Vec<_> = shared
                .backend
                .groups()
                .await?
                .into_iter()
                .filter(|g| in_scope(instance.as_ref(), params.get("ns"), listed_instance(g)))
                .collect();
            Ok(json!({ "groups": groups }))
        }
        (&Method::POST, ["admin", "groups"]) => {
            let instance = instance_param(&params)?;
            let group = group_id(params.required("group")?)?;
            let topics = params
                .all("topic")
                .map(topic_name)
                .collect::<Result<Vec<_>, _>>()?;
            // An update changes only what it is given: read the settings in force and
            // apply the whole result, one update at a time (a concurrent update of the same
            // group would otherwise undo this one's fields).
            let _one_at_a_time = GROUP_UPDATES.lock().await;
            let current = shared.backend.group_settings(instance.as_ref(), &group);
            let invisibility_ms = setting(&params, "invisibility_ms", current.invisibility_ms, |n| {
                (1..=MAX_INVISIBILITY_MS).contains(&n).then_some(n)
            })
            .map_err(|name| {
                AdminError::invalid(format!(
                    "{name} must be a whole number of ms from 1 to {MAX_INVISIBILITY_MS} (12 h), or empty for the broker's"
                ))
            })?;
            let max_deliveries = setting(&params, "max_deliveries", current.max_deliveries, |n| {
                u32::try_from(n).ok().filter(|n| *n >= 1)
            })
            .map_err(|name| {
                AdminError::invalid(format!(
                    "{name} must be a whole number from 1 to {}, or empty for the broker's",
                    u32::MAX
                ))
            })?;
            let call = Call::CreateGroup {
                instance: instance.clone(),
                group: group.clone(),
                topics,
                settings: GroupSettings {
                    invisibility_ms,
                    max_deliveries,
                },
            };
            apply(shared, call).await?;
            let listed = listed_group(shared, instance.as_ref(), &group).await?;
            Ok(json!({ "group": listed }))
        }
        (&Method::DELETE, ["admin", "groups", group]) => {
            let group = group_id(group)?;
            let call = Call::DeleteGroup {
                instance: instance_param(&params)?,
                group: group.clone(),
            };
            let outcome = apply(shared, call).await?;
            Ok(deletion(group.as_str(), outcome))
        }
        (_, segments) => match allowed_methods(segments) {
            Some(allow) => Err(AdminError {
                allow: Some(allow.to_owned()),
                ..AdminError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{path} takes {allow}, not {method}"),
                )
            }),
            None => Err(AdminError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no admin call {method} {path}"),
            )),
        },
    }
}

/// The methods an admin path takes (`None`: no such path), for a 405's `Allow` header.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["admin", "clock" | "topics" | "groups"] => "GET, POST",
        ["admin", "topics", _] => "GET, DELETE",
        // POST: the console's publish (routed to `console.rs` before this router).
        ["admin", "topics", _, "messages"] => "GET, POST",
        ["admin", "topics", _, "purge"] | ["admin", "reset"] => "POST",
        ["admin", "groups", _] => "DELETE",
        ["admin", "topics", _, "groups", _, "dead_letters"] => "GET, DELETE",
        ["admin", "topics", _, "groups", _, "dead_letters", "resend"]
        | ["admin", "topics", _, "groups", _, "reset_offset"]
        | ["admin", "topics", _, "half", _, "commit" | "rollback"] => "POST",
        ["admin", "faults"] => "GET, POST, DELETE",
        ["admin", "messages", _, "trace"] | ["admin", "stats"] => "GET",
        _ => return None,
    })
}

/// The query parameters each admin call takes, beside [`allowed_methods`] (`None`: no such
/// call, answered 404 or 405 by the router); any other parameter is refused with 400 rather
/// than ignored (a misspelt `invisiblity_ms` would otherwise change nothing, silently).
fn accepted_params(method: &Method, segments: &[&str]) -> Option<&'static [&'static str]> {
    const NS: &[&str] = &["ns"];
    Some(match (method.as_str(), segments) {
        ("GET", ["admin", "clock" | "stats"] | ["admin", "messages", _, "trace"])
        | ("POST", ["admin", "reset"])
        | ("GET" | "DELETE", ["admin", "faults"]) => &[],
        ("POST", ["admin", "clock"]) => &["advance_ms"],
        ("GET", ["admin", "topics", _, "messages"]) => &[
            "id", "key", "state", "group", "begin_ms", "end_ms", "after", "ns", "limit",
        ],
        ("GET", ["admin", "topics", _, "groups", _, "dead_letters"]) => &["after", "ns", "limit"],
        ("POST", ["admin", "topics", _, "groups", _, "dead_letters", "resend"])
        | ("DELETE", ["admin", "topics", _, "groups", _, "dead_letters"]) => &["id", "ns"],
        ("POST", ["admin", "topics", _, "groups", _, "reset_offset"]) => &["time_ms", "ns"],
        ("POST", ["admin", "topics", _, "half", _, "commit" | "rollback"])
        | ("POST", ["admin", "topics", _, "purge"])
        | ("GET", ["admin", "topics" | "groups"])
        | ("GET" | "DELETE", ["admin", "topics", _])
        | ("DELETE", ["admin", "groups", _]) => NS,
        ("POST", ["admin", "faults"]) => &[
            "operation",
            "error",
            "reset",
            "latency_ms",
            "probability",
            "count",
        ],
        ("POST", ["admin", "topics"]) => &["topic", "message_type", "ns"],
        ("POST", ["admin", "groups"]) => {
            &["group", "topic", "invisibility_ms", "max_deliveries", "ns"]
        }
        _ => return None,
    })
}

/// Whether a listed item of `item_instance` is in the scope of the `ns` parameter: every
/// instance without one, only the default instance for `ns=` (empty), else that instance.
fn in_scope(instance: Option<&InstanceId>, ns: Option<&str>, item_instance: Option<&str>) -> bool {
    ns.is_none() || instance.map(InstanceId::as_str) == item_instance
}

fn topic_name(name: &str) -> Result<TopicName, AdminError> {
    TopicName::new(name).map_err(|e| AdminError::invalid(e.to_string()))
}

fn group_id(id: &str) -> Result<GroupId, AdminError> {
    GroupId::new(id).map_err(|e| AdminError::invalid(e.to_string()))
}

/// `id` once it is a message id's shape ([`mq_proto::MessageId`]): 400 for an empty or
/// malformed one, which no message has.
fn message_id(id: &str) -> Result<&str, AdminError> {
    mq_proto::MessageId::new(id)
        .map(|_| id)
        .map_err(|e| AdminError::invalid(e.to_string()))
}

/// The messages a delete dropped.
fn deleted(outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Deleted { messages } | Outcome::Purged { messages } => messages,
        _ => 0,
    }
}

/// The answer to a topic's or group's deletion: `{"deleted": name, "messages": N}`, without
/// `messages` when the backend does not know how many it dropped (the gateway's engine).
fn deletion(name: &str, outcome: Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Deleted { messages } => json!({ "deleted": name, "messages": messages }),
        _ => json!({ "deleted": name }),
    }
}

/// The `instance` of a listed topic or group (`None`: the default instance).
fn listed_instance(item: &serde_json::Value) -> Option<&str> {
    item["instance"].as_str()
}

/// One group as `GET /admin/groups` lists it, if listed.
async fn listed_group(
    shared: &Shared,
    instance: Option<&InstanceId>,
    group: &GroupId,
) -> Result<Option<serde_json::Value>, AdminError> {
    Ok(shared.backend.groups().await?.into_iter().find(|g| {
        g["group"].as_str() == Some(group.as_str())
            && listed_instance(g) == instance.map(InstanceId::as_str)
    }))
}

/// `{"topic": …}`: one topic as `GET /admin/topics` lists it; 404 `TopicNotExist` if absent.
async fn listed_topic(
    shared: &Shared,
    instance: Option<&InstanceId>,
    topic: &TopicName,
) -> Result<serde_json::Value, AdminError> {
    let found = shared.backend.topics().await?.into_iter().find(|t| {
        t["topic"].as_str() == Some(topic.as_str())
            && listed_instance(t) == instance.map(InstanceId::as_str)
    });
    match found {
        Some(t) => Ok(json!({ "topic": t })),
        None => Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "TopicNotExist",
            format!("The topic you provided does not exist: {topic}"),
        )),
    }
}

fn faults(shared: &Shared) -> serde_json::Value {
    json!({ "enabled": shared.faults.enabled(), "rules": shared.faults.rules() })
}

/// The operations a fault rule may name.
const FAULT_OPERATIONS: [&str; 8] = [
    "any",
    "publish",
    "consume",
    "consume_orderly",
    "consume_half",
    "ack",
    "commit",
    "rollback",
];

/// A rule from `operation`, one of `error=CODE` / `reset=true` (or neither: latency only),
/// `probability` (default 1), `latency_ms` (default 0), `count` (default unlimited).
fn fault_rule(params: &Params) -> Result<FaultRule, AdminError> {
    let operation = params.get("operation").unwrap_or("any");
    if !FAULT_OPERATIONS.contains(&operation) {
        return Err(AdminError::invalid(format!(
            "operation must be one of {}",
            FAULT_OPERATIONS.join(", ")
        )));
    }
    let number = |name: &str| -> Result<Option<u64>, AdminError> {
        params
            .get(name)
            .map(|v| {
                whole_number(v)
                    .ok_or_else(|| AdminError::invalid(format!("{name} must be a whole number")))
            })
            .transpose()
    };
    let probability = match params.get("probability") {
        None => 1.0,
        Some(p) => p
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
            .then(|| p.parse::<f64>().ok())
            .flatten()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| AdminError::invalid("probability must be between 0 and 1"))?,
    };
    let latency_ms = number("latency_ms")?.unwrap_or(0);
    if latency_ms > 60_000 {
        return Err(AdminError::invalid("latency_ms is at most 60000"));
    }
    let action = match (params.get("error"), params.get("reset")) {
        (Some(_), Some(_)) => {
            return Err(AdminError::invalid("a rule has error= or reset=, not both"));
        }
        (Some(code), None) => {
            let parsed = ErrorCode::parse(code);
            if matches!(parsed, ErrorCode::Other(_)) {
                let known: Vec<&str> = ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
                return Err(AdminError::invalid(format!(
                    "{code:?} is not one of the protocol's error codes: {}",
                    known.join(", ")
                )));
            }
            FaultAction::Error {
                code: parsed.as_str().to_owned(),
            }
        }
        (None, Some("true")) => FaultAction::Reset,
        (None, Some(_)) => return Err(AdminError::invalid("reset takes the value true")),
        (None, None) if latency_ms > 0 => FaultAction::Delay,
        (None, None) => {
            return Err(AdminError::invalid(
                "a rule needs error=CODE, reset=true or latency_ms=N",
            ));
        }
    };
    Ok(FaultRule {
        operation: operation.to_owned(),
        action,
        probability,
        latency_ms,
        remaining: match number("count")? {
            Some(0) => return Err(AdminError::invalid("count must be at least 1")),
            count => count,
        },
        hits: 0,
    })
}

/// Applies a state-changing admin call through the backend (journaled when durable).
async fn apply(shared: &Shared, call: Call) -> Result<Outcome, AdminError> {
    let waiting = Waiting::new(shared, std::time::Instant::now());
    Ok(shared.backend.serve(call, waiting).await?)
}

/// Serialises group updates (`POST /admin/groups`), which read the settings in force before
/// changing them.
static GROUP_UPDATES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A group setting of an update: `current` when the parameter is absent, `None` (the
/// broker's value) when it is empty, else its value if `valid` accepts it; `Err(name)`
/// otherwise.
fn setting<'a, T>(
    params: &Params,
    name: &'a str,
    current: Option<T>,
    valid: impl Fn(u64) -> Option<T>,
) -> Result<Option<T>, &'a str> {
    match params.get(name) {
        None => Ok(current),
        Some("") => Ok(None),
        Some(v) => whole_number(v).and_then(valid).map(Some).ok_or(name),
    }
}

/// The `ns` parameter (empty or absent = the default instance).
pub(super) fn instance_param(params: &Params) -> Result<Option<InstanceId>, AdminError> {
    params
        .get("ns")
        .filter(|ns| !ns.is_empty())
        .map(InstanceId::new)
        .transpose()
        .map_err(|e| AdminError::invalid(e.to_string()))
}

fn clock(shared: &Shared) -> serde_json::Value {
    json!({
        "now_ms": shared.clock.now_ms(),
        "offset_ms": shared.clock.offset_ms(),
        "test_clock": shared.clock.is_test_clock(),
    })
}

fn peek(shared: &Shared, topic: &str, params: &Params) -> Result<serde_json::Value, AdminError> {
    let topic = topic_name(topic)?;
    let range = (params.get("begin_ms"), params.get("end_ms"));
    let selectors: Vec<&str> = [
        ("id=", params.get("id").is_some()),
        ("key=", params.get("key").is_some()),
        ("state=", params.get("state").is_some()),
        ("a time range (begin_ms, end_ms)", range != (None, None)),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if selectors.len() > 1 {
        return Err(AdminError::invalid(format!(
            "a listing selects by one of id=, key=, state= or a time range, not by {}",
            selectors.join(" and ")
        )));
    }
    if params.get("group").is_some() && matches!(params.get("state"), None | Some("half")) {
        return Err(AdminError::invalid(
            "group= names the group of a peek by state= (ready, in_flight, delayed, dead); a lookup, a time range and state=half list the topic's messages with every group",
        ));
    }
    let lookup = match (params.non_empty("id")?, params.non_empty("key")?) {
        (Some(id), _) => Some(Lookup::Id(message_id(id)?)),
        (None, Some(key)) if key.contains(char::is_whitespace) => {
            // It would find nothing: the keys a message carries are its `KEYS` split on
            // whitespace.
            return Err(AdminError::invalid(
                "key= is one key, without whitespace (a message's KEYS property holds several keys separated by spaces: look up one of them)",
            ));
        }
        (None, Some(key)) => Some(Lookup::Key(key)),
        (None, None) => None,
    };
    let group = params.get("group").map(group_id).transpose()?;
    let instance = instance_param(params)?;
    let limit = limit_param(params)?;
    if range != (None, None) {
        let ms = |v: Option<&str>, default: u64| {
            v.map_or(Ok(default), |v| {
                whole_number(v).ok_or_else(|| {
                    AdminError::invalid("begin_ms and end_ms are epoch milliseconds")
                })
            })
        };
        let (begin, end) = (ms(range.0, 0)?, ms(range.1, u64::MAX)?);
        if begin > end {
            return Err(AdminError::invalid(format!(
                "begin_ms {begin} is after end_ms {end}: the range [begin_ms, end_ms) is empty"
            )));
        }
        let page = shared.backend.page(
            instance.as_ref(),
            &topic,
            begin..end,
            params.non_empty("after")?,
            limit,
        )?;
        return Ok(json!(page));
    }
    if let Some(lookup) = lookup {
        let found = shared.backend.find(
            instance.as_ref(),
            &topic,
            lookup,
            params.non_empty("after")?,
            limit,
        )?;
        if found.messages.is_empty()
            && let Lookup::Id(id) = lookup
        {
            return Err(AdminError::new(
                StatusCode::NOT_FOUND,
                "MessageNotExist",
                format!(
                    "message {id} is not kept in {topic}: consumed by every group, trimmed by retention, or never published there"
                ),
            ));
        }
        return Ok(json!(found));
    }
    let state: PeekState = params
        .required("state")?
        .parse()
        .map_err(|e: crate::core::CoreError| AdminError::invalid(e.message))?;
    let listing = shared.backend.peek(
        instance.as_ref(),
        &topic,
        group.as_ref(),
        state,
        params.non_empty("after")?,
        limit,
    )?;
    Ok(json!(listing))
}

/// A parameter's whole number: ASCII digits only (`+5`, `-0`, ` 5` and `5.0` are not one);
/// `None` otherwise or past `u64::MAX`.
fn whole_number(v: &str) -> Option<u64> {
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

/// The `limit` parameter of a listing: 1..=1000, default 100.
fn limit_param(params: &Params) -> Result<usize, AdminError> {
    match params.get("limit") {
        None => Ok(DEFAULT_PEEK),
        Some(l) => whole_number(l)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_PEEK).contains(n))
            .ok_or_else(|| AdminError::invalid(format!("limit must be 1..={MAX_PEEK}"))),
    }
}

/// The decoded query parameters of an admin call.
pub(super) struct Params(Vec<(String, String)>);

/// The parameters an admin call may repeat (`POST /admin/groups?…&topic=A&topic=B`); any
/// other given twice is refused rather than one of its values silently used.
const REPEATABLE: [&str; 1] = ["topic"];

impl Params {
    /// The parameters of `query` (`a=1&b=2`, percent-decoded).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for an item that is not UTF-8 once decoded, or a parameter other
    /// than [`REPEATABLE`] ones given twice.
    pub(super) fn parse(query: &str) -> Result<Self, AdminError> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| AdminError::invalid(format!("query item {pair:?} is not UTF-8")))
            };
            let key = decode(k)?;
            if !REPEATABLE.contains(&key.as_str()) && out.iter().any(|(k, _)| *k == key) {
                return Err(AdminError::invalid(format!(
                    "query parameter {key} is given more than once"
                )));
            }
            out.push((key, decode(v)?));
        }
        Ok(Self(out))
    }

    /// Refuses a parameter that is not in `accepted` (the call's, see [`accepted_params`]).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` naming the first parameter the call does not take.
    fn only(&self, accepted: &[&str], method: &Method, path: &str) -> Result<(), AdminError> {
        match self.0.iter().find(|(k, _)| !accepted.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, _)) => Err(AdminError::invalid(format!(
                "{method} {path} takes no query parameter {k:?} (it takes {})",
                if accepted.is_empty() {
                    "none".to_owned()
                } else {
                    accepted.join(", ")
                }
            ))),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter, in order.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that, when given, has a value (`?id=` is refused, not taken as no id).
    fn non_empty(&self, name: &str) -> Result<Option<&str>, AdminError> {
        match self.get(name) {
            Some("") => Err(AdminError::invalid(format!(
                "query parameter {name} takes a value"
            ))),
            v => Ok(v),
        }
    }

    fn required(&self, name: &str) -> Result<&str, AdminError> {
        self.get(name)
            .ok_or_else(|| AdminError::invalid(format!("query parameter {name} is required")))
    }
}
