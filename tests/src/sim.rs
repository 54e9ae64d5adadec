//! Deterministic simulation: the client state machines of [`mq_proto::machine`] driven
//! against the broker's deterministic [`BrokerCore`] through a simulated network, in virtual
//! time (STYLE §9). Nothing here sleeps or opens a socket, so hours of behaviour take
//! milliseconds.
//!
//! * [`Clock`]: a virtual clock. Machines get `base + offset` as their [`Instant`]; the core
//!   gets [`START_WALL_MS`] `+ offset`, and answers to consumes carry it, truncated to the
//!   second, as their `Date` (the machines never see a wall clock of their own).
//! * [`Sim`]: the core behind a network with seeded faults ([`Faults`]): requests lost before
//!   reaching the broker, requests applied whose answer is lost (connection reset or
//!   timeout), server errors, slow answers, and long polls held the way the real server holds
//!   them (re-asked whenever the topic's version moves, answered `MessageNotExist` at the
//!   deadline). It keeps a ledger of what the broker really did ([`DeliveryRecord`],
//!   [`AckRecord`]) for tests to check the machines' view against.
//! * [`ConsumerDriver`]: the glue a runtime would be (for a consumer and for the checker,
//!   which is the same machine on half messages), turning transmits into simulated requests
//!   and answers into `handle_*` calls, and checking on the way that the machine never sends
//!   an expired handle or asks for more than its in-hand room.
//! * [`Agenda`]: a time-ordered queue of a test's own actions (publishes, user acks, ...).
//!
//! Time only moves when the test calls [`Sim::advance_to`], normally to the earliest of
//! [`Sim::next_event_ms`], the drivers' timers and its own agenda.
//!
//! ```
//! use mq_broker::core::CoreConfig;
//! use mq_proto::machine::{ConsumerConfig, ConsumerEvent, ConsumerMachine};
//! use mq_proto::{GroupId, TagFilter, TopicMessage, TopicName};
//! use mq_tests::sim::{ClientId, ConsumerDriver, Faults, Sim};
//!
//! let topic = TopicName::new("T")?;
//! let group = GroupId::new("GID_sim")?;
//! let mut sim = Sim::new(CoreConfig::default(), topic, Faults::none(), 7);
//! sim.register_group(&group);
//! let machine = ConsumerMachine::new(ConsumerConfig::default(), 1);
//! let mut consumer = ConsumerDriver::new(ClientId(1), group, TagFilter::All, machine);
//!
//! sim.advance_to(3_600_000); // an hour passes in no time
//! sim.publish(TopicMessage::new("hello")?)?;
//! let mut acked = false;
//! while !acked {
//!     for event in consumer.pump(&mut sim) {
//!         match event {
//!             ConsumerEvent::Message(m) => consumer.ack(&sim, &m.receipt_handle).unwrap(),
//!             ConsumerEvent::Settled { .. } => acked = true,
//!             _ => {}
//!         }
//!     }
//!     let next = [sim.next_event_ms(), consumer.timeout_ms(&sim)].into_iter().flatten().min();
//!     for response in sim.advance_to(next.unwrap_or(sim.elapsed_ms())) {
//!         consumer.on_response(&sim, response);
//!     }
//!     consumer.on_time(&sim);
//! }
//! assert_eq!(sim.core().stats().acked, 1);
//! assert!(sim.elapsed_ms() >= 3_600_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use mq_broker::core::{BrokerCore, CoreConfig, CoreError, PublishOutcome};
use mq_proto::machine::{
    AckRefused, ConsumerEvent, ConsumerMachine, ConsumerTransmit, Decision, FailureKind, Received,
};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, ErrorCode, GroupId, HandleFailure, Message, ReceiptHandle,
    TagFilter, TopicMessage, TopicName, WaitSeconds,
};

/// Wall-clock time (epoch ms) at virtual offset 0.
pub const START_WALL_MS: u64 = 1_700_000_000_000;

/// Virtual time: an offset in milliseconds from a base [`Instant`] captured once.
///
/// ```
/// use mq_tests::sim::{Clock, START_WALL_MS};
/// let clock = Clock::new();
/// assert_eq!(clock.wall_ms(), START_WALL_MS);
/// assert_eq!(clock.ms_of(clock.instant_at(1_500)), 1_500);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    now_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock at offset 0.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            now_ms: 0,
        }
    }

    /// Virtual milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.now_ms
    }

    /// The monotonic time the machines see now.
    pub fn now(&self) -> Instant {
        self.instant_at(self.now_ms)
    }

    /// The monotonic time at virtual offset `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// Wall-clock epoch milliseconds now.
    pub fn wall_ms(&self) -> u64 {
        START_WALL_MS + self.now_ms
    }

    /// The virtual offset of an instant, rounded up to the next millisecond (so that at that
    /// offset the instant has passed).
    pub fn ms_of(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.base);
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if d > Duration::from_millis(ms) {
            ms.saturating_add(1)
        } else {
            ms
        }
    }

    /// Moves the clock forward to `ms` (never back).
    fn set(&mut self, ms: u64) {
        self.now_ms = self.now_ms.max(ms);
    }
}

