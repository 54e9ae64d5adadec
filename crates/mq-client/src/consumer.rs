//! [`Consumer`]: receive (normal or orderly), ack, and a [`MessageStream`] of deliveries.

use crate::client::Client;
use crate::error::{AckError, Error};

use crate::stream::MessageStream;
use crate::telemetry;
use mq_proto::client::{
    EncodeError, ack_request, consume_request, decode_ack_response, decode_consume_entries_bytes,
};
use mq_proto::machine::{ConsumerConfig, Idempotency};
use mq_proto::wire::consume::Entry;
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, ErrorCode, GroupId, HandleBatch, HandleFailure, Message,
    PoisonMessage, ReceiptHandle, TagFilter, TopicName, WaitSeconds, attribute_failures,
    check_subscription_names,
};
use std::borrow::Borrow;
use std::collections::HashSet;
use std::future::Future;
use std::ops::{Deref, DerefMut};

/// Consumes one topic in one group, optionally filtered by tags: receive and ack by hand,
/// or take a [`MessageStream`] that does the polling and batches the acks.
///
/// ```no_run
/// use mq_client::{BatchSize, Client, TagFilter, WaitSeconds};
///
/// # async fn example(client: Client) -> Result<(), Box<dyn std::error::Error>> {
/// let consumer = client
///     .consumer("orders".parse()?, "GID_billing".parse()?)
///     .with_tag_filter("created||paid".parse::<TagFilter>()?);
/// loop {
///     let messages = consumer.receive(BatchSize::MAX, WaitSeconds::new(30)?).await?;
///     for m in &messages {
///         println!("{}: {}", m.message_id, m.body);
///     }
///     // Ack what was handled; a handle the service refuses is delivered again later.
///     if let Err(e) = consumer.ack(messages.iter().map(|m| &m.receipt_handle)).await {
///         eprintln!("{e}; acknowledged {}", e.acked().len());
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Consumer {
    client: Client,
    topic: TopicName,
    group: GroupId,
    filter: TagFilter,
}

impl Consumer {
    pub(crate) fn new(client: Client, topic: TopicName, group: GroupId) -> Self {
        Self {
            client,
            topic,
            group,
            filter: TagFilter::All,
        }
    }

