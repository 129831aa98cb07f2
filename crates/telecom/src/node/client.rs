//! The client (edge nodes by default), one service on the node: the
//! workload — Poisson arrivals or a closed loop, a service drawn from the
//! mix, a priority, an operation on a key — each request sent with a
//! deadline per attempt, retried with backoff and full jitter within a
//! retry budget, and sent to members chosen by the group's strategy (the
//! balancer for active-active and geographic groups, the first healthy
//! member for active-passive, every member with a majority vote for n-way,
//! R then W members for quorum groups). Members that fail five times in a
//! row are ejected for a while; members outvoted by a quorum are suspected
//! Byzantine (the suspicion goes to the control plane, which reports it).
//! When a group loses members the client fails over (in criticality order
//! when several go at once) and applies the seed's cascading-failure
//! levels: isolate, shed low-priority load, emergency (only high priority).
//!
//! The client has no messages of its own: its requests and repairs go to
//! the node's server, which carries them along the routes, and the answers
//! come back from it.

use super::control::Detection;
use super::counters;
use super::server::{Answer, Evidence, Repair, Request, Status};
use super::verify::Verified;
use crate::balance::Balancer;
use crate::data;
use crate::data::kv::{Entry, Op, Reply, Seal, Sig, Store};
use crate::route::View;
use crate::rpc::{backoff, RetryBudget};
use crate::topology::{Consistency, Redundancy, Topology};
use agora_core::reading::{Histogram, Reading, Value, LATENCY_BOUNDS_S};
use agora_core::{Io, Message, NodeId, Protocol, Time};
use rand::Rng;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    /// More lost, but some still serve: shed low-priority load (once the
    /// members left are near saturation).
    Shed,
    /// None left (or, n-way, no quorum): emergency, high priority only.
    Emergency,
}

/// What the node tells its client (routed, not injected).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Input {
    /// The control plane's view changed.
    #[serde(skip_deserializing)]
    View(View),
    /// Heartbeats from `node` came back after a crash suspicion: it may
    /// have restarted, so the votes judge it afresh.
    #[serde(skip_deserializing)]
    Back(NodeId),
    /// An answer to one of this client's requests.
    #[serde(skip_deserializing)]
    Answer(Answer),
    /// Evidence another client shared: taken if it proves a member forged.
    #[serde(skip_deserializing)]
    Evidence(Evidence),
    /// A request from outside the node (the HTTP client API): `op` on
    /// `key` of group `group`, as any request of the workload, at high
    /// priority; its `Done` names `call`.
    Call { call: u64, group: u16, key: String, op: Op },
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
        /// The call it answers (a request from outside, [`Input::Call`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u64>,
    },
    /// A request to send (routed to the server, which carries it).
    Send(Request),
    /// A read repair to send (routed to the server).
    Repair(Repair),
    /// Evidence that a member forged data, shared with every other client
    /// (routed to the server, which sends it).
    Share(Evidence),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The periodic look at the groups (ejections, suspicions ending).
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
}

/// The client has no messages of its own.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Msg {}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}

/// The client service of one node (idle unless the node is a client).
pub struct Client {
    topo: Arc<Topology>,
    me: NodeId,
    /// The control plane's latest view: reachability, partition side.
    view: View,
    state: Option<State>,
}

impl Client {
    pub fn new(topo: Arc<Topology>, me: NodeId) -> Self {
        let state = topo.clients[me.index()].then(|| State::new(&topo));
        Client { topo, me, view: View::default(), state }
    }

    /// Every request the client issued either ended once or is still pending.
    pub fn check(&self) -> Result<(), String> {
        let Some(c) = &self.state else { return Ok(()) };
        let open = c.pending.values().filter(|p| p.decided.is_none()).count() as u64;
        if c.finished.count + open != c.issued {
            let name = &self.topo.node(self.me).name;
            return Err(format!("{name}: issued {} requests, {} ended, {open} open", c.issued, c.finished.count));
        }
        Ok(())
    }

    fn arm(&mut self, io: &mut Io<'_, Self>) {
        if self.state.is_none() {
            return;
        }
        let p = &self.topo.params;
        io.set_timer(p.detector.interval / 4, Timer::Check);
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

impl Protocol for Client {
    type Msg = Msg;
    type Timer = Timer;
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        if let Some(c) = &mut self.state {
            c.next_id = (io.rng().random::<u32>() as u64) << 32;
        }
        self.arm(io);
    }

    fn on_recover(&mut self, io: &mut Io<'_, Self>) {
        // Timers were lost with the crash, and the requests with them.
        if let Some(c) = &mut self.state {
            c.pending.clear();
        }
        self.arm(io);
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, _io: &mut Io<'_, Self>) {
        match msg {}
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match timer {
            Timer::Check => {
                self.refresh_client(io);
                io.set_timer(self.topo.params.detector.interval / 4, Timer::Check);
            }
            Timer::NextRequest => self.next_request(io),
            Timer::Issue { .. } => self.issue(io),
            Timer::Attempt { id, attempt } => self.attempt_timed_out(id, attempt, io),
            Timer::Retry { id } => self.attempt(id, io),
        }
    }

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        match input {
            Input::View(view) => {
                self.view = view;
                if let Some(c) = &mut self.state {
                    c.dirty = true;
                }
            }
            Input::Back(node) => {
                if let Some(c) = &mut self.state {
                    // A restarted process is judged afresh by the votes too.
                    c.standing[node.index()] = Standing::Good;
                    c.strikes[node.index()] = 0;
                }
            }
            Input::Answer(a) => {
                self.issue_due(false, io);
                self.on_answer(a, io);
            }
            Input::Evidence(e) => self.on_evidence(e, io),
            Input::Call { call, group, key, op } => {
                if self.state.is_none() {
                    // A node that is not a client serves reads from outside
                    // all the same: its client state starts at the first.
                    let mut state = State::new(&self.topo);
                    state.next_id = (io.rng().random::<u32>() as u64) << 32;
                    self.state = Some(state);
                }
                self.request_at(group, key, op, CALL_PRIORITY, io.now(), Some(call), io);
            }
        }
    }

