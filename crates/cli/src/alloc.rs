//! `agora alloc …`: need-fulfillment allocation. `solve` runs the round
//! protocol in one process, `sim` as message-passing nodes in the simulator,
//! `rounds` measures convergence over the spec's random suite, `gen` writes
//! random instances.

use crate::report::{count, progress, table};
use agora_alloc::node::{self, allocation, Config, Output, Setup};
use agora_alloc::{max_flow, solve, suite_instance, Instance, Network, RuleName};
use agora_core::Time;
use agora_lab::stats::quantile;
use agora_sim::{Fault, Model, Sim, SimConfig};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum AllocCmd {
    /// Run the round protocol to convergence on an instance.
    Solve {
        /// Instance file (JSON, or TOML with the same fields).
        #[arg(long)]
        instance: PathBuf,
        #[arg(long, value_enum, default_value = "default")]
        rule: Rule,
        /// The seed rule's convergence threshold, relative to the largest need.
        #[arg(long, default_value_t = 1e-3)]
        epsilon: f64,
        #[arg(long, default_value_t = 1000)]
        max_rounds: u32,
        /// One JSON object instead of the summary and table.
        #[arg(long)]
        json: bool,
    },
    /// Print a random instance (JSON), deterministic in the seed.
    Gen {
        #[arg(long)]
        providers: usize,
        #[arg(long)]
        recipients: usize,
        /// Providers per recipient.
        #[arg(long)]
        degree: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Run the protocol as ledger, provider and recipient nodes in the simulator.
    Sim {
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
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Rounds of silence after which a recipient counts as gone.
        #[arg(long, default_value_t = 3)]
        silent_rounds: u32,
        #[arg(long)]
        json: bool,
    },
    /// Convergence rounds and optimality over the spec's random suite.
    Rounds {
        /// How many instances (seeds 0..N).
        #[arg(long, default_value_t = 1000)]
        instances: u64,
        #[arg(long, value_enum, default_value = "default")]
        rule: Rule,
        #[arg(long, default_value_t = 1000)]
        max_rounds: u32,
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
        AllocCmd::Sim { instance, faults, asynchronous, seed, silent_rounds, json } => {
            sim_cmd(&instance, &faults, asynchronous, seed, silent_rounds, json)
        }
        AllocCmd::Rounds { instances, rule, max_rounds, json } => rounds_cmd(instances, rule.into(), max_rounds, json),
    }
}

fn load(path: &Path) -> Result<(Instance, Network)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
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

/// `--faults`: comma-separated `crash:ID@TIME`, `recover:ID@TIME`,
/// `restart:ID@TIME`, `loss:RATE`.
fn parse_faults(spec: &str, instance: &Instance, setup: &Setup) -> Result<(Vec<(Time, Fault)>, f64)> {
    let mut faults = Vec::new();
    let mut loss = 0.0;
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: String| anyhow::anyhow!("--faults entry {entry:?}: {why}");
        let (kind, rest) = entry.split_once(':').ok_or_else(|| bad("expected KIND:…".into()))?;
        if kind == "loss" {
            loss = rest
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..1.0).contains(r))
                .ok_or_else(|| bad("rate in [0, 1)".into()))?;
            continue;
        }
        let (id, at) = rest.split_once('@').ok_or_else(|| bad("expected KIND:ID@TIME".into()))?;
        let node = if let Some(p) = instance.providers.iter().position(|p| p.id == id) {
            setup.provider_id(p)
        } else if let Some(r) = instance.recipients.iter().position(|r| r.id == id) {
            setup.recipient_id(r)
        } else {
            return Err(bad(format!("no provider or recipient {id:?}")));
        };
        let at = agora_core::duration_str::parse(at).map_err(bad)?;
        let at = Time::from_nanos(at.as_nanos() as u64);
        faults.push(match kind {
            "crash" => (at, Fault::Crash(node)),
            "recover" => (at, Fault::Recover { node, memory: true }),
            "restart" => (at, Fault::Recover { node, memory: false }),
            other => return Err(bad(format!("unknown kind {other:?} (crash, recover, restart, loss)"))),
        });
    }
    Ok((faults, loss))
}

fn sim_cmd(path: &Path, faults: &str, asynchronous: bool, seed: u64, silent_rounds: u32, json: bool) -> Result<bool> {
    let (instance, net) = load(path)?;
    let config = Config {
        instance: path.display().to_string(),
        phase_timeout: Duration::from_millis(200),
        silent_rounds,
        asynchronous,
        tick: Duration::from_millis(20),
        max_rounds: 1000,
    };
    let setup = Arc::new(Setup { config, net: net.clone() });
    let (faults, loss) = parse_faults(faults, &instance, &setup)?;
    let mut sim_cfg = SimConfig::new(seed);
    sim_cfg.loss = loss;
    let s = setup.clone();
    let delay = Model::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(10) };
    let mut sim = Sim::new(setup.nodes(), move |id| node::Node::new(s.clone(), id), delay, sim_cfg);
    <node::Node as crate::registry::Runnable>::install_invariants(&setup.config, setup.nodes(), &mut sim);
    for (at, f) in faults {
        sim.schedule_fault(at, f);
    }
    let report = sim.run_until(Time::from_nanos(3_600 * 1_000_000_000))?;
    let (rounds, converged) = sim
        .outputs()
        .iter()
        .find_map(|o| match &o.output {
            Output::Finished { round, converged } => Some(Ok((*round, *converged))),
            Output::LedgerFailed { error } => Some(Err(anyhow::anyhow!("ledger: {error}"))),
            _ => None,
        })
        .transpose()?
        .unwrap_or((0, false));
    let x = allocation(&setup, |id| sim.node(id));
    let total: f64 = x.iter().sum();
    let mf = max_flow(&net);
    let live = max_flow(&node::live_network(&setup, |id| sim.nodes().is_up(id)));
    let stats = sim.stats();
    let by_kind = stats.messages_by_kind.to_map();
    if json {
        let out = serde_json::json!({
            "converged": converged, "rounds": rounds, "sim_time_s": report.sim_time.as_secs_f64(),
            "total_allocated": total, "max_flow": mf, "max_flow_of_live_agents": live, "messages_by_kind": by_kind,
            "crashes": stats.crashes, "recoveries": stats.recoveries, "lost": stats.dropped.total(),
            "trace_hash": format!("{:016x}", report.trace_hash),
            "allocations": rows(&instance, &net, &x),
        });
        println!("{out}");
    } else {
        let mut rows = vec![
            (
                "converged".into(),
                format!("{converged} after {rounds} rounds ({:.3} s simulated)", report.sim_time.as_secs_f64()),
            ),
            (
                "total allocated".into(),
                format!("{total:.4} (maximum flow {mf:.4}; of the agents up at the end {live:.4})"),
            ),
            (
                "faults".into(),
                format!(
                    "{} crashes, {} recoveries, {} messages lost",
                    stats.crashes,
                    stats.recoveries,
                    count(stats.dropped.total())
                ),
            ),
            ("trace hash".into(), format!("{:016x}", report.trace_hash)),
        ];
        for (k, v) in &by_kind {
            rows.push((format!("messages: {k}"), count(*v)));
        }
        print!("{}", table(&rows));
        println!();
        print_allocation(&instance, &net, &x);
    }
    Ok(converged)
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