    /// Only receive messages whose tag matches `filter` (`"A||B"`).
    #[must_use]
    pub fn with_tag_filter(mut self, filter: TagFilter) -> Self {
        self.filter = filter;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The group.
    pub fn group(&self) -> &GroupId {
        &self.group
    }

    /// The tag filter.
    pub fn tag_filter(&self) -> &TagFilter {
        &self.filter
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Receives up to `batch` messages, waiting up to `wait` for the first one. The answer
    /// derefs to the messages (`for m in &received`, `received.len()`); nothing
    /// in it means no message arrived in time. A message of the answer the client cannot
    /// decode is in [`ReceivedMessages::poison`], apart from the others, with its receipt
    /// handle when it could be read (see there).
    ///
    /// # Errors
    ///
    /// Nothing was received when it fails (an empty answer is no error; one poison message
    /// is none either). A consume is
    /// idempotent, so transient failures are retried under the client's
    /// [`RetryConfig`](crate::RetryConfig) first; what is left is returned:
    /// - [`Error::Timeout`] / [`Error::Network`]: no answer within the wait plus the
    ///   long-poll margin, or the connection failed (a refused TLS certificate at once);
    /// - [`Error::Service`]: refused by the service — `TopicNotExist` (404), signature,
    ///   access key or instance (403), throttling or a 5xx that outlasted the retries;
    /// - [`Error::Response`]: an answer that could not be decoded (not XML, or damaged
    ///   outside every `Message` element);
    /// - [`Error::Credentials`]: the credentials provider failed;
    /// - [`Error::InvalidInput`] ([`EncodeError::NamesTooLong`]): group id, topic and instance
    ///   id are together longer than the service accepts (119 characters, PROTOCOL §6.9);
    ///   nothing was sent.
    pub async fn receive(
        &self,
        batch: BatchSize,
        wait: WaitSeconds,
    ) -> Result<ReceivedMessages, Error> {
        self.receive_kind(ConsumeKind::Normal, batch, wait).await
    }

    /// Like [`Consumer::receive`] for ordered topics: messages of one sharding key come in
    /// order, and a key stays blocked until all its delivered messages are acked.
    ///
    /// # Errors
    ///
    /// As [`Consumer::receive`].
    pub async fn receive_orderly(
        &self,
        batch: BatchSize,
        wait: WaitSeconds,
    ) -> Result<ReceivedMessages, Error> {
        self.receive_kind(ConsumeKind::Orderly, batch, wait).await
    }

    pub(crate) async fn receive_kind(
        &self,
        kind: ConsumeKind,
        batch: BatchSize,
        wait: WaitSeconds,
    ) -> Result<ReceivedMessages, Error> {
        receive(
            &self.client,
            &self.topic,
            &self.group,
            kind,
            batch,
            wait,
            &self.filter,
        )
        .await
    }

    /// Acknowledges messages by their receipt handles: any iterator of handles or of
    /// references to them (`ack(&handles)`, `ack([&h])`, `ack(vec)`). They are sent in
    /// [`HandleBatch`]es of at most 16, one request after another.
    ///
    /// A refusal that names no handle of its request (the service has been seen to send an
    /// empty `<ReceiptHandle>`) refuses every handle of that request it could mean, so a
    /// refusal is never counted as an acknowledgement ([`mq_proto::attribute_failures`]).
    ///
    /// A request that failed in a way that may have reached the service (connection lost,
    /// timeout, 5xx) is resent; per-handle `MessageNotExist`/`ReceiptHandleError` answers to
    /// such a resend are counted as acknowledged, because the earlier attempt most likely
    /// settled those handles (the consumer stream does the same).
    ///
    /// # Errors
    ///
    /// [`AckError`] when any handle is not known to be acknowledged; it lists every handle:
    /// - refused by the service (expired, already used, unknown): [`AckError::failures`];
    /// - when a request fails for good (its [`Error`] is [`AckError::request_error`]:
    ///   [`Error::Timeout`], [`Error::Network`], [`Error::Service`] for the whole request,
    ///   [`Error::Response`], [`Error::Credentials`]): the handles of the earlier requests
    ///   are [`acked`](AckError::acked) or refused, that request's are
    ///   [`unknown`](AckError::unknown), the later ones [`not_sent`](AckError::not_sent);
    /// - group id, topic and instance id together longer than the service accepts (119
    ///   characters, PROTOCOL §6.9): nothing is sent, every handle is
    ///   [`not_sent`](AckError::not_sent) and the error is [`Error::InvalidInput`].
    ///
    /// No handles is `Ok(())` without a request. A handle given twice is sent once.
    ///
    /// The handles are taken before the returned future first runs, so it is `Send` with
    /// any iterator (`ack(msgs.iter().map(|m| &m.receipt_handle))` in a spawned task).
    pub fn ack<I>(&self, handles: I) -> impl Future<Output = Result<(), AckError>> + Send + '_
    where
        I: IntoIterator,
        I::Item: Borrow<ReceiptHandle>,
    {
        let handles: Vec<ReceiptHandle> = handles.into_iter().map(|h| h.borrow().clone()).collect();
        settle(
            &self.client,
            &self.topic,
            &self.group,
            AckKind::Ack,
            handles,
        )
    }

    /// A stream of deliveries driven by the consumer state machine with default settings:
    /// a long poll always outstanding, acks batched, bounded messages in hand.
    pub fn stream(&self) -> MessageStream {
        self.stream_with_config(ConsumerConfig::default())
    }

    /// [`Consumer::stream`] with explicit settings (batch, wait, in-hand bound, ack delay,
    /// orderly or normal).
    pub fn stream_with_config(&self, config: ConsumerConfig) -> MessageStream {
        MessageStream::spawn(self.clone(), config)
    }
}

/// One consume request (with retries).
pub(crate) async fn receive(
    client: &Client,
    topic: &TopicName,
    group: &GroupId,
    kind: ConsumeKind,
    batch: BatchSize,
    wait: WaitSeconds,
    filter: &TagFilter,
) -> Result<ReceivedMessages, Error> {
    let timeout = client.timeouts().for_wait(wait);
    let entries = client
        .execute(
            "consume",
            topic,
            Idempotency::Idempotent,
            timeout,
            &|ctx| {
                Ok(consume_request(
                    ctx, topic, group, kind, batch, wait, filter,
                )?)
            },
            decode_consume_entries_bytes,
        )
        .await?;
    let mut received = ReceivedMessages::default();
    for entry in entries {
        match entry {
            Entry::Message(m) => received.messages.push(m),
            Entry::Poison(p) => {
                log_poison(&p);
                received.poison.push(p);
            }
        }
    }
    telemetry::deliveries(topic, group, received.messages.len());
    Ok(received)
}

/// The `tracing` target of the warning the client logs for each poison message (a message
/// it could not decode, returned in `ReceivedMessages::poison`), so a program that reports
/// poison messages itself (the `mq` CLI) can turn that event off without the other warnings.
pub const POISON_LOG_TARGET: &str = "mq_client::poison";

/// Logs a message the client could not decode (warn: its id, delivery count and reason).
pub(crate) fn log_poison(poison: &PoisonMessage) {
    tracing::warn!(
        target: POISON_LOG_TARGET,
        message_id = ?poison.message_id,
        consumed_times = ?poison.consumed_times,
        reason = %poison.reason,
        "received a message that cannot be decoded"
    );
}

/// The answer of [`Consumer::receive`], [`Consumer::receive_orderly`] and
/// [`TransactionProducer::consume_half`](crate::TransactionProducer::consume_half): the
/// messages, and apart from them the poison messages (ones the client could not decode:
/// not UTF-8, a `MessageBodyMD5` that does not match, bad properties, a missing element;
/// [`PoisonReason`](mq_proto::PoisonReason)).
///
/// It derefs to its [`messages`](Self::messages) and iterates over them, so
/// `for m in &received`, `received.len()`, `received.is_empty()`, `received[0]` and
/// `received.pop()` are about the messages. A poison message is delivered like the others: with its receipt
/// handle (when it could be read) ack it to drop it for good, or leave it to be delivered
/// again after its invisibility time and, after the broker's retries, moved to the
/// dead-letter queue. Every poison message is also logged (`tracing`, warn).
///
/// ```no_run
/// # async fn example(consumer: mq_client::Consumer) -> Result<(), Box<dyn std::error::Error>> {
/// use mq_client::{BatchSize, WaitSeconds};
/// let received = consumer.receive(BatchSize::MAX, WaitSeconds::new(10)?).await?;
/// for m in &received {
///     println!("{}", m.body);
/// }
/// for p in &received.poison {
///     eprintln!("cannot decode {:?}: {}", p.message_id, p.reason); // keep p.raw if needed
/// }
/// // Ack the messages and drop the poison ones for good.
/// let poison = received.poison.iter().filter_map(|p| p.receipt_handle.as_ref());
/// consumer.ack(received.iter().map(|m| &m.receipt_handle).chain(poison)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedMessages {
    /// The messages that decoded, in the answer's order.
    pub messages: Vec<Message>,
    /// The messages the client could not decode, in the answer's order.
    pub poison: Vec<PoisonMessage>,
}

impl ReceivedMessages {
    /// The messages, without the poison ones (which are left: delivered again later).
    pub fn into_messages(self) -> Vec<Message> {
        self.messages
    }
}

impl Deref for ReceivedMessages {
    type Target = Vec<Message>;

