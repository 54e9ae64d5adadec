//! The one async driver of [`ConsumerMachine`]: it runs the message stream
//! ([`crate::MessageStream`]) and the transaction checker ([`crate::CheckerHandle`],
//! `run_checker`) alike. What differs between the two is a [`Handler`]: where messages go
//! and what a settlement's outcome means to the user.
//!
//! The loop follows the machine's call order (module docs of [`mq_proto::machine`]): send
//! every due transmit, then drain the events, then wait for the first of a finished request,
//! a user command, the machine's timer or the stop signal. Failed requests keep their full
//! [`Error`] under their request id until the machine's failure event quoting that id is
//! drained, so the user sees the real error (a 403 stays a 403).

use crate::client::Client;
use crate::consumer::settle_operation;
use crate::error::{AckError, Error};
use crate::runtime::BoxFuture;
use crate::telemetry;
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use mq_proto::client::{ack_request, consume_request, decode_ack_response, decode_received_bytes};
use mq_proto::machine::{ConsumerEvent, ConsumerMachine, ConsumerTransmit, FailureKind};
use mq_proto::{
    AckKind, ConsumeKind, GroupId, HandleFailure, Message, PoisonMessage, ReceiptHandle, TagFilter,
    TopicName,
};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// The reply slot of one settlement the user asked for.
pub(crate) type Reply = oneshot::Sender<Result<(), AckError>>;

/// What the user side asks of the driver.
pub(crate) enum Command {
    /// Settle a message in hand (ack, commit or rollback); the outcome goes to `reply`.
    Settle {
        handle: ReceiptHandle,
        kind: AckKind,
        reply: Option<Reply>,
    },
    /// Give a message back unsettled.
    Release(ReceiptHandle),
    /// Stop polling and finish; the sender learns when everything is settled.
    Shutdown(Option<oneshot::Sender<()>>),
}

/// What a driver run does with messages and outcomes (the stream or the checker).
pub(crate) trait Handler: Send + 'static {
    /// A message now in hand. The returned future, if any, runs inside the driver and its
    /// command is applied when it finishes (the checker's decision).
    ///
    /// `settle_by` is the last instant its settlement can still be sent
    /// (`ConsumerMachine::settle_by`), when known.
    fn message(
        &mut self,
        message: Message,
        settle_by: Option<Instant>,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Option<BoxFuture<Command>>;

    /// A message the client could not decode; in hand when it has a receipt handle (the
    /// handler acks or releases it through `commands`).
    fn poison(&mut self, poison: PoisonMessage, commands: &mpsc::UnboundedSender<Command>);

    /// The outcome of one handle's settlement (before its reply, if any, receives it).
    fn settled(&mut self, kind: AckKind, handle: &ReceiptHandle, outcome: &Result<(), AckError>);

    /// A message was given back unsettled.
    fn released(&mut self, handle: &ReceiptHandle);

    /// A poll failed; polling resumes after a backoff.
    fn poll_failed(&mut self, error: Error);
}

/// Where the machine's requests go.
pub(crate) struct Target {
    pub(crate) client: Client,
    pub(crate) topic: TopicName,
    pub(crate) group: GroupId,
    pub(crate) filter: TagFilter,
}

enum Completion {
    Poll(
        u64,
        Result<mq_proto::machine::Received, (FailureKind, Error)>,
    ),
    Settle(u64, Result<Vec<HandleFailure>, (FailureKind, Error)>),
    Command(Command),
}

/// One run of a [`ConsumerMachine`] for a [`Handler`].
pub(crate) struct Driver<H: Handler> {
    machine: ConsumerMachine,
    target: std::sync::Arc<Target>,
    handler: H,
    commands_tx: mpsc::UnboundedSender<Command>,
    replies: HashMap<ReceiptHandle, Reply>,
    errors: HashMap<u64, Error>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
}

