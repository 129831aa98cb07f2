//! `agora bench alloc`: the round protocol's speed at the spec's two sizes —
//! 1000 providers × 1000 recipients fully connected (10^6 edges), and 10^4
//! providers × 10^5 recipients with 20 edges each (2·10^6 edges) — on one
//! core, in one process.
//!
//! For the default rule it times every round of a solve to convergence (the
//! median and the slowest) and the whole solve, including setting up the
//! agents. The **baseline** is the seed rule's round on the same network, in
//! the same run: the cost of the simplest possible round (one proportional
//! split per provider), so the ratio says what levels, requests and
//! take-backs cost on top.

use crate::report::table;
use agora_alloc::{max_flow, random_network, DefaultRule, SeedRule};
use agora_lab::stats::median;
use anyhow::Result;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct AllocBenchArgs {
    /// Seed rounds timed for the baseline median.
    #[arg(long, default_value_t = 15)]
    pub seed_rounds: usize,
    /// Only the smaller case (for a quick look).
    #[arg(long)]
    pub quick: bool,
    /// Print JSON instead of the readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Case {
    pub name: String,
    pub providers: usize,
    pub recipients: usize,
    pub edges: usize,
    pub rounds: u32,
    pub converged: bool,
    pub round_median_ms: f64,
    pub round_max_ms: f64,
    pub solve_s: f64,
    pub seed_round_median_ms: f64,
    /// Default round median / seed round median.
    pub ratio_to_seed: f64,
    /// Total allocated / maximum flow.
    pub optimality: f64,
    /// The spec's targets for this size, and whether they were met.
    pub round_target_ms: f64,
    pub solve_target_s: Option<f64>,
    pub met: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn measure(
    name: &str,
    (providers, recipients, degree): (usize, usize, usize),
    targets: (f64, Option<f64>),
    seed_rounds: usize,
) -> Case {
    let net = random_network(providers, recipients, degree, 1).expect("valid benchmark sizes");
    let start = Instant::now();
    let mut rule = DefaultRule::new(&net);
    let mut times = Vec::new();
    while !rule.converged() && times.len() < 1000 {
        let t = Instant::now();
        rule.round();
        times.push(ms(t.elapsed()));
    }
    let solve_s = start.elapsed().as_secs_f64();
    let total: f64 = rule.allocation().iter().sum();
    let converged = rule.converged();
    drop(rule);
    let mut seed = SeedRule::new(net.clone());
    let mut seed_times: Vec<f64> = (0..seed_rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            seed.round();
            ms(t.elapsed())
        })
        .collect();
    let round_max_ms = times.iter().cloned().fold(0.0, f64::max);
    let rounds = times.len() as u32;
    let round_median_ms = median(&mut times);
    let seed_round_median_ms = median(&mut seed_times);
    let met = round_median_ms <= targets.0 && targets.1.is_none_or(|t| solve_s <= t);
    Case {
        name: name.into(),
        providers,
        recipients,
        edges: net.edges.len(),
        rounds,
        converged,
        round_median_ms,
        round_max_ms,
        solve_s,
        seed_round_median_ms,
        ratio_to_seed: round_median_ms / seed_round_median_ms,
        optimality: total / max_flow(&net),
        round_target_ms: targets.0,
        solve_target_s: targets.1,
        met,
    }
}

pub fn run(args: &AllocBenchArgs) -> Result<bool> {
    let mut cases = vec![measure("1000 × 1000, full", (1000, 1000, 1000), (50.0, None), args.seed_rounds)];
    if !args.quick {
        cases.push(measure(
            "10^4 × 10^5, 20 per recipient",
            (10_000, 100_000, 20),
            (100.0, Some(10.0)),
            args.seed_rounds,
        ));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cases)?);
    } else {
        for c in &cases {
            let target = match c.solve_target_s {
                Some(s) => format!("round ≤ {} ms, solve ≤ {s} s", c.round_target_ms),
                None => format!("round ≤ {} ms", c.round_target_ms),
            };
            print!(
                "{}",
                table(&[
                    ("case".into(), format!("{} ({} edges)", c.name, c.edges)),
                    (
                        "default rule".into(),
                        format!(
                            "round median {:.1} ms (slowest {:.1} ms); solve {:.2} s, {} rounds, converged {}",
                            c.round_median_ms, c.round_max_ms, c.solve_s, c.rounds, c.converged
                        )
                    ),
                    ("seed rule (baseline)".into(), format!("round median {:.1} ms", c.seed_round_median_ms)),
                    ("default / seed".into(), format!("{:.2}×", c.ratio_to_seed)),
                    ("allocated / max-flow".into(), format!("{:.9}", c.optimality)),
                    ("target".into(), format!("{target}: {}", if c.met { "met" } else { "MISSED" })),
                ])
            );
            println!();
        }
    }
    Ok(cases.iter().all(|c| c.met && c.converged))
}
