//! `agora telecom …`: the edge–core–cloud system's analysis (seed 003).
//! `rank`: the bottleneck ranking with the seed's weights; `risk`: the risk
//! score, category, redundancy strategy and failover order; `select`: the
//! resource-aware choice of a node for a request; `deadlock`: cycles in a
//! wait-for graph and the victims that break them.

use crate::report::table;
use agora_telecom::deadlock::{self, Victim};
use agora_telecom::rank::{self, Reading};
use agora_telecom::{risk, select};
use anyhow::{Context, Result};
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
        #[arg(long)]
        json: bool,
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
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
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
                    let mut rows: Vec<_> =
                        ranked.map(|(i, x)| (format!("{}. {}", i + 1, x.node), format!("{:.4}", x.score))).collect();
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
