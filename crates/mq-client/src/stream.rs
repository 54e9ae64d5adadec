//! [`MessageStream`]: a `futures::Stream` of [`Delivery`]s, driven by
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
use mq_proto::{AckKind, Message, ReceiptHandle};
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};

/// One received message, in hand until acked or released. Dropping it without acking
/// releases it (it will be delivered again after its invisibility time).
///
/// It dereferences to its [`Message`].
///
/// ```no_run
/// use futures::StreamExt;
/// use mq_client::MessageStream;
///
/// # async fn example(mut stream: MessageStream) -> Result<(), Box<dyn std::error::Error>> {
/// if let Some(delivery) = stream.next().await {
///     let delivery = delivery?;
///     if delivery.body.is_empty() {
///         delivery.release(); // not for us now: delivered again later
///     } else {
///         println!("{} (delivered {} times)", delivery.body, delivery.consumed_times);
///         if let Err(e) = delivery.ack().await {
///             // Refused (`failures()`), expired before it was sent (`expired()`), or the
///             // request failed and it may or may not be acked (`unknown()`).
///             eprintln!("not acknowledged: {e}");
///         }
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Delivery {
    message: Message,
    commands: mpsc::UnboundedSender<Command>,
    settled: bool,
    /// Counts the delivery in the stream's in-flight gauge until it is dropped (every way a
    /// delivery ends: ack, release, drop).
    _in_hand: Counted,
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
        self.settled = true;
        let (tx, rx) = oneshot::channel();
        let handle = self.message.receipt_handle.clone();
        if self
            .commands
            .unbounded_send(Command::Settle {
                handle: handle.clone(),
                kind: AckKind::Ack,
                reply: Some(tx),
            })
            .is_err()
        {
            // The driver is gone: the receiver below resolves to a shutdown error.
        }
        AckFuture { rx, handle }
    }

    /// Gives the message back without acking: it is no longer counted as in hand and will be
    /// delivered again after its invisibility time.
    pub fn release(mut self) {
        self.settled = true;
        let _ = self
            .commands
            .unbounded_send(Command::Release(self.message.receipt_handle.clone()));
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self
                .commands
                .unbounded_send(Command::Release(self.message.receipt_handle.clone()));
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

/// A stream of deliveries. Items are `Err` when a receive failed (the stream keeps going and
/// retries after a backoff); it ends after [`MessageStream::shutdown`].
///
/// ```no_run
/// use futures::StreamExt;
/// use mq_client::{Consumer, ConsumerConfig, WaitSeconds};
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
///         Ok(delivery) => {
///             println!("{}", delivery.body);
///             // Batched with other acks; awaiting the future is optional.
///             let _ack = delivery.ack();
///             handled += 1;
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
    deliveries: mpsc::UnboundedReceiver<Result<Delivery, Error>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageStream").finish_non_exhaustive()
    }
}

impl Stream for MessageStream {
    type Item = Result<Delivery, Error>;
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
        let handler = StreamHandler {
            deliveries: del_tx,
            in_flight: telemetry::stream_in_flight(consumer.topic(), consumer.group()),
        };
        let driver = Driver::new(machine, target, handler, cmd_tx.clone());
        runtime.spawn(Box::pin(async move {
            driver.run(cmd_rx, futures::future::pending()).await;
        }));
        Self {
            deliveries: del_rx,
            commands: cmd_tx,
        }
    }
}

/// The stream's side of the driver: messages become [`Delivery`]s, outcomes go to each
/// [`AckFuture`] (the driver does that), receive errors become `Err` items.
struct StreamHandler {
    deliveries: mpsc::UnboundedSender<Result<Delivery, Error>>,
    in_flight: Gauge,
}

impl Handler for StreamHandler {
    fn message(
        &mut self,
        message: Message,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Option<BoxFuture<Command>> {
        let delivery = Delivery {
            message,
            commands: commands.clone(),
            settled: false,
            _in_hand: Counted::new(self.in_flight.clone()),
        };
        // If the stream is gone the delivery is dropped here and releases itself.
        let _ = self.deliveries.unbounded_send(Ok(delivery));
        None
    }

    fn settled(&mut self, _: AckKind, _: &ReceiptHandle, _: &Result<(), AckError>) {}

    fn released(&mut self, _: &ReceiptHandle) {}

    fn poll_failed(&mut self, error: Error) {
        tracing::warn!(error = %error, "receive failed; retrying after backoff");
        let _ = self.deliveries.unbounded_send(Err(error));
    }
}
