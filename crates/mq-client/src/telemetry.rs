//! Client metrics, recorded through the [`metrics`](https://docs.rs/metrics) facade: install
//! any recorder (a Prometheus exporter, StatsD, OpenTelemetry, …) in the program and these
//! series appear; without one, recording costs next to nothing.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`REQUESTS_TOTAL`] `mq_client_requests_total` | counter | `operation`, `outcome` | HTTP requests sent (each attempt of a retried call counts) |
//! | [`REQUEST_DURATION_SECONDS`] `mq_client_request_duration_seconds` | histogram (seconds) | `operation`, `outcome` | time from sending a request to its decoded answer or failure |
//! | [`RETRIES_TOTAL`] `mq_client_retries_total` | counter | `operation` | attempts the retry policy repeated |
//! | [`DELIVERIES_TOTAL`] `mq_client_deliveries_total` | counter | `topic`, `group` | messages received (receive, stream, transaction checks) |
//! | [`ACKS_TOTAL`] `mq_client_acks_total` | counter | `kind`, `outcome` | receipt handles settled, one per handle |
//! | [`STREAM_IN_FLIGHT`] `mq_client_stream_in_flight` | gauge | `topic`, `group` | deliveries of message streams in hand (neither acked nor released) |
//! | [`POOL_CONNECTIONS`] `mq_client_pool_connections` | gauge | — | open connections of the pooled transports |
//!
//! Label values:
//! - `operation`: `publish`, `consume`, `consume_half`, `ack`, `commit`, `rollback`;
//! - `outcome` of a request: `ok`, `service_error` (the service answered with an error),
//!   `timeout`, `network_error`, `response_error` (an answer that did not decode),
//!   `credentials_error`, `invalid_input`;
//! - `kind` of a settlement: `ack`, `commit`, `rollback`; its `outcome`: `ok`, `refused` (by
//!   the service), `expired` (not sent: the handle had expired), `unknown` (in a request that
//!   failed), `not_sent` (after a failed request, or refused by the client).
//!
//! Topic and group names are labels: a program with very many of them gets as many series.
//!
//! ```
//! // Any recorder works; this one keeps the values for inspection.
//! let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!(mq_client::telemetry::RETRIES_TOTAL, "operation" => "publish").increment(1);
//! });
//! assert_eq!(snapshotter.snapshot().into_vec().len(), 1);
//! ```

use crate::error::{AckError, Error};
use metrics::{Gauge, counter, gauge, histogram};
use mq_proto::{AckKind, GroupId, TopicName};
use std::time::Duration;

/// Counter of HTTP requests, labels `operation` and `outcome`.
pub const REQUESTS_TOTAL: &str = "mq_client_requests_total";
/// Histogram of request latency in seconds, labels `operation` and `outcome`.
pub const REQUEST_DURATION_SECONDS: &str = "mq_client_request_duration_seconds";
/// Counter of retried attempts, label `operation`.
pub const RETRIES_TOTAL: &str = "mq_client_retries_total";
/// Counter of received messages, labels `topic` and `group`.
pub const DELIVERIES_TOTAL: &str = "mq_client_deliveries_total";
/// Counter of settled receipt handles, labels `kind` and `outcome`.
pub const ACKS_TOTAL: &str = "mq_client_acks_total";
/// Gauge of stream deliveries in hand, labels `topic` and `group`.
pub const STREAM_IN_FLIGHT: &str = "mq_client_stream_in_flight";
/// Gauge of open pooled connections.
pub const POOL_CONNECTIONS: &str = "mq_client_pool_connections";

/// The `outcome` label of a request that failed with `error`.
fn request_outcome(error: &Error) -> &'static str {
    match error {
        Error::Service(_) => "service_error",
        Error::Timeout { .. } => "timeout",
        Error::Network(_) => "network_error",
        Error::Response(_) | Error::Md5Mismatch { .. } => "response_error",
        Error::Credentials(_) => "credentials_error",
        Error::InvalidInput(_) | Error::Config(_) | Error::Shutdown => "invalid_input",
    }
}

/// One request attempt ended: `elapsed` is `None` when nothing was sent (credentials or the
/// request could not be made), so no latency is recorded.
pub(crate) fn request<T>(
    operation: &'static str,
    result: &Result<T, Error>,
    elapsed: Option<Duration>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => request_outcome(e),
    };
    counter!(REQUESTS_TOTAL, "operation" => operation, "outcome" => outcome).increment(1);
    if let Some(elapsed) = elapsed {
        histogram!(REQUEST_DURATION_SECONDS, "operation" => operation, "outcome" => outcome)
            .record(elapsed.as_secs_f64());
    }
}

/// The retry policy repeats an attempt of `operation`.
pub(crate) fn retry(operation: &'static str) {
    counter!(RETRIES_TOTAL, "operation" => operation).increment(1);
}

/// `count` messages of `topic` in `group` were received.
pub(crate) fn deliveries(topic: &TopicName, group: &GroupId, count: usize) {
    if count > 0 {
        counter!(DELIVERIES_TOTAL, "topic" => topic.to_string(), "group" => group.to_string())
            .increment(count as u64);
    }
}

fn settlement_kind(kind: AckKind) -> &'static str {
    crate::consumer::settle_operation(kind)
}

/// The handles of a settlement, by outcome: `acked` succeeded, `error` (if any) sorts the rest.
pub(crate) fn settlements(kind: AckKind, acked: usize, error: Option<&AckError>) {
    let kind = settlement_kind(kind);
    let add = |outcome: &'static str, n: usize| {
        if n > 0 {
            counter!(ACKS_TOTAL, "kind" => kind, "outcome" => outcome).increment(n as u64);
        }
    };
    add("ok", acked);
    if let Some(e) = error {
        add("ok", e.acked().len());
        add("refused", e.failures().len());
        add("expired", e.expired().len());
        add("unknown", e.unknown().len());
        add("not_sent", e.not_sent().len());
    }
}

/// The in-hand gauge of a stream's deliveries (one [`Counted`] per delivery).
pub(crate) fn stream_in_flight(topic: &TopicName, group: &GroupId) -> Gauge {
    gauge!(STREAM_IN_FLIGHT, "topic" => topic.to_string(), "group" => group.to_string())
}

/// One thing counted in a gauge while it lives: up on creation, down on drop (whichever way
/// it ends, including a runtime dropping a task).
pub(crate) struct Counted(Gauge);

impl Counted {
    pub(crate) fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }

    /// One open pooled connection, in [`POOL_CONNECTIONS`].
    pub(crate) fn pool_connection() -> Self {
        Self::new(gauge!(POOL_CONNECTIONS))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
