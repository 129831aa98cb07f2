//! `agora bench telecom`: the seed's performance table checked.
//!
//! The seed's table (42,045 req/s over five nodes, 13.4 ms average) is
//! arithmetic: each node's requests/s is 100,000 ÷ its latency in ms — Little's
//! law with 100 requests in flight and service time = latency — and the total
//! is their sum; 13.4 ms is the plain average of the latency column (weighted
//! by requests the mean is 11.9 ms). Part (a) runs that closed-loop model in
//! the simulator and prints it beside the seed's figures. Part (b) is the
//! throughput/latency trade-off of the whole default topology under
//! closed-loop load, with its Pareto frontier. Part (c) runs the default
//! topology as five real processes on loopback (`agora cluster up`) with free
//! service, so what is measured is the RPC path: Edge1 and Edge2 issue
//! requests open loop (Poisson, latency counted from when each was due, so a
//! stalled process cannot hide its delay) and record them in HdrHistograms,
//! merged here from the nodes' status. Without and with the links' RTTs
//! emulated. Part (d) measures each replication strategy alone, reads and
//! writes apart: one group of that strategy, served free, Edge1 and Edge2
//! keeping a few requests each in flight (closed loop) — simulated, and on
//! real processes with the links' RTTs emulated and the data on redb.

use agora_lab::telecom::experiments::{self, Access, Measured, TableRow, TradeOff};
use agora_sim::scenario::Scenario;
use agora_telecom::topology::{Params, Redundancy};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct TelecomBenchArgs {
    /// Simulated seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Offered loads (requests/s over all clients) for the real processes.
    #[arg(long, value_delimiter = ',', default_value = "10000,20000,42045,80000")]
    pub real_rates: Vec<f64>,
    /// Skip the real processes (simulated parts only).
    #[arg(long)]
    pub no_real: bool,
    /// Measured seconds per real run (after 2 s for the nodes to connect).
    #[arg(long, default_value_t = 8.0)]
    pub real_secs: f64,
    /// Part (d): the strategies to measure (n_way, active_passive,
    /// active_active, geographic, quorum).
    #[arg(long, value_delimiter = ',', default_value = "n_way,active_passive,active_active,geographic,quorum", value_parser = parse_strategy)]
    pub strategies: Vec<Redundancy>,
    /// Part (d): requests each client keeps in flight.
    #[arg(long, default_value_t = 8)]
    pub in_flight: u32,
    /// Print JSON instead of the readable output.
    #[arg(long)]
    pub json: bool,
}

fn parse_strategy(s: &str) -> Result<Redundancy, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("{s:?} is not a strategy (n_way, active_passive, active_active, geographic, quorum)"))
}

/// One strategy and access measured alone, simulated and on real processes.
#[derive(Serialize, Debug)]
struct StrategyRow {
    strategy: Redundancy,
    access: Access,
    simulated: Measured,
    /// None with --no-real.
    real: Option<Measured>,
}

/// One open-loop run on real processes.
#[derive(Serialize, Debug)]
struct RealRow {
    offered_rps: f64,
    achieved_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests that ended in failure (deadline, refused, shed) in the run.
    failed: u64,
    rtt_emulated: bool,
}

/// The nodes' time to connect before clients start.
const WARM_UP: Duration = Duration::from_secs(2);

/// Runs the default topology as real processes at `offered` requests/s.
fn real_run(offered: f64, secs: f64, emulate: bool) -> Result<RealRow> {
    let mut sc = experiments::default_scenario();
    sc.fault.clear();
    sc.input.clear();
    sc.network.loss = 0.0;
    let w = &mut sc.params.workload;
    let clients = sc.params.nodes.iter().filter(|n| n.layer == agora_telecom::topology::Layer::Edge).count();
    w.rate = offered / clients as f64;
    w.closed_loop = 0;
    w.service_scale = 0.0;
    w.start_after = WARM_UP;
    sc.until = WARM_UP + Duration::from_secs_f64(secs);
    let m = measure(&run_real(&sc, emulate)?, secs)?;
    Ok(RealRow {
        offered_rps: offered,
        achieved_rps: m.req_per_s,
        p50_ms: m.p50_ms,
        p99_ms: m.p99_ms,
        failed: m.failed,
        rtt_emulated: emulate,
    })
}

/// Runs `sc` as real processes (`agora cluster up`, in a fresh 0700
/// folder removed when it ends); the nodes' `/status` at the end.
fn run_real(sc: &Scenario<Params>, emulate: bool) -> Result<Vec<serde_json::Value>> {
    let dir = crate::cluster::run_dir("bench-telecom")?;
    let file = dir.path().join("scenario.toml");
    let status = dir.path().join("status.json");
    std::fs::write(&file, sc.to_toml())?;
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    let mut last = String::new();
    for _ in 0..5 {
        let base = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().min(60_000);
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["cluster", "up"])
            .arg(&file)
            .args(["--base-port", &base.to_string()])
            .arg("--status-out")
            .arg(&status);
        if !emulate {
            cmd.arg("--no-link-emulation");
        }
        let out = cmd.env("RUST_LOG", "warn").output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("is in use") {
            last = stderr.into_owned();
            continue;
        }
        if !out.status.success() {
            bail!("the real cluster failed: {stderr}");
        }
        let text = std::fs::read_to_string(&status).context("the nodes' statuses")?;
        return serde_json::from_str(&text).context("the nodes' statuses");
    }
    bail!("no free ports for the real cluster: {last}")
}

