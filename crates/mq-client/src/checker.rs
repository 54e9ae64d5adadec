//! The transaction checker: the shared driver (`driver.rs`) running a
//! [`ConsumerMachine`] on half messages, with the user's decision closure as its [`Handler`].

use crate::driver::{Command, Driver, Handler, Target};
use crate::error::{AckError, Error};
use crate::runtime::{Background, BoxFuture, DynRuntime};
use crate::transaction::TransactionProducer;
use futures::FutureExt as _;
use futures::channel::mpsc;
use mq_proto::machine::{CheckerConfig, ConsumerMachine, Decision};
use mq_proto::{AckKind, Message, MessageId, PoisonMessage, ReceiptHandle, TagFilter};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

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
    /// Half-message polls that failed (each retried after a backoff): a run with wrong
    /// credentials or an unreachable endpoint checks nothing and says so here (each is
    /// also logged as a warning).
    pub receive_errors: u64,
}

/// The checker's side of the driver: each half message goes to the decision closure, whose
/// verdict becomes a commit, a rollback or a release; outcomes are counted.
struct CheckerHandler<F> {
    decide: F,
    report: CheckerReport,
    /// A poll refused before sending (it would be every time): the checker's error.
    fatal: Option<Error>,
    /// The half messages whose decision is running, each with its latest handle: a message
    /// offered again meanwhile (its check interval passed) is not decided a second time at
    /// once; the running decision settles it with the newest handle.
    deciding: Arc<Mutex<HashMap<MessageId, ReceiptHandle>>>,
    /// Handles given back because a newer one of the same message came: no `Unknown`.
    superseded: HashSet<ReceiptHandle>,
}

impl<F, Fut> Handler for CheckerHandler<F>
where
    F: FnMut(Message) -> Fut + Send + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    fn message(
        &mut self,
        message: Message,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Option<BoxFuture<Command>> {
        let handle = message.receipt_handle.clone();
        let id = message.message_id.clone();
        {
            let mut deciding = self.deciding.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(older) = deciding.insert(id.clone(), handle.clone()) {
                // Offered again while its decision runs: that decision will use this handle.
                self.superseded.insert(older.clone());
                let _ = commands.unbounded_send(Command::Release(older));
                return None;
            }
        }
        self.report.checked += 1;
        let deciding = Arc::clone(&self.deciding);
        // A panic in `decide` (when called or while its future runs) is this message's
        // `Unknown`, as a handler's panic leaves its message for redelivery: the checker
        // goes on with the other half messages and checks this one again later.
        let verdict = catch_unwind(AssertUnwindSafe(|| (self.decide)(message)));
        Some(Box::pin(async move {
            let decision = match verdict {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await.ok(),
                Err(_) => None,
            };
            let decision = decision.unwrap_or_else(|| {
                tracing::warn!(
                    message_id = %id,
                    "the transaction checker's decision panicked; the message is checked again later"
                );
                Decision::Unknown
            });
            // The newest handle of the message (it may have been offered again meanwhile).
            let handle = deciding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id)
                .unwrap_or(handle);
            match decision.ack_kind() {
                Some(kind) => Command::Settle {
                    handle,
                    kind,
                    reply: None,
                },
                None => Command::Release(handle),
            }
        }))
    }

    /// A half message that cannot be decoded cannot be decided: it is left (released) to
    /// be checked again, and counted as `unknown`.
    fn poison(&mut self, poison: PoisonMessage, commands: &mpsc::UnboundedSender<Command>) {
        self.report.checked += 1;
        if let Some(handle) = poison.receipt_handle {
            let _ = commands.unbounded_send(Command::Release(handle));
        }
    }

    fn settled(&mut self, kind: AckKind, handle: &ReceiptHandle, outcome: &Result<(), AckError>) {
        match (outcome, kind) {
            (Ok(()), AckKind::Commit) => self.report.committed += 1,
            (Ok(()), AckKind::Rollback) => self.report.rolled_back += 1,
            (Ok(()), AckKind::Ack) => {}
            (Err(error), _) => {
                tracing::warn!(%handle, ?kind, %error, "transaction decision did not take effect");
                self.report.failed += 1;
            }
        }
    }

    fn released(&mut self, handle: &ReceiptHandle) {
        if !self.superseded.remove(handle) {
            self.report.unknown += 1;
        }
    }

    fn poll_failed(&mut self, error: Error) {
        if matches!(error, Error::InvalidInput(_)) {
            // The driver stops: the checker's answer is this error.
            tracing::error!(%error, "half-message poll refused before sending; the checker stops");
            self.fatal = Some(error);
        } else {
            tracing::warn!(%error, "half-message poll failed; retrying after backoff");
            self.report.receive_errors += 1;
        }
    }
}

