//! `agora node` (one node of a cluster file, on real TCP) and `agora cluster
//! up` (every node of the file as a local process, stopped cleanly together).

use crate::report::table;
use agora_core::config_file::FileError;
use agora_lab::registry::{check_params, Runnable};
use agora_lab::with_protocol;
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
    /// Append every output of the node to FILE, a JSON line each with its
    /// wall-clock time (what `cluster up --history` makes histories of).
    #[arg(long)]
    pub outputs: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Start every node of a cluster file as a local process; Ctrl-C stops them all.
    Up(UpArgs),
    /// Write a Prometheus scrape configuration for the cluster's nodes
    /// (each node's /metrics, labelled with its name; with the control token
    /// as bearer credentials when the file protects reads).
    Prometheus(PrometheusArgs),
    /// Generate every node's key pair and a control token: DIR/NAME.key
    /// (mode 0600), DIR/token, and DIR/cluster.toml (the file with each
    /// node's public_key and a `[security]` section; comments are not kept).
    Keys(KeysArgs),
}

#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    /// The cluster file (TOML).
    pub config: PathBuf,
    /// Where the keys, the token and the keyed cluster file go.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct PrometheusArgs {
    /// The cluster file (TOML).
    pub config: PathBuf,
    /// Where to write it (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How often Prometheus scrapes each node.
    #[arg(long, default_value = "5s", value_parser = agora_core::duration_str::parse)]
    pub interval: Duration,
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// The cluster file (TOML), or a scenario: its nodes then run as local
    /// processes on loopback ports from --base-port, for its `until`.
    pub config: PathBuf,
    /// Stop by itself after this long (e.g. "30s"), printing every node's status.
    #[arg(long = "for", value_parser = agora_core::duration_str::parse)]
    pub run_for: Option<Duration>,
    /// For a scenario: node i listens on BASE + 2i (peers) and BASE + 2i + 1 (HTTP).
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// For a scenario: bare loopback, without the links' delays and loss.
    #[arg(long)]
    pub no_link_emulation: bool,
    /// Write each replication group's client history to DIR/SERVICE.edn
    /// (as `agora history check --model kv` reads it) and check them when
    /// the cluster stops (telecom); the nodes' output logs go to DIR/outputs/.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Write every node's `/status` at the end to FILE, as a JSON list in
    /// the file's node order (null for a node that did not answer).
    #[arg(long, value_name = "FILE")]
    pub status_out: Option<PathBuf>,
}

/// What `cluster up` does to a scenario's processes, and when (from the
/// moment every node answers).
#[derive(Debug)]
enum Action {
    /// SIGKILL: no goodbye, as a crash.
    Kill(usize),
    /// Start the node again (from its disk, if it has one), with the fault
    /// layer it had (a new process starts with none).
    Restart(usize, agora_net::FaultLayer),
    /// The node's transport fault layer (`PUT /faults`).
    Faults(usize, agora_net::FaultLayer),
    /// `POST /input`.
    Input(usize, serde_json::Value),
}

/// Actions with their times, in order.
type Plan = Vec<(Duration, Action)>;

