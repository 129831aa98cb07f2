//! One node of the edge–core–cloud system: services composed on one node
//! ([`agora_core::compose!`]), the same code in the simulator and on real
//! processes.
//!
//! * [`control`]: failure detection and link state — heartbeats, the
//!   phi-accrual and omission detectors, link state flooded to every node,
//!   and the view derived from it (routes, reachability, partition side).
//! * [`server`]: what the node does with the requests that reach it — the
//!   slots and the queue — and the carrying of requests, answers and
//!   repairs along the routes.
//! * [`client`]: what the node asks for (on client nodes): the workload,
//!   retries, votes, ejections, failovers and cascade levels.
//! * [`replica`]: one service per replication strategy (`active_active`,
//!   `active_passive`, `n_way`, `geographic`, `quorum`), each keeping this
//!   node's copy of its strategy's groups.
//!
//! The node routes between them locally: every change of the control
//! plane's view goes to every other service, which send along its routes;
//! the client's requests and repairs go to the server and their answers
//! come back; the server asks the replica service of a request's group to
//! admit it and, once a slot served it, to apply it, and answers what that
//! service replies (these three are plumbing: routed, not output); a peer
//! heard again after a crash suspicion is judged afresh by the client's
//! votes; and the client's own suspicions (a member outvoted, or failing
//! request after request) go to the control plane, which reports every
//! suspicion the node raises.
//!
//! On the wire each message carries its service's tag; an injected input
//! names its service (`{ server = { Byzantine = "corrupt" } }`).

pub mod client;
pub mod control;
pub mod replica;
pub mod server;
mod verify;

pub use client::{Cause, Client, Level};
pub use control::{Control, Detection};
pub use replica::{Replica, ReplicaBody, Replicas, Shipped};
pub use server::{Answer, Behaviour, Repair, Request, Server, ServerStats, Status};

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
    /// Answers whose data failed verification (no writer sealed it).
    pub const FORGED: &str = "answers_forged";
    /// Evidence of forgery a client shared, took (it proved a member
    /// forged), and ignored (it proved nothing).
    pub const EVIDENCE_SHARED: &str = "evidence_shared";
    pub const EVIDENCE_TAKEN: &str = "evidence_taken";
    pub const EVIDENCE_IGNORED: &str = "evidence_ignored";
    /// Data a member refused from a peer or a client: no writer sealed it.
    pub const PEER_FORGED: &str = "peer_data_forged";
    /// Clients' requests an n-way backup passed to its primary to order
    /// (the client did not ask the primary).
    pub const FORWARDED: &str = "requests_forwarded";
    /// Quorum writes that met another client's newer entry at a member.
    pub const WRITE_CONFLICTS: &str = "quorum_write_conflicts";
}

use crate::route::View;
use crate::topology::{Redundancy, Topology};
use agora_core::{compose, NodeId, Time};
use std::sync::Arc;

compose! {
    /// One node: its control plane, its server, its client, and a replica
    /// service per replication strategy.
    pub mod composed {
        control: Control = crate::node::control::Control,
        server: Server = crate::node::server::Server,
        client: Client = crate::node::client::Client,
        active_active: ActiveActive = crate::node::replica::Replicas,
        active_passive: ActivePassive = crate::node::replica::Replicas,
        n_way: NWay = crate::node::replica::Replicas,
        geographic: Geographic = crate::node::replica::Replicas,
        quorum: Quorum = crate::node::replica::Replicas,
    }
    route = between_services;
    internal = plumbing;
}

pub use composed::{Input, Msg, Node, Output, Timer};

/// Sends `msg` one hop towards `to` along `view`'s routes (counted as
/// dropped if there is none): how every data service sends.
fn send_along<P: agora_core::Protocol>(view: &View, to: NodeId, msg: P::Msg, io: &mut agora_core::Io<'_, P>) {
    match view.next_hop.get(to.index()).copied().flatten() {
        Some(hop) => io.send(hop, msg),
        None => io.count(counters::NO_ROUTE, 1),
    }
}

