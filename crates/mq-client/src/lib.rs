//! Runtime-generic async client for the ApsaraMQ for RocketMQ HTTP protocol.
//!
//! Most users depend on a runtime crate instead: **`mq-tokio`** on tokio, or
//! **`mq-async-std`** on async-std or smol. Both re-export this crate's API with the runtime
//! filled in, so the names, builders and behaviour are identical. This crate holds the logic
//! once: the pooled HTTP/1.1 transport, signing and retries, producers, the consumer stream
//! and the transaction checker, all driven by the pure state machines of `mq-proto`. A
//! runtime crate only implements [`Runtime`] (connect, spawn, sleep).
//!
//! Layers, top-down:
//! - [`Client`] / [`ClientBuilder`]: endpoint, credentials, instance, timeouts, retries, TLS.
//! - [`Producer`], [`TransactionProducer`], [`Consumer`] (+ [`MessageStream`]).
//! - [`Transport`] (default [`PooledTransport`]) over a [`Runtime`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod checker;
mod client;
mod consumer;
mod credentials;
mod driver;
mod error;
mod producer;
mod runtime;
mod stream;
mod tls;
mod transaction;
mod transport;

pub use checker::{CheckerHandle, CheckerReport};
pub use client::{Client, ClientBuilder, TimeoutConfig, USER_AGENT};
pub use consumer::Consumer;
pub use credentials::{
    CredentialsProvider, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN,
    StaticCredentials, credentials_from_env,
};
pub use error::{AckError, Error};
pub use producer::Producer;
pub use runtime::{BoxFuture, ConnectTarget, Runtime};
pub use stream::{AckFuture, Delivery, MessageStream};
pub use tls::TlsRoots;
pub use transaction::TransactionProducer;
pub use transport::{
    MAX_RESPONSE_BODY, PoolConfig, PooledTransport, Transport, TransportError, TransportErrorKind,
};

/// The protocol layer, re-exported: message and name types, signing, state machine configs.
pub use mq_proto;
pub use mq_proto::client::PublishReceipt;
pub use mq_proto::machine::{CheckerConfig, ConsumerConfig, Decision, RetryConfig};
pub use mq_proto::sign::Credentials;
pub use mq_proto::{
    BatchSize, ErrorCode, GroupId, HandleFailure, InstanceId, Message, MessageId, Properties,
    ReceiptHandle, Tag, TagFilter, TopicMessage, TopicName, TransCheckImmunity, WaitSeconds,
};

/// Defines the runtime-specific type aliases (`Client`, `ClientBuilder`, `Producer`,
/// `TransactionProducer`, `Consumer`, `PooledTransport`) of a runtime crate, so that every
/// runtime crate exposes exactly the same names.
///
/// ```
/// # use mq_client::{BoxFuture, ConnectTarget, Runtime};
/// # #[derive(Clone, Default)] struct MyRuntime;
/// # impl Runtime for MyRuntime {
/// #     type Io = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
/// #     fn connect(&self, _: ConnectTarget) -> BoxFuture<std::io::Result<Self::Io>> { unimplemented!() }
/// #     fn spawn(&self, _: BoxFuture<()>) {}
/// #     fn sleep(&self, _: std::time::Duration) -> BoxFuture<()> { unimplemented!() }
/// # }
/// mq_client::runtime_types!(MyRuntime);
/// let builder: ClientBuilder = Client::builder();
/// ```
#[macro_export]
macro_rules! runtime_types {
    ($runtime:ty) => {
        /// A client on this runtime. See [`mq_client::Client`].
        pub type Client = $crate::Client<$runtime>;
        /// Builds a [`Client`]. See [`mq_client::ClientBuilder`].
        pub type ClientBuilder = $crate::ClientBuilder<$runtime>;
        /// Publishes messages. See [`mq_client::Producer`].
        pub type Producer = $crate::Producer<$runtime>;
        /// Publishes and resolves transactional messages. See
        /// [`mq_client::TransactionProducer`].
        pub type TransactionProducer = $crate::TransactionProducer<$runtime>;
        /// Consumes messages. See [`mq_client::Consumer`].
        pub type Consumer = $crate::Consumer<$runtime>;
        /// The default pooled transport on this runtime.
        pub type PooledTransport = $crate::PooledTransport<$runtime>;
    };
}
