//! The broker's TLS listener (issue 9): `mq-broker --tls-cert CHAIN.pem --tls-key KEY.pem`
//! serves the API over HTTPS with rustls; plain HTTP, garbage and stalled handshakes on the
//! TLS port are cut without an answer; bad flags fail with a message.

mod rawhttp;

use mq_broker::{Broker, Credential, ServerConfig, TlsConfig};
use rawhttp::{Api, Conn, ReadError, Reader};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const AK: &str = "tls-ak";
const SK: &str = "tls-sk";

/// A throw-away CA and a leaf certificate for `localhost` and 127.0.0.1 signed by it.
struct Pki {
    ca_der: CertificateDer<'static>,
    chain_pem: String,
    key_pem: String,
}

fn new_pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mq-broker test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    Pki {
        ca_der: CertificateDer::from(ca.der().to_vec()),
        chain_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

fn connector(ca: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Publishes then consumes over TLS, checking ALPN and the answers.
async fn publish_and_consume_over_tls(addr: SocketAddr, ca: &CertificateDer<'static>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = connector(ca)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with the broker");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (r, mut w) = tokio::io::split(tls);
    let mut reader = Reader::new(r);
    let api = Api::new(addr, AK, SK, None);
    for (request, status) in [
        (api.consume("Secure", "GID_tls", 1, 0), 404),
        (api.publish("Secure", "over TLS"), 201),
    ] {
        w.write_all(&request).await.expect("write");
        let resp = reader.read_response().await.expect("response");
        assert_eq!(resp.status, status, "{}", resp.text());
        assert!(resp.is_protocol_answer());
    }
    w.write_all(&api.consume("Secure", "GID_tls", 1, 0))
        .await
        .expect("write");
    let resp = reader.read_response().await.expect("response");
    let got = rawhttp::messages(&resp);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_https_and_cuts_everything_else() {
    let pki = new_pki();
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        credentials: vec![Credential::new(AK, SK)],
        tls: Some(
            TlsConfig::from_pem(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes()).expect("tls"),
        ),
        ..ServerConfig::default()
    };
    config.limits.header_read_timeout = Duration::from_secs(1);
    let broker = Broker::start(config).await.expect("broker");
    let addr = broker.local_addr();
    assert!(broker.endpoint().starts_with("https://127.0.0.1:"));
    publish_and_consume_over_tls(addr, &pki.ca_der).await;

    // Plain HTTP on the TLS port: no answer, the connection is cut.
    let mut plain = Conn::open(addr).await;
    assert!(matches!(
        plain
            .roundtrip(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await,
        Err(ReadError::Closed) | Err(ReadError::Garbage(_))
    ));
    // A handshake that never comes: cut after the header read timeout.
    let mut stalled = Conn::open(addr).await;
    let started = Instant::now();
    assert!(stalled.reader.closed_within(Duration::from_secs(4)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A client that does not trust the certificate refuses it.
    let other = new_pki();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let refused = connector(&other.ca_der)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await;
    assert!(refused.is_err(), "certificate from an unknown CA accepted");
    // The broker still serves TLS clients.
    publish_and_consume_over_tls(addr, &pki.ca_der).await;
    broker.shutdown().await;
}

#[test]
fn certificate_and_key_errors_are_typed() {
    let pki = new_pki();
    let other = new_pki();
    assert!(matches!(
        TlsConfig::from_pem(b"", pki.key_pem.as_bytes()),
        Err(mq_broker::TlsError::NoCertificate)
    ));
    assert!(matches!(
        TlsConfig::from_pem(pki.chain_pem.as_bytes(), b"no key here"),
        Err(mq_broker::TlsError::NoKey)
    ));
    assert!(matches!(
        TlsConfig::from_pem(pki.chain_pem.as_bytes(), other.key_pem.as_bytes()),
        Err(mq_broker::TlsError::Rustls(_))
    ));
    let e = TlsConfig::from_files(
        std::path::Path::new("/nonexistent/chain.pem"),
        std::path::Path::new("/nonexistent/key.pem"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/chain.pem"), "{e}");
    // Debug output never shows the key.
    let tls = TlsConfig::from_pem(pki.chain_pem.as_bytes(), pki.key_pem.as_bytes()).expect("ok");
    let config = ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    };
    let shown = format!("{config:?}");
    let key_body: String = pki.key_pem.lines().nth(1).expect("PEM line").to_owned();
    assert!(!shown.contains(&key_body), "{shown}");
}

#[cfg(unix)]
mod binary {
    use super::*;
    use std::process::Command;

    fn dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mq-broker-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn tls_flags_serve_https() {
        let pki = new_pki();
        let dir = dir("serve");
        let (cert, key) = (dir.join("chain.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &pki.chain_pem).expect("write chain");
        std::fs::write(&key, &pki.key_pem).expect("write key");
        let (_running, line, _stdout) = rawhttp::spawn_broker(
            rawhttp::broker_command(AK, SK)
                .arg("--tls-cert")
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key),
        );
        let port: u16 = line
            .trim_end()
            .strip_prefix("listening on https://127.0.0.1:")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .parse()
            .expect("port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(publish_and_consume_over_tls(addr, &pki.ca_der));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_tls_flags_fail_with_a_message() {
        let pki = new_pki();
        let dir = dir("flags");
        let cert = dir.join("only-chain.pem");
        std::fs::write(&cert, &pki.chain_pem).expect("write chain");
        let missing = dir.join("missing-key.pem");
        for (args, expected) in [
            (vec!["--tls-cert".into(), cert.clone()], "--tls-key"),
            (
                vec![
                    "--tls-cert".into(),
                    cert.clone(),
                    "--tls-key".into(),
                    missing.clone(),
                ],
                "missing-key.pem",
            ),
            (
                vec!["--tls-cert".into(), cert.clone(), "--tls-key".into(), cert],
                "no private key",
            ),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_mq-broker"))
                .args(["--listen", "127.0.0.1:0"])
                .args(&args)
                .output()
                .expect("run");
            assert!(!out.status.success(), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(expected), "{args:?}: {err}");
            assert!(out.stdout.is_empty());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
