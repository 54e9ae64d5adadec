//! Half (transactional) messages of one topic (PROTOCOL §6.6).
//!
//! One pool per topic, shared by every group. A half message is first offered for a
//! transaction check at publish + `__TransCheckT`; each pop (`trans=pop`) hides it for the
//! check interval and issues a new handle. The publish handle is attempt 0, valid until the
//! first check time; pop handles are attempts 1, 2, … valid until the next check time. After
//! the horizon (counted from publish) an unresolved message is dropped.

use std::collections::BTreeSet;

use mq_proto::{ErrorCode, GroupId, ReceiptHandle, TagFilter};
use serde::{Deserialize, Serialize};

use super::SeqMap;
use super::config::CoreError;
use super::delivery::{Delivery, DeliveryHandle};
use super::group::{check_attempt, min_opt};
use super::handle::Token;
use super::store::StoredMessage;
use super::trace::{Event, TraceKind};

/// One unresolved half message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HalfEntry {
    /// The message (moves to the topic store on commit).
    pub(crate) message: StoredMessage,
    /// When it is (or becomes again) offered to `trans=pop`; also the expiry of the current
    /// handle.
    pub(crate) check_at: u64,
    /// Pops so far (the attempt of the current handle).
    pub(crate) pops: u32,
    /// Time of the first pop (meaningful once `pops > 0`).
    pub(crate) first_pop_time: u64,
    /// When it is dropped if still unresolved.
    pub(crate) horizon_at: u64,
}

/// Running totals of a half pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HalfCounters {
    /// Transactional messages published.
    pub(crate) published: u64,
    /// Pops (transaction checks) handed out.
    pub(crate) popped: u64,
    /// Committed.
    pub(crate) committed: u64,
    /// Rolled back.
    pub(crate) rolled_back: u64,
    /// Dropped unresolved at the horizon.
    pub(crate) dropped_unresolved: u64,
}

/// The half messages of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HalfPool {
    /// Scope id written into this pool's handles.
    pub(crate) scope: u64,
    /// Unresolved half messages by sequence number.
    pub(crate) entries: SeqMap<HalfEntry>,
    /// `(check_at, seq)`.
    pub(crate) by_time: BTreeSet<(u64, u64)>,
    /// `(horizon_at, seq)`.
    pub(crate) by_horizon: BTreeSet<(u64, u64)>,
    /// Running totals.
    pub(crate) counters: HalfCounters,
}

/// How a transaction is resolved: by the producer (a commit or rollback with a receipt
/// handle, PROTOCOL §6.6) or by the admin API (by message id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransactionResolution {
    /// Commit: the message becomes deliverable to the topic's groups.
    Commit,
    /// Roll back: the message is dropped (kept unheld for its trace, never delivered).
    Rollback,
}

impl HalfPool {
    /// An empty pool.
    pub(crate) fn new(scope: u64) -> Self {
        Self {
            scope,
            entries: SeqMap::default(),
            by_time: BTreeSet::new(),
            by_horizon: BTreeSet::new(),
            counters: HalfCounters::default(),
        }
    }

