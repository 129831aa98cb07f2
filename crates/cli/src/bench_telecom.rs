//! `agora bench telecom`: the seed's performance table checked.
//!
//! The seed's table (42,045 req/s over five nodes, 13.4 ms average) is
//! arithmetic: each node's requests/s is 100,000 ÷ its latency in ms — Little's
//! law with 100 requests in flight and service time = latency — and the total
//! is their sum; 13.4 ms is the plain average of the latency column (weighted
//! by requests the mean is 11.9 ms). Part (a) runs that closed-loop model in
//! the simulator and prints it beside the seed's figures. Part (b) is the
//! throughput/latency trade-off of the whole default topology under
//! closed-loop load, with its Pareto frontier. Everything here is
//! simulated; measurements on real processes are not built yet.

use agora_lab::telecom::experiments::{self, TableRow, TradeOff};
use anyhow::Result;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct TelecomBenchArgs {
    /// Simulated seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    simulated: Vec<TableRow>,
    simulated_total_req_per_s: f64,
    seed_total_req_per_s: f64,
    /// Plain average of the per-node latencies (the seed's 13.4 ms).
    plain_avg_ms: f64,
    /// The same weighted by requests served.
    weighted_avg_ms: f64,
    trade_off: Vec<TradeOff>,
    /// Not measured yet: the open-loop load generator against real processes.
    real: Option<Vec<serde_json::Value>>,
}

pub fn run(args: &TelecomBenchArgs) -> Result<bool> {
    if args.secs.is_nan() || args.secs < 1.0 {
        anyhow::bail!("--secs must be at least 1");
    }
    let bar = crate::report::progress(2, "parts");
    let simulated = experiments::seed_table(args.secs).map_err(anyhow::Error::msg)?;
    bar.inc(1);
    let trade_off =
        experiments::trade_off(&[10, 50, 100, 200, 400], &[50, 100], args.secs).map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    let total: f64 = simulated.iter().map(|r| r.req_per_s).sum();
    let report = Report {
        simulated_total_req_per_s: total,
        seed_total_req_per_s: simulated.iter().map(|r| r.seed_req_per_s).sum(),
        plain_avg_ms: simulated.iter().map(|r| r.avg_ms).sum::<f64>() / simulated.len() as f64,
        weighted_avg_ms: simulated.iter().map(|r| r.avg_ms * r.req_per_s).sum::<f64>() / total,
        simulated,
        trade_off,
        real: None,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(true);
    }
    println!(
        "(a) the seed's table, simulated: closed loop, 100 in flight per node, service time = latency, {} s",
        args.secs
    );
    println!("{:<8} {:>10} {:>10} {:>12}", "node", "req/s", "avg ms", "seed req/s");
    for r in &report.simulated {
        println!("{:<8} {:>10.0} {:>10.2} {:>12.0}", r.node, r.req_per_s, r.avg_ms, r.seed_req_per_s);
    }
    println!(
        "{:<8} {:>10.0} {:>10.2} {:>12.0}   (avg: plain {:.2} ms as the seed averages; weighted by requests {:.2} ms)",
        "total",
        report.simulated_total_req_per_s,
        report.plain_avg_ms,
        report.seed_total_req_per_s,
        report.plain_avg_ms,
        report.weighted_avg_ms
    );
    println!("\n(b) throughput/latency trade-off of the default topology, fault-free, closed loop from Edge1 and Edge2 (simulated)");
    println!("{:>9} {:>6} {:>10} {:>9}  frontier", "in flight", "slots", "req/s", "avg ms");
    for p in &report.trade_off {
        println!(
            "{:>9} {:>6} {:>10.0} {:>9.2}  {}",
            p.in_flight,
            p.slots,
            p.req_per_s,
            p.avg_ms,
            if p.on_frontier { "yes" } else { "" }
        );
    }
    println!("\nreal processes: not measured yet (the open-loop load generator is still to be built)");
    Ok(true)
}