/// What a scenario's processes run through, planned from its file.
struct RealRun {
    plan: Plan,
    /// The failures it injects: (node, kind, seconds since the cluster is up).
    injected: Vec<(agora_core::NodeId, &'static str, f64)>,
    /// Entries real processes cannot take (named, for the user).
    skipped: Vec<String>,
}

/// Each node's links as the fault layer emulates them: the protocol's link
/// delays (a topology's RTTs; none for protocols without their own links)
/// and the scenario's `network.loss`, toward every other node.
fn emulated_links<P: Runnable>(path: &str, src: &str) -> Result<Vec<Vec<agora_net::faults::LinkFault>>> {
    use agora_sim::Model;
    let sc = agora_sim::scenario::Scenario::<P::Params>::from_str(path, src)?;
    let n = sc.nodes as usize;
    let model = P::network(&sc.params);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut links = vec![Vec::new(); n];
    for (v, out) in links.iter_mut().enumerate() {
        for w in (0..n).filter(|&w| w != v) {
            let (delay, jitter) = match &model {
                // The simulator scales a delay by a factor uniform in [1 - j, 1 + j].
                Some(Model::Matrix { site_of, latency, jitter }) => {
                    let d = ms(latency[site_of[v] as usize][site_of[w] as usize]);
                    (d * (1.0 - jitter), d * 2.0 * jitter)
                }
                Some(Model::Constant(d)) => (ms(*d), 0.0),
                Some(Model::Uniform { min, max }) => (ms(*min), ms(*max - *min)),
                _ => (0.0, 0.0),
            };
            // Pairs that are not linked carry no messages; the simulator's "never" is no delay to emulate.
            let (delay, jitter) = if delay + jitter > 600_000.0 { (0.0, 0.0) } else { (delay, jitter) };
            if delay > 0.0 || jitter > 0.0 || sc.network.loss > 0.0 {
                let peer = agora_core::NodeId(w as u32);
                out.push(agora_net::faults::LinkFault {
                    peer,
                    delay_ms: delay,
                    jitter_ms: jitter,
                    drop_rate: sc.network.loss,
                });
            }
        }
    }
    Ok(links)
}

/// The scenario's fault plan and inputs as actions on real processes, the
/// nodes starting with their emulated `links` (None: bare loopback).
fn plan_of(path: &str, src: &str, links: Option<Vec<Vec<agora_net::faults::LinkFault>>>) -> Result<RealRun> {
    use agora_sim::{Fault, Scope};
    let sc = agora_sim::scenario::Scenario::<toml::Value>::from_str(path, src)?;
    let n = sc.nodes as usize;
    let (links, loss) = match links {
        Some(links) => (links, sc.network.loss),
        None => (vec![Vec::new(); n], 0.0),
    };
    let mut layers: Vec<agora_net::FaultLayer> =
        links.into_iter().map(|links| agora_net::FaultLayer { links, ..Default::default() }).collect();
    let mut plan: Plan = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.links.is_empty())
        .map(|(v, l)| (Duration::ZERO, Action::Faults(v, l.clone())))
        .collect();
    let mut injected = Vec::new();
    let mut skipped = Vec::new();
    let mut faults = Vec::new();
    for (i, f) in sc.fault.iter().enumerate() {
        let resolved = f
            .get_ref()
            .resolve(sc.nodes, &sc.fragile)
            .map_err(|(field, e)| anyhow::anyhow!("{path}: fault[{i}].{field}: {e}"))?;
        faults.extend(resolved.into_iter().map(|(t, x)| (t, i, x)));
    }
    faults.sort_by_key(|f| f.0);
    for (at, i, fault) in faults {
        match fault {
            Fault::Crash(v) => {
                plan.push((at, Action::Kill(v.index())));
                injected.push((v, "crash", at.as_secs_f64()));
            }
            Fault::Recover { node, .. } => plan.push((at, Action::Restart(node.index(), layers[node.index()].clone()))),
            Fault::Omission { scope: Scope::Node(v), rate } => {
                // As in the simulator: what the node sends and what it is sent.
                let layer = &mut layers[v.index()];
                (layer.drop_rate, layer.receive_drop_rate) = (rate, rate);
                plan.push((at, Action::Faults(v.index(), layer.clone())));
                if rate > 0.0 {
                    injected.push((v, "omission", at.as_secs_f64()));
                }
            }
            Fault::Omission { scope: Scope::Link(a, b), rate } => {
                let layer = &mut layers[a.index()];
                let drop_rate = 1.0 - (1.0 - loss) * (1.0 - rate);
                match layer.links.iter_mut().find(|l| l.peer == b) {
                    Some(l) => l.drop_rate = drop_rate,
                    None => layer.links.push(agora_net::faults::LinkFault { peer: b, drop_rate, ..Default::default() }),
                }
                plan.push((at, Action::Faults(a.index(), layer.clone())));
            }
            Fault::Partition(groups) => {
                let sides = agora_lab::telecom::minority_sides(&groups, n);
                injected.extend(sides.into_iter().map(|v| (v, "partition", at.as_secs_f64())));
                let mut group = vec![groups.len(); n];
                for (g, members) in groups.iter().enumerate() {
                    for m in members {
                        group[m.index()] = g;
                    }
                }
                for v in 0..n {
                    layers[v].partition =
                        (0..n).filter(|&w| group[w] != group[v]).map(|w| agora_core::NodeId(w as u32)).collect();
                    plan.push((at, Action::Faults(v, layers[v].clone())));
                }
            }
            Fault::Heal => {
                for (v, layer) in layers.iter_mut().enumerate() {
                    layer.partition.clear();
                    plan.push((at, Action::Faults(v, layer.clone())));
                }
            }
            other => skipped.push(format!("fault[{i}] ({other:?})")),
        }
    }
    for inp in &sc.input {
        let inp = inp.get_ref();
        let value = serde_json::to_value(&inp.value).context("an input value as JSON")?;
        plan.push((inp.at, Action::Input(inp.node as usize, value)));
    }
    // Stable: the links at time 0 come before anything else at time 0.
    plan.sort_by_key(|p| p.0);
    Ok(RealRun { plan, injected, skipped })
}

