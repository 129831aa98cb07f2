//! Vector team formation runs in the simulator: the seed's super-token
//! construction ([`agora_teams::vector::VectorNode`]) beside the direct
//! baseline, conservation in raw tokens after every event, and the end
//! check and report of `agora teams vtf`.

use super::run::{build_with, RunSpec, UNIT};
use agora_core::{NodeId, Time};
use agora_sim::scenario::AdversarySpec;
use agora_sim::Sim;
use agora_teams::counters;
use agora_teams::vector::{Colours, VectorNode, MAX_COLOURS};
use agora_teams::{Config, Graph, Input, Node, Output};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which algorithm solves vector team formation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// The seed's: one team formation per colour, super-tokens collected.
    SuperTokens,
    /// Baseline: one team formation over coloured tokens, the whole vector
    /// as its team rule.
    Direct,
}

#[derive(Clone, Debug)]
pub struct VectorSpec {
    pub n: u32,
    /// Tokens of each colour per team.
    pub sizes: Vec<u64>,
    /// Tokens injected; each one's colour is drawn in proportion to `sizes`.
    pub tokens: u64,
    /// Injections at uniform random times in [0, spread) units.
    pub spread: f64,
    pub adversary: AdversarySpec,
    pub seed: u64,
}

impl VectorSpec {
    /// Checks the spec; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.sizes.is_empty() || self.sizes.len() > MAX_COLOURS {
            return Err(format!("sizes: {} colours (1 to {MAX_COLOURS})", self.sizes.len()));
        }
        if let Some(c) = self.sizes.iter().position(|&k| k == 0) {
            return Err(format!("sizes: colour {c} has team size 0"));
        }
        if self.sizes.iter().sum::<u64>() < 2 {
            return Err("sizes: a team needs at least 2 tokens".into());
        }
        if self.n < 2 {
            return Err(format!("n: {} (at least 2)", self.n));
        }
        Ok(())
    }

    /// The scalar spec the shared network and conservation check use.
    fn run_spec(&self) -> RunSpec {
        RunSpec {
            spread: self.spread,
            adversary: self.adversary,
            ..RunSpec::new(self.n, self.sizes.iter().sum(), 0, self.seed)
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VectorReport {
    pub algorithm: Algorithm,
    pub n: u32,
    pub sizes: Vec<u64>,
    /// Tokens injected, by colour.
    pub injected: Vec<u64>,
    pub teams_formed: u64,
    /// min over colours of ⌊injected / size⌋: what liveness requires.
    pub teams_possible: u64,
    /// Teams of single colours turned into super-tokens (0 for `direct`).
    pub super_tokens: u64,
    pub messages_total: u64,
    pub messages_per_token: f64,
    /// From the moment the system holds a full vector to the next team.
    pub reaction_time_mean: f64,
    pub reaction_time_p99: f64,
    pub problem: Option<String>,
    pub safe: bool,
    pub trace_hash: String,
}

/// The most bytes a message may take: a transport carries at most one pair
/// per colour (collector, direct) or fewer than k_c pairs, plus the copy tag.
pub fn max_message_bytes(sizes: &[u64]) -> usize {
    2 + super::run::max_message_bytes(sizes.iter().copied().max().unwrap_or(1).max(sizes.len() as u64))
}

/// One run of vector team formation in the simulator, token conservation
/// checked after every event; the end check is in the report.
pub fn run(spec: &VectorSpec, algorithm: Algorithm) -> Result<VectorReport, String> {
    spec.validate()?;
    let graph = Graph::new(spec.n, 2.0, 0.5, spec.seed);
    let sizes = Arc::new(spec.sizes.clone());
    Ok(match algorithm {
        Algorithm::SuperTokens => {
            let (sim, _) = build_with(&spec.run_spec(), move |id| VectorNode::new(graph.clone(), sizes.clone(), id));
            execute(spec, algorithm, sim)
        }
        Algorithm::Direct => {
            let cfg =
                Arc::new(Config { colours: Some(spec.sizes.clone()), ..Config::new(graph, spec.sizes.iter().sum()) });
            let (sim, _) = build_with(&spec.run_spec(), move |id| Node::new(cfg.clone(), id));
            execute(spec, algorithm, sim)
        }
    })
}

fn execute<P: Colours>(spec: &VectorSpec, algorithm: Algorithm, mut sim: Sim<P>) -> VectorReport {
    let colours = spec.sizes.len();
    let mut g = ChaCha8Rng::seed_from_u64(spec.seed ^ 0xc010);
    let total: u64 = spec.sizes.iter().sum();
    let unit = UNIT.as_nanos() as f64;
    let mut injections: Vec<(Time, usize)> = Vec::new();
    for _ in 0..spec.tokens {
        let colour = weighted_pick(&spec.sizes, g.random_range(0..total));
        let at = Time::from_nanos(1 + (g.random::<f64>() * spec.spread * unit) as u64);
        sim.schedule_input(at, NodeId(g.random_range(0..spec.n)), Input::Tagged(colour as u64));
        injections.push((at, colour));
    }
    let limit = Time::from_nanos((1e6 * unit) as u64);
    let outcome = sim.run(limit, u64::MAX, &mut |_| {});
    let mut injected = vec![0u64; colours];
    for &(_, c) in &injections {
        injected[c] += 1;
    }
    let teams_possible = injected.iter().zip(&spec.sizes).map(|(i, k)| i / k).min().unwrap_or(0);
    let teams: Vec<(Time, Vec<u64>)> = sim
        .outputs()
        .iter()
        .filter_map(|o| match &o.output {
            Output::Team(m) => Some((o.at, m.clone())),
            _ => None,
        })
        .collect();
    let mut rt = reaction_times(&spec.sizes, &injections, &teams);
    let p99 = crate::stats::quantile(&mut rt, 0.99);
    let problem = match &outcome {
        Err(e) => Some(e.to_string()),
        Ok(_) => end_check(spec, algorithm, &sim, &teams, teams_possible).err(),
    };
    let s = sim.stats();
    VectorReport {
        algorithm,
        n: spec.n,
        sizes: spec.sizes.clone(),
        teams_formed: teams.len() as u64,
        teams_possible,
        injected,
        super_tokens: s.counters.get(counters::SUPER_TOKENS),
        messages_total: s.messages_sent,
        messages_per_token: s.messages_sent as f64 / spec.tokens.max(1) as f64,
        reaction_time_mean: if rt.is_empty() { 0.0 } else { rt.iter().sum::<f64>() / rt.len() as f64 },
        reaction_time_p99: p99,
        safe: problem.is_none(),
        problem,
        trace_hash: format!("{:016x}", outcome.map_or(sim.trace_hash(), |r| r.trace_hash)),
    }
}

/// The index i where x falls when the line is cut into pieces of `sizes`.
fn weighted_pick(sizes: &[u64], mut x: u64) -> usize {
    for (i, &k) in sizes.iter().enumerate() {
        if x < k {
            return i;
        }
        x -= k;
    }
    unreachable!("x is below the sum of sizes")
}

/// Safety (every team is exactly the vector), liveness (no full vector
/// left), accumulation (each copy's leftovers at one node), nothing in
/// transit, bounded messages.
fn end_check<P: Colours>(
    spec: &VectorSpec,
    algorithm: Algorithm,
    sim: &Sim<P>,
    teams: &[(Time, Vec<u64>)],
    possible: u64,
) -> Result<(), String> {
    let c = &sim.stats().counters;
    for name in [
        counters::STALE_TRANSPORT,
        counters::MALFORMED_TRANSPORT,
        counters::MALFORMED_COPY,
        counters::BAD_INPUT,
        counters::UNEXPECTED_RESPONSE,
    ] {
        if c.get(name) > 0 {
            return Err(format!("{name}: {}", c.get(name)));
        }
    }
    if c.get(counters::TOKENS_TRANSPORTED) != c.get(counters::TOKENS_RECEIVED) {
        return Err("tokens still in transit at the end".into());
    }
    // A collector team is one super-token of each colour; a direct team the
    // vector itself.
    let shape: Vec<u64> = match algorithm {
        Algorithm::SuperTokens => vec![1; spec.sizes.len()],
        Algorithm::Direct => spec.sizes.clone(),
    };
    for (at, members) in teams {
        let mut have = vec![0u64; shape.len()];
        for &m in members {
            *have.get_mut(m as usize).ok_or(format!("a team at {at} has colour {m}"))? += 1;
        }
        if have != shape {
            return Err(format!("a team at {at} has {have:?} tokens by colour, not {shape:?}"));
        }
    }
    if teams.len() as u64 != possible {
        return Err(format!("{} teams formed where the tokens make {possible}: liveness failed", teams.len()));
    }
    let nodes = sim.nodes();
    let left: Vec<u64> = (0..spec.sizes.len()).map(|col| nodes.ids().map(|v| sim.node(v).raw(col)).sum()).collect();
    if left.iter().zip(&spec.sizes).all(|(l, k)| l >= k) {
        return Err(format!("a full vector is left ({left:?} by colour)"));
    }
    let copies = sim.node(NodeId(0)).holding().len();
    for copy in 0..copies {
        let holders = nodes.ids().filter(|&v| sim.node(v).holding()[copy]).count();
        if holders > 1 {
            return Err(format!("copy {copy}: leftover tokens at {holders} nodes (accumulation)"));
        }
    }
    let bound = max_message_bytes(&spec.sizes);
    if sim.stats().max_message_bytes > bound {
        return Err(format!("a message of {} bytes (bound {bound})", sim.stats().max_message_bytes));
    }
    Ok(())
}

/// For each stretch in which the system holds a full vector, the time from
/// its start to the next team (units).
fn reaction_times(sizes: &[u64], injections: &[(Time, usize)], teams: &[(Time, Vec<u64>)]) -> Vec<f64> {
    // Injections before teams at the same instant.
    let mut events: Vec<(Time, Option<usize>)> = injections.iter().map(|&(t, c)| (t, Some(c))).collect();
    events.extend(teams.iter().map(|(t, _)| (*t, None)));
    events.sort_by_key(|e| (e.0, e.1.is_none()));
    let mut held = vec![0u64; sizes.len()];
    let (mut since, mut out) = (None, Vec::new());
    let unit = UNIT.as_nanos() as f64;
    for (t, e) in events {
        match e {
            Some(c) => held[c] += 1,
            None => {
                held.iter_mut().zip(sizes).for_each(|(h, k)| *h = h.saturating_sub(*k));
                if let Some(s) = since.take() {
                    out.push((t.as_nanos() - s) as f64 / unit);
                }
            }
        }
        if since.is_none() && held.iter().zip(sizes).all(|(h, k)| h >= k) {
            since = Some(t.as_nanos());
        }
    }
    out
}

/// One algorithm's runs over seeds, added up.
#[derive(Clone, Debug, Serialize)]
pub struct VectorSummary {
    pub algorithm: Algorithm,
    pub runs: u64,
    pub safe: u64,
    pub teams_formed: u64,
    pub teams_possible: u64,
    pub super_tokens: u64,
    pub messages_per_token_mean: f64,
    pub reaction_time_mean: f64,
}

/// The seed's super-token algorithm and the direct baseline, each over
/// seeds 0 … seeds − 1 of `spec`; `progress` after each run.
pub fn compare(spec: &VectorSpec, seeds: u64, progress: &mut dyn FnMut()) -> Result<Vec<VectorReport>, String> {
    spec.validate()?;
    let mut reports = Vec::new();
    for algorithm in [Algorithm::SuperTokens, Algorithm::Direct] {
        for seed in 0..seeds {
            reports.push(run(&VectorSpec { seed, ..spec.clone() }, algorithm)?);
            progress();
        }
    }
    Ok(reports)
}

/// What the runs of one algorithm add up to.
pub fn summarize(algorithm: Algorithm, reports: &[VectorReport]) -> VectorSummary {
    let runs: Vec<&VectorReport> = reports.iter().filter(|r| r.algorithm == algorithm).collect();
    let len = runs.len().max(1) as f64;
    let sum = |f: &dyn Fn(&VectorReport) -> u64| runs.iter().map(|r| f(r)).sum::<u64>();
    VectorSummary {
        algorithm,
        runs: runs.len() as u64,
        safe: runs.iter().filter(|r| r.safe).count() as u64,
        teams_formed: sum(&|r| r.teams_formed),
        teams_possible: sum(&|r| r.teams_possible),
        super_tokens: sum(&|r| r.super_tokens),
        messages_per_token_mean: runs.iter().map(|r| r.messages_per_token).sum::<f64>() / len,
        reaction_time_mean: runs.iter().map(|r| r.reaction_time_mean).sum::<f64>() / len,
    }
}
