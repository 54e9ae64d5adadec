//! The durable broker (`mq_broker::durable`): replay determinism (property test), recovery
//! of ready, in-flight, delayed and half messages across restarts (in virtual time on a
//! real data directory, and through the HTTP server), retention reaching the disk, storage
//! failures, and a locked data directory.

mod support;

use mq_broker::core::{Call, Delivery, Outcome};
use mq_broker::durable::{DurableOptions, JournaledCore, LogEngine, RecordVisitor, StorageError};
use mq_broker::{
    Broker, BrokerCore, CoreConfig, CoreError, Credential, PublishOutcome, ServerConfig,
};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, GroupId, HandleFailure, InstanceId, Message, Tag, TagFilter,
    TopicMessage, TopicName, TransCheckImmunity,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Client, TempDir};

// ---------------------------------------------------------------------------------------------
// An engine in shared memory, so a test can look at what the journal wrote

#[derive(Default)]
struct MemState {
    records: BTreeMap<u64, Vec<u8>>,
    snapshot: Option<(u64, Vec<u8>)>,
    fail_appends: bool,
    snapshots_installed: usize,
}

#[derive(Clone, Default)]
struct MemEngine(Arc<Mutex<MemState>>);

impl MemEngine {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.0.lock().unwrap()
    }
}

impl LogEngine for MemEngine {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let mut s = self.state();
        if s.fail_appends {
            return Err(StorageError::Engine("disk on fire".into()));
        }
        for (i, r) in records {
            s.records.insert(*i, r.clone());
        }
        Ok(())
    }

    fn install_snapshot(&mut self, upto: u64, snapshot: &[u8]) -> Result<(), StorageError> {
        let mut s = self.state();
        s.snapshot = Some((upto, snapshot.to_vec()));
        s.records.retain(|&i, _| i > upto);
        s.snapshots_installed += 1;
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        Ok(self.state().snapshot.clone())
    }

    fn read_records(&self, after: u64, visit: &mut RecordVisitor<'_>) -> Result<(), StorageError> {
        let records: Vec<(u64, Vec<u8>)> = self
            .state()
            .records
            .range(after.saturating_add(1)..)
            .map(|(i, r)| (*i, r.clone()))
            .collect();
        for (i, r) in records {
            visit(i, &r)?;
        }
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Replay determinism

/// Short times so that every timer of the core fires within a test sequence.
fn small_config() -> CoreConfig {
    CoreConfig {
        invisibility_ms: 2_000,
        order_invisibility_ms: 1_500,
        half_check_interval_ms: 1_000,
        half_check_horizon_ms: 30_000,
        max_deliveries: 3,
        retention_ms: 40_000,
        consumed_retention_ms: 5_000,
        consumed_retention_bytes: 256,
        max_schedule_ahead_ms: 10_000,
        auto_create_topics: true,
        id_seed: 77,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Rewind(u64),
    Publish {
        topic: usize,
        tag: Option<usize>,
        delay: Option<u64>,
        half: bool,
        shard: Option<usize>,
    },
    PublishTooFarAhead(usize),
    Consume {
        topic: usize,
        group: usize,
        kind: u8,
        filter: usize,
        batch: u8,
    },
    Ack {
        pick: usize,
        count: usize,
        group: usize,
    },
    Resolve {
        pick: usize,
        commit: bool,
    },
    Garbage {
        topic: usize,
        group: usize,
    },
    Maintain,
    Declare(usize),
    /// An admin call: create a group with its own settings (0), delete it (1), reset its
    /// offset `back` ms into the past (2), resend (3) or delete (4) its dead letters,
    /// create a typed topic (5), delete a topic (6), commit (7) or roll back (8) a half
    /// message by its id (the `back`-th one published, or an unknown id), reset all state
    /// (9: the core's time goes back to the driver's, which may be earlier), record a test
    /// clock's advance of `back` ms (10).
    Admin {
        call: u8,
        topic: usize,
        group: usize,
        back: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..2_500).prop_map(Op::Advance),
        1 => (2_500u64..25_000).prop_map(Op::Advance),
        1 => (0u64..3_000).prop_map(Op::Rewind),
        6 => (
            0usize..3,
            prop::option::of(0usize..3),
            prop::option::weighted(0.2, 0u64..6_000),
            prop::bool::weighted(0.2),
            prop::option::weighted(0.3, 0usize..3),
        )
            .prop_map(|(topic, tag, delay, half, shard)| Op::Publish { topic, tag, delay, half, shard }),
        1 => (0usize..3).prop_map(Op::PublishTooFarAhead),
        6 => (0usize..3, 0usize..2, 0u8..3, 0usize..4, 1u8..5)
            .prop_map(|(topic, group, kind, filter, batch)| Op::Consume { topic, group, kind, filter, batch }),
        4 => (any::<usize>(), 0usize..4, 0usize..2).prop_map(|(pick, count, group)| Op::Ack { pick, count, group }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, commit)| Op::Resolve { pick, commit }),
        1 => (0usize..3, 0usize..2).prop_map(|(topic, group)| Op::Garbage { topic, group }),
        2 => Just(Op::Maintain),
        1 => (0usize..4).prop_map(Op::Declare),
        2 => (0u8..11, 0usize..3, 0usize..2, 0u64..10_000)
            .prop_map(|(call, topic, group, back)| Op::Admin { call, topic, group, back }),
    ]
}

/// The positional calls both kinds of core share, as [`Call`]s through `apply`.
trait Target {
    fn apply_call(&mut self, now: u64, call: Call) -> Result<Outcome, CoreError>;

