//! Configuration: what the server needs to start ([`ServerConfig`], [`Limits`],
//! [`Credential`], the development key pair), and the command-line flags and TOML
//! configuration file of the broker binary (shared with `mq serve`) that produce it.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! credentials = ["AK:SK", "AK2:SK2@MQ_INST_x"]
//! topics = ["T1", "MQ_INST_x/T2"]
//! groups = ["GID_billing,topic=T1,invisibility_secs=30,max_deliveries=5"]
//! invisibility_secs = 300
//! order_invisibility_secs = 60
//! half_check_interval_secs = 10
//! half_check_horizon_secs = 86400
//! data_dir = "/var/lib/mq-broker"
//! retention_secs = 259200
//! consumed_retention_secs = 3600
//! consumed_retention_bytes = 16777216
//! tls_cert = "/etc/mq-broker/chain.pem"
//! tls_key = "/etc/mq-broker/key.pem"
//! # or, instead of data_dir: serve in front of a RocketMQ 5 cluster
//! # backend = "rocketmq://10.0.0.5:8081?admin=10.0.0.6:10911&namesrv=10.0.0.7:9876"
//! # handle_key = "<64 hex digits, the same on every gateway process>"
//! # test_clock = true   # POST /admin/clock?advance_ms=N moves the clock (tests)
//! # faults = true       # POST /admin/faults injects errors (tests of retry logic)
//! # admin = "off"        # no /admin/ API; or admin_token = "<16+ characters>"
//! ```

use crate::core::CoreConfig;
use mq_proto::{InstanceId, TopicName};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `mq-broker` (and `mq serve`).
///
/// Its `Debug` output shows credentials as `AK:<redacted>[@INSTANCE]`.
#[derive(Clone, Default, clap::Args)]
pub struct BrokerArgs {
    /// Address to listen on; port 0 picks a free port. [default: 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Accepted key, `AK:SK` or `AK:SK@INSTANCE` (repeatable, one secret per AccessKey
    /// id). Default: the
    /// ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET environment pair, else a printed development pair.
    #[arg(long = "credential", value_name = "AK:SK[@INSTANCE]")]
    pub credentials: Vec<String>,
    /// Declared topic, `NAME` or `INSTANCE/NAME` (repeatable). Once any topic is declared,
    /// unknown topics answer TopicNotExist (with `--backend rocketmq://`: topics the cluster
    /// does not have; the others are served); with none, topics are created on first use.
    #[arg(long = "topic", value_name = "[INSTANCE/]NAME")]
    pub topics: Vec<String>,
    /// Consumer group created at start (repeatable; once per group, all its topics in one),
    /// with the topics it keeps messages of from then on and its own settings:
    /// `[INSTANCE/]GROUP[,topic=T]...[,invisibility_secs=N][,max_deliveries=N]`.
    #[arg(long = "group", value_name = "[INSTANCE/]GROUP[,topic=T][,...]")]
    pub groups: Vec<String>,
    /// TOML file with the same settings (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Invisibility after a normal delivery, seconds, 1..=43200 (12 h). [default: 300]
    #[arg(long, value_name = "SECS")]
    pub invisibility_secs: Option<u64>,
    /// Invisibility after an orderly delivery, seconds, 1..=43200 (12 h). [default: 60]
    #[arg(long, value_name = "SECS")]
    pub order_invisibility_secs: Option<u64>,
    /// Interval between transaction checks of a half message, seconds, at least 1.
    /// [default: 10]
    #[arg(long, value_name = "SECS")]
    pub half_check_interval_secs: Option<u64>,
    /// How long unresolved half messages are checked before being dropped, seconds, at
    /// least 1. [default: 86400]
    #[arg(long, value_name = "SECS")]
    pub half_check_horizon_secs: Option<u64>,
    /// Keep the broker's state in this directory: everything acknowledged survives a crash
    /// or restart. Without it, the state lives in memory only.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How long stored messages are kept, seconds, at least 1. [default: 259200 (3 days)]
    #[arg(long, value_name = "SECS")]
    pub retention_secs: Option<u64>,
    /// How long a message no group holds any more (acked by every group, or published
    /// while its topic had none) is kept for lookups and offset resets, seconds; 0 drops it
    /// at once. [default: 3600]
    #[arg(long, value_name = "SECS")]
    pub consumed_retention_secs: Option<u64>,
    /// At most this many bytes (bodies and properties) of such messages per topic; the
    /// oldest go first. [default: 16777216 (16 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub consumed_retention_bytes: Option<u64>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve in front of an Apache RocketMQ 5 cluster instead of keeping messages here:
    /// `rocketmq://PROXY_HOST:PORT[?admin=BROKER_HOST:PORT,...][&namesrv=HOST:PORT,...]` (the
    /// proxy's gRPC address; `admin` = broker remoting addresses where declared topics are
    /// created and the admin API manages topics and groups; `namesrv` = name servers, for
    /// topic deletion).
    #[arg(long, value_name = "URL")]
    pub backend: Option<String>,
    /// Key authenticating the gateway's receipt handles, hex or base64, at least 16 bytes;
    /// the same for every gateway process of one cluster (prefer the environment variable
    /// MQ_HANDLE_KEY, read with a rocketmq:// backend only: a flag shows in `ps`). Default:
    /// generated at start.
    #[arg(long, value_name = "KEY")]
    pub handle_key: Option<String>,
    /// A test clock: `POST /admin/clock?advance_ms=N` moves the broker's clock forward
    /// (delayed messages and transaction checks in milliseconds). Built-in backend only.
    #[arg(long)]
    pub test_clock: bool,
    /// Fault injection: `POST /admin/faults` makes calls fail (protocol errors, latency,
    /// closed connections) to test clients' retries.
    #[arg(long)]
    pub faults: bool,
    /// The admin API under `/admin/`: `on` (default) or `off`.
    #[arg(long, value_name = "on|off")]
    pub admin: Option<String>,
    /// Bearer token of the admin API (at least 16 visible characters; or the environment
    /// variable MQ_ADMIN_TOKEN, which `--admin off` ignores with a warning). Default:
    /// generated at start and printed.
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
}

