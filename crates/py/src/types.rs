//! The seed's types as Python classes: what a run returns
//! (`SimulationResult`, `SimulationState`, `FailureEvent`, `FailoverEvent`,
//! `BottleneckAnalysis`, `MultiNodeFailureScenario`) and what a caller
//! passes (`RiskAssessment`, `LoadBalancingStrategy`, `RedundancyStrategy`).
//!
//! A run's results keep the JSON `agora sim --json` prints: their typed
//! attributes read it, `to_dict()` gives it whole, and `result["key"]`
//! reads one key of it.

use crate::{from_py, to_py};
use agora_sim::scenario::Scenario;
use agora_telecom::topology::Params;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A list in `json` as typed values.
fn list<T: DeserializeOwned>(json: &serde_json::Value, what: &str) -> PyResult<Vec<T>> {
    serde_json::from_value(json.clone()).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

fn item(py: Python<'_>, json: &serde_json::Value, key: &str) -> PyResult<PyObject> {
    match json.get(key) {
        Some(v) => to_py(py, v),
        None => Err(PyKeyError::new_err(key.to_string())),
    }
}

/// An injected failure and how it was detected.
#[pyclass(module = "agora", frozen, get_all)]
#[derive(Clone, Debug, Deserialize)]
pub struct FailureEvent {
    pub node: String,
    /// crash, omission, byzantine or partition.
    pub kind: String,
    pub injected_at_s: f64,
    pub detected_at_s: Option<f64>,
    pub detection_s: Option<f64>,
    pub detected_by: Option<String>,
    /// What the detector read (crash, unresponsive, omission, byzantine;
    /// None for a node isolating itself).
    pub how: Option<String>,
}

/// A client moving a service's requests away from a member.
#[pyclass(module = "agora", frozen, get_all)]
#[derive(Clone, Debug, Deserialize)]
pub struct FailoverEvent {
    pub service: String,
    #[serde(rename = "from")]
    pub from_node: String,
    /// The member now serving (None when the group has no other to offer).
    #[serde(rename = "to")]
    pub to_node: Option<String>,
    /// The client node that failed over.
    pub by: String,
    pub at_s: f64,
    /// Since the fault it answers, if one was still on.
    pub recovery_s: Option<f64>,
}

/// A node's place in the seed's bottleneck ranking (highest score first).
#[pyclass(module = "agora", frozen, get_all)]
#[derive(Clone, Debug, Deserialize)]
pub struct BottleneckAnalysis {
    pub node: String,
    pub score: f64,
}

/// The methods every result backed by JSON has — its failures and
/// failovers typed, `to_dict()` and `result["key"]` — beside `$extra`.
macro_rules! json_backed {
    ($t:ty; $($extra:tt)*) => {
        #[pymethods]
        impl $t {
            #[getter]
            fn failures(&self) -> PyResult<Vec<FailureEvent>> {
                list(&self.json["failures"], "failures")
            }
            #[getter]
            fn failovers(&self) -> PyResult<Vec<FailoverEvent>> {
                list(&self.json["failovers"], "failovers")
            }
            fn to_dict(&self, py: Python<'_>) -> PyResult<PyObject> {
                to_py(py, &self.json)
            }
            fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<PyObject> {
                item(py, &self.json, key)
            }
            $($extra)*
        }
    };
}

macro_rules! repr {
    ($($t:ty),+) => {$(
        #[pymethods]
        impl $t {
            fn __repr__(&self) -> String {
                format!("{self:?}")
            }
        }
    )+};
}
repr!(FailureEvent, FailoverEvent, BottleneckAnalysis);

/// What `run_simulation()` returns: the outcome `agora sim --json` prints.
#[pyclass(module = "agora", frozen)]
pub struct SimulationResult {
    pub json: serde_json::Value,
}

json_backed! {
    SimulationResult;
    #[getter]
    fn sim_time_s(&self) -> f64 {
        self.json["sim_time_s"].as_f64().unwrap_or(0.0)
    }
    /// This run's nodes, ranked by the seed's score over their measured metrics.
    #[getter]
    fn bottlenecks(&self) -> PyResult<Vec<BottleneckAnalysis>> {
        list(&self.json["bottlenecks"]["ranking"], "bottlenecks")
    }
    /// Issued, succeeded, failed by cause, serviceable, latency percentiles,
    /// by group and by fault window.
    #[getter]
    fn requests(&self, py: Python<'_>) -> PyResult<PyObject> {
        item(py, &self.json, "requests")
    }
    /// Each node's metrics (served, req/s, CPU %, latency, queue, shed).
    #[getter]
    fn nodes(&self, py: Python<'_>) -> PyResult<PyObject> {
        item(py, &self.json, "nodes")
    }
    #[getter]
    fn load_balancing(&self, py: Python<'_>) -> PyResult<PyObject> {
        item(py, &self.json, "load_balancing")
    }
    fn __repr__(&self) -> String {
        let r = &self.json["requests"];
        format!(
            "SimulationResult({:.1} s, {} requests, {} succeeded, {} failures, {} failovers)",
            self.sim_time_s(),
            r["issued"],
            r["succeeded"],
            self.json["failures"].as_array().map_or(0, Vec::len),
            self.json["failovers"].as_array().map_or(0, Vec::len)
        )
    }
}

/// What `get_current_state()` returns: the nodes, failures, failovers and
/// throughput at the end of the last run — and the run itself, so that a
/// failover can be performed from this state (it is replayed to here, the
/// simulator being deterministic, and continued).
#[pyclass(module = "agora", frozen)]
pub struct SimulationState {
    pub json: serde_json::Value,
    /// The scenario the state came from (None before any run).
    pub scenario: Option<Scenario<Params>>,
    pub time_step: f64,
}

json_backed! {
    SimulationState;
    #[getter]
    fn time_s(&self) -> f64 {
        self.json["time_s"].as_f64().unwrap_or(0.0)
    }
    #[getter]
    fn strategy(&self) -> String {
        self.json["strategy"].as_str().unwrap_or_default().to_string()
    }
    /// Each node: up, isolated, whom it suspects, what it served.
    #[getter]
    fn nodes(&self, py: Python<'_>) -> PyResult<PyObject> {
        item(py, &self.json, "nodes")
    }
    /// (time s, answered requests/s) per time step.
    #[getter]
    fn throughput(&self) -> PyResult<Vec<(f64, f64)>> {
        list(&self.json["throughput"], "throughput")
    }
    fn __repr__(&self) -> String {
        format!("SimulationState({:.1} s, strategy {})", self.time_s(), self.strategy())
    }
}

/// What `simulate_multi_node_failure` returns.
#[pyclass(module = "agora", frozen)]
pub struct MultiNodeFailureScenario {
    pub json: serde_json::Value,
}

json_backed! {
    MultiNodeFailureScenario;
    /// The nodes crashed, most critical first.
    #[getter]
    fn failed(&self) -> PyResult<Vec<String>> {
        list(&self.json["failed"], "failed")
    }
    #[getter]
    fn requests(&self, py: Python<'_>) -> PyResult<PyObject> {
        item(py, &self.json, "requests")
    }
}

/// The seed's `RiskAssessment` of one node, as `agora telecom risk` takes it.
#[pyclass(module = "agora", get_all, set_all)]
#[derive(Clone, Debug, Serialize)]
pub struct RiskAssessment {
    pub id: String,
    pub failure_probability: f64,
    pub criticality: f64,
    pub cascade_risk: f64,
    pub dependency_count: u32,
    /// crash, omission or byzantine.
    pub failure_mode: String,
}

#[pymethods]
impl RiskAssessment {
    #[new]
    fn new(
        id: String,
        failure_probability: f64,
        criticality: f64,
        cascade_risk: f64,
        dependency_count: u32,
        failure_mode: String,
    ) -> Self {
        RiskAssessment { id, failure_probability, criticality, cascade_risk, dependency_count, failure_mode }
    }
    fn __repr__(&self) -> String {
        format!("{self:?}")
    }
}

impl RiskAssessment {
    /// `RiskAssessment`s or dicts of their fields as JSON.
    pub fn list_json(py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
        let mut out = Vec::new();
        for item in items.try_iter()? {
            let item = item?;
            out.push(match item.extract::<RiskAssessment>() {
                Ok(r) => serde_json::to_value(r).expect("plain data"),
                Err(_) => from_py(py, &item)?,
            });
        }
        Ok(serde_json::Value::Array(out))
    }
}

/// The seed's load-balancing strategies, and P2C with Peak-EWMA (named as
/// Python names enum members).
#[pyclass(module = "agora", eq, eq_int, frozen)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum LoadBalancingStrategy {
    ROUND_ROBIN,
    WEIGHTED_ROUND_ROBIN,
    LEAST_CONNECTIONS,
    RESOURCE_AWARE,
    P2C_PEAK_EWMA,
}

/// The seed's redundancy strategies, as its risk assessment assigns them.
#[pyclass(module = "agora", eq, eq_int, frozen)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum RedundancyStrategy {
    N_WAY_QUORUM,
    ACTIVE_ACTIVE,
    ACTIVE_PASSIVE,
    GEOGRAPHIC,
    EVENTUAL_CONSISTENCY,
}

impl From<agora_telecom::risk::Strategy> for RedundancyStrategy {
    fn from(s: agora_telecom::risk::Strategy) -> Self {
        use agora_telecom::risk::Strategy as S;
        match s {
            S::NWayQuorum => RedundancyStrategy::N_WAY_QUORUM,
            S::ActiveActive => RedundancyStrategy::ACTIVE_ACTIVE,
            S::ActivePassive => RedundancyStrategy::ACTIVE_PASSIVE,
            S::Geographic => RedundancyStrategy::GEOGRAPHIC,
            S::EventualConsistency => RedundancyStrategy::EVENTUAL_CONSISTENCY,
        }
    }
}
