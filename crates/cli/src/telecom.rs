//! `agora telecom …`: the edge–core–cloud system's analysis (seed 003).
//! `rank`: the bottleneck ranking with the seed's weights.

use crate::report::table;
use agora_telecom::rank::{self, Reading};
use anyhow::{Context, Result};
use std::path::PathBuf;

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
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReadingArg {
    Seed,
    Corrected,
}

pub fn telecom(cmd: TelecomCmd) -> Result<bool> {
    match cmd {
        TelecomCmd::Rank { metrics, reading, json } => {
            let name = metrics.display().to_string();
            let text = std::fs::read_to_string(&metrics).with_context(|| format!("cannot read {name}"))?;
            let input: rank::Input = agora_telecom::parse_json(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let reading = match reading {
                ReadingArg::Seed => Reading::Seed,
                ReadingArg::Corrected => Reading::Corrected,
            };
            let r = rank::rank(&input, reading).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let mut rows: Vec<(String, String)> = r
                    .ranking
                    .iter()
                    .enumerate()
                    .map(|(i, x)| (format!("{}. {}", i + 1, x.node), format!("{:.4}", x.score)))
                    .collect();
                rows.extend(r.suggestions.iter().map(|s| ("suggestion".to_string(), s.clone())));
                print!("{}", table(&rows));
            }
            Ok(true)
        }
    }
}
