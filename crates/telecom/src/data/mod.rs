//! The data plane: what the replication groups hold and what clients ask
//! of it (spec: `telecom.md`, "Data plane").
//!
//! * [`kv`]: a replica's key–value state — string keys, byte values, a
//!   version per key — and the operations read, write, cas and append; the
//!   writers' seals every value carries (authenticated data);
//! * [`workload`]: the clients' operation mix, key distribution and the
//!   unique tokens they write.
//!
//! Every member of a group keeps its own [`kv::Store`] and applies the
//! requests it serves. How the members' stores are kept in step is the
//! group's strategy, kept by the node's replica services (`node/replica/`):
//! active-passive and geographic groups ship their writes to each other
//! and n-way groups are in primary order (`ship.rs`), causal groups
//! multicast them in causal order (`causal.rs`), quorum groups' clients
//! read and write R and W members (`client.rs`).

pub mod kv;
pub mod workload;

/// FNV-1a of `bytes`, continuing from `h`.
pub(crate) fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
