//! The admin API's topics and groups on the engine: created, listed and deleted over the
//! remoting requests of `admin.rs`, on every broker of the `admin=` list (and, for a deleted
//! topic's route, every name server of `namesrv=`). Names map through the instance as for
//! data calls (`I%NAME`, [`convert::engine_topic_name`]).
//!
//! What the engine keeps is listed with what this process counted (published, delivered,
//! acked, filtered); the counters only the cluster holds (ready, in flight, backlog, …) are
//! left out, not shown as 0.

use std::collections::BTreeMap;

use mq_proto::wire::error::RequestError;
use mq_proto::{ErrorCode, GroupId, InstanceId, TopicName};
use serde::Serialize;

use super::{Gateway, Target, admin, convert, engine_unavailable};
use crate::core::{GroupSettings, Outcome, TopicMessageType};
use crate::server::not_supported;

/// A topic as `GET /admin/topics` lists it on the gateway.
#[derive(Debug, Serialize)]
pub(crate) struct EngineTopic {
    /// Instance id (`ns`); `None` for the default instance.
    instance: Option<String>,
    /// Topic name.
    topic: String,
    /// The engine's `message.type` attribute (`NORMAL`, `FIFO`, `DELAY`, `TRANSACTION`,
    /// `MIXED`); `None` for a topic created without one.
    message_type: Option<String>,
    /// Read queues, summed over the brokers that have the topic.
    queues: u32,
    /// Messages this gateway process published to it.
    published: u64,
    /// This process's counters per group that consumed it here.
    groups: Vec<CountedGroup>,
}

/// A consumer group as `GET /admin/groups` lists it on the gateway.
#[derive(Debug, Serialize)]
pub(crate) struct EngineGroup {
    /// Instance id (`ns`); `None` for the default instance.
    instance: Option<String>,
    /// Group id.
    group: String,
    /// The engine's `consumeMessageOrderly` (set by the gateway's first ordered consume).
    orderly: bool,
    /// The engine's `retryMaxTimes`: redeliveries before a dead letter.
    retry_max_times: i32,
    /// This process's counters per topic the group consumed here.
    topics: Vec<CountedGroup>,
}

/// What one gateway process counted for a group on a topic.
#[derive(Debug, Serialize)]
struct CountedGroup {
    /// The group, in a topic's list.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// The topic, in a group's list.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    delivered: u64,
    acked: u64,
    filtered: u64,
}

/// A creation or deletion that failed: the engine's refusal is the caller's (400 with the
/// engine's remark: a name or type it does not take), anything else a retryable 500. (A
/// listing takes no input: any failure of one is a 500.)
fn admin_failure(what: &str, e: admin::AdminError) -> RequestError {
    match e {
        admin::AdminError::Refused { .. } => RequestError::new(
            ErrorCode::InvalidArgument,
            format!("the RocketMQ engine refused the {what}: {e}"),
        ),
        e => engine_unavailable(what, e),
    }
}

/// Runs `request` on every address in turn; the first failure ends it.
async fn on_every<'a, F, Fut>(
    addrs: &'a [String],
    what: &str,
    request: F,
) -> Result<(), RequestError>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = Result<(), admin::AdminError>>,
{
    for addr in addrs {
        request(addr).await.map_err(|e| admin_failure(what, e))?;
    }
    Ok(())
}

impl Gateway {
    /// The broker addresses admin calls go to; 501 naming `tool` without any.
    fn admin_addresses(&self, tool: &str) -> Result<&[String], RequestError> {
        if self.config.admin.is_empty() {
            return Err(not_supported(&format!(
                "the gateway has no broker admin addresses (rocketmq://…?admin=HOST:PORT); use {tool}"
            )));
        }
        Ok(&self.config.admin)
    }

    /// Every user topic of the brokers, by engine name (queues summed over brokers).
    async fn engine_topics(&self) -> Result<BTreeMap<String, admin::TopicInfo>, RequestError> {
        let mut all: BTreeMap<String, admin::TopicInfo> = BTreeMap::new();
        for addr in self.admin_addresses("mqadmin topicList")? {
            let topics = admin::topics(addr, self.config.call_timeout)
                .await
                .map_err(|e| engine_unavailable("topic listing", e))?;
            for topic in topics {
                match all.get_mut(&topic.name) {
                    Some(known) => known.queues += topic.queues,
                    None => {
                        all.insert(topic.name.clone(), topic);
                    }
                }
            }
        }
        Ok(all)
    }

