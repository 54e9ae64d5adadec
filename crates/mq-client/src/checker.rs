//! The transaction checker loop: drives [`mq_proto::machine::CheckerMachine`] with the
//! user's decision closure.

use crate::error::Error;
use crate::runtime::{BoxFuture, Runtime};
use crate::transaction::TransactionProducer;
use futures::channel::oneshot;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use mq_proto::client::{ack_request, consume_request, decode_ack_response, decode_received};
use mq_proto::machine::{
    CheckerConfig, CheckerEvent, CheckerMachine, CheckerTransmit, Decision, FailureKind, Received,
};
use mq_proto::{AckKind, ConsumeKind, HandleFailure, Message, ReceiptHandle, TagFilter};
use std::future::Future;
use std::time::{Duration, Instant};

/// What a checker run did, returned when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckerReport {
    /// Half messages offered to the decision closure.
    pub checked: u64,
    /// Commits that took effect.
    pub committed: u64,
    /// Rollbacks that took effect.
    pub rolled_back: u64,
    /// `Unknown` answers (the message is checked again later).
    pub unknown: u64,
    /// Decisions that did not take effect (expired handle, refused, or request failure).
    pub failed: u64,
}

enum Completion {
    Poll(u64, Result<Received, (FailureKind, Error)>),
    Decide(u64, Result<Vec<HandleFailure>, (FailureKind, Error)>),
    Decision(ReceiptHandle, Decision),
}

fn start<R: Runtime>(
    producer: &TransactionProducer<R>,
    t: CheckerTransmit,
) -> BoxFuture<Completion> {
    let producer = producer.clone();
    match t {
        CheckerTransmit::ConsumeHalf { id, batch, wait } => Box::pin(async move {
            let client = producer.client();
            let (topic, group) = (producer.topic(), producer.group());
            let r = client
                .attempt(
                    "consume_half",
                    topic,
                    client.timeouts().for_wait(wait),
                    &|ctx| {
                        Ok(consume_request(
                            ctx,
                            topic,
                            group,
                            ConsumeKind::Half,
                            batch,
                            wait,
                            &TagFilter::All,
                        ))
                    },
                    decode_received,
                )
                .await;
            Completion::Poll(id, r)
        }),
        CheckerTransmit::Decide { id, handle, kind } => Box::pin(async move {
            let client = producer.client();
            let (topic, group) = (producer.topic(), producer.group());
            let operation = if kind == AckKind::Commit {
                "commit"
            } else {
                "rollback"
            };
            let handles = [handle];
            let r = client
                .attempt(
                    operation,
                    topic,
                    client.timeouts().request,
                    &|ctx| {
                        ack_request(ctx, topic, group, kind, &handles)
                            .map_err(|e| Error::InvalidInput(e.to_string()))
                    },
                    decode_ack_response,
                )
                .await;
            Completion::Decide(id, r)
        }),
        #[allow(unreachable_patterns)]
        _ => Box::pin(futures::future::pending()),
    }
}

/// Runs the checker until `shutdown` completes and every in-flight decision is settled.
pub(crate) async fn run_checker_loop<R, F, Fut, S>(
    producer: TransactionProducer<R>,
    config: CheckerConfig,
    mut decide: F,
    shutdown: S,
) -> Result<CheckerReport, Error>
where
    R: Runtime,
    F: FnMut(Message) -> Fut + Send + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    let runtime = producer.client().runtime().clone();
    let mut machine = CheckerMachine::new(config, producer.client().next_seed());
    let mut report = CheckerReport::default();
    let mut poll: Option<(u64, BoxFuture<Completion>)> = None;
    let mut work: FuturesUnordered<BoxFuture<Completion>> = FuturesUnordered::new();
    let mut shutdown = std::pin::pin!(shutdown.fuse());
    let mut stopping = false;
    loop {
        let now = Instant::now();
        while let Some(t) = machine.poll_transmit(now) {
            match t {
                CheckerTransmit::ConsumeHalf { id, .. } => poll = Some((id, start(&producer, t))),
                other => work.push(start(&producer, other)),
            }
        }
        if stopping {
            if let Some((id, _)) = poll.take() {
                machine.handle_poll(now, id, Err(FailureKind::Cancelled));
                continue;
            }
        }
        let mut drained = false;
        while let Some(event) = machine.poll_event() {
            match event {
                CheckerEvent::Check(message) => {
                    report.checked += 1;
                    let handle = message.receipt_handle.clone();
                    let fut = decide(message);
                    work.push(Box::pin(
                        async move { Completion::Decision(handle, fut.await) },
                    ));
                }
                CheckerEvent::Decided { kind, handle } => {
                    tracing::debug!(%handle, ?kind, "transaction decided");
                    match kind {
                        AckKind::Commit => report.committed += 1,
                        _ => report.rolled_back += 1,
                    }
                }
                CheckerEvent::DecideFailed {
                    handle,
                    kind,
                    error,
                } => {
                    tracing::warn!(%handle, ?kind, ?error, "transaction decision did not take effect");
                    report.failed += 1;
                }
                CheckerEvent::DecideExpired { handle, kind } => {
                    tracing::warn!(%handle, ?kind, "transaction decision dropped: handle expired");
                    report.failed += 1;
                }
                CheckerEvent::PollError(kind) => {
                    tracing::warn!(?kind, "half-message poll failed; retrying after backoff");
                }
                CheckerEvent::Drained => drained = true,
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        if drained {
            return Ok(report);
        }
        let sleep = match machine.poll_timeout() {
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
        let mut finished_poll = None;
        let mut finished_work = None;
        futures::select! {
            () = shutdown => {
                stopping = true;
                machine.shutdown(Instant::now());
            },
            c = next_poll => finished_poll = Some(c),
            c = next_work => finished_work = c,
            () = sleep => machine.handle_timeout(Instant::now()),
        }
        drop(next_poll);
        drop(next_work);
        let now = Instant::now();
        if let Some(c) = finished_poll {
            poll = None;
            if let Completion::Poll(id, r) = c {
                machine.handle_poll(now, id, r.map_err(|(k, _)| k));
            }
        }
        match finished_work {
            Some(Completion::Decide(id, r)) => {
                machine.handle_decide(now, id, r.map_err(|(k, _)| k));
            }
            Some(Completion::Decision(handle, decision)) => {
                if decision == Decision::Unknown {
                    report.unknown += 1;
                }
                if let Err(refused) = machine.decide(now, &handle, decision) {
                    tracing::warn!(%handle, %refused, "decision not accepted");
                }
            }
            _ => {}
        }
    }
}

/// A checker running in the background; stop it with [`CheckerHandle::shutdown`].
#[derive(Debug)]
pub struct CheckerHandle {
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<Result<CheckerReport, Error>>,
}

impl CheckerHandle {
    pub(crate) fn spawn<R, F, Fut>(
        producer: TransactionProducer<R>,
        config: CheckerConfig,
        decide: F,
    ) -> Self
    where
        R: Runtime,
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = Decision> + Send + 'static,
    {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        let runtime = producer.client().runtime().clone();
        runtime.spawn(Box::pin(async move {
            let stop = async move {
                let _ = stop_rx.await;
            };
            let result = run_checker_loop(producer, config, decide, stop).await;
            let _ = done_tx.send(result);
        }));
        Self {
            stop: Some(stop_tx),
            done: done_rx,
        }
    }

    /// Stops polling, waits for in-flight decisions, and returns what the checker did.
    pub async fn shutdown(mut self) -> Result<CheckerReport, Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.done).await.unwrap_or(Err(Error::Shutdown))
    }
}
