//! The data plane: what the replication groups hold and what clients ask
//! of it (spec: `telecom.md`, "Data plane").
//!
//! * [`kv`]: a replica's key–value state — string keys, byte values, a
//!   version per key — and the operations read, write, cas and append;
//! * [`workload`]: the clients' operation mix, key distribution and the
//!   unique tokens they write.
//!
//! Every member of a group keeps its own [`kv::Store`] and applies the
//! requests it serves. The groups' strategies — how the members' stores
//! are kept in step — are the next stage; until then each member's store
//! holds only what it served, and the histories a run records
//! (`agora sim --history`) show what that gives.

pub mod kv;
pub mod workload;

/// A stable 64-bit hash of a key (FNV-1a), for the causal log, which
/// orders writes by key number.
pub fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
