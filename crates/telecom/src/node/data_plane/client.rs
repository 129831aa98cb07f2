//! The client: the workload (open or closed loop), attempts with deadlines,
//! retries with full-jitter backoff within the budget, n-way votes, outlier
//! ejection, and the failovers and cascade levels that follow a group's
//! changes.

use super::*;
use crate::balance::Balancer;
use crate::data;
use crate::rpc::{backoff, RetryBudget};

/// One request in flight at its client.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) group: u16,
    pub(super) key: String,
    pub(super) op: Op,
    pub(super) priority: u8,
    pub(super) started: Time,
    pub(super) attempt: u8,
    /// Servers asked in the current attempt, and every one asked so far.
    pub(super) outstanding: SmallVec<[NodeId; 3]>,
    pub(super) tried: SmallVec<[NodeId; 4]>,
    /// n-way: answers so far (server, reply); the decided reply once a quorum agrees.
    pub(super) votes: SmallVec<[(NodeId, Reply); 3]>,
    pub(super) decided: Option<Reply>,
    /// A quorum write past its read: the entry it writes. Its phase change
    /// took an attempt number that is not a retry.
    pub(super) put: Option<Entry>,
}

impl Pending {
    /// The request's end, reported once.
    pub(super) fn done(
        &self,
        result: Result<Reply, Cause>,
        now: Time,
        ended: &mut Ended,
        closed_loop: bool,
        io: &mut Io<'_, DataPlane>,
    ) {
        let latency_us = (now - self.started).as_micros() as u64;
        let ok = result.is_ok();
        let (reply, cause) = match result {
            Ok(r) => (Some(r), None),
            Err(c) => {
                *ended.failed_by_cause.entry(c).or_default() += 1;
                (None, Some(c))
            }
        };
        ended.count += 1;
        if let Some(r) = &reply {
            ended.latency_us.saturating_record(latency_us.max(1));
            ended.seen.insert((self.group, self.key.clone()), r.entry.value.clone());
        }
        io.count(if ok { counters::SUCCEEDED } else { counters::FAILED }, 1);
        if closed_loop {
            io.set_timer(Duration::ZERO, Timer::Issue { n: self.id });
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
        });
    }
}

/// The requests a client ended, and the latencies of those that succeeded
/// (HdrHistogram: a real run's report reads them from the node's status).
#[derive(Clone, Debug)]
pub(super) struct Ended {
    pub(super) count: u64,
    pub(super) latency_us: hdrhistogram::Histogram<u64>,
    /// The value each (group, key) had in the latest reply: what a
    /// compare-and-set of this client expects.
    pub(super) seen: BTreeMap<(u16, String), Vec<u8>>,
    /// Failed requests by cause (those refused at once included), for the
    /// status a real run's report reads.
    pub(super) failed_by_cause: BTreeMap<Cause, u64>,
}

impl Ended {
    pub(super) fn new() -> Self {
        // 1 µs to 60 s at 1 % precision, larger values clamped.
        let latency_us = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
        Ended { count: 0, latency_us, seen: BTreeMap::new(), failed_by_cause: BTreeMap::new() }
    }

    /// The recorded latencies as (µs, count) pairs: mergeable across clients.
    pub(super) fn buckets(&self) -> Vec<(u64, u64)> {
        self.latency_us.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
    }
}

/// A member as the n-way votes judged it. A suspicion expires after the
/// ejection time into probation: the member serves n-way groups again,
/// where a vote can catch it, and everything once it agrees with a quorum;
/// a member seen back after a crash starts afresh. So a wrong suspicion, or
/// a replica that recovered, does not leave a group below quorum for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    Good,
    Suspected { until: Time },
    Probation,
}