impl fmt::Debug for BrokerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials: Vec<String> = self.credentials.iter().map(|c| redact(c)).collect();
        f.debug_struct("BrokerArgs")
            .field("listen", &self.listen)
            .field("credentials", &credentials)
            .field("topics", &self.topics)
            .field("groups", &self.groups)
            .field("config", &self.config)
            .field("invisibility_secs", &self.invisibility_secs)
            .field("order_invisibility_secs", &self.order_invisibility_secs)
            .field("half_check_interval_secs", &self.half_check_interval_secs)
            .field("half_check_horizon_secs", &self.half_check_horizon_secs)
            .field("data_dir", &self.data_dir)
            .field("retention_secs", &self.retention_secs)
            .field("consumed_retention_secs", &self.consumed_retention_secs)
            .field("consumed_retention_bytes", &self.consumed_retention_bytes)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("backend", &self.backend)
            .field(
                "handle_key",
                &self.handle_key.as_ref().map(|_| "<redacted>"),
            )
            .field("test_clock", &self.test_clock)
            .field("faults", &self.faults)
            .field("admin", &self.admin)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `AK:SK@INST` → `AK:<redacted>@INST` (the secret never reaches logs).
fn redact(credential: &str) -> String {
    match credential.split_once(':') {
        Some((id, rest)) => match rest.rsplit_once('@') {
            Some((_, instance)) => format!("{id}:<redacted>@{instance}"),
            None => format!("{id}:<redacted>"),
        },
        None => "<redacted>".to_owned(),
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "secret_strings")]
    credentials: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    invisibility_secs: Option<u64>,
    order_invisibility_secs: Option<u64>,
    half_check_interval_secs: Option<u64>,
    half_check_horizon_secs: Option<u64>,
    data_dir: Option<PathBuf>,
    retention_secs: Option<u64>,
    consumed_retention_secs: Option<u64>,
    consumed_retention_bytes: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    backend: Option<String>,
    #[serde(default, deserialize_with = "secret_string")]
    handle_key: Option<String>,
    test_clock: Option<bool>,
    faults: Option<bool>,
    admin: Option<String>,
    #[serde(default, deserialize_with = "secret_string")]
    admin_token: Option<String>,
}

/// The message of a config file's parse error, where it is (line and column), and no text
/// of the file: the `Display` of the error quotes the line, which may hold a secret.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return e.message().to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}: {}", e.message().trim_end())
}

/// A setting that holds secrets (`credentials`): any TOML value is read, then checked, so
/// that a value of the wrong type is not quoted in the error as serde's type errors do.
fn secret_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let refused = || {
        serde::de::Error::custom(
            "expected an array of strings (the value is not shown: it may hold a secret)",
        )
    };
    match toml::Value::deserialize(d)? {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                _ => Err(refused()),
            })
            .collect(),
        _ => Err(refused()),
    }
}

/// As [`secret_strings`], for one secret string (`admin_token`, `handle_key`).
fn secret_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match toml::Value::deserialize(d)? {
        toml::Value::String(s) => Ok(Some(s)),
        _ => Err(serde::de::Error::custom(
            "expected a string (the value is not shown: it may be a secret)",
        )),
    }
}

fn parse_topic(s: &str) -> Result<(Option<InstanceId>, TopicName), String> {
    let (instance, name) = match s.split_once('/') {
        Some((i, n)) => (Some(InstanceId::new(i).map_err(|e| e.to_string())?), n),
        None => (None, s),
    };
    Ok((instance, TopicName::new(name).map_err(|e| e.to_string())?))
}

/// A consumer group created at start (`--group`, `groups` in the TOML file): its instance,
/// id, the topics it is registered on (it keeps their messages from the start, before its
/// first consume) and its own settings.
///
/// Text form: `[INSTANCE/]GROUP[,topic=T]...[,invisibility_secs=N][,max_deliveries=N]`.
///
/// ```
/// use mq_broker::config::GroupDeclaration;
/// let g: GroupDeclaration = "MQ_INST_x/GID_billing,topic=orders,topic=refunds,max_deliveries=3".parse()?;
/// assert_eq!(g.group.as_str(), "GID_billing");
/// assert_eq!(g.topics.len(), 2);
/// assert_eq!(g.settings.max_deliveries, Some(3));
/// assert_eq!(g.settings.invisibility_ms, None);
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDeclaration {
    /// The instance (`None`: the default instance).
    pub instance: Option<InstanceId>,
    /// The group id.
    pub group: mq_proto::GroupId,
    /// Topics of that instance it is registered on.
    pub topics: Vec<TopicName>,
    /// Its invisibility and maximum deliveries.
    pub settings: crate::core::GroupSettings,
}

impl std::str::FromStr for GroupDeclaration {
    type Err = String;

