//! Per-node metrics in the Prometheus text format. Each node has its own
//! registry, so several nodes can share a process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
            registry: Registry::default(),
        };
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

    pub fn encode(&self) -> String {
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
