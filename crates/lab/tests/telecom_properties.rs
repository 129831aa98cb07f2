//! The seed's property-based tests for the telecom control plane (part 1),
//! by its categories: architecture (2), communication (6), fault tolerance
//! (5), optimisation (3), load balancing (4). Properties that need a run
//! drive the simulator on the default topology or a generated one; each
//! asserts something a wrong implementation would fail.

use agora_core::{NodeId, Protocol, Time};
use agora_lab::registry;
use agora_lab::telecom::{experiments::default_scenario, history, outcome};
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use agora_sim::Sim;
use agora_telecom::node::{self, client, control, Detection, Node, Output};
use agora_telecom::topology::{generate, Params};
use proptest::prelude::*;
use std::time::Duration;

fn run(sc: &Scenario<Params>, seed: u64) -> Sim<Node> {
    registry::check::<Node>(sc).expect("a valid scenario");
    let mut sim = registry::build::<Node>(sc, seed, true);
    sim.run_until(Time::ZERO + sc.until).expect("invariants hold");
    sim
}

/// The default topology with no faults and no Byzantine input.
fn calm(until_s: u64) -> Scenario<Params> {
    let mut sc = default_scenario();
    sc.fault.clear();
    sc.input.clear();
    sc.until = Duration::from_secs(until_s);
    sc
}

fn fault(kind: FaultKind, at_ms: u64, node: u32) -> FaultSpec {
    FaultSpec { kind, at: Some(Duration::from_millis(at_ms)), node: Some(node), ..FaultSpec::default() }
}

fn sim_cases() -> ProptestConfig {
    ProptestConfig { cases: 6, ..ProptestConfig::default() }
}

mod architecture {
    use super::*;

    proptest! {
        #![proptest_config(sim_cases())]

        /// Performance bounds: driven past saturation, no node serves faster
        /// than its slots and shortest service time allow, and no request
        /// spends less than that service time at a node.
        #[test]
        fn performance_bounds(seed in 0u64..1000, in_flight in 10u32..300, slots in 1u32..4) {
            let mut sc = calm(3);
            sc.params.workload.closed_loop = in_flight;
            for n in &mut sc.params.nodes {
                n.slots = slots;
            }
            let sim = run(&sc, seed);
            let topo = sc.params.compile().unwrap();
            let o = outcome(&topo, &sim);
            for (r, spec) in o.nodes.iter().zip(&topo.params.nodes) {
                let min_service = spec.latency_ms * (1.0 - topo.params.workload.service_jitter);
                if r.served > 0 {
                    prop_assert!(r.latency_ms >= min_service, "{}: {} ms < {min_service}", r.node, r.latency_ms);
                }
                let cap = slots as f64 * 1e3 / min_service;
                prop_assert!(r.req_per_s <= cap, "{}: {} req/s above {cap}", r.node, r.req_per_s);
            }
        }

        /// Node characteristics: a generated topology has the seed's shape —
        /// every edge on two distinct cores, cores in a ring, every core and
        /// cloud named once, every group's members distinct.
        #[test]
        fn node_characteristics(edges in 2u32..40, cores in 3u32..10, clouds in 1u32..4, seed in any::<u64>()) {
            let p = generate(edges, cores, clouds, seed).unwrap();
            let topo = p.compile().unwrap();
            prop_assert_eq!(topo.len() as u32, edges + cores + clouds);
            for (i, spec) in p.nodes.iter().enumerate() {
                let nbs = &topo.neighbours[i];
                match spec.layer {
                    agora_telecom::topology::Layer::Edge => {
                        let cores: Vec<_> = nbs.iter().filter(|n| !n.backup).collect();
                        prop_assert_eq!(cores.len(), 2, "{} has {} core links", spec.name, cores.len());
                    }
                    agora_telecom::topology::Layer::Core => {
                        prop_assert_eq!(nbs.iter().filter(|n| n.backup).count(), 2, "{} is not in the ring", spec.name);
                    }
                    agora_telecom::topology::Layer::Cloud => prop_assert!(!nbs.is_empty()),
                }
            }
            for g in &topo.groups {
                let mut m = g.members.clone();
                m.dedup();
                prop_assert_eq!(m.len(), g.members.len());
            }
        }
    }
}

mod communication {
    use super::*;
    use agora_telecom::route::{accept, dijkstra, Health, LinkState};