    /// Every user consumer group of the brokers, by engine name.
    async fn engine_groups(&self) -> Result<BTreeMap<String, admin::GroupInfo>, RequestError> {
        let mut all = BTreeMap::new();
        for addr in self.admin_addresses("mqadmin consumerProgress")? {
            let groups = admin::groups(addr, self.config.call_timeout)
                .await
                .map_err(|e| engine_unavailable("group listing", e))?;
            for group in groups {
                all.entry(group.name.clone()).or_insert(group);
            }
        }
        Ok(all)
    }

    /// The engine's topics with this process's counters, for `GET /admin/topics`.
    ///
    /// # Errors
    ///
    /// 501 without admin addresses; 500 when a broker does not answer.
    pub(crate) async fn topics(&self) -> Result<Vec<EngineTopic>, RequestError> {
        let engine = self.engine_topics().await?;
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Ok(engine
            .into_values()
            .filter_map(|info| {
                let (instance, topic) = convert::split_engine_name(&info.name)?;
                let instance = instance.map(|i| i.as_str().to_owned());
                let counted = counters.get(&(instance.clone(), topic.clone()));
                Some(EngineTopic {
                    published: counted.map_or(0, |c| c.published),
                    groups: counted
                        .into_iter()
                        .flat_map(|c| c.groups.iter())
                        .map(|(group, g)| CountedGroup {
                            group: Some(group.clone()),
                            topic: None,
                            delivered: g.delivered,
                            acked: g.acked,
                            filtered: g.filtered,
                        })
                        .collect(),
                    instance,
                    topic,
                    message_type: info.message_type,
                    queues: info.queues,
                })
            })
            .collect())
    }

    /// The engine's consumer groups with this process's counters, for `GET /admin/groups`.
    ///
    /// # Errors
    ///
    /// 501 without admin addresses; 500 when a broker does not answer.
    pub(crate) async fn groups(&self) -> Result<Vec<EngineGroup>, RequestError> {
        let engine = self.engine_groups().await?;
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Ok(engine
            .into_values()
            .filter_map(|info| {
                let (instance, group) = convert::split_engine_name(&info.name)?;
                let instance = instance.map(|i| i.as_str().to_owned());
                let topics = counters
                    .iter()
                    .filter(|((i, _), _)| *i == instance)
                    .filter_map(|((_, topic), c)| {
                        let g = c.groups.get(&group)?;
                        Some(CountedGroup {
                            group: None,
                            topic: Some(topic.clone()),
                            delivered: g.delivered,
                            acked: g.acked,
                            filtered: g.filtered,
                        })
                    })
                    .collect();
                Some(EngineGroup {
                    instance,
                    group,
                    orderly: info.orderly,
                    retry_max_times: info.retry_max_times,
                    topics,
                })
            })
            .collect())
    }

    /// `POST /admin/topics`: creates the topic with `message_type` on every broker, keeping
    /// the queue count a broker already has for it (code 17 updates an existing topic, and
    /// messages in queues beyond a smaller count could no longer be read), then waits until
    /// the proxy routes it.
    pub(super) async fn admin_create_topic(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
        message_type: TopicMessageType,
    ) -> Result<Outcome, RequestError> {
        let name = convert::engine_topic_name(instance, topic);
        for addr in self.admin_addresses("mqadmin updateTopic")? {
            let existing = admin::topics(addr, self.config.call_timeout)
                .await
                .map_err(|e| engine_unavailable("topic listing", e))?
                .into_iter()
                .find(|t| t.name == name);
            let spec = admin::TopicSpec {
                name: name.clone(),
                queues: existing
                    .and_then(|t| u16::try_from(t.queues).ok())
                    .filter(|q| *q > 0)
                    .unwrap_or(self.queues),
                message_type,
            };
            admin::create_topic(addr, &spec, self.config.call_timeout)
                .await
                .map_err(|e| admin_failure("topic creation", e))?;
        }
        tracing::info!(topic = %name, "created topic on the RocketMQ cluster (admin API)");
        let target = Target { instance, topic };
        self.forget_route(target);
        self.await_route(target, self.config.call_timeout).await?;
        self.count(instance, topic, |c| c.declared = true);
        Ok(Outcome::Done)
    }

