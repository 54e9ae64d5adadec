//! The deterministic broker core: every rule of PROTOCOL §6, no I/O and no clock.
//!
//! [`BrokerCore`] holds instances → topics → per-group consumption state. Every mutating call
//! takes `now_ms` (wall-clock epoch milliseconds); time never runs backwards inside the core
//! (an earlier `now_ms` than one already seen is treated as the latest one seen), except at
//! a [`reset`](BrokerCore::reset), which drops everything that was timed.
//!
//! # Model
//!
//! * A topic is keyed by (instance, name); `None` is the default instance.
//! * A group is registered on its first normal/orderly consume on a topic. It receives
//!   every message that enters the topic's queues after that: a normal or scheduled message
//!   when it is published, a transactional one when it is committed. Half-message pops,
//!   commits and rollbacks do not register groups (they are producer-side operations), nor
//!   do acks (no handle of a group that never consumed is valid), which create no topic
//!   either.
//! * A consume with a tag filter skips (treats as consumed, for that group) the visible
//!   messages it meets that do not match (PROTOCOL §6.5).
//! * Normal and orderly consumption of one group share one queue; orderly consumption adds
//!   partition blocking (see [`ConsumeKind::Orderly`] in [`BrokerCore::consume`]).
//!
//! # Long polling
//!
//! The core never waits; a server holds consume requests and re-asks the core. Two signals
//! tell it when re-asking can succeed:
//!
//! * [`BrokerCore::topic_version`] increases whenever something in a topic may have become
//!   consumable: a publish or commit visible now, an ack that unblocked an ordered partition,
//!   or, observed at the topic's next sweep (which every call on that topic and
//!   [`BrokerCore::maintain`] run), a message becoming visible through the passage of time,
//!   a dead-lettering or a retention trim.
//! * [`BrokerCore::next_wakeup`] (or [`BrokerCore::next_wakeup_for`] for one topic) is the
//!   earliest time at which the passage of time changes something. It may lie in the past,
//!   meaning "call [`maintain`](BrokerCore::maintain) now"; it never stays in the past after
//!   `maintain` ran at or after it, so a timer built on it never spins. It can move earlier
//!   after any `&mut` call, so re-read it after each one.
//!
//! A server can therefore run one timer task (`sleep until next_wakeup`, then
//! `maintain(now)`, then wake the waiters of every topic whose version changed) and let each
//! waiter sleep until its topic's version changes or its `waitseconds` deadline passes.
//!
//! # Receipt handles and ids
//!
//! Message ids are 32 upper-case hex characters, deterministic given
//! [`CoreConfig::id_seed`]. Receipt handles are `{MessageId}-{base64 token}`; the token names
//! the issuing group (or half pool), the message, the delivery attempt and the expiry, so an
//! ack resolves in O(log n). Any text is decoded defensively.
//!
//! # Example
//!
//! ```
//! use mq_broker::core::{BrokerCore, CoreConfig};
//! use mq_proto::{AckKind, BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
//!
//! let mut core = BrokerCore::new(CoreConfig::default());
//! let topic = TopicName::new("orders")?;
//! let group = GroupId::new("GID_billing")?;
//! let batch = BatchSize::new(16)?;
//!
//! // The group is registered by its first consume; it then gets later messages.
//! assert!(core.consume(0, None, &topic, &group, ConsumeKind::Normal, &TagFilter::All, batch)?.is_empty());
//! let published = core.publish(1_000, None, &topic, TopicMessage::new("order 42")?)?;
//! assert!(published.visible_now);
//!
//! let got = core.consume(2_000, None, &topic, &group, ConsumeKind::Normal, &TagFilter::All, batch)?;
//! assert_eq!(got[0].message_id, published.message_id);
//! assert_eq!(got[0].next_consume_time, 2_000 + 300_000);
//! assert_eq!(core.next_wakeup(), Some(302_000)); // the redelivery time
//!
//! let handles = vec![got[0].receipt_handle.to_string()];
//! let failures = core.ack(3_000, None, &topic, Some(&group), AckKind::Ack, &handles)?;
//! assert!(failures.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod call;
mod catalog;
mod config;
mod delivery;
mod group;
mod half;
mod handle;
mod orderly;
mod peek;
mod persist;
/// What a snapshot held that this build refuses (for `durable`'s error).
pub(crate) use persist::{Refused, take_refused};
mod replay;
mod seq_map;
mod stats;
mod store;
mod time_index;
mod topic;
mod topics;
mod trace;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use mq_proto::{
    AckKind, BatchSize, ConsumeKind, ErrorCode, GroupId, HandleFailure, InstanceId, Message,
    TagFilter, TopicMessage, TopicName,
};
use serde::{Deserialize, Serialize};

