//! Log shipping, for active-passive, geographic and n-way groups: whichever
//! member serves (an active-passive group's primary, or a backup the
//! clients failed over to; any member of a geographic group) ships the
//! writes it applied to the group's other members, with the writes'
//! replies so that a retry that fails over is recognised rather than
//! applied twice. Every [`DIGEST_EVERY`] heartbeats each member sends its
//! peers a digest of its state; a peer whose state differs answers with
//! all of it (anti-entropy: what a lost acknowledgement or a partition
//! left behind is reconciled). A geographic member that served a read
//! sends the entry to one peer, and the older of the two takes the newer
//! (read repair).
//!
//! A geographic group's members take concurrent writes: two values at one
//! version resolve to the larger everywhere (the report counts the
//! acknowledged writes that lost as writes lost: the conflict rate).
//!
//! * Asynchronous (the seed's default): the member answers at once and
//!   ships every heartbeat; what a crash catches unshipped is lost if a
//!   backup then serves the same key — the report counts those writes.
//! * `sync = true`: a write is answered once every other member the server
//!   can reach, and at least a majority of the group with it, holds it. A
//!   member keeps the first value it holds at a version, so when two
//!   members serve at once (clients with different views), a member both
//!   reach takes one write and the other fails — its server adopts the
//!   value that stood — instead of being acknowledged and then lost.
//! * n-way groups are in primary order: the member its own view makes
//!   primary orders every request (reads too), ships each with its reply,
//!   and answers a write as a sync group does; a backup answers with the
//!   reply the primary shipped (forwarding the request if the client did
//!   not ask the primary), so the client's vote compares one order.
//!
//! A member that restarts catches up before it serves: it pulls every
//! peer's state and gives up its own version of any key they moved on with
//! (as a returning primary discards what it never shipped), then ships
//! what it holds newer. Requests meanwhile get [`Status::CatchingUp`].

use super::*;

/// Entries per message (a pull's answer comes in parts of this size).
const CHUNK: usize = 256;
/// Writes remembered per shipped key (a retry comes within seconds).
const WRITES_KEPT: usize = 16;
/// Reads an n-way backup keeps that were ordered before it had their request.
const EARLY_READS_KEPT: usize = 256;
/// Heartbeats between two digests to each peer.
pub(super) const DIGEST_EVERY: u64 = 10;

/// Replica-to-replica traffic of one group, routed like requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Replica {
    pub group: u16,
    pub from: NodeId,
    pub to: NodeId,
    pub hops: u8,
    pub body: ReplicaBody,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum ReplicaBody {
    /// Entries the sender applied and the receiver has not acknowledged.
    Ship(Vec<Shipped>),
    /// What the receiver holds of each shipped key, after merging it.
    Acked(Vec<(String, Entry)>),
    /// A restarted member asks for the group's state.
    Pull,
    /// Part of the state, in answer to a pull; `last` ends it.
    State { entries: Vec<(String, Entry)>, last: bool },
    /// A hash of the sender's state ([`Store::digest`]).
    Digest(u64),
    /// A geographic member's entry of a key it just served a read of (read
    /// repair): the receiver merges it, and answers with its own if that
    /// wins.
    ReadRepair { key: String, entry: Entry },
}

/// A key's newest entry, and the writes that made it since the last ack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Shipped {
    pub key: String,
    pub entry: Entry,
    /// (client, request id, reply).
    pub writes: Vec<(NodeId, u64, Reply)>,
    /// An n-way primary's reads, in its order among the writes: (client,
    /// request id, attempt, reply), for the backups to answer (a retry of a
    /// read is read again).
    #[serde(default)]
    pub reads: Vec<(NodeId, u64, u8, Reply)>,
}

impl Shipped {
    /// A key's entry with no writes attached (anti-entropy, catch-up).
    fn bare(key: &str, entry: &Entry) -> Self {
        Shipped { key: key.to_string(), entry: entry.clone(), writes: Vec::new(), reads: Vec::new() }
    }
}

/// An operation a primary ordered, as a backup receives it: client,
/// request id, the attempt (reads: a retry is read again) and the reply
/// (None: the write did not stand here).
type OrderedOp = (NodeId, u64, Option<u8>, Option<Reply>);

