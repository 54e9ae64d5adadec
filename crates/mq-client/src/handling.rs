//! [`Consumer::handle`]: the common consume loop on top of a [`MessageStream`] — handlers
//! per tag, a concurrency limit, ack on `Ok`, redelivery on `Err`, a poison policy, and a
//! graceful shutdown that finishes the handlers in flight and flushes their acks.
//!
//! The loop is one future on the client's runtime ([`Background`]): it takes items from
//! the stream only while fewer than the limit of handlers run, starts each handler as a task
//! of its own on that runtime (so handlers run in parallel on a multi-threaded runtime), and
//! awaits their outcomes and the acks itself.

use crate::consumer::Consumer;
use crate::error::Error;
use crate::runtime::{Background, BoxFuture, Live, spawn_task};
use crate::stream::{AckFuture, Delivery, PoisonDelivery, StreamItem};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use mq_proto::machine::ConsumerConfig;
use mq_proto::{ConsumeKind, Message, Tag};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a message handler returns on failure: any error (`?` converts into it). The message
/// is then left for redelivery.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A handler as the loop keeps it.
type HandlerFn = Arc<dyn Fn(Message) -> BoxFuture<Result<(), HandlerError>> + Send + Sync>;

/// What the handler loop does with a message the client cannot decode
/// ([`PoisonDelivery`]). Either way it is logged (`tracing`, level warn) with its message id,
/// `ConsumedTimes` and the reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoisonPolicy {
    /// Leave it: released, delivered again after its invisibility time, and moved to the
    /// dead-letter queue by the broker once its retries are used up (PROTOCOL §6.3).
    #[default]
    Leave,
    /// Ack it: dropped for good (a poison message without a readable receipt handle cannot
    /// be acked and is left).
    Ack,
}

/// What a handler run did, returned by [`HandlerHandle::shutdown`] and
/// [`MessageHandler::run`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerSummary {
    /// Messages whose handler returned `Ok`.
    pub handled: u64,
    /// Of those, acks that took effect.
    pub acked: u64,
    /// Of those, acks that did not (refused, expired, or the request failed): the message
    /// may be delivered again.
    pub ack_failed: u64,
    /// Messages whose handler returned `Err` or panicked: left for redelivery.
    pub failed: u64,
    /// Poison messages acked (dropped) under [`PoisonPolicy::Ack`].
    pub poison_acked: u64,
    /// Poison messages left for redelivery (the policy, no readable handle, or an ack that
    /// did not take effect).
    pub poison_left: u64,
    /// Receives that failed (the stream retried them after a backoff): wrong credentials,
    /// a topic or group that does not exist or an unreachable endpoint show here, while
    /// the loop runs ([`HandlerHandle::summary`]), not only as warnings in the log.
    pub receive_errors: u64,
    /// The latest failed receive's error (its `Display` text), kept after later receives
    /// succeed; `None` if none failed.
    pub last_receive_error: Option<String>,
}

/// The consume loop of [`Consumer::handle`]: a default handler, handlers per tag, a
/// concurrency limit and a poison policy. Start it with [`spawn`](Self::spawn) (stop it
/// with [`HandlerHandle::shutdown`]) or [`run`](Self::run) it until a future completes.
///
/// Each message goes to the handler of its tag ([`route`](Self::route)), or to the default
/// handler when no route names its tag. A handler returning `Ok(())` gets the message acked
/// (in batches, as the stream does); `Err` (or a panic) leaves it for redelivery after its
/// invisibility time, logged with its message id and `ConsumedTimes`, so the next delivery
/// comes with a higher `ConsumedTimes`.
///
/// ```no_run
/// use mq_client::{Consumer, PoisonPolicy, Tag};
///
/// # async fn example(consumer: Consumer) -> Result<(), Box<dyn std::error::Error>> {
/// let handling = consumer
///     .handle(|message| async move {
///         println!("other: {}", message.body);
///         Ok(())
///     })
///     .route(Tag::new("created")?, |message| async move {
///         let order: u64 = message.body.parse()?; // an Err leaves it for redelivery
///         println!("order {order} created");
///         Ok(())
///     })
///     .with_concurrency(8)
///     .with_poison_policy(PoisonPolicy::Ack)
///     .spawn();
/// // ... run the service ...
/// let summary = handling.shutdown().await?; // finishes running handlers, flushes acks
/// println!("{} handled, {} failed", summary.handled, summary.failed);
/// # Ok(()) }
/// ```
pub struct MessageHandler {
    consumer: Consumer,
    default: HandlerFn,
    routes: HashMap<Tag, HandlerFn>,
    concurrency: usize,
    poison: PoisonPolicy,
    config: Option<ConsumerConfig>,
}

