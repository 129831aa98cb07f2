//! `agora sim` and `agora replay`: run a scenario file in the simulator,
//! report, trace, and replay a trace to check it bit for bit.

use crate::report::{count, table};
use agora_core::Time;
use agora_lab::registry::{build, load, Runnable};
use agora_lab::with_protocol;
use agora_sim::scenario::protocol_of;
use agora_sim::trace::{hex, JsonLines, TraceRecord, TraceSink};
use agora_sim::SimError;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Overrides the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// Write every event as a JSON line to this file (replay it with `agora replay`).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write a self-contained HTML report with charts: to PATH itself when
    /// it ends in .html or .htm, else to PATH/index.html (protocols that
    /// have one: telecom).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write each replication group's client history to DIR/SERVICE.edn, as
    /// `agora history check --model kv` reads it (protocols with data: telecom).
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
}

/// The first line of a trace file: what to re-run.
#[derive(Serialize, Deserialize)]
struct TraceHeader {
    agora_trace: u32,
    scenario_path: String,
    seed: u64,
    scenario: String,
}

/// A trace file for a run of `scenario` (its text; `scenario_path` names
/// it) with `seed`: the header `agora replay` reads, then one line an event.
pub fn trace_file(path: &Path, scenario_path: &str, seed: u64, scenario: &str) -> Result<JsonLines<BufWriter<File>>> {
    let mut w = BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?);
    let header =
        TraceHeader { agora_trace: 1, scenario_path: scenario_path.to_string(), seed, scenario: scenario.to_string() };
    serde_json::to_writer(&mut w, &header)?;
    w.write_all(b"\n")?;
    Ok(JsonLines(w))
}

fn read(path: &Path) -> Result<String> {
    agora_core::config_file::read_text(path).map_err(anyhow::Error::msg)
}

/// The two kinds of TOML file the command takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `agora sim`: `nodes = N` and a fault plan.
    Scenario,
    /// `agora cluster up` / `agora node`: `[[node]]` entries with addresses.
    Cluster,
}

/// An error naming the right command when `src` is plainly the other kind
/// of file (a cluster file given to `agora sim`, a scenario to `cluster up`).
pub fn check_kind(path: &str, src: &str, want: FileKind) -> Result<()> {
    // The parser names the error. A cluster's nodes and a scenario's inputs
    // are left out: big lists, which decide nothing but that they are there.
    let node_tables = agora_core::config_file::cut_array_tables(src, "node");
    let text = node_tables.as_ref().map_or(src, |c| c.rest.as_str());
    let Ok(t) = toml::from_str::<toml::Table>(&agora_sim::scenario::head(text)) else { return Ok(()) };
    let is_cluster = (node_tables.is_some() || t.get("node").is_some_and(|n| n.is_array())) && !t.contains_key("nodes");
    let is_scenario = t.get("nodes").is_some_and(|n| n.is_integer()) && !t.contains_key("node");
    match want {
        FileKind::Scenario if is_cluster => {
            bail!("{path} is a cluster file ([[node]] entries with addresses), not a scenario: run it with `agora cluster up {path}`, or give `agora sim` a scenario (`nodes = N`)")
        }
        FileKind::Cluster if is_scenario => {
            bail!("{path} is a scenario (`nodes = N`), not a cluster file: run it with `agora sim {path}`, or give a cluster file ([[node]] entries with addresses)")
        }
        _ => Ok(()),
    }
}

pub fn run(args: SimArgs) -> Result<bool> {
    let path = args.scenario.display().to_string();
    let src = read(&args.scenario)?;
    check_kind(&path, &src, FileKind::Scenario)?;
    let protocol = protocol_of(&path, &src)?;
    with_protocol!(&protocol, P => run_typed::<P>(&args, &path, &src))
}

