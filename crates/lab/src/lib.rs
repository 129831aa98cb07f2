//! Experiments over the simulator: the harnesses that build a [`agora_sim::Sim`]
//! for a protocol, schedule its workload and faults, install its invariants,
//! and turn a finished run into a report. Protocol crates stay free of any
//! driver; what a harness needs from a protocol (a trait such as
//! [`agora_teams::Holder`]) lives with the protocol.
//!
//! * [`registry`]: how each protocol is built from a scenario, checked and
//!   summarized — the one path every simulated run takes.
//! * [`alloc`]: the allocation protocol's simulated runs (`agora alloc sim`).
//! * [`pbft`]: PBFT's invariants and outcome in the simulator.
//! * [`teams`]: team-formation runs, the baselines, Afek–Gafni, vector team
//!   formation and the applications (elections, trigger counting, matching).

pub mod alloc;
pub mod pbft;
pub mod plot;
pub mod registry;
pub mod stats;
pub mod teams;
pub mod telecom;

// For `with_protocol!`, which names the registered protocols from any crate.
#[doc(hidden)]
pub use {agora_alloc, agora_broadcast, agora_pbft, agora_teams, agora_telecom, anyhow};
