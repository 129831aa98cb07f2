//! Instances, the max-flow reference, and the seed rule's failure.

use agora_alloc::{max_flow, Instance, Network, SeedRule};
use proptest::prelude::*;

fn seed_example() -> Instance {
    Instance::parse(
        r#"{"providers": [{"id": "P1", "capacity": 300}, {"id": "P2", "capacity": 400}],
            "recipients": [{"id": "R1", "need": 500}],
            "edges": [{"provider": "P1", "recipient": "R1", "mr": 0.6},
                      {"provider": "P2", "recipient": "R1", "mr": 0.4}]}"#,
    )
    .unwrap()
}

fn crossed() -> Instance {
    Instance::parse(
        r#"
        providers = [{ id = "P1", capacity = 300 }, { id = "P2", capacity = 200 }]
        recipients = [{ id = "R1", need = 250 }, { id = "R2", need = 250 }]
        edges = [
          { provider = "P1", recipient = "R1", mr = 0.6 },
          { provider = "P1", recipient = "R2", mr = 0.4 },
          { provider = "P2", recipient = "R1", mr = 0.3 },
          { provider = "P2", recipient = "R2", mr = 0.7 },
        ]"#,
    )
    .unwrap()
}

#[test]
fn bad_instances_name_the_entry() {
    let base = |edges: &str, extra_p: &str| {
        format!(
            r#"{{"providers": [{{"id": "P1", "capacity": 10}}{extra_p}],
                "recipients": [{{"id": "R1", "need": 5}}], "edges": [{edges}]}}"#
        )
    };
    let cases = [
        (
            base(r#"{"provider": "P1", "recipient": "R1", "mr": 1.5}"#, ""),
            "edges[0] (P1 → R1): mr 1.5 is outside (0, 1]",
        ),
        (base(r#"{"provider": "P1", "recipient": "R1", "mr": 0}"#, ""), "mr 0 is outside"),
        (
            base(r#"{"provider": "P9", "recipient": "R1", "mr": 0.5}"#, ""),
            "edges[0] (P9 → R1): unknown provider \"P9\"",
        ),
        (base(r#"{"provider": "P1", "recipient": "R7", "mr": 0.5}"#, ""), "unknown recipient \"R7\""),
        (
            base(
                r#"{"provider": "P1", "recipient": "R1", "mr": 0.5}, {"provider": "P1", "recipient": "R1", "mr": 0.2}"#,
                "",
            ),
            "edges[1] (P1 → R1): duplicate edge",
        ),
        (base("", r#", {"id": "P1", "capacity": 3}"#), "providers[1] (P1): duplicate provider id"),
        (base("", r#", {"id": "P2", "capacity": -3}"#), "providers[1] (P2): capacity -3 must be a finite number ≥ 0"),
        (base(r#"{"provider": "P1", "recipient": "R1", "mr": 0.5, "desire": -1}"#, ""), "desire -1"),
    ];
    for (text, want) in cases {
        let e = Instance::parse(&text).and_then(|i| i.network()).unwrap_err();
        assert!(e.to_string().contains(want), "{e} should contain {want:?}");
    }
    let e = Instance::parse("{\"providers\": [], \"recipients\": [], \"edges\": [], \"extra\": 1}").unwrap_err();
    assert!(e.to_string().contains("unknown field `extra`"), "{e}");
    assert!(Instance::parse(
        "{\"providers\": [{\"id\": \"P\", \"capacity\": 1e999}], \"recipients\": [], \"edges\": []}"
    )
    .and_then(|i| i.network())
    .is_err());
}

#[test]
fn max_flow_of_the_named_instances() {
    assert_eq!(max_flow(&seed_example().network().unwrap()), 500.0);
    assert_eq!(max_flow(&crossed().network().unwrap()), 500.0);
    // The spec's cumulative-semantics example: P1 serves R1 and R2, P2 only R1, all sizes 1: optimum 2.
    let net = Network {
        capacity: vec![1.0, 1.0],
        need: vec![1.0, 1.0],
        edges: vec![(0, 0, 1.0, f64::INFINITY), (0, 1, 1.0, f64::INFINITY), (1, 0, 1.0, f64::INFINITY)],
    };
    assert_eq!(max_flow(&net), 2.0);
}

/// The minimum cut by brute force over all source-side subsets: by the
/// max-flow min-cut theorem it equals the maximum flow.
fn min_cut(net: &Network) -> f64 {
    let (np, nr) = (net.capacity.len(), net.need.len());
    let mut best = f64::INFINITY;
    for ps in 0u32..(1 << np) {
        for rs in 0u32..(1 << nr) {
            // ps: providers on the source side; rs: recipients on the source side.
            let mut cut = 0.0;
            for p in 0..np {
                if ps & (1 << p) == 0 {
                    cut += net.capacity[p];
                }
            }
            for r in 0..nr {
                if rs & (1 << r) != 0 {
                    cut += net.need[r];
                }
            }
            for &(p, r, _, m) in &net.edges {
                if ps & (1 << p) != 0 && rs & (1 << r) == 0 {
                    cut += m;
                }
            }
            best = best.min(cut);
        }
    }
    best
}

fn small_network() -> impl Strategy<Value = Network> {
    (1usize..5, 1usize..5).prop_flat_map(|(np, nr)| {
        (
            proptest::collection::vec(0.0f64..100.0, np),
            proptest::collection::vec(0.0f64..100.0, nr),
            proptest::collection::vec(proptest::option::of(0.0f64..60.0), np * nr),
            proptest::collection::vec(proptest::bool::ANY, np * nr),
        )
            .prop_map(move |(capacity, need, desire, present)| {
                let edges = (0..np * nr)
                    .filter(|&i| present[i])
                    .map(|i| (i / nr, i % nr, 0.5, desire[i].unwrap_or(f64::INFINITY)))
                    .collect();
                Network { capacity, need, edges }
            })
    })
}

proptest! {
    #[test]
    fn dinic_equals_the_minimum_cut(net in small_network()) {
        let (f, c) = (max_flow(&net), min_cut(&net));
        prop_assert!((f - c).abs() <= 1e-9 * c.max(1.0), "max flow {f} ≠ min cut {c}");
    }
}

#[test]
fn seed_rule_alternates_700_and_0_on_its_own_example() {
    let mut rule = SeedRule::new(seed_example().network().unwrap());
    for round in 1..=50u32 {
        let r = rule.round();
        let expected = if round % 2 == 1 { 700.0 } else { 0.0 };
        assert!((r.total_allocated - expected).abs() < 1e-9, "round {round}: {r:?}");
        // Never converged: either 200 over (odd rounds) or 500 under (even rounds).
        assert!(r.over_allocation >= 200.0 - 1e-9 || r.under_allocation >= 500.0 - 1e-9, "round {round}: {r:?}");
    }
}

#[test]
fn seed_rule_cycles_on_the_crossed_instance() {
    let mut rule = SeedRule::new(crossed().network().unwrap());
    let tol = 1e-3 * 250.0;
    let mut seen = Vec::new();
    for round in 1..=1000u32 {
        let r = rule.round();
        assert!(r.over_allocation > tol || r.under_allocation > tol, "converged at round {round}: {r:?}");
        seen.push(rule.allocation.clone());
    }
    // It settles into a cycle: the last allocation recurs earlier.
    let last = seen.last().unwrap();
    let period = seen.iter().rev().skip(1).position(|a| a == last).map(|i| i + 1);
    assert!(period.is_some_and(|p| p <= 10), "cycle of period {period:?}");
}

#[test]
fn generated_instances_are_valid_deterministic_and_shaped_as_asked() {
    for seed in 0..50 {
        let i = agora_alloc::generate(7, 30, 3, seed).unwrap();
        assert_eq!((i.providers.len(), i.recipients.len(), i.edges.len()), (7, 30, 90));
        let net = i.network().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let ratio = net.capacity.iter().sum::<f64>() / net.need.iter().sum::<f64>();
        assert!((0.49..=2.01).contains(&ratio), "seed {seed}: capacity/need {ratio}");
        assert!(max_flow(&net) > 0.0);
        // Through JSON and back: the same instance.
        let text = serde_json::to_string(&i).unwrap();
        assert_eq!(Instance::parse(&text).unwrap(), i);
        assert_eq!(agora_alloc::generate(7, 30, 3, seed).unwrap(), i);
    }
    assert_ne!(agora_alloc::generate(7, 30, 3, 1).unwrap(), agora_alloc::generate(7, 30, 3, 2).unwrap());
    assert!(agora_alloc::generate(3, 5, 4, 0).is_err());
    assert!(agora_alloc::generate(0, 5, 1, 0).is_err());
}
