//! The baselines ([`agora_teams::baselines`]) run with the same spec,
//! network, faults and checks as team formation.

use agora_teams::baselines::{Broadcast, LeaderGather};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    LeaderGather,
    Broadcast,
}

/// One baseline run with the same spec, network, faults and checks as
/// [`super::run::run`].
pub fn run_baseline(b: Baseline, spec: &super::run::RunSpec) -> super::run::RunReport {
    let (n, k) = (spec.n, spec.k);
    match b {
        Baseline::LeaderGather => {
            let (sim, inj) = super::run::build_with(spec, move |id| LeaderGather::new(id, k));
            super::run::finish(spec, sim, inj, &mut |_| {})
        }
        Baseline::Broadcast => {
            let (sim, inj) = super::run::build_with(spec, move |id| Broadcast::new(id, n, k));
            super::run::finish(spec, sim, inj, &mut |_| {})
        }
    }
}
