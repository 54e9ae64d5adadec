//! The runnable guides of this SDK, in `examples/examples/`: each file is a complete program
//! (its imports, its `main`, the SDK calls of one guide) to copy into a project that depends
//! on `mq-tokio` (or `mq-async-std`) and, for the fallback below, `mq-broker`.
//!
//! | example | guide |
//! |---|---|
//! | `normal` | publish, consume with long polling, acknowledge |
//! | `tag_filter` | a consumer that receives only some tags (`TagA\|\|TagB`) |
//! | `delayed` | messages delivered a delay after publishing |
//! | `scheduled` | messages delivered at an absolute time (`__STARTDELIVERTIME`) |
//! | `transactional` | half messages, commit, and the transaction checker |
//! | `ordered` | sharding keys and orderly consumption |
//! | `consume` | the consumer stream (`Consumer::stream`) with batched acks |
//! | `handler` | the handler loop (`Consumer::handle`): routes per tag, a concurrency limit, graceful shutdown |
//! | `async_std_transactional` | the transactional guide on async-std |
//! | `smol` | publishing and the consumer stream on smol |
//!
//! Every example talks to the instance named by these environment variables, or, when
//! `MQ_ENDPOINT` is unset, starts an `mq-broker` embedded in the process
//! (`mq_broker::Broker::start_embedded`) and says so on its first line. Its last line is
//! `summary: … ok`, or `summary: … FAILED` with exit status 1 when the guide's outcome did
//! not happen. An error (a configuration it cannot use, an endpoint it cannot reach) ends it
//! with one line on standard error, `error: ` and the error's message, and exit status 1.
//!
//! | variable | meaning |
//! |---|---|
//! | `MQ_ENDPOINT` | `http(s)://…` HTTP endpoint of the instance; unset = embedded broker |
//! | `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` | the AccessKey (optional `ALIBABA_CLOUD_SECURITY_TOKEN`) |
//! | `MQ_INSTANCE_ID` | instance id; unset = the default instance |
//! | `MQ_TOPIC` | the topic (of the guide's type; use one dedicated to the examples) |
//! | `MQ_GROUP_ID` | the group id (consumer group; also the transactional producer's group) |
