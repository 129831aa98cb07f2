//! `agora teams sweep`: team formation over n = 2^a … 2^b and over fragile
//! fractions, beside the baselines, and implicit elections against
//! Afek–Gafni; written as CSV files and SVG plots.
//!
//! A sweep is a list of independent jobs ([`jobs`]), each deterministic in
//! its seed. [`run_shard`] runs the jobs of one shard (job i belongs to shard
//! i mod N), so a sweep too large for one machine runs as a batch job array
//! (a Slurm array, a Kubernetes indexed Job: `--shard $INDEX/N`), each task
//! writing its records; [`merge`] checks that every job is there exactly
//! once, from shards of the same sweep, and writes the reports. A sweep on
//! one machine is one shard of one, merged the same way: the same records
//! give the same files.

use super::afek_gafni::afek_gafni;
use super::apps::implicit_election;
use super::baselines::{run_baseline, Baseline};
use super::run::{run, RunReport, RunSpec};
use crate::plot::{line_chart, Series};
use crate::stats::quantile;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What a sweep covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub n_from: u32,
    pub n_to: u32,
    /// Runs per point.
    pub seeds: u64,
    pub tokens: u64,
    pub k: u64,
    /// n for the fragile-fraction sweep.
    pub fragile_n: u32,
    /// The broadcast baseline sends n messages per token: skipped above this n.
    pub broadcast_max_n: u32,
}

/// The fragile fractions of the second sweep.
pub const FRACTIONS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 0.9];
/// The fragile sweep's seeds start here, so that its fault-free point is not
/// a copy of the size sweep's runs at the same n.
const FRAGILE_SEEDS: u64 = 1_000_000;

impl SweepSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.n_from < 4 || self.n_to < self.n_from || self.seeds == 0 || self.k < 2 || self.fragile_n < 4 {
            return Err("need 4 ≤ --n-from ≤ --n-to, --fragile-n ≥ 4, --seeds ≥ 1 and --k ≥ 2".into());
        }
        Ok(())
    }

    /// n_from, 2 n_from, … up to n_to.
    pub fn sizes(&self) -> Vec<u32> {
        std::iter::successors(Some(self.n_from), |&n| n.checked_mul(2)).take_while(|&n| n <= self.n_to).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    TeamFormation,
    /// Team formation in the fragile sweep with the graph's ε set to the
    /// live fraction (the other runs use the default ε of `RunSpec::new`).
    Matched,
    LeaderGathering,
    Broadcast,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::TeamFormation => "team formation",
            Algorithm::Matched => "team formation (ε = 1 − fragile)",
            Algorithm::LeaderGathering => "leader gathering",
            Algorithm::Broadcast => "broadcast per token",
        }
    }
}

/// One unit of work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Job {
    Run {
        algorithm: Algorithm,
        n: u32,
        fragile: f64,
        seed: u64,
    },
    /// An implicit election (c = 8) and an Afek–Gafni election at n.
    Election {
        n: u32,
        seed: u64,
    },
}

/// What a job produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Outcome {
    Run(RunReport),
    Election { success: bool, messages: u64, afek_gafni_messages: u64 },
}

/// A job's result, with the job's index in [`jobs`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub index: usize,
    pub job: Job,
    pub outcome: Outcome,
}

/// Every job of the sweep, in a fixed order.
pub fn jobs(spec: &SweepSpec) -> Vec<Job> {
    let mut out = Vec::new();
    let mut runs = |n: u32, fragile: f64, broadcast: bool, first_seed: u64| {
        for seed in first_seed..first_seed + spec.seeds {
            let mut algs = vec![Algorithm::TeamFormation];
            if fragile > 0.0 {
                algs.push(Algorithm::Matched);
            }
            algs.push(Algorithm::LeaderGathering);
            if broadcast {
                algs.push(Algorithm::Broadcast);
            }
            out.extend(algs.into_iter().map(|algorithm| Job::Run { algorithm, n, fragile, seed }));
        }
    };
    for n in spec.sizes() {
        runs(n, 0.0, n <= spec.broadcast_max_n, 0);
    }
    for f in FRACTIONS {
        runs(spec.fragile_n, f, true, FRAGILE_SEEDS);
    }
    for n in spec.sizes() {
        out.extend((0..spec.seeds).map(|seed| Job::Election { n, seed }));
    }
    out
}

