//! Model-based test: random operation sequences run against the core and against a naive
//! reference model (linear scans, no indexes); every output must match exactly, and the
//! broker-level invariants are checked on the way (no delivery while invisible or after an
//! ack, per-partition order, single-use handles, no message lost).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use mq_broker::core::{Lookup, PeekState};
use mq_broker::{BrokerCore, CoreConfig, GroupStats};
use mq_proto::{
    AckKind, BatchSize, ConsumeKind, ErrorCode, GroupId, Message, MessageId, Tag, TagFilter,
    TopicMessage, TopicName, TransCheckImmunity,
};
use proptest::prelude::*;
use proptest::sample::Index;

const GROUPS: [&str; 3] = ["G0", "G1", "G2"];
const TAGS: [&str; 3] = ["A", "B", "C"];
const KEYS: [&str; 2] = ["K0", "K1"];
const FILTERS: [&str; 4] = ["*", "A", "A||B", "B"];

fn config() -> CoreConfig {
    CoreConfig {
        invisibility_ms: 10_000,
        order_invisibility_ms: 8_000,
        half_check_interval_ms: 5_000,
        half_check_horizon_ms: 40_000,
        max_deliveries: 2,
        retention_ms: 90_000,
        // Consumed messages kept until their retention ends (the bounds on them have unit
        // tests in core.rs): the model keeps every message it stored until then.
        consumed_retention_ms: u64::MAX / 4,
        consumed_retention_bytes: u64::MAX,
        max_schedule_ahead_ms: 50_000,
        auto_create_topics: true,
        id_seed: 9,
    }
}

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Debug)]
struct PublishSpec {
    tag: Option<usize>,
    key: Option<usize>,
    /// Start-deliver time relative to now (may be in the past or beyond the horizon).
    delay: Option<i64>,
    /// Transaction check immunity in seconds.
    trans: Option<u32>,
}

#[derive(Clone, Debug)]
enum Pick {
    /// Any handle issued so far.
    Any(Index),
    /// One of the eight most recently issued handles (likely still valid).
    Recent(Index),
    /// Not a handle.
    Garbage(u8),
    /// This exact text (used by the final drain).
    Text(String),
}

