//! Experiments over the simulator: the harnesses that build a [`agora_sim::Sim`]
//! for a protocol, schedule its workload and faults, install its invariants,
//! and turn a finished run into a report. Protocol crates stay free of any
//! driver; what a harness needs from a protocol (a trait such as
//! [`agora_teams::Holder`]) lives with the protocol.
//!
//! * [`teams`]: team-formation runs, the baselines, Afek–Gafni, vector team
//!   formation and the applications (elections, trigger counting, matching).

pub mod stats;
pub mod teams;
