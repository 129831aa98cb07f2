//! Measurements over many simulated runs of the telecom system:
//!
//! * [`detector`]: the phi-accrual detector's detection time after a crash
//!   (p50/p99 over seeds) and its false suspicions per node-hour with no
//!   fault at all, for each threshold, under the seed's RTTs, the links'
//!   jitter and a chosen message loss;
//! * [`balance`]: five back-ends behind one client, all healthy, one ten
//!   times slower, or one dead, for each balancing strategy: p50/p99
//!   latency, success, and how many attempts each request cost.

use super::outcome;
use crate::registry::{self, Runnable};
use crate::stats::quantile;
use agora_core::NodeId;
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use agora_telecom::balance::Strategy;
use agora_telecom::node::{control, Detection, Node, Output};
use agora_telecom::topology::{Consistency, GroupSpec, Layer, LinkSpec, NodeSpec, Params, Redundancy};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Duration;

/// The default scenario, embedded: `agora` runs it with no files around.
pub const DEFAULT_SCENARIO: &str = include_str!("../../../../scenarios/edge-core-cloud.toml");

/// The embedded default scenario, parsed and checked.
pub fn default_scenario() -> Scenario<Params> {
    registry::load::<Node>("edge-core-cloud.toml (embedded)", DEFAULT_SCENARIO).expect("the embedded scenario is valid")
}

/// A generated topology (`agora telecom generate`: `edges`, `cores` and
/// `clouds` nodes of the default's shape) as a scenario without faults,
/// running for `until` with 1 % loss on every link.
pub fn generated_scenario(
    edges: u32,
    cores: u32,
    clouds: u32,
    seed: u64,
    until: Duration,
) -> Result<Scenario<Params>, String> {
    let params = agora_telecom::topology::generate(edges, cores, clouds, seed)?;
    let mut sc = Scenario::new("telecom", params.nodes.len() as u32, params);
    sc.name = format!("generated edge–core–cloud topology: {edges} edges, {cores} cores, {clouds} clouds");
    sc.seed = seed;
    sc.until = until;
    sc.network.loss = 0.01;
    Ok(sc)
}

/// The default topology for `secs` seconds, no faults or inputs, every
/// request to `service` (the tests' starting point).
pub fn only(service: &str, secs: u64) -> Scenario<Params> {
    let mut sc = default_scenario();
    sc.fault.clear();
    sc.input.clear();
    sc.until = Duration::from_secs(secs);
    sc.params.workload.mix = [(service.to_string(), 1.0)].into_iter().collect();
    sc
}

/// `sc` with no faults, inputs or workload: only the detectors run.
fn quiet(mut sc: Scenario<Params>, loss: f64, threshold: f64) -> Scenario<Params> {
    sc.fault.clear();
    sc.input.clear();
    sc.params.workload.rate = 0.0;
    sc.params.detector.threshold = threshold;
    sc.network.loss = loss;
    sc
}

