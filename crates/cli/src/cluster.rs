//! `agora node` (one node of a cluster file, on real TCP) and `agora cluster
//! up` (every node of the file as a local process, stopped cleanly together).

use crate::registry::{check_params, with_protocol, Runnable};
use crate::report::table;
use agora_core::config_file::FileError;
use agora_net::{probe, ClusterFile};
use agora_sim::scenario::protocol_of;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The cluster file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// This node's name in the cluster file.
    #[arg(long)]
    pub id: String,
    /// Stop when standard input closes (how `agora cluster up` stops its nodes).
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Start every node of a cluster file as a local process; Ctrl-C stops them all.
    Up(UpArgs),
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// The cluster file (TOML).
    pub config: PathBuf,
    /// Stop by itself after this long (e.g. "30s"), printing every node's status.
    #[arg(long = "for", value_parser = agora_core::duration_str::parse)]
    pub run_for: Option<Duration>,
}

/// Reads a cluster file and checks its protocol parameters.
fn load<P: Runnable>(path: &Path) -> Result<ClusterFile<P::Params>> {
    let cf = ClusterFile::<P::Params>::load(path)?;
    if let Err(e) = check_params::<P>(&cf.params, cf.node.len() as u32) {
        let err = FileError { path: cf.path.clone(), line: None, column: None, field: e.field, message: e.message };
        return Err(err.into());
    }
    Ok(cf)
}

fn protocol_in(path: &Path) -> Result<String> {
    let src = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(protocol_of(&path.display().to_string(), &src)?)
}

pub fn node(args: NodeArgs) -> Result<bool> {
    crate::init_logging();
    let protocol = protocol_in(&args.config)?;
    with_protocol!(&protocol, P => run_node::<P>(&args))
}

fn run_node<P: Runnable>(args: &NodeArgs) -> Result<bool> {
    let cf = load::<P>(&args.config)?;
    let cfg = cf.node_config(&args.id)?;
    let protocol = P::build(&cf.params, cf.node.len() as u32)(cfg.id);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let node = agora_net::start(cfg, protocol).await?;
        shutdown_signal(args.stop_on_stdin_eof).await;
        node.stop().await;
        Ok(true)
    })
}

/// Ctrl-C, SIGTERM, or (if asked) the end of standard input.
async fn shutdown_signal(stdin_eof: bool) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let eof = async {
        if !stdin_eof {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = eof => {}
    }
}

pub fn cluster(cmd: ClusterCmd) -> Result<bool> {
    match cmd {
        ClusterCmd::Up(args) => {
            let protocol = protocol_in(&args.config)?;
            with_protocol!(&protocol, P => up::<P>(&args))
        }
    }
}

fn up<P: Runnable>(args: &UpArgs) -> Result<bool> {
    let cf = load::<P>(&args.config)?;
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut children = Vec::new();
        for n in &cf.node {
            let child = tokio::process::Command::new(&exe)
                .args(["node", "--config"])
                .arg(&args.config)
                .args(["--id", &n.name, "--stop-on-stdin-eof"])
                .stdin(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start node {}", n.name))?;
            children.push((n.name.clone(), child));
        }
        let rows: Vec<(String, String)> = cf
            .node
            .iter()
            .map(|n| (n.name.clone(), format!("peers {}  http {}", n.listen, n.http.map_or("-".into(), |h| h.to_string()))))
            .collect();
        eprint!("{}", table(&rows));
        wait_ready(&cf).await;
        eprintln!("cluster of {} {} nodes is up; Ctrl-C stops it", cf.node.len(), cf.protocol);

        let deadline = args.run_for.map(|d| tokio::time::Instant::now() + d);
        let mut failed = None;
        loop {
            let tick = tokio::time::sleep(Duration::from_millis(200));
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
                _ = tick => {
                    for (name, c) in children.iter_mut() {
                        if let Ok(Some(status)) = c.try_wait() {
                            failed = Some(format!("node {name} exited on its own ({status}); stopping the cluster"));
                        }
                    }
                    if failed.is_some() {
                        break;
                    }
                }
            }
        }
        if failed.is_none() {
            print_status(&cf).await;
        }
        // Closing their stdin stops the nodes cleanly; stragglers are killed.
        for (_, c) in children.iter_mut() {
            drop(c.stdin.take());
        }
        let mut clean = true;
        for (name, mut c) in children {
            match tokio::time::timeout(Duration::from_secs(5), c.wait()).await {
                Ok(Ok(s)) if s.success() => {}
                Ok(Ok(s)) => {
                    eprintln!("node {name} exited with {s}");
                    clean = false;
                }
                _ => {
                    eprintln!("node {name} did not stop in 5 s; killing it");
                    let _ = c.kill().await;
                    clean = false;
                }
            }
        }
        if let Some(f) = failed {
            bail!(f);
        }
        eprintln!("cluster stopped");
        Ok(clean)
    })
}

/// Waits (up to 10 s) until every node answers `/health`.
async fn wait_ready<P>(cf: &ClusterFile<P>) {
    let start = Instant::now();
    for n in &cf.node {
        let Some(addr) = n.http else { continue };
        while start.elapsed() < Duration::from_secs(10) {
            let ok = tokio::task::spawn_blocking(move || {
                probe::request(addr, "GET", "/health", None, Duration::from_secs(1))
            })
            .await
            .ok()
            .and_then(|r| r.ok())
            .is_some_and(|(code, _)| code == 200);
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Prints each node's `/status` (outputs and protocol state) on stdout.
async fn print_status<P>(cf: &ClusterFile<P>) {
    for n in &cf.node {
        let Some(addr) = n.http else { continue };
        let status = tokio::task::spawn_blocking(move || probe::get_json(addr, "/status")).await;
        match status {
            Ok(Ok(s)) => println!("{} outputs={} protocol={}", n.name, s["outputs"], s["protocol"]),
            _ => println!("{} status unavailable", n.name),
        }
    }
}
