//! The transaction checker: the shared driver (`driver.rs`) running a
//! [`ConsumerMachine`] on half messages, with the user's decision closure as its [`Handler`].

use crate::driver::{Command, Driver, Handler, Target};
use crate::error::{AckError, Error};
use crate::runtime::{Background, BoxFuture, DynRuntime, Live, spawn_task};
use crate::transaction::TransactionProducer;
use futures::FutureExt as _;
use futures::channel::mpsc;
use mq_proto::machine::{CheckerConfig, ConsumerMachine, Decision};
use mq_proto::{AckKind, Message, MessageId, PoisonMessage, ReceiptHandle, TagFilter};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
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
    /// Settlements that did not take effect (expired handle, refused, or request failure).
    /// A message offered again after its settlement failed is settled again with the same
    /// decision, without asking the closure (for up to 10 minutes): one decision may count
    /// here and then as committed or rolled back.
    pub failed: u64,
    /// Half-message polls that failed (each retried after a backoff): a run with wrong
    /// credentials or an unreachable endpoint checks nothing and says so here (each is
    /// also logged as a warning), also while it runs ([`CheckerHandle::report`]).
    pub receive_errors: u64,
    /// The latest failed poll's error (its `Display` text), kept after later polls
    /// succeed; `None` if none failed.
    pub last_receive_error: Option<String>,
}

/// The checker's side of the driver: each half message goes to the decision closure, whose
/// verdict becomes a commit, a rollback or a release; outcomes are counted.
struct CheckerHandler<F> {
    decide: F,
    report: Live<CheckerReport>,
    /// A poll refused before sending (it would be every time): the checker's error.
    fatal: Option<Error>,
    /// The half messages being decided or settled, and those whose settlement failed (for
    /// a while): a message offered again meanwhile (its check interval passed, which makes
    /// the handle being settled stale) is not decided again but settled with the decision
    /// made and its newest handle.
    in_flight: Arc<Mutex<HashMap<MessageId, InFlight>>>,
    /// Handles given back because a newer one of the same message came: no `Unknown`.
    superseded: HashSet<ReceiptHandle>,
    /// Where settlements go (the driver's commands; set at the first message).
    commands: Option<mpsc::UnboundedSender<Command>>,
    /// The client's runtime: each decision runs as a task of its own there.
    runtime: Arc<dyn DynRuntime>,
}

/// A half message from its first offer to the end of its settlement.
struct InFlight {
    /// The newest handle it was offered with.
    newest: ReceiptHandle,
    /// The decision, once made.
    decided: Option<AckKind>,
    /// The handle a settlement is under way with.
    settling: Option<ReceiptHandle>,
    /// When its last settlement failed: kept [`FAILED_DECISION_KEPT`] for an offer again.
    failed_at: Option<Instant>,
}

/// How long a decision whose settlement failed is kept for the message's next offer.
const FAILED_DECISION_KEPT: Duration = Duration::from_secs(600);

impl<F> CheckerHandler<F> {
    /// Sends a command to the driver (once a message came, which gave the channel).
    fn send(&self, command: Command) {
        if let Some(commands) = &self.commands {
            let _ = commands.unbounded_send(command);
        }
    }
}