#[derive(Clone, Debug)]
pub struct DetectorSpec {
    pub thresholds: Vec<f64>,
    /// Crash runs per threshold.
    pub seeds: u64,
    pub loss: f64,
    /// Fault-free simulated hours per threshold, for false suspicions.
    pub hours: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DetectorRow {
    pub threshold: f64,
    pub loss: f64,
    pub crashes: u64,
    /// Crashes no neighbour's detector flagged within 10 s.
    pub missed: u64,
    pub detection_p50_s: f64,
    pub detection_p99_s: f64,
    pub detection_max_s: f64,
    /// Suspicions of live nodes, summed over every watching neighbour.
    pub false_suspicions: u64,
    pub node_hours: f64,
    pub false_per_node_hour: f64,
}

/// The sweep; `progress` is called after every run.
pub fn detector(spec: &DetectorSpec, progress: &mut dyn FnMut()) -> Result<Vec<DetectorRow>, String> {
    let base = default_scenario();
    let n = base.nodes;
    let mut rows = Vec::new();
    for &threshold in &spec.thresholds {
        let mut times = Vec::new();
        let mut missed = 0;
        for seed in 0..spec.seeds {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
            let victim = rng.random_range(0..n);
            // After the detectors have warmed up, at a random phase of the heartbeat.
            let at = Duration::from_secs(5) + Duration::from_secs_f64(rng.random::<f64>());
            let mut sc = quiet(default_scenario(), spec.loss, threshold);
            sc.until = at + Duration::from_secs(10);
            sc.push_fault(FaultSpec {
                kind: FaultKind::Crash,
                at: Some(at),
                node: Some(victim),
                ..FaultSpec::default()
            });
            registry::check::<Node>(&sc).map_err(|e| e.to_string())?;
            let mut sim = registry::build::<Node>(&sc, seed, true);
            sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| e.to_string())?;
            let crash = agora_core::Time::ZERO + at;
            let found = sim.outputs().iter().find(|o| {
                o.at >= crash
                    && matches!(o.output, Output::Control(control::Output::Suspect { node, how: Detection::Crash }) if node == NodeId(victim))
            });
            match found {
                Some(o) => times.push((o.at - crash).as_secs_f64()),
                None => missed += 1,
            }
            progress();
        }
        let mut sc = quiet(default_scenario(), spec.loss, threshold);
        sc.until = Duration::from_secs_f64(spec.hours * 3600.0);
        let mut sim = registry::build::<Node>(&sc, 1_000 + threshold.to_bits() % 1_000, true);
        sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| e.to_string())?;
        let false_suspicions = sim
            .outputs()
            .iter()
            .filter(|o| matches!(o.output, Output::Control(control::Output::Suspect { how: Detection::Crash, .. })))
            .count() as u64;
        progress();
        let node_hours = n as f64 * spec.hours;
        rows.push(DetectorRow {
            threshold,
            loss: spec.loss,
            crashes: spec.seeds,
            missed,
            detection_p50_s: quantile(&mut times, 0.5),
            detection_p99_s: quantile(&mut times, 0.99),
            detection_max_s: quantile(&mut times, 1.0),
            false_suspicions,
            node_hours,
            false_per_node_hour: false_suspicions as f64 / node_hours,
        });
    }
    Ok(rows)
}

/// The three situations of the balancing measurement.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    Healthy,
    OneSlow,
    OneDead,
}

#[derive(Clone, Debug)]
pub struct BalanceSpec {
    pub strategies: Vec<Strategy>,
    pub seeds: u64,
    /// Requests per second from the client.
    pub rate: f64,
    pub secs: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BalanceRow {
    pub case: Case,
    pub strategy: Strategy,
    /// Requests that ended (answered or failed) within the runs.
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// p99 over the same strategy's all-healthy p99.
    pub p99_over_healthy: f64,
    pub success_ratio: f64,
    /// Attempts sent per request: 1 without retries.
    pub attempts_per_request: f64,
}

/// One client in front of five back-ends (10 ms service, 1 ms RTT), one
/// active-active group.
pub fn five_backends(strategy: Strategy, rate: f64, case: Case) -> Scenario<Params> {
    let spec = |name: String, layer| NodeSpec {
        name,
        layer,
        latency_ms: 10.0,
        throughput_mbps: 1000.0,
        cpu_percent: 0.0,
        memory_gb: 8.0,
        tx_per_s: 100.0,
        lock_contention_percent: 0.0,
        failure_mode: agora_telecom::risk::FailureMode::Crash,
        services: Vec::new(),
        slots: 100,
        queue_limit: 1000,
        slow: 1.0,
        criticality: 0.5,
    };
    let mut nodes = vec![spec("Client".into(), Layer::Edge)];
    nodes.extend((1..=5).map(|i| spec(format!("B{i}"), Layer::Core)));
    if case == Case::OneSlow {
        nodes[5].slow = 10.0;
    }
    let links =
        (1..=5).map(|i| LinkSpec { a: "Client".into(), b: format!("B{i}"), rtt_ms: 1.0, backup: false }).collect();
    let group = GroupSpec {
        service: "service".into(),
        primary: "B1".into(),
        replicas: (2..=5).map(|i| format!("B{i}")).collect(),
        strategy: Redundancy::ActiveActive,
        consistency: Consistency::Eventual,
        factor: 1,
        sync: false,
        r: None,
        w: None,
    };
    let mut params = default_scenario().params;
    params.nodes = nodes;
    params.links = links;
    params.groups = vec![group];
    params.workload.clients = vec!["Client".into()];
    params.workload.mix.clear();
    params.workload.rate = rate;
    params.balancer = strategy;
    let mut sc = Scenario::new(Node::NAME, 6, params);
    if case == Case::OneDead {
        sc.push_fault(FaultSpec {
            kind: FaultKind::Crash,
            at: Some(Duration::from_secs(1)),
            node: Some(5),
            ..FaultSpec::default()
        });
    }
    sc
}

pub fn balance(spec: &BalanceSpec, progress: &mut dyn FnMut()) -> Result<Vec<BalanceRow>, String> {
    let mut rows: Vec<BalanceRow> = Vec::new();
    for case in [Case::Healthy, Case::OneSlow, Case::OneDead] {
        for &strategy in &spec.strategies {
            let mut sc = five_backends(strategy, spec.rate, case);
            sc.until = Duration::from_secs_f64(spec.secs);
            registry::check::<Node>(&sc).map_err(|e| e.to_string())?;
            let topo = sc.params.compile()?;
            let (mut latencies, mut sent, mut ok, mut attempts) = (Vec::new(), 0, 0, 0);
            for seed in 0..spec.seeds {
                let mut sim = registry::build::<Node>(&sc, seed, true);
                sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| e.to_string())?;
                let o = outcome(&topo, &sim);
                sent += o.requests.total.succeeded + o.requests.failed;
                ok += o.requests.total.succeeded;
                attempts += sim.stats().counter(agora_telecom::node::counters::ATTEMPTS);
                latencies.extend(super::answered_ms(&sim));
                progress();
            }
            let p99 = quantile(&mut latencies, 0.99);
            let healthy =
                rows.iter().find(|r| r.case == Case::Healthy && r.strategy == strategy).map_or(p99, |r| r.p99_ms);
            rows.push(BalanceRow {
                case,
                strategy,
                requests: sent,
                p50_ms: quantile(&mut latencies, 0.5),
                p99_ms: p99,
                p99_over_healthy: p99 / healthy,
                success_ratio: if sent == 0 { 1.0 } else { ok as f64 / sent as f64 },
                attempts_per_request: if sent == 0 { 0.0 } else { attempts as f64 / sent as f64 },
            });
        }
    }
    Ok(rows)
}

