//! Shared set-up of the runnable guides in `examples/examples/`.
//!
//! Every example talks to a real endpoint when `MQ_ENDPOINT` is set, and otherwise starts an
//! embedded `mq-broker` in-process on a free port. [`Setup::from_env`] does that choice once
//! for all of them, prints it as the example's first line, and hands out clients, the topic
//! and the group. [`Summary`] and [`finish`] give every example the same machine-checkable
//! last line (`summary: … ok` or `summary: … FAILED`) and exit status.
//!
//! The transactional guide lives in [`transactional`], written once over
//! [`mq_client::Runtime`] and run by both the tokio and the async-std example.
//!
//! # Environment (real endpoint)
//!
//! | variable | meaning |
//! |---|---|
//! | `MQ_ENDPOINT` | `http(s)://…` HTTP endpoint of the instance; unset = embedded broker |
//! | `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` | the AccessKey (optional `ALIBABA_CLOUD_SECURITY_TOKEN`) |
//! | `MQ_INSTANCE_ID` | instance id; unset or empty = the default instance |
//! | `MQ_TOPIC` | the topic the examples publish to (use one dedicated to them) |
//! | `MQ_GROUP_ID` | the group id (consumer group; also the transactional producer's group) |

pub mod transactional;

use mq_broker::{Broker, DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET, ServerConfig};
use mq_client::{
    BatchSize, Client, Consumer, Credentials, GroupId, InstanceId, Message, Runtime, TopicMessage,
    TopicName, WaitSeconds, credentials_from_env,
};
use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};

/// The error type of the examples: anything, shown with its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Environment variable: the endpoint; when unset the examples use an embedded broker.
pub const ENV_ENDPOINT: &str = "MQ_ENDPOINT";
/// Environment variable: the instance id (optional).
pub const ENV_INSTANCE_ID: &str = "MQ_INSTANCE_ID";
/// Environment variable: the topic.
pub const ENV_TOPIC: &str = "MQ_TOPIC";
/// Environment variable: the group id.
pub const ENV_GROUP_ID: &str = "MQ_GROUP_ID";

/// Property every example sets on its messages: an id of the run, so that on a shared real
/// topic a run recognises its own messages and leftovers of earlier runs.
pub const RUN_PROPERTY: &str = "example_run";

/// Half-message check interval configured on the embedded broker (the real service checks
/// about every 10 s; shorter keeps the transactional example quick).
pub const EMBEDDED_HALF_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Half-message check interval of the real service (PROTOCOL §6.6).
pub const SERVICE_HALF_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Where a received message comes from, as far as an example is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Published by this run.
    ThisRun,
    /// Published by an earlier run of these examples (safe to acknowledge as clean-up).
    EarlierRun,
    /// Not published by these examples: leave it alone.
    Foreign,
}

/// The connection settings of one example run: endpoint, credentials, instance, topic and
/// group, plus the embedded broker when there is no `MQ_ENDPOINT`.
///
/// Dropping it stops the embedded broker.
pub struct Setup {
    endpoint: String,
    credentials: Credentials,
    instance: Option<InstanceId>,
    topic: TopicName,
    group: GroupId,
    run_id: RunId,
    embedded: Option<EmbeddedBroker>,
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setup")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .field("instance", &self.instance)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("run_id", &self.run_id)
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

impl Setup {
    /// Reads the environment (see the [crate docs](crate)); without `MQ_ENDPOINT`, starts an
    /// embedded broker on `127.0.0.1:0` with the topic `example-{name}` and the group
    /// `GID_example`. Prints what it uses as the first line of output.
    pub fn from_env(name: &str) -> Result<Self, BoxError> {
        let run_id = RunId::new();
        let setup = match non_empty_var(ENV_ENDPOINT) {
            Some(endpoint) => {
                let required = |var: &str| {
                    non_empty_var(var)
                        .ok_or_else(|| format!("{ENV_ENDPOINT} is set but {var} is not"))
                };
                let topic = TopicName::new(required(ENV_TOPIC)?)?;
                let group = GroupId::new(required(ENV_GROUP_ID)?)?;
                let instance = non_empty_var(ENV_INSTANCE_ID)
                    .map(InstanceId::new)
                    .transpose()?;
                let setup = Self {
                    endpoint,
                    credentials: credentials_from_env()?,
                    instance,
                    topic,
                    group,
                    run_id,
                    embedded: None,
                };
                println!(
                    "using {ENV_ENDPOINT}={} instance={} topic={} group={}",
                    setup.endpoint,
                    setup
                        .instance
                        .as_ref()
                        .map_or("(default)", InstanceId::as_str),
                    setup.topic,
                    setup.group
                );
                setup
            }
            None => {
                let broker = EmbeddedBroker::start()?;
                let setup = Self {
                    endpoint: broker.endpoint.clone(),
                    credentials: Credentials::new(DEV_ACCESS_KEY_ID, DEV_ACCESS_KEY_SECRET),
                    instance: None,
                    topic: TopicName::new(format!("example-{name}"))?,
                    group: GroupId::new("GID_example")?,
                    run_id,
                    embedded: Some(broker),
                };
                println!(
                    "no {ENV_ENDPOINT} set: using an embedded mq-broker at {}",
                    setup.endpoint
                );
                setup
            }
        };
        Ok(setup)
    }

