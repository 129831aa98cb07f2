//! `agora bench storage` and `agora bench transport`: the real runtime's
//! disk and wire, each beside a baseline measured in the same run.
//!
//! * **storage**: the storage thread (redb, fsync per commit) with `k`
//!   syncs kept in flight (closed loop: a sync's completion lets the next
//!   one in), so group commit can share one fsync among them. Baseline: a
//!   bare loop of a 64-byte `write` plus `fdatasync` on a file in the same
//!   directory. Synced writes per second and the latency from submit to
//!   answer (p50, p99, HdrHistogram).
//! * **transport**: two nodes on loopback in this process, node 0 keeping
//!   `w` pings in flight to node 1, which answers each; with TLS 1.3 and on
//!   plain TCP, same run. Round trips per second and their latency.
//!
//! Figures depend on this machine's disk and load: medians of `--repeat`
//! runs, always read beside their baseline.

use agora_core::storage::StoreOp;
use agora_core::{Io, Message, NodeId, Protocol};
use agora_net::storage::{Backend, Storage};
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct StorageBenchArgs {
    /// Syncs kept in flight (one measurement each).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 8, 64])]
    pub in_flight: Vec<usize>,
    /// Syncs per measurement.
    #[arg(long, default_value_t = 2000)]
    pub syncs: usize,
    /// Where the files go (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measurements per case; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print JSON instead of the readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageRow {
    pub in_flight: usize,
    pub synced_writes: Rate,
    /// Syncs per durable commit (group commit at work).
    pub syncs_per_commit: f64,
    pub fdatasync_baseline: Rate,
}