/// The client half of a node.
#[derive(Clone, Debug)]
pub(super) struct Client {
    /// Request ids: a random incarnation in the high half, drawn at each
    /// start, so that ids (and the tokens written with them) stay unique
    /// across restarts — replicas recognise a retry by its id.
    pub(super) next_id: u64,
    /// Requests made (those refused at once included).
    pub(super) requested: u64,
    /// Requests that entered `pending`, and those of them that ended.
    pub(super) issued: u64,
    pub(super) finished: Ended,
    /// Open loop: when the next request is due, so that a late timer
    /// (a busy real process) does not hide the delay — its latency counts
    /// from when it was due, and the requests a stall held back go out at
    /// once (no coordinated omission).
    pub(super) next_arrival: Option<Time>,
    pub(super) pending: BTreeMap<u64, Pending>,
    pub(super) balancer: Balancer,
    pub(super) budget: RetryBudget,
    pub(super) failures: Vec<u32>,
    pub(super) ejected_until: Vec<Option<Time>>,
    pub(super) strikes: Vec<u32>,
    /// Per node: what the n-way votes made of it.
    pub(super) standing: Vec<Standing>,
    /// Per causal group: the session — the clock of everything this client
    /// saw (None for other groups).
    pub(super) sessions: Vec<Option<crate::causal::VectorClock>>,
    /// Per group: the members serving now, the level, whether to recompute.
    pub(super) serving: Vec<SmallVec<[NodeId; 4]>>,
    pub(super) level: Vec<Level>,
    pub(super) dirty: bool,
}

impl DataPlane {
    pub(super) fn arrival_gap(&self, io: &mut Io<'_, Self>) -> Duration {
        let u = 1.0 - io.rng().random::<f64>();
        Duration::from_secs_f64(-u.ln() / self.topo.params.workload.rate)
    }

