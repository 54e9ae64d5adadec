//! `GET /metrics`: the broker's counters in the Prometheus / OpenMetrics text exposition
//! format (encoded by the Prometheus project's `prometheus-client` crate).
//!
//! Two kinds of series:
//! * **per request**, kept by the server as requests are answered: `mq_requests_total`
//!   (labels `operation`, `status`) and the histogram `mq_request_duration_seconds`
//!   (label `operation`; a consume's duration includes its long poll). `operation` is
//!   [`mq_proto::server::Operation::name`] for protocol calls, `health`, `stats` and
//!   `metrics` for those endpoints, and `refused` for requests refused before they were
//!   understood (bad signature, unknown path, oversize body…);
//! * **per topic and group**, read from the backend's [`Stats`] at each scrape: published,
//!   stored and half messages per topic (`instance`, `topic`), and per group (`instance`,
//!   `topic`, `group`) the messages ready, in flight, delayed, the backlog (their sum: the
//!   ONS console's "accumulation"), dead letters kept, and the running totals delivered,
//!   redelivered, acked, filtered, dead-lettered and trimmed;
//! * and the server's gauges: open connections and waiting long polls.
//!
//! Series names and their `/stats` fields are listed in the README ("Seeing what the broker
//! holds").

use super::backend::Counted;
use crate::core::Stats;
use crate::durable::CommitMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `Content-Type` of `GET /metrics` (OpenMetrics 1.0 text, which Prometheus scrapes).
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    instance: String,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    instance: String,
    topic: String,
    group: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ≈ 33 s (a 30 s long poll fits in the last finite bucket).
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The per-request series, shared by the server's tasks.
pub(super) struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RequestMetrics {
    /// Counts one answered request.
    pub(super) fn observe(&self, operation: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { operation, status })
            .inc();
        self.latency
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }
}

/// The server's own gauges at scrape time.
pub(super) struct ServerGauges {
    pub(super) connections: usize,
    pub(super) waiting_polls: usize,
}

fn counter_family<L, I>(registry: &mut Registry, name: &str, help: &str, values: I)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    I: IntoIterator<Item = (L, u64)>,
{
    let family = Family::<L, Counter>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).inc_by(v);
    }
    registry.register(name, help, family);
}

fn gauge_family<L, I>(registry: &mut Registry, name: &str, help: &str, values: I)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    I: IntoIterator<Item = (L, u64)>,
{
    let family = Family::<L, Gauge>::default();
    for (labels, v) in values {
        family
            .get_or_create(&labels)
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    registry.register(name, help, family);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// The `GET /metrics` document.
///
/// # Errors
///
/// Only a formatting error of the encoder (writing to a `String` does not fail).
pub(super) fn render(
    requests: &RequestMetrics,
    stats: &Stats,
    counted: &Counted,
    journal: Option<&CommitMetrics>,
    server: &ServerGauges,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("mq");
    registry.register(
        "requests",
        "Requests answered, by operation and HTTP status",
        requests.requests.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "Time from a request's arrival to its answer, by operation (a consume's includes its long poll)",
        requests.latency.clone(),
    );
    gauge(
        &mut registry,
        "connections",
        "Open client connections",
        server.connections,
    );
    gauge(
        &mut registry,
        "waiting_polls",
        "Long polls waiting for a message",
        server.waiting_polls,
    );

    let topic = |t: &crate::core::TopicStats| TopicLabels {
        instance: t.instance.clone().unwrap_or_default(),
        topic: t.topic.clone(),
    };
    type TopicField = fn(&crate::core::TopicStats) -> u64;
    let topic_counters: [(&str, &str, TopicField); 3] = [
        ("topic_published", "Messages published to the topic", |t| {
            t.published
        }),
        ("topic_half_committed", "Half messages committed", |t| {
            t.half_committed
        }),
        ("topic_half_rolled_back", "Half messages rolled back", |t| {
            t.half_rolled_back
        }),
    ];
    for (name, help, field) in topic_counters
        .into_iter()
        .filter(|(n, ..)| counted.family(n))
    {
        counter_family(
            &mut registry,
            name,
            help,
            stats.topics.iter().map(|t| (topic(t), field(t))),
        );
    }
    let topic_gauges: [(&str, &str, TopicField); 2] = [
        (
            "topic_stored",
            "Messages stored for at least one group",
            |t| t.stored,
        ),
        (
            "topic_half",
            "Half (transactional) messages awaiting commit or rollback",
            |t| t.half,
        ),
    ];
    for (name, help, field) in topic_gauges.into_iter().filter(|(n, ..)| counted.family(n)) {
        gauge_family(
            &mut registry,
            name,
            help,
            stats.topics.iter().map(|t| (topic(t), field(t))),
        );
    }

    let groups = || {
        stats.topics.iter().flat_map(|t| {
            t.groups.iter().map(move |g| {
                let labels = GroupLabels {
                    instance: t.instance.clone().unwrap_or_default(),
                    topic: t.topic.clone(),
                    group: g.group.clone(),
                };
                (labels, g)
            })
        })
    };
    type Field = fn(&crate::core::GroupStats) -> u64;
    let gauges: [(&str, &str, Field); 5] = [
        ("group_ready", "Messages visible to the group now", |g| {
            g.ready
        }),
        (
            "group_in_flight",
            "Messages delivered to the group and not acked, still invisible",
            |g| g.in_flight,
        ),
        (
            "group_delayed",
            "Messages not yet delivered whose delivery time has not come",
            |g| g.delayed,
        ),
        (
            "group_backlog",
            "Messages the group has not consumed: ready + in flight + delayed (accumulation)",
            |g| g.ready + g.in_flight + g.delayed,
        ),
        (
            "group_dead_letters",
            "Dead-letter records kept for the group",
            |g| g.dead_letters_kept,
        ),
    ];
    for (name, help, field) in gauges.into_iter().filter(|(n, ..)| counted.family(n)) {
        gauge_family(
            &mut registry,
            name,
            help,
            groups().map(|(l, g)| (l, field(g))),
        );
    }
    let counters: [(&str, &str, Field); 6] = [
        (
            "group_delivered",
            "Deliveries to the group, first and repeated",
            |g| g.delivered,
        ),
        (
            "group_redelivered",
            "Repeated deliveries (second and later) to the group",
            |g| g.redelivered,
        ),
        ("group_acked", "Successful acks by the group", |g| g.acked),
        (
            "group_filtered",
            "Messages the group's tag filter skipped",
            |g| g.filtered,
        ),
        (
            "group_dead_lettered",
            "Messages moved to the group's dead letters",
            |g| g.dead_lettered,
        ),
        (
            "group_trimmed",
            "Messages removed by retention before the group consumed them",
            |g| g.trimmed,
        ),
    ];
    for (name, help, field) in counters.into_iter().filter(|(n, ..)| counted.family(n)) {
        counter_family(
            &mut registry,
            name,
            help,
            groups().map(|(l, g)| (l, field(g))),
        );
    }

    if let Some(journal) = journal {
        registry.register(
            "journal_commits",
            "Durable journal commits (--data-dir): each one fsync or the engine's equivalent",
            journal.commits.clone(),
        );
        registry.register(
            "journal_records",
            "Records written by the journal's commits (several requests share a commit)",
            journal.records.clone(),
        );
        registry.register(
            "journal_commit_duration_seconds",
            "Time of one durable journal commit",
            journal.seconds.clone(),
        );
    }

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}
