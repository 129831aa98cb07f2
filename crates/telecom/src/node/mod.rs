//! One node of the edge–core–cloud system: three services composed on one
//! node ([`agora_core::compose!`]), the same code in the simulator and on
//! real processes.
//!
//! * [`control`]: failure detection and link state — heartbeats, the
//!   phi-accrual and omission detectors, link state flooded to every node,
//!   and the view derived from it (routes, reachability, partition side).
//! * [`data_plane`]: what the node serves — the server's slots and queue,
//!   the replicas of the groups it belongs to — and the carrying of
//!   requests and answers along the routes.
//! * [`client`]: what the node asks for (on client nodes): the workload,
//!   retries, votes, ejections, failovers and cascade levels.
//!
//! The node routes between them locally: every change of the control
//! plane's view goes to the data plane, which sends along its routes, and
//! to the client; the client's requests and repairs go to the data plane,
//! and their answers come back (plumbing: routed, not output); a peer heard
//! again after a crash suspicion is judged afresh by the client's votes;
//! and the client's own suspicions (a member outvoted, or failing request
//! after request) go to the control plane, which reports every suspicion
//! the node raises.
//!
//! On the wire each message carries its service's tag; an injected input
//! names its service (`{ data = { Byzantine = "corrupt" } }`).

pub mod client;
pub mod control;
pub mod data_plane;

pub use client::{Cause, Client, Level};
pub use control::{Control, Detection};
pub use data_plane::{
    Answer, Behaviour, DataPlane, Repair, Replica, ReplicaBody, Request, ServerStats, Shipped, Status,
};

/// Counter names.
pub mod counters {
    pub const REQUESTS: &str = "requests";
    pub const SUCCEEDED: &str = "requests_succeeded";
    pub const FAILED: &str = "requests_failed";
    pub const ATTEMPTS: &str = "attempts";
    pub const RETRIES: &str = "retries";
    pub const BUDGET_EXHAUSTED: &str = "retry_budget_exhausted";
    pub const SHED: &str = "requests_shed";
    pub const OVERLOADED: &str = "answers_overloaded";
    pub const NO_ROUTE: &str = "dropped_no_route";
    pub const EJECTIONS: &str = "ejections";
    /// Read repairs sent by clients, and taken by replicas.
    pub const REPAIRS: &str = "repairs_sent";
    pub const REPAIRED: &str = "repairs_taken";
    /// Syncs of replica data the disk refused (full).
    pub const SYNCS_REFUSED: &str = "syncs_refused";
    /// Requests refused because the member lost the key's value to a damaged disk.
    pub const LOST_KEYS: &str = "requests_on_lost_keys";
    /// Writes of causal groups applied from peers, and resent to peers.
    pub const CAUSAL_APPLIED: &str = "causal_applied";
    pub const CAUSAL_RESENT: &str = "causal_resent";
    /// Entries a member took from a peer (shipped, transferred or causal),
    /// sync writes that did not stand, catch-ups that ended by waiting out
    /// silent peers.
    pub const SHIPPED_TAKEN: &str = "shipped_taken";
    pub const SHIP_CONFLICTS: &str = "ship_conflicts";
    pub const CATCH_UP_TIMEOUTS: &str = "catch_up_timeouts";
    /// Digests that differed from the receiver's state (anti-entropy ran).
    pub const ANTI_ENTROPY: &str = "anti_entropy";
    /// Geographic members' entries a read repair changed.
    pub const READ_REPAIRED: &str = "read_repaired";
    /// Clients' requests an n-way backup passed to its primary to order
    /// (the client did not ask the primary).
    pub const FORWARDED: &str = "requests_forwarded";
}

use crate::route::View;
use crate::topology::Topology;
use agora_core::{compose, NodeId, Time};
use std::sync::Arc;

