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

/// What the simulated disks did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskStats {
    pub writes: u64,
    /// Syncs completed (refused ones included).
    pub syncs: u64,
    /// Syncs a full disk refused.
    pub syncs_refused: u64,
    /// Crashes that tore their last unsynced write onto the disk.
    pub torn_writes: u64,
    pub corrupted_records: u64,
}

fn by_service<S: serde::Serializer>(m: &BTreeMap<(&'static str, &'static str), u64>, s: S) -> Result<S::Ok, S::Error> {
    let mut out: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for (&(service, name), &v) in m {
        out.entry(service).or_default().insert(name, v);
    }
    out.serialize(s)
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
    /// Inputs refused: the node was crashed or faulty, or could not act on
    /// the input ([`agora_core::Protocol::check_input`]).
    pub inputs_refused: u64,
    pub outputs: u64,
    /// Counters the protocol reported with `Io::count`.
    pub counters: KindCounts,
    /// The same for the services of a composed node, by (service, counter).
    #[serde(serialize_with = "by_service")]
    pub service_counters: BTreeMap<(&'static str, &'static str), u64>,
    /// Messages sent by the services of a composed node, by service.
    pub messages_by_service: KindCounts,
    pub disk: DiskStats,
    pub max_in_flight: u64,
    /// Largest encoded message (version byte included).
    pub max_message_bytes: usize,
    pub crashes: u64,
    pub recoveries: u64,
    pub fragile_toggles: u64,
}

impl Stats {
    /// The counter `name`: counted by a node protocol itself, or by any
    /// service of a composed node (where a protocol keeps it need not
    /// matter to who reads it).
    pub fn counter(&self, name: &str) -> u64 {
        let in_services: u64 = self.service_counters.iter().filter(|((_, n), _)| *n == name).map(|(_, v)| v).sum();
        self.counters.get(name) + in_services
    }
}