/// Network behaviour; rates are probabilities per request.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// One-way latency, uniform in this inclusive range (ms, at least 1).
    pub latency_ms: (u64, u64),
    /// Chance that a one-way trip is slow.
    pub slow_rate: f64,
    /// Extra latency of a slow trip, uniform in this inclusive range (ms).
    pub slow_extra_ms: (u64, u64),
    /// The request never reaches the broker ([`FailureKind::NotSent`] or
    /// [`FailureKind::Connect`]).
    pub lost_request_rate: f64,
    /// The broker answers `500 InternalError` without applying the request.
    pub server_error_rate: f64,
    /// The broker applies the request but the answer is lost ([`FailureKind::ConnectionLost`]
    /// after the answer would have arrived, or [`FailureKind::Timeout`] at the client's
    /// timeout).
    pub lost_response_rate: f64,
    /// A long poll's connection is reset at a random moment of its wait: a poll still held is
    /// dropped unapplied, an answer still on the way is lost.
    pub reset_rate: f64,
    /// The request is held up on the way until after the client's timeout: the client sees
    /// [`FailureKind::Timeout`] (and moves on), then the broker applies the request and
    /// answers into a closed connection.
    pub stall_rate: f64,
    /// The client's timeout beyond `waitseconds` (ms).
    pub request_timeout_ms: u64,
}

impl Faults {
    /// A perfect network with 1 ms latency.
    pub fn none() -> Self {
        Self {
            latency_ms: (1, 1),
            slow_rate: 0.0,
            slow_extra_ms: (0, 0),
            lost_request_rate: 0.0,
            server_error_rate: 0.0,
            lost_response_rate: 0.0,
            reset_rate: 0.0,
            stall_rate: 0.0,
            request_timeout_ms: 10_000,
        }
    }

    /// A healthy network: 1–20 ms latency, no failures.
    pub fn calm() -> Self {
        Self {
            latency_ms: (1, 20),
            ..Self::none()
        }
    }

    /// A hostile network: lost requests, server errors and lost answers at `rate / 3` each,
    /// stalled requests at `rate / 6`, long-poll resets and slow trips (0.2–3 s extra) at
    /// `rate`.
    pub fn chaos(rate: f64) -> Self {
        let rate = rate.clamp(0.0, 0.9);
        Self {
            latency_ms: (1, 40),
            slow_rate: rate,
            slow_extra_ms: (200, 3_000),
            lost_request_rate: rate / 3.0,
            server_error_rate: rate / 3.0,
            lost_response_rate: rate / 3.0,
            reset_rate: rate,
            stall_rate: rate / 6.0,
            request_timeout_ms: 10_000,
        }
    }
}

/// Names a simulated client (one machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);

/// A request in operation terms, on the simulation's topic (default instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Consume (normal, orderly or half), long-polling up to `wait`.
    Consume {
        /// Consumer group.
        group: GroupId,
        /// Normal, orderly or half.
        kind: ConsumeKind,
        /// Tag filter.
        filter: TagFilter,
        /// `numOfMessages`.
        batch: BatchSize,
        /// `waitseconds`.
        wait: WaitSeconds,
    },
    /// Ack, commit or rollback.
    Ack {
        /// Consumer group (required for [`AckKind::Ack`]).
        group: Option<GroupId>,
        /// Ack, commit or rollback.
        kind: AckKind,
        /// Receipt handles.
        handles: Vec<ReceiptHandle>,
    },
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Messages of a consume, with the server's `Date` of the answer (epoch ms, truncated to
    /// the second as an HTTP date is).
    Messages {
        /// The messages.
        messages: Vec<Message>,
        /// The answer's `Date`.
        date_ms: u64,
    },
    /// Per-handle failures of an ack, commit or rollback (empty: all settled).
    Settled(Vec<HandleFailure>),
}

/// An answer (or a failure) reaching a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The client that sent the request.
    pub client: ClientId,
    /// The request id the client gave.
    pub id: u64,
    /// What the client observes.
    pub result: Result<Reply, FailureKind>,
}

/// One message the broker handed out (whether or not the answer reached the client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Virtual time of the delivery (ms).
    pub at_ms: u64,
    /// The client whose request it answered.
    pub client: ClientId,
    /// That request's id.
    pub request: u64,
    /// Normal, orderly or half.
    pub kind: ConsumeKind,
    /// The message as handed out.
    pub message: Message,
    /// Whether the answer carrying it reached the client.
    pub reached_client: bool,
}

