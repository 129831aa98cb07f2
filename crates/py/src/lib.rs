//! The telecom seed's Python API, with the seed's names, running Agora's
//! Rust simulator underneath:
//!
//! ```python
//! from agora import SimulationConfig, LoadBalancerSimulation, FailureInjector, RedundancyFailoverManager
//! sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=30.0))
//! sim.set_load_balancing_strategy("RESOURCE_AWARE")
//! FailureInjector(sim).inject_crash_failure("Core2", duration=5.0, at=10.0)
//! result = sim.run_simulation()          # the `outcome` of `agora sim --json`
//! state = sim.get_current_state()
//! ```
//!
//! The simulation is the default scenario (`scenarios/edge-core-cloud.toml`,
//! embedded). Where the seed's signatures leave a time open, the injector
//! takes `at=` (simulated seconds); `simulate_multi_node_failure` takes the
//! simulation rather than a state, since it runs one.

use agora_lab::registry;
use agora_lab::telecom::{experiments::default_scenario, outcome};
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use agora_telecom::balance::Strategy;
use agora_telecom::node::{Behaviour, Input, Node};
use agora_telecom::topology::Params;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::time::Duration;

/// A JSON value as Python objects (through the `json` module: dicts, lists,
/// numbers, strings, None).
fn to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<PyObject> {
    Ok(py.import("json")?.call_method1("loads", (v.to_string(),))?.unbind())
}

fn from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text: String = py.import("json")?.call_method1("dumps", (obj,))?.extract()?;
    serde_json::from_str(&text).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The seed's `SimulationConfig`.
#[pyclass(module = "agora")]
#[derive(Clone, Debug)]
pub struct SimulationConfig {
    /// Simulated seconds.
    #[pyo3(get, set)]
    pub simulation_duration: f64,
    /// Width of the throughput buckets in `get_current_state()`, seconds.
    #[pyo3(get, set)]
    pub time_step: f64,
    /// Keep the scenario's fault plan and accept the injector's faults.
    #[pyo3(get, set)]
    pub failure_injection_enabled: bool,
    /// Links take their RTTs; off, every link is (nearly) instant.
    #[pyo3(get, set)]
    pub network_delay_simulation_enabled: bool,
    /// Adaptive balancing (P2C Peak-EWMA) unless a strategy is set; off:
    /// round robin.
    #[pyo3(get, set)]
    pub adaptive_migration_enabled: bool,
    /// There is no Java side here; the Rust traits cover its interfaces.
    #[pyo3(get, set)]
    pub java_integration_enabled: bool,
    #[pyo3(get, set)]
    pub seed: u64,
}

#[pymethods]
impl SimulationConfig {
    #[new]
    #[pyo3(signature = (simulation_duration=300.0, time_step=0.1, failure_injection_enabled=true,
        network_delay_simulation_enabled=true, adaptive_migration_enabled=true, java_integration_enabled=false, seed=1))]
    fn new(
        simulation_duration: f64,
        time_step: f64,
        failure_injection_enabled: bool,
        network_delay_simulation_enabled: bool,
        adaptive_migration_enabled: bool,
        java_integration_enabled: bool,
        seed: u64,
    ) -> PyResult<Self> {
        if !(simulation_duration.is_finite() && simulation_duration > 0.0 && simulation_duration <= 86_400.0) {
            return Err(PyValueError::new_err(format!(
                "simulation_duration: {simulation_duration} is not a number of seconds in (0, 86400]"
            )));
        }
        if !(time_step.is_finite() && time_step > 0.0) {
            return Err(PyValueError::new_err(format!("time_step: {time_step} is not a number of seconds above 0")));
        }
        Ok(SimulationConfig {
            simulation_duration,
            time_step,
            failure_injection_enabled,
            network_delay_simulation_enabled,
            adaptive_migration_enabled,
            java_integration_enabled,
            seed,
        })
    }

    fn __repr__(&self) -> String {
        format!("{self:?}")
    }
}