impl<F, Fut> Handler for CheckerHandler<F>
where
    F: FnMut(Message) -> Fut + Send + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    fn message(
        &mut self,
        message: Message,
        _settle_by: Option<std::time::Instant>,
        commands: &mpsc::UnboundedSender<Command>,
    ) -> Option<BoxFuture<Command>> {
        let handle = message.receipt_handle.clone();
        let id = message.message_id.clone();
        self.commands.get_or_insert_with(|| commands.clone());
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.retain(|_, f| {
                f.failed_at
                    .is_none_or(|at| at.elapsed() < FAILED_DECISION_KEPT)
            });
            if let Some(f) = in_flight.get_mut(&id) {
                let older = std::mem::replace(&mut f.newest, handle.clone());
                if f.settling.as_ref() != Some(&older) && f.failed_at.is_none() {
                    // Offered again while its decision runs: that decision will use the
                    // newest handle; the older one is given back.
                    self.superseded.insert(older.clone());
                    let _ = commands.unbounded_send(Command::Release(older));
                }
                if let (Some(kind), None) = (f.decided, &f.settling) {
                    // Its settlement failed (the handle went stale): the same decision, with
                    // this handle, without asking again.
                    f.settling = Some(handle.clone());
                    f.failed_at = None;
                    return Some(Box::pin(std::future::ready(Command::Settle {
                        handle,
                        kind,
                        reply: None,
                    })));
                }
                // Decided and being settled, or being decided: that outcome settles it.
                return None;
            }
            in_flight.insert(
                id.clone(),
                InFlight {
                    newest: handle.clone(),
                    decided: None,
                    settling: None,
                    failed_at: None,
                },
            );
        }
        self.report.update(|r| r.checked += 1);
        let in_flight = Arc::clone(&self.in_flight);
        // A panic in `decide` (when called or while its future runs) is this message's
        // `Unknown`, as a handler's panic leaves its message for redelivery: the checker
        // goes on with the other half messages and checks this one again later.
        let verdict = catch_unwind(AssertUnwindSafe(|| (self.decide)(message)));
        let lost = handle.clone();
        // A task of its own: a decision that blocks its thread (a synchronous lookup)
        // does not hold the other decisions and the polls back on a multi-threaded runtime.
        let decided = Box::pin(async move {
            let decision = match verdict {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            let decision = decision.unwrap_or_else(|panic| {
                tracing::warn!(
                    message_id = %id,
                    panic = crate::handling::panic_text(panic.as_ref()).unwrap_or("(not text)"),
                    "the transaction checker's decision panicked; the message is checked again later"
                );
                Decision::Unknown
            });
            // Settled with the newest handle (it may have been offered again meanwhile).
            let mut in_flight = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            match decision.ack_kind() {
                Some(kind) => {
                    let handle = match in_flight.get_mut(&id) {
                        Some(f) => {
                            f.decided = Some(kind);
                            f.settling = Some(f.newest.clone());
                            f.newest.clone()
                        }
                        None => handle,
                    };
                    Command::Settle {
                        handle,
                        kind,
                        reply: None,
                    }
                }
                None => Command::Release(in_flight.remove(&id).map_or(handle, |f| f.newest)),
            }
        });
        Some(spawn_task(&self.runtime, decided, || {
            Command::Release(lost)
        }))
    }

    /// A half message that cannot be decoded cannot be decided: it is left (released) to
    /// be checked again, and counted as `unknown`.
    fn poison(&mut self, poison: PoisonMessage, commands: &mpsc::UnboundedSender<Command>) {
        self.report.update(|r| r.checked += 1);
        if let Some(handle) = poison.receipt_handle {
            let _ = commands.unbounded_send(Command::Release(handle));
        }
    }

    fn settled(&mut self, kind: AckKind, handle: &ReceiptHandle, outcome: &Result<(), AckError>) {
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let id = in_flight
                .iter()
                .find(|(_, f)| f.settling.as_ref() == Some(handle))
                .map(|(id, _)| id.clone());
            if let Some(id) = id {
                let f = in_flight.get_mut(&id).expect("found above");
                f.settling = None;
                let newer = (f.newest != *handle).then(|| f.newest.clone());
                match (outcome, newer) {
                    (Ok(()), newer) => {
                        in_flight.remove(&id);
                        if let Some(newer) = newer {
                            // Settled: the newer offer in hand is given back.
                            self.superseded.insert(newer.clone());
                            self.send(Command::Release(newer));
                        }
                    }
                    (Err(error), Some(newer)) => {
                        // Offered again while it was settled (so that handle went stale):
                        // the same decision with the newest handle.
                        tracing::debug!(%handle, ?kind, %error, "settling again with the newest handle");
                        f.settling = Some(newer.clone());
                        self.send(Command::Settle {
                            handle: newer,
                            kind,
                            reply: None,
                        });
                        return;
                    }
                    (Err(_), None) => f.failed_at = Some(Instant::now()),
                }
            }
        }
        match (outcome, kind) {
            (Ok(()), AckKind::Commit) => self.report.update(|r| r.committed += 1),
            (Ok(()), AckKind::Rollback) => self.report.update(|r| r.rolled_back += 1),
            (Ok(()), AckKind::Ack) => {}
            (Err(error), _) => {
                tracing::warn!(%handle, ?kind, %error, "transaction decision did not take effect");
                self.report.update(|r| r.failed += 1);
            }
        }
    }

    fn released(&mut self, handle: &ReceiptHandle) {
        if !self.superseded.remove(handle) {
            self.report.update(|r| r.unknown += 1);
        }
    }

    fn poll_failed(&mut self, error: Error) {
        if matches!(error, Error::InvalidInput(_)) {
            // The driver stops: the checker's answer is this error.
            tracing::error!(%error, "half-message poll refused before sending; the checker stops");
            self.fatal = Some(error);
        } else {
            tracing::warn!(%error, "half-message poll failed; retrying after backoff");
            self.report.update(|r| {
                r.receive_errors += 1;
                r.last_receive_error = Some(error.to_string());
            });
        }
    }
}

/// Runs the checker until `shutdown` completes and every in-flight decision is settled.
pub(crate) async fn run_checker_loop<F, Fut, S>(
    producer: TransactionProducer,
    config: CheckerConfig,
    decide: F,
    shutdown: S,
    report: Live<CheckerReport>,
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
        report,
        runtime: target.client.runtime().clone(),
        fatal: None,
        in_flight: Arc::default(),
        superseded: HashSet::new(),
        commands: None,
    };
    let (commands_tx, commands) = mpsc::unbounded();
    let driver = Driver::new(machine, target, handler, commands_tx);
    let handler = driver.run(commands, shutdown).await;
    match handler.fatal {
        Some(error) => Err(error),
        None => Ok(handler.report.snapshot()),
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
pub struct CheckerHandle {
    run: Background<Result<CheckerReport, Error>>,
    report: Live<CheckerReport>,
}

impl CheckerHandle {
    /// Spawns the checker run that `run` makes from the stop signal it is given and the
    /// report it counts in.
    pub(crate) fn spawn(
        runtime: &Arc<dyn DynRuntime>,
        run: impl FnOnce(BoxFuture<()>, Live<CheckerReport>) -> BoxFuture<Result<CheckerReport, Error>>,
    ) -> Self {
        let report = Live::default();
        let counting = report.clone();
        Self {
            run: Background::spawn(runtime, move |stop| run(stop, counting)),
            report,
        }
    }

    /// What the checker has done so far, while it runs: counts that only grow, and the
    /// latest failed poll's error — a checker with wrong credentials or a group that does
    /// not exist shows it here at once.
    ///
    /// ```no_run
    /// # async fn example(tx: mq_client::TransactionProducer) {
    /// let checker = tx.spawn_checker(|_m| async { mq_client::Decision::Unknown });
    /// // ... later, from a health check:
    /// let now = checker.report();
    /// if let Some(error) = &now.last_receive_error {
    ///     eprintln!("{} polls failed, the last: {error}", now.receive_errors);
    /// }
    /// # }
    /// ```
    pub fn report(&self) -> CheckerReport {
        self.report.snapshot()
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
        self.run.stop().await.unwrap_or(Err(Error::Shutdown))
    }
}
