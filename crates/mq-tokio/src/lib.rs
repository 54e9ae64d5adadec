//! Async client for the ApsaraMQ for RocketMQ HTTP protocol, on **tokio**.
//!
//! Publish normal, tagged, keyed, delayed/scheduled, ordered and transactional messages;
//! consume with long polling, ack with receipt handles, stream deliveries with batched acks,
//! and run a transaction checker — with pooled keep-alive connections, safe retries, TLS
//! through rustls and typed errors.
//!
//! # Picking a runtime crate
//! Use this crate on tokio. On async-std or smol use `mq-async-std`: it has the same types,
//! names and behaviour (both re-export `mq-client`, each turning on its runtime there:
//! `Client::builder()` runs on tokio here). To reuse only the
//! wire layer in your own transport, use `mq-proto`.
//!
//! # Example
//! ```no_run
//! use mq_tokio::{Client, Credentials, GroupId, TopicMessage, TopicName, BatchSize, WaitSeconds};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .endpoint("http://127.0.0.1:8080")?
//!     .credentials(Credentials::new("AK", "SK"))
//!     .build()?;
//! let topic: TopicName = "orders".parse()?;
//! let consumer = client.consumer(topic.clone(), "GID_orders".parse::<GroupId>()?);
//! // A group gets what is published after its first consume (on a local broker, that
//! // consume registers it): consume once first.
//! consumer.receive(BatchSize::MIN, WaitSeconds::MIN).await?;
//!
//! let receipt = client.producer(topic).publish(&TopicMessage::new("hello")?).await?;
//! println!("published {}", receipt.message_id);
//! for message in consumer.receive(BatchSize::MAX, WaitSeconds::new(3)?).await? {
//!     println!("got {}", message.body);
//!     consumer.ack([&message.receipt_handle]).await?;
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, clippy::missing_errors_doc)]

pub use mq_client::*;

/// The README's code blocks, compiled as doctests so the quick start stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