impl fmt::Debug for MessageHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageHandler")
            .field("consumer", &self.consumer)
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .field("poison", &self.poison)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The default number of handlers running at once.
const DEFAULT_CONCURRENCY: usize = 16;

fn boxed<F, Fut>(handler: F) -> HandlerFn
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(move |message| Box::pin(handler(message)))
}

impl MessageHandler {
    pub(crate) fn new<F, Fut>(consumer: Consumer, handler: F) -> Self
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        Self {
            consumer,
            default: boxed(handler),
            routes: HashMap::new(),
            concurrency: DEFAULT_CONCURRENCY,
            poison: PoisonPolicy::default(),
            config: None,
        }
    }

    /// Messages with this tag go to `handler` instead of the default one (a later route for
    /// the same tag replaces an earlier one).
    #[must_use]
    pub fn route<F, Fut>(mut self, tag: Tag, handler: F) -> Self
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.routes.insert(tag, boxed(handler));
        self
    }

    /// At most `n` handlers run at once (default 16; 0 is treated as 1). Messages are taken
    /// from the stream only while fewer run, and, unless [`with_config`](Self::with_config)
    /// says otherwise, the consumer holds at most `n` messages in hand, so none waits
    /// unhandled while its invisibility time runs out.
    ///
    /// Each handler is a task on the client's runtime: they run in parallel on as many
    /// threads as it has (a multi-threaded tokio runtime's workers; on async-std and smol,
    /// smol's global executor: one thread unless `SMOL_THREADS` says more). A handler that
    /// blocks (`std::thread::sleep`, blocking I/O, long CPU work) holds one of those threads
    /// and with it the client's connections there: move such work off the runtime
    /// (`tokio::task::spawn_blocking`, `blocking::unblock`).
    #[must_use]
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// What to do with messages the client cannot decode (default
    /// [`PoisonPolicy::Leave`]).
    #[must_use]
    pub fn with_poison_policy(mut self, policy: PoisonPolicy) -> Self {
        self.poison = policy;
        self
    }

    /// The stream's settings (batch, wait, ack delay, orderly or normal). By default
    /// [`ConsumerConfig::normal`] with at most the concurrency limit in hand.
    ///
    /// With [`ConsumerConfig::orderly`], the messages of one partition (sharding key) are
    /// handled one at a time, in delivery order, and the partitions in parallel (within the
    /// concurrency limit); a partition's next message starts once the previous one's ack
    /// took effect (acks are sent at once, not held for a batch: the config's ack flush
    /// delay is not used). When a handler fails, its ack does not take effect, or a message's
    /// invisibility runs out while it waits its turn, the partition's messages received
    /// with it are released too (those still in the stream as well), so the service
    /// delivers the partition again from that message, in order, after its invisibility
    /// time.
    #[must_use]
    pub fn with_config(mut self, config: ConsumerConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Starts the loop in the background on the client's runtime; stop it with
    /// [`HandlerHandle::shutdown`] (dropping the handle stops it without waiting).
    pub fn spawn(self) -> HandlerHandle {
        let runtime = self.consumer.client().runtime().clone();
        let live = Live::default();
        let summary = live.clone();
        HandlerHandle {
            run: Background::spawn(&runtime, move |stop| Box::pin(self.run_live(stop, live))),
            summary,
        }
    }

    /// Runs the loop until `shutdown` completes, then stops receiving at once, lets the
    /// handlers in flight finish, sends their acks and waits for the answers (messages
    /// received but not yet handled are released); returns what it did.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> HandlerSummary {
        self.run_live(shutdown, Live::default()).await
    }

    /// [`run`](Self::run), counting in `summary` as it goes.
    async fn run_live(
        self,
        shutdown: impl Future<Output = ()> + Send,
        summary: Live<HandlerSummary>,
    ) -> HandlerSummary {
        let config = self
            .config
            .clone()
            .unwrap_or_else(|| ConsumerConfig::normal().with_max_in_hand(self.concurrency));
        let orderly = config.kind() == ConsumeKind::Orderly;
        // A partition waits for each ack before its next message: an ack held back for a
        // batch (the flush delay) would be waited for by every message of it.
        let config = if orderly {
            config.with_ack_flush_delay(Duration::ZERO)
        } else {
            config
        };
        let mut partitions = Partitions::new(orderly);
        let mut stream = self.consumer.stream_with_config(config).fuse();
        let mut running: FuturesUnordered<BoxFuture<(Option<Slot>, Finished)>> =
            FuturesUnordered::new();
        let mut acks: FuturesUnordered<BoxFuture<Acked>> = FuturesUnordered::new();
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut stopping = false;
        let mut stopped_receiving = false;
        loop {
            if stopping && running.is_empty() {
                break;
            }
            let room = !stopping && running.len() < self.concurrency;
            let mut next_item = if room {
                stream.next().boxed().fuse()
            } else {
                futures::future::pending().boxed().fuse()
            };
            let mut next_finished = if running.is_empty() {
                futures::future::pending().boxed().fuse()
            } else {
                running.next().boxed().fuse()
            };
            let mut next_ack = if acks.is_empty() {
                futures::future::pending().boxed().fuse()
            } else {
                acks.next().boxed().fuse()
            };
            let mut event = None;
            futures::select! {
                () = shutdown => stopping = true,
                item = next_item => event = Some(Event::Item(item)),
                done = next_finished => event = done.map(Event::Finished),
                acked = next_ack => event = acked.map(Event::Acked),
            }
            drop((next_item, next_finished, next_ack));
            if stopping && !stopped_receiving {
                // No poll any more: a message received now would only wait for the
                // handlers in flight and be released, invisible to other consumers meanwhile.
                stream.get_ref().stop_receiving();
                stopped_receiving = true;
            }
            match event {
                None => {}
                // The stream ended (its driver is gone): nothing more will come.
                Some(Event::Item(None)) => stopping = true,
                Some(Event::Item(Some(Ok(StreamItem::Message(delivery))))) => {
                    if let Some((slot, delivery)) = partitions.admit(delivery) {
                        running.push(self.start(delivery, slot));
                    }
                }
                Some(Event::Item(Some(Ok(StreamItem::Poison(poison))))) => {
                    if let Some(ack) = self.on_poison(poison, &summary) {
                        acks.push(Box::pin(ack.map(|r| Acked::Poison(r.is_ok()))));
                    }
                }
                Some(Event::Item(Some(Err(error)))) => summary.update(|s| {
                    s.receive_errors += 1;
                    s.last_receive_error = Some(error.to_string());
                }),
                Some(Event::Finished((slot, finished))) => {
                    let next = partitions.finished(slot, finished.is_ok(), stopping);
                    if let Some((slot, delivery)) = next {
                        running.push(self.start(delivery, slot));
                    }
                    self.count_finished(finished, &summary, &mut acks);
                }
                Some(Event::Acked(acked)) => summary.update(|s| acked.count(s)),
            }
        }
        // Sends the queued acks and waits for their answers; releases what is left.
        stream.into_inner().shutdown().await;
        while let Some(acked) = acks.next().await {
            summary.update(|s| acked.count(s));
        }
        summary.snapshot()
    }

    /// Counts a handler's outcome; queues the ack of a handled message.
    fn count_finished(
        &self,
        finished: Finished,
        summary: &Live<HandlerSummary>,
        acks: &mut FuturesUnordered<BoxFuture<Acked>>,
    ) {
        match finished {
            Finished::Ok(ack) => {
                summary.update(|s| s.handled += 1);
                acks.push(Box::pin(ack.map(|r| Acked::Handled(log_ack(r).is_ok()))));
            }
            Finished::Settled(acked) => summary.update(|s| {
                s.handled += 1;
                Acked::Handled(acked).count(s);
            }),
            Finished::Failed => summary.update(|s| s.failed += 1),
        }
    }

    /// Starts the handler of one delivery as a task of its own on the client's runtime —
    /// on a multi-threaded runtime, handlers run in parallel, up to the concurrency limit —
    /// and gives the future of its outcome. A task the runtime drops (it shut down) counts
    /// as failed: its message is released. Under orderly consumption (`slot`) the task
    /// also awaits the ack's outcome: the partition's next message starts only once this
    /// one is acked (an ack that does not take effect stops the partition like a failure).
    fn start(&self, delivery: Delivery, slot: Option<Slot>) -> BoxFuture<(Option<Slot>, Finished)> {
        let work = self.handle_one(delivery);
        let work: BoxFuture<Finished> = if slot.is_some() {
            Box::pin(work.then(|finished| async move {
                match finished {
                    Finished::Ok(ack) => Finished::Settled(log_ack(ack.await).is_ok()),
                    other => other,
                }
            }))
        } else {
            work
        };
        let outcome = spawn_task(self.consumer.client().runtime(), work, || Finished::Failed);
        Box::pin(outcome.map(move |finished| (slot, finished)))
    }

    /// The work for one delivery: the handler of its tag, then the ack (on `Ok`) or the
    /// release (on `Err` or a panic).
    fn handle_one(&self, delivery: Delivery) -> BoxFuture<Finished> {
        let (message, mut in_hand) = delivery.into_parts();
        let handler = message
            .tag
            .as_ref()
            .and_then(|tag| self.routes.get(tag))
            .unwrap_or(&self.default)
            .clone();
        let id = message.message_id.clone();
        let consumed_times = message.consumed_times;
        Box::pin(async move {
            // A panic in the handler's closure itself (before it returns its future, e.g.
            // an `unwrap` there) is caught as one in its future: it stopped the whole loop.
            let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(message))) {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            let error = match outcome {
                Ok(Ok(())) => match in_hand.ack() {
                    Some(ack) => return Finished::Ok(ack),
                    None => "no receipt handle".into(),
                },
                Ok(Err(e)) => e.to_string(),
                Err(panic) => match panic_text(panic.as_ref()) {
                    Some(what) => format!("the handler panicked: {what}"),
                    None => "the handler panicked".to_owned(),
                },
            };
            tracing::warn!(
                message_id = %id,
                consumed_times,
                error = %error,
                "message handler failed; the message is left for redelivery"
            );
            in_hand.release();
            Finished::Failed
        })
    }

    /// Applies the poison policy; returns the ack to await, if it acks.
    fn on_poison(
        &self,
        poison: PoisonDelivery,
        summary: &Live<HandlerSummary>,
    ) -> Option<AckFuture> {
        let (id, consumed_times) = (poison.message_id.clone(), poison.consumed_times);
        if self.poison == PoisonPolicy::Ack
            && poison.receipt_handle.is_some()
            && let Some(ack) = poison.ack()
        {
            tracing::warn!(message_id = ?id, consumed_times, "poison message acked (dropped)");
            return Some(ack);
        }
        tracing::warn!(
            message_id = ?id,
            consumed_times,
            "poison message left for redelivery"
        );
        summary.update(|s| s.poison_left += 1);
        None
    }
}