/// How a member takes a peer's entry of a key.
#[derive(Clone, Copy)]
pub(super) enum Take {
    /// Newer, or as new with a larger value (asynchronous and causal
    /// groups: converges).
    Merge,
    /// Newer only: the first value held at a version stays (sync groups).
    Newer,
    /// At least as new: a restarted member, or a sync write that lost.
    Adopt,
}

/// A sync group's answer waiting for the peers to hold its key.
#[derive(Clone, Debug)]
struct Held {
    key: RequestKey,
    reply: Reply,
    waiting: SmallVec<[NodeId; 4]>,
    /// Peers that hold it.
    acked: usize,
    /// A peer held another value at this version: the write lost.
    conflicted: bool,
}

/// One group's shipping at one member.
#[derive(Clone, Debug, Default)]
pub(super) struct Shipping {
    /// Per peer: the keys changed that it has not acknowledged.
    unshipped: BTreeMap<NodeId, BTreeMap<String, Shipped>>,
    held: Vec<Held>,
    /// After a restart: the peers still to answer the pull, and until when to wait.
    catching_up: Option<(SmallVec<[NodeId; 4]>, Time)>,
    /// An n-way backup: clients' requests waiting for the primary to
    /// order them, and until when.
    awaiting: Vec<(RequestKey, Time)>,
    /// An n-way backup: the latest reads ordered before their request
    /// reached this member, by (client, id, attempt).
    early_reads: VecDeque<((NodeId, u64, u8), Reply)>,
}

impl Replicas {
    /// Whether this node ships `group`'s writes (an active-passive,
    /// geographic or n-way member).
    fn ships(&self, group: u16) -> bool {
        let g = &self.topo.groups[group as usize];
        let shipped = matches!(g.strategy, Redundancy::ActivePassive | Redundancy::Geographic | Redundancy::NWay);
        shipped && self.keeps(group) && self.topo.pbft[group as usize].is_none()
    }

    /// Whether `group` answers a write only once its peers hold it: a
    /// `sync` active-passive group, and every n-way group (primary order).
    fn synchronous(&self, group: u16) -> bool {
        let g = &self.topo.groups[group as usize];
        g.sync || g.strategy == Redundancy::NWay
    }

    /// The member this node's view makes `group`'s primary: the first
    /// member it can reach (itself included; before its first view, every
    /// member — else each would start as its own primary).
    pub(super) fn primary(&self, group: u16) -> Option<NodeId> {
        let known = !self.view.reachable.is_empty();
        let reachable = |n: &NodeId| *n == self.me || !known || self.view.reachable.get(n.index()) == Some(&true);
        self.topo.groups[group as usize].members.iter().copied().find(reachable)
    }

    /// Whether `group` is primary-ordered (n-way): its primary orders every
    /// request, reads included, and ships each with its reply.
    pub(super) fn ordered_group(&self, group: u16) -> bool {
        self.topo.groups[group as usize].strategy == Redundancy::NWay
    }

    /// Whether this member serves clients' requests of `group` itself: in
    /// an n-way group only the primary does — it orders them for everyone.
    pub(super) fn serves_itself(&self, group: u16) -> bool {
        !self.ordered_group(group) || self.primary(group) == Some(self.me)
    }

    /// An n-way backup holds a client's request until the primary's ship
    /// brings its reply, and answers with that. If the client did not ask
    /// the primary too (it suspects it), the backup forwards the request:
    /// the primary applies it and does not answer.
    pub(super) fn await_order(&mut self, key: RequestKey, io: &mut Io<'_, Self>) {
        let Some(primary) = self.primary(key.group).filter(|_| !key.forwarded) else {
            return; // forwarded to a member that is not primary in its own view
        };
        let early = &mut self.shipping[key.group as usize].early_reads;
        if let Some(i) = early.iter().position(|(r, _)| *r == (key.client, key.id, key.attempt)) {
            // The primary's order came first (this member is slower).
            let (_, reply) = early.remove(i).expect("found");
            return self.sync(vec![(key, reply)], Vec::new(), io);
        }
        if !key.asked.contains(&primary) {
            self.forward_to(&key, primary, io);
        }
        // Answered before the client's attempt times out, ordered or not
        // (expiries are checked each heartbeat).
        let until = io.now() + self.topo.params.rpc.timeout / 3;
        self.shipping[key.group as usize].awaiting.push((key, until));
    }

