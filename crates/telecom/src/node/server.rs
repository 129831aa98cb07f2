//! The server, one service on the node: what every node does with the
//! requests that reach it.
//!
//! * Carrying requests, answers and read repairs a hop at a time along the
//!   routes the control plane derives (routed to this service as its view);
//!   the node's client hands its requests and repairs to the server and
//!   gets its answers from it.
//! * A fixed number of slots, a priority queue behind them, load shedding
//!   past the queue's limit.
//! * The replicas decide: a request for this node goes to the replica
//!   service of its group's strategy to admit (a member still catching up,
//!   or behind the client's session, refuses), then waits for a slot, and
//!   once served goes back to it to apply; whatever it replies, the server
//!   answers with its load.
//! * Injected Byzantine behaviour: a Byzantine server lies in its answers
//!   or stays silent (a protocol-level adversary — crash, omission and
//!   partition are the runtime's own faults). The replica services are told
//!   too, so a silent node also stops replicating.

use super::counters;
use crate::balance::Load;
use crate::data::kv::{Entry, Op, Reply, Seal, Sig};
use crate::route::View;
use crate::topology::{Consistency, Redundancy, Topology};
use agora_core::reading::Reading;
use agora_core::{Io, Message, NodeId, Protocol, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BinaryHeap};
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
    /// The right value at a version ahead of the real one (versions are
    /// the replicas', not sealed: the n-way vote catches this, nothing
    /// else can).
    ForgeVersion,
    /// Old signed data: the first entry it answered with for the key
    /// (stale, never forged).
    Replay,
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
    /// The node's client shares evidence with every other client (routed).
    #[serde(skip_deserializing)]
    Share(Evidence),
    /// A replica service's word on a request (routed, not injected).
    #[serde(skip_deserializing)]
    Replica(FromReplica),
}

/// What a replica service tells the server about a request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum FromReplica {
    /// Admitted: it waits for a slot.
    Admitted { key: RequestKey, priority: u8 },
    /// The answer to send (with the member's causal clock, if causal).
    Reply { key: RequestKey, reply: Option<Reply>, status: Status, clock: Option<crate::causal::VectorClock> },
    /// A request to carry to another member (an n-way backup forwards to its primary).
    Forward(Request),
}

/// What the server asks of the replica service of a group's strategy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum ToReplica {
    /// A request for this member: admit it or refuse (`after`: the
    /// client's causal session).
    Admit { key: RequestKey, priority: u8, after: Option<crate::causal::VectorClock> },
    /// The request's slot time is done: apply it and reply.
    Serve(RequestKey),
    /// A client's read repair for this member.
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
    /// The client's seal of the element the operation writes.
    #[serde(default)]
    pub seal: Option<Seal>,
    /// An n-way member passing a client's request to the group's primary
    /// to order: the primary applies and ships it, and does not answer.
    #[serde(default)]
    pub forwarded: bool,
    /// An n-way attempt: every member it went to (a member forwards to the
    /// primary only if the client did not ask it).
    #[serde(default)]
    pub asked: Vec<NodeId>,
    /// A PBFT-ordered group's request: the operation as its client
    /// authenticated it to every member (see [`crate::ordering`]); each
    /// attempt carries the same, so a retry is a retransmission.
    #[serde(default)]
    pub pbft: Option<Box<agora_pbft::Request>>,
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
    /// The server's signature of the data it answered with
    /// ([`Evidence::answer_bytes`]): what makes a forged answer evidence.
    #[serde(default)]
    pub sig: Option<Sig>,
}

/// Proof that `accused` served data no writer sealed: its signed answer
/// for `key` of `group`, shared by the client that caught it (`accuser`,
/// who signs it too). Anyone can check it; evidence that does not prove
/// this is ignored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Evidence {
    pub accused: NodeId,
    pub group: u16,
    pub key: String,
    pub entry: Entry,
    /// The accused's signature of [`Evidence::answer_bytes`].
    pub answer_sig: Sig,
    pub accuser: NodeId,
    /// The accuser's signature of the answer bytes and the answer's signature.
    pub accuser_sig: Sig,
}

impl Evidence {
    /// What a server signs when it answers with `entry` for `key` of `group`.
    pub fn answer_bytes(server: NodeId, group: u16, key: &str, entry: &Entry) -> Vec<u8> {
        let mut m = Vec::with_capacity(20 + key.len());
        m.extend_from_slice(b"agora-answer");
        m.extend_from_slice(&server.0.to_be_bytes());
        m.extend_from_slice(&group.to_be_bytes());
        m.extend_from_slice(&(key.len() as u32).to_be_bytes());
        m.extend_from_slice(key.as_bytes());
        m.extend_from_slice(&entry.to_bytes());
        m
    }