    fn publish(
        &mut self,
        now: u64,
        i: Option<&InstanceId>,
        t: &TopicName,
        m: TopicMessage,
    ) -> Result<PublishOutcome, CoreError> {
        let call = Call::Publish {
            instance: i.cloned(),
            topic: t.clone(),
            message: m,
            producer: None,
        };
        self.apply_call(now, call)
            .map(|o| o.into_published().expect("a publish outcome"))
    }
    #[allow(clippy::too_many_arguments)]
    fn consume(
        &mut self,
        now: u64,
        i: Option<&InstanceId>,
        t: &TopicName,
        g: &GroupId,
        k: ConsumeKind,
        f: &TagFilter,
        b: BatchSize,
    ) -> Result<Vec<Message>, CoreError> {
        let call = Call::Consume {
            instance: i.cloned(),
            topic: t.clone(),
            group: g.clone(),
            kind: k,
            filter: f.clone(),
            batch: b,
            wait: Default::default(),
        };
        self.apply_call(now, call)
            .map(|o| o.into_delivered().expect("a consume outcome"))
            .map(|found| found.into_iter().map(Delivery::into_message).collect())
    }
    fn ack(
        &mut self,
        now: u64,
        i: Option<&InstanceId>,
        t: &TopicName,
        g: Option<&GroupId>,
        k: AckKind,
        h: &[String],
    ) -> Result<Vec<HandleFailure>, CoreError> {
        let call = Call::Ack {
            instance: i.cloned(),
            topic: t.clone(),
            group: g.cloned(),
            kind: k,
            handles: h.to_vec(),
        };
        self.apply_call(now, call)
            .map(|o| o.into_settled().expect("an ack outcome"))
    }
    fn maintain(&mut self, now: u64) {
        self.apply_call(now, Call::Maintain).expect("housekeeping");
    }
    fn record_clock_advance(&mut self, now: u64, advance_ms: i64);
    fn declare(&mut self, now: u64, i: Option<&InstanceId>, t: &TopicName) {
        let call = Call::DeclareTopic {
            instance: i.cloned(),
            topic: t.clone(),
        };
        self.apply_call(now, call).expect("a declaration");
    }
}

impl Target for BrokerCore {
    fn apply_call(&mut self, now: u64, call: Call) -> Result<Outcome, CoreError> {
        self.apply(now, call)
    }
    fn record_clock_advance(&mut self, now: u64, advance_ms: i64) {
        BrokerCore::record_clock_advance(self, now, advance_ms);
    }
}

impl Target for JournaledCore {
    fn apply_call(&mut self, now: u64, call: Call) -> Result<Outcome, CoreError> {
        self.apply(now, call)
    }
    fn record_clock_advance(&mut self, now: u64, advance_ms: i64) {
        JournaledCore::record_clock_advance(self, now, advance_ms).expect("journaled");
    }
}

/// Drives a target with [`Op`]s, remembering the handles it was given so that acks and
/// commits can use real (and stale) ones. The transcript lists every answer.
#[derive(Clone)]
struct Driver {
    now: u64,
    instance: InstanceId,
    delivered: Vec<(usize, usize, String)>,
    halves: Vec<(usize, String)>,
    transcript: Vec<String>,
}