    /// A client for the endpoint, with the credentials and instance of this setup.
    pub fn client<R: Runtime + Default>(&self) -> Result<Client, mq_client::Error> {
        let mut builder = mq_client::ClientBuilder::with_runtime(R::default())
            .endpoint(&self.endpoint)?
            .credentials(self.credentials.clone());
        if let Some(instance) = &self.instance {
            builder = builder.instance_id(instance.clone());
        }
        builder.build()
    }

    /// The endpoint, `http(s)://host[:port]`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The group.
    pub fn group(&self) -> &GroupId {
        &self.group
    }

    /// Whether the examples run on the embedded broker.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// How often an unresolved half message is checked again.
    pub fn half_check_interval(&self) -> Duration {
        if self.is_embedded() {
            EMBEDDED_HALF_CHECK_INTERVAL
        } else {
            SERVICE_HALF_CHECK_INTERVAL
        }
    }

    /// Marks a message as published by this run (property [`RUN_PROPERTY`]).
    pub fn mark(&self, message: TopicMessage) -> Result<TopicMessage, BoxError> {
        Ok(message.with_property(RUN_PROPERTY, self.run_id.0.clone())?)
    }

    /// Whether `message` was published by this run, an earlier run, or someone else.
    pub fn origin(&self, message: &Message) -> Origin {
        self.run_id.origin(message)
    }

    /// The id of this run (to move into `'static` closures, such as a checker's).
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// Makes sure `consumer`'s group exists before the example publishes.
    ///
    /// A consumer group of the real service is created in the console and exists already. The
    /// embedded broker creates a group on its first request and delivers it the messages
    /// published after that, so on the embedded broker this sends one quick consume.
    pub async fn register(&self, consumer: &Consumer) -> Result<(), BoxError> {
        if self.is_embedded() {
            let wait = WaitSeconds::new(0)?;
            let stray = consumer.receive(BatchSize::MIN, wait).await?;
            if !stray.is_empty() {
                return Err("a fresh embedded broker delivered an unexpected message".into());
            }
        }
        Ok(())
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Identifies one run of an example: wall clock (ms) and process id, unique enough to tell
/// runs apart. Its value is set as property [`RUN_PROPERTY`] on every message the run
/// publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunId(String);

impl RunId {
    fn new() -> Self {
        Self(format!("{:x}-{:x}", now_ms(), std::process::id()))
    }

    /// The value of property [`RUN_PROPERTY`] on this run's messages.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `message` was published by this run, an earlier run, or someone else.
    pub fn origin(&self, message: &Message) -> Origin {
        match message.property(RUN_PROPERTY) {
            Some(run) if run == self.0 => Origin::ThisRun,
            Some(_) => Origin::EarlierRun,
            None => Origin::Foreign,
        }
    }
}

/// The wall clock in epoch milliseconds (the time base of the protocol).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An `mq-broker` on its own thread with its own tokio runtime, so examples on any runtime
/// can use it. Stopped (gracefully) on drop.
struct EmbeddedBroker {
    endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    fn start() -> Result<Self, BoxError> {
        let mut config = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServerConfig::default()
        };
        config.core.half_check_interval_ms =
            u64::try_from(EMBEDDED_HALF_CHECK_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        config.limits.shutdown_grace = Duration::from_secs(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (started_tx, started_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("embedded-mq-broker".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match Broker::start(config).await {
                        Ok(broker) => {
                            let _ = started_tx.send(Ok(broker.endpoint()));
                            let _ = stop_rx.await;
                            broker.shutdown().await;
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let endpoint = match started_rx.recv() {
            Ok(Ok(endpoint)) => endpoint,
            Ok(Err(e)) => return Err(format!("starting the embedded mq-broker: {e}").into()),
            Err(_) => return Err("the embedded mq-broker thread ended unexpectedly".into()),
        };
        Ok(Self {
            endpoint,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The last line of an example: `summary: {fields} ok`, or `… FAILED` when what the example
/// demonstrates did not happen.
///
/// ```
/// use mq_examples::Summary;
/// let s = Summary::new("received=3", true);
/// assert_eq!(s.to_string(), "summary: received=3 ok");
/// assert_eq!(Summary::new("received=2", false).to_string(), "summary: received=2 FAILED");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    fields: String,
    ok: bool,
}

impl Summary {
    /// A summary of `fields` (space-separated `key=value`), successful when `ok`.
    pub fn new(fields: impl Into<String>, ok: bool) -> Self {
        Self {
            fields: fields.into(),
            ok,
        }
    }

    /// Whether the example demonstrated what it should.
    pub fn is_ok(&self) -> bool {
        self.ok
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok { "ok" } else { "FAILED" };
        write!(f, "summary: {} {verdict}", self.fields)
    }
}

/// Prints the summary (or the error) and turns it into the process exit status: success
/// only for a successful summary.
pub fn finish(result: Result<Summary, BoxError>) -> ExitCode {
    match result {
        Ok(summary) => {
            println!("{summary}");
            if summary.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Formats a message on one line in the style of the official SDK samples.
pub fn describe(message: &Message) -> String {
    format!(
        "MessageId:{} MessageBodyMD5:{} MessageTag:{} ConsumedTimes:{} PublishTime:{} Body:{} NextConsumeTime:{} ReceiptHandle:{} Properties:{:?}",
        message.message_id,
        message.body_md5,
        message.tag.as_ref().map_or("", |t| t.as_str()),
        message.consumed_times,
        message.publish_time,
        message.body,
        message.next_consume_time,
        message.receipt_handle,
        message.properties,
    )
}
