//! The seed's bottleneck ranking (§ "Bottleneck Ranking Algorithm"): for
//! each node, score = Σ w_j · normalize(metric_j) with normalize(x) =
//! (x − min)/(max − min) over the nodes given, weights latency 0.25,
//! throughput 0.20, CPU 0.20, memory 0.15, transactions 0.10, locks 0.10;
//! highest first ("higher = more bottlenecked"). A metric equal on every
//! node contributes 0 (its range is empty).
//!
//! The seed's formula counts more throughput as more bottlenecked, like
//! latency or CPU: its dashboard's best-throughput node (Cloud1, 1250 Mbps)
//! gains the full 0.20 for it. That is the default, to reproduce the seed;
//! [`Reading::Corrected`] scores throughput as a shortfall, (max − x)/(max −
//! min), since a node that moves less traffic is the narrower pipe.

use crate::InputError;
use serde::{Deserialize, Serialize};

/// One node's metrics (`{"nodes": [...]}` of the input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMetrics {
    pub id: String,
    pub latency_ms: f64,
    pub throughput_mbps: f64,
    pub cpu_percent: f64,
    pub memory_gb: f64,
    pub tx_per_s: f64,
    pub lock_contention_percent: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub nodes: Vec<NodeMetrics>,
}

/// How throughput counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reading {
    /// As the seed writes it: more throughput, more bottlenecked.
    #[default]
    Seed,
    /// Less throughput, more bottlenecked.
    Corrected,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranked {
    pub node: String,
    pub score: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranking {
    pub ranking: Vec<Ranked>,
    pub suggestions: Vec<String>,
}

/// The metrics in weight order, with their weights and names.
const METRICS: [(&str, f64); 6] = [
    ("latency_ms", 0.25),
    ("throughput_mbps", 0.20),
    ("cpu_percent", 0.20),
    ("memory_gb", 0.15),
    ("tx_per_s", 0.10),
    ("lock_contention_percent", 0.10),
];

fn values(m: &NodeMetrics) -> [f64; 6] {
    [m.latency_ms, m.throughput_mbps, m.cpu_percent, m.memory_gb, m.tx_per_s, m.lock_contention_percent]
}

/// Checks the input: at least one node, unique ids, every metric finite and
/// ≥ 0, percentages ≤ 100.
pub fn validate(input: &Input) -> Result<(), InputError> {
    crate::check_ids("nodes", input.nodes.iter().map(|m| m.id.as_str()), false, "to rank")?;
    for (i, m) in input.nodes.iter().enumerate() {
        let at = |field: &str| format!("nodes[{i}].{field}");
        for (&(name, _), v) in METRICS.iter().zip(values(m)) {
            crate::non_negative(|| at(name), v)?;
            if name.ends_with("_percent") && v > 100.0 {
                return Err(InputError { at: at(name), message: format!("{v} is more than 100 %") });
            }
        }
    }
    Ok(())
}

/// Each node's normalized metrics, in [0, 1], as the score reads them.
fn normalized(input: &Input, reading: Reading) -> Vec<[f64; 6]> {
    let mut lo = [f64::INFINITY; 6];
    let mut hi = [f64::NEG_INFINITY; 6];
    for m in &input.nodes {
        for (j, v) in values(m).into_iter().enumerate() {
            lo[j] = lo[j].min(v);
            hi[j] = hi[j].max(v);
        }
    }
    input
        .nodes
        .iter()
        .map(|m| {
            let mut out = [0.0; 6];
            for (j, v) in values(m).into_iter().enumerate() {
                let range = hi[j] - lo[j];
                if range > 0.0 {
                    let up = (v - lo[j]) / range;
                    out[j] = if j == 1 && reading == Reading::Corrected { 1.0 - up } else { up };
                }
            }
            out
        })
        .collect()
}

/// The ranking, highest score first (ties in input order), and suggestions
/// for each node whose score is at least half the top one: its largest
/// weighted term names what to relieve.
pub fn rank(input: &Input, reading: Reading) -> Result<Ranking, InputError> {
    validate(input)?;
    let norm = normalized(input, reading);
    let terms: Vec<[f64; 6]> = norm.iter().map(|n| std::array::from_fn(|j| METRICS[j].1 * n[j])).collect();
    let mut order: Vec<usize> = (0..input.nodes.len()).collect();
    let score = |i: usize| terms[i].iter().sum::<f64>();
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
    let top = score(order[0]);
    let mut suggestions = Vec::new();
    for &i in order.iter().filter(|&&i| top > 0.0 && score(i) >= top / 2.0) {
        let (j, _) = terms[i].iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("six terms");
        let (name, v) = (METRICS[j].0, values(&input.nodes[i])[j]);
        // Scores scale each metric between the lowest and the highest node,
        // so a spread of 1 % to 2 % CPU weighs as much as 10 % to 90 %.
        let advice = if name.ends_with("_percent") && v < BUSY_PERCENT {
            format!(
                "{} weighs most in its score, but at {v:.1} % it is far from a limit: the nodes differ too little to act on",
                if name == "cpu_percent" { "CPU" } else { "lock contention" }
            )
        } else {
            advice(j, reading).to_string()
        };
        suggestions.push(format!("{}: {advice}", input.nodes[i].id));
    }
    Ok(Ranking {
        ranking: order.iter().map(|&i| Ranked { node: input.nodes[i].id.clone(), score: score(i) }).collect(),
        suggestions,
    })
}

/// Below this share a percentage metric (CPU, lock contention) is no
/// bottleneck, however it compares with the other nodes'.
pub const BUSY_PERCENT: f64 = 50.0;

fn advice(metric: usize, reading: Reading) -> &'static str {
    match (metric, reading) {
        (0, _) => "highest latency weighs most: move its services nearer their callers or add a replica closer in",
        (1, Reading::Seed) => {
            "carries the most traffic (the seed scores that as load): spread its flows over more links"
        }
        (1, Reading::Corrected) => "moves the least traffic: widen its links or route around it",
        (2, _) => "CPU weighs most: shed or move load, or add capacity",
        (3, _) => "memory weighs most: move replicas or state elsewhere, or add memory",
        (4, _) => "transaction rate weighs most: partition the keys or add a coordinator",
        _ => "lock contention weighs most: shorten transactions or lock finer-grained",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The seed's dashboard (§ "Performance Metrics Dashboard").
    fn seed_table() -> Input {
        let n = |id: &str, l, t, c, m, x, k| NodeMetrics {
            id: id.into(),
            latency_ms: l,
            throughput_mbps: t,
            cpu_percent: c,
            memory_gb: m,
            tx_per_s: x,
            lock_contention_percent: k,
        };
        Input {
            nodes: vec![
                n("Edge1", 12.0, 500.0, 45.0, 8.0, 150.0, 8.0),
                n("Edge2", 15.0, 470.0, 50.0, 4.5, 100.0, 12.0),
                n("Core1", 8.0, 1000.0, 60.0, 12.0, 250.0, 5.0),
                n("Core2", 10.0, 950.0, 55.0, 10.0, 200.0, 10.0),
                n("Cloud1", 22.0, 1250.0, 72.0, 16.0, 300.0, 15.0),
            ],
        }
    }

    /// A node whose CPU is the highest of very idle nodes is not told to
    /// add capacity.
    #[test]
    fn an_idle_node_is_not_told_to_add_capacity() {
        let mut input = seed_table();
        for (i, n) in input.nodes.iter_mut().enumerate() {
            *n = NodeMetrics {
                latency_ms: 10.0,
                throughput_mbps: 500.0,
                memory_gb: 8.0,
                tx_per_s: 100.0,
                lock_contention_percent: 5.0,
                cpu_percent: 0.5 + i as f64 * 0.4,
                ..n.clone()
            };
        }
        let r = rank(&input, Reading::Corrected).unwrap();
        assert_eq!(r.ranking[0].node, "Cloud1");
        assert!(
            r.suggestions[0].contains("CPU weighs most in its score, but at 2.1 % it is far from a limit"),
            "{:?}",
            r.suggestions
        );
        // Busy, it is.
        input.nodes[4].cpu_percent = 90.0;
        let r = rank(&input, Reading::Corrected).unwrap();
        assert!(r.suggestions[0].contains("CPU weighs most: shed or move load"), "{:?}", r.suggestions);
    }

    #[test]
    fn the_seed_table_ranks_by_the_formula_worked_by_hand() {
        let r = rank(&seed_table(), Reading::Seed).unwrap();
        // Cloud1 is the maximum of every metric but none: 0.25 + 0.20 + 0.20 + 0.15 + 0.10 + 0.10.
        assert_eq!(r.ranking[0].node, "Cloud1");
        assert!((r.ranking[0].score - 1.0).abs() < 1e-12);
        // Edge1 by hand: latency (12−8)/14, throughput (500−470)/780, cpu (45−45)/27,
        // memory (8−4.5)/11.5, tx (150−100)/200, locks (8−5)/10.
        let edge1 = 0.25 * 4.0 / 14.0 + 0.20 * 30.0 / 780.0 + 0.0 + 0.15 * 3.5 / 11.5 + 0.10 * 0.25 + 0.10 * 0.3;
        let got = r.ranking.iter().find(|x| x.node == "Edge1").unwrap().score;
        assert!((got - edge1).abs() < 1e-12, "{got} vs {edge1}");
        assert!(r.ranking.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(r.suggestions[0].starts_with("Cloud1: "), "{:?}", r.suggestions);
    }

    #[test]
    fn the_corrected_reading_turns_throughput_around() {
        let seed = rank(&seed_table(), Reading::Seed).unwrap();
        let fixed = rank(&seed_table(), Reading::Corrected).unwrap();
        let of = |r: &Ranking, n: &str| r.ranking.iter().find(|x| x.node == n).unwrap().score;
        // Cloud1 moves the most traffic: 0.20 less; Edge2 the least: 0.20 more.
        assert!((of(&seed, "Cloud1") - of(&fixed, "Cloud1") - 0.20).abs() < 1e-12);
        assert!((of(&fixed, "Edge2") - of(&seed, "Edge2") - 0.20).abs() < 1e-12);
    }

    #[test]
    fn bad_entries_are_named() {
        let mut i = seed_table();
        i.nodes[2].cpu_percent = 120.0;
        assert_eq!(rank(&i, Reading::Seed).unwrap_err().at, "nodes[2].cpu_percent");
        let mut i = seed_table();
        i.nodes[3].id = "Edge1".into();
        assert_eq!(rank(&i, Reading::Seed).unwrap_err().to_string(), "nodes[3].id: \"Edge1\" is also nodes[0]");
        let e = crate::parse_json::<Input>(r#"{"nodes": [{"id": "a", "latency_ms": "fast"}]}"#).unwrap_err();
        assert_eq!(e.at, "nodes[0].latency_ms");
        assert!(rank(&Input { nodes: vec![] }, Reading::Seed).is_err());
    }

    proptest! {
        /// Scores lie in [0, 1]; a metric equal on every node changes no
        /// score; scaling every node's value of one metric changes nothing
        /// (normalization is scale-free).
        #[test]
        fn scores_are_bounded_and_scale_free(rows in proptest::collection::vec(proptest::array::uniform6(0.0f64..100.0), 1..12), k in 0usize..6, f in 0.5f64..20.0) {
            let input = Input { nodes: rows.iter().enumerate().map(|(i, r)| NodeMetrics {
                id: format!("n{i}"), latency_ms: r[0], throughput_mbps: r[1], cpu_percent: r[2],
                memory_gb: r[3], tx_per_s: r[4], lock_contention_percent: r[5] }).collect() };
            let base = rank(&input, Reading::Seed).unwrap();
            prop_assert!(base.ranking.iter().all(|x| (-1e-12..=1.0 + 1e-12).contains(&x.score)));
            let mut flat = input.clone();
            for m in &mut flat.nodes { m.tx_per_s = 7.0; }
            let mut scaled = input.clone();
            for m in &mut scaled.nodes {
                match k { 0 => m.latency_ms *= f, 1 => m.throughput_mbps *= f, 3 => m.memory_gb *= f, 4 => m.tx_per_s *= f, _ => {} }
            }
            let score = |r: &Ranking, id: &str| r.ranking.iter().find(|x| x.node == id).unwrap().score;
            let flat_r = rank(&flat, Reading::Seed).unwrap();
            let scaled_r = rank(&scaled, Reading::Seed).unwrap();
            let norm = normalized(&input, Reading::Seed);
            for (i, m) in input.nodes.iter().enumerate() {
                prop_assert!((score(&flat_r, &m.id) - (score(&base, &m.id) - 0.10 * norm[i][4])).abs() < 1e-9);
                prop_assert!((score(&scaled_r, &m.id) - score(&base, &m.id)).abs() < 1e-9);
            }
        }
    }
}
