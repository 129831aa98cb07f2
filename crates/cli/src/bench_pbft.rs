//! `agora bench pbft`: PBFT with n = 4 replicas as four `agora node`
//! processes over TLS on loopback, clients in this process (each a node of
//! the cluster with its own key), and the same measurements in the
//! simulator.
//!
//! - Closed loop: each client keeps one request outstanding; throughput
//!   and latency per client count.
//! - Attacked: the largest client count again with one Byzantine replica
//!   (an equivocating primary; a replica flooding views), as a ratio to
//!   the fault-free figure, with the replicas' peak memory.
//! - View change: `kill -9` of the primary under load; the time to the
//!   first completion of a request sent after the kill (which only the new
//!   view can order), per trial.

use crate::cluster::{wait_ready, write_keys};
use agora_core::{Command, Io, NodeId, Protocol};
use agora_lab::agora_pbft::{Chain, Envelope, Input, Node, Output, Timer, Workload};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct PbftBenchArgs {
    /// Client counts to measure (closed loop: one request outstanding each).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 16, 64])]
    pub clients: Vec<usize>,
    /// How long each measurement runs (after a warm-up).
    #[arg(long, default_value = "3s", value_parser = agora_core::duration_str::parse)]
    pub duration: Duration,
    /// Requests per batch at most.
    #[arg(long, default_value_t = 64)]
    pub batch_max: usize,
    /// Primary kills measured.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// The replicas' view-change timeout.
    #[arg(long, default_value = "200ms", value_parser = agora_core::duration_str::parse)]
    pub view_change_timeout: Duration,
    /// Runs per configuration (each on a fresh cluster); the run with the
    /// median throughput is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Leave out the runs with a Byzantine replica.
    #[arg(long)]
    pub no_attacks: bool,
    /// Print JSON instead of the readable output.
    #[arg(long)]
    pub json: bool,
}

/// What one configuration measured.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub setting: String,
    pub clients: usize,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The replicas' largest resident memory at the end (real processes).
    pub replica_rss_mb: Option<f64>,
    /// The highest view a replica ended in (real processes).
    pub view: Option<u64>,
    /// With a Byzantine replica: throughput over the fault-free closed
    /// loop's with as many clients, measured in the same run.
    pub vs_fault_free: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ViewChange {
    pub trials: usize,
    pub timeout_ms: f64,
    pub p50_ms: f64,
    pub max_ms: f64,
    pub all_ms: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub real: Vec<Row>,
    pub view_change_ms: ViewChange,
    pub simulated: Vec<Row>,
    pub simulated_view_change_ms: ViewChange,
}

/// A completion as a client sees it.
#[derive(Clone, Copy, Debug)]
struct Done {
    at: Instant,
    /// When the request was first sent.
    sent: Instant,
    /// From its sending (closed loop) or its arrival (open loop).
    latency: Duration,
}

type Log = Arc<Mutex<Vec<Done>>>;

/// A PBFT client that logs each completion (bench code: the harness reads
/// the log) and outputs nothing. Closed loop, it sends its next request
/// when one completes; open loop (`every`), a request arrives at fixed
/// intervals whatever happened to the last, waits its turn (one is
/// outstanding at a time), and its latency runs from its arrival — so a
/// slow completion delays the ones behind it and is not hidden.
struct Logged {
    client: Node<Chain>,
    log: Log,
    every: Option<Duration>,
    /// Open loop: when the next request is due, and the due times of those
    /// not done yet (a late timer submits what fell due meanwhile, so the
    /// rate holds whatever the timer's resolution).
    next: Option<Instant>,
    arrived: std::collections::VecDeque<Instant>,
    /// When the outstanding request (by timestamp) was first sent.
    sent: Option<(u64, Instant)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum LoadTimer {
    Pbft(Timer),
    Arrival,
}

impl Logged {
    fn relay(&mut self, io: &mut Io<'_, Self>, f: impl FnOnce(&mut Node<Chain>, &mut Io<'_, Node<Chain>>)) {
        let mut out = Vec::new();
        f(&mut self.client, &mut io.nested(&mut out));
        for cmd in out {
            match cmd {
                Command::Send { to, msg } => {
                    if let agora_lab::agora_pbft::Msg::Request(r) = &msg.msg {
                        if self.sent.is_none_or(|(t, _)| t != r.timestamp) {
                            self.sent = Some((r.timestamp, Instant::now()));
                        }
                    }
                    io.send(to, msg)
                }
                Command::SetTimer { after, timer } => io.set_timer(after, LoadTimer::Pbft(timer)),
                Command::CancelTimer { timer } => io.cancel_timer(LoadTimer::Pbft(timer)),
                Command::Output(Output::Done { timestamp, .. }) => {
                    let at = Instant::now();
                    let sent = self.sent.filter(|(t, _)| *t == timestamp).map_or(at, |(_, s)| s);
                    let latency = at - self.arrived.pop_front().unwrap_or(sent);
                    self.log.lock().expect("bench log").push(Done { at, sent, latency });
                }
                Command::Count { .. } | Command::Store(_) => {}
            }
        }
    }
}

