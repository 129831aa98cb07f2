//! Serving: a fixed number of slots, a priority queue behind them, load
//! shedding past the queue's limit, and the answer (honest or, injected,
//! Byzantine).

use super::*;

/// A request waiting in a server's queue: high priority first, then FIFO.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Queued {
    pub(super) priority: u8,
    pub(super) seq: u64,
    pub(super) req: RequestKey,
}

#[derive(Debug, PartialEq, Eq, Clone)]
pub(super) struct RequestKey {
    pub(super) id: u64,
    pub(super) client: NodeId,
    pub(super) group: u16,
    pub(super) key: String,
    pub(super) op: Op,
    pub(super) put: Option<Entry>,
    pub(super) attempt: u8,
    pub(super) sent_ns: u64,
    pub(super) arrived: Time,
    /// Forwarded to this primary by a member: applied, not answered.
    pub(super) forwarded: bool,
    /// The members this attempt went to (n-way groups).
    pub(super) asked: Vec<NodeId>,
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

impl DataPlane {
    pub(super) fn on_request(&mut self, r: Request, io: &mut Io<'_, Self>) {
        if r.server != self.me {
            if r.hops < 32 {
                self.route(r.server, Msg::Request(Request { hops: r.hops + 1, ..r }), io);
            }
            return;
        }
        if self.byzantine == Some(Behaviour::Silent) {
            return;
        }
        if r.forwarded && self.applied_before(r.group, (r.client, r.id)).is_some() {
            return; // ordered already (the client's own copy came first)
        }
        let key = RequestKey {
            id: r.id,
            client: r.client,
            group: r.group,
            key: r.key,
            op: r.op,
            put: r.put,
            attempt: r.attempt,
            sent_ns: r.sent_ns,
            arrived: io.now(),
            forwarded: r.forwarded,
            asked: r.asked,
        };
        if self.view.isolated {
            self.reply(&key, None, Status::Isolated, io);
        } else if self.catching_up(key.group) || !self.covers(key.group, r.after.as_ref()) {
            // Restarted, or behind what the client already saw.
            self.reply(&key, None, Status::CatchingUp, io);
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
            self.reply(&key, None, Status::Overloaded, io);
        }
    }

    /// An answer: this node's client's (handed to it), or relayed a hop on.
    pub(super) fn on_answer(&mut self, a: Answer, io: &mut Io<'_, Self>) {
        if a.client == self.me {
            io.output(Output::Answered(a));
        } else if a.hops < 32 {
            self.route(a.client, Msg::Answer(Answer { hops: a.hops + 1, ..a }), io);
        }
    }

    pub(super) fn on_repair(&mut self, r: Repair, io: &mut Io<'_, Self>) {
        if r.to != self.me {
            if r.hops < 32 {
                self.route(r.to, Msg::Repair(Repair { hops: r.hops + 1, ..r }), io);
            }
            return;
        }
        let member = self.topo.groups.get(r.group as usize).is_some_and(|g| g.members.contains(&self.me));
        if member && self.stores[r.group as usize].repair(&r.key, r.entry.clone()) {
            io.count(counters::REPAIRED, 1);
            self.persist(r.group, &r.key, &r.entry, io);
        }
    }

    pub(super) fn account_busy(&mut self, now: Time) {
        self.stats.busy_slot_s += self.busy as f64 * (now - self.busy_since).as_secs_f64();
        self.busy_since = now;
    }

    pub(super) fn start(&mut self, key: RequestKey, io: &mut Io<'_, Self>) {
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

    pub(super) fn served(&mut self, job: u64, io: &mut Io<'_, Self>) {
        let Some(key) = self.in_service.remove(&job) else { return };
        self.account_busy(io.now());
        self.busy -= 1;
        self.stats.served += 1;
        self.stats.residence_s += (io.now() - key.arrived).as_secs_f64();
        let strong = self.topo.groups[key.group as usize].consistency == crate::topology::Consistency::Strong;
        self.stats.transactions += strong as u64;
        if self.unknown(key.group, &key.key, &key.op) {
            io.count(counters::LOST_KEYS, 1);
            self.reply(&key, None, Status::Lost, io);
        } else {
            self.apply(key, strong, io);
        }
        if let Some(next) = self.queue.pop() {
            self.start(next.req, io);
        }
    }

    /// Applies a request to this member's store, writes the change to disk,
    /// and answers — a strong group's member once a sync covers it.
    fn apply(&mut self, key: RequestKey, strong: bool, io: &mut Io<'_, Self>) {
        let request = (key.client, key.id);
        if let Some(entry) = key.put.clone() {
            // A quorum write: taken if newer (a retry changes nothing).
            if self.stores[key.group as usize].merge(&key.key, entry.clone()) {
                self.persist(key.group, &key.key, &entry, io);
            }
            let reply = Reply { applied: true, entry: self.stores[key.group as usize].get(&key.key) };
            return self.answer(key, reply, io);
        }
        let again = key.op.writes().then(|| self.applied_before(key.group, request)).flatten();
        if again.is_none() && !self.serves_itself(key.group) {
            return self.await_order(key, io); // an n-way backup: the primary orders requests
        }
        let changed = again.is_none() && key.op.writes();
        let reply = match again {
            Some(r) => r, // a retry: answered as before, not applied twice
            None => self.stores[key.group as usize].apply(&key.key, &key.op),
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
            let reply = self.lie(&key, reply, io);
            self.sync(vec![(key, reply)], Vec::new(), io);
        } else {
            self.answer(key, reply, io);
        }
    }

    /// Answers a request served at once (a Byzantine member lies first).
    fn answer(&mut self, key: RequestKey, reply: Reply, io: &mut Io<'_, Self>) {
        let reply = self.lie(&key, reply, io);
        self.deliver(key, reply, io);
    }

    /// Sends a reply: a write through [`DataPlane::answer_write`] (a sync
    /// group's primary waits for its peers), anything else at once.
    pub(super) fn deliver(&mut self, key: RequestKey, reply: Reply, io: &mut Io<'_, Self>) {
        if key.op.writes() && key.put.is_none() {
            self.answer_write(key, reply, io);
        } else {
            self.reply(&key, Some(reply), Status::Ok, io);
        }
    }

    /// What a Byzantine member makes of a reply.
    pub(super) fn lie(&mut self, key: &RequestKey, mut reply: Reply, io: &mut Io<'_, Self>) -> Reply {
        let lie = match self.byzantine {
            Some(Behaviour::Corrupt) => true,
            Some(Behaviour::Equivocate) => key.client.0 % 2 == 1,
            _ => false,
        };
        if lie {
            // A value no client wrote, at a version ahead of the real one.
            reply.entry.value = format!("forged-{:x};", io.rng().random::<u32>()).into_bytes();
            reply.entry.version += 1 + io.rng().random_range(0..8);
        }
        reply
    }

    pub(super) fn load(&self) -> Load {
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

    pub(super) fn reply(&mut self, key: &RequestKey, reply: Option<Reply>, status: Status, io: &mut Io<'_, Self>) {
        if key.forwarded {
            return; // the member that forwarded it answers
        }
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
            clock: self.causal_clock(key.group),
        };
        self.on_answer(a, io);
    }
}