/// Runs one job.
pub fn run_job(spec: &SweepSpec, job: &Job) -> Outcome {
    match *job {
        Job::Run { algorithm, n, fragile, seed } => {
            let base = RunSpec { spread: 10.0, fragile, ..RunSpec::new(n, spec.k, spec.tokens, seed) };
            Outcome::Run(match algorithm {
                Algorithm::TeamFormation => run(&base, &mut |_| {}),
                // The graph is built for a live fraction ε: with more nodes
                // faulty than 1 − ε, two primaries may share no live utility.
                Algorithm::Matched => run(&RunSpec { epsilon: (1.0 - fragile).clamp(0.05, 1.0), ..base }, &mut |_| {}),
                Algorithm::LeaderGathering => run_baseline(Baseline::LeaderGather, &base),
                Algorithm::Broadcast => run_baseline(Baseline::Broadcast, &base),
            })
        }
        Job::Election { n, seed } => {
            let e = implicit_election(n, 8.0, seed);
            Outcome::Election {
                success: e.success,
                messages: e.messages,
                afek_gafni_messages: afek_gafni(n, seed).messages,
            }
        }
    }
}

/// `I/N`: this task runs the jobs whose index is I mod N (0 ≤ I < N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard {s:?}: expected I/N with 0 ≤ I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn file_name(self) -> String {
        format!("shard-{}-of-{}.jsonl", self.index, self.count)
    }
}

/// The first line of a shard file.
#[derive(Serialize, Deserialize)]
struct Header {
    agora_sweep: u32,
    spec: SweepSpec,
    shard: Shard,
    jobs: usize,
}

/// Runs the jobs of `shard` and writes their records to
/// `out/shard-I-of-N.jsonl`; `progress` is told after each job.
pub fn run_shard(spec: &SweepSpec, shard: Shard, out: &Path, progress: &mut dyn FnMut()) -> Result<PathBuf> {
    spec.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let all = jobs(spec);
    let path = out.join(shard.file_name());
    let mut w =
        std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?);
    serde_json::to_writer(&mut w, &Header { agora_sweep: 1, spec: spec.clone(), shard, jobs: all.len() })?;
    w.write_all(b"\n")?;
    for (index, job) in all.iter().enumerate().filter(|(i, _)| *i as u32 % shard.count == shard.index) {
        let outcome = run_job(spec, job);
        serde_json::to_writer(&mut w, &Record { index, job: job.clone(), outcome })?;
        w.write_all(b"\n")?;
        progress();
    }
    w.flush()?;
    Ok(path)
}

/// How many jobs `shard` runs.
pub fn shard_len(spec: &SweepSpec, shard: Shard) -> u64 {
    (0..jobs(spec).len()).filter(|i| *i as u32 % shard.count == shard.index).count() as u64
}

/// Reads the shard files in `dir`, checks they are one sweep and complete,
/// and writes the reports there. Returns the summary (also summary.csv).
pub fn merge(dir: &Path) -> Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("shard-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no shard files (shard-I-of-N.jsonl) to merge", dir.display());
    }
    let mut spec: Option<(SweepSpec, u32, usize)> = None;
    let mut records: Vec<Option<Record>> = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        let mut lines = std::io::BufReader::new(std::fs::File::open(f)?).lines();
        let first = lines.next().transpose()?.with_context(|| format!("{name}:1: empty, not a sweep shard"))?;
        let h: Header = serde_json::from_str(&first).with_context(|| format!("{name}:1: not a sweep shard header"))?;
        match &spec {
            None => {
                records = vec![None; h.jobs];
                spec = Some((h.spec.clone(), h.shard.count, h.jobs));
            }
            Some((s, count, _)) if *s != h.spec || *count != h.shard.count => {
                bail!(
                    "{name}: a shard of another sweep ({:?}, {} shards) than {} ({s:?}, {count} shards)",
                    h.spec,
                    h.shard.count,
                    files[0].display()
                )
            }
            _ => {}
        }
        for (i, line) in lines.enumerate() {
            let r: Record =
                serde_json::from_str(&line?).with_context(|| format!("{name}:{}: not a sweep record", i + 2))?;
            let slot = records
                .get_mut(r.index)
                .with_context(|| format!("{name}:{}: job {} does not exist", i + 2, r.index))?;
            if slot.is_some() {
                bail!("{name}:{}: job {} appears twice", i + 2, r.index);
            }
            *slot = Some(r);
        }
    }
    let (spec, _, _) = spec.expect("at least one file was read");
    let expected = jobs(&spec);
    let missing: Vec<usize> = records.iter().enumerate().filter(|(_, r)| r.is_none()).map(|(i, _)| i).collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} of {} jobs missing (first: job {}); a shard did not finish or is not here",
            dir.display(),
            missing.len(),
            expected.len(),
            missing[0]
        );
    }
    let records: Vec<Record> = records.into_iter().map(|r| r.expect("checked above")).collect();
    if let Some(r) = records.iter().find(|r| r.job != expected[r.index]) {
        bail!(
            "{}: job {} is {:?} in the files but {:?} in this sweep",
            dir.display(),
            r.index,
            r.job,
            expected[r.index]
        );
    }
    report(&spec, &records, dir)
}