/// The strategies, in the order of the replica services.
const STRATEGIES: [Redundancy; 5] =
    [Redundancy::ActiveActive, Redundancy::ActivePassive, Redundancy::NWay, Redundancy::Geographic, Redundancy::Quorum];

/// The input for the replica service of `strategy`.
fn to_replicas(strategy: Redundancy, i: replica::Input) -> Input {
    match strategy {
        Redundancy::ActiveActive => Input::ActiveActive(i),
        Redundancy::ActivePassive => Input::ActivePassive(i),
        Redundancy::NWay => Input::NWay(i),
        Redundancy::Geographic => Input::Geographic(i),
        Redundancy::Quorum => Input::Quorum(i),
    }
}

/// What one service tells the others on the node.
fn between_services(o: &Output) -> Vec<Input> {
    let every_replica = |i: replica::Input| STRATEGIES.iter().map(|&s| to_replicas(s, i.clone())).collect::<Vec<_>>();
    match o {
        Output::Control(control::Output::View(v)) => {
            let mut to =
                vec![Input::Server(server::Input::View(v.clone())), Input::Client(client::Input::View(v.clone()))];
            to.extend(every_replica(replica::Input::View(v.clone())));
            to
        }
        Output::Control(control::Output::Trust { node, how: Detection::Crash }) => {
            vec![Input::Client(client::Input::Back(*node))]
        }
        Output::Client(client::Output::Suspect { node, how }) => {
            vec![Input::Control(control::Input::Suspect { node: *node, how: *how })]
        }
        Output::Client(client::Output::Send(r)) => vec![Input::Server(server::Input::Send(r.clone()))],
        Output::Client(client::Output::Repair(r)) => vec![Input::Server(server::Input::Repair(r.clone()))],
        Output::Server(server::Output::Answered(a)) => vec![Input::Client(client::Input::Answer(a.clone()))],
        Output::Server(server::Output::Evidence(e)) => vec![Input::Client(client::Input::Evidence(e.clone()))],
        Output::Client(client::Output::Share(e)) => vec![Input::Server(server::Input::Share(e.clone()))],
        Output::Server(server::Output::Replica { strategy, what }) => {
            vec![to_replicas(*strategy, replica::Input::Server(what.clone()))]
        }
        Output::Server(server::Output::TurnedByzantine { behaviour }) => {
            every_replica(replica::Input::Byzantine(Some(*behaviour)))
        }
        Output::Server(server::Output::TurnedHonest) => every_replica(replica::Input::Byzantine(None)),
        Output::ActiveActive(r)
        | Output::ActivePassive(r)
        | Output::NWay(r)
        | Output::Geographic(r)
        | Output::Quorum(r) => vec![Input::Server(server::Input::Replica(r.clone()))],
        _ => Vec::new(),
    }
}

/// Requests and answers between the client, the server and the replica
/// services: routed only (every request would otherwise be output records).
pub(crate) fn plumbing(o: &Output) -> bool {
    matches!(
        o,
        Output::Client(client::Output::Send(_) | client::Output::Repair(_))
            | Output::Server(
                server::Output::Answered(_) | server::Output::Replica { .. } | server::Output::Evidence(_)
            )
            | Output::ActiveActive(_)
            | Output::ActivePassive(_)
            | Output::NWay(_)
            | Output::Geographic(_)
            | Output::Quorum(_)
    )
}

impl Input {
    /// The failure injector turns the node Byzantine.
    pub fn byzantine(b: Behaviour) -> Self {
        Input::Server(server::Input::Byzantine(b))
    }
    /// The node behaves again.
    pub fn honest() -> Self {
        Input::Server(server::Input::Honest)
    }
}