pub use call::{Call, Outcome};
pub use catalog::{GroupInfo, GroupOnTopic};
pub use config::{
    CoreConfig, CoreError, GroupSettings, MAX_INVISIBILITY_MS, PublishOutcome, TopicMessageType,
};
pub use delivery::Delivery;
pub use group::{DeadLetter, DeadLetterAction};
pub use half::TransactionResolution;
pub use peek::{
    BODY_PREVIEW_BYTES, FoundMessage, GroupPosition, LISTING_BUDGET_BYTES, Listing, Lookup, Page,
    PeekState, PeekedMessage,
};
pub use replay::OffsetReset;
pub use stats::{GroupStats, Stats, TopicStats};
pub use trace::{MAX_TRACE_EVENTS, MessageTrace, TraceEvent, TraceKind};

use group::{DeliverParams, Group};
use handle::Token;
pub(crate) use seq_map::SeqMap;
use store::StoredMessage;
use topic::Topic;
use topics::{TopicMut, Topics};

/// The broker's state machine. See the [module documentation](self) for the model and the
/// long-polling contract.
///
/// Two cores are equal when their whole states are (a replayed core equals the original).
/// The serde form is the snapshot format of the durable broker ([`crate::durable`]); it is
/// stable only within one version of this crate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerCore {
    config: CoreConfig,
    /// High half of every message id.
    id_prefix: u64,
    /// Next message sequence number.
    next_seq: u64,
    /// Next scope id (groups and half pools).
    next_scope: u64,
    /// Latest time seen.
    now: u64,
    /// How far the driving server's test clock was moved ahead, ms, as last recorded
    /// ([`record_clock_advance`](Self::record_clock_advance)). Never used by the core.
    clock_advance_ms: i64,
    topics: Topics,
    /// Groups created with settings (admin API, `--group`), by instance and id.
    #[serde(with = "persist::by_instance_name")]
    groups: BTreeMap<catalog::GroupKey, catalog::DeclaredGroup>,
}

/// Messages the core removed, to drop outside its lock ([`BrokerCore::take_retired`]).
pub struct Retired(Vec<StoredMessage>);

impl Retired {
    /// How many messages.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Retired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Retired").field(&self.0.len()).finish()
    }
}