    fn forward_to(&mut self, key: &RequestKey, primary: NodeId, io: &mut Io<'_, Self>) {
        let r = Request {
            id: key.id,
            client: key.client,
            server: primary,
            group: key.group,
            key: key.key.clone(),
            op: key.op.clone(),
            priority: 2,
            attempt: key.attempt,
            sent_ns: key.sent_ns,
            hops: 0,
            after: None,
            put: None,
            seal: key.seal.clone(),
            forwarded: true,
            asked: Vec::new(),
            pbft: None,
        };
        io.output(FromReplica::Forward(r)); // the server carries it
    }

    /// The peers this member's view reaches.
    fn reachable_peers(&self, group: u16) -> SmallVec<[NodeId; 4]> {
        let mut peers = self.peers(group);
        peers.retain(|p| self.view.reachable.get(p.index()) == Some(&true));
        peers
    }

    fn peers(&self, group: u16) -> SmallVec<[NodeId; 4]> {
        self.topo.groups[group as usize].members.iter().copied().filter(|&m| m != self.me).collect()
    }

    /// Whether requests to `group` must wait for the catch-up.
    pub(super) fn catching_up(&self, group: u16) -> bool {
        self.shipping[group as usize].catching_up.is_some()
    }

    /// Read repair: after serving a read of a geographic group, a member
    /// sends what it served to one peer it can reach, chosen at random;
    /// whichever of the two holds the older entry takes the newer.
    pub(super) fn read_repair(&mut self, group: u16, key: &str, entry: &Entry, io: &mut Io<'_, Self>) {
        if self.topo.groups[group as usize].strategy != Redundancy::Geographic || !self.ships(group) {
            return;
        }
        let reachable = self.reachable_peers(group);
        if reachable.is_empty() {
            return;
        }
        let peer = reachable[io.rng().random_range(0..reachable.len())];
        let body = ReplicaBody::ReadRepair { key: key.to_string(), entry: entry.clone() };
        self.send_replica(group, peer, body, io);
    }

    /// Queues a write this member applied for every peer.
    pub(super) fn ship_write(&mut self, group: u16, key: &str, reply: &Reply, request: (NodeId, u64)) {
        self.ship_op(group, key, reply, request, None);
    }

    /// Ships a read an n-way primary served at once, for the backups to
    /// answer (a write goes once on this member's disk).
    pub(super) fn ship_read(&mut self, key: &RequestKey, reply: &Reply, io: &mut Io<'_, Self>) {
        let group = key.group;
        if !self.ordered_group(group) || !self.ships(group) {
            return;
        }
        self.ship_op(group, &key.key, reply, (key.client, key.id), Some(key.attempt));
        for p in self.reachable_peers(group) {
            self.send_ship(group, p, io);
        }
    }

    /// Queues an operation for every peer: a write, or a read's `attempt`.
    fn ship_op(&mut self, group: u16, key: &str, reply: &Reply, request: (NodeId, u64), read: Option<u8>) {
        if !self.ships(group) {
            return;
        }
        for peer in self.peers(group) {
            let s = self.shipping[group as usize].unshipped.entry(peer).or_default();
            let shipped = s.entry(key.to_string()).or_insert_with(|| Shipped::bare(key, &reply.entry));
            match read {
                Some(attempt) => {
                    if shipped.reads.len() == WRITES_KEPT {
                        shipped.reads.remove(0);
                    }
                    shipped.reads.push((request.0, request.1, attempt, reply.clone()));
                }
                None => {
                    shipped.entry = reply.entry.clone();
                    if shipped.writes.len() == WRITES_KEPT {
                        shipped.writes.remove(0);
                    }
                    shipped.writes.push((request.0, request.1, reply.clone()));
                }
            }
        }
    }

