//! Client telemetry against the embedded broker: W3C trace context carried from a producer's
//! span to a consumer's span through the OpenTelemetry bridge (feature `otel`), and the
//! client metrics recorded through the `metrics` facade.
//!
//! Each test runs inside a thread-local tracing subscriber or metrics recorder, so tests
//! running in parallel do not mix; the metrics test uses a current-thread tokio runtime so
//! that the client's tasks (stream driver, connections) record into it too.

use futures::StreamExt;
use futures::future::Either;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use mq_async_std::AsyncIoRuntime;
use mq_client::Runtime;
use mq_client::mq_proto::trace::KEY_TRACEPARENT;
use mq_client::telemetry::{
    ACKS_TOTAL, DELIVERIES_TOTAL, POOL_CONNECTIONS, REQUEST_DURATION_SECONDS, REQUESTS_TOTAL,
    RETRIES_TOTAL, STREAM_IN_FLIGHT,
};
use mq_client::{
    BatchSize, ConsumerConfig, Credentials, Message, ReceiptHandle, RetryConfig, TopicMessage,
    WaitSeconds,
};
use mq_tests::{TestBroker, client_builder, unique};
use mq_tokio::TokioRuntime;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Receives from `stream` until `n` deliveries are in hand (30 s at most, on `R`'s timer).
async fn take<R: Runtime + Default>(
    stream: &mut mq_client::MessageStream,
    n: usize,
) -> Vec<mq_client::Delivery> {
    let mut got = Vec::new();
    let mut deadline = R::default().sleep(Duration::from_secs(30));
    while got.len() < n {
        match futures::future::select(stream.next(), &mut deadline).await {
            Either::Left((next, _)) => {
                let item = next.expect("the stream goes on").expect("an item");
                match item.into_delivery() {
                    Ok(delivery) => got.push(delivery),
                    Err(poison) => panic!("a poison message: {}", poison.reason),
                }
            }
            Either::Right(_) => panic!("{} of {n} deliveries within 30 s", got.len()),
        }
    }
    got
}

async fn publish(
    client: &mq_client::Client,
    topic: &mq_client::TopicName,
    body: &str,
) -> Result<mq_client::PublishReceipt, mq_client::Error> {
    let m = TopicMessage::new(body).expect("message");
    client.producer(topic.clone()).publish(&m).await
}

#[test]
fn consumer_span_is_a_child_of_the_producer_span_on_tokio() {
    consumer_span_is_a_child_of_the_producer_span(|endpoint, topic| {
        current_thread().block_on(traced_pair::<TokioRuntime>(endpoint, topic));
    });
}

#[test]
fn consumer_span_is_a_child_of_the_producer_span_on_async_io() {
    consumer_span_is_a_child_of_the_producer_span(|endpoint, topic| {
        smol::block_on(traced_pair::<AsyncIoRuntime>(endpoint, topic));
    });
}

/// Publishes with and without trace context propagation through the broker at `endpoint`
/// and handles the one traced message in `otel::consumer_span`.
async fn traced_pair<R: Runtime + Default>(endpoint: &str, topic: &str) {
    let traced = client_builder::<R>(endpoint)
        .trace_context_source(mq_client::otel::current_trace_context)
        .build()
        .expect("client");
    let untraced = client_builder::<R>(endpoint).build().expect("client");
    let topic = topic.parse().expect("topic");
    let consumer = untraced.consumer(topic, "GID_trace".parse().expect("group"));
    // Register the group before publishing, so it receives what follows.
    consumer
        .receive(BatchSize::MAX, WaitSeconds::new(0).expect("wait"))
        .await
        .expect("register the group");

    // In a span: the traced client injects its context, the untraced one does not
    // (opt-in); outside any span there is no context to inject.
    let produce = tracing::info_span!("produce");
    async {
        publish(&traced, consumer.topic(), "traced")
            .await
            .expect("publish");
        publish(&untraced, consumer.topic(), "not opted in")
            .await
            .expect("publish");
    }
    .instrument(produce)
    .await;
    publish(&traced, consumer.topic(), "no span")
        .await
        .expect("publish");

    let mut stream = consumer
        .stream_with_config(ConsumerConfig::normal().with_wait(WaitSeconds::new(1).expect("wait")));
    let deliveries = take::<R>(&mut stream, 3).await;
    for d in deliveries {
        let carried = d.property(KEY_TRACEPARENT).is_some();
        assert_eq!(
            carried,
            d.body == "traced",
            "{}: {:?}",
            d.body,
            d.properties
        );
        if carried {
            let span = mq_client::otel::consumer_span(&d);
            async {
                tracing::info!("handled");
            }
            .instrument(span)
            .await;
        }
        let _ = d.ack().await;
    }
    stream.shutdown().await;
}

/// Runs `run(endpoint, topic)` inside a tracing subscriber exporting to OpenTelemetry in
/// memory, and checks the consumer's span is a child of the producer's.
fn consumer_span_is_a_child_of_the_producer_span(run: impl FnOnce(&str, &str)) {
    let broker = TestBroker::start();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("mq-tests")));
    let topic = unique("trace");
    tracing::subscriber::with_default(subscriber, || run(&broker.endpoint(), &topic));
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let find = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "span {name} in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let (produce, process) = (find("produce"), find("mq.process"));
    assert_eq!(
        process.span_context.trace_id(),
        produce.span_context.trace_id(),
        "the consumer's span is in the producer's trace"
    );
    assert_eq!(
        process.parent_span_id,
        produce.span_context.span_id(),
        "and its parent is the span the message was published from"
    );
    assert!(process.parent_span_is_remote);
}