/// One node of the seed's performance table, reproduced.
#[derive(Clone, Debug, Serialize)]
pub struct TableRow {
    pub node: String,
    pub req_per_s: f64,
    pub avg_ms: f64,
    /// The seed's figure: 100 000 / latency_ms.
    pub seed_req_per_s: f64,
}

/// The seed's table in the closed-loop model that yields it: each node alone
/// serves its own client, which keeps 100 requests in flight; service time
/// is exactly the node's latency. Little's law then gives 100 / latency
/// requests per second — the seed's arithmetic, run rather than computed.
pub fn seed_table(secs: f64) -> Result<Vec<TableRow>, String> {
    let base = default_scenario().params;
    let mut rows = Vec::new();
    for spec in &base.nodes {
        let mut params = base.clone();
        params.nodes = vec![NodeSpec { slots: 100, slow: 1.0, ..spec.clone() }];
        params.links.clear();
        params.groups = vec![GroupSpec {
            service: "local".into(),
            primary: spec.name.clone(),
            replicas: Vec::new(),
            strategy: Redundancy::ActivePassive,
            consistency: Consistency::Eventual,
            factor: 1,
            sync: false,
            r: None,
            w: None,
        }];
        params.workload.clients = vec![spec.name.clone()];
        params.workload.mix.clear();
        params.workload.closed_loop = 100;
        params.workload.service_jitter = 0.0;
        let mut sc = Scenario::new(Node::NAME, 1, params);
        sc.until = Duration::from_secs_f64(secs);
        let (req_per_s, avg_ms) = closed_loop_run(&sc)?;
        rows.push(TableRow { node: spec.name.clone(), req_per_s, avg_ms, seed_req_per_s: 100_000.0 / spec.latency_ms });
    }
    Ok(rows)
}

/// Answered requests per second and their mean latency in ms.
fn closed_loop_run(sc: &Scenario<Params>) -> Result<(f64, f64), String> {
    registry::check::<Node>(sc).map_err(|e| e.to_string())?;
    let mut sim = registry::build::<Node>(sc, 0, true);
    sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| e.to_string())?;
    let o = outcome(&sc.params.compile()?, &sim);
    Ok((o.requests.total.succeeded as f64 / sc.until.as_secs_f64(), o.requests.mean_ms))
}

/// One configuration of the throughput/latency trade-off.
#[derive(Clone, Debug, Serialize)]
pub struct TradeOff {
    /// Requests each edge client keeps in flight.
    pub in_flight: u32,
    /// Service slots per node.
    pub slots: u32,
    pub req_per_s: f64,
    pub avg_ms: f64,
    /// No other configuration has at least this throughput at no more latency.
    pub on_frontier: bool,
}

