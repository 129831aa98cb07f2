//! Team formation in the simulator (the protocol is [`agora_teams`]).
//!
//! * [`run`]: one run (network, fragile nodes, token schedule, invariants
//!   after every event, the end check and report of `agora teams run`);
//! * [`baselines`], [`afek_gafni`]: the baselines under the same harness;
//! * [`vector`]: vector team formation runs;
//! * [`apps`]: elections, trigger counting, matching, matchmaking;
//! * [`sweep`]: the sweeps over n and the fragile fraction, sharded and
//!   merged, with their CSV files and plots.

pub mod afek_gafni;
pub mod apps;
pub mod baselines;
pub mod run;
pub mod sweep;
pub mod vector;