    /// Answers a write of `key.group` now, or — a sync group — once every
    /// peer this member can reach holds it.
    pub(super) fn answer_write(&mut self, key: RequestKey, reply: Reply, io: &mut Io<'_, Self>) {
        let g = key.group;
        // An n-way backup answers what its primary ordered (checked to stand).
        if !self.synchronous(g) || !self.ships(g) || !self.serves_itself(g) {
            return self.reply(&key, Some(reply), Status::Ok, io);
        }
        // A retry of a write that lost to another value gets no second answer.
        let holds = self.stores[g as usize].get(&key.key);
        if holds.version == reply.entry.version && holds != reply.entry {
            io.count(counters::SHIP_CONFLICTS, 1);
            return self.reply(&key, None, Status::Unreplicated, io);
        }
        // Only the primary in this member's view takes writes. A backup
        // whose clients failed over while it still sees the primary
        // refuses, rather than fork the data.
        if self.primary(g) != Some(self.me) {
            return self.reply(&key, None, Status::Unreplicated, io);
        }
        let reachable = self.reachable_peers(g);
        let waiting: SmallVec<[NodeId; 4]> = reachable
            .iter()
            .copied()
            .filter(|p| self.shipping[g as usize].unshipped.get(p).is_some_and(|u| u.contains_key(&key.key)))
            .collect();
        let needed = self.topo.groups[g as usize].quorum - 1;
        if waiting.is_empty() {
            // Nothing to ship: a retry whose write the peers hold already,
            // unless too few can be reached to make a majority.
            let reachable = reachable.len();
            let status = if reachable >= needed { Status::Ok } else { Status::Unreplicated };
            return self.reply(&key, Some(reply).filter(|_| status == Status::Ok), status, io);
        }
        if waiting.len() < needed {
            return self.reply(&key, None, Status::Unreplicated, io);
        }
        for &p in &waiting {
            self.send_ship(g, p, io);
        }
        self.shipping[g as usize].held.push(Held { key, reply, waiting, acked: 0, conflicted: false });
    }

    fn send_replica(&mut self, group: u16, to: NodeId, mut body: ReplicaBody, io: &mut Io<'_, Self>) {
        if self.byzantine == Some(Behaviour::Corrupt) {
            forge(&mut body, io);
        }
        let r = Replica { group, from: self.me, to, hops: 0, body };
        self.route(to, Msg::Replica(r), io);
    }

    fn send_ship(&mut self, group: u16, to: NodeId, io: &mut Io<'_, Self>) {
        let Some(u) = self.shipping[group as usize].unshipped.get(&to) else { return };
        let all: Vec<Shipped> = u.values().cloned().collect();
        for part in all.chunks(CHUNK) {
            self.send_replica(group, to, ReplicaBody::Ship(part.to_vec()), io);
        }
    }

    /// Every heartbeat: ships what the peers lack, lets go of held answers
    /// whose missing peers became unreachable, ends an overdue catch-up.
    pub(super) fn ship_beat(&mut self, io: &mut Io<'_, Self>) {
        for g in 0..self.topo.groups.len() as u16 {
            if !self.ships(g) {
                continue;
            }
            let now = io.now();
            let (late, awaiting) = std::mem::take(&mut self.shipping[g as usize].awaiting)
                .into_iter()
                .partition(|(_, until)| *until <= now);
            self.shipping[g as usize].awaiting = awaiting;
            for (key, _) in late {
                self.reply(&key, None, Status::Unordered, io);
            }
            if let Some((awaited, until)) = self.shipping[g as usize].catching_up.clone() {
                if until <= io.now() {
                    io.count(counters::CATCH_UP_TIMEOUTS, 1);
                    self.caught_up(g);
                } else {
                    // A pull or its answer may have been lost: ask again.
                    for p in awaited {
                        self.send_replica(g, p, ReplicaBody::Pull, io);
                    }
                }
            }
            let digest = self.beat.is_multiple_of(DIGEST_EVERY).then(|| self.stores[g as usize].digest());
            for p in self.peers(g) {
                if self.shipping[g as usize].unshipped.get(&p).is_some_and(|u| !u.is_empty()) {
                    self.send_ship(g, p, io);
                }
                if let Some(d) = digest {
                    self.send_replica(g, p, ReplicaBody::Digest(d), io);
                }
            }
            // Peers that became unreachable are not waited for, as long as
            // a majority can still hold the write.
            let reachable = self.view.reachable.clone();
            let needed = self.topo.groups[g as usize].quorum - 1;
            for h in &mut self.shipping[g as usize].held {
                let (up, gone): (SmallVec<[NodeId; 4]>, SmallVec<[NodeId; 4]>) =
                    h.waiting.iter().copied().partition(|p| reachable.get(p.index()).copied().unwrap_or(false));
                if !gone.is_empty() && h.acked + up.len() >= needed {
                    h.waiting = up;
                }
            }
            self.release_held(g, io);
        }
    }

