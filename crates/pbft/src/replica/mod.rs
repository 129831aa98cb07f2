//! A PBFT replica: the normal case and retransmission here; checkpoints,
//! water marks and state transfer in `checkpoint.rs`; view changes in
//! `view_change.rs` (see the crate docs for the protocol).

use crate::auth::{seal_for_all, send, Envelope};
use crate::msg::{batch_digest, extend_chain, Msg, Request, Snapshot, ViewChange};
use crate::node::{Node, Timer};
use crate::{Config, Digest, StateMachine};
use agora_core::{Io, NodeId};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

mod checkpoint;
mod view_change;

/// One sequence number's agreement in the view it was last touched in,
/// and what a view change reports about it from earlier views.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Slot {
    view: u64,
    /// The primary's batch and its digest.
    pre_prepare: Option<(Digest, Vec<Request>)>,
    /// Each replica's first prepare (and commit) here: a later, different
    /// one from the same replica never replaces it, so a replica cannot
    /// move its vote between digests.
    prepares: BTreeMap<NodeId, Digest>,
    commits: BTreeMap<NodeId, Digest>,
    prepared: bool,
    committed: bool,
    /// The latest earlier view this replica prepared a batch here in, the
    /// digest and the batch; with [`Slot::prepared_claim`], a view change's
    /// prepared set.
    last_prepared: Option<(u64, Digest, Vec<Request>)>,
    /// The digests it accepted a pre-prepare for here, each with the latest
    /// view (a view change's pre-prepared set; the newest few).
    pre_prepared: Vec<(u64, Digest)>,
}

/// How many digests a slot remembers having pre-prepared in earlier views.
const PRE_PREPARED_KEPT: usize = 4;

impl Slot {
    fn note_pre_prepared(&mut self, view: u64, digest: Digest) {
        self.pre_prepared.retain(|(_, d)| *d != digest);
        self.pre_prepared.push((view, digest));
        if self.pre_prepared.len() > PRE_PREPARED_KEPT {
            self.pre_prepared.remove(0);
        }
    }
    /// Starts the slot over in `view`, keeping what a view change reports
    /// (a batch prepared in this view moves into `last_prepared`).
    fn reset(&mut self, view: u64) {
        let mut last_prepared = self.last_prepared.take();
        if let (true, Some((digest, batch))) = (self.prepared, self.pre_prepare.take()) {
            last_prepared = Some((self.view, digest, batch));
        }
        let pre_prepared = std::mem::take(&mut self.pre_prepared);
        *self = Slot { view, last_prepared, pre_prepared, ..Slot::default() };
    }

    /// The latest batch prepared here, in any view: view, digest, batch.
    fn prepared_claim(&self) -> Option<(u64, &Digest, &Vec<Request>)> {
        match (&self.pre_prepare, &self.last_prepared) {
            (Some((d, b)), _) if self.prepared => Some((self.view, d, b)),
            (_, Some((v, d, b))) => Some((*v, d, b)),
            _ => None,
        }
    }
}

/// A checkpoint this replica took, kept until a later one is stable so
/// that a replica behind can fetch it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Taken {
    digest: Digest,
    /// This replica's signature of its checkpoint message.
    signature: Vec<u8>,
    snapshot: Snapshot,
}

/// A replica of a PBFT group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica<M> {
    cfg: Arc<Config>,
    me: NodeId,
    view: u64,
    /// In the view's normal case; false from sending a view change for
    /// `view` until its new view is entered.
    active: bool,
    machine: M,
    /// The agreement log: sequence numbers in `(low, low + window]`.
    log: BTreeMap<u64, Slot>,
    /// The last stable checkpoint (the low water mark) and its digest.
    low: u64,
    low_digest: Digest,
    /// The last sequence number executed here, and the hash chain of the
    /// batch digests executed up to it.
    executed: u64,
    chain: Digest,
    /// The primary's last assigned sequence number.
    assigned: u64,
    /// Requests received and not executed, the newest per client, in the
    /// order they came: the primary batches them, a backup times them.
    pending: VecDeque<Request>,
    /// The primary's newest proposed request per client in this view.
    proposed: BTreeMap<NodeId, u64>,
    batch_timer: bool,
    /// The request timer is running (an execution is expected).
    request_timer: bool,
    /// View changes since the last execution: each doubles the timeout.
    backoff: u32,
    /// Each replica's newest view change for a view after this one's.
    view_changes: BTreeMap<NodeId, ViewChange>,
    /// The new-view message of this view, to hand to replicas behind.
    /// Sealed once for every peer: a message sent again is the same
    /// envelope (the model checker's network holds each once).
    new_view: Option<Box<Envelope>>,
    /// The reply cache: each client's last executed request's timestamp
    /// and result (part of the replicated state).
    replies: BTreeMap<NodeId, (u64, Vec<u8>)>,
    /// Checkpoint votes after the low water mark, by replica. Beyond the
    /// window each replica keeps only its newest few (as many as a correct
    /// replica holds), so a replica far behind learns where the others are
    /// while nobody can make it store more.
    votes: BTreeMap<u64, BTreeMap<NodeId, Digest>>,
    taken: BTreeMap<u64, Taken>,
    /// A state transfer under way: the checkpoint, its digest and how many
    /// times the state was asked for; and the replicas that vouched for it.
    fetching: Option<(u64, Digest, u32)>,
    fetch_from: Vec<NodeId>,
    /// What was executed at the last status tick: a replica that made no
    /// progress since, while f + 1 replicas vouch for a later checkpoint,
    /// fetches it (the slots it lacks may be gone from every log).
    executed_at_tick: u64,
}