    fn random_graph(n: usize, edges: &[(usize, usize, u8)]) -> Vec<Vec<(NodeId, f64)>> {
        let mut adj = vec![Vec::new(); n];
        for &(a, b, w) in edges {
            let (a, b) = (a % n, b % n);
            if a != b {
                adj[a].push((NodeId(b as u32), 1.0 + w as f64));
                adj[b].push((NodeId(a as u32), 1.0 + w as f64));
            }
        }
        adj
    }

    proptest! {
        /// Latency minimisation: routes are shortest paths (Floyd–Warshall
        /// agrees with every distance, and following first hops reaches the
        /// destination at that cost).
        #[test]
        fn latency_minimization(n in 2usize..9, edges in prop::collection::vec((0usize..9, 0usize..9, 0u8..20), 0..25)) {
            let adj = random_graph(n, &edges);
            let mut fw = vec![vec![f64::INFINITY; n]; n];
            for a in 0..n {
                fw[a][a] = 0.0;
                for &(b, w) in &adj[a] {
                    fw[a][b.index()] = fw[a][b.index()].min(w);
                }
            }
            for k in 0..n { for i in 0..n { for j in 0..n {
                if fw[i][k] + fw[k][j] < fw[i][j] { fw[i][j] = fw[i][k] + fw[k][j]; }
            }}}
            for (s, row) in fw.iter().enumerate() {
                let (dist, _) = dijkstra(NodeId(s as u32), n, |a| adj[a.index()].clone().into_iter());
                prop_assert_eq!(&dist, row);
                for t in 0..n {
                    if t == s || !dist[t].is_finite() { continue; }
                    // Walk the first hops, each node routing on its own table.
                    let (mut at, mut cost, mut steps) = (s, 0.0, 0);
                    while at != t && steps <= n {
                        let (_, hop) = dijkstra(NodeId(at as u32), n, |a| adj[a.index()].clone().into_iter());
                        let next = hop[t].unwrap().index();
                        cost += adj[at].iter().filter(|e| e.0.index() == next).map(|e| e.1).fold(f64::INFINITY, f64::min);
                        at = next;
                        steps += 1;
                    }
                    prop_assert_eq!(at, t);
                    prop_assert!((cost - dist[t]).abs() < 1e-9);
                }
            }
        }

        /// Event ordering: link-state updates arriving in any order leave the
        /// same newest state per origin.
        #[test]
        fn event_ordering(updates in prop::collection::vec((0u32..4, 1u64..50, any::<bool>()), 1..30), shuffle in any::<u64>()) {
            let ls: Vec<LinkState> = updates.iter().map(|&(o, seq, up)| LinkState {
                origin: NodeId(o), seq, links: vec![(NodeId((o + 1) % 4), if up { Health::Up } else { Health::Down })],
            }).collect();
            let mut in_order = ls.clone();
            in_order.sort_by_key(|l| l.seq);
            let mut shuffled = ls.clone();
            let mut x = shuffle | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (mut a, mut b) = (vec![None; 4], vec![None; 4]);
            for l in in_order { accept(&mut a, l); }
            for l in shuffled { accept(&mut b, l); }
            // Equal seqs from one origin may carry different links: the first
            // to arrive wins, so compare the seqs (the order of state).
            let seqs = |db: &Vec<Option<LinkState>>| db.iter().map(|s| s.as_ref().map(|s| s.seq)).collect::<Vec<_>>();
            prop_assert_eq!(seqs(&a), seqs(&b));
        }
    }

