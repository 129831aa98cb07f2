//! The seed's resource-aware node selection (§ "Resource-Aware Load
//! Balancing Algorithm"), for one request:
//!
//! * capacity = 0.4 (1 − cpu_utilization/cpu_max) + 0.3 (1 − memory_usage/
//!   memory_max) + 0.3 (1 − transactions/transactions_max);
//! * performance = weight × (1/latency_ms) × (throughput_mbps/1000);
//! * priority bonus = request priority / 10 (the same for every node, so it
//!   shifts every total and changes no choice — as the seed writes it);
//! * total = 0.6 capacity + 0.3 performance + 0.1 priority bonus.
//!
//! The node with the highest total that can accommodate the request (its
//! CPU, memory and transactions fit under the node's maxima) is selected,
//! else the next; none if no node can (ties: input order).

use crate::InputError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub priority: f64,
    pub cpu: f64,
    pub memory: f64,
    pub transactions: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLoad {
    pub id: String,
    pub cpu_utilization: f64,
    pub cpu_max: f64,
    pub memory_usage: f64,
    pub memory_max: f64,
    pub transactions: f64,
    pub transactions_max: f64,
    pub weight: f64,
    pub latency_ms: f64,
    pub throughput_mbps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub request: Request,
    pub nodes: Vec<NodeLoad>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    pub node: String,
    pub capacity: f64,
    pub performance: f64,
    pub total: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Selection {
    pub scores: Vec<Score>,
    pub selected: Option<String>,
}

pub fn validate(input: &Input) -> Result<(), InputError> {
    let r = &input.request;
    for (f, v) in [("priority", r.priority), ("cpu", r.cpu), ("memory", r.memory), ("transactions", r.transactions)] {
        crate::non_negative(|| format!("request.{f}"), v)?;
    }
    crate::check_ids("nodes", input.nodes.iter().map(|n| n.id.as_str()), false, "to choose from")?;
    for (i, n) in input.nodes.iter().enumerate() {
        let at = |f: &str| format!("nodes[{i}].{f}");
        for (used, max, uf, mf) in [
            (n.cpu_utilization, n.cpu_max, "cpu_utilization", "cpu_max"),
            (n.memory_usage, n.memory_max, "memory_usage", "memory_max"),
            (n.transactions, n.transactions_max, "transactions", "transactions_max"),
        ] {
            if !(max.is_finite() && max > 0.0) {
                return Err(InputError { at: at(mf), message: format!("{max} must be > 0") });
            }
            if !(used.is_finite() && (0.0..=max).contains(&used)) {
                return Err(InputError { at: at(uf), message: format!("{used} is not in [0, {mf} = {max}]") });
            }
        }
        if !(n.latency_ms.is_finite() && n.latency_ms > 0.0) {
            return Err(InputError { at: at("latency_ms"), message: format!("{} must be > 0", n.latency_ms) });
        }
        for (f, v) in [("weight", n.weight), ("throughput_mbps", n.throughput_mbps)] {
            crate::non_negative(|| at(f), v)?;
        }
    }
    Ok(())
}

/// The seed's capacity score from the used fractions of CPU, memory and
/// transactions: 0.4 (1 − cpu) + 0.3 (1 − memory) + 0.3 (1 − transactions).
pub fn capacity_score(cpu: f64, memory: f64, transactions: f64) -> f64 {
    0.4 * (1.0 - cpu) + 0.3 * (1.0 - memory) + 0.3 * (1.0 - transactions)
}

/// The seed's performance score: weight × (1/latency_ms) × (throughput_mbps/1000).
pub fn performance_score(weight: f64, latency_ms: f64, throughput_mbps: f64) -> f64 {
    weight * (1.0 / latency_ms) * (throughput_mbps / 1000.0)
}

pub fn select(input: &Input) -> Result<Selection, InputError> {
    validate(input)?;
    let r = &input.request;
    let bonus = r.priority / 10.0;
    let scores: Vec<Score> = input
        .nodes
        .iter()
        .map(|n| {
            let capacity = capacity_score(
                n.cpu_utilization / n.cpu_max,
                n.memory_usage / n.memory_max,
                n.transactions / n.transactions_max,
            );
            let performance = performance_score(n.weight, n.latency_ms, n.throughput_mbps);
            Score { node: n.id.clone(), capacity, performance, total: 0.6 * capacity + 0.3 * performance + 0.1 * bonus }
        })
        .collect();
    let fits = |n: &NodeLoad| {
        n.cpu_utilization + r.cpu <= n.cpu_max
            && n.memory_usage + r.memory <= n.memory_max
            && n.transactions + r.transactions <= n.transactions_max
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total.total_cmp(&scores[a].total));
    let selected = order.into_iter().find(|&i| fits(&input.nodes[i])).map(|i| input.nodes[i].id.clone());
    Ok(Selection { scores, selected })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    fn node(id: &str, cpu: f64, mem: f64, tx: f64, latency: f64, tp: f64) -> NodeLoad {
        NodeLoad {
            id: id.into(),
            cpu_utilization: cpu,
            cpu_max: 100.0,
            memory_usage: mem,
            memory_max: 16.0,
            transactions: tx,
            transactions_max: 300.0,
            weight: 1.0,
            latency_ms: latency,
            throughput_mbps: tp,
        }
    }

    fn input(cpu: f64) -> Input {
        Input {
            request: Request { priority: 5.0, cpu, memory: 1.0, transactions: 10.0 },
            nodes: vec![
                node("Edge1", 45.0, 8.0, 150.0, 12.0, 500.0),
                node("Core1", 60.0, 12.0, 250.0, 8.0, 1000.0),
                node("Cloud1", 20.0, 4.0, 50.0, 22.0, 1250.0),
            ],
        }
    }

    #[test]
    fn the_formula_by_hand_and_the_fallback_to_the_next() {
        let s = select(&input(5.0)).unwrap();
        // Cloud1: capacity 0.4·0.8 + 0.3·0.75 + 0.3·(1 − 50/300) = 0.795;
        // performance 1 × (1/22) × 1.25; total 0.6·0.795 + 0.3·perf + 0.1·0.5.
        let c = &s.scores[2];
        assert!((c.capacity - 0.795).abs() < 1e-12);
        assert!((c.performance - 1.25 / 22.0).abs() < 1e-12);
        assert!((c.total - (0.6 * 0.795 + 0.3 * 1.25 / 22.0 + 0.05)).abs() < 1e-12);
        assert_eq!(s.selected.as_deref(), Some("Cloud1"));
        // 85 % CPU fits no node: the freest (Cloud1) has 80 % free.
        let s = select(&input(85.0)).unwrap();
        assert_eq!(s.selected, None, "no node has 85 % CPU free");
        let s = select(&input(55.0)).unwrap();
        assert_eq!(s.selected.as_deref(), Some("Cloud1"));
        let mut i = input(55.0);
        i.nodes[2].cpu_utilization = 50.0; // Cloud1 now too busy for 55 %: the next that fits
        let s = select(&i).unwrap();
        assert_eq!(s.selected.as_deref(), Some("Edge1"));
    }

    #[test]
    fn bad_entries_are_named() {
        let mut i = input(1.0);
        i.nodes[1].memory_usage = 20.0;
        assert_eq!(select(&i).unwrap_err().at, "nodes[1].memory_usage");
        let mut i = input(1.0);
        i.nodes[0].latency_ms = 0.0;
        assert_eq!(select(&i).unwrap_err().at, "nodes[0].latency_ms");
        let mut i = input(1.0);
        i.request.cpu = -1.0;
        assert_eq!(select(&i).unwrap_err().at, "request.cpu");
    }

    proptest! {
        /// The selected node fits the request and no node that fits has a
        /// higher total; the priority changes no choice.
        #[test]
        fn the_choice_is_the_best_node_that_fits(loads in proptest::collection::vec((0.0f64..100.0, 0.0f64..16.0, 0.0f64..300.0, 1.0f64..50.0, 0.0f64..2000.0), 1..10), cpu in 0.0f64..60.0, prio in 0.0f64..10.0) {
            let nodes: Vec<NodeLoad> = loads.iter().enumerate().map(|(i, l)| node(&format!("n{i}"), l.0, l.1, l.2, l.3, l.4)).collect();
            let base = Input { request: Request { priority: 0.0, cpu, memory: 1.0, transactions: 5.0 }, nodes };
            let s = select(&base).unwrap();
            let fits = |n: &NodeLoad| n.cpu_utilization + cpu <= n.cpu_max && n.memory_usage + 1.0 <= n.memory_max && n.transactions + 5.0 <= n.transactions_max;
            match &s.selected {
                Some(id) => {
                    let i = base.nodes.iter().position(|n| &n.id == id).unwrap();
                    prop_assert!(fits(&base.nodes[i]));
                    prop_assert!(base.nodes.iter().zip(&s.scores).all(|(n, sc)| !fits(n) || sc.total <= s.scores[i].total));
                }
                None => prop_assert!(base.nodes.iter().all(|n| !fits(n))),
            }
            let with_prio = select(&Input { request: Request { priority: prio, ..base.request.clone() }, ..base.clone() }).unwrap();
            prop_assert_eq!(with_prio.selected, s.selected);
        }
    }
}