/// The default topology, fault-free, under closed-loop load: every
/// combination of `in_flight` and `slots`, with the Pareto frontier marked.
pub fn trade_off(in_flight: &[u32], slots: &[u32], secs: f64) -> Result<Vec<TradeOff>, String> {
    let mut points = Vec::new();
    for &s in slots {
        for &n in in_flight {
            let mut sc = default_scenario();
            sc.fault.clear();
            sc.input.clear();
            sc.until = Duration::from_secs_f64(secs);
            sc.params.workload.closed_loop = n;
            for node in &mut sc.params.nodes {
                node.slots = s;
            }
            let (req_per_s, avg_ms) = closed_loop_run(&sc)?;
            points.push(TradeOff { in_flight: n, slots: s, req_per_s, avg_ms, on_frontier: false });
        }
    }
    let dominated = |p: &TradeOff, q: &TradeOff| {
        q.req_per_s >= p.req_per_s && q.avg_ms <= p.avg_ms && (q.req_per_s > p.req_per_s || q.avg_ms < p.avg_ms)
    };
    let frontier: Vec<bool> = points.iter().map(|p| !points.iter().any(|q| dominated(p, q))).collect();
    for (p, f) in points.iter_mut().zip(frontier) {
        p.on_frontier = f;
    }
    Ok(points)
}

/// What a per-strategy run issues: reads only, or writes only.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// One group of `strategy` measured alone: the default topology without
/// faults or loss, serving free (what is left is the replication path), its
/// groups replaced by one group `kv` on Core1 (primary), Core2 and Cloud1
/// — the same three members for every strategy, none of them a client;
/// quorum with R = W = 2 — and Edge1 and Edge2 each keeping `in_flight`
/// requests of `access` on it, from `warm_up` for `secs`.
pub fn strategy_scenario(
    strategy: Redundancy,
    access: Access,
    in_flight: u32,
    warm_up: Duration,
    secs: f64,
) -> Scenario<Params> {
    let mut sc = default_scenario();
    sc.fault.clear();
    sc.input.clear();
    sc.network.loss = 0.0;
    // No node turns Byzantine here: a strong group of three is then allowed.
    for n in &mut sc.params.nodes {
        n.failure_mode = agora_telecom::risk::FailureMode::Crash;
    }
    let consistency = match strategy {
        Redundancy::NWay => Consistency::Strong,
        Redundancy::ActiveActive => Consistency::Causal,
        _ => Consistency::Eventual,
    };
    let quorum = (strategy == Redundancy::Quorum).then_some(2);
    let g = GroupSpec {
        service: "kv".into(),
        primary: "Core1".into(),
        replicas: vec!["Core2".into(), "Cloud1".into()],
        strategy,
        consistency,
        factor: 3,
        sync: false,
        r: quorum,
        w: quorum,
    };
    sc.params.groups = vec![g];
    let w = &mut sc.params.workload;
    w.mix = [("kv".to_string(), 1.0)].into_iter().collect();
    w.ops = match access {
        Access::Read => agora_telecom::data::workload::OpMix { read: 1.0, write: 0.0, cas: 0.0, append: 0.0 },
        Access::Write => agora_telecom::data::workload::OpMix { read: 0.0, write: 1.0, cas: 0.0, append: 0.0 },
    };
    w.closed_loop = in_flight;
    w.service_scale = 0.0;
    w.start_after = warm_up;
    sc.until = warm_up + Duration::from_secs_f64(secs);
    sc
}

/// Requests answered per second over the measured time, latency quantiles
/// of the answered ones, and the requests that failed.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: u64,
    /// The failed requests by cause (see [`agora_telecom::node::Cause`]).
    pub failed_by_cause: std::collections::BTreeMap<String, u64>,
}

/// [`strategy_scenario`] in the simulator (seed 1).
pub fn strategy_sim(sc: &Scenario<Params>) -> Result<Measured, String> {
    registry::check::<Node>(sc).map_err(|e| e.to_string())?;
    let mut sim = registry::build::<Node>(sc, 1, true);
    sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| e.to_string())?;
    let mut ms = super::answered_ms(&sim);
    let t = outcome(&sc.params.compile()?, &sim).requests.total;
    let secs = (sc.until - sc.params.workload.start_after).as_secs_f64();
    Ok(Measured {
        req_per_s: ms.len() as f64 / secs,
        p50_ms: quantile(&mut ms, 0.5),
        p99_ms: quantile(&mut ms, 0.99),
        failed: t.failed_by_cause.values().sum(),
        failed_by_cause: t.failed_by_cause.iter().map(|(c, n)| (c.name().to_string(), *n)).collect(),
    })
}
