//! The deterministic simulator: drives any [`agora_core::Protocol`] through a
//! discrete-event loop with modelled networks and injected faults.
//!
//! * **Determinism**: events are ordered by (time, sequence number); every
//!   random choice derives from one root seed; the trace hash (FNV-1a over
//!   every handled event) is identical for the same scenario and seed.
//! * **Networks** ([`network`]): constant, uniform, exponential, a latency
//!   matrix between sites, and the asynchronous adversary (delays in (0, 1]
//!   time units, pluggable); optional FIFO per directed link, loss, duplication.
//! * **Faults** ([`Fault`]): crash and recover (with or without memory),
//!   omission per node or link, partitions that split and heal, fragile nodes
//!   whose faulty status toggles only at quiescent times, and Byzantine nodes
//!   whose outgoing messages a hook rewrites.
//! * **Disks** ([`disk`]): the storage capability's writes and syncs with
//!   modelled latency; crashes lose what was not synced, may tear the last
//!   write or corrupt a record; a full disk refuses syncs.
//! * **Keys**: every node's signing key derived from the seed.
//! * **Checks**: invariants run after every event; a violation stops the run
//!   and names the invariant, event, time and seed.
//! * **Traces** ([`trace`]): optional JSON lines with the running hash, for
//!   replay and diffing.

pub mod disk;
pub mod network;
mod queue;
pub mod scenario;
mod sim;
mod stats;
pub mod trace;

pub use disk::DiskModel;
pub use network::{Adversary, Latency, LinkCtx, Model};
pub use sim::{Byzantine, Fault, Nodes, OutputRecord, Report, Scope, Sim, SimConfig, SimError, Stop, Toggle, World};
pub use stats::{DiskStats, KindCounts, Stats};