/// The seed's strategy names (and ours) to a strategy.
fn strategy(name: &str) -> PyResult<Strategy> {
    let n = name.rsplit('.').next().unwrap_or(name).to_lowercase();
    let n = match n.as_str() {
        "weighted_round_robin" | "wrr" => "weighted_round_robin",
        "least_connections" => "least_connections",
        "resource_aware" => "resource_aware",
        "round_robin" => "round_robin",
        "p2c_peak_ewma" | "power_of_two_choices" => "p2c_peak_ewma",
        _ => "",
    };
    n.parse().map_err(|_| {
        PyValueError::new_err(format!(
            "unknown strategy {name:?}: WEIGHTED_ROUND_ROBIN, LEAST_CONNECTIONS, RESOURCE_AWARE, ROUND_ROBIN or P2C_PEAK_EWMA"
        ))
    })
}

/// The seed's `LoadBalancerSimulation`: the default scenario, run on demand.
#[pyclass(module = "agora")]
pub struct LoadBalancerSimulation {
    config: SimulationConfig,
    strategy: Option<Strategy>,
    faults: Vec<FaultSpec>,
    inputs: Vec<(Duration, u32, Input)>,
    /// The last run's outcome and state.
    last: Option<(serde_json::Value, serde_json::Value)>,
}

impl LoadBalancerSimulation {
    fn node_index(&self, name: &str) -> PyResult<u32> {
        let names = node_names();
        names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u32)
            .ok_or_else(|| PyValueError::new_err(format!("no node {name:?}; the nodes are {}", names.join(", "))))
    }

    fn check_time(&self, what: &str, at: f64) -> PyResult<Duration> {
        if !(at.is_finite() && at >= 0.0 && at <= self.config.simulation_duration) {
            return Err(PyValueError::new_err(format!(
                "{what}: {at} s is outside the simulation (0 to {} s)",
                self.config.simulation_duration
            )));
        }
        if !self.config.failure_injection_enabled {
            return Err(PyValueError::new_err("failure injection is disabled in this simulation's config"));
        }
        Ok(Duration::from_secs_f64(at))
    }

    /// The scenario this simulation runs.
    fn scenario(&self) -> Scenario<Params> {
        let c = &self.config;
        let mut sc = default_scenario();
        sc.seed = c.seed;
        sc.until = Duration::from_secs_f64(c.simulation_duration);
        if !c.failure_injection_enabled {
            sc.fault.clear();
            sc.input.clear();
        }
        if !c.network_delay_simulation_enabled {
            for l in &mut sc.params.links {
                l.rtt_ms = 0.001;
            }
            sc.params.jitter = 0.0;
        }
        sc.params.balancer = self.strategy.unwrap_or(if c.adaptive_migration_enabled {
            Strategy::P2cPeakEwma
        } else {
            Strategy::RoundRobin
        });
        for f in &self.faults {
            sc.push_fault(f.clone());
        }
        for (at, node, input) in &self.inputs {
            sc.push_input(*at, *node, input).expect("an input is plain data");
        }
        sc
    }
}

fn node_names() -> Vec<String> {
    default_scenario().params.nodes.iter().map(|n| n.name.clone()).collect()
}

/// Runs `sc` and returns (outcome, state) as JSON.
fn run(sc: &Scenario<Params>, time_step: f64) -> PyResult<(serde_json::Value, serde_json::Value)> {
    registry::check::<Node>(sc).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let topo = sc.params.compile().map_err(PyValueError::new_err)?;
    let mut sim = registry::build::<Node>(sc, sc.seed, true);
    sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    let out = outcome(&topo, &sim);
    let (answered, _) = agora_lab::telecom::per_second(&sim, time_step);
    let nodes: Vec<_> = sim
        .nodes()
        .ids()
        .map(|id| {
            let n = sim.node(id);
            serde_json::json!({
                "node": topo.name(id),
                "up": sim.nodes().is_up(id),
                "isolated": n.is_isolated(),
                "suspects": n.suspects().map(|s| topo.name(s)).collect::<Vec<_>>(),
                "served": n.stats().served,
            })
        })
        .collect();
    let outcome = serde_json::to_value(&out).expect("an outcome is JSON");
    let state = serde_json::json!({
        "time_s": sim.now().as_secs_f64(),
        "strategy": sc.params.balancer,
        "nodes": nodes,
        "failures": outcome["failures"],
        "failovers": outcome["failovers"],
        "throughput": answered.iter().enumerate().map(|(i, r)| [i as f64 * time_step, *r]).collect::<Vec<_>>(),
    });
    Ok((outcome, state))
}

