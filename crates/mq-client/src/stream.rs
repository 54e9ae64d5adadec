//! [`MessageStream`]: a `futures::Stream` of [`Delivery`]s (and [`PoisonDelivery`]s for
//! messages the client cannot decode), driven by
//! [`mq_proto::machine::ConsumerMachine`] in a background task (the driver shared with the
//! transaction checker, `driver.rs`; this file is its [`Handler`]).
//!
//! The task keeps one long poll outstanding, batches acks (16 handles or a short delay),
//! drops acks whose handles already expired and reports them, backs off on errors and bounds
//! the number of messages in hand. Dropping the stream (or calling
//! [`MessageStream::shutdown`]) stops receiving, flushes queued acks and releases unacked
//! messages (they are delivered again after their invisibility time).

use crate::consumer::Consumer;
use crate::driver::{Command, Driver, Handler, Target};
use crate::error::{AckError, Error};
use crate::runtime::BoxFuture;
use crate::telemetry::{self, Counted};
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, Stream, StreamExt};
use metrics::Gauge;
use mq_proto::machine::{ConsumerConfig, ConsumerMachine};
use mq_proto::{AckKind, Message, PoisonMessage, ReceiptHandle};
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// The user's side of a message in hand (a [`Delivery`] or a [`PoisonDelivery`]): acks or
/// releases it through the driver, and releases it when dropped unsettled.
pub(crate) struct InHand {
    /// `None` for a poison message whose handle could not be read: nothing to settle.
    handle: Option<ReceiptHandle>,
    commands: mpsc::UnboundedSender<Command>,
    settled: bool,
    /// The last instant its settlement can still be sent (the machine's
    /// `ConsumerMachine::settle_by`); `None` when unknown.
    settle_by: Option<Instant>,
    /// Counts the message in the stream's in-flight gauge until it is dropped (every way it
    /// ends: ack, release, drop).
    _counted: Counted,
}

impl InHand {
    fn new(
        handle: Option<ReceiptHandle>,
        settle_by: Option<Instant>,
        commands: &mpsc::UnboundedSender<Command>,
        in_flight: &Gauge,
    ) -> Self {
        Self {
            handle,
            commands: commands.clone(),
            settled: false,
            settle_by,
            _counted: Counted::new(in_flight.clone()),
        }
    }

    pub(crate) fn ack(&mut self) -> Option<AckFuture> {
        self.settled = true;
        let handle = self.handle.clone()?;
        let (tx, rx) = oneshot::channel();
        // If the driver is gone, the receiver resolves to a shutdown error.
        let _ = self.commands.unbounded_send(Command::Settle {
            handle: handle.clone(),
            kind: AckKind::Ack,
            reply: Some(tx),
        });
        Some(AckFuture { rx, handle })
    }

    /// Whether its settlement can no longer be sent at `now` (its lease ran out: the
    /// service delivers the message again).
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.settle_by.is_some_and(|by| now >= by)
    }

    pub(crate) fn release(&mut self) {
        self.settled = true;
        if let Some(handle) = self.handle.clone() {
            let _ = self.commands.unbounded_send(Command::Release(handle));
        }
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        if !self.settled {
            self.release();
        }
    }
}

