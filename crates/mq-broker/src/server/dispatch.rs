//! Dispatch: a parsed, admitted request becomes a [`Call`] to the backend, and its
//! [`Outcome`] the response. A consume that finds nothing within its wait is
//! `MessageNotExist` (PROTOCOL §6.2).

use super::backend::Waiting;
use super::state::Shared;
use crate::core::{Call, Outcome};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use mq_proto::ErrorCode;
use mq_proto::server::{ParsedRequest, error_response, response};
use mq_proto::wire::error::{RequestError, encode_errors};
use mq_proto::wire::publish::PublishReceipt;
use mq_proto::wire::{consume, publish};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn full(resp: Response<Bytes>) -> Response<Full<Bytes>> {
    resp.map(Full::new)
}

pub(super) fn error(shared: &Shared, rid: &str, e: RequestError) -> Response<Full<Bytes>> {
    full(error_response(&e, rid, &shared.host_id))
}

/// A backend's fault (5xx) says only its code's standard message: the detail (engine
/// addresses and statuses, storage paths, causes) goes to the operator's log under the
/// request id, not to the caller. Refusals (4xx) keep their message: it says what to fix.
fn without_internals(rid: &str, e: RequestError) -> RequestError {
    if e.status().is_server_error() {
        tracing::warn!(request_id = %rid, code = %e.code, detail = %e.message, "server fault");
        RequestError::from_code(e.code)
    } else {
        e
    }
}

pub(super) async fn dispatch(
    shared: &Arc<Shared>,
    rid: &str,
    req: ParsedRequest,
    key_id: &Arc<str>,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let mut call = Call::from(req);
    if let Call::Publish { producer, .. } = &mut call {
        *producer = Some(Arc::clone(key_id));
    }
    let wait = match &call {
        Call::Consume { wait, .. } => Duration::from_secs(u64::from(wait.get())),
        _ => Duration::ZERO,
    };
    let waiting = Waiting::new(shared, Instant::now() + wait);
    let outcome = shared
        .backend
        .serve(call, waiting)
        .await
        .map_err(|e| without_internals(rid, e))?;
    match outcome {
        Outcome::Published(outcome) => {
            let receipt = PublishReceipt {
                message_id: outcome.message_id,
                body_md5: outcome.body_md5,
                receipt_handle: outcome.receipt_handle,
            };
            Ok(full(response(
                StatusCode::CREATED,
                publish::encode_response(&receipt),
                rid,
            )))
        }
        Outcome::Delivered(found) if found.is_empty() => {
            Err(RequestError::from_code(ErrorCode::MessageNotExist))
        }
        Outcome::Delivered(found) => Ok(full(response(
            StatusCode::OK,
            consume::encode_response(&found),
            rid,
        ))),
        Outcome::Settled(failures) if failures.is_empty() => {
            Ok(full(response(StatusCode::NO_CONTENT, Bytes::new(), rid)))
        }
        Outcome::Settled(failures) => Ok(full(response(
            StatusCode::NOT_FOUND,
            encode_errors(&failures),
            rid,
        ))),
        Outcome::Done
        | Outcome::Purged { .. }
        | Outcome::Deleted { .. }
        | Outcome::Resent { .. }
        | Outcome::OffsetReset(_) => Err(RequestError::new(
            ErrorCode::InternalError,
            "the backend answered a request with no result",
        )),
    }
}
