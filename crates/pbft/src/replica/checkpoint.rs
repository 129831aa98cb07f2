//! Checkpoints, the water marks and state transfer (Castro–Liskov § 4.3).

use super::{Replica, Taken};
use crate::auth::{send, sign, signed};
use crate::msg::{checkpoint_bytes, Msg, Snapshot};
use crate::node::Node;
use crate::{Digest, StateMachine};
use agora_core::{Io, NodeId};

impl<M: StateMachine> Replica<M> {
    pub(super) fn take_checkpoint(&mut self, io: &mut Io<'_, Node<M>>) {
        let seq = self.executed;
        let clients: Vec<_> = self.replies.iter().map(|(c, (t, r))| (*c, *t, r.clone())).collect();
        let snapshot = Snapshot { chain: self.chain, clients, machine: self.machine.snapshot() };
        let digest = snapshot.digest(seq);
        let signature = sign(io, &checkpoint_bytes(self.me, seq, &digest));
        self.taken.insert(seq, Taken { digest, signature: signature.clone(), snapshot });
        self.votes.entry(seq).or_default().insert(self.me, digest);
        self.to_replicas(Msg::Checkpoint { seq, digest, signature }, io);
        self.check_stable(seq, io);
    }

    pub(super) fn on_checkpoint(
        &mut self,
        from: NodeId,
        seq: u64,
        digest: Digest,
        signature: &[u8],
        io: &mut Io<'_, Node<M>>,
    ) {
        if seq <= self.low || !seq.is_multiple_of(self.cfg.checkpoint_interval) {
            return;
        }
        // A vote already held (its first one counts) costs no curve arithmetic.
        let held = self.votes.get(&seq).is_some_and(|v| v.contains_key(&from));
        if !held && !signed(io, from, &checkpoint_bytes(from, seq, &digest), signature) {
            io.count("ignored_unsigned_checkpoint", 1);
            return;
        }
        self.votes.entry(seq).or_default().entry(from).or_insert(digest);
        if !self.in_window(seq) {
            let theirs: Vec<u64> = self
                .votes
                .range(self.low + self.cfg.window + 1..)
                .filter(|(_, v)| v.contains_key(&from))
                .map(|(s, _)| *s)
                .collect();
            for old in theirs.iter().rev().skip(self.checkpoints_held()) {
                let v = self.votes.get_mut(old).expect("listed just now");
                v.remove(&from);
                if v.is_empty() {
                    self.votes.remove(old);
                }
            }
        }
        self.check_stable(seq, io);
    }

    /// The most checkpoints a correct replica holds: the stable one and
    /// those in its window.
    pub(super) fn checkpoints_held(&self) -> usize {
        (self.cfg.window / self.cfg.checkpoint_interval) as usize + 1
    }

    /// The replicas that vouched for `digest` at `seq`.
    pub(super) fn vouchers(&self, seq: u64, digest: &Digest) -> Vec<NodeId> {
        self.votes.get(&seq).into_iter().flatten().filter(|(_, d)| *d == digest).map(|(r, _)| *r).collect()
    }

    /// A checkpoint with 2f + 1 matching votes is stable. One with f + 1
    /// (so a correct replica holds that state) beyond this replica's window
    /// is out of reach of its log: it fetches the state.
    pub(super) fn check_stable(&mut self, seq: u64, io: &mut Io<'_, Node<M>>) {
        let mut digests: Vec<Digest> = self.votes.get(&seq).into_iter().flat_map(|v| v.values().copied()).collect();
        digests.sort_unstable();
        digests.dedup();
        for d in digests {
            let vouchers = self.vouchers(seq, &d);
            if vouchers.len() >= self.cfg.quorum() {
                return self.make_stable(seq, d, vouchers, io);
            }
            let fetching = self.fetching.is_some_and(|(s, _, _)| s >= seq);
            if vouchers.len() > self.cfg.f as usize && seq > self.low + self.cfg.window && !fetching {
                return self.fetch(seq, d, vouchers, io);
            }
        }
    }

