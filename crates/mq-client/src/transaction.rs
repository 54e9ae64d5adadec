//! [`TransactionProducer`]: half messages, commit/rollback, and the transaction checker.

use crate::checker::{CheckerHandle, CheckerReport, run_checker_loop};
use crate::client::Client;
use crate::consumer::{ReceivedMessages, receive, settle};
use crate::error::{AckError, Error};
use crate::producer::publish_checked;
use crate::runtime::Live;

use mq_proto::client::DecodeError;
use mq_proto::machine::{CheckerConfig, Decision};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, GroupId, Message, MessageId, ReceiptHandle, TagFilter,
    TopicMessage, TopicName, TransCheckImmunity, WaitSeconds,
};
use std::future::Future;

/// What a transactional publish returns: the message's id and body MD5, and the handle to
/// [`commit`](TransactionProducer::commit) or [`rollback`](TransactionProducer::rollback) it
/// with (always present: an answer without one is an [`Error::Response`]).
///
/// ```no_run
/// use mq_client::{TopicMessage, TransCheckImmunity};
///
/// # async fn example(tx: mq_client::TransactionProducer) -> Result<(), Box<dyn std::error::Error>> {
/// let message = TopicMessage::new("pay order 42")?
///     .with_trans_check_immunity(TransCheckImmunity::new(10)?);
/// let receipt = tx.publish(&message).await?;
/// println!("half message {}", receipt.message_id);
/// tx.commit(&receipt.receipt_handle).await?; // within the 10 s immunity
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionReceipt {
    /// Id assigned to the message.
    pub message_id: MessageId,
    /// Upper-case hex MD5 of the body as computed by the server (checked against ours).
    pub body_md5: String,
    /// The handle to commit or roll back with.
    pub receipt_handle: ReceiptHandle,
}

/// Publishes transactional (half) messages on one topic and resolves them for one group.
///
/// Flow: [`publish`](Self::publish) returns a receipt with a handle; [`commit`](Self::commit)
/// or [`rollback`](Self::rollback) with it before the check immunity elapses. Messages left
/// unresolved are offered back through [`consume_half`](Self::consume_half); the
/// [`run_checker`](Self::run_checker) loop does that for you and asks your closure for each
/// decision.
///
/// ```no_run
/// use mq_client::{Client, Decision, TopicMessage, TransCheckImmunity};
///
/// # async fn place_order() -> bool { true }
/// # async fn example(client: Client) -> Result<(), Box<dyn std::error::Error>> {
/// let tx = client.transaction_producer("orders".parse()?, "GID_orders_tx".parse()?);
/// // Answers the service's checks of transactions left undecided (here: after a crash).
/// let checker = tx.spawn_checker(|message| async move {
///     if message.body.starts_with("order") { Decision::Commit } else { Decision::Rollback }
/// });
///
/// let half = TopicMessage::new("order 42")?.with_trans_check_immunity(TransCheckImmunity::new(10)?);
/// let receipt = tx.publish(&half).await?; // invisible to consumers until committed
/// if place_order().await {
///     tx.commit(&receipt.receipt_handle).await?;
/// } else {
///     tx.rollback(&receipt.receipt_handle).await?;
/// }
/// let report = checker.shutdown().await?;
/// println!("the checker committed {}", report.committed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TransactionProducer {
    client: Client,
    topic: TopicName,
    group: GroupId,
}