    /// The text form above; numbers are whole and at least 1.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut fields = s.split(',');
        let head = fields.next().unwrap_or_default();
        let (instance, group) = match head.split_once('/') {
            Some((i, g)) => (Some(InstanceId::new(i).map_err(|e| e.to_string())?), g),
            None => (None, head),
        };
        let group = mq_proto::GroupId::new(group).map_err(|e| e.to_string())?;
        let mut declaration = Self {
            instance,
            group,
            topics: Vec::new(),
            settings: crate::core::GroupSettings::default(),
        };
        let positive = |key: &str, v: &str| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{key} must be a whole number of at least 1"))
        };
        for field in fields {
            match field.split_once('=') {
                Some(("topic", t)) => declaration
                    .topics
                    .push(TopicName::new(t).map_err(|e| e.to_string())?),
                Some(("invisibility_secs", v)) => {
                    declaration.settings.invisibility_ms = Some(invisibility_ms(
                        "invisibility_secs",
                        positive("invisibility_secs", v)?,
                    )?);
                }
                Some(("max_deliveries", v)) => {
                    let n = positive("max_deliveries", v)?;
                    declaration.settings.max_deliveries =
                        Some(u32::try_from(n).map_err(|_| "max_deliveries is too large")?);
                }
                _ => {
                    return Err(format!(
                        "{field:?}: expected topic=T, invisibility_secs=N or max_deliveries=N"
                    ));
                }
            }
        }
        Ok(declaration)
    }
}

/// `secs` of the setting `name` in ms, refused above
/// [`MAX_INVISIBILITY_MS`](crate::core::MAX_INVISIBILITY_MS) (12 h).
fn invisibility_ms(name: &str, secs: u64) -> Result<u64, String> {
    let max = crate::core::MAX_INVISIBILITY_MS;
    secs.checked_mul(1000)
        .filter(|ms| (1..=max).contains(ms))
        // 0 would expire every delivery's receipt handle at once: no ack could succeed.
        .ok_or_else(|| format!("{name} must be between 1 and {} (12 h)", max / 1000))
}

/// Where the credentials in effect came from (so the binary can say so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--credential` flags or the config file.
    Configured,
    /// The `ALIBABA_CLOUD_ACCESS_KEY_ID`/`ALIBABA_CLOUD_ACCESS_KEY_SECRET` environment pair.
    Environment,
    /// The documented development pair.
    Development,
}