compose! {
    /// One node: its control plane, its data plane and its client.
    pub mod composed {
        control: Control = crate::node::control::Control,
        data: Data = crate::node::data_plane::DataPlane,
        client: Client = crate::node::client::Client,
    }
    route = between_services;
    internal = plumbing;
}

pub use composed::{Input, Msg, Node, Output, Timer};

/// What one service tells the others on the node.
fn between_services(o: &Output) -> Vec<Input> {
    match o {
        Output::Control(control::Output::View(v)) => {
            vec![Input::Data(data_plane::Input::View(v.clone())), Input::Client(client::Input::View(v.clone()))]
        }
        Output::Control(control::Output::Trust { node, how: Detection::Crash }) => {
            vec![Input::Client(client::Input::Back(*node))]
        }
        Output::Client(client::Output::Suspect { node, how }) => {
            vec![Input::Control(control::Input::Suspect { node: *node, how: *how })]
        }
        Output::Client(client::Output::Send(r)) => vec![Input::Data(data_plane::Input::Send(r.clone()))],
        Output::Client(client::Output::Repair(r)) => vec![Input::Data(data_plane::Input::Repair(r.clone()))],
        Output::Data(data_plane::Output::Answered(a)) => vec![Input::Client(client::Input::Answer(a.clone()))],
        _ => Vec::new(),
    }
}

/// Requests, repairs and answers between the client and the data plane:
/// routed only (every request would otherwise be an output record).
pub(crate) fn plumbing(o: &Output) -> bool {
    matches!(
        o,
        Output::Client(client::Output::Send(_) | client::Output::Repair(_))
            | Output::Data(data_plane::Output::Answered(_))
    )
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
    /// The client's output, if this is one.
    pub fn client(&self) -> Option<&client::Output> {
        match self {
            Output::Client(o) => Some(o),
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
        Node {
            control: Control::new(topo.clone(), me),
            data: DataPlane::new(topo.clone(), me),
            client: Client::new(topo, me),
        }
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
    /// The node's local invariants (see [`DataPlane::check`], [`Client::check`]).
    pub fn check(&self) -> Result<(), String> {
        self.data.check()?;
        self.client.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_tell_each_other_what_the_others_act_on() {
        let n = NodeId(3);
        let from_control = |o: control::Output| between_services(&Output::Control(o));
        // A view goes to the data plane (routes) and to the client (reachability).
        let view = from_control(control::Output::View(View::default()));
        assert!(matches!(
            view.as_slice(),
            [Input::Data(data_plane::Input::View(_)), Input::Client(client::Input::View(_))]
        ));
        // Heard again after a crash suspicion: the votes judge it afresh;
        // an omission suspicion that clears says nothing of a restart.
        let back = from_control(control::Output::Trust { node: n, how: Detection::Crash });
        assert!(matches!(back.as_slice(), [Input::Client(client::Input::Back(m))] if *m == n));
        assert!(from_control(control::Output::Trust { node: n, how: Detection::Omission }).is_empty());
        assert!(from_control(control::Output::Isolated { isolated: true }).is_empty());
        let accused = between_services(&Output::Client(client::Output::Suspect { node: n, how: Detection::Byzantine }));
        assert!(
            matches!(accused.as_slice(), [Input::Control(control::Input::Suspect { node, how: Detection::Byzantine })] if *node == n)
        );
        // Requests go out through the data plane and answers come back: plumbing, not output.
        let failover = Output::Client(client::Output::Failover { group: 0, from: n, to: None });
        assert!(between_services(&failover).is_empty() && !plumbing(&failover));
        let answered = Output::Data(data_plane::Output::Answered(Answer {
            id: 1,
            client: NodeId(0),
            server: n,
            attempt: 0,
            reply: None,
            status: Status::Isolated,
            load: Default::default(),
            sent_ns: 0,
            hops: 0,
            clock: None,
        }));
        assert!(matches!(between_services(&answered).as_slice(), [Input::Client(client::Input::Answer(_))]));
        assert!(plumbing(&answered));
    }
}