    /// `DELETE /admin/topics/{topic}`: deletes the topic on every broker, then its route on
    /// every name server; forgets this process's route and counters for it.
    pub(super) async fn admin_delete_topic(
        &self,
        instance: Option<&InstanceId>,
        topic: &TopicName,
    ) -> Result<Outcome, RequestError> {
        const TOOL: &str = "mqadmin deleteTopic";
        let brokers = self.admin_addresses(TOOL)?;
        if self.config.namesrv.is_empty() {
            return Err(not_supported(&format!(
                "deleting a topic needs the cluster's name servers (rocketmq://…&namesrv=HOST:PORT); use {TOOL}"
            )));
        }
        let name = convert::engine_topic_name(instance, topic);
        if !self.engine_topics().await?.contains_key(&name) {
            return Err(RequestError::new(
                ErrorCode::TopicNotExist,
                format!("The topic you provided does not exist: {topic}"),
            ));
        }
        let timeout = self.config.call_timeout;
        on_every(brokers, "topic deletion", |addr| {
            admin::delete_topic(addr, &name, admin::Holder::Broker, timeout)
        })
        .await?;
        on_every(&self.config.namesrv, "topic route deletion", |addr| {
            admin::delete_topic(addr, &name, admin::Holder::NameServer, timeout)
        })
        .await?;
        tracing::info!(topic = %name, "deleted topic on the RocketMQ cluster (admin API)");
        let target = Target { instance, topic };
        self.forget_route(target);
        self.known_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&target.key());
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(
                instance.map(|i| i.as_str().to_owned()),
                topic.as_str().to_owned(),
            ));
        Ok(Outcome::Done)
    }

    /// `POST /admin/groups`: creates (or updates) the group on every broker, keeping whether
    /// the engine has it orderly; the topics named must exist. Per-group invisibility and
    /// maximum deliveries are not mapped: 501.
    pub(super) async fn admin_create_group(
        &self,
        instance: Option<&InstanceId>,
        group: &GroupId,
        topics: &[TopicName],
        settings: GroupSettings,
    ) -> Result<Outcome, RequestError> {
        if settings != GroupSettings::default() {
            return Err(not_supported(
                "per-group invisibility and max deliveries are not mapped onto the RocketMQ engine: the gateway's invisibility is its own (--invisibility-secs); set a group's retry policy with mqadmin updateSubGroup -r",
            ));
        }
        let brokers = self.admin_addresses("mqadmin updateSubGroup")?;
        for topic in topics {
            self.route(Target { instance, topic }).await?;
        }
        let name = convert::engine_group_name(instance, group);
        let orderly = self
            .engine_groups()
            .await?
            .get(&name)
            .is_some_and(|g| g.orderly);
        let timeout = self.config.call_timeout;
        on_every(brokers, "group creation", |addr| {
            admin::create_group(addr, &name, orderly, timeout)
        })
        .await?;
        Ok(Outcome::Done)
    }

    /// `DELETE /admin/groups/{group}`: deletes the group and its consumer offsets on every
    /// broker; forgets this process's counters for it. A consume of the group afterwards
    /// creates it again (the engine creates groups on first use).
    pub(super) async fn admin_delete_group(
        &self,
        instance: Option<&InstanceId>,
        group: &GroupId,
    ) -> Result<Outcome, RequestError> {
        let brokers = self.admin_addresses("mqadmin deleteSubGroup")?;
        let name = convert::engine_group_name(instance, group);
        if !self.engine_groups().await?.contains_key(&name) {
            return Err(RequestError::new(
                ErrorCode::SubscriptionNotExist,
                format!("The consumer group you provided does not exist: {group}"),
            ));
        }
        let timeout = self.config.call_timeout;
        on_every(brokers, "group deletion", |addr| {
            admin::delete_group(addr, &name, timeout)
        })
        .await?;
        let namespace = instance.map_or("", InstanceId::as_str).to_owned();
        self.orderly_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace, name));
        let instance = instance.map(|i| i.as_str().to_owned());
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        for ((i, _), c) in counters.iter_mut() {
            if *i == instance {
                c.groups.remove(group.as_str());
            }
        }
        Ok(Outcome::Done)
    }
}