#[pymethods]
impl LoadBalancerSimulation {
    #[new]
    fn new(py: Python<'_>, config: SimulationConfig) -> PyResult<Self> {
        if config.java_integration_enabled {
            let warnings = py.import("warnings")?;
            warnings.call_method1("warn", ("java_integration_enabled: there is no Java side; it is ignored",))?;
        }
        Ok(LoadBalancerSimulation { config, strategy: None, faults: Vec::new(), inputs: Vec::new(), last: None })
    }

    /// `strategy`: the seed's name (`RESOURCE_AWARE`, …) or ours (`p2c_peak_ewma`).
    fn set_load_balancing_strategy(&mut self, strategy_name: &str) -> PyResult<()> {
        self.strategy = Some(strategy(strategy_name)?);
        Ok(())
    }

    /// Runs the simulation; returns its outcome (failures with detection
    /// times, failovers, requests, load balancing, per-node metrics, the
    /// bottleneck ranking).
    fn run_simulation(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        let sc = self.scenario();
        let step = self.config.time_step;
        let result = py.allow_threads(|| run(&sc, step))?;
        let out = to_py(py, &result.0)?;
        self.last = Some(result);
        Ok(out)
    }

    /// The state after the last run (before any: every node up at time 0).
    fn get_current_state(&self, py: Python<'_>) -> PyResult<PyObject> {
        match &self.last {
            Some((_, state)) => to_py(py, state),
            None => {
                let nodes: Vec<_> = node_names()
                    .into_iter()
                    .map(|n| serde_json::json!({"node": n, "up": true, "isolated": false, "suspects": [], "served": 0}))
                    .collect();
                let strategy = self.scenario().params.balancer;
                to_py(
                    py,
                    &serde_json::json!({"time_s": 0.0, "strategy": strategy, "nodes": nodes, "failures": [], "failovers": [], "throughput": []}),
                )
            }
        }
    }

    /// The node names, in the order fault plans number them.
    #[getter]
    fn nodes(&self) -> Vec<String> {
        node_names()
    }
}

/// The seed's `FailureInjector`: adds faults to a simulation's plan.
#[pyclass(module = "agora")]
pub struct FailureInjector {
    simulation: Py<LoadBalancerSimulation>,
}

#[pymethods]
impl FailureInjector {
    #[new]
    fn new(simulation: Py<LoadBalancerSimulation>) -> Self {
        FailureInjector { simulation }
    }

    /// The node crashes at `at` and comes back, without memory, `duration` later.
    #[pyo3(signature = (node, duration, at=1.0))]
    fn inject_crash_failure(&self, py: Python<'_>, node: &str, duration: f64, at: f64) -> PyResult<()> {
        let mut sim = self.simulation.borrow_mut(py);
        let n = sim.node_index(node)?;
        let start = sim.check_time("at", at)?;
        if !(duration.is_finite() && duration > 0.0) {
            return Err(PyValueError::new_err(format!("duration: {duration} is not a number of seconds above 0")));
        }
        let end = start + Duration::from_secs_f64(duration);
        sim.faults.push(FaultSpec { kind: FaultKind::Crash, at: Some(start), node: Some(n), ..FaultSpec::default() });
        sim.faults.push(FaultSpec {
            kind: FaultKind::Recover,
            at: Some(end),
            node: Some(n),
            memory: Some(false),
            ..FaultSpec::default()
        });
        Ok(())
    }

    /// The node drops `drop_rate` of what it sends and receives from `at`
    /// (for `duration` seconds, or to the end).
    #[pyo3(signature = (node, drop_rate, at=1.0, duration=None))]
    fn inject_omission_failure(
        &self,
        py: Python<'_>,
        node: &str,
        drop_rate: f64,
        at: f64,
        duration: Option<f64>,
    ) -> PyResult<()> {
        let mut sim = self.simulation.borrow_mut(py);
        let n = sim.node_index(node)?;
        let start = sim.check_time("at", at)?;
        if !(0.0..=1.0).contains(&drop_rate) {
            return Err(PyValueError::new_err(format!("drop_rate: {drop_rate} is not a probability in [0, 1]")));
        }
        let until = match duration {
            Some(d) if !(d.is_finite() && d > 0.0) => {
                return Err(PyValueError::new_err(format!("duration: {d} is not a number of seconds above 0")))
            }
            Some(d) => Some(start + Duration::from_secs_f64(d)),
            None => None,
        };
        sim.faults.push(FaultSpec {
            kind: FaultKind::Omission,
            at: Some(start),
            node: Some(n),
            rate: Some(drop_rate),
            until,
            ..FaultSpec::default()
        });
        Ok(())
    }