/// One handle of an ack, commit or rollback as the broker processed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckRecord {
    /// Virtual time (ms).
    pub at_ms: u64,
    /// The client whose request it was.
    pub client: ClientId,
    /// That request's id.
    pub request: u64,
    /// Ack, commit or rollback.
    pub kind: AckKind,
    /// The handle text.
    pub handle: String,
    /// The broker's verdict for this handle.
    pub result: Result<(), ErrorCode>,
}

/// What becomes of the answer to a request that reaches the broker.
#[derive(Clone, Debug)]
enum Fate {
    /// It reaches the client.
    Answer,
    /// It is lost; the client observes this failure.
    Lose(FailureKind),
    /// Nobody is listening any more (the client already timed out).
    Orphan,
}

#[derive(Clone, Debug)]
enum NetEvent {
    Arrive {
        client: ClientId,
        id: u64,
        request: Request,
        sent_ms: u64,
        fate: Fate,
    },
    Reply {
        client: ClientId,
        id: u64,
        result: Result<Reply, FailureKind>,
        records: Vec<usize>,
    },
    Reset {
        client: ClientId,
        id: u64,
    },
}

#[derive(Clone, Debug)]
struct Held {
    client: ClientId,
    id: u64,
    group: GroupId,
    kind: ConsumeKind,
    filter: TagFilter,
    batch: BatchSize,
    wait_ms: u64,
    sent_ms: u64,
    deadline_ms: u64,
    version: u64,
    fate: Fate,
}

/// The broker core behind a simulated, fault-injecting network, in virtual time. See the
/// [module docs](self).
pub struct Sim {
    core: BrokerCore,
    topic: TopicName,
    clock: Clock,
    faults: Faults,
    rng: fastrand::Rng,
    next_seq: u64,
    events: BTreeMap<(u64, u64), NetEvent>,
    held: Vec<Held>,
    deliveries: Vec<DeliveryRecord>,
    by_handle: HashMap<String, usize>,
    acks: Vec<AckRecord>,
    missed_wakeups: u64,
    stuck_wakeups: u64,
    requests: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now_ms", &self.clock.now_ms)
            .field("in_transit", &self.events.len())
            .field("held", &self.held.len())
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

fn core_failure(e: &CoreError) -> FailureKind {
    FailureKind::status(e.code.status(), Some(e.code.clone()))
}

fn not_found() -> FailureKind {
    FailureKind::status(404, Some(ErrorCode::MessageNotExist))
}

impl Sim {
    /// A simulation of one topic (default instance) on a core with `config`; `seed` drives
    /// every fault decision and latency.
    pub fn new(config: CoreConfig, topic: TopicName, faults: Faults, seed: u64) -> Self {
        Self {
            core: BrokerCore::new(config),
            topic,
            clock: Clock::new(),
            faults,
            rng: fastrand::Rng::with_seed(seed),
            next_seq: 0,
            events: BTreeMap::new(),
            held: Vec::new(),
            deliveries: Vec::new(),
            by_handle: HashMap::new(),
            acks: Vec::new(),
            missed_wakeups: 0,
            stuck_wakeups: 0,
            requests: 0,
        }
    }

    // ----- time -----

    /// The virtual clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Monotonic time for the machines.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Wall-clock epoch ms for the machines and the core.
    pub fn wall_ms(&self) -> u64 {
        self.clock.wall_ms()
    }

    /// Virtual milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.clock.elapsed_ms()
    }

    // ----- the broker side -----

    /// The broker core (read-only; mutate it through requests, [`publish`](Self::publish)
    /// or [`register_group`](Self::register_group)).
    pub fn core(&self) -> &BrokerCore {
        &self.core
    }

    /// The simulated topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The network behaviour in force.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Changes the network behaviour for requests sent from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Publishes a message now (producer side, not through the faulty network), then wakes
    /// the long polls it may satisfy.
    ///
    /// # Errors
    ///
    /// The core's refusal ([`CoreError`]: an unknown topic, a message over a limit, …).
    pub fn publish(&mut self, message: TopicMessage) -> Result<PublishOutcome, CoreError> {
        let outcome = self
            .core
            .publish(self.clock.wall_ms(), None, &self.topic, message);
        self.core.maintain(self.clock.wall_ms());
        self.recheck();
        outcome
    }

    /// Registers a new consumer group on the topic now, so it receives every message published
    /// from now on: a consume, which gets nothing (a new group holds no message yet) and is
    /// not recorded as a delivery.
    pub fn register_group(&mut self, group: &GroupId) {
        let got = self.core.consume(
            self.clock.wall_ms(),
            None,
            &self.topic,
            group,
            ConsumeKind::Normal,
            &TagFilter::All,
            BatchSize::MIN,
        );
        assert!(
            got.as_ref().is_ok_and(Vec::is_empty),
            "registering {group}: {got:?}"
        );
    }

    /// Every message the broker handed out, in order.
    pub fn deliveries(&self) -> &[DeliveryRecord] {
        &self.deliveries
    }

