//! How each protocol plugs into the simulator and the `agora` command: its
//! parameter type, how to build its nodes, the invariants the simulator
//! checks, and what its summary reports. Adding a protocol means one impl
//! here and one line in [`with_protocol!`](crate::with_protocol). Every run
//! of a registered protocol — a scenario file, `agora teams run`, a sweep's
//! runs — is built from a [`Scenario`] by [`build`], so all of them can be
//! traced and replayed.

use agora_core::{NodeId, Protocol};
use agora_sim::scenario::{FileError, Scenario};
use agora_sim::{Model, Sim};
use agora_teams::counters;
use serde::de::DeserializeOwned;
use std::sync::Arc;

pub trait Runnable: Protocol + Sized {
    const NAME: &'static str;
    /// Whether [`Runnable::outcome`] reads the run's outputs (they are then
    /// always kept).
    const OUTCOME_READS_OUTPUTS: bool = false;
    type Params: DeserializeOwned + Clone + Send + 'static;

    /// Checks the parameters for `nodes` nodes; the error starts with the
    /// offending field (below `params`).
    fn validate(params: &Self::Params, nodes: u32) -> Result<(), String>;
    /// What the parameters ask for that will work against the user,
    /// though it is allowed; each starts with the field, as errors do.
    fn warnings(_params: &Self::Params) -> Vec<String> {
        Vec::new()
    }
    /// The nodes' names, for protocols whose parameters name them (a
    /// topology); None: `n0`, `n1`, ….
    fn node_names(_params: &Self::Params) -> Option<Vec<String>> {
        None
    }
    /// One line of a node's `/status` for a person (`agora cluster up`
    /// prints it per node when the run ends); empty: nothing beyond the
    /// node's outputs.
    fn status_line(_status: &serde_json::Value) -> String {
        String::new()
    }
    /// Builds node `id` of `nodes`.
    fn build(params: &Self::Params, nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send>;
    /// Installs the protocol's safety invariants on a simulation.
    fn install_invariants(params: &Self::Params, nodes: u32, sim: &mut Sim<Self>);
    /// The protocol-level outcome of a finished simulation, for summaries.
    fn outcome(params: &Self::Params, nodes: u32, sim: &Sim<Self>) -> serde_json::Value;
    /// A human-readable report of [`Runnable::outcome`], for protocols whose
    /// outcome is too rich for one line.
    fn report(_outcome: &serde_json::Value) -> Option<String> {
        None
    }
    /// A self-contained HTML page for a finished run (`agora sim --report`),
    /// for protocols that have one.
    fn html(_params: &Self::Params, _sim: &Sim<Self>, _title: &str) -> Option<Result<String, String>> {
        None
    }
    /// The clients' histories of a finished run as files (name → Jepsen
    /// EDN), for protocols that keep data (`agora sim --history`).
    fn histories(_params: &Self::Params, _sim: &Sim<Self>) -> Option<Vec<(String, String)>> {
        None
    }
    /// The link delays, for a protocol whose parameters describe its own
    /// network (a topology with RTTs); None: the scenario's `[network]` sets them.
    fn network(_params: &Self::Params) -> Option<Model<Self>> {
        None
    }
    /// What a scenario run on real processes (`agora cluster up`) found: the
    /// faults it injected, `(node, kind, seconds since the cluster was up)`,
    /// and each node's start time (same clock) and `/status` at the end.
    fn cluster_report(
        _params: &Self::Params,
        _injected: &[(NodeId, &'static str, f64)],
        _statuses: &[Option<(f64, serde_json::Value)>],
    ) -> Option<String> {
        None
    }
    /// A run on real processes' client histories, from each node's output
    /// log (`agora node --outputs`) and `/status` at the end: the files
    /// (name, text) and a summary of their checks. None: the protocol keeps
    /// no client data.
    #[allow(clippy::type_complexity)]
    fn cluster_histories(
        _params: &Self::Params,
        _statuses: &[Option<(f64, serde_json::Value)>],
        _logs: &[(NodeId, String)],
    ) -> Option<Result<(Vec<(String, String)>, String), String>> {
        None
    }
}

impl Runnable for agora_broadcast::Node {
    const NAME: &'static str = "broadcast";
    type Params = agora_broadcast::Config;

    fn validate(params: &Self::Params, nodes: u32) -> Result<(), String> {
        broadcast_config(params, nodes).validate()
    }
    fn build(params: &Self::Params, nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send> {
        let cfg = broadcast_config(params, nodes);
        Box::new(move |id| agora_broadcast::Node::new(cfg.clone(), id))
    }
    fn install_invariants(params: &Self::Params, nodes: u32, sim: &mut Sim<Self>) {
        let cfg = broadcast_config(params, nodes);
        // After an event only the node it concerned can have broken the
        // invariant (origins' logs only grow): check that node, O(1) per event.
        sim.add_invariant("prefix agreement", move |w| match w.active {
            Some(id) => agora_broadcast::check_node_prefix(&cfg, &|n| w.nodes.state(n), id),
            None => agora_broadcast::check_prefix_agreement(&cfg, |n| w.nodes.state(n)),
        });
    }
    fn outcome(params: &Self::Params, nodes: u32, sim: &Sim<Self>) -> serde_json::Value {
        let cfg = broadcast_config(params, nodes);
        let live: Vec<NodeId> = sim.nodes().ids().filter(|&id| sim.nodes().is_live(id)).collect();
        let broadcast: Vec<_> = cfg
            .origins
            .iter()
            .map(|&o| serde_json::json!({"origin": o.0, "values": sim.node(o).broadcast_count()}))
            .collect();
        let lagging = live
            .iter()
            .filter(|&&id| !agora_broadcast::all_delivered(&cfg, |n| sim.node(n), std::iter::once(id)))
            .count();
        serde_json::json!({
            "broadcast": broadcast,
            "live_nodes": live.len(),
            "live_nodes_missing_values": lagging,
            "all_delivered": lagging == 0,
        })
    }
}

impl Runnable for agora_broadcast::monitored::Monitored {
    const NAME: &'static str = "monitored-broadcast";
    type Params = agora_broadcast::monitored::Params;

    fn validate(params: &Self::Params, nodes: u32) -> Result<(), String> {
        params.validate(nodes)
    }
    fn build(params: &Self::Params, nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send> {
        let params = params.clone();
        Box::new(move |id| params.build(nodes, id))
    }
    fn install_invariants(params: &Self::Params, nodes: u32, sim: &mut Sim<Self>) {
        let cfg = broadcast_config(&params.broadcast, nodes);
        sim.add_invariant("prefix agreement", move |w| match w.active {
            Some(id) => agora_broadcast::check_node_prefix(&cfg, &|n| &w.nodes.state(n).broadcast, id),
            None => agora_broadcast::check_prefix_agreement(&cfg, |n| &w.nodes.state(n).broadcast),
        });
    }
    fn outcome(params: &Self::Params, nodes: u32, sim: &Sim<Self>) -> serde_json::Value {
        let cfg = broadcast_config(&params.broadcast, nodes);
        let live: Vec<NodeId> = sim.nodes().ids().filter(|&id| sim.nodes().is_live(id)).collect();
        let all = agora_broadcast::all_delivered(&cfg, |n| &sim.node(n).broadcast, live.iter().copied());
        // The live nodes whose detector suspects someone at the end.
        let suspected: Vec<_> = live
            .iter()
            .filter(|&&id| sim.node(id).heartbeat.suspected().next().is_some())
            .map(|&id| serde_json::json!({"node": id.0, "suspects": sim.node(id).heartbeat.suspected().map(|p| p.0).collect::<Vec<_>>()}))
            .collect();
        serde_json::json!({"live_nodes": live.len(), "all_delivered": all, "suspected": suspected})
    }
}

impl Runnable for agora_alloc::node::Node {
    const NAME: &'static str = "alloc";
    type Params = agora_alloc::node::Config;

    fn validate(params: &Self::Params, nodes: u32) -> Result<(), String> {
        let setup = agora_alloc::node::Setup::load(params.clone())?;
        if setup.nodes() != nodes {
            return Err(format!(
                "instance: {} has {} providers and {} recipients, so the run needs {} nodes (a ledger first), not {nodes}",
                params.instance,
                setup.providers(),
                setup.recipients(),
                setup.nodes()
            ));
        }
        Ok(())
    }
    fn build(params: &Self::Params, _nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send> {
        let setup = agora_alloc::node::Setup::load(params.clone()).expect("validated before building");
        Box::new(move |id| agora_alloc::node::Node::new(setup.clone(), id))
    }
    fn install_invariants(_params: &Self::Params, _nodes: u32, sim: &mut Sim<Self>) {
        sim.add_invariant("local feasibility", |w| match w.active {
            Some(id) => agora_alloc::node::check_node(w.nodes.state(id)),
            None => w.nodes.ids().try_for_each(|id| agora_alloc::node::check_node(w.nodes.state(id))),
        });
    }
    fn outcome(params: &Self::Params, _nodes: u32, sim: &Sim<Self>) -> serde_json::Value {
        let setup = agora_alloc::node::Setup::load(params.clone()).expect("validated before running");
        let finished = sim.node(NodeId(0)).verdict();
        let total: f64 = agora_alloc::node::allocation(&setup, |id| sim.node(id)).iter().sum();
        let live = agora_alloc::node::live_network(&setup, |id| sim.nodes().is_up(id));
        serde_json::json!({
            "finished": finished.is_some(),
            "converged": finished.is_some_and(|f| f.1),
            "rounds": finished.map(|f| f.0),
            "total_allocated": total,
            "max_flow": agora_alloc::max_flow(&setup.net),
            "max_flow_of_live_agents": agora_alloc::max_flow(&live),
        })
    }
}

impl Runnable for agora_teams::Node {
    const NAME: &'static str = "teams";
    type Params = agora_teams::Params;

    fn validate(params: &Self::Params, _nodes: u32) -> Result<(), String> {
        params.validate()
    }
    fn build(params: &Self::Params, nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send> {
        let cfg = Arc::new(params.config(nodes));
        Box::new(move |id| agora_teams::Node::new(cfg.clone(), id))
    }
    fn install_invariants(params: &Self::Params, nodes: u32, sim: &mut Sim<Self>) {
        crate::teams::run::install_conservation(sim, nodes, params.k);
        crate::teams::run::install_channel_checks(sim);
        crate::teams::run::install_quiescence(sim, params.k);
    }
    fn outcome(params: &Self::Params, _nodes: u32, sim: &Sim<Self>) -> serde_json::Value {
        let c = &sim.stats().counters;
        serde_json::json!({
            "tokens_injected": c.get(counters::INJECTED),
            "teams_formed": c.get(counters::TEAMS),
            "end_check": crate::teams::run::end_check(sim, params.k).err().unwrap_or_else(|| "passed".into()),
        })
    }
}

impl Runnable for agora_telecom::node::Node {
    const NAME: &'static str = "telecom";
    const OUTCOME_READS_OUTPUTS: bool = true;
    type Params = agora_telecom::topology::Params;

    fn validate(params: &Self::Params, nodes: u32) -> Result<(), String> {
        let topo = params.compile()?;
        if topo.len() != nodes as usize {
            return Err(format!("node: {} nodes are described, but the scenario runs {nodes}", topo.len()));
        }
        Ok(())
    }
    fn warnings(params: &Self::Params) -> Vec<String> {
        params.warnings()
    }
    fn node_names(params: &Self::Params) -> Option<Vec<String>> {
        Some(params.nodes.iter().map(|n| n.name.clone()).collect())
    }
    fn status_line(status: &serde_json::Value) -> String {
        crate::telecom::status_line(status)
    }
    fn build(params: &Self::Params, _nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send> {
        let topo = Arc::new(params.compile().expect("validated before building"));
        Box::new(move |id| agora_telecom::node::Node::new(topo.clone(), id))
    }
    fn install_invariants(params: &Self::Params, _nodes: u32, sim: &mut Sim<Self>) {
        sim.add_invariant("server bounds and request accounting", |w| match w.active {
            Some(id) => w.nodes.state(id).check(),
            None => w.nodes.ids().try_for_each(|id| w.nodes.state(id).check()),
        });
        crate::telecom::install_pbft_agreement(&params.compile().expect("validated before building"), sim);
    }
    fn outcome(params: &Self::Params, _nodes: u32, sim: &Sim<Self>) -> serde_json::Value {
        let topo = params.compile().expect("validated before running");
        serde_json::to_value(crate::telecom::checked_outcome(&topo, sim)).expect("an outcome is JSON")
    }
    fn report(outcome: &serde_json::Value) -> Option<String> {
        Some(crate::telecom::report(outcome))
    }
    fn html(params: &Self::Params, sim: &Sim<Self>, title: &str) -> Option<Result<String, String>> {
        Some(params.compile().and_then(|topo| crate::telecom::html(&topo, sim, title)))
    }
    fn network(params: &Self::Params) -> Option<Model<Self>> {
        Some(crate::telecom::links(&params.compile().ok()?))
    }
    fn histories(params: &Self::Params, sim: &Sim<Self>) -> Option<Vec<(String, String)>> {
        let topo = params.compile().ok()?;
        let (reqs, events) = crate::telecom::history::requests(sim);
        let files = crate::telecom::history::edn(&topo, &reqs, &events);
        Some(files.into_iter().map(|(service, text)| (format!("{}.edn", file_name(&service)), text)).collect())
    }
    fn cluster_histories(
        params: &Self::Params,
        statuses: &[Option<(f64, serde_json::Value)>],
        logs: &[(NodeId, String)],
    ) -> Option<Result<(Vec<(String, String)>, String), String>> {
        let found = params.compile().and_then(|topo| crate::telecom::real_histories(&topo, statuses, logs));
        Some(found.map(|(files, summary)| {
            (files.into_iter().map(|(service, text)| (format!("{}.edn", file_name(&service)), text)).collect(), summary)
        }))
    }
    fn cluster_report(
        params: &Self::Params,
        injected: &[(NodeId, &'static str, f64)],
        statuses: &[Option<(f64, serde_json::Value)>],
    ) -> Option<String> {
        let topo = params.compile().ok()?;
        let failures = crate::telecom::real_failures(&topo, injected, statuses);
        let detected = failures.iter().filter(|f| f.detected_at_s.is_some()).count();
        let json: Vec<serde_json::Value> = failures.iter().filter_map(|f| serde_json::to_value(f).ok()).collect();
        Some(format!(
            "{}{detected} of {} failures detected\n{}",
            crate::telecom::failures_table(&json),
            failures.len(),
            crate::telecom::real_requests(statuses)
        ))
    }
}

/// A service name as a file name: anything but letters, digits, `-` and `_` becomes `_`.
fn file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The broadcast parameters with the node count the scenario or cluster file sets.
fn broadcast_config(params: &agora_broadcast::Config, nodes: u32) -> Arc<agora_broadcast::Config> {
    Arc::new(agora_broadcast::Config { nodes, ..params.clone() })
}

/// A protocol-parameter error: the field (as `params.…`) and what is wrong.
pub struct ParamError {
    pub field: String,
    pub message: String,
}

impl ParamError {
    /// The top-level key under `[params]`, for finding its line.
    pub fn key(&self) -> &str {
        let f = self.field.trim_start_matches("params.");
        f.split(['[', '.']).next().unwrap_or(f)
    }
}

/// Checks `P`'s parameters for `nodes` nodes.
pub fn check_params<P: Runnable>(params: &P::Params, nodes: u32) -> Result<(), ParamError> {
    P::validate(params, nodes).map_err(|e| {
        let (field, message) = e.split_once(": ").unwrap_or(("", &e));
        ParamError { field: format!("params.{field}"), message: message.to_string() }
    })
}

impl Runnable for agora_telecom::commit::Commit {
    const NAME: &'static str = "commit";
    const OUTCOME_READS_OUTPUTS: bool = true;
    type Params = agora_telecom::commit::Params;

    fn validate(params: &Self::Params, nodes: u32) -> Result<(), String> {
        params.validate(nodes)
    }
    fn build(params: &Self::Params, nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send> {
        let cfg = params.config(nodes);
        Box::new(move |id| agora_telecom::commit::Commit::new(cfg.clone(), id))
    }
    fn install_invariants(params: &Self::Params, nodes: u32, sim: &mut Sim<Self>) {
        let cfg = params.config(nodes);
        sim.add_invariant("atomic commit agreement", move |w| {
            let live = w.nodes.ids().map(|id| w.nodes.is_up(id).then(|| w.nodes.state(id)));
            agora_telecom::commit::check_agreement(&cfg, live)
        });
    }
    fn outcome(params: &Self::Params, nodes: u32, sim: &Sim<Self>) -> serde_json::Value {
        let coordinator = sim.node(NodeId(0));
        let decided: Vec<_> = (0..params.txns).filter_map(|tx| coordinator.state(tx)).collect();
        let committed = decided.iter().filter(|s| s.committed()).count();
        let aborted = decided.iter().filter(|s| s.aborted()).count();
        // Participants apply a commit once: one decision output per
        // transaction, however often they restart.
        let mut applied = std::collections::BTreeMap::<(u32, u32), u32>::new();
        for o in sim.outputs().iter().filter(|o| o.node != NodeId(0)) {
            *applied.entry((o.node.0, o.output.tx)).or_default() += 1;
        }
        serde_json::json!({
            "txns": params.txns,
            "participants": nodes - 1,
            "committed": committed,
            "aborted": aborted,
            "undecided": params.txns as usize - committed - aborted,
            "applied_twice": applied.values().filter(|&&n| n > 1).count(),
        })
    }
}

impl Runnable for agora_pbft::Node<agora_pbft::Chain> {
    const NAME: &'static str = "pbft";
    const OUTCOME_READS_OUTPUTS: bool = true;
    type Params = agora_pbft::Params;

    fn validate(params: &Self::Params, nodes: u32) -> Result<(), String> {
        params.config(nodes).map(|_| ())
    }
    fn build(params: &Self::Params, nodes: u32) -> Box<dyn FnMut(NodeId) -> Self + Send> {
        let cfg = Arc::new(params.config(nodes).expect("validated before building"));
        let workload = agora_pbft::Workload { requests: params.requests, op_bytes: params.op_bytes };
        let params = params.clone();
        Box::new(move |id| match params.behaviour(id) {
            Some(b) => agora_pbft::Node::byzantine(cfg.clone(), id, agora_pbft::Chain::default(), b),
            None => agora_pbft::Node::new(cfg.clone(), id, agora_pbft::Chain::default, workload),
        })
    }
    fn install_invariants(_params: &Self::Params, _nodes: u32, sim: &mut Sim<Self>) {
        crate::pbft::install_agreement(sim);
    }
    fn outcome(params: &Self::Params, nodes: u32, sim: &Sim<Self>) -> serde_json::Value {
        crate::pbft::outcome(&params.config(nodes).expect("validated before running"), sim)
    }
}

/// The protocol names the command knows.
pub const PROTOCOLS: &[&str] = &[
    agora_broadcast::Node::NAME,
    agora_broadcast::monitored::Monitored::NAME,
    agora_alloc::node::Node::NAME,
    agora_teams::Node::NAME,
    agora_telecom::node::Node::NAME,
    agora_telecom::commit::Commit::NAME,
    agora_pbft::Node::<agora_pbft::Chain>::NAME,
];

/// Runs `$body` with `$P` bound to the protocol type named `$name`.
#[macro_export]
macro_rules! with_protocol {
    ($name:expr, $P:ident => $body:expr) => {{
        let name: &str = $name;
        match name {
            n if n == <$crate::agora_broadcast::Node as $crate::registry::Runnable>::NAME => {
                type $P = $crate::agora_broadcast::Node;
                $body
            }
            n if n == <$crate::agora_broadcast::monitored::Monitored as $crate::registry::Runnable>::NAME => {
                type $P = $crate::agora_broadcast::monitored::Monitored;
                $body
            }
            n if n == <$crate::agora_teams::Node as $crate::registry::Runnable>::NAME => {
                type $P = $crate::agora_teams::Node;
                $body
            }
            n if n == <$crate::agora_alloc::node::Node as $crate::registry::Runnable>::NAME => {
                type $P = $crate::agora_alloc::node::Node;
                $body
            }
            n if n == <$crate::agora_telecom::node::Node as $crate::registry::Runnable>::NAME => {
                type $P = $crate::agora_telecom::node::Node;
                $body
            }
            n if n == <$crate::agora_telecom::commit::Commit as $crate::registry::Runnable>::NAME => {
                type $P = $crate::agora_telecom::commit::Commit;
                $body
            }
            n if n == <$crate::agora_pbft::Node<$crate::agora_pbft::Chain> as $crate::registry::Runnable>::NAME => {
                type $P = $crate::agora_pbft::Node<$crate::agora_pbft::Chain>;
                $body
            }
            other => Err($crate::anyhow::anyhow!(
                "unknown protocol {other:?}; known protocols: {}",
                $crate::registry::PROTOCOLS.join(", ")
            )),
        }
    }};
}

/// Reads and validates a scenario whose protocol is `P`: its parameters and
/// its inputs are checked against `P`'s types.
pub fn load<P: Runnable>(path: &str, src: &str) -> Result<Scenario<P::Params>, FileError> {
    let sc = Scenario::<P::Params>::from_str(path, src)?;
    check::<P>(&sc)?;
    Ok(sc)
}

/// A loaded scenario's warnings: the file's ([`Scenario::warnings`]) and
/// its parameters' ([`Runnable::warnings`]).
pub fn warnings<P: Runnable>(sc: &Scenario<P::Params>) -> Vec<FileError> {
    let mut out = sc.warnings();
    for w in P::warnings(&sc.params) {
        let (field, message) = w.split_once(": ").unwrap_or(("", &w));
        out.push(sc.error(None, &format!("params.{field}"), message));
    }
    out
}

/// [`load`]'s checks, for a scenario built in code.
pub fn check<P: Runnable>(sc: &Scenario<P::Params>) -> Result<(), FileError> {
    sc.validate()?;
    if let Err(e) = check_params::<P>(&sc.params, sc.nodes) {
        return Err(sc.error(sc.key_span(e.key()), &e.field, e.message));
    }
    sc.inputs::<P>()?;
    if P::network(&sc.params).is_some() && sc.network.delay.is_some() {
        let message =
            format!("the {} protocol's links set the delays; remove `delay` (loss and the rest still apply)", P::NAME);
        return Err(sc.error(sc.key_span("delay"), "network.delay", message));
    }
    Ok(())
}

/// The simulation a scenario describes, with `seed`: nodes, network, fault
/// plan, inputs and the protocol's invariants. Outputs are kept only if
/// `keep_outputs` (long runs count them instead).
pub fn build<P: Runnable>(sc: &Scenario<P::Params>, seed: u64, keep_outputs: bool) -> Sim<P> {
    let mut cfg = sc.sim_config();
    cfg.seed = seed;
    cfg.collect_outputs = keep_outputs || P::OUTCOME_READS_OUTPUTS;
    let latency = P::network(&sc.params).unwrap_or_else(|| sc.latency::<P>());
    let mut sim = Sim::new(sc.nodes, P::build(&sc.params, sc.nodes), latency, cfg);
    sc.install(&mut sim);
    P::install_invariants(&sc.params, sc.nodes, &mut sim);
    sim
}
