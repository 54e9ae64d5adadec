//! Async client for the ApsaraMQ for RocketMQ HTTP protocol, on **async-std** and **smol** (async-io).
//!
//! Publish normal, tagged, keyed, delayed/scheduled, ordered and transactional messages;
//! consume with long polling, ack with receipt handles, stream deliveries with batched acks,
//! and run a transaction checker — with pooled keep-alive connections, safe retries, TLS
//! through rustls and typed errors.
//!
//! # Picking a runtime crate
//! Use this crate on async-std or smol. It is built on `async-io` and `async-net` (which
//! async-std itself runs on) and spawns its background tasks on smol's global executor, so
//! it needs no runtime set-up and works the same in both. That executor runs on one thread
//! unless the `SMOL_THREADS` environment variable (read once, at its first use) says more:
//! the client's connections and a [`MessageHandler`]'s handlers share it, so set
//! `SMOL_THREADS` for handlers that should run in parallel, and keep blocking work out of
//! handlers (`blocking::unblock`, `async_std::task::spawn_blocking`). async-std is discontinued upstream
//! (RUSTSEC-2025-0052): new projects should prefer smol, and this crate keeps working for
//! them unchanged. On tokio use `mq-tokio`: same types, names and behaviour (both re-export
//! `mq-client`, each turning on its runtime there: `Client::builder()` runs on async-io
//! here; with both crates linked, it picks tokio inside a tokio runtime). To reuse only the wire layer, use `mq-proto`.
//!
//! # Example
//! ```no_run
//! use mq_async_std::{Client, Credentials, GroupId, TopicMessage, TopicName, BatchSize, WaitSeconds};
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
