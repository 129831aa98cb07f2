//! `agora bench history`: the linearizability checker on generated
//! histories that are linearizable by construction (`agora-history`'s
//! `generate`), at the size — 100,000 operations from 20 clients —
//! over 10 and 100 keys, and on single registers, where nothing can be
//! split and the search meets the whole history's concurrency.
//!
//! The **baseline** is reading the same history (EDN or the log parsed into
//! values), in the same run: the ratio says what the search costs on top of
//! looking at every operation once. Medians over `--repeat` runs.

use crate::report::{count, table};
use agora_history::generate::{self, Shape};
use agora_history::{Format, ModelKind};
use agora_lab::stats::median;
use anyhow::{bail, Result};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct HistoryBenchArgs {
    /// Measurements per case; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Operations of the kv cases.
    #[arg(long, default_value_t = 100_000)]
    pub ops: usize,
    /// Print JSON instead of the readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Case {
    pub name: String,
    pub model: &'static str,
    pub clients: usize,
    pub keys: usize,
    pub ops: usize,
    pub indeterminate: usize,
    pub check_ms: f64,
    pub read_ms: f64,
    pub ratio: f64,
}

pub fn run(args: &HistoryBenchArgs) -> Result<bool> {
    let cases = [
        ("kv, 20 clients, 10 keys", ModelKind::Kv, 20, 10, args.ops),
        ("kv, 20 clients, 100 keys", ModelKind::Kv, 20, 100, args.ops),
        ("register, 5 clients (Jepsen etcd's shape)", ModelKind::Register, 5, 1, args.ops / 10),
        ("register, 20 clients", ModelKind::Register, 20, 1, 500),
    ];
    let bar = crate::report::progress((cases.len() * args.repeat.max(1)) as u64, "checks");
    let mut rows = Vec::new();
    for (name, model, clients, keys, ops) in cases {
        let shape = Shape { clients, ops, keys, info_rate: 0.01, seed: 1 };
        let (text, format) = match model {
            ModelKind::Kv => (generate::kv_edn(&shape), Format::Edn),
            ModelKind::Register => (generate::register_log(&shape), Format::Jepsen),
        };
        // The baseline reads the same values as EDN (a log's lines without
        // their prefix, stripped outside the timing).
        let values = text.replace("INFO  jepsen.util - ", "");
        let (mut check, mut read) = (Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..args.repeat.max(1) {
            let t = Instant::now();
            let n = agora_history::edn::parse_all(&values).map(|v| v.len());
            read.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(n.ok());
            let t = Instant::now();
            let r = agora_history::check(&text, Some(format), model, Some(Duration::from_secs(600)))?;
            check.push(t.elapsed().as_secs_f64() * 1e3);
            if r.linearizable != Some(true) {
                bail!("{name}: a history linearizable by construction was judged {:?}", r.linearizable);
            }
            last = Some(r);
            bar.inc(1);
        }
        let r = last.expect("at least one run");
        let (check_ms, read_ms) = (median(&mut check), median(&mut read));
        rows.push(Case {
            name: name.to_string(),
            model: if model == ModelKind::Kv { "kv" } else { "register" },
            clients,
            keys,
            ops: r.ops,
            indeterminate: r.indeterminate,
            check_ms,
            read_ms,
            ratio: check_ms / read_ms,
        });
    }
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(true);
    }
    println!(
        "linearizability checks of generated histories (1% of writes time out); medians of {} runs\n",
        args.repeat
    );
    let mut t =
        vec![("case".to_string(), "ops (indeterminate)   check       read (baseline)   check ÷ read".to_string())];
    for c in &rows {
        t.push((
            c.name.clone(),
            format!(
                "{:>9} ({:>5})   {:>8.1} ms   {:>8.1} ms        {:>8.1}",
                count(c.ops as u64),
                c.indeterminate,
                c.check_ms,
                c.read_ms,
                c.ratio
            ),
        ));
    }
    print!("{}", table(&t));
    Ok(true)
}