impl Output {
    /// The server's output, if this is one.
    pub fn server(&self) -> Option<&server::Output> {
        match self {
            Output::Server(o) => Some(o),
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
        let replicas = |s: Redundancy| Replicas::new(topo.clone(), me, s);
        Node {
            control: Control::new(topo.clone(), me),
            server: Server::new(topo.clone(), me),
            client: Client::new(topo.clone(), me),
            active_active: replicas(Redundancy::ActiveActive),
            active_passive: replicas(Redundancy::ActivePassive),
            n_way: replicas(Redundancy::NWay),
            geographic: replicas(Redundancy::Geographic),
            quorum: replicas(Redundancy::Quorum),
        }
    }

    /// The replica service of `strategy`.
    pub fn replicas(&self, strategy: Redundancy) -> &Replicas {
        match strategy {
            Redundancy::ActiveActive => &self.active_active,
            Redundancy::ActivePassive => &self.active_passive,
            Redundancy::NWay => &self.n_way,
            Redundancy::Geographic => &self.geographic,
            Redundancy::Quorum => &self.quorum,
        }
    }

    /// This node's replica of `group`'s data (empty unless a member).
    pub fn replica(&self, group: u16) -> &crate::data::kv::Store {
        let kept = STRATEGIES.iter().map(|&s| self.replicas(s)).find(|r| r.keeps(group));
        kept.unwrap_or(&self.active_active).replica(group)
    }
    pub fn stats(&self) -> &ServerStats {
        self.server.stats()
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
        self.server.slots()
    }
    pub fn is_isolated(&self) -> bool {
        self.view().isolated
    }
    pub fn suspects(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.control.suspects()
    }
    /// Busy slot-seconds up to `now`, including the current stretch.
    pub fn busy_slot_s(&self, now: Time) -> f64 {
        self.server.busy_slot_s(now)
    }
    /// The node's local invariants: the server's, the client's, the replicas'.
    pub fn check(&self) -> Result<(), String> {
        self.server.check()?;
        self.client.check()?;
        STRATEGIES.iter().try_for_each(|&s| self.replicas(s).check())
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
            [Input::Server(server::Input::View(_)), Input::Client(client::Input::View(_)), ..]
        ));
        let replicas = view
            .iter()
            .filter(|i| {
                matches!(
                    i,
                    Input::NWay(replica::Input::View(_))
                        | Input::ActiveActive(replica::Input::View(_))
                        | Input::ActivePassive(replica::Input::View(_))
                        | Input::Geographic(replica::Input::View(_))
                        | Input::Quorum(replica::Input::View(_))
                )
            })
            .count();
        assert_eq!(replicas, 5, "every replica service routes along the view");
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
        let answered = Output::Server(server::Output::Answered(Answer {
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
            sig: None,
        }));
        assert!(matches!(between_services(&answered).as_slice(), [Input::Client(client::Input::Answer(_))]));
        assert!(plumbing(&answered));
        // A request for a member goes to the replica service of its group's strategy,
        // and what that service replies goes back to the server.
        let key = server::RequestKey {
            id: 1,
            client: NodeId(0),
            group: 0,
            key: "k".into(),
            op: crate::data::kv::Op::Read,
            put: None,
            seal: None,
            attempt: 0,
            sent_ns: 0,
            arrived: Time::ZERO,
            forwarded: false,
            asked: Vec::new(),
            pbft: None,
        };
        let serve = Output::Server(server::Output::Replica {
            strategy: Redundancy::Geographic,
            what: server::ToReplica::Serve(key.clone()),
        });
        assert!(matches!(between_services(&serve).as_slice(), [Input::Geographic(replica::Input::Server(_))]));
        let admitted = Output::Geographic(server::FromReplica::Admitted { key, priority: 1 });
        assert!(matches!(
            between_services(&admitted).as_slice(),
            [Input::Server(server::Input::Replica(server::FromReplica::Admitted { .. }))]
        ));
        assert!(plumbing(&serve) && plumbing(&admitted));
        // A node turned Byzantine: every replica service hears it (a silent one stops replicating).
        let turned = Output::Server(server::Output::TurnedByzantine { behaviour: Behaviour::Silent });
        assert_eq!(between_services(&turned).len(), 5);
        assert!(!plumbing(&turned), "ground truth for the reports");
    }
}