impl fmt::Debug for BrokerCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerCore")
            .field("config", &self.config)
            .field("now", &self.now)
            .field("topics", &self.topics.len())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl BrokerCore {
    /// An empty core.
    pub fn new(config: CoreConfig) -> Self {
        let config = config.normalized();
        Self {
            id_prefix: handle::id_prefix(config.id_seed),
            config,
            next_seq: 0,
            next_scope: 1,
            now: 0,
            clock_advance_ms: 0,
            topics: Topics::default(),
            groups: BTreeMap::new(),
        }
    }

    /// The configuration in effect (after normalization).
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The latest time passed to the core, epoch ms.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Moves the core's clock to `now_ms` (never back) and does nothing else: no
    /// housekeeping runs until the next call. Replaying a journal uses it for calls that
    /// were refused as a whole, whose only effect was to move the clock.
    pub fn advance_clock(&mut self, now_ms: u64) {
        self.advance(now_ms);
    }

    /// How far the clock of the server driving this core had been moved ahead of its
    /// configured clock (a test clock, `POST /admin/clock`), ms, as last recorded with
    /// [`record_clock_advance`](Self::record_clock_advance); 0 for a new core and after a
    /// [`reset`](Self::reset). The core never reads it: it is kept with the state (journaled
    /// and snapshotted by [`crate::durable`]) so that a restarted broker's test clock goes
    /// on from where it was instead of from the system clock, which would leave it behind
    /// the times the state already holds.
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, Call, CoreConfig};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// core.record_clock_advance(3_601_000, 3_600_000);
    /// assert_eq!((core.now_ms(), core.clock_advance_ms()), (3_601_000, 3_600_000));
    /// // A reset drops every timed thing: the clock goes back with it.
    /// core.apply(2_000, Call::Reset)?;
    /// assert_eq!((core.now_ms(), core.clock_advance_ms()), (2_000, 0));
    /// # Ok::<(), mq_broker::core::CoreError>(())
    /// ```
    pub fn clock_advance_ms(&self) -> i64 {
        self.clock_advance_ms
    }

    /// Records that the driving server's clock now runs `advance_ms` ahead of its configured
    /// clock (see [`clock_advance_ms`](Self::clock_advance_ms)) and moves the core's clock to
    /// `now_ms` (never back). Nothing else changes: what came due runs at the next call
    /// ([`maintain`](Self::maintain)).
    pub fn record_clock_advance(&mut self, now_ms: u64, advance_ms: i64) {
        self.advance(now_ms);
        self.clock_advance_ms = advance_ms;
    }

    /// Replaces the timing and policy knobs for the calls that follow, keeping the id seed
    /// of this core (ids and receipt handles already issued must stay valid and unique).
    /// State already recorded keeps the times computed under the old settings: a message
    /// in flight stays invisible until its `NextConsumeTime`, a stored message keeps its
    /// retention deadline. A durable broker restarted with new settings uses it after
    /// recovery.
    pub fn reconfigure(&mut self, config: CoreConfig) {
        let id_seed = self.config.id_seed;
        self.config = CoreConfig { id_seed, ..config }.normalized();
        // A lowered byte bound holds at once, and the topics' next events depend on the
        // retention settings: every topic is settled again.
        self.topics.reindex(&self.config);
    }

    /// Builds the index of the topics' next events, which a core read from a snapshot lacks
    /// (until then [`next_wakeup`](Self::next_wakeup) and [`maintain`](Self::maintain)
    /// look at every topic).
    pub(crate) fn reindex(&mut self) {
        self.topics.reindex(&self.config);
    }

    /// Applies one [`Call`] at `now_ms`: the one entry the server, the durable broker's
    /// journal replay and tests share. Each arm is the positional method of the same name
    /// ([`publish`](Self::publish), [`consume`](Self::consume), [`ack`](Self::ack),
    /// [`declare_topic`](Self::declare_topic), [`maintain`](Self::maintain)); a declaration
    /// also moves the clock to `now_ms`, and a reset sets it to `now_ms` (see
    /// [`reset`](Self::reset)).
    ///
    /// # Errors
    ///
    /// The [`CoreError`] of the call refused as a whole (see each method).
    pub fn apply(&mut self, now_ms: u64, call: Call) -> Result<Outcome, CoreError> {
        match call {
            Call::Publish {
                instance,
                topic,
                message,
                producer,
            } => self
                .publish_signed(now_ms, instance.as_ref(), &topic, message, producer)
                .map(Outcome::Published),
            Call::Consume {
                instance,
                topic,
                group,
                kind,
                filter,
                batch,
                wait: _,
            } => self
                .deliver(
                    now_ms,
                    (instance.as_ref(), &topic, &group),
                    kind,
                    &filter,
                    batch,
                )
                .map(Outcome::Delivered),
            Call::Ack {
                instance,
                topic,
                group,
                kind,
                handles,
            } => self
                .ack(
                    now_ms,
                    instance.as_ref(),
                    &topic,
                    group.as_ref(),
                    kind,
                    &handles,
                )
                .map(Outcome::Settled),
            Call::DeclareTopic { instance, topic } => {
                self.advance(now_ms);
                self.declare_topic(instance.as_ref(), &topic);
                Ok(Outcome::Done)
            }
            Call::Maintain => {
                self.maintain(now_ms);
                Ok(Outcome::Done)
            }
            Call::Purge { instance, topic } => self
                .purge(now_ms, instance.as_ref(), &topic)
                .map(|messages| Outcome::Purged { messages }),
            Call::Reset => {
                self.reset(now_ms);
                Ok(Outcome::Done)
            }
            Call::CreateTopic {
                instance,
                topic,
                message_type,
            } => {
                self.create_topic(now_ms, instance.as_ref(), &topic, message_type);
                Ok(Outcome::Done)
            }
            Call::DeleteTopic { instance, topic } => self
                .delete_topic(now_ms, instance.as_ref(), &topic)
                .map(|messages| Outcome::Deleted { messages }),
            Call::CreateGroup {
                instance,
                group,
                topics,
                settings,
            } => self
                .create_group(now_ms, instance.as_ref(), &group, &topics, settings)
                .map(|()| Outcome::Done),
            Call::DeadLetters {
                instance,
                topic,
                group,
                message_id,
                action,
            } => self
                .take_dead_letters(
                    now_ms,
                    instance.as_ref(),
                    &topic,
                    &group,
                    message_id.as_deref(),
                    action,
                )
                .map(|messages| match action {
                    DeadLetterAction::Resend => Outcome::Resent { messages },
                    DeadLetterAction::Delete => Outcome::Deleted { messages },
                }),
            Call::ResetOffset {
                instance,
                topic,
                group,
                since_ms,
            } => self
                .reset_offset(now_ms, instance.as_ref(), &topic, &group, since_ms)
                .map(Outcome::OffsetReset),
            Call::DeleteGroup { instance, group } => self
                .delete_group(now_ms, instance.as_ref(), &group)
                .map(|messages| Outcome::Deleted { messages }),
            Call::DecideHalf {
                instance,
                topic,
                message_id,
                resolution,
            } => self
                .decide_half(now_ms, instance.as_ref(), &topic, &message_id, resolution)
                .map(|()| Outcome::Done),
        }
    }

    /// Drops every message of a topic — stored, pending or in flight in each group, dead
    /// letters, half messages — keeping the topic and its groups; returns how many messages
    /// (stored and half) were dropped. Receipt handles of dropped messages answer
    /// `MessageNotExist` afterwards.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic.
    pub fn purge(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
    ) -> Result<u64, CoreError> {
        self.advance(now_ms);
        self.topics
            .get_mut(&(instance.cloned(), topic.clone()), &self.config)
            .map(|mut t| t.purge())
            .ok_or_else(|| CoreError::topic_not_exist(topic))
    }

    /// Forgets every message, group position and counter (for test suites): auto-created
    /// topics go, declared and created topics stay, empty, with their message types;
    /// created groups stay with their settings, registered again on the topics they were
    /// created on (an auto-created one among them comes back, empty). Ids and handle scopes
    /// keep counting up, so no receipt handle issued before the reset settles anything after
    /// it.
    ///
    /// The core's clock is set to `now_ms` even when that is earlier than the latest time
    /// seen, and the recorded [clock advance](Self::clock_advance_ms) returns to 0: nothing
    /// timed survives a reset (messages, deliveries, handles, checks, traces), so a server
    /// whose test clock was moved ahead resets it to the system clock together with the
    /// state, and a delay published after the reset counts from the real time.
    pub fn reset(&mut self, now_ms: u64) {
        self.now = now_ms;
        self.clock_advance_ms = 0;
        let now = now_ms;
        self.topics.retain(|_, t| t.declared);
        let next_scope = &mut self.next_scope;
        self.topics.for_each_mut(&self.config, |_, t| {
            let version = t.version + 1;
            let message_type = t.message_type;
            *t = Topic::new(true, *next_scope, now);
            t.version = version;
            t.message_type = message_type;
            *next_scope += 1;
        });
        for g in self.groups.values_mut() {
            g.created_at = g.created_at.min(now);
        }
        self.register_declared_groups(now);
    }

    /// Declares a topic: it exists from now on even when
    /// [`auto_create_topics`](CoreConfig::auto_create_topics) is off. Declaring an existing
    /// topic only marks it declared.
    pub fn declare_topic(&mut self, instance: Option<&InstanceId>, topic: &TopicName) {
        let key = (instance.cloned(), topic.clone());
        let (next_scope, now) = (&mut self.next_scope, self.now);
        let Ok(mut t) = self.topics.get_or_try_insert(key, &self.config, || {
            let scope = *next_scope;
            *next_scope += 1;
            Ok::<_, std::convert::Infallible>(Topic::new(true, scope, now))
        });
        t.declared = true;
    }

    /// Whether a topic exists (declared or auto-created by an earlier call).
    pub fn topic_exists(&self, instance: Option<&InstanceId>, topic: &TopicName) -> bool {
        self.topics
            .contains_key(&(instance.cloned(), topic.clone()))
    }

    /// Publishes a message (PROTOCOL §6.6, §6.7, §6.9).
    ///
    /// * Size limits are checked with [`TopicMessage::check_limits`] → `InvalidArgument`.
    /// * `__STARTDELIVERTIME` more than [`max_schedule_ahead_ms`](CoreConfig::max_schedule_ahead_ms)
    ///   ahead → `InvalidArgument`; at or before `now` the message is visible at once.
    /// * A transactional message goes to the topic's half pool and the outcome carries its
    ///   publish handle.
    /// * Unknown topic without auto-creation → `TopicNotExist`.
    /// * A message of another type than the topic's
    ///   ([`create_topic`](Self::create_topic)) → `InvalidArgument`.
    ///
    /// # Errors
    ///
    /// [`CoreError`] with the service's code as listed above (`InvalidArgument`,
    /// `TopicNotExist`); the state is unchanged then, but the clock moved to `now_ms`.
    pub fn publish(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        message: TopicMessage,
    ) -> Result<PublishOutcome, CoreError> {
        self.publish_by(now_ms, instance, topic, message, None)
    }

    /// [`publish`](Self::publish), recording `producer` (the AccessKey id that signed the
    /// request) in the message's [trace](Self::trace).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_by(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        message: TopicMessage,
        producer: Option<&str>,
    ) -> Result<PublishOutcome, CoreError> {
        self.publish_signed(now_ms, instance, topic, message, producer.map(Arc::from))
    }

    /// [`publish_by`](Self::publish_by) with the AccessKey id shared (what
    /// [`Call::Publish`] carries), so the trace keeps it without a copy.
    fn publish_signed(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        message: TopicMessage,
        producer: Option<Arc<str>>,
    ) -> Result<PublishOutcome, CoreError> {
        let now = self.advance(now_ms);
        message
            .check_limits()
            .map_err(|e| CoreError::invalid(e.to_string()))?;
        if let Some(at) = message.start_deliver_time() {
            let limit = now.saturating_add(self.config.max_schedule_ahead_ms);
            if at > limit {
                return Err(CoreError::invalid(format!(
                    "__STARTDELIVERTIME {at} is more than {} ms ahead",
                    self.config.max_schedule_ahead_ms
                )));
            }
        }
        let config = &self.config;
        let mut t = use_topic(
            &mut self.topics,
            &mut self.next_scope,
            config,
            now,
            instance,
            topic,
        )?;
        let t: &mut Topic = &mut t;
        if !t.message_type.accepts(&message) {
            return Err(CoreError::invalid(format!(
                "topic {topic} takes {} messages; this one is {}",
                t.message_type.as_str(),
                TopicMessageType::of_message(&message).as_str()
            )));
        }
        t.sweep(now, config);
        let seq = self.next_seq;
        let id = handle::message_id(self.id_prefix, seq);
        self.next_seq += 1;
        t.published += 1;
        let stored = StoredMessage::new(seq, id.clone(), &message, now, producer);
        let body_md5 = stored.content.body_md5.as_str().to_owned();
        if let Some(immunity) = message.trans_check_immunity() {
            let handle = t.half.insert(
                stored,
                now,
                u64::from(immunity.get()).saturating_mul(1_000),
                config.half_check_horizon_ms,
            )?;
            return Ok(PublishOutcome {
                message_id: id,
                body_md5,
                receipt_handle: Some(handle),
                visible_now: false,
            });
        }
        let visible_at = stored.visible_from(now);
        let receivers = t.fan_out(stored, now, visible_at, config);
        let visible_now = receivers > 0 && visible_at <= now;
        if visible_now {
            t.version += 1;
        }
        Ok(PublishOutcome {
            message_id: id,
            body_md5,
            receipt_handle: None,
            visible_now,
        })
    }

    /// Consumes up to `batch` visible messages; an empty vector means nothing is visible now
    /// (the server answers `MessageNotExist` once its long-poll wait is over).
    ///
    /// * [`ConsumeKind::Normal`]: visible messages of the group in order of the time they
    ///   became visible, each hidden for [`invisibility_ms`](CoreConfig::invisibility_ms).
    ///   Redeliveries carry a new handle, `ConsumedTimes` + 1 and the same id, publish time
    ///   and first consume time. A message whose [`max_deliveries`](CoreConfig::max_deliveries)-th
    ///   delivery expires unacked is dead-lettered instead of being delivered again.
    /// * [`ConsumeKind::Orderly`]: the same queue, partitioned by `__SHARDINGKEY` ("" when
    ///   absent); per partition strictly in publish order; a partition with a delivered,
    ///   unacked, still invisible message (or whose oldest message is not yet visible) is
    ///   blocked. Invisibility is [`order_invisibility_ms`](CoreConfig::order_invisibility_ms).
    ///   A batch may mix partitions.
    /// * [`ConsumeKind::Half`]: due half messages of the topic (any group may pop; the group
    ///   is not registered), each hidden for
    ///   [`half_check_interval_ms`](CoreConfig::half_check_interval_ms) with a new handle.
    ///   The filter only selects; it skips nothing.
    ///
    /// # Errors
    ///
    /// [`CoreError`] `TopicNotExist` for an unknown topic when topics are not created on
    /// first use.
    #[allow(clippy::too_many_arguments)]
    pub fn consume(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: &GroupId,
        kind: ConsumeKind,
        filter: &TagFilter,
        batch: BatchSize,
    ) -> Result<Vec<Message>, CoreError> {
        let found = self.deliver(now_ms, (instance, topic, group), kind, filter, batch)?;
        Ok(found.into_iter().map(Delivery::into_message).collect())
    }

    /// [`consume`](Self::consume) as [`apply`](Self::apply) answers it: the deliveries
    /// share the stored text (see [`Delivery`]). `at`: the instance, topic and group.
    fn deliver(
        &mut self,
        now_ms: u64,
        at: (Option<&InstanceId>, &TopicName, &GroupId),
        kind: ConsumeKind,
        filter: &TagFilter,
        batch: BatchSize,
    ) -> Result<Vec<Delivery>, CoreError> {
        let (instance, topic, group) = at;
        let now = self.advance(now_ms);
        let settings = match kind {
            ConsumeKind::Half => GroupSettings::default(),
            ConsumeKind::Normal | ConsumeKind::Orderly => self.group_settings(instance, group),
        };
        let config = &self.config;
        let mut t = use_topic(
            &mut self.topics,
            &mut self.next_scope,
            config,
            now,
            instance,
            topic,
        )?;
        let t: &mut Topic = &mut t;
        t.sweep(now, config);
        let batch = usize::from(batch.get());
        let (invisibility_ms, orderly) = match kind {
            ConsumeKind::Half => {
                return t
                    .half
                    .pop(now, config.half_check_interval_ms, group, filter, batch);
            }
            ConsumeKind::Normal => (config.invisibility_ms, false),
            ConsumeKind::Orderly => (config.order_invisibility_ms, true),
        };
        let params = DeliverParams {
            group,
            now,
            invisibility_ms: settings.invisibility_ms.unwrap_or(invisibility_ms),
            max_deliveries: settings.max_deliveries.unwrap_or(config.max_deliveries),
        };
        let g = use_group(&mut t.groups, &mut self.next_scope, now, group);
        if orderly {
            g.consume_orderly(&mut t.store, filter, batch, params)
        } else {
            g.consume_normal(&mut t.store, filter, batch, params)
        }
    }

    /// Acknowledges deliveries ([`AckKind::Ack`], requires `group`), or commits / rolls back
    /// half messages ([`AckKind::Commit`] / [`AckKind::Rollback`]; `group` is ignored and may
    /// be `None`, as the Go SDK sends an empty one).
    ///
    /// Each handle is processed on its own; the result lists the failed ones (PROTOCOL §3.6):
    /// `MessageNotExist` for a handle that expired, was superseded by a redelivery, or whose
    /// message is gone (acked, resolved, dead-lettered, trimmed); `ReceiptHandleError` for
    /// text that is not a handle of this group (or, for commit/rollback, of this topic's
    /// half pool), including handles of other groups, topics or instances.
    ///
    /// Errors for the whole request: no handles → `MissingReceiptHandle`; more than
    /// [`HandleBatch::MAX`](mq_proto::HandleBatch::MAX) or no group for an ack → `InvalidArgument`; unknown topic →
    /// `TopicNotExist`.
    ///
    /// # Errors
    ///
    /// [`CoreError`] for the whole request as listed above; per-handle refusals are the
    /// `Ok` list of [`HandleFailure`]s.
    pub fn ack(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: Option<&GroupId>,
        kind: AckKind,
        handles: &[String],
    ) -> Result<Vec<HandleFailure>, CoreError> {
        let now = self.advance(now_ms);
        if handles.is_empty() {
            return Err(CoreError::from_code(ErrorCode::MissingReceiptHandle));
        }
        if handles.len() > mq_proto::HandleBatch::MAX {
            return Err(CoreError::invalid(format!(
                "at most {} receipt handles per request, got {}",
                mq_proto::HandleBatch::MAX,
                handles.len()
            )));
        }
        if kind == AckKind::Ack && group.is_none() {
            return Err(CoreError::invalid("a consumer group is required to ack"));
        }
        let config = &self.config;
        let prefix = self.id_prefix;
        let issued = self.next_seq;
        let Some(mut t) = self
            .topics
            .get_mut(&(instance.cloned(), topic.clone()), config)
        else {
            // No handle of a topic that does not exist is valid, and a refused call leaves
            // nothing behind: no topic is created for it.
            if !config.auto_create_topics {
                return Err(CoreError::topic_not_exist(topic));
            }
            return Ok(handle_errors(handles));
        };
        let t: &mut Topic = &mut t;
        t.sweep(now, config);
        let decode = |text: &String| Token::decode(text, prefix).filter(|token| token.seq < issued);
        let mut failures = Vec::new();
        match (kind, group) {
            (AckKind::Ack, Some(group)) => {
                // Acks do not register groups: a group that never consumed here holds no
                // message and no handle of it is valid.
                let Some(g) = t.groups.get_mut(group) else {
                    return Ok(handle_errors(handles));
                };
                let mut unblocked = false;
                for text in handles {
                    // The usual ack names its message's current delivery: its token is
                    // known from the group's entry, and the text is compared with it
                    // rather than decoded (`decode_expecting`: the same answer).
                    let current = |seq| {
                        g.entries.get(&seq).map(|e| Token {
                            scope: g.scope,
                            seq,
                            attempt: e.consumed_times,
                            expiry: e.visible_at,
                        })
                    };
                    let token = Token::decode_expecting(text, prefix, current)
                        .filter(|token| token.seq < issued);
                    let result = match token {
                        Some(token) if token.scope == g.scope && token.attempt > 0 => {
                            // Only an existing partition index can have an orderly
                            // consumer waiting on it (see `orderly.rs`).
                            let partition = (!g.partitions.is_empty())
                                .then(|| g.entries.get(&token.seq))
                                .flatten()
                                .map(|e| e.partition.clone());
                            let result = g.ack(&mut t.store, token, now, group);
                            if result.is_ok()
                                && partition.is_some_and(|p| g.partition_ready(&p, now))
                            {
                                unblocked = true;
                            }
                            result
                        }
                        _ => Err(ErrorCode::ReceiptHandleError),
                    };
                    if let Err(code) = result {
                        failures.push(HandleFailure::new(text.as_str(), code));
                    }
                }
                if unblocked {
                    t.version += 1;
                }
            }
            (AckKind::Ack, None) => {
                return Err(CoreError::invalid("a consumer group is required to ack"));
            }
            (AckKind::Commit | AckKind::Rollback, _) => {
                let resolution = if kind == AckKind::Commit {
                    TransactionResolution::Commit
                } else {
                    TransactionResolution::Rollback
                };
                for text in handles {
                    let result = match decode(text) {
                        Some(token) if token.scope == t.half.scope => {
                            t.half.resolve(token, now, resolution)
                        }
                        _ => Err(ErrorCode::ReceiptHandleError),
                    };
                    match result {
                        Ok(message) => t.take_resolved(message, now, config),
                        Err(code) => failures.push(HandleFailure::new(text.as_str(), code)),
                    }
                }
            }
        }
        Ok(failures)
    }

    /// Commits or rolls back a waiting half message by its message id (the admin API's
    /// decision, ONS console's "commit / roll back" of a transactional message), whatever
    /// its check state: exactly what a commit or rollback with its current receipt handle
    /// does (PROTOCOL §6.6) — a committed message goes to the topic's groups, a rolled-back
    /// one is never delivered; its trace records `committed` / `rolled_back`. Handles
    /// issued for it answer `MessageNotExist` afterwards.
    ///
    /// # Errors
    ///
    /// `TopicNotExist` for an unknown topic; `MessageNotExist` when `message_id` is not a
    /// half message of the topic waiting for a decision (never published here, already
    /// decided, or dropped unresolved at the check horizon).
    ///
    /// ```
    /// use mq_broker::core::{BrokerCore, CoreConfig, TransactionResolution};
    /// use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName, TransCheckImmunity};
    ///
    /// let mut core = BrokerCore::new(CoreConfig::default());
    /// let (t, g) = (TopicName::new("T")?, GroupId::new("GID_a")?);
    /// let consume = |core: &mut BrokerCore, now| {
    ///     core.consume(now, None, &t, &g, ConsumeKind::Normal, &TagFilter::All, BatchSize::MAX)
    /// };
    /// consume(&mut core, 0)?;
    /// let half = TopicMessage::new("paid")?.with_trans_check_immunity(TransCheckImmunity::new(10)?);
    /// let id = core.publish(1_000, None, &t, half)?.message_id;
    /// core.decide_half(2_000, None, &t, id.as_str(), TransactionResolution::Commit)?;
    /// assert_eq!(consume(&mut core, 2_000)?[0].body, "paid");
    /// // Decided: no longer waiting.
    /// let again = core.decide_half(3_000, None, &t, id.as_str(), TransactionResolution::Rollback);
    /// assert_eq!(again.unwrap_err().code, mq_proto::ErrorCode::MessageNotExist);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decide_half(
        &mut self,
        now_ms: u64,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        message_id: &str,
        resolution: TransactionResolution,
    ) -> Result<(), CoreError> {
        let now = self.advance(now_ms);
        let config = &self.config;
        let mut t = self
            .topics
            .get_mut(&(instance.cloned(), topic.clone()), config)
            .ok_or_else(|| CoreError::topic_not_exist(topic))?;
        let t: &mut Topic = &mut t;
        t.sweep(now, config);
        let message = handle::message_seq(message_id, self.id_prefix)
            .and_then(|seq| t.half.decide(seq, now, resolution))
            .ok_or_else(|| {
                CoreError::new(
                    ErrorCode::MessageNotExist,
                    format!(
                        "{message_id} is not a half message of {topic} waiting for a commit or rollback"
                    ),
                )
            })?;
        t.take_resolved(message, now, config);
        Ok(())
    }

    /// The messages the calls since the last take removed from the store (trimmed by
    /// retention, purged, …), for the caller to drop after it let go of the lock it holds
    /// the core with: freeing a message's body, properties and trace is a good part of a
    /// publish's time in the core, for which the other workers would wait. At most 256 wait
    /// between takes (more are dropped at once), so a caller that never takes them holds a
    /// bounded number.
    pub fn take_retired(&mut self) -> Retired {
        Retired(self.topics.take_retired())
    }

    /// The earliest time at which the passage of time changes something in any topic (see
    /// the [module documentation](self)). `None` when nothing is pending.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.topics.next_event(&self.config)
    }

    /// [`next_wakeup`](Self::next_wakeup) restricted to one topic.
    pub fn next_wakeup_for(&self, instance: Option<&InstanceId>, topic: &TopicName) -> Option<u64> {
        self.topics
            .get(&(instance.cloned(), topic.clone()))
            .and_then(|t| t.next_event(&self.config))
    }

    /// The change counter of a topic (0 for an unknown topic); see the
    /// [module documentation](self).
    pub fn topic_version(&self, instance: Option<&InstanceId>, topic: &TopicName) -> u64 {
        self.topics
            .get(&(instance.cloned(), topic.clone()))
            .map_or(0, |t| t.version)
    }

    /// The topics [`maintain`](Self::maintain) at `now_ms` would sweep: those with an
    /// event due then (the only ones whose [`topic_version`](Self::topic_version) it can
    /// move).
    pub(crate) fn due_topics(&self, now_ms: u64) -> Vec<(Option<InstanceId>, TopicName)> {
        self.topics.due_at(self.now.max(now_ms))
    }

    /// Runs the housekeeping due at `now_ms` on every topic with something due then
    /// (found in O(log topics), see [`next_wakeup`](Self::next_wakeup)): retention trimming,
    /// half-message horizon drops, dead-lettering of messages whose last delivery expired,
    /// and version bumps for messages that became visible. Idempotent.
    pub fn maintain(&mut self, now_ms: u64) {
        let now = self.advance(now_ms);
        // A topic with nothing due has nothing to do: only the ones due are swept.
        for key in self.topics.due_at(now) {
            if let Some(mut t) = self.topics.get_mut(&key, &self.config) {
                t.sweep(now, &self.config);
            }
        }
    }

    /// Counters of every topic and group as of [`now_ms`](Self::now_ms) (reflecting
    /// housekeeping up to each topic's last sweep). Costs O(pending messages).
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            at_ms: self.now,
            ..Stats::default()
        };
        for ((instance, name), t) in self.topics.iter() {
            let ts = t.stats(
                instance.as_ref().map(|i| i.as_str().to_owned()),
                name.as_str().to_owned(),
                self.now,
            );
            stats.published += ts.published;
            stats.acked += ts.groups.iter().map(|g| g.acked).sum::<u64>();
            stats.topics.push(ts);
        }
        stats
    }

    /// The dead-letter list of a group, oldest first (empty for unknown topics or groups).
    pub fn dead_letters(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        group: &GroupId,
    ) -> Vec<DeadLetter> {
        self.topics
            .get(&(instance.cloned(), topic.clone()))
            .and_then(|t| t.groups.get(group))
            .map(|g| g.dead_letters.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Moves the clock forward (never back) and returns the effective time.
    fn advance(&mut self, now_ms: u64) -> u64 {
        self.now = self.now.max(now_ms);
        self.now
    }
}

/// The topic for an operation, created on first use when the configuration allows it.
fn use_topic<'a>(
    topics: &'a mut Topics,
    next_scope: &mut u64,
    config: &'a CoreConfig,
    now: u64,
    instance: Option<&InstanceId>,
    topic: &TopicName,
) -> Result<TopicMut<'a>, CoreError> {
    topics.get_or_try_insert((instance.cloned(), topic.clone()), config, || {
        if !config.auto_create_topics {
            return Err(CoreError::topic_not_exist(topic));
        }
        let scope = *next_scope;
        *next_scope += 1;
        Ok(Topic::new(false, scope, now))
    })
}

/// Every handle of `handles` refused as not one of the group's (`ReceiptHandleError`).
fn handle_errors(handles: &[String]) -> Vec<HandleFailure> {
    handles
        .iter()
        .map(|text| HandleFailure::new(text.as_str(), ErrorCode::ReceiptHandleError))
        .collect()
}

/// The group for a consume, registered on first use.
fn use_group<'a>(
    groups: &'a mut BTreeMap<GroupId, Group>,
    next_scope: &mut u64,
    now: u64,
    group: &GroupId,
) -> &'a mut Group {
    groups.entry(group.clone()).or_insert_with(|| {
        let scope = *next_scope;
        *next_scope += 1;
        Group::new(scope, now)
    })
}
