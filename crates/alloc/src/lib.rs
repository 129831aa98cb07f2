//! Need-fulfillment allocation (seed 000, spec `alloc.md`): providers with
//! private capacities share them among recipients with private needs,
//! weighted by mutual recognition, over rounds coordinated through a public
//! ledger.
//!
//! This crate so far holds the ground the protocol stands on:
//! * [`Instance`] / [`Network`]: instances in JSON or TOML, validated with
//!   errors that name the offending entry;
//! * [`max_flow`]: the exact optimum (Dinic), the reference every rule's
//!   efficiency is measured against;
//! * [`rule`]: the default update rule, a distributed push–relabel (its
//!   objective and why it converges are in the module docs), and
//!   [`DefaultRule`] / [`solve`], which run it over a whole network in one
//!   process;
//! * [`SeedRule`]: the seed's literal update rule, which oscillates (see
//!   `tests/alloc.rs`);
//! * [`generate`]: random instances, deterministic in the seed.
//!
//! Still to come (issue 3): the default rule, the round protocol as nodes
//! with barriers, the ledger backends, faults and the CLI.

mod generate;
mod instance;
pub mod ledger;
mod maxflow;
pub mod node;
pub mod rule;
mod seed_rule;
mod solver;

pub use generate::{generate, random_network, suite_instance};
pub use instance::{Edge, Instance, InstanceError, Network, Provider, Recipient};
pub use maxflow::max_flow;
pub use seed_rule::SeedRule;
pub use solver::{solve, DefaultRule, RoundReport, RuleName, Solution};
