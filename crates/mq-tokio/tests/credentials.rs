//! Credentials with an empty AccessKey id or secret are a typed error where the client takes
//! them (`build()` for fixed ones, before each request for a provider's), never a request
//! the service refuses later; the builder's `Debug` still hides the secret.

use mq_tokio::mq_proto::sign::Credentials;
use mq_tokio::{
    BoxFuture, ClientBuilder, ConfigError, CredentialsProvider, Error, TokioRuntime, TopicMessage,
};

/// A builder for an endpoint nobody listens on (nothing may be sent anyway).
fn builder() -> ClientBuilder {
    ClientBuilder::with_runtime(TokioRuntime::default())
        .endpoint("http://127.0.0.1:9")
        .expect("endpoint")
        .no_proxy()
}

fn empty_part(e: &Error) -> Option<&'static str> {
    match e {
        Error::Config(ConfigError::EmptyCredentials { what }) => Some(what),
        _ => None,
    }
}

#[test]
fn fixed_credentials_with_an_empty_part_fail_build() {
    for (id, secret, what) in [
        ("", "", "AccessKey id"),
        ("", "secret", "AccessKey id"),
        ("id", "", "AccessKey secret"),
    ] {
        let e = builder()
            .credentials(Credentials::new(id, secret))
            .build()
            .expect_err("refused");
        assert_eq!(empty_part(&e), Some(what), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("invalid configuration: the {what} of the credentials is empty")
        );
    }
    // A security token given blank (fresh-eyes finding: accepted, and sent as an empty
    // `security-token` header, while an empty ALIBABA_CLOUD_SECURITY_TOKEN means none).
    for token in ["", "  "] {
        let e = builder()
            .credentials(Credentials::new("id", "secret").with_security_token(token))
            .build()
            .expect_err("refused");
        assert_eq!(empty_part(&e), Some("security token"), "{e:?}");
    }
    let ok = builder().credentials(Credentials::new("id", "s3cret-value"));
    // A secret is never sent: any character of it signs (a ':' or a space in it is fine).
    builder()
        .credentials(Credentials::new("id", " se:cret "))
        .build()
        .expect("any secret builds");
    assert!(!format!("{ok:?}").contains("s3cret-value"), "{ok:?}");
    ok.build().expect("a complete key pair builds");
}

/// An id or token its header cannot carry is refused by `build()`, not sent with the
/// character dropped (which the service would refuse as another, unknown key).
#[test]
fn an_id_or_token_its_header_cannot_carry_fails_build() {
    for (credentials, what, character) in [
        (Credentials::new("id\nx", "secret"), "AccessKey id", '\n'),
        (
            Credentials::new("\u{1b}id", "secret"),
            "AccessKey id",
            '\u{1b}',
        ),
        (
            Credentials::new("id", "secret").with_security_token("STS.tok\r"),
            "security token",
            '\r',
        ),
        // Copied with a stray space (fresh-eyes finding: `MQ LTAIid :sig` names another
        // key; a token's end space is dropped by HTTP), or a `:` the header splits at.
        (Credentials::new("LTAIid ", "secret"), "AccessKey id", ' '),
        (Credentials::new("\tLTAIid", "secret"), "AccessKey id", '\t'),
        (Credentials::new("LTAI:id", "secret"), "AccessKey id", ':'),
        (
            Credentials::new("id", "secret").with_security_token(" STS.tok"),
            "security token",
            ' ',
        ),
    ] {
        let e = builder()
            .credentials(credentials)
            .build()
            .expect_err("refused");
        match &e {
            Error::Config(ConfigError::UnsendableCredentials {
                what: w,
                character: c,
            }) => assert_eq!((*w, *c), (what, character)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            format!(
                "invalid configuration: the {what} of the credentials contains {character:?}, which a request header cannot carry"
            )
        );
    }
}

/// Gives the same credentials every time.
#[derive(Debug)]
struct Fixed(&'static str, &'static str);

impl CredentialsProvider for Fixed {
    fn credentials(&self) -> BoxFuture<Result<Credentials, Error>> {
        let c = Credentials::new(self.0, self.1);
        Box::pin(async move { Ok(c) })
    }
}

#[tokio::test]
async fn a_providers_empty_credentials_fail_the_request_unsent() {
    let client = builder()
        .credentials_provider(Fixed("id", ""))
        .build()
        .expect("a provider is asked per request");
    let topic = "T".parse().expect("topic");
    let e = client
        .producer(topic)
        .publish(&TopicMessage::new("x").expect("message"))
        .await
        .expect_err("refused");
    // Not a connection error: nothing was sent to 127.0.0.1:9.
    assert_eq!(empty_part(&e), Some("AccessKey secret"), "{e:?}");
    assert!(!e.is_retryable(), "{e:?}");
}
