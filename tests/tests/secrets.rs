//! No secret (AccessKey secret, security token, proxy password, the gateway's handle key) and no signature ever appears in Debug output
//! or in tracing output of the client and the broker, even at TRACE level.

use mq_client::{BatchSize, Credentials, TopicMessage, WaitSeconds};
use mq_tests::{TEST_AK, TEST_SK, TestBroker};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const TOKEN: &str = "sts-token-that-must-not-leak";
const PROXY_PASSWORD: &str = "proxy-pass-not-to-leak";
/// `Basic` credentials of `mq:PROXY_PASSWORD` and `mq:wrong-proxy-pass`.
const PROXY_BASIC: [&str; 2] = [
    "bXE6cHJveHktcGFzcy1ub3QtdG8tbGVhaw",
    "bXE6d3JvbmctcHJveHktcGFzcw",
];

#[test]
fn secrets_never_appear_in_debug_or_traces() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Global, so the broker's thread is captured too (this test binary has only this test).
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let broker = TestBroker::start();
    let credentials = Credentials::new(TEST_AK, TEST_SK).with_security_token(TOKEN);
    let debug_creds = format!("{credentials:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client_debug = rt.block_on(async {
        let builder = mq_tokio::ClientBuilder::with_runtime(mq_tokio::TokioRuntime::default())
            .endpoint(broker.endpoint())
            .expect("endpoint")
            .credentials(credentials);
        let builder_debug = format!("{builder:?}");
        let client = builder.build().expect("client");
        let topic: mq_client::TopicName = "secrets".parse().expect("topic");
        let consumer = client.consumer(topic.clone(), "GID_secrets".parse().expect("group"));
        consumer
            .receive(BatchSize::MAX, WaitSeconds::new(0).expect("wait"))
            .await
            .expect("register");
        client
            .producer(topic)
            .publish(&TopicMessage::new("hello").expect("message"))
            .await
            .expect("publish");
        let got = consumer
            .receive(BatchSize::MAX, WaitSeconds::new(2).expect("wait"))
            .await
            .expect("receive");
        let handles: Vec<_> = got.iter().map(|m| m.receipt_handle.clone()).collect();
        consumer.ack(&handles).await.expect("ack");
        // A failing request is traced too.
        let bad = mq_tokio::ClientBuilder::with_runtime(mq_tokio::TokioRuntime::default())
            .endpoint(broker.endpoint())
            .expect("endpoint")
            .credentials(Credentials::new(TEST_AK, "wrong-secret-value"))
            .build()
            .expect("client");
        let err = bad
            .producer("secrets".parse().expect("topic"))
            .publish(&TopicMessage::new("x").expect("message"))
            .await
            .expect_err("wrong secret");
        // Through a proxy with a password, accepted and refused (skipped without tinyproxy
        // unless MQ_REQUIRE_PROXY=1).
        let proxied = match mq_tests::proxy::Tinyproxy::start(Some(("mq", PROXY_PASSWORD)), &[]) {
            Some(proxy) => {
                let mut shown = String::new();
                for password in [PROXY_PASSWORD, "wrong-proxy-pass"] {
                    let builder =
                        mq_tokio::ClientBuilder::with_runtime(mq_tokio::TokioRuntime::default())
                            .endpoint(broker.endpoint())
                            .expect("endpoint")
                            .credentials(Credentials::new(TEST_AK, TEST_SK))
                            .proxy(
                                mq_client::Proxy::new(&proxy.url_with("mq", password))
                                    .expect("proxy"),
                            );
                    shown.push_str(&format!("{builder:?}\n"));
                    let client = builder.build().expect("client");
                    let result = client
                        .producer("secrets".parse().expect("topic"))
                        .publish(&TopicMessage::new("proxied").expect("message"))
                        .await;
                    assert_eq!(result.is_ok(), password == PROXY_PASSWORD, "{result:?}");
                    shown.push_str(&format!("{client:?}\n{result:?}\n"));
                    if let Err(e) = result {
                        shown.push_str(&format!("{e}\n"));
                    }
                }
                shown
            }
            None => String::new(),
        };
        // The error's Display and Debug (what applications log) are checked too.
        format!("{builder_debug}\n{client:?}\n{bad:?}\n{err}\n{err:?}\n{proxied}")
    });
    let broker_debug = format!(
        "{:?}",
        mq_broker::Credential::parse(&format!("{TEST_AK}:{TEST_SK}")).expect("credential")
    );
    drop(broker);
    // The gateway's receipt-handle key, through every configuration path.
    let handle_key_hex = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";
    let mut gateway_args = mq_broker::BrokerArgs {
        backend: Some("rocketmq://127.0.0.1:8081".into()),
        handle_key: Some(handle_key_hex.into()),
        ..Default::default()
    };
    let (gateway_config, _) = mq_broker::load_config(&gateway_args).expect("gateway config");
    gateway_args.credentials = vec![format!("{TEST_AK}:{TEST_SK}")];
    let gateway_debug = format!("{gateway_args:?}\n{gateway_config:?}");

    let traces = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("utf-8");
    assert!(
        traces.contains("mq.request"),
        "the client traced its requests:\n{traces}"
    );
    assert!(
        traces.contains("mq_broker"),
        "the broker traced its requests:\n{traces}"
    );
    for (what, text) in [
        ("credentials Debug", debug_creds.as_str()),
        ("client Debug", client_debug.as_str()),
        ("broker credential Debug", broker_debug.as_str()),
        ("gateway configuration Debug", gateway_debug.as_str()),
        ("traces", traces.as_str()),
    ] {
        for secret in [
            TEST_SK,
            TOKEN,
            "wrong-secret-value",
            "MQ test-ak:",
            handle_key_hex,
            PROXY_PASSWORD,
            "wrong-proxy-pass",
            PROXY_BASIC[0],
            PROXY_BASIC[1],
        ] {
            assert!(
                !text.contains(secret),
                "{what} contains {secret:?}:\n{text}"
            );
        }
    }
}
