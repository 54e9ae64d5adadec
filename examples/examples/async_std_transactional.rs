//! The transactional-message guide on async-std (`mq-async-std`): the very same flow as the
//! `transactional` example — it runs the shared `mq_examples::transactional::run` with the
//! async-std runtime instead of tokio. (The same runtime type also serves smol.)
//!
//! ```sh
//! cargo run --example async_std_transactional
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded `mq-broker` (on a thread of its own). Against
//! the real service set `MQ_ENDPOINT`, `ALIBABA_CLOUD_ACCESS_KEY_ID`,
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID`, `MQ_TOPIC` and `MQ_GROUP_ID` (the
//! transactional producer's group, also used as the consumer group).
//!
//! Last line: `summary: committed=3 rolled_back=1 received=[0,1,2] ok`, or `… FAILED`.

use mq_async_std::AsyncIoRuntime;
use mq_examples::{Setup, finish, transactional};
use std::process::ExitCode;

#[async_std::main]
async fn main() -> ExitCode {
    let result = match Setup::from_env("async_std_transactional") {
        Ok(setup) => transactional::run::<AsyncIoRuntime>(&setup).await,
        Err(e) => Err(e),
    };
    finish(result)
}
