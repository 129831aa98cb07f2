//! One node of the edge–core–cloud system: two services composed on one
//! node ([`agora_core::compose!`]), the same code in the simulator and on
//! real processes.
//!
//! * [`control`]: failure detection and link state — heartbeats, the
//!   phi-accrual and omission detectors, link state flooded to every node,
//!   and the view derived from it (routes, reachability, partition side).
//! * [`data_plane`]: what the node serves and asks for — the server's slots
//!   and queue, the replicas of the groups it belongs to, and (on client
//!   nodes) the workload.
//!
//! The node routes between them locally: every change of the control
//! plane's view goes to the data plane, which sends along its routes; a
//! peer heard again after a crash suspicion is judged afresh by the
//! client's votes; and the client's own suspicions (a member outvoted, or
//! failing request after request) go to the control plane, which reports
//! every suspicion the node raises.
//!
//! On the wire each message carries its service's tag; an injected input
//! names its service (`{ data = { Byzantine = "corrupt" } }`).

pub mod control;
pub mod data_plane;

pub use control::{Control, Detection};
pub use data_plane::{
    counters, Answer, Behaviour, Cause, DataPlane, Level, Repair, Replica, ReplicaBody, Request, ServerStats, Shipped,
    Status,
};

use crate::route::View;
use crate::topology::Topology;
use agora_core::{compose, NodeId, Time};
use std::sync::Arc;

compose! {
    /// One node: its control plane and its data plane.
    pub mod composed {
        control: Control = crate::node::control::Control,
        data: Data = crate::node::data_plane::DataPlane,
    }
    route = between_planes;
}

pub use composed::{Input, Msg, Node, Output, Timer};

/// What one plane tells the other on the node.
fn between_planes(o: &Output) -> Option<Input> {
    match o {
        Output::Control(control::Output::View(v)) => Some(Input::Data(data_plane::Input::View(v.clone()))),
        Output::Control(control::Output::Trust { node, how: Detection::Crash }) => {
            Some(Input::Data(data_plane::Input::Back(*node)))
        }
        Output::Data(data_plane::Output::Suspect { node, how }) => {
            Some(Input::Control(control::Input::Suspect { node: *node, how: *how }))
        }
        _ => None,
    }
}

impl Input {
    /// The failure injector turns the node Byzantine.
    pub fn byzantine(b: Behaviour) -> Self {
        Input::Data(data_plane::Input::Byzantine(b))
    }
    /// The node behaves again.
    pub fn honest() -> Self {
        Input::Data(data_plane::Input::Honest)
    }
}

impl Output {
    /// The data plane's output, if this is one.
    pub fn data(&self) -> Option<&data_plane::Output> {
        match self {
            Output::Data(o) => Some(o),
            _ => None,
        }
    }
    /// The control plane's output, if this is one.
    pub fn control(&self) -> Option<&control::Output> {
        match self {
            Output::Control(o) => Some(o),
            _ => None,
        }
    }
}

impl Node {
    pub fn new(topo: Arc<Topology>, me: NodeId) -> Self {
        Node { control: Control::new(topo.clone(), me), data: DataPlane::new(topo, me) }
    }

    /// This node's replica of `group`'s data (empty unless a member).
    pub fn replica(&self, group: u16) -> &crate::data::kv::Store {
        self.data.replica(group)
    }
    pub fn stats(&self) -> &ServerStats {
        self.data.stats()
    }
    /// The control plane's view: routes, reachability, partition side.
    pub fn view(&self) -> &View {
        self.control.view()
    }
    /// The first hop this node routes each destination through.
    pub fn next_hops(&self) -> &[Option<NodeId>] {
        &self.view().next_hop
    }
    /// The node's service slots.
    pub fn slots(&self) -> u32 {
        self.data.slots()
    }
    pub fn is_isolated(&self) -> bool {
        self.view().isolated
    }
    pub fn suspects(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.control.suspects()
    }
    /// Busy slot-seconds up to `now`, including the current stretch.
    pub fn busy_slot_s(&self, now: Time) -> f64 {
        self.data.busy_slot_s(now)
    }
    /// The node's local invariants (see [`DataPlane::check`]).
    pub fn check(&self) -> Result<(), String> {
        self.data.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_planes_tell_each_other_what_the_other_acts_on() {
        let n = NodeId(3);
        let to_data = |o: control::Output| between_planes(&Output::Control(o));
        assert!(matches!(
            to_data(control::Output::View(View::default())),
            Some(Input::Data(data_plane::Input::View(_)))
        ));
        // Heard again after a crash suspicion: the votes judge it afresh;
        // an omission suspicion that clears says nothing of a restart.
        let back = to_data(control::Output::Trust { node: n, how: Detection::Crash });
        assert!(matches!(back, Some(Input::Data(data_plane::Input::Back(m))) if m == n));
        assert!(to_data(control::Output::Trust { node: n, how: Detection::Omission }).is_none());
        assert!(to_data(control::Output::Isolated { isolated: true }).is_none());
        let accused = between_planes(&Output::Data(data_plane::Output::Suspect { node: n, how: Detection::Byzantine }));
        assert!(
            matches!(accused, Some(Input::Control(control::Input::Suspect { node, how: Detection::Byzantine })) if node == n)
        );
    }
}