    proptest! {
        #![proptest_config(sim_cases())]

        /// Causal ordering: the `load_balancer` group (causal) applies its
        /// writes in causal order at every member — the simulator checks
        /// each member's log after every event — while messages are lost and
        /// a member (Edge1) crashes and comes back as new: lost writes are
        /// resent, the restarted member catches up by state transfer, and at
        /// the end every member has applied nearly all the group's writes.
        #[test]
        fn causal_ordering_survives_loss_and_a_restart(seed in 0u64..1000, loss in 0.01f64..0.1) {
            let mut sc = calm(10);
            sc.network.loss = loss;
            sc.push_fault(fault(FaultKind::Crash, 2_000, 0));
            sc.push_fault(fault(FaultKind::Recover, 4_000, 0));
            let sim = run(&sc, seed);
            let group = |id: u32| {
                let st = sim.node(NodeId(id)).status();
                st["active_active"]["causal"].as_array().unwrap().iter().find(|g| g["service"] == "load_balancer").cloned().unwrap()
            };
            // Core2, Core1 and Edge1 are its members.
            let logs: Vec<serde_json::Value> = [3, 2, 0].map(group).to_vec();
            let total = |l: &serde_json::Value| l["clock"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).sum::<u64>();
            let most = logs.iter().map(total).max().unwrap();
            prop_assert!(most > 100, "the group wrote: {logs:?}");
            for l in &logs {
                prop_assert!(total(l) * 100 >= most * 95, "a member fell behind: {logs:?}");
            }
            prop_assert!(logs[2]["transferred"].as_u64().unwrap() > 0, "the restarted member took the state: {logs:?}");
            prop_assert!(sim.stats().counter(node::counters::CAUSAL_RESENT) > 0, "lost writes were resent");
        }

        /// RPC consistency: every request ends at most once, and every
        /// success carries a value clients wrote to its key.
        #[test]
        fn rpc_consistency(seed in 0u64..1000, loss in 0.0f64..0.1) {
            let mut sc = calm(5);
            sc.network.loss = loss;
            let sim = run(&sc, seed);
            let mut seen = std::collections::BTreeSet::new();
            for o in sim.outputs() {
                if let Output::Client(client::Output::Done { id, .. }) = o.output {
                    prop_assert!(seen.insert((o.node.0, id)), "request {id} at {:?} ended twice", o.node);
                }
            }
            prop_assert!(!seen.is_empty());
            prop_assert_eq!(history::wrong_answers(&history::requests(&sim).0), 0);
        }

        /// Completion bounds: a request ends within its deadline (plus the
        /// one timeout a last attempt may still be waiting), after no more
        /// attempts than allowed.
        #[test]
        fn completion_bounds(seed in 0u64..1000, loss in 0.0f64..0.2) {
            let mut sc = calm(5);
            sc.network.loss = loss;
            let cfg = sc.params.rpc.clone();
            let sim = run(&sc, seed);
            let bound = (cfg.deadline + cfg.timeout).as_micros() as u64;
            for o in sim.outputs() {
                if let Output::Client(client::Output::Done { latency_us, attempts, .. }) = o.output {
                    prop_assert!(latency_us <= bound, "{latency_us} µs > {bound}");
                    prop_assert!(attempts as u32 <= cfg.attempts);
                }
            }
        }

        /// Backup paths carry traffic only when needed: with every node up,
        /// no link-state route leaves a node over a backup link.
        #[test]
        fn backup_paths_only_when_needed(seed in 0u64..1000) {
            let mut sc = calm(2);
            sc.params.workload.rate = 0.0;
            let sim = run(&sc, seed);
            let topo = sc.params.compile().unwrap();
            for id in sim.nodes().ids() {
                for (t, hop) in sim.node(id).next_hops().iter().enumerate() {
                    if let Some(h) = hop {
                        let link = topo.neighbours[id.index()].iter().find(|n| n.node == *h).unwrap();
                        prop_assert!(!link.backup, "{} routes to {} over the backup link to {}", topo.name(id), topo.name(NodeId(t as u32)), topo.name(*h));
                    }
                }
            }
        }
    }
}

mod fault_tolerance {
    use super::*;

    fn first_suspicion(sim: &Sim<Node>, victim: u32, after: Duration, how: Option<Detection>) -> Option<f64> {
        let t0 = Time::ZERO + after;
        sim.outputs().iter().find_map(|o| match o.output {
            Output::Control(control::Output::Suspect { node, how: h })
                if node.0 == victim && o.at >= t0 && how.is_none_or(|w| w == h) =>
            {
                Some((o.at - t0).as_secs_f64())
            }
            _ => None,
        })
    }

