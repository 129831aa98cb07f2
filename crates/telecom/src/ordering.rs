//! PBFT ordering for an `n_way` + `strong` group of at least four members
//! (issue 24, stage e): what the members' replica services and the
//! clients share — the group's PBFT numbering, the key–value state as a
//! PBFT state machine, and a client's authenticated request.
//!
//! The group is a PBFT group of its own ([`agora_pbft`]): its members are
//! replicas `0..n` in the group's order (the primary of view 0 is the
//! group's primary), tolerating `f = ⌊(n − 1)/3⌋` Byzantine members. Its
//! clients are *lanes*: every node has [`LANES`] client ids, and a client
//! sends each request to the group on the next lane in turn. PBFT keeps one
//! request per client id outstanding (a newer timestamp replaces an older
//! one), so lanes let a node have that many requests in flight; a node
//! that has more in flight than that at once (only while the group is
//! stopped) has its older request on a lane replaced, and that request
//! ends by its deadline, as if it was lost. Lane `l` of node `x` is client
//! `n + x·LANES + l`, and every id maps to the node that holds its keys,
//! so MACs and signatures are the nodes' own ([`agora_core::keys::Renamed`]).

use crate::data::kv::{Op, Reply, Seal, Store};
use crate::topology::{Consistency, Group, Redundancy};
use agora_core::{Io, NodeId, Protocol};
use agora_pbft::{Config, StateMachine};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Client ids per node.
pub const LANES: u32 = 64;

/// Whether PBFT orders a group of this strategy, consistency and size: an
/// n-way strong group that can tolerate a Byzantine member (n ≥ 4). A
/// smaller strong group tolerates none and keeps primary order, with its
/// durable answers (see `node::replica`).
pub fn by_pbft(strategy: Redundancy, consistency: Consistency, members: usize) -> bool {
    strategy == Redundancy::NWay && consistency == Consistency::Strong && members >= 4
}

/// The Byzantine members an ordered group of `n` tolerates.
pub fn tolerated(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// One ordered group's PBFT numbering and configuration.
#[derive(Debug)]
pub struct Numbering {
    pub cfg: Arc<Config>,
    /// The node each PBFT id stands for: the members, then each node's lanes.
    pub global: Vec<NodeId>,
}

impl Numbering {
    /// The numbering of ordered group `g` among `nodes` nodes, its view
    /// change timed from the clients' request timeout.
    pub fn new(g: &Group, nodes: usize, rpc_timeout: Duration) -> Self {
        let n = g.members.len() as u32;
        let mut cfg = Config::new(n, tolerated(n as usize) as u32, nodes as u32 * LANES)
            .expect("an ordered group has n ≥ 3f + 1 members");
        // A view change must fit in a client's deadline: twice a request's
        // timeout (the default scenario: 500 ms), doubling while views fail.
        cfg.view_change_timeout = rpc_timeout * 2;
        let mut global = g.members.clone();
        global.extend((0..nodes as u32).flat_map(|x| std::iter::repeat_n(NodeId(x), LANES as usize)));
        Numbering { cfg: Arc::new(cfg), global }
    }

    /// The PBFT id of member `node`, if it is one.
    pub fn replica(&self, node: NodeId) -> Option<NodeId> {
        self.global[..self.cfg.replicas as usize].iter().position(|&m| m == node).map(|i| NodeId(i as u32))
    }

    /// The PBFT id of lane `lane` of node `node`.
    pub fn lane(&self, node: NodeId, lane: u32) -> NodeId {
        NodeId(self.cfg.replicas + node.0 * LANES + lane % LANES)
    }

    /// The node PBFT id `id` stands for.
    pub fn node(&self, id: NodeId) -> Option<NodeId> {
        self.global.get(id.index()).copied()
    }

    pub fn replica_ids(&self) -> Vec<NodeId> {
        self.cfg.replica_ids().collect()
    }

    /// Client `node`'s request number `id` (on lane `id mod LANES`):
    /// `operation` at `timestamp`, authenticated to every member.
    pub fn request<P: Protocol + ?Sized>(
        &self,
        io: &mut Io<'_, P>,
        node: NodeId,
        id: u64,
        timestamp: u64,
        operation: Operation,
    ) -> agora_pbft::Request {
        let (lane, replicas) = (self.lane(node, (id % LANES as u64) as u32), self.replica_ids());
        self.run::<P, P, _>(io, lane, |io| agora_pbft::Request::new(io, &replicas, timestamp, operation.bytes())).0
    }

    /// Runs `f` with an `Io` for PBFT id `me`: its node's keys, under the
    /// group's numbering; the commands it pushes are returned.
    pub fn run<P: Protocol + ?Sized, Q: Protocol + ?Sized, R>(
        &self,
        io: &mut Io<'_, P>,
        me: NodeId,
        f: impl FnOnce(&mut Io<'_, Q>) -> R,
    ) -> (R, Vec<agora_core::Command<Q>>) {
        let keys = agora_core::keys::Renamed { keys: io.keys(), global: &self.global };
        let mut out = Vec::new();
        let r = f(&mut io.nested_as(me, &keys, &mut out));
        (r, out)
    }
}

/// What a client asks an ordered group: its request's operation, as the
/// PBFT operation's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub key: String,
    pub op: Op,
    pub seal: Option<Seal>,
}

impl Operation {
    pub fn bytes(&self) -> Vec<u8> {
        agora_core::wire::encode(self).expect("an operation encodes")
    }
}

/// The key–value state as PBFT's state machine: an [`Operation`] in, the
/// [`Reply`] out (`None` for bytes that are no operation — a client's
/// mistake, answered alike by every correct replica).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    pub store: Store,
}

impl StateMachine for Machine {
    fn apply(&mut self, op: &[u8]) -> Vec<u8> {
        let reply: Option<Reply> =
            agora_core::wire::decode::<Operation>(op).ok().map(|o| self.store.apply(&o.key, &o.op, o.seal.as_ref()));
        agora_core::wire::encode(&reply).expect("a reply encodes")
    }
    fn snapshot(&self) -> Vec<u8> {
        agora_core::wire::encode(&self.store).expect("a store encodes")
    }
    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        agora_core::wire::decode(snapshot)
            .map(|store| Machine { store })
            .map_err(|e| format!("a store's snapshot: {e}"))
    }
}

/// A result's reply (None: not a reply, or the operation was malformed).
pub fn reply(result: &[u8]) -> Option<Reply> {
    agora_core::wire::decode::<Option<Reply>>(result).ok().flatten()
}
