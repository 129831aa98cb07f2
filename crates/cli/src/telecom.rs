//! `agora telecom …`: the edge–core–cloud system's analysis (seed 003).
//! `rank`: the bottleneck ranking with the seed's weights; `risk`: the risk
//! score, category, redundancy strategy and failover order; `select`: the
//! resource-aware choice of a node for a request; `deadlock`: cycles in a
//! wait-for graph and the victims that break them.

use crate::report::table;
use agora_lab::telecom::experiments;
use agora_telecom::balance::Strategy;
use agora_telecom::deadlock::{self, Victim};
use agora_telecom::rank::{self, Reading};
use agora_telecom::{risk, select};
use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum TelecomCmd {
    /// Bottleneck ranking: Σ w·(x − min)/(max − min) over the nodes given
    /// (latency .25, throughput .20, CPU .20, memory .15, transactions .10,
    /// locks .10), highest first, with suggestions.
    Rank {
        /// JSON: {"nodes": [{"id", "latency_ms", "throughput_mbps",
        /// "cpu_percent", "memory_gb", "tx_per_s", "lock_contention_percent"}]}.
        #[arg(long)]
        metrics: PathBuf,
        /// `seed`: the seed's formula as written (more throughput scores as
        /// more bottlenecked); `corrected`: less throughput does.
        #[arg(long, value_enum, default_value = "seed")]
        reading: ReadingArg,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Risk: .3 failure probability + .3 criticality + .2 cascade risk + .2
    /// dependencies / the most any node has; its category and the
    /// redundancy strategy it implies; the failover order by criticality.
    Risk {
        /// JSON: {"nodes": [{"id", "failure_probability", "criticality",
        /// "cascade_risk", "dependency_count", "failure_mode"}]}.
        #[arg(long)]
        input: PathBuf,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Resource-aware selection: total = .6 capacity (.4 CPU, .3 memory, .3
    /// transactions free) + .3 performance (weight / latency × throughput /
    /// 1000) + .1 priority / 10; the best node that can take the request.
    Select {
        /// JSON: {"request": {"priority", "cpu", "memory", "transactions"},
        /// "nodes": [{"id", "cpu_utilization", "cpu_max", "memory_usage",
        /// "memory_max", "transactions", "transactions_max", "weight",
        /// "latency_ms", "throughput_mbps"}]}.
        #[arg(long)]
        input: PathBuf,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Deadlocks: find a cycle in the wait-for graph, abort the rule's
    /// choice among it, repeat until the graph is acyclic.
    Deadlock {
        /// JSON: {"transactions": [{"id", "start", "priority", "work"}],
        /// "waits_for": [[WAITER, HOLDER], ...]}.
        #[arg(long)]
        graph: PathBuf,
        /// oldest (smallest start), priority (lowest) or work (least done).
        #[arg(long, value_enum, default_value = "oldest")]
        victim: VictimArg,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// The phi-accrual detector over many simulated runs of the default
    /// topology: detection time after a crash (p50/p99) and false
    /// suspicions per node-hour with no fault, for each threshold.
    Detector {
        /// The phi thresholds to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![4.0, 6.0, 8.0, 10.0, 12.0])]
        thresholds: Vec<f64>,
        /// Crash runs per threshold.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// Message loss on every link.
        #[arg(long, default_value_t = 0.05)]
        loss: f64,
        /// Fault-free simulated hours per threshold.
        #[arg(long, default_value_t = 1.0)]
        hours: f64,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Load balancing over five simulated back-ends: all healthy, one ten
    /// times slower, one dead; latency, success and attempts per request
    /// for each strategy.
    Balance {
        /// The strategies to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![
            Strategy::RoundRobin, Strategy::WeightedRoundRobin, Strategy::LeastConnections,
            Strategy::ResourceAware, Strategy::P2cPeakEwma])]
        strategies: Vec<Strategy>,
        /// Runs per strategy and case, with seeds 0 … seeds − 1.
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        /// Requests per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Simulated seconds per run.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
    /// Writes a scenario with a generated topology of the seed's shape
    /// (edge nodes on two cores each, a ring of cores, clouds above) to stdout.
    Generate {
        /// Edge nodes, each linked to two cores.
        #[arg(long, default_value_t = 200)]
        edges: u32,
        /// Core nodes, in a ring.
        #[arg(long, default_value_t = 40)]
        cores: u32,
        /// Cloud nodes, above the cores.
        #[arg(long, default_value_t = 10)]
        clouds: u32,
        /// Random seed of the generated metrics and RTTs: the same seed, the same file.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Simulated time of the scenario.
        #[arg(long, default_value = "20s")]
        until: String,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum VictimArg {
    Oldest,
    Priority,
    Work,
}

/// An enum's name as it appears in the JSON output.
fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReadingArg {
    Seed,
    Corrected,
}

/// Reads the JSON input at `path`, runs `analysis` on it, and prints the
/// result as JSON or as the table `rows` makes of it. Errors name the file
/// and the entry.
fn analyse<I: DeserializeOwned, O: Serialize>(
    path: &Path,
    json: bool,
    analysis: impl FnOnce(&I) -> Result<O, agora_telecom::InputError>,
    rows: impl FnOnce(&O) -> Vec<(String, String)>,
) -> Result<O> {
    let name = path.display().to_string();
    let text = agora_core::config_file::read_text(path).map_err(anyhow::Error::msg)?;
    let input: I = agora_telecom::parse_json(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let out = analysis(&input).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(&rows(&out)));
    }
    Ok(out)
}

pub fn telecom(cmd: TelecomCmd) -> Result<bool> {
    match cmd {
        TelecomCmd::Detector { thresholds, seeds, loss, hours, json } => {
            if !(0.0..1.0).contains(&loss) || hours.is_nan() || hours <= 0.0 || seeds == 0 {
                anyhow::bail!("--loss must be in [0, 1), --hours above 0 and --seeds at least 1");
            }
            let spec = experiments::DetectorSpec { thresholds, seeds, loss, hours };
            let bar = crate::report::progress(spec.thresholds.len() as u64 * (seeds + 1), "runs");
            let rows = experiments::detector(&spec, &mut || bar.inc(1)).map_err(anyhow::Error::msg)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("phi accrual, 100 ms heartbeats, the seed's RTTs ± 10 %, {:.0} % loss; {seeds} crashes and {hours} fault-free hours per threshold (simulated)", loss * 100.0);
                println!(
                    "{:>9} {:>9} {:>9} {:>9} {:>7} {:>16}",
                    "threshold", "p50 s", "p99 s", "max s", "missed", "false/node-hour"
                );
                for r in &rows {
                    println!(
                        "{:>9} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>16.3}",
                        r.threshold,
                        r.detection_p50_s,
                        r.detection_p99_s,
                        r.detection_max_s,
                        r.missed,
                        r.false_per_node_hour
                    );
                }
            }
            Ok(true)
        }
        TelecomCmd::Balance { strategies, seeds, rate, secs, json } => {
            if rate.is_nan() || rate <= 0.0 || secs.is_nan() || secs <= 1.0 || seeds == 0 {
                anyhow::bail!("--rate must be above 0, --secs above 1 and --seeds at least 1");
            }
            let spec = experiments::BalanceSpec { strategies, seeds, rate, secs };
            let bar = crate::report::progress(3 * spec.strategies.len() as u64 * seeds, "runs");
            let rows = experiments::balance(&spec, &mut || bar.inc(1)).map_err(anyhow::Error::msg)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("one client, five back-ends (10 ms service, 1 ms RTT), {rate} req/s for {secs} s × {seeds} seeds (simulated)");
                println!(
                    "{:<10} {:<22} {:>9} {:>8} {:>8} {:>12} {:>9} {:>13}",
                    "case", "strategy", "requests", "p50 ms", "p99 ms", "p99/healthy", "success", "attempts/req"
                );
                for r in &rows {
                    println!(
                        "{:<10} {:<22} {:>9} {:>8.2} {:>8.2} {:>12.2} {:>8.3}% {:>13.3}",
                        label(&r.case),
                        label(&r.strategy),
                        r.requests,
                        r.p50_ms,
                        r.p99_ms,
                        r.p99_over_healthy,
                        100.0 * r.success_ratio,
                        r.attempts_per_request
                    );
                }
            }
            Ok(true)
        }
        TelecomCmd::Generate { edges, cores, clouds, seed, until } => {
            let until = agora_core::duration_str::parse(&until).map_err(|e| anyhow::anyhow!("--until: {e}"))?;
            let sc = agora_lab::telecom::experiments::generated_scenario(edges, cores, clouds, seed, until)
                .map_err(anyhow::Error::msg)?;
            print!("{}", sc.to_toml());
            Ok(true)
        }
        TelecomCmd::Rank { metrics, reading, json } => {
            let reading = match reading {
                ReadingArg::Seed => Reading::Seed,
                ReadingArg::Corrected => Reading::Corrected,
            };
            analyse(
                &metrics,
                json,
                |i| rank::rank(i, reading),
                |r: &rank::Ranking| {
                    let ranked = r.ranking.iter().enumerate();
                    let scored = match reading {
                        Reading::Seed => "the seed's formula as written (more throughput scores higher)",
                        Reading::Corrected => "the corrected formula (less throughput scores higher)",
                    };
                    // `agora sim` ranks its run's measured metrics with the corrected formula.
                    let mut rows = vec![("scored".to_string(), format!("the metrics given, by {scored}"))];
                    rows.extend(ranked.map(|(i, x)| (format!("{}. {}", i + 1, x.node), format!("{:.4}", x.score))));
                    rows.extend(r.suggestions.iter().map(|s| ("suggestion".to_string(), s.clone())));
                    rows
                },
            )?;
            Ok(true)
        }
        TelecomCmd::Risk { input, json } => {
            analyse(&input, json, risk::assess, |a: &risk::Assessment| {
                let mut rows: Vec<_> = a
                    .nodes
                    .iter()
                    .map(|n| {
                        (n.node.clone(), format!("{:.3}  {}  {}", n.risk_score, label(&n.category), label(&n.strategy)))
                    })
                    .collect();
                rows.push(("failover order".into(), a.failover_order.join(" → ")));
                rows
            })?;
            Ok(true)
        }
        TelecomCmd::Select { input, json } => {
            let s = analyse(&input, json, select::select, |s: &select::Selection| {
                let mut rows: Vec<_> = s
                    .scores
                    .iter()
                    .map(|x| {
                        let v = format!(
                            "total {:.4} (capacity {:.4}, performance {:.4})",
                            x.total, x.capacity, x.performance
                        );
                        (x.node.clone(), v)
                    })
                    .collect();
                let selected = s.selected.clone().unwrap_or_else(|| "none: no node can take the request".into());
                rows.push(("selected".into(), selected));
                rows
            })?;
            Ok(s.selected.is_some())
        }
        TelecomCmd::Deadlock { graph, victim, json } => {
            let rule = match victim {
                VictimArg::Oldest => Victim::Oldest,
                VictimArg::Priority => Victim::Priority,
                VictimArg::Work => Victim::Work,
            };
            analyse(
                &graph,
                json,
                |g| deadlock::resolve(g, rule),
                |r: &deadlock::Resolution| {
                    if r.cycles.is_empty() {
                        return vec![("deadlocks".into(), "none: the wait-for graph is acyclic".into())];
                    }
                    let cycles = r.cycles.iter().zip(&r.victims);
                    cycles.map(|(c, v)| (format!("{} → {}", c.join(" → "), c[0]), format!("abort {v}"))).collect()
                },
            )?;
            Ok(true)
        }
    }
}
