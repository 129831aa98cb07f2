//! The round protocol as simulator nodes: faithful to the in-process rule,
//! safe after every event, and tolerant of the seed's faults.

use agora_alloc::node::{allocation, check_node, Config, Msg, Node, Output, Setup};
use agora_alloc::{generate, max_flow, DefaultRule, Network};
use agora_core::{NodeId, Time};
use agora_sim::{Fault, Model, Sim, SimConfig, Stop};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

fn config(asynchronous: bool) -> Config {
    Config {
        instance: String::new(),
        phase_timeout: Duration::from_millis(100),
        silent_rounds: 3,
        asynchronous,
        tick: Duration::from_millis(20),
        max_rounds: 1000,
    }
}

fn ms(v: u64) -> Time {
    Time::from_nanos(v * 1_000_000)
}

/// A simulation of `net` with every node's local safety checked after every event.
fn sim(net: &Network, cfg: Config, seed: u64) -> (Sim<Node>, Arc<Setup>) {
    let setup = Arc::new(Setup { config: cfg, net: net.clone() });
    let s = setup.clone();
    let delay = Model::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(5) };
    let mut sim = Sim::new(setup.nodes(), move |id| Node::new(s.clone(), id), delay, SimConfig::new(seed));
    sim.add_invariant("local feasibility", |w| match w.active {
        Some(id) => check_node(w.nodes.state(id)),
        None => w.nodes.ids().try_for_each(|id| check_node(w.nodes.state(id))),
    });
    (sim, setup)
}

fn finished(sim: &Sim<Node>) -> Option<(u32, bool)> {
    sim.outputs().iter().find_map(|o| match o.output {
        Output::Finished { round, converged } => Some((round, converged)),
        _ => None,
    })
}

fn instance(p: usize, r: usize, degree: usize, seed: u64) -> Network {
    generate(p, r, degree, seed).unwrap().network().unwrap()
}

#[test]
fn with_barriers_the_nodes_compute_exactly_what_the_rule_does() {
    for seed in 0..12 {
        let net = instance(3 + seed as usize % 7, 4 + seed as usize % 9, 2, seed);
        let (mut sim, setup) = sim(&net, config(false), seed);
        let report = sim.run_until(ms(60_000)).unwrap();
        assert_eq!(report.stop, Stop::Quiet, "seed {seed}");
        let (rounds, converged) = finished(&sim).expect("the ledger ends the run");
        assert!(converged, "seed {seed}");
        let mut rule = DefaultRule::new(&net);
        let mut k = 0;
        while !rule.converged() {
            rule.round();
            k += 1;
        }
        assert_eq!(rounds, k, "seed {seed}");
        let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(allocation(&setup, |id| sim.node(id))), bits(rule.allocation()), "seed {seed}");
    }
}

#[test]
fn same_seed_same_trace() {
    let net = instance(6, 9, 3, 4);
    for asynchronous in [false, true] {
        let hashes: Vec<u64> = (0..2)
            .map(|_| {
                let (mut sim, _) = sim(&net, config(asynchronous), 77);
                sim.run_until(ms(60_000)).unwrap().trace_hash
            })
            .collect();
        assert_eq!(hashes[0], hashes[1]);
    }
}

/// Total allocated, as a fraction of the max-flow of `net` without the
/// agents in `without` (node ids), and with crashed recipients needing no
/// more than they hold (they cannot ask for more).
fn efficiency(sim: &Sim<Node>, setup: &Setup, without: &[NodeId]) -> f64 {
    let x = allocation(setup, |id| sim.node(id));
    let mut reduced = setup.net.clone();
    for (r, need) in reduced.need.iter_mut().enumerate() {
        if !sim.nodes().is_up(setup.recipient_id(r)) {
            let from_live =
                |p: usize| sim.nodes().is_up(setup.provider_id(p)) && !without.contains(&setup.provider_id(p));
            *need = setup.net.edges.iter().zip(&x).filter(|(e, _)| e.1 == r && from_live(e.0)).map(|(_, v)| v).sum();
        }
    }
    for (i, &(p, r, ..)) in setup.net.edges.iter().enumerate() {
        let gone = without.contains(&setup.provider_id(p)) || without.contains(&setup.recipient_id(r));
        if gone {
            reduced.edges[i].3 = 0.0;
        }
    }
    let live: f64 = x.iter().enumerate().filter(|(i, _)| reduced.edges[*i].3 > 0.0).map(|(_, v)| v).sum();
    let mf = max_flow(&reduced);
    if mf > 0.0 {
        live / mf
    } else {
        1.0 // nothing could be allocated (every provider down)
    }
}

