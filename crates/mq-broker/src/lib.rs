//! Local emulator of the ApsaraMQ for RocketMQ HTTP broker.
//!
//! [`core`] is the deterministic heart of the broker: topics, consumer groups, invisibility
//! and redelivery, tag filtering, scheduled, transactional and ordered messages, dead letters
//! and retention, exactly as PROTOCOL §6 describes them. It performs no I/O, reads no clock
//! and spawns nothing: every call takes the current wall-clock time in epoch milliseconds, so
//! hours of broker behaviour can be tested in milliseconds of virtual time. The HTTP server
//! that drives it over the wire protocol of `mq_proto::server` lives next to it:
//! [`Broker::start`] serves on the caller's tokio runtime, and [`Broker::start_embedded`]
//! runs a broker inside any program or test (on a thread of its own) and hands back its
//! endpoint and credentials.
//!
//! ```
//! use mq_broker::{BrokerCore, CoreConfig};
//! use mq_proto::{BatchSize, ConsumeKind, GroupId, TagFilter, TopicMessage, TopicName};
//!
//! let mut core = BrokerCore::new(CoreConfig::default());
//! let (topic, group) = (TopicName::new("T")?, GroupId::new("GID")?);
//! let one = BatchSize::new(1)?;
//! core.consume(0, None, &topic, &group, ConsumeKind::Normal, &TagFilter::All, one)?;
//! core.publish(10, None, &topic, TopicMessage::new("hello")?)?;
//! let first = core.consume(20, None, &topic, &group, ConsumeKind::Normal, &TagFilter::All, one)?;
//! // Not acked: visible again after 300 s, with a new handle and ConsumedTimes 2.
//! let again = core.consume(300_020, None, &topic, &group, ConsumeKind::Normal, &TagFilter::All, one)?;
//! assert_eq!(again[0].consumed_times, 2);
//! assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
//! assert_eq!(again[0].first_consume_time, 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, clippy::missing_errors_doc)]

pub mod config;
pub mod core;
pub mod durable;
pub mod embedded;
#[cfg(feature = "rocketmq")]
pub mod gateway;
pub mod run;
pub mod server;
pub mod tls;

pub use crate::config::{
    BrokerArgs, Credential, DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET, Limits, ServerConfig,
    load_config,
};
pub use crate::core::{
    BrokerCore, CoreConfig, CoreError, DeadLetter, GroupStats, PublishOutcome, Stats, TopicStats,
};
pub use crate::embedded::EmbeddedBroker;
pub use crate::server::Broker;
pub use crate::tls::{TlsConfig, TlsError};