    proptest! {
        #![proptest_config(sim_cases())]

        /// Crash: a neighbour's phi-accrual detector flags any crashed node
        /// within a second.
        #[test]
        fn crash_detected(seed in 0u64..1000, victim in 0u32..5, at_ms in 2000u64..4000) {
            let mut sc = calm(6);
            sc.params.workload.rate = 0.0;
            sc.push_fault(fault(FaultKind::Crash, at_ms, victim));
            let sim = run(&sc, seed);
            let t = first_suspicion(&sim, victim, Duration::from_millis(at_ms), Some(Detection::Crash));
            prop_assert!(t.is_some_and(|t| t <= 1.0), "detected after {t:?}");
        }

        /// Omission: a node dropping half its messages is found by its
        /// neighbours' loss windows within ten seconds.
        #[test]
        fn omission_detected(seed in 0u64..1000, victim in 0u32..5) {
            let mut sc = calm(14);
            sc.params.workload.rate = 0.0;
            sc.push_fault(FaultSpec { rate: Some(0.5), ..fault(FaultKind::Omission, 2000, victim) });
            let sim = run(&sc, seed);
            let t = first_suspicion(&sim, victim, Duration::from_secs(2), Some(Detection::Omission));
            prop_assert!(t.is_some_and(|t| t <= 10.0), "detected after {t:?}");
        }

        /// Byzantine: with one member of three lying, the n-way group never
        /// accepts a wrong answer, and the liar is outvoted and suspected.
        #[test]
        fn byzantine_outvoted(seed in 0u64..1000, equivocate in any::<bool>()) {
            let mut sc = calm(6);
            sc.params.workload.mix = [("transactions".to_string(), 1.0)].into_iter().collect();
            let b = if equivocate { node::Behaviour::Equivocate } else { node::Behaviour::Corrupt };
            sc.push_input(Duration::from_secs(1), 2, &node::Input::byzantine(b)).unwrap();
            let sim = run(&sc, seed);
            let (reqs, _) = history::requests(&sim);
            prop_assert!(reqs.iter().filter(|r| r.end.as_ref().is_some_and(|e| e.reply.is_some())).count() > 100);
            prop_assert_eq!(history::wrong_answers(&reqs), 0);
            prop_assert!(first_suspicion(&sim, 2, Duration::from_secs(1), Some(Detection::Byzantine)).is_some());
        }

        /// Partition: the minority side isolates itself, the majority does not.
        #[test]
        fn partition_minority_isolates(seed in 0u64..1000, cut in prop::sample::subsequence(vec![0u32, 1, 2, 3, 4], 1..=2)) {
            let mut sc = calm(6);
            sc.params.workload.rate = 0.0;
            sc.push_fault(FaultSpec { kind: FaultKind::Partition, at: Some(Duration::from_secs(2)), groups: Some(vec![cut.clone()]), ..FaultSpec::default() });
            let sim = run(&sc, seed);
            // Expected: a node is isolated when the nodes it can still reach
            // over links within its side are at most half of all.
            let topo = sc.params.compile().unwrap();
            let side = |n: NodeId| cut.contains(&n.0);
            for id in sim.nodes().ids() {
                let mut seen = vec![id];
                let mut i = 0;
                while i < seen.len() {
                    for nb in &topo.neighbours[seen[i].index()] {
                        if side(nb.node) == side(id) && !seen.contains(&nb.node) {
                            seen.push(nb.node);
                        }
                    }
                    i += 1;
                }
                let minority = seen.len() * 2 <= topo.len();
                prop_assert_eq!(sim.node(id).is_isolated(), minority, "node {} reaches {:?}", id.0, seen);
                if cut.len() * 2 < topo.len() {
                    prop_assert!(!cut.contains(&id.0) || minority, "the smaller side is a minority");
                }
            }
        }

        /// No fault, no suspicion: a minute of a loss-free network passes
        /// without any node suspecting another.
        #[test]
        fn no_false_suspicion_without_faults(seed in 0u64..1000) {
            let mut sc = calm(60);
            sc.network.loss = 0.0;
            sc.params.workload.rate = 20.0;
            let sim = run(&sc, seed);
            let s: Vec<_> = sim.outputs().iter().filter(|o| matches!(o.output, Output::Control(control::Output::Suspect { .. }))).collect();
            prop_assert!(s.is_empty(), "{s:?}");
        }
    }
}

mod optimisation {
    use super::*;

    proptest! {
        #![proptest_config(sim_cases())]

        /// CPU constraint: measured utilization stays in [0, 100] % however
        /// hard the nodes are driven (the simulator also checks busy ≤ slots
        /// after every event).
        #[test]
        fn cpu_within_bounds(seed in 0u64..1000, in_flight in 1u32..600) {
            let mut sc = calm(3);
            sc.params.workload.closed_loop = in_flight;
            let sim = run(&sc, seed);
            let o = outcome(&sc.params.compile().unwrap(), &sim);
            for n in &o.nodes {
                prop_assert!((0.0..=100.0).contains(&n.cpu_percent), "{}: {}", n.node, n.cpu_percent);
            }
        }

        /// Memory constraint: queues never pass their limit; past it a node
        /// sheds load instead of growing.
        #[test]
        fn memory_within_bounds(seed in 0u64..1000, limit in 1u32..20) {
            let mut sc = calm(3);
            sc.params.workload.closed_loop = 300;
            for n in &mut sc.params.nodes {
                n.slots = 2;
                n.queue_limit = limit;
            }
            let sim = run(&sc, seed);
            let o = outcome(&sc.params.compile().unwrap(), &sim);
            prop_assert!(o.nodes.iter().all(|n| n.max_queue <= limit as u64));
            prop_assert!(o.nodes.iter().any(|n| n.shed > 0), "600 in flight over 2-slot nodes must shed");
        }

        /// Adaptation: when a replica becomes slow, the Peak-EWMA balancer
        /// sends it a smaller share than before.
        #[test]
        fn adaptation(seed in any::<u64>(), slow_ms in 50.0f64..500.0) {
            use agora_telecom::balance::{Balancer, Strategy};
            use rand::SeedableRng;
            let mut b = Balancer::new(Strategy::P2cPeakEwma, &[(1.0, 10.0, 1000.0); 3], 1);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let c = [NodeId(0), NodeId(1), NodeId(2)];
            let share = |b: &mut Balancer, rng: &mut rand_chacha::ChaCha8Rng| (0..300).filter(|_| b.pick(0, &c, rng) == Some(NodeId(0))).count();
            let t = Time::from_nanos(1_000_000_000);
            for n in c { b.finished(n, 10.0, t, None); }
            let before = share(&mut b, &mut rng);
            b.finished(NodeId(0), slow_ms, t, None);
            let after = share(&mut b, &mut rng);
            prop_assert!(after < before, "{before} → {after}");
        }
    }
}

