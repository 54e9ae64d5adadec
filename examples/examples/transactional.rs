//! The transactional-message guide, end to end, on tokio.
//!
//! Four half messages with property `a` = 0..3 and a check immunity of 10 s; message 0 is
//! committed with the handle its publish returned; the transaction checker commits `a=1`,
//! commits `a=2` on its second check, rolls back `a=3` and leaves anything else unknown; a
//! consumer then shows that exactly the committed messages (0, 1, 2) arrive. The flow itself
//! is in `examples/src/transactional.rs`, shared with `async_std_transactional`.
//!
//! ```sh
//! cargo run --example transactional
//! ```
//!
//! Without `MQ_ENDPOINT` it starts an embedded `mq-broker` (half messages re-checked every
//! 2 s; about 15 s in all). Against the real service (about 30 s), set `MQ_ENDPOINT`,
//! `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, `MQ_INSTANCE_ID`,
//! `MQ_TOPIC` (a transactional topic) and `MQ_GROUP_ID`: that group is both the
//! transactional producer's group (it receives the checks) and the consumer group.
//!
//! Last line: `summary: committed=3 rolled_back=1 received=[0,1,2] ok` (exit status 0), or
//! `… FAILED` (exit status 1).

use mq_examples::{Setup, finish, transactional};
use mq_tokio::TokioRuntime;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Setup::from_env("transactional") {
        Ok(setup) => transactional::run::<TokioRuntime>(&setup).await,
        Err(e) => Err(e),
    };
    finish(result)
}