/// Did every token end in a team (or the < k left over), with every check passing?
fn success(r: &RunReport) -> bool {
    r.safe && r.tokens_left < r.k
}

/// One point of the size sweep: messages per token and reaction times at n.
struct Point {
    n: f64,
    mean: f64,
    p999: f64,
    reaction_mean: f64,
    reaction_p99: f64,
}

/// Writes runs.csv, summary.csv, election.csv and the plots.
fn report(spec: &SweepSpec, records: &[Record], out: &Path) -> Result<String> {
    let sizes = spec.sizes();
    struct Row<'a> {
        algorithm: Algorithm,
        fragile: f64,
        seed: u64,
        r: &'a RunReport,
    }
    let rows: Vec<Row> = records
        .iter()
        .filter_map(|x| match (&x.job, &x.outcome) {
            (Job::Run { algorithm, fragile, seed, .. }, Outcome::Run(r)) => {
                Some(Row { algorithm: *algorithm, fragile: *fragile, seed: *seed, r })
            }
            _ => None,
        })
        .collect();
    let mut csv = String::from(
        "algorithm,n,k,fragile,seed,tokens,teams,messages_per_token,reaction_mean,reaction_p99,safe,success\n",
    );
    for x in &rows {
        let r = x.r;
        writeln!(
            csv,
            "{},{},{},{},{},{},{},{:.3},{:.4},{:.4},{},{}",
            x.algorithm.name(),
            r.n,
            r.k,
            x.fragile,
            x.seed,
            r.tokens_injected,
            r.teams_formed,
            r.messages_per_token,
            r.reaction_time_mean,
            r.reaction_time_p99,
            r.safe,
            success(r)
        )?;
    }
    std::fs::write(out.join("runs.csv"), csv)?;

    // Per (algorithm, n) without faults: messages per token and reaction times.
    let size_algs = [Algorithm::TeamFormation, Algorithm::LeaderGathering, Algorithm::Broadcast];
    let mut summary = String::from("algorithm,n,fragile,runs,messages_per_token_mean,messages_per_token_p999,reaction_mean,reaction_p99,success_rate\n");
    let mut by_n: Vec<(Algorithm, Vec<Point>)> = Vec::new();
    for alg in size_algs {
        let mut pts = Vec::new();
        for &n in &sizes {
            let sel: Vec<&RunReport> = rows
                .iter()
                .filter(|x| x.algorithm == alg && x.fragile == 0.0 && x.r.n == n && x.seed < FRAGILE_SEEDS)
                .map(|x| x.r)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let mut mpt: Vec<f64> = sel.iter().map(|r| r.messages_per_token).collect();
            let mean = mpt.iter().sum::<f64>() / mpt.len() as f64;
            let p999 = quantile(&mut mpt, 0.999);
            let rmean = sel.iter().map(|r| r.reaction_time_mean).sum::<f64>() / sel.len() as f64;
            let mut rp: Vec<f64> = sel.iter().map(|r| r.reaction_time_p99).collect();
            let rp99 = quantile(&mut rp, 0.99);
            let ok = sel.iter().filter(|r| success(r)).count() as f64 / sel.len() as f64;
            writeln!(summary, "{},{n},0,{},{mean:.3},{p999:.3},{rmean:.4},{rp99:.4},{ok:.3}", alg.name(), sel.len())?;
            pts.push(Point { n: n as f64, mean, p999, reaction_mean: rmean, reaction_p99: rp99 });
        }
        by_n.push((alg, pts));
    }
    let mut fragile_pts: Vec<(Algorithm, Vec<(f64, f64)>)> = Vec::new();
    for alg in [Algorithm::TeamFormation, Algorithm::Matched, Algorithm::LeaderGathering, Algorithm::Broadcast] {
        let mut pts = Vec::new();
        for f in FRACTIONS {
            let sel: Vec<&RunReport> = rows
                .iter()
                .filter(|x| x.algorithm == alg && x.fragile == f && x.r.n == spec.fragile_n && x.seed >= FRAGILE_SEEDS)
                .map(|x| x.r)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let ok = sel.iter().filter(|r| success(r)).count() as f64 / sel.len() as f64;
            writeln!(summary, "{},{},{f},{},,,,,{ok:.3}", alg.name(), spec.fragile_n, sel.len())?;
            pts.push((f, ok));
        }
        fragile_pts.push((alg, pts));
    }

    // Fits for team formation: a · sqrt(n ln n) (least squares), and the
    // exponent of a power law (log-log regression).
    let tf = &by_n[0].1;
    let f = |n: f64| (n * n.ln()).sqrt();
    let a_fit = tf.iter().map(|p| p.mean * f(p.n)).sum::<f64>() / tf.iter().map(|p| f(p.n).powi(2)).sum::<f64>();
    let (lx, ly): (Vec<f64>, Vec<f64>) = tf.iter().map(|p| (p.n.ln(), p.mean.ln())).unzip();
    let (mx, my) = (lx.iter().sum::<f64>() / lx.len() as f64, ly.iter().sum::<f64>() / ly.len() as f64);
    let alpha = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>()
        / lx.iter().map(|x| (x - mx).powi(2)).sum::<f64>().max(1e-12);
    writeln!(summary, "# fit: messages per token ≈ {a_fit:.3} · sqrt(n ln n); power law exponent {alpha:.3}")?;
    std::fs::write(out.join("summary.csv"), &summary)?;

    let log2 = |n: f64| n.log2();
    let line = |name: String, points: Vec<(f64, f64)>, fitted: bool| Series { name, points, fitted };
    let mut series = vec![
        line("team formation (mean)".into(), tf.iter().map(|p| (log2(p.n), p.mean)).collect(), false),
        line("team formation (p99.9 of runs)".into(), tf.iter().map(|p| (log2(p.n), p.p999)).collect(), false),
        line(format!("fit {a_fit:.2}·sqrt(n ln n)"), tf.iter().map(|p| (log2(p.n), a_fit * f(p.n))).collect(), true),
    ];
    for (alg, pts) in &by_n[1..] {
        series.push(line(alg.name().into(), pts.iter().map(|p| (log2(p.n), p.mean)).collect(), false));
    }
    line_chart(&out.join("messages.svg"), "messages per token", "log2 n", "messages per token", &series)?;
    line_chart(
        &out.join("reaction.svg"),
        "team formation: reaction time",
        "ln n",
        "time units",
        &[
            line("mean".into(), tf.iter().map(|p| (p.n.ln(), p.reaction_mean)).collect(), false),
            line("p99".into(), tf.iter().map(|p| (p.n.ln(), p.reaction_p99)).collect(), false),
        ],
    )?;
    let epsilon = RunSpec::new(spec.fragile_n, spec.k, 0, 0).epsilon;
    let fragile_series: Vec<Series> = fragile_pts
        .iter()
        .map(|(alg, pts)| {
            let name = match alg {
                Algorithm::TeamFormation => format!("{} (ε = {epsilon})", alg.name()),
                _ => alg.name().into(),
            };
            line(name, pts.clone(), false)
        })
        .collect();
    line_chart(
        &out.join("fragile.svg"),
        &format!("success rate against the fragile fraction (n = {})", spec.fragile_n),
        "fraction of nodes faulty",
        "runs where every token ended in a team",
        &fragile_series,
    )?;

    // Implicit leader election (c = 8) against Afek–Gafni: total messages against n.
    let mut elections = Vec::new();
    for &n in &sizes {
        let runs: Vec<(bool, u64, u64)> = records
            .iter()
            .filter_map(|x| match (&x.job, &x.outcome) {
                (Job::Election { n: m, .. }, Outcome::Election { success, messages, afek_gafni_messages })
                    if *m == n =>
                {
                    Some((*success, *messages, *afek_gafni_messages))
                }
                _ => None,
            })
            .collect();
        let len = runs.len().max(1) as f64;
        let ok = runs.iter().filter(|e| e.0).count() as f64 / len;
        let messages = runs.iter().map(|e| e.1 as f64).sum::<f64>() / len;
        let ag = runs.iter().map(|e| e.2 as f64).sum::<f64>() / len;
        elections.push((n as f64, messages, ok, ag));
    }
    let mut le_csv = String::from("n,messages_mean,messages_per_node,success_rate,afek_gafni_messages_mean\n");
    for &(n, m, ok, ag) in &elections {
        writeln!(le_csv, "{n},{m:.1},{:.3},{ok:.3},{ag:.1}", m / n)?;
    }
    std::fs::write(out.join("election.csv"), le_csv)?;
    line_chart(
        &out.join("election.svg"),
        "leader election: total messages (team formation, c = 8, against Afek–Gafni)",
        "log2 n",
        "log2 messages",
        &[
            line("implicit election".into(), elections.iter().map(|e| (log2(e.0), e.1.log2())).collect(), false),
            line("Afek–Gafni".into(), elections.iter().map(|e| (log2(e.0), e.3.log2())).collect(), false),
            line("n (for reference)".into(), elections.iter().map(|e| (log2(e.0), log2(e.0))).collect(), true),
        ],
    )?;
    Ok(summary)
}

/// The files [`merge`] writes.
pub const REPORTS: &str = "runs.csv, summary.csv, election.csv, messages.svg, reaction.svg, fragile.svg, election.svg";
