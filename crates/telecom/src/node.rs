//! One node of the edge–core–cloud system, as a protocol on `agora-core`:
//! the same code in the simulator and on real processes.
//!
//! Every node
//! * sends numbered heartbeats to its neighbours and watches theirs with a
//!   phi-accrual detector (crash) and a loss window (omission);
//! * floods its links' health as link state and derives routes, reachability
//!   and partition membership from what it holds ([`crate::route`]);
//! * serves the requests of the groups it belongs to: a fixed number of
//!   slots, a priority queue behind them, load shedding past its limit;
//! * relays requests and answers along its routes.
//!
//! A client node (edge nodes by default) also issues the workload: Poisson
//! arrivals, a service drawn from the mix, a priority; each request is sent
//! with a deadline per attempt, retried with backoff and full jitter within
//! a retry budget, and sent to a member chosen by the group's redundancy
//! (the balancer for active-active and geographic groups, the first healthy
//! member for active-passive, every member with a majority vote for n-way).
//! Members that fail five times in a row are ejected for a while; members
//! outvoted by a quorum are suspected Byzantine. When a group loses members
//! the client fails over (in criticality order when several go at once) and
//! applies the seed's cascading-failure levels: isolate, shed low-priority
//! load, emergency (only high priority).
//!
//! Injected behaviour arrives as [`Input`]: Byzantine behaviours (a
//! protocol-level adversary — crash, omission and partition are the
//! runtime's own faults).

