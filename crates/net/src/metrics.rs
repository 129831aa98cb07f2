//! Per-node metrics in the Prometheus text format. Each node has its own
//! registry, so several nodes can share a process.

use agora_core::reading::{Reading, Value};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// The service of a composed node (empty for a protocol running alone).
    pub service: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Listener {
    /// `peer` or `http`.
    pub listener: &'static str,
}

impl Metrics {
    /// Counts a failed accept on `listener`.
    pub fn accept_failed(&self, listener: &'static str) {
        self.accept_failed.get_or_create(&Listener { listener }).inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerSlot {
    pub peer: String,
    pub slot: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Name {
    pub service: &'static str,
    pub name: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub sent: Family<Kind, Counter>,
    pub received: Family<Kind, Counter>,
    pub dropped: Family<Reason, Counter>,
    pub frames_rejected: Family<Reason, Counter>,
    pub protocol: Family<Name, Counter>,
    pub outputs: Counter,
    pub timers_fired: Counter,
    pub connections: Counter,
    pub peers_connected: Gauge,
    pub quota_refused: Family<PeerSlot, Counter>,
    pub inbound_queued_bytes: Gauge,
    pub storage_syncs: Counter,
    pub storage_commits: Counter,
    pub storage_commit_seconds: Histogram,
    pub http_unauthorized: Counter,
    /// Failed accepts (out of file handles, mostly) on the peer and HTTP listeners.
    pub accept_failed: Family<Listener, Counter>,
    /// HTTP connections closed to make room for a new one at the cap.
    pub http_evicted: Counter,
    /// The protocol's readings for the scrape being encoded.
    readings: Arc<Mutex<Vec<Reading>>>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agora");
        let m = Metrics {
            sent: Family::default(),
            received: Family::default(),
            dropped: Family::default(),
            frames_rejected: Family::default(),
            protocol: Family::default(),
            outputs: Counter::default(),
            timers_fired: Counter::default(),
            connections: Counter::default(),
            peers_connected: Gauge::default(),
            quota_refused: Family::default(),
            inbound_queued_bytes: Gauge::default(),
            storage_syncs: Counter::default(),
            storage_commits: Counter::default(),
            storage_commit_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 16)),
            http_unauthorized: Counter::default(),
            accept_failed: Family::default(),
            http_evicted: Counter::default(),
            readings: Arc::default(),
            registry: Registry::default(),
        };
        registry.register_collector(Box::new(ProtocolReadings(m.readings.clone())));
        registry.register("messages_sent", "Messages the protocol sent, by kind", m.sent.clone());
        registry.register("messages_received", "Messages delivered to the protocol, by kind", m.received.clone());
        registry.register("messages_dropped", "Messages dropped by the runtime, by reason", m.dropped.clone());
        registry.register(
            "frames_rejected",
            "Frames refused (oversized, malformed, bad hello); each closes its connection",
            m.frames_rejected.clone(),
        );
        registry.register("protocol_events", "Counters reported by the protocol", m.protocol.clone());
        registry.register("outputs", "Outputs the protocol emitted", m.outputs.clone());
        registry.register("timers_fired", "Protocol timers that fired", m.timers_fired.clone());
        registry.register("connections", "Peer connections established", m.connections.clone());
        registry.register("peers_connected", "Peers currently connected", m.peers_connected.clone());
        registry.register(
            "quota_refused",
            "Requests refused because the peer is over its fairdist quota, by peer and slot",
            m.quota_refused.clone(),
        );
        registry.register(
            "inbound_queued_bytes",
            "Memory of received messages waiting for the event loop",
            m.inbound_queued_bytes.clone(),
        );
        registry.register("storage_syncs", "Syncs the storage thread made durable", m.storage_syncs.clone());
        registry.register(
            "storage_commits",
            "Durable commits (one fsync each; group commit puts many syncs in one)",
            m.storage_commits.clone(),
        );
        registry.register("storage_commit_seconds", "Time per durable commit", m.storage_commit_seconds.clone());
        registry.register(
            "http_unauthorized",
            "HTTP requests refused for a missing or wrong token",
            m.http_unauthorized.clone(),
        );
        registry.register(
            "accept_failed",
            "Connections the listener could not accept (out of file handles, mostly), by listener",
            m.accept_failed.clone(),
        );
        registry.register(
            "http_evicted",
            "HTTP connections closed, oldest first, to make room for a new one at the connection cap",
            m.http_evicted.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text of a scrape: the runtime's metrics, then the protocol's
    /// `readings` ([`agora_core::Protocol::readings`]). Two scrapes at once
    /// may each show the other's readings; both are current.
    pub fn encode(&self, readings: Vec<Reading>) -> String {
        *self.readings.lock().expect("readings lock") = readings;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn drop(&self, reason: &'static str) {
        self.dropped.get_or_create(&Reason { reason }).inc();
    }

    pub fn reject(&self, reason: &'static str) {
        self.frames_rejected.get_or_create(&Reason { reason }).inc();
    }
}

/// Encodes the protocol's readings, a family per name (in the order the
/// protocol gave them).
#[derive(Debug)]
struct ProtocolReadings(Arc<Mutex<Vec<Reading>>>);

impl Collector for ProtocolReadings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let readings = std::mem::take(&mut *self.0.lock().expect("readings lock"));
        let mut names: Vec<&'static str> = readings.iter().map(|r| r.name).collect();
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(*n));
        for name in names {
            let family: Vec<&Reading> = readings.iter().filter(|r| r.name == name).collect();
            let kind = match family[0].value {
                Value::Gauge(_) => MetricType::Gauge,
                Value::Counter(_) => MetricType::Counter,
                Value::Histogram(_) => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(name, family[0].help, None, kind)?;
            for r in family {
                // A reading without labels is the family's only one: no `{}`.
                match r.labels.is_empty() {
                    true => encode_value(&mut metric, r, kind)?,
                    false => encode_value(&mut metric.encode_family(&r.labels)?, r, kind)?,
                }
            }
        }
        Ok(())
    }
}

fn encode_value(m: &mut MetricEncoder, r: &Reading, kind: MetricType) -> Result<(), std::fmt::Error> {
    match (&r.value, kind) {
        (Value::Gauge(v), MetricType::Gauge) => m.encode_gauge(v),
        (Value::Counter(v), MetricType::Counter) => m.encode_counter::<NoLabelSet, _, f64>(v, None),
        (Value::Histogram(h), MetricType::Histogram) => {
            m.encode_histogram::<NoLabelSet>(h.sum, h.count(), &h.buckets(), None)
        }
        _ => {
            tracing::warn!(name = r.name, "a protocol reading of another kind than its family's is left out");
            Ok(())
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::reading::Histogram as Buckets;

    #[test]
    fn a_protocols_readings_follow_the_runtimes_metrics_a_family_per_name() {
        let mut h = Buckets::new(&[0.01, 0.1]);
        h.observe(0.005);
        h.observe(0.05);
        h.observe(3.0);
        let labels = |s: &str| vec![("service", s.to_string())];
        let text = Metrics::new().encode(vec![
            Reading::gauge("isolated", "cut off", vec![], 1.0),
            Reading::counter("ended", "requests ended", labels("rpc"), 7),
            Reading { name: "seconds", help: "latency", labels: labels("rpc"), value: Value::Histogram(h) },
            Reading::counter("ended", "requests ended", labels("kv"), 2),
            Reading::gauge("ended", "of another kind", labels("odd"), 1.0),
        ]);
        let ours = &text[text.find("# HELP agora_isolated").expect("the readings are there")..];
        let expected = "# HELP agora_isolated cut off\n# TYPE agora_isolated gauge\nagora_isolated 1.0\n\
            # HELP agora_ended requests ended\n# TYPE agora_ended counter\n\
            agora_ended_total{service=\"rpc\"} 7\nagora_ended_total{service=\"kv\"} 2\n\
            # HELP agora_seconds latency\n# TYPE agora_seconds histogram\n\
            agora_seconds_sum{service=\"rpc\"} 3.055\nagora_seconds_count{service=\"rpc\"} 3\n\
            agora_seconds_bucket{le=\"0.01\",service=\"rpc\"} 1\nagora_seconds_bucket{le=\"0.1\",service=\"rpc\"} 2\n\
            agora_seconds_bucket{le=\"+Inf\",service=\"rpc\"} 3\n# EOF\n";
        assert_eq!(ours, expected);
        assert!(
            text.find("# HELP agora_messages_sent") < text.find("# HELP agora_isolated"),
            "the runtime's own come first"
        );
        // The next scrape has only what the protocol reads then.
        assert!(!Metrics::new().encode(vec![]).contains("agora_isolated"));
    }
}
