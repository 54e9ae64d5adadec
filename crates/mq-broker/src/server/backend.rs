//! What the server serves calls with: the built-in core ([`LocalBackend`], in memory or
//! journaled) or, with the `rocketmq` feature, the gateway onto an Apache RocketMQ 5
//! cluster. Authentication, limits and the long-poll budget ([`Waiting`]) stay in the
//! server; a backend gets a parsed [`Call`] and returns its [`Outcome`] or the protocol's
//! error.

use super::local::LocalBackend;
use super::state::{PollSlot, Shared};
use crate::core::{Call, Outcome, Stats};
use mq_proto::wire::error::RequestError;
use std::time::Instant;
use tokio::sync::watch;

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

    /// Whether the backend can serve calls (`GET /ready`): the built-in core always can once
    /// started; the gateway when its engine answers.
    pub(super) async fn ready(&self) -> bool {
        match self {
            Self::Local(_) => true,
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(g) => g.ready().await,
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

    /// The broker's clock moved forward (test clock): what came due happens now.
    pub(super) fn clock_moved(&self) {
        match self {
            Self::Local(b) => b.clock_moved(),
            // Refused at start: a gateway has no test clock.
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => {}
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
        limit: usize,
    ) -> Result<Vec<crate::core::PeekedMessage>, RequestError> {
        match self {
            Self::Local(b) => b.peek(instance, topic, group, state, limit),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err(RequestError::new(
                mq_proto::ErrorCode::Other(super::admin::NOT_SUPPORTED.into()),
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
        limit: usize,
    ) -> Result<Vec<crate::core::FoundMessage>, RequestError> {
        match self {
            Self::Local(b) => b.find(instance, topic, lookup, limit),
            #[cfg(feature = "rocketmq")]
            Self::RocketMq(_) => Err(RequestError::new(
                mq_proto::ErrorCode::Other(super::admin::NOT_SUPPORTED.into()),
                "query messages with the RocketMQ cluster's console or mqadmin queryMsgById / queryMsgByKey",
            )),
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