    /// The delivery that issued `handle`.
    pub fn delivery(&self, handle: &str) -> Option<&DeliveryRecord> {
        self.by_handle
            .get(handle)
            .and_then(|&i| self.deliveries.get(i))
    }

    /// Every handle of every ack, commit and rollback the broker processed, in order.
    pub fn acks(&self) -> &[AckRecord] {
        &self.acks
    }

    /// Long polls found messages at their deadline although the topic's version never moved
    /// while they waited: the core failed to signal a change (a real server would have
    /// answered `MessageNotExist` late or not at all). Should stay 0.
    pub fn missed_wakeups(&self) -> u64 {
        self.missed_wakeups
    }

    /// Times [`BrokerCore::next_wakeup`] still lay at or before the present right after
    /// [`BrokerCore::maintain`] ran (a timer built on it would spin). Should stay 0.
    pub fn stuck_wakeups(&self) -> u64 {
        self.stuck_wakeups
    }

    /// Requests sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.requests
    }

    /// Long polls currently held by the simulated server (including ones whose client has
    /// already given up on them).
    pub fn held_polls(&self) -> usize {
        self.held.len()
    }

    // ----- the network -----

    /// Sends a request now; its answer (or failure) comes back from a later
    /// [`advance_to`](Self::advance_to), never synchronously.
    pub fn send(&mut self, client: ClientId, id: u64, request: Request) {
        self.requests += 1;
        let now = self.clock.now_ms;
        let faults = self.faults.clone();
        let roll = self.rng.f64();
        if roll < faults.lost_request_rate {
            let failure = if self.rng.bool() {
                FailureKind::NotSent
            } else {
                FailureKind::Connect
            };
            let at = now + self.latency();
            self.reply_at(at, client, id, Err(failure), Vec::new());
            return;
        }
        let up = self.latency();
        if roll < faults.lost_request_rate + faults.server_error_rate {
            let at = now + up + self.latency();
            let failure = FailureKind::status(500, Some(ErrorCode::InternalError));
            self.reply_at(at, client, id, Err(failure), Vec::new());
            return;
        }
        let wait_ms = match &request {
            Request::Consume { wait, .. } => u64::from(wait.get()) * 1_000,
            Request::Ack { .. } => 0,
        };
        let fate_roll = self.rng.f64();
        if fate_roll < faults.stall_rate {
            // Stuck on the way: the client times out, and only then does the request reach
            // the broker, which applies it and answers into a closed connection.
            let timeout = now + wait_ms + faults.request_timeout_ms;
            self.reply_at(timeout, client, id, Err(FailureKind::Timeout), Vec::new());
            let arrive = timeout + self.latency();
            let event = NetEvent::Arrive {
                client,
                id,
                request,
                sent_ms: now,
                fate: Fate::Orphan,
            };
            self.schedule(arrive, event);
            return;
        }
        let fate = if fate_roll < faults.stall_rate + faults.lost_response_rate {
            Fate::Lose(if self.rng.bool() {
                FailureKind::ConnectionLost
            } else {
                FailureKind::Timeout
            })
        } else {
            Fate::Answer
        };
        if wait_ms > 0 && self.rng.f64() < faults.reset_rate {
            let at = now + up + self.rng.u64(0..wait_ms);
            self.schedule(at, NetEvent::Reset { client, id });
        }
        self.schedule(
            now + up,
            NetEvent::Arrive {
                client,
                id,
                request,
                sent_ms: now,
                fate,
            },
        );
    }

    /// Abandons request `id` of `client` (a driver aborting it, e.g. on shutdown): a request
    /// not yet arrived or a held poll is dropped unapplied; an answer on its way is lost.
    /// The driver then reports [`FailureKind::Cancelled`] itself. Returns whether anything
    /// was outstanding.
    pub fn cancel(&mut self, client: ClientId, id: u64) -> bool {
        let mut found = false;
        if let Some(pos) = self
            .held
            .iter()
            .position(|h| h.client == client && h.id == id)
        {
            self.held.remove(pos);
            found = true;
        }
        let keys: Vec<(u64, u64)> = self
            .events
            .iter()
            .filter(|(_, e)| match e {
                NetEvent::Arrive {
                    client: c, id: i, ..
                }
                | NetEvent::Reply {
                    client: c, id: i, ..
                }
                | NetEvent::Reset { client: c, id: i } => *c == client && *i == id,
            })
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(e) = self.events.remove(&k) {
                found |= !matches!(e, NetEvent::Reset { .. });
            }
        }
        found
    }

    /// The next virtual time at which the simulation has something to do: an answer or
    /// request arriving, a long-poll deadline, or the core's next wake-up.
    pub fn next_event_ms(&self) -> Option<u64> {
        let now = self.clock.now_ms;
        let net = self.events.keys().next().map(|k| k.0);
        let held = self.held.iter().map(|h| h.deadline_ms).min();
        // A wake-up at or before now has been handled by the last `maintain` (or is stuck,
        // which `stuck_wakeups` counts); either way it is not a future event.
        let core = self
            .core
            .next_wakeup()
            .map(|w| w.saturating_sub(START_WALL_MS))
            .filter(|&w| w > now);
        [net, held, core].into_iter().flatten().min()
    }

    /// Moves virtual time to `t_ms` (never back), processing in order everything due on the
    /// way: requests reach the core, held polls are re-asked, `maintain` runs at every step.
    /// Returns the answers that reached clients, in arrival order.
    pub fn advance_to(&mut self, t_ms: u64) -> Vec<Response> {
        let target = t_ms.max(self.clock.now_ms);
        let mut out = Vec::new();
        while let Some(next) = self.next_event_ms().filter(|&n| n < target) {
            self.step_at(next, &mut out);
        }
        self.step_at(target, &mut out);
        out
    }

    // ----- internals -----

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.faults.latency_ms;
        let lo = lo.max(1);
        let mut d = self.rng.u64(lo..=hi.max(lo));
        if self.rng.f64() < self.faults.slow_rate {
            let (a, b) = self.faults.slow_extra_ms;
            d += self.rng.u64(a..=b.max(a));
        }
        d
    }

    fn schedule(&mut self, at: u64, event: NetEvent) {
        let key = (at, self.next_seq);
        self.next_seq += 1;
        self.events.insert(key, event);
    }

    fn reply_at(
        &mut self,
        at: u64,
        client: ClientId,
        id: u64,
        result: Result<Reply, FailureKind>,
        records: Vec<usize>,
    ) {
        self.schedule(
            at,
            NetEvent::Reply {
                client,
                id,
                result,
                records,
            },
        );
    }

    fn step_at(&mut self, at: u64, out: &mut Vec<Response>) {
        self.clock.set(at);
        loop {
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > self.clock.now_ms {
                    break;
                }
                let event = entry.remove();
                self.process(event, out);
            }
            let wall = self.clock.wall_ms();
            self.core.maintain(wall);
            if self.core.next_wakeup().is_some_and(|w| w <= wall) {
                self.stuck_wakeups += 1;
            }
            self.recheck();
            let now = self.clock.now_ms;
            if self.events.keys().next().is_none_or(|k| k.0 > now) {
                break;
            }
        }
    }

    fn process(&mut self, event: NetEvent, out: &mut Vec<Response>) {
        match event {
            NetEvent::Arrive {
                client,
                id,
                request,
                sent_ms,
                fate,
            } => self.arrive(client, id, request, sent_ms, fate),
            NetEvent::Reply {
                client,
                id,
                result,
                records,
            } => {
                if result.is_ok() {
                    for i in records {
                        if let Some(d) = self.deliveries.get_mut(i) {
                            d.reached_client = true;
                        }
                    }
                }
                out.push(Response { client, id, result });
            }
            NetEvent::Reset { client, id } => self.reset(client, id),
        }
    }

    fn reset(&mut self, client: ClientId, id: u64) {
        let now = self.clock.now_ms;
        let lost = Err(FailureKind::ConnectionLost);
        if let Some(pos) = self
            .held
            .iter()
            .position(|h| h.client == client && h.id == id)
        {
            self.held.remove(pos);
            self.reply_at(now, client, id, lost, Vec::new());
            return;
        }
        let on_the_way = self.events.iter().find_map(|(k, e)| match e {
            NetEvent::Reply {
                client: c, id: i, ..
            } if *c == client && *i == id => Some(*k),
            _ => None,
        });
        if let Some(k) = on_the_way {
            self.events.remove(&k);
            self.reply_at(now, client, id, lost, Vec::new());
        }
    }

    fn arrive(&mut self, client: ClientId, id: u64, request: Request, sent_ms: u64, fate: Fate) {
        let now = self.clock.now_ms;
        let wall = self.clock.wall_ms();
        match request {
            Request::Ack {
                group,
                kind,
                handles,
            } => {
                let texts: Vec<String> = handles.iter().map(|h| h.as_str().to_owned()).collect();
                let result = self
                    .core
                    .ack(wall, None, &self.topic, group.as_ref(), kind, &texts);
                for text in texts {
                    let verdict = match &result {
                        Ok(failures) => failures
                            .iter()
                            .find(|f| f.receipt_handle == text)
                            .map_or(Ok(()), |f| Err(f.code.clone())),
                        Err(e) => Err(e.code.clone()),
                    };
                    self.acks.push(AckRecord {
                        at_ms: now,
                        client,
                        request: id,
                        kind,
                        handle: text,
                        result: verdict,
                    });
                }
                let result = result.map(Reply::Settled).map_err(|e| core_failure(&e));
                self.answer(client, id, result, Vec::new(), sent_ms, 0, fate);
            }
            Request::Consume {
                group,
                kind,
                filter,
                batch,
                wait,
            } => {
                let wait_ms = u64::from(wait.get()) * 1_000;
                let mut held = Held {
                    client,
                    id,
                    group,
                    kind,
                    filter,
                    batch,
                    wait_ms,
                    sent_ms,
                    deadline_ms: now + wait_ms,
                    version: 0,
                    fate,
                };
                match self.try_consume(&held) {
                    Err(e) => self.answer_held(&held, Err(core_failure(&e)), Vec::new()),
                    Ok(records) if !records.is_empty() => self.answer_found(&held, records),
                    Ok(_) if wait_ms == 0 => self.answer_held(&held, Err(not_found()), Vec::new()),
                    Ok(_) => {
                        held.version = self.core.topic_version(None, &self.topic);
                        self.held.push(held);
                    }
                }
            }
        }
    }

    /// Re-asks the core for every held poll whose topic changed or whose wait is over, as
    /// the real server does.
    fn recheck(&mut self) {
        let now = self.clock.now_ms;
        let mut i = 0;
        while let Some(h) = self.held.get(i) {
            let version = self.core.topic_version(None, &self.topic);
            let changed = h.version != version;
            let due = now >= h.deadline_ms;
            if !changed && !due {
                i += 1;
                continue;
            }
            let h = h.clone();
            match self.try_consume(&h) {
                Err(e) => {
                    self.held.remove(i);
                    self.answer_held(&h, Err(core_failure(&e)), Vec::new());
                }
                Ok(records) if !records.is_empty() => {
                    if !changed {
                        self.missed_wakeups += 1;
                    }
                    self.held.remove(i);
                    self.answer_found(&h, records);
                }
                Ok(_) if due => {
                    self.held.remove(i);
                    self.answer_held(&h, Err(not_found()), Vec::new());
                }
                Ok(_) => {
                    if let Some(h) = self.held.get_mut(i) {
                        h.version = version;
                    }
                    i += 1;
                }
            }
        }
    }

    fn try_consume(&mut self, h: &Held) -> Result<Vec<usize>, CoreError> {
        let now = self.clock.now_ms;
        let messages = self.core.consume(
            self.clock.wall_ms(),
            None,
            &self.topic,
            &h.group,
            h.kind,
            &h.filter,
            h.batch,
        )?;
        let mut records = Vec::with_capacity(messages.len());
        for message in messages {
            let i = self.deliveries.len();
            self.by_handle
                .insert(message.receipt_handle.as_str().to_owned(), i);
            self.deliveries.push(DeliveryRecord {
                at_ms: now,
                client: h.client,
                request: h.id,
                kind: h.kind,
                message,
                reached_client: false,
            });
            records.push(i);
        }
        Ok(records)
    }

    fn answer_found(&mut self, h: &Held, records: Vec<usize>) {
        let messages = records
            .iter()
            .filter_map(|&i| self.deliveries.get(i))
            .map(|d| d.message.clone())
            .collect();
        let date_ms = self.clock.wall_ms() / 1000 * 1000;
        self.answer_held(h, Ok(Reply::Messages { messages, date_ms }), records);
    }

    fn answer_held(&mut self, h: &Held, result: Result<Reply, FailureKind>, records: Vec<usize>) {
        self.answer(
            h.client,
            h.id,
            result,
            records,
            h.sent_ms,
            h.wait_ms,
            h.fate.clone(),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        client: ClientId,
        id: u64,
        result: Result<Reply, FailureKind>,
        records: Vec<usize>,
        sent_ms: u64,
        wait_ms: u64,
        fate: Fate,
    ) {
        let now = self.clock.now_ms;
        let at = now + self.latency();
        match fate {
            Fate::Answer => self.reply_at(at, client, id, result, records),
            Fate::Orphan => {}
            Fate::Lose(FailureKind::Timeout) => {
                let timeout = sent_ms + wait_ms + self.faults.request_timeout_ms;
                self.reply_at(
                    at.max(timeout),
                    client,
                    id,
                    Err(FailureKind::Timeout),
                    Vec::new(),
                );
            }
            Fate::Lose(failure) => self.reply_at(at, client, id, Err(failure), Vec::new()),
        }
    }
}

