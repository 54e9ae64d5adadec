//! The OpenTelemetry bridge (feature `otel`): trace context between `tracing` spans (with a
//! [`tracing_opentelemetry`] layer installed) and the W3C trace context messages carry
//! ([`mq_proto::trace`]: properties `traceparent` and `tracestate`).
//!
//! - Producer side: pass [`current_trace_context`] to
//!   [`ClientBuilder::trace_context_source`](crate::ClientBuilder::trace_context_source), and
//!   every publish carries the context of the `tracing` span it is called in.
//! - Consumer side: [`consumer_span`] gives a span for processing a received message whose
//!   parent is the producer's span (same trace id); [`remote_context`] gives the bare
//!   OpenTelemetry [`Context`] to parent or link spans of your own.
//!
//! ```no_run
//! use futures::StreamExt;
//! use mq_client::{Client, Credentials, TopicMessage};
//! use tracing::Instrument;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // A tracing subscriber with a `tracing_opentelemetry` layer is installed elsewhere.
//! let client = Client::builder()
//!     .endpoint("http://127.0.0.1:8080")?
//!     .credentials(Credentials::new("mq-dev-access-key", "mq-dev-secret"))
//!     .trace_context_source(mq_client::otel::current_trace_context)
//!     .build()?;
//! let producer = client.producer("orders".parse()?);
//! producer
//!     .publish(&TopicMessage::new("order 42")?)
//!     .instrument(tracing::info_span!("place order"))
//!     .await?;
//!
//! let mut stream = client.consumer("orders".parse()?, "GID_billing".parse()?).stream();
//! if let Some(item) = stream.next().await {
//!     let Ok(delivery) = item?.into_delivery() else {
//!         return Ok(()); // a poison message (dropping it leaves it for redelivery)
//!     };
//!     let span = mq_client::otel::consumer_span(&delivery);
//!     async { /* handle the message: a child of "place order" */ }
//!         .instrument(span)
//!         .await;
//!     let _ = delivery.ack();
//! }
//! # Ok(()) }
//! ```

use mq_proto::Message;
use mq_proto::trace::{TraceContext, TraceParent, TraceState};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context of the current `tracing` span, read through its OpenTelemetry
/// context; `None` when there is no span, no `tracing_opentelemetry` layer, or the span
/// context is not valid. A trace state OpenTelemetry holds but W3C refuses is left out.
pub fn current_trace_context() -> Option<TraceContext> {
    let context = tracing::Span::current().context();
    trace_context(context.span().span_context())
}

/// An OpenTelemetry span context as W3C trace context; `None` when it is not valid.
pub fn trace_context(span: &SpanContext) -> Option<TraceContext> {
    let parent = TraceParent::new(
        span.trace_id().to_bytes(),
        span.span_id().to_bytes(),
        span.trace_flags().to_u8(),
    )
    .ok()?;
    let state = span
        .trace_state()
        .header()
        .parse::<TraceState>()
        .unwrap_or_default();
    Some(TraceContext::new(parent, state))
}

/// A W3C trace context as a remote OpenTelemetry span context.
pub fn span_context(context: &TraceContext) -> SpanContext {
    let parent = context.parent();
    // Our `TraceState` is valid W3C, which OpenTelemetry accepts; should it not, the span
    // context is kept without a state rather than dropped.
    let state = context.state().to_string().parse().unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        state,
    )
}

/// The OpenTelemetry context of the producer's span a message carries, to parent or link a
/// span to; `None` when it carries none or an invalid `traceparent` (W3C: a new trace then).
pub fn remote_context(message: &Message) -> Option<Context> {
    match message.trace_context() {
        Ok(Some(context)) => Some(Context::new().with_remote_span_context(span_context(&context))),
        Ok(None) => None,
        Err(error) => {
            tracing::debug!(message_id = %message.message_id, %error, "trace context ignored");
            None
        }
    }
}

/// A span `mq.process` for handling `message` (info level; fields `message_id` and
/// `consumed_times`), a child of the producer's span when the message carries
/// its trace context ([`remote_context`]), else a new root.
pub fn consumer_span(message: &Message) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "mq.process",
        message_id = %message.message_id,
        consumed_times = message.consumed_times,
    );
    if let Some(context) = remote_context(message)
        && let Err(error) = span.set_parent(context)
    {
        tracing::debug!(message_id = %message.message_id, %error, "span not parented");
    }
    span
}
