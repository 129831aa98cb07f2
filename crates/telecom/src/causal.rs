//! Causal ordering with vector clocks, for a group whose consistency is
//! `causal`: each member that serves a request multicasts an update to the
//! others, and every member applies the group's updates in an order that
//! respects happened-before (Birman, Schiper and Stephenson's delivery
//! rule: an update from `o` waits until it is the next from `o` and every
//! update it saw before it was sent has been applied here).
//!
//! Messages get lost and members restart, so the log also carries
//! anti-entropy: members exchange their clocks (digests); a member resends
//! what a peer lacks from its recent log, or, if the log no longer holds it
//! (or the peer restarted and forgot its own numbers), sends its clock as
//! a state transfer, which the peer adopts. A member that has not yet heard
//! a peer's clock since it started defers its own updates, so that after a
//! restart it does not reuse numbers its peers have already applied.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A vector clock over a group's members, by position in the group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VectorClock(pub Vec<u32>);

impl VectorClock {
    pub fn new(members: usize) -> Self {
        VectorClock(vec![0; members])
    }
    pub fn get(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }
    /// Every entry at most `other`'s: all `self` has seen, `other` has.
    pub fn le(&self, other: &VectorClock) -> bool {
        self.0.iter().enumerate().all(|(i, &x)| x <= other.get(i))
    }
    /// Happened before: `le` and not equal.
    pub fn before(&self, other: &VectorClock) -> bool {
        self.le(other) && self != other
    }
    pub fn merge(&mut self, other: &VectorClock) {
        for (i, x) in self.0.iter_mut().enumerate() {
            *x = (*x).max(other.get(i));
        }
    }
    pub fn sum(&self) -> u64 {
        self.0.iter().map(|&x| x as u64).sum()
    }
}

/// An update of member `origin`: its clock when sent (its own entry is the
/// update's number) and what it wrote (`key`: whatever the group's members
/// apply — a key number in the tests, a key and its entry on the nodes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Update<K = u64> {
    pub origin: u8,
    pub clock: VectorClock,
    pub key: K,
}

impl<K> Update<K> {
    fn seq(&self) -> u32 {
        self.clock.get(self.origin as usize)
    }
}

/// What a member answers a peer's digest with.
#[derive(Debug, PartialEq)]
pub struct Reply<K = u64> {
    /// Updates the peer lacks, in the order they were applied here.
    pub resend: Vec<Update<K>>,
    /// This member's clock, for the peer to adopt (state transfer).
    pub state: Option<VectorClock>,
}

/// One member's view of a causal group's updates.
#[derive(Clone, Debug)]
pub struct CausalLog<K = u64> {
    me: usize,
    delivered: VectorClock,
    pending: Vec<Update<K>>,
    /// The latest applied updates, in the order they were applied.
    log: VecDeque<Update<K>>,
    keep: usize,
    /// Updates applied one by one, and skipped over by adopting a clock.
    pub applied: u64,
    pub transferred: u64,
    /// Whether a peer's clock was heard since this member started.
    synced: bool,
    /// Own updates held back until then.
    deferred: Vec<K>,
}

/// What adopting a clock gave: buffered updates now applied, and own
/// updates released for multicast.
#[derive(Debug, PartialEq)]
pub struct Adopted<K = u64> {
    pub delivered: Vec<Update<K>>,
    pub released: Vec<Update<K>>,
}

impl<K> Default for Adopted<K> {
    fn default() -> Self {
        Adopted { delivered: Vec::new(), released: Vec::new() }
    }
}

impl<K> Default for Reply<K> {
    fn default() -> Self {
        Reply { resend: Vec::new(), state: None }
    }
}

/// Resent updates per digest: a peer far behind gets a state transfer instead.
const RESEND_MAX: usize = 64;
/// Updates buffered while waiting for what they depend on.
const PENDING_MAX: usize = 4096;

impl<K: Clone + PartialEq + std::fmt::Debug> CausalLog<K> {
    pub fn new(me: usize, members: usize, keep: usize) -> Self {
        CausalLog {
            me,
            delivered: VectorClock::new(members),
            pending: Vec::new(),
            log: VecDeque::new(),
            keep: keep.max(1),
            applied: 0,
            transferred: 0,
            synced: members <= 1,
            deferred: Vec::new(),
        }
    }

    pub fn clock(&self) -> &VectorClock {
        &self.delivered
    }
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// This member wrote `key`: the updates to multicast (none while it has
    /// not synced; they go out when it has).
    pub fn write(&mut self, key: K) -> Vec<Update<K>> {
        if !self.synced {
            // Bounded: a member that never hears a peer keeps only its latest writes.
            if self.deferred.len() == self.keep {
                self.deferred.remove(0);
            }
            self.deferred.push(key);
            return Vec::new();
        }
        self.delivered.0[self.me] += 1;
        let u = Update { origin: self.me as u8, clock: self.delivered.clone(), key };
        self.record(u.clone());
        self.applied += 1;
        vec![u]
    }

