//! [`Producer`]: publishes normal, tagged, keyed, scheduled and ordered messages.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::error::Error;

use mq_proto::client::{PublishReceipt, decode_publish_response, publish_request};
use mq_proto::machine::Idempotency;
use mq_proto::trace::KEY_TRACEPARENT;
use mq_proto::{TopicMessage, TopicName};

/// Publishes messages to one topic.
///
/// A publish is retried only when the request provably did not reach the server (connect
/// failure, request not written), unless the client's retry config enables at-least-once
/// publishing. The body MD5 the service reports is checked against our own.
///
/// ```no_run
/// use mq_client::{Client, Tag, TopicMessage};
///
/// # async fn example(client: Client) -> Result<(), mq_client::Error> {
/// let producer = client.producer("orders".parse()?);
/// let message = TopicMessage::new("order 42 created")?
///     .with_tag(Tag::new("created")?)
///     .with_key("order-42")?
///     .with_property("region", "eu")?;
/// let receipt = producer.publish(&message).await?;
/// println!("published {} (MD5 {})", receipt.message_id, receipt.body_md5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    client: Client,
    topic: TopicName,
}

impl Producer {
    pub(crate) fn new(client: Client, topic: TopicName) -> Self {
        Self { client, topic }
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// Publishes one message and returns its id and body MD5.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidInput`] ([`InvalidInput::Message`](crate::InvalidInput::Message)):
    ///   the message is over a size limit, or its delivery time is more than 40 days ahead of
    ///   this machine's clock ([`MessageError::ScheduledTooFar`](mq_proto::MessageError::ScheduledTooFar));
    ///   nothing was sent.
    /// - [`Error::Timeout`] / [`Error::Network`]: no answer in time, or the connection
    ///   failed. Unless at-least-once publishing is on, a failure after the request may have
    ///   reached the service is not retried, so the message **may have been stored**
    ///   ([`FailureKind::request_may_have_reached_server`](crate::mq_proto::machine::FailureKind::request_may_have_reached_server)
    ///   of [`Error::failure_kind`] tells).
    /// - [`Error::Service`]: refused by the service (`TopicNotExist`, signature or access
    ///   errors, an invalid message, throttling or a 5xx left after the retries).
    /// - [`Error::Response`]: an answer that could not be decoded.
    /// - [`Error::Md5Mismatch`]: the service reported another body MD5 than ours.
    /// - [`Error::Credentials`]: the credentials provider failed.
    pub async fn publish(&self, message: &TopicMessage) -> Result<PublishReceipt, Error> {
        publish_checked(&self.client, &self.topic, message).await
    }
}

/// Publishes and verifies the reported body MD5 (shared by both producers).
pub(crate) async fn publish_checked(
    client: &Client,
    topic: &TopicName,
    message: &TopicMessage,
) -> Result<PublishReceipt, Error> {
    // Trace context propagation (opt-in): the current context, unless the message has one.
    let traced;
    let message = match client.current_trace_context() {
        Some(context) if message.properties().get(KEY_TRACEPARENT).is_none() => {
            traced = message.clone().with_trace_context(&context);
            &traced
        }
        _ => message,
    };
    message.check_limits()?;
    // Against this machine's clock: the service's may differ by the 15 minutes a signed Date
    // may be off, so a time within that of the limit can still be refused there.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    message.check_schedule(now_ms)?;
    let timeout = client.timeouts().request;
    let receipt = client
        .execute(
            "publish",
            topic,
            Idempotency::NonIdempotent,
            timeout,
            &|ctx| Ok(publish_request(ctx, topic, message)),
            |status, headers, body| decode_publish_response(status, headers, body),
        )
        .await?;
    let expected = message.body_md5();
    if !receipt.body_md5.eq_ignore_ascii_case(expected) {
        return Err(Error::Md5Mismatch {
            expected: expected.to_owned(),
            reported: receipt.body_md5,
        });
    }
    Ok(receipt)
}
