//! The public ledger: one entry per agent, written by the ledger node at
//! each barrier into its durable storage — the driver's storage capability
//! (`agora_core::storage`), so the protocol never opens a file or a socket:
//! a modelled disk in the simulator, redb or etcd on real nodes
//! (`[storage] backend` in the cluster file). A restarted ledger node reads
//! the table back and resumes.

use serde::{Deserialize, Serialize};

/// The table the ledger node keeps its entries in, keyed by agent id
/// (4 bytes, big-endian), each entry as JSON.
pub const LEDGER_TABLE: &str = "ledger";

/// What an agent makes public: nothing else about it is ever written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The round this entry was published for.
    pub round: u32,
    /// The agent's level (see [`crate::rule`]).
    pub level: u32,
    /// Nothing of the agent's changed in its latest step.
    pub converged: bool,
}