#[derive(Clone, Debug)]
enum Op {
    Publish(PublishSpec),
    Consume {
        group: usize,
        orderly: bool,
        filter: usize,
        batch: u8,
    },
    Pop {
        filter: usize,
        batch: u8,
    },
    Ack {
        group: usize,
        picks: Vec<Pick>,
    },
    Resolve {
        commit: bool,
        pick: Pick,
        with_group: bool,
    },
    Advance(u64),
    Maintain,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        2 => any::<Index>().prop_map(Pick::Any),
        5 => any::<Index>().prop_map(Pick::Recent),
        1 => any::<u8>().prop_map(Pick::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let publish = (
        prop::option::weighted(0.6, 0..TAGS.len()),
        prop::option::weighted(0.4, 0..KEYS.len()),
        prop::option::weighted(0.2, -5_000i64..60_000),
        prop::option::weighted(0.2, 10u32..=15),
    )
        .prop_map(|(tag, key, delay, trans)| {
            Op::Publish(PublishSpec {
                tag,
                key,
                delay,
                trans,
            })
        });
    prop_oneof![
        6 => publish,
        6 => (0..GROUPS.len(), any::<bool>(), prop_oneof![3 => Just(0usize), 1 => 1..FILTERS.len()], 1u8..=4)
            .prop_map(|(group, orderly, filter, batch)| Op::Consume { group, orderly, filter, batch }),
        2 => (prop_oneof![3 => Just(0usize), 1 => 1..FILTERS.len()], 1u8..=3)
            .prop_map(|(filter, batch)| Op::Pop { filter, batch }),
        5 => (0..GROUPS.len(), prop::collection::vec(pick(), 1..4))
            .prop_map(|(group, picks)| Op::Ack { group, picks }),
        2 => (any::<bool>(), pick(), any::<bool>())
            .prop_map(|(commit, pick, with_group)| Op::Resolve { commit, pick, with_group }),
        // Whole seconds often, so that times meet the configured durations exactly.
        5 => prop_oneof![
            4 => (0u64..=12).prop_map(|s| s * 1_000),
            1 => 0u64..8_000,
            1 => (8u64..=40).prop_map(|s| s * 1_000),
        ]
        .prop_map(Op::Advance),
        1 => Just(Op::Maintain),
    ]
}

// ---------------------------------------------------------------------------------------
// Reference model

#[derive(Clone, Debug)]
struct MMsg {
    id: MessageId,
    body: String,
    tag: Option<String>,
    partition: String,
    publish_time: u64,
    start: Option<u64>,
    /// Retention time once the message is stored for groups.
    expire_at: Option<u64>,
}

#[derive(Clone, Debug)]
struct MEntry {
    visible_at: u64,
    consumed: u32,
    first: u64,
    last_chance: bool,
}

#[derive(Clone, Debug, Default)]
struct MGroup {
    registered_at: u64,
    entries: BTreeMap<usize, MEntry>,
    /// `(dead-lettered at, seq)`.
    dead_at: Vec<(u64, usize)>,
    delivered: u64,
    redelivered: u64,
    acked: u64,
    filtered: u64,
    dead_lettered: u64,
    trimmed: u64,
    /// Time of the latest delivery.
    last_delivery: Option<u64>,
    /// Every message handed to the group, and how each one left it.
    received: BTreeSet<usize>,
    gone: BTreeSet<usize>,
    /// An orderly consume happened since the group last had nothing to consume: only then
    /// does the core keep its partition index, and only then does an ack that unblocks a
    /// partition wake orderly consumers (a version change).
    orderly_index: bool,
}

#[derive(Clone, Debug)]
struct MHalf {
    check_at: u64,
    pops: u32,
    first: u64,
    horizon: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Group(usize),
    Half,
}

#[derive(Clone, Debug)]
struct Issued {
    text: String,
    scope: Scope,
    seq: usize,
    attempt: u32,
    expiry: u64,
}

#[derive(Default)]
struct Model {
    now: u64,
    swept_at: u64,
    msgs: Vec<MMsg>,
    half: BTreeMap<usize, MHalf>,
    groups: BTreeMap<usize, MGroup>,
    issued: Vec<Issued>,
    texts: HashSet<String>,
    published: u64,
    /// Expected `topic_version`.
    version: u64,
    /// Set by an ack that unblocked an ordered partition.
    unblocked: bool,
    committed: u64,
    rolled_back: u64,
    dropped: u64,
}

fn filter_matches(filter: &str, tag: Option<&str>) -> bool {
    filter == "*" || tag.is_some_and(|t| filter.split("||").any(|f| f == t))
}

impl Model {
    /// A group with nothing left to consume has no partition index (see `orderly_index`).
    fn forget_empty_indexes(&mut self) {
        for g in self.groups.values_mut() {
            if g.entries.is_empty() {
                g.orderly_index = false;
            }
        }
    }

    fn sweep(&mut self, cfg: &CoreConfig) {
        let now = self.now;
        // Retention, in (expire_at, seq) order, for messages some group still holds.
        let mut expired: Vec<(u64, usize)> = self
            .msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.expire_at.filter(|&t| t <= now).map(|t| (t, i)))
            .filter(|&(_, i)| self.groups.values().any(|g| g.entries.contains_key(&i)))
            .collect();
        expired.sort();
        let mut changed = !expired.is_empty();
        for (_, seq) in expired {
            for g in self.groups.values_mut() {
                if g.entries.remove(&seq).is_some() {
                    g.trimmed += 1;
                    g.gone.insert(seq);
                }
            }
        }
        let before = self.half.len();
        self.half.retain(|_, h| h.horizon > now);
        self.dropped += (before - self.half.len()) as u64;
        changed |= before != self.half.len();
        let after = self.swept_at;
        changed |= self
            .half
            .values()
            .any(|h| h.check_at > after && h.check_at <= now);
        for g in self.groups.values_mut() {
            let mut dead: Vec<(u64, usize)> = g
                .entries
                .iter()
                .filter(|(_, e)| e.last_chance && e.visible_at <= now)
                .map(|(&s, e)| (e.visible_at, s))
                .collect();
            dead.sort();
            changed |= !dead.is_empty();
            for (at, seq) in dead {
                g.entries.remove(&seq);
                g.dead_at.push((at, seq));
                g.dead_lettered += 1;
                g.gone.insert(seq);
            }
            g.dead_at.retain(|&(t, _)| t + cfg.retention_ms > now);
            changed |= g
                .entries
                .values()
                .any(|e| !e.last_chance && e.visible_at > after && e.visible_at <= now);
        }
        self.swept_at = now;
        if changed {
            self.version += 1;
        }
        self.forget_empty_indexes();
    }