    /// The request timer: issues the requests due by now.
    pub(super) fn next_request(&mut self, io: &mut Io<'_, Self>) {
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
    pub(super) fn issue_due(&mut self, at_timer: bool, io: &mut Io<'_, Self>) {
        let now = io.now();
        let Some(c) = self.client.as_ref().filter(|_| !self.stopped(now)) else { return };
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
                self.client.as_mut().expect("only clients issue requests").next_arrival = Some(next);
                io.set_timer(next - now, Timer::NextRequest);
                return;
            }
            due = next;
        }
    }

    /// Issues one request now (closed loop).
    pub(super) fn issue(&mut self, io: &mut Io<'_, Self>) {
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
        let c = self.client.as_ref().expect("only clients issue requests");
        let fresh = data::workload::token(self.me, c.next_id);
        let seen = c.finished.seen.get(&(group, key.clone())).map_or(&[][..], |v| v.as_slice());
        let op = data::workload::draw_op(&w.ops, seen, fresh, io.rng());
        self.request_at(group, key, op, priority, due, io);
    }

    /// Sends a request to do `op` on `key` of group `group`: its id, or None
    /// if the client refused it at once (isolated side, or shed by the
    /// cascade level).
    pub fn request(&mut self, group: u16, key: String, op: Op, priority: u8, io: &mut Io<'_, Self>) -> Option<u64> {
        self.request_at(group, key, op, priority, io.now(), io)
    }

    /// [`DataPlane::request`] for a request due at `due` (its latency counts from then).
    fn request_at(
        &mut self,
        group: u16,
        key: String,
        op: Op,
        priority: u8,
        due: Time,
        io: &mut Io<'_, Self>,
    ) -> Option<u64> {
        let topo = self.topo.clone();
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
        c.requested += 1;
        io.output(Output::Issued { id, group, key: key.clone(), op: op.clone() });
        if isolated || shed {
            io.count(counters::SHED, 1);
            io.count(counters::FAILED, 1);
            let cause = if isolated { Cause::MinoritySide } else { Cause::Shed };
            *c.finished.failed_by_cause.entry(cause).or_default() += 1;
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
            });
            if topo.params.workload.closed_loop > 0 {
                // Refused at once: wait a little, or the loop would spin in place.
                io.set_timer(Duration::from_millis(1), Timer::Issue { n: id });
            }
            return None;
        }
        c.budget.deposit(now, &topo.params.rpc);
        c.issued += 1;
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
            },
        );
        self.attempt(id, io);
        Some(id)
    }

    /// Sends attempt `pending.attempt` of request `id`.
    pub(super) fn attempt(&mut self, id: u64, io: &mut Io<'_, Self>) {
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
        let (group, key, op, priority, attempt) = (p.group, p.key.clone(), p.op.clone(), p.priority, p.attempt);
        let put = p.put.clone();
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
                forwarded: false,
                asked,
            };
            if t == self.me {
                self.on_request(r, io);
            } else {
                self.route(t, Msg::Request(r), io);
            }
        }
    }

    pub(super) fn on_answer(&mut self, a: Answer, io: &mut Io<'_, Self>) {
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
            let suspected = matches!(c.standing[n.index()], Standing::Suspected { .. });
            if c.strikes[n.index()] >= topo.params.byzantine_strikes && !suspected {
                c.standing[n.index()] = Standing::Suspected { until: now + topo.params.rpc.eject_for };
                c.dirty = true;
                io.output(Output::Suspect { node: n, how: Detection::Byzantine });
            }
        }
        for n in outvoted {
            io.count(counters::REPAIRS, 1);
            self.on_repair(Repair { group, to: n, key: key.clone(), entry: v.entry.clone(), hops: 0 }, io);
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
        let c = self.client.as_mut().expect("client");
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
            let next = s.apply(&key, &p.op);
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
            self.on_repair(Repair { group, to: n, key: key.clone(), entry: newest.clone(), hops: 0 }, io);
        }
    }

    pub(super) fn maybe_eject(c: &mut Client, topo: &Topology, n: NodeId, now: Time, io: &mut Io<'_, Self>) {
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

    pub(super) fn attempt_timed_out(&mut self, id: u64, attempt: u8, io: &mut Io<'_, Self>) {
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
            self.retry_or_fail(id, Cause::Deadline, io);
        }
    }

    /// Retries request `id`, whose attempt failed by `cause`, or ends it
    /// with that cause (or the retry budget's, if the budget refused).
    pub(super) fn retry_or_fail(&mut self, id: u64, cause: Cause, io: &mut Io<'_, Self>) {
        let now = io.now();
        let topo = self.topo.clone();
        let cfg = &topo.params.rpc;
        let c = self.client.as_mut().expect("client");
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
    pub(super) fn refresh_client(&mut self, io: &mut Io<'_, Self>) {
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
            let trusted = |n: &NodeId| match c.standing[n.index()] {
                Standing::Good => true,
                Standing::Probation => g.strategy == Redundancy::NWay,
                Standing::Suspected { .. } => false,
            };
            let healthy = |n: &NodeId| {
                view.reachable.get(n.index()).copied().unwrap_or(false)
                    && trusted(n)
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
    fn edge1() -> DataPlane {
        let sc: toml::Value = toml::from_str(include_str!("../../../../../scenarios/edge-core-cloud.toml")).unwrap();
        let mut params: crate::topology::Params = sc["params"].clone().try_into().unwrap();
        params.workload.rate = 1000.0;
        let mut n = DataPlane::new(Arc::new(params.compile().unwrap()), NodeId(0));
        // The control plane's first view: every link trusted.
        n.view = View::derive(&n.topo, n.me, &vec![None; n.topo.len()]);
        n
    }

    /// Fires the request timer at `now_ms`: the requests issued and the timer set.
    fn fire(n: &mut DataPlane, rng: &mut rand_chacha::ChaCha8Rng, now_ms: u64) -> (u64, Duration) {
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
    fn a_late_request_timer_sends_what_is_due_at_once_and_counts_latency_from_when_it_was_due() {
        let mut n = edge1();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        assert_eq!(fire(&mut n, &mut rng, 0).0, 1, "on time: one request");
        // The process stalled for 100 ms: ~100 requests (1000/s) fell due meanwhile.
        let (issued, next) = fire(&mut n, &mut rng, 100);
        assert!((60..=140).contains(&issued), "{issued} requests sent after the stall");
        assert!(next > Duration::ZERO && next < Duration::from_millis(50), "the next one is in the future: {next:?}");
        // Their latencies start when they were due, not when they went out.
        let c = n.client.as_ref().unwrap();
        let started: Vec<Time> = c.pending.values().map(|p| p.started).collect();
        let at_stall = Time::from_nanos(100_000_000);
        assert!(started.iter().filter(|&&t| t < at_stall).count() as u64 >= issued - 1, "{started:?}");
        assert!(started.windows(2).all(|w| w[0] <= w[1]), "due times in order");
    }
}
