//! PBFT's messages (Castro–Liskov § 4) and the digests they carry.

use crate::Digest;
use agora_core::keys::Tag;
use agora_core::{Message, NodeId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A client's request: `timestamp` orders one client's requests (each
/// client has one outstanding at a time), so replicas execute each once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Request {
    pub client: NodeId,
    pub timestamp: u64,
    pub op: Vec<u8>,
    /// The client's authenticator: its MAC of the request for each replica
    /// (index = replica id), so every backup can check a request the
    /// primary hands on (see [`crate::auth`]). Not part of the digest.
    pub auth: Vec<Tag>,
}

/// What a replica holds at a checkpoint: enough to rebuild a replica that
/// fell behind (state transfer).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A replica's claim in a view change: it prepared `digest` (the batch
/// given) at `seq` in `view`, the latest view it prepared anything there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prepared {
    pub seq: u64,
    pub view: u64,
    pub digest: Digest,
    pub batch: Vec<Request>,
}

/// A replica's claim in a view change: it accepted a pre-prepare of
/// `digest` at `seq`, the latest in `view`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrePrepared {
    pub seq: u64,
    pub view: u64,
    pub digest: Digest,
}

/// A replica moves to `view` (Castro–Liskov § 4.4, with the claims of the
/// version without signatures on the normal path: prepared and
/// pre-prepared sets instead of prepare certificates). Signed, so a new
/// primary can show it to the others in its new-view message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ViewChange {
    pub view: u64,
    pub replica: NodeId,
    /// Its stable checkpoint.
    pub stable: u64,
    /// Its checkpoints from the stable one on, with their digests.
    pub checkpoints: Vec<(u64, Digest)>,
    pub prepared: Vec<Prepared>,
    pub pre_prepared: Vec<PrePrepared>,
    /// The replica's ed25519 signature of everything above.
    pub signature: Vec<u8>,
}

impl ViewChange {
    /// What the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let body = (self.view, self.replica, self.stable, &self.checkpoints, &self.prepared, &self.pre_prepared);
        agora_core::wire::encode(&body).expect("a view change encodes")
    }
    /// Its claim for `seq`, if it prepared something there.
    pub fn prepared_at(&self, seq: u64) -> Option<&Prepared> {
        self.prepared.iter().find(|p| p.seq == seq)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// Replica → replicas: its state after executing `seq` has `digest`;
    /// signed ([`checkpoint_bytes`]), so the vote can be shown to others.
    Checkpoint { seq: u64, digest: Digest, signature: Vec<u8> },
    /// Replica → replicas, now and then: how far it is, so that peers resend
    /// what it lacks (PBFT's retransmission on a lossy network).
    Status { view: u64, executed: u64, stable: u64 },
    /// A replica behind a stable checkpoint asks for its state.
    FetchState { seq: u64 },
    /// The state at checkpoint `seq`, checked by its receiver against the
    /// checkpoint's digest.
    State { seq: u64, state: Box<Snapshot> },
    /// Replica → replicas: it suspects the primary and moves to a new view.
    ViewChange(Box<ViewChange>),
    /// The new primary → replicas: 2f + 1 signed view changes for `view`,
    /// from which every replica computes the same decision (see
    /// [`crate::decide`]); signed by the primary, so any replica can hand
    /// it on to one that missed it.
    NewView { view: u64, proof: Vec<ViewChange>, signature: Vec<u8> },
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
            Msg::ViewChange(_) => "view-change",
            Msg::NewView { .. } => "new-view",
        }
    }
}

/// What replica `replica`'s checkpoint signature covers.
pub fn checkpoint_bytes(replica: NodeId, seq: u64, digest: &Digest) -> Vec<u8> {
    agora_core::wire::encode(&("checkpoint", replica, seq, digest)).expect("a checkpoint encodes")
}

/// What a new-view message's signature covers.
pub fn new_view_bytes(view: u64, proof: &[ViewChange]) -> Vec<u8> {
    agora_core::wire::encode(&(view, proof)).expect("a new view encodes")
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

impl Snapshot {
    /// The digest of the checkpoint at `seq` holding this state: the
    /// sequence number, the chain, the reply cache and the machine's bytes.
    pub fn digest(&self, seq: u64) -> Digest {
        let mut h = Sha256::new();
        h.update(seq.to_le_bytes());
        h.update(self.chain);
        for (c, t, result) in &self.clients {
            h.update(c.0.to_le_bytes());
            h.update(t.to_le_bytes());
            h.update((result.len() as u64).to_le_bytes());
            h.update(result);
        }
        h.update((self.machine.len() as u64).to_le_bytes());
        h.update(&self.machine);
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_digests_see_every_field_and_the_boundaries() {
        let r = |c, t, op: &[u8]| Request { client: NodeId(c), timestamp: t, op: op.to_vec(), auth: vec![] };
        let base = batch_digest(&[r(4, 1, b"ab")]);
        assert_ne!(base, batch_digest(&[r(5, 1, b"ab")]));
        assert_ne!(base, batch_digest(&[r(4, 2, b"ab")]));
        assert_ne!(base, batch_digest(&[r(4, 1, b"ac")]));
        // Lengths are hashed, so one op cannot pass for two.
        assert_ne!(batch_digest(&[r(4, 1, b"ab"), r(4, 2, b"")]), batch_digest(&[r(4, 1, b"a"), r(4, 2, b"b")]));
    }
}
