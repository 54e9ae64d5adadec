//! Argument parsers and the connection flags shared by the client commands.
//!
//! Durations accept a bare number of seconds (`10`) or humantime units (`10s`, `500ms`,
//! `2m`, `1m30s`); times are RFC 3339 (`2026-12-01T10:00:00Z`, `2026-12-01T18:00:00+08:00`).
//!
//! ```
//! use std::time::Duration;
//! use mq_cli::args::{parse_duration, parse_property, parse_rfc3339_ms};
//! assert_eq!(parse_duration("500ms")?, Duration::from_millis(500));
//! assert_eq!(parse_duration("2m")?, Duration::from_secs(120));
//! assert_eq!(parse_duration("7")?, Duration::from_secs(7));
//! assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z")?, 1_500);
//! assert_eq!(parse_property("k=v=w")?, ("k".to_owned(), "v=w".to_owned()));
//! # Ok::<(), String>(())
//! ```

use crate::CliError;
use mq_tokio::{Client, ClientBuilder, Credentials, InstanceId, TokioRuntime};
use std::fmt;
use std::time::Duration;

/// Parses `10s`, `500ms`, `2m`, `1m30s` (humantime) or a bare number of seconds.
///
/// # Errors
///
/// A one-line message (for clap) when `s` is neither.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 10s, 500ms, 2m"))
}

/// The parser of a message body flag (`--body`): any text, one starting with `-` too
/// (`--body -x`, with clap's `allow_hyphen_values`), except the name of one of the
/// command's own flags (`--body --key k`): that is a forgotten body far more often than a
/// body, and publishing the flag's name would hide the mistake. Such a body can be piped
/// on stdin.
#[derive(Clone, Copy, Debug)]
pub struct BodyParser;

impl clap::builder::TypedValueParser for BodyParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let text = clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)?;
        let is_flag = |a: &clap::Arg| {
            a.get_long()
                .is_some_and(|l| text.strip_prefix("--") == Some(l))
                || a.get_short().is_some_and(|c| text == format!("-{c}"))
        };
        if cmd.get_arguments().any(is_flag) {
            return Err(cmd.clone().error(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "--body is followed by the flag {text}, not a body (to publish the text \
                     {text} as a body, pipe it on stdin)"
                ),
            ));
        }
        Ok(text)
    }
}

/// Parses an RFC 3339 date-time (any offset) into epoch milliseconds.
///
/// # Errors
///
/// A one-line message (for clap) when `s` is not RFC 3339 or lies before 1970.
pub fn parse_rfc3339_ms(s: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
        format!("invalid time {s:?} ({e}); use RFC 3339, e.g. 2026-12-01T10:00:00Z")
    })?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map_err(|_| format!("time {s:?} is before 1970"))
}

/// Formats epoch milliseconds as RFC 3339 in UTC with milliseconds
/// (`2026-12-01T10:00:00.000Z`); out-of-range values are printed as the number.
pub fn format_rfc3339_ms(epoch_ms: u64) -> String {
    let nanos = i128::from(epoch_ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => epoch_ms.to_string(),
    }
}

/// Parses `KEY=VALUE` (the value may contain `=`; the key may not be empty).
///
/// # Errors
///
/// A one-line message (for clap) when there is no `=` or the key is empty.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Endpoint and credentials (flags or environment variables): what every command that
/// calls a service takes.
///
/// Empty values count as unset. `Debug` never shows the secret or the token.
#[derive(Clone, Default, clap::Args)]
pub struct ServiceArgs {
    /// Service endpoint, `http://host[:port]` or `https://host[:port]`.
    #[arg(long, env = "MQ_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// AccessKey id.
    #[arg(long, env = "ALIBABA_CLOUD_ACCESS_KEY_ID", value_name = "ID")]
    pub access_key_id: Option<String>,
    /// AccessKey secret.
    #[arg(
        long,
        env = "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub access_key_secret: Option<String>,
    /// STS security token (optional).
    #[arg(
        long,
        env = "ALIBABA_CLOUD_SECURITY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub security_token: Option<String>,
}

impl fmt::Debug for ServiceArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("ServiceArgs")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &redacted(&self.access_key_secret))
            .field("security_token", &redacted(&self.security_token))
            .finish()
    }
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl ServiceArgs {
    /// The endpoint, if one is set.
    pub fn endpoint(&self) -> Option<&str> {
        set(&self.endpoint)
    }

    /// The endpoint, or the "no endpoint set" usage error.
    ///
    /// # Errors
    ///
    /// [`CliError::USAGE`] when no endpoint is set.
    pub fn require_endpoint(&self) -> Result<&str, CliError> {
        self.endpoint().ok_or_else(|| {
            CliError::usage("no endpoint set: pass --endpoint URL or set MQ_ENDPOINT")
        })
    }

    /// The credentials, if both the id and the secret are set.
    pub fn credentials(&self) -> Option<Credentials> {
        let id = set(&self.access_key_id)?;
        let secret = set(&self.access_key_secret)?;
        let c = Credentials::new(id, secret);
        Some(match set(&self.security_token) {
            Some(token) => c.with_security_token(token),
            None => c,
        })
    }
}