impl<M: StateMachine> Replica<M> {
    pub fn new(cfg: Arc<Config>, me: NodeId, machine: M) -> Self {
        Replica {
            cfg,
            me,
            view: 0,
            active: true,
            machine,
            log: BTreeMap::new(),
            low: 0,
            low_digest: Digest::default(),
            executed: 0,
            chain: Digest::default(),
            assigned: 0,
            pending: VecDeque::new(),
            proposed: BTreeMap::new(),
            batch_timer: false,
            request_timer: false,
            backoff: 0,
            view_changes: BTreeMap::new(),
            new_view: None,
            replies: BTreeMap::new(),
            votes: BTreeMap::new(),
            taken: BTreeMap::new(),
            fetching: None,
            fetch_from: Vec::new(),
            executed_at_tick: 0,
        }
    }

    pub fn view(&self) -> u64 {
        self.view
    }
    pub fn id(&self) -> NodeId {
        self.me
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// In the normal case of [`Replica::view`] (not changing views).
    pub fn active(&self) -> bool {
        self.active
    }
    /// The last sequence number executed here.
    pub fn executed(&self) -> u64 {
        self.executed
    }
    /// The hash chain of the batch digests executed up to [`Replica::executed`].
    pub fn chain(&self) -> &Digest {
        &self.chain
    }
    /// The last stable checkpoint and its digest.
    pub fn stable(&self) -> (u64, &Digest) {
        (self.low, &self.low_digest)
    }
    pub fn machine(&self) -> &M {
        &self.machine
    }
    /// The batches committed here in the current view and still in the log:
    /// sequence number and digest.
    pub fn committed(&self) -> impl Iterator<Item = (u64, &Digest)> {
        self.log.iter().filter(|(_, s)| s.committed).filter_map(|(n, s)| Some((*n, &s.pre_prepare.as_ref()?.0)))
    }
    pub fn is_primary(&self) -> bool {
        self.cfg.primary(self.view) == self.me
    }
    fn in_window(&self, seq: u64) -> bool {
        seq > self.low && seq <= self.low + self.cfg.window
    }

    /// The replica's own invariants: the log holds only the window, every
    /// committed slot is prepared and every prepared one has its batch, and
    /// nothing below the stable checkpoint is still to execute unless its
    /// state is being fetched.
    pub fn check(&self) -> Result<(), String> {
        let me = self.me.0;
        if let (Some(first), Some(last)) = (self.log.keys().next(), self.log.keys().next_back()) {
            if !self.in_window(*first) || !self.in_window(*last) {
                return Err(format!(
                    "replica {me}: log holds {first}..={last} outside its window ({}, {}]",
                    self.low,
                    self.low + self.cfg.window
                ));
            }
        }
        for (seq, s) in &self.log {
            if (s.committed && !s.prepared) || (s.prepared && s.pre_prepare.is_none()) {
                return Err(format!("replica {me}: slot {seq} is committed or prepared without its batch"));
            }
        }
        if self.executed < self.low && self.fetching.is_none() {
            return Err(format!(
                "replica {me}: executed {} is behind stable checkpoint {} and no state is fetched",
                self.executed, self.low
            ));
        }
        let most_votes = self.checkpoints_held() * (1 + self.cfg.replicas as usize);
        if self.pending.len() > self.cfg.clients as usize
            || self.votes.len() > most_votes
            || self.view_changes.len() > self.cfg.replicas as usize
        {
            return Err(format!(
                "replica {me}: more requests pending, checkpoint votes or view changes than its bounds allow"
            ));
        }
        Ok(())
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "role": "replica",
            "view": self.view,
            "changing_view": !self.active,
            "primary": self.is_primary(),
            "executed": self.executed,
            "stable_checkpoint": self.low,
            "log": self.log.len(),
            "pending": self.pending.len(),
            "fetching_state": self.fetching.map(|f| f.0),
        })
    }

    /// Also on recovery with memory: the timers were lost.
    pub(crate) fn on_start(&mut self, io: &mut Io<'_, Node<M>>) {
        if !self.cfg.status_interval.is_zero() {
            io.set_timer(self.cfg.status_interval, Timer::Status);
        }
        self.batch_timer = false;
        self.request_timer = false;
        if !self.active {
            io.set_timer(self.view_change_timeout(), Timer::ViewChange);
        }
        self.time_requests(io);
        self.propose(true, io);
    }

    pub(crate) fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Node<M>>) {
        match timer {
            Timer::Status => {
                self.send_status(io);
                if self.fetching.is_none() && self.executed == self.executed_at_tick {
                    self.fetch_if_stuck(io);
                }
                self.executed_at_tick = self.executed;
                self.ask_state(io);
                self.resend_view_change(io);
                io.set_timer(self.cfg.status_interval, Timer::Status);
            }
            Timer::ViewChange => self.view_change_timed_out(io),
            Timer::Batch => {
                self.batch_timer = false;
                self.propose(true, io);
            }
            Timer::Retransmit => {}
        }
    }

    pub(crate) fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Node<M>>) {
        if let Msg::Request(r) = msg {
            return self.on_request(from, r, io);
        }
        // Everything else comes from another replica.
        if !self.cfg.is_replica(from) || from == self.me {
            io.count("ignored_not_from_a_replica", 1);
            return;
        }
        match msg {
            Msg::PrePrepare { view, seq, batch } => self.on_pre_prepare(from, view, seq, batch, io),
            Msg::Prepare { view, seq, digest } => self.on_vote(from, view, seq, digest, false, io),
            Msg::Commit { view, seq, digest } => self.on_vote(from, view, seq, digest, true, io),
            Msg::Checkpoint { seq, digest, signature } => self.on_checkpoint(from, seq, digest, &signature, io),
            Msg::Status { view, executed, stable } => self.on_status(from, view, executed, stable, io),
            Msg::FetchState { seq } => self.on_fetch(from, seq, io),
            Msg::State { seq, state } => self.on_state(seq, *state, io),
            Msg::ViewChange(vc) => self.on_view_change(from, *vc, io),
            Msg::NewView { view, proof, signature } => self.on_new_view(view, proof, signature, io),
            Msg::Request(_) | Msg::Reply { .. } => io.count("ignored_not_for_a_replica", 1),
        }
    }

    /// Tells the other replicas how far this one is (they resend what it lacks).
    fn send_status(&self, io: &mut Io<'_, Node<M>>) {
        let status = Msg::Status { view: self.view, executed: self.executed, stable: self.low };
        self.to_replicas(status, io);
    }

    /// Sends `msg` to the other replicas, with one authenticator for all.
    fn to_replicas(&self, msg: Msg, io: &mut Io<'_, Node<M>>) {
        let envelope = self.seal_for_peers(msg, io);
        self.to_peers(&envelope, io);
    }

    fn to_peers(&self, envelope: &Envelope, io: &mut Io<'_, Node<M>>) {
        for r in self.cfg.replica_ids().filter(|&r| r != self.me) {
            io.send(r, envelope.clone());
        }
    }

    fn seal_for_peers(&self, msg: Msg, io: &Io<'_, Node<M>>) -> Envelope {
        let peers: Vec<NodeId> = self.cfg.replica_ids().filter(|&r| r != self.me).collect();
        seal_for_all(io, &peers, msg)
    }

    /// The slot for `seq`, started over if it was last touched in an older view.
    fn slot(&mut self, seq: u64) -> &mut Slot {
        let view = self.view;
        let slot = self.log.entry(seq).or_default();
        if slot.view != view {
            slot.reset(view);
        }
        slot
    }

    fn on_request(&mut self, from: NodeId, r: Request, io: &mut Io<'_, Node<M>>) {
        if from != r.client || !self.cfg.is_client(from) {
            io.count("ignored_request_not_from_its_client", 1);
            return;
        }
        if let Some((t, result)) = self.replies.get(&r.client) {
            if *t >= r.timestamp {
                // A retransmission of what was executed: the reply was lost.
                if *t == r.timestamp {
                    send(io, from, Msg::Reply { view: self.view, timestamp: *t, result: result.clone() });
                }
                return;
            }
        }
        if self.pending.iter().any(|p| p.client == r.client && p.timestamp >= r.timestamp) {
            return;
        }
        self.pending.retain(|p| p.client != r.client);
        self.pending.push_back(r);
        self.time_requests(io);
        self.propose(false, io);
    }

    /// A replica with requests waiting runs its request timer: if none is
    /// executed before it fires, it suspects the view and leaves it. The
    /// primary too: one that cannot get its batches committed (the
    /// Byzantine sweep found a run where only it could still tell) gives
    /// the view up as well.
    fn time_requests(&mut self, io: &mut Io<'_, Node<M>>) {
        if self.active && !self.pending.is_empty() && !self.request_timer {
            self.request_timer = true;
            io.set_timer(self.view_change_timeout(), Timer::ViewChange);
        }
    }

    /// The primary sends batches while the pipeline and the window have
    /// room: at once, or — with a batch delay — when a batch is full or
    /// the delay is over (`flush`).
    fn propose(&mut self, flush: bool, io: &mut Io<'_, Node<M>>) {
        if !self.active || !self.is_primary() {
            return;
        }
        let cfg = self.cfg.clone();
        while self.assigned < self.low + cfg.window && self.assigned.saturating_sub(self.executed) < cfg.pipeline {
            let fresh = |r: &&Request| self.proposed.get(&r.client).is_none_or(|t| *t < r.timestamp);
            let batch: Vec<Request> = self.pending.iter().filter(fresh).take(cfg.batch_max).cloned().collect();
            if batch.is_empty() {
                return;
            }
            if batch.len() < cfg.batch_max && !cfg.batch_delay.is_zero() && !flush {
                if !self.batch_timer {
                    self.batch_timer = true;
                    io.set_timer(cfg.batch_delay, Timer::Batch);
                }
                return;
            }
            for r in &batch {
                self.proposed.insert(r.client, r.timestamp);
            }
            self.assigned += 1;
            let (view, seq, digest) = (self.view, self.assigned, batch_digest(&batch));
            let slot = self.slot(seq);
            slot.pre_prepare = Some((digest, batch.clone()));
            slot.note_pre_prepared(view, digest);
            io.count("batches_proposed", 1);
            self.to_replicas(Msg::PrePrepare { view, seq, batch }, io);
            self.check_prepared(seq, io);
        }
    }

    fn on_pre_prepare(&mut self, from: NodeId, view: u64, seq: u64, batch: Vec<Request>, io: &mut Io<'_, Node<M>>) {
        if view != self.view || !self.active || from != self.cfg.primary(view) {
            io.count("ignored_other_view", 1);
            return;
        }
        if !self.in_window(seq) {
            io.count("ignored_outside_window", 1);
            return;
        }
        if batch.is_empty() || batch.len() > self.cfg.batch_max || batch.iter().any(|r| !self.cfg.is_client(r.client)) {
            io.count("ignored_malformed_batch", 1);
            return;
        }
        // Each request as its client sent it: a primary cannot alter one.
        if batch.iter().any(|r| !r.authentic(io)) {
            io.count("ignored_unauthenticated_request", 1);
            return;
        }
        let digest = batch_digest(&batch);
        let me = self.me;
        let slot = self.slot(seq);
        match &slot.pre_prepare {
            Some((d, _)) if *d == digest => return,
            Some(_) => {
                io.count("equivocations_seen", 1);
                return;
            }
            None => {}
        }
        slot.pre_prepare = Some((digest, batch));
        slot.note_pre_prepared(view, digest);
        slot.prepares.entry(me).or_insert(digest);
        self.to_replicas(Msg::Prepare { view, seq, digest }, io);
        self.check_prepared(seq, io);
    }

    fn on_vote(&mut self, from: NodeId, view: u64, seq: u64, digest: Digest, commit: bool, io: &mut Io<'_, Node<M>>) {
        // Votes for the view this replica is changing to count too: a peer
        // that entered the new view first sends its prepares at once, and
        // were they dropped here, the batch would wait for the next status
        // exchange (the bench found every view change taking a status
        // interval longer than its timeout). A vote is evidence whatever
        // view the receiver is in; the slot's claims for the view change
        // are kept (`Slot::reset`).
        if view != self.view {
            io.count("ignored_other_view", 1);
            return;
        }
        if !self.in_window(seq) {
            io.count("ignored_outside_window", 1);
            return;
        }
        // The primary's pre-prepare stands for its prepare.
        if !commit && from == self.cfg.primary(view) {
            return;
        }
        let slot = self.slot(seq);
        let votes = if commit { &mut slot.commits } else { &mut slot.prepares };
        votes.entry(from).or_insert(digest);
        if commit {
            self.check_committed(seq, io)
        } else {
            self.check_prepared(seq, io)
        }
    }

    /// Prepared: the pre-prepare and 2f matching prepares from backups.
    fn check_prepared(&mut self, seq: u64, io: &mut Io<'_, Node<M>>) {
        let (me, needed, view) = (self.me, self.cfg.prepare_quorum(), self.view);
        let Some(slot) = self.log.get_mut(&seq) else { return };
        let Some((digest, _)) = &slot.pre_prepare else { return };
        let digest = *digest;
        if slot.prepared || slot.prepares.values().filter(|d| **d == digest).count() < needed {
            return;
        }
        slot.prepared = true;
        slot.commits.entry(me).or_insert(digest);
        self.to_replicas(Msg::Commit { view, seq, digest }, io);
        self.check_committed(seq, io);
    }

    /// Committed here: prepared, and 2f + 1 matching commits.
    fn check_committed(&mut self, seq: u64, io: &mut Io<'_, Node<M>>) {
        let quorum = self.cfg.commit_quorum();
        let Some(slot) = self.log.get_mut(&seq) else { return };
        let Some((digest, _)) = &slot.pre_prepare else { return };
        if !slot.prepared || slot.committed || slot.commits.values().filter(|d| *d == digest).count() < quorum {
            return;
        }
        slot.committed = true;
        self.execute(io);
    }

    /// Executes the committed batches that are next in sequence order.
    fn execute(&mut self, io: &mut Io<'_, Node<M>>) {
        let before = self.executed;
        while let Some(slot) = self.log.get(&(self.executed + 1)).filter(|s| s.committed) {
            let seq = self.executed + 1;
            let (digest, batch) = slot.pre_prepare.as_ref().expect("a committed slot has its batch");
            for r in batch {
                if self.replies.get(&r.client).is_some_and(|(t, _)| *t >= r.timestamp) {
                    continue; // executed before: each request once
                }
                let result = self.machine.apply(&r.op);
                send(io, r.client, Msg::Reply { view: self.view, timestamp: r.timestamp, result: result.clone() });
                self.replies.insert(r.client, (r.timestamp, result));
                io.count("requests_executed", 1);
            }
            self.chain = extend_chain(&self.chain, seq, digest);
            self.executed = seq;
            if seq.is_multiple_of(self.cfg.checkpoint_interval) {
                self.take_checkpoint(io);
            }
        }
        if self.executed > before {
            self.progressed(io);
        }
        self.propose(false, io);
    }

    /// After executing: drop what was executed from the pending requests,
    /// and restart the request timer for what is left (or stop it).
    fn progressed(&mut self, io: &mut Io<'_, Node<M>>) {
        let replies = &self.replies;
        self.pending.retain(|r| replies.get(&r.client).is_none_or(|(t, _)| *t < r.timestamp));
        self.backoff = 0;
        if self.request_timer {
            self.request_timer = false;
            io.cancel_timer(Timer::ViewChange);
        }
        self.time_requests(io);
    }

    /// A peer told how far it is: resend it this replica's own messages for
    /// the slots in its window it has not executed, and the checkpoints it
    /// may lack.
    fn on_status(&mut self, from: NodeId, view: u64, executed: u64, stable: u64, io: &mut Io<'_, Node<M>>) {
        for (&seq, t) in self.taken.range(stable.saturating_add(1)..).filter(|(_, t)| !t.signature.is_empty()) {
            send(io, from, Msg::Checkpoint { seq, digest: t.digest, signature: t.signature.clone() });
        }
        if view < self.view && self.active {
            if let Some(nv) = &self.new_view {
                io.send(from, (**nv).clone());
            }
        }
        if view != self.view || !self.active {
            return;
        }
        let primary = self.is_primary();
        let mut resent = 0;
        // What it lacks in its window (the numbers are the peer's: saturate).
        let (first, last) = (executed.max(stable).saturating_add(1), stable.saturating_add(self.cfg.window));
        if first > last {
            return;
        }
        for (&seq, slot) in self.log.range(first..=last).filter(|(_, s)| s.view == view) {
            let Some((digest, batch)) = &slot.pre_prepare else { continue };
            let digest = *digest;
            if primary {
                send(io, from, Msg::PrePrepare { view, seq, batch: batch.clone() });
            } else {
                send(io, from, Msg::Prepare { view, seq, digest });
            }
            if slot.prepared {
                send(io, from, Msg::Commit { view, seq, digest });
            }
            resent += 1;
        }
        if resent > 0 {
            io.count("slots_resent", resent);
        }
    }
}
