//! The tokio TCP runtime: runs the same [`agora_core::Protocol`] values the
//! simulator runs, on real sockets and real clocks.
//!
//! * [`frame`]: length-delimited frames carrying the versioned wire encoding;
//!   a bad or oversized frame closes its connection and is counted, never a crash.
//! * [`node`]: one connection per peer pair (the lower id dials), reconnect
//!   with jittered exponential backoff, timers on tokio time, seeded or OS
//!   randomness, and a transport fault layer ([`faults`]) switchable at run time.
//! * [`http`]: `/health`, `/status`, `/metrics` (Prometheus), `/input`, `/faults`.
//! * [`config`]: cluster files, one TOML for all nodes of a cluster.
//! * admission control: per-peer fairdist quotas on queued inbound memory and
//!   connection slots; a flooding peer is refused (counted in
//!   `agora_quota_refused_total`), the others keep their guaranteed share.

mod admission;
pub mod config;
pub mod faults;
pub mod frame;
pub mod http;
mod metrics;
pub mod node;
pub mod probe;
pub mod security;
pub mod storage;

pub use config::{ClusterFile, NodeConfig, NodeEntry, TransportConfig};
pub use faults::FaultLayer;
pub use node::{start, NetError, NodeHandle};