    /// Moves the low water mark to `seq`: the log, votes and checkpoints
    /// before it go; a replica that has not executed that far fetches the state.
    pub(super) fn make_stable(&mut self, seq: u64, digest: Digest, vouchers: Vec<NodeId>, io: &mut Io<'_, Node<M>>) {
        self.move_low(seq, digest);
        if let Some(mine) = self.taken.get(&seq) {
            if mine.digest != digest {
                io.count("checkpoint_diverged", 1);
            }
        }
        io.count("checkpoints_stable", 1);
        if self.executed < seq {
            self.fetch(seq, digest, vouchers, io);
        } else if self.fetching.is_some_and(|(s, _, _)| s <= seq) {
            self.fetching = None;
        }
        self.propose(false, io);
    }

    pub(super) fn move_low(&mut self, seq: u64, digest: Digest) {
        self.low = seq;
        self.low_digest = digest;
        self.assigned = self.assigned.max(seq);
        self.log = self.log.split_off(&(seq + 1));
        self.votes = self.votes.split_off(&(seq + 1));
        self.taken = self.taken.split_off(&seq);
    }

    /// Fetches the latest checkpoint past what was executed here that f + 1
    /// replicas vouch for, if there is one.
    pub(super) fn fetch_if_stuck(&mut self, io: &mut Io<'_, Node<M>>) {
        let mut known: Vec<(u64, Digest)> =
            self.votes.iter().flat_map(|(s, v)| v.values().map(move |d| (*s, *d))).collect();
        known.sort_unstable_by(|a, b| b.cmp(a));
        known.dedup();
        for (seq, digest) in known.into_iter().filter(|(s, _)| *s > self.executed) {
            let vouchers = self.vouchers(seq, &digest);
            if vouchers.len() > self.cfg.f as usize {
                io.count("fetches_when_stuck", 1);
                return self.fetch(seq, digest, vouchers, io);
            }
        }
    }

    pub(super) fn fetch(&mut self, seq: u64, digest: Digest, from: Vec<NodeId>, io: &mut Io<'_, Node<M>>) {
        self.fetching = Some((seq, digest, 0));
        self.fetch_from = from.into_iter().filter(|&r| r != self.me).collect();
        self.ask_state(io);
    }

    /// Asks the next replica that vouched for the checkpoint being fetched.
    pub(super) fn ask_state(&mut self, io: &mut Io<'_, Node<M>>) {
        let Some((seq, digest, tries)) = self.fetching else { return };
        if let Some(&r) = self.fetch_from.get(tries as usize % self.fetch_from.len().max(1)) {
            send(io, r, Msg::FetchState { seq });
        }
        self.fetching = Some((seq, digest, tries + 1));
    }

    pub(super) fn on_fetch(&mut self, from: NodeId, seq: u64, io: &mut Io<'_, Node<M>>) {
        if let Some(t) = self.taken.get(&seq) {
            send(io, from, Msg::State { seq, state: Box::new(t.snapshot.clone()) });
            io.count("states_sent", 1);
        }
    }

    /// Installs a fetched state if it matches the stable checkpoint's digest.
    pub(super) fn on_state(&mut self, seq: u64, state: Snapshot, io: &mut Io<'_, Node<M>>) {
        let Some((want, digest, _)) = self.fetching else { return };
        if seq != want {
            return;
        }
        // Checked before the bytes are parsed.
        let machine = match (state.digest(seq) == digest).then(|| M::restore(&state.machine)) {
            Some(Ok(m)) => m,
            _ => {
                io.count("states_refused", 1);
                return;
            }
        };
        self.machine = machine;
        self.chain = state.chain;
        self.replies = state.clients.iter().map(|(c, t, r)| (*c, (*t, r.clone()))).collect();
        self.executed = seq;
        if seq > self.low {
            self.move_low(seq, digest);
        }
        // A transferred state is not this replica's own checkpoint: it has
        // no signed vote of its own to resend for it.
        self.taken.insert(seq, Taken { digest, signature: Vec::new(), snapshot: state });
        self.fetching = None;
        io.count("state_transfers", 1);
        self.execute(io);
    }
}