    fn register(&mut self, group: usize) {
        let now = self.now;
        self.groups.entry(group).or_insert_with(|| MGroup {
            registered_at: now,
            ..MGroup::default()
        });
    }

    fn fan_out(&mut self, seq: usize, cfg: &CoreConfig) -> bool {
        let now = self.now;
        let visible_at = self.msgs[seq].start.map_or(now, |s| s.max(now));
        for g in self.groups.values_mut() {
            g.entries.insert(
                seq,
                MEntry {
                    visible_at,
                    consumed: 0,
                    first: 0,
                    last_chance: false,
                },
            );
            g.received.insert(seq);
        }
        // Stored even for no group: kept (unheld) until its retention ends.
        self.msgs[seq].expire_at = Some(visible_at + cfg.retention_ms);
        let visible_now = !self.groups.is_empty() && visible_at <= now;
        if visible_now {
            self.version += 1;
        }
        visible_now
    }

    /// Expected deliveries of a normal or orderly consume: (seq, consumed, first, next).
    fn consume(
        &mut self,
        group: usize,
        orderly: bool,
        filter: &str,
        batch: usize,
        cfg: &CoreConfig,
    ) -> Vec<(usize, u32, u64, u64)> {
        let now = self.now;
        let msgs = &self.msgs;
        let g = self.groups.get_mut(&group).expect("registered");
        let order: Vec<usize> = if orderly {
            // Partitions ready now, by (ready_at, key); each walked in sequence order.
            let mut parts: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for &seq in g.entries.keys() {
                parts
                    .entry(msgs[seq].partition.as_str())
                    .or_default()
                    .push(seq);
            }
            let mut ready: Vec<(u64, &str, Vec<usize>)> = parts
                .into_iter()
                .map(|(key, seqs)| {
                    let head = g.entries[&seqs[0]].visible_at;
                    let flight = seqs
                        .iter()
                        .map(|s| &g.entries[s])
                        .filter(|e| e.consumed > 0)
                        .map(|e| e.visible_at)
                        .max()
                        .unwrap_or(0);
                    (head.max(flight), key, seqs)
                })
                .filter(|(r, _, _)| *r <= now)
                .collect();
            ready.sort();
            let mut order = Vec::new();
            for (_, _, seqs) in ready {
                for s in seqs {
                    if g.entries[&s].visible_at > now {
                        break;
                    }
                    order.push(s);
                }
            }
            order
        } else {
            let mut v: Vec<(u64, usize)> = g
                .entries
                .iter()
                .filter(|(_, e)| e.visible_at <= now && !e.last_chance)
                .map(|(&s, e)| (e.visible_at, s))
                .collect();
            v.sort();
            v.into_iter().map(|(_, s)| s).collect()
        };
        let invisibility = if orderly {
            cfg.order_invisibility_ms
        } else {
            cfg.invisibility_ms
        };
        let mut out = Vec::new();
        for seq in order {
            if out.len() >= batch {
                break;
            }
            if !filter_matches(filter, msgs[seq].tag.as_deref()) {
                g.entries.remove(&seq);
                g.filtered += 1;
                g.gone.insert(seq);
                continue;
            }
            let e = g.entries.get_mut(&seq).expect("entry");
            assert!(
                e.visible_at <= now,
                "model would deliver an invisible message"
            );
            if e.consumed == 0 {
                e.first = now;
            }
            e.consumed += 1;
            e.visible_at = now + invisibility;
            e.last_chance = e.consumed >= cfg.max_deliveries;
            g.delivered += 1;
            g.last_delivery = Some(now);
            if e.consumed > 1 {
                g.redelivered += 1;
            }
            out.push((seq, e.consumed, e.first, e.visible_at));
        }
        out
    }