#[test]
fn a_crashed_provider_is_absorbed() {
    let net = instance(8, 20, 3, 11);
    let (mut sim, setup) = sim(&net, config(false), 5);
    let p = setup.provider_id(2);
    // Mid-round: just after the second snapshot went out.
    sim.schedule_fault(ms(12), Fault::Crash(p));
    let report = sim.run_until(ms(120_000)).unwrap();
    assert_eq!(report.stop, Stop::Quiet);
    assert_eq!(finished(&sim).map(|f| f.1), Some(true));
    assert!(missed_a_round(&sim), "the crash fired");
    // The others absorbed its share: the allocation is the max-flow of the
    // network without it.
    let e = efficiency(&sim, &setup, &[p]);
    assert!(e >= 1.0 - 1e-3, "{e} of the reduced max-flow");
}

/// Some round closed without every agent having published.
fn missed_a_round(sim: &Sim<Node>) -> bool {
    let all = sim.nodes().len() as u32 - 1;
    sim.outputs().iter().any(|o| match o.output {
        Output::Round { round, published, .. } => round > 1 && published < all,
        _ => false,
    })
}

#[test]
fn a_crashed_provider_rejoins_and_resumes() {
    for memory in [false, true] {
        let net = instance(8, 20, 3, 11);
        let (mut sim, setup) = sim(&net, config(false), 5);
        let p = setup.provider_id(2);
        sim.schedule_fault(ms(12), Fault::Crash(p));
        // Back within T rounds (each slowed down by the barrier timeout).
        sim.schedule_fault(ms(150), Fault::Recover { node: p, memory });
        let report = sim.run_until(ms(120_000)).unwrap();
        assert_eq!(report.stop, Stop::Quiet);
        assert_eq!(finished(&sim).map(|f| f.1), Some(true), "memory {memory}");
        assert!(missed_a_round(&sim), "the crash fired");
        let held: f64 = sim.node(p).provider_allocation().unwrap().1.iter().map(|e| e.amount).sum();
        assert!(held > 0.0, "memory {memory}: the rejoined provider allocates again");
        let e = efficiency(&sim, &setup, &[]);
        assert!(e >= 1.0 - 1e-3, "memory {memory}: {e} of max-flow after rejoining");
    }
}

#[test]
fn a_silent_recipient_is_released_after_t_rounds() {
    let net = instance(5, 12, 3, 21);
    let (mut sim, setup) = sim(&net, config(false), 9);
    let r = setup.recipient_id(0);
    sim.schedule_fault(ms(25), Fault::Crash(r));
    let report = sim.run_until(ms(120_000)).unwrap();
    assert_eq!(report.stop, Stop::Quiet);
    assert_eq!(finished(&sim).map(|f| f.1), Some(true));
    assert!(missed_a_round(&sim), "the crash fired");
    // Nothing is left allocated to it, and the others got what it held.
    let x = allocation(&setup, |id| sim.node(id));
    for (i, &(_, to, ..)) in net.edges.iter().enumerate() {
        assert!(to != 0 || x[i] == 0.0, "edge {i} still allocated to the silent recipient: {}", x[i]);
    }
    let e = efficiency(&sim, &setup, &[r]);
    assert!(e >= 1.0 - 1e-3, "{e}");
}

