//! Simulated-time tests (STYLE §9): the consumer and transaction-checker machines of
//! `mq_proto::machine` driven against the broker's deterministic `BrokerCore` through the
//! fault-injecting network of `mq_tests::sim`, with no sockets and no sleeping: hours of
//! virtual time run in milliseconds.
//!
//! Every check compares what the machines told their user with what the broker really did
//! (the simulation's ledger of deliveries and per-handle ack verdicts).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use mq_broker::core::{CoreConfig, Stats};
use mq_proto::machine::{CheckerConfig, ConsumerConfig, ConsumerEvent, ConsumerMachine, Decision};
use mq_proto::{
    AckKind, ConsumeKind, GroupId, Message, MessageId, ReceiptHandle, Tag, TagFilter, TopicMessage,
    TopicName, TransCheckImmunity, WaitSeconds,
};
use mq_tests::sim::{Agenda, ClientId, ConsumerDriver, DeliveryRecord, Faults, START_WALL_MS, Sim};
use proptest::prelude::*;

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// Real time any single simulated run may take (generous: debug builds on a busy machine).
const REAL_TIME_LIMIT: Duration = Duration::from_secs(20);

/// Proptest cases: `default`, or `SIM_CASES` from the environment for a longer soak.
fn cases(default: u32) -> u32 {
    std::env::var("SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("valid topic")
}

fn group(name: &str) -> GroupId {
    GroupId::new(name).expect("valid group")
}

fn wait(s: u8) -> WaitSeconds {
    WaitSeconds::new(s).expect("valid wait")
}

fn range(rng: &mut fastrand::Rng, (lo, hi): (u64, u64)) -> u64 {
    rng.u64(lo..=hi.max(lo))
}

/// What a consumer machine told its user, per receipt handle.
#[derive(Default, Debug)]
struct Outcomes {
    handed: HashSet<String>,
    acked: HashMap<String, u32>,
    failed: HashSet<String>,
    expired: HashSet<String>,
    gave_up: HashSet<String>,
    released: HashSet<String>,
    receive_errors: u64,
    drained: u32,
}

impl Outcomes {
    /// Records an event; returns the message of a `Message` event. Panics if the machine
    /// hands out the same handle twice.
    fn record(&mut self, event: ConsumerEvent) -> Option<Message> {
        match event {
            ConsumerEvent::Message(m) => {
                let fresh = self.handed.insert(m.receipt_handle.as_str().to_owned());
                assert!(fresh, "handle {:?} handed out twice", m.receipt_handle);
                return Some(m);
            }
            ConsumerEvent::Settled { handles, .. } => {
                for h in handles {
                    *self.acked.entry(h.as_str().to_owned()).or_default() += 1;
                }
            }
            ConsumerEvent::Refused { failure, .. } => {
                self.failed.insert(failure.receipt_handle);
            }
            ConsumerEvent::Expired { handle, .. } => {
                self.expired.insert(handle.as_str().to_owned());
            }
            ConsumerEvent::SettleFailed { handles, .. } => {
                for h in handles {
                    self.gave_up.insert(h.as_str().to_owned());
                }
            }
            ConsumerEvent::PollFailed { .. } => self.receive_errors += 1,
            ConsumerEvent::Poison(p) => panic!("the broker core sends no poison: {p:?}"),
            ConsumerEvent::Drained => self.drained += 1,
        }
        None
    }
}

/// Counts from [`check_consumer_ledger`].
#[derive(Default, Debug)]
struct LedgerSummary {
    deliveries: usize,
    redeliveries: usize,
    causes: BTreeMap<&'static str, usize>,
    /// Handles the machine reported acked that the broker never acked (a resent batch whose
    /// `MessageNotExist` was taken as the effect of an earlier attempt).
    phantom_acks: usize,
    max_consumed_times: u32,
}

/// Broker-side successful acks per message id (kind Ack).
fn broker_acks(sim: &Sim) -> HashMap<MessageId, Vec<(u64, String)>> {
    let mut out: HashMap<MessageId, Vec<(u64, String)>> = HashMap::new();
    for a in sim.acks() {
        if a.kind == AckKind::Ack && a.result.is_ok() {
            let d = sim.delivery(&a.handle).expect("acked handle was delivered");
            out.entry(d.message.message_id.clone())
                .or_default()
                .push((a.at_ms, a.handle.clone()));
        }
    }
    out
}

/// The checks every consumer run shares; panics on a violation.
///
/// * every published message was acked by the broker exactly once, no handle twice;
/// * every delivery whose answer reached the client was handed to the user, exactly once;
/// * redeliveries only after the previous delivery's invisibility ended, with
///   `ConsumedTimes` + 1 and the same first consume time, each explained by a lost answer, a
///   release, an expired, rejected or abandoned ack, or an ambiguous resend;
/// * the machine never reported a broker-accepted ack as rejected, and reported an ack the
///   broker never accepted only after resending it;
/// * the driver saw no protocol violation, the core signalled every change to long polls.
fn check_consumer_ledger(
    sim: &Sim,
    driver: &ConsumerDriver,
    outcomes: &Outcomes,
    published: &HashSet<MessageId>,
    kind: ConsumeKind,
) -> LedgerSummary {
    assert!(
        driver.violations().is_empty(),
        "machine violations: {:#?}",
        driver.violations()
    );
    assert_eq!(sim.missed_wakeups(), 0, "core missed long-poll wake-ups");
    assert_eq!(sim.stuck_wakeups(), 0, "core next_wakeup stuck in the past");

    // Exactly once, per message and per handle.
    let acks = broker_acks(sim);
    for id in published {
        let n = acks.get(id).map_or(0, Vec::len);
        assert_eq!(n, 1, "message {id:?} acked {n} times by the broker");
    }
    assert_eq!(acks.len(), published.len(), "acks of unpublished messages");

    // How often each handle was put in an ack request.
    let mut sent: HashMap<&str, usize> = HashMap::new();
    for a in driver.sent_acks() {
        for h in &a.handles {
            *sent.entry(h.as_str()).or_default() += 1;
        }
    }
    let broker_acked: HashSet<&str> = acks
        .values()
        .flat_map(|v| v.iter().map(|(_, h)| h.as_str()))
        .collect();

    let mut summary = LedgerSummary::default();
    for (h, n) in &outcomes.acked {
        assert_eq!(*n, 1, "machine reported {h} acked {n} times");
        if !broker_acked.contains(h.as_str()) {
            let resends = sent.get(h.as_str()).copied().unwrap_or(0);
            assert!(
                resends >= 2,
                "machine reported {h} acked; the broker never accepted it and it was sent {resends} time(s)"
            );
            summary.phantom_acks += 1;
        }
    }
    for h in &broker_acked {
        assert!(
            !outcomes.failed.contains(*h),
            "the broker accepted {h} but the machine reported the ack as rejected"
        );
    }

    // Deliveries: reached → handed out; redeliveries justified.
    let mut by_message: HashMap<&MessageId, Vec<&DeliveryRecord>> = HashMap::new();
    for d in sim.deliveries().iter().filter(|d| d.kind == kind) {
        let h = d.message.receipt_handle.as_str();
        assert_eq!(
            d.reached_client,
            outcomes.handed.contains(h),
            "delivery {h} reached the client: {}, handed to the user: {}",
            d.reached_client,
            outcomes.handed.contains(h)
        );
        assert!(
            published.contains(&d.message.message_id),
            "unknown message delivered"
        );
        assert!(d.message.body_md5_matches());
        by_message.entry(&d.message.message_id).or_default().push(d);
        summary.deliveries += 1;
        summary.max_consumed_times = summary.max_consumed_times.max(d.message.consumed_times);
    }
    for (id, list) in &by_message {
        let first = list.first().expect("non-empty");
        assert_eq!(first.message.consumed_times, 1, "{id:?} first delivery");
        for pair in list.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            assert!(
                START_WALL_MS + next.at_ms >= prev.message.next_consume_time,
                "{id:?} redelivered at {} before NextConsumeTime {}",
                START_WALL_MS + next.at_ms,
                prev.message.next_consume_time
            );
            assert_eq!(next.message.consumed_times, prev.message.consumed_times + 1);
            assert_eq!(
                next.message.first_consume_time,
                first.message.first_consume_time
            );
            assert_eq!(next.message.publish_time, first.message.publish_time);
            let h = prev.message.receipt_handle.as_str();
            assert!(
                !broker_acked.contains(h),
                "{id:?} redelivered after its ack"
            );
            let cause = if !prev.reached_client {
                "answer lost"
            } else if outcomes.released.contains(h) {
                "released by the user"
            } else if outcomes.expired.contains(h) {
                "ack expired locally"
            } else if outcomes.failed.contains(h) {
                "ack rejected (late)"
            } else if outcomes.gave_up.contains(h) {
                "ack abandoned after retries"
            } else if outcomes.acked.contains_key(h) && sent.get(h).copied().unwrap_or(0) >= 2 {
                "ambiguous resend"
            } else {
                panic!(
                    "unexplained redelivery of {id:?}: previous handle {h} was handed out and never failed"
                )
            };
            *summary.causes.entry(cause).or_default() += 1;
            summary.redeliveries += 1;
        }
    }
    for id in published {
        assert!(by_message.contains_key(id), "{id:?} never delivered");
    }
    summary
}