    fn deref(&self) -> &Vec<Message> {
        &self.messages
    }
}

impl DerefMut for ReceivedMessages {
    fn deref_mut(&mut self) -> &mut Vec<Message> {
        &mut self.messages
    }
}

impl IntoIterator for ReceivedMessages {
    type Item = Message;
    type IntoIter = std::vec::IntoIter<Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.messages.into_iter()
    }
}

impl<'a> IntoIterator for &'a ReceivedMessages {
    type Item = &'a Message;
    type IntoIter = std::slice::Iter<'a, Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.messages.iter()
    }
}

impl From<ReceivedMessages> for Vec<Message> {
    fn from(received: ReceivedMessages) -> Self {
        received.messages
    }
}

/// The operation name of a settlement request (traces).
pub(crate) fn settle_operation(kind: AckKind) -> &'static str {
    match kind {
        AckKind::Ack => "ack",
        AckKind::Commit => "commit",
        AckKind::Rollback => "rollback",
    }
}

/// Settles any number of handles in requests of one [`HandleBatch`] each, in turn; stops at
/// the first request that fails (see [`AckError`]).
pub(crate) async fn settle(
    client: &Client,
    topic: &TopicName,
    group: &GroupId,
    kind: AckKind,
    handles: Vec<ReceiptHandle>,
) -> Result<(), AckError> {
    let mut outcome = AckError::empty().for_kind(kind);
    // A handle given twice is settled once: its second copy's refusal (the first settled
    // it) would otherwise count both as not acknowledged.
    let mut seen = HashSet::with_capacity(handles.len());
    let handles = handles.into_iter().filter(|h| seen.insert(h.clone()));
    let mut batches = HandleBatch::split(handles).into_iter().peekable();
    if batches.peek().is_some()
        && let Err(e) = check_subscription_names(client.instance_id(), topic, group)
    {
        // Refused before any request: every handle is not sent.
        let error = Error::from(EncodeError::from(e));
        outcome.failed(Vec::new(), error, batches.flat_map(HandleBatch::into_vec));
        return outcome.into_result();
    }
    while let Some(batch) = batches.next() {
        match ack_handles(client, topic, group, kind, &batch).await {
            Ok(failures) => outcome.answered(batch.as_slice(), failures),
            Err(error) => {
                outcome.failed(
                    batch.into_vec(),
                    error,
                    batches.flat_map(HandleBatch::into_vec),
                );
                break;
            }
        }
    }
    telemetry::settlements(kind, 0, Some(&outcome));
    outcome.into_result()
}

/// One ack/commit/rollback request of one [`HandleBatch`] (with retries).
async fn ack_handles(
    client: &Client,
    topic: &TopicName,
    group: &GroupId,
    kind: AckKind,
    batch: &HandleBatch,
) -> Result<Vec<HandleFailure>, Error> {
    let handles = batch.as_slice();
    let timeout = client.timeouts().request;
    let (failures, resent) = client
        .execute_tracked(
            settle_operation(kind),
            topic,
            Idempotency::Idempotent,
            timeout,
            &|ctx| Ok(ack_request(ctx, topic, group, kind, handles)?),
            |status, headers, body| decode_ack_response(status, headers, body),
        )
        .await?;
    // One place decides which handles a refusal names (a failure naming no handle of the
    // request refuses every handle it could mean); never count a refusal as an ack.
    let mut failures = attribute_failures(handles, failures);
    if resent {
        // The handles an earlier attempt settled are "gone" for the resend.
        failures.retain(|f| {
            !matches!(
                f.code,
                ErrorCode::MessageNotExist | ErrorCode::ReceiptHandleError
            )
        });
    }
    Ok(failures)
}