impl Protocol for Logged {
    type Msg = Envelope;
    type Timer = LoadTimer;
    type Input = Input;
    type Output = ();

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        self.relay(io, |c, io| c.on_start(io));
        if let Some(every) = self.every {
            io.set_timer(every, LoadTimer::Arrival);
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Envelope, io: &mut Io<'_, Self>) {
        self.relay(io, |c, io| c.on_message(from, msg, io));
    }
    fn on_timer(&mut self, timer: LoadTimer, io: &mut Io<'_, Self>) {
        match timer {
            LoadTimer::Pbft(t) => self.relay(io, |c, io| c.on_timer(t, io)),
            LoadTimer::Arrival => {
                let every = self.every.expect("arrivals only in open loop");
                let now = Instant::now();
                let mut due = self.next.unwrap_or(now);
                while due <= now {
                    self.arrived.push_back(due);
                    self.relay(io, |c, io| c.on_input(Input::Submit { op: String::new() }, io));
                    due += every;
                }
                self.next = Some(due);
                io.set_timer(due - now, LoadTimer::Arrival);
            }
        }
    }
}

/// Four replica processes and `clients` clients in this process.
struct Cluster {
    _dir: tempfile::TempDir,
    replicas: Vec<tokio::process::Child>,
    clients: Vec<agora_net::NodeHandle>,
    log: Log,
    /// The replicas' HTTP addresses (their `/status`).
    http: Vec<std::net::SocketAddr>,
}

/// `n` distinct free ports (all held until all are chosen).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    Ok(held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

/// The `[params]` both the real cluster and the simulated one run with;
/// `requests`: each client's own workload (the real clients are driven
/// from here instead).
fn params(args: &PbftBenchArgs, requests: u32, byzantine: Option<(u32, &str)>) -> String {
    let mut s = format!(
        "[params]\nreplicas = 4\nrequests = {requests}\nop_bytes = 0\nbatch_max = {}\ncheckpoint_interval = 64\n\
         pipeline = 4\nview_change_timeout = \"{}ms\"\nclient_timeout = \"1s\"\nstatus_interval = \"100ms\"\n",
        args.batch_max,
        args.view_change_timeout.as_millis()
    );
    if let Some((replica, behaviour)) = byzantine {
        s += &format!("byzantine = [{{ replica = {replica}, behaviour = \"{behaviour}\" }}]\n");
    }
    s
}

/// The cluster file: 4 replicas (with HTTP, for readiness) and the clients.
fn cluster_file(clients: usize, args: &PbftBenchArgs, byzantine: Option<(u32, &str)>) -> Result<String> {
    let mut s = format!("protocol = \"pbft\"\n\n{}", params(args, 0, byzantine));
    let ports = free_ports(8 + clients)?;
    for i in 0..4 {
        let (peers, http) = (ports[2 * i], ports[2 * i + 1]);
        s += &format!("\n[[node]]\nname = \"r{i}\"\nlisten = \"127.0.0.1:{peers}\"\nhttp = \"127.0.0.1:{http}\"\n");
    }
    for i in 0..clients {
        s += &format!("\n[[node]]\nname = \"c{i}\"\nlisten = \"127.0.0.1:{}\"\n", ports[8 + i]);
    }
    Ok(s)
}

/// One configuration measured.
#[derive(Clone, Copy, Debug)]
struct Setting<'a> {
    name: &'a str,
    clients: usize,
    /// A Byzantine replica and its behaviour.
    byzantine: Option<(u32, &'a str)>,
    /// Open loop: a request per client at this interval; closed loop without.
    every: Option<Duration>,
}

