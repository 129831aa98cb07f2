//! PBFT's safety, checked as a run goes (the simulator calls these after
//! every event): correct replicas agree on the order, and clients see each
//! operation executed once, in an order that respects their own.

use crate::{Chain, Digest, Replica, StateMachine};
use agora_core::NodeId;
use std::collections::BTreeMap;

/// What the correct replicas and the clients of one run have shown so far.
#[derive(Debug, Default)]
pub struct Agreement {
    /// The executed-batches chain at each sequence number, as the first
    /// correct replica to get there had it.
    chains: BTreeMap<u64, (NodeId, Digest)>,
    /// The stable checkpoints' digests.
    stable: BTreeMap<u64, (NodeId, Digest)>,
    /// The batch committed at each sequence number, as the first correct
    /// replica to commit there had it.
    committed: BTreeMap<u64, (NodeId, Digest)>,
    /// Each position of a [`Chain`] machine a client was told, and who.
    positions: BTreeMap<u64, (NodeId, u64)>,
    /// Each client's last position.
    last: BTreeMap<NodeId, u64>,
}

impl Agreement {
    /// Checks a correct replica: its own invariants; that what it committed
    /// at each sequence number, in any view, is what every other correct
    /// replica committed there (PBFT's safety); and that its chain and
    /// stable checkpoint match every other's at the same sequence number.
    /// Chains fold every batch digest, so equal chains mean equal logs up
    /// to there.
    pub fn replica<M: StateMachine>(&mut self, id: NodeId, r: &Replica<M>) -> Result<(), String> {
        r.check()?;
        for (seq, digest) in r.committed() {
            same(&mut self.committed, seq, id, *digest, "committed a different batch at sequence number")?;
        }
        if r.executed() > 0 {
            same(&mut self.chains, r.executed(), id, *r.chain(), "executed a different log up to sequence number")?;
        }
        let (low, digest) = r.stable();
        if low > 0 {
            same(&mut self.stable, low, id, *digest, "holds a different stable checkpoint at")?;
        }
        Ok(())
    }

    /// Checks a result a client accepted from a [`Chain`] machine: no
    /// position was given to two requests (each executed once, one order),
    /// and one client's positions grow (its requests are sequential).
    pub fn chain_result(&mut self, client: NodeId, timestamp: u64, result: &[u8]) -> Result<(), String> {
        let Some(pos) = Chain::position(result) else {
            return Err(format!("client {}: request {timestamp} got a result that is no chain position", client.0));
        };
        if let Some((other, t)) = self.positions.insert(pos, (client, timestamp)) {
            return Err(format!(
                "clients {} (request {t}) and {} (request {timestamp}) were both told position {pos}",
                other.0, client.0
            ));
        }
        if let Some(prev) = self.last.insert(client, pos).filter(|&p| p >= pos) {
            return Err(format!("client {}: request {timestamp} at position {pos}, after one at {prev}", client.0));
        }
        Ok(())
    }
}

fn same(
    seen: &mut BTreeMap<u64, (NodeId, Digest)>,
    seq: u64,
    id: NodeId,
    digest: Digest,
    what: &str,
) -> Result<(), String> {
    match seen.get(&seq) {
        Some((first, d)) if *d != digest => Err(format!("replica {} {what} {seq} than replica {}", id.0, first.0)),
        Some(_) => Ok(()),
        None => {
            seen.insert(seq, (id, digest));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(pos: u64) -> Vec<u8> {
        Chain { len: pos, head: [pos as u8; 32] }.snapshot()
    }

    #[test]
    fn a_position_told_twice_or_out_of_order_is_caught() {
        let mut a = Agreement::default();
        a.chain_result(NodeId(4), 1, &result(1)).unwrap();
        a.chain_result(NodeId(5), 1, &result(2)).unwrap();
        let twice = a.chain_result(NodeId(5), 2, &result(1)).unwrap_err();
        assert!(twice.contains("both told position 1"), "{twice}");
        let mut a = Agreement::default();
        a.chain_result(NodeId(4), 1, &result(3)).unwrap();
        let back = a.chain_result(NodeId(4), 2, &result(2)).unwrap_err();
        assert!(back.contains("after one at 3"), "{back}");
        assert!(a.chain_result(NodeId(4), 3, b"short").is_err());
    }

    #[test]
    fn a_different_digest_at_a_sequence_number_is_caught() {
        let mut seen = BTreeMap::new();
        same(&mut seen, 7, NodeId(0), [1; 32], "executed a different log up to").unwrap();
        same(&mut seen, 7, NodeId(1), [1; 32], "executed a different log up to").unwrap();
        let e = same(&mut seen, 7, NodeId(2), [2; 32], "executed a different log up to").unwrap_err();
        assert_eq!(e, "replica 2 executed a different log up to 7 than replica 0");
    }
}
