//! The seed's `SimulationConfig`, `LoadBalancerSimulation` and
//! `FailureInjector`: a telecom scenario (the embedded default, a file, or
//! a generated topology), its faults, and runs of it.

use crate::types::{LoadBalancingStrategy, SimulationResult, SimulationState};
use agora_lab::registry;
use agora_lab::telecom::experiments::{default_scenario, generated_scenario};
use agora_lab::telecom::outcome;
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use agora_telecom::balance::Strategy;
use agora_telecom::node::{Behaviour, Input, Node};
use agora_telecom::topology::Params;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::time::Duration;

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
    /// Faults at all: the scenario's plan and the injector's.
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
    /// The scenario's own fault plan: None (the default) keeps it until
    /// the injector adds a fault, so that a run with injected faults has
    /// only those; True keeps it beside them; False drops it.
    #[pyo3(get, set)]
    pub scenario_faults: Option<bool>,
}

#[pymethods]
impl SimulationConfig {
    #[new]
    #[pyo3(signature = (simulation_duration=300.0, time_step=0.1, failure_injection_enabled=true,
        network_delay_simulation_enabled=true, adaptive_migration_enabled=true, java_integration_enabled=false, seed=1,
        scenario_faults=None))]
    #[allow(clippy::too_many_arguments)] // the seed's keywords
    fn new(
        simulation_duration: f64,
        time_step: f64,
        failure_injection_enabled: bool,
        network_delay_simulation_enabled: bool,
        adaptive_migration_enabled: bool,
        java_integration_enabled: bool,
        seed: u64,
        scenario_faults: Option<bool>,
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
            scenario_faults,
        })
    }

    fn __repr__(&self) -> String {
        format!("{self:?}")
    }
}

impl SimulationConfig {
    /// The defaults, for `until` and `seed` of a scenario.
    fn of(sc: &Scenario<Params>) -> Self {
        let secs = sc.until.as_secs_f64();
        SimulationConfig::new(secs, 0.1, true, true, true, false, sc.seed, None)
            .expect("a loaded scenario's until is valid")
    }
}