mod load_balancing {
    use super::*;
    use agora_telecom::balance::{Balancer, Load, Strategy};
    use rand::SeedableRng;

    fn ids(n: u32) -> Vec<NodeId> {
        (0..n).map(NodeId).collect()
    }

    proptest! {
        /// CPU distribution: round robin over equal replicas spreads any
        /// number of requests to within one of each other.
        #[test]
        fn cpu_distribution(n in 1u32..8, requests in 0usize..200) {
            let mut b = Balancer::new(Strategy::RoundRobin, &vec![(1.0, 10.0, 1000.0); n as usize], 1);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let mut count = vec![0usize; n as usize];
            for _ in 0..requests { count[b.pick(0, &ids(n), &mut rng).unwrap().index()] += 1; }
            prop_assert!(count.iter().max().unwrap() - count.iter().min().unwrap() <= 1, "{count:?}");
        }

        /// Weighted distribution: over whole cycles, weighted round robin
        /// gives each replica exactly its weight's share.
        #[test]
        fn weighted_distribution(weights in prop::collection::vec(1u32..6, 1..6), cycles in 1usize..5) {
            let spec: Vec<_> = weights.iter().map(|&w| (w as f64, 10.0, 1000.0)).collect();
            let mut b = Balancer::new(Strategy::WeightedRoundRobin, &spec, 1);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let total: u32 = weights.iter().sum();
            let mut count = vec![0u32; weights.len()];
            for _ in 0..cycles * total as usize { count[b.pick(0, &ids(weights.len() as u32), &mut rng).unwrap().index()] += 1; }
            for (c, w) in count.iter().zip(&weights) { prop_assert_eq!(*c, w * cycles as u32); }
        }

        /// Memory/connection distribution: least connections never picks a
        /// replica with more requests pending than another candidate.
        #[test]
        fn least_connections_distribution(pending in prop::collection::vec(0u32..10, 2..6)) {
            let n = pending.len() as u32;
            let mut b = Balancer::new(Strategy::LeastConnections, &vec![(1.0, 10.0, 1000.0); n as usize], 1);
            for (i, &p) in pending.iter().enumerate() { for _ in 0..p { b.sent(NodeId(i as u32)); } }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let pick = b.pick(0, &ids(n), &mut rng).unwrap();
            prop_assert_eq!(pending[pick.index()], *pending.iter().min().unwrap());
        }

        /// Transaction distribution: the resource-aware score picks the
        /// replica with the most free capacity among equals in performance.
        #[test]
        fn transaction_distribution(loads in prop::collection::vec((0.0f32..1.0, 0.0f32..1.0, 0.0f32..1.0), 2..6)) {
            let n = loads.len() as u32;
            let mut b = Balancer::new(Strategy::ResourceAware, &vec![(1.0, 10.0, 1000.0); n as usize], 1);
            for (i, &(cpu, memory, transactions)) in loads.iter().enumerate() {
                b.finished(NodeId(i as u32), 10.0, Time::ZERO, Some(Load { cpu, memory, transactions }));
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let pick = b.pick(0, &ids(n), &mut rng).unwrap();
            let cap = |l: &(f32, f32, f32)| agora_telecom::select::capacity_score(l.0 as f64, l.1 as f64, l.2 as f64);
            let best = loads.iter().map(cap).fold(f64::MIN, f64::max);
            prop_assert!((cap(&loads[pick.index()]) - best).abs() < 1e-9);
        }
    }
}