    /// The node turns Byzantine at `at`: `behavior` is "corrupt" (wrong
    /// answers), "equivocate" (different answers to different clients),
    /// "silent" (answers nothing, still heartbeats), "forge_version" (right
    /// values at false versions) or "replay" (old signed data).
    #[pyo3(signature = (node, behavior, at=1.0))]
    fn inject_byzantine_failure(&self, py: Python<'_>, node: &str, behavior: &str, at: f64) -> PyResult<()> {
        let mut sim = self.simulation.borrow_mut(py);
        let n = sim.node_index(node)?;
        let start = sim.check_time("at", at)?;
        let b = match behavior.to_lowercase().as_str() {
            "corrupt" => Behaviour::Corrupt,
            "equivocate" => Behaviour::Equivocate,
            "silent" | "stay_silent" => Behaviour::Silent,
            "forge_version" => Behaviour::ForgeVersion,
            "replay" => Behaviour::Replay,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "behavior: {behavior:?} is not one of corrupt, equivocate, silent, forge_version, replay"
                )))
            }
        };
        sim.inputs.push((start, n, Input::byzantine(b)));
        Ok(())
    }
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

    /// `risk_assessments`: dicts with `id`, `failure_probability`,
    /// `criticality`, `cascade_risk`, `dependency_count`, `failure_mode`
    /// (as `agora telecom risk` takes them). Returns node → strategy.
    fn configure_redundancy_from_risk_assessment(
        &self,
        py: Python<'_>,
        risk_assessments: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let nodes = from_py(py, risk_assessments)?;
        let text = serde_json::json!({ "nodes": nodes }).to_string();
        let input: agora_telecom::risk::Input =
            agora_telecom::parse_json(&text).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let a = agora_telecom::risk::assess(&input).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let map: serde_json::Map<String, serde_json::Value> =
            a.nodes.iter().map(|n| (n.node.clone(), serde_json::to_value(n.strategy).expect("a label"))).collect();
        to_py(py, &serde_json::Value::Object(map))
    }

    /// The failover a run made away from `failed_node` (the first), or None.
    fn implement_automated_failover(
        &self,
        py: Python<'_>,
        failed_node: &str,
        state: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let state = from_py(py, state)?;
        let found = state["failovers"].as_array().and_then(|f| f.iter().find(|x| x["from"] == failed_node)).cloned();
        to_py(py, &found.unwrap_or(serde_json::Value::Null))
    }

    /// Crashes the `node_count` most critical nodes at once (2 s into a run
    /// of `simulation` without its other faults) and reports the failures,
    /// their detection and the failovers, which follow criticality order.
    fn simulate_multi_node_failure(
        &self,
        py: Python<'_>,
        node_count: usize,
        simulation: PyRef<'_, LoadBalancerSimulation>,
    ) -> PyResult<PyObject> {
        let mut sc = simulation.scenario();
        sc.fault.clear();
        sc.input.clear();
        let n = sc.params.nodes.len();
        if node_count == 0 || node_count > n {
            return Err(PyValueError::new_err(format!("node_count: {node_count} is not between 1 and {n}")));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| sc.params.nodes[b].criticality.total_cmp(&sc.params.nodes[a].criticality));
        let failed: Vec<usize> = order[..node_count].to_vec();
        let at = Duration::from_secs(2).min(sc.until / 2);
        for &i in &failed {
            sc.push_fault(FaultSpec {
                kind: FaultKind::Crash,
                at: Some(at),
                node: Some(i as u32),
                ..FaultSpec::default()
            });
        }
        let step = simulation.config.time_step;
        let (outcome, _) = py.allow_threads(|| run(&sc, step))?;
        let names: Vec<String> = failed.iter().map(|&i| sc.params.nodes[i].name.clone()).collect();
        to_py(
            py,
            &serde_json::json!({
                "failed": names,
                "failures": outcome["failures"],
                "failovers": outcome["failovers"],
                "requests": outcome["requests"],
            }),
        )
    }
}

#[pymodule]
fn agora(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SimulationConfig>()?;
    m.add_class::<LoadBalancerSimulation>()?;
    m.add_class::<FailureInjector>()?;
    m.add_class::<RedundancyFailoverManager>()?;
    Ok(())
}