/// The cluster file a scenario's nodes run with: its protocol and
/// parameters, nodes `n0`… on loopback ports from `base`.
fn cluster_from_scenario<P: Runnable>(path: &Path, src: &str, base: u16, out: &Path) -> Result<(PathBuf, Duration)> {
    let name = path.display().to_string();
    let t: toml::Table =
        toml::from_str(&agora_sim::scenario::head(src)).with_context(|| format!("{name} is not valid TOML"))?;
    let nodes =
        t.get("nodes").and_then(|v| v.as_integer()).filter(|&n| n > 0).context("the scenario has no `nodes`")?;
    let until = match t.get("until").and_then(|v| v.as_str()) {
        Some(u) => agora_core::duration_str::parse(u).map_err(|e| anyhow::anyhow!("{name}: until: {e}"))?,
        None => Duration::from_secs(60),
    };
    let mut cluster = toml::Table::new();
    for key in ["protocol", "params"] {
        if let Some(v) = t.get(key) {
            cluster.insert(key.into(), v.clone());
        }
    }
    // The protocol's names for its nodes (a topology's), else n0, n1, ….
    let names = t
        .get("params")
        .and_then(|p| p.clone().try_into::<P::Params>().ok())
        .and_then(|p| P::node_names(&p))
        .filter(|names| names.len() == nodes as usize)
        .unwrap_or_else(|| (0..nodes).map(|i| format!("n{i}")).collect());
    let mut list = Vec::new();
    for (i, name) in (0..nodes as u32).zip(names) {
        let port = |k: u32| -> Result<u16> {
            let p = base as u32 + 2 * i + k;
            let p =
                u16::try_from(p).map_err(|_| anyhow::anyhow!("--base-port {base}: node {i} would need port {p}"))?;
            std::net::TcpListener::bind(("127.0.0.1", p))
                .with_context(|| format!("--base-port {base}: port {p} for node {i} is in use"))?;
            Ok(p)
        };
        let mut n = toml::Table::new();
        n.insert("name".into(), name.into());
        n.insert("listen".into(), format!("127.0.0.1:{}", port(0)?).into());
        n.insert("http".into(), format!("127.0.0.1:{}", port(1)?).into());
        list.push(toml::Value::Table(n));
    }
    cluster.insert("node".into(), toml::Value::Array(list));
    std::fs::create_dir_all(out)?;
    let file = out.join("cluster.toml");
    std::fs::write(&file, toml::to_string(&cluster)?)?;
    Ok((file, until))
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
    let src = agora_core::config_file::read_text(path).map_err(anyhow::Error::msg)?;
    let name = path.display().to_string();
    crate::simulate::check_kind(&name, &src, crate::simulate::FileKind::Cluster)?;
    // Read without the node list, which can be long.
    let nodes = agora_core::config_file::cut_array_tables(&src, "node");
    Ok(protocol_of(&name, nodes.as_ref().map_or(src.as_str(), |c| c.rest.as_str()))?)
}