    fn check_input(&self, input: &Input) -> Result<(), String> {
        let Input::Call { group, op, .. } = input else { return Ok(()) };
        if op.writes() && !self.topo.clients[self.me.index()] {
            let clients: Vec<&str> = (0..self.topo.len())
                .filter(|&i| self.topo.clients[i])
                .map(|i| self.topo.node(NodeId(i as u32)).name.as_str())
                .collect();
            let me = &self.topo.node(self.me).name;
            return Err(format!(
                "{me} is not a client node: it serves reads, but a write needs a writer's seal; write through one of {}",
                clients.join(", ")
            ));
        }
        if *group as usize >= self.topo.groups.len() {
            return Err(format!("no group {group}: there are {}", self.topo.groups.len()));
        }
        Ok(())
    }

    fn answers(output: &Output) -> Option<u64> {
        match output {
            Output::Done { call, .. } => *call,
            _ => None,
        }
    }

    fn readings(&self, out: &mut Vec<Reading>) {
        let Some(c) = &self.state else { return };
        for (g, ended) in self.topo.groups.iter().zip(&c.finished.by_group) {
            out.push(Reading {
                name: "telecom_request_seconds",
                help: "Time from due to answer of the requests this node's client completed, by service",
                labels: vec![("service", g.service.clone())],
                value: Value::Histogram(ended.latency_s.clone()),
            });
            let ok = std::iter::once(("ok", ended.latency_s.count()));
            for (outcome, n) in ok.chain(Cause::ALL.iter().map(|c| (c.name(), ended.failed[*c as usize]))) {
                out.push(Reading::counter(
                    "telecom_requests_ended",
                    "Requests this node's client ended, by service and outcome (ok or the failure's cause)",
                    vec![("service", g.service.clone()), ("outcome", outcome.to_string())],
                    n,
                ));
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let Some(c) = &self.state else { return serde_json::Value::Null };
        serde_json::json!({
            "issued": c.issued,
            "ended": c.finished.count,
            // Every request made, those refused at once included.
            "requested": c.requested,
            "succeeded": c.finished.latency_us.len(),
            "failed_by_cause": c.finished.failed_by_cause(),
            "latency_ms": c.finished.percentiles_ms(),
            // The histogram itself, mergeable across clients.
            "latency_us": c.finished.buckets(),
        })
    }
}

/// The priority of requests from outside the node ([`Input::Call`]): a
/// person or a program waits on each, so the cascade levels shed them last.
const CALL_PRIORITY: u8 = 2;

/// The busy share of its slots from which a member counts as saturated
/// (low-priority work is shed at the `Shed` cascade level only then).
const SATURATED: f32 = 0.9;

/// This client's seal of the element `op` writes to `key` of `group`
/// (None for a read; a driver without keys gives a zero signature,
/// which no reader accepts).
fn seal(group: u16, key: &str, op: &Op, io: &Io<'_, Client>) -> Option<Seal> {
    let element = match op {
        Op::Read => return None,
        Op::Write(v) | Op::Append(v) | Op::Cas { value: v, .. } => v,
    };
    let sig = io.sign(&Seal::signed_bytes(group, key, element)).map_or([0; 64], |s| s.to_bytes());
    Some(Seal { writer: io.me(), len: element.len() as u32, sig: Sig(sig) })
}

/// A closed loop's request `id` ended: it makes room for the next (a call
/// is no part of the loop) — after a little wait if it took no time at
/// all (refused at once, or served free by the client itself), or the loop
/// would spin in place.
fn make_room(id: u64, call: Option<u64>, latency_us: u64, io: &mut Io<'_, Client>) {
    if call.is_none() {
        let wait = if latency_us == 0 { Duration::from_millis(1) } else { Duration::ZERO };
        io.set_timer(wait, Timer::Issue { n: id });
    }
}

/// One request in flight at its client.
#[derive(Clone, Debug)]
struct Pending {
    id: u64,
    group: u16,
    key: String,
    op: Op,
    priority: u8,
    started: Time,
    attempt: u8,
    /// Servers asked in the current attempt, and every one asked so far.
    outstanding: SmallVec<[NodeId; 3]>,
    tried: SmallVec<[NodeId; 4]>,
    /// n-way: answers so far (server, reply); the decided reply once a quorum agrees.
    votes: SmallVec<[(NodeId, Reply); 3]>,
    decided: Option<Reply>,
    /// A quorum write past its read: the entry it writes. Its phase change
    /// took an attempt number that is not a retry.
    put: Option<Entry>,
    /// This client's seal of the element the operation writes (None for a read).
    seal: Option<Seal>,
    /// The call it answers, if it came from outside the node.
    call: Option<u64>,
    /// A PBFT-ordered group's request, authenticated once: every attempt
    /// sends the same.
    pbft: Option<Box<agora_pbft::Request>>,
}

impl Pending {
    /// The request's end, reported once.
    fn done(
        &self,
        result: Result<Reply, Cause>,
        now: Time,
        ended: &mut Ended,
        closed_loop: bool,
        io: &mut Io<'_, Client>,
    ) {
        let latency_us = (now - self.started).as_micros() as u64;
        let ok = result.is_ok();
        let (reply, cause) = match result {
            Ok(r) => (Some(r), None),
            Err(c) => (None, Some(c)),
        };
        ended.count += 1;
        match cause {
            None => ended.by_group[self.group as usize].latency_s.observe(latency_us as f64 / 1e6),
            Some(c) => ended.fail(self.group, c),
        }
        if let Some(r) = &reply {
            ended.latency_us.saturating_record(latency_us.max(1));
            ended.seen.insert((self.group, self.key.clone()), r.entry.value.clone());
        }
        io.count(if ok { counters::SUCCEEDED } else { counters::FAILED }, 1);
        if closed_loop {
            make_room(self.id, self.call, latency_us, io);
        }
        io.output(Output::Done {
            id: self.id,
            group: self.group,
            ok,
            latency_us,
            attempts: self.attempt + 1,
            sent: !self.tried.is_empty(),
            reply,
            cause,
            call: self.call,
        });
    }
}

/// The requests a client ended, and the latencies of those that succeeded
/// (HdrHistogram: a real run's report reads them from the node's status).
#[derive(Clone, Debug)]
struct Ended {
    count: u64,
    latency_us: hdrhistogram::Histogram<u64>,
    /// The value each (group, key) had in the latest reply: what a
    /// compare-and-set of this client expects.
    seen: BTreeMap<(u16, String), Vec<u8>>,
    /// By group: the successes' latencies and the failures by cause (those
    /// refused at once included), for `/metrics` and — summed — the status
    /// a real run's report reads.
    by_group: Vec<GroupEnded>,
}

/// One group's ended requests: the successes' latencies, the failures by
/// cause (indexed as [`Cause::ALL`]).
#[derive(Clone, Debug)]
struct GroupEnded {
    latency_s: Histogram,
    failed: [u64; Cause::ALL.len()],
}

impl Ended {
    fn new(groups: usize) -> Self {
        // 1 µs to 60 s at 1 % precision, larger values clamped.
        let latency_us = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
        let group = GroupEnded { latency_s: Histogram::new(LATENCY_BOUNDS_S), failed: [0; Cause::ALL.len()] };
        Ended { count: 0, latency_us, seen: BTreeMap::new(), by_group: vec![group; groups] }
    }

    /// A request of `group` failed by `cause`.
    fn fail(&mut self, group: u16, cause: Cause) {
        self.by_group[group as usize].failed[cause as usize] += 1;
    }

    /// The failures by cause over every group (the causes that occurred).
    fn failed_by_cause(&self) -> BTreeMap<Cause, u64> {
        let sum = |c: Cause| self.by_group.iter().map(|g| g.failed[c as usize]).sum::<u64>();
        Cause::ALL.iter().map(|&c| (c, sum(c))).filter(|&(_, n)| n > 0).collect()
    }

    /// The successes' latency percentiles in ms (null before any).
    fn percentiles_ms(&self) -> serde_json::Value {
        let h = &self.latency_us;
        if h.is_empty() {
            return serde_json::Value::Null;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        serde_json::json!({ "p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99), "max": h.max() as f64 / 1e3 })
    }

    /// The recorded latencies as (µs, count) pairs: mergeable across clients.
    fn buckets(&self) -> Vec<(u64, u64)> {
        self.latency_us.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
    }
}

/// A member as the n-way votes judged it. A suspicion expires after the
/// ejection time into probation: the member serves n-way groups again,
/// where a vote can catch it, and everything once it agrees with a quorum;
/// a member seen back after a crash starts afresh. So a wrong suspicion, or
/// a replica that recovered, does not leave a group below quorum for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Good,
    Suspected { until: Time },
    Probation,
}

/// A client node's workload and what it knows of the groups.
#[derive(Clone, Debug)]
struct State {
    /// Request ids: a random incarnation in the high half, drawn at each
    /// start, so that ids (and the tokens written with them) stay unique
    /// across restarts — replicas recognise a retry by its id.
    next_id: u64,
    /// Requests made (those refused at once included).
    requested: u64,
    /// Requests that entered `pending`, and those of them that ended.
    issued: u64,
    finished: Ended,
    /// Open loop: when the next request is due, so that a late timer
    /// (a busy real process) does not hide the delay — its latency counts
    /// from when it was due, and the requests a stall held back go out at
    /// once (no coordinated omission).
    next_arrival: Option<Time>,
    pending: BTreeMap<u64, Pending>,
    balancer: Balancer,
    budget: RetryBudget,
    failures: Vec<u32>,
    ejected_until: Vec<Option<Time>>,
    strikes: Vec<u32>,
    /// Per node: what the n-way votes and forged answers made of it.
    standing: Vec<Standing>,
    /// The seals this client checked already.
    verified: Verified,
    /// Per causal group: the session — the clock of everything this client
    /// saw (None for other groups).
    sessions: Vec<Option<crate::causal::VectorClock>>,
    /// Per group: the members serving now, the level, whether to recompute.
    serving: Vec<SmallVec<[NodeId; 4]>>,
    level: Vec<Level>,
    dirty: bool,
    /// The last PBFT timestamp this client gave a request (they grow,
    /// across restarts too: they start from the clock).
    pbft_timestamp: u64,
}

impl State {
    /// A client that has sent nothing yet (its request ids are drawn at start).
    fn new(topo: &Topology) -> Self {
        let n = topo.len();
        let weights: Vec<(f64, f64, f64)> = topo
            .params
            .nodes
            .iter()
            .map(|s| (s.slots as f64 / (s.latency_ms * s.slow), s.latency_ms, s.throughput_mbps))
            .collect();
        State {
            next_id: 0,
            requested: 0,
            issued: 0,
            finished: Ended::new(topo.groups.len()),
            next_arrival: None,
            pending: BTreeMap::new(),
            balancer: Balancer::new(topo.params.balancer, &weights, topo.groups.len()),
            budget: RetryBudget::new(&topo.params.rpc),
            failures: vec![0; n],
            ejected_until: vec![None; n],
            strikes: vec![0; n],
            standing: vec![Standing::Good; n],
            verified: Verified::default(),
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
            pbft_timestamp: 0,
        }
    }
}

impl Client {
    fn arrival_gap(&self, io: &mut Io<'_, Self>) -> Duration {
        let u = 1.0 - io.rng().random::<f64>();
        Duration::from_secs_f64(-u.ln() / self.topo.params.workload.rate)
    }

    /// The request timer: issues the requests due by now.
    fn next_request(&mut self, io: &mut Io<'_, Self>) {
        self.issue_due(true, io);
    }

    /// Open loop: issues every request due by now and arms the timer for the
    /// next — at the request timer, one due exactly now too; at any other
    /// event, only overdue ones. A real process's timers tick in
    /// milliseconds and fire late when it is busy; its messages come sooner,
    /// so requests go out close to when they are due, and the latency of
    /// each counts from then (no coordinated omission). The simulator fires
    /// timers on time, so it never finds a request overdue: its runs are
    /// what they were.
    fn issue_due(&mut self, at_timer: bool, io: &mut Io<'_, Self>) {
        let now = io.now();
        let Some(c) = self.state.as_ref().filter(|_| !self.stopped(now)) else { return };
        let first = match c.next_arrival {
            Some(t) if t < now || (at_timer && t == now) => t,
            None if at_timer => now,
            Some(t) if at_timer => return io.set_timer(t - now, Timer::NextRequest),
            _ => return,
        };
        let mut due = first;
        loop {
            let next = due + self.arrival_gap(io);
            self.issue_at(due, io);
            if next > now {
                self.state.as_mut().expect("only clients issue requests").next_arrival = Some(next);
                io.set_timer(next - now, Timer::NextRequest);
                return;
            }
            due = next;
        }
    }

    /// Issues one request now (closed loop).
    fn issue(&mut self, io: &mut Io<'_, Self>) {
        if !self.stopped(io.now()) {
            self.issue_at(io.now(), io);
        }
    }

    /// Whether the workload has stopped (`workload.stop_after`).
    fn stopped(&self, now: Time) -> bool {
        let stop = self.topo.params.workload.stop_after;
        !stop.is_zero() && now >= Time::ZERO + stop
    }

    /// Issues one request due at `due`: a service from the mix, a priority, a key.
    fn issue_at(&mut self, due: Time, io: &mut Io<'_, Self>) {
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
        let key = data::workload::key_name(topo.keys.draw(io.rng()));
        let c = self.state.as_ref().expect("only clients issue requests");
        let fresh = data::workload::token(self.me, c.next_id);
        let seen = c.finished.seen.get(&(group, key.clone())).map_or(&[][..], |v| v.as_slice());
        let op = data::workload::draw_op(&w.ops, seen, fresh, io.rng());
        self.request_at(group, key, op, priority, due, None, io);
    }

    /// Sends a request to do `op` on `key` of group `group`: its id, or None
    /// if the client refused it at once (isolated side, or shed by the
    /// cascade level).
    pub fn request(&mut self, group: u16, key: String, op: Op, priority: u8, io: &mut Io<'_, Self>) -> Option<u64> {
        self.request_at(group, key, op, priority, io.now(), None, io)
    }

    /// [`Client::request`] for a request due at `due` (its latency counts
    /// from then), answering `call` if it came from outside.
    #[allow(clippy::too_many_arguments)]
    fn request_at(
        &mut self,
        group: u16,
        key: String,
        op: Op,
        priority: u8,
        due: Time,
        call: Option<u64>,
        io: &mut Io<'_, Self>,
    ) -> Option<u64> {
        let topo = self.topo.clone();
        io.count(counters::REQUESTS, 1);
        let now = io.now();
        let isolated = self.view.isolated && !topo.groups[group as usize].serves_when_isolated();
        let c = self.state.as_mut().expect("only clients issue requests");
        let shed = match c.level[group as usize] {
            Level::Emergency => priority < 2,
            // Low-priority work goes only if the members left are near
            // saturation: shedding while they have room only fails requests.
            Level::Shed => {
                priority == 0 && c.serving[group as usize].iter().all(|&n| c.balancer.load(n).cpu >= SATURATED)
            }
            _ => false,
        };
        let id = c.next_id;
        c.next_id += 1;
        c.requested += 1;
        io.output(Output::Issued { id, group, key: key.clone(), op: op.clone() });
        if isolated || shed {
            io.count(counters::SHED, 1);
            io.count(counters::FAILED, 1);
            let cause = if isolated { Cause::MinoritySide } else { Cause::Shed };
            c.finished.fail(group, cause);
            let cause = Some(cause);
            io.output(Output::Done {
                id,
                group,
                ok: false,
                latency_us: 0,
                attempts: 0,
                sent: false,
                reply: None,
                cause,
                call,
            });
            if topo.params.workload.closed_loop > 0 {
                make_room(id, call, 0, io);
            }
            return None;
        }
        c.budget.deposit(now, &topo.params.rpc);
        c.issued += 1;
        let seal = seal(group, &key, &op, io);
        let pbft = topo.pbft[group as usize].as_ref().map(|numbering| {
            c.pbft_timestamp = (c.pbft_timestamp + 1).max(now.since_epoch().as_nanos() as u64);
            let operation = crate::ordering::Operation { key: key.clone(), op: op.clone(), seal: seal.clone() };
            Box::new(numbering.request(io, self.me, id, c.pbft_timestamp, operation))
        });
        c.pending.insert(
            id,
            Pending {
                id,
                group,
                key,
                op,
                priority,
                started: due,
                attempt: 0,
                outstanding: SmallVec::new(),
                tried: SmallVec::new(),
                votes: SmallVec::new(),
                decided: None,
                put: None,
                seal,
                call,
                pbft,
            },
        );
        self.attempt(id, io);
        Some(id)
    }

    /// Sends attempt `pending.attempt` of request `id`.
    fn attempt(&mut self, id: u64, io: &mut Io<'_, Self>) {
        self.refresh_client(io);
        let topo = self.topo.clone();
        let c = self.state.as_mut().expect("client");
        let Some(p) = c.pending.get_mut(&id) else { return };
        let g = &topo.groups[p.group as usize];
        let serving = &c.serving[p.group as usize];
        let fresh: SmallVec<[NodeId; 4]> = serving.iter().copied().filter(|n| !p.tried.contains(n)).collect();
        let pool = if fresh.is_empty() { serving.clone() } else { fresh };
        let targets: SmallVec<[NodeId; 3]> = match g.strategy {
            _ if pool.is_empty() => SmallVec::new(),
            Redundancy::NWay | Redundancy::Quorum => {
                let needed = match (g.strategy, &p.put) {
                    (Redundancy::NWay, _) => g.quorum,
                    (_, None) => g.r,
                    (_, Some(_)) => g.w,
                };
                if serving.len() < needed {
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
            let cause = if serving.is_empty() { Cause::NoReplica } else { Cause::BelowQuorum };
            let p = c.pending.remove(&id).expect("pending");
            p.done(Err(cause), io.now(), &mut c.finished, topo.params.workload.closed_loop > 0, io);
            return;
        }
        p.outstanding = targets.clone();
        p.votes.clear();
        // A quorum write reads first: its members serve that phase as a
        // read, and take the entry the client computed in the second.
        let reading = g.strategy == Redundancy::Quorum && p.put.is_none() && p.op.writes();
        let op = if reading { Op::Read } else { p.op.clone() };
        let (group, key, priority, attempt) = (p.group, p.key.clone(), p.priority, p.attempt);
        let (put, seal) = (p.put.clone(), p.seal.clone().filter(|_| !reading));
        let pbft = p.pbft.clone();
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
        let session = c.sessions[group as usize].clone();
        let asked = if g.strategy == Redundancy::NWay { targets.to_vec() } else { Vec::new() };
        for t in targets {
            let (key, op, after, put, asked) = (key.clone(), op.clone(), session.clone(), put.clone(), asked.clone());
            let r = Request {
                id,
                client: self.me,
                server: t,
                group,
                key,
                op,
                priority,
                attempt,
                sent_ns,
                hops: 0,
                after,
                put,
                seal: seal.clone(),
                forwarded: false,
                asked,
                pbft: pbft.clone(),
            };
            io.output(Output::Send(r));
        }
    }

    fn on_answer(&mut self, a: Answer, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let Some(c) = self.state.as_mut() else { return };
        let Some(p) = c.pending.get_mut(&a.id) else { return };
        if p.attempt != a.attempt || !p.outstanding.contains(&a.server) {
            return; // an answer to an attempt already given up on
        }
        p.outstanding.retain(|n| *n != a.server);
        let give_up = p.outstanding.is_empty() && p.decided.is_none();
        let rtt_ms = (now.as_nanos().saturating_sub(a.sent_ns)) as f64 / 1e6;
        c.balancer.finished(a.server, rtt_ms, now, Some(a.load));
        let Some(reply) = a.reply.filter(|_| a.status == Status::Ok) else {
            // A member catching up after a restart is back in a moment, and
            // one whose primary did not order the request is not at fault.
            if !matches!(a.status, Status::CatchingUp | Status::Unordered) {
                c.failures[a.server.index()] += 1;
                Self::maybe_eject(c, &topo, a.server, now, io);
            }
            if give_up {
                let cause = match a.status {
                    Status::Isolated => Cause::MinoritySide,
                    Status::Lost | Status::CatchingUp | Status::Unordered => Cause::NoReplica,
                    Status::Unreplicated => Cause::BelowQuorum,
                    Status::Ok | Status::Overloaded => Cause::Admission,
                };
                self.retry_or_fail(a.id, cause, io);
            }
            return;
        };
        let p = c.pending.get_mut(&a.id).expect("pending");
        if !c.verified.authentic(&topo, p.group, &p.key, &reply.entry, io) {
            // Data no writer wrote: the member lied (or, a forged answer to
            // a read repair's entry, served what it took from a liar).
            io.count(counters::FORGED, 1);
            c.failures[a.server.index()] += 1;
            let (group, key) = (p.group, p.key.clone());
            let newly = Self::suspect_byzantine(c, &topo, a.server, now, io);
            if let (true, Some(answer_sig)) = (newly, a.sig) {
                let mut e = Evidence {
                    accused: a.server,
                    group,
                    key,
                    entry: reply.entry.clone(),
                    answer_sig,
                    accuser: self.me,
                    accuser_sig: Sig([0; 64]),
                };
                if let Some(s) = io.sign(&e.accuser_bytes()) {
                    e.accuser_sig = Sig(s.to_bytes());
                    io.count(counters::EVIDENCE_SHARED, 1);
                    io.output(Output::Share(e));
                }
            }
            if give_up {
                self.retry_or_fail(a.id, Cause::Forged, io);
            }
            return;
        }
        c.failures[a.server.index()] = 0;
        let p = c.pending.get_mut(&a.id).expect("pending");
        if let (Some(session), Some(clock)) = (c.sessions[p.group as usize].as_mut(), a.clock.as_ref()) {
            session.merge(clock);
        }
        let g = &topo.groups[p.group as usize];
        if g.strategy == Redundancy::Quorum {
            return self.on_quorum_reply(a.id, a.server, reply, io);
        }
        if g.strategy != Redundancy::NWay {
            let p = c.pending.remove(&a.id).expect("pending");
            p.done(Ok(reply), now, &mut c.finished, topo.params.workload.closed_loop > 0, io);
            return;
        }
        if p.decided.is_none() && p.votes.iter().filter(|v| v.1 == reply).count() + 1 >= g.quorum {
            p.decided = Some(reply.clone());
            p.done(Ok(reply.clone()), now, &mut c.finished, topo.params.workload.closed_loop > 0, io);
        }
        p.votes.push((a.server, reply));
        let Some(v) = p.decided.clone() else {
            if p.outstanding.is_empty() {
                // Everyone answered and no quorum agrees.
                self.retry_or_fail(a.id, Cause::BelowQuorum, io);
            }
            return;
        };
        let outvoted: SmallVec<[NodeId; 3]> = p.votes.iter().filter(|x| x.1 != v).map(|x| x.0).collect();
        // Only a dissent that claims to be as new as the quorum's is a lie
        // (struck); an older one is a member that missed writes — it is
        // repaired, not suspected. Serving stale data is what a Byzantine
        // member can always do; the vote keeps it from being accepted.
        let lying: SmallVec<[NodeId; 3]> =
            p.votes.iter().filter(|x| x.1 != v && x.1.entry.version >= v.entry.version).map(|x| x.0).collect();
        // A member that agrees is cleared: only dissent in a row counts.
        for x in p.votes.iter().filter(|x| x.1 == v) {
            c.strikes[x.0.index()] = 0;
            if c.standing[x.0.index()] == Standing::Probation {
                c.standing[x.0.index()] = Standing::Good;
                c.dirty = true;
            }
        }
        p.votes.retain(|x| x.1 == v); // strike each dissenter once
        let (group, key) = (p.group, p.key.clone());
        if p.outstanding.is_empty() {
            c.pending.remove(&a.id);
        }
        for &n in &lying {
            c.strikes[n.index()] += 1;
            if c.strikes[n.index()] >= topo.params.byzantine_strikes {
                Self::suspect_byzantine(c, &topo, n, now, io);
            }
        }
        for n in outvoted {
            io.count(counters::REPAIRS, 1);
            io.output(Output::Repair(Repair { group, to: n, key: key.clone(), entry: v.entry.clone(), hops: 0 }));
        }
    }

    /// A quorum group's reply. Reading: once `r` replied, the newest entry
    /// decides — a read ends with it (the older repliers are repaired), a
    /// write computes its next version from it and sends that to every
    /// member. Writing: done once `w` members hold the entry.
    fn on_quorum_reply(&mut self, id: u64, server: NodeId, reply: Reply, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let closed = topo.params.workload.closed_loop > 0;
        let c = self.state.as_mut().expect("client");
        let p = c.pending.get_mut(&id).expect("pending");
        let g = &topo.groups[p.group as usize];
        if let Some(put) = &p.put {
            if reply.entry == *put {
                p.votes.push((server, reply));
            }
            if p.votes.len() >= g.w {
                let p = c.pending.remove(&id).expect("pending");
                let entry = p.put.clone().expect("a write");
                p.done(Ok(Reply { applied: true, entry }), now, &mut c.finished, closed, io);
            } else if p.outstanding.is_empty() {
                // Every member answered, too few with this entry: another
                // client's write came between. A plain write starts over
                // from the read, on top of the newer entry (writing a value
                // again changes nothing a reader could tell apart).
                io.count(counters::WRITE_CONFLICTS, 1);
                if matches!(p.op, Op::Write(_)) {
                    p.put = None;
                }
                self.retry_or_fail(id, Cause::BelowQuorum, io);
            }
            return;
        }
        p.votes.push((server, reply));
        if p.votes.len() < g.r {
            if p.outstanding.is_empty() {
                self.retry_or_fail(id, Cause::BelowQuorum, io);
            }
            return;
        }
        let newest = p.votes.iter().map(|v| &v.1.entry).max_by_key(|e| e.rank()).expect("r ≥ 1 replies").clone();
        let behind: SmallVec<[NodeId; 3]> = p.votes.iter().filter(|v| v.1.entry != newest).map(|v| v.0).collect();
        let (group, key) = (p.group, p.key.clone());
        if p.op == Op::Read {
            let p = c.pending.remove(&id).expect("pending");
            p.done(Ok(Reply { applied: true, entry: newest.clone() }), now, &mut c.finished, closed, io);
        } else {
            let mut s = Store::new();
            s.merge(&key, newest.clone());
            let next = s.apply(&key, &p.op, p.seal.as_ref());
            if !next.applied {
                let p = c.pending.remove(&id).expect("pending");
                p.done(Ok(next), now, &mut c.finished, closed, io); // a compare that failed
            } else {
                // The write phase: a fresh attempt number, so that late read
                // replies are not taken for acknowledgements.
                p.put = Some(next.entry);
                p.attempt += 1;
                self.attempt(id, io);
            }
        }
        for n in behind {
            io.count(counters::REPAIRS, 1);
            io.output(Output::Repair(Repair { group, to: n, key: key.clone(), entry: newest.clone(), hops: 0 }));
        }
    }

    /// Stops using `n` for a while: it lied. Whether it was not suspected already.
    fn suspect_byzantine(c: &mut State, topo: &Topology, n: NodeId, now: Time, io: &mut Io<'_, Self>) -> bool {
        if matches!(c.standing[n.index()], Standing::Suspected { .. }) {
            return false;
        }
        c.standing[n.index()] = Standing::Suspected { until: now + topo.params.rpc.eject_for };
        c.dirty = true;
        io.output(Output::Suspect { node: n, how: Detection::Byzantine });
        true
    }

    /// Evidence another client shared: taken (the accused is suspected
    /// here too) only if both signatures hold and the data the accused
    /// signed is not authentic — anything else proves nothing.
    fn on_evidence(&mut self, e: Evidence, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let Some(c) = self.state.as_mut() else { return };
        let signed = |who: NodeId, bytes: &[u8], sig: &Sig| {
            agora_core::keys::Signature::from_slice(&sig.0).is_ok_and(|s| io.verify(who, bytes, &s))
        };
        let answer = Evidence::answer_bytes(e.accused, e.group, &e.key, &e.entry);
        let proves = e.accused.index() < topo.len()
            && signed(e.accuser, &e.accuser_bytes(), &e.accuser_sig)
            && signed(e.accused, &answer, &e.answer_sig)
            && !c.verified.authentic(&topo, e.group, &e.key, &e.entry, io);
        if proves {
            io.count(counters::EVIDENCE_TAKEN, 1);
            Self::suspect_byzantine(c, &topo, e.accused, now, io);
        } else {
            io.count(counters::EVIDENCE_IGNORED, 1);
        }
    }

    fn maybe_eject(c: &mut State, topo: &Topology, n: NodeId, now: Time, io: &mut Io<'_, Self>) {
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
        let c = self.state.as_mut().expect("client");
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
            self.retry_or_fail(id, Cause::Deadline, io);
        }
    }

    /// Retries request `id`, whose attempt failed by `cause`, or ends it
    /// with that cause (or the retry budget's, if the budget refused).
    fn retry_or_fail(&mut self, id: u64, cause: Cause, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let cfg = &topo.params.rpc;
        let c = self.state.as_mut().expect("client");
        let Some(p) = c.pending.get_mut(&id) else { return };
        let retry = (p.attempt - p.put.is_some() as u8) as u32 + 1;
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
            let p = c.pending.remove(&id).expect("pending");
            return p.done(Err(Cause::RetryBudget), now, &mut c.finished, topo.params.workload.closed_loop > 0, io);
        }
        let p = c.pending.remove(&id).expect("pending");
        p.done(Err(cause), now, &mut c.finished, topo.params.workload.closed_loop > 0, io);
    }

    /// Recomputes which members serve each group; reports failovers (in
    /// criticality order) and cascading-failure levels that changed.
    fn refresh_client(&mut self, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let view = &self.view;
        let Some(c) = self.state.as_mut() else { return };
        for t in c.ejected_until.iter_mut() {
            if t.is_some_and(|t| t <= now) {
                *t = None;
                c.dirty = true;
            }
        }
        for s in c.standing.iter_mut() {
            if matches!(*s, Standing::Suspected { until } if until <= now) {
                *s = Standing::Probation;
                c.dirty = true;
            }
        }
        if !c.dirty {
            return;
        }
        c.dirty = false;
        for (gi, g) in topo.groups.iter().enumerate() {
            // A PBFT-ordered group needs its requests at every member it
            // can reach (its primary above all): its f + 1 equal replies
            // are the trust, so suspicions and ejections do not narrow it.
            let pbft = topo.pbft[gi].is_some();
            let trusted = |n: &NodeId| match c.standing[n.index()] {
                Standing::Good => true,
                Standing::Probation => g.strategy == Redundancy::NWay,
                Standing::Suspected { .. } => pbft,
            };
            let healthy = |n: &NodeId| {
                view.reachable.get(n.index()).copied().unwrap_or(false)
                    && trusted(n)
                    && (pbft || c.ejected_until[n.index()].is_none())
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
            let level = if serving.len() < g.needed() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Command;
    use rand::SeedableRng;

    /// Edge1 with an open-loop workload of 1000 requests/s.
    fn edge1() -> Client {
        let sc: toml::Value = toml::from_str(include_str!("../../../../scenarios/edge-core-cloud.toml")).unwrap();
        let mut params: crate::topology::Params = sc["params"].clone().try_into().unwrap();
        params.workload.rate = 1000.0;
        let mut n = Client::new(Arc::new(params.compile().unwrap()), NodeId(0));
        // The control plane's first view: every link trusted.
        n.view = View::derive(&n.topo, n.me, &vec![None; n.topo.len()]);
        n
    }

    /// Fires the request timer at `now_ms`: the requests issued and the timer set.
    fn fire(n: &mut Client, rng: &mut rand_chacha::ChaCha8Rng, now_ms: u64) -> (u64, Duration) {
        let mut out = Vec::new();
        let mut io = Io::new(n.me, Time::from_nanos(now_ms * 1_000_000), rng, &mut out);
        n.next_request(&mut io);
        let issued = out
            .iter()
            .filter_map(|c| match c {
                Command::Count { name, by, .. } if *name == counters::REQUESTS => Some(*by),
                _ => None,
            })
            .sum();
        let timers: Vec<Duration> = out
            .iter()
            .filter_map(|c| match c {
                Command::SetTimer { after, timer: Timer::NextRequest } => Some(*after),
                _ => None,
            })
            .collect();
        assert_eq!(timers.len(), 1, "one request timer is armed");
        (issued, timers[0])
    }

    #[test]
    fn causes_are_listed_in_declaration_order_as_the_per_group_tallies_index_them() {
        assert!(Cause::ALL.iter().enumerate().all(|(i, &c)| c as usize == i));
    }

    #[test]
    fn a_late_request_timer_sends_what_is_due_at_once_and_counts_latency_from_when_it_was_due() {
        let mut n = edge1();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        assert_eq!(fire(&mut n, &mut rng, 0).0, 1, "on time: one request");
        // The process stalled for 100 ms: ~100 requests (1000/s) fell due meanwhile.
        let (issued, next) = fire(&mut n, &mut rng, 100);
        assert!((60..=140).contains(&issued), "{issued} requests sent after the stall");
        assert!(next > Duration::ZERO && next < Duration::from_millis(50), "the next one is in the future: {next:?}");
        // Their latencies start when they were due, not when they went out.
        let c = n.state.as_ref().unwrap();
        let started: Vec<Time> = c.pending.values().map(|p| p.started).collect();
        let at_stall = Time::from_nanos(100_000_000);
        assert!(started.iter().filter(|&&t| t < at_stall).count() as u64 >= issued - 1, "{started:?}");
        assert!(started.windows(2).all(|w| w[0] <= w[1]), "due times in order");
    }

    #[test]
    fn shared_evidence_is_taken_only_if_it_proves_a_forgery() {
        let keys = agora_core::keys::SeededKeys { seed: 1 }.ring();
        use agora_core::keys::Keys;
        let sign = |who: u32, bytes: &[u8]| Sig(keys.sign(NodeId(who), bytes).unwrap().to_bytes());
        // Core1 (node 2) answered Edge2 (node 1) with a value no client sealed.
        let evidence = |entry: Entry, answered_by: u32, accused_by: u32| {
            let answer_sig = sign(answered_by, &Evidence::answer_bytes(NodeId(2), 0, "k1", &entry));
            let mut e = Evidence {
                accused: NodeId(2),
                group: 0,
                key: "k1".into(),
                entry,
                answer_sig,
                accuser: NodeId(1),
                accuser_sig: Sig([0; 64]),
            };
            e.accuser_sig = sign(accused_by, &e.accuser_bytes());
            e
        };
        let forged = Entry::bare(b"forged;", 9);
        let element = b"1.7;";
        let seal = Seal { writer: NodeId(1), len: 4, sig: sign(1, &Seal::signed_bytes(0, "k1", element)) };
        let honest = Entry { value: element.to_vec(), version: 1, proof: vec![seal] };
        // What Edge1's client makes of it: whether it now suspects Core1.
        let taken = |e: Evidence| {
            let mut n = edge1();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            let mut out = Vec::new();
            let mut io = Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out).with_keys(&keys);
            n.on_input(Input::Evidence(e), &mut io);
            out.iter().any(|c| {
                matches!(c, Command::Output(Output::Suspect { node, how: Detection::Byzantine }) if *node == NodeId(2))
            })
        };
        assert!(taken(evidence(forged.clone(), 2, 1)), "Core1 signed data no client sealed");
        assert!(!taken(evidence(honest, 2, 1)), "an authentic answer proves nothing: a false accusation");
        assert!(!taken(evidence(forged.clone(), 3, 1)), "Core1 did not sign that answer");
        assert!(!taken(evidence(forged, 2, 3)), "not signed by the accuser it names");
    }

    #[test]
    fn the_shed_level_sheds_low_priority_work_only_when_the_members_left_are_saturated() {
        let mut n = edge1();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut out = Vec::new();
        let mut io = Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out);
        let c = n.state.as_mut().unwrap();
        c.level[1] = Level::Shed;
        c.dirty = false;
        let serving = c.serving[1].clone();
        assert!(n.request(1, "k1".into(), Op::Read, 0, &mut io).is_some(), "members with room: served");
        let c = n.state.as_mut().unwrap();
        for &m in &serving {
            let busy = crate::balance::Load { cpu: 0.95, memory: 0.0, transactions: 0.0 };
            c.balancer.finished(m, 5.0, Time::ZERO, Some(busy));
        }
        assert!(n.request(1, "k1".into(), Op::Read, 0, &mut io).is_none(), "saturated members: shed");
        assert!(n.request(1, "k1".into(), Op::Read, 1, &mut io).is_some(), "higher priority still goes");
    }

    #[test]
    fn an_outside_call_is_a_request_whose_end_names_it_and_only_clients_take_writes() {
        let mut n = edge1();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut out = Vec::new();
        let mut io = Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out);
        let call = |call, group| Input::Call { call, group, key: "k1".into(), op: Op::Read };
        assert_eq!(n.check_input(&call(9, 1)), Ok(()));
        n.on_input(call(9, 1), &mut io);
        assert!(out.iter().any(|c| matches!(c, Command::Output(Output::Send(r)) if r.group == 1)), "sent");
        // On a minority side an eventual group is still served; a strong
        // one is refused at once, and its end names the call.
        n.view.isolated = true;
        let mut out = Vec::new();
        let mut io = Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out);
        n.on_input(call(11, 1), &mut io);
        assert!(out.iter().any(|c| matches!(c, Command::Output(Output::Send(r)) if r.group == 1)), "sent");
        let mut out = Vec::new();
        let mut io = Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out);
        n.on_input(call(10, 0), &mut io);
        let done: Vec<&Output> = out
            .iter()
            .filter_map(|c| match c {
                Command::Output(o @ Output::Done { .. }) => Some(o),
                _ => None,
            })
            .collect();
        assert!(
            matches!(done[..], [Output::Done { call: Some(10), cause: Some(Cause::MinoritySide), .. }]),
            "{done:?}"
        );
        assert_eq!(Client::answers(done[0]), Some(10));
        // Counted where `/metrics` and `/status` read it, refused at once as it was.
        let mut readings = Vec::new();
        n.readings(&mut readings);
        let refused = readings.iter().find(|r| {
            r.name == "telecom_requests_ended"
                && r.labels == [("service", "transactions".to_string()), ("outcome", "minority_side".to_string())]
        });
        assert_eq!(refused.map(|r| &r.value), Some(&Value::Counter(1)), "{readings:?}");
        assert_eq!(n.status()["failed_by_cause"], serde_json::json!({ "minority_side": 1 }));
        // No such group; a node that is not a client (its writes would not verify).
        assert!(n.check_input(&call(1, 99)).unwrap_err().contains("no group 99"));
        // A node that is not a client serves reads, and refuses writes
        // (they would carry no writer's seal).
        let mut core1 = Client::new(n.topo.clone(), NodeId(2));
        core1.view = View::derive(&core1.topo, core1.me, &vec![None; core1.topo.len()]);
        assert_eq!(core1.check_input(&call(1, 1)), Ok(()));
        let mut out = Vec::new();
        let mut io = Io::new(NodeId(2), Time::ZERO, &mut rng, &mut out);
        core1.on_input(call(1, 1), &mut io);
        assert!(out.iter().any(|c| matches!(c, Command::Output(Output::Send(r)) if r.group == 1)), "Core1 read");
        let write = Input::Call { call: 2, group: 1, key: "k1".into(), op: Op::Write(b"x".to_vec()) };
        let why = core1.check_input(&write).unwrap_err();
        assert!(why.contains("Core1 is not a client node: it serves reads") && why.contains("Edge1"), "{why}");
    }
}