#[test]
fn an_invalid_traceparent_starts_a_new_trace() {
    let mut properties = mq_client::Properties::new();
    properties
        .insert(
            KEY_TRACEPARENT,
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        )
        .expect("valid as a property");
    let message = Message {
        message_id: mq_client::MessageId::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010").expect("id"),
        receipt_handle: ReceiptHandle::new("h-1").expect("handle"),
        body_md5: mq_client::mq_proto::body_md5("b").into(),
        body: "b".into(),
        publish_time: 0,
        next_consume_time: 0,
        first_consume_time: 0,
        consumed_times: 1,
        tag: None,
        properties,
    };
    assert!(message.trace_context().is_err());
    assert!(mq_client::otel::remote_context(&message).is_none());
}

/// The metrics recorded so far. The debugging recorder hands out what changed since its last
/// snapshot (counters and gauges are reset to 0, histograms drained), so the deltas are
/// summed here; the client only adds to and subtracts from its gauges.
struct Recorded {
    snapshotter: Snapshotter,
    series: BTreeMap<SeriesKey, Values>,
}

/// A series: its name and its labels, sorted.
type SeriesKey = (String, Vec<(String, String)>);

/// What a series recorded in all.
#[derive(Default)]
struct Values {
    counter: u64,
    gauge: f64,
    samples: Vec<f64>,
}

impl Recorded {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            series: BTreeMap::new(),
        }
    }

    /// Adds what was recorded since the last call.
    fn update(&mut self) -> &Self {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort_unstable();
            let entry = self
                .series
                .entry((key.name().to_owned(), labels))
                .or_default();
            match value {
                DebugValue::Counter(n) => entry.counter += n,
                DebugValue::Gauge(g) => entry.gauge += g.into_inner(),
                DebugValue::Histogram(v) => {
                    entry.samples.extend(v.into_iter().map(|x| x.into_inner()))
                }
            }
        }
        self
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Values> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort_unstable();
        self.series.get(&(name.to_owned(), labels))
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.get(name, labels).map_or(0, |s| s.counter)
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("gauge {name} {labels:?} recorded"))
            .gauge
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> &[f64] {
        self.get(name, labels).map_or(&[], |s| &s.samples)
    }
}

