//! PBFT in the simulator: the agreement invariant checked after every event,
//! and what a run's summary reports.

use crate::stats::quantile;
use agora_core::NodeId;
use agora_pbft::check::Agreement;
use agora_pbft::{Chain, Config, Node, Output};
use agora_sim::Sim;

type Pbft = Node<Chain>;

/// After every event: the replica it concerned keeps its own invariants and
/// agrees with every other replica on the executed log and the stable
/// checkpoints; every result a client accepted since is a chain position
/// given once, growing per client.
pub fn install_agreement(sim: &mut Sim<Pbft>) {
    let mut agreement = Agreement::default();
    let mut seen = 0;
    sim.add_invariant("pbft agreement", move |w| {
        let ids: Vec<NodeId> = match w.active {
            Some(id) => vec![id],
            None => w.nodes.ids().collect(),
        };
        for id in ids {
            if let Some(r) = w.nodes.state(id).replica() {
                agreement.replica(id, r)?;
            }
        }
        for o in &w.outputs[seen..] {
            let Output::Done { timestamp, result, .. } = &o.output;
            agreement.chain_result(o.node, *timestamp, result)?;
        }
        seen = w.outputs.len();
        Ok(())
    });
}

/// A finished run: requests done and left, client latency, and where each
/// replica is.
pub fn outcome(cfg: &Config, sim: &Sim<Pbft>) -> serde_json::Value {
    let nodes = || sim.nodes().ids().map(|id| (id, sim.node(id)));
    let done: u64 = nodes().filter_map(|(_, n)| n.client()).map(|c| c.done()).sum();
    let left: u64 = nodes().filter_map(|(_, n)| n.client()).map(|c| c.remaining()).sum();
    let mut latency: Vec<f64> = sim
        .outputs()
        .iter()
        .map(|o| {
            let Output::Done { latency_ns, .. } = o.output;
            latency_ns as f64 / 1e6
        })
        .collect();
    let replicas: Vec<_> = nodes()
        .filter_map(|(id, n)| n.replica().map(|r| (id, r)))
        .map(|(id, r)| {
            serde_json::json!({
                "replica": id.0,
                "up": sim.nodes().is_up(id),
                "view": r.view(),
                "changing_view": !r.active(),
                "executed": r.executed(),
                "stable_checkpoint": r.stable().0,
            })
        })
        .collect();
    let c = &sim.stats().counters;
    serde_json::json!({
        "replicas": cfg.replicas,
        "f": cfg.f,
        "clients": cfg.clients,
        "requests_done": done,
        "requests_left": left,
        "all_done": left == 0,
        "latency_ms": {"p50": quantile(&mut latency, 0.5), "p99": quantile(&mut latency, 0.99)},
        "batches_proposed": c.get("batches_proposed"),
        "checkpoints_stable": c.get("checkpoints_stable"),
        "state_transfers": c.get("state_transfers"),
        "view_changes_started": c.get("view_changes_started"),
        "views_entered": c.get("views_entered"),
        "client_retransmissions": c.get("client_retransmissions"),
        "replica_states": replicas,
    })
}