/// Logs an ack of a handled message that did not take effect; gives the outcome back.
fn log_ack(outcome: Result<(), crate::error::AckError>) -> Result<(), crate::error::AckError> {
    if let Err(e) = &outcome {
        // Often a handler slower than the group's invisibility: the message was delivered
        // again meanwhile.
        tracing::warn!(error = %e, "a handled message's ack did not take effect; it may be delivered again");
    }
    outcome
}

/// What one loop turn brought.
// One value per loop turn, matched at once: boxing the item would allocate per delivery.
#[allow(clippy::large_enum_variant)]
enum Event {
    Item(Option<Result<StreamItem, Error>>),
    /// A handler ended; its message's slot under orderly consumption.
    Finished((Option<Slot>, Finished)),
    Acked(Acked),
}

/// Orderly consumption through the loop (a [`ConsumeKind::Orderly`] config): the messages
/// of one partition (sharding key; none is the partition `""`) are handled one after
/// another in delivery order — the service delivers them in order and holds the partition's
/// next ones until these are acked (PROTOCOL §6.8) — while partitions run in parallel. A
/// partition moves on only once its message is acked. When a handler fails, its ack does
/// not take effect, or a waiting message's lease runs out before its turn, the partition
/// **stops at that message**: it and every message of the partition received with it or
/// before (by `NextConsumeTime`, within [`SAME_RECEIVE_MS`] of its) are released
/// — those waiting in the loop and those still in the stream — so that the service
/// delivers the partition again from that message, in order, after its invisibility time.
/// A shutdown releases the waiting messages too. Normal consumption starts every message at
/// once.
struct Partitions {
    orderly: bool,
    /// Per partition with a handler running: its messages waiting, in delivery order.
    waiting: HashMap<String, VecDeque<Delivery>>,
    /// Per stopped partition: where it stopped. Its deliveries received with that message
    /// or before are released; a later one (delivered again after the stop) lifts it.
    stopped: HashMap<String, Stop>,
}