/// Merges flags, the optional TOML file and the environment into a [`ServerConfig`].
///
/// # Errors
///
/// A one-line message: the TOML file cannot be read or parsed, a flag or key has an
/// invalid value (address, credential, topic, duration, backend, handle key), or the
/// combination is refused.
pub fn load_config(args: &BrokerArgs) -> Result<(ServerConfig, CredentialSource), String> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            toml::from_str(&text)
                .map_err(|e| format!("{}: {}", path.display(), toml_error(&text, &e)))?
        }
        None => FileConfig::default(),
    };
    let mut config = ServerConfig::default();
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = listen;
    }
    for c in file.credentials.iter().chain(&args.credentials) {
        // The message shows the credential redacted: stderr is a log too.
        let credential =
            Credential::parse(c).map_err(|e| format!("credential {:?}: {e}", redact(c)))?;
        // One secret per AccessKey id (the service's rule): a second one would silently
        // replace the first and lock its clients out.
        if config
            .credentials
            .iter()
            .any(|known| known.access_key_id == credential.access_key_id)
        {
            return Err(format!(
                "credential {:?}: AccessKey id {} is given more than once (--credential \
                 and the config file's credentials count together)",
                redact(c),
                credential.access_key_id
            ));
        }
        config.credentials.push(credential);
    }
    let mut source = CredentialSource::Configured;
    if config.credentials.is_empty() {
        let id = env_var("ALIBABA_CLOUD_ACCESS_KEY_ID")?.unwrap_or_default();
        let secret = env_var("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?.unwrap_or_default();
        if !id.is_empty() && !secret.is_empty() {
            config.credentials.push(Credential::new(id, secret));
            source = CredentialSource::Environment;
        } else {
            source = CredentialSource::Development;
        }
    }
    for t in file.topics.iter().chain(&args.topics) {
        config
            .topics
            .push(parse_topic(t).map_err(|e| format!("topic {t:?}: {e}"))?);
    }
    for g in file.groups.iter().chain(&args.groups) {
        let declaration: GroupDeclaration = g.parse().map_err(|e| format!("group {g:?}: {e}"))?;
        // A second declaration replaced the first one's settings without a word.
        if config
            .groups
            .iter()
            .any(|d| d.group == declaration.group && d.instance == declaration.instance)
        {
            return Err(format!(
                "group {g:?}: {} is declared more than once (--group and the config file's \
                 groups count together); declare it once with all its topics \
                 ({},topic=A,topic=B,...)",
                declaration.group, declaration.group
            ));
        }
        config.groups.push(declaration);
    }
    let secs = |flag: Option<u64>, file: Option<u64>, default: u64| {
        flag.or(file).map_or(default, |s| s.saturating_mul(1000))
    };
    let core = &mut config.core;
    if let Some(s) = args.invisibility_secs.or(file.invisibility_secs) {
        core.invisibility_ms = invisibility_ms("invisibility_secs", s)?;
    }
    if let Some(s) = args
        .order_invisibility_secs
        .or(file.order_invisibility_secs)
    {
        core.order_invisibility_ms = invisibility_ms("order_invisibility_secs", s)?;
    }
    // Durations whose 0 would drop messages as they arrive (or check half messages without
    // pause): refused, not taken literally.
    let positive =
        |name: &str, zero: &str, flag: Option<u64>, file: Option<u64>, default| match flag.or(file)
        {
            Some(0) => Err(format!("{name} must be at least 1 (0 would {zero})")),
            _ => Ok(secs(flag, file, default)),
        };
    core.half_check_interval_ms = positive(
        "half_check_interval_secs",
        "check half messages without pause",
        args.half_check_interval_secs,
        file.half_check_interval_secs,
        core.half_check_interval_ms,
    )?;
    core.half_check_horizon_ms = positive(
        "half_check_horizon_secs",
        "drop half messages as they arrive",
        args.half_check_horizon_secs,
        file.half_check_horizon_secs,
        core.half_check_horizon_ms,
    )?;
    core.retention_ms = positive(
        "retention_secs",
        "drop messages as they arrive",
        args.retention_secs,
        file.retention_secs,
        core.retention_ms,
    )?;
    core.consumed_retention_ms = secs(
        args.consumed_retention_secs,
        file.consumed_retention_secs,
        core.consumed_retention_ms,
    );
    core.consumed_retention_bytes = args
        .consumed_retention_bytes
        .or(file.consumed_retention_bytes)
        .unwrap_or(core.consumed_retention_bytes);
    config.data_dir = args.data_dir.clone().or(file.data_dir);
    config.test_clock = args.test_clock || file.test_clock.unwrap_or(false);
    config.faults = args.faults || file.faults.unwrap_or(false);
    let explicit_token = args.admin_token.as_deref().or(file.admin_token.as_deref());
    // The environment's token only where the admin API is on (a shell that exports it for
    // its brokers may start one with --admin off too).
    let env_token =
        env_var("MQ_ADMIN_TOKEN")?.filter(|t| !t.is_empty() && explicit_token.is_none());
    // A bad value is named where it was given: the flag, or the file's key.
    let admin = match (args.admin.as_deref(), file.admin.as_deref()) {
        (Some(flag), _) => Some(("--admin", flag)),
        (None, Some(key)) => Some(("admin (config file)", key)),
        (None, None) => None,
    };
    config.admin = match admin {
        None | Some((_, "on")) => AdminAccess::On(
            explicit_token
                .or(env_token.as_deref())
                .map(str::parse::<AdminToken>)
                .transpose()?,
        ),
        Some((_, "off")) if explicit_token.is_none() => {
            if env_token.is_some() {
                tracing::warn!("MQ_ADMIN_TOKEN is ignored: the admin API is off (--admin off)");
            }
            AdminAccess::Off
        }
        Some((_, "off")) => return Err("an admin token needs the admin API on".to_owned()),
        Some((name, other)) => return Err(format!("{name} = {other:?}: expected on or off")),
    };
    // Fault rules and the test clock are set only through the admin API.
    if config.admin == AdminAccess::Off {
        for (on, what) in [
            (config.faults, "--faults"),
            (config.test_clock, "--test-clock"),
        ] {
            if on {
                return Err(format!(
                    "{what} is driven through the admin API (/admin/…), which --admin off removes"
                ));
            }
        }
    }
    config.tls = match (
        args.tls_cert.as_ref().or(file.tls_cert.as_ref()),
        args.tls_key.as_ref().or(file.tls_key.as_ref()),
    ) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            Some(crate::tls::TlsConfig::from_files(cert, key).map_err(|e| format!("TLS: {e}"))?)
        }
        _ => return Err("tls_cert and tls_key must be given together".to_owned()),
    };
    // Each source named in the error (the key itself never is).
    let parse_key = |k: &str, source: &str| {
        k.parse::<HandleKey>()
            .map_err(|e| format!("handle key ({source}): {e}"))
    };
    let handle_key = match (args.handle_key.as_deref(), file.handle_key.as_deref()) {
        (Some(k), _) => Some(parse_key(k, "--handle-key")?),
        (None, Some(k)) => Some(parse_key(k, "handle_key in the configuration file")?),
        (None, None) => None,
    };
    match args.backend.as_deref().or(file.backend.as_deref()) {
        None | Some("builtin") => {
            if handle_key.is_some() {
                return Err("a handle key applies only to --backend rocketmq://…".to_owned());
            }
        }
        Some(url) => {
            let mut rocketmq: RocketMqConfig = url.parse()?;
            // The environment's key only where a key applies (a shell that exports it for
            // its gateways may start a built-in broker too).
            let handle_key = match handle_key {
                Some(k) => Some(k),
                None => env_var("MQ_HANDLE_KEY")?
                    .filter(|k| !k.trim().is_empty())
                    .map(|k| parse_key(&k, "MQ_HANDLE_KEY"))
                    .transpose()?,
            };
            if config.test_clock {
                return Err(
                    "--test-clock applies to the built-in backend; the RocketMQ cluster keeps its own time"
                        .to_owned(),
                );
            }
            if !config.groups.is_empty() {
                return Err(
                    "--group applies to the built-in backend; create groups in the RocketMQ cluster (console, mqadmin updateSubGroup)"
                        .to_owned(),
                );
            }
            if config.data_dir.is_some() {
                return Err(
                    "--data-dir applies to the built-in backend; the RocketMQ cluster keeps the messages"
                        .to_owned(),
                );
            }
            // What the built-in store keeps, and for how long: the cluster's own settings
            // (its brokers' `fileReservedTime`, `transactionCheckMax`) decide instead.
            for (given, name) in [
                (
                    args.retention_secs.or(file.retention_secs),
                    "--retention-secs (retention_secs)",
                ),
                (
                    args.consumed_retention_secs
                        .or(file.consumed_retention_secs),
                    "--consumed-retention-secs (consumed_retention_secs)",
                ),
                (
                    args.consumed_retention_bytes
                        .or(file.consumed_retention_bytes),
                    "--consumed-retention-bytes (consumed_retention_bytes)",
                ),
                (
                    args.half_check_horizon_secs
                        .or(file.half_check_horizon_secs),
                    "--half-check-horizon-secs (half_check_horizon_secs)",
                ),
            ] {
                if given.is_some() {
                    return Err(format!(
                        "{name} applies to the built-in backend; the RocketMQ cluster keeps \
                         the messages by its brokers' own settings (fileReservedTime, \
                         transactionCheckMax)"
                    ));
                }
            }
            rocketmq.handle_key = handle_key;
            config.backend = BackendConfig::RocketMq(rocketmq);
        }
    }
    Ok((config, source))
}