    /// What the accuser signs.
    pub fn accuser_bytes(&self) -> Vec<u8> {
        let mut m = Self::answer_bytes(self.accused, self.group, &self.key, &self.entry);
        m.extend_from_slice(&self.answer_sig.0);
        m
    }
}

/// Evidence on its way to a client, relayed like requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Shared {
    pub to: NodeId,
    pub hops: u8,
    pub evidence: Evidence,
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
    Repair(Repair),
    Evidence(Shared),
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Request(_) => "request",
            Msg::Answer(_) => "answer",
            Msg::Repair(_) => "repair",
            Msg::Evidence(_) => "evidence",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The request in service slot job `job` is done.
    Served { job: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Output {
    /// An answer for this node's client (routed to it, not output).
    Answered(Answer),
    /// Evidence another client shared, for this node's client (routed).
    Evidence(Evidence),
    /// For the replica service of `strategy` (routed to it, not output).
    Replica { strategy: Redundancy, what: ToReplica },
    /// The injector turned this node Byzantine (ground truth for reports;
    /// the replica services are told too).
    TurnedByzantine { behaviour: Behaviour },
    /// The injector made this Byzantine node behave again.
    TurnedHonest,
}

/// The server of one node.
pub struct Server {
    topo: Arc<Topology>,
    me: NodeId,
    /// The control plane's latest view: routes, reachability, partition side.
    view: View,
    busy: u32,
    queue: BinaryHeap<Queued>,
    in_service: BTreeMap<u64, RequestKey>,
    next_job: u64,
    busy_since: Time,
    stats: ServerStats,
    byzantine: Option<Behaviour>,
    /// When it last turned Byzantine, while it is.
    byzantine_since: Option<Time>,
    /// The first entry it answered with per (group, key): what a replaying
    /// Byzantine server serves.
    first_answers: std::collections::HashMap<(u16, String), Entry>,
}

/// Keys whose first answer a server remembers (for replay).
const FIRST_ANSWERS_KEPT: usize = 4096;

/// A request waiting in a server's queue: high priority first, then FIFO.
#[derive(Debug, PartialEq, Eq)]
pub struct Queued {
    pub priority: u8,
    pub seq: u64,
    pub req: RequestKey,
}

/// A request at the member that serves it.
#[derive(Debug, PartialEq, Eq, Clone, Serialize, Deserialize)]
pub struct RequestKey {
    pub id: u64,
    pub client: NodeId,
    pub group: u16,
    pub key: String,
    pub op: Op,
    pub put: Option<Entry>,
    pub seal: Option<Seal>,
    pub attempt: u8,
    pub sent_ns: u64,
    pub arrived: Time,
    /// Forwarded to this primary by a member: applied, not answered.
    pub forwarded: bool,
    /// The members this attempt went to (n-way groups).
    pub asked: Vec<NodeId>,
    /// A PBFT-ordered group's request (see [`Request::pbft`]).
    pub pbft: Option<Box<agora_pbft::Request>>,
}

impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&o.priority).then(o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// What a server measured, for the reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerStats {
    pub served: u64,
    pub transactions: u64,
    /// Σ busy slots × time, in slot-seconds.
    pub busy_slot_s: f64,
    /// Σ (queue + service) time of served requests, in seconds.
    pub residence_s: f64,
    pub max_queue: u64,
    pub shed: u64,
}

impl Server {
    fn on_request(&mut self, r: Request, io: &mut Io<'_, Self>) {
        if r.server != self.me {
            if r.hops < 32 {
                self.route(r.server, Msg::Request(Request { hops: r.hops + 1, ..r }), io);
            }
            return;
        }
        if self.byzantine == Some(Behaviour::Silent) {
            return;
        }
        let Some(strategy) = self.topo.groups.get(r.group as usize).map(|g| g.strategy) else { return };
        let key = RequestKey {
            id: r.id,
            client: r.client,
            group: r.group,
            key: r.key,
            op: r.op,
            put: r.put,
            seal: r.seal,
            attempt: r.attempt,
            sent_ns: r.sent_ns,
            arrived: io.now(),
            forwarded: r.forwarded,
            asked: r.asked,
            pbft: r.pbft,
        };
        if self.view.isolated && !self.topo.groups[key.group as usize].serves_when_isolated() {
            self.reply(key, None, Status::Isolated, None, io);
        } else {
            let what = ToReplica::Admit { key, priority: r.priority, after: r.after };
            io.output(Output::Replica { strategy, what });
        }
    }