    fn record(&mut self, u: Update<K>) {
        if self.log.len() == self.keep {
            self.log.pop_front();
        }
        self.log.push_back(u);
    }

    fn deliverable(&self, u: &Update<K>) -> bool {
        let o = u.origin as usize;
        u.seq() == self.delivered.get(o) + 1
            && u.clock.0.iter().enumerate().all(|(k, &x)| k == o || x <= self.delivered.get(k))
    }

    /// An update from a peer: buffered, then whatever became deliverable is
    /// applied. Returns the updates applied, in the order they were.
    pub fn receive(&mut self, u: Update<K>) -> Vec<Update<K>> {
        let o = u.origin as usize;
        if o >= self.delivered.0.len()
            || u.clock.0.len() != self.delivered.0.len()
            || u.seq() <= self.delivered.get(o)
            || self.pending.contains(&u)
            || self.pending.len() >= PENDING_MAX
        {
            // Malformed, a duplicate, or too far ahead: a digest brings it again.
            return Vec::new();
        }
        self.pending.push(u);
        self.deliver_ready()
    }

    fn deliver_ready(&mut self) -> Vec<Update<K>> {
        let mut out = Vec::new();
        while let Some(i) = self.pending.iter().position(|u| self.deliverable(u)) {
            let u = self.pending.swap_remove(i);
            self.delivered.0[u.origin as usize] = u.seq();
            self.applied += 1;
            self.record(u.clone());
            out.push(u);
        }
        out
    }

    /// State transfer: everything `clock` covers counts as applied here
    /// (the caller takes the sender's data with it). Returns the buffered
    /// updates that became deliverable, and the own updates that were
    /// waiting for the sync.
    pub fn adopt(&mut self, clock: &VectorClock) -> Adopted<K> {
        if clock.0.len() != self.delivered.0.len() {
            return Adopted::default();
        }
        let before = self.delivered.sum();
        self.delivered.merge(clock);
        self.transferred += self.delivered.sum() - before;
        let d = self.delivered.clone();
        self.pending.retain(|u| u.seq() > d.get(u.origin as usize));
        let delivered = self.deliver_ready();
        self.synced = true;
        let released = std::mem::take(&mut self.deferred).into_iter().flat_map(|k| self.write(k)).collect();
        Adopted { delivered, released }
    }

    /// A peer's digest (`peer` is its position, `clock` what it applied):
    /// adopt it first if this member has not synced or the peer knows more
    /// of this member's own updates than it does (it restarted); then
    /// resend what the peer lacks, or send the state if the log cannot.
    /// Returns the reply and what the adoption gave, if it happened.
    pub fn digest(&mut self, peer: usize, clock: &VectorClock) -> (Reply<K>, Option<Adopted<K>>) {
        let mut adopted = None;
        if clock.0.len() != self.delivered.0.len() || peer >= clock.0.len() {
            return (Reply::default(), adopted);
        }
        if !self.synced || clock.get(self.me) > self.delivered.get(self.me) {
            adopted = Some(self.adopt(clock));
        }
        let mut reply = Reply::default();
        let behind = (0..clock.0.len()).any(|o| clock.get(o) < self.delivered.get(o));
        if behind {
            // The log holds consecutive numbers per origin (applied in order),
            // so it covers the gap if it reaches back to the peer's next one.
            let covered = (0..clock.0.len()).all(|o| {
                clock.get(o) >= self.delivered.get(o)
                    || self.log.iter().any(|u| u.origin as usize == o && u.seq() == clock.get(o) + 1)
            });
            let missing = self.log.iter().filter(|u| u.seq() > clock.get(u.origin as usize));
            if covered && missing.clone().count() <= RESEND_MAX {
                reply.resend = missing.cloned().collect();
            } else {
                reply.state = Some(self.delivered.clone());
            }
        }
        (reply, adopted)
    }