#[test]
fn without_barriers_it_still_converges() {
    for seed in 0..6 {
        let net = instance(4 + seed as usize, 10, 2, 40 + seed);
        let (mut sim, setup) = sim(&net, config(true), seed);
        let report = sim.run_until(ms(600_000)).unwrap();
        assert_eq!(report.stop, Stop::Quiet, "seed {seed}");
        assert_eq!(finished(&sim).map(|f| f.1), Some(true), "seed {seed}");
        let e = efficiency(&sim, &setup, &[]);
        assert!(e >= 1.0 - 1e-3, "seed {seed}: {e}");
    }
}

/// Every ledger write and every message of a run, against every private
/// number of the instance.
#[test]
fn nothing_private_is_published_or_sent() {
    // Awkward values, so that no amount can equal a private number by coincidence.
    let net = Network {
        capacity: vec![173.731, 91.417, 58.113],
        need: vec![101.913, 77.291, 64.517, 49.873],
        edges: vec![
            (0, 0, 0.613, f64::INFINITY),
            (0, 1, 0.287, 1000.123),
            (0, 2, 0.541, f64::INFINITY),
            (1, 1, 0.733, f64::INFINITY),
            (1, 2, 0.119, 999.777),
            (1, 3, 0.917, f64::INFINITY),
            (2, 0, 0.457, f64::INFINITY),
            (2, 3, 0.383, f64::INFINITY),
        ],
    };
    let mut private: Vec<f64> = net.capacity.iter().chain(&net.need).copied().collect();
    for &(_, _, mr, desire) in &net.edges {
        private.push(mr);
        if desire.is_finite() {
            private.push(desire);
        }
    }
    let (mut sim, setup) = sim(&net, config(false), 1);
    let seen: Rc<RefCell<Vec<Msg>>> = Rc::default();
    for id in 0..setup.nodes() {
        let seen = seen.clone();
        sim.set_byzantine(
            NodeId(id),
            Box::new(move |to, msg, _| {
                seen.borrow_mut().push(msg.clone());
                vec![(to, msg)]
            }),
        );
    }
    sim.run_until(ms(60_000)).unwrap();
    assert_eq!(finished(&sim).map(|f| f.1), Some(true));
    let messages = seen.borrow();
    assert!(messages.len() > 100, "{} messages", messages.len());
    let numbers = |m: &Msg| -> Vec<f64> {
        match m {
            Msg::Request { amount, give_back, .. } => vec![*amount, *give_back],
            Msg::Deliver { amount, .. } => vec![*amount],
            // Everything else carries integers only: rounds, levels, flags.
            _ => vec![],
        }
    };
    for m in messages.iter() {
        for v in numbers(m) {
            assert!(!private.iter().any(|p| (p - v).abs() < 1e-9), "{m:?} carries a private number");
        }
    }
    let history = sim.node(NodeId(0)).ledger_history().expect("the memory ledger keeps its writes");
    assert!(history.len() > 4);
    // A ledger entry has no field that could hold an amount: round, level and a flag.
    let json = serde_json::to_value(history).unwrap();
    let mut floats = 0;
    fn walk(v: &serde_json::Value, floats: &mut u32) {
        match v {
            serde_json::Value::Number(n) if !n.is_u64() => *floats += 1,
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, floats)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, floats)),
            _ => {}
        }
    }
    walk(&json, &mut floats);
    assert_eq!(floats, 0, "non-integer numbers in ledger writes");
}

