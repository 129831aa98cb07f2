use serde::Serialize;
use std::collections::BTreeMap;

/// Counts keyed by a static name (message kind, drop reason, counter). A
/// short vector: a run has a handful of kinds, and a linear scan with a
/// pointer-equality fast path beats hashing on the hot path.
#[derive(Clone, Debug, Default)]
pub struct KindCounts(Vec<(&'static str, u64)>);

impl KindCounts {
    #[inline]
    pub fn add(&mut self, kind: &'static str, by: u64) {
        for e in self.0.iter_mut() {
            if std::ptr::eq(e.0, kind) || e.0 == kind {
                e.1 += by;
                return;
            }
        }
        self.0.push((kind, by));
    }
    pub fn get(&self, kind: &str) -> u64 {
        self.0.iter().filter(|e| e.0 == kind).map(|e| e.1).sum()
    }
    pub fn total(&self) -> u64 {
        self.0.iter().map(|e| e.1).sum()
    }
    /// Sorted by name, for stable reports.
    pub fn to_map(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for &(k, v) in &self.0 {
            *m.entry(k).or_insert(0) += v;
        }
        m
    }
}

impl Serialize for KindCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

/// What happened during a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Handled events: starts, deliveries, drops at delivery, timers, inputs, faults.
    pub events: u64,
    pub messages_sent: u64,
    pub messages_by_kind: KindCounts,
    pub delivered_by_kind: KindCounts,
    /// Messages lost, by reason: loss, omission, partition, crashed, faulty, no_such_node.
    pub dropped: KindCounts,
    /// The same messages, by kind.
    pub dropped_by_kind: KindCounts,
    pub duplicated: u64,
    pub timers_fired: u64,
    pub inputs: u64,
    /// Inputs refused because the node was crashed or faulty.
    pub inputs_refused: u64,
    pub outputs: u64,
    /// Counters the protocol reported with `Io::count`.
    pub counters: KindCounts,
    pub max_in_flight: u64,
    /// Largest encoded message (version byte included).
    pub max_message_bytes: usize,
    pub crashes: u64,
    pub recoveries: u64,
    pub fragile_toggles: u64,
}