/// The environment variable `name`, `None` when unset; an error when it is not UTF-8 (taken
/// for unset, a credential pair would fall back to the development one, an admin token to
/// a generated one).
fn env_var(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

/// Where a broker keeps its messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BackendConfig {
    /// The built-in core: in memory, or durable with [`ServerConfig::data_dir`].
    #[default]
    BuiltIn,
    /// The gateway onto an Apache RocketMQ 5 cluster (`--backend rocketmq://…`; needs the
    /// `rocketmq` feature).
    RocketMq(RocketMqConfig),
}

/// The RocketMQ 5 cluster a gateway serves from:
/// `rocketmq://HOST:PORT[?admin=HOST:PORT[,…]][&namesrv=HOST:PORT[,…]][&queues=N][&type=T]`.
///
/// `HOST:PORT` is the cluster's proxy (gRPC v2 `MessagingService`). `admin` lists the
/// remoting addresses of the brokers on which the gateway creates declared topics (and the
/// consumer groups of ordered consumption) with the message type they need, and on which
/// the admin API creates, lists and deletes topics and groups; without it, topics must
/// exist in the cluster. `namesrv` lists the cluster's name servers, from which a deleted
/// topic's route is removed (`DELETE /admin/topics/{topic}` needs both).
///
/// ```
/// use mq_broker::config::RocketMqConfig;
/// let c: RocketMqConfig =
///     "rocketmq://127.0.0.1:8081?admin=127.0.0.1:10911&namesrv=127.0.0.1:9876".parse()?;
/// assert_eq!(c.proxy, "127.0.0.1:8081");
/// assert_eq!(c.admin, vec!["127.0.0.1:10911".to_owned()]);
/// assert_eq!(c.namesrv, vec!["127.0.0.1:9876".to_owned()]);
/// assert!("http://127.0.0.1:8081".parse::<RocketMqConfig>().is_err());
/// // HOST:PORT only: no path, no user info.
/// assert!("rocketmq://a/b:1".parse::<RocketMqConfig>().is_err());
/// assert!("rocketmq://user@10.0.0.5:8081".parse::<RocketMqConfig>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocketMqConfig {
    /// The proxy's gRPC address, `HOST:PORT`.
    pub proxy: String,
    /// Broker remoting addresses for topic and group creation, `HOST:PORT` each.
    pub admin: Vec<String>,
    /// Name server remoting addresses, `HOST:PORT` each, for topic deletion.
    pub namesrv: Vec<String>,
    /// The key that authenticates receipt handles. Every gateway process behind one load
    /// balancer needs the same key; `None` generates one at start (fine for one process).
    pub handle_key: Option<HandleKey>,
    /// Longest wait for an engine answer to a call that is not a long poll. Default 5 s.
    pub call_timeout: Duration,
    /// Queues of the topics the gateway creates (`?queues=N`, 1..=1024). Default 8.
    pub queues: u16,
    /// Message type of the topics the gateway creates (`?type=mixed|normal|fifo|delay|transaction`).
    /// Default [`TopicMessageType::Mixed`], which every kind of publish needs; a cluster
    /// whose brokers refuse mixed types takes the one its applications publish.
    pub topic_type: TopicMessageType,
}

pub use crate::core::TopicMessageType;

impl std::str::FromStr for RocketMqConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("rocketmq://")
            .ok_or_else(|| format!("{s:?}: expected rocketmq://HOST:PORT[?admin=HOST:PORT,...]"))?;
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        // HOST:PORT and nothing else: no path, no user info, no fragment.
        let valid_addr = |a: &str| {
            a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.contains(['/', '@', '#', '?', ' '])
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
            })
        };
        if !valid_addr(authority) {
            return Err(format!("{s:?}: the proxy address must be HOST:PORT"));
        }
        let mut admin = Vec::new();
        let mut namesrv = Vec::new();
        let mut queues = 8;
        let mut topic_type = TopicMessageType::Mixed;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some((name @ ("admin" | "namesrv"), list)) => {
                    for a in list.split(',') {
                        if !valid_addr(a) {
                            return Err(format!("{s:?}: {name} address {a:?} must be HOST:PORT"));
                        }
                        if name == "admin" {
                            admin.push(a.to_owned());
                        } else {
                            namesrv.push(a.to_owned());
                        }
                    }
                }
                Some(("queues", n)) => {
                    queues = n
                        .parse()
                        .ok()
                        .filter(|q| (1..=1024).contains(q))
                        .ok_or_else(|| format!("{s:?}: queues must be 1..=1024"))?;
                }
                Some(("type", t)) => topic_type = t.parse()?,
                _ => {
                    return Err(format!(
                        "{s:?}: unknown parameter {pair:?} (known: admin, namesrv, queues, type)"
                    ));
                }
            }
        }
        Ok(Self {
            proxy: authority.to_owned(),
            admin,
            namesrv,
            handle_key: None,
            call_timeout: Duration::from_secs(5),
            queues,
            topic_type,
        })
    }
}

/// The secret that authenticates a gateway's receipt handles (at least 16 bytes). Its
/// `Debug` output never shows it.
///
/// ```
/// use mq_broker::config::HandleKey;
/// let key: HandleKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".parse()?;
/// assert_eq!(key.bytes().len(), 32);
/// assert_eq!(format!("{key:?}"), "HandleKey(<redacted>)");
/// assert!("too-short".parse::<HandleKey>().is_err());
/// assert!("00000000000000000000000000000000".parse::<HandleKey>().is_err());
/// // Without a prefix, hex digits are hex; `base64:` reads the same text as base64.
/// let hex: HandleKey = "0123456789abcdef0123456789abcdef".parse()?;
/// let b64: HandleKey = "base64:0123456789abcdef0123456789abcdef".parse()?;
/// assert_eq!((hex.bytes().len(), b64.bytes().len()), (16, 24));
/// assert_eq!(hex, "hex:0123456789abcdef0123456789abcdef".parse()?);
/// assert!("hex:0123456789abcdef0123456789abcdeg".parse::<HandleKey>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HandleKey(Vec<u8>);