    /// Drops every unresolved half message; the number dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let dropped = self.entries.len();
        self.entries.clear();
        self.by_time.clear();
        self.by_horizon.clear();
        dropped
    }

    /// Stores a half message published at `now`; returns the publish handle.
    pub(crate) fn insert(
        &mut self,
        message: StoredMessage,
        now: u64,
        immunity_ms: u64,
        horizon_ms: u64,
    ) -> Result<ReceiptHandle, CoreError> {
        let seq = message.seq;
        let check_at = now.saturating_add(immunity_ms);
        let horizon_at = now.saturating_add(horizon_ms);
        let handle = Token {
            scope: self.scope,
            seq,
            attempt: 0,
            expiry: check_at,
        }
        .encode(&message.content.id)?;
        self.by_time.insert((check_at, seq));
        self.by_horizon.insert((horizon_at, seq));
        self.entries.insert(
            seq,
            HalfEntry {
                message,
                check_at,
                pops: 0,
                first_pop_time: 0,
                horizon_at,
            },
        );
        self.counters.published += 1;
        Ok(handle)
    }

    /// Transaction-check pop by `group` (the checker's, recorded in the trace): up to
    /// `batch` due half messages matching `filter` (others are left alone), each hidden for
    /// `interval_ms` with a new handle.
    pub(crate) fn pop(
        &mut self,
        now: u64,
        interval_ms: u64,
        group: &GroupId,
        filter: &TagFilter,
        batch: usize,
    ) -> Result<Vec<Delivery>, CoreError> {
        let due: Vec<u64> = self
            .by_time
            .range(..=(now, u64::MAX))
            .filter(|(_, seq)| {
                self.entries
                    .get(seq)
                    .is_some_and(|e| filter.matches(e.message.content.tag.as_ref()))
            })
            .map(|&(_, seq)| seq)
            .take(batch)
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for seq in due {
            let Some(entry) = self.entries.get_mut(&seq) else {
                continue;
            };
            let next = now.saturating_add(interval_ms);
            let attempt = entry.pops.saturating_add(1);
            let handle = Token {
                scope: self.scope,
                seq,
                attempt,
                expiry: next,
            }
            .render(&entry.message.content.id)?;
            self.by_time.remove(&(entry.check_at, seq));
            if entry.pops == 0 {
                entry.first_pop_time = now;
            }
            entry.pops = attempt;
            entry.check_at = next;
            self.by_time.insert((next, seq));
            entry.message.trace.push(Event::issued(
                TraceKind::Checked,
                now,
                group,
                self.scope,
                attempt,
                next,
            ));
            out.push(entry.message.delivery(
                DeliveryHandle::Issued(handle),
                next,
                entry.first_pop_time,
                attempt,
            ));
            self.counters.popped += 1;
        }
        Ok(out)
    }

    /// Commits or rolls back the half message named by `token` and returns it (see
    /// [`decide`](Self::decide)).
    pub(crate) fn resolve(
        &mut self,
        token: Token,
        now: u64,
        resolution: TransactionResolution,
    ) -> Result<StoredMessage, ErrorCode> {
        let entry = self
            .entries
            .get(&token.seq)
            .ok_or(ErrorCode::MessageNotExist)?;
        check_attempt(token, entry.pops, entry.check_at, now)?;
        self.decide(token.seq, now, resolution)
            .ok_or(ErrorCode::MessageNotExist)
    }

    /// Commits or rolls back the half message of sequence number `seq`, whatever its check
    /// state, and returns it (its trace says which; a rolled-back one is marked so);
    /// `None` when no such message waits for a decision.
    pub(crate) fn decide(
        &mut self,
        seq: u64,
        now: u64,
        resolution: TransactionResolution,
    ) -> Option<StoredMessage> {
        let mut message = self.remove(seq)?.message;
        match resolution {
            TransactionResolution::Commit => {
                self.counters.committed += 1;
                message.trace.push(Event::at(TraceKind::Committed, now));
            }
            TransactionResolution::Rollback => {
                self.counters.rolled_back += 1;
                message.rolled_back = true;
                message.trace.push(Event::at(TraceKind::RolledBack, now));
            }
        }
        Some(message)
    }

    /// Drops messages unresolved at their horizon; returns whether any was dropped.
    pub(crate) fn sweep(&mut self, now: u64) -> bool {
        let mut changed = false;
        while let Some(&(horizon, seq)) = self.by_horizon.first() {
            if horizon > now {
                break;
            }
            changed = true;
            if self.remove(seq).is_none() {
                self.by_horizon.pop_first();
            }
            self.counters.dropped_unresolved += 1;
        }
        changed
    }

    /// Whether some half message became due in `(after, now]`.
    pub(crate) fn became_visible(&self, after: u64, now: u64) -> bool {
        after < now
            && self
                .by_time
                .range((after.saturating_add(1), 0)..=(now, u64::MAX))
                .next()
                .is_some()
    }

    /// The next check time after `after`, or the next horizon drop.
    pub(crate) fn next_event_after(&self, after: u64) -> Option<u64> {
        let check = self
            .by_time
            .range((after.saturating_add(1), 0)..)
            .next()
            .map(|&(t, _)| t);
        let horizon = self.by_horizon.first().map(|&(t, _)| t);
        min_opt(check, horizon)
    }

    fn remove(&mut self, seq: u64) -> Option<HalfEntry> {
        let entry = self.entries.remove(&seq)?;
        self.by_time.remove(&(entry.check_at, seq));
        self.by_horizon.remove(&(entry.horizon_at, seq));
        Some(entry)
    }
}
