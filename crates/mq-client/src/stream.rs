//! [`MessageStream`]: a `futures::Stream` of [`Delivery`]s, driven by
//! [`mq_proto::machine::ConsumerMachine`] in a background task.
//!
//! The task keeps one long poll outstanding, batches acks (16 handles or a short delay),
//! drops acks whose handles already expired and reports them, backs off on errors and bounds
//! the number of messages in hand. Dropping the stream (or calling
//! [`MessageStream::shutdown`]) stops receiving, flushes queued acks and releases unacked
//! messages (they are delivered again after their invisibility time).

use crate::consumer::Consumer;
use crate::error::{AckError, Error};
use crate::runtime::{BoxFuture, Runtime};
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use mq_proto::client::{ack_request, consume_request, decode_ack_response, decode_received};
use mq_proto::machine::{
    ConsumerConfig, ConsumerEvent, ConsumerMachine, ConsumerTransmit, FailureKind, Received,
};
use mq_proto::{AckKind, ErrorCode, HandleFailure, Message, ReceiptHandle};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

enum Command {
    Ack(ReceiptHandle, oneshot::Sender<Result<(), AckError>>),
    Release(ReceiptHandle),
    Shutdown(Option<oneshot::Sender<()>>),
}

/// One received message, in hand until acked or released. Dropping it without acking
/// releases it (it will be delivered again after its invisibility time).
pub struct Delivery {
    message: Message,
    commands: mpsc::UnboundedSender<Command>,
    settled: bool,
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
            .unbounded_send(Command::Ack(handle, tx))
            .is_err()
        {
            // The driver is gone: the receiver below resolves to a shutdown error.
        }
        AckFuture { rx }
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
}

impl fmt::Debug for AckFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckFuture").finish_non_exhaustive()
    }
}

impl std::future::Future for AckFuture {
    type Output = Result<(), AckError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.rx.poll_unpin(cx).map(|r| match r {
            Ok(result) => result,
            Err(_) => Err(AckError::Request(Error::Shutdown)),
        })
    }
}

/// A stream of deliveries. Items are `Err` when a receive failed (the stream keeps going and
/// retries after a backoff); it ends after [`MessageStream::shutdown`].
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

    pub(crate) fn spawn<R: Runtime>(consumer: Consumer<R>, config: ConsumerConfig) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::unbounded();
        let (del_tx, del_rx) = mpsc::unbounded();
        let seed = consumer.client().next_seed();
        let driver = Driver {
            machine: ConsumerMachine::new(config, seed),
            consumer,
            commands_tx: cmd_tx.clone(),
            deliveries: del_tx,
            ack_waiters: HashMap::new(),
            last_receive_error: None,
            shutdown_waiters: Vec::new(),
        };
        let runtime = driver.consumer.client().runtime().clone();
        runtime.spawn(Box::pin(driver.run(cmd_rx)));
        Self {
            deliveries: del_rx,
            commands: cmd_tx,
        }
    }
}

enum Completion {
    Receive(u64, Result<Received, (FailureKind, Error)>),
    Ack(u64, Result<Vec<HandleFailure>, (FailureKind, Error)>),
}

struct Driver<R: Runtime> {
    machine: ConsumerMachine,
    consumer: Consumer<R>,
    commands_tx: mpsc::UnboundedSender<Command>,
    deliveries: mpsc::UnboundedSender<Result<Delivery, Error>>,
    ack_waiters: HashMap<ReceiptHandle, oneshot::Sender<Result<(), AckError>>>,
    last_receive_error: Option<Error>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
}

impl<R: Runtime> Driver<R> {
    fn start(&self, transmit: ConsumerTransmit) -> BoxFuture<Completion> {
        let consumer = self.consumer.clone();
        match transmit {
            ConsumerTransmit::Receive {
                id,
                kind,
                batch,
                wait,
            } => Box::pin(async move {
                let client = consumer.client();
                let timeout = client.timeouts().for_wait(wait);
                let (topic, group, filter) =
                    (consumer.topic(), consumer.group(), consumer.tag_filter());
                let r = client
                    .attempt(
                        "consume",
                        topic,
                        timeout,
                        &|ctx| {
                            Ok(consume_request(
                                ctx, topic, group, kind, batch, wait, filter,
                            ))
                        },
                        decode_received,
                    )
                    .await;
                Completion::Receive(id, r)
            }),
            ConsumerTransmit::Ack { id, handles } => Box::pin(async move {
                let client = consumer.client();
                let timeout = client.timeouts().request;
                let (topic, group) = (consumer.topic(), consumer.group());
                let r = client
                    .attempt(
                        "ack",
                        topic,
                        timeout,
                        &|ctx| {
                            ack_request(ctx, topic, group, AckKind::Ack, &handles)
                                .map_err(|e| Error::InvalidInput(e.to_string()))
                        },
                        decode_ack_response,
                    )
                    .await;
                Completion::Ack(id, r)
            }),
            // Future transmit kinds: nothing to send.
            #[allow(unreachable_patterns)]
            _ => Box::pin(futures::future::pending()),
        }
    }

    fn resolve(&mut self, handle: &ReceiptHandle, result: Result<(), AckError>) {
        if let Some(tx) = self.ack_waiters.remove(handle) {
            let _ = tx.send(result);
        }
    }

