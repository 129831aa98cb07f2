//! `agora alloc sim`'s runs: the allocation protocol as ledger, provider
//! and recipient nodes, built as a [`Scenario`] of protocol `alloc` (so a
//! run is traced and replayed like a scenario file's) from an instance and
//! the command line's fault list, which parses into the scenario's own
//! fault entries.

use crate::registry;
use agora_alloc::node::{self, Config, Output, Setup};
use agora_alloc::{max_flow, Instance};
use agora_sim::scenario::{DelaySpec, FaultKind, FaultSpec, Scenario};
use agora_sim::Sim;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What `agora alloc sim` asks for.
#[derive(Clone, Debug)]
pub struct SimSpec {
    /// The instance file, as the nodes will read it.
    pub instance: String,
    /// `crash:ID@TIME`, `recover:ID@TIME`, `restart:ID@TIME`, `loss:RATE`,
    /// comma-separated; IDs are the instance's provider and recipient ids.
    pub faults: String,
    pub asynchronous: bool,
    pub seed: u64,
    pub silent_rounds: u32,
}

/// The run as a scenario; an error names the bad `--faults` entry or the
/// instance's problem.
pub fn scenario(spec: &SimSpec) -> Result<Scenario<Config>, String> {
    let config = Config {
        instance: spec.instance.clone(),
        phase_timeout: Duration::from_millis(200),
        silent_rounds: spec.silent_rounds,
        asynchronous: spec.asynchronous,
        tick: Duration::from_millis(20),
        max_rounds: 1000,
    };
    // Read once: the ids the fault entries name, and the network.
    let bad = |e: &dyn std::fmt::Display| format!("instance: {}: {e}", spec.instance);
    let text = std::fs::read_to_string(&spec.instance).map_err(|e| bad(&e))?;
    let instance = Instance::parse(&text).map_err(|e| bad(&e))?;
    let setup = Setup { config: config.clone(), net: instance.network().map_err(|e| bad(&e))? };
    let mut sc = Scenario::new(<node::Node as registry::Runnable>::NAME, setup.nodes(), config);
    sc.name = format!("alloc sim of {}", spec.instance);
    sc.path = "(built by agora alloc sim)".into();
    sc.seed = spec.seed;
    sc.until = Duration::from_secs(3600);
    sc.network.delay = Some(DelaySpec::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(10) });
    for entry in spec.faults.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match parse_fault(entry, &instance, &setup).map_err(|why| format!("--faults entry {entry:?}: {why}"))? {
            Parsed::Loss(rate) => sc.network.loss = rate,
            Parsed::Fault(f) => sc.push_fault(f),
        }
    }
    registry::check::<node::Node>(&sc).map_err(|e| e.to_string())?;
    Ok(sc)
}

enum Parsed {
    Loss(f64),
    Fault(FaultSpec),
}

/// One `--faults` entry as a scenario fault entry (or the network's loss).
fn parse_fault(entry: &str, instance: &Instance, setup: &Setup) -> Result<Parsed, String> {
    let (kind, rest) = entry.split_once(':').ok_or("expected KIND:…")?;
    if kind == "loss" {
        let rate = rest.parse::<f64>().ok().filter(|r| (0.0..1.0).contains(r)).ok_or("rate in [0, 1)")?;
        return Ok(Parsed::Loss(rate));
    }
    let (id, at) = rest.split_once('@').ok_or("expected KIND:ID@TIME")?;
    let node = if let Some(p) = instance.providers.iter().position(|p| p.id == id) {
        setup.provider_id(p)
    } else if let Some(r) = instance.recipients.iter().position(|r| r.id == id) {
        setup.recipient_id(r)
    } else {
        return Err(format!("no provider or recipient {id:?}"));
    };
    let at = Some(agora_core::duration_str::parse(at)?);
    let (kind, memory) = match kind {
        "crash" => (FaultKind::Crash, None),
        "recover" => (FaultKind::Recover, Some(true)),
        "restart" => (FaultKind::Recover, Some(false)),
        other => return Err(format!("unknown kind {other:?} (crash, recover, restart, loss)")),
    };
    Ok(Parsed::Fault(FaultSpec { kind, at, node: Some(node.0), memory, ..Default::default() }))
}

/// What a finished run reports.
#[derive(Debug, Serialize)]
pub struct SimReport {
    pub converged: bool,
    pub rounds: u32,
    pub sim_time_s: f64,
    pub total_allocated: f64,
    pub max_flow: f64,
    pub max_flow_of_live_agents: f64,
    pub messages_by_kind: BTreeMap<&'static str, u64>,
    pub crashes: u64,
    pub recoveries: u64,
    pub lost: u64,
    pub trace_hash: String,
    /// The amount on each edge of the instance's network, in edge order.
    #[serde(skip)]
    pub allocation: Vec<f64>,
}

/// The simulation of `sc` (outputs kept: the ledger's verdict is one).
pub fn build(sc: &Scenario<Config>) -> Sim<node::Node> {
    registry::build::<node::Node>(sc, sc.seed, true)
}

/// Runs `sim` to the scenario's end and reports; an error is a violated
/// invariant, a failed trace write or the ledger's failure.
pub fn run(sc: &Scenario<Config>, mut sim: Sim<node::Node>) -> Result<SimReport, String> {
    let report = sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| e.to_string())?;
    sim.finish_trace().map_err(|e| e.to_string())?;
    let (rounds, converged) = sim
        .outputs()
        .iter()
        .find_map(|o| match &o.output {
            Output::Finished { round, converged } => Some(Ok((*round, *converged))),
            Output::LedgerFailed { error } => Some(Err(format!("ledger: {error}"))),
            _ => None,
        })
        .transpose()?
        .unwrap_or((0, false));
    let setup = Setup::load(sc.params.clone())?;
    let allocation = node::allocation(&setup, |id| sim.node(id));
    let stats = sim.stats();
    Ok(SimReport {
        converged,
        rounds,
        sim_time_s: report.sim_time.as_secs_f64(),
        total_allocated: allocation.iter().sum(),
        max_flow: max_flow(&setup.net),
        max_flow_of_live_agents: max_flow(&node::live_network(&setup, |id| sim.nodes().is_up(id))),
        messages_by_kind: stats.messages_by_kind.to_map(),
        crashes: stats.crashes,
        recoveries: stats.recoveries,
        lost: stats.dropped.total(),
        trace_hash: agora_sim::trace::hex(report.trace_hash),
        allocation,
    })
}