impl<H: Handler> Driver<H> {
    pub(crate) fn new(
        machine: ConsumerMachine,
        target: Target,
        handler: H,
        commands_tx: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            machine,
            target: std::sync::Arc::new(target),
            handler,
            commands_tx,
            replies: HashMap::new(),
            errors: HashMap::new(),
            shutdown_waiters: Vec::new(),
        }
    }

    /// Runs until the machine is drained (after a [`Command::Shutdown`] or `stop`); returns
    /// the handler.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        stop: impl Future<Output = ()> + Send,
    ) -> H {
        let runtime = self.target.client.runtime().clone();
        // The outstanding long poll is kept apart from the rest so that a shutdown can
        // abandon it at once (its messages, if any, are simply delivered again later).
        let mut poll: Option<(u64, BoxFuture<Completion>)> = None;
        let mut work: FuturesUnordered<BoxFuture<Completion>> = FuturesUnordered::new();
        let mut stop = std::pin::pin!(stop.fuse());
        loop {
            let now = Instant::now();
            while let Some(t) = self.machine.poll_transmit(now) {
                match t {
                    ConsumerTransmit::Poll { id, .. } => poll = Some((id, self.send(t))),
                    ConsumerTransmit::Settle { .. } => work.push(self.send(t)),
                }
            }
            if self.machine.is_shutting_down()
                && let Some((id, _)) = poll.take()
            {
                self.machine
                    .handle_poll(now, id, Err(FailureKind::Cancelled));
                continue;
            }
            if self.drain_events(&mut work) {
                break;
            }
            let sleep = match self.machine.poll_timeout() {
                Some(at) => runtime.sleep(at.saturating_duration_since(Instant::now())),
                None => runtime.sleep(Duration::from_secs(3600)),
            };
            let mut sleep = sleep.fuse();
            let mut next_poll = match poll.as_mut() {
                Some((_, f)) => f.boxed().fuse(),
                None => futures::future::pending().boxed().fuse(),
            };
            let mut next_work = if work.is_empty() {
                futures::future::pending().boxed().fuse()
            } else {
                work.next().boxed().fuse()
            };
            let mut next_command = commands.next().fuse();
            let mut finished = None;
            let mut poll_finished = false;
            futures::select! {
                c = next_command => match c {
                    Some(c) => finished = Some(Completion::Command(c)),
                    // Every sender is gone.
                    None => {
                        self.machine.release_all();
                        self.stop(Instant::now());
                    }
                },
                () = stop => self.stop(Instant::now()),
                c = next_poll => {
                    poll_finished = true;
                    finished = Some(c);
                },
                c = next_work => finished = c,
                () = sleep => self.machine.handle_timeout(Instant::now()),
            }
            drop(next_poll);
            drop(next_work);
            if poll_finished {
                poll = None;
            }
            if let Some(c) = finished {
                self.complete(c);
            }
        }
        for w in self.shutdown_waiters.drain(..) {
            let _ = w.send(());
        }
        self.handler
    }

    fn stop(&mut self, now: Instant) {
        if !self.machine.is_shutting_down() {
            self.machine.shutdown(now);
        }
    }

    /// Sends one transmit; the future resolves to its answer.
    fn send(&self, transmit: ConsumerTransmit) -> BoxFuture<Completion> {
        let target = self.target.clone();
        Box::pin(async move {
            let Target {
                client,
                topic,
                group,
                filter,
            } = &*target;
            match transmit {
                ConsumerTransmit::Poll {
                    id,
                    kind,
                    batch,
                    wait,
                } => {
                    let operation = match kind {
                        ConsumeKind::Half => "consume_half",
                        ConsumeKind::Normal | ConsumeKind::Orderly => "consume",
                    };
                    let r = client
                        .attempt(
                            operation,
                            topic,
                            client.timeouts().for_wait(wait),
                            &|ctx| {
                                Ok(consume_request(
                                    ctx, topic, group, kind, batch, wait, filter,
                                )?)
                            },
                            decode_received_bytes,
                        )
                        .await;
                    Completion::Poll(id, r)
                }
                ConsumerTransmit::Settle { id, kind, handles } => {
                    let r = client
                        .attempt(
                            settle_operation(kind),
                            topic,
                            client.timeouts().request,
                            &|ctx| Ok(ack_request(ctx, topic, group, kind, &handles)?),
                            |status, headers, body| decode_ack_response(status, headers, body),
                        )
                        .await;
                    Completion::Settle(id, r)
                }
            }
        })
    }

    /// Feeds a finished request or a user command to the machine.
    fn complete(&mut self, completion: Completion) {
        let now = Instant::now();
        match completion {
            Completion::Poll(id, r) => {
                let r = r.map_err(|(kind, error)| {
                    self.errors.insert(id, error);
                    kind
                });
                self.machine.handle_poll(now, id, r);
            }
            Completion::Settle(id, r) => {
                let r = r.map_err(|(kind, error)| {
                    self.errors.insert(id, error);
                    kind
                });
                self.machine.handle_settle(now, id, r);
            }
            Completion::Command(Command::Settle {
                handle,
                kind,
                reply,
            }) => match self.machine.settle(now, &handle, kind) {
                Ok(()) => {
                    if let Some(reply) = reply {
                        self.replies.insert(handle, reply);
                    }
                }
                Err(refused) => {
                    let outcome = Err(AckError::not_sent_for(
                        [handle.clone()],
                        Error::InvalidInput(refused.into()),
                    ));
                    tracing::warn!(%handle, %refused, "settlement not accepted");
                    self.settled(kind, &handle, &outcome);
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome);
                    }
                }
            },
            Completion::Command(Command::Release(handle)) => {
                if self.machine.release(&handle).is_ok() {
                    self.handler.released(&handle);
                }
            }
            Completion::Command(Command::Shutdown(waiter)) => {
                self.shutdown_waiters.extend(waiter);
                self.stop(now);
            }
        }
    }

    /// Hands the machine's events to the handler; returns true once drained.
    fn drain_events(&mut self, work: &mut FuturesUnordered<BoxFuture<Completion>>) -> bool {
        let mut drained = false;
        while let Some(event) = self.machine.poll_event() {
            match event {
                ConsumerEvent::Message(message) => {
                    telemetry::deliveries(&self.target.topic, &self.target.group, 1);
                    let settle_by = self
                        .machine
                        .settle_by(Instant::now(), &message.receipt_handle);
                    if let Some(f) = self.handler.message(message, settle_by, &self.commands_tx) {
                        work.push(Box::pin(f.map(Completion::Command)));
                    }
                }
                ConsumerEvent::Poison(poison) => {
                    crate::consumer::log_poison(&poison);
                    self.handler.poison(poison, &self.commands_tx);
                }
                ConsumerEvent::Settled { kind, handles } => {
                    for h in handles {
                        self.resolve(kind, &h, Ok(()));
                    }
                }
                ConsumerEvent::Refused { kind, failure } => {
                    if let Ok(h) = ReceiptHandle::new(failure.receipt_handle.clone()) {
                        let outcome = Err(AckError::refused(h.clone(), failure));
                        self.resolve(kind, &h, outcome);
                    }
                }
                ConsumerEvent::Expired { kind, handle } => {
                    let outcome = Err(AckError::expired_handle(handle.clone()));
                    self.resolve(kind, &handle, outcome);
                }
                ConsumerEvent::PollFailed { id, failure } => {
                    let error = self.take_error(id, failure);
                    // Refused by this client before sending (names too long for the
                    // service): every later poll would be too, so the loop ends.
                    let permanent = matches!(error, Error::InvalidInput(_));
                    self.handler.poll_failed(error);
                    if permanent {
                        self.stop(Instant::now());
                    }
                }
                ConsumerEvent::SettleFailed {
                    id,
                    kind,
                    failure,
                    handles,
                } => {
                    let error = self.take_error(id, failure);
                    for h in handles {
                        let outcome = Err(AckError::request_failed(h.clone(), error.clone()));
                        self.resolve(kind, &h, outcome);
                    }
                }
                ConsumerEvent::Drained => drained = true,
            }
        }
        // Errors of requests the machine retries are not reported.
        self.errors.clear();
        drained
    }

    /// The error request `id` failed with (every failed request keeps its error until the
    /// events are drained).
    fn take_error(&mut self, id: u64, failure: FailureKind) -> Error {
        // Only a failed request makes the machine report a failure, so the error is there;
        // the fallback keeps the kind should that ever change.
        self.errors.remove(&id).unwrap_or_else(|| {
            Error::Network(crate::transport::TransportError::new(
                crate::transport::TransportErrorKind::ConnectionLost,
                format!("request {id} failed: {failure:?}"),
            ))
        })
    }

    /// One handle's settlement outcome, to the metrics and the handler.
    fn settled(&mut self, kind: AckKind, handle: &ReceiptHandle, outcome: &Result<(), AckError>) {
        telemetry::settlements(kind, usize::from(outcome.is_ok()), outcome.as_ref().err());
        self.handler.settled(kind, handle, outcome);
    }

    fn resolve(&mut self, kind: AckKind, handle: &ReceiptHandle, outcome: Result<(), AckError>) {
        let outcome = outcome.map_err(|e| e.for_kind(kind));
        self.settled(kind, handle, &outcome);
        if let Some(reply) = self.replies.remove(handle) {
            let _ = reply.send(outcome);
        }
    }
}
