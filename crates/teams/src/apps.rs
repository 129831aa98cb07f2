//! Applications built on team formation.
//!
//! **Implicit leader election.** Each node becomes a candidate with
//! probability q = min(1, c·ln n / n) and injects one token, so there are
//! m ≈ c·ln n tokens. With k = max(2, round(m̄ / 1.5)), where m̄ = n·q, exactly
//! one team forms whenever k ≤ m < 2k, which happens whp as c grows (Poisson
//! tails: 0.91 at c = 4 and 0.99 at c = 8 for n = 1024). The node where it
//! forms is the leader; the others are implicitly not. Termination detection
//! for non-leaders (the seed's TERM tokens) is not built yet.

use crate::run::{build, RunSpec};
use crate::Input;
use agora_core::{NodeId, Time};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Election {
    pub n: u32,
    pub candidates: u64,
    pub k: u64,
    pub teams: u64,
    /// Nodes where a team formed (exactly one on success).
    pub leaders: Vec<u32>,
    pub success: bool,
    pub messages: u64,
    pub time_units: f64,
}

/// One implicit election in the simulator (uniform adversary, no faults).
pub fn implicit_election(n: u32, c: f64, seed: u64) -> Election {
    let q = (c * (n.max(2) as f64).ln() / n as f64).min(1.0);
    let k = ((n as f64 * q / 1.5).round() as u64).max(2);
    let spec = RunSpec { spread: 0.0, ..RunSpec::new(n, k, 0, seed) };
    let (mut sim, _) = build(&spec);
    let mut g = ChaCha8Rng::seed_from_u64(seed ^ 0xe1ec);
    let mut candidates = 0;
    for v in 0..n {
        if g.random_bool(q) {
            sim.schedule_input(Time::from_nanos(1), NodeId(v), Input::Inject(1));
            candidates += 1;
        }
    }
    sim.run_until(Time::from_nanos(u64::MAX / 2)).expect("invariants hold");
    // Every output is a team formation (`Output::Teams`): its node leads.
    let leaders: Vec<u32> = sim.outputs().iter().map(|o| o.node.0).collect();
    let teams = sim.stats().counters.get("teams");
    Election {
        n,
        candidates,
        k,
        teams,
        success: teams == 1 && leaders.len() == 1,
        leaders,
        messages: sim.stats().messages_sent,
        time_units: sim.now().as_nanos() as f64 / crate::run::UNIT.as_nanos() as f64,
    }
}
