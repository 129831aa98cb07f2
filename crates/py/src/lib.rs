//! The telecom seed's Python API, with the seed's names, running Agora's
//! Rust simulator underneath:
//!
//! ```python
//! from agora import SimulationConfig, LoadBalancerSimulation, FailureInjector, RedundancyFailoverManager
//! sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=30.0))
//! sim.set_load_balancing_strategy(LoadBalancingStrategy.RESOURCE_AWARE)
//! FailureInjector(sim).inject_crash_failure("Core2", duration=5.0, at=10.0)
//! result = sim.run_simulation()          # a SimulationResult: failures, failovers, requests, …
//! event = RedundancyFailoverManager().implement_automated_failover("Core1", sim.get_current_state())
//! ```
//!
//! A simulation runs the embedded default scenario
//! (`scenarios/edge-core-cloud.toml`), a scenario file
//! (`LoadBalancerSimulation.from_scenario`) or a generated topology
//! (`LoadBalancerSimulation.generated`). Once the injector adds a fault,
//! the scenario's own fault plan stands aside (`SimulationConfig.scenario_faults`).
//! Where the seed's signatures leave a time open, the injector takes `at=`
//! (simulated seconds). The seed's analyses are functions:
//! `detect_deadlock`, `rank_bottlenecks`, `assess_risk`, `select_node`.

mod analysis;
mod simulation;
mod types;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A JSON value as Python objects (through the `json` module: dicts, lists,
/// numbers, strings, None).
fn to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<PyObject> {
    Ok(py.import("json")?.call_method1("loads", (v.to_string(),))?.unbind())
}

fn from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text: String = py.import("json")?.call_method1("dumps", (obj,))?.extract()?;
    serde_json::from_str(&text).map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymodule]
fn agora(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<simulation::SimulationConfig>()?;
    m.add_class::<simulation::LoadBalancerSimulation>()?;
    m.add_class::<simulation::FailureInjector>()?;
    m.add_class::<analysis::RedundancyFailoverManager>()?;
    m.add_class::<types::SimulationResult>()?;
    m.add_class::<types::SimulationState>()?;
    m.add_class::<types::FailureEvent>()?;
    m.add_class::<types::FailoverEvent>()?;
    m.add_class::<types::BottleneckAnalysis>()?;
    m.add_class::<types::MultiNodeFailureScenario>()?;
    m.add_class::<types::RiskAssessment>()?;
    m.add_class::<types::LoadBalancingStrategy>()?;
    m.add_class::<types::RedundancyStrategy>()?;
    m.add_function(wrap_pyfunction!(analysis::detect_deadlock, m)?)?;
    m.add_function(wrap_pyfunction!(analysis::rank_bottlenecks, m)?)?;
    m.add_function(wrap_pyfunction!(analysis::assess_risk, m)?)?;
    m.add_function(wrap_pyfunction!(analysis::select_node, m)?)?;
    Ok(())
}
