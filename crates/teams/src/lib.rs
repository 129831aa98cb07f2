//! Team formation (seed 002, spec `teams.md`): tokens injected over time at
//! n nodes are gathered into teams of exactly k, over channels that utility
//! nodes mediate between busy primaries, despite fragile nodes.
//!
//! * [`graph`]: the implicit primary–utility graph.
//! * [`node`]: the channel layer (our design: the seed defers it) and the
//!   principal layer (center/arm phases, selective waiting), as one
//!   `Protocol`.
//! * [`run`]: one run in the simulator, with the invariants checked after
//!   every event, and its report.
//!
//! Work in progress (issue 4): the applications, the baselines, the sweeps
//! and plots, and the TCP cluster are still to come.

pub mod apps;
pub mod baselines;
pub mod graph;
pub mod node;
pub mod run;

pub use graph::Graph;
pub use node::{Config, Input, Msg, Node, Output};
