//! The seed's Java interfaces as Rust traits, implemented by the system's
//! parts: [`NodeManager`] and [`CommunicationManager`] by a
//! [`Node`], [`LoadBalancer`] by a
//! [`Balancer`]. (`TransactionManager` belongs to
//! part 2.) Where the seed's method returns a future or takes a handler, the
//! sans-IO form takes the `Io` handle instead and the answer arrives as the
//! node's `Done` output; `updateConfiguration` is a new scenario, since a
//! run's topology is fixed.

use crate::balance::Balancer;
use crate::data::kv::Op;
use crate::node::{Behaviour, Input, Msg, Node, Output, Timer};
use agora_core::{Io, NodeId, Protocol, Time};
use rand::RngCore;
use serde::Serialize;

/// What `NodeManager::metrics` reports (measured in the node model).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeMetrics {
    pub served: u64,
    /// Busy slots over time so far, percent.
    pub cpu_percent: f64,
    /// Mean queue + service time of served requests.
    pub latency_ms: f64,
    pub max_queue: u64,
    pub shed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum HealthStatus {
    Healthy,
    /// Its detector suspects these neighbours.
    Suspecting(Vec<NodeId>),
    /// On the minority side of a partition: it has stopped serving.
    Isolated,
}

/// The seed's `FailureType` as `handleFailure` takes it: the injector's
/// protocol-level faults (crash and omission belong to the runtime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureType {
    Byzantine(Behaviour),
    Recovered,
}

/// The seed's `NodeManager`.
pub trait NodeManager: Protocol {
    fn metrics(&self, now: Time) -> NodeMetrics;
    fn health_status(&self) -> HealthStatus;
    fn handle_failure(&mut self, failure: FailureType, io: &mut Io<'_, Self>);
}

/// The seed's `CommunicationManager`.
pub trait CommunicationManager: Protocol {
    /// Sends an RPC — operation `op` on `key` of group `group` — to the
    /// group's members as its redundancy says; the request id, or None if
    /// refused at once. The answer is a `Done` output.
    fn send_rpc(&mut self, group: u16, key: &str, op: Op, priority: u8, io: &mut Io<'_, Self>) -> Option<u64>;
    fn broadcast_message(&mut self, msg: &Self::Msg, targets: &[NodeId], io: &mut Io<'_, Self>);
}

/// The seed's `LoadBalancer`.
pub trait LoadBalancer {
    fn select_node(&mut self, group: usize, candidates: &[NodeId], rng: &mut dyn RngCore) -> Option<NodeId>;
    fn update_node_weights(&mut self, weights: &[(NodeId, f64)]);
}

impl NodeManager for Node {
    fn metrics(&self, now: Time) -> NodeMetrics {
        let s = self.stats();
        let secs = now.as_secs_f64().max(1e-9);
        NodeMetrics {
            served: s.served,
            cpu_percent: (100.0 * self.busy_slot_s(now) / (self.slots() as f64 * secs)).min(100.0),
            latency_ms: if s.served == 0 { 0.0 } else { 1e3 * s.residence_s / s.served as f64 },
            max_queue: s.max_queue,
            shed: s.shed,
        }
    }
    fn health_status(&self) -> HealthStatus {
        let suspects: Vec<NodeId> = self.suspects().collect();
        if self.is_isolated() {
            HealthStatus::Isolated
        } else if suspects.is_empty() {
            HealthStatus::Healthy
        } else {
            HealthStatus::Suspecting(suspects)
        }
    }
    fn handle_failure(&mut self, failure: FailureType, io: &mut Io<'_, Self>) {
        let input = match failure {
            FailureType::Byzantine(b) => Input::byzantine(b),
            FailureType::Recovered => Input::honest(),
        };
        self.on_input(input, io);
    }
}

impl CommunicationManager for Node {
    fn send_rpc(&mut self, group: u16, key: &str, op: Op, priority: u8, io: &mut Io<'_, Self>) -> Option<u64> {
        // The client issues it; its outputs (the request to the server) are routed.
        let mut id = None;
        let outputs = agora_core::service::drive(
            io,
            "client",
            &mut self.client,
            |c, io| id = c.request(group, key.to_string(), op, priority, io),
            Msg::Client,
            Timer::Client,
            Output::Client,
            true,
            crate::node::plumbing,
        );
        self.route_locally(io, outputs);
        id
    }
    fn broadcast_message(&mut self, msg: &Msg, targets: &[NodeId], io: &mut Io<'_, Self>) {
        for &t in targets {
            io.send(t, msg.clone());
        }
    }
}

impl LoadBalancer for Balancer {
    fn select_node(&mut self, group: usize, candidates: &[NodeId], rng: &mut dyn RngCore) -> Option<NodeId> {
        self.pick(group, candidates, rng)
    }
    fn update_node_weights(&mut self, weights: &[(NodeId, f64)]) {
        for &(n, w) in weights {
            self.set_weight(n, w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Strategy;
    use crate::node::server;
    use agora_core::Command;
    use rand::SeedableRng;

    #[test]
    fn a_client_node_sends_an_rpc_through_the_trait_and_reports_health() {
        let sc: toml::Value = toml::from_str(include_str!("../../../scenarios/edge-core-cloud.toml")).unwrap();
        let params: crate::topology::Params = sc["params"].clone().try_into().unwrap();
        let topo = std::sync::Arc::new(params.compile().unwrap());
        let mut node = Node::new(topo, NodeId(0)); // Edge1, a client
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        let mut io = Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out);
        node.on_start(&mut io);
        assert_eq!(node.health_status(), HealthStatus::Healthy);
        // Group 0 is n-way (Core1, Core2, Cloud1, Edge1): one request to each
        // member — three sent, Edge1's own taken in place.
        let id = node.send_rpc(0, "k42", Op::Read, 1, &mut io);
        assert!(id.is_some(), "the request was issued");
        let requests =
            out.iter().filter(|c| matches!(c, Command::Send { msg: Msg::Server(server::Msg::Request(_)), .. })).count();
        assert_eq!(requests, 3);
        assert_eq!(node.metrics(Time::from_nanos(1)).served, 0);
    }

    #[test]
    fn weights_updated_through_the_trait_steer_weighted_round_robin() {
        let mut b = Balancer::new(Strategy::WeightedRoundRobin, &[(1.0, 10.0, 1000.0); 2], 1);
        b.update_node_weights(&[(NodeId(0), 3.0)]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let picks = (0..8).filter(|_| b.select_node(0, &[NodeId(0), NodeId(1)], &mut rng) == Some(NodeId(0))).count();
        assert_eq!(picks, 6);
    }
}