use crate::balance::{Balancer, Load};
use crate::phi::Phi;
use crate::route::{Health, LinkState, View};
use crate::rpc::{backoff, RetryBudget};
use crate::topology::{Redundancy, Topology};
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

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Input {
    /// Turn Byzantine with this behaviour (the failure injector).
    Byzantine(Behaviour),
    /// Behave again.
    Honest,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The queue is full: load shed.
    Overloaded,
    /// The server is on the minority side of a partition.
    Isolated,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Request {
    pub id: u64,
    pub client: NodeId,
    pub server: NodeId,
    pub group: u16,
    pub key: u64,
    pub priority: u8,
    pub attempt: u8,
    /// The client's clock when it sent this attempt, echoed in the answer.
    pub sent_ns: u64,
    pub hops: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Answer {
    pub id: u64,
    pub client: NodeId,
    pub server: NodeId,
    pub attempt: u8,
    pub value: u64,
    pub status: Status,
    pub load: Load,
    pub sent_ns: u64,
    pub hops: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Msg {
    Heartbeat { seq: u64 },
    LinkState(LinkState),
    Request(Request),
    Answer(Answer),
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Heartbeat { .. } => "heartbeat",
            Msg::LinkState(_) => "link_state",
            Msg::Request(_) => "request",
            Msg::Answer(_) => "answer",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    Beat,
    Check,
    Refresh,
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

/// How a failure was detected.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// Phi-accrual: a neighbour's heartbeats stopped.
    Crash,
    /// Most of the node's neighbours lose its heartbeats.
    Omission,
    /// Outvoted by a quorum of its group.
    Byzantine,
    /// Failed `eject_after` requests in a row (outlier ejection).
    Unresponsive,
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
    Suspect {
        node: NodeId,
        how: Detection,
    },
    Trust {
        node: NodeId,
    },
    /// This node's side of the network is a minority (or no longer is).
    Isolated {
        isolated: bool,
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
    /// A request ended.
    Done {
        group: u16,
        ok: bool,
        latency_us: u64,
        attempts: u8,
        key: u64,
        value: u64,
    },
    /// The injector turned this node Byzantine (ground truth for reports).
    TurnedByzantine {
        behaviour: Behaviour,
    },
}

/// The answer every honest server gives for `key` of group `group`.
pub fn answer(group: u16, key: u64) -> u64 {
    // SplitMix64 finaliser: a fixed, well-mixed function.
    let mut z = key ^ ((group as u64) << 48) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A neighbour as this node watches it.
#[derive(Clone, Debug)]
struct Watch {
    node: NodeId,
    phi: Phi,
    down: bool,
    /// Last heartbeat number and the recent arrivals (true) and gaps (false).
    seq: Option<u64>,
    window: VecDeque<bool>,
    lost: usize,
    lossy: bool,
}

/// A request waiting in a server's queue: high priority first, then FIFO.
#[derive(Debug, PartialEq, Eq)]
struct Queued {
    priority: u8,
    seq: u64,
    req: RequestKey,
}

#[derive(Debug, PartialEq, Eq, Clone)]
struct RequestKey {
    id: u64,
    client: NodeId,
    group: u16,
    key: u64,
    attempt: u8,
    sent_ns: u64,
    arrived: Time,
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

/// One request in flight at its client.
#[derive(Clone, Debug)]
struct Pending {
    id: u64,
    group: u16,
    key: u64,
    priority: u8,
    started: Time,
    attempt: u8,
    /// Servers asked in the current attempt, and every one asked so far.
    outstanding: SmallVec<[NodeId; 3]>,
    tried: SmallVec<[NodeId; 4]>,
    /// n-way: answers so far (server, value); the decided value once a quorum agrees.
    votes: SmallVec<[(NodeId, u64); 3]>,
    decided: Option<u64>,
}

impl Pending {
    /// The request's end, reported once.
    fn done(&self, ok: bool, value: u64, now: Time, finished: &mut u64, closed_loop: bool, io: &mut Io<'_, Node>) {
        *finished += 1;
        io.count(if ok { counters::SUCCEEDED } else { counters::FAILED }, 1);
        if closed_loop {
            io.set_timer(Duration::ZERO, Timer::Issue { n: self.id });
        }
        io.output(Output::Done {
            group: self.group,
            ok,
            latency_us: (now - self.started).as_micros() as u64,
            attempts: self.attempt + 1,
            key: self.key,
            value,
        });
    }
}

/// The client half of a node.
#[derive(Clone, Debug)]
struct Client {
    next_id: u64,
    /// Requests that entered `pending`, and those of them that ended.
    issued: u64,
    finished: u64,
    pending: BTreeMap<u64, Pending>,
    balancer: Balancer,
    budget: RetryBudget,
    failures: Vec<u32>,
    ejected_until: Vec<Option<Time>>,
    strikes: Vec<u32>,
    byzantine: Vec<bool>,
    /// Per group: the members serving now, the level, whether to recompute.
    serving: Vec<SmallVec<[NodeId; 4]>>,
    level: Vec<Level>,
    dirty: bool,
}

pub struct Node {
    topo: Arc<Topology>,
    me: NodeId,
    beat: u64,
    watches: Vec<Watch>,
    db: Vec<Option<LinkState>>,
    my_seq: u64,
    view: View,
    view_dirty: bool,
    reported_omission: Vec<bool>,
    // Server.
    busy: u32,
    queue: BinaryHeap<Queued>,
    in_service: BTreeMap<u64, RequestKey>,
    next_job: u64,
    busy_since: Time,
    stats: ServerStats,
    byzantine: Option<Behaviour>,
    client: Option<Client>,
}

impl Node {
    pub fn new(topo: Arc<Topology>, me: NodeId) -> Self {
        let d = &topo.params.detector;
        let watches = topo.neighbours[me.index()]
            .iter()
            .map(|nb| Watch {
                node: nb.node,
                phi: Phi::new(d),
                down: false,
                seq: None,
                window: VecDeque::new(),
                lost: 0,
                lossy: false,
            })
            .collect();
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
                issued: 0,
                finished: 0,
                pending: BTreeMap::new(),
                balancer: Balancer::new(topo.params.balancer, &weights, topo.groups.len()),
                budget: RetryBudget::new(&topo.params.rpc),
                failures: vec![0; n],
                ejected_until: vec![None; n],
                strikes: vec![0; n],
                byzantine: vec![false; n],
                serving: topo.groups.iter().map(|g| g.members.iter().copied().collect()).collect(),
                level: vec![Level::Healthy; topo.groups.len()],
                dirty: true,
            }
        });
        Node {
            me,
            beat: 0,
            watches,
            db: vec![None; n],
            my_seq: 0,
            view: View::default(),
            view_dirty: true,
            reported_omission: vec![false; n],
            busy: 0,
            queue: BinaryHeap::new(),
            in_service: BTreeMap::new(),
            next_job: 0,
            busy_since: Time::ZERO,
            stats: ServerStats::default(),
            byzantine: None,
            client,
            topo,
        }
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
    /// The first hop this node routes each destination through.
    pub fn next_hops(&self) -> &[Option<NodeId>] {
        &self.view.next_hop
    }
    pub fn is_isolated(&self) -> bool {
        self.view.isolated
    }
    pub fn suspects(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.watches.iter().filter(|w| w.down).map(|w| w.node)
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
            if c.finished + open != c.issued {
                return Err(format!("{name}: issued {} requests, {} ended, {open} open", c.issued, c.finished));
            }
        }
        Ok(())
    }

    fn arm(&mut self, io: &mut Io<'_, Self>) {
        let p = &self.topo.params;
        io.set_timer(Duration::ZERO, Timer::Beat);
        io.set_timer(p.detector.interval / 4, Timer::Check);
        io.set_timer(Duration::ZERO, Timer::Refresh);
        if self.client.is_some() {
            if p.workload.closed_loop > 0 {
                for k in 0..p.workload.closed_loop as u64 {
                    io.set_timer(Duration::ZERO, Timer::Issue { n: u64::MAX - k });
                }
            } else if p.workload.rate > 0.0 {
                let gap = self.arrival_gap(io);
                io.set_timer(gap, Timer::NextRequest);
            }
        }
    }

    fn arrival_gap(&self, io: &mut Io<'_, Self>) -> Duration {
        let u = 1.0 - io.rng().random::<f64>();
        Duration::from_secs_f64(-u.ln() / self.topo.params.workload.rate)
    }

    // ---- detection and link state ----

    fn on_heartbeat(&mut self, from: NodeId, seq: u64, io: &mut Io<'_, Self>) {
        let p = &self.topo.params;
        let Some(w) = self.watches.iter_mut().find(|w| w.node == from) else { return };
        let now = io.now();
        let mut changed = false;
        if w.down {
            // Back (or restarted): judge it afresh.
            w.down = false;
            w.phi = Phi::new(&p.detector);
            io.output(Output::Trust { node: from });
            changed = true;
        }
        w.phi.heartbeat(now, &p.detector);
        let window = p.omission.window;
        match w.seq {
            Some(last) if seq > last => {
                for _ in last + 1..seq.min(last + 1 + window as u64) {
                    w.window.push_back(false);
                    w.lost += 1;
                }
                w.window.push_back(true);
            }
            Some(last) if seq == last => {} // a duplicate
            _ => {
                // First heartbeat, or a restart: start counting again.
                w.window.clear();
                w.lost = 0;
                w.window.push_back(true);
            }
        }
        w.seq = Some(seq);
        while w.window.len() > window {
            if !w.window.pop_front().expect("non-empty") {
                w.lost -= 1;
            }
        }
        let lossy = w.window.len() * 2 >= window && w.lost as f64 > p.omission.threshold * w.window.len() as f64;
        if lossy != w.lossy {
            w.lossy = lossy;
            changed = true;
        }
        if changed {
            self.publish(io);
        }
    }

    fn tick(&mut self, io: &mut Io<'_, Self>) {
        let topo = self.topo.clone();
        let p = &topo.params;
        let now = io.now();
        let mut changed = false;
        for w in &mut self.watches {
            if !w.down && w.phi.phi(now, &p.detector) > p.detector.threshold {
                w.down = true;
                changed = true;
                io.output(Output::Suspect { node: w.node, how: Detection::Crash });
            }
        }
        if changed {
            self.publish(io);
        }
        self.refresh_view(io);
        self.refresh_client(io);
        io.set_timer(p.detector.interval / 4, Timer::Check);
    }

    /// Floods this node's link health.
    fn publish(&mut self, io: &mut Io<'_, Self>) {
        self.my_seq = self.my_seq.max(io.now().as_nanos()).saturating_add(1).max(self.my_seq + 1);
        let links = self
            .watches
            .iter()
            .map(|w| {
                let h = if w.down {
                    Health::Down
                } else if w.lossy {
                    Health::Lossy
                } else {
                    Health::Up
                };
                (w.node, h)
            })
            .collect();
        let ls = LinkState { origin: self.me, seq: self.my_seq, links };
        for w in &self.watches {
            io.send(w.node, Msg::LinkState(ls.clone()));
        }
        self.db[self.me.index()] = Some(ls);
        self.view_dirty = true;
    }

    fn on_link_state(&mut self, from: NodeId, ls: LinkState, io: &mut Io<'_, Self>) {
        if ls.origin == self.me {
            return;
        }
        let (origin, copy) = (ls.origin, ls.clone());
        let Some(changed) = crate::route::accept(&mut self.db, ls) else { return };
        for w in &self.watches {
            if w.node != from && w.node != origin {
                io.send(w.node, Msg::LinkState(copy.clone()));
            }
        }
        self.view_dirty |= changed;
    }

    fn refresh_view(&mut self, io: &mut Io<'_, Self>) {
        if !self.view_dirty {
            return;
        }
        self.view_dirty = false;
        let was = self.view.isolated;
        self.view = View::derive(&self.topo, self.me, &self.db);
        if self.view.isolated != was {
            io.output(Output::Isolated { isolated: self.view.isolated });
        }
        for x in 0..self.topo.len() {
            let (now, before) = (self.view.omission[x], self.reported_omission[x]);
            if now != before && NodeId(x as u32) != self.me {
                self.reported_omission[x] = now;
                io.output(if now {
                    Output::Suspect { node: NodeId(x as u32), how: Detection::Omission }
                } else {
                    Output::Trust { node: NodeId(x as u32) }
                });
            }
        }
        if let Some(c) = &mut self.client {
            c.dirty = true;
        }
    }

    // ---- routing ----

    /// Sends `msg` one hop towards `to` (false if there is no route).
    fn route(&mut self, to: NodeId, msg: Msg, io: &mut Io<'_, Self>) -> bool {
        if self.view_dirty {
            self.refresh_view(io);
        }
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

    // ---- serving ----

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
        let key = RequestKey {
            id: r.id,
            client: r.client,
            group: r.group,
            key: r.key,
            attempt: r.attempt,
            sent_ns: r.sent_ns,
            arrived: io.now(),
        };
        if self.view.isolated {
            self.reply(&key, 0, Status::Isolated, io);
        } else if self.busy < self.topo.node(self.me).slots {
            self.start(key, io);
        } else if self.queue.len() < self.topo.node(self.me).queue_limit as usize {
            let seq = self.next_job;
            self.next_job += 1;
            self.queue.push(Queued { priority: r.priority, seq, req: key });
            self.stats.max_queue = self.stats.max_queue.max(self.queue.len() as u64);
        } else {
            self.stats.shed += 1;
            io.count(counters::OVERLOADED, 1);
            self.reply(&key, 0, Status::Overloaded, io);
        }
    }

    fn account_busy(&mut self, now: Time) {
        self.stats.busy_slot_s += self.busy as f64 * (now - self.busy_since).as_secs_f64();
        self.busy_since = now;
    }

    fn start(&mut self, key: RequestKey, io: &mut Io<'_, Self>) {
        self.account_busy(io.now());
        self.busy += 1;
        let job = self.next_job;
        self.next_job += 1;
        let spec = self.topo.node(self.me);
        let j = self.topo.params.workload.service_jitter;
        let factor = 1.0 + j * (2.0 * io.rng().random::<f64>() - 1.0);
        let service = Duration::from_secs_f64(spec.latency_ms * spec.slow * factor / 1e3);
        self.in_service.insert(job, key);
        io.set_timer(service, Timer::Served { job });
    }

    fn served(&mut self, job: u64, io: &mut Io<'_, Self>) {
        let Some(key) = self.in_service.remove(&job) else { return };
        self.account_busy(io.now());
        self.busy -= 1;
        self.stats.served += 1;
        self.stats.residence_s += (io.now() - key.arrived).as_secs_f64();
        if self.topo.groups[key.group as usize].consistency == crate::topology::Consistency::Strong {
            self.stats.transactions += 1;
        }
        let honest = answer(key.group, key.key);
        let value = match self.byzantine {
            Some(Behaviour::Corrupt) => honest ^ (io.rng().random::<u64>() | 1),
            Some(Behaviour::Equivocate) if key.client.0 % 2 == 1 => honest ^ 1,
            _ => honest,
        };
        self.reply(&key, value, Status::Ok, io);
        if let Some(next) = self.queue.pop() {
            self.start(next.req, io);
        }
    }

    fn load(&self) -> Load {
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

    fn reply(&mut self, key: &RequestKey, value: u64, status: Status, io: &mut Io<'_, Self>) {
        let a = Answer {
            id: key.id,
            client: key.client,
            server: self.me,
            attempt: key.attempt,
            value,
            status,
            load: self.load(),
            sent_ns: key.sent_ns,
            hops: 0,
        };
        if key.client == self.me {
            self.on_answer(a, io);
        } else {
            self.route(key.client, Msg::Answer(a), io);
        }
    }

    // ---- client ----

    fn next_request(&mut self, io: &mut Io<'_, Self>) {
        let gap = self.arrival_gap(io);
        io.set_timer(gap, Timer::NextRequest);
        self.issue(io);
    }

    /// Issues one request: a service from the mix, a priority, a key.
    fn issue(&mut self, io: &mut Io<'_, Self>) {
        let topo = self.topo.clone();
        let w = &topo.params.workload;
        let total = *topo.mix.last().expect("a workload has groups");
        let x = io.rng().random::<f64>() * total;
        let group = topo.mix.iter().position(|&c| x < c).unwrap_or(topo.mix.len() - 1) as u16;
        let psum: f64 = w.priorities.iter().sum();
        let y = io.rng().random::<f64>() * psum;
        let priority = if y < w.priorities[0] {
            0
        } else if y < w.priorities[0] + w.priorities[1] {
            1
        } else {
            2
        };
        let key = io.rng().random::<u64>();
        io.count(counters::REQUESTS, 1);
        let now = io.now();
        let isolated = self.view.isolated;
        let c = self.client.as_mut().expect("only clients issue requests");
        let shed = match c.level[group as usize] {
            Level::Emergency => priority < 2,
            Level::Shed => priority == 0,
            _ => false,
        };
        let id = c.next_id;
        c.next_id += 1;
        if isolated || shed {
            io.count(counters::SHED, 1);
            io.count(counters::FAILED, 1);
            io.output(Output::Done { group, ok: false, latency_us: 0, attempts: 0, key, value: 0 });
            if topo.params.workload.closed_loop > 0 {
                // Refused at once: wait a little, or the loop would spin in place.
                io.set_timer(Duration::from_millis(1), Timer::Issue { n: id });
            }
            return;
        }
        c.budget.deposit(now, &topo.params.rpc);
        c.issued += 1;
        c.pending.insert(
            id,
            Pending {
                id,
                group,
                key,
                priority,
                started: now,
                attempt: 0,
                outstanding: SmallVec::new(),
                tried: SmallVec::new(),
                votes: SmallVec::new(),
                decided: None,
            },
        );
        self.attempt(id, io);
    }

    /// Sends attempt `pending.attempt` of request `id`.
    fn attempt(&mut self, id: u64, io: &mut Io<'_, Self>) {
        self.refresh_client(io);
        let topo = self.topo.clone();
        let c = self.client.as_mut().expect("client");
        let Some(p) = c.pending.get_mut(&id) else { return };
        let g = &topo.groups[p.group as usize];
        let serving = &c.serving[p.group as usize];
        let fresh: SmallVec<[NodeId; 4]> = serving.iter().copied().filter(|n| !p.tried.contains(n)).collect();
        let pool = if fresh.is_empty() { serving.clone() } else { fresh };
        let targets: SmallVec<[NodeId; 3]> = match g.strategy {
            _ if pool.is_empty() => SmallVec::new(),
            Redundancy::NWay => {
                if serving.len() < g.quorum {
                    SmallVec::new()
                } else {
                    serving.iter().copied().collect()
                }
            }
            Redundancy::ActivePassive => SmallVec::from_slice(&pool[..1]),
            Redundancy::ActiveActive | Redundancy::Geographic => {
                let pick = c.balancer.pick(p.group as usize, &pool, io.rng()).expect("non-empty pool");
                SmallVec::from_slice(&[pick])
            }
        };
        if targets.is_empty() {
            let p = c.pending.remove(&id).expect("pending");
            p.done(false, 0, io.now(), &mut c.finished, topo.params.workload.closed_loop > 0, io);
            return;
        }
        p.outstanding = targets.clone();
        p.votes.clear();
        let (group, key, priority, attempt) = (p.group, p.key, p.priority, p.attempt);
        for &t in &targets {
            if !p.tried.contains(&t) {
                p.tried.push(t);
            }
        }
        io.count(counters::ATTEMPTS, targets.len() as u64);
        for &t in &targets {
            c.balancer.sent(t);
        }
        io.set_timer(topo.params.rpc.timeout, Timer::Attempt { id, attempt });
        let sent_ns = io.now().as_nanos();
        for t in targets {
            let r = Request { id, client: self.me, server: t, group, key, priority, attempt, sent_ns, hops: 0 };
            if t == self.me {
                self.on_request(r, io);
            } else {
                self.route(t, Msg::Request(r), io);
            }
        }
    }

    fn on_answer(&mut self, a: Answer, io: &mut Io<'_, Self>) {
        if a.client != self.me {
            if a.hops < 32 {
                self.route(a.client, Msg::Answer(Answer { hops: a.hops + 1, ..a }), io);
            }
            return;
        }
        let now = io.now();
        let topo = self.topo.clone();
        let Some(c) = self.client.as_mut() else { return };
        let Some(p) = c.pending.get_mut(&a.id) else { return };
        if p.attempt != a.attempt || !p.outstanding.contains(&a.server) {
            return; // an answer to an attempt already given up on
        }
        p.outstanding.retain(|n| *n != a.server);
        let give_up = p.outstanding.is_empty() && p.decided.is_none();
        let rtt_ms = (now.as_nanos().saturating_sub(a.sent_ns)) as f64 / 1e6;
        c.balancer.finished(a.server, rtt_ms, now, Some(a.load));
        if a.status != Status::Ok {
            c.failures[a.server.index()] += 1;
            Self::maybe_eject(c, &topo, a.server, now, io);
            if give_up {
                self.retry_or_fail(a.id, io);
            }
            return;
        }
        c.failures[a.server.index()] = 0;
        let p = c.pending.get_mut(&a.id).expect("pending");
        let g = &topo.groups[p.group as usize];
        if g.strategy != Redundancy::NWay {
            let p = c.pending.remove(&a.id).expect("pending");
            p.done(true, a.value, now, &mut c.finished, topo.params.workload.closed_loop > 0, io);
            return;
        }
        p.votes.push((a.server, a.value));
        if p.decided.is_none() && p.votes.iter().filter(|v| v.1 == a.value).count() >= g.quorum {
            p.decided = Some(a.value);
            p.done(true, a.value, now, &mut c.finished, topo.params.workload.closed_loop > 0, io);
        }
        if let Some(v) = p.decided {
            let outvoted: SmallVec<[NodeId; 3]> = p.votes.iter().filter(|x| x.1 != v).map(|x| x.0).collect();
            p.votes.retain(|x| x.1 == v); // strike each dissenter once
            for n in outvoted {
                c.strikes[n.index()] += 1;
                if c.strikes[n.index()] >= topo.params.byzantine_strikes && !c.byzantine[n.index()] {
                    c.byzantine[n.index()] = true;
                    c.dirty = true;
                    io.output(Output::Suspect { node: n, how: Detection::Byzantine });
                }
            }
            if p.outstanding.is_empty() {
                c.pending.remove(&a.id);
            }
        } else if p.outstanding.is_empty() {
            // Everyone answered and no quorum agrees.
            self.retry_or_fail(a.id, io);
        }
    }

    fn maybe_eject(c: &mut Client, topo: &Topology, n: NodeId, now: Time, io: &mut Io<'_, Self>) {
        let cfg = &topo.params.rpc;
        if c.failures[n.index()] < cfg.eject_after || c.ejected_until[n.index()].is_some_and(|t| t > now) {
            return;
        }
        let out = c.ejected_until.iter().filter(|t| t.is_some_and(|t| t > now)).count();
        let cap = ((cfg.max_ejected * topo.len() as f64).floor() as usize).max(1);
        if out < cap {
            c.ejected_until[n.index()] = Some(now + cfg.eject_for);
            c.failures[n.index()] = 0;
            c.dirty = true;
            io.count(counters::EJECTIONS, 1);
            io.output(Output::Suspect { node: n, how: Detection::Unresponsive });
        }
    }

    fn attempt_timed_out(&mut self, id: u64, attempt: u8, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let c = self.client.as_mut().expect("client");
        let Some(p) = c.pending.get_mut(&id) else { return };
        if p.attempt != attempt {
            return;
        }
        let silent: SmallVec<[NodeId; 3]> = std::mem::take(&mut p.outstanding);
        let timeout_ms = topo.params.rpc.timeout.as_secs_f64() * 1e3;
        let decided = p.decided.is_some();
        for n in silent {
            c.balancer.finished(n, timeout_ms, now, None);
            c.failures[n.index()] += 1;
            Self::maybe_eject(c, &topo, n, now, io);
        }
        if decided {
            c.pending.remove(&id);
        } else {
            self.retry_or_fail(id, io);
        }
    }

    fn retry_or_fail(&mut self, id: u64, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let cfg = &topo.params.rpc;
        let c = self.client.as_mut().expect("client");
        let Some(p) = c.pending.get_mut(&id) else { return };
        let retry = p.attempt as u32 + 1;
        let wait = backoff(cfg, retry, io.rng());
        let in_time = now + wait + cfg.timeout <= p.started + cfg.deadline;
        if retry < cfg.attempts && in_time {
            if c.budget.withdraw(now, cfg) {
                p.attempt += 1;
                io.count(counters::RETRIES, 1);
                io.set_timer(wait, Timer::Retry { id });
                return;
            }
            io.count(counters::BUDGET_EXHAUSTED, 1);
        }
        let p = c.pending.remove(&id).expect("pending");
        p.done(false, 0, now, &mut c.finished, topo.params.workload.closed_loop > 0, io);
    }

    /// Recomputes which members serve each group; reports failovers (in
    /// criticality order) and cascading-failure levels that changed.
    fn refresh_client(&mut self, io: &mut Io<'_, Self>) {
        if self.view_dirty {
            self.refresh_view(io);
        }
        let now = io.now();
        let topo = self.topo.clone();
        let view = &self.view;
        let Some(c) = self.client.as_mut() else { return };
        for t in c.ejected_until.iter_mut() {
            if t.is_some_and(|t| t <= now) {
                *t = None;
                c.dirty = true;
            }
        }
        if !c.dirty {
            return;
        }
        c.dirty = false;
        for (gi, g) in topo.groups.iter().enumerate() {
            let healthy = |n: &NodeId| {
                view.reachable.get(n.index()).copied().unwrap_or(false)
                    && !c.byzantine[n.index()]
                    && c.ejected_until[n.index()].is_none()
            };
            // Members most neighbours find lossy go last.
            let mut serving: SmallVec<[NodeId; 4]> = g.members.iter().copied().filter(healthy).collect();
            serving.sort_by_key(|n| view.omission[n.index()]);
            let old = std::mem::replace(&mut c.serving[gi], serving.clone());
            let mut gone: SmallVec<[NodeId; 4]> = old.iter().copied().filter(|n| !serving.contains(n)).collect();
            gone.sort_by(|a, b| topo.node(*b).criticality.total_cmp(&topo.node(*a).criticality).then(a.0.cmp(&b.0)));
            for from in gone {
                let to = match g.strategy {
                    Redundancy::ActivePassive => serving.first().copied(),
                    _ => None,
                };
                io.output(Output::Failover { group: gi as u16, from, to });
            }
            let lost = g.members.len() - serving.len();
            let level = if serving.is_empty() || (g.strategy == Redundancy::NWay && serving.len() < g.quorum) {
                Level::Emergency // nothing (or no quorum) left to serve
            } else if lost * 3 > g.members.len() {
                Level::Shed
            } else if lost > 0 {
                Level::Isolate
            } else {
                Level::Healthy
            };
            if level != c.level[gi] {
                c.level[gi] = level;
                io.output(Output::Cascade { group: gi as u16, level });
            }
        }
    }
}

impl Protocol for Node {
    type Msg = Msg;
    type Timer = Timer;
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        self.busy_since = io.now();
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
        self.arm(io);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Heartbeat { seq } => self.on_heartbeat(from, seq, io),
            Msg::LinkState(ls) => self.on_link_state(from, ls, io),
            Msg::Request(r) => self.on_request(r, io),
            Msg::Answer(a) => self.on_answer(a, io),
        }
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match timer {
            Timer::Beat => {
                self.beat += 1;
                for w in &self.watches {
                    io.send(w.node, Msg::Heartbeat { seq: self.beat });
                }
                io.set_timer(self.topo.params.detector.interval, Timer::Beat);
            }
            Timer::Check => self.tick(io),
            Timer::Refresh => {
                self.publish(io);
                io.set_timer(self.topo.params.refresh, Timer::Refresh);
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
                io.output(Output::TurnedByzantine { behaviour: b });
            }
            Input::Honest => self.byzantine = None,
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "node": self.topo.name(self.me),
            "isolated": self.view.isolated,
            "suspects": self.suspects().map(|n| self.topo.name(n).to_string()).collect::<Vec<_>>(),
            "served": self.stats.served,
            "busy_slots": self.busy,
            "queued": self.queue.len(),
        })
    }
}