fn run_typed<P: Runnable>(args: &SimArgs, path: &str, src: &str) -> Result<bool> {
    let sc = load::<P>(path, src)?;
    let warnings: Vec<String> = agora_lab::registry::warnings::<P>(&sc).iter().map(|w| w.to_string()).collect();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let seed = args.seed.unwrap_or(sc.seed);
    let mut sim = build::<P>(&sc, seed, false);
    if let Some(t) = &args.trace {
        sim.set_trace_sink(trace_file(t, path, seed, src)?);
    }
    let limit = Time::ZERO + sc.until;
    let bar = crate::report::progress(limit.as_nanos(), "simulated");
    let started = Instant::now();
    let result = sim.run(limit, sc.max_events.unwrap_or(u64::MAX), &mut |now| bar.set_position(now.as_nanos()));
    let wall = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    sim.finish_trace()?;
    let violation = match &result {
        Ok(_) => None,
        Err(e @ SimError::Invariant { .. }) => Some(e.to_string()),
        Err(e) => bail!("{e}"),
    };
    let stats = sim.stats();
    let events_per_s = stats.events as f64 / wall.max(1e-9);
    let outcome = P::outcome(&sc.params, sc.nodes, &sim);
    if let Some(to) = &args.report {
        let title = if sc.name.is_empty() { path.to_string() } else { sc.name.clone() };
        let page = P::html(&sc.params, &sim, &title)
            .ok_or_else(|| anyhow::anyhow!("--report: the {} protocol has no HTML report", P::NAME))?
            .map_err(anyhow::Error::msg)?;
        let file = report_file(to);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&file, page).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("report: {}", file.display());
    }
    if let Some(dir) = &args.history {
        let files = P::histories(&sc.params, &sim)
            .ok_or_else(|| anyhow::anyhow!("--history: the {} protocol keeps no client data", P::NAME))?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in files {
            let file = dir.join(name);
            std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!("history: {}", file.display());
        }
    }
    let stop = match &result {
        Ok(r) => serde_json::to_value(r.stop)?.as_str().unwrap_or_default().to_string(),
        Err(_) => "invariant_violation".to_string(),
    };
    if args.json {
        let report = serde_json::json!({
            "scenario": sc.name,
            "path": path,
            "protocol": sc.protocol,
            "nodes": sc.nodes,
            "seed": seed,
            "stop": stop,
            "events": stats.events,
            "sim_time": sim.now().as_secs_f64(),
            "wall_time_s": wall,
            "events_per_s": events_per_s,
            "trace_hash": hex(sim.trace_hash()),
            "messages_sent": stats.messages_sent,
            "messages_by_kind": stats.messages_by_kind,
            "delivered_by_kind": stats.delivered_by_kind,
            "dropped": stats.dropped,
            "duplicated": stats.duplicated,
            "timers_fired": stats.timers_fired,
            "inputs": stats.inputs,
            "inputs_refused": stats.inputs_refused,
            "outputs": stats.outputs,
            "counters": stats.counters,
            "messages_by_service": stats.messages_by_service,
            "service_counters": crate::simulate::service_counters(stats),
            "disk": stats.disk,
            "max_message_bytes": stats.max_message_bytes,
            "faults": {"crashes": stats.crashes, "recoveries": stats.recoveries, "fragile_toggles": stats.fragile_toggles},
            "invariant_violation": violation,
            "warnings": warnings,
            "outcome": outcome,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut rows = vec![
            ("scenario".to_string(), format!("{} ({path})", if sc.name.is_empty() { "-" } else { &sc.name })),
            ("protocol".into(), format!("{}, {} nodes, seed {seed}", sc.protocol, sc.nodes)),
            (
                "run".into(),
                format!(
                    "stopped ({stop}) at t = {} after {} events; {:.2} s wall, {} events/s",
                    sim.now(),
                    count(stats.events),
                    wall,
                    count(events_per_s as u64)
                ),
            ),
            ("sent".into(), kinds(&stats.messages_by_kind.to_map())),
            ("delivered".into(), kinds(&stats.delivered_by_kind.to_map())),
        ];
        if stats.dropped.total() > 0 {
            rows.push(("dropped".into(), kinds(&stats.dropped.to_map())));
        }
        if stats.crashes + stats.fragile_toggles > 0 {
            rows.push((
                "faults".into(),
                format!(
                    "{} crashes, {} recoveries, {} fragile toggles",
                    stats.crashes, stats.recoveries, stats.fragile_toggles
                ),
            ));
        }
        if stats.counters.total() > 0 {
            rows.push(("counters".into(), kinds(&stats.counters.to_map())));
        }
        let mut by_service: std::collections::BTreeMap<&str, std::collections::BTreeMap<&'static str, u64>> =
            Default::default();
        for (&(service, name), &v) in &stats.service_counters {
            by_service.entry(service).or_default().insert(name, v);
        }
        for (service, counts) in by_service {
            rows.push((format!("counters {service}"), kinds(&counts)));
        }
        let report = P::report(&outcome);
        if report.is_none() {
            rows.push(("outcome".into(), outcome.to_string()));
        }
        rows.push(("trace hash".into(), hex(sim.trace_hash())));
        // What the run was, then the protocol's report (its verdict
        // first), then the run's messages and counters.
        let details = rows.split_off(3);
        print!("{}", table(&rows));
        if let Some(r) = report {
            print!("\n{r}\n");
        }
        print!("{}", table(&details));
        match &violation {
            Some(v) => eprintln!("INVARIANT VIOLATED: {v}"),
            None => println!("invariants held after every event"),
        }
    }
    Ok(violation.is_none())
}

fn kinds(m: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter().map(|(k, v)| format!("{k} {}", count(*v))).collect::<Vec<_>>().join(", ")
}

/// Compares each replayed event with the next line of the recorded trace.
struct Verifier {
    path: String,
    lines: std::io::Lines<BufReader<File>>,
    line: usize,
}

impl TraceSink for Verifier {
    fn record(&mut self, rec: &TraceRecord) -> std::io::Result<()> {
        self.line += 1;
        let at = format!("{}:{}", self.path, self.line);
        let text = match self.lines.next() {
            None => {
                return Err(std::io::Error::other(format!(
                    "{at}: the trace ends, but the replay goes on (event {})",
                    rec.i
                )))
            }
            Some(l) => l?,
        };
        // Compared as text: the replayed record written as the recording
        // was. (Parsing the recorded line would round its floats.)
        let replayed = serde_json::to_string(rec).map_err(std::io::Error::other)?;
        if replayed != text {
            let recorded: TraceRecord = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::other(format!("{at}: not a trace record: {e}")))?;
            return Err(std::io::Error::other(format!(
                "{at}: replay diverges at event {}:\n  recorded: {text}\n  replayed: {replayed}",
                recorded.i
            )));
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self.lines.next() {
            Some(_) => Err(std::io::Error::other(format!(
                "{}:{}: the trace has more events than the replay",
                self.path,
                self.line + 1
            ))),
            None => Ok(()),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// A trace written by `agora sim --trace`.
    pub trace: PathBuf,
}

pub fn replay(args: ReplayArgs) -> Result<bool> {
    let path = args.trace.display().to_string();
    let file = File::open(&args.trace).with_context(|| format!("cannot open {path}"))?;
    let mut lines = BufReader::new(file).lines();
    let first = lines.next().transpose()?.with_context(|| format!("{path}:1: empty file, not an agora trace"))?;
    let header: TraceHeader = serde_json::from_str(&first).with_context(|| {
        format!("{path}:1: not an agora trace header (expected agora_trace, scenario_path, seed, scenario)")
    })?;
    if header.agora_trace != 1 {
        bail!("{path}:1: trace format {} is not supported (this build reads format 1)", header.agora_trace);
    }
    let label = format!("{} (embedded in {path})", header.scenario_path);
    let protocol = protocol_of(&label, &header.scenario)?;
    with_protocol!(&protocol, P => {
        let sc = load::<P>(&label, &header.scenario)?;
        let mut sim = build::<P>(&sc, header.seed, false);
        sim.set_trace_sink(Verifier { path: path.clone(), lines, line: 1 });
        let report = sim.run(Time::ZERO + sc.until, sc.max_events.unwrap_or(u64::MAX), &mut |_| {});
        let events = sim.stats().events;
        match report {
            Err(SimError::Trace(e)) => bail!("{e}"),
            Err(e) => println!("replay reproduced the recorded invariant violation: {e}"),
            Ok(_) => {}
        }
        sim.finish_trace().map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("replayed {} events of {}: identical, trace hash {}", count(events), sc.path, hex(sim.trace_hash()));
        Ok(true)
    })
}

/// A composed node's counters, by service.
fn service_counters(stats: &agora_sim::Stats) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (&(service, name), &v) in &stats.service_counters {
        let e = out.entry(service).or_insert_with(|| serde_json::json!({}));
        e[name] = v.into();
    }
    out.into()
}

/// Where `--report PATH` writes: PATH when it names an HTML file, else
/// PATH/index.html.
fn report_file(to: &Path) -> PathBuf {
    let html = to.extension().is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if html {
        to.to_path_buf()
    } else {
        to.join("index.html")
    }
}