/// One received message, in hand until acked or released. Dropping it without acking
/// releases it (it will be delivered again after its invisibility time).
///
/// It dereferences to its [`Message`].
///
/// ```no_run
/// use futures::StreamExt;
/// use mq_client::{MessageStream, StreamItem};
///
/// # async fn example(mut stream: MessageStream) -> Result<(), Box<dyn std::error::Error>> {
/// match stream.next().await.transpose()? {
///     Some(StreamItem::Message(delivery)) if delivery.body.is_empty() => {
///         delivery.release(); // not for us now: delivered again later
///     }
///     Some(StreamItem::Message(delivery)) => {
///         println!("{} (delivered {} times)", delivery.body, delivery.consumed_times);
///         if let Err(e) = delivery.ack().await {
///             // Refused (`failures()`), expired before it was sent (`expired()`), or the
///             // request failed and it may or may not be acked (`unknown()`).
///             eprintln!("not acknowledged: {e}");
///         }
///     }
///     Some(StreamItem::Poison(poison)) => {
///         eprintln!("cannot decode {:?}: {}", poison.message_id, poison.reason);
///         poison.release(); // or `poison.ack()` to drop it
///     }
///     None => {}
/// }
/// # Ok(()) }
/// ```
pub struct Delivery {
    message: Message,
    in_hand: InHand,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Deref for Delivery {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

impl Delivery {
    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Queues the ack (sent in a batch shortly) and returns a future of its outcome. The ack
    /// is sent whether or not the future is awaited.
    pub fn ack(mut self) -> AckFuture {
        match self.in_hand.ack() {
            Some(ack) => ack,
            // A delivery always has its handle; this arm is never taken.
            None => AckFuture::shut_down(self.message.receipt_handle.clone()),
        }
    }

    /// Gives the message back without acking: it is no longer counted as in hand and will be
    /// delivered again after its invisibility time.
    pub fn release(mut self) {
        self.in_hand.release();
    }

    /// The message, and what acks or releases it (released when dropped unsettled).
    pub(crate) fn into_parts(self) -> (Message, InHand) {
        (self.message, self.in_hand)
    }

    /// Whether its ack can no longer be sent at `now` (see [`InHand::expired`]).
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.in_hand.expired(now)
    }

    /// The last instant its ack can be sent, when known.
    pub(crate) fn settle_by(&self) -> Option<Instant> {
        self.in_hand.settle_by
    }
}

/// A message the client could not decode (see [`PoisonMessage`]: what could be read of it,
/// its raw bytes and the reason), in hand like a [`Delivery`] when its receipt handle could
/// be read: [`ack`](Self::ack) drops it for good, [`release`](Self::release) (or dropping
/// it) leaves it to be delivered again after its invisibility time — and, once the broker's
/// retries are used up, to the dead-letter queue.
///
/// It dereferences to its [`PoisonMessage`].
pub struct PoisonDelivery {
    poison: PoisonMessage,
    in_hand: InHand,
}

impl fmt::Debug for PoisonDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoisonDelivery")
            .field("poison", &self.poison)
            .finish_non_exhaustive()
    }
}

impl Deref for PoisonDelivery {
    type Target = PoisonMessage;
    fn deref(&self) -> &PoisonMessage {
        &self.poison
    }
}

impl PoisonDelivery {
    /// What could be read of the message, its raw bytes and why it could not be decoded.
    pub fn poison(&self) -> &PoisonMessage {
        &self.poison
    }

    /// Queues an ack that drops the message for good, like [`Delivery::ack`]; `None` when
    /// its receipt handle could not be read (nothing can ack it then).
    pub fn ack(mut self) -> Option<AckFuture> {
        self.in_hand.ack()
    }

    /// Leaves the message to be delivered again after its invisibility time.
    pub fn release(mut self) {
        self.in_hand.release();
    }
}

/// One item of a [`MessageStream`]: a message, or a message the client could not decode.
/// Both are in hand until acked or released (dropping releases).
///
/// ```no_run
/// use futures::StreamExt;
/// use mq_client::StreamItem;
///
/// # async fn example(consumer: mq_client::Consumer) -> Result<(), mq_client::Error> {
/// let mut stream = consumer.stream();
/// while let Some(item) = stream.next().await {
///     match item? {
///         StreamItem::Message(delivery) => {
///             println!("{}", delivery.message().body);
///             let _ = delivery.ack(); // batched; await the future to learn the outcome
///         }
///         StreamItem::Poison(poison) => {
///             eprintln!("cannot decode {:?}: {}", poison.message_id, poison.reason);
///             poison.release(); // delivered again later, then dead-lettered
///         }
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum StreamItem {
    /// A message that decoded.
    Message(Delivery),
    /// A message that did not: the rest of its batch is delivered as usual.
    Poison(PoisonDelivery),
}

