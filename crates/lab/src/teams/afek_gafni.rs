//! The Afek–Gafni asynchronous election ([`agora_teams::afek_gafni::AgNode`])
//! run in the simulator: the baseline of the election plots.

use agora_core::Time;
use agora_sim::network::UniformAdversary;
use agora_sim::{Model, Sim, SimConfig};
use agora_teams::afek_gafni::AgNode;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct AgReport {
    pub n: u32,
    pub leaders: u32,
    pub messages: u64,
}

/// One election: every node a candidate, uniform adversary, FIFO links.
pub fn afek_gafni(n: u32, seed: u64) -> AgReport {
    let mut sc = SimConfig::new(seed);
    sc.fifo = true;
    let model = Model::Async { unit: super::run::UNIT, adversary: Box::new(UniformAdversary) };
    let mut sim = Sim::new(n, move |id| AgNode::new(id, n), model, sc);
    sim.run_until(Time::from_nanos(u64::MAX / 2)).expect("no invariants to break");
    let leaders = sim.nodes().ids().filter(|&id| sim.node(id).is_leader()).count() as u32;
    AgReport { n, leaders, messages: sim.stats().messages_sent }
}