    /// A request the replica service admitted: served now, queued, or shed.
    fn admitted(&mut self, key: RequestKey, priority: u8, io: &mut Io<'_, Self>) {
        if self.busy < self.topo.node(self.me).slots {
            self.start(key, io);
        } else if self.queue.len() < self.topo.node(self.me).queue_limit as usize {
            let seq = self.next_job;
            self.next_job += 1;
            self.queue.push(Queued { priority, seq, req: key });
            self.stats.max_queue = self.stats.max_queue.max(self.queue.len() as u64);
        } else {
            self.stats.shed += 1;
            io.count(counters::OVERLOADED, 1);
            self.reply(key, None, Status::Overloaded, None, io);
        }
    }

    /// An answer: this node's client's (handed to it), or relayed a hop on.
    pub fn on_answer(&mut self, a: Answer, io: &mut Io<'_, Self>) {
        if a.client == self.me {
            io.output(Output::Answered(a));
        } else if a.hops < 32 {
            self.route(a.client, Msg::Answer(Answer { hops: a.hops + 1, ..a }), io);
        }
    }

    /// Evidence for this node's client, or relayed a hop on.
    fn on_evidence(&mut self, e: Shared, io: &mut Io<'_, Self>) {
        if e.to == self.me {
            io.output(Output::Evidence(e.evidence));
        } else if e.hops < 32 {
            self.route(e.to, Msg::Evidence(Shared { hops: e.hops + 1, ..e }), io);
        }
    }

    fn on_repair(&mut self, r: Repair, io: &mut Io<'_, Self>) {
        if r.to != self.me {
            if r.hops < 32 {
                self.route(r.to, Msg::Repair(Repair { hops: r.hops + 1, ..r }), io);
            }
            return;
        }
        if let Some(g) = self.topo.groups.get(r.group as usize) {
            io.output(Output::Replica { strategy: g.strategy, what: ToReplica::Repair(r) });
        }
    }

    pub fn account_busy(&mut self, now: Time) {
        self.stats.busy_slot_s += self.busy as f64 * (now - self.busy_since).as_secs_f64();
        self.busy_since = now;
    }

    pub fn start(&mut self, key: RequestKey, io: &mut Io<'_, Self>) {
        self.account_busy(io.now());
        self.busy += 1;
        let job = self.next_job;
        self.next_job += 1;
        let spec = self.topo.node(self.me);
        let j = self.topo.params.workload.service_jitter;
        let factor = 1.0 + j * (2.0 * io.rng().random::<f64>() - 1.0);
        let scale = self.topo.params.workload.service_scale;
        let service = Duration::from_secs_f64(spec.latency_ms * spec.slow * scale * factor / 1e3);
        self.in_service.insert(job, key);
        if service.is_zero() {
            // Free service (service_scale = 0): at once, not on the next timer tick.
            return self.served(job, io);
        }
        io.set_timer(service, Timer::Served { job });
    }

    fn served(&mut self, job: u64, io: &mut Io<'_, Self>) {
        let Some(key) = self.in_service.remove(&job) else { return };
        self.account_busy(io.now());
        self.busy -= 1;
        self.stats.served += 1;
        self.stats.residence_s += (io.now() - key.arrived).as_secs_f64();
        let g = &self.topo.groups[key.group as usize];
        self.stats.transactions += (g.consistency == Consistency::Strong) as u64;
        io.output(Output::Replica { strategy: g.strategy, what: ToReplica::Serve(key) });
        if let Some(next) = self.queue.pop() {
            self.start(next.req, io);
        }
    }

    /// What a Byzantine member makes of a reply.
    fn lie(&mut self, key: &RequestKey, mut reply: Reply, io: &mut Io<'_, Self>) -> Reply {
        let kept = (key.group, key.key.clone());
        if self.first_answers.len() < FIRST_ANSWERS_KEPT {
            self.first_answers.entry(kept.clone()).or_insert_with(|| reply.entry.clone());
        }
        let corrupt = match self.byzantine {
            Some(Behaviour::Corrupt) => true,
            Some(Behaviour::Equivocate) => key.client.0 % 2 == 1,
            Some(Behaviour::ForgeVersion) => {
                reply.entry.version += 1 + io.rng().random_range(0..8);
                false
            }
            Some(Behaviour::Replay) => {
                if let Some(old) = self.first_answers.get(&kept) {
                    reply.entry = old.clone();
                }
                false
            }
            Some(Behaviour::Silent) | None => false,
        };
        if corrupt {
            // A value no client wrote, at a version ahead of the real one.
            reply.entry.value = format!("forged-{:x};", io.rng().random::<u32>()).into_bytes();
            reply.entry.version += 1 + io.rng().random_range(0..8);
        }
        reply
    }

