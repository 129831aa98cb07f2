//! The new view's decision, computed from a set of view-change messages
//! (Castro's thesis, § 3.2.4 "the decision procedure"): which checkpoint
//! the view starts from, and which batch — or none — each sequence number
//! after it gets. A pure function of the messages, so the new primary and
//! every backup that receives them compute the same decision, and a backup
//! accepts a new view only if it does.
//!
//! The claims are each replica's own (its prepared and pre-prepared sets);
//! up to f of them may lie, so every choice rests on counts: 2f + 1
//! messages that do not contradict a choice (some correct replica among
//! any 2f + 1 saw each committed batch prepared) and f + 1 that
//! pre-prepared it (so a correct replica did).

use crate::msg::{batch_digest, Prepared, Request, ViewChange};
use crate::Digest;
use agora_core::NodeId;

/// What a new view starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The checkpoint (sequence number, digest) the view starts from.
    pub checkpoint: (u64, Digest),
    /// The replicas that claim that checkpoint (f + 1 or more): whom a
    /// replica without that state asks for it.
    pub vouchers: Vec<NodeId>,
    /// Each sequence number after the checkpoint, in order, with its batch:
    /// a batch prepared in an earlier view, or the empty (null) batch.
    pub batches: Vec<(u64, Digest, Vec<Request>)>,
}