/// Where a partition stopped.
struct Stop {
    /// The `NextConsumeTime` (server ms) of the message it stopped at.
    until: u64,
    /// That message's last instant to be acked (unknown without the server's time): past
    /// it (and [`SAME_RECEIVE_MS`]), every delivery received with it has expired too and
    /// is released as such, so the stop is forgotten.
    settle_by: Option<Instant>,
}

/// How far apart (ms) the `NextConsumeTime`s of messages of one receive may lie: a service
/// may stamp each message of a batch as it goes. A message delivered again after its
/// invisibility lies a whole invisibility time (seconds) later; one within this of a stop
/// is taken as received with the stopped message (released: at worst delivered again once
/// more under an invisibility shorter than this).
const SAME_RECEIVE_MS: u64 = 1_000;

/// Where a running message belongs under orderly consumption.
struct Slot {
    partition: String,
    next_consume_time: u64,
    settle_by: Option<Instant>,
}

impl Partitions {
    fn new(orderly: bool) -> Self {
        Self {
            orderly,
            waiting: HashMap::new(),
            stopped: HashMap::new(),
        }
    }

    /// A delivery received: what to start now (with its slot when orderly), or nothing when
    /// its partition is busy (it waits its turn), stopped before it, or its lease ran out
    /// (it is released).
    fn admit(&mut self, delivery: Delivery) -> Option<(Option<Slot>, Delivery)> {
        if !self.orderly {
            // Its lease ran out while it waited in the stream (more in hand than handlers
            // run): its ack could not be sent, and the service delivers it again.
            if delivery.expired(Instant::now()) {
                tracing::warn!(
                    message_id = %delivery.message_id,
                    "message's invisibility ran out before a handler was free; released, to be delivered again"
                );
                return None;
            }
            return Some((None, delivery));
        }
        let key = partition_of(&delivery);
        if !self.stopped.is_empty() {
            let now = Instant::now();
            self.stopped.retain(|_, stop| {
                stop.settle_by
                    .and_then(|by| by.checked_add(Duration::from_millis(SAME_RECEIVE_MS)))
                    .is_none_or(|forget| now < forget)
            });
            let time = delivery.next_consume_time;
            match self.stopped.get(&key) {
                Some(stop) if time <= stop.until.saturating_add(SAME_RECEIVE_MS) => {
                    tracing::debug!(partition = %key, "message received before its partition stopped: released");
                    return None;
                }
                Some(_) => {
                    self.stopped.remove(&key);
                }
                None => {}
            }
        }
        if let Some(queue) = self.waiting.get_mut(&key) {
            queue.push_back(delivery);
            return None;
        }
        self.waiting.insert(key.clone(), VecDeque::from([delivery]));
        self.next(key)
    }

