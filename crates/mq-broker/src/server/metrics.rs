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
use std::sync::OnceLock;
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

/// Operations whose series [`RequestMetrics`] keeps resolved: the protocol's seven and the
/// server's own endpoints fit (fourteen names); any further name goes through the families.
const RESOLVED_OPERATIONS: usize = 16;

/// The per-request series, shared by the server's tasks.
pub(super) struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// Per operation, its latency histogram and its success status's counter, taken from
    /// the families once: a family's lookup takes its lock and hashes the labels (SipHash),
    /// twice per request. The handles share their values with the families' series
    /// (`prometheus-client` metrics are reference-counted), so `/metrics` is the same.
    /// Filled in the order operations first succeed; a slot, once set, never changes.
    resolved: [OnceLock<Resolved>; RESOLVED_OPERATIONS],
}

/// One operation's series, resolved ([`RequestMetrics::resolved`]).
struct Resolved {
    operation: &'static str,
    /// The status the operation first succeeded with (publish 201, consume 200, ack 204…).
    status: u16,
    requests: Counter,
    latency: Histogram,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            resolved: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl RequestMetrics {
    /// Counts one answered request.
    pub(super) fn observe(&self, operation: &'static str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        match self.resolved(operation, status) {
            Some(resolved) => {
                if resolved.status == status {
                    resolved.requests.inc();
                } else {
                    self.count(operation, status);
                }
                resolved.latency.observe(seconds);
            }
            None => {
                self.count(operation, status);
                self.latency
                    .get_or_create(&OperationLabels { operation })
                    .observe(seconds);
            }
        }
    }

    /// The operation's resolved series: found in its slot, or resolved into the first free
    /// one on a success (an error status is not the one to keep). `None` before its first
    /// success, when every slot holds another operation, or when another task took the
    /// free slot first (this request then goes through the families).
    fn resolved(&self, operation: &'static str, status: u16) -> Option<&Resolved> {
        for slot in &self.resolved {
            match slot.get() {
                Some(resolved) if resolved.operation == operation => return Some(resolved),
                Some(_) => {}
                None if (200..300).contains(&status) => {
                    let resolved = slot.get_or_init(|| Resolved {
                        operation,
                        status,
                        requests: self
                            .requests
                            .get_or_create_owned(&RequestLabels { operation, status }),
                        latency: self
                            .latency
                            .get_or_create_owned(&OperationLabels { operation }),
                    });
                    return (resolved.operation == operation).then_some(resolved);
                }
                None => return None,
            }
        }
        None
    }

    /// Counts a request in its `mq_requests_total` series, found through the family.
    fn count(&self, operation: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { operation, status })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// More names than resolved slots, so that both paths are taken.
    const NAMES: [&str; 20] = [
        "refused",
        "publish",
        "consume",
        "ack",
        "commit",
        "rollback",
        "consume_orderly",
        "consume_half",
        "health",
        "ready",
        "stats",
        "metrics",
        "console",
        "admin",
        "n14",
        "n15",
        "n16",
        "n17",
        "n18",
        "n19",
    ];

    /// The `i`-th request of the test's sequence: names in an order that is not the
    /// slots' order, some failing before and after their first success.
    fn request(i: usize) -> (&'static str, u16) {
        let name = (i * 7 + i / 20) % NAMES.len();
        let status = match (i / 3 + name) % 5 {
            0 => 500,
            1 => 404,
            _ if name == 0 => 403, // `refused` never succeeds
            _ => 200 + u16::try_from(name % 3).unwrap_or(0),
        };
        (NAMES[name], status)
    }

    fn histogram_count(m: &RequestMetrics, operation: &str) -> u64 {
        let mut registry = Registry::default();
        registry.register("latency", "", m.latency.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        let prefix = format!("latency_count{{operation=\"{operation}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.parse().unwrap_or(u64::MAX))
    }

    /// Every request is counted under its own labels, whichever path counted it, with
    /// several threads resolving operations at once.
    #[test]
    fn resolved_series_count_as_the_families_do() {
        const THREADS: u64 = 4;
        const REQUESTS: usize = 2_000;
        let metrics = RequestMetrics::default();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for i in 0..REQUESTS {
                        let (operation, status) = request(i);
                        metrics.observe(operation, status, Duration::from_micros(300));
                    }
                });
            }
        });
        let mut want: HashMap<(&str, u16), u64> = HashMap::new();
        let mut per_operation: HashMap<&str, u64> = HashMap::new();
        for i in 0..REQUESTS {
            let (operation, status) = request(i);
            *want.entry((operation, status)).or_default() += THREADS;
            *per_operation.entry(operation).or_default() += THREADS;
        }
        assert!(want.len() > NAMES.len() * 2, "several statuses per name");
        for ((operation, status), n) in want {
            let got = metrics
                .requests
                .get_or_create(&RequestLabels { operation, status })
                .get();
            assert_eq!(got, n, "{operation} {status}");
        }
        for (operation, n) in per_operation {
            assert_eq!(histogram_count(&metrics, operation), n, "{operation}");
        }
        let resolved: Vec<&str> = metrics
            .resolved
            .iter()
            .filter_map(|s| s.get().map(|r| r.operation))
            .collect();
        assert_eq!(resolved.len(), RESOLVED_OPERATIONS, "every slot taken");
        assert!(
            !resolved.contains(&"refused"),
            "never succeeded, never resolved"
        );
        let mut unique = resolved.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            resolved.len(),
            "an operation in one slot: {resolved:?}"
        );
    }
}
