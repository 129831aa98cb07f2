//! The data plane, one service on the node: what a node serves and what it
//! asks for.
//!
//! * The server: a fixed number of slots, a priority queue behind them, load
//!   shedding past its limit; requests and answers relayed along the routes
//!   the control plane derives (routed to this service as its view).
//! * The replicas: this node's copy of each group it belongs to, kept by the
//!   group's strategy (log shipping, primary order, causal delivery,
//!   anti-entropy, quorums), on its disk.
//! * The client (edge nodes by default): the workload — Poisson arrivals or
//!   a closed loop, a service drawn from the mix, a priority — each request
//!   sent with a deadline per attempt, retried with backoff and full jitter
//!   within a retry budget, and sent to a member chosen by the group's
//!   redundancy (the balancer for active-active and geographic groups, the
//!   first healthy member for active-passive, every member with a majority
//!   vote for n-way). Members that fail five times in a row are ejected for
//!   a while; members outvoted by a quorum are suspected Byzantine (the
//!   suspicion goes to the control plane, which reports it). When a group
//!   loses members the client fails over (in criticality order when several
//!   go at once) and applies the seed's cascading-failure levels: isolate,
//!   shed low-priority load, emergency (only high priority).
//!
//! Injected behaviour arrives as [`Input`]: Byzantine behaviours (a
//! protocol-level adversary — crash, omission and partition are the
//! runtime's own faults).

mod causal;
mod client;
mod durable;
mod server;
mod ship;

use client::Client;
pub use server::ServerStats;
use server::{Queued, RequestKey};
pub use ship::{Replica, ReplicaBody, Shipped};

use super::control::Detection;
use crate::balance::{Balancer, Load};
use crate::data::kv::{Entry, Op, Reply, Store};
use crate::route::View;
use crate::rpc::RetryBudget;
use crate::topology::{Consistency, Redundancy, Topology};
use agora_core::{Io, Message, NodeId, Protocol, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

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
    /// Heartbeats from `node` came back after a crash suspicion: it may
    /// have restarted, so the votes judge it afresh (routed, not injected).
    #[serde(skip_deserializing)]
    Back(NodeId),
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
    /// The client's periodic look at its groups (ejections, suspicions ending).
    Check,
    NextRequest,
    /// Closed loop: issue one request (n makes each arming distinct).
    Issue {
        n: u64,
    },
    /// Attempt `attempt` of request `id` has waited its timeout.
    Attempt {
        id: u64,
        attempt: u8,
    },
    Retry {
        id: u64,
    },
    /// The request in service slot job `job` is done.
    Served {
        job: u64,
    },
}

/// Why a request failed: a closed list, so every failed request is
/// accounted for by exactly one.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// No member of the group was reachable and trusted.
    NoReplica,
    /// An n-way group had fewer trusted members than its quorum, or its
    /// members' answers left no quorum agreeing, or a sync active-passive
    /// write met another value at a peer.
    BelowQuorum,
    /// The client (or the server it reached) was on a minority side.
    MinoritySide,
    /// The last attempt got no answer in time, or the request's deadline
    /// left no time for another.
    Deadline,
    /// The retry budget refused a retry.
    RetryBudget,
    /// The client shed it at once under a cascade level.
    Shed,
    /// The server's queue was full (load shed at admission).
    Admission,
    /// Every answer failed verification (authenticated data, a later stage).
    Forged,
}

impl Cause {
    pub const ALL: [Cause; 8] = [
        Cause::NoReplica,
        Cause::BelowQuorum,
        Cause::MinoritySide,
        Cause::Deadline,
        Cause::RetryBudget,
        Cause::Shed,
        Cause::Admission,
        Cause::Forged,
    ];

    /// The name reports and JSON give it.
    pub fn name(self) -> &'static str {
        match self {
            Cause::NoReplica => "no_replica",
            Cause::BelowQuorum => "below_quorum",
            Cause::MinoritySide => "minority_side",
            Cause::Deadline => "deadline",
            Cause::RetryBudget => "retry_budget",
            Cause::Shed => "shed",
            Cause::Admission => "admission",
            Cause::Forged => "forged",
        }
    }
}