    /// The handler of the message in `slot` ended (`ok`: handled and acked): the
    /// partition's next message to start, if any. After a failure the partition stops at
    /// that message; while `stopping` its waiting messages are released.
    fn finished(
        &mut self,
        slot: Option<Slot>,
        ok: bool,
        stopping: bool,
    ) -> Option<(Option<Slot>, Delivery)> {
        let Slot {
            partition,
            next_consume_time,
            settle_by,
        } = slot?;
        if stopping {
            // Dropped: a dropped delivery is released.
            self.waiting.remove(&partition);
            return None;
        }
        if !ok {
            self.stop(&partition, next_consume_time, settle_by);
        }
        self.next(partition)
    }

    /// The next message of partition `key` to start (the partition stays busy while it
    /// runs), or none, and the partition is idle. A message whose lease ran out while it
    /// waited (its ack could not be sent) stops the partition at it and is released.
    fn next(&mut self, key: String) -> Option<(Option<Slot>, Delivery)> {
        let now = Instant::now();
        loop {
            let Some(delivery) = self.waiting.get_mut(&key).and_then(VecDeque::pop_front) else {
                self.waiting.remove(&key);
                return None;
            };
            if !delivery.expired(now) {
                let slot = Slot {
                    partition: key,
                    next_consume_time: delivery.next_consume_time,
                    settle_by: delivery.settle_by(),
                };
                return Some((Some(slot), delivery));
            }
            tracing::warn!(
                partition = %key,
                message_id = %delivery.message_id,
                "orderly message's invisibility ran out before its turn; released with its partition's later messages, to be delivered again in order"
            );
            self.stop(&key, delivery.next_consume_time, delivery.settle_by());
        }
    }