impl StreamItem {
    /// The delivery, or the poison delivery as the error.
    ///
    /// # Errors
    ///
    /// The [`PoisonDelivery`] (boxed: it is large) when the message could not be decoded;
    /// still in hand: ack or release it, or drop it to release it.
    pub fn into_delivery(self) -> Result<Delivery, Box<PoisonDelivery>> {
        match self {
            Self::Message(d) => Ok(d),
            Self::Poison(p) => Err(Box::new(p)),
        }
    }
}

/// The outcome of [`Delivery::ack`].
#[must_use = "the ack is sent anyway; await this to learn whether it succeeded"]
pub struct AckFuture {
    rx: oneshot::Receiver<Result<(), AckError>>,
    /// For the outcome when the driver is gone before answering.
    handle: ReceiptHandle,
}

impl fmt::Debug for AckFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckFuture").finish_non_exhaustive()
    }
}

impl AckFuture {
    /// A future that reports the driver as gone: whether the ack went out is unknown.
    fn shut_down(handle: ReceiptHandle) -> Self {
        let (_, rx) = oneshot::channel();
        Self { rx, handle }
    }
}

impl std::future::Future for AckFuture {
    type Output = Result<(), AckError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(self.rx.poll_unpin(cx));
        Poll::Ready(result.unwrap_or_else(|_| {
            // The driver stopped before answering: whether the ack went out is unknown.
            Err(AckError::request_failed(
                self.handle.clone(),
                Error::Shutdown,
            ))
        }))
    }
}

/// A stream of deliveries: [`StreamItem::Message`] for a message, [`StreamItem::Poison`] for
/// one the client could not decode (the rest of its batch is delivered). Items are `Err`
/// when a receive failed (the stream keeps going and retries after a backoff); it ends after
/// [`MessageStream::shutdown`]. If its background task is stopped otherwise (its runtime
/// shut down), its last item is `Err(`[`Error::Shutdown`]`)`.
///
/// ```no_run
/// use futures::StreamExt;
/// use mq_client::{Consumer, ConsumerConfig, StreamItem, WaitSeconds};
/// use std::time::Duration;
///
/// # async fn example(consumer: Consumer) -> Result<(), Box<dyn std::error::Error>> {
/// let config = ConsumerConfig::normal()
///     .with_wait(WaitSeconds::new(10)?)
///     .with_ack_flush_delay(Duration::from_millis(50));
/// let mut stream = consumer.stream_with_config(config);
/// let mut handled = 0;
/// while let Some(item) = stream.next().await {
///     match item {
///         Ok(StreamItem::Message(delivery)) => {
///             println!("{}", delivery.body);
///             // Batched with other acks; awaiting the future is optional.
///             let _ack = delivery.ack();
///             handled += 1;
///         }
///         // Cannot be decoded: drop it (or release it to have it delivered again).
///         Ok(StreamItem::Poison(poison)) => {
///             eprintln!("dropping {:?}: {}", poison.message_id, poison.reason);
///             let _ack = poison.ack();
///         }
///         // A failed receive: the stream retries after a backoff.
///         Err(e) if e.is_retryable() => eprintln!("receive failed, retrying: {e}"),
///         Err(e) => return Err(e.into()),
///     }
///     if handled == 100 {
///         break;
///     }
/// }
/// stream.shutdown().await; // sends the queued acks, releases what is left
/// # Ok(()) }
/// ```
pub struct MessageStream {
    deliveries: mpsc::UnboundedReceiver<Result<StreamItem, Error>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStream").finish_non_exhaustive()
    }
}

impl Stream for MessageStream {
    type Item = Result<StreamItem, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deliveries.poll_next_unpin(cx)
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        let _ = self.commands.unbounded_send(Command::Shutdown(None));
    }
}