    /// Answers the held writes no peer is missing any more.
    fn release_held(&mut self, group: u16, io: &mut Io<'_, Self>) {
        let held = std::mem::take(&mut self.shipping[group as usize].held);
        let needed = self.topo.groups[group as usize].quorum - 1;
        let (ready, waiting): (Vec<Held>, Vec<Held>) =
            held.into_iter().partition(|h| h.waiting.is_empty() && (h.acked >= needed || h.conflicted));
        self.shipping[group as usize].held = waiting;
        for h in ready {
            if h.conflicted {
                io.count(counters::SHIP_CONFLICTS, 1);
                self.reply(&h.key, None, Status::Unreplicated, io);
            } else {
                self.reply(&h.key, Some(h.reply), Status::Ok, io);
            }
        }
    }

    pub(super) fn on_replica(&mut self, r: Replica, io: &mut Io<'_, Self>) {
        if r.to != self.me {
            if r.hops < 32 {
                self.route(r.to, Msg::Replica(Replica { hops: r.hops + 1, ..r }), io);
            }
            return;
        }
        let member = |n: NodeId| self.topo.groups.get(r.group as usize).is_some_and(|g| g.members.contains(&n));
        // Only the group's members exchange its data.
        if self.byzantine == Some(Behaviour::Silent) || !member(r.from) || r.from == self.me || !self.ships(r.group) {
            return;
        }
        let (g, from) = (r.group, r.from);
        if !self.sealed(g, &r.body, io) {
            // Data no writer sealed: the sender forged it. Dropped whole,
            // unacknowledged. (A forging n-way primary stalls its group:
            // ordering that survives it is PBFT's.)
            io.count(counters::PEER_FORGED, 1);
            return;
        }
        match r.body {
            ReplicaBody::Ship(list) => {
                let mut acked = Vec::with_capacity(list.len());
                // A sync group's member keeps the first value it holds at a
                // version (see the module's comment); the others merge.
                let rule = if self.synchronous(g) { Take::Newer } else { Take::Merge };
                let mut ordered = Vec::new();
                for s in list {
                    self.take(g, &s.key, s.entry.clone(), rule, io);
                    // A retry here is answered as the write was, if it stood
                    // (a later write over it, shipped first, does not undo it).
                    let held = self.stores[g as usize].get(&s.key);
                    let stood = held == s.entry || held.version > s.entry.version;
                    for (client, id, reply) in s.writes {
                        if stood && self.applied_before(g, (client, id)).is_none() {
                            self.record_applied(g, (client, id), &reply, io);
                        }
                        ordered.push((client, id, None, Some(reply).filter(|_| stood)));
                    }
                    for (client, id, attempt, reply) in s.reads {
                        ordered.push((client, id, Some(attempt), Some(reply).filter(|_| stood)));
                    }
                    acked.push((s.key.clone(), self.stores[g as usize].get(&s.key)));
                }
                let ack = Replica { group: g, from: self.me, to: from, hops: 0, body: ReplicaBody::Acked(acked) };
                let answers = self.ordered(g, ordered, io);
                if self.topo.groups[g as usize].consistency == Consistency::Strong {
                    // Acknowledged and answered once on disk.
                    self.sync(answers, vec![ack], io);
                } else {
                    for (key, reply) in answers {
                        self.reply(&key, Some(reply), Status::Ok, io);
                    }
                    self.route(from, Msg::Replica(ack), io);
                }
            }
            ReplicaBody::Acked(list) => self.on_acked(g, from, list, io),
            ReplicaBody::ReadRepair { key, entry } => {
                let before = self.stores[g as usize].get(&key);
                self.take(g, &key, entry.clone(), Take::Merge, io);
                let mine = self.stores[g as usize].get(&key);
                if mine != before {
                    io.count(counters::READ_REPAIRED, 1);
                }
                if mine != entry {
                    // Ours wins: the sender takes it (and, equal then, stops).
                    self.send_replica(g, from, ReplicaBody::ReadRepair { key, entry: mine }, io);
                }
            }
            ReplicaBody::Digest(d) => {
                if d != self.stores[g as usize].digest() {
                    io.count(counters::ANTI_ENTROPY, 1);
                    let all: Vec<Shipped> =
                        self.stores[g as usize].entries().map(|(k, e)| Shipped::bare(k, e)).collect();
                    for part in all.chunks(CHUNK) {
                        self.send_replica(g, from, ReplicaBody::Ship(part.to_vec()), io);
                    }
                }
            }
            ReplicaBody::Pull => {
                let all = self.stores[g as usize].snapshot();
                let parts = all.len().div_ceil(CHUNK).max(1);
                for i in 0..parts {
                    let entries = all[i * CHUNK..((i + 1) * CHUNK).min(all.len())].to_vec();
                    self.send_replica(g, from, ReplicaBody::State { entries, last: i + 1 == parts }, io);
                }
            }
            ReplicaBody::State { entries, last } => {
                let Some((awaited, _)) = &self.shipping[g as usize].catching_up else { return };
                if !awaited.contains(&from) {
                    return;
                }
                for (key, entry) in entries {
                    self.take(g, &key, entry, Take::Adopt, io);
                }
                if last {
                    let (awaited, _) = self.shipping[g as usize].catching_up.as_mut().expect("catching up");
                    awaited.retain(|p| *p != from);
                    if awaited.is_empty() {
                        self.caught_up(g);
                    }
                }
            }
        }
    }

