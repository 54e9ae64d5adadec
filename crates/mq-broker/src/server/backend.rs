//! What the server serves calls with: the built-in core ([`LocalBackend`], in memory or
//! journaled) or, with the `rocketmq` feature, the gateway onto an Apache RocketMQ 5
//! cluster. Authentication, limits and the long-poll budget ([`Waiting`]) stay in the
//! server; a backend gets a parsed [`Call`] and returns its [`Outcome`] or the protocol's
//! error.

use super::admin::not_supported;
use super::local::LocalBackend;
use super::state::{PollSlot, Shared};
use crate::core::{Call, Outcome, Stats};
use mq_proto::wire::error::RequestError;
use std::time::Instant;
use tokio::sync::watch;

/// Which of the [`Stats`] counters a backend keeps ([`Backend::counted`]).
pub(super) enum Counted {
    /// Every one.
    All,
    /// Only these: JSON fields of a topic and of a group in `/stats`, and metric families
    /// (without the `mq_` prefix) in `/metrics`.
    #[cfg_attr(not(feature = "rocketmq"), allow(dead_code))]
    Only {
        topic_fields: &'static [&'static str],
        group_fields: &'static [&'static str],
        metric_families: &'static [&'static str],
    },
}

impl Counted {
    /// Whether the metric family `name` (without the `mq_` prefix) is kept.
    pub(super) fn family(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only {
                metric_families, ..
            } => metric_families.contains(&name),
        }
    }

    /// Leaves out of a `/stats` document's topics and groups the fields not kept.
    pub(super) fn filter_stats(&self, doc: &mut serde_json::Value) {
        let Self::Only {
            topic_fields,
            group_fields,
            ..
        } = self
        else {
            return;
        };
        let Some(topics) = doc.get_mut("topics").and_then(|t| t.as_array_mut()) else {
            return;
        };
        for topic in topics.iter_mut().filter_map(|t| t.as_object_mut()) {
            topic.retain(|k, _| topic_fields.contains(&k.as_str()));
            let groups = topic.get_mut("groups").and_then(|g| g.as_array_mut());
            for group in groups
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_object_mut())
            {
                group.retain(|k, _| group_fields.contains(&k.as_str()));
            }
        }
    }
}

/// The backend a server runs on.
pub(super) enum Backend {
    /// The built-in core.
    Local(std::sync::Arc<LocalBackend>),
    /// The gateway onto a RocketMQ 5 cluster.
    #[cfg(feature = "rocketmq")]
    RocketMq(Box<crate::gateway::Gateway>),
}

impl Backend {
    /// Serves one call; a consume may wait within `waiting`.
    pub(super) async fn serve(
        &self,
        call: Call,
        waiting: Waiting<'_>,
    ) -> Result<Outcome, RequestError> {
        match self {
            Self::Local(b) => b.serve(call, waiting).await,
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(g) => g.serve(call, waiting).await,
        }
    }