impl MessageStream {
    /// Stops receiving, waits until queued acks are sent and every delivery still in hand is
    /// acked or released, then ends the stream. Deliveries not yet taken from the stream are
    /// released.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .unbounded_send(Command::Shutdown(Some(tx)))
            .is_ok()
        {
            // Deliveries buffered in the stream are released when dropped.
            self.deliveries.close();
            while let Some(item) = self.deliveries.next().await {
                drop(item);
            }
            let _ = rx.await;
        }
    }

    /// Stops receiving at once (the outstanding long poll is abandoned) while the messages
    /// in hand can still be acked; [`shutdown`](Self::shutdown) finishes the rest.
    pub(crate) fn stop_receiving(&self) {
        let _ = self.commands.unbounded_send(Command::Shutdown(None));
    }

    pub(crate) fn spawn(consumer: Consumer, config: ConsumerConfig) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::unbounded();
        let (del_tx, del_rx) = mpsc::unbounded();
        let client = consumer.client().clone();
        let machine = ConsumerMachine::new(config, client.next_seed());
        let runtime = client.runtime().clone();
        let target = Target {
            client,
            topic: consumer.topic().clone(),
            group: consumer.group().clone(),
            filter: consumer.tag_filter().clone(),
        };
        let unexpected_end = UnexpectedEnd(Some(del_tx.clone()));
        let handler = StreamHandler {
            deliveries: del_tx,
            in_flight: telemetry::stream_in_flight(consumer.topic(), consumer.group()),
        };
        let driver = Driver::new(machine, target, handler, cmd_tx.clone());
        runtime.spawn(Box::pin(async move {
            driver.run(cmd_rx, futures::future::pending()).await;
            // Ended after a shutdown: the stream just ends.
            unexpected_end.disarm();
        }));
        Self {
            deliveries: del_rx,
            commands: cmd_tx,
        }
    }
}

/// Dropped with the stream's task: unless the task ended after a shutdown (it was
/// stopped, e.g. its runtime shut down), the stream's last item is `Err(Error::Shutdown)`
/// rather than a silent end.
struct UnexpectedEnd(Option<mpsc::UnboundedSender<Result<StreamItem, Error>>>);

impl UnexpectedEnd {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for UnexpectedEnd {
    fn drop(&mut self) {
        if let Some(deliveries) = self.0.take() {
            let _ = deliveries.unbounded_send(Err(Error::Shutdown));
        }
    }
}

/// The stream's side of the driver: messages become [`Delivery`]s, outcomes go to each
/// [`AckFuture`] (the driver does that), receive errors become `Err` items.
struct StreamHandler {
    deliveries: mpsc::UnboundedSender<Result<StreamItem, Error>>,
    in_flight: Gauge,
}

impl Handler for StreamHandler {
    fn message(
        &mut self,
        message: Message,
        settle_by: Option<Instant>,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Option<BoxFuture<Command>> {
        let in_hand = InHand::new(
            Some(message.receipt_handle.clone()),
            settle_by,
            commands,
            &self.in_flight,
        );
        // If the stream is gone the delivery is dropped here and releases itself.
        let _ = self
            .deliveries
            .unbounded_send(Ok(StreamItem::Message(Delivery { message, in_hand })));
        None
    }

    fn poison(&mut self, poison: PoisonMessage, commands: &mpsc::UnboundedSender<Command>) {
        let in_hand = InHand::new(
            poison.receipt_handle.clone(),
            None,
            commands,
            &self.in_flight,
        );
        let _ = self
            .deliveries
            .unbounded_send(Ok(StreamItem::Poison(PoisonDelivery { poison, in_hand })));
    }

    fn settled(&mut self, _: AckKind, _: &ReceiptHandle, _: &Result<(), AckError>) {}

    fn released(&mut self, _: &ReceiptHandle) {}

    fn poll_failed(&mut self, error: Error) {
        tracing::warn!(error = %error, "receive failed; retrying after backoff");
        let _ = self.deliveries.unbounded_send(Err(error));
    }
}
