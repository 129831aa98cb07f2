//! The tokio TCP runtime: runs the same [`agora_core::Protocol`] values the
//! simulator runs, on real sockets and real clocks.
//!
//! * [`node`]: [`start`] a node — bind, open storage, spawn the tasks: the
//!   event loop (`host.rs`: the only owner of the protocol; timers on tokio
//!   time, seeded or OS randomness) and the transport (`transport.rs`: one
//!   connection per peer pair, the lower id dials, reconnect with jittered
//!   exponential backoff) through a fault layer ([`faults`]) switchable at
//!   run time.
//! * [`frame`]: length-delimited frames carrying the versioned wire encoding;
//!   a bad or oversized frame closes its connection and is counted, never a crash.
//! * [`security`]: node keys, TLS 1.3 with raw public keys pinned to the
//!   cluster file; [`http`]: `/health`, `/status`, `/metrics` (Prometheus),
//!   `/input`, `/faults`, the mutating ones behind a bearer token; [`api`]:
//!   a protocol's own endpoints (calls answered by its outputs).
//! * [`storage`]: the storage capability on a thread of its own (redb, etcd),
//!   with group commit.
//! * [`config`]: cluster files, one TOML for all nodes of a cluster.
//! * admission control: per-peer fairdist quotas on queued inbound memory and
//!   connection slots; a flooding peer is refused (counted in
//!   `agora_quota_refused_total`), the others keep their guaranteed share.

mod admission;
pub mod api;
pub mod config;
mod doors;
pub mod faults;
pub mod frame;
mod host;
pub mod http;
mod metrics;
pub mod node;
pub mod probe;
pub mod security;
mod shared;
pub mod storage;
mod transport;

pub use api::{Api, CallError, Caller, Endpoint};
pub use config::{ClusterFile, NodeConfig, NodeEntry, TransportConfig};
pub use faults::FaultLayer;
pub use node::{start, start_with, NetError, NodeHandle};