/// A time-ordered queue of a test's own actions; actions due at the same time come out in
/// the order they were added.
///
/// ```
/// use mq_tests::sim::Agenda;
/// let mut a = Agenda::default();
/// a.at(20, "b");
/// a.at(10, "a");
/// assert_eq!(a.next_ms(), Some(10));
/// assert_eq!(a.pop_due(15), Some("a"));
/// assert_eq!(a.pop_due(15), None);
/// ```
#[derive(Clone, Debug)]
pub struct Agenda<A> {
    items: BTreeMap<(u64, u64), A>,
    seq: u64,
}

impl<A> Default for Agenda<A> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<A> Agenda<A> {
    /// Schedules `action` at virtual time `ms`.
    pub fn at(&mut self, ms: u64, action: A) {
        self.items.insert((ms, self.seq), action);
        self.seq += 1;
    }

    /// When the next action is due.
    pub fn next_ms(&self) -> Option<u64> {
        self.items.keys().next().map(|k| k.0)
    }

    /// The next action due at or before `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<A> {
        let entry = self.items.first_entry()?;
        (entry.key().0 <= now_ms).then(|| entry.remove())
    }

    /// Actions still scheduled.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A settlement request (ack, commit or rollback) a [`ConsumerDriver`] sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentAck {
    /// Virtual time of sending (ms).
    pub at_ms: u64,
    /// Request id.
    pub id: u64,
    /// Ack, commit or rollback.
    pub kind: AckKind,
    /// The handles, in order.
    pub handles: Vec<ReceiptHandle>,
}