impl<'a> Setting<'a> {
    fn closed(name: &'a str, clients: usize) -> Self {
        Setting { name, clients, byzantine: None, every: None }
    }
}

impl Cluster {
    async fn start(setting: &Setting<'_>, args: &PbftBenchArgs) -> Result<Cluster> {
        let Setting { clients, byzantine, every, .. } = *setting;
        let dir = crate::cluster::run_dir("bench-pbft")?;
        let plain = dir.path().join("plain.toml");
        std::fs::write(&plain, cluster_file(clients, args, byzantine)?)?;
        let keyed = write_keys(&plain, &dir.path().join("keys"), None)?;
        let exe = std::env::current_exe().context("cannot find the agora executable")?;
        let mut replicas = Vec::new();
        for i in 0..4 {
            let log = std::fs::File::create(dir.path().join(format!("r{i}.log")))?;
            let child = tokio::process::Command::new(&exe)
                .arg("node")
                .arg("--config")
                .arg(&keyed)
                .args(["--id", &format!("r{i}"), "--stop-on-stdin-eof"])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a replica")?;
            replicas.push(child);
        }
        let cf = agora_net::ClusterFile::<agora_lab::agora_pbft::Params>::load(&keyed).map_err(anyhow::Error::msg)?;
        wait_ready(&cf.node).await;
        let cfg = Arc::new(cf.params.config(cf.node.len() as u32).map_err(anyhow::Error::msg)?);
        let log: Log = Arc::default();
        let mut handles = Vec::new();
        for i in 0..clients {
            let node = cf.node_config(&format!("c{i}"))?;
            let requests = if every.is_some() { 0 } else { u32::MAX };
            let client = Node::new(cfg.clone(), node.id, Chain::default, Workload { requests, op_bytes: 0 });
            let logged =
                Logged { client, log: log.clone(), every, next: None, arrived: Default::default(), sent: None };
            handles.push(agora_net::start(node, logged).await?);
        }
        let http = cf.node.iter().take(4).filter_map(|n| n.http).collect();
        Ok(Cluster { _dir: dir, replicas, clients: handles, log, http })
    }