/// Who may call the admin API (`/admin/…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAccess {
    /// No admin API (`--admin off`): `/admin/…` answers 404.
    Off,
    /// Calls signed by a configured credential that is not limited to an instance, or
    /// carrying `Authorization: Bearer <token>`; `None` = a token generated at start
    /// ([`Broker::admin_token`](crate::Broker::admin_token), printed by the binary).
    On(Option<AdminToken>),
}

impl Default for AdminAccess {
    fn default() -> Self {
        Self::On(None)
    }
}

/// The bearer token of the admin API: at least 16 visible ASCII characters. `Debug` never
/// shows it.
///
/// ```
/// use mq_broker::config::AdminToken;
/// let t: AdminToken = "0123456789abcdef0123".parse()?;
/// assert_eq!(t.as_str(), "0123456789abcdef0123");
/// assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
/// assert!("short".parse::<AdminToken>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Fewest characters accepted.
    pub const MIN_LEN: usize = 16;

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl std::str::FromStr for AdminToken {
    type Err = String;

    /// # Errors
    ///
    /// Fewer than [`MIN_LEN`](Self::MIN_LEN) characters, or one that is not visible ASCII.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() < Self::MIN_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "an admin token is at least {} visible ASCII characters",
                Self::MIN_LEN
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl HandleKey {
    /// Fewest key bytes accepted.
    pub const MIN_LEN: usize = 16;

    /// A key from raw bytes.
    ///
    /// # Errors
    ///
    /// Fewer than [`MIN_LEN`](Self::MIN_LEN) bytes, or one byte repeated (a placeholder
    /// such as all zeros).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_LEN {
            return Err(format!(
                "a handle key needs at least {} bytes, got {}",
                Self::MIN_LEN,
                bytes.len()
            ));
        }
        // A key of one repeated byte (all zeros, say) is a placeholder, not a secret.
        if bytes.iter().all(|b| *b == bytes[0]) {
            return Err("a handle key of one repeated byte is not a secret; generate one (e.g. `openssl rand -hex 32`)".to_owned());
        }
        Ok(Self(bytes))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandleKey(<redacted>)")
    }
}

impl std::str::FromStr for HandleKey {
    type Err = String;

    /// `hex:DIGITS` or `base64:TEXT` (standard base64); without a prefix, an even number of
    /// hex digits is hexadecimal and anything else base64 (a base64 key made only of hex
    /// digits needs the `base64:` prefix).
    fn from_str(s: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let s = s.trim();
        let hex = |digits: &str| -> Result<Vec<u8>, String> {
            if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("a hex handle key is an even number of hex digits".to_owned());
            }
            (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| e.to_string()))
                .collect()
        };
        let base64 = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "a handle key is hex or base64".to_owned())
        };
        let bytes = if let Some(digits) = s.strip_prefix("hex:") {
            hex(digits)?
        } else if let Some(text) = s.strip_prefix("base64:") {
            base64(text)?
        } else if s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex(s)?
        } else {
            base64(s)?
        };
        Self::from_bytes(bytes)
    }
}

/// An access key the broker accepts, optionally limited to one instance.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// AccessKey id.
    pub access_key_id: String,
    /// AccessKey secret.
    pub access_key_secret: String,
    /// When set, the key may only address this instance (`ns`); `None` = every instance.
    pub instance: Option<InstanceId>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("instance", &self.instance)
            .finish()
    }
}

impl Credential {
    /// A key valid for every instance.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            instance: None,
        }
    }

    /// Parses `AK:SK` or `AK:SK@INSTANCE`.
    ///
    /// # Errors
    ///
    /// A message when the key id or secret is empty, the `:` is missing, or the instance
    /// is not a valid instance id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (keys, instance) = match s.rsplit_once('@') {
            Some((keys, inst)) => (keys, Some(inst)),
            None => (s, None),
        };
        let (id, secret) = keys
            .split_once(':')
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
            .ok_or_else(|| "expected AK:SK or AK:SK@INSTANCE".to_owned())?;
        let instance = instance
            .map(|i| InstanceId::new(i).map_err(|e| e.to_string()))
            .transpose()?;
        Ok(Self {
            access_key_id: id.to_owned(),
            access_key_secret: secret.to_owned(),
            instance,
        })
    }
}

/// The development key pair used when no credential is configured (printed at start).
pub const DEV_ACCESS_KEY_ID: &str = "mq-dev-access-key";
/// The development secret used when no credential is configured (printed at start).
pub const DEV_ACCESS_KEY_SECRET: &str = "mq-dev-secret";

