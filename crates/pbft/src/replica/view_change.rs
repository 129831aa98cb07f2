//! View changes (Castro–Liskov § 4.4): a replica whose request timer fires
//! suspects the view and sends a signed view change for the next view;
//! the new primary, with 2f + 1 of them that determine a decision, sends
//! them all as its new view; every replica checks the signatures, computes
//! the same decision ([`crate::decide`]) and starts the view from it. A
//! view change that 2f + 1 replicas joined and that does not complete in
//! time moves on to the next view, each time with twice the timeout (up to
//! 8×); f + 1 view changes for later views make a replica join the
//! earliest of them.

use super::Replica;
use crate::auth::{sign, signed};
use crate::decide::{decide, Decision};
use crate::msg::{batch_digest, new_view_bytes, Msg, PrePrepared, Prepared, ViewChange};
use crate::node::{Node, Timer};
use crate::StateMachine;
use agora_core::{Io, NodeId};
use std::time::Duration;

/// The most the view-change timeout doubles: 2^3 = 8 times the base.
const MAX_BACKOFF: u32 = 3;

/// View changes for views further ahead than this are dropped, as
/// relab/hotstuff drops proposals more than 10 views ahead: a replica that
/// announces huge views makes nobody jump or store anything. A replica
/// truly that far behind catches up from a new view, which proves itself.
pub(crate) const MAX_VIEWS_AHEAD: u64 = 10;

impl<M: StateMachine> Replica<M> {
    pub(super) fn view_change_timeout(&self) -> Duration {
        self.cfg.view_change_timeout * (1 << self.backoff.min(MAX_BACKOFF))
    }

    /// The request timer fired (the primary is suspected), or the view
    /// change under way took too long. A replica moves past a view change
    /// only once 2f + 1 replicas are in it too: one cut off alone waits,
    /// rather than running through views nobody else is in.
    pub(super) fn view_change_timed_out(&mut self, io: &mut Io<'_, Node<M>>) {
        self.request_timer = false;
        // A replica that moved on to a later view left this one too (only
        // each replica's newest view change is kept).
        let joined = self.view_changes.values().filter(|m| m.view >= self.view).count();
        if self.active || joined >= self.cfg.quorum() {
            self.start_view_change(self.view + 1, io);
        } else {
            io.set_timer(self.view_change_timeout(), Timer::ViewChange);
        }
    }

    /// Leaves the current view for `view`.
    pub(super) fn start_view_change(&mut self, view: u64, io: &mut Io<'_, Node<M>>) {
        if view <= self.view && !self.active {
            return;
        }
        self.view = view;
        self.active = false;
        self.new_view = None;
        self.backoff = self.backoff.saturating_add(1);
        if self.batch_timer {
            self.batch_timer = false;
            io.cancel_timer(Timer::Batch);
        }
        io.set_timer(self.view_change_timeout(), Timer::ViewChange);
        io.count("view_changes_started", 1);
        let vc = self.view_change_message(view, io);
        self.view_changes.insert(self.me, vc.clone());
        self.view_changes.retain(|_, m| m.view >= view);
        self.to_replicas(Msg::ViewChange(Box::new(vc)), io);
        if !self.join_later_view(io) {
            self.try_new_view(io);
        }
    }

    /// This replica's signed view change for `view`.
    pub(crate) fn view_change_message(&self, view: u64, io: &mut Io<'_, Node<M>>) -> ViewChange {
        let mut checkpoints = vec![(self.low, self.low_digest)];
        checkpoints.extend(self.taken.iter().filter(|(s, _)| **s > self.low).map(|(s, t)| (*s, t.digest)));
        let prepared = self
            .log
            .iter()
            .filter_map(|(&seq, s)| {
                let (view, digest, batch) = s.prepared_claim()?;
                Some(Prepared { seq, view, digest: *digest, batch: batch.clone() })
            })
            .collect();
        let pre_prepared = self
            .log
            .iter()
            .flat_map(|(&seq, s)| s.pre_prepared.iter().map(move |&(view, digest)| PrePrepared { seq, view, digest }))
            .collect();
        let mut vc = ViewChange {
            view,
            replica: self.me,
            stable: self.low,
            checkpoints,
            prepared,
            pre_prepared,
            signature: vec![],
        };
        vc.signature = sign(io, &vc.signed_bytes());
        vc
    }

    /// While changing views: this replica's view change again (on the
    /// status tick, for a network that loses messages).
    pub(super) fn resend_view_change(&mut self, io: &mut Io<'_, Node<M>>) {
        if !self.active {
            if let Some(vc) = self.view_changes.get(&self.me) {
                self.to_replicas(Msg::ViewChange(Box::new(vc.clone())), io);
            }
        }
    }

    /// A view change that is well formed and signed by its sender.
    fn valid_view_change(&self, vc: &ViewChange, io: &Io<'_, Node<M>>) -> bool {
        let cfg = &self.cfg;
        let in_window = |seq: u64| seq > vc.stable && seq <= vc.stable.saturating_add(cfg.window);
        let well_formed = cfg.is_replica(vc.replica)
            && vc.prepared.len() as u64 <= cfg.window
            && vc.prepared.iter().all(|p| {
                in_window(p.seq)
                    && p.view < vc.view
                    && p.batch.len() <= cfg.batch_max
                    && batch_digest(&p.batch) == p.digest
            })
            && vc.pre_prepared.len() as u64 <= cfg.window * super::PRE_PREPARED_KEPT as u64
            && vc.pre_prepared.iter().all(|q| in_window(q.seq) && q.view < vc.view)
            && vc.checkpoints.len() <= self.checkpoints_held()
            && vc.checkpoints.iter().all(|(s, _)| *s >= vc.stable);
        well_formed && signed(io, vc.replica, &vc.signed_bytes(), &vc.signature)
    }