/// Random instances and random fault plans (crashes and recoveries of
/// providers and recipients, message loss), local feasibility checked after
/// every event; once the faults end, the run must converge near max-flow.
#[test]
fn fault_sweep() {
    use rand::{Rng, SeedableRng};
    let (mut crashes, mut lost) = (0, 0);
    for seed in 0..1000u64 {
        let mut g = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (np, nr) = (g.random_range(2..8usize), g.random_range(2..12usize));
        let net = instance(np, nr, g.random_range(1..=np), seed);
        let mut cfg = config(g.random_bool(0.3));
        cfg.silent_rounds = g.random_range(2..6);
        let (mut sim, setup) = sim(&net, cfg, seed);
        for _ in 0..g.random_range(0..4) {
            let node = NodeId(g.random_range(1..setup.nodes()));
            // Within the run: a fault-free run ends after about 50 ms, and a
            // node merely late holds the end back until it recovers or is gone.
            let at = g.random_range(0..50);
            sim.schedule_fault(ms(at), Fault::Crash(node));
            if g.random_bool(0.6) {
                let memory = g.random_bool(0.5);
                sim.schedule_fault(ms(at + g.random_range(1..300)), Fault::Recover { node, memory });
            }
        }
        if g.random_bool(0.3) {
            let scope = agora_sim::Scope::Node(NodeId(g.random_range(1..setup.nodes())));
            sim.schedule_fault(ms(0), Fault::Omission { scope: scope.clone(), rate: 0.2 });
            sim.schedule_fault(ms(300), Fault::Omission { scope, rate: 0.0 });
        }
        // Judge the system when the ledger ends the run: later faults hit a
        // finished run.
        while finished(&sim).is_none() {
            assert!(sim.now() < ms(600_000), "seed {seed}: no end in 600 s");
            assert!(sim.step().unwrap_or_else(|e| panic!("seed {seed}: {e}")), "seed {seed}: stopped unfinished");
        }
        assert_eq!(finished(&sim).map(|f| f.1), Some(true), "seed {seed}");
        crashes += sim.stats().crashes;
        lost += sim.stats().dropped.get("omission") + sim.stats().dropped.get("crashed");
        // Absent at the end: a provider that is down; a recipient that is down
        // and holds nothing (one that crashed within the last T rounds rightly
        // still holds its share); and any agent holding nothing that the
        // ledger counted as gone when it decided (it may have rejoined at that
        // very moment).
        let x = allocation(&setup, |id| sim.node(id));
        let holds = |id: NodeId| {
            net.edges
                .iter()
                .zip(&x)
                .any(|(e, &v)| (setup.provider_id(e.0) == id || setup.recipient_id(e.1) == id) && v > 0.0)
        };
        let absent = sim.node(NodeId(0)).absent_at_end();
        let down: Vec<NodeId> = sim
            .nodes()
            .ids()
            .filter(|&i| {
                let provider = i.0 <= setup.providers();
                !sim.nodes().is_up(i) && (provider || !holds(i)) || absent.contains(&i) && !holds(i)
            })
            .collect();
        let e = efficiency(&sim, &setup, &down);
        assert!(e >= 1.0 - 1e-3, "seed {seed}: {e} of max-flow");
    }
    assert!(crashes > 100 && lost > 100, "faults fired: {crashes} crashes, {lost} messages lost");
}

/// The ledger node crashes mid-run and restarts without its memory: it
/// reads its entries back from its disk (the storage capability) and
/// resumes at the round it had reached, instead of starting over at 1.
#[test]
fn a_restarted_ledger_resumes_from_its_disk() {
    let net = instance(5, 8, 2, 4);
    let (mut sim, setup) = sim(&net, config(false), 4);
    let crash = ms(40);
    sim.schedule_fault(crash, Fault::Crash(NodeId(0)));
    sim.schedule_fault(ms(45), Fault::Recover { node: NodeId(0), memory: false });
    sim.run_until(ms(60_000)).unwrap();
    let rounds = |after: bool| {
        sim.outputs()
            .iter()
            .filter(|o| o.node == NodeId(0) && (o.at > crash) == after)
            .filter_map(|o| match o.output {
                Output::Round { round, .. } => Some(round),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let (before, after) = (rounds(false), rounds(true));
    let reached = *before.last().expect("rounds closed before the crash");
    assert!(reached >= 2, "the crash came mid-run (round {reached})");
    assert!(after[0] >= reached, "resumed at round {} after reaching {reached}", after[0]);
    assert!(sim.stats().disk.syncs > 0);
    let (_, converged) = finished(&sim).expect("the run ends");
    assert!(converged);
    let total: f64 = allocation(&setup, |id| sim.node(id)).iter().sum();
    assert!(total >= (1.0 - 1e-3) * max_flow(&net));
}