impl Driver {
    fn new() -> Self {
        Self {
            now: 1_000_000,
            instance: InstanceId::new("MQ_INST_durable").unwrap(),
            delivered: Vec::new(),
            halves: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn topic(&self, i: usize) -> (Option<&InstanceId>, TopicName) {
        let instance = (i == 2).then_some(&self.instance);
        (instance, TopicName::new(format!("T{}", i % 2)).unwrap())
    }

    fn step(&mut self, target: &mut dyn Target, op: &Op) {
        let groups = [
            GroupId::new("GID_a").unwrap(),
            GroupId::new("GID_b").unwrap(),
        ];
        let filters = ["*", "t0", "t1||t2", "t2"];
        match op {
            Op::Advance(ms) => self.now += ms,
            Op::Rewind(ms) => self.now = self.now.saturating_sub(*ms),
            Op::Publish {
                topic,
                tag,
                delay,
                half,
                shard,
            } => {
                let mut m = TopicMessage::new(format!("m{}", self.transcript.len())).unwrap();
                if let Some(t) = tag {
                    m = m.with_tag(Tag::new(format!("t{t}")).unwrap());
                }
                if let Some(d) = delay {
                    m = m.with_start_deliver_time(self.now + d);
                }
                if *half {
                    m = m.with_trans_check_immunity(TransCheckImmunity::new(10).unwrap());
                }
                if let Some(s) = shard {
                    m = m.with_sharding_key(format!("k{s}")).unwrap();
                }
                let (i, t) = self.topic(*topic);
                let i = i.cloned();
                let out = format!("{:?}", target.publish(self.now, i.as_ref(), &t, m));
                if let Some(start) = out.find("receipt_handle: Some(ReceiptHandle(\"") {
                    let rest = &out[start + 36..];
                    if let Some(end) = rest.find('"') {
                        self.halves.push((*topic, rest[..end].to_owned()));
                    }
                }
                self.transcript.push(out);
            }
            Op::PublishTooFarAhead(topic) => {
                let m = TopicMessage::new("late")
                    .unwrap()
                    .with_start_deliver_time(self.now + 1_000_000);
                let (i, t) = self.topic(*topic);
                let i = i.cloned();
                let out = format!("{:?}", target.publish(self.now, i.as_ref(), &t, m));
                self.transcript.push(out);
            }
            Op::Consume {
                topic,
                group,
                kind,
                filter,
                batch,
            } => {
                let kind =
                    [ConsumeKind::Normal, ConsumeKind::Orderly, ConsumeKind::Half][*kind as usize];
                let f: TagFilter = filters[*filter].parse().unwrap();
                let (i, t) = self.topic(*topic);
                let i = i.cloned();
                let out = target.consume(
                    self.now,
                    i.as_ref(),
                    &t,
                    &groups[*group],
                    kind,
                    &f,
                    BatchSize::new(*batch).unwrap(),
                );
                if let Ok(msgs) = &out {
                    for m in msgs {
                        let h = m.receipt_handle.to_string();
                        if kind == ConsumeKind::Half {
                            self.halves.push((*topic, h));
                        } else {
                            self.delivered.push((*topic, *group, h));
                        }
                    }
                }
                self.transcript.push(format!("{out:?}"));
            }
            Op::Ack { pick, count, group } => {
                let (topic, handles) = if self.delivered.is_empty() {
                    (0, vec![])
                } else {
                    let start = pick % self.delivered.len();
                    let chosen: Vec<_> = self
                        .delivered
                        .iter()
                        .cycle()
                        .skip(start)
                        .take(*count)
                        .cloned()
                        .collect();
                    let topic = self.delivered[start].0;
                    (topic, chosen.into_iter().map(|(_, _, h)| h).collect())
                };
                let (i, t) = self.topic(topic);
                let i = i.cloned();
                let g = (*count != 3).then_some(&groups[*group]);
                let out = target.ack(self.now, i.as_ref(), &t, g, AckKind::Ack, &handles);
                self.transcript.push(format!("{out:?}"));
            }
            Op::Resolve { pick, commit } => {
                if self.halves.is_empty() {
                    return;
                }
                let (topic, h) = self.halves[pick % self.halves.len()].clone();
                let (i, t) = self.topic(topic);
                let i = i.cloned();
                let kind = if *commit {
                    AckKind::Commit
                } else {
                    AckKind::Rollback
                };
                let out = target.ack(self.now, i.as_ref(), &t, None, kind, &[h]);
                self.transcript.push(format!("{out:?}"));
            }
            Op::Garbage { topic, group } => {
                let (i, t) = self.topic(*topic);
                let i = i.cloned();
                let out = target.ack(
                    self.now,
                    i.as_ref(),
                    &t,
                    Some(&groups[*group]),
                    AckKind::Ack,
                    &["not-a-handle".to_owned()],
                );
                self.transcript.push(format!("{out:?}"));
            }
            Op::Maintain => target.maintain(self.now),
            Op::Admin {
                call,
                topic,
                group,
                back,
            } => {
                let (i, t) = self.topic(*topic);
                let (instance, group) = (i.cloned(), groups[*group].clone());
                let call = match call {
                    0 => Call::CreateGroup {
                        instance,
                        group,
                        topics: vec![t],
                        settings: mq_broker::core::GroupSettings {
                            invisibility_ms: Some(500 + back % 2_000),
                            max_deliveries: Some(1 + (*back % 3) as u32),
                        },
                    },
                    1 => Call::DeleteGroup { instance, group },
                    2 => Call::ResetOffset {
                        instance,
                        topic: t,
                        group,
                        since_ms: self.now.saturating_sub(*back),
                    },
                    3 | 4 => Call::DeadLetters {
                        instance,
                        topic: t,
                        group,
                        message_id: None,
                        action: if *call == 3 {
                            mq_broker::core::DeadLetterAction::Resend
                        } else {
                            mq_broker::core::DeadLetterAction::Delete
                        },
                    },
                    7 | 8 => {
                        // A half message's id leads its handles; `back` past the end: unknown.
                        let picked = self
                            .halves
                            .get(*back as usize % (self.halves.len() + 1))
                            .cloned();
                        let (instance, topic, message_id) = match picked {
                            Some((n, h)) => {
                                let (i, t) = self.topic(n);
                                (i.cloned(), t, h[..32].to_owned())
                            }
                            None => (instance, t, "0123456789ABCDEF0123456789ABCDEF".to_owned()),
                        };
                        Call::DecideHalf {
                            instance,
                            topic,
                            message_id,
                            resolution: if *call == 7 {
                                mq_broker::core::TransactionResolution::Commit
                            } else {
                                mq_broker::core::TransactionResolution::Rollback
                            },
                        }
                    }
                    5 => Call::CreateTopic {
                        instance,
                        topic: t,
                        message_type: mq_broker::core::TopicMessageType::Mixed,
                    },
                    6 => Call::DeleteTopic { instance, topic: t },
                    9 => Call::Reset,
                    _ => {
                        target.record_clock_advance(self.now, *back as i64);
                        return;
                    }
                };
                let out = target.apply_call(self.now, call);
                self.transcript.push(format!("{out:?}"));
            }
            Op::Declare(n) => {
                let (i, _) = self.topic(*n % 3);
                let i = i.cloned();
                target.declare(
                    self.now,
                    i.as_ref(),
                    &TopicName::new(format!("T{n}")).unwrap(),
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A journaled core behaves exactly like a plain one; replaying its journal (snapshot
    /// plus the records after it, whatever point the snapshots happened to be taken at)
    /// rebuilds the identical state; and the rebuilt core answers every later call exactly
    /// as the original does.
    #[test]
    fn replaying_the_journal_rebuilds_the_exact_state(
        prefix in prop::collection::vec(op(), 1..120),
        suffix in prop::collection::vec(op(), 1..60),
        snapshot_min_bytes in 64u64..4_000,
    ) {
        let engine = MemEngine::default();
        let options = DurableOptions { snapshot_min_bytes, snapshot_interval_ms: 20_000 };
        let mut journaled = JournaledCore::open_with(engine.clone(), small_config(), options.clone()).unwrap();
        let mut plain = BrokerCore::new(small_config());
        let mut d_journaled = Driver::new();
        let mut d_plain = Driver::new();
        for op in &prefix {
            d_journaled.step(&mut journaled, op);
            d_plain.step(&mut plain, op);
        }
        prop_assert_eq!(&d_journaled.transcript, &d_plain.transcript);
        prop_assert!(journaled.core() == &plain, "journaling changed the state");
        drop(journaled); // commits what is pending and stops the writer

        let (mut replayed, _) = JournaledCore::recover(&engine).unwrap().expect("a snapshot");
        prop_assert!(replayed == plain, "replayed state differs");
        let mut reopened = JournaledCore::open_with(engine.clone(), small_config(), options).unwrap();
        prop_assert!(reopened.core() == &plain, "reopened state differs");

        let mut d_replayed = d_plain.clone();
        let mut d_reopened = d_plain.clone();
        for op in &suffix {
            d_plain.step(&mut plain, op);
            d_replayed.step(&mut replayed, op);
            d_reopened.step(&mut reopened, op);
        }
        prop_assert_eq!(&d_replayed.transcript, &d_plain.transcript);
        prop_assert_eq!(&d_reopened.transcript, &d_plain.transcript);
        prop_assert_eq!(replayed.stats(), plain.stats());
        prop_assert_eq!(reopened.stats(), plain.stats());
        prop_assert_eq!(replayed.next_wakeup(), plain.next_wakeup());
        prop_assert!(replayed == plain);
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery on a real data directory, in virtual time

const SEC: u64 = 1_000;

fn one(n: u8) -> BatchSize {
    BatchSize::new(n).unwrap()
}

#[test]
fn restart_recovers_ready_in_flight_delayed_and_half_messages() {
    let rt = runtime();
    let dir = TempDir::new("recover");
    let config = CoreConfig {
        invisibility_ms: 30 * SEC,
        ..CoreConfig::default()
    };
    let t = TopicName::new("T").unwrap();
    let g = GroupId::new("GID").unwrap();
    let all = TagFilter::All;
    let t0 = 1_700_000_000_000;

    let (in_flight, half_handle, half_id) = {
        let mut core = JournaledCore::open(config.clone(), Some(dir.path())).unwrap();
        assert!(core.is_durable());
        core.consume(t0, None, &t, &g, ConsumeKind::Normal, &all, one(1))
            .unwrap();
        for body in ["in-flight", "acked", "ready"] {
            core.publish(t0 + 1, None, &t, TopicMessage::new(body).unwrap())
                .unwrap();
        }
        core.publish(
            t0 + 1,
            None,
            &t,
            TopicMessage::new("delayed")
                .unwrap()
                .with_start_deliver_time(t0 + 50 * SEC),
        )
        .unwrap();
        let half = core
            .publish(
                t0 + 2,
                None,
                &t,
                TopicMessage::new("half")
                    .unwrap()
                    .with_trans_check_immunity(TransCheckImmunity::new(20).unwrap()),
            )
            .unwrap();
        let got = core
            .consume(t0 + 3, None, &t, &g, ConsumeKind::Normal, &all, one(2))
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].body, "in-flight");
        let failures = core
            .ack(
                t0 + 4,
                None,
                &t,
                Some(&g),
                AckKind::Ack,
                &[got[1].receipt_handle.to_string()],
            )
            .unwrap();
        assert!(failures.is_empty());
        rt.block_on(core.sync_point().wait()).unwrap();
        rt.block_on(core.close());
        (
            got[0].clone(),
            half.receipt_handle.unwrap(),
            half.message_id,
        )
    };

    // Restart 10 s later (virtual time): only the ready message is visible.
    let mut core = JournaledCore::open(config.clone(), Some(dir.path())).unwrap();
    let now = t0 + 10 * SEC;
    let got = core
        .consume(now, None, &t, &g, ConsumeKind::Normal, &all, one(16))
        .unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["ready"]
    );
    let handle = got[0].receipt_handle.to_string();
    assert!(
        core.ack(now, None, &t, Some(&g), AckKind::Ack, &[handle])
            .unwrap()
            .is_empty()
    );
    // The half message keeps its schedule: first check at publish + 20 s.
    assert!(
        core.consume(now, None, &t, &g, ConsumeKind::Half, &all, one(16))
            .unwrap()
            .is_empty()
    );
    drop(core); // a crash-like stop (no close): the journal is committed up to here anyway

    let mut core = JournaledCore::open(config.clone(), Some(dir.path())).unwrap();
    // The in-flight message reappears after its NextConsumeTime, as a redelivery.
    let before = in_flight.next_consume_time - 1;
    assert!(
        core.consume(before, None, &t, &g, ConsumeKind::Normal, &all, one(16))
            .unwrap()
            .iter()
            .all(|m| m.body != "in-flight")
    );
    let again = core
        .consume(
            in_flight.next_consume_time,
            None,
            &t,
            &g,
            ConsumeKind::Normal,
            &all,
            one(1),
        )
        .unwrap();
    assert_eq!(again[0].message_id, in_flight.message_id);
    assert_eq!(again[0].consumed_times, 2);
    assert_eq!(again[0].first_consume_time, in_flight.first_consume_time);
    assert_ne!(again[0].receipt_handle, in_flight.receipt_handle);
    // The half message is offered for a check at its time, and its publish handle expired.
    let checks = core
        .consume(
            t0 + 22 * SEC,
            None,
            &t,
            &g,
            ConsumeKind::Half,
            &all,
            one(16),
        )
        .unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].message_id, half_id);
    let stale = core
        .ack(
            t0 + 22 * SEC,
            None,
            &t,
            None,
            AckKind::Commit,
            &[half_handle.to_string()],
        )
        .unwrap();
    assert_eq!(stale.len(), 1);
    let committed = core
        .ack(
            t0 + 23 * SEC,
            None,
            &t,
            None,
            AckKind::Commit,
            &[checks[0].receipt_handle.to_string()],
        )
        .unwrap();
    assert!(committed.is_empty());
    rt.block_on(core.sync_point().wait()).unwrap();
    drop(core);

    let mut core = JournaledCore::open(config, Some(dir.path())).unwrap();
    // Delayed at its time; the committed half message is deliverable; nothing acked returns.
    let at_49 = core
        .consume(
            t0 + 49 * SEC,
            None,
            &t,
            &g,
            ConsumeKind::Normal,
            &all,
            one(16),
        )
        .unwrap();
    assert_eq!(
        at_49.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["half"]
    );
    let at_50 = core
        .consume(
            t0 + 50 * SEC,
            None,
            &t,
            &g,
            ConsumeKind::Normal,
            &all,
            one(16),
        )
        .unwrap();
    assert_eq!(
        at_50.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["delayed"]
    );
    let stats = core.stats();
    assert_eq!(stats.published, 5);
    assert_eq!(stats.acked, 2);
    rt.block_on(core.close());
}

#[test]
fn in_flight_handles_stay_valid_across_a_restart() {
    let rt = runtime();
    let dir = TempDir::new("handles");
    let t = TopicName::new("T").unwrap();
    let g = GroupId::new("GID").unwrap();
    let got = {
        let mut core = JournaledCore::open(CoreConfig::default(), Some(dir.path())).unwrap();
        core.consume(
            0,
            None,
            &t,
            &g,
            ConsumeKind::Normal,
            &TagFilter::All,
            one(1),
        )
        .unwrap();
        core.publish(1, None, &t, TopicMessage::new("x").unwrap())
            .unwrap();
        let got = core
            .consume(
                2,
                None,
                &t,
                &g,
                ConsumeKind::Normal,
                &TagFilter::All,
                one(1),
            )
            .unwrap();
        rt.block_on(core.close());
        got
    };
    // A new id seed in the configuration does not change the stored one.
    let config = CoreConfig {
        id_seed: 12345,
        ..CoreConfig::default()
    };
    let mut core = JournaledCore::open(config, Some(dir.path())).unwrap();
    let failures = core
        .ack(
            3,
            None,
            &t,
            Some(&g),
            AckKind::Ack,
            &[got[0].receipt_handle.to_string()],
        )
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let next = core
        .publish(4, None, &t, TopicMessage::new("y").unwrap())
        .unwrap();
    assert_ne!(next.message_id, got[0].message_id);
    assert_eq!(
        next.message_id.as_str()[..16],
        got[0].message_id.as_str()[..16]
    );
    rt.block_on(core.close());
}

#[test]
fn a_data_directory_is_used_by_one_broker_at_a_time() {
    let rt = runtime();
    let dir = TempDir::new("locked");
    let mut first = JournaledCore::open(CoreConfig::default(), Some(dir.path())).unwrap();
    let second = JournaledCore::open(CoreConfig::default(), Some(dir.path()));
    assert!(matches!(second, Err(StorageError::Engine(_))), "{second:?}");
    rt.block_on(first.close());
    // Once closed, it opens again.
    let mut again = JournaledCore::open(CoreConfig::default(), Some(dir.path())).unwrap();
    rt.block_on(again.close());
}

/// Fresh-eyes finding: a damaged data directory was refused with the storage engine's
/// error alone (`InvalidVersion`, `ChecksumMismatch`); the refusal now says what to do.
#[test]
fn a_damaged_data_directory_is_refused_with_what_to_do() {
    let rt = runtime();
    let dir = TempDir::new("damaged");
    let mut core = JournaledCore::open(CoreConfig::default(), Some(dir.path())).unwrap();
    rt.block_on(core.close());
    let version = dir.path().join("fjall3").join("version");
    assert!(
        version.is_file(),
        "fjall 3 keeps its format in {}",
        version.display()
    );
    std::fs::write(&version, b"garbage").unwrap();
    let refused = JournaledCore::open(CoreConfig::default(), Some(dir.path()))
        .expect_err("a damaged database");
    let text = refused.to_string();
    assert!(
        text.contains("restore the data directory from a backup, or move it aside"),
        "{text}"
    );
}

#[test]
fn retention_and_snapshots_trim_the_journal() {
    let rt = runtime();
    let engine = MemEngine::default();
    let options = DurableOptions {
        snapshot_min_bytes: 1 << 30,
        snapshot_interval_ms: 60 * SEC,
    };
    let config = CoreConfig {
        retention_ms: 30 * SEC,
        ..CoreConfig::default()
    };
    let mut core = JournaledCore::open_with(engine.clone(), config, options).unwrap();
    let t = TopicName::new("T").unwrap();
    let g = GroupId::new("GID").unwrap();
    core.consume(
        0,
        None,
        &t,
        &g,
        ConsumeKind::Normal,
        &TagFilter::All,
        one(1),
    )
    .unwrap();
    for i in 0..50 {
        core.publish(
            10 + i,
            None,
            &t,
            TopicMessage::new(format!("old {i}")).unwrap(),
        )
        .unwrap();
    }
    rt.block_on(core.sync_point().wait()).unwrap();
    assert_eq!(engine.state().records.len(), 51);
    assert_eq!(engine.state().snapshots_installed, 1); // the one written at start
    assert_eq!(core.stats().topics[0].stored, 50);

    // Past retention and the snapshot interval: housekeeping trims the messages, and the
    // snapshot it triggers replaces the journal.
    core.maintain(61 * SEC);
    assert_eq!(core.stats().topics[0].stored, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.state().snapshots_installed < 2 {
        assert!(Instant::now() < deadline, "no snapshot was taken");
        std::thread::sleep(Duration::from_millis(5));
    }
    rt.block_on(core.close());
    let state = engine.state();
    assert!(
        state.records.is_empty(),
        "{} records left",
        state.records.len()
    );
    let snapshot = &state.snapshot.as_ref().unwrap().1;
    assert!(
        !snapshot.windows(5).any(|w| w == b"old 1"),
        "trimmed bodies are still on disk"
    );
}

#[test]
fn a_storage_failure_fails_every_later_sync_point() {
    let rt = runtime();
    let engine = MemEngine::default();
    let mut core = JournaledCore::open_with(
        engine.clone(),
        CoreConfig::default(),
        DurableOptions::default(),
    )
    .unwrap();
    let t = TopicName::new("T").unwrap();
    core.publish(1, None, &t, TopicMessage::new("ok").unwrap())
        .unwrap();
    rt.block_on(core.sync_point().wait()).unwrap();
    engine.state().fail_appends = true;
    core.publish(2, None, &t, TopicMessage::new("lost").unwrap())
        .unwrap();
    let e = rt.block_on(core.sync_point().wait()).unwrap_err();
    assert!(matches!(e, StorageError::Failed(_)), "{e:?}");
    engine.state().fail_appends = false;
    core.publish(3, None, &t, TopicMessage::new("after").unwrap())
        .unwrap();
    assert!(
        rt.block_on(core.sync_point().wait()).is_err(),
        "nothing is durable after a failure"
    );
    rt.block_on(core.close());
    // What was durable is what a restart sees.
    let (recovered, last) = JournaledCore::recover(&engine).unwrap().unwrap();
    assert_eq!(last, 1);
    assert_eq!(recovered.stats().published, 1);
}

#[test]
fn an_empty_engine_starts_empty_and_in_memory_cores_need_no_sync() {
    let rt = runtime();
    assert!(
        JournaledCore::recover(&MemEngine::default())
            .unwrap()
            .is_none()
    );
    let mut core = JournaledCore::open(CoreConfig::default(), None).unwrap();
    assert!(!core.is_durable());
    core.publish(
        1,
        None,
        &TopicName::new("T").unwrap(),
        TopicMessage::new("m").unwrap(),
    )
    .unwrap();
    rt.block_on(core.sync_point().wait()).unwrap();
    rt.block_on(core.close());
}

/// `bytes` with every `from` replaced by `to` (same length).
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut at = 0;
    while let Some(i) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + i..at + i + to.len()].copy_from_slice(to);
        at += i + to.len();
    }
    out
}

/// A data directory written while names could hold `%` (refused since) does not open, and
/// the error names the directory, the part of it (snapshot or journal), the name and the
/// rule, and says what to do — the README's migration row in the broker's words. Crafted:
/// the state of a core with `orders_Q2Fx` and `GID_Q25` in it, those names patched to
/// `orders_%2Fx` and `GID_%25` (same length) in the snapshot or journal bytes, written to a
/// fresh directory through the fjall engine.
#[test]
fn a_stored_name_this_version_refuses_is_named_with_what_to_do() {
    use mq_broker::durable::FjallEngine;
    let rt = runtime();
    let topic = TopicName::new("orders_Q2Fx").unwrap();
    let group = GroupId::new("GID_Q25").unwrap();
    let engine = MemEngine::default();
    let open = |engine: &MemEngine| {
        JournaledCore::open_with(
            engine.clone(),
            CoreConfig::default(),
            DurableOptions::default(),
        )
        .unwrap()
    };
    let mut core = open(&engine);
    let declare = Call::DeclareTopic {
        instance: None,
        topic: topic.clone(),
    };
    core.apply(1_000, declare).unwrap();
    // A message the group receives: its trace names the group too (read before the group
    // itself, and kept as stored: the refusal must come from the group's own entry).
    let publish = Call::Publish {
        instance: None,
        topic: topic.clone(),
        message: TopicMessage::new("m").unwrap(),
        producer: None,
    };
    let consume = Call::Consume {
        instance: None,
        topic,
        group,
        kind: ConsumeKind::Normal,
        filter: TagFilter::All,
        batch: one(1),
        wait: Default::default(),
    };
    core.apply(2_000, consume.clone()).unwrap();
    core.apply(2_500, publish).unwrap();
    core.apply(3_000, consume).unwrap();
    rt.block_on(core.sync_point().wait()).unwrap();
    rt.block_on(core.close());
    // The snapshot taken at open is of the empty core: the names are in the journal.
    let (upto, empty) = engine.state().snapshot.clone().unwrap();
    let records: Vec<(u64, Vec<u8>)> = engine
        .state()
        .records
        .iter()
        .map(|(i, r)| (*i, patched(&patched(r, b"Q2F", b"%2F"), b"Q25", b"%25")))
        .collect();
    assert_eq!(records.len(), 4);
    let from_journal = TempDir::new("refused-journal");
    {
        let mut fjall = FjallEngine::open(from_journal.path()).unwrap();
        fjall.install_snapshot(upto, &empty).unwrap();
        fjall.append(&records).unwrap();
    }
    // Reopened, the mem engine's fresh snapshot holds both names.
    rt.block_on(open(&engine).close());
    let (upto, full) = engine.state().snapshot.clone().unwrap();
    let from_snapshot = TempDir::new("refused-snapshot");
    {
        let mut fjall = FjallEngine::open(from_snapshot.path()).unwrap();
        fjall
            .install_snapshot(upto, &patched(&full, b"Q25", b"%25"))
            .unwrap();
    }

    for (dir, place, what, name) in [
        (
            &from_journal,
            "a journal record",
            "topic name",
            "orders_%2Fx",
        ),
        (&from_snapshot, "the snapshot", "group id", "GID_%25"),
    ] {
        let e = JournaledCore::open(CoreConfig::default(), Some(dir.path()))
            .map(|_| ())
            .unwrap_err();
        let StorageError::RefusedName {
            place: found_place,
            what: found_what,
            value,
            ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!(
            (found_place.as_str(), *found_what, value.as_str()),
            (
                format!("{place} in {}", dir.path().display()).as_str(),
                what,
                name
            )
        );
        let text = e.to_string();
        for part in [
            &format!(
                "{place} in {} holds the {what} \"{name}\"",
                dir.path().display()
            ),
            "character '%' is not allowed",
            "open it with the previous version and delete the topics and groups with such names",
            "or start with an empty --data-dir",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Through the HTTP server

async fn start(dir: &TempDir) -> Broker {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        credentials: vec![Credential::new(support::AK, support::SK)],
        core: CoreConfig {
            invisibility_ms: 3_000,
            ..CoreConfig::default()
        },
        data_dir: Some(dir.path().to_owned()),
        ..ServerConfig::default()
    };
    Broker::start(config).await.unwrap()
}

/// `GET /metrics` on its own connection.
async fn get_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_delivers_what_it_acknowledged() {
    let dir = TempDir::new("server");
    let t = TopicName::new("T").unwrap();
    let g = GroupId::new("GID").unwrap();
    let broker = start(&dir).await;
    let mut c = Client::new(broker.local_addr());
    assert!(
        c.consume(&t, &g, ConsumeKind::Normal, 1, 0)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = c
            .publish(&t, &TopicMessage::new(format!("m{i}")).unwrap())
            .await
            .unwrap()
            .unwrap();
        ids.push(r.message_id);
    }
    let half = c
        .publish(
            &t,
            &TopicMessage::new("half")
                .unwrap()
                .with_trans_check_immunity(TransCheckImmunity::new(10).unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
    let got = c
        .consume(&t, &g, ConsumeKind::Normal, 2, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 2);
    let acked = c
        .ack(&t, &g, AckKind::Ack, &[got[0].receipt_handle.clone()])
        .await
        .unwrap()
        .unwrap();
    assert!(acked.is_empty());
    // Every 2xx above waited for a durable commit: `/metrics` counts them.
    let metrics = get_metrics(broker.local_addr()).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    let commits = value("mq_journal_commits_total");
    assert!(commits >= 1.0, "{metrics}");
    // 5 publishes, 2 deliveries, 1 ack at least (shared commits: fewer commits than records).
    assert!(value("mq_journal_records_total") >= 8.0, "{metrics}");
    assert!(value("mq_journal_records_total") >= commits, "{metrics}");
    assert_eq!(value("mq_journal_commit_duration_seconds_count"), commits);
    broker.shutdown().await;

    // The handles of the in-flight delivery and of the transactional publish still work.
    let broker = start(&dir).await;
    let mut c = Client::new(broker.local_addr());
    let acked = c
        .ack(&t, &g, AckKind::Ack, &[got[1].receipt_handle.clone()])
        .await
        .unwrap()
        .unwrap();
    assert!(acked.is_empty(), "{acked:?}");
    let committed = c
        .ack(
            &t,
            &g,
            AckKind::Commit,
            &[half.receipt_handle.clone().unwrap()],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(committed.is_empty(), "{committed:?}");
    let ready = c
        .consume(&t, &g, ConsumeKind::Normal, 16, 0)
        .await
        .unwrap()
        .unwrap();
    let bodies: Vec<&str> = ready.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m2", "m3", "half"]);
    broker.shutdown().await;

    // Not acked: after another restart they come back at their NextConsumeTime, as
    // redeliveries; the acked ones never do.
    let broker = start(&dir).await;
    let mut c = Client::new(broker.local_addr());
    let next = ready.iter().map(|m| m.next_consume_time).max().unwrap();
    if now_ms() + 500 < next {
        let early = c
            .consume(&t, &g, ConsumeKind::Normal, 16, 0)
            .await
            .unwrap()
            .unwrap();
        assert!(
            early.is_empty(),
            "redelivered before NextConsumeTime: {early:?}"
        );
    }
    let mut again = Vec::new();
    while again.len() < 3 {
        let batch = c
            .consume(&t, &g, ConsumeKind::Normal, 16, 10)
            .await
            .unwrap()
            .unwrap();
        assert!(!batch.is_empty(), "in-flight messages did not come back");
        again.extend(batch);
    }
    assert!(now_ms() >= next);
    let bodies: Vec<&str> = again.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m2", "m3", "half"]);
    assert!(again.iter().all(|m| m.consumed_times == 2), "{again:?}");
    assert!(again.iter().all(|m| !ids[..2].contains(&m.message_id)));
    broker.shutdown().await;
}

/// The broker's clock as `GET /admin/clock` reports it: (now_ms, offset_ms, test_clock).
async fn admin_clock(c: &mut Client) -> (u64, i64, bool) {
    let (status, clock) = c
        .admin(http::Method::GET, "/admin/clock", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{clock}");
    (
        clock["now_ms"].as_u64().unwrap(),
        clock["offset_ms"].as_i64().unwrap(),
        clock["test_clock"].as_bool().unwrap(),
    )
}

/// An admin call that must answer 200.
async fn admin_ok(c: &mut Client, method: http::Method, target: &str) -> serde_json::Value {
    let (status, answer) = c.admin(method, target, None).await.unwrap();
    assert_eq!(status, 200, "{target}: {answer}");
    answer
}

/// Fresh-eyes finding (issue 14): with `--data-dir --test-clock`, a clock moved an hour
/// ahead fell back to the system clock at a restart while the state stayed an hour ahead,
/// so the core stood still at its last time (every publish got the same time, an unacked
/// message stayed in flight an hour instead of its invisibility, and `/admin/clock`
/// disagreed with the answers). The advance is journaled: after a restart the clock goes
/// on from where it was; restarted without `--test-clock`, the clock goes on from the
/// state's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_clock_goes_on_from_where_it_was_after_a_restart() {
    use http::Method;
    const HOUR_MS: i64 = 3_600_000;
    let dir = TempDir::new("test-clock");
    let config = |test_clock: bool| ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        credentials: vec![Credential::new(support::AK, support::SK)],
        data_dir: Some(dir.path().to_owned()),
        test_clock,
        ..ServerConfig::default()
    };
    let t = TopicName::new("Clocked").unwrap();
    let g = GroupId::new("GID_clocked").unwrap();
    let broker = Broker::start(config(true)).await.unwrap();
    let mut c = Client::new(broker.local_addr());
    admin_ok(
        &mut c,
        Method::POST,
        "/admin/groups?group=GID_clocked&topic=Clocked&invisibility_ms=5000",
    )
    .await;
    c.publish(&t, &TopicMessage::new("held").unwrap())
        .await
        .unwrap()
        .unwrap();
    admin_ok(&mut c, Method::POST, "/admin/clock?advance_ms=3600000").await;
    let held = c
        .consume(&t, &g, ConsumeKind::Normal, 1, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.len(), 1);
    let (moved_to, _, _) = admin_clock(&mut c).await;
    assert!(held[0].next_consume_time <= moved_to + 5_000);
    broker.shutdown().await;

    // Restarted with the test clock: still an hour ahead, and running.
    let broker = Broker::start(config(true)).await.unwrap();
    let mut c = Client::new(broker.local_addr());
    let (before, offset, test_clock) = admin_clock(&mut c).await;
    assert!(test_clock);
    assert!(offset >= HOUR_MS, "offset {offset} after the restart");
    assert!(before >= moved_to);
    c.publish(&t, &TopicMessage::new("fresh").unwrap())
        .await
        .unwrap()
        .unwrap();
    let (after, _, _) = admin_clock(&mut c).await;
    // The unacked message comes back after its 5 s of invisibility on that clock.
    admin_ok(&mut c, Method::POST, "/admin/clock?advance_ms=5001").await;
    let got = c
        .consume(&t, &g, ConsumeKind::Normal, 16, 0)
        .await
        .unwrap()
        .unwrap();
    let bodies: Vec<(&str, u32)> = got
        .iter()
        .map(|m| (m.body.as_str(), m.consumed_times))
        .collect();
    // In the order they became visible: "fresh" at its publish, "held" 5 s later.
    assert_eq!(bodies, [("fresh", 1), ("held", 2)], "{got:?}");
    assert!(
        (before..=after).contains(&got[0].publish_time),
        "published at {} by a clock reading {before}..{after}",
        got[0].publish_time
    );
    // The time of that consume, the latest the state saw.
    let recorded = got[1].next_consume_time - 5_000;
    broker.shutdown().await;

    // Restarted without the test clock: the clock does not go back behind the state's
    // time, and runs on from it; an invisibility lasts its length on it.
    let broker = Broker::start(config(false)).await.unwrap();
    let mut c = Client::new(broker.local_addr());
    let (before, offset, test_clock) = admin_clock(&mut c).await;
    assert!(!test_clock);
    assert!(before >= recorded, "{before} < {recorded}");
    assert!(offset >= HOUR_MS, "offset {offset}");
    c.publish(&t, &TopicMessage::new("later").unwrap())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.publish(&t, &TopicMessage::new("later still").unwrap())
        .await
        .unwrap()
        .unwrap();
    let got = c
        .consume(&t, &g, ConsumeKind::Normal, 16, 0)
        .await
        .unwrap()
        .unwrap();
    let (after, _, _) = admin_clock(&mut c).await;
    let later: Vec<&Message> = got.iter().filter(|m| m.body.starts_with("later")).collect();
    assert_eq!(later.len(), 2, "{got:?}");
    assert!(later[0].publish_time < later[1].publish_time, "{later:?}");
    assert!((before..=after).contains(&later[0].publish_time));
    for m in &later {
        assert!(
            m.next_consume_time <= after + 5_000,
            "in flight until {} though the clock reads {after}",
            m.next_consume_time
        );
    }
    broker.shutdown().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn data_dir_and_retention_come_from_flags_or_the_config_file() {
    let dir = TempDir::new("config");
    let file = dir.path().join("broker.toml");
    std::fs::write(
        &file,
        "data_dir = \"/from/file\"\nretention_secs = 60\n\
         consumed_retention_secs = 30\nconsumed_retention_bytes = 65536\n",
    )
    .unwrap();
    let args = mq_broker::BrokerArgs {
        config: Some(file.clone()),
        ..Default::default()
    };
    let (config, _) = mq_broker::load_config(&args).unwrap();
    assert_eq!(
        config.data_dir.as_deref(),
        Some(std::path::Path::new("/from/file"))
    );
    assert_eq!(config.core.retention_ms, 60_000);
    assert_eq!(config.core.consumed_retention_ms, 30_000);
    assert_eq!(config.core.consumed_retention_bytes, 65_536);
    let args = mq_broker::BrokerArgs {
        config: Some(file),
        data_dir: Some("/from/flag".into()),
        retention_secs: Some(7),
        consumed_retention_secs: Some(0),
        consumed_retention_bytes: Some(1024),
        ..Default::default()
    };
    let (config, _) = mq_broker::load_config(&args).unwrap();
    assert_eq!(
        config.data_dir.as_deref(),
        Some(std::path::Path::new("/from/flag"))
    );
    assert_eq!(config.core.retention_ms, 7_000);
    assert_eq!(config.core.consumed_retention_ms, 0);
    assert_eq!(config.core.consumed_retention_bytes, 1024);
    let (config, _) = mq_broker::load_config(&mq_broker::BrokerArgs::default()).unwrap();
    assert_eq!(config.data_dir, None);
    assert_eq!(config.core.retention_ms, 3 * 86_400_000);
    assert_eq!(config.core.consumed_retention_ms, 3_600_000);
    assert_eq!(config.core.consumed_retention_bytes, 16 * 1024 * 1024);
}

#[test]
fn a_zero_that_would_drop_every_message_is_refused() {
    // 0 s of retention (or of checking half messages) would accept messages and drop them
    // at once; from a flag or from the file, the broker refuses to start and names the key.
    let dir = TempDir::new("config-zero");
    for key in [
        "retention_secs",
        "half_check_horizon_secs",
        "half_check_interval_secs",
    ] {
        let file = dir.path().join(format!("{key}.toml"));
        std::fs::write(&file, format!("{key} = 0\n")).unwrap();
        let from_file = mq_broker::BrokerArgs {
            config: Some(file),
            ..Default::default()
        };
        let mut from_flag = mq_broker::BrokerArgs::default();
        match key {
            "retention_secs" => from_flag.retention_secs = Some(0),
            "half_check_horizon_secs" => from_flag.half_check_horizon_secs = Some(0),
            _ => from_flag.half_check_interval_secs = Some(0),
        }
        for args in [from_file, from_flag] {
            let e = mq_broker::load_config(&args).unwrap_err();
            assert!(e.starts_with(&format!("{key} must be at least 1")), "{e}");
        }
    }
    // consumed_retention_secs = 0 is documented (drop unheld messages at once) and stays.
    let args = mq_broker::BrokerArgs {
        consumed_retention_secs: Some(0),
        retention_secs: Some(1),
        ..Default::default()
    };
    assert_eq!(
        mq_broker::load_config(&args).unwrap().0.core.retention_ms,
        1_000
    );
}