/// The instance (`ns`) a command addresses (flag or environment variable); only commands
/// about an instance's topics and groups take it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct InstanceArgs {
    /// Instance id (`ns`); leave unset for the default instance.
    #[arg(long, env = "MQ_INSTANCE_ID", value_name = "ID")]
    pub instance_id: Option<String>,
}

impl InstanceArgs {
    /// The instance id, validated; `None` when unset (or empty).
    ///
    /// # Errors
    ///
    /// [`CliError::USAGE`] for a value that is not an instance id.
    pub fn instance(&self) -> Result<Option<InstanceId>, CliError> {
        set(&self.instance_id)
            .map(|i| InstanceId::new(i).map_err(|e| CliError::usage(format!("--instance-id: {e}"))))
            .transpose()
    }
}

/// Endpoint, credentials and instance of the client commands (flags or environment
/// variables).
///
/// Empty values count as unset. `Debug` never shows the secret or the token.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConnectionArgs {
    /// Endpoint and credentials.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The instance.
    #[command(flatten)]
    pub scope: InstanceArgs,
}

impl ConnectionArgs {
    /// The endpoint, if one is set.
    pub fn endpoint(&self) -> Option<&str> {
        self.service.endpoint()
    }

    /// The credentials, if both the id and the secret are set.
    pub fn credentials(&self) -> Option<Credentials> {
        self.service.credentials()
    }

    /// A client for the configured endpoint; fails when the endpoint or the credentials are
    /// missing or invalid.
    ///
    /// # Errors
    ///
    /// [`CliError::USAGE`] for a missing or invalid endpoint, credentials or instance id.
    pub fn client(&self) -> Result<Client, CliError> {
        let endpoint = self.service.require_endpoint()?;
        let credentials = self.credentials().ok_or_else(|| {
            CliError::usage(
                "no credentials set: pass --access-key-id and --access-key-secret or set \
                 ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            )
        })?;
        client_for(endpoint, credentials, self.scope.instance()?)
    }
}

/// Builds a client (no retries beyond the defaults, `mq-cli` user agent suffix).
///
/// # Errors
///
/// [`CliError::USAGE`] for an invalid endpoint or a client that cannot be built.
pub fn client_for(
    endpoint: &str,
    credentials: Credentials,
    instance: Option<InstanceId>,
) -> Result<Client, CliError> {
    // The CLI runs on tokio: say so, rather than rely on `Client::builder()` picking it.
    let mut builder = ClientBuilder::with_runtime(TokioRuntime::default())
        .endpoint(endpoint)
        .map_err(|e| CliError::usage(e.to_string()))?
        .credentials(credentials)
        .user_agent_suffix(concat!("mq-cli/", env!("CARGO_PKG_VERSION")));
    if let Some(instance) = instance {
        builder = builder.instance_id(instance);
    }
    builder.build().map_err(|e| CliError::usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration(" 1m30s ").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "ten", "10 parsecs", "-1s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_rfc3339_ms("2026-12-01T10:00:00Z").unwrap(),
            1_796_119_200_000
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-01T18:00:00+08:00").unwrap(),
            1_796_119_200_000
        );
        assert!(parse_rfc3339_ms("1969-12-31T23:59:59Z").is_err());
        assert!(parse_rfc3339_ms("tomorrow").is_err());
        assert!(parse_rfc3339_ms("2026-12-01 10:00").is_err());
        assert_eq!(
            format_rfc3339_ms(1_796_119_200_123),
            "2026-12-01T10:00:00.123Z"
        );
        assert_eq!(format_rfc3339_ms(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn properties() {
        assert_eq!(
            parse_property("a=").unwrap(),
            ("a".to_owned(), String::new())
        );
        assert!(parse_property("=v").is_err());
        assert!(parse_property("novalue").is_err());
    }

    #[test]
    fn connection_args() {
        let mut c = ConnectionArgs {
            service: ServiceArgs {
                endpoint: Some("  ".into()),
                access_key_id: Some("id".into()),
                access_key_secret: Some("s3cret".into()),
                security_token: Some("t0ken".into()),
            },
            scope: InstanceArgs {
                instance_id: Some("MQ_INST_x".into()),
            },
        };
        let e = c.client().unwrap_err();
        assert_eq!(e.code, CliError::USAGE);
        assert!(e.message.contains("no endpoint set"), "{e}");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("t0ken"),
            "{debug}"
        );
        c.service.endpoint = Some("http://127.0.0.1:1".into());
        let creds = c.credentials().unwrap();
        assert_eq!(creds.security_token(), Some("t0ken"));
        assert!(c.client().is_ok());
        c.service.access_key_secret = None;
        assert!(c.client().unwrap_err().message.contains("no credentials"));
        c.service.access_key_secret = Some("s".into());
        c.scope.instance_id = Some("bad instance!".into());
        assert_eq!(c.client().unwrap_err().code, CliError::USAGE);
        c.scope.instance_id = None;
        c.service.endpoint = Some("ftp://x".into());
        assert_eq!(c.client().unwrap_err().code, CliError::USAGE);
    }
}