    /// The requests a primary ordered, as a backup received them: each
    /// awaiting one gets its reply, or — a write
    /// another value stood over — a refusal now; a read whose request has
    /// not arrived yet is kept for it.
    fn ordered(&mut self, g: u16, ops: Vec<OrderedOp>, io: &mut Io<'_, Self>) -> Vec<(RequestKey, Reply)> {
        let mut answers = Vec::new();
        for (client, id, attempt, reply) in ops {
            let awaiting = &mut self.shipping[g as usize].awaiting;
            let this = |k: &RequestKey| (k.client, k.id) == (client, id) && attempt.is_none_or(|a| a == k.attempt);
            let Some(i) = awaiting.iter().position(|(k, _)| this(k)) else {
                if let (Some(attempt), Some(reply)) = (attempt, reply) {
                    let early = &mut self.shipping[g as usize].early_reads;
                    if early.len() == EARLY_READS_KEPT {
                        early.pop_front();
                    }
                    early.push_back(((client, id, attempt), reply));
                }
                continue;
            };
            let (key, _) = awaiting.swap_remove(i);
            match reply {
                Some(reply) => answers.push((key, reply)),
                None => self.reply(&key, None, Status::Unreplicated, io),
            }
        }
        answers
    }

    /// Takes a peer's entry by `rule`, on disk if taken.
    /// Whether every entry `body` carries is sealed by its writers.
    fn sealed(&mut self, g: u16, body: &ReplicaBody, io: &mut Io<'_, Self>) -> bool {
        let topo = self.topo.clone();
        let mut ok = |key: &str, e: &Entry| self.verified.authentic(&topo, g, key, e, io);
        match body {
            ReplicaBody::Ship(list) => list.iter().all(|s| ok(&s.key, &s.entry)),
            ReplicaBody::State { entries, .. } | ReplicaBody::Acked(entries) => entries.iter().all(|(k, e)| ok(k, e)),
            ReplicaBody::ReadRepair { key, entry } => ok(key, entry),
            ReplicaBody::Pull | ReplicaBody::Digest(_) => true,
        }
    }

