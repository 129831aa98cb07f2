//! The default rule against the spec's guarantees: feasible every round,
//! near-optimal at convergence, MR-weighted, fast, deterministic, and still
//! converging without barriers.

use agora_alloc::{max_flow, solve, DefaultRule, Instance, Network, RuleName};
use proptest::prelude::*;

/// Σ_r x_pr ≤ c_p, Σ_p x_pr ≤ d_r, 0 ≤ x_pr ≤ m_pr, with relative slack 1e-9.
fn check_feasible(net: &Network, x: &[f64]) -> Result<(), String> {
    let slack = |v: f64| v * (1.0 + 1e-9) + 1e-12;
    let (mut out, mut inn) = (vec![0.0; net.capacity.len()], vec![0.0; net.need.len()]);
    for (i, &(p, r, _, m)) in net.edges.iter().enumerate() {
        if !(x[i] >= 0.0 && x[i] <= slack(m)) {
            return Err(format!("edge {i}: {} outside [0, {m}]", x[i]));
        }
        out[p] += x[i];
        inn[r] += x[i];
    }
    if let Some(p) = (0..out.len()).find(|&p| out[p] > slack(net.capacity[p])) {
        return Err(format!("provider {p} gives {} of {}", out[p], net.capacity[p]));
    }
    if let Some(r) = (0..inn.len()).find(|&r| inn[r] > slack(net.need[r])) {
        return Err(format!("recipient {r} gets {} for a need of {}", inn[r], net.need[r]));
    }
    Ok(())
}

/// Runs to convergence (at most 1000 rounds), checking feasibility after
/// every round; returns (rounds, total / max-flow).
fn run(net: &Network, mut rule: DefaultRule) -> (u32, f64) {
    let mut rounds = 0;
    while !rule.converged() {
        assert!(rounds < 1000, "no convergence in 1000 rounds");
        rule.round();
        rounds += 1;
        check_feasible(net, &rule.allocation()).unwrap_or_else(|e| panic!("round {rounds}: {e}"));
    }
    let mf = max_flow(net);
    let total: f64 = rule.allocation().iter().sum();
    (rounds, if mf > 0.0 { total / mf } else { 1.0 })
}

fn suite_instance(seed: u64) -> Network {
    agora_alloc::suite_instance(seed).network().unwrap()
}

fn parse(text: &str) -> Network {
    Instance::parse(text).unwrap().network().unwrap()
}

#[test]
fn named_instances_converge_within_10_rounds() {
    let seed_example = parse(
        r#"{"providers": [{"id": "P1", "capacity": 300}, {"id": "P2", "capacity": 400}],
            "recipients": [{"id": "R1", "need": 500}],
            "edges": [{"provider": "P1", "recipient": "R1", "mr": 0.6},
                      {"provider": "P2", "recipient": "R1", "mr": 0.4}]}"#,
    );
    let crossed = parse(
        r#"{"providers": [{"id": "P1", "capacity": 300}, {"id": "P2", "capacity": 200}],
            "recipients": [{"id": "R1", "need": 250}, {"id": "R2", "need": 250}],
            "edges": [{"provider": "P1", "recipient": "R1", "mr": 0.6}, {"provider": "P1", "recipient": "R2", "mr": 0.4},
                      {"provider": "P2", "recipient": "R1", "mr": 0.3}, {"provider": "P2", "recipient": "R2", "mr": 0.7}]}"#,
    );
    // The spec's cumulative-semantics trap: P1 serves R1 and R2, P2 only R1; optimum 2, greedy 1.5.
    let trap = parse(
        r#"{"providers": [{"id": "P1", "capacity": 1}, {"id": "P2", "capacity": 1}],
            "recipients": [{"id": "R1", "need": 1}, {"id": "R2", "need": 1}],
            "edges": [{"provider": "P1", "recipient": "R1", "mr": 1}, {"provider": "P1", "recipient": "R2", "mr": 1},
                      {"provider": "P2", "recipient": "R1", "mr": 1}]}"#,
    );
    for (name, net, optimum) in
        [("seed example", seed_example, 500.0), ("crossed", crossed, 500.0), ("trap", trap, 2.0)]
    {
        let s = solve(&net, RuleName::Default, 1e-3, 10);
        assert!(s.converged, "{name}: not converged in 10 rounds: {:?}", s.per_round);
        let tol = 1e-3 * net.need.iter().cloned().fold(0.0, f64::max);
        let last = s.per_round.last().unwrap();
        assert!(last.over_allocation <= tol && last.under_allocation <= tol, "{name}: {last:?}");
        assert!((s.total_allocated - optimum).abs() <= 1e-9 * optimum, "{name}: {} of {optimum}", s.total_allocated);
        check_feasible(&net, &s.allocation).unwrap();
    }
}

#[test]
fn random_suite_is_feasible_optimal_and_fast() {
    let mut rounds = Vec::new();
    let mut worst = f64::INFINITY;
    for seed in 0..400 {
        let net = suite_instance(seed);
        let (k, ratio) = run(&net, DefaultRule::new(&net));
        assert!(ratio >= 1.0 - 1e-3, "seed {seed}: {ratio} of max-flow");
        worst = worst.min(ratio);
        rounds.push(k);
    }
    rounds.sort_unstable();
    let (median, p99) = (rounds[rounds.len() / 2], rounds[rounds.len() * 99 / 100]);
    println!("rounds: median {median}, p99 {p99}, max {}; worst ratio {worst}", rounds.last().unwrap());
    assert!(median <= 20 && p99 <= 200, "median {median}, p99 {p99}");
}