    fn pop(&mut self, filter: &str, batch: usize, cfg: &CoreConfig) -> Vec<(usize, u32, u64, u64)> {
        let now = self.now;
        let mut due: Vec<(u64, usize)> = self
            .half
            .iter()
            .filter(|(s, h)| {
                h.check_at <= now && filter_matches(filter, self.msgs[**s].tag.as_deref())
            })
            .map(|(&s, h)| (h.check_at, s))
            .collect();
        due.sort();
        due.truncate(batch);
        due.into_iter()
            .map(|(_, seq)| {
                let h = self.half.get_mut(&seq).expect("half");
                if h.pops == 0 {
                    h.first = now;
                }
                h.pops += 1;
                h.check_at = now + cfg.half_check_interval_ms;
                (seq, h.pops, h.first, h.check_at)
            })
            .collect()
    }

    fn handle_text(&self, pick: &Pick) -> String {
        match pick {
            Pick::Any(i) if !self.issued.is_empty() => {
                self.issued[i.index(self.issued.len())].text.clone()
            }
            Pick::Recent(i) if !self.issued.is_empty() => {
                let n = self.issued.len().min(8);
                self.issued[self.issued.len() - 1 - i.index(n)].text.clone()
            }
            Pick::Garbage(b) if b % 2 == 0 => format!("garbage{b}"),
            Pick::Garbage(b) => {
                // A real-looking handle with one character changed.
                match self.issued.last() {
                    Some(h) => {
                        let mut t = h.text.clone();
                        let at = 33 + usize::from(*b) % 20;
                        let c = if t.as_bytes()[at] == b'Q' { "R" } else { "Q" };
                        t.replace_range(at..at + 1, c);
                        t
                    }
                    None => "X".to_owned(),
                }
            }
            Pick::Text(t) => t.clone(),
            _ => "nothing-issued".to_owned(),
        }
    }

    fn issued(&self, text: &str) -> Option<&Issued> {
        self.issued.iter().find(|h| h.text == text)
    }

    /// Expected code for one ack handle, applying it when valid.
    fn ack_one(&mut self, group: usize, text: &str) -> Option<ErrorCode> {
        let Some(h) = self.issued(text).cloned() else {
            return Some(ErrorCode::ReceiptHandleError);
        };
        if h.scope != Scope::Group(group) {
            return Some(ErrorCode::ReceiptHandleError);
        }
        let now = self.now;
        // Acks register no group: one that never consumed has no valid handle.
        let Some(g) = self.groups.get_mut(&group) else {
            return Some(ErrorCode::ReceiptHandleError);
        };
        match g.entries.get(&h.seq) {
            Some(e) if e.consumed == h.attempt && now < h.expiry => {
                assert_eq!(e.visible_at, h.expiry);
                g.entries.remove(&h.seq);
                g.acked += 1;
                g.gone.insert(h.seq);
                // Did the ack leave the message's partition ready for orderly consumers?
                let partition = &self.msgs[h.seq].partition;
                let rest: Vec<&MEntry> = g
                    .entries
                    .iter()
                    .filter(|(s, _)| self.msgs[**s].partition == *partition)
                    .map(|(_, e)| e)
                    .collect();
                if let Some(head) = rest.first().filter(|_| g.orderly_index) {
                    let flight = rest
                        .iter()
                        .filter(|e| e.consumed > 0)
                        .map(|e| e.visible_at)
                        .max()
                        .unwrap_or(0);
                    if head.visible_at.max(flight) <= now {
                        self.unblocked = true;
                    }
                }
                None
            }
            _ => Some(ErrorCode::MessageNotExist),
        }
    }

    /// Expected code for a commit/rollback, applying it when valid.
    fn resolve(&mut self, text: &str, commit: bool, cfg: &CoreConfig) -> Option<ErrorCode> {
        let Some(h) = self.issued(text).cloned() else {
            return Some(ErrorCode::ReceiptHandleError);
        };
        if h.scope != Scope::Half {
            return Some(ErrorCode::ReceiptHandleError);
        }
        match self.half.get(&h.seq) {
            Some(e) if e.pops == h.attempt && self.now < h.expiry => {
                self.half.remove(&h.seq);
                if commit {
                    self.committed += 1;
                    self.fan_out(h.seq, cfg);
                } else {
                    self.rolled_back += 1;
                    // Kept (unheld, for its trace) until its retention ends.
                    self.msgs[h.seq].expire_at = Some(self.now + cfg.retention_ms);
                }
                None
            }
            _ => Some(ErrorCode::MessageNotExist),
        }
    }