/// Resource limits of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body read (bigger `Content-Length` is refused before reading).
    pub max_body_bytes: usize,
    /// Time allowed to receive a request's headers, counted from the connection's start or
    /// the end of the previous answer: it is also the idle timeout of keep-alive connections
    /// and bounds a TLS handshake.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request's body (for a request refused by authentication,
    /// at most [`PRE_AUTH_DRAIN_TIMEOUT`](crate::server::PRE_AUTH_DRAIN_TIMEOUT)).
    pub body_read_timeout: Duration,
    /// Most open connections; further ones are closed at once.
    pub max_connections: usize,
    /// Connections the kernel queues for the accept loop (the `listen(2)` backlog, capped
    /// by the kernel: `net.core.somaxconn` on Linux). A burst beyond it has its SYNs dropped
    /// and waits for their retransmission (1 s or more) — see [`crate::server::listen`].
    pub listen_backlog: u32,
    /// Most long polls waiting at once; further ones are answered at once.
    pub max_waiting_polls: usize,
    /// Largest request head (request line and headers) in bytes; a bigger one is answered
    /// `431` and the connection closed. At most 100 header lines are accepted either way.
    pub max_header_bytes: usize,
    /// How long [`Broker::shutdown`](crate::Broker::shutdown) waits for in-flight requests before closing the
    /// remaining connections.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: mq_proto::server::MAX_REQUEST_BODY_LEN,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 20_000,
            listen_backlog: 4096,
            max_waiting_polls: 20_000,
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Accepted keys. Empty = the development pair.
    pub credentials: Vec<Credential>,
    /// Declared topics; when any is declared, unknown topics answer `TopicNotExist`.
    pub topics: Vec<(Option<InstanceId>, TopicName)>,
    /// Consumer groups created at start (after the topics; built-in backend only).
    pub groups: Vec<GroupDeclaration>,
    /// Queue semantics.
    pub core: CoreConfig,
    /// Resource limits.
    pub limits: Limits,
    /// Keep the state in this directory and recover it at start (durable broker, see
    /// [`crate::durable`]); `None` keeps everything in memory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`); `None` serves
    /// plain HTTP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Shifts the broker's clock by this many milliseconds from the system clock (positive =
    /// ahead). Everything the broker reads the time for follows it: message times and
    /// `NextConsumeTime`, the 15-minute `Date` window it accepts (PROTOCOL §2.5) and the
    /// `Date` header it answers with. For testing clients against a server whose clock is
    /// not theirs, as the real service's never is. Default 0.
    pub clock_offset_ms: i64,
    /// A test clock (`--test-clock`): `POST /admin/clock?advance_ms=N` moves the broker's
    /// clock forward, so a test of a delayed message or a transaction check runs in
    /// milliseconds. Built-in backend only. Default off.
    pub test_clock: bool,
    /// Fault injection (`--faults`): rules set with `POST /admin/faults` make protocol calls
    /// fail. Default off.
    pub faults: bool,
    /// Who may call the admin API (default: on, with a token generated at start).
    pub admin: AdminAccess,
    /// Where messages are kept: the built-in core (default) or a RocketMQ 5 cluster.
    pub backend: BackendConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            credentials: Vec::new(),
            topics: Vec::new(),
            groups: Vec::new(),
            core: CoreConfig::default(),
            limits: Limits::default(),
            data_dir: None,
            tls: None,
            clock_offset_ms: 0,
            test_clock: false,
            faults: false,
            admin: AdminAccess::default(),
            backend: BackendConfig::BuiltIn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_parse_scoped_credentials() {
        let dir = std::env::temp_dir().join(format!("mq-broker-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ncredentials = [\"a:b@MQ_INST_x\"]\ntopics = [\"MQ_INST_x/T2\"]\ngroups = [\"GID_file,topic=T1,invisibility_secs=7\"]\ninvisibility_secs = 5\n",
        )
        .unwrap();
        let args = BrokerArgs {
            config: Some(path),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            topics: vec!["T1".into()],
            groups: vec!["GID_flag".into()],
            ..Default::default()
        };
        let (config, source) = load_config(&args).unwrap();
        assert_eq!(source, CredentialSource::Configured);
        assert_eq!(config.listen.port(), 0);
        assert_eq!(
            config.credentials[0].instance.as_ref().unwrap().as_str(),
            "MQ_INST_x"
        );
        assert_eq!(config.topics.len(), 2);
        assert_eq!(config.core.invisibility_ms, 5_000);
        assert_eq!(
            config
                .groups
                .iter()
                .map(|g| (g.group.as_str(), g.settings.invisibility_ms))
                .collect::<Vec<_>>(),
            [("GID_file", Some(7_000)), ("GID_flag", None)],
            "file groups first, then flags"
        );
        let twice = load_config(&BrokerArgs {
            groups: vec![
                "GID_z,topic=a,max_deliveries=5".into(),
                "GID_z,topic=b,max_deliveries=9".into(),
            ],
            ..Default::default()
        })
        .expect_err("a group declared twice");
        assert!(twice.contains("declared more than once"), "{twice}");
        // The same id in another instance is another group.
        load_config(&BrokerArgs {
            groups: vec!["GID_z,topic=a".into(), "MQ_INST_x/GID_z,topic=a".into()],
            ..Default::default()
        })
        .expect("one group per instance");
        for bad in [
            "GID_x,topic=",
            "GID_x,max_deliveries=0",
            "GID_x,invisibility_secs=soon",
            "GID_x,color=red",
            "bad group!",
        ] {
            assert!(bad.parse::<GroupDeclaration>().is_err(), "{bad}");
        }
        assert!(
            load_config(&BrokerArgs {
                credentials: vec!["nocolon".into()],
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn built_in_settings_are_refused_with_a_gateway_backend() {
        // They were accepted and ignored: the cluster keeps the messages by its own rules.
        let gateway = || BrokerArgs {
            backend: Some("rocketmq://127.0.0.1:8081".into()),
            ..Default::default()
        };
        let (config, _) = load_config(&BrokerArgs {
            invisibility_secs: Some(7),
            ..gateway()
        })
        .expect("the gateway's own invisibility applies");
        assert!(matches!(config.backend, BackendConfig::RocketMq(_)));
        assert_eq!(config.core.invisibility_ms, 7_000);
        let refused = |args: BrokerArgs, name: &str| {
            let e = load_config(&args).expect_err(name);
            assert!(e.contains(name) && e.contains("built-in backend"), "{e}");
        };
        refused(
            BrokerArgs {
                retention_secs: Some(60),
                ..gateway()
            },
            "--retention-secs (retention_secs)",
        );
        refused(
            BrokerArgs {
                consumed_retention_secs: Some(0),
                ..gateway()
            },
            "--consumed-retention-secs (consumed_retention_secs)",
        );
        refused(
            BrokerArgs {
                consumed_retention_bytes: Some(1),
                ..gateway()
            },
            "--consumed-retention-bytes (consumed_retention_bytes)",
        );
        refused(
            BrokerArgs {
                half_check_horizon_secs: Some(60),
                ..gateway()
            },
            "--half-check-horizon-secs (half_check_horizon_secs)",
        );
        refused(
            BrokerArgs {
                data_dir: Some("d".into()),
                ..gateway()
            },
            "--data-dir",
        );
        // A malformed handle key's error says where it came from, never what it was.
        let e = load_config(&BrokerArgs {
            handle_key: Some("not-a-key!".into()),
            ..gateway()
        })
        .expect_err("malformed key");
        assert!(e.starts_with("handle key (--handle-key): "), "{e}");
        assert!(!e.contains("not-a-key!"), "{e}");
        refused(
            BrokerArgs {
                test_clock: true,
                ..gateway()
            },
            "--test-clock",
        );
        // The same key in a config file.
        let dir = std::env::temp_dir().join(format!("mq-broker-gw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.toml");
        std::fs::write(&path, "consumed_retention_bytes = 1024\n").unwrap();
        refused(
            BrokerArgs {
                config: Some(path),
                ..gateway()
            },
            "consumed_retention_bytes",
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_config_file_error_names_its_line_and_never_quotes_a_secret() {
        let dir = std::env::temp_dir().join(format!("mq-broker-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.toml");
        for (text, line) in [
            ("credentials = \"ak:TOPSECRET\"\n", 1),
            (
                "topics = [\"T\"]\ncredentials = [\n  \"ak:TOPSECRET\",\n  5,\n]\n",
                2,
            ),
            ("admin_token = [\"TOPSECRET\"]\n", 1),
            ("handle_key = { k = \"TOPSECRET\" }\n", 1),
            ("credentials = [\"ak:TOPSECRET\"\n", 1),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load_config(&BrokerArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
            .unwrap_err();
            assert!(!e.contains("TOPSECRET"), "{text:?}: {e}");
            assert!(
                e.contains(&format!(": line {line}, column ")),
                "{text:?}: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_repeated_access_key_id_is_refused_and_no_secret_is_shown() {
        let refused = |credentials: &[&str]| {
            let e = load_config(&BrokerArgs {
                credentials: credentials.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            })
            .unwrap_err();
            assert!(!e.contains("secret-"), "a secret in {e:?}");
            e
        };
        // A second secret for one id would silently replace the first.
        let e = refused(&["ak:secret-1", "ak:secret-2@MQ_INST_x"]);
        assert!(e.contains("AccessKey id ak is given more than once"), "{e}");
        // A credential that does not parse is named without its secret.
        let e = refused(&["ak:secret-3@bad instance"]);
        assert!(e.contains("ak:<redacted>@bad instance"), "{e}");
    }

    #[test]
    fn invisibility_is_between_1_s_and_12_hours_everywhere_it_is_set() {
        let max = crate::core::MAX_INVISIBILITY_MS / 1000;
        let group =
            |secs: u64| format!("GID_x,invisibility_secs={secs}").parse::<GroupDeclaration>();
        assert_eq!(
            group(max).map(|g| g.settings.invisibility_ms),
            Ok(Some(max * 1000))
        );
        // 0 would expire every receipt handle at once (no ack could succeed).
        for secs in [0, max + 1, u64::MAX] {
            if secs > 0 {
                let err = group(secs).expect_err("over 12 h");
                assert!(err.contains("between 1 and 43200"), "{err}");
            }
            for args in [
                BrokerArgs {
                    invisibility_secs: Some(secs),
                    ..Default::default()
                },
                BrokerArgs {
                    order_invisibility_secs: Some(secs),
                    ..Default::default()
                },
            ] {
                let err = load_config(&args).expect_err("0 or over 12 h");
                assert!(err.contains("between 1 and 43200"), "{err}");
            }
        }
    }

    #[test]
    fn a_bad_admin_value_names_where_it_was_given() {
        let dir = std::env::temp_dir().join(format!("mq-broker-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.toml");
        std::fs::write(&path, "admin = \"of\"\n").unwrap();
        let from_file = load_config(&BrokerArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect_err("a bad key");
        assert!(
            from_file.starts_with("admin (config file) = \"of\""),
            "{from_file}"
        );
        let from_flag = load_config(&BrokerArgs {
            config: Some(path),
            admin: Some("of".into()),
            ..Default::default()
        })
        .expect_err("a bad flag");
        assert!(from_flag.starts_with("--admin = \"of\""), "{from_flag}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn admin_off_refuses_what_only_the_admin_api_drives() {
        for args in [
            BrokerArgs {
                faults: true,
                ..Default::default()
            },
            BrokerArgs {
                test_clock: true,
                ..Default::default()
            },
        ] {
            let on = load_config(&args).map(|(c, _)| c.admin);
            assert!(matches!(on, Ok(AdminAccess::On(None))), "{on:?}");
            let err = load_config(&BrokerArgs {
                admin: Some("off".into()),
                ..args
            })
            .expect_err("unreachable");
            assert!(err.contains("--admin off"), "{err}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let args = BrokerArgs {
            credentials: vec![
                "id1:s3cret".into(),
                "id2:t0psecret@MQ_INST_x".into(),
                "junk".into(),
            ],
            ..Default::default()
        };
        let text = format!("{args:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("t0psecret") && !text.contains("junk"),
            "{text}"
        );
        assert!(
            text.contains("id1:<redacted>") && text.contains("id2:<redacted>@MQ_INST_x"),
            "{text}"
        );
        let (config, _) = load_config(&BrokerArgs {
            credentials: vec!["id1:s3cret".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
