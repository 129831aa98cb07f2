//! The data plane, one service on the node: what a node serves and what it
//! asks for.
//!
//! * The server: a fixed number of slots, a priority queue behind them, load
//!   shedding past its limit; requests and answers relayed along the routes
//!   the control plane derives (routed to this service as its view).
//! * The replicas: this node's copy of each group it belongs to, kept by the
//!   group's strategy (log shipping, primary order, causal delivery,
//!   anti-entropy, quorums), on its disk.
//! * Carrying the node's client's requests and repairs (and their
//!   answers back) along the routes.
//!
//! Injected behaviour arrives as [`Input`]: Byzantine behaviours (a
//! protocol-level adversary — crash, omission and partition are the
//! runtime's own faults).

mod causal;
mod durable;
mod server;
mod ship;

pub use server::ServerStats;
use server::{Queued, RequestKey};
pub use ship::{Replica, ReplicaBody, Shipped};

pub use super::client::{Cause, Level};
use super::counters;
use crate::balance::Load;
use crate::data::kv::{Entry, Op, Reply, Store};
use crate::route::View;
use crate::topology::{Consistency, Redundancy, Topology};
use agora_core::{Io, Message, NodeId, Protocol, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// What a Byzantine node does to the answers it serves.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Every answer wrong.
    Corrupt,
    /// Right answers to some clients, wrong ones to others.
    Equivocate,
    /// Serves nothing (but still heartbeats: it looks alive).
    Silent,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Input {
    /// Turn Byzantine with this behaviour (the failure injector).
    Byzantine(Behaviour),
    /// Behave again.
    Honest,
    /// The control plane's view changed (routed on the node, not injected).
    #[serde(skip_deserializing)]
    View(View),
    /// The node's client sends a request (routed, not injected).
    #[serde(skip_deserializing)]
    Send(Request),
    /// The node's client sends a read repair (routed, not injected).
    #[serde(skip_deserializing)]
    Repair(Repair),
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The queue is full: load shed.
    Overloaded,
    /// The server is on the minority side of a partition.
    Isolated,
    /// The server lost the key's value to a damaged disk (until a write or
    /// a repair sets it again).
    Lost,
    /// The server restarted and is pulling its peers' state.
    CatchingUp,
    /// Sync active-passive: the write could not be made to stand on a
    /// majority (too few members reachable, or one held another value at
    /// its version: two members served at once).
    Unreplicated,
    /// An n-way backup's primary did not order the request in time (it is
    /// down or cut off): not the backup's own failure.
    Unordered,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Request {
    pub id: u64,
    pub client: NodeId,
    pub server: NodeId,
    pub group: u16,
    pub key: String,
    pub op: Op,
    pub priority: u8,
    pub attempt: u8,
    /// The client's clock when it sent this attempt, echoed in the answer.
    pub sent_ns: u64,
    pub hops: u8,
    /// A causal group's request: the client's session (what it saw).
    pub after: Option<crate::causal::VectorClock>,
    /// A quorum group's write: the entry the client computed, for the
    /// member to take if newer (the op is then the client's, for the record).
    pub put: Option<Entry>,
    /// An n-way member passing a client's request to the group's primary
    /// to order: the primary applies and ships it, and does not answer.
    #[serde(default)]
    pub forwarded: bool,
    /// An n-way attempt: every member it went to (a member forwards to the
    /// primary only if the client did not ask it).
    #[serde(default)]
    pub asked: Vec<NodeId>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Answer {
    pub id: u64,
    pub client: NodeId,
    pub server: NodeId,
    pub attempt: u8,
    /// What the operation gave (None unless the status is Ok).
    pub reply: Option<Reply>,
    pub status: Status,
    pub load: Load,
    pub sent_ns: u64,
    pub hops: u8,
    /// A causal group's member: its clock after the request.
    pub clock: Option<crate::causal::VectorClock>,
}

/// A client's read repair: the entry a quorum of an n-way group agreed
/// on, for a member that answered otherwise.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Repair {
    pub group: u16,
    pub to: NodeId,
    pub key: String,
    pub entry: Entry,
    pub hops: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Msg {
    Request(Request),
    Answer(Answer),
    Causal(causal::Causal),
    Repair(Repair),
    Replica(Replica),
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Request(_) => "request",
            Msg::Answer(_) => "answer",
            Msg::Repair(_) => "repair",
            Msg::Replica(r) => match r.body {
                ReplicaBody::Ship(_) => "replica_ship",
                ReplicaBody::Acked(_) => "replica_acked",
                ReplicaBody::Pull => "replica_pull",
                ReplicaBody::State { .. } => "replica_state",
                ReplicaBody::Digest(_) => "replica_digest",
                ReplicaBody::ReadRepair { .. } => "replica_read_repair",
            },
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
    /// Replicas' periodic work: digests, log shipping, disk syncs.
    Beat,
    /// The request in service slot job `job` is done.
    Served { job: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Output {
    /// An answer for this node's client (routed to it, not output).
    Answered(Answer),
    /// The injector turned this node Byzantine (ground truth for reports).
    TurnedByzantine { behaviour: Behaviour },
    /// The injector made this Byzantine node behave again.
    TurnedHonest,
}

/// The data plane of one node.
pub struct DataPlane {
    topo: Arc<Topology>,
    me: NodeId,
    /// Beats so far (every few, a digest goes out).
    beat: u64,
    /// The control plane's latest view: routes, reachability, partition side.
    view: View,
    // Server.
    busy: u32,
    queue: BinaryHeap<Queued>,
    in_service: BTreeMap<u64, RequestKey>,
    next_job: u64,
    busy_since: Time,
    stats: ServerStats,
    byzantine: Option<Behaviour>,
    /// When it last turned Byzantine, while it is.
    byzantine_since: Option<Time>,
    /// Per group: the causal log, if the group is causal and this node a member.
    causal: Vec<Option<crate::causal::CausalLog<causal::Write>>>,
    /// Per group: this node's replica of the group's data (empty unless a member).
    stores: Vec<Store>,
    /// The stores' writes on their way to the disk.
    disk: durable::Disk,
    /// Per group: log shipping (active-passive and geographic members).
    shipping: Vec<ship::Shipping>,
}

impl DataPlane {
    pub fn new(topo: Arc<Topology>, me: NodeId) -> Self {
        DataPlane {
            me,
            beat: 0,
            view: View::default(),
            busy: 0,
            queue: BinaryHeap::new(),
            in_service: BTreeMap::new(),
            next_job: 0,
            busy_since: Time::ZERO,
            stats: ServerStats::default(),
            byzantine: None,
            byzantine_since: None,
            causal: Self::causal_logs(&topo, me),
            stores: vec![Store::new(); topo.groups.len()],
            disk: durable::Disk::new(topo.groups.len()),
            shipping: vec![ship::Shipping::default(); topo.groups.len()],
            topo,
        }
    }

    /// This node's replica of `group`'s data (empty unless a member).
    pub fn replica(&self, group: u16) -> &Store {
        &self.stores[group as usize]
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
    /// The node's service slots.
    pub fn slots(&self) -> u32 {
        self.topo.node(self.me).slots
    }
    /// Busy slot-seconds up to `now`, including the current stretch.
    pub fn busy_slot_s(&self, now: Time) -> f64 {
        self.stats.busy_slot_s + self.busy as f64 * (now - self.busy_since).as_secs_f64()
    }

    /// The node's local invariants: slots and queue within their bounds, the
    /// server work-conserving, and the causal logs consistent.
    pub fn check(&self) -> Result<(), String> {
        let spec = self.topo.node(self.me);
        let name = &spec.name;
        if self.busy as usize != self.in_service.len() || self.busy > spec.slots {
            return Err(format!(
                "{name}: {} busy slots, {} requests in service, {} slots",
                self.busy,
                self.in_service.len(),
                spec.slots
            ));
        }
        if self.queue.len() > spec.queue_limit as usize {
            return Err(format!("{name}: {} queued beyond the limit {}", self.queue.len(), spec.queue_limit));
        }
        if !self.queue.is_empty() && self.busy < spec.slots {
            return Err(format!(
                "{name}: {} queued while {} of {} slots are free",
                self.queue.len(),
                spec.slots - self.busy,
                spec.slots
            ));
        }
        for (g, log) in self.causal.iter().enumerate() {
            if let Some(e) = log.as_ref().and_then(|l| l.check().err()) {
                return Err(format!("{name}: causal group {}: {e}", self.topo.groups[g].service));
            }
        }
        Ok(())
    }

    /// Sends `msg` one hop towards `to` along the control plane's routes
    /// (false if there is none).
    fn route(&mut self, to: NodeId, msg: Msg, io: &mut Io<'_, Self>) -> bool {
        match self.view.next_hop.get(to.index()).copied().flatten() {
            Some(hop) => {
                io.send(hop, msg);
                true
            }
            None => {
                io.count(counters::NO_ROUTE, 1);
                false
            }
        }
    }
}

impl Protocol for DataPlane {
    type Msg = Msg;
    type Timer = Timer;
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        self.busy_since = io.now();
        if self.disk.restored() {
            self.catch_up(io);
        }
        io.set_timer(Duration::ZERO, Timer::Beat);
    }

    fn on_recover(&mut self, io: &mut Io<'_, Self>) {
        // Timers and the requests in service were lost with the crash.
        self.account_busy(io.now());
        self.busy = 0;
        self.in_service.clear();
        self.queue.clear();
        self.resync_after_crash(io);
        self.catch_up(io);
        io.set_timer(Duration::ZERO, Timer::Beat);
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Request(r) => self.on_request(r, io),
            Msg::Answer(a) => self.on_answer(a, io),
            Msg::Causal(c) => self.on_causal(c, io),
            Msg::Repair(r) => self.on_repair(r, io),
            Msg::Replica(r) => self.on_replica(r, io),
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
            Timer::Served { job } => self.served(job, io),
        }
    }

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        match input {
            Input::Byzantine(b) => {
                self.byzantine = Some(b);
                self.byzantine_since = Some(io.now());
                io.output(Output::TurnedByzantine { behaviour: b });
            }
            Input::Honest => {
                if self.byzantine.take().is_some() {
                    io.output(Output::TurnedHonest);
                }
                self.byzantine_since = None;
            }
            Input::View(view) => self.view = view,
            Input::Send(r) => self.on_request(r, io),
            Input::Repair(r) => self.on_repair(r, io),
        }
    }

    fn on_restore(&mut self, disk: &agora_core::storage::Durable) {
        self.restore(disk);
    }

    fn on_synced(&mut self, done: agora_core::storage::SyncDone, io: &mut Io<'_, Self>) {
        self.synced(done, io);
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "served": self.stats.served,
            "busy_slots": self.busy,
            "queued": self.queue.len(),
            "byzantine_since_s": self.byzantine_since.map(|t| t.as_secs_f64()),
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