    fn next_wakeup(&self, cfg: &CoreConfig) -> Option<u64> {
        let after = self.swept_at;
        let mut times: Vec<u64> = Vec::new();
        for m in &self.msgs {
            if let Some(t) = m.expire_at
                && t > after
            {
                times.push(t);
            }
        }
        for h in self.half.values() {
            times.push(h.horizon);
            if h.check_at > after {
                times.push(h.check_at);
            }
        }
        for g in self.groups.values() {
            for e in g.entries.values() {
                if e.last_chance || e.visible_at > after {
                    times.push(e.visible_at);
                }
            }
            if let Some((d, _)) = g.dead_at.first() {
                times.push(d + cfg.retention_ms);
            }
        }
        times.into_iter().min()
    }

    fn group_stats(&self, group: usize) -> GroupStats {
        let g = &self.groups[&group];
        let mut s = GroupStats {
            group: GROUPS[group].to_owned(),
            registered_at_ms: g.registered_at,
            dead_lettered: g.dead_lettered,
            dead_letters_kept: g.dead_at.len() as u64,
            delivered: g.delivered,
            redelivered: g.redelivered,
            acked: g.acked,
            filtered: g.filtered,
            trimmed: g.trimmed,
            accumulation: g.entries.len() as u64,
            last_consume_time_ms: g.last_delivery,
            ..GroupStats::default()
        };
        for e in g.entries.values() {
            if e.visible_at <= self.now {
                s.ready += 1;
            } else if e.consumed > 0 {
                s.in_flight += 1;
            } else {
                s.delayed += 1;
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------
// Driver

struct Run {
    core: BrokerCore,
    model: Model,
    cfg: CoreConfig,
    topic: TopicName,
}

impl Run {
    fn new() -> Self {
        Self {
            core: BrokerCore::new(config()),
            model: Model::default(),
            cfg: config(),
            topic: TopicName::new("T").unwrap(),
        }
    }

    fn record(&mut self, scope: Scope, seq: usize, attempt: u32, expiry: u64, text: &str) {
        assert!(
            self.model.texts.insert(text.to_owned()),
            "handle issued twice: {text}"
        );
        self.model.issued.push(Issued {
            text: text.to_owned(),
            scope,
            seq,
            attempt,
            expiry,
        });
    }

    fn check_delivery(&self, m: &Message, (seq, consumed, first, next): (usize, u32, u64, u64)) {
        let mm = &self.model.msgs[seq];
        assert_eq!(m.message_id, mm.id);
        assert_eq!(m.body, mm.body);
        assert_eq!(m.tag.as_ref().map(Tag::as_str), mm.tag.as_deref());
        assert_eq!(m.publish_time, mm.publish_time);
        assert_eq!(m.consumed_times, consumed);
        assert_eq!(m.first_consume_time, first);
        assert_eq!(m.next_consume_time, next);
        assert!(m.body_md5_matches());
        assert!(m.receipt_handle.as_str().starts_with(mm.id.as_str()));
    }

    fn step(&mut self, op: &Op) {
        let now = self.model.now;
        let t = self.topic.clone();
        match op {
            Op::Advance(ms) => {
                self.model.now += ms;
                return;
            }
            Op::Maintain => {
                self.core.maintain(now);
                self.model.sweep(&self.cfg);
            }
            Op::Publish(spec) => {
                let seq = self.model.msgs.len();
                let body = format!("m{seq}");
                let mut m = TopicMessage::new(body.clone()).unwrap();
                if let Some(i) = spec.tag {
                    m = m.with_tag(Tag::new(TAGS[i]).unwrap());
                }
                if let Some(i) = spec.key {
                    m = m.with_sharding_key(KEYS[i]).unwrap();
                }
                let start = spec.delay.map(|d| now.saturating_add_signed(d));
                if let Some(s) = start {
                    m = m.with_start_deliver_time(s);
                }
                if let Some(secs) = spec.trans {
                    m = m.with_trans_check_immunity(TransCheckImmunity::new(secs).unwrap());
                }
                let result = self.core.publish(now, None, &t, m);
                if start.is_some_and(|s| s > now + self.cfg.max_schedule_ahead_ms) {
                    assert_eq!(result.unwrap_err().code, ErrorCode::InvalidArgument);
                    return;
                }
                let out = result.unwrap();
                self.model.sweep(&self.cfg);
                self.model.published += 1;
                self.model.msgs.push(MMsg {
                    id: out.message_id.clone(),
                    body,
                    tag: spec.tag.map(|i| TAGS[i].to_owned()),
                    partition: spec.key.map_or(String::new(), |i| KEYS[i].to_owned()),
                    publish_time: now,
                    start,
                    expire_at: None,
                });
                assert!(
                    self.model.msgs[..seq]
                        .iter()
                        .all(|m| m.id != out.message_id)
                );
                if let Some(secs) = spec.trans {
                    let check_at = now + u64::from(secs) * 1_000;
                    self.model.half.insert(
                        seq,
                        MHalf {
                            check_at,
                            pops: 0,
                            first: 0,
                            horizon: now + self.cfg.half_check_horizon_ms,
                        },
                    );
                    let handle = out.receipt_handle.expect("publish handle");
                    self.record(Scope::Half, seq, 0, check_at, handle.as_str());
                    assert!(!out.visible_now);
                } else {
                    assert!(out.receipt_handle.is_none());
                    let visible = self.model.fan_out(seq, &self.cfg);
                    assert_eq!(out.visible_now, visible);
                }
            }
            Op::Consume {
                group,
                orderly,
                filter,
                batch,
            } => {
                let kind = if *orderly {
                    ConsumeKind::Orderly
                } else {
                    ConsumeKind::Normal
                };
                let f: TagFilter = FILTERS[*filter].parse().unwrap();
                let got = self
                    .core
                    .consume(
                        now,
                        None,
                        &t,
                        &GroupId::new(GROUPS[*group]).unwrap(),
                        kind,
                        &f,
                        BatchSize::new(*batch).unwrap(),
                    )
                    .unwrap();
                self.model.sweep(&self.cfg);
                self.model.register(*group);
                let pending_before: BTreeMap<usize, MEntry> =
                    self.model.groups[group].entries.clone();
                if *orderly && !pending_before.is_empty() {
                    self.model.groups.entry(*group).or_default().orderly_index = true;
                }
                let want = self.model.consume(
                    *group,
                    *orderly,
                    FILTERS[*filter],
                    usize::from(*batch),
                    &self.cfg,
                );
                assert_eq!(
                    got.len(),
                    want.len(),
                    "consume {op:?}: got {got:?}, want {want:?}"
                );
                for (m, w) in got.iter().zip(&want) {
                    self.check_delivery(m, *w);
                    // Independent invariants: visible, not acked, matches the filter.
                    let e = &pending_before[&w.0];
                    assert!(e.visible_at <= now);
                    assert!(f.matches(m.tag.as_ref()));
                    let text = m.receipt_handle.to_string();
                    self.record(Scope::Group(*group), w.0, w.1, w.3, &text);
                }
                if *orderly {
                    // Per partition: in sequence order, starting at the partition's oldest
                    // pending message, and only from partitions with nothing in flight.
                    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
                    for w in &want {
                        let p = self.model.msgs[w.0].partition.as_str();
                        let older_pending = pending_before
                            .iter()
                            .filter(|(s, _)| **s < w.0 && self.model.msgs[**s].partition == p)
                            .filter(|(s, _)| self.model.groups[group].entries.contains_key(s))
                            .any(|(s, _)| !want.iter().any(|x| x.0 == *s));
                        assert!(!older_pending, "orderly delivery skipped an older message");
                        assert!(pending_before.iter().all(|(s, e)| {
                            self.model.msgs[*s].partition != p
                                || e.consumed == 0
                                || e.visible_at <= now
                        }));
                        if let Some(prev) = last.insert(p, w.0) {
                            assert!(prev < w.0);
                        }
                    }
                }
            }
            Op::Pop { filter, batch } => {
                let f: TagFilter = FILTERS[*filter].parse().unwrap();
                let got = self
                    .core
                    .consume(
                        now,
                        None,
                        &t,
                        &GroupId::new("GID_check").unwrap(),
                        ConsumeKind::Half,
                        &f,
                        BatchSize::new(*batch).unwrap(),
                    )
                    .unwrap();
                self.model.sweep(&self.cfg);
                let want = self
                    .model
                    .pop(FILTERS[*filter], usize::from(*batch), &self.cfg);
                assert_eq!(got.len(), want.len());
                for (m, w) in got.iter().zip(&want) {
                    self.check_delivery(m, *w);
                    let text = m.receipt_handle.to_string();
                    self.record(Scope::Half, w.0, w.1, w.3, &text);
                }
            }
            Op::Ack { group, picks } => {
                let texts: Vec<String> = picks.iter().map(|p| self.model.handle_text(p)).collect();
                let got = self
                    .core
                    .ack(
                        now,
                        None,
                        &t,
                        Some(&GroupId::new(GROUPS[*group]).unwrap()),
                        AckKind::Ack,
                        &texts,
                    )
                    .unwrap();
                self.model.sweep(&self.cfg);
                self.model.unblocked = false;
                let want: Vec<(String, ErrorCode)> = texts
                    .iter()
                    .filter_map(|text| self.model.ack_one(*group, text).map(|c| (text.clone(), c)))
                    .collect();
                if self.model.unblocked {
                    self.model.version += 1;
                }
                let got: Vec<(String, ErrorCode)> = got
                    .into_iter()
                    .map(|f| (f.receipt_handle, f.code))
                    .collect();
                assert_eq!(got, want);
            }
            Op::Resolve {
                commit,
                pick,
                with_group,
            } => {
                let text = self.model.handle_text(pick);
                let kind = if *commit {
                    AckKind::Commit
                } else {
                    AckKind::Rollback
                };
                let g = GroupId::new("GID_producer").unwrap();
                let got = self
                    .core
                    .ack(
                        now,
                        None,
                        &t,
                        with_group.then_some(&g),
                        kind,
                        std::slice::from_ref(&text),
                    )
                    .unwrap();
                self.model.sweep(&self.cfg);
                let want = self.model.resolve(&text, *commit, &self.cfg);
                assert_eq!(got.first().map(|f| f.code.clone()), want);
            }
        }
        self.model.forget_empty_indexes();
        self.compare_state();
    }

    fn compare_state(&self) {
        assert_eq!(self.core.now_ms(), self.model.now);
        assert_eq!(self.core.next_wakeup(), self.model.next_wakeup(&self.cfg));
        assert_eq!(
            self.core.topic_version(None, &self.topic),
            self.model.version
        );
        let stats = self.core.stats();
        let Some(ts) = stats.topics.first() else {
            assert_eq!(self.model.published, 0);
            return;
        };
        assert_eq!(ts.published, self.model.published);
        assert_eq!(ts.half, self.model.half.len() as u64);
        assert_eq!(ts.half_committed, self.model.committed);
        assert_eq!(ts.half_rolled_back, self.model.rolled_back);
        assert_eq!(ts.half_dropped_unresolved, self.model.dropped);
        // Held: pending in a group, or the message of a dead letter (until its retention).
        let held = (0..self.model.msgs.len())
            .filter(|s| {
                self.model.groups.values().any(|g| {
                    g.entries.contains_key(s)
                        || (g.dead_at.iter().any(|&(_, d)| d == *s)
                            && self.model.msgs[*s]
                                .expire_at
                                .is_some_and(|t| t > self.model.swept_at))
                })
            })
            .count();
        assert_eq!(ts.stored, held as u64);
        let names: Vec<&str> = ts.groups.iter().map(|g| g.group.as_str()).collect();
        let want: Vec<&str> = self.model.groups.keys().map(|&g| GROUPS[g]).collect();
        assert_eq!(names, want);
        for (gs, &g) in ts.groups.iter().zip(self.model.groups.keys()) {
            assert_eq!(*gs, self.model.group_stats(g));
        }
        self.check_peeks(ts);
    }

    /// Peeks and the admin listings agree with the model (through the stats compared above:
    /// as many messages in each state, with the model's bodies; each group listed with the
    /// same counters) and change nothing in the core.
    fn check_peeks(&self, ts: &mq_broker::TopicStats) {
        let before = self.core.clone();
        let listed: Vec<(String, Vec<GroupStats>)> = self
            .core
            .groups()
            .into_iter()
            .map(|g| (g.group, g.topics.into_iter().map(|t| t.stats).collect()))
            .collect();
        let want: Vec<(String, Vec<GroupStats>)> = ts
            .groups
            .iter()
            .map(|gs| (gs.group.clone(), vec![gs.clone()]))
            .collect();
        assert_eq!(
            listed, want,
            "the group listing is the topic's stats by group"
        );
        let now = self.core.now_ms();
        let peek = |group: Option<&GroupId>, state: PeekState| {
            let listed = self
                .core
                .peek(None, &self.topic, group, state, None, usize::MAX)
                .expect("peek");
            assert_eq!(listed.next, None, "one page lists every message");
            listed.messages
        };
        let half = peek(None, PeekState::Half);
        assert_eq!(half.len() as u64, ts.half);
        for gs in &ts.groups {
            let group = GroupId::new(gs.group.as_str()).unwrap();
            let counts = [
                (PeekState::Ready, gs.ready),
                (PeekState::InFlight, gs.in_flight),
                (PeekState::Delayed, gs.delayed),
                (PeekState::Dead, gs.dead_letters_kept),
            ];
            for (state, want) in counts {
                let got = peek(Some(&group), state);
                assert_eq!(got.len() as u64, want, "{state:?} of {}", gs.group);
                for m in &got {
                    assert_eq!(m.state, state);
                    // Found by id, the group's position is the state it was peeked under.
                    let found = self
                        .core
                        .find(None, &self.topic, Lookup::Id(&m.message_id), None, 1)
                        .expect("find")
                        .messages;
                    let position = found[0]
                        .groups
                        .iter()
                        .find(|p| p.group == gs.group)
                        .expect("the group's position");
                    assert_eq!(position.state, Some(state), "{}", m.message_id);
                    if let Some(body) = &m.body {
                        let mm = self
                            .model
                            .msgs
                            .iter()
                            .find(|mm| mm.id.as_str() == m.message_id);
                        assert_eq!(Some(body.as_str()), mm.map(|mm| mm.body.as_str()));
                    }
                    match state {
                        PeekState::Ready => assert!(m.next_visible_time <= Some(now)),
                        PeekState::InFlight | PeekState::Delayed => {
                            assert!(m.next_visible_time > Some(now));
                        }
                        PeekState::Dead
                        | PeekState::Half
                        | PeekState::Consumed
                        | PeekState::RolledBack => {}
                    }
                }
            }
        }
        assert!(self.core == before, "a peek changed the core");
    }

    /// Resolves every half message and consumes and acks everything, then checks that every
    /// message handed to a group left it by ack, filter, dead-lettering or retention.
    fn drain(&mut self) {
        for _ in 0..40 {
            // Commit every due half message through the handle of its latest pop.
            loop {
                let before = self.model.issued.len();
                self.step(&Op::Pop {
                    filter: 0,
                    batch: 1,
                });
                let Some(popped) = self.model.issued.get(before) else {
                    break;
                };
                let text = popped.text.clone();
                self.step(&Op::Resolve {
                    commit: true,
                    pick: Pick::Text(text),
                    with_group: false,
                });
            }
            for group in self.model.groups.keys().copied().collect::<Vec<_>>() {
                loop {
                    let before = self.model.issued.len();
                    self.step(&Op::Consume {
                        group,
                        orderly: false,
                        filter: 0,
                        batch: 4,
                    });
                    let picks: Vec<Pick> = self.model.issued[before..]
                        .iter()
                        .map(|h| Pick::Text(h.text.clone()))
                        .collect();
                    if picks.is_empty() {
                        break;
                    }
                    self.step(&Op::Ack { group, picks });
                }
            }
            let idle = self.model.half.is_empty()
                && self.model.groups.values().all(|g| g.entries.is_empty());
            if idle {
                break;
            }
            self.step(&Op::Advance(self.cfg.invisibility_ms));
            self.step(&Op::Maintain);
        }
        assert!(self.model.half.is_empty(), "half messages left after drain");
        for (g, mg) in &self.model.groups {
            assert!(mg.entries.is_empty(), "group {g} still holds messages");
            assert_eq!(mg.received, mg.gone, "group {g} lost messages");
        }
        for gs in self.core.stats().topics.iter().flat_map(|t| &t.groups) {
            assert_eq!((gs.ready, gs.in_flight, gs.delayed), (0, 0, 0));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn core_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
        }
        run.drain();
    }
}