    /// Stops partition `key` at a message whose `NextConsumeTime` is `until`: its waiting
    /// messages received with it or before are released, and so will be those the stream
    /// still holds.
    fn stop(&mut self, key: &str, until: u64, settle_by: Option<Instant>) {
        let stop = self
            .stopped
            .entry(key.to_owned())
            .or_insert(Stop { until, settle_by });
        if until >= stop.until {
            *stop = Stop { until, settle_by };
        }
        if let Some(queue) = self.waiting.get_mut(key) {
            let before = queue.len();
            queue.retain(|d| d.next_consume_time > until.saturating_add(SAME_RECEIVE_MS));
            let released = before - queue.len();
            if released > 0 {
                tracing::warn!(
                    partition = %key,
                    released,
                    "orderly partition stopped at a message not handled; its later messages are released to be delivered again after it, in order"
                );
            }
        }
    }
}

/// The partition (sharding key) of a delivery; `""` without one.
fn partition_of(delivery: &Delivery) -> String {
    delivery
        .message()
        .sharding_key()
        .unwrap_or_default()
        .to_owned()
}

/// How a handler future ended.
enum Finished {
    /// `Ok`: the ack is queued; its outcome follows.
    Ok(AckFuture),
    /// `Ok`, and the ack's outcome (`true`: it took effect): under orderly consumption,
    /// whose task awaits it.
    Settled(bool),
    /// `Err` or a panic: released.
    Failed,
}

