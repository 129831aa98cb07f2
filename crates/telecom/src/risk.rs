//! The seed's systemic risk assessment (§ "Systemic Failure Risk
//! Assessment"): risk = 0.3 failure_probability + 0.3 criticality + 0.2
//! cascade_risk + 0.2 dependency_count / max_dependencies, the maximum
//! taken over the nodes given (a term of 0 when no node has dependents).
//! Categories: ≥ 0.85 critical, 0.70–0.84 high, 0.50–0.69 medium, < 0.50
//! low.
//!
//! The redundancy strategy: a node that fails Byzantine needs an N-way
//! quorum whatever its score (a quorum is what tolerates arbitrary
//! behaviour). Otherwise the category decides, as the seed's category list
//! says: critical active-active, high active-passive, medium geographic
//! redundancy, low eventual consistency. The seed's strategy diagram
//! disagrees — it puts geographic at low and names nothing for medium; we
//! follow the list, which is the one next to the formula.
//!
//! The failover order is by criticality, highest first (the seed's example:
//! Core1 0.95, Core2 0.90, Cloud1 0.75), ties by risk, then input order.

use crate::InputError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    Crash,
    Omission,
    Byzantine,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRisk {
    pub id: String,
    pub failure_probability: f64,
    pub criticality: f64,
    pub cascade_risk: f64,
    pub dependency_count: u32,
    pub failure_mode: FailureMode,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub nodes: Vec<NodeRisk>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Critical,
    High,
    Medium,
    Low,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    NWayQuorum,
    ActiveActive,
    ActivePassive,
    Geographic,
    EventualConsistency,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessed {
    pub node: String,
    pub risk_score: f64,
    pub category: Category,
    pub strategy: Strategy,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessment {
    pub nodes: Vec<Assessed>,
    pub failover_order: Vec<String>,
}

/// The category of a score. Scores are sums of products of decimals, so a
/// boundary such as 0.7 may come out a hair below: compared with a
/// tolerance far under the categories' two-decimal resolution.
pub fn category(score: f64) -> Category {
    const EPS: f64 = 1e-9;
    if score + EPS >= 0.85 {
        Category::Critical
    } else if score + EPS >= 0.70 {
        Category::High
    } else if score + EPS >= 0.50 {
        Category::Medium
    } else {
        Category::Low
    }
}

pub fn strategy(mode: FailureMode, category: Category) -> Strategy {
    match (mode, category) {
        (FailureMode::Byzantine, _) => Strategy::NWayQuorum,
        (_, Category::Critical) => Strategy::ActiveActive,
        (_, Category::High) => Strategy::ActivePassive,
        (_, Category::Medium) => Strategy::Geographic,
        (_, Category::Low) => Strategy::EventualConsistency,
    }
}

pub fn validate(input: &Input) -> Result<(), InputError> {
    crate::check_ids("nodes", input.nodes.iter().map(|n| n.id.as_str()), false, "to assess")?;
    for (i, n) in input.nodes.iter().enumerate() {
        let at = |f: &str| format!("nodes[{i}].{f}");
        for (f, v) in [
            ("failure_probability", n.failure_probability),
            ("criticality", n.criticality),
            ("cascade_risk", n.cascade_risk),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(InputError { at: at(f), message: format!("{v} is not in [0, 1]") });
            }
        }
    }
    Ok(())
}

pub fn assess(input: &Input) -> Result<Assessment, InputError> {
    validate(input)?;
    let max_deps = input.nodes.iter().map(|n| n.dependency_count).max().unwrap_or(0);
    let score = |n: &NodeRisk| {
        let deps = if max_deps == 0 { 0.0 } else { f64::from(n.dependency_count) / f64::from(max_deps) };
        0.3 * n.failure_probability + 0.3 * n.criticality + 0.2 * n.cascade_risk + 0.2 * deps
    };
    let nodes: Vec<Assessed> = input
        .nodes
        .iter()
        .map(|n| {
            let s = score(n);
            let c = category(s);
            Assessed { node: n.id.clone(), risk_score: s, category: c, strategy: strategy(n.failure_mode, c) }
        })
        .collect();
    let mut order: Vec<usize> = (0..input.nodes.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&input.nodes[a], &input.nodes[b]);
        y.criticality.total_cmp(&x.criticality).then(nodes[b].risk_score.total_cmp(&nodes[a].risk_score))
    });
    Ok(Assessment { failover_order: order.iter().map(|&i| input.nodes[i].id.clone()).collect(), nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};

    fn node(id: &str, fp: f64, crit: f64, cascade: f64, deps: u32, mode: FailureMode) -> NodeRisk {
        NodeRisk {
            id: id.into(),
            failure_probability: fp,
            criticality: crit,
            cascade_risk: cascade,
            dependency_count: deps,
            failure_mode: mode,
        }
    }

    #[test]
    fn the_formula_categories_strategies_and_order() {
        let input = Input {
            nodes: vec![
                node("Edge1", 0.2, 0.6, 0.3, 1, FailureMode::Crash),
                node("Core1", 0.9, 0.95, 0.9, 4, FailureMode::Byzantine),
                node("Core2", 0.8, 0.90, 0.8, 4, FailureMode::Crash),
                node("Cloud1", 0.5, 0.75, 0.6, 2, FailureMode::Omission),
            ],
        };
        let a = assess(&input).unwrap();
        let by = |id: &str| a.nodes.iter().find(|n| n.node == id).unwrap().clone();
        // By hand: 0.3·0.8 + 0.3·0.9 + 0.2·0.8 + 0.2·4/4 = 0.87.
        assert!((by("Core2").risk_score - 0.87).abs() < 1e-12);
        assert_eq!((by("Core2").category, by("Core2").strategy), (Category::Critical, Strategy::ActiveActive));
        assert_eq!(by("Core1").strategy, Strategy::NWayQuorum, "Byzantine needs a quorum");
        // 0.3·0.5 + 0.3·0.75 + 0.2·0.6 + 0.2·0.5 = 0.595: medium, geographic.
        assert!((by("Cloud1").risk_score - 0.595).abs() < 1e-12);
        assert_eq!((by("Cloud1").category, by("Cloud1").strategy), (Category::Medium, Strategy::Geographic));
        assert_eq!(by("Edge1").category, Category::Low);
        assert_eq!(a.failover_order, ["Core1", "Core2", "Cloud1", "Edge1"]);
    }

    #[test]
    fn boundaries_fall_in_the_higher_category() {
        assert_eq!(category(0.85), Category::Critical);
        assert_eq!(category(0.3 * 0.7 + 0.3 * 0.7 + 0.2 * 0.7 + 0.2 * 0.7), Category::High); // 0.7 computed
        assert_eq!(category(0.6999), Category::Medium);
        assert_eq!(category(0.5), Category::Medium);
        assert_eq!(category(0.4999), Category::Low);
    }

    #[test]
    fn bad_entries_are_named() {
        let mut input = Input { nodes: vec![node("a", 0.1, 0.2, 0.3, 0, FailureMode::Crash)] };
        input.nodes[0].cascade_risk = 1.5;
        assert_eq!(assess(&input).unwrap_err().at, "nodes[0].cascade_risk");
        let e = crate::parse_json::<Input>(r#"{"nodes": [{"id": "a", "failure_probability": 0.1, "criticality": 0.1, "cascade_risk": 0.1, "dependency_count": 1, "failure_mode": "melted"}]}"#).unwrap_err();
        assert_eq!(e.at, "nodes[0].failure_mode");
    }

    proptest! {
        /// Scores lie in [0, 1]; raising any input never lowers a node's
        /// score; the failover order is sorted by criticality.
        #[test]
        fn scores_are_bounded_monotone_and_ordered(rows in proptest::collection::vec((0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0, 0u32..10), 1..10), bump in 0.0f64..0.5) {
            let nodes: Vec<NodeRisk> = rows.iter().enumerate().map(|(i, r)| node(&format!("n{i}"), r.0, r.1, r.2, r.3, FailureMode::Crash)).collect();
            let a = assess(&Input { nodes: nodes.clone() }).unwrap();
            prop_assert!(a.nodes.iter().all(|n| (0.0..=1.0 + 1e-12).contains(&n.risk_score)));
            let mut up = nodes.clone();
            up[0].failure_probability = (up[0].failure_probability + bump).min(1.0);
            let b = assess(&Input { nodes: up }).unwrap();
            prop_assert!(b.nodes[0].risk_score + 1e-12 >= a.nodes[0].risk_score);
            let crit: Vec<f64> = a.failover_order.iter().map(|id| nodes.iter().find(|n| &n.id == id).unwrap().criticality).collect();
            prop_assert!(crit.windows(2).all(|w| w[0] >= w[1]));
        }
    }
}
