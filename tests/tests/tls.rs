//! The tokio client against the broker's own TLS listener (issue 9): certificates are always
//! verified — custom roots are accepted, an unknown issuer, a wrong host name or an expired
//! certificate are refused, with no fallback to plain HTTP. A refused certificate is final
//! (`TransportErrorKind::Tls`, not retryable): even an idempotent request makes exactly one
//! connection, while a handshake cut by the peer is retried.

use mq_broker::{Credential, ServerConfig, TlsConfig};
use mq_client::mq_proto::machine::FailureKind;
use mq_tests::{TEST_AK, TEST_SK, TestBroker, block_on, client_builder, unique};
use mq_tokio::{
    BatchSize, Error, GroupId, RetryConfig, TokioRuntime, TopicMessage, TopicName,
    TransportErrorKind, WaitSeconds,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A CA (PEM) and a broker certificate chain and key signed by it.
struct Pki {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn pki(names: &[&str], expired: bool) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mq client test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("leaf params");
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let leaf = params.signed_by(&leaf_key, &ca).expect("leaf");
    Pki {
        ca_pem: ca.pem(),
        chain_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn tls_broker(pki: &Pki) -> TestBroker {
    let mut config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        credentials: vec![Credential::new(TEST_AK, TEST_SK)],
        tls: Some(
            TlsConfig::from_pem(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes()).expect("tls"),
        ),
        ..ServerConfig::default()
    };
    config.limits.header_read_timeout = Duration::from_secs(2);
    TestBroker::start_with(config)
}

fn topic() -> TopicName {
    TopicName::new(unique("tls")).expect("topic")
}

/// Publishing through a client built by `builder` fails with a network error (after the
/// retries of a connection failure), quickly.
async fn refused(endpoint: &str, ca_pem: Option<&str>) -> Error {
    let mut builder = client_builder::<TokioRuntime>(endpoint).retry(RetryConfig::disabled());
    if let Some(pem) = ca_pem {
        builder = builder
            .add_root_certificates_pem(pem.as_bytes())
            .expect("CA PEM");
    }
    let started = Instant::now();
    let e = builder
        .build()
        .expect("client")
        .producer(topic())
        .publish(&TopicMessage::new("must not arrive").expect("message"))
        .await
        .expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    e
}

/// Whether `e` is the final TLS refusal: `Error::Network` of kind `Tls`, classified
/// [`FailureKind::Tls`] and not retryable.
fn is_tls_refusal(e: &Error) -> bool {
    matches!(e, Error::Network(t) if t.kind == TransportErrorKind::Tls)
        && e.failure_kind() == FailureKind::Tls
        && !e.is_retryable()
}

/// A TCP relay in front of `upstream` that counts the connections it accepts (each one is a
/// connection attempt, and so a TLS handshake, reaching the server). With no upstream it
/// closes every connection at once: a handshake cut by the peer.
struct CountingRelay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl CountingRelay {
    /// Starts the relay on the current tokio runtime (it stops with the runtime).
    async fn start(upstream: Option<SocketAddr>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let Some(upstream) = upstream else {
                    drop(inbound);
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, accepted }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An idempotent consume through a client with the default retry policy (3 attempts) built
/// for `endpoint`, trusting `ca_pem` when given; returns its error.
async fn consume_error(endpoint: &str, ca_pem: Option<&str>) -> Error {
    let mut builder = client_builder::<TokioRuntime>(endpoint);
    if let Some(pem) = ca_pem {
        builder = builder
            .add_root_certificates_pem(pem.as_bytes())
            .expect("CA PEM");
    }
    let client = builder.build().expect("client");
    assert!(client.retry_config().max_attempts() > 1);
    client
        .consumer(topic(), GroupId::new("GID_tls").expect("group"))
        .receive(
            BatchSize::new(1).expect("batch"),
            WaitSeconds::new(0).expect("wait"),
        )
        .await
        .expect_err("refused")
}

/// Unknown issuer and wrong host name: the error is the final TLS refusal and the consume
/// (idempotent, 3 attempts allowed) made exactly one connection; a handshake the peer cuts
/// is an ordinary connection failure and is retried.
#[test]
fn a_refused_certificate_is_final_and_tried_once() {
    let good = pki(&["localhost"], false);
    let broker = tls_broker(&good);
    block_on(async {
        // Client without the CA (only the webpki roots): unknown issuer.
        let relay = CountingRelay::start(Some(broker.addr())).await;
        let e = consume_error(&format!("https://localhost:{}", relay.port()), None).await;
        assert!(is_tls_refusal(&e), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");
        assert_eq!(relay.accepted(), 1, "unknown issuer: {e}");

        // Trusted CA, but the certificate is for `localhost`, not `127.0.0.1`.
        let relay = CountingRelay::start(Some(broker.addr())).await;
        let e = consume_error(
            &format!("https://127.0.0.1:{}", relay.port()),
            Some(&good.ca_pem),
        )
        .await;
        assert!(is_tls_refusal(&e), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");
        assert_eq!(relay.accepted(), 1, "wrong host name: {e}");

        // The same client set-up through a working relay: the relay itself is not the cause.
        let relay = CountingRelay::start(Some(broker.addr())).await;
        let client = client_builder::<TokioRuntime>(&format!("https://localhost:{}", relay.port()))
            .add_root_certificates_pem(good.ca_pem.as_bytes())
            .expect("CA")
            .build()
            .expect("client");
        client
            .consumer(topic(), GroupId::new("GID_tls").expect("group"))
            .receive(
                BatchSize::new(1).expect("batch"),
                WaitSeconds::new(0).expect("wait"),
            )
            .await
            .expect("consume through the relay");

        // A peer that cuts the handshake: transient, retried up to the attempt limit.
        let cut = CountingRelay::start(None).await;
        let e = consume_error(
            &format!("https://localhost:{}", cut.port()),
            Some(&good.ca_pem),
        )
        .await;
        assert!(
            matches!(&e, Error::Network(t) if t.kind == TransportErrorKind::Connect),
            "{e:?}"
        );
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(cut.accepted(), 3, "{e}");
    });
    assert_eq!(broker.stats().published, 0);
}

#[test]
fn the_client_verifies_the_broker_certificate() {
    let good = pki(&["localhost"], false);
    let broker = tls_broker(&good);
    let port = broker.addr().port();
    let https = format!("https://localhost:{port}");
    block_on(async {
        // Trusted through a custom root: works.
        let client = client_builder::<TokioRuntime>(&https)
            .add_root_certificates_pem(good.ca_pem.as_bytes())
            .expect("CA")
            .build()
            .expect("client");
        let t = topic();
        let consumer =
            client.consumer(t.clone(), mq_tokio::GroupId::new("GID_tls").expect("group"));
        let one = BatchSize::new(1).expect("batch");
        assert!(
            consumer
                .receive(one, WaitSeconds::new(0).expect("wait"))
                .await
                .expect("register over https")
                .is_empty()
        );
        client
            .producer(t.clone())
            .publish(&TopicMessage::new("verified").expect("message"))
            .await
            .expect("publish over https");
        let got = consumer
            .receive(one, WaitSeconds::new(2).expect("wait"))
            .await
            .expect("receive over https");
        assert_eq!(got[0].body, "verified");

        // Unknown issuer (only the webpki roots).
        let e = refused(&https, None).await;
        assert!(is_tls_refusal(&e), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");
        // Trusted CA, but the certificate is not for this name.
        let e = refused(&format!("https://127.0.0.1:{port}"), Some(&good.ca_pem)).await;
        assert!(is_tls_refusal(&e), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");
        // Another CA's root does not help.
        let other = pki(&["localhost"], false);
        let e = refused(&https, Some(&other.ca_pem)).await;
        assert!(is_tls_refusal(&e), "{e:?}");
        // Plain HTTP to the TLS port: an error, not a downgrade.
        let e = refused(&format!("http://localhost:{port}"), None).await;
        assert!(matches!(e, Error::Network(_) | Error::Response(_)), "{e:?}");
        // Garbage instead of a PEM root.
        assert!(matches!(
            client_builder::<TokioRuntime>(&https).add_root_certificates_pem(b"not a certificate"),
            Err(Error::Config(mq_tokio::ConfigError::NoCertificateInPem))
        ));
    });
    // Nothing reached the broker from the refused clients.
    assert_eq!(broker.stats().published, 1);
}

#[test]
fn an_expired_certificate_is_refused() {
    let expired = pki(&["localhost"], true);
    let broker = tls_broker(&expired);
    let https = format!("https://localhost:{}", broker.addr().port());
    block_on(async {
        let e = refused(&https, Some(&expired.ca_pem)).await;
        assert!(is_tls_refusal(&e), "{e:?}");
        assert!(e.to_string().to_lowercase().contains("expired"), "{e}");
    });
    assert_eq!(broker.stats().published, 0);
}
