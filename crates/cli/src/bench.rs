//! `agora bench sim`: the simulator's throughput and memory on a fixed
//! workload — reliable broadcast from one origin to n nodes over a uniform
//! 1–10 ms network, with the trace hash on — at several sizes.
//!
//! Each measurement runs in a fresh child process (`agora bench sim-one`) so
//! that its peak RSS is its own. In the same child, a **baseline** pushes and
//! pops the same number of events through a bare `BinaryHeap` of same-sized
//! entries: the floor any event-queue simulator pays; the ratio says what the
//! simulator costs on top. Figures are medians over `--repeat` runs; the
//! trace hash of each size is printed and must agree across the runs (and
//! across changes that only make the simulator faster).

use crate::report::count;
use agora_broadcast::{Config, Node};
use agora_core::Time;
use agora_sim::{Model, Sim, SimConfig};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Simulator events per second and peak memory at 10^3, 10^5 and 10^6 nodes.
    Sim(SimBenchArgs),
    /// Allocation round and solve times at the spec's sizes, beside the seed rule.
    Alloc(crate::bench_alloc::AllocBenchArgs),
    /// Synced writes per second and sync latency (redb, group commit), beside bare fdatasync.
    Storage(crate::bench_net::StorageBenchArgs),
    /// Round trips per second and latency between two nodes, TLS beside plain TCP.
    Transport(crate::bench_net::TransportBenchArgs),
    /// The telecom seed's performance table in the closed-loop model that
    /// yields it, the throughput/latency trade-off, and each replication
    /// strategy alone: simulated, then on five real processes (--no-real
    /// skips them).
    Telecom(crate::bench_telecom::TelecomBenchArgs),
    /// The linearizability checker on generated histories: 100,000
    /// operations from 20 clients, and single registers.
    History(crate::bench_history::HistoryBenchArgs),
    /// PBFT, n = 4 as four processes over TLS: throughput and latency,
    /// with a Byzantine replica, and the view change after `kill -9` of the
    /// primary; the same in the simulator.
    Pbft(crate::bench_pbft::PbftBenchArgs),
    /// One measurement in this process (used by `bench sim`).
    #[command(hide = true)]
    SimOne {
        /// Nodes in the measured simulation.
        #[arg(long)]
        nodes: u32,
    },
}

#[derive(clap::Args, Debug)]
pub struct SimBenchArgs {
    /// Node counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000u32, 100_000, 1_000_000])]
    pub sizes: Vec<u32>,
    /// Runs per size; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print a JSON list instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub nodes: u32,
    pub events: u64,
    pub wall_s: f64,
    pub events_per_s: f64,
    /// The bare-heap baseline, same number of events, same process.
    pub baseline_events_per_s: f64,
    pub peak_rss_bytes: u64,
    /// Resident memory the idle nodes add, per node (before the run).
    pub bytes_per_idle_node: f64,
    /// The run's trace hash: the same at every repeat and across changes
    /// that only make the simulator faster.
    pub trace_hash: String,
}

/// Values the origin broadcasts: about two million deliveries at any size.
fn workload_count(nodes: u32) -> u32 {
    (2_000_000 / nodes.max(1)).max(2)
}

/// A memory field of a process's `/proc/PROCESS/status` ("self" or a pid), in KiB.
pub(crate) fn rss_kib(process: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

/// Runs the workload once in this process.
pub fn sample(nodes: u32) -> Result<Sample> {
    if nodes < 2 {
        bail!("the workload needs at least 2 nodes");
    }
    let cfg = Arc::new(Config {
        count: workload_count(nodes),
        interval: Duration::from_millis(1),
        retransmit: Duration::from_secs(1),
        sync: Duration::from_secs(1),
        ..Config::new(nodes)
    });
    let before = rss_kib("self", "VmRSS:");
    let c = cfg.clone();
    let mut sc = SimConfig::new(1);
    sc.collect_outputs = false;
    let delay = Model::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(10) };
    let mut sim = Sim::new(nodes, move |id| Node::new(c.clone(), id), delay, sc);
    let after = rss_kib("self", "VmRSS:");
    let start = Instant::now();
    let report = sim.run(Time::MAX, u64::MAX, &mut |_| {})?;
    let wall = start.elapsed().as_secs_f64();
    if !agora_broadcast::all_delivered(&cfg, |id| sim.node(id), sim.nodes().ids()) {
        bail!("the benchmark workload did not complete: not every node delivered everything");
    }
    let baseline = baseline_events_per_s(report.events);
    Ok(Sample {
        nodes,
        events: report.events,
        wall_s: wall,
        events_per_s: report.events as f64 / wall,
        baseline_events_per_s: baseline,
        peak_rss_bytes: rss_kib("self", "VmHWM:") * 1024,
        bytes_per_idle_node: (after.saturating_sub(before) * 1024) as f64 / nodes as f64,
        trace_hash: agora_sim::trace::hex(report.trace_hash),
    })
}

