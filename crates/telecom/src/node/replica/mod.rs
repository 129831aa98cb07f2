//! The replicas, one service per replication strategy on the node
//! (`active_active`, `active_passive`, `n_way`, `geographic`, `quorum`):
//! each keeps this node's copy of the groups of its strategy that the node
//! belongs to, on its own storage, and exchanges its own messages with the
//! same service on the other members. The services are one type,
//! [`Replicas`], built for one strategy each, from shared parts:
//!
//! * `ship.rs`: log shipping — asynchronous or `sync` for active-passive,
//!   last-writer-wins with anti-entropy and read repair for geographic,
//!   primary order for n-way — and a restarted member's catch-up;
//! * `causal.rs`: causal delivery of a causal group's writes (the
//!   consistency `causal`, whatever the strategy: the seed's load balancer
//!   is active-active);
//! * `bft.rs`: a PBFT replica for a group PBFT orders (n-way, strong, at
//!   least four members: see [`crate::ordering`]) — it orders and executes
//!   the group's requests, in place of primary order;
//! * `durable.rs`: the data on the storage capability, a strong group's
//!   answers held until a sync covers them, writes applied once per
//!   request;
//! * here: admitting a request (refused while catching up, or behind the
//!   client's causal session) and applying it once the server's slot is
//!   done; a quorum member takes the entry its client computed.
//!
//! The server hands a service the requests of its groups and sends
//! whatever it replies (see [`super::server`]).

mod bft;
mod causal;
mod durable;
mod ship;

pub use bft::Carried;
pub use ship::{Replica, ReplicaBody, Shipped};

use super::counters;
use super::server::{Behaviour, FromReplica, Repair, Request, RequestKey, Status, ToReplica};
use crate::data::kv::{Entry, Op, Reply, Store};
use crate::route::View;
use crate::topology::{Consistency, Redundancy, Topology};
use agora_core::{Io, Message, NodeId, Protocol, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

// Routed on the node and moved once: the size of a request is no cost here.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Input {
    /// The control plane's view changed (routed, not injected).
    #[serde(skip_deserializing)]
    View(View),
    /// The server's request for this service (routed, not injected).
    #[serde(skip_deserializing)]
    Server(ToReplica),
    /// The node turned Byzantine (Some) or honest again (routed from the
    /// server, not injected: a silent node stops replicating too).
    #[serde(skip_deserializing)]
    Byzantine(Option<Behaviour>),
}