fn rate(count: usize, wall: Duration, h: &Histogram<u64>) -> Rate {
    Rate {
        per_s: count as f64 / wall.as_secs_f64(),
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn median_by(mut v: Vec<Rate>) -> Rate {
    v.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
    v.swap_remove(v.len() / 2)
}

/// One storage-thread measurement: `syncs` syncs, `k` in flight.
fn storage_once(dir: &std::path::Path, k: usize, syncs: usize) -> Result<(Rate, f64)> {
    let (tx, rx) = mpsc::channel();
    let node = format!("bench-{k}-{}", std::process::id());
    let (s, _) = Storage::open(&Backend::Redb, Some(dir), &node, move |d, c| {
        let _ = tx.send((d.ticket, c.is_some()));
    })?;
    let space = agora_core::storage::Space { service: "", name: "bench" };
    let mut sent_at = vec![Instant::now(); syncs];
    let submit = |t: usize, sent_at: &mut Vec<Instant>| {
        sent_at[t] = Instant::now();
        s.submit(StoreOp::Put { space, key: (t as u64).to_be_bytes().to_vec(), value: vec![7u8; 64] });
        s.submit(StoreOp::Sync { service: "", ticket: t as u64 });
    };
    let mut h = histogram();
    let start = Instant::now();
    let mut next = 0;
    while next < k.min(syncs) {
        submit(next, &mut sent_at);
        next += 1;
    }
    let mut commits = 0usize;
    for _ in 0..syncs {
        let (ticket, committed) = rx.recv_timeout(Duration::from_secs(30)).context("a sync was not answered")?;
        h.record(sent_at[ticket as usize].elapsed().as_nanos() as u64).ok();
        commits += committed as usize;
        if next < syncs {
            submit(next, &mut sent_at);
            next += 1;
        }
    }
    let wall = start.elapsed();
    drop(s);
    let _ = std::fs::remove_dir_all(dir.join(&node));
    Ok((rate(syncs, wall, &h), syncs as f64 / commits.max(1) as f64))
}

/// The bare floor: write 64 bytes and fdatasync, `n` times.
fn fdatasync_once(dir: &std::path::Path, n: usize) -> Result<Rate> {
    use std::io::Write;
    use std::os::unix::io::AsRawFd;
    let path = dir.join(format!("fdatasync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let mut h = histogram();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&[7u8; 64])?;
        // SAFETY: a valid, open file descriptor owned by `f`.
        if unsafe { libc::fdatasync(f.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        h.record(t.elapsed().as_nanos() as u64).ok();
    }
    let wall = start.elapsed();
    let _ = std::fs::remove_file(&path);
    Ok(rate(n, wall, &h))
}

pub fn storage(args: &StorageBenchArgs) -> Result<bool> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for &k in &args.in_flight {
        let (mut ours, mut base, mut grouping) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.repeat.max(1) {
            let (r, g) = storage_once(&dir, k, args.syncs)?;
            ours.push(r);
            grouping.push(g);
            base.push(fdatasync_once(&dir, args.syncs.min(2000))?);
        }
        grouping.sort_by(f64::total_cmp);
        rows.push(StorageRow {
            in_flight: k,
            synced_writes: median_by(ours),
            syncs_per_commit: grouping[grouping.len() / 2],
            fdatasync_baseline: median_by(base),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:>9} {:>14} {:>9} {:>9} {:>12} {:>14} {:>9} {:>9} {:>7}",
            "in flight", "synced/s", "p50 µs", "p99 µs", "syncs/commit", "fdatasync/s", "p50 µs", "p99 µs", "ratio"
        );
        for r in &rows {
            let (a, b) = (&r.synced_writes, &r.fdatasync_baseline);
            println!(
                "{:>9} {:>14.0} {:>9.0} {:>9.0} {:>12.1} {:>14.0} {:>9.0} {:>9.0} {:>6.2}×",
                r.in_flight,
                a.per_s,
                a.p50_us,
                a.p99_us,
                r.syncs_per_commit,
                b.per_s,
                b.p50_us,
                b.p99_us,
                a.per_s / b.per_s
            );
        }
        println!("(medians of {} runs; {} syncs each; redb in {})", args.repeat.max(1), args.syncs, dir.display());
    }
    Ok(true)
}

// ---- transport ------------------------------------------------------------

#[derive(clap::Args, Debug)]
pub struct TransportBenchArgs {
    /// Pings kept in flight (one measurement each).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 64])]
    pub in_flight: Vec<usize>,
    /// How long each measurement runs.
    #[arg(long, default_value = "2s", value_parser = agora_core::duration_str::parse)]
    pub duration: Duration,
    /// Measurements per case; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print JSON instead of the readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Ping {
    Ping { sent_ns: u64 },
    Pong { sent_ns: u64 },
}

impl Message for Ping {
    fn kind(&self) -> &'static str {
        match self {
            Ping::Ping { .. } => "ping",
            Ping::Pong { .. } => "pong",
        }
    }
}

/// Node 0 keeps `window` pings in flight and records each round trip into
/// the shared histogram (bench code: the harness reads it); node 1 answers.
struct PingPong {
    me: NodeId,
    window: usize,
    stats: Arc<Mutex<(Histogram<u64>, u64)>>,
}

impl Protocol for PingPong {
    type Msg = Ping;
    type Timer = ();
    type Input = ();
    type Output = ();

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        // Queued until the connection is up.
        if self.me == NodeId(0) {
            for _ in 0..self.window {
                io.send(NodeId(1), Ping::Ping { sent_ns: io.now().as_nanos() });
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Ping, io: &mut Io<'_, Self>) {
        match msg {
            Ping::Ping { sent_ns } => io.send(from, Ping::Pong { sent_ns }),
            Ping::Pong { sent_ns } => {
                let now = io.now().as_nanos();
                {
                    let mut s = self.stats.lock().expect("bench stats");
                    s.0.record(now.saturating_sub(sent_ns).max(1)).ok();
                    s.1 += 1;
                }
                io.send(from, Ping::Ping { sent_ns: now });
            }
        }
    }

    fn on_timer(&mut self, _: (), _: &mut Io<'_, Self>) {}
}

#[derive(Debug, Clone, Serialize)]
pub struct TransportRow {
    pub in_flight: usize,
    pub tls: Rate,
    pub plain: Rate,
}

fn free_addr() -> Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn transport_once(window: usize, tls: bool, duration: Duration) -> Result<Rate> {
    let peers: Vec<agora_net::NodeEntry> = (0..2)
        .map(|i| Ok(agora_net::NodeEntry { name: format!("b{i}"), listen: free_addr()?, http: None, public_key: None }))
        .collect::<Result<_>>()?;
    let keys = agora_core::keys::SeededKeys { seed: 1 };
    let public: Vec<_> = (0..2).map(|j| keys.secret(NodeId(j)).verifying_key()).collect();
    let stats = Arc::new(Mutex::new((histogram(), 0u64)));
    let mut nodes = Vec::new();
    for i in 0..2u32 {
        let identity = tls
            .then(|| agora_net::security::Identity::new(NodeId(i), keys.secret(NodeId(i)), public.clone()))
            .transpose()
            .map_err(anyhow::Error::msg)?
            .map(Arc::new);
        let cfg = agora_net::NodeConfig { identity, ..agora_net::NodeConfig::plain(NodeId(i), peers.clone()) };
        let p = PingPong { me: NodeId(i), window, stats: stats.clone() };
        nodes.push(agora_net::start(cfg, p).await?);
    }
    // The connection is up once a first round trip completes; what came
    // before (the handshake) is not measured.
    let start = Instant::now();
    while stats.lock().expect("bench stats").1 == 0 {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "no round trip in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    {
        let mut s = stats.lock().expect("bench stats");
        *s = (histogram(), 0);
    }
    let t0 = Instant::now();
    tokio::time::sleep(duration).await;
    let (h, n) = {
        let s = stats.lock().expect("bench stats");
        (s.0.clone(), s.1)
    };
    let wall = t0.elapsed();
    for n in nodes {
        n.stop().await;
    }
    Ok(rate(n as usize, wall, &h))
}

pub fn transport(args: &TransportBenchArgs) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut rows = Vec::new();
    for &w in &args.in_flight {
        let (mut tls, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..args.repeat.max(1) {
            tls.push(rt.block_on(transport_once(w, true, args.duration))?);
            plain.push(rt.block_on(transport_once(w, false, args.duration))?);
        }
        rows.push(TransportRow { in_flight: w, tls: median_by(tls), plain: median_by(plain) });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:>9} {:>12} {:>9} {:>9} {:>12} {:>9} {:>9} {:>7}",
            "in flight", "TLS rt/s", "p50 µs", "p99 µs", "plain rt/s", "p50 µs", "p99 µs", "ratio"
        );
        for r in &rows {
            let (a, b) = (&r.tls, &r.plain);
            println!(
                "{:>9} {:>12.0} {:>9.0} {:>9.0} {:>12.0} {:>9.0} {:>9.0} {:>6.2}×",
                r.in_flight,
                a.per_s,
                a.p50_us,
                a.p99_us,
                b.per_s,
                b.p50_us,
                b.p99_us,
                a.per_s / b.per_s
            );
        }
        println!(
            "(round trips between two nodes on loopback; medians of {} runs of {:?})",
            args.repeat.max(1),
            args.duration
        );
    }
    Ok(true)
}