    /// Data no writer sealed is refused (counted: a peer or a client forged it).
    pub(super) fn take(&mut self, group: u16, key: &str, entry: Entry, rule: Take, io: &mut Io<'_, Self>) {
        if !self.verified.authentic(&self.topo, group, key, &entry, io) {
            io.count(counters::PEER_FORGED, 1);
            return;
        }
        let store = &mut self.stores[group as usize];
        let taken = match rule {
            Take::Merge => store.merge(key, entry.clone()),
            Take::Newer => store.repair(key, entry.clone()),
            Take::Adopt => store.adopt(key, entry.clone()),
        };
        if taken {
            io.count(counters::SHIPPED_TAKEN, 1);
            self.persist(group, key, &entry, io);
        }
    }

    fn on_acked(&mut self, g: u16, from: NodeId, list: Vec<(String, Entry)>, io: &mut Io<'_, Self>) {
        for (key, theirs) in list {
            let Some(ours) = self.shipping[g as usize].unshipped.get(&from).and_then(|u| u.get(&key)) else {
                continue;
            };
            if theirs.version < ours.entry.version {
                continue; // an ack of an older ship: the newer one is on its way
            }
            let forked = theirs != ours.entry;
            // A sync group's write still held gives way to the value a peer
            // already held; one acknowledged (held by a majority) stays.
            let pending = self.shipping[g as usize].held.iter().any(|h| h.key.key == key);
            let rule = match (self.synchronous(g), pending) {
                (false, _) => Take::Merge,
                (true, true) => Take::Adopt,
                (true, false) => Take::Newer,
            };
            self.take(g, &key, theirs.clone(), rule, io);
            // Done with the key unless ours won the tie (then it goes again).
            if self.stores[g as usize].get(&key) == theirs {
                self.shipping[g as usize].unshipped.get_mut(&from).expect("shipped").remove(&key);
            }
            for h in &mut self.shipping[g as usize].held {
                if h.key.key == key && h.waiting.contains(&from) {
                    h.waiting.retain(|p| *p != from);
                    let lost = forked && theirs.version >= h.reply.entry.version;
                    h.conflicted |= lost;
                    h.acked += !lost as usize;
                }
            }
        }
        self.release_held(g, io);
    }

    /// After a restart (with or without memory): pulls every peer's state
    /// of each shipped group before serving it again.
    pub(super) fn catch_up(&mut self, io: &mut Io<'_, Self>) {
        let wait = self.topo.params.rpc.timeout * 4;
        for g in 0..self.topo.groups.len() as u16 {
            if !self.ships(g) {
                continue;
            }
            let peers = self.peers(g);
            let s = &mut self.shipping[g as usize];
            // Their requests were lost with the crash.
            s.held.clear();
            s.awaiting.clear();
            s.catching_up = Some((peers.clone(), io.now() + wait));
            for p in peers {
                self.send_replica(g, p, ReplicaBody::Pull, io);
            }
        }
    }

    /// The catch-up of `group` is over: what this member holds goes to
    /// every peer (a peer with newer keeps its own).
    fn caught_up(&mut self, group: u16) {
        let g = group as usize;
        self.shipping[g].catching_up = None;
        let all = self.stores[g].snapshot();
        for peer in self.peers(group) {
            let u = self.shipping[g].unshipped.entry(peer).or_default();
            for (key, entry) in &all {
                u.entry(key.clone()).or_insert_with(|| Shipped::bare(key, entry)).entry = entry.clone();
            }
        }
    }
}

/// What a corrupt Byzantine member sends its peers: every entry's value
/// replaced by one no client wrote, at a version ahead.
fn forge(body: &mut ReplicaBody, io: &mut Io<'_, Replicas>) {
    let mut lie = |e: &mut Entry| {
        e.value = format!("forged-{:x};", io.rng().random::<u32>()).into_bytes();
        e.version += 1;
    };
    match body {
        ReplicaBody::Ship(list) => list.iter_mut().for_each(|s| lie(&mut s.entry)),
        ReplicaBody::State { entries, .. } | ReplicaBody::Acked(entries) => {
            entries.iter_mut().for_each(|(_, e)| lie(e))
        }
        ReplicaBody::ReadRepair { entry, .. } => lie(entry),
        ReplicaBody::Pull | ReplicaBody::Digest(_) => {}
    }
}