/// Merges the clients' histograms from the nodes' statuses: the answered
/// requests per second over `secs`, their p50 and p99, the failed.
fn measure(statuses: &[serde_json::Value], secs: f64) -> Result<Measured> {
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 2)?;
    let (mut ended, mut clients) = (0, 0);
    let mut failed_by_cause = std::collections::BTreeMap::new();
    for status in statuses {
        let c = &status["protocol"]["client"];
        if c.is_null() {
            continue;
        }
        clients += 1;
        ended += c["ended"].as_u64().unwrap_or(0);
        for (cause, n) in c["failed_by_cause"].as_object().into_iter().flatten() {
            *failed_by_cause.entry(cause.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
        for b in c["latency_us"].as_array().into_iter().flatten() {
            let (Some(v), Some(n)) = (b[0].as_u64(), b[1].as_u64()) else { bail!("a latency bucket: {b}") };
            hist.record_n(v.max(1), n)?;
        }
    }
    if clients == 0 {
        bail!("no client reported its latencies");
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    Ok(Measured {
        req_per_s: hist.len() as f64 / secs,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        failed: ended - hist.len(),
        failed_by_cause,
    })
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
    /// The open-loop load generator against real processes.
    real: Vec<RealRow>,
    /// Each strategy alone, reads and writes apart.
    strategies: Vec<StrategyRow>,
}

pub fn run(args: &TelecomBenchArgs) -> Result<bool> {
    if args.secs.is_nan() || args.secs < 1.0 {
        bail!("--secs must be at least 1");
    }
    if args.real_secs.is_nan() || args.real_secs < 1.0 {
        bail!("--real-secs must be at least 1");
    }
    if let Some(r) = args.real_rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        bail!("--real-rates: {r} is not a rate above zero");
    }
    if args.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    let rates: &[f64] = if args.no_real { &[] } else { &args.real_rates };
    let per_strategy = 2 * args.strategies.len() as u64 * if args.no_real { 1 } else { 2 };
    let bar = crate::report::progress(2 + 2 * rates.len() as u64 + per_strategy, "runs");
    let simulated = experiments::seed_table(args.secs).map_err(anyhow::Error::msg)?;
    bar.inc(1);
    let trade_off =
        experiments::trade_off(&[10, 50, 100, 200, 400], &[50, 100], args.secs).map_err(anyhow::Error::msg)?;
    bar.inc(1);
    let mut real = Vec::new();
    for emulate in [false, true] {
        for &rate in rates {
            real.push(real_run(rate, args.real_secs, emulate)?);
            bar.inc(1);
        }
    }
    let mut strategies = Vec::new();
    for &strategy in &args.strategies {
        for access in [Access::Read, Access::Write] {
            let sc = experiments::strategy_scenario(strategy, access, args.in_flight, WARM_UP, args.real_secs);
            let simulated = experiments::strategy_sim(&sc).map_err(anyhow::Error::msg)?;
            bar.inc(1);
            let real = match args.no_real {
                true => None,
                false => Some(measure(&run_real(&sc, true)?, args.real_secs)?),
            };
            bar.inc(u64::from(real.is_some()));
            strategies.push(StrategyRow { strategy, access, simulated, real });
        }
    }
    bar.finish_and_clear();
    let total: f64 = simulated.iter().map(|r| r.req_per_s).sum();
    let report = Report {
        simulated_total_req_per_s: total,
        seed_total_req_per_s: simulated.iter().map(|r| r.seed_req_per_s).sum(),
        plain_avg_ms: simulated.iter().map(|r| r.avg_ms).sum::<f64>() / simulated.len() as f64,
        weighted_avg_ms: simulated.iter().map(|r| r.avg_ms * r.req_per_s).sum::<f64>() / total,
        simulated,
        trade_off,
        real,
        strategies,
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
    if !report.real.is_empty() {
        println!(
            "\n(c) real processes on loopback: the default topology, free service, open loop from Edge1 and Edge2, {} s per run",
            args.real_secs
        );
        println!("{:>12} {:>12} {:>9} {:>9} {:>8}  links", "offered/s", "achieved/s", "p50 ms", "p99 ms", "failed");
        for r in &report.real {
            println!(
                "{:>12.0} {:>12.0} {:>9.3} {:>9.3} {:>8}  {}",
                r.offered_rps,
                r.achieved_rps,
                r.p50_ms,
                r.p99_ms,
                r.failed,
                if r.rtt_emulated { "RTTs emulated" } else { "bare loopback" }
            );
        }
    }
    if !report.strategies.is_empty() {
        println!(
            "\n(d) each strategy alone: one group, free service, {} in flight from each of Edge1 and Edge2, {} s per run; simulated | real processes (RTTs emulated, data on redb)",
            args.in_flight, args.real_secs
        );
        println!(
            "{:<15} {:<6} {:>9} {:>8} {:>8} {:>6} | {:>9} {:>8} {:>8} {:>6}",
            "strategy", "op", "req/s", "p50 ms", "p99 ms", "failed", "req/s", "p50 ms", "p99 ms", "failed"
        );
        let cells = |m: &Measured| format!("{:>9.0} {:>8.2} {:>8.2} {:>6}", m.req_per_s, m.p50_ms, m.p99_ms, m.failed);
        for r in &report.strategies {
            let name = serde_json::to_value(r.strategy)?.as_str().unwrap_or_default().to_string();
            let access = if r.access == Access::Read { "read" } else { "write" };
            let real = r.real.as_ref().map_or("-".into(), cells);
            println!("{name:<15} {access:<6} {} | {real}", cells(&r.simulated));
        }
    }
    Ok(true)
}