    /// Whether the backend can serve calls (`GET /ready`): the built-in core once started,
    /// unless its journal (`--data-dir`) stopped after a storage failure (a restart is
    /// needed); the gateway when its engine answers. `Err` says why not (one line).
    pub(super) async fn ready(&self) -> Result<(), &'static str> {
        match self {
            Self::Local(b) if b.ready() => Ok(()),
            Self::Local(_) => {
                Err("not ready: the journal stopped after a storage failure; restart the broker\n")
            }
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(g) if g.ready().await => Ok(()),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err("not ready: the backend does not answer\n"),
        }
    }

    /// Which counters of [`Stats`] this backend keeps: all, or (the gateway, whose cluster
    /// holds the messages) only what passes through it. `/stats` and `/metrics` leave the
    /// others out rather than show them as 0.
    pub(super) fn counted(&self) -> Counted {
        match self {
            Self::Local(_) => Counted::All,
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Counted::Only {
                topic_fields: &["instance", "topic", "declared", "published", "groups"],
                group_fields: &["group", "delivered", "acked", "filtered"],
                metric_families: &[
                    "topic_published",
                    "group_delivered",
                    "group_acked",
                    "group_filtered",
                ],
            },
        }
    }

    /// The journal's commit counts (built-in core with `--data-dir`), for `/metrics`.
    pub(super) fn commit_metrics(&self) -> Option<&crate::durable::CommitMetrics> {
        match self {
            Self::Local(b) => b.commit_metrics(),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => None,
        }
    }

    /// Counters for `GET /stats` and [`Broker::stats`](super::Broker::stats).
    pub(super) fn stats(&self) -> Stats {
        match self {
            Self::Local(b) => b.stats(),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(g) => g.stats(),
        }
    }

    /// Moves the test clock forward by `ms`: what came due happens now; durable with
    /// `--data-dir`. `test_clock`: whether the broker was started with `--test-clock`.
    ///
    /// # Errors
    ///
    /// The journal's failure; `NotSupported` without a test clock, and on the gateway
    /// (refused at start with a test clock: the cluster keeps its own time).
    pub(super) async fn advance_clock(
        &self,
        ms: u64,
        test_clock: bool,
    ) -> Result<(), RequestError> {
        match self {
            Self::Local(_) if !test_clock => Err(not_supported(
                "the clock moves only on a broker started with --test-clock",
            )),
            Self::Local(b) => b.advance_clock(ms).await,
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err(not_supported(
                "a test clock applies to the built-in backend; the RocketMQ cluster keeps its own time",
            )),
        }
    }

    /// The settings of a group created with its own (the broker's for any other): what an
    /// update of the group keeps when it does not pass them. The gateway's engine keeps no
    /// such settings of ours (they are not mapped): the broker's.
    pub(super) fn group_settings(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        group: &mq_proto::GroupId,
    ) -> crate::core::GroupSettings {
        match self {
            Self::Local(b) => b.group_settings(instance, group),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => crate::core::GroupSettings::default(),
        }
    }

    /// A non-destructive look at a topic ([`crate::core::BrokerCore::peek`]).
    ///
    /// # Errors
    ///
    /// The core's refusal; `NotSupported` on the gateway, whose engine has no such read.
    pub(super) fn peek(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        topic: &mq_proto::TopicName,
        group: Option<&mq_proto::GroupId>,
        state: crate::core::PeekState,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::core::Listing<crate::core::PeekedMessage>, RequestError> {
        match self {
            Self::Local(b) => b.peek(instance, topic, group, state, after, limit),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err(not_supported(
                "the RocketMQ engine has no non-destructive peek; use its console or mqadmin",
            )),
        }
    }

    /// Messages by id or key with each group's position ([`crate::core::BrokerCore::find`]).
    ///
    /// # Errors
    ///
    /// The core's refusal; `NotSupported` on the gateway.
    pub(super) fn find(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        topic: &mq_proto::TopicName,
        lookup: crate::core::Lookup<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::core::Page, RequestError> {
        match self {
            Self::Local(b) => b.find(instance, topic, lookup, after, limit),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err(not_supported(
                "query messages with the RocketMQ cluster's console or mqadmin queryMsgById / queryMsgByKey",
            )),
        }
    }

    /// A page of a topic's messages by publish time ([`crate::core::BrokerCore::page`]).
    ///
    /// # Errors
    ///
    /// The core's refusal; `NotSupported` on the gateway.
    pub(super) fn page(
        &self,
        instance: Option<&mq_proto::InstanceId>,
        topic: &mq_proto::TopicName,
        range: std::ops::Range<u64>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::core::Page, RequestError> {
        match self {
            Self::Local(b) => b.page(instance, topic, range, after, limit),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err(not_supported(
                "page messages by time with the RocketMQ cluster's console or mqadmin queryMsgByOffset / printMsg",
            )),
        }
    }

    /// A message's trace ([`crate::core::BrokerCore::trace`]); `None` when it is not kept.
    ///
    /// # Errors
    ///
    /// `NotSupported` on the gateway.
    pub(super) fn trace(
        &self,
        message_id: &str,
    ) -> Result<Option<crate::core::MessageTrace>, RequestError> {
        match self {
            Self::Local(b) => Ok(b.trace(message_id)),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err(not_supported(
                "trace messages with the RocketMQ cluster's message trace (traceTopicEnable) and its console",
            )),
        }
    }

    /// The topics for `GET /admin/topics`, each a JSON object with at least `instance`
    /// (`null` for the default one) and `topic`: the built-in core's [`TopicStats`]
    /// (message type and every counter); on the gateway, the engine's topics with what
    /// this process counted (the cluster's own counters are left out, not shown as 0).
    ///
    /// [`TopicStats`]: crate::core::TopicStats
    ///
    /// # Errors
    ///
    /// On the gateway: `NotSupported` without broker admin addresses; `InternalError` when a
    /// broker does not answer.
    pub(super) async fn topics(&self) -> Result<Vec<serde_json::Value>, RequestError> {
        match self {
            Self::Local(b) => Ok(json_items(b.stats().topics)),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(g) => Ok(json_items(g.topics().await?)),
        }
    }

    /// The consumer groups for `GET /admin/groups`, each a JSON object with at least
    /// `instance` and `group`: the built-in core's [`crate::core::GroupInfo`] (settings and
    /// counters per topic); on the gateway, the engine's groups with what this process
    /// counted.
    ///
    /// # Errors
    ///
    /// As [`Backend::topics`].
    pub(super) async fn groups(&self) -> Result<Vec<serde_json::Value>, RequestError> {
        match self {
            Self::Local(b) => Ok(json_items(b.groups())),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(g) => Ok(json_items(g.groups().await?)),
        }
    }

    /// Releases what the backend holds (commits pending journal records, closes engine
    /// connections).
    pub(super) async fn close(&self) {
        match self {
            Self::Local(b) => b.close().await,
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(g) => g.close().await,
        }
    }
}

/// Listed items as JSON objects (an item that does not serialise, which these types
/// cannot fail to, is left out).
fn json_items<T: serde::Serialize>(items: Vec<T>) -> Vec<serde_json::Value> {
    items
        .into_iter()
        .filter_map(|item| serde_json::to_value(item).ok())
        .collect()
}

/// The long-poll budget of one consume: its `waitseconds` deadline, the server's shutdown
/// signal (waiting polls are answered at once when the server stops), and the limit on
/// waiting polls ([`Limits::max_waiting_polls`](crate::Limits::max_waiting_polls)).
pub(crate) struct Waiting<'a> {
    deadline: Instant,
    shutdown: watch::Receiver<bool>,
    shared: &'a Shared,
}

impl<'a> Waiting<'a> {
    pub(super) fn new(shared: &'a Shared, deadline: Instant) -> Self {
        Self {
            deadline,
            shutdown: shared.shutdown.subscribe(),
            shared,
        }
    }

    /// Whether the wait is over: the deadline passed or the server is stopping.
    pub(crate) fn is_over(&mut self) -> bool {
        Instant::now() >= self.deadline || *self.shutdown.borrow_and_update()
    }

    /// Resolves when the deadline passes or the server starts stopping (cancel-safe).
    pub(crate) async fn until_over(&mut self) {
        tokio::select! {
            () = tokio::time::sleep_until(self.deadline.into()) => {}
            changed = self.shutdown.changed() => {
                if changed.is_err() {
                    // The server is gone; never spin on a closed channel.
                    tokio::time::sleep_until(self.deadline.into()).await;
                }
            }
        }
    }

    /// Resolves when the server starts stopping (cancel-safe); never on the deadline.
    #[cfg(feature = "rocketmq")]
    pub(crate) async fn until_stopped(&mut self) {
        if self.shutdown.wait_for(|stop| *stop).await.is_err() {
            // The server is gone: nothing will ever stop this wait.
            std::future::pending::<()>().await;
        }
    }

    /// A place among the waiting polls, held while it lives; `None` when the limit is
    /// reached (the consume then answers with what it has, nothing).
    pub(crate) fn slot(&self) -> Option<PollSlot<'a>> {
        PollSlot::acquire(self.shared)
    }
}
