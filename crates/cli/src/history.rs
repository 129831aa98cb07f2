//! `agora history check`: is a client history linearizable? Jepsen's EDN
//! histories and the text logs of Jepsen's etcd test, against a register or
//! a key–value model (`agora-history`).

use agora_history::{Format, ModelKind};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand, Debug)]
pub enum HistoryCmd {
    /// Checks a history for linearizability, one key at a time (or a
    /// transaction history for serializability); exits 0 if it is, 1 if
    /// not (naming an operation that cannot be placed, or the cycle) or if
    /// the search ran past --timeout.
    Check {
        /// The history file (EDN, or Jepsen's etcd log; see --format).
        file: PathBuf,
        /// register: read, write, cas of one integer; kv: get, put, append
        /// of strings under :key (both checked for linearizability);
        /// list-append: transactions of [:append k v] and [:r k list],
        /// checked for serializability.
        #[arg(long, value_enum)]
        model: ModelArg,
        /// edn: one operation map a line; jepsen: Jepsen's etcd text log.
        /// Detected from the first line when left out.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Give up after this long (e.g. "30s"); the answer is then unknown.
        #[arg(long, default_value = "60s")]
        timeout: String,
        /// Print JSON instead of the readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ModelArg {
    Register,
    Kv,
    ListAppend,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Edn,
    Jepsen,
}

pub fn history(cmd: HistoryCmd) -> Result<bool> {
    let HistoryCmd::Check { file, model, format, timeout, json } = cmd;
    let timeout: Duration = agora_core::duration_str::parse(&timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let text = agora_core::config_file::read_text(&file).map_err(anyhow::Error::msg)?;
    let model = match model {
        ModelArg::Register => ModelKind::Register,
        ModelArg::Kv => ModelKind::Kv,
        ModelArg::ListAppend => return serializable(&file, &text, json),
    };
    let format = format.map(|f| match f {
        FormatArg::Edn => Format::Edn,
        FormatArg::Jepsen => Format::Jepsen,
    });
    let start = Instant::now();
    let report =
        agora_history::check(&text, format, model, Some(timeout)).with_context(|| file.display().to_string())?;
    let took = start.elapsed();
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let what = format!(
            "{} operations ({} indeterminate) in {} partition(s), {:.1} ms",
            report.ops,
            report.indeterminate,
            report.partitions,
            took.as_secs_f64() * 1e3
        );
        match (report.linearizable, &report.stuck) {
            (Some(true), _) => println!("linearizable: {what}"),
            (Some(false), Some(s)) => {
                let key = if s.key.is_empty() { String::new() } else { format!("key {:?}: ", s.key) };
                println!("NOT linearizable: {what}");
                println!(
                    "{key}no order places process {}'s :{} (invoked on line {}) before it returned",
                    s.process, s.f, s.line
                );
            }
            _ => println!("unknown: the search ran past --timeout {timeout:?}; {what}"),
        }
    }
    Ok(report.linearizable == Some(true))
}

fn serializable(file: &std::path::Path, text: &str, json: bool) -> Result<bool> {
    let r = agora_history::serial::check(text).with_context(|| file.display().to_string())?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(r.serializable);
    }
    match (&r.anomaly, r.cycle.is_empty()) {
        (None, _) => println!("serializable: {} transactions", r.txns),
        (Some(a), true) => println!("NOT serializable ({a}): {}", r.detail.as_deref().unwrap_or("")),
        (Some(a), false) => {
            println!("NOT serializable ({a}): a dependency cycle among {} transactions", r.cycle.len());
            for s in &r.cycle {
                println!("  the transaction on line {} -{:?}({})-> the next", s.line, s.edge, s.key);
            }
        }
    }
    Ok(r.serializable)
}