/// A bare binary heap with entries the size of the simulator's, fed and
/// drained like an event queue (each pop schedules one new event while the
/// budget lasts), keeping ~10^5 events pending.
fn baseline_events_per_s(events: u64) -> f64 {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut heap: BinaryHeap<Reverse<(u64, u64, [u64; 4])>> = BinaryHeap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64; // xorshift: cheap delays
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pending = events.min(100_000);
    let start = Instant::now();
    for i in 0..pending {
        heap.push(Reverse((next() % 10_000_000, i, [i; 4])));
    }
    let (mut seq, mut handled, mut sink) = (pending, 0u64, 0u64);
    while let Some(Reverse((t, _, p))) = heap.pop() {
        handled += 1;
        sink = sink.wrapping_add(p[0]);
        if seq < events {
            heap.push(Reverse((t + next() % 10_000_000, seq, [seq; 4])));
            seq += 1;
        }
    }
    std::hint::black_box(sink);
    handled as f64 / start.elapsed().as_secs_f64()
}

pub fn bench(cmd: BenchCmd) -> Result<bool> {
    match cmd {
        BenchCmd::Alloc(args) => crate::bench_alloc::run(&args),
        BenchCmd::Storage(args) => crate::bench_net::storage(&args),
        BenchCmd::Transport(args) => crate::bench_net::transport(&args),
        BenchCmd::Pbft(args) => crate::bench_pbft::run(&args),
        BenchCmd::Telecom(args) => crate::bench_telecom::run(&args),
        BenchCmd::History(args) => crate::bench_history::run(&args),
        BenchCmd::SimOne { nodes } => {
            println!("{}", serde_json::to_string(&sample(nodes)?)?);
            Ok(true)
        }
        BenchCmd::Sim(args) => {
            let exe = std::env::current_exe().context("cannot find the agora executable")?;
            let bar = crate::report::progress((args.sizes.len() * args.repeat) as u64, "measurements");
            let mut rows = Vec::new();
            for &n in &args.sizes {
                let mut samples = Vec::new();
                for _ in 0..args.repeat.max(1) {
                    let out = std::process::Command::new(&exe)
                        .args(["bench", "sim-one", "--nodes", &n.to_string()])
                        .output()?;
                    if !out.status.success() {
                        bail!("the measurement at {n} nodes failed: {}", String::from_utf8_lossy(&out.stderr));
                    }
                    samples.push(serde_json::from_slice::<Sample>(&out.stdout)?);
                    bar.inc(1);
                }
                rows.push(median_sample(samples)?);
            }
            bar.finish_and_clear();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows, args.repeat);
            }
            Ok(true)
        }
    }
}

/// The median of each figure over the runs of one size.
fn median_sample(s: Vec<Sample>) -> Result<Sample> {
    if let Some(other) = s.iter().find(|x| x.trace_hash != s[0].trace_hash) {
        bail!(
            "the simulator is not deterministic: runs at {} nodes gave trace hashes {} and {}",
            s[0].nodes,
            s[0].trace_hash,
            other.trace_hash
        );
    }
    let f = |g: fn(&Sample) -> f64| agora_lab::stats::median(&mut s.iter().map(g).collect::<Vec<_>>());
    Ok(Sample {
        nodes: s[0].nodes,
        events: s[0].events,
        wall_s: f(|x| x.wall_s),
        events_per_s: f(|x| x.events_per_s),
        baseline_events_per_s: f(|x| x.baseline_events_per_s),
        peak_rss_bytes: f(|x| x.peak_rss_bytes as f64) as u64,
        bytes_per_idle_node: f(|x| x.bytes_per_idle_node),
        trace_hash: s[0].trace_hash.clone(),
    })
}

fn print_table(rows: &[Sample], repeat: usize) {
    println!(
        "reliable broadcast, one origin, uniform 1–10 ms delays; medians of {repeat} runs, each in its own process\n"
    );
    println!(
        "{:>9}  {:>11}  {:>13}  {:>15}  {:>8}  {:>12}  {:>10}  trace hash",
        "nodes", "events", "events/s", "bare heap ev/s", "ratio", "peak RSS", "B/idle node"
    );
    for r in rows {
        println!(
            "{:>9}  {:>11}  {:>13}  {:>15}  {:>8.2}  {:>9.1} MiB  {:>10.0}  {}",
            count(r.nodes as u64),
            count(r.events),
            count(r.events_per_s as u64),
            count(r.baseline_events_per_s as u64),
            r.events_per_s / r.baseline_events_per_s,
            r.peak_rss_bytes as f64 / (1 << 20) as f64,
            r.bytes_per_idle_node,
            r.trace_hash
        );
    }
}
