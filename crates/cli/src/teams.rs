//! `agora teams …`: team formation (seed 002). So far: `run`, one run in the
//! simulator with its invariants checked after every event.

use crate::report::table;
use agora_teams::run::{run, AdversaryKind, RunSpec};
use anyhow::{bail, Result};

#[derive(clap::Subcommand, Debug)]
pub enum TeamsCmd {
    /// One run: n nodes, tokens injected over time, teams of k.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[arg(long)]
    pub n: u32,
    /// Team size.
    #[arg(long, default_value_t = 2)]
    pub k: u64,
    #[arg(long, default_value_t = 100)]
    pub tokens: u64,
    /// Injection schedule: over:UNITS (uniform random times in [0, UNITS)
    /// time units; a unit is the largest message delay).
    #[arg(long, default_value = "over:10")]
    pub inject: String,
    /// Fraction of fragile nodes; they turn faulty before the first token.
    #[arg(long, default_value_t = 0.0)]
    pub fragile: f64,
    #[arg(long, value_enum, default_value = "uniform")]
    pub adversary: Adversary,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The graph's constant c in p = sqrt(c ln n / (ε n)).
    #[arg(long, default_value_t = 2.0)]
    pub c: f64,
    #[arg(long, default_value_t = 0.5)]
    pub epsilon: f64,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Adversary {
    Uniform,
    Max,
    Load,
}

pub fn teams(cmd: TeamsCmd) -> Result<bool> {
    match cmd {
        TeamsCmd::Run(a) => run_cmd(&a),
    }
}

fn spec(a: &RunArgs) -> Result<RunSpec> {
    if a.n < 2 {
        bail!("--n must be at least 2");
    }
    if a.k < 2 {
        bail!("--k must be at least 2 (a team is k ≥ 2 tokens)");
    }
    if !(0.0..1.0).contains(&a.fragile) {
        bail!("--fragile must be in [0, 1)");
    }
    if !(a.c > 0.0 && a.epsilon > 0.0 && a.epsilon <= 1.0) {
        bail!("--c must be > 0 and --epsilon in (0, 1]");
    }
    let spread = a
        .inject
        .strip_prefix("over:")
        .and_then(|u| u.parse::<f64>().ok())
        .filter(|u| u.is_finite() && *u >= 0.0)
        .ok_or_else(|| anyhow::anyhow!("--inject {:?}: expected over:UNITS, e.g. over:10", a.inject))?;
    let adversary = match a.adversary {
        Adversary::Uniform => AdversaryKind::Uniform,
        Adversary::Max => AdversaryKind::Max,
        Adversary::Load => AdversaryKind::Load,
    };
    Ok(RunSpec {
        n: a.n,
        k: a.k,
        tokens: a.tokens,
        spread,
        fragile: a.fragile,
        adversary,
        seed: a.seed,
        c: a.c,
        epsilon: a.epsilon,
    })
}

fn run_cmd(a: &RunArgs) -> Result<bool> {
    let spec = spec(a)?;
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("valid template"),
    );
    let unit = agora_teams::run::UNIT.as_nanos() as f64;
    let start = std::time::Instant::now();
    let r = run(&spec, &mut |t| bar.set_message(format!("simulated {:.1} time units", t.as_nanos() as f64 / unit)));
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["wall_s"] = wall.into();
        println!("{v}");
    } else {
        print!(
            "{}",
            table(&[
                ("nodes".into(), format!("{} ({} faulty), k = {}", r.n, r.faulty_nodes, r.k)),
                (
                    "tokens".into(),
                    format!("{} injected, {} teams, {} left", r.tokens_injected, r.teams_formed, r.tokens_left)
                ),
                ("messages".into(), format!("{} ({:.1} per token)", r.messages_total, r.messages_per_token)),
                (
                    "reaction time".into(),
                    format!("mean {:.2}, p99 {:.2} units", r.reaction_time_mean, r.reaction_time_p99)
                ),
                ("safe".into(), format!("{} ({} invariant violations)", r.safe, r.invariant_violations)),
                (
                    "run".into(),
                    format!("{} events, {:.1} units simulated, {wall:.2} s wall", r.events, r.sim_time_units)
                ),
                ("trace hash".into(), r.trace_hash.clone()),
            ])
        );
    }
    Ok(r.safe)
}