    /// Handles machine events; returns true once drained.
    fn drain_events(&mut self) -> bool {
        let mut drained = false;
        while let Some(event) = self.machine.poll_event() {
            match event {
                ConsumerEvent::Message(message) => {
                    let delivery = Delivery {
                        message,
                        commands: self.commands_tx.clone(),
                        settled: false,
                    };
                    // If the stream is gone the delivery is dropped here and releases itself.
                    let _ = self.deliveries.unbounded_send(Ok(delivery));
                }
                ConsumerEvent::Acked(handles) => {
                    for h in handles {
                        self.resolve(&h, Ok(()));
                    }
                }
                ConsumerEvent::AckFailed(failure) => {
                    let handle = ReceiptHandle::new(failure.receipt_handle.clone()).ok();
                    if let Some(h) = handle {
                        self.resolve(&h, Err(AckError::Partial(vec![failure])));
                    }
                }
                ConsumerEvent::AckExpired(handle) => {
                    let failure = HandleFailure {
                        receipt_handle: handle.to_string(),
                        code: ErrorCode::MessageNotExist,
                        message: "not sent: by the server's clock the handle expired before the ack (the message will be delivered again)".into(),
                    };
                    self.resolve(&handle, Err(AckError::Partial(vec![failure])));
                }
                ConsumerEvent::ReceiveError(kind) => {
                    let error = self.last_receive_error.take().unwrap_or_else(|| {
                        Error::Network(crate::transport::TransportError::new(
                            crate::transport::TransportErrorKind::ConnectionLost,
                            format!("receive failed: {kind:?}"),
                        ))
                    });
                    tracing::warn!(error = %error, "receive failed; retrying after backoff");
                    let _ = self.deliveries.unbounded_send(Err(error));
                }
                ConsumerEvent::AckError(kind, handles) => {
                    for h in handles {
                        let e = Error::Network(crate::transport::TransportError::new(
                            crate::transport::TransportErrorKind::ConnectionLost,
                            format!("ack failed: {kind:?}"),
                        ));
                        self.resolve(&h, Err(AckError::Request(e)));
                    }
                }
                ConsumerEvent::Drained => drained = true,
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        drained
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Ack(handle, tx) => match self.machine.ack(now, &handle) {
                Ok(()) => {
                    self.ack_waiters.insert(handle, tx);
                }
                Err(refused) => {
                    let _ = tx.send(Err(AckError::Request(Error::InvalidInput(
                        refused.to_string(),
                    ))));
                }
            },
            Command::Release(handle) => {
                let _ = self.machine.release(&handle);
            }
            Command::Shutdown(waiter) => {
                if let Some(w) = waiter {
                    self.shutdown_waiters.push(w);
                }
                if !self.machine.is_shutting_down() {
                    self.machine.shutdown(now);
                }
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let runtime = self.consumer.client().runtime().clone();
        // The outstanding long poll is kept apart from the acks so that a shutdown can abandon
        // it at once (its messages, if any, are simply delivered again later).
        let mut receive: Option<(u64, BoxFuture<Completion>)> = None;
        let mut acks: FuturesUnordered<BoxFuture<Completion>> = FuturesUnordered::new();
        loop {
            let now = Instant::now();
            while let Some(t) = self.machine.poll_transmit(now) {
                match t {
                    ConsumerTransmit::Receive { id, .. } => receive = Some((id, self.start(t))),
                    other => acks.push(self.start(other)),
                }
            }
            if self.machine.is_shutting_down() {
                if let Some((id, _)) = receive.take() {
                    self.machine
                        .handle_receive(now, id, Err(FailureKind::Cancelled));
                    continue;
                }
            }
            if self.drain_events() {
                break;
            }
            let sleep = match self.machine.poll_timeout() {
                Some(at) => runtime.sleep(at.saturating_duration_since(Instant::now())),
                None => runtime.sleep(Duration::from_secs(3600)),
            };
            let mut sleep = sleep.fuse();
            let mut next_receive = match receive.as_mut() {
                Some((_, f)) => f.boxed().fuse(),
                None => futures::future::pending().boxed().fuse(),
            };
            let mut next_ack = if acks.is_empty() {
                futures::future::pending().boxed().fuse()
            } else {
                acks.next().boxed().fuse()
            };
            let mut next_command = commands.next().fuse();
            let mut finished_receive = None;
            futures::select! {
                c = next_command => match c {
                    Some(c) => self.command(c),
                    // Every sender is gone (stream and deliveries dropped).
                    None => {
                        self.machine.release_all();
                        if !self.machine.is_shutting_down() {
                            self.machine.shutdown(Instant::now());
                        }
                    }
                },
                c = next_receive => finished_receive = Some(c),
                c = next_ack => {
                    if let Some(c) = c {
                        self.complete(c);
                    }
                },
                () = sleep => self.machine.handle_timeout(Instant::now()),
            }
            drop(next_receive);
            if let Some(c) = finished_receive {
                receive = None;
                self.complete(c);
            }
        }
        for w in self.shutdown_waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn complete(&mut self, completion: Completion) {
        let now = Instant::now();
        match completion {
            Completion::Receive(id, r) => {
                let r = r.map_err(|(kind, error)| {
                    self.last_receive_error = Some(error);
                    kind
                });
                self.machine.handle_receive(now, id, r);
            }
            Completion::Ack(id, r) => {
                self.machine.handle_ack(now, id, r.map_err(|(k, _)| k));
            }
        }
    }
}