/// Runs the checker until `shutdown` completes and every in-flight decision is settled.
pub(crate) async fn run_checker_loop<F, Fut, S>(
    producer: TransactionProducer,
    config: CheckerConfig,
    decide: F,
    shutdown: S,
) -> Result<CheckerReport, Error>
where
    F: FnMut(Message) -> Fut + Send + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    let client = producer.client().clone();
    let machine = ConsumerMachine::new(config.into(), client.next_seed());
    let target = Target {
        client,
        topic: producer.topic().clone(),
        group: producer.group().clone(),
        filter: TagFilter::All,
    };
    let handler = CheckerHandler {
        decide,
        report: CheckerReport::default(),
        fatal: None,
        deciding: Arc::default(),
        superseded: HashSet::new(),
    };
    let (commands_tx, commands) = mpsc::unbounded();
    let driver = Driver::new(machine, target, handler, commands_tx);
    let handler = driver.run(commands, shutdown).await;
    match handler.fatal {
        Some(error) => Err(error),
        None => Ok(handler.report),
    }
}

/// A checker running in the background; stop it with [`CheckerHandle::shutdown`].
///
/// Dropping the handle without calling `shutdown` stops the checker too, without waiting.
///
/// ```no_run
/// use mq_client::{CheckerConfig, Decision, TransactionProducer, WaitSeconds};
///
/// # async fn example(tx: TransactionProducer) -> Result<(), Box<dyn std::error::Error>> {
/// let config = CheckerConfig::default().with_wait(WaitSeconds::new(10)?);
/// let checker = tx.spawn_checker_with_config(config, |message| async move {
///     match message.property("order") {
///         Some(_) => Decision::Commit,
///         None => Decision::Unknown, // ask again at the next check
///     }
/// });
/// // ... run the service ...
/// let report = checker.shutdown().await?;
/// println!(
///     "checked {}: {} committed, {} rolled back, {} failed",
///     report.checked, report.committed, report.rolled_back, report.failed
/// );
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle stops the checker at once"]
pub struct CheckerHandle(Background<Result<CheckerReport, Error>>);

impl CheckerHandle {
    /// Spawns the checker run that `run` makes from the stop signal it is given.
    pub(crate) fn spawn(
        runtime: &Arc<dyn DynRuntime>,
        run: impl FnOnce(BoxFuture<()>) -> BoxFuture<Result<CheckerReport, Error>>,
    ) -> Self {
        Self(Background::spawn(runtime, run))
    }

    /// Stops polling, waits for in-flight decisions, and returns what the checker did.
    ///
    /// A decision that never completes keeps it waiting: bound it with your runtime's
    /// timeout (`tokio::time::timeout(d, checker.shutdown())`). When that elapses the handle
    /// is dropped, which stops the run without waiting for it; the undecided half messages
    /// are checked again later (by this or another checker).
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`] when the checker's task ended without a report (the runtime
    /// dropped it). A panic of the decision closure does not end it: that message counts
    /// as [`Decision::Unknown`] and is checked again.
    pub async fn shutdown(self) -> Result<CheckerReport, Error> {
        self.0.stop().await.unwrap_or(Err(Error::Shutdown))
    }
}