/// How much later than its `NextConsumeTime` (by the server's clock) a machine may still
/// send a handle: the machines count a handle's validity as `NextConsumeTime − Date` from
/// when the answer arrived, and the `Date` is truncated to the second and the answer took
/// time to travel, so they err on the late side by `arrival − Date` (sending rather than
/// dropping when in doubt). The drivers check every sent handle against this bound.
#[derive(Debug, Default)]
struct LeaseSlack(HashMap<String, u64>);

impl LeaseSlack {
    fn note(&mut self, messages: &[Message], arrived_wall_ms: u64, date_ms: u64) {
        for m in messages {
            self.0.insert(
                m.receipt_handle.as_str().to_owned(),
                arrived_wall_ms.saturating_sub(date_ms),
            );
        }
    }

    fn of(&self, handle: &ReceiptHandle) -> u64 {
        self.0.get(handle.as_str()).copied().unwrap_or(0)
    }
}

/// Drives a [`ConsumerMachine`] — a consumer, or the transaction checker on half messages —
/// over a [`Sim`], as a runtime would, and records protocol violations of the machine (see
/// [`violations`](Self::violations)).
#[derive(Debug)]
pub struct ConsumerDriver {
    machine: ConsumerMachine,
    client: ClientId,
    group: GroupId,
    filter: TagFilter,
    polls: HashSet<u64>,
    sent_acks: Vec<SentAck>,
    violations: Vec<String>,
    lease_slack: LeaseSlack,
}