pub fn node(args: NodeArgs) -> Result<bool> {
    crate::init_logging();
    let protocol = protocol_in(&args.config)?;
    // The telecom system has a client API of its own (`/kv`).
    type Telecom = agora_telecom::node::Node;
    if protocol == <Telecom as Runnable>::NAME {
        return run_node::<Telecom>(&args, |params| {
            let topo = params.compile().map_err(anyhow::Error::msg);
            Some(topo.map(|t| crate::kv_api::api(std::sync::Arc::new(t))))
        });
    }
    with_protocol!(&protocol, P => run_node::<P>(&args, |_| None))
}

/// Runs one node, with its protocol's own HTTP endpoints if `api` gives them.
fn run_node<P: Runnable>(
    args: &NodeArgs,
    api: impl FnOnce(&P::Params) -> Option<Result<agora_net::Api<P>>>,
) -> Result<bool> {
    let cf = load::<P>(&args.config)?;
    let mut cfg = cf.node_config(&args.id)?;
    cfg.output_log = args.outputs.clone();
    let protocol = P::build(&cf.params, cf.node.len() as u32)(cfg.id);
    let api = api(&cf.params).transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let node = agora_net::start_with(cfg, protocol, api).await?;
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
            let src = agora_core::config_file::read_text(&args.config).map_err(anyhow::Error::msg)?;
            let name = args.config.display().to_string();
            if crate::simulate::check_kind(&name, &src, crate::simulate::FileKind::Cluster).is_err() {
                // A scenario: the same file, as real processes.
                let stem = args.config.file_stem().map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
                let run = run_dir(&format!("{stem}-cluster"))?;
                let protocol = protocol_of(&name, &src)?;
                let (file, until) = with_protocol!(&protocol, P => cluster_from_scenario::<P>(&args.config, &src, args.base_port, run.path()))?;
                let links = match args.no_link_emulation {
                    true => None,
                    false => Some(with_protocol!(&protocol, P => emulated_links::<P>(&name, &src))?),
                };
                let run = plan_of(&name, &src, links)?;
                if !run.skipped.is_empty() {
                    eprintln!("not applied on real processes: {}", run.skipped.join(", "));
                }
                let args = UpArgs { config: file, run_for: args.run_for.or(Some(until)), ..args };
                return with_protocol!(&protocol, P => up::<P>(&args, Some(&run)));
            }
            let protocol = protocol_in(&args.config)?;
            with_protocol!(&protocol, P => up::<P>(&args, None))
        }
        ClusterCmd::Prometheus(args) => {
            let protocol = protocol_in(&args.config)?;
            let yaml = with_protocol!(&protocol, P => prometheus_config(&load::<P>(&args.config)?, args.interval))?;
            match &args.out {
                Some(out) => {
                    std::fs::write(out, yaml).with_context(|| format!("cannot write {}", out.display()))?;
                    eprintln!("scrape configuration written to {}", out.display());
                }
                None => print!("{yaml}"),
            }
            Ok(true)
        }
        ClusterCmd::Keys(args) => {
            let keyed = write_keys(&args.config, &args.out, None)?;
            eprintln!(
                "keys for every node, a control token ({}) and the keyed cluster file {} written; copy each NAME.key only to its own machine",
                args.out.join("token").display(),
                keyed.display()
            );
            Ok(true)
        }
    }
}

