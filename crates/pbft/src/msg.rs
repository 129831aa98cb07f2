//! PBFT's messages (Castro–Liskov § 4) and the digests they carry.

use crate::Digest;
use agora_core::{Message, NodeId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A client's request: `timestamp` orders one client's requests (each
/// client has one outstanding at a time), so replicas execute each once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    pub client: NodeId,
    pub timestamp: u64,
    pub op: Vec<u8>,
}

/// What a replica holds at a checkpoint: enough to rebuild a replica that
/// fell behind (state transfer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The hash chain of the batch digests executed up to the checkpoint.
    pub chain: Digest,
    /// Each client's last executed request: its timestamp and result (the
    /// reply cache is replicated state: without it a restored replica would
    /// execute a retransmitted request twice).
    pub clients: Vec<(NodeId, u64, Vec<u8>)>,
    /// The state machine's snapshot.
    pub machine: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Client → replicas.
    Request(Request),
    /// Primary → backups: `batch` gets sequence number `seq` in `view`.
    PrePrepare { view: u64, seq: u64, batch: Vec<Request> },
    /// Backup → replicas: it accepted the pre-prepare with `digest`.
    Prepare { view: u64, seq: u64, digest: Digest },
    /// Replica → replicas: the batch is prepared here (2f prepares and the pre-prepare).
    Commit { view: u64, seq: u64, digest: Digest },
    /// Replica → client: the result of its request `timestamp`.
    Reply { view: u64, timestamp: u64, result: Vec<u8> },
    /// Replica → replicas: its state after executing `seq` has `digest`.
    Checkpoint { seq: u64, digest: Digest },
    /// Replica → replicas, now and then: how far it is, so that peers resend
    /// what it lacks (PBFT's retransmission on a lossy network).
    Status { view: u64, executed: u64, stable: u64 },
    /// A replica behind a stable checkpoint asks for its state.
    FetchState { seq: u64 },
    /// The state at checkpoint `seq`, checked by its receiver against the
    /// checkpoint's digest.
    State { seq: u64, state: Box<Snapshot> },
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Request(_) => "request",
            Msg::PrePrepare { .. } => "pre-prepare",
            Msg::Prepare { .. } => "prepare",
            Msg::Commit { .. } => "commit",
            Msg::Reply { .. } => "reply",
            Msg::Checkpoint { .. } => "checkpoint",
            Msg::Status { .. } => "status",
            Msg::FetchState { .. } => "fetch-state",
            Msg::State { .. } => "state",
        }
    }
}

/// The digest of a batch of requests.
pub fn batch_digest(batch: &[Request]) -> Digest {
    let mut h = Sha256::new();
    for r in batch {
        h.update(r.client.0.to_le_bytes());
        h.update(r.timestamp.to_le_bytes());
        h.update((r.op.len() as u64).to_le_bytes());
        h.update(&r.op);
    }
    h.finalize().into()
}

/// The executed-batches chain after `seq` with `digest`.
pub fn extend_chain(chain: &Digest, seq: u64, digest: &Digest) -> Digest {
    Sha256::new().chain_update(chain).chain_update(seq.to_le_bytes()).chain_update(digest).finalize().into()
}

/// A checkpoint's digest: the sequence number, the chain, the reply cache
/// and the machine's digest.
pub fn checkpoint_digest(seq: u64, chain: &Digest, clients: &[(NodeId, u64, Vec<u8>)], machine: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update(chain);
    for (c, t, result) in clients {
        h.update(c.0.to_le_bytes());
        h.update(t.to_le_bytes());
        h.update((result.len() as u64).to_le_bytes());
        h.update(result);
    }
    h.update(machine);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_digests_see_every_field_and_the_boundaries() {
        let r = |c, t, op: &[u8]| Request { client: NodeId(c), timestamp: t, op: op.to_vec() };
        let base = batch_digest(&[r(4, 1, b"ab")]);
        assert_ne!(base, batch_digest(&[r(5, 1, b"ab")]));
        assert_ne!(base, batch_digest(&[r(4, 2, b"ab")]));
        assert_ne!(base, batch_digest(&[r(4, 1, b"ac")]));
        // Lengths are hashed, so one op cannot pass for two.
        assert_ne!(batch_digest(&[r(4, 1, b"ab"), r(4, 2, b"")]), batch_digest(&[r(4, 1, b"a"), r(4, 2, b"b")]));
    }
}
