//! Load balancing: which replica of a service a client sends a request to,
//! and the seed's load-balancing metrics.
//!
//! Strategies: round robin (the baseline), the seed's weighted round robin
//! (weights by capacity, smooth as nginx does it), least connections, the
//! seed's resource-aware score ([`crate::select`]'s formula over the load
//! replicas report), and — beyond the seed — power of two choices over
//! Peak-EWMA cost (Finagle, tower, linkerd): pick two replicas at random, send
//! to the one with the lower `peak-EWMA RTT × (pending + 1)`.

use agora_core::{NodeId, Time};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    ResourceAware,
    #[default]
    P2cPeakEwma,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        f.write_str(v.as_str().unwrap_or_default())
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).map_err(|_| {
            format!(
                "unknown strategy {s:?}: round_robin, weighted_round_robin, least_connections, resource_aware or p2c_peak_ewma"
            )
        })
    }
}

/// The load a replica last reported (on each response): fractions in [0, 1].
/// Equal when bit-for-bit equal, so answers carrying it can be hashed (the
/// model checker's messages are).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Load {
    /// Busy service slots / slots: the model's CPU utilization.
    pub cpu: f32,
    /// Queued requests / queue limit: the model's memory pressure.
    pub memory: f32,
    /// Transactions in service / slots.
    pub transactions: f32,
}

impl Load {
    fn bits(&self) -> [u32; 3] {
        [self.cpu.to_bits(), self.memory.to_bits(), self.transactions.to_bits()]
    }
}

impl PartialEq for Load {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}
impl Eq for Load {}
impl std::hash::Hash for Load {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
    }
}

/// What a client knows of one replica.
#[derive(Clone, Debug)]
struct Replica {
    pending: u32,
    ewma_ms: f64,
    updated: Time,
    load: Load,
    /// Static: capacity weight, latency and bandwidth from the topology.
    weight: f64,
    latency_ms: f64,
    throughput_mbps: f64,
}

/// Peak-EWMA's starting estimate and decay (linkerd's defaults).
const DEFAULT_RTT_MS: f64 = 30.0;
const DECAY_S: f64 = 10.0;

/// One client's balancer over every node (indexed by node id).
#[derive(Clone, Debug)]
pub struct Balancer {
    pub strategy: Strategy,
    replicas: Vec<Replica>,
    /// Per group: round-robin cursor and smooth-WRR current weights.
    cursor: Vec<usize>,
    current: Vec<Vec<f64>>,
}

impl Balancer {
    /// `nodes[i] = (capacity weight, latency ms, throughput Mbps)`; `groups` groups.
    pub fn new(strategy: Strategy, nodes: &[(f64, f64, f64)], groups: usize) -> Self {
        let replicas = nodes
            .iter()
            .map(|&(weight, latency_ms, throughput_mbps)| Replica {
                pending: 0,
                ewma_ms: DEFAULT_RTT_MS,
                updated: Time::ZERO,
                load: Load::default(),
                weight,
                latency_ms,
                throughput_mbps,
            })
            .collect();
        Balancer { strategy, replicas, cursor: vec![0; groups], current: vec![Vec::new(); groups] }
    }

    /// Sets a replica's capacity weight (weighted round robin).
    pub fn set_weight(&mut self, node: NodeId, weight: f64) {
        if let Some(r) = self.replicas.get_mut(node.index()) {
            r.weight = weight.max(0.0);
        }
    }

    /// The load `node` reported last.
    pub fn load(&self, node: NodeId) -> Load {
        self.replicas[node.index()].load
    }

    pub fn pending(&self, node: NodeId) -> u32 {
        self.replicas[node.index()].pending
    }

    /// A request went to `node`.
    pub fn sent(&mut self, node: NodeId) {
        self.replicas[node.index()].pending += 1;
    }

    /// A request to `node` ended after `rtt_ms` (a timeout counts its full
    /// wait, so a replica that stops answering looks as slow as it is).
    pub fn finished(&mut self, node: NodeId, rtt_ms: f64, now: Time, load: Option<Load>) {
        let r = &mut self.replicas[node.index()];
        r.pending = r.pending.saturating_sub(1);
        if rtt_ms > r.ewma_ms {
            r.ewma_ms = rtt_ms; // the peak: react to slowness at once
        } else {
            let w = (-(now - r.updated).as_secs_f64() / DECAY_S).exp();
            r.ewma_ms = r.ewma_ms * w + rtt_ms * (1.0 - w);
        }
        r.updated = now;
        if let Some(l) = load {
            r.load = l;
        }
    }

    fn cost(&self, node: NodeId) -> f64 {
        let r = &self.replicas[node.index()];
        r.ewma_ms * (r.pending as f64 + 1.0)
    }

    /// The seed's resource-aware total for `node` (priority bonus left out:
    /// it is the same for every replica and changes no choice).
    fn resource_score(&self, node: NodeId) -> f64 {
        let r = &self.replicas[node.index()];
        let capacity =
            crate::select::capacity_score(r.load.cpu as f64, r.load.memory as f64, r.load.transactions as f64);
        let performance = crate::select::performance_score(1.0, r.latency_ms, r.throughput_mbps);
        0.6 * capacity + 0.3 * performance
    }