/// What a replica service tells the server (routed, not output).
pub type Output = FromReplica;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Msg {
    Causal(causal::Causal),
    Replica(Replica),
    Pbft(Box<Carried>),
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Replica(r) => match r.body {
                ReplicaBody::Ship(_) => "replica_ship",
                ReplicaBody::Acked(_) => "replica_acked",
                ReplicaBody::Pull => "replica_pull",
                ReplicaBody::State { .. } => "replica_state",
                ReplicaBody::Digest(_) => "replica_digest",
                ReplicaBody::ReadRepair { .. } => "replica_read_repair",
            },
            Msg::Pbft(c) => c.envelope.msg.kind(),
            Msg::Causal(c) => match c.body {
                causal::CausalBody::Update(_) => "causal_update",
                causal::CausalBody::Digest(_) => "causal_digest",
                causal::CausalBody::State(..) => "causal_state",
                causal::CausalBody::Want => "causal_want",
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Periodic work: digests, log shipping, disk syncs.
    Beat,
    /// A timer of a PBFT-ordered group's replica.
    Pbft { group: u16, timer: agora_pbft::Timer },
}

/// The replicas of one strategy's groups at one node.
pub struct Replicas {
    topo: Arc<Topology>,
    me: NodeId,
    /// The strategy whose groups this service keeps.
    strategy: Redundancy,
    /// Per group: whether this node keeps it here (a member, of this strategy).
    kept: Vec<bool>,
    /// Beats so far (every few, a digest goes out).
    beat: u64,
    /// The control plane's latest view: routes, reachability, partition side.
    view: View,
    /// What the node does as a Byzantine one: a silent node exchanges
    /// nothing, a corrupt one forges the data it sends its peers.
    byzantine: Option<Behaviour>,
    /// The seals checked of data from peers and clients.
    verified: super::verify::Verified,
    /// Per group: the causal log, if the group is causal and kept here.
    causal: Vec<Option<crate::causal::CausalLog<causal::Write>>>,
    /// Per group: this node's replica of the group's data (empty unless kept).
    stores: Vec<Store>,
    /// The stores' writes on their way to the disk.
    disk: durable::Disk,
    /// Per group: log shipping (active-passive, geographic and n-way groups).
    shipping: Vec<ship::Shipping>,
    /// Per group: this member's PBFT replica, if PBFT orders the group.
    bft: Vec<Option<bft::Bft>>,
}

impl Replicas {
    /// The service keeping `strategy`'s groups at node `me`.
    pub fn new(topo: Arc<Topology>, me: NodeId, strategy: Redundancy) -> Self {
        let kept: Vec<bool> = topo.groups.iter().map(|g| g.strategy == strategy && g.members.contains(&me)).collect();
        let bft = (0..topo.groups.len())
            .map(|g| Some(bft::Bft::new(topo.pbft[g].clone().filter(|_| kept[g])?, me)))
            .collect();
        Replicas {
            me,
            strategy,
            kept,
            beat: 0,
            view: View::default(),
            byzantine: None,
            verified: Default::default(),
            causal: Self::causal_logs(&topo, me, strategy),
            stores: vec![Store::new(); topo.groups.len()],
            disk: durable::Disk::new(topo.groups.len()),
            shipping: vec![ship::Shipping::default(); topo.groups.len()],
            bft,
            topo,
        }
    }

    /// This node's replica of `group`'s data (empty unless kept here, or
    /// while its PBFT replica is Byzantine).
    pub fn replica(&self, group: u16) -> &Store {
        match self.pbft_replica(group) {
            Some(r) => &r.machine().store,
            None => &self.stores[group as usize],
        }
    }

    /// This node's PBFT replica of `group`, if PBFT orders it and the
    /// replica is correct.
    pub fn pbft_replica(&self, group: u16) -> Option<&agora_pbft::Replica<crate::ordering::Machine>> {
        self.bft.get(group as usize)?.as_ref()?.replica()
    }

    /// Whether this service keeps `group` at this node.
    pub fn keeps(&self, group: u16) -> bool {
        self.kept.get(group as usize).copied().unwrap_or(false)
    }

    /// The causal logs' invariants.
    pub fn check(&self) -> Result<(), String> {
        for (g, log) in self.causal.iter().enumerate() {
            if let Some(e) = log.as_ref().and_then(|l| l.check().err()) {
                let name = &self.topo.node(self.me).name;
                return Err(format!("{name}: causal group {}: {e}", self.topo.groups[g].service));
            }
        }
        Ok(())
    }

    fn route(&mut self, to: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        super::send_along(&self.view, to, msg, io);
    }

    /// A request for this member: admitted (it waits for a slot), or
    /// refused while this member is catching up or behind the client's
    /// causal session.
    fn admit(
        &mut self,
        key: RequestKey,
        priority: u8,
        after: Option<crate::causal::VectorClock>,
        io: &mut Io<'_, Self>,
    ) {
        if !self.keeps(key.group) {
            return; // not a member: a client with a stale topology
        }
        if key.forwarded && self.applied_before(key.group, (key.client, key.id)).is_some() {
            return; // ordered already (the client's own copy came first)
        }
        if self.catching_up(key.group) || !self.covers(key.group, after.as_ref()) {
            // Restarted, or behind what the client already saw.
            self.reply(&key, None, Status::CatchingUp, io);
        } else {
            io.output(FromReplica::Admitted { key, priority });
        }
    }

    /// Its slot time done: applies the request, unless it needs a value
    /// this member lost to a damaged disk.
    fn serve(&mut self, key: RequestKey, io: &mut Io<'_, Self>) {
        if self.bft[key.group as usize].is_some() {
            self.bft_serve(key, io);
        } else if self.unknown(key.group, &key.key, &key.op) {
            io.count(counters::LOST_KEYS, 1);
            self.reply(&key, None, Status::Lost, io);
        } else {
            self.apply(key, io);
        }
    }

    /// Applies a request to this member's store, writes the change to disk,
    /// and answers — a strong group's member once a sync covers it.
    fn apply(&mut self, key: RequestKey, io: &mut Io<'_, Self>) {
        let strong = self.topo.groups[key.group as usize].consistency == Consistency::Strong;
        let request = (key.client, key.id);
        if let Some(entry) = key.put.clone() {
            // A quorum write: taken if newer (a retry changes nothing) and
            // sealed by its writers.
            if !self.verified.authentic(&self.topo, key.group, &key.key, &entry, io) {
                io.count(counters::PEER_FORGED, 1);
            } else if self.stores[key.group as usize].merge(&key.key, entry.clone()) {
                self.persist(key.group, &key.key, &entry, io);
            }
            let reply = Reply { applied: true, entry: self.stores[key.group as usize].get(&key.key) };
            return self.deliver(key, reply, io);
        }
        let again = key.op.writes().then(|| self.applied_before(key.group, request)).flatten();
        if again.is_none() && !self.serves_itself(key.group) {
            return self.await_order(key, io); // an n-way backup: the primary orders requests
        }
        let changed = again.is_none() && key.op.writes();
        let reply = match again {
            Some(r) => r, // a retry: answered as before, not applied twice
            None => self.stores[key.group as usize].apply(&key.key, &key.op, key.seal.as_ref()),
        };
        if changed && reply.applied {
            self.persist(key.group, &key.key, &reply.entry, io);
            self.causal_write(key.group, &key.key, &reply.entry, io);
        }
        if changed {
            // A compare that failed is shipped too: an n-way backup answers it.
            self.ship_write(key.group, &key.key, &reply, request);
            self.record_applied(key.group, request, &reply, io);
        } else if !key.op.writes() {
            self.ship_read(&key, &reply, io);
            self.read_repair(key.group, &key.key, &reply.entry, io);
        }
        if strong {
            self.sync(vec![(key, reply)], Vec::new(), io);
        } else {
            self.deliver(key, reply, io);
        }
    }

    /// Sends a reply: a write through [`Replicas::answer_write`] (a sync
    /// group's primary waits for its peers), anything else at once.
    pub(super) fn deliver(&mut self, key: RequestKey, reply: Reply, io: &mut Io<'_, Self>) {
        if key.op.writes() && key.put.is_none() {
            self.answer_write(key, reply, io);
        } else {
            self.reply(&key, Some(reply), Status::Ok, io);
        }
    }

    /// A client's read repair: the entry a quorum agreed on, taken if newer
    /// (and sealed by its writers).
    fn on_repair(&mut self, r: Repair, io: &mut Io<'_, Self>) {
        if !self.keeps(r.group) {
            return;
        }
        if !self.verified.authentic(&self.topo, r.group, &r.key, &r.entry, io) {
            io.count(counters::PEER_FORGED, 1);
        } else if self.stores[r.group as usize].repair(&r.key, r.entry.clone()) {
            io.count(counters::REPAIRED, 1);
            self.persist(r.group, &r.key, &r.entry, io);
        }
    }

    /// The server answers `key`'s client (unless a member forwarded it here).
    fn reply(&mut self, key: &RequestKey, reply: Option<Reply>, status: Status, io: &mut Io<'_, Self>) {
        if !key.forwarded {
            let clock = self.causal_clock(key.group);
            io.output(FromReplica::Reply { key: key.clone(), reply, status, clock });
        }
    }
}

impl Protocol for Replicas {
    type Msg = Msg;
    type Timer = Timer;
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        if self.disk.restored() {
            self.catch_up(io);
        }
        self.bft_start(io);
        io.set_timer(Duration::ZERO, Timer::Beat);
    }

    fn on_recover(&mut self, io: &mut Io<'_, Self>) {
        // Timers were lost with the crash.
        self.resync_after_crash(io);
        self.catch_up(io);
        self.bft_start(io);
        io.set_timer(Duration::ZERO, Timer::Beat);
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Causal(c) => self.on_causal(c, io),
            Msg::Replica(r) => self.on_replica(r, io),
            Msg::Pbft(c) => self.on_carried(*c, io),
        }
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match timer {
            Timer::Beat => {
                self.beat += 1;
                self.causal_digests(io);
                self.ship_beat(io);
                self.sync_if_written(io);
                io.set_timer(self.topo.params.detector.interval, Timer::Beat);
            }
            Timer::Pbft { group, timer } => self.bft_timer(group, timer, io),
        }
    }

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        match input {
            Input::View(view) => self.view = view,
            Input::Byzantine(b) => {
                self.byzantine = b;
                self.bft_turn(b);
            }
            Input::Server(ToReplica::Admit { key, priority, after }) => self.admit(key, priority, after, io),
            Input::Server(ToReplica::Serve(key)) => self.serve(key, io),
            Input::Server(ToReplica::Repair(r)) => self.on_repair(r, io),
        }
    }

    fn on_restore(&mut self, disk: &agora_core::storage::Durable) {
        self.restore(disk);
        self.bft_restore(disk);
    }

    fn on_synced(&mut self, done: agora_core::storage::SyncDone, io: &mut Io<'_, Self>) {
        self.synced(done, io);
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "strategy": self.strategy,
            "groups": self.kept.iter().enumerate().filter(|(_, k)| **k).map(|(g, _)| serde_json::json!({
                "service": self.topo.groups[g].service, "keys": self.keys(g),
            })).collect::<Vec<_>>(),
            "pbft": (0..self.bft.len()).filter_map(|g| self.bft_status(g)).collect::<Vec<_>>(),
            "causal": self.causal.iter().enumerate().filter_map(|(g, l)| {
                let l = l.as_ref()?;
                Some(serde_json::json!({
                    "service": self.topo.groups[g].service, "clock": l.clock().0, "pending": l.pending(),
                    "applied": l.applied, "transferred": l.transferred,
                }))
            }).collect::<Vec<_>>(),
        })
    }
}
