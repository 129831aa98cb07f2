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

/// **Distributed trigger counting**: raise an alarm exactly when w triggers
/// have occurred in total. Each trigger injects a token where it happens,
/// and team formation runs with k = w. A team, which is the alarm, cannot
/// form before w tokens exist (safety), and forms once they do (liveness).
/// Every further w triggers raise the next alarm.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerCount {
    pub w: u64,
    pub triggers: u64,
    /// Time units at which alarms were raised.
    pub alarms: Vec<f64>,
    /// When the w-th, 2w-th, … trigger happened (units).
    pub due: Vec<f64>,
    pub messages: u64,
}

pub fn trigger_counting(n: u32, w: u64, triggers: u64, seed: u64) -> TriggerCount {
    let unit = crate::run::UNIT.as_nanos() as f64;
    let spec = RunSpec { spread: 0.0, ..RunSpec::new(n, w.max(2), 0, seed) };
    let (mut sim, _) = build(&spec);
    let mut g = ChaCha8Rng::seed_from_u64(seed ^ 0x7219);
    let mut times: Vec<u64> = (0..triggers).map(|_| 1 + g.random_range(0..(50.0 * unit) as u64)).collect();
    times.sort_unstable();
    for &t in &times {
        sim.schedule_input(Time::from_nanos(t), NodeId(g.random_range(0..n)), Input::Inject(1));
    }
    sim.run_until(Time::from_nanos(u64::MAX / 2)).expect("invariants hold");
    let mut alarms = Vec::new();
    for o in sim.outputs() {
        let crate::Output::Teams(t) = o.output;
        alarms.extend(std::iter::repeat_n(o.at.as_nanos() as f64 / unit, t as usize));
    }
    let due = times.iter().skip(w.max(1) as usize - 1).step_by(w.max(1) as usize).map(|&t| t as f64 / unit).collect();
    TriggerCount { w, triggers, alarms, due, messages: sim.stats().messages_sent }
}