    pub fn load(&self) -> Load {
        let spec = self.topo.node(self.me);
        let transactions = self
            .in_service
            .values()
            .filter(|k| self.topo.groups[k.group as usize].consistency == crate::topology::Consistency::Strong)
            .count();
        Load {
            cpu: self.busy as f32 / spec.slots as f32,
            memory: self.queue.len() as f32 / spec.queue_limit.max(1) as f32,
            transactions: transactions as f32 / spec.slots as f32,
        }
    }

    /// Answers `key`'s client (a Byzantine server lies first), unless a
    /// member forwarded the request here: that member answers.
    fn reply(
        &mut self,
        key: RequestKey,
        reply: Option<Reply>,
        status: Status,
        clock: Option<crate::causal::VectorClock>,
        io: &mut Io<'_, Self>,
    ) {
        if key.forwarded {
            return;
        }
        let reply = match reply {
            Some(r) if status == Status::Ok => Some(self.lie(&key, r, io)),
            r => r,
        };
        // Signed: a forged answer is then proof of who forged it.
        let sig = reply.as_ref().and_then(|r| {
            let signed = Evidence::answer_bytes(self.me, key.group, &key.key, &r.entry);
            io.sign(&signed).map(|s| Sig(s.to_bytes()))
        });
        let a = Answer {
            id: key.id,
            client: key.client,
            server: self.me,
            attempt: key.attempt,
            reply,
            status,
            load: self.load(),
            sent_ns: key.sent_ns,
            hops: 0,
            clock,
            sig,
        };
        self.on_answer(a, io);
    }

    fn route(&mut self, to: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        super::send_along(&self.view, to, msg, io);
    }
}

impl Server {
    pub fn new(topo: Arc<Topology>, me: NodeId) -> Self {
        Server {
            topo,
            me,
            view: View::default(),
            busy: 0,
            queue: BinaryHeap::new(),
            in_service: BTreeMap::new(),
            next_job: 0,
            busy_since: Time::ZERO,
            stats: ServerStats::default(),
            byzantine: None,
            byzantine_since: None,
            first_answers: Default::default(),
        }
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

    /// The server's invariants: slots and queue within their bounds, and
    /// work-conserving.
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
        Ok(())
    }
}

impl Protocol for Server {
    type Msg = Msg;
    type Timer = Timer;
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        self.busy_since = io.now();
    }

    fn on_recover(&mut self, io: &mut Io<'_, Self>) {
        // Timers and the requests in service were lost with the crash.
        self.account_busy(io.now());
        self.busy = 0;
        self.in_service.clear();
        self.queue.clear();
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Request(r) => self.on_request(r, io),
            Msg::Answer(a) => self.on_answer(a, io),
            Msg::Repair(r) => self.on_repair(r, io),
            Msg::Evidence(e) => self.on_evidence(e, io),
        }
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match timer {
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
            Input::Share(evidence) => {
                let clients: Vec<NodeId> = (0..self.topo.len() as u32)
                    .map(NodeId)
                    .filter(|&n| n != self.me && self.topo.clients[n.index()])
                    .collect();
                for to in clients {
                    self.route(to, Msg::Evidence(Shared { to, hops: 0, evidence: evidence.clone() }), io);
                }
            }
            Input::Replica(FromReplica::Admitted { key, priority }) => self.admitted(key, priority, io),
            Input::Replica(FromReplica::Reply { key, reply, status, clock }) => {
                self.reply(key, reply, status, clock, io)
            }
            Input::Replica(FromReplica::Forward(r)) => {
                io.count(counters::FORWARDED, 1);
                self.on_request(r, io)
            }
        }
    }

    fn health(&self) -> Result<(), String> {
        match self.byzantine_since {
            Some(t) => Err(format!("Byzantine: it has answered falsely since {:.3} s", t.as_secs_f64())),
            None => Ok(()),
        }
    }

    fn readings(&self, out: &mut Vec<Reading>) {
        out.push(Reading::gauge(
            "telecom_byzantine",
            "1 while this node's server answers falsely (a Byzantine fault; its /health then fails)",
            vec![],
            if self.byzantine_since.is_some() { 1.0 } else { 0.0 },
        ));
        out.push(Reading::gauge(
            "telecom_server_busy_slots",
            "Server slots serving a request now",
            vec![],
            self.busy as f64,
        ));
        out.push(Reading::gauge(
            "telecom_server_queued",
            "Requests waiting for a server slot",
            vec![],
            self.queue.len() as f64,
        ));
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "served": self.stats.served,
            "busy_slots": self.busy,
            "queued": self.queue.len(),
            "byzantine_since_s": self.byzantine_since.map(|t| t.as_secs_f64()),
        })
    }
}