impl ConsumerDriver {
    /// A driver for `machine` acting as `client` of `group` (sent with its polls and acks;
    /// commits and rollbacks go without a group).
    pub fn new(
        client: ClientId,
        group: GroupId,
        filter: TagFilter,
        machine: ConsumerMachine,
    ) -> Self {
        Self {
            machine,
            client,
            group,
            filter,
            polls: HashSet::new(),
            sent_acks: Vec::new(),
            violations: Vec::new(),
            lease_slack: LeaseSlack::default(),
        }
    }

    /// The machine.
    pub fn machine(&self) -> &ConsumerMachine {
        &self.machine
    }

    /// This driver's client id.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Every settlement request sent so far.
    pub fn sent_acks(&self) -> &[SentAck] {
        &self.sent_acks
    }

    /// Rules the machine broke: a settlement of a handle past its `NextConsumeTime` (less
    /// the margin) at sending time, of an unknown handle, of more handles than the
    /// configured settle batch or of none, a poll asking for more than the room left, or
    /// more messages in hand than the bound.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Queues an ack of a message in hand ([`ConsumerMachine::ack`]) now.
    ///
    /// # Errors
    ///
    /// As [`ConsumerMachine::ack`]: the handle is not in hand or already being settled.
    pub fn ack(&mut self, sim: &Sim, handle: &ReceiptHandle) -> Result<(), AckRefused> {
        self.machine.ack(sim.now(), handle)
    }

    /// Queues a settlement ([`ConsumerMachine::settle`]) now.
    ///
    /// # Errors
    ///
    /// As [`ConsumerMachine::settle`].
    pub fn settle(
        &mut self,
        sim: &Sim,
        handle: &ReceiptHandle,
        kind: AckKind,
    ) -> Result<(), AckRefused> {
        self.machine.settle(sim.now(), handle, kind)
    }

    /// Records the checker's verdict now: commit or rollback is a settlement, `Unknown` a
    /// release.
    ///
    /// # Errors
    ///
    /// As [`ConsumerDriver::settle`] or [`ConsumerDriver::release`].
    pub fn decide(
        &mut self,
        sim: &Sim,
        handle: &ReceiptHandle,
        decision: Decision,
    ) -> Result<(), AckRefused> {
        match decision.ack_kind() {
            Some(kind) => self.settle(sim, handle, kind),
            None => self.release(handle),
        }
    }

    /// Gives a message back ([`ConsumerMachine::release`]).
    ///
    /// # Errors
    ///
    /// As [`ConsumerMachine::release`]: the handle is not in hand.
    pub fn release(&mut self, handle: &ReceiptHandle) -> Result<(), AckRefused> {
        self.machine.release(handle)
    }