/// On tokio only: the recorder is thread-local, and the async-io runtime runs the stream's
/// and connections' tasks on its executor threads; what is recorded, and where, is the same
/// code on every runtime.
#[test]
fn client_metrics_count_requests_retries_deliveries_and_acks() {
    let broker = TestBroker::start();
    let recorder = DebuggingRecorder::new();
    let mut recorded = Recorded::new(&recorder);
    let topic = unique("metrics");
    let group = "GID_metrics";
    let labels = [("topic", topic.as_str()), ("group", group)];
    // A port nothing listens on: connecting fails before anything is sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    metrics::with_local_recorder(&recorder, || {
        current_thread().block_on(async {
            let client = client_builder::<TokioRuntime>(&broker.endpoint())
                .build()
                .expect("client");
            let consumer =
                client.consumer(topic.parse().expect("topic"), group.parse().expect("group"));
            let none = consumer
                .receive(BatchSize::MAX, WaitSeconds::new(0).expect("wait"))
                .await
                .expect("register the group");
            assert!(none.is_empty());
            let producer = client.producer(consumer.topic().clone());
            for i in 0..3 {
                let m = TopicMessage::new(format!("m{i}")).expect("message");
                producer.publish(&m).await.expect("publish");
            }
            let latencies = recorded.update().histogram(
                REQUEST_DURATION_SECONDS,
                &[("operation", "publish"), ("outcome", "ok")],
            );
            assert_eq!(latencies.len(), 3, "one latency per request");
            assert!(
                latencies.iter().all(|s| *s > 0.0 && *s < 30.0),
                "{latencies:?}"
            );
            assert!(recorded.gauge(POOL_CONNECTIONS, &[]) >= 1.0);

            let mut stream = consumer.stream_with_config(
                ConsumerConfig::normal().with_wait(WaitSeconds::new(1).expect("wait")),
            );
            let mut held = take::<TokioRuntime>(&mut stream, 3).await;
            assert_eq!(recorded.update().gauge(STREAM_IN_FLIGHT, &labels), 3.0);
            let released = held.pop().expect("three");
            released.release();
            for d in held {
                d.ack().await.expect("acked");
            }
            stream.shutdown().await;

            // Refused by the service: a handle it never gave out.
            let bogus =
                ReceiptHandle::new("0BC1EF3E1A9C18B4AAC2558D1E4F0010-MCAx").expect("handle");
            assert!(consumer.ack([&bogus]).await.is_err());

            // Refused with a service error (wrong secret): not retried.
            let wrong = client_builder::<TokioRuntime>(&broker.endpoint())
                .credentials(Credentials::new(mq_tests::TEST_AK, "wrong-secret"))
                .build()
                .expect("client");
            let refused = publish(&wrong, consumer.topic(), "refused").await;
            assert!(refused.is_err(), "{refused:?}");

            // Connection refused: never sent, so retried up to the attempt limit.
            let unreachable = client_builder::<TokioRuntime>(&format!("http://{closed}"))
                .retry(
                    RetryConfig::default()
                        .with_max_attempts(3)
                        .with_initial_backoff(Duration::from_millis(1))
                        .with_max_backoff(Duration::from_millis(5)),
                )
                .build()
                .expect("client");
            let lost = publish(&unreachable, consumer.topic(), "lost").await;
            assert!(lost.is_err(), "{lost:?}");
        });
    });
    let s = recorded.update();
    let publish = |outcome| {
        s.counter(
            REQUESTS_TOTAL,
            &[("operation", "publish"), ("outcome", outcome)],
        )
    };
    assert_eq!(publish("ok"), 3);
    assert_eq!(publish("service_error"), 1);
    assert_eq!(publish("network_error"), 3);
    assert_eq!(s.counter(RETRIES_TOTAL, &[("operation", "publish")]), 2);
    assert!(
        s.counter(
            REQUESTS_TOTAL,
            &[("operation", "consume"), ("outcome", "ok")]
        ) >= 2
    );
    assert_eq!(s.counter(DELIVERIES_TOTAL, &labels), 3);
    assert_eq!(
        s.counter(ACKS_TOTAL, &[("kind", "ack"), ("outcome", "ok")]),
        2
    );
    assert_eq!(
        s.counter(ACKS_TOTAL, &[("kind", "ack"), ("outcome", "refused")]),
        1
    );
    assert_eq!(
        s.gauge(STREAM_IN_FLIGHT, &labels),
        0.0,
        "acked and released deliveries are out of hand"
    );
    assert_eq!(
        s.gauge(POOL_CONNECTIONS, &[]),
        0.0,
        "connections are counted until their task ends (here: with the runtime)"
    );
}