    pub(super) fn on_view_change(&mut self, from: NodeId, vc: ViewChange, io: &mut Io<'_, Node<M>>) {
        let behind = vc.view < self.view || (vc.view == self.view && self.active);
        let known = self.view_changes.get(&from).is_some_and(|m| m.view >= vc.view);
        if vc.view > self.view.saturating_add(MAX_VIEWS_AHEAD) {
            io.count("view_changes_too_far_ahead", 1);
            return;
        }
        // Cheap checks first: a copy of one held, or one nothing is done
        // with, costs no signature check.
        if known || (behind && (self.new_view.is_none() || !self.active)) {
            return;
        }
        if vc.replica != from || !self.valid_view_change(&vc, io) {
            io.count("view_changes_refused", 1);
            return;
        }
        if behind {
            // It is behind: the new view of this one brings it here.
            if let Some(nv) = &self.new_view {
                io.send(from, (**nv).clone());
            }
            return;
        }
        self.view_changes.insert(from, vc);
        if !self.join_later_view(io) {
            self.try_new_view(io);
        }
    }

    /// f + 1 replicas want a view later than this one (at least one
    /// correct one does): joins the smallest. Checked when a view change
    /// comes in and whenever this replica's view moves — the view changes
    /// it holds may be enough by then, and their senders' resends are
    /// copies it will not look at again. (The telecom system found a
    /// replica that entered view 5 holding two view changes for view 6
    /// and never joined them.)
    fn join_later_view(&mut self, io: &mut Io<'_, Node<M>>) -> bool {
        let mut later: Vec<u64> = self.view_changes.values().map(|m| m.view).filter(|&v| v > self.view).collect();
        if later.len() <= self.cfg.f as usize {
            return false;
        }
        later.sort_unstable();
        self.start_view_change(later[0], io);
        true
    }

    /// The new primary, once the view changes it holds decide the view.
    fn try_new_view(&mut self, io: &mut Io<'_, Node<M>>) {
        if self.active || !self.is_primary() {
            return;
        }
        let view = self.view;
        let set: Vec<&ViewChange> = self.view_changes.values().filter(|m| m.view == view).collect();
        if set.len() < self.cfg.quorum() {
            return;
        }
        let Some(decision) = decide(&set, self.cfg.f, self.cfg.window) else { return };
        let proof: Vec<ViewChange> = set.into_iter().cloned().collect();
        let signature = sign(io, &new_view_bytes(view, &proof));
        let nv = self.seal_for_peers(Msg::NewView { view, proof, signature }, io);
        self.to_peers(&nv, io);
        self.new_view = Some(Box::new(nv));
        self.enter_view(decision, io);
    }

    pub(super) fn on_new_view(
        &mut self,
        view: u64,
        proof: Vec<ViewChange>,
        signature: Vec<u8>,
        io: &mut Io<'_, Node<M>>,
    ) {
        if view < self.view || (view == self.view && self.active) {
            return;
        }
        let primary = self.cfg.primary(view);
        let mut senders: Vec<NodeId> = proof.iter().map(|m| m.replica).collect();
        senders.sort_unstable();
        senders.dedup();
        // Signatures last: a malformed new view costs no curve arithmetic.
        let valid = senders.len() == proof.len()
            && proof.len() >= self.cfg.quorum()
            && proof.iter().all(|m| m.view == view)
            && signed(io, primary, &new_view_bytes(view, &proof), &signature)
            && proof.iter().all(|m| self.valid_view_change(m, io));
        let decision = valid.then(|| decide(&proof.iter().collect::<Vec<_>>(), self.cfg.f, self.cfg.window)).flatten();
        let Some(decision) = decision else {
            io.count("new_views_refused", 1);
            return;
        };
        self.view = view;
        self.new_view = Some(Box::new(self.seal_for_peers(Msg::NewView { view, proof, signature }, io)));
        self.enter_view(decision, io);
    }

    /// Starts the normal case of `self.view` from `decision`: its checkpoint
    /// (fetching the state if this replica is behind it), then each chosen
    /// batch as if the new primary had pre-prepared it.
    fn enter_view(&mut self, decision: Decision, io: &mut Io<'_, Node<M>>) {
        let (view, me) = (self.view, self.me);
        self.active = true;
        self.proposed.clear();
        self.view_changes.retain(|_, m| m.view > view);
        io.cancel_timer(Timer::ViewChange);
        self.request_timer = false;
        io.count("views_entered", 1);
        let (h, digest) = decision.checkpoint;
        if h > self.low {
            self.move_low(h, digest);
            if self.executed < h {
                self.fetch(h, digest, decision.vouchers, io);
            }
        }
        for slot in self.log.values_mut() {
            if slot.view < view {
                slot.reset(view);
            }
        }
        let primary = self.is_primary();
        let low = self.low;
        let mut last = low;
        for (seq, digest, batch) in decision.batches.into_iter().filter(|(s, _, _)| *s > low) {
            last = seq;
            let slot = self.slot(seq);
            slot.note_pre_prepared(view, digest);
            slot.pre_prepare = Some((digest, batch));
            if !primary {
                slot.prepares.insert(me, digest);
                self.to_replicas(Msg::Prepare { view, seq, digest }, io);
            }
            self.check_prepared(seq, io);
        }
        self.assigned = last;
        self.time_requests(io);
        self.propose(false, io);
        // What the new primary sent before its new view reached this
        // replica was dropped here (not yet in the view): a status now has
        // it resent at once, not at the next status tick (where status is
        // on: the model checker's network delivers anything again anyway).
        if !self.is_primary() && !self.cfg.status_interval.is_zero() {
            self.send_status(io);
        }
        self.join_later_view(io);
    }
}