/// The seed's cascading-failure levels for a group that lost members.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Healthy,
    /// Up to a third of the members lost: isolate them.
    Isolate,
    /// More lost, but some still serve: shed low-priority load.
    Shed,
    /// None left (or, n-way, no quorum): emergency, high priority only.
    Emergency,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Output {
    /// The client suspects `node` (Byzantine or unresponsive): routed to
    /// the control plane, which reports it.
    Suspect {
        node: NodeId,
        how: Detection,
    },
    /// Group `group` stopped using `from`; `to` serves now (active-passive).
    Failover {
        group: u16,
        from: NodeId,
        to: Option<NodeId>,
    },
    Cascade {
        group: u16,
        level: Level,
    },
    /// A client issued request `id` (its client is the node that output it).
    Issued {
        id: u64,
        group: u16,
        key: String,
        op: Op,
    },
    /// Request `id` ended: with the reply the client accepted, or failed.
    /// `sent`: an attempt went out, so a failed write may have taken effect.
    Done {
        id: u64,
        group: u16,
        ok: bool,
        latency_us: u64,
        attempts: u8,
        sent: bool,
        reply: Option<Reply>,
        /// Why it failed (None if it succeeded).
        cause: Option<Cause>,
    },
    /// The injector turned this node Byzantine (ground truth for reports).
    TurnedByzantine {
        behaviour: Behaviour,
    },
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
    client: Option<Client>,
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
        let n = topo.len();
        let client = topo.clients[me.index()].then(|| {
            let weights: Vec<(f64, f64, f64)> = topo
                .params
                .nodes
                .iter()
                .map(|s| (s.slots as f64 / (s.latency_ms * s.slow), s.latency_ms, s.throughput_mbps))
                .collect();
            Client {
                next_id: 0,
                requested: 0,
                issued: 0,
                finished: client::Ended::new(),
                next_arrival: None,
                pending: BTreeMap::new(),
                balancer: Balancer::new(topo.params.balancer, &weights, topo.groups.len()),
                budget: RetryBudget::new(&topo.params.rpc),
                failures: vec![0; n],
                ejected_until: vec![None; n],
                strikes: vec![0; n],
                standing: vec![client::Standing::Good; n],
                serving: topo.groups.iter().map(|g| g.members.iter().copied().collect()).collect(),
                sessions: topo
                    .groups
                    .iter()
                    .map(|g| {
                        (g.consistency == Consistency::Causal).then(|| crate::causal::VectorClock::new(g.members.len()))
                    })
                    .collect(),
                level: vec![Level::Healthy; topo.groups.len()],
                dirty: true,
            }
        });
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
            client,
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
    /// server work-conserving, and every request the client issued either
    /// ended once or still pending.
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
        if let Some(c) = &self.client {
            let open = c.pending.values().filter(|p| p.decided.is_none()).count() as u64;
            if c.finished.count + open != c.issued {
                return Err(format!("{name}: issued {} requests, {} ended, {open} open", c.issued, c.finished.count));
            }
        }
        for (g, log) in self.causal.iter().enumerate() {
            if let Some(e) = log.as_ref().and_then(|l| l.check().err()) {
                return Err(format!("{name}: causal group {}: {e}", self.topo.groups[g].service));
            }
        }
        Ok(())
    }

    fn arm(&mut self, io: &mut Io<'_, Self>) {
        let p = &self.topo.params;
        io.set_timer(Duration::ZERO, Timer::Beat);
        if self.client.is_some() {
            io.set_timer(p.detector.interval / 4, Timer::Check);
        }
        if self.client.is_some() {
            let start = p.workload.start_after;
            if p.workload.closed_loop > 0 {
                for k in 0..p.workload.closed_loop as u64 {
                    io.set_timer(start, Timer::Issue { n: u64::MAX - k });
                }
            } else if p.workload.rate > 0.0 {
                let gap = self.arrival_gap(io);
                io.set_timer(start + gap, Timer::NextRequest);
            }
        }
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
        if let Some(c) = &mut self.client {
            c.next_id = (io.rng().random::<u32>() as u64) << 32;
        }
        if self.disk.restored() {
            self.catch_up(io);
        }
        self.arm(io);
    }

    fn on_recover(&mut self, io: &mut Io<'_, Self>) {
        // Timers and the requests in service were lost with the crash.
        self.account_busy(io.now());
        self.busy = 0;
        self.in_service.clear();
        self.queue.clear();
        if let Some(c) = &mut self.client {
            c.pending.clear();
        }
        self.resync_after_crash(io);
        self.catch_up(io);
        self.arm(io);
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        self.issue_due(false, io);
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
            Timer::Check => {
                self.refresh_client(io);
                io.set_timer(self.topo.params.detector.interval / 4, Timer::Check);
            }
            Timer::NextRequest => self.next_request(io),
            Timer::Issue { .. } => self.issue(io),
            Timer::Attempt { id, attempt } => self.attempt_timed_out(id, attempt, io),
            Timer::Retry { id } => self.attempt(id, io),
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
            Input::View(view) => {
                self.view = view;
                if let Some(c) = &mut self.client {
                    c.dirty = true;
                }
            }
            Input::Back(node) => {
                if let Some(c) = &mut self.client {
                    // A restarted process is judged afresh by the votes too.
                    c.standing[node.index()] = client::Standing::Good;
                    c.strikes[node.index()] = 0;
                }
            }
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
            "client": self.client.as_ref().map(|c| serde_json::json!({
                "issued": c.issued,
                "ended": c.finished.count,
                // Every request made, those refused at once included.
                "requested": c.requested,
                "succeeded": c.finished.latency_us.len(),
                "failed_by_cause": c.finished.failed_by_cause,
                "latency_us": c.finished.buckets(),
            })),
        })
    }
}
