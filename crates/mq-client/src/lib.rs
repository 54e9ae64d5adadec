//! Runtime-generic async client for the ApsaraMQ for RocketMQ HTTP protocol.
//!
//! Most users depend on a runtime crate instead: **`mq-tokio`** on tokio, or
//! **`mq-async-std`** on async-std or smol. Both re-export this crate's API and turn on its
//! runtime (feature `tokio` or `async-io`), so that `Client::builder()` runs on it; the
//! types carry no runtime parameter (the client holds its runtime as `Arc<dyn …>`, as quinn
//! does). This crate holds the logic once: the pooled HTTP/1.1 transport, signing and
//! retries, producers, the consumer stream and the transaction checker, all driven by the
//! pure state machines of `mq-proto`. Another executor implements [`Runtime`] (connect,
//! spawn, sleep) and is passed to [`ClientBuilder::with_runtime`].
//!
//! Layers, top-down:
//! - [`Client`] / [`ClientBuilder`]: endpoint, credentials, instance, timeouts, retries, TLS.
//! - [`Producer`], [`TransactionProducer`], [`Consumer`] (+ [`MessageStream`], and the
//!   handler loop [`Consumer::handle`] on top of it).
//! - [`Transport`] (default [`PooledTransport`]) over a [`Runtime`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, clippy::missing_errors_doc)]

mod checker;
mod client;
mod consumer;
mod credentials;
mod driver;
mod error;
mod handling;
#[cfg(feature = "otel")]
pub mod otel;
mod producer;
mod proxy;
#[cfg(feature = "async-io")]
mod rt_async_io;
#[cfg(feature = "tokio")]
mod rt_tokio;
mod runtime;
mod stream;
pub mod telemetry;
mod tls;
mod transaction;
mod transport;

pub use checker::{CheckerHandle, CheckerReport};
pub use client::{Client, ClientBuilder, TimeoutConfig, USER_AGENT};
pub use consumer::{Consumer, POISON_LOG_TARGET, ReceivedMessages};
pub use credentials::{
    CredentialsProvider, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN,
    StaticCredentials, credentials_from_env,
};
pub use error::{AckError, ConfigError, Error, InvalidInput};
pub use handling::{HandlerError, HandlerHandle, HandlerSummary, MessageHandler, PoisonPolicy};
pub use producer::Producer;
pub use proxy::{PROXY_ENV_VARS, Proxy, Tunnel, TunnelRefused};
#[cfg(feature = "async-io")]
pub use rt_async_io::{AsyncIo, AsyncIoRuntime};
#[cfg(feature = "tokio")]
pub use rt_tokio::{TokioIo, TokioRuntime};
pub use runtime::{BoxFuture, ConnectTarget, Runtime};
pub use stream::{AckFuture, Delivery, MessageStream, PoisonDelivery, StreamItem};
pub use tls::TlsRoots;
pub use transaction::{TransactionProducer, TransactionReceipt};
pub use transport::{
    MAX_RESPONSE_BODY, PoolConfig, PooledTransport, Transport, TransportError, TransportErrorKind,
};

/// The protocol layer, re-exported: message and name types, signing, state machine configs.
pub use mq_proto;
// The types `Error` carries, so users can name them from this crate (and the runtime crates).
pub use mq_proto::client::{DecodeError, EncodeError, PublishReceipt, ServiceError};
pub use mq_proto::machine::{CheckerConfig, ConsumerConfig, Decision, RetryConfig};
pub use mq_proto::sign::Credentials;
pub use mq_proto::{
    AckKind, BatchSize, ErrorCode, GroupId, HandleBatch, HandleFailure, InstanceId, Message,
    MessageError, MessageId, PoisonMessage, PoisonReason, Properties, ReceiptHandle, Tag,
    TagFilter, Text, TopicMessage, TopicName, TransCheckImmunity, WaitSeconds,
};
