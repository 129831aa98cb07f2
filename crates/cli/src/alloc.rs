//! `agora alloc …`: need-fulfillment allocation. `solve` runs the round
//! protocol in one process, `sim` as message-passing nodes in the simulator,
//! `rounds` measures convergence over the spec's random suite, `gen` writes
//! random instances.

use crate::report::{count, progress, table};
use agora_alloc::{max_flow, solve, suite_instance, Instance, Network, RuleName};
use agora_lab::alloc::SimSpec;
use agora_lab::stats::quantile;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum AllocCmd {
    /// Run the round protocol to convergence on an instance.
    Solve {
        /// Instance file (JSON, or TOML with the same fields).
        #[arg(long)]
        instance: PathBuf,
        /// The update rule: default (ours, which converges) or seed (the seed's, as written).
        #[arg(long, value_enum, default_value = "default")]
        rule: Rule,
        /// The seed rule's convergence threshold, relative to the largest need.
        #[arg(long, default_value_t = 1e-3)]
        epsilon: f64,
        /// Stop after this many rounds, converged or not.
        #[arg(long, default_value_t = 1000)]
        max_rounds: u32,
        /// One JSON object instead of the summary and table.
        #[arg(long)]
        json: bool,
    },
    /// Print a random instance (JSON), deterministic in the seed.
    Gen {
        /// How many providers.
        #[arg(long)]
        providers: usize,
        /// How many recipients.
        #[arg(long)]
        recipients: usize,
        /// Providers per recipient.
        #[arg(long)]
        degree: usize,
        /// Random seed: the same seed, the same instance.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run the protocol as ledger, provider and recipient nodes in the simulator.
    Sim {
        /// Instance file (JSON, or TOML with the same fields).
        #[arg(long)]
        instance: PathBuf,
        /// Faults, comma-separated: crash:ID@TIME, recover:ID@TIME (with its
        /// memory), restart:ID@TIME (without), loss:RATE. IDs are the
        /// instance's provider and recipient ids; TIME like 40ms.
        #[arg(long, default_value = "")]
        faults: String,
        /// Barrier-free mode.
        #[arg(long = "async")]
        asynchronous: bool,
        /// Random seed of the simulation (delays, loss): the same seed, the same run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Rounds of silence after which a recipient counts as gone.
        #[arg(long, default_value_t = 3)]
        silent_rounds: u32,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
        /// Write every event as a JSON line to this file (replay it with `agora replay`).
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Convergence rounds and optimality over the spec's random suite.
    Rounds {
        /// How many instances (seeds 0..N).
        #[arg(long, default_value_t = 1000)]
        instances: u64,
        /// The update rule: default (ours, which converges) or seed (the seed's, as written).
        #[arg(long, value_enum, default_value = "default")]
        rule: Rule,
        /// Stop after this many rounds, converged or not.
        #[arg(long, default_value_t = 1000)]
        max_rounds: u32,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Rule {
    Default,
    Seed,
}

impl From<Rule> for RuleName {
    fn from(r: Rule) -> RuleName {
        match r {
            Rule::Default => RuleName::Default,
            Rule::Seed => RuleName::Seed,
        }
    }
}

pub fn alloc(cmd: AllocCmd) -> Result<bool> {
    match cmd {
        AllocCmd::Gen { providers, recipients, degree, seed } => {
            let instance = match agora_alloc::generate(providers, recipients, degree, seed) {
                Ok(i) => i,
                Err(e) => bail!(e),
            };
            println!("{}", serde_json::to_string_pretty(&instance)?);
            Ok(true)
        }
        AllocCmd::Solve { instance, rule, epsilon, max_rounds, json } => {
            solve_cmd(&instance, rule.into(), epsilon, max_rounds, json)
        }
        AllocCmd::Sim { instance, faults, asynchronous, seed, silent_rounds, json, trace } => {
            let spec = SimSpec { instance: instance.display().to_string(), faults, asynchronous, seed, silent_rounds };
            sim_cmd(&spec, trace.as_deref(), json)
        }
        AllocCmd::Rounds { instances, rule, max_rounds, json } => rounds_cmd(instances, rule.into(), max_rounds, json),
    }
}

fn load(path: &Path) -> Result<(Instance, Network)> {
    let text = agora_core::config_file::read_text(path).map_err(anyhow::Error::msg)?;
    let instance = Instance::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let net = instance.network().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((instance, net))
}

/// The allocation as `{provider, recipient, amount}` rows, in edge order.
fn rows(instance: &Instance, net: &Network, x: &[f64]) -> Vec<serde_json::Value> {
    net.edges
        .iter()
        .zip(x)
        .map(|(&(p, r, ..), &amount)| {
            serde_json::json!({"provider": instance.providers[p].id, "recipient": instance.recipients[r].id,
                "amount": amount})
        })
        .collect()
}

fn print_allocation(instance: &Instance, net: &Network, x: &[f64]) {
    let mut rows: Vec<(String, String)> = vec![("provider → recipient".into(), "amount".into())];
    for (&(p, r, ..), &amount) in net.edges.iter().zip(x) {
        if amount > 0.0 {
            rows.push((
                format!("{} → {}", instance.providers[p].id, instance.recipients[r].id),
                format!("{amount:.4}"),
            ));
        }
    }
    print!("{}", table(&rows));
}

fn solve_cmd(path: &Path, rule: RuleName, epsilon: f64, max_rounds: u32, json: bool) -> Result<bool> {
    let (instance, net) = load(path)?;
    let s = solve(&net, rule, epsilon, max_rounds);
    if json {
        let out = serde_json::json!({
            "converged": s.converged,
            "rounds": s.rounds,
            "total_allocated": s.total_allocated,
            "allocations": rows(&instance, &net, &s.allocation),
            "per_round": s.per_round,
        });
        println!("{out}");
    } else {
        let mf = max_flow(&net);
        let last = s.per_round.last();
        print!(
            "{}",
            table(&[
                ("rule".into(), format!("{rule:?}").to_lowercase()),
                ("converged".into(), format!("{} after {} rounds", s.converged, s.rounds)),
                ("total allocated".into(), format!("{:.4}", s.total_allocated)),
                ("maximum flow".into(), format!("{mf:.4} (allocated/max = {:.6})", ratio(s.total_allocated, mf))),
                ("over-allocation".into(), format!("{:.4}", last.map_or(0.0, |r| r.over_allocation))),
                ("under-allocation".into(), format!("{:.4}", last.map_or(0.0, |r| r.under_allocation))),
            ])
        );
        println!();
        print_allocation(&instance, &net, &s.allocation);
    }
    Ok(s.converged)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        1.0
    }
}

fn sim_cmd(spec: &SimSpec, trace: Option<&Path>, json: bool) -> Result<bool> {
    let (instance, net) = load(Path::new(&spec.instance))?;
    let sc = agora_lab::alloc::scenario(spec).map_err(anyhow::Error::msg)?;
    let mut sim = agora_lab::alloc::build(&sc);
    if let Some(path) = trace {
        sim.set_trace_sink(crate::simulate::trace_file(path, &sc.path, sc.seed, &sc.to_toml())?);
    }
    let r = agora_lab::alloc::run(&sc, sim).map_err(anyhow::Error::msg)?;
    if json {
        let mut out = serde_json::to_value(&r)?;
        out["allocations"] = rows(&instance, &net, &r.allocation).into();
        println!("{out}");
    } else {
        let mut rows = vec![
            (
                "converged".into(),
                format!("{} after {} rounds ({:.3} s simulated)", r.converged, r.rounds, r.sim_time_s),
            ),
            (
                "total allocated".into(),
                format!(
                    "{:.4} (maximum flow {:.4}; of the agents up at the end {:.4})",
                    r.total_allocated, r.max_flow, r.max_flow_of_live_agents
                ),
            ),
            (
                "faults".into(),
                format!("{} crashes, {} recoveries, {} messages lost", r.crashes, r.recoveries, count(r.lost)),
            ),
            ("trace hash".into(), r.trace_hash.clone()),
        ];
        for (k, v) in &r.messages_by_kind {
            rows.push((format!("messages: {k}"), count(*v)));
        }
        print!("{}", table(&rows));
        println!();
        print_allocation(&instance, &net, &r.allocation);
    }
    Ok(r.converged)
}

fn rounds_cmd(instances: u64, rule: RuleName, max_rounds: u32, json: bool) -> Result<bool> {
    if instances == 0 {
        bail!("--instances must be at least 1");
    }
    let bar = progress(instances, "instances");
    let mut rounds = Vec::new();
    let mut ratios = Vec::new();
    let mut unconverged = 0u64;
    for seed in 0..instances {
        let net = suite_instance(seed).network().expect("generated instances are valid");
        let s = solve(&net, rule, 1e-3, max_rounds);
        unconverged += u64::from(!s.converged);
        rounds.push(s.rounds as f64);
        ratios.push(ratio(s.total_allocated, max_flow(&net)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let out = serde_json::json!({
        "instances": instances,
        "rule": format!("{rule:?}").to_lowercase(),
        "unconverged": unconverged,
        "rounds": {"median": quantile(&mut rounds, 0.5), "p99": quantile(&mut rounds, 0.99), "max": quantile(&mut rounds, 1.0)},
        "optimality": {"min": quantile(&mut ratios, 0.0), "p01": quantile(&mut ratios, 0.01),
            "median": quantile(&mut ratios, 0.5), "max": quantile(&mut ratios, 1.0)},
    });
    if json {
        println!("{out}");
    } else {
        print!(
            "{}",
            table(&[
                (
                    "instances".into(),
                    format!("{instances} (seeds 0..{instances}), rule {}", out["rule"].as_str().unwrap_or(""))
                ),
                ("not converged".into(), format!("{unconverged} (within {max_rounds} rounds)")),
                (
                    "rounds".into(),
                    format!(
                        "median {}, p99 {}, max {}",
                        out["rounds"]["median"], out["rounds"]["p99"], out["rounds"]["max"]
                    )
                ),
                (
                    "allocated / max-flow".into(),
                    format!(
                        "min {:.9}, p1 {:.9}, median {:.9}; worst shortfall {:.1e}",
                        quantile(&mut ratios, 0.0),
                        quantile(&mut ratios, 0.01),
                        quantile(&mut ratios, 0.5),
                        (1.0 - quantile(&mut ratios, 0.0)).max(0.0)
                    )
                ),
            ])
        );
    }
    Ok(unconverged == 0)
}
