//! Dispatch: a parsed, admitted operation to the core and back to a response; a consume
//! that finds nothing waits on its topic's change channel until its wait ends.

use super::state::{PollSlot, Shared, TopicKey};
use crate::core::CoreError;
use crate::durable::StorageError;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use mq_proto::ErrorCode;
use mq_proto::server::{
    Operation, ParsedRequest, RequestError, encode_errors, encode_messages,
    encode_publish_response, error_response, response,
};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn full(resp: Response<Bytes>) -> Response<Full<Bytes>> {
    resp.map(Full::new)
}

pub(super) fn error(shared: &Shared, rid: &str, e: RequestError) -> Response<Full<Bytes>> {
    full(error_response(&e, rid, &shared.host_id))
}

fn core_error(e: CoreError) -> RequestError {
    RequestError::new(e.code, e.message)
}

/// The change could not be made durable: nothing is acknowledged.
fn storage_error(e: StorageError) -> RequestError {
    RequestError::new(ErrorCode::InternalError, format!("storage: {e}"))
}

pub(super) async fn dispatch(
    shared: &Arc<Shared>,
    rid: &str,
    req: ParsedRequest,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let ParsedRequest {
        instance,
        topic,
        operation,
    } = req;
    let key: TopicKey = (instance, topic);
    match operation {
        Operation::Publish(message) => {
            let (outcome, durable) = {
                let mut core = shared.lock_core();
                let outcome = core
                    .publish(shared.clock.now_ms(), key.0.as_ref(), &key.1, message)
                    .map_err(core_error)?;
                shared.changed(&core, &key);
                (outcome, core.sync_point())
            };
            durable.wait().await.map_err(storage_error)?;
            let receipt = mq_proto::client::PublishReceipt {
                message_id: outcome.message_id,
                body_md5: outcome.body_md5,
                receipt_handle: outcome.receipt_handle,
            };
            Ok(full(response(
                StatusCode::CREATED,
                encode_publish_response(&receipt),
                rid,
            )))
        }
        Operation::Consume {
            group,
            kind,
            batch,
            wait,
            filter,
        } => {
            let deadline = Instant::now() + Duration::from_secs(u64::from(wait.get()));
            let mut shutdown = shared.shutdown.subscribe();
            let mut slot = None;
            loop {
                let found_or_wait = {
                    let mut core = shared.lock_core();
                    let found = core
                        .consume(
                            shared.clock.now_ms(),
                            key.0.as_ref(),
                            &key.1,
                            &group,
                            kind,
                            &filter,
                            batch,
                        )
                        .map_err(core_error)?;
                    // The consume may have moved the next wake-up (new invisibility).
                    shared.rearm_timer(&core);
                    if !found.is_empty() {
                        ControlFlow::Break((found, core.sync_point()))
                    } else if Instant::now() >= deadline || *shutdown.borrow_and_update() {
                        return Err(RequestError::from_code(ErrorCode::MessageNotExist));
                    } else {
                        ControlFlow::Continue(shared.subscribe(&core, &key))
                    }
                };
                let mut changes = match found_or_wait {
                    ControlFlow::Break((found, durable)) => {
                        // Answer only once the deliveries (and all they saw) are durable.
                        durable.wait().await.map_err(storage_error)?;
                        return Ok(full(response(StatusCode::OK, encode_messages(&found), rid)));
                    }
                    ControlFlow::Continue(changes) => changes,
                };
                if slot.is_none() {
                    slot = Some(
                        PollSlot::acquire(shared)
                            .ok_or_else(|| RequestError::from_code(ErrorCode::MessageNotExist))?,
                    );
                }
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            // Unreachable while `shared` lives; never spin on it.
                            tokio::select! {
                                () = tokio::time::sleep_until(deadline.into()) => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                    }
                    () = tokio::time::sleep_until(deadline.into()) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        Operation::Ack {
            group,
            kind,
            handles,
        } => {
            let (failures, durable) = {
                let mut core = shared.lock_core();
                let failures = core
                    .ack(
                        shared.clock.now_ms(),
                        key.0.as_ref(),
                        &key.1,
                        group.as_ref(),
                        kind,
                        &handles,
                    )
                    .map_err(core_error)?;
                shared.changed(&core, &key);
                (failures, core.sync_point())
            };
            durable.wait().await.map_err(storage_error)?;
            if failures.is_empty() {
                Ok(full(response(StatusCode::NO_CONTENT, Bytes::new(), rid)))
            } else {
                Ok(full(response(
                    StatusCode::NOT_FOUND,
                    encode_errors(&failures),
                    rid,
                )))
            }
        }
    }
}
