//! `agora teams …`: team formation (seed 002). `run`: one run in the
//! simulator with its invariants checked after every event. `sweep`: many
//! runs over n and over the fragile fraction, beside the baselines, written as
//! CSV and SVG plots.

use crate::report::{progress, table};
use agora_lab::teams::run::RunSpec;
use agora_lab::teams::sweep::{self, Shard, SweepSpec};
use agora_lab::teams::vector::{self, Algorithm, VectorSpec};
use agora_sim::scenario::AdversarySpec;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum TeamsCmd {
    /// One run: n nodes, tokens injected over time, teams of k.
    Run(RunArgs),
    /// Leader election over many seeds: success rate and messages. Implicit
    /// by default, with termination detection for non-leaders (TERM token).
    Le {
        /// Nodes in the system.
        #[arg(long)]
        n: u32,
        /// Candidates are c·ln n in expectation.
        #[arg(long, default_value_t = 8.0)]
        c: f64,
        /// Runs, with seeds 0 … seeds − 1.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// Explicit election: the leader then tells all n nodes.
        #[arg(long)]
        explicit: bool,
        /// Fail (exit 1) when fewer runs than this fraction elect exactly one
        /// leader (election succeeds with high probability, not always).
        #[arg(long, default_value_t = 1.0)]
        min_success: f64,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Distributed trigger counting: an alarm exactly when w triggers occurred.
    Dtc {
        /// Nodes in the system.
        #[arg(long)]
        n: u32,
        /// An alarm is due at every w-th trigger.
        #[arg(long)]
        w: u64,
        /// Triggers, at random nodes and times.
        #[arg(long)]
        triggers: u64,
        /// Random seed: the same seed, the same run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Distributed matching: marked nodes paired, each told its partner (JSON).
    Match {
        /// Nodes in the system.
        #[arg(long)]
        n: u32,
        /// Nodes marked to be paired, drawn among the live ones.
        #[arg(long)]
        marked: usize,
        /// Fraction of nodes faulty from the start.
        #[arg(long, default_value_t = 0.0)]
        fragile: f64,
        /// Random seed: the same seed, the same run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How partners learn of each other.
        #[arg(long, value_enum, default_value = "trace")]
        notify: NotifyArg,
    },
    /// Online matchmaking: players arriving at servers paired, servers told (JSON).
    Matchmaking {
        /// Nodes in the system.
        #[arg(long)]
        n: u32,
        /// Nodes that are servers players arrive at.
        #[arg(long)]
        servers: u32,
        /// Players arriving over the run.
        #[arg(long)]
        players: u64,
        /// Random seed: the same seed, the same run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How servers learn of a match.
        #[arg(long, value_enum, default_value = "trace")]
        notify: NotifyArg,
    },
    /// Vector team formation: coloured tokens; a team takes as many tokens
    /// of each colour as --sizes says. The seed's super-token algorithm
    /// beside the direct baseline, over seeds 0 … seeds − 1.
    Vtf {
        /// Nodes in the system.
        #[arg(long)]
        n: u32,
        /// Team size vector, one entry per colour, e.g. 2,3,1.
        #[arg(long, value_delimiter = ',', required = true)]
        sizes: Vec<u64>,
        /// Tokens per run; colours drawn in proportion to the sizes.
        #[arg(long, default_value_t = 120)]
        tokens: u64,
        /// Injection schedule: over:UNITS, as for `teams run`.
        #[arg(long, default_value = "over:10")]
        inject: String,
        /// Who picks the delays: uniform, max or load.
        #[arg(long, default_value = "uniform")]
        adversary: AdversarySpec,
        /// Runs, with seeds 0 … seeds − 1.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Runs over n = 2^a … 2^b and over fragile fractions, beside the
    /// baselines, and implicit elections over n; writes CSV files and SVG
    /// plots to --out (or, with --shard, one shard's records).
    Sweep(SweepArgs),
    /// Checks the shard files in DIR are one complete sweep and writes its
    /// CSV files and plots there.
    Merge {
        /// The folder holding the shard files.
        dir: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// Smallest n of the sweep over n (n doubles up to --n-to).
    #[arg(long, default_value_t = 64)]
    pub n_from: u32,
    /// Largest n of the sweep over n.
    #[arg(long, default_value_t = 16384)]
    pub n_to: u32,
    /// Runs per point.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Tokens per run.
    #[arg(long, default_value_t = 64)]
    pub tokens: u64,
    /// Team size.
    #[arg(long, default_value_t = 2)]
    pub k: u64,
    /// n for the fragile-fraction sweep.
    #[arg(long, default_value_t = 1024)]
    pub fragile_n: u32,
    /// The broadcast baseline sends n messages per token: it is skipped above this n.
    #[arg(long, default_value_t = 16384)]
    pub broadcast_max_n: u32,
    /// Where the shard files and the reports go.
    #[arg(long)]
    pub out: PathBuf,
    /// Run only shard I of N (jobs i with i mod N = I, 0 ≤ I < N) and write
    /// its records; `agora teams merge DIR` then writes the reports. For
    /// batch job arrays: `--shard $SLURM_ARRAY_TASK_ID/N`,
    /// `--shard $JOB_COMPLETION_INDEX/N`.
    #[arg(long)]
    pub shard: Option<Shard>,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Nodes in the system.
    #[arg(long)]
    pub n: u32,
    /// Team size.
    #[arg(long, default_value_t = 2)]
    pub k: u64,
    /// Tokens injected over the run.
    #[arg(long, default_value_t = 100)]
    pub tokens: u64,
    /// Injection schedule: over:UNITS (uniform random times in [0, UNITS)
    /// time units; a unit is the largest message delay).
    #[arg(long, default_value = "over:10")]
    pub inject: String,
    /// Fraction of fragile nodes; they turn faulty before the first token.
    #[arg(long, default_value_t = 0.0)]
    pub fragile: f64,
    /// Who picks the delays: uniform, max or load (a node with 2 or more
    /// messages in flight towards it gets the full unit).
    #[arg(long, default_value = "uniform")]
    pub adversary: AdversarySpec,
    /// Random seed: the same seed, the same run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The graph's constant c in p = sqrt(c ln n / (ε n)).
    #[arg(long, default_value_t = 2.0)]
    pub c: f64,
    /// The fault-tolerance margin ε: at most a 1 − ε fraction of nodes may be faulty.
    #[arg(long, default_value_t = 0.5)]
    pub epsilon: f64,
    /// Print JSON instead of the readable output.
    #[arg(long)]
    pub json: bool,
    /// Write every event as a JSON line to this file (replay it with `agora replay`).
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

/// `trace`: back along the trace tree, hop by hop; `direct`: one message to
/// each origin (nodes have ids).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum NotifyArg {
    Trace,
    Direct,
}

impl From<NotifyArg> for agora_teams::Notify {
    fn from(n: NotifyArg) -> Self {
        match n {
            NotifyArg::Trace => agora_teams::Notify::Trace,
            NotifyArg::Direct => agora_teams::Notify::Direct,
        }
    }
}

pub fn teams(cmd: TeamsCmd) -> Result<bool> {
    match cmd {
        TeamsCmd::Run(a) => run_cmd(&a),
        TeamsCmd::Sweep(a) => sweep(&a),
        TeamsCmd::Merge { dir } => merge_dir(&dir),
        TeamsCmd::Le { n, c, seeds, explicit, min_success, json } => le(n, c, seeds, explicit, min_success, json),
        TeamsCmd::Vtf { n, sizes, tokens, inject, adversary, seeds, json } => {
            let spread = parse_inject(&inject)?;
            let spec = VectorSpec { n, sizes, tokens, spread, adversary, seed: 0 };
            vtf(&spec, seeds, json)
        }
        TeamsCmd::Match { n, marked, fragile, seed, notify } => {
            if n < 2 || !(0.0..1.0).contains(&fragile) {
                bail!("need --n ≥ 2 and --fragile in [0, 1)");
            }
            let m = agora_lab::teams::apps::matching(n, marked, fragile, notify.into(), seed);
            println!("{}", serde_json::to_string(&m)?);
            Ok(m.pairs.len() == m.marked.len() / 2)
        }
        TeamsCmd::Matchmaking { n, servers, players, seed, notify } => {
            if n < 2 || servers == 0 {
                bail!("need --n ≥ 2 and --servers ≥ 1");
            }
            let m = agora_lab::teams::apps::matchmaking(n, servers, players, notify.into(), seed);
            println!("{}", serde_json::to_string(&m)?);
            Ok(m.matches.len() as u64 == players / 2)
        }
        TeamsCmd::Dtc { n, w, triggers, seed, json } => {
            if n < 2 || w < 2 {
                bail!("need --n ≥ 2 and --w ≥ 2");
            }
            let r = agora_lab::teams::apps::trigger_counting(n, w, triggers, seed);
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!(
                    "{}",
                    table(&[
                        ("triggers".into(), format!("{triggers} at random nodes over 50 units; alarm every w = {w}")),
                        ("alarms".into(), format!("{} (expected {})", r.alarms.len(), triggers / w)),
                        ("alarm times".into(), format!("{:.2?}", r.alarms)),
                        ("due (w-th triggers)".into(), format!("{:.2?}", r.due)),
                        ("messages".into(), r.messages.to_string()),
                    ])
                );
            }
            Ok(r.alarms.len() as u64 == triggers / w)
        }
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
    let spread = parse_inject(&a.inject)?;
    Ok(RunSpec {
        spread,
        fragile: a.fragile,
        adversary: a.adversary,
        c: a.c,
        epsilon: a.epsilon,
        ..RunSpec::new(a.n, a.k, a.tokens, a.seed)
    })
}

fn run_cmd(a: &RunArgs) -> Result<bool> {
    let spec = spec(a)?;
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("valid template"),
    );
    let unit = agora_lab::teams::run::UNIT.as_nanos() as f64;
    let start = std::time::Instant::now();
    let (sc, injections) = agora_lab::teams::run::scenario(&spec);
    let mut sim = agora_lab::teams::run::build_scenario(&sc);
    if let Some(path) = &a.trace {
        sim.set_trace_sink(crate::simulate::trace_file(path, &sc.path, spec.seed, &sc.to_toml())?);
    }
    let r = agora_lab::teams::run::finish(&spec, sim, injections, &mut |t| {
        bar.set_message(format!("simulated {:.1} time units", t.as_nanos() as f64 / unit))
    });
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
                (
                    "safe".into(),
                    match &r.problem {
                        None => "true (invariants held after every event; end checks passed)".into(),
                        Some(p) => format!("false: {p}"),
                    }
                ),
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

fn sweep(a: &SweepArgs) -> Result<bool> {
    let spec = SweepSpec {
        n_from: a.n_from,
        n_to: a.n_to,
        seeds: a.seeds,
        tokens: a.tokens,
        k: a.k,
        fragile_n: a.fragile_n,
        broadcast_max_n: a.broadcast_max_n,
    };
    spec.validate().map_err(anyhow::Error::msg)?;
    let shard = a.shard.unwrap_or(Shard::WHOLE);
    let bar = progress(sweep::shard_len(&spec, shard), "runs");
    let file = sweep::run_shard(&spec, shard, &a.out, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    if a.shard.is_some() {
        eprintln!("wrote {}; when every shard is done: agora teams merge {}", file.display(), a.out.display());
        return Ok(true);
    }
    merge_dir(&a.out)
}

fn merge_dir(dir: &std::path::Path) -> Result<bool> {
    let summary = sweep::merge(dir)?;
    print!("{summary}");
    eprintln!("wrote {} to {}", sweep::REPORTS, dir.display());
    Ok(true)
}

/// `over:UNITS`: injections at uniform random times in [0, UNITS).
fn parse_inject(inject: &str) -> Result<f64> {
    inject
        .strip_prefix("over:")
        .and_then(|u| u.parse::<f64>().ok())
        .filter(|u| u.is_finite() && *u >= 0.0)
        .ok_or_else(|| anyhow::anyhow!("--inject {inject:?}: expected over:UNITS, e.g. over:10"))
}

fn vtf(spec: &VectorSpec, seeds: u64, json: bool) -> Result<bool> {
    spec.validate().map_err(|e| anyhow::anyhow!("--{e}"))?;
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let bar = progress(2 * seeds, "runs");
    let reports = vector::compare(spec, seeds, &mut || bar.inc(1)).map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    let all_safe = reports.iter().all(|r| r.safe);
    if json {
        println!("{}", serde_json::to_string(&reports)?);
        return Ok(all_safe);
    }
    let mut rows = vec![(
        "vector TF".to_string(),
        format!("n = {}, sizes {:?}, {} tokens per run, {seeds} seeds", spec.n, spec.sizes, spec.tokens),
    )];
    for (name, algorithm) in [("super-tokens (seed)", Algorithm::SuperTokens), ("direct", Algorithm::Direct)] {
        let v = vector::summarize(algorithm, &reports);
        rows.push((
            name.into(),
            format!(
                "{} of {seeds} safe; {} of {} possible teams; {} super-tokens; {:.1} messages/token; reaction {:.2} units mean",
                v.safe, v.teams_formed, v.teams_possible, v.super_tokens, v.messages_per_token_mean, v.reaction_time_mean,
            ),
        ));
    }
    print!("{}", table(&rows));
    for r in reports.iter().filter(|r| !r.safe) {
        eprintln!("{:?}: {}", r.algorithm, r.problem.as_deref().unwrap_or("unsafe"));
    }
    Ok(all_safe)
}

fn le(n: u32, c: f64, seeds: u64, explicit: bool, min_success: f64, json: bool) -> Result<bool> {
    if n < 4 || seeds == 0 || c.is_nan() || c <= 0.0 {
        bail!("need --n ≥ 4, --seeds ≥ 1 and --c > 0");
    }
    if !(0.0..=1.0).contains(&min_success) {
        bail!("--min-success: {min_success} is not a fraction in [0, 1]");
    }
    let bar = progress(seeds, "elections");
    let e = agora_lab::teams::apps::elections(n, c, seeds, explicit, &mut || bar.inc(1));
    bar.finish_and_clear();
    let ok = e.elections.iter().filter(|x| x.success).count();
    if json {
        println!("{}", serde_json::to_string(&e)?);
    } else {
        let mut rows = vec![
            (
                if explicit { "explicit election" } else { "implicit election" }.into(),
                format!("n = {n}, c = {c}, k = {}", e.elections[0].k),
            ),
            ("exactly one leader".into(), format!("{ok} of {seeds}")),
            ("messages".into(), format!("{:.0} mean ({:.2} per node)", e.messages_mean, e.messages_per_node)),
            ("time".into(), format!("{:.1} units mean", e.time_units_mean)),
        ];
        if !explicit {
            // Termination detection for non-leaders (the TERM token).
            rows.push(("candidates undecided".into(), format!("{} over all runs", e.undecided)));
            let detection = e.detection_messages_mean;
            rows.push(("termination detection".into(), format!("{detection:.0} messages mean (included above)")));
            rows.push(("all decided by".into(), format!("{:.1} units mean", e.decided_by_mean)));
        }
        print!("{}", table(&rows));
    }
    if (ok as f64) < min_success * seeds as f64 {
        let failed: Vec<String> =
            e.elections.iter().enumerate().filter(|(_, x)| !x.success).map(|(s, _)| s.to_string()).collect();
        eprintln!(
            "{ok} of {seeds} runs elected exactly one leader, below --min-success {min_success}; failed seeds: {}",
            failed.join(", ")
        );
        return Ok(false);
    }
    Ok(true)
}