/// Generates the keys and token of `config`'s nodes into `out`, and writes
/// `out/cluster.toml`: the same file with each node's `public_key`, a
/// `[security]` section pointing at them, and `data_dir` if given and absent.
pub(crate) fn write_keys(config: &Path, out: &Path, data_dir: Option<&Path>) -> Result<PathBuf> {
    let src = agora_core::config_file::read_text(config).map_err(anyhow::Error::msg)?;
    let mut doc: toml::Table = toml::from_str(&src).with_context(|| format!("{} is not TOML", config.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let nodes = doc.get_mut("node").and_then(|n| n.as_array_mut()).context("the cluster file has no [[node]]")?;
    for (i, n) in nodes.iter_mut().enumerate() {
        let t = n.as_table_mut().with_context(|| format!("node[{i}] is not a table"))?;
        let name =
            t.get("name").and_then(|v| v.as_str()).with_context(|| format!("node[{i}] has no name"))?.to_string();
        let key = agora_net::security::generate_key();
        let path = out.join(format!("{name}.key"));
        agora_net::security::write_key(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
        t.insert("public_key".into(), agora_net::security::public_key_string(&key.verifying_key()).into());
    }
    let token = out.join("token");
    agora_net::security::write_secret(&token, &agora_net::security::generate_token())
        .with_context(|| format!("cannot write {}", token.display()))?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let mut sec = toml::Table::new();
    sec.insert("key_dir".into(), abs(out).into());
    sec.insert("token_file".into(), abs(&token).into());
    if let Some(old) = doc.get("security").and_then(|s| s.as_table()) {
        if let Some(p) = old.get("protect_reads") {
            sec.insert("protect_reads".into(), p.clone());
        }
    }
    doc.insert("security".into(), sec.into());
    if let (Some(d), false) = (data_dir, doc.contains_key("data_dir")) {
        doc.insert("data_dir".into(), abs(d).into());
    }
    let keyed = out.join("cluster.toml");
    std::fs::write(&keyed, toml::to_string(&doc)?).with_context(|| format!("cannot write {}", keyed.display()))?;
    Ok(keyed)
}

/// A Prometheus scrape configuration for the cluster's nodes: one job, a
/// target per node with an HTTP address, labelled `node`. Reads protected by
/// the token get it as bearer credentials from the token file (Prometheus
/// reads the file, so the token itself is not copied into the configuration).
fn prometheus_config<P>(cf: &ClusterFile<P>, interval: Duration) -> Result<String> {
    let mut job = serde_json::json!({
        "job_name": format!("agora-{}", cf.protocol),
        "scrape_interval": format!("{}ms", interval.as_millis().max(1)),
        "metrics_path": "/metrics",
        "static_configs": cf.node.iter().filter_map(|n| Some(serde_json::json!({
            "targets": [n.http?.to_string()],
            "labels": {"node": n.name},
        }))).collect::<Vec<_>>(),
    });
    if job["static_configs"].as_array().is_some_and(|t| t.is_empty()) {
        bail!("{}: no node has an `http` address to scrape", cf.path);
    }
    if cf.security.protect_reads {
        let Some(token) = &cf.security.token_file else {
            bail!("{}: reads are protected but [security] names no token_file", cf.path);
        };
        let token = std::path::absolute(token).unwrap_or_else(|_| token.clone());
        job["authorization"] = serde_json::json!({"type": "Bearer", "credentials_file": token});
    }
    // JSON is YAML: Prometheus reads it as it is.
    let doc = serde_json::json!({"scrape_configs": [job]});
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

/// A folder for a run's ephemeral keys, token and data, gone when the run
/// ends: a fresh random name in the temp directory, made with mode 0700 —
/// never one that exists already, so nobody else can have planted links
/// or files in it, nor read what it holds.
pub(crate) fn run_dir(stem: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!("agora-{stem}-"))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .with_context(|| format!("cannot create a run folder in {}", std::env::temp_dir().display()))
}

fn up<P: Runnable>(args: &UpArgs, run: Option<&RealRun>) -> Result<bool> {
    let plan: &[(Duration, Action)] = run.map_or(&[], |r| &r.plan);
    let cf = load::<P>(&args.config)?;
    // A file without keys runs with ephemeral ones, made for this run.
    let keyless = cf.node.iter().all(|n| n.public_key.is_none()) && !cf.security.plaintext;
    let mut _ephemeral = None;
    let config = if keyless {
        let stem = args.config.file_stem().map_or("cluster".into(), |s| s.to_string_lossy().into_owned());
        let run = run_dir(&stem)?;
        let keyed = write_keys(&args.config, run.path(), Some(&run.path().join("data")))?;
        eprintln!(
            "{} has no keys: this run uses ephemeral keys in {} (removed when it stops); control token in {}; Prometheus scrape configuration in {}",
            args.config.display(),
            run.path().display(),
            run.path().join("token").display(),
            run.path().join("prometheus.yml").display()
        );
        _ephemeral = Some(run);
        keyed
    } else {
        args.config.clone()
    };
    let cf = load::<P>(&config)?;
    if let Some(run) = &_ephemeral {
        std::fs::write(run.path().join("prometheus.yml"), prometheus_config(&cf, Duration::from_secs(5))?)?;
    }
    let token = match &_ephemeral {
        Some(run) => std::fs::read_to_string(run.path().join("token")).ok().map(|t| t.trim().to_string()),
        None => None,
    };
    if !plan.is_empty() && token.is_none() {
        bail!("a fault plan needs the control token of an ephemeral run");
    }
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    let logs = match &args.history {
        Some(_) if P::cluster_histories(&cf.params, &[], &[]).is_none() => {
            bail!("--history: the {} protocol keeps no client data", P::NAME)
        }
        Some(dir) => Some(output_logs(dir, &cf)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let spawn = |name: &str| {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("node");
            if let Some(logs) = &logs {
                cmd.arg("--outputs").arg(logs.join(format!("{name}.jsonl")));
            }
            cmd.arg("--config")
                .arg(&config)
                .args(["--id", name, "--stop-on-stdin-eof"])
                .stdin(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start node {name}"))
        };
        let mut children = Vec::new();
        for n in &cf.node {
            children.push((n.name.clone(), spawn(&n.name)?));
        }
        // Nodes the plan has killed, whose exit is no failure.
        let mut killed = vec![false; children.len()];
        let rows: Vec<(String, String)> = cf
            .node
            .iter()
            .map(|n| (n.name.clone(), format!("peers {}  http {}", n.listen, n.http.map_or("-".into(), |h| h.to_string()))))
            .collect();
        say(format_args!("{}", table(&rows).trim_end()));
        wait_ready(&cf.node).await;
        say(format_args!("cluster of {} {} nodes is up; Ctrl-C stops it", cf.node.len(), cf.protocol));
        if let Some(t) = &cf.security.token_file {
            say(format_args!("cluster file {} (HTTP addresses above); control token in {}", config.display(), t.display()));
        }
        if P::NAME == <agora_telecom::node::Node as Runnable>::NAME {
            say(format_args!("client API: agora kv get|put|cas --cluster {} [--node NAME] GROUP KEY …", config.display()));
        }

        let begin = tokio::time::Instant::now();
        let deadline = args.run_for.map(|d| begin + d);
        let mut failed = None;
        let mut next = plan.iter().peekable();
        loop {
            let tick = tokio::time::sleep(Duration::from_millis(200));
            let due = next.peek().map(|(at, _)| begin + *at);
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
                _ = async { match due { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    let (at, action) = next.next().expect("a due action");
                    let what = apply(action, &cf, &mut children, &mut killed, token.as_deref().unwrap_or_default(), &spawn).await;
                    say(format_args!("t = {:.1} s: {what}", at.as_secs_f64()));
                }
                _ = tick => {
                    for (i, (name, c)) in children.iter_mut().enumerate() {
                        if killed[i] {
                            continue;
                        }
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
        let mut statuses = Vec::new();
        if failed.is_none() {
            statuses = print_status::<P>(&cf, begin).await;
            if let Some(file) = &args.status_out {
                let list: Vec<&serde_json::Value> = statuses.iter().map(|s| s.as_ref().map_or(&serde_json::Value::Null, |s| &s.1)).collect();
                std::fs::write(file, serde_json::to_string(&list)?)
                    .with_context(|| format!("--status-out: cannot write {}", file.display()))?;
            }
            if let Some(report) = run.and_then(|r| P::cluster_report(&cf.params, &r.injected, &statuses)) {
                print!("\n{report}");
            }
        }
        // Closing their stdin stops the nodes cleanly; stragglers are killed.
        for (_, c) in children.iter_mut() {
            drop(c.stdin.take());
        }
        let mut clean = true;
        for (i, (name, mut c)) in children.into_iter().enumerate() {
            if killed[i] {
                continue;
            }
            match tokio::time::timeout(Duration::from_secs(5), c.wait()).await {
                Ok(Ok(s)) if s.success() => {}
                Ok(Ok(s)) => {
                    say(format_args!("node {name} exited with {s}"));
                    clean = false;
                }
                _ => {
                    say(format_args!("node {name} did not stop in 5 s; killing it"));
                    let _ = c.kill().await;
                    clean = false;
                }
            }
        }
        if let Some(f) = failed {
            bail!(f);
        }
        say(format_args!("cluster stopped"));
        if let (Some(dir), Some(logs)) = (&args.history, &logs) {
            write_histories::<P>(&cf, &statuses, dir, logs)?;
        }
        Ok(clean)
    })
}

/// The folder the nodes' output logs go to (DIR/outputs), emptied of a
/// previous run's logs of these nodes: a run's histories are its own.
fn output_logs<P>(dir: &Path, cf: &ClusterFile<P>) -> Result<PathBuf> {
    let logs = dir.join("outputs");
    std::fs::create_dir_all(&logs).with_context(|| format!("--history: cannot create {}", logs.display()))?;
    for n in &cf.node {
        let file = logs.join(format!("{}.jsonl", n.name));
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                bail!("--history: cannot remove the old {}: {e}", file.display())
            }
            _ => {}
        }
    }
    Ok(logs)
}

/// Makes the run's client histories of the nodes' output logs, writes them
/// to `dir` and prints their verdicts.
fn write_histories<P: Runnable>(
    cf: &ClusterFile<P::Params>,
    statuses: &[Option<(f64, serde_json::Value)>],
    dir: &Path,
    logs: &Path,
) -> Result<()> {
    let mut texts = Vec::new();
    for (i, n) in cf.node.iter().enumerate() {
        let file = logs.join(format!("{}.jsonl", n.name));
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        texts.push((agora_core::NodeId(i as u32), text));
    }
    let found = P::cluster_histories(&cf.params, statuses, &texts).context("checked before the run")?;
    let (files, summary) = found.map_err(|e| anyhow::anyhow!("--history: {e}"))?;
    for (name, text) in files {
        let file = dir.join(name);
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("history: {}", file.display());
    }
    println!("{summary}");
    Ok(())
}

/// Carries out one planned action; says what it did.
async fn apply<P>(
    action: &Action,
    cf: &ClusterFile<P>,
    children: &mut [(String, tokio::process::Child)],
    killed: &mut [bool],
    token: &str,
    spawn: &impl Fn(&str) -> Result<tokio::process::Child>,
) -> String {
    let http = |i: usize| cf.node.get(i).and_then(|n| n.http);
    let name = |i: usize| cf.node.get(i).map_or_else(|| format!("node {i}"), |n| n.name.clone());
    // `shown`: what the log says was sent (a fault layer's JSON, with its links, is long).
    let send = |i: usize, method: &'static str, path: &'static str, body: String, shown: String| {
        let (addr, token, node) = (http(i), token.to_string(), name(i));
        async move {
            let Some(addr) = addr else { return format!("{node} has no HTTP address") };
            let r = tokio::task::spawn_blocking(move || {
                probe::request_with_token(addr, method, path, Some(&body), Some(&token), Duration::from_secs(2))
            })
            .await;
            match r {
                Ok(Ok((code, _))) if code < 300 => format!("{method} {path} on {node}: {shown}"),
                Ok(Ok((code, reply))) => format!("{method} {path} on {node} refused (HTTP {code}): {}", reply.trim()),
                _ => format!("{method} {path} on {node} failed: the node did not answer"),
            }
        }
    };
    let put_layer = |i: usize, layer: &agora_net::FaultLayer| {
        send(i, "PUT", "/faults", serde_json::to_string(layer).unwrap_or_default(), summary(layer, &name))
    };
    match action {
        Action::Kill(i) => {
            let c = &mut children[*i].1;
            let _ = c.start_kill();
            let _ = c.wait().await;
            killed[*i] = true;
            format!("killed {} (SIGKILL)", name(*i))
        }
        Action::Restart(i, layer) => match spawn(&children[*i].0) {
            Ok(c) => {
                children[*i].1 = c;
                killed[*i] = false;
                if *layer == agora_net::FaultLayer::default() {
                    return format!("restarted {}", name(*i));
                }
                wait_ready(&cf.node[*i..=*i]).await;
                format!("restarted {}; {}", name(*i), put_layer(*i, layer).await)
            }
            Err(e) => format!("could not restart {}: {e}", name(*i)),
        },
        Action::Faults(i, layer) => put_layer(*i, layer).await,
        Action::Input(i, value) => send(*i, "POST", "/input", value.to_string(), value.to_string()).await,
    }
}

/// A fault layer in a few words, for the log.
fn summary(layer: &agora_net::FaultLayer, name: &dyn Fn(usize) -> String) -> String {
    let mut parts = Vec::new();
    if layer.drop_rate > 0.0 || layer.receive_drop_rate > 0.0 {
        parts.push(format!("drops {} sent, {} received", layer.drop_rate, layer.receive_drop_rate));
    }
    if layer.delay_ms > 0 {
        parts.push(format!("{} ms delay", layer.delay_ms));
    }
    if !layer.partition.is_empty() {
        let cut: Vec<String> = layer.partition.iter().map(|p| name(p.0 as usize)).collect();
        parts.push(format!("cut off from {}", cut.join(" ")));
    }
    if !layer.links.is_empty() {
        let (lo, hi) =
            layer.links.iter().fold((f64::INFINITY, 0f64), |(lo, hi), l| (lo.min(l.delay_ms), hi.max(l.delay_ms)));
        let lossy: Vec<String> = layer
            .links
            .iter()
            .filter(|l| l.drop_rate > 0.0)
            .map(|l| format!("{} {}", name(l.peer.0 as usize), l.drop_rate))
            .collect();
        let mut s = format!("{} links, {lo:.2}–{hi:.2} ms", layer.links.len());
        if !lossy.is_empty() {
            s += &format!(", dropping toward {}", lossy.join(", "));
        }
        parts.push(s);
    }
    if parts.is_empty() {
        "no faults".into()
    } else {
        parts.join("; ")
    }
}

/// Waits (up to 10 s) until every node answers `/health`.
pub(crate) async fn wait_ready(nodes: &[agora_net::config::NodeEntry]) {
    let start = Instant::now();
    for n in nodes {
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

/// Prints a line per node of its `/status` (uptime, outputs and the
/// protocol's [`Runnable::status_line`]) on stdout; returns the statuses
/// with when each node's process started, in seconds since `begin` (from
/// its uptime).
async fn print_status<P: Runnable>(
    cf: &ClusterFile<P::Params>,
    begin: tokio::time::Instant,
) -> Vec<Option<(f64, serde_json::Value)>> {
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for n in &cf.node {
        let Some(addr) = n.http else {
            out.push(None);
            continue;
        };
        let status = tokio::task::spawn_blocking(move || probe::get_json(addr, "/status")).await;
        match status {
            Ok(Ok(s)) => {
                let uptime = s["uptime_s"].as_f64().unwrap_or(0.0);
                let line = P::status_line(&s);
                let line = if line.is_empty() { String::new() } else { format!("; {line}") };
                rows.push((n.name.clone(), format!("up {uptime:.1} s; {} outputs{line}", s["outputs"])));
                out.push(Some((begin.elapsed().as_secs_f64() - uptime, s)));
            }
            _ => {
                rows.push((n.name.clone(), "no status: the node did not answer (killed, or not up)".into()));
                out.push(None);
            }
        }
    }
    print!("{}", table(&rows));
    out
}

/// Writes a progress line to stderr in one write: the nodes' processes
/// share this stderr, and a line written in pieces (as `eprintln!` does
/// with arguments) interleaves with their logs.
fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_folders_are_fresh_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let (a, b) = (run_dir("stem").unwrap(), run_dir("stem").unwrap());
        assert_ne!(a.path(), b.path(), "never the same folder twice");
        for d in [&a, &b] {
            let name = d.path().file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("agora-stem-") && name.len() > "agora-stem-".len(), "{name}");
            assert_eq!(d.path().parent(), Some(std::env::temp_dir().as_path()));
            let mode = std::fs::metadata(d.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{name} is its owner's only");
        }
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists(), "removed when the run ends");
    }
}
