//! The seed's `RedundancyFailoverManager` and its analyses as functions:
//! `detect_deadlock`, `rank_bottlenecks`, `assess_risk`, `select_node` —
//! the same code as `agora telecom deadlock|rank|risk|select`.

use crate::simulation::{node_index, run, LoadBalancerSimulation};
use crate::types::{
    BottleneckAnalysis, FailoverEvent, MultiNodeFailureScenario, RedundancyStrategy, RiskAssessment, SimulationState,
};
use crate::{from_py, to_py};
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use agora_telecom::topology::Params;
use agora_telecom::{deadlock, parse_json, rank, risk, select};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// An analysis' input error (it names the entry) as a `ValueError`.
fn bad(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Parses `json` as an analysis' input, naming the entry that is wrong.
fn input<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> PyResult<T> {
    parse_json(&json.to_string()).map_err(bad)
}

/// How long a run goes on after the failures a manager injects.
const WATCH: Duration = Duration::from_secs(10);
/// The earliest a manager injects a failure: the detectors need a few
/// heartbeats from a node before they can miss them.
const WARMED_UP: Duration = Duration::from_secs(2);

/// Crashes `nodes` at `at` in `sc`, runs it to `until`; the outcome as JSON.
fn crash_and_run(
    py: Python<'_>,
    mut sc: Scenario<Params>,
    nodes: &[u32],
    at: Duration,
    until: Duration,
    step: f64,
) -> PyResult<serde_json::Value> {
    sc.until = until;
    for &n in nodes {
        sc.push_fault(FaultSpec { kind: FaultKind::Crash, at: Some(at), node: Some(n), ..FaultSpec::default() });
    }
    Ok(py.allow_threads(|| run(&sc, step))?.0)
}

/// The seed's `RedundancyFailoverManager`.
#[pyclass(module = "agora")]
pub struct RedundancyFailoverManager {}

#[pymethods]
impl RedundancyFailoverManager {
    #[new]
    fn new() -> Self {
        RedundancyFailoverManager {}
    }

    /// `risk_assessments`: `RiskAssessment`s (or dicts of their fields).
    /// Returns node → `RedundancyStrategy`.
    fn configure_redundancy_from_risk_assessment(
        &self,
        py: Python<'_>,
        risk_assessments: &Bound<'_, PyAny>,
    ) -> PyResult<BTreeMap<String, RedundancyStrategy>> {
        let nodes = RiskAssessment::list_json(py, risk_assessments)?;
        let a = risk::assess(&input(serde_json::json!({ "nodes": nodes }))?).map_err(bad)?;
        Ok(a.nodes.iter().map(|n| (n.node.clone(), n.strategy.into())).collect())
    }

    /// Performs a failover: the run `state` came from is replayed to the
    /// state's time (the simulator is deterministic), `failed_node` crashes
    /// there (2 s in at the earliest) and the run goes on for `window`
    /// seconds. Returns the first failover of a client away from the node,
    /// or None if no client had to (it served no group a client used).
    #[pyo3(signature = (failed_node, state, window=10.0))]
    fn implement_automated_failover(
        &self,
        py: Python<'_>,
        failed_node: &str,
        state: &Bound<'_, PyAny>,
        window: f64,
    ) -> PyResult<Option<FailoverEvent>> {
        let state = state.downcast::<SimulationState>().map_err(|_| {
            PyValueError::new_err("state: pass a SimulationState (sim.get_current_state()); the failover is performed by running on from it")
        })?;
        let state = state.get();
        if !(window.is_finite() && window > 0.0 && window <= 3600.0) {
            return Err(PyValueError::new_err(format!("window: {window} is not a number of seconds in (0, 3600]")));
        }
        let sc = state.scenario.clone().expect("a state carries its scenario");
        let node = node_index(&sc, failed_node)?;
        let at = Duration::from_secs_f64(state.json["time_s"].as_f64().unwrap_or(0.0)).max(WARMED_UP);
        let outcome = crash_and_run(py, sc, &[node], at, at + Duration::from_secs_f64(window), state.time_step)?;
        let failovers: Vec<FailoverEvent> = serde_json::from_value(outcome["failovers"].clone()).map_err(bad)?;
        Ok(failovers.into_iter().find(|f| f.from_node == failed_node && f.at_s >= at.as_secs_f64()))
    }

    /// Crashes the `node_count` most critical nodes at once and reports the
    /// failures, their detection and the failovers, which follow
    /// criticality order. From a `LoadBalancerSimulation`: its scenario
    /// without other faults, 2 s in; from a `SimulationState`: its run,
    /// replayed to its time and going on for 10 s.
    fn simulate_multi_node_failure(
        &self,
        py: Python<'_>,
        node_count: usize,
        state: &Bound<'_, PyAny>,
    ) -> PyResult<MultiNodeFailureScenario> {
        let (sc, at, until, step) = if let Ok(sim) = state.downcast::<LoadBalancerSimulation>() {
            let sim = sim.borrow();
            let mut sc = sim.scenario();
            sc.fault.clear();
            sc.input.clear();
            let until = sc.until;
            (sc, WARMED_UP.min(until / 2), until, sim.config.time_step)
        } else if let Ok(state) = state.downcast::<SimulationState>() {
            let state = state.get();
            let at = Duration::from_secs_f64(state.json["time_s"].as_f64().unwrap_or(0.0)).max(WARMED_UP);
            (state.scenario.clone().expect("a state carries its scenario"), at, at + WATCH, state.time_step)
        } else {
            return Err(PyValueError::new_err("state: pass a LoadBalancerSimulation or a SimulationState"));
        };
        let n = sc.params.nodes.len();
        if node_count == 0 || node_count > n {
            return Err(PyValueError::new_err(format!("node_count: {node_count} is not between 1 and {n}")));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| sc.params.nodes[b].criticality.total_cmp(&sc.params.nodes[a].criticality));
        let failed: Vec<u32> = order[..node_count].iter().map(|&i| i as u32).collect();
        let names: Vec<String> = failed.iter().map(|&i| sc.params.nodes[i as usize].name.clone()).collect();
        let outcome = crash_and_run(py, sc, &failed, at, until, step)?;
        Ok(MultiNodeFailureScenario {
            json: serde_json::json!({
                "failed": names,
                "failures": outcome["failures"],
                "failovers": outcome["failovers"],
                "requests": outcome["requests"],
            }),
        })
    }
}

/// The seed's `detect_deadlock`: `wait_for_graph` maps a transaction to
/// those it waits for; returns the deadlocked sets, one per cycle found
/// while aborting the oldest (first listed) transaction of each.
#[pyfunction]
pub fn detect_deadlock(wait_for_graph: BTreeMap<String, Vec<String>>) -> PyResult<Vec<HashSet<String>>> {
    // Transactions in the order they first appear, keys before values.
    let mut ids: Vec<&String> = wait_for_graph.keys().collect();
    for waits in wait_for_graph.values() {
        for w in waits {
            if !ids.contains(&w) {
                ids.push(w);
            }
        }
    }
    let graph = deadlock::Graph {
        transactions: ids
            .iter()
            .enumerate()
            .map(|(i, id)| deadlock::Transaction { id: id.to_string(), start: i as f64, priority: 0.0, work: 0.0 })
            .collect(),
        waits_for: wait_for_graph
            .iter()
            .flat_map(|(waiter, holders)| holders.iter().map(move |h| [waiter.clone(), h.clone()]))
            .collect(),
    };
    let r = deadlock::resolve(&graph, deadlock::Victim::Oldest).map_err(bad)?;
    Ok(r.cycles.into_iter().map(|c| c.into_iter().collect()).collect())
}

/// The seed's bottleneck ranking of `metrics` (dicts with `id`,
/// `latency_ms`, `throughput_mbps`, `cpu_percent`, `memory_gb`,
/// `tx_per_s`, `lock_contention_percent`), highest score first. `reading`:
/// "seed" (more throughput scores higher, as the seed writes it) or
/// "corrected".
#[pyfunction]
#[pyo3(signature = (metrics, reading="seed"))]
pub fn rank_bottlenecks(
    py: Python<'_>,
    metrics: &Bound<'_, PyAny>,
    reading: &str,
) -> PyResult<Vec<BottleneckAnalysis>> {
    let reading = match reading {
        "seed" => rank::Reading::Seed,
        "corrected" => rank::Reading::Corrected,
        _ => return Err(PyValueError::new_err(format!("reading: {reading:?} is not \"seed\" or \"corrected\""))),
    };
    let i: rank::Input = input(serde_json::json!({ "nodes": from_py(py, metrics)? }))?;
    let r = rank::rank(&i, reading).map_err(bad)?;
    Ok(r.ranking.into_iter().map(|r| BottleneckAnalysis { node: r.node, score: r.score }).collect())
}

/// The seed's risk assessment: each node's risk score, category and
/// redundancy strategy, and the failover order.
#[pyfunction]
pub fn assess_risk(py: Python<'_>, risk_assessments: &Bound<'_, PyAny>) -> PyResult<PyObject> {
    let nodes = RiskAssessment::list_json(py, risk_assessments)?;
    let a = risk::assess(&input(serde_json::json!({ "nodes": nodes }))?).map_err(bad)?;
    to_py(py, &serde_json::to_value(a).expect("plain data"))
}

/// The seed's node selection for `request` (`priority`, `cpu`, `memory`,
/// `transactions`) among `nodes`: each node's capacity, performance and
/// total score, and the one selected (None when none has room).
#[pyfunction]
pub fn select_node(py: Python<'_>, request: &Bound<'_, PyAny>, nodes: &Bound<'_, PyAny>) -> PyResult<PyObject> {
    let i: select::Input =
        input(serde_json::json!({ "request": from_py(py, request)?, "nodes": from_py(py, nodes)? }))?;
    let s = select::select(&i).map_err(bad)?;
    to_py(py, &serde_json::to_value(s).expect("plain data"))
}