impl Finished {
    fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_) | Self::Settled(true))
    }
}

/// The outcome of an ack the loop sent: of a handled message or of a poison message.
enum Acked {
    Handled(bool),
    Poison(bool),
}

impl Acked {
    fn count(self, summary: &mut HandlerSummary) {
        match self {
            Self::Handled(true) => summary.acked += 1,
            Self::Handled(false) => summary.ack_failed += 1,
            Self::Poison(true) => summary.poison_acked += 1,
            Self::Poison(false) => summary.poison_left += 1,
        }
    }
}

/// A [`MessageHandler`] running in the background (from [`MessageHandler::spawn`]).
///
/// Dropping it without calling [`shutdown`](Self::shutdown) stops the loop too, without
/// waiting for it: no message is taken any more; handlers already running finish on their
/// own (their messages may be acked, or delivered again), and messages received but not
/// started are released.
///
/// ```no_run
/// # async fn example(consumer: mq_client::Consumer) -> Result<(), mq_client::Error> {
/// let handling = consumer
///     .handle(|m| async move {
///         println!("{}", m.body);
///         Ok(())
///     })
///     .spawn();
/// // ... later, on SIGTERM:
/// let summary = handling.shutdown().await?;
/// println!("handled {}, acked {}", summary.handled, summary.acked);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle stops the handler loop at once"]
pub struct HandlerHandle {
    run: Background<HandlerSummary>,
    summary: Live<HandlerSummary>,
}

impl HandlerHandle {
    /// What the loop has done so far, while it runs: counts that only grow (a health check
    /// compares two of them), and the latest receive error. Messages still being handled
    /// or acked are not counted yet.
    ///
    /// ```no_run
    /// # async fn example(consumer: mq_client::Consumer) {
    /// let handling = consumer.handle(|_m| async { Ok(()) }).spawn();
    /// // ... later, from a health check:
    /// let now = handling.summary();
    /// if now.receive_errors > 0 {
    ///     eprintln!("{} receives failed, the last: {:?}", now.receive_errors, now.last_receive_error);
    /// }
    /// # }
    /// ```
    pub fn summary(&self) -> HandlerSummary {
        self.summary.snapshot()
    }

    /// Stops taking messages, lets the handlers in flight finish, sends their acks and waits
    /// for the answers; returns what the loop did.
    ///
    /// A handler that never completes keeps it waiting: bound it with your runtime's
    /// timeout (`tokio::time::timeout(d, handling.shutdown())`). When that elapses the
    /// handle is dropped, which stops the loop without waiting for it; the messages whose
    /// acks were not sent are delivered again after their invisibility (at least once).
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`] when the loop's task ended without a summary (the runtime dropped
    /// it).
    pub async fn shutdown(self) -> Result<HandlerSummary, Error> {
        self.run.stop().await.ok_or(Error::Shutdown)
    }
}

impl Consumer {
    /// The common consume loop: `handler` gets every message no [`route`](MessageHandler::route)
    /// claims; `Ok(())` acks it, `Err` leaves it for redelivery. Configure the returned
    /// [`MessageHandler`] (routes per tag, concurrency limit, poison policy) and
    /// [`spawn`](MessageHandler::spawn) or [`run`](MessageHandler::run) it.
    pub fn handle<F, Fut>(&self, handler: F) -> MessageHandler
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        MessageHandler::new(self.clone(), handler)
    }
}

/// The message a panic was raised with (`panic!("…")`, `unwrap`, `expect`), if it is text.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> Option<&str> {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::panic_text;

    #[test]
    fn a_panic_says_what_it_was_raised_with() {
        let literal = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_text(literal.as_ref()), Some("plain"));
        let n = 3;
        let formatted = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_text(formatted.as_ref()), Some("formatted 3"));
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(panic_text(other.as_ref()), None);
    }
}