    /// The log's invariants: nothing buffered is deliverable or already
    /// applied; the clock counts every update applied or transferred; the
    /// log's order never puts an update after one that depends on it.
    pub fn check(&self) -> Result<(), String> {
        if let Some(u) = self.pending.iter().find(|u| self.deliverable(u)) {
            return Err(format!("update {u:?} is deliverable but still buffered"));
        }
        if let Some(u) = self.pending.iter().find(|u| u.seq() <= self.delivered.get(u.origin as usize)) {
            return Err(format!("update {u:?} is buffered but already covered by {:?}", self.delivered));
        }
        if self.delivered.sum() != self.applied + self.transferred {
            return Err(format!(
                "clock {:?} counts {} updates, but {} were applied and {} transferred",
                self.delivered,
                self.delivered.sum(),
                self.applied,
                self.transferred
            ));
        }
        if let Some(w) = self.log.iter().zip(self.log.iter().skip(1)).find(|(a, b)| b.clock.before(&a.clock)) {
            return Err(format!("{:?} was applied after {:?}, which depends on it", w.1, w.0));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Three members write in turn (who writes is `writers`), each having
    /// seen a random prefix of the others' updates: a causal history.
    fn history(writers: &[(usize, usize)]) -> Vec<Update> {
        let mut logs: Vec<CausalLog> = (0..3).map(|m| CausalLog::new(m, 3, 1 << 20)).collect();
        for l in &mut logs {
            l.adopt(&VectorClock::new(3));
        }
        let mut all: Vec<Update> = Vec::new();
        for (k, &(w, seen)) in writers.iter().enumerate() {
            // Member w first receives some of the updates so far.
            for u in all.iter().take(seen.min(all.len())).cloned().collect::<Vec<_>>() {
                logs[w].receive(u);
            }
            all.extend(logs[w].write(k as u64));
        }
        all
    }

    proptest! {
        /// Whatever order (and duplication) updates arrive in, a member
        /// applies all of them, each after every update that happened before it.
        #[test]
        fn delivery_respects_happened_before(
            writers in proptest::collection::vec((0usize..3, 0usize..40), 1..40),
            order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..80),
        ) {
            let all = history(&writers);
            let mut arrivals = all.clone();
            for (i, ix) in order.iter().enumerate() {
                let j = ix.index(arrivals.len());
                if i % 4 == 0 { arrivals.push(arrivals[j].clone()) } else { let k = i % arrivals.len(); arrivals.swap(j, k) }
            }
            // An observer that writes nothing.
            let mut obs = CausalLog::new(2, 3, 1 << 20);
            obs.adopt(&VectorClock::new(3));
            let obs_own = all.iter().filter(|u| u.origin == 2).count();
            for u in arrivals.into_iter().filter(|u| u.origin != 2) {
                obs.receive(u);
                prop_assert!(obs.check().is_ok(), "{:?}", obs.check());
            }
            let applied: Vec<&Update> = obs.log.iter().collect();
            let expected = all.iter().filter(|u| u.origin != 2 && !all.iter().any(|w| w.origin == 2 && w.clock.before(&u.clock))).count();
            // Updates that depend on member 2's (which the observer never got) wait: that is the rule.
            prop_assert_eq!(applied.len(), expected, "own {}", obs_own);
            for (i, a) in applied.iter().enumerate() {
                for b in &applied[i + 1..] {
                    prop_assert!(!b.clock.before(&a.clock), "{:?} applied after {:?}", b, a);
                }
            }
        }
    }

    #[test]
    fn a_lost_update_is_resent_on_a_digest_and_a_far_behind_peer_gets_the_state() {
        let (mut a, mut b) = (CausalLog::new(0, 2, 4), CausalLog::new(1, 2, 4));
        a.digest(1, b.clock());
        b.digest(0, a.clock());
        let u1 = a.write(1).pop().unwrap();
        let u2 = a.write(2).pop().unwrap();
        // u1 is lost: u2 waits.
        assert_eq!(b.receive(u2.clone()).len(), 0);
        assert_eq!(b.pending(), 1);
        let (reply, _) = a.digest(1, b.clock());
        assert_eq!(reply.resend, vec![u1.clone(), u2.clone()]);
        assert_eq!(reply.resend.into_iter().map(|u| b.receive(u).len()).sum::<usize>(), 2);
        assert_eq!((b.clock(), b.pending()), (a.clock(), 0));
        // Six more, all lost: the log keeps four, so b gets the state instead.
        for k in 0..6 {
            a.write(10 + k);
        }
        let (reply, _) = a.digest(1, b.clock());
        assert!(reply.resend.is_empty());
        b.adopt(&reply.state.unwrap());
        assert_eq!(b.clock(), a.clock());
        assert_eq!((b.applied, b.transferred), (2, 6));
        assert!(a.check().is_ok() && b.check().is_ok());
    }

    #[test]
    fn a_restarted_member_defers_its_writes_and_numbers_them_above_what_peers_applied() {
        let (mut a, mut b) = (CausalLog::new(0, 2, 16), CausalLog::new(1, 2, 16));
        a.digest(1, b.clock());
        b.digest(0, a.clock());
        for k in 0..3 {
            let u = a.write(k).pop().unwrap();
            b.receive(u);
        }
        // a restarts: a new log, not synced, holds its write back.
        let mut a = CausalLog::new(0, 2, 16);
        assert!(a.write(99).is_empty());
        // b's digest carries a's old numbers: a adopts them and numbers above.
        let released = a.digest(1, b.clock()).1.unwrap().released;
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].clock.get(0), 4);
        assert_eq!(b.receive(released[0].clone()).len(), 1);
    }
}