    /// Sends every due request, then returns every pending event (the drain rule).
    pub fn pump(&mut self, sim: &mut Sim) -> Vec<ConsumerEvent> {
        let max = self.machine.config().max_in_hand();
        let margin = self.machine.config().ack_margin().as_millis() as u64;
        let settle_batch = usize::from(self.machine.config().settle_batch().get());
        while let Some(t) = self.machine.poll_transmit(sim.now()) {
            match t {
                ConsumerTransmit::Poll {
                    id,
                    kind,
                    batch,
                    wait,
                } => {
                    let room = max.saturating_sub(self.machine.in_hand());
                    if usize::from(batch.get()) > room {
                        self.violations.push(format!(
                            "poll of {} with room for {room} at {} ms",
                            batch.get(),
                            sim.elapsed_ms()
                        ));
                    }
                    self.polls.insert(id);
                    let request = Request::Consume {
                        group: self.group.clone(),
                        kind,
                        filter: self.filter.clone(),
                        batch,
                        wait,
                    };
                    sim.send(self.client, id, request);
                }
                ConsumerTransmit::Settle { id, kind, handles } => {
                    if handles.is_empty() || handles.len() > settle_batch {
                        self.violations
                            .push(format!("{kind:?} request with {} handles", handles.len()));
                    }
                    for h in &handles {
                        match sim.delivery(h.as_str()) {
                            Some(d)
                                if d.message.next_consume_time + self.lease_slack.of(h)
                                    < sim.wall_ms() + margin =>
                            {
                                self.violations.push(format!(
                                    "{kind:?} of {h:?} sent at wall {} past NextConsumeTime {} - margin",
                                    sim.wall_ms(),
                                    d.message.next_consume_time
                                ));
                            }
                            Some(_) => {}
                            None => self.violations.push(format!("{kind:?} of unknown {h:?}")),
                        }
                    }
                    self.sent_acks.push(SentAck {
                        at_ms: sim.elapsed_ms(),
                        id,
                        kind,
                        handles: handles.clone(),
                    });
                    let group = (kind == AckKind::Ack).then(|| self.group.clone());
                    let request = Request::Ack {
                        group,
                        kind,
                        handles,
                    };
                    sim.send(self.client, id, request);
                }
            }
        }
        if self.machine.in_hand() > max {
            self.violations.push(format!(
                "{} messages in hand, bound {max}",
                self.machine.in_hand()
            ));
        }
        std::iter::from_fn(|| self.machine.poll_event()).collect()
    }

    /// Feeds an answer to the machine (answers for other clients are ignored).
    pub fn on_response(&mut self, sim: &Sim, response: Response) {
        if response.client != self.client {
            return;
        }
        let (now, wall, id) = (sim.now(), sim.wall_ms(), response.id);
        let is_poll = self.polls.remove(&id);
        match (is_poll, response.result) {
            (true, Ok(Reply::Messages { messages, date_ms })) => {
                self.lease_slack.note(&messages, wall, date_ms);
                let received = Received::new(messages, Some(date_ms));
                self.machine.handle_poll(now, id, Ok(received));
            }
            (true, Err(f)) => self.machine.handle_poll(now, id, Err(f)),
            (false, Ok(Reply::Settled(f))) => self.machine.handle_settle(now, id, Ok(f)),
            (false, Err(f)) => self.machine.handle_settle(now, id, Err(f)),
            (true, Ok(Reply::Settled(_))) => {
                self.violations.push(format!("settle answer to poll {id}"));
                self.machine
                    .handle_poll(now, id, Err(FailureKind::InvalidResponse));
            }
            (false, Ok(Reply::Messages { .. })) => {
                self.violations
                    .push(format!("messages answering settlement {id}"));
                self.machine
                    .handle_settle(now, id, Err(FailureKind::InvalidResponse));
            }
        }
    }

    /// When the machine's timer fires, as virtual ms.
    pub fn timeout_ms(&self, sim: &Sim) -> Option<u64> {
        self.machine.poll_timeout().map(|t| sim.clock().ms_of(t))
    }

    /// Fires the machine's timer if it is due.
    pub fn on_time(&mut self, sim: &Sim) {
        if self.timeout_ms(sim).is_some_and(|t| t <= sim.elapsed_ms()) {
            self.machine.handle_timeout(sim.now());
        }
    }

    /// Shuts the machine down; a poll in flight is abandoned (the simulated connection
    /// dropped) and reported to the machine as [`FailureKind::Cancelled`].
    pub fn shutdown(&mut self, sim: &mut Sim) {
        self.machine.shutdown(sim.now());
        if let Some(id) = self.machine.poll_in_flight() {
            sim.cancel(self.client, id);
            self.polls.remove(&id);
            self.machine
                .handle_poll(sim.now(), id, Err(FailureKind::Cancelled));
        }
    }
}