impl TransactionProducer {
    pub(crate) fn new(client: Client, topic: TopicName, group: GroupId) -> Self {
        Self {
            client,
            topic,
            group,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The group that checks the transactions.
    pub fn group(&self) -> &GroupId {
        &self.group
    }

    /// Publishes a half message. Without a check immunity set on the message, the minimum
    /// (10 s) is used. The receipt carries the handle for commit/rollback.
    ///
    /// # Errors
    ///
    /// As [`Producer::publish`](crate::Producer::publish), and [`Error::Response`] when the
    /// service's answer carries no receipt handle.
    pub async fn publish(&self, message: &TopicMessage) -> Result<TransactionReceipt, Error> {
        let with_immunity;
        let message = if message.is_transactional() {
            message
        } else {
            with_immunity = message
                .clone()
                .with_trans_check_immunity(TransCheckImmunity::default());
            &with_immunity
        };
        let receipt = publish_checked(&self.client, &self.topic, message).await?;
        let receipt_handle =
            receipt
                .receipt_handle
                .ok_or(Error::Response(DecodeError::MissingElement(
                    "ReceiptHandle",
                )))?;
        Ok(TransactionReceipt {
            message_id: receipt.message_id,
            body_md5: receipt.body_md5,
            receipt_handle,
        })
    }

    /// Commits a half message: it becomes visible to consumers. Retried like
    /// [`Consumer::ack`](crate::Consumer::ack), with the same reading of a resend's
    /// per-handle answers.
    ///
    /// # Errors
    ///
    /// [`AckError`] as for [`Consumer::ack`](crate::Consumer::ack) of one handle: refused by
    /// the service ([`AckError::failures`]: the check immunity elapsed and the handle
    /// changed, or the transaction was already resolved), or the request failed
    /// ([`AckError::request_error`]; the handle is then [`AckError::unknown`]).
    pub async fn commit(&self, handle: &ReceiptHandle) -> Result<(), AckError> {
        self.decide(handle, AckKind::Commit).await
    }

    /// Rolls back a half message: it is dropped.
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit).
    pub async fn rollback(&self, handle: &ReceiptHandle) -> Result<(), AckError> {
        self.decide(handle, AckKind::Rollback).await
    }

    async fn decide(&self, handle: &ReceiptHandle, kind: AckKind) -> Result<(), AckError> {
        settle(
            &self.client,
            &self.topic,
            &self.group,
            kind,
            vec![handle.clone()],
        )
        .await
    }

    /// Receives half messages whose check time has come (each with a fresh handle).
    ///
    /// # Errors
    ///
    /// As [`Consumer::receive`](crate::Consumer::receive).
    pub async fn consume_half(
        &self,
        batch: BatchSize,
        wait: WaitSeconds,
    ) -> Result<ReceivedMessages, Error> {
        receive(
            &self.client,
            &self.topic,
            &self.group,
            ConsumeKind::Half,
            batch,
            wait,
            &TagFilter::All,
        )
        .await
    }

    /// Runs the transaction checker until `shutdown` completes: polls half messages, calls
    /// `decide` for each and sends the decision (commit or rollback; `Unknown` leaves the
    /// message for the next check, and so does a panic of `decide`, logged). In-flight
    /// decisions are finished before it returns.
    ///
    /// A message is decided once per checker even when its decision outlasts the check
    /// interval (the message offered again meanwhile is settled with that decision and its
    /// newest handle). Two limits: a decision that ends after the shutdown began and after
    /// its handle went stale cannot be settled (no more polls bring a fresh handle), so the
    /// next checker asks again; and several checkers of one group (processes) may each be
    /// offered the same message and decide it at once. Make `decide` idempotent: look the
    /// transaction up, do not act on it.
    ///
    /// # Errors
    ///
    /// None today: a failed poll is retried after a backoff, and a decision that did not
    /// take effect is counted in [`CheckerReport::failed`] (the message is checked again).
    /// The `Result` leaves room for errors that end a run.
    pub async fn run_checker<F, Fut, S>(
        &self,
        decide: F,
        shutdown: S,
    ) -> Result<CheckerReport, Error>
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = Decision> + Send + 'static,
        S: Future<Output = ()> + Send,
    {
        self.run_checker_with_config(CheckerConfig::default(), decide, shutdown)
            .await
    }

    /// [`run_checker`](Self::run_checker) with explicit settings.
    ///
    /// # Errors
    ///
    /// As [`run_checker`](Self::run_checker).
    pub async fn run_checker_with_config<F, Fut, S>(
        &self,
        config: CheckerConfig,
        decide: F,
        shutdown: S,
    ) -> Result<CheckerReport, Error>
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = Decision> + Send + 'static,
        S: Future<Output = ()> + Send,
    {
        run_checker_loop(self.clone(), config, decide, shutdown, Live::default()).await
    }

    /// Starts the checker in the background; stop it with [`CheckerHandle::shutdown`].
    pub fn spawn_checker<F, Fut>(&self, decide: F) -> CheckerHandle
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = Decision> + Send + 'static,
    {
        self.spawn_checker_with_config(CheckerConfig::default(), decide)
    }

    /// [`spawn_checker`](Self::spawn_checker) with explicit settings.
    pub fn spawn_checker_with_config<F, Fut>(
        &self,
        config: CheckerConfig,
        decide: F,
    ) -> CheckerHandle
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = Decision> + Send + 'static,
    {
        let producer = self.clone();
        CheckerHandle::spawn(self.client.runtime(), move |stop, report| {
            Box::pin(run_checker_loop(producer, config, decide, stop, report))
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}