/// The broker's counters show nothing left: everything acked, nothing stored, nothing
/// dead-lettered.
fn check_clean_stats(stats: &Stats, published: u64, acked: u64) {
    assert_eq!(stats.published, published);
    assert_eq!(stats.acked, acked, "stats: {stats:#?}");
    for t in &stats.topics {
        assert_eq!(t.stored, 0, "stored messages left: {t:#?}");
        for g in &t.groups {
            assert_eq!(
                (g.ready, g.in_flight, g.delayed, g.dead_lettered),
                (0, 0, 0, 0),
                "group state left: {g:#?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1 + 2: the consumer machine against a normal topic.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ConsumerParams {
    seed: u64,
    fault_rate: f64,
    messages: usize,
    publish_window_ms: u64,
    /// Faults stop and the user turns prompt at this time.
    calm_at_ms: u64,
    invisibility_ms: u64,
    max_in_hand: usize,
    wait: u8,
    /// Messages the user processes at once (the rest queue).
    workers: usize,
    release_rate: f64,
    /// Share of messages processed slower than the invisibility time.
    slow_rate: f64,
    /// Share of messages whose processing ends within 3.5 s before their handle expires.
    edge_rate: f64,
    fast_ms: (u64, u64),
    delayed_rate: f64,
    /// Give up (fail) if not drained by then.
    horizon_ms: u64,
}

#[derive(Debug)]
struct ConsumerRun {
    summary: LedgerSummary,
    virtual_ms: u64,
    real: Duration,
    /// `ConsumedTimes` the user saw, per message, in order.
    seen: HashMap<MessageId, Vec<u32>>,
    /// (virtual ms of the delivery, `NextConsumeTime` - wall time) for each message the user
    /// saw.
    invisibility_seen: Vec<u64>,
}

enum Act {
    Publish(usize),
    Finish {
        handle: ReceiptHandle,
        release: bool,
    },
}

fn run_consumer(p: &ConsumerParams) -> ConsumerRun {
    let real = Instant::now();
    let mut rng = fastrand::Rng::with_seed(p.seed);
    let core = CoreConfig {
        invisibility_ms: p.invisibility_ms,
        id_seed: p.seed,
        ..CoreConfig::default()
    };
    let faults = if p.fault_rate > 0.0 {
        Faults::chaos(p.fault_rate)
    } else {
        Faults::calm()
    };
    let mut sim = Sim::new(core, topic("sim_normal"), faults, rng.u64(..));
    let gid = group("GID_sim");
    // Registered before the first publish, so the group gets every message even when its
    // first receives are lost.
    sim.register_group(&gid);
    let config = ConsumerConfig::default()
        .with_max_in_hand(p.max_in_hand)
        .with_wait(wait(p.wait));
    let machine = ConsumerMachine::new(config, rng.u64(..));
    let mut driver = ConsumerDriver::new(ClientId(1), gid, TagFilter::All, machine);

    // The producer's plan: (tag, scheduled delivery offset).
    let mut agenda = Agenda::default();
    let mut plan = Vec::with_capacity(p.messages);
    for i in 0..p.messages {
        let at = rng.u64(0..=p.publish_window_ms);
        let tag = match rng.u8(0..3) {
            0 => None,
            1 => Some(Tag::new("A").expect("tag")),
            _ => Some(Tag::new("B").expect("tag")),
        };
        let delay = (rng.f64() < p.delayed_rate).then(|| rng.u64(1..=20 * MINUTE));
        plan.push((tag, delay));
        agenda.at(at, Act::Publish(i));
    }
    let mut ids: HashMap<MessageId, (Option<Tag>, Option<u64>)> = HashMap::new();

    let mut outcomes = Outcomes::default();
    let mut queue: VecDeque<ReceiptHandle> = VecDeque::new();
    let mut busy = 0usize;
    let mut calm = false;
    let mut shutting_down = false;
    let mut seen: HashMap<MessageId, Vec<u32>> = HashMap::new();
    let mut invisibility_seen = Vec::new();
    let mut acked_ids: HashSet<MessageId> = HashSet::new();
    let mut acks_read = 0usize;
    let mut same_time = 0u32;

    loop {
        let now = sim.elapsed_ms();
        if !calm && now >= p.calm_at_ms {
            calm = true;
            sim.set_faults(Faults::calm());
        }
        while let Some(act) = agenda.pop_due(now) {
            match act {
                Act::Publish(i) => {
                    let (tag, delay) = plan[i].clone();
                    let mut m = TopicMessage::new(format!("message {i}")).expect("body");
                    if let Some(t) = tag.clone() {
                        m = m.with_tag(t);
                    }
                    let start = delay.map(|d| sim.wall_ms() + d);
                    if let Some(s) = start {
                        m = m.with_start_deliver_time(s);
                    }
                    let out = sim.publish(m).expect("publish");
                    ids.insert(out.message_id, (tag, start));
                }
                Act::Finish { handle, release } => {
                    busy -= 1;
                    if release {
                        driver.release(&handle).expect("release a message in hand");
                        outcomes.released.insert(handle.as_str().to_owned());
                    } else {
                        driver.ack(&sim, &handle).expect("ack a message in hand");
                    }
                }
            }
        }
        // Drain the machine; hand messages to free workers.
        loop {
            let events = driver.pump(&mut sim);
            if events.is_empty() {
                break;
            }
            for e in events {
                if let Some(m) = outcomes.record(e) {
                    let (tag, start) = ids.get(&m.message_id).expect("published message");
                    assert_eq!(&m.tag, tag, "tag kept");
                    if let Some(s) = start {
                        assert!(sim.wall_ms() >= *s, "scheduled message delivered early");
                    }
                    seen.entry(m.message_id.clone())
                        .or_default()
                        .push(m.consumed_times);
                    invisibility_seen.push(m.next_consume_time.saturating_sub(sim.wall_ms()));
                    queue.push_back(m.receipt_handle);
                }
            }
        }
        while busy < p.workers {
            let Some(handle) = queue.pop_front() else {
                break;
            };
            busy += 1;
            let r = rng.f64();
            let (delay, release) = if calm {
                (rng.u64(0..=500), false)
            } else if r < p.release_rate {
                (rng.u64(0..=3 * SECOND), true)
            } else if r < p.release_rate + p.slow_rate {
                let d = p.invisibility_ms + rng.u64(0..=p.invisibility_ms * 3 / 5);
                (d, false)
            } else if r < p.release_rate + p.slow_rate + p.edge_rate {
                // Done just before the handle expires: the ack races the expiry.
                (p.invisibility_ms - rng.u64(0..=3_500), false)
            } else {
                (range(&mut rng, p.fast_ms), false)
            };
            agenda.at(now + delay, Act::Finish { handle, release });
        }

        // Broker-side progress.
        for a in &sim.acks()[acks_read..] {
            if a.result.is_ok() {
                let d = sim.delivery(&a.handle).expect("delivered");
                acked_ids.insert(d.message.message_id.clone());
            }
        }
        acks_read = sim.acks().len();
        if outcomes.drained > 0 {
            break;
        }
        if calm && !shutting_down && ids.len() == p.messages && acked_ids.len() == p.messages {
            shutting_down = true;
            driver.shutdown(&mut sim);
            continue;
        }

        let next = [
            sim.next_event_ms(),
            driver.timeout_ms(&sim),
            agenda.next_ms(),
        ]
        .into_iter()
        .flatten()
        .min();
        let next = next.unwrap_or_else(|| panic!("nothing left to happen at {now} ms"));
        assert!(
            next <= p.horizon_ms,
            "not done by {} h: {} of {} acked; {:?}",
            p.horizon_ms / HOUR,
            acked_ids.len(),
            p.messages,
            driver.machine()
        );
        same_time = if next <= now { same_time + 1 } else { 0 };
        assert!(same_time < 10_000, "no progress at {now} ms");
        for r in sim.advance_to(next) {
            driver.on_response(&sim, r);
        }
        driver.on_time(&sim);
        assert!(real.elapsed() < REAL_TIME_LIMIT, "too slow in real time");
    }

    assert_eq!(outcomes.drained, 1, "Drained exactly once");
    let m = driver.machine();
    assert!(m.is_drained());
    assert_eq!(
        (m.in_hand(), m.pending_acks(), m.acks_in_flight()),
        (0, 0, 0)
    );
    let published: HashSet<MessageId> = ids.keys().cloned().collect();
    assert_eq!(published.len(), p.messages);
    let summary = check_consumer_ledger(&sim, &driver, &outcomes, &published, ConsumeKind::Normal);
    check_clean_stats(&sim.core().stats(), p.messages as u64, p.messages as u64);
    ConsumerRun {
        summary,
        virtual_ms: sim.elapsed_ms(),
        real: real.elapsed(),
        seen,
        invisibility_seen,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Test 1: the consumer under randomized failures never loses or double-acks a message.
    #[test]
    fn consumer_under_randomized_failures(
        seed in any::<u64>(),
        fault_rate in prop_oneof![Just(0.0), 0.0f64..0.4],
        messages in 10usize..100,
        window_min in 10u64..60,
        invisibility_ms in prop::sample::select(vec![20_000u64, 60_000, 300_000]),
        max_in_hand in 1usize..40,
        wait_s in prop::sample::select(vec![0u8, 1, 5, 30, 30, 30]),
        workers in 1usize..16,
    ) {
        let window = window_min * MINUTE;
        let params = ConsumerParams {
            seed,
            fault_rate,
            messages,
            publish_window_ms: window,
            calm_at_ms: window + 15 * MINUTE,
            invisibility_ms,
            max_in_hand,
            wait: wait_s,
            workers,
            release_rate: 0.08,
            slow_rate: 0.12,
            edge_rate: 0.05,
            fast_ms: (0, 3 * SECOND),
            delayed_rate: 0.2,
            horizon_ms: window + 8 * HOUR,
        };
        let run = run_consumer(&params);
        prop_assert!(run.summary.deliveries >= messages);
    }
}

/// Test 2: six virtual hours with a slow consumer and the broker's 300 s invisibility: acks of
/// slowly processed messages expire and the messages come back with `ConsumedTimes` 2, 3,
/// ..., all in a fraction of a second of real time.
#[test]
fn six_hours_of_slow_consumption() {
    let params = ConsumerParams {
        seed: 0x5EED_0006,
        fault_rate: 0.0,
        messages: 300,
        publish_window_ms: 5 * HOUR + 30 * MINUTE,
        calm_at_ms: 6 * HOUR,
        invisibility_ms: CoreConfig::default().invisibility_ms,
        max_in_hand: 8,
        wait: 30,
        workers: 4,
        release_rate: 0.0,
        slow_rate: 0.2,
        edge_rate: 0.0,
        fast_ms: (10 * SECOND, 60 * SECOND),
        delayed_rate: 0.0,
        horizon_ms: 10 * HOUR,
    };
    let run = run_consumer(&params);
    eprintln!(
        "6 h run: {:.2} virtual h in {:?} real; {} deliveries, {} redeliveries {:?}, max ConsumedTimes {}",
        run.virtual_ms as f64 / HOUR as f64,
        run.real,
        run.summary.deliveries,
        run.summary.redeliveries,
        run.summary.causes,
        run.summary.max_consumed_times
    );
    assert!(run.virtual_ms >= 6 * HOUR, "ran {} ms", run.virtual_ms);
    assert!(run.real < Duration::from_secs(10), "took {:?}", run.real);
    assert!(run.summary.redeliveries >= 20, "{:?}", run.summary);
    assert!(run.summary.max_consumed_times >= 3, "{:?}", run.summary);
    // Without network faults every delivery reaches the user: ConsumedTimes 1, 2, 3, ...
    for (id, times) in &run.seen {
        let expected: Vec<u32> = (1..=times.len() as u32).collect();
        assert_eq!(times, &expected, "{id:?}");
    }
    // Each delivery hides the message for the broker's 300 s (the network adds ≤ 20 ms).
    for left in &run.invisibility_seen {
        assert!(
            (299_900..=300_000).contains(left),
            "invisible for {left} ms"
        );
    }
    assert_eq!(
        run.summary.causes.keys().copied().collect::<Vec<_>>(),
        vec!["ack expired locally"]
    );
}

// ---------------------------------------------------------------------------------------
// 3: the transaction checker.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Commit,
    Rollback,
    /// Unknown for the first `n` checks, then the decision.
    UnknownThen(u32, bool),
    /// The producer commits with the publish handle at once (possibly lost on the way).
    ProducerCommit,
    /// Never decided: dropped at the horizon.
    Never,
}

impl Plan {
    fn commits(self) -> Option<bool> {
        match self {
            Self::Commit | Self::ProducerCommit | Self::UnknownThen(_, true) => Some(true),
            Self::Rollback | Self::UnknownThen(_, false) => Some(false),
            Self::Never => None,
        }
    }

    fn decision(self, offer: u32) -> Decision {
        match self {
            Self::Commit | Self::ProducerCommit => Decision::Commit,
            Self::Rollback => Decision::Rollback,
            Self::UnknownThen(n, commit) if offer > n => {
                if commit {
                    Decision::Commit
                } else {
                    Decision::Rollback
                }
            }
            Self::UnknownThen(..) | Self::Never => Decision::Unknown,
        }
    }
}

enum TxAct {
    Publish(usize),
    Decide(ReceiptHandle, Decision),
    Ack(ReceiptHandle),
}

/// Test 3: half messages with random decisions under randomized faults: committed ones reach
/// the consumer group exactly once, rolled-back ones never, undecided ones are re-offered
/// every check interval and dropped after the real 24 h horizon.
#[test]
fn transaction_checker_against_the_core() {
    // The default checker (3 s polls, 64 in hand) over the broker's real 24 h horizon, and
    // one with 30 s polls and room for only 4 undecided checks over a 4 h horizon.
    let day = CoreConfig::default().half_check_horizon_ms;
    assert_eq!(day, 24 * HOUR);
    run_checker(1, CheckerConfig::default(), day);
    let small = CheckerConfig::default()
        .with_wait(wait(30))
        .with_max_in_hand(4);
    run_checker(2, small, 4 * HOUR);
}

fn run_checker(seed: u64, config: CheckerConfig, horizon: u64) {
    let real = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let core = CoreConfig {
        id_seed: seed,
        half_check_horizon_ms: horizon,
        ..CoreConfig::default()
    };
    let interval = core.half_check_interval_ms;
    let poll_ms = u64::from(config.wait().get()) * SECOND;
    let chaos_until = 2 * HOUR;
    let mut sim = Sim::new(core, topic("sim_tx"), Faults::chaos(0.25), rng.u64(..));
    let consumers = group("GID_tx_consumers");
    sim.register_group(&consumers);
    let consumer = ConsumerMachine::new(ConsumerConfig::default(), rng.u64(..));
    let mut consumer = ConsumerDriver::new(ClientId(1), consumers, TagFilter::All, consumer);
    let checker = ConsumerMachine::new(config.into(), rng.u64(..));
    let mut checker = ConsumerDriver::new(
        ClientId(2),
        group("GID_tx_checker"),
        TagFilter::All,
        checker,
    );
    let producer = ClientId(3);

    // 33 decided messages of every kind plus 3 never decided.
    let mut plans = Vec::new();
    for i in 0..33 {
        plans.push(match i % 6 {
            0 => Plan::Commit,
            1 => Plan::Rollback,
            2 => Plan::UnknownThen(rng.u32(1..=4), true),
            3 => Plan::UnknownThen(rng.u32(1..=4), false),
            4 => Plan::ProducerCommit,
            _ => Plan::UnknownThen(rng.u32(1..=2), rng.bool()),
        });
    }
    // The undecided ones are one abandoned burst: published together with the same
    // immunity, they stay due together and are offered in one poll every interval, which
    // keeps the simulated day cheap.
    plans.extend([Plan::Never; 3]);
    let mut agenda = Agenda::default();
    let burst_at = rng.u64(0..=40 * MINUTE);
    for (i, plan) in plans.iter().enumerate() {
        let at = if *plan == Plan::Never {
            burst_at
        } else {
            rng.u64(0..=40 * MINUTE)
        };
        agenda.at(at, TxAct::Publish(i));
    }

    let mut plan_of: HashMap<MessageId, (Plan, u64)> = HashMap::new();
    let mut publish_handles: HashMap<String, MessageId> = HashMap::new();
    let mut offers: HashMap<MessageId, u32> = HashMap::new();
    let mut offered_handles: HashSet<String> = HashSet::new();
    let mut consumer_outcomes = Outcomes::default();
    let mut checker_decided: HashMap<String, AckKind> = HashMap::new();
    let mut poll_errors = 0u64;
    let mut checker_drained = false;
    let mut calm = false;
    let mut shutting_down = false;
    let mut next_producer_id = 1u64;
    let mut steps = 0u64;
    let mut same_time = 0u32;

    let end_at = 40 * MINUTE + horizon + 30 * MINUTE;
    loop {
        let now = sim.elapsed_ms();
        if !calm && now >= chaos_until {
            calm = true;
            sim.set_faults(Faults::calm());
        }
        while let Some(act) = agenda.pop_due(now) {
            match act {
                TxAct::Publish(i) => {
                    let seconds = if plans[i] == Plan::Never {
                        60
                    } else {
                        rng.u32(10..=120)
                    };
                    let immunity = TransCheckImmunity::new(seconds).expect("immunity");
                    let m = TopicMessage::new(format!("tx {i}"))
                        .expect("body")
                        .with_trans_check_immunity(immunity);
                    let out = sim.publish(m).expect("publish half");
                    let handle = out.receipt_handle.expect("publish handle");
                    publish_handles.insert(handle.as_str().to_owned(), out.message_id.clone());
                    plan_of.insert(out.message_id, (plans[i], now));
                    if plans[i] == Plan::ProducerCommit {
                        let request = mq_tests::sim::Request::Ack {
                            group: None,
                            kind: AckKind::Commit,
                            handles: vec![handle],
                        };
                        sim.send(producer, next_producer_id, request);
                        next_producer_id += 1;
                    }
                }
                TxAct::Decide(handle, decision) => {
                    checker
                        .decide(&sim, &handle, decision)
                        .expect("decide an offered handle");
                }
                TxAct::Ack(handle) => consumer.ack(&sim, &handle).expect("ack in hand"),
            }
        }
        loop {
            let mut any = false;
            for e in checker.pump(&mut sim) {
                any = true;
                match e {
                    ConsumerEvent::Message(m) => {
                        let fresh = offered_handles.insert(m.receipt_handle.as_str().to_owned());
                        assert!(fresh, "{:?} offered twice", m.receipt_handle);
                        let (plan, _) = plan_of.get(&m.message_id).expect("known half message");
                        let n = offers.entry(m.message_id.clone()).or_default();
                        *n += 1;
                        let decision = plan.decision(*n);
                        let delay = if !calm && rng.f64() < 0.1 {
                            rng.u64(interval..=interval + 5 * SECOND)
                        } else {
                            rng.u64(0..=2 * SECOND)
                        };
                        agenda.at(now + delay, TxAct::Decide(m.receipt_handle, decision));
                    }
                    ConsumerEvent::Settled { handles, kind } => {
                        for handle in handles {
                            let old = checker_decided.insert(handle.as_str().to_owned(), kind);
                            assert!(old.is_none(), "{handle:?} decided twice");
                        }
                    }
                    ConsumerEvent::PollFailed { .. } => poll_errors += 1,
                    ConsumerEvent::Poison(p) => panic!("the broker core sends no poison: {p:?}"),
                    ConsumerEvent::Drained => checker_drained = true,
                    ConsumerEvent::Refused { .. }
                    | ConsumerEvent::Expired { .. }
                    | ConsumerEvent::SettleFailed { .. } => {}
                }
            }
            for e in consumer.pump(&mut sim) {
                any = true;
                if let Some(m) = consumer_outcomes.record(e) {
                    agenda.at(now + rng.u64(0..=SECOND), TxAct::Ack(m.receipt_handle));
                }
            }
            if !any {
                break;
            }
        }
        if checker_drained && consumer_outcomes.drained > 0 {
            break;
        }
        if !shutting_down && now >= end_at {
            shutting_down = true;
            checker.shutdown(&mut sim);
            consumer.shutdown(&mut sim);
            continue;
        }
        let next = [
            sim.next_event_ms(),
            consumer.timeout_ms(&sim),
            checker.timeout_ms(&sim),
            agenda.next_ms(),
            (!shutting_down).then_some(end_at),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| panic!("nothing left to happen at {now} ms"));
        assert!(next <= end_at + HOUR, "not drained an hour after the end");
        steps += 1;
        same_time = if next <= now { same_time + 1 } else { 0 };
        assert!(same_time < 10_000, "no progress at {now} ms");
        for r in sim.advance_to(next) {
            consumer.on_response(&sim, r.clone());
            checker.on_response(&sim, r);
        }
        consumer.on_time(&sim);
        checker.on_time(&sim);
        assert!(real.elapsed() < REAL_TIME_LIMIT, "too slow in real time");
    }

    // ----- checks -----
    assert!(
        checker.violations().is_empty(),
        "{:#?}",
        checker.violations()
    );
    assert_eq!(checker.machine().pending_acks(), 0);

    // Who the broker says resolved what.
    let mut resolved: HashMap<MessageId, Vec<AckKind>> = HashMap::new();
    for a in sim.acks() {
        if a.kind != AckKind::Ack && a.result.is_ok() {
            let id = publish_handles.get(&a.handle).cloned().unwrap_or_else(|| {
                let d = sim.delivery(&a.handle).expect("a half handle");
                assert_eq!(d.kind, ConsumeKind::Half);
                d.message.message_id.clone()
            });
            resolved.entry(id).or_default().push(a.kind);
        }
    }
    // Half pops per message, broker side.
    let mut pops: HashMap<MessageId, Vec<&DeliveryRecord>> = HashMap::new();
    for d in sim.deliveries() {
        if d.kind == ConsumeKind::Half {
            assert_eq!(
                d.reached_client,
                offered_handles.contains(d.message.receipt_handle.as_str()),
                "a half delivery reached the checker iff its user was offered it"
            );
            pops.entry(d.message.message_id.clone())
                .or_default()
                .push(d);
        }
    }
    let committed: HashSet<MessageId> = plan_of
        .iter()
        .filter(|(_, (p, _))| p.commits() == Some(true))
        .map(|(id, _)| id.clone())
        .collect();
    let mut counts = (0u64, 0u64, 0u64);
    let mut unknown_gaps = Vec::new();
    for (id, (plan, published_at)) in &plan_of {
        let got = resolved.get(id).cloned().unwrap_or_default();
        match plan.commits() {
            Some(true) => {
                assert_eq!(got, vec![AckKind::Commit], "{id:?} ({plan:?})");
                counts.0 += 1;
            }
            Some(false) => {
                assert_eq!(got, vec![AckKind::Rollback], "{id:?} ({plan:?})");
                counts.1 += 1;
            }
            None => {
                assert!(got.is_empty(), "{id:?} never decided but resolved {got:?}");
                counts.2 += 1;
            }
        }
        let list = pops.get(id).map(Vec::as_slice).unwrap_or_default();
        for (k, d) in list.iter().enumerate() {
            assert_eq!(d.message.consumed_times, k as u32 + 1, "pop attempt count");
            assert!(
                d.at_ms < published_at + horizon,
                "{id:?} offered after the horizon"
            );
        }
        // Re-offered about every check interval: never sooner; within a second once the
        // network is calm; under chaos within two lost polls (each noticed only at the
        // client's timeout) and some backoff.
        for pair in list.windows(2) {
            let gap = pair[1].at_ms - pair[0].at_ms;
            assert!(gap >= interval, "{id:?} re-offered after {gap} ms");
            let slack = if pair[0].at_ms >= chaos_until {
                SECOND
            } else {
                2 * (poll_ms + Faults::chaos(0.0).request_timeout_ms) + 20 * SECOND
            };
            assert!(
                gap <= interval + slack,
                "{id:?} re-offered only after {gap} ms"
            );
            if pair[0].at_ms >= chaos_until {
                unknown_gaps.push(gap);
            }
        }
        if *plan == Plan::Never {
            // Offered every interval from the first check to the horizon: never more often,
            // hardly less once the network is calm (chaos may cost up to half its offers).
            let first_check = published_at + 60 * SECOND;
            let end = published_at + horizon;
            let most = (end - first_check) / interval + 1;
            let calm_from = first_check.max(chaos_until);
            let least = end.saturating_sub(calm_from) / interval * 95 / 100
                + (calm_from - first_check) / interval / 2;
            let n = list.len() as u64;
            assert!(
                (least..=most).contains(&n),
                "{id:?} offered {n} times, expected {least}..={most}"
            );
        }
    }
    assert!(!unknown_gaps.is_empty());

    // Committed messages reach the consumer group exactly once; the rest never.
    let consumed = check_consumer_ledger(
        &sim,
        &consumer,
        &consumer_outcomes,
        &committed,
        ConsumeKind::Normal,
    );
    assert!(consumed.deliveries >= committed.len());

    // The checker's "Decided" agrees with the broker (or was an ambiguous resend).
    let mut sent: HashMap<&str, usize> = HashMap::new();
    for h in checker.sent_acks().iter().flat_map(|a| &a.handles) {
        *sent.entry(h.as_str()).or_default() += 1;
    }
    let broker_resolved: HashSet<&str> = sim
        .acks()
        .iter()
        .filter(|a| a.kind != AckKind::Ack && a.result.is_ok())
        .map(|a| a.handle.as_str())
        .collect();
    for (h, kind) in &checker_decided {
        let d = sim.delivery(h).expect("decided handle was offered");
        let (plan, _) = plan_of[&d.message.message_id];
        assert_eq!(plan.commits(), Some(*kind == AckKind::Commit));
        if !broker_resolved.contains(h.as_str()) {
            assert!(
                sent.get(h.as_str()).copied().unwrap_or(0) >= 2,
                "checker reported {h} decided; the broker never resolved it"
            );
        }
    }

    let stats = sim.core().stats();
    let t = &stats.topics[0];
    assert_eq!(t.published, plans.len() as u64);
    assert_eq!(
        (
            t.half_committed,
            t.half_rolled_back,
            t.half_dropped_unresolved,
            t.half
        ),
        (counts.0, counts.1, counts.2, 0),
        "{t:#?}"
    );
    assert_eq!(counts.2, 3);
    check_clean_stats(&stats, plans.len() as u64, counts.0);
    eprintln!(
        "checker seed {seed}: {:.1} virtual h in {:?} ({steps} steps); {} pops, {} poll errors, re-offer gaps {}..={} ms",
        sim.elapsed_ms() as f64 / HOUR as f64,
        real.elapsed(),
        pops.values().map(Vec::len).sum::<usize>(),
        poll_errors,
        unknown_gaps.iter().min().copied().unwrap_or(0),
        unknown_gaps.iter().max().copied().unwrap_or(0),
    );
}

// ---------------------------------------------------------------------------------------
// 4: orderly consumption.
// ---------------------------------------------------------------------------------------

enum OrderAct {
    Publish(usize),
    Finish {
        key: usize,
        handle: ReceiptHandle,
        fail: bool,
    },
}

#[derive(Clone, Debug)]
struct OrderParams {
    seed: u64,
    fault_rate: f64,
    messages: usize,
    keys: usize,
    max_in_hand: usize,
    wait: u8,
}

fn run_orderly(p: &OrderParams) -> usize {
    let real = Instant::now();
    let mut rng = fastrand::Rng::with_seed(p.seed);
    let core = CoreConfig {
        id_seed: p.seed,
        ..CoreConfig::default()
    };
    let order_invisibility = core.order_invisibility_ms;
    let faults = if p.fault_rate > 0.0 {
        Faults::chaos(p.fault_rate)
    } else {
        Faults::calm()
    };
    let mut sim = Sim::new(core, topic("sim_orderly"), faults, rng.u64(..));
    let gid = group("GID_orderly");
    sim.register_group(&gid);
    let config = ConsumerConfig::orderly()
        .with_max_in_hand(p.max_in_hand)
        .with_wait(wait(p.wait));
    let machine = ConsumerMachine::new(config, rng.u64(..));
    let mut driver = ConsumerDriver::new(ClientId(1), gid, TagFilter::All, machine);

    let window = 30 * MINUTE;
    let calm_at = window + 20 * MINUTE;
    let mut agenda = Agenda::default();
    // Publish times are drawn then sorted, so message i is the i-th published.
    let mut times: Vec<u64> = (0..p.messages).map(|_| rng.u64(0..=window)).collect();
    times.sort_unstable();
    for (i, t) in times.into_iter().enumerate() {
        agenda.at(t, OrderAct::Publish(i));
    }
    // message id → (key, index in publish order)
    let mut meta: HashMap<MessageId, (usize, usize)> = HashMap::new();
    let mut outcomes = Outcomes::default();
    let mut queues: Vec<VecDeque<ReceiptHandle>> = vec![VecDeque::new(); p.keys];
    let mut busy = vec![false; p.keys];
    // Per key, the publish indices in the order the user received them / processed them.
    let mut received: Vec<Vec<usize>> = vec![Vec::new(); p.keys];
    let mut processed: Vec<(u64, usize, usize)> = Vec::new(); // (ms, key, index)
    let mut calm = false;
    let mut shutting_down = false;
    let mut acked_ids: HashSet<MessageId> = HashSet::new();
    let mut acks_read = 0usize;
    let mut same_time = 0u32;

    loop {
        let now = sim.elapsed_ms();
        if !calm && now >= calm_at {
            calm = true;
            sim.set_faults(Faults::calm());
        }
        while let Some(act) = agenda.pop_due(now) {
            match act {
                OrderAct::Publish(i) => {
                    let key = rng.usize(0..p.keys);
                    let mut m = TopicMessage::new(format!("order {i}"))
                        .expect("body")
                        .with_sharding_key(format!("key-{key}"))
                        .expect("sharding key");
                    if rng.f64() < 0.05 {
                        m = m.with_start_deliver_time(sim.wall_ms() + rng.u64(1..=2 * MINUTE));
                    }
                    let out = sim.publish(m).expect("publish");
                    meta.insert(out.message_id, (key, i));
                }
                OrderAct::Finish { key, handle, fail } => {
                    busy[key] = false;
                    let id = sim.delivery(handle.as_str()).expect("delivered");
                    let (_, index) = meta[&id.message.message_id];
                    if fail {
                        // Processing failed: give this message back, and every later one of
                        // the key already received, so they come again in order.
                        driver.release(&handle).expect("release in hand");
                        outcomes.released.insert(handle.as_str().to_owned());
                        for h in queues[key].drain(..) {
                            driver.release(&h).expect("release queued");
                            outcomes.released.insert(h.as_str().to_owned());
                        }
                    } else {
                        processed.push((now, key, index));
                        driver.ack(&sim, &handle).expect("ack in hand");
                    }
                }
            }
        }
        loop {
            let events = driver.pump(&mut sim);
            if events.is_empty() {
                break;
            }
            for e in events {
                if let Some(m) = outcomes.record(e) {
                    let (key, index) = meta[&m.message_id];
                    assert_eq!(m.sharding_key(), Some(format!("key-{key}").as_str()));
                    received[key].push(index);
                    queues[key].push_back(m.receipt_handle);
                }
            }
        }
        for key in 0..p.keys {
            if busy[key] {
                continue;
            }
            let Some(handle) = queues[key].pop_front() else {
                continue;
            };
            busy[key] = true;
            let r = rng.f64();
            let (delay, fail) = if calm {
                (rng.u64(0..=500), false)
            } else if r < 0.05 {
                (rng.u64(0..=2 * SECOND), true)
            } else if r < 0.12 {
                (order_invisibility + rng.u64(0..=40 * SECOND), false)
            } else if r < 0.16 {
                (order_invisibility - rng.u64(0..=3_500), false)
            } else {
                (rng.u64(0..=3 * SECOND), false)
            };
            agenda.at(now + delay, OrderAct::Finish { key, handle, fail });
        }

        for a in &sim.acks()[acks_read..] {
            if a.result.is_ok() {
                let d = sim.delivery(&a.handle).expect("delivered");
                acked_ids.insert(d.message.message_id.clone());
            }
        }
        acks_read = sim.acks().len();
        if outcomes.drained > 0 {
            break;
        }
        if calm && !shutting_down && meta.len() == p.messages && acked_ids.len() == p.messages {
            shutting_down = true;
            driver.shutdown(&mut sim);
            continue;
        }
        let next = [
            sim.next_event_ms(),
            driver.timeout_ms(&sim),
            agenda.next_ms(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| panic!("nothing left to happen at {now} ms"));
        assert!(
            next <= calm_at + 6 * HOUR,
            "not done: {} of {} acked",
            acked_ids.len(),
            p.messages
        );
        same_time = if next <= now { same_time + 1 } else { 0 };
        assert!(same_time < 10_000, "no progress at {now} ms");
        for r in sim.advance_to(next) {
            driver.on_response(&sim, r);
        }
        driver.on_time(&sim);
        assert!(real.elapsed() < REAL_TIME_LIMIT, "too slow in real time");
    }

    let published: HashSet<MessageId> = meta.keys().cloned().collect();
    check_consumer_ledger(&sim, &driver, &outcomes, &published, ConsumeKind::Orderly);
    check_clean_stats(&sim.core().stats(), p.messages as u64, p.messages as u64);

    // (a) Broker side: a message goes out only when every earlier message of its key has
    // been acked, or goes out earlier in the same answer.
    let acks = broker_acks(&sim);
    let mut first_ack: HashMap<(usize, usize), Option<u64>> = HashMap::new();
    for (id, &v) in &meta {
        first_ack.insert(v, acks.get(id).and_then(|l| l.first().map(|(t, _)| *t)));
    }
    let deliveries = sim.deliveries();
    let mut i = 0;
    while i < deliveries.len() {
        let head = &deliveries[i];
        let mut j = i;
        while j < deliveries.len()
            && deliveries[j].request == head.request
            && deliveries[j].at_ms == head.at_ms
        {
            j += 1;
        }
        let answer = &deliveries[i..j];
        for (pos, d) in answer.iter().enumerate() {
            let (key, index) = meta[&d.message.message_id];
            let earlier_here: HashSet<usize> = answer[..pos]
                .iter()
                .map(|e| meta[&e.message.message_id])
                .filter(|&(k, _)| k == key)
                .map(|(_, ix)| ix)
                .collect();
            for before in meta.values().filter(|&&(k, ix)| k == key && ix < index) {
                let acked = first_ack[before].is_some_and(|t| t <= d.at_ms);
                assert!(
                    acked || earlier_here.contains(&before.1),
                    "key {key}: message #{index} delivered at {} ms while #{} was neither acked nor ahead of it in the answer",
                    d.at_ms,
                    before.1
                );
            }
        }
        i = j;
    }

    // (b) The user receives each key's messages in the order the broker sent them.
    for (key, got) in received.iter().enumerate() {
        let sent: Vec<usize> = deliveries
            .iter()
            .filter(|d| d.reached_client)
            .map(|d| meta[&d.message.message_id])
            .filter(|&(k, _)| k == key)
            .map(|(_, ix)| ix)
            .collect();
        assert_eq!(got, &sent, "key {key}: user order differs");
    }

    // (c) The user's processing order per key: a message processed after a later one of
    // its key was already acked at the broker is only possible when the network broke the
    // order (an ack of it that was sent but never took effect).
    let mut sent_handles: HashMap<MessageId, usize> = HashMap::new();
    for a in driver.sent_acks() {
        for h in &a.handles {
            let d = sim.delivery(h.as_str()).expect("delivered");
            if !acks
                .get(&d.message.message_id)
                .is_some_and(|v| v.iter().any(|(_, ah)| ah == h.as_str()))
            {
                *sent_handles
                    .entry(d.message.message_id.clone())
                    .or_default() += 1;
            }
        }
    }
    let mut out_of_order = 0;
    for &(t, key, index) in &processed {
        let later_acked = meta
            .values()
            .filter(|&&(k, ix)| k == key && ix > index)
            .any(|v| first_ack[v].is_some_and(|at| at < t));
        if later_acked {
            let id = meta
                .iter()
                .find(|(_, v)| **v == (key, index))
                .map(|(id, _)| id)
                .expect("id");
            assert!(
                sent_handles.get(id).copied().unwrap_or(0) > 0,
                "key {key}: #{index} processed at {t} ms after a later message was acked, with no lost ack to explain it"
            );
            out_of_order += 1;
        }
    }
    if p.fault_rate == 0.0 {
        assert_eq!(out_of_order, 0);
    }
    out_of_order
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(16),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Test 4: orderly consumption: per-key FIFO holds across failures and redeliveries.
    #[test]
    fn orderly_fifo_across_failures(
        seed in any::<u64>(),
        fault_rate in prop_oneof![Just(0.0), 0.0f64..0.3],
        messages in 20usize..100,
        keys in 1usize..6,
        max_in_hand in 1usize..32,
        wait_s in prop::sample::select(vec![0u8, 3, 30]),
    ) {
        run_orderly(&OrderParams { seed, fault_rate, messages, keys, max_in_hand, wait: wait_s });
    }
}
