//! Publish throughput of the broker over HTTP, in memory and durable (`--data-dir`), with
//! 1, 16 and 64 concurrent publishers. Each publisher is a keep-alive connection that sends
//! its next 200-byte message when the previous one got its 201; a consumer group is
//! registered so every message is stored. Broker and load share the machine.
//!
//! `cargo bench -p mq-broker --bench durable_publish` (or, without a release build,
//! `cargo test -p mq-broker --bench durable_publish -- --bench`) prints a Markdown table.
//! Without `--bench` (as under `cargo test`) it runs a tiny smoke version.

#[path = "../tests/support/mod.rs"]
mod support;

use mq_broker::{Broker, CoreConfig, Credential, ServerConfig};
use mq_proto::{ConsumeKind, GroupId, TopicMessage, TopicName};
use std::time::{Duration, Instant};
use support::{Client, TempDir};

struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run(durable: bool, publishers: usize, duration: Duration) -> Run {
    let dir = TempDir::new("bench-publish");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        credentials: vec![Credential::new(support::AK, support::SK)],
        core: CoreConfig::default(),
        data_dir: durable.then(|| dir.path().to_owned()),
        ..ServerConfig::default()
    };
    let broker = Broker::start(config).await.expect("broker");
    let addr = broker.local_addr();
    let topic = TopicName::new("bench").expect("topic");
    let group = GroupId::new("GID_bench").expect("group");
    Client::new(addr)
        .consume(&topic, &group, ConsumeKind::Normal, 1, 0)
        .await
        .expect("transport")
        .expect("consume");
    let body = "x".repeat(200);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let (topic, body) = (topic.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let message = TopicMessage::new(body).expect("message");
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                client
                    .publish(&topic, &message)
                    .await
                    .expect("transport")
                    .expect("publish");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("publisher"));
    }
    let elapsed = started.elapsed();
    broker.shutdown().await;
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Run {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let duration = if full {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(200)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut table = String::from(
        "| publishers | in memory: publishes/s | p50 | p99 | durable: publishes/s | p50 | p99 | durable / in memory |\n|---|---|---|---|---|---|---|---|\n",
    );
    for publishers in [1, 16, 64] {
        let memory = runtime.block_on(run(false, publishers, duration));
        let durable = runtime.block_on(run(true, publishers, duration));
        eprintln!(
            "{publishers} publishers: in memory {:.0}/s, durable {:.0}/s",
            memory.rate, durable.rate
        );
        table.push_str(&format!(
            "| {publishers} | {:.0} | {:.1} ms | {:.1} ms | {:.0} | {:.1} ms | {:.1} ms | {:.0} % |\n",
            memory.rate,
            memory.p50_ms,
            memory.p99_ms,
            durable.rate,
            durable.p50_ms,
            durable.p99_ms,
            100.0 * durable.rate / memory.rate.max(f64::MIN_POSITIVE),
        ));
    }
    println!("{table}");
}