    /// Chooses among `candidates` (non-empty, in the group's order) for group `group`.
    pub fn pick(&mut self, group: usize, candidates: &[NodeId], rng: &mut dyn RngCore) -> Option<NodeId> {
        let first = *candidates.first()?;
        Some(match self.strategy {
            Strategy::RoundRobin => {
                let c = &mut self.cursor[group];
                *c = c.wrapping_add(1);
                candidates[*c % candidates.len()]
            }
            Strategy::WeightedRoundRobin => {
                // Smooth weighted round robin: every candidate gains its
                // weight, the richest is chosen and pays the total.
                let cur = &mut self.current[group];
                cur.resize(self.replicas.len(), 0.0);
                let total: f64 = candidates.iter().map(|n| self.replicas[n.index()].weight).sum();
                for n in candidates {
                    cur[n.index()] += self.replicas[n.index()].weight;
                }
                let best = *candidates
                    .iter()
                    .max_by(|a, b| cur[a.index()].total_cmp(&cur[b.index()]).then(b.0.cmp(&a.0)))
                    .expect("non-empty");
                cur[best.index()] -= total;
                best
            }
            Strategy::LeastConnections => {
                *candidates.iter().min_by_key(|n| (self.replicas[n.index()].pending, n.0)).expect("non-empty")
            }
            Strategy::ResourceAware => *candidates
                .iter()
                .max_by(|a, b| self.resource_score(**a).total_cmp(&self.resource_score(**b)).then(b.0.cmp(&a.0)))
                .expect("non-empty"),
            Strategy::P2cPeakEwma => {
                if candidates.len() == 1 {
                    return Some(first);
                }
                let i = rng.random_range(0..candidates.len());
                let mut j = rng.random_range(0..candidates.len() - 1);
                if j >= i {
                    j += 1;
                }
                let (a, b) = (candidates[i], candidates[j]);
                if self.cost(b) < self.cost(a) {
                    b
                } else {
                    a
                }
            }
        })
    }
}

/// Jain's fairness index of `loads`: (Σx)² / (n Σx²), 1 when all are equal,
/// 1/n when one carries everything (the seed's "load balance index").
pub fn jain_index(loads: &[f64]) -> f64 {
    let sum: f64 = loads.iter().sum();
    let sq: f64 = loads.iter().map(|x| x * x).sum();
    if sq == 0.0 {
        1.0
    } else {
        sum * sum / (loads.len() as f64 * sq)
    }
}

/// Coefficient of variation of `loads` (σ/μ, population σ): the seed's
/// "load variance"; 0 when all are equal or there is no load.
pub fn coefficient_of_variation(loads: &[f64]) -> f64 {
    let n = loads.len() as f64;
    let mean = loads.iter().sum::<f64>() / n;
    if loads.is_empty() || mean == 0.0 {
        return 0.0;
    }
    let var = loads.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() / mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop, prop_assert, proptest};
    use rand::SeedableRng;

    fn ids(n: u32) -> Vec<NodeId> {
        (0..n).map(NodeId).collect()
    }

    fn balancer(s: Strategy, weights: &[f64]) -> Balancer {
        Balancer::new(s, &weights.iter().map(|&w| (w, 10.0, 1000.0)).collect::<Vec<_>>(), 1)
    }

    #[test]
    fn weighted_round_robin_follows_the_weights_smoothly() {
        let mut b = balancer(Strategy::WeightedRoundRobin, &[5.0, 1.0, 1.0]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let picks: Vec<u32> = (0..7).map(|_| b.pick(0, &ids(3), &mut rng).unwrap().0).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 5);
        // Smooth: the heavy replica is never chosen more than three times running.
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn p2c_avoids_a_slow_replica() {
        let mut b = balancer(Strategy::P2cPeakEwma, &[1.0; 5]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let now = Time::from_nanos(1_000_000_000);
        for n in 0..5 {
            b.finished(NodeId(n), if n == 3 { 100.0 } else { 10.0 }, now, None);
        }
        let to_slow = (0..1000).filter(|_| b.pick(0, &ids(5), &mut rng) == Some(NodeId(3))).count();
        assert_eq!(to_slow, 0, "the slow replica loses every comparison while nothing is pending");
    }

    #[test]
    fn least_connections_picks_the_idlest() {
        let mut b = balancer(Strategy::LeastConnections, &[1.0; 3]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        b.sent(NodeId(0));
        b.sent(NodeId(2));
        assert_eq!(b.pick(0, &ids(3), &mut rng), Some(NodeId(1)));
    }

    #[test]
    fn resource_aware_prefers_the_less_loaded() {
        let mut b = balancer(Strategy::ResourceAware, &[1.0; 2]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let busy = Load { cpu: 0.9, memory: 0.5, transactions: 0.9 };
        b.finished(NodeId(0), 10.0, Time::ZERO, Some(busy));
        assert_eq!(b.pick(0, &ids(2), &mut rng), Some(NodeId(1)));
    }

    proptest! {
        #[test]
        fn jain_index_is_between_one_over_n_and_one(loads in prop::collection::vec(0.0f64..1e6, 1..20)) {
            let j = jain_index(&loads);
            let n = loads.len() as f64;
            prop_assert!(j <= 1.0 + 1e-9 && j >= 1.0 / n - 1e-9, "index {j} for {loads:?}");
            prop_assert!(coefficient_of_variation(&loads) >= 0.0);
        }

        #[test]
        fn every_strategy_picks_a_candidate(strategy in 0usize..5, n in 1u32..8, seed in any::<u64>()) {
            let s = [Strategy::RoundRobin, Strategy::WeightedRoundRobin, Strategy::LeastConnections,
                     Strategy::ResourceAware, Strategy::P2cPeakEwma][strategy];
            let mut b = balancer(s, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let c: Vec<NodeId> = (0..n).map(|i| NodeId(i * 7 % 8)).collect();
            for _ in 0..20 {
                let p = b.pick(0, &c, &mut rng).unwrap();
                prop_assert!(c.contains(&p));
            }
        }
    }
}
