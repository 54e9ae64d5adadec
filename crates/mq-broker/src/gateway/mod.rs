//! The gateway backend: serves the HTTP protocol in front of an Apache RocketMQ 5 cluster
//! reached through its proxy (the gRPC v2 `MessagingService`). Feature `rocketmq`.

pub(crate) mod admin;