/// The decision for `msgs` (view changes for one view from distinct
/// replicas), or None while they do not determine one (more messages may).
pub fn decide(msgs: &[&ViewChange], f: u32, window: u64) -> Option<Decision> {
    let (quorum, weak) = (2 * f as usize + 1, f as usize + 1);
    let count = |pred: &dyn Fn(&ViewChange) -> bool| msgs.iter().filter(|m| pred(m)).count();

    // The latest checkpoint that 2f + 1 replicas are not past and f + 1 claim.
    let mut claimed: Vec<(u64, Digest)> = msgs.iter().flat_map(|m| m.checkpoints.iter().copied()).collect();
    claimed.sort_unstable_by(|a, b| b.cmp(a));
    claimed.dedup();
    let (h, digest) = claimed
        .into_iter()
        .find(|(h, d)| count(&|m| m.stable <= *h) >= quorum && count(&|m| m.checkpoints.contains(&(*h, *d))) >= weak)?;
    let vouchers = msgs.iter().filter(|m| m.checkpoints.contains(&(h, digest))).map(|m| m.replica).collect();

    let last = msgs
        .iter()
        .flat_map(|m| m.prepared.iter().map(|p| p.seq))
        .filter(|&s| s > h && s <= h.saturating_add(window))
        .max()
        .unwrap_or(h);
    let mut batches = Vec::new();
    for n in h + 1..=last {
        // Candidates, the highest view first, so that the choice is one
        // function of the set whatever order the messages came in.
        let mut candidates: Vec<&Prepared> = msgs.iter().filter_map(|m| m.prepared_at(n)).collect();
        candidates.sort_unstable_by_key(|p| std::cmp::Reverse((p.view, p.digest)));
        candidates.dedup_by(|a, b| (a.view, a.digest) == (b.view, b.digest));
        let chosen = candidates.into_iter().find(|p| {
            // A1: 2f + 1 replicas that have not discarded n and prepared
            // nothing at n in a later view, nor something else in p's view.
            let a1 = count(&|m| {
                m.stable < n
                    && m.prepared_at(n).is_none_or(|q| q.view < p.view || (q.view == p.view && q.digest == p.digest))
            });
            // A2: f + 1 replicas pre-prepared p's batch in p's view or later.
            let a2 = count(&|m| m.pre_prepared.iter().any(|q| q.seq == n && q.digest == p.digest && q.view >= p.view));
            a1 >= quorum && a2 >= weak && batch_digest(&p.batch) == p.digest
        });
        match chosen {
            Some(p) => batches.push((n, p.digest, p.batch.clone())),
            // Nothing can have committed at n: 2f + 1 prepared nothing there.
            None if count(&|m| m.stable < n && m.prepared_at(n).is_none()) >= quorum => {
                batches.push((n, batch_digest(&[]), Vec::new()))
            }
            None => return None,
        }
    }
    Some(Decision { checkpoint: (h, digest), vouchers, batches })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::PrePrepared;

    fn vc(replica: u32, stable: u64, prepared: &[(u64, u64, u8)], pre_prepared: &[(u64, u64, u8)]) -> ViewChange {
        let batch = |tag: u8| vec![Request { client: NodeId(9), timestamp: tag as u64, op: vec![tag], auth: vec![] }];
        ViewChange {
            view: 5,
            replica: NodeId(replica),
            stable,
            checkpoints: vec![(stable, [stable as u8; 32])],
            prepared: prepared
                .iter()
                .map(|&(seq, view, tag)| Prepared { seq, view, digest: batch_digest(&batch(tag)), batch: batch(tag) })
                .collect(),
            pre_prepared: pre_prepared
                .iter()
                .map(|&(seq, view, tag)| PrePrepared { seq, view, digest: batch_digest(&batch(tag)) })
                .collect(),
            signature: Vec::new(),
        }
    }

    fn tags(d: &Decision) -> Vec<Option<u8>> {
        d.batches.iter().map(|(_, _, b)| b.first().map(|r| r.op[0])).collect()
    }

    #[test]
    fn a_batch_prepared_by_a_quorum_is_kept_and_gaps_get_null_batches() {
        // Batch 1 prepared at seq 1 in view 0 by three replicas; seq 3
        // prepared by one; nothing at 2.
        let msgs = [
            vc(0, 0, &[(1, 0, 1), (3, 0, 3)], &[(1, 0, 1), (3, 0, 3)]),
            vc(1, 0, &[(1, 0, 1)], &[(1, 0, 1), (3, 0, 3)]),
            vc(2, 0, &[(1, 0, 1)], &[(1, 0, 1)]),
        ];
        let d = decide(&msgs.iter().collect::<Vec<_>>(), 1, 16).unwrap();
        assert_eq!(d.checkpoint.0, 0);
        assert_eq!(tags(&d), vec![Some(1), None, Some(3)]);
    }

    #[test]
    fn a_later_view_wins_and_a_lone_liar_is_not_enough() {
        // Seq 1: batch 1 prepared in view 0, batch 2 in view 1 (re-proposed
        // after a view change). Replica 3 lies: it claims batch 7 in view 4,
        // which nobody else pre-prepared.
        let msgs = [
            vc(0, 0, &[(1, 1, 2)], &[(1, 0, 1), (1, 1, 2)]),
            vc(1, 0, &[(1, 1, 2)], &[(1, 1, 2)]),
            vc(2, 0, &[(1, 0, 1)], &[(1, 0, 1)]),
            vc(3, 0, &[(1, 4, 7)], &[(1, 4, 7)]),
        ];
        let d = decide(&msgs.iter().collect::<Vec<_>>(), 1, 16).unwrap();
        assert_eq!(tags(&d), vec![Some(2)]);
    }

    #[test]
    fn an_undetermined_set_waits_for_more_messages() {
        // Two claim different batches in one view and nobody else speaks
        // for seq 1: neither reaches f + 1 pre-prepares plus 2f + 1 A1.
        let msgs = [vc(0, 0, &[(1, 0, 1)], &[(1, 0, 1)]), vc(1, 0, &[(1, 0, 2)], &[(1, 0, 2)]), vc(2, 0, &[], &[])];
        assert_eq!(decide(&msgs.iter().collect::<Vec<_>>(), 1, 16), None);
    }

    #[test]
    fn the_checkpoint_is_the_latest_f_plus_1_claim_that_2f_plus_1_are_not_past() {
        let mut msgs = vec![vc(0, 8, &[(9, 0, 9)], &[(9, 0, 9)]), vc(1, 8, &[], &[]), vc(2, 0, &[], &[])];
        // Seq 9: one replica prepared it and one pre-prepared it (< f + 1),
        // and only two say they prepared nothing there: undetermined.
        assert_eq!(decide(&msgs.iter().collect::<Vec<_>>(), 1, 16), None);
        // A third that prepared nothing there: it cannot have committed.
        msgs.push(vc(3, 8, &[], &[]));
        let d = decide(&msgs.iter().collect::<Vec<_>>(), 1, 16).unwrap();
        assert_eq!(d.checkpoint, (8, [8; 32]));
        assert_eq!(d.vouchers, vec![NodeId(0), NodeId(1), NodeId(3)]);
        assert_eq!(tags(&d), vec![None]);
    }
}