    /// Waits until some request completes (the connections are up), then
    /// forgets what completed so far.
    async fn warm_up(&self) -> Result<()> {
        let start = Instant::now();
        while self.log.lock().expect("bench log").len() < 10 {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("no requests completed within 20 s of the cluster starting");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.log.lock().expect("bench log").clear();
        Ok(())
    }

    /// The highest view a replica is in (how many view changes the run saw).
    async fn view(&self) -> Option<u64> {
        let mut most = None;
        for &addr in &self.http {
            let status = tokio::task::spawn_blocking(move || agora_net::probe::get_json(addr, "/status")).await;
            let view = status.ok().and_then(|s| s.ok()).and_then(|s| s["protocol"]["view"].as_u64());
            most = most.max(view);
        }
        most
    }

    /// Resident memory of the largest replica process, in MB.
    fn replica_rss_mb(&self) -> Option<f64> {
        let mb = |pid: u32| crate::bench::rss_kib(&pid.to_string(), "VmRSS:") as f64 / 1024.0;
        self.replicas.iter().filter_map(|c| c.id()).map(mb).reduce(f64::max)
    }

    async fn stop(mut self) {
        for c in self.clients {
            c.stop().await;
        }
        for r in &mut self.replicas {
            drop(r.stdin.take());
        }
        for r in &mut self.replicas {
            if tokio::time::timeout(Duration::from_secs(5), r.wait()).await.is_err() {
                let _ = r.kill().await;
            }
        }
    }
}

fn row(setting: &str, clients: usize, wall: Duration, latencies: &[Duration], rss: Option<f64>) -> Row {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    for l in latencies {
        h.record(l.as_nanos().max(1) as u64).ok();
    }
    let ms = |q| h.value_at_quantile(q) as f64 / 1e6;
    Row {
        setting: setting.to_string(),
        clients,
        ops_per_s: latencies.len() as f64 / wall.as_secs_f64(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        replica_rss_mb: rss,
        view: None,
        vs_fault_free: None,
    }
}

/// `--repeat` runs of [`measure_once`]; the median by throughput.
async fn measure(setting: Setting<'_>, args: &PbftBenchArgs) -> Result<Row> {
    let mut runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        runs.push(measure_once(&setting, args).await?);
    }
    runs.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
    Ok(runs.swap_remove(runs.len() / 2))
}

async fn measure_once(setting: &Setting<'_>, args: &PbftBenchArgs) -> Result<Row> {
    let cluster = Cluster::start(setting, args).await?;
    cluster.warm_up().await?;
    let t0 = Instant::now();
    tokio::time::sleep(args.duration).await;
    let wall = t0.elapsed();
    let latencies: Vec<Duration> = cluster.log.lock().expect("bench log").iter().map(|d| d.latency).collect();
    let rss = cluster.replica_rss_mb();
    let view = cluster.view().await;
    cluster.stop().await;
    Ok(Row { view, ..row(setting.name, setting.clients, wall, &latencies, rss) })
}

/// One trial: the primary (r0) is killed under load; the time until a
/// request sent after the kill completes.
async fn view_change_trial(args: &PbftBenchArgs) -> Result<Duration> {
    let mut cluster = Cluster::start(&Setting::closed("primary killed", 4), args).await?;
    cluster.warm_up().await?;
    let killed = Instant::now();
    cluster.replicas[0].start_kill().context("cannot kill the primary")?;
    let took = loop {
        let first = cluster.log.lock().expect("bench log").iter().find(|d| d.sent > killed).map(|d| d.at);
        if let Some(at) = first {
            break at - killed;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("no request completed within 30 s of killing the primary");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    cluster.stop().await;
    Ok(took)
}

fn view_changes(mut all: Vec<Duration>, timeout: Duration) -> ViewChange {
    all.sort_unstable();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    ViewChange {
        trials: all.len(),
        timeout_ms: ms(&timeout),
        p50_ms: all.get(all.len() / 2).map_or(0.0, ms),
        max_ms: all.last().map_or(0.0, ms),
        all_ms: all.iter().map(ms).collect(),
    }
}

pub fn run(args: &PbftBenchArgs) -> Result<bool> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients: give one or more client counts, each at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let steps = args.clients.len() as u64 + 1 + 2 * (!args.no_attacks) as u64 + args.trials as u64;
    let progress = crate::report::progress(steps, "PBFT measurements");
    let mut real = Vec::new();
    for &c in &args.clients {
        progress.set_message(format!("{c} client(s), fault-free"));
        real.push(rt.block_on(measure(Setting::closed("fault-free", c), args))?);
        progress.inc(1);
    }
    // Open loop at half the peak, with the peak's clients.
    let peak = real.iter().max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s)).expect("at least one row").clone();
    let every = Duration::from_secs_f64(2.0 * peak.clients as f64 / peak.ops_per_s);
    progress.set_message(format!("open loop at {:.0} ops/s", peak.ops_per_s / 2.0));
    let open = Setting { every: Some(every), ..Setting::closed("open loop, half of peak", peak.clients) };
    real.push(rt.block_on(measure(open, args))?);
    progress.inc(1);
    if !args.no_attacks {
        for (name, bad) in [("equivocating primary", (0, "equivocate")), ("flooding views", (3, "flood_views"))] {
            progress.set_message(format!("{} clients, {name}", peak.clients));
            let attack = Setting { byzantine: Some(bad), ..Setting::closed(name, peak.clients) };
            let mut attacked = rt.block_on(measure(attack, args))?;
            attacked.vs_fault_free = Some(attacked.ops_per_s / peak.ops_per_s);
            real.push(attacked);
            progress.inc(1);
        }
    }
    let mut kills = Vec::new();
    for t in 0..args.trials {
        progress.set_message(format!("primary killed, trial {}", t + 1));
        kills.push(rt.block_on(view_change_trial(args))?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (simulated, sim_kills) = simulate(args)?;
    let report = Report {
        real,
        view_change_ms: view_changes(kills, args.view_change_timeout),
        simulated,
        simulated_view_change_ms: view_changes(sim_kills, args.view_change_timeout),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, args);
    }
    Ok(true)
}

fn print_report(r: &Report, args: &PbftBenchArgs) {
    println!("{:<22} {:>7} {:>10} {:>8} {:>8} {:>10}", "setting", "clients", "ops/s", "p50 ms", "p99 ms", "ratio");
    for x in &r.real {
        let ratio = x.vs_fault_free.map_or(String::new(), |v| format!("{v:.2}×"));
        let view = x.view.map_or("?".to_string(), |v| v.to_string());
        let rss =
            x.replica_rss_mb.map_or(String::new(), |m| format!("  (replica RSS ≤ {m:.0} MB, ends in view {view})"));
        println!(
            "{:<22} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>10}{rss}",
            x.setting, x.clients, x.ops_per_s, x.p50_ms, x.p99_ms, ratio
        );
    }
    for x in &r.simulated {
        println!(
            "{:<22} {:>7} {:>10.0} {:>8.2} {:>8.2}",
            format!("simulated, {}", x.setting),
            x.clients,
            x.ops_per_s,
            x.p50_ms,
            x.p99_ms
        );
    }
    let vc = |name: &str, v: &ViewChange| {
        println!(
            "{name}: primary killed, first request of the new view done after p50 {:.0} ms, max {:.0} ms over {} trials (timeout {:.0} ms; max / timeout {:.2})",
            v.p50_ms,
            v.max_ms,
            v.trials,
            v.timeout_ms,
            v.max_ms / v.timeout_ms
        );
    };
    vc("real", &r.view_change_ms);
    vc("simulated", &r.simulated_view_change_ms);
    println!(
        "(n = 4, f = 1; four `agora node` processes over TLS on loopback, clients in this process; batches of at most {}; operations of 0 bytes on the Chain machine, one SHA-256 each; the median of {} runs of {:?})",
        args.batch_max,
        args.repeat.max(1),
        args.duration
    );
}

// ---- the same in the simulator ---------------------------------------------

/// A simulated link's one-way delay (the simulator models no CPU, so its
/// figures are what the protocol does when only the network costs).
const SIM_DELAY: &str = "{ model = \"uniform\", min = \"50us\", max = \"150us\" }";

fn sim_scenario(clients: usize, args: &PbftBenchArgs, until: Duration, crash: Option<Duration>) -> Result<Scenario> {
    let mut src = format!(
        "protocol = \"pbft\"\nnodes = {}\nseed = 1\nuntil = \"{}ms\"\n\n[network]\ndelay = {SIM_DELAY}\n\n{}",
        4 + clients,
        until.as_millis(),
        params(args, u32::MAX, None)
    );
    if let Some(at) = crash {
        src += &format!("\n[[fault]]\nkind = \"crash\"\nat = \"{}ms\"\nnode = 0\n", at.as_millis());
    }
    Ok(agora_lab::registry::load::<Node<Chain>>("bench", &src)?)
}

type Scenario = agora_sim::scenario::Scenario<agora_lab::agora_pbft::Params>;

/// Completions of a simulated run: when (since the start) and latency.
fn sim_run(sc: &Scenario, seed: u64) -> Result<Vec<(Duration, Duration)>> {
    let mut sim = agora_lab::registry::build::<Node<Chain>>(sc, seed, true);
    sim.run_until(agora_core::Time::ZERO + sc.until).map_err(|e| anyhow::anyhow!("simulated run, seed {seed}: {e}"))?;
    Ok(sim
        .outputs()
        .iter()
        .map(|o| {
            let Output::Done { latency_ns, .. } = o.output;
            (o.at - agora_core::Time::ZERO, Duration::from_nanos(latency_ns))
        })
        .collect())
}

/// The closed-loop rows and the view-change trials, simulated.
fn simulate(args: &PbftBenchArgs) -> Result<(Vec<Row>, Vec<Duration>)> {
    let (warm, span) = (Duration::from_millis(500), Duration::from_secs(2));
    let mut rows = Vec::new();
    for &c in &args.clients {
        let done = sim_run(&sim_scenario(c, args, warm + span, None)?, 1)?;
        let latencies: Vec<Duration> = done.iter().filter(|(at, _)| *at >= warm).map(|(_, l)| *l).collect();
        rows.push(row("fault-free", c, span, &latencies, None));
    }
    let crash = Duration::from_secs(1);
    let sc = sim_scenario(4, args, crash + Duration::from_secs(5), Some(crash))?;
    let mut kills = Vec::new();
    for seed in 1..=args.trials as u64 {
        let done = sim_run(&sc, seed)?;
        let first = done.iter().filter(|(at, l)| at.saturating_sub(*l) > crash).map(|(at, _)| *at).min();
        kills.push(first.context("simulated: no request completed after the primary crashed")? - crash);
    }
    Ok((rows, kills))
}