#[test]
fn without_barriers_it_still_converges() {
    for seed in 0..40 {
        let net = suite_instance(1000 + seed);
        let (_, ratio) = run(&net, DefaultRule::new(&net).asynchronous(0.5, seed));
        assert!(ratio >= 1.0 - 1e-3, "seed {seed}: {ratio} of max-flow");
    }
}

#[test]
fn one_binding_provider_splits_by_mr_times_need() {
    // P0 is the only provider of R0..R2 and too small for all of them.
    let net = Network {
        capacity: vec![100.0],
        need: vec![60.0, 80.0, 40.0],
        edges: vec![(0, 0, 0.9, f64::INFINITY), (0, 1, 0.3, f64::INFINITY), (0, 2, 0.5, f64::INFINITY)],
    };
    let s = solve(&net, RuleName::Default, 1e-3, 100);
    assert!(s.converged);
    let weights: Vec<f64> = net.edges.iter().map(|&(_, r, mr, _)| mr * net.need[r]).collect();
    let sum: f64 = weights.iter().sum();
    for (i, w) in weights.iter().enumerate() {
        let want = 100.0 * w / sum;
        assert!((s.allocation[i] - want).abs() < 1e-9, "edge {i}: {} vs {want}", s.allocation[i]);
    }
}

#[test]
fn same_input_same_bits() {
    for seed in [3, 17, 99] {
        let net = suite_instance(seed);
        let a = solve(&net, RuleName::Default, 1e-3, 1000);
        let b = solve(&net, RuleName::Default, 1e-3, 1000);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.allocation), bits(&b.allocation));
        let mut x = DefaultRule::new(&net).asynchronous(0.3, 5);
        let mut y = DefaultRule::new(&net).asynchronous(0.3, 5);
        for _ in 0..50 {
            assert_eq!(x.round(), y.round());
        }
        assert_eq!(bits(&x.allocation()), bits(&y.allocation()));
    }
}

fn small_network() -> impl Strategy<Value = Network> {
    (1usize..6, 1usize..6).prop_flat_map(|(np, nr)| {
        let amount = prop_oneof![Just(0.0), 0.001f64..1e6];
        (
            proptest::collection::vec(amount.clone(), np),
            proptest::collection::vec(amount, nr),
            proptest::collection::vec((0.01f64..=1.0, proptest::option::of(0.0f64..500.0), any::<bool>()), np * nr),
        )
            .prop_map(move |(capacity, need, edges)| {
                let edges = edges
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.2)
                    .map(|(i, &(mr, desire, _))| (i / nr, i % nr, mr, desire.unwrap_or(f64::INFINITY)))
                    .collect();
                Network { capacity, need, edges }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn feasible_every_round_and_optimal_at_the_end(net in small_network()) {
        let (_, ratio) = run(&net, DefaultRule::new(&net));
        prop_assert!(ratio >= 1.0 - 1e-3, "{ratio} of max-flow");
    }
}

proptest! {
    /// Water-filling: shares within caps, adding up to min(amount, Σ caps),
    /// proportional to weight among the uncapped, and no capped item's
    /// cap/weight above the uncapped items' common ratio.
    #[test]
    fn water_fill_is_capped_proportional_splitting(
        amount in 0.0f64..1000.0,
        items in proptest::collection::vec((0.0f64..=1.0, 0.0f64..100.0), 1..40),
    ) {
        let (weights, caps): (Vec<f64>, Vec<f64>) = items.into_iter().unzip();
        let share = agora_alloc::rule::water_fill(amount, &weights, &caps);
        let total: f64 = caps.iter().sum();
        let want = amount.min(total);
        let got: f64 = share.iter().sum();
        let positive = weights.iter().zip(&caps).any(|(w, c)| *w > 0.0 && *c > 0.0);
        if positive || want == total {
            prop_assert!((got - want).abs() <= 1e-9 * want.max(1.0), "{got} vs {want}");
        }
        let tol = 1e-9;
        let uncapped: Vec<usize> = (0..caps.len()).filter(|&i| share[i] < caps[i] * (1.0 - tol) && weights[i] > 0.0).collect();
        for i in 0..caps.len() {
            prop_assert!(share[i] >= 0.0 && share[i] <= caps[i] * (1.0 + tol));
        }
        if let Some(&first) = uncapped.first() {
            let ratio = share[first] / weights[first];
            for &i in &uncapped {
                prop_assert!((share[i] / weights[i] - ratio).abs() <= 1e-6 * ratio.max(1e-12), "not proportional");
            }
            for i in 0..caps.len() {
                if weights[i] > 0.0 && share[i] >= caps[i] * (1.0 - tol) {
                    prop_assert!(caps[i] / weights[i] <= ratio * (1.0 + 1e-6), "capped early");
                }
            }
        }
    }
}
