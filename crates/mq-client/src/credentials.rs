//! Where the client gets its credentials: static keys, the environment, or a provider that
//! refreshes them (for example STS tokens).

use crate::error::{ConfigError, Error};
use crate::runtime::BoxFuture;
use mq_proto::sign::Credentials;
use std::fmt;

/// Environment variable holding the AccessKey id.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding an optional STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// Supplies credentials for each request. Called once per request attempt, so an
/// implementation can cache and refresh short-lived STS tokens.
///
/// ```
/// use mq_client::{CredentialsProvider, BoxFuture, Error};
/// use mq_proto::sign::Credentials;
///
/// #[derive(Debug)]
/// struct Rotating;
/// impl CredentialsProvider for Rotating {
///     fn credentials(&self) -> BoxFuture<Result<Credentials, Error>> {
///         Box::pin(async { Ok(Credentials::new("id", "secret").with_security_token("sts")) })
///     }
/// }
/// ```
pub trait CredentialsProvider: fmt::Debug + Send + Sync + 'static {
    /// The credentials to sign the next request with.
    ///
    /// # Errors
    ///
    /// Whatever stops the provider; [`Error::credentials`] wraps its own error as
    /// [`Error::Credentials`]. The request is not sent then, and the error is returned as
    /// it is (not retried unless its [`Error::failure_kind`] is transient).
    fn credentials(&self) -> BoxFuture<Result<Credentials, Error>>;
}

/// Refuses credentials no request can be signed with: an empty AccessKey id, secret or
/// security token (when one is given), or an id or security token with a character its
/// header cannot carry (a control character, a space at either end, a `:` in the id)
/// (`Credentials::new` takes any text; the client checks what it will sign with here).
///
/// # Errors
///
/// [`ConfigError::EmptyCredentials`] naming the empty part,
/// [`ConfigError::UnsendableCredentials`] naming the part and the character.
pub(crate) fn check_credentials(credentials: &Credentials) -> Result<(), ConfigError> {
    if credentials.access_key_id().is_empty() {
        return Err(ConfigError::EmptyCredentials {
            what: "AccessKey id",
        });
    }
    if credentials.access_key_secret().is_empty() {
        return Err(ConfigError::EmptyCredentials {
            what: "AccessKey secret",
        });
    }
    // An empty token would be sent as an empty `security-token` header (the service's
    // answer: a refusal naming the token); `credentials_from_env` takes an empty
    // `ALIBABA_CLOUD_SECURITY_TOKEN` for none, `with_security_token("")` is a mistake.
    if credentials
        .security_token()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(ConfigError::EmptyCredentials {
            what: "security token",
        });
    }
    for (what, value) in [
        ("AccessKey id", Some(credentials.access_key_id())),
        ("security token", credentials.security_token()),
    ] {
        if let Some(character) = value.and_then(|v| unsendable(v, what == "AccessKey id")) {
            return Err(ConfigError::UnsendableCredentials { what, character });
        }
    }
    Ok(())
}

/// The first character of an AccessKey id (`is_id`) or security token that its header
/// cannot carry as given: a control character; a space or tab at either end (HTTP drops
/// it from a header value's ends, and `Authorization: MQ {id}:{signature}` would name
/// another key: a value copied with a stray space); in an id, a `:` (the header's
/// separator: the service reads the id up to the first one).
fn unsendable(value: &str, is_id: bool) -> Option<char> {
    let edge = [value.chars().next(), value.chars().next_back()]
        .into_iter()
        .flatten()
        .find(|c| c.is_whitespace());
    value
        .chars()
        .find(|&c| c.is_control() || (is_id && c == ':'))
        .or(edge)
}

/// Fixed credentials.
#[derive(Clone, Debug)]
pub struct StaticCredentials(Credentials);

impl StaticCredentials {
    /// Wraps fixed credentials.
    pub fn new(credentials: Credentials) -> Self {
        Self(credentials)
    }
}

impl CredentialsProvider for StaticCredentials {
    fn credentials(&self) -> BoxFuture<Result<Credentials, Error>> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c) })
    }
}

/// Reads `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and the optional
/// `ALIBABA_CLOUD_SECURITY_TOKEN`.
///
/// # Errors
///
/// [`Error::Config`] with [`ConfigError::MissingEnvVar`] naming the id or secret variable
/// that is unset or empty, or [`ConfigError::EnvVarNotUnicode`] naming one of the three
/// that is not valid UTF-8.
pub fn credentials_from_env() -> Result<Credentials, Error> {
    let required = |variable| {
        env_var(variable)?
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::MissingEnvVar { variable })
    };
    let mut c = Credentials::new(
        required(ENV_ACCESS_KEY_ID)?,
        required(ENV_ACCESS_KEY_SECRET)?,
    );
    if let Some(token) = env_var(ENV_SECURITY_TOKEN)?.filter(|t| !t.is_empty()) {
        c = c.with_security_token(token);
    }
    Ok(c)
}

/// The environment variable `variable`, `None` when it is unset.
///
/// # Errors
///
/// [`ConfigError::EnvVarNotUnicode`] when its value is not valid UTF-8.
pub(crate) fn env_var(variable: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(variable) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::EnvVarNotUnicode { variable }),
    }
}