/// The seed's strategy names (and ours) to a strategy.
fn strategy_named(name: &str) -> PyResult<Strategy> {
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

fn strategy(s: &Bound<'_, PyAny>) -> PyResult<Strategy> {
    if let Ok(s) = s.extract::<LoadBalancingStrategy>() {
        return Ok(match s {
            LoadBalancingStrategy::ROUND_ROBIN => Strategy::RoundRobin,
            LoadBalancingStrategy::WEIGHTED_ROUND_ROBIN => Strategy::WeightedRoundRobin,
            LoadBalancingStrategy::LEAST_CONNECTIONS => Strategy::LeastConnections,
            LoadBalancingStrategy::RESOURCE_AWARE => Strategy::ResourceAware,
            LoadBalancingStrategy::P2C_PEAK_EWMA => Strategy::P2cPeakEwma,
        });
    }
    strategy_named(&s.str()?.to_string())
}

/// The seed's `LoadBalancerSimulation`: a scenario, run on demand.
#[pyclass(module = "agora")]
pub struct LoadBalancerSimulation {
    pub(crate) config: SimulationConfig,
    /// The scenario as loaded (the embedded default, a file, generated).
    base: Scenario<Params>,
    strategy: Option<Strategy>,
    faults: Vec<FaultSpec>,
    inputs: Vec<(Duration, u32, Input)>,
    /// The last run's outcome and state, and the scenario it ran.
    last: Option<(serde_json::Value, serde_json::Value, Scenario<Params>)>,
}

impl LoadBalancerSimulation {
    fn with(py: Python<'_>, config: SimulationConfig, base: Scenario<Params>) -> PyResult<Self> {
        if config.java_integration_enabled {
            let warnings = py.import("warnings")?;
            warnings.call_method1("warn", ("java_integration_enabled: there is no Java side; it is ignored",))?;
        }
        Ok(LoadBalancerSimulation { config, base, strategy: None, faults: Vec::new(), inputs: Vec::new(), last: None })
    }

    fn node_index(&self, name: &str) -> PyResult<u32> {
        node_index(&self.base, name)
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
    pub(crate) fn scenario(&self) -> Scenario<Params> {
        let c = &self.config;
        let mut sc = self.base.clone();
        sc.seed = c.seed;
        sc.until = Duration::from_secs_f64(c.simulation_duration);
        let injected = !self.faults.is_empty() || !self.inputs.is_empty();
        let keep_plan = c.failure_injection_enabled && c.scenario_faults.unwrap_or(!injected);
        if !keep_plan {
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

pub(crate) fn node_index(sc: &Scenario<Params>, name: &str) -> PyResult<u32> {
    let names: Vec<&str> = sc.params.nodes.iter().map(|n| n.name.as_str()).collect();
    names
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
        .ok_or_else(|| PyValueError::new_err(format!("no node {name:?}; the nodes are {}", names.join(", "))))
}

/// Runs `sc` and returns (outcome, state) as JSON.
pub(crate) fn run(sc: &Scenario<Params>, time_step: f64) -> PyResult<(serde_json::Value, serde_json::Value)> {
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
    /// The embedded default scenario (`scenarios/edge-core-cloud.toml`).
    #[new]
    fn new(py: Python<'_>, config: SimulationConfig) -> PyResult<Self> {
        Self::with(py, config, default_scenario())
    }

    /// A telecom scenario file (as `agora sim` runs it); `config` defaults
    /// to the file's `until` and `seed`.
    #[staticmethod]
    #[pyo3(signature = (path, config=None))]
    fn from_scenario(py: Python<'_>, path: &str, config: Option<SimulationConfig>) -> PyResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| PyValueError::new_err(format!("{path}: {e}")))?;
        let sc = registry::load::<Node>(path, &text).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let config = config.unwrap_or_else(|| SimulationConfig::of(&sc));
        Self::with(py, config, sc)
    }

    /// A generated topology of the default's shape (`agora telecom
    /// generate`), without faults: `edges`, `cores` and `clouds` nodes.
    #[staticmethod]
    #[pyo3(signature = (edges, cores, clouds, topology_seed=1, config=None))]
    fn generated(
        py: Python<'_>,
        edges: u32,
        cores: u32,
        clouds: u32,
        topology_seed: u64,
        config: Option<SimulationConfig>,
    ) -> PyResult<Self> {
        let until = Duration::from_secs_f64(config.as_ref().map_or(30.0, |c| c.simulation_duration));
        let sc = generated_scenario(edges, cores, clouds, topology_seed, until).map_err(PyValueError::new_err)?;
        let config = config.unwrap_or_else(|| SimulationConfig::of(&sc));
        Self::with(py, config, sc)
    }

    /// `strategy`: a `LoadBalancingStrategy`, or its name (`RESOURCE_AWARE`,
    /// `LoadBalancingStrategy.RESOURCE_AWARE`, ours: `p2c_peak_ewma`).
    fn set_load_balancing_strategy(&mut self, strategy: &Bound<'_, PyAny>) -> PyResult<()> {
        self.strategy = Some(self::strategy(strategy)?);
        Ok(())
    }

    /// Runs the simulation: failures with detection times, failovers,
    /// requests, load balancing, per-node metrics, the bottleneck ranking.
    fn run_simulation(&mut self, py: Python<'_>) -> PyResult<SimulationResult> {
        let sc = self.scenario();
        let step = self.config.time_step;
        let (outcome, state) = py.allow_threads(|| run(&sc, step))?;
        self.last = Some((outcome.clone(), state, sc));
        Ok(SimulationResult { json: outcome })
    }

    /// The state after the last run (before any: every node up at time 0).
    fn get_current_state(&self) -> SimulationState {
        let time_step = self.config.time_step;
        match &self.last {
            Some((_, state, sc)) => SimulationState { json: state.clone(), scenario: Some(sc.clone()), time_step },
            None => {
                let nodes: Vec<_> = self
                    .nodes()
                    .into_iter()
                    .map(|n| serde_json::json!({"node": n, "up": true, "isolated": false, "suspects": [], "served": 0}))
                    .collect();
                let sc = self.scenario();
                let json = serde_json::json!({"time_s": 0.0, "strategy": sc.params.balancer, "nodes": nodes,
                    "failures": [], "failovers": [], "throughput": []});
                SimulationState { json, scenario: Some(sc), time_step }
            }
        }
    }

    /// The node names, in the order fault plans number them.
    #[getter]
    fn nodes(&self) -> Vec<String> {
        self.base.params.nodes.iter().map(|n| n.name.clone()).collect()
    }
}

/// The seed's `FailureInjector`: adds faults to a simulation's plan (the
/// scenario's own plan then stands aside, unless the config keeps it).
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
