//! The telecom system's simulated runs: its link model, and the report of a
//! finished run — per-node metrics, the bottleneck ranking over them, the
//! faults injected and when (and how) they were detected, failovers with
//! recovery times, the cascading-failure levels, request outcomes and the
//! seed's load-balancing metrics.

pub mod accounting;
pub mod experiments;
pub mod history;

use crate::stats::quantile;
use agora_core::{NodeId, Time};
use agora_sim::{Fault, Model, Scope, Sim};
use agora_telecom::api::NodeManager;
use agora_telecom::balance::{coefficient_of_variation, jain_index};
use agora_telecom::node::{self, client, control, counters, server, Detection, Level, Node, Output};
use agora_telecom::rank;
use agora_telecom::topology::Topology;
use serde::Serialize;
use std::time::Duration;

/// The simulator's delays for a topology: half the RTT on each link, the
/// shortest path's sum between nodes that are not neighbours (messages
/// only ever cross links, so those are never used), with the topology's jitter.
pub fn links(topo: &Topology) -> Model<Node> {
    let never = Duration::from_secs(3600);
    let latency = topo
        .one_way_ms
        .iter()
        .map(|row| {
            row.iter().map(|&ms| if ms.is_finite() { Duration::from_secs_f64(ms / 1e3) } else { never }).collect()
        })
        .collect();
    Model::Matrix { site_of: (0..topo.len() as u16).collect(), latency, jitter: topo.params.jitter }
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub up: bool,
    pub served: u64,
    pub req_per_s: f64,
    /// Busy slots over time: the model's CPU utilization.
    pub cpu_percent: f64,
    /// Mean time a served request spent at the node (queue + service).
    pub latency_ms: f64,
    pub tx_per_s: f64,
    pub max_queue: u64,
    pub shed: u64,
}

#[derive(Debug, Serialize)]
pub struct FailureReport {
    pub node: String,
    pub kind: &'static str,
    pub injected_at_s: f64,
    pub detected_at_s: Option<f64>,
    pub detection_s: Option<f64>,
    pub detected_by: Option<String>,
    pub how: Option<Detection>,
}

#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub service: String,
    pub from: String,
    pub to: Option<String>,
    pub by: String,
    pub at_s: f64,
    /// Since the latest fault injected at `from` or `by` before the failover.
    pub recovery_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CascadeReport {
    pub service: String,
    pub level: Level,
    pub by: String,
    pub at_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Requests {
    /// Issued, succeeded, failed by cause, in flight at the end, serviceable.
    #[serde(flatten)]
    pub total: accounting::Tally,
    pub failed: u64,
    /// Succeeded over ended (succeeded + failed).
    pub success_ratio: f64,
    /// Serviceable succeeded over serviceable (see [`accounting`]).
    pub serviceable_ratio: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Attempts sent per request (n-way requests count every member).
    pub attempts_per_request: f64,
    pub retries: u64,
    pub retry_budget_exhausted: u64,
    /// Accepted replies holding a value no client wrote to the key (the
    /// harness knows every value written; a single-replica read cannot tell).
    pub wrong_answers_accepted: u64,
    /// The same accounting per group and per fault window.
    pub groups: Vec<accounting::GroupTally>,
    pub windows: Vec<accounting::Window>,
    /// Where a PBFT-ordered group had more faulty members than it tolerates.
    pub beyond_f: Vec<accounting::BeyondF>,
}

#[derive(Debug, Serialize)]
pub struct LoadBalancing {
    pub strategy: agora_telecom::balance::Strategy,
    /// Jain's fairness index of the servers' utilization (1 = even).
    pub load_balance_index: f64,
    /// Coefficient of variation of the same.
    pub load_variance: f64,
    pub migrations_per_minute: f64,
    pub mean_response_ms: f64,
    pub success_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub sim_time_s: f64,
    pub nodes: Vec<NodeReport>,
    /// The seed's bottleneck score over the measured latency, CPU and
    /// transactions and the scenario's bandwidth, memory and locks, read the
    /// corrected way (less bandwidth is the bottleneck; see `rank`).
    pub bottlenecks: rank::Ranking,
    pub failures: Vec<FailureReport>,
    pub failovers: Vec<FailoverReport>,
    pub cascade: Vec<CascadeReport>,
    pub requests: Requests,
    /// Each group's client history checked for linearizability (only in
    /// [`checked_outcome`]: a saturated run's histories can take seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histories: Option<Vec<history::GroupHistory>>,
    pub load_balancing: LoadBalancing,
}

/// Latencies of the answered requests in ms, in the order they ended.
pub fn answered_ms(sim: &Sim<Node>) -> Vec<f64> {
    sim.outputs()
        .iter()
        .filter_map(|r| match r.output {
            Output::Client(client::Output::Done { ok: true, latency_us, .. }) => Some(latency_us as f64 / 1e3),
            _ => None,
        })
        .collect()
}

/// Requests that ended per second, in buckets of `width` seconds up to the
/// run's end: (answered, failed).
pub fn per_second(sim: &Sim<Node>, width: f64) -> (Vec<f64>, Vec<f64>) {
    let buckets = (sim.now().as_secs_f64() / width).ceil() as usize + 1;
    let (mut ok, mut failed) = (vec![0.0; buckets], vec![0.0; buckets]);
    for r in sim.outputs() {
        if let Output::Client(client::Output::Done { ok: success, .. }) = r.output {
            let b = ((r.at.as_secs_f64() / width) as usize).min(buckets - 1);
            if success {
                ok[b] += 1.0 / width
            } else {
                failed[b] += 1.0 / width
            }
        }
    }
    (ok, failed)
}

/// A detection, as either a simulated run (its outputs) or a real one (each
/// node's `/status`) records it.
#[derive(Debug, Clone)]
pub struct Detected {
    pub at_s: f64,
    /// The node that raised it.
    pub by: String,
    pub node: String,
    /// None: `by` found itself on a minority side (so `node == by`).
    pub how: Option<Detection>,
}

/// Whether a suspicion raised `how` is a detection of a fault of `kind`: a
/// crashed node is found by its heartbeats or by its requests failing; a
/// node that omits looks crashed too; a Byzantine one is only found out by
/// its group outvoting it (a partition is found by isolation, not suspicion).
fn explains(how: Detection, kind: &str) -> bool {
    use Detection::*;
    match kind {
        "crash" => matches!(how, Crash | Unresponsive),
        "omission" => matches!(how, Omission | Crash | Unresponsive),
        "byzantine" => how == Byzantine,
        _ => false,
    }
}

/// Each injected fault `(node, kind, at_s)` with the first detection of it
/// at or after its time: a suspicion of the node raised by another node, or
/// for a partition the node isolating itself. `detected` is in time order.
pub fn match_failures(injected: &[(String, &'static str, f64)], detected: &[Detected]) -> Vec<FailureReport> {
    injected
        .iter()
        .map(|(n, kind, at)| {
            let found = detected.iter().find(|d| {
                d.at_s >= *at
                    && &d.node == n
                    && match (d.how, *kind) {
                        (None, "partition") => true,
                        (Some(how), _) if &d.by != n => explains(how, kind),
                        _ => false,
                    }
            });
            FailureReport {
                node: n.clone(),
                kind,
                injected_at_s: *at,
                detected_at_s: found.map(|d| d.at_s),
                // Rounded to the nanosecond the clocks count in (no float noise in the JSON).
                detection_s: found.map(|d| ((d.at_s - at) * 1e9).round() / 1e9),
                detected_by: found.map(|d| d.by.clone()),
                how: found.and_then(|d| d.how),
            }
        })
        .collect()
}

/// The nodes a partition into `groups` of `n` nodes leaves on sides of at
/// most half the nodes (the unlisted nodes are one more side): each is
/// expected to isolate itself.
pub fn minority_sides(groups: &[Vec<NodeId>], n: usize) -> Vec<NodeId> {
    let rest: Vec<NodeId> = (0..n as u32).map(NodeId).filter(|v| !groups.iter().flatten().any(|g| g == v)).collect();
    groups.iter().chain(std::iter::once(&rest)).filter(|g| g.len() * 2 <= n).flatten().copied().collect()
}

/// The failures of a run on real processes: the faults `agora cluster up`
/// injected, `(node, kind, at_s)` in seconds since the cluster was up, and
/// the Byzantine turns the nodes report, matched with the detections each
/// node's `/status` lists. `statuses[i]`: when node i's current process
/// started (seconds since the cluster was up) and its status, if it answered.
pub fn real_failures(
    topo: &Topology,
    injected: &[(NodeId, &'static str, f64)],
    statuses: &[Option<(f64, serde_json::Value)>],
) -> Vec<FailureReport> {
    let name = |n: NodeId| topo.name(n).to_string();
    let mut faults: Vec<(String, &'static str, f64)> = injected.iter().map(|&(n, k, at)| (name(n), k, at)).collect();
    let mut detected = Vec::new();
    for (i, st) in statuses.iter().enumerate() {
        let Some((start, st)) = st else { continue };
        let (control, server) = (&st["protocol"]["control"], &st["protocol"]["server"]);
        let by = name(NodeId(i as u32));
        if let Some(t) = server["byzantine_since_s"].as_f64() {
            faults.push((by.clone(), "byzantine", start + t));
        }
        for d in control["detections"].as_array().into_iter().flatten() {
            let (Some(at), Some(node), Ok(how)) =
                (d["at_s"].as_f64(), d["node"].as_str(), serde_json::from_value::<Detection>(d["how"].clone()))
            else {
                continue;
            };
            detected.push(Detected { at_s: start + at, by: by.clone(), node: node.to_string(), how: Some(how) });
        }
        for t in control["isolations_s"].as_array().into_iter().flatten().filter_map(|t| t.as_f64()) {
            detected.push(Detected { at_s: start + t, by: by.clone(), node: by.clone(), how: None });
        }
    }
    faults.sort_by(|a, b| a.2.total_cmp(&b.2));
    detected.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    match_failures(&faults, &detected)
}

/// The clients' requests of a run on real processes, from each node's
/// `/status`, in the words of the simulator's summary: issued, succeeded,
/// failed by cause, latency of the successes. (A client process that was
/// restarted counts from its restart; serviceability needs the simulator's
/// ground truth and is not judged here.)
pub fn real_requests(statuses: &[Option<(f64, serde_json::Value)>]) -> String {
    let (mut issued, mut succeeded) = (0, 0);
    let mut by_cause: std::collections::BTreeMap<String, u64> =
        node::Cause::ALL.iter().map(|c| (c.name().to_string(), 0)).collect();
    // Each client's latencies as (µs, count) buckets, merged.
    let mut latency_us: std::collections::BTreeMap<u64, u64> = Default::default();
    for (_, st) in statuses.iter().flatten() {
        let c = &st["protocol"]["client"];
        issued += c["requested"].as_u64().unwrap_or(0);
        succeeded += c["succeeded"].as_u64().unwrap_or(0);
        for (cause, n) in c["failed_by_cause"].as_object().into_iter().flatten() {
            *by_cause.entry(cause.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
        for b in c["latency_us"].as_array().into_iter().flatten() {
            if let (Some(us), Some(n)) = (b[0].as_u64(), b[1].as_u64()) {
                *latency_us.entry(us).or_default() += n;
            }
        }
    }
    let failed: u64 = by_cause.values().sum();
    let causes = causes(&serde_json::to_value(&by_cause).unwrap_or_default());
    let open = issued.saturating_sub(succeeded + failed);
    let ended = succeeded + failed;
    let ratio = if ended == 0 { 0.0 } else { 100.0 * succeeded as f64 / ended as f64 };
    let total: u64 = latency_us.values().sum();
    let quantile_ms = |q: f64| {
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        latency_us
            .iter()
            .find(|(_, &n)| {
                seen += n;
                seen >= rank
            })
            .map_or(0.0, |(&us, _)| us as f64 / 1000.0)
    };
    format!(
        "requests     {issued} issued, {succeeded} succeeded ({ratio:.2} % of those ended), {failed} failed, {open} in flight at the end; p50 {:.1} ms, p99 {:.1} ms\nfailed by    {causes}\n",
        quantile_ms(0.5),
        quantile_ms(0.99)
    )
}

/// A telecom node's `/status` in one line: what it served, whom it
/// suspects, whether it is cut off or Byzantine, its client's requests and
/// the groups it holds data for.
pub fn status_line(status: &serde_json::Value) -> String {
    let p = &status["protocol"];
    let mut parts = vec![format!("served {}", p["server"]["served"].as_u64().unwrap_or(0))];
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
    };
    let suspects = names(&p["control"]["suspects"]);
    if !suspects.is_empty() {
        parts.push(format!("suspects {}", suspects.join(" ")));
    }
    if p["control"]["isolated"].as_bool() == Some(true) {
        parts.push("isolated".into());
    }
    if let Some(t) = p["server"]["byzantine_since_s"].as_f64() {
        parts.push(format!("Byzantine since {t:.1} s"));
    }
    let c = &p["client"];
    if !c.is_null() {
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        parts.push(format!("client {} requested, {} succeeded", n("requested"), n("succeeded")));
    }
    let mut groups: Vec<String> = Vec::new();
    for strategy in p.as_object().into_iter().flat_map(|o| o.values()) {
        for g in strategy["groups"].as_array().into_iter().flatten() {
            groups.push(format!("{} ({} keys)", g["service"].as_str().unwrap_or("-"), g["keys"].as_u64().unwrap_or(0)));
        }
    }
    if !groups.is_empty() {
        groups.sort();
        parts.push(format!("data {}", groups.join(", ")));
    }
    parts.join("; ")
}

/// The faults a run injected: (node, kind, time). Ends of faults (recover,
/// heal, an omission rate of 0) are not failures.
fn injected(sim: &Sim<Node>) -> Vec<(NodeId, &'static str, Time)> {
    let mut out = Vec::new();
    for (at, f) in sim.faults_applied() {
        match f {
            Fault::Crash(n) => out.push((*n, "crash", *at)),
            Fault::Omission { scope: Scope::Node(n), rate } if *rate > 0.0 => out.push((*n, "omission", *at)),
            Fault::Partition(groups) => {
                out.extend(minority_sides(groups, sim.nodes().len()).into_iter().map(|v| (v, "partition", *at)))
            }
            _ => {}
        }
    }
    for o in sim.outputs() {
        if let Output::Server(server::Output::TurnedByzantine { .. }) = o.output {
            out.push((o.node, "byzantine", o.at));
        }
    }
    out.sort_by_key(|&(n, _, t)| (t, n.0));
    out
}

/// When each injected fault was on at its node.
struct FaultSpan {
    node: NodeId,
    kind: &'static str,
    start: Time,
    /// None while it lasts to the end (a Byzantine turn never ends).
    end: Option<Time>,
}

impl FaultSpan {
    fn covers(&self, t: Time) -> bool {
        self.start <= t && self.end.is_none_or(|end| t <= end)
    }
}

fn fault_spans(sim: &Sim<Node>) -> Vec<FaultSpan> {
    let mut spans: Vec<FaultSpan> =
        injected(sim).into_iter().map(|(node, kind, start)| FaultSpan { node, kind, start, end: None }).collect();
    // Ends the spans of `kind` (at `node`, or anywhere) begun before `at`.
    let mut end = |node: Option<NodeId>, kind: &str, at: Time| {
        for s in spans.iter_mut().filter(|s| node.is_none_or(|n| s.node == n) && s.kind == kind && s.start < at) {
            s.end.get_or_insert(at);
        }
    };
    for (at, f) in sim.faults_applied() {
        match f {
            Fault::Recover { node, .. } => end(Some(*node), "crash", *at),
            Fault::Omission { scope: Scope::Node(n), rate } if *rate == 0.0 => end(Some(*n), "omission", *at),
            // A heal ends the partition; a new partition replaces it.
            Fault::Heal | Fault::Partition(_) => end(None, "partition", *at),
            _ => {}
        }
    }
    spans
}

/// After every event, in each group PBFT orders: the correct replica the
/// event concerned keeps its invariants and agrees with every other
/// correct member on what was committed and executed at each sequence
/// number ([`agora_pbft::check::Agreement`]).
pub fn install_pbft_agreement(topo: &Topology, sim: &mut Sim<Node>) {
    type Ordered = (u16, String, std::sync::Arc<agora_telecom::ordering::Numbering>);
    let ordered: Vec<Ordered> = topo
        .pbft
        .iter()
        .enumerate()
        .filter_map(|(g, n)| Some((g as u16, topo.groups[g].service.clone(), n.clone()?)))
        .collect();
    if ordered.is_empty() {
        return;
    }
    let mut agreement: Vec<agora_pbft::check::Agreement> = ordered.iter().map(|_| Default::default()).collect();
    sim.add_invariant("pbft agreement in the ordered groups", move |w| {
        let ids: Vec<NodeId> = match w.active {
            Some(id) => vec![id],
            None => w.nodes.ids().collect(),
        };
        for id in ids {
            let replicas = w.nodes.state(id).replicas(agora_telecom::topology::Redundancy::NWay);
            for ((g, service, numbering), agreement) in ordered.iter().zip(agreement.iter_mut()) {
                if let (Some(r), Some(me)) = (replicas.pbft_replica(*g), numbering.replica(id)) {
                    agreement.replica(me, r).map_err(|e| format!("{service}: {e}"))?;
                }
            }
        }
        Ok(())
    });
}

/// How long the report's check of one group's history may search.
const HISTORY_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// [`outcome`] with every group's client history checked.
pub fn checked_outcome(topo: &Topology, sim: &Sim<Node>) -> Outcome {
    let (reqs, events) = history::requests(sim);
    let mut histories = history::check(topo, &reqs, &history::edn(topo, &reqs, &events), HISTORY_CHECK_TIMEOUT);
    let byzantine: Vec<NodeId> = sim
        .outputs()
        .iter()
        .filter(|o| matches!(o.output, Output::Server(server::Output::TurnedByzantine { .. })))
        .map(|o| o.node)
        .collect();
    for (h, g) in histories.iter_mut().zip(&topo.groups) {
        let members = g.members.iter().filter(|m| byzantine.contains(m));
        h.byzantine_members = members.map(|&m| topo.name(m).to_string()).collect();
    }
    Outcome { histories: Some(histories), ..outcome_of(topo, sim, &reqs) }
}

/// The report of a finished run (its histories unchecked).
pub fn outcome(topo: &Topology, sim: &Sim<Node>) -> Outcome {
    outcome_of(topo, sim, &history::requests(sim).0)
}

/// [`outcome`] over the run's requests, read from its outputs once.
fn outcome_of(topo: &Topology, sim: &Sim<Node>, reqs: &[history::Request]) -> Outcome {
    let now = sim.now();
    let secs = now.as_secs_f64().max(1e-9);
    let name = |n: NodeId| topo.name(n).to_string();
    let nodes: Vec<NodeReport> = sim
        .nodes()
        .ids()
        .map(|id| {
            let m = sim.node(id).metrics(now);
            NodeReport {
                node: name(id),
                up: sim.nodes().is_up(id),
                served: m.served,
                req_per_s: m.served as f64 / secs,
                cpu_percent: m.cpu_percent,
                latency_ms: m.latency_ms,
                tx_per_s: sim.node(id).stats().transactions as f64 / secs,
                max_queue: m.max_queue,
                shed: m.shed,
            }
        })
        .collect();
    let metrics = rank::Input {
        nodes: nodes
            .iter()
            .zip(&topo.params.nodes)
            .map(|(r, spec)| rank::NodeMetrics {
                id: r.node.clone(),
                latency_ms: r.latency_ms,
                throughput_mbps: spec.throughput_mbps,
                cpu_percent: r.cpu_percent,
                memory_gb: spec.memory_gb,
                tx_per_s: r.tx_per_s,
                lock_contention_percent: spec.lock_contention_percent,
            })
            .collect(),
    };
    let bottlenecks = rank::rank(&metrics, rank::Reading::Corrected).expect("measured metrics are finite");

    let faults = injected(sim);
    let outputs = sim.outputs();
    let detected: Vec<Detected> = outputs
        .iter()
        .filter_map(|o| {
            let how = match o.output {
                Output::Control(control::Output::Suspect { node, how }) => Some((node, Some(how))),
                Output::Control(control::Output::Isolated { isolated: true }) => Some((o.node, None)),
                _ => None,
            }?;
            Some(Detected { at_s: o.at.as_secs_f64(), by: name(o.node), node: name(how.0), how: how.1 })
        })
        .collect();
    let failures = match_failures(
        &faults.iter().map(|&(n, kind, at)| (name(n), kind, at.as_secs_f64())).collect::<Vec<_>>(),
        &detected,
    );
    // A failover follows a fault at the member it leaves or at the client
    // that left it (a client cut off by a partition loses members too) if
    // that fault is still on; otherwise it has no recovery time to report
    // (a fault at another node, or one over, did not cause it).
    let spans = fault_spans(sim);
    let last_fault_at = |from: NodeId, by: NodeId, t: Time| {
        spans.iter().filter(|f| (f.node == from || f.node == by) && f.covers(t)).map(|f| f.start).max()
    };
    let mut failovers = Vec::new();
    let mut cascade = Vec::new();
    let mut latencies = Vec::new();
    for o in outputs {
        match &o.output {
            Output::Client(client::Output::Failover { group, from, to }) => failovers.push(FailoverReport {
                service: topo.groups[*group as usize].service.clone(),
                from: name(*from),
                to: to.map(name),
                by: name(o.node),
                at_s: o.at.as_secs_f64(),
                recovery_s: last_fault_at(*from, o.node, o.at).map(|t| (o.at - t).as_secs_f64()),
            }),
            Output::Client(client::Output::Cascade { group, level }) => cascade.push(CascadeReport {
                service: topo.groups[*group as usize].service.clone(),
                level: *level,
                by: name(o.node),
                at_s: o.at.as_secs_f64(),
            }),
            Output::Client(client::Output::Done { ok: true, latency_us, .. }) => {
                latencies.push(*latency_us as f64 / 1e3)
            }
            _ => {}
        }
    }
    let c = sim.stats();
    let accounting::Accounting { total, groups, windows, beyond_f } = accounting::account(topo, sim, reqs);
    let issued = total.issued;
    let mean_ms = if latencies.is_empty() { 0.0 } else { latencies.iter().sum::<f64>() / latencies.len() as f64 };
    let requests = Requests {
        failed: total.failed(),
        success_ratio: total.success_ratio(),
        serviceable_ratio: total.serviceable_ratio(),
        total,
        mean_ms,
        p50_ms: quantile(&mut latencies, 0.5),
        p99_ms: quantile(&mut latencies, 0.99),
        attempts_per_request: if issued == 0 { 0.0 } else { c.counter(counters::ATTEMPTS) as f64 / issued as f64 },
        retries: c.counter(counters::RETRIES),
        retry_budget_exhausted: c.counter(counters::BUDGET_EXHAUSTED),
        wrong_answers_accepted: history::wrong_answers(reqs),
        groups,
        windows,
        beyond_f,
    };
    let servers: Vec<f64> = topo
        .groups
        .iter()
        .flat_map(|g| g.members.iter().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|n| nodes[n.index()].cpu_percent)
        .collect();
    let load_balancing = LoadBalancing {
        strategy: topo.params.balancer,
        load_balance_index: jain_index(&servers),
        load_variance: coefficient_of_variation(&servers),
        migrations_per_minute: failovers.len() as f64 / (secs / 60.0),
        mean_response_ms: mean_ms,
        success_rate: requests.success_ratio,
    };
    Outcome {
        sim_time_s: secs,
        nodes,
        bottlenecks,
        failures,
        failovers,
        cascade,
        requests,
        histories: None,
        load_balancing,
    }
}

/// The failures of a report (`FailureReport`s as JSON) as a table.
pub fn failures_table(failures: &[serde_json::Value]) -> String {
    use std::fmt::Write;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    let secs = |v: &serde_json::Value| v.as_f64().map(|s| format!("{s:.3}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{:<8} {:<10} {:>10} {:>10} {:>11}  {:<9} detected as\n",
        "failure", "kind", "injected s", "detected s", "detection s", "by"
    );
    for f in failures {
        let (kind, how) = (text(&f["kind"]), detected_as(f));
        let _ = writeln!(
            out,
            "{:<8} {:<10} {:>10} {:>10} {:>11}  {:<9} {}",
            text(&f["node"]),
            kind,
            secs(&f["injected_at_s"]),
            secs(&f["detected_at_s"]),
            secs(&f["detection_s"]),
            text(&f["detected_by"]),
            how
        );
    }
    out
}

/// How a failure (a `FailureReport` as JSON) was detected — the detector's
/// reading, and "X, not Y" when it read the fault as another kind (a node
/// isolating itself is how a partition shows on its side).
fn detected_as(f: &serde_json::Value) -> String {
    let kind = f["kind"].as_str().unwrap_or("-");
    let how = match (&f["how"], f["detected_at_s"].is_number()) {
        (_, false) => "-",
        (serde_json::Value::Null, true) => "isolation",
        (how, true) => how.as_str().unwrap_or("-"),
    };
    let right = matches!(
        (kind, how),
        (_, "-") | ("crash", "crash" | "unresponsive") | ("partition", "isolation" | "crash" | "unresponsive")
    ) || how == kind;
    if right {
        how.to_string()
    } else {
        format!("{how}, not {kind}")
    }
}

/// Each group's history verdict (the JSON of [`history::GroupHistory`]s) in
/// one line for the summary.
pub fn verdicts(histories: &[serde_json::Value]) -> String {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    let verdicts: Vec<String> = histories
        .iter()
        .map(|h| {
            let byzantine: Vec<String> = h["byzantine_members"].as_array().into_iter().flatten().map(text).collect();
            let verdict = match h["linearizable"].as_bool() {
                // Passed here, but primary order trusts its members: a lying
                // one could break a strong group. Not a pass.
                Some(true) if text(&h["consistency"]) == "strong" && !byzantine.is_empty() && h["pbft"] != true => {
                    format!(
                        "linearizable in this run, unchecked with Byzantine member {} (primary order trusts its members)",
                        byzantine.join(", ")
                    )
                }
                Some(true) if h["pbft"] == true && !byzantine.is_empty() => {
                    format!("linearizable, ordered by PBFT with Byzantine member {}", byzantine.join(", "))
                }
                Some(true) => "linearizable".to_string(),
                Some(false) => format!("NOT linearizable ({})", text(&h["stuck_at"])),
                None if h["ops"] == 0 => "no operations".to_string(),
                None => format!("unchecked ({})", text(&h["stuck_at"])),
            };
            let s = &h["sessions"];
            let sessions = match (s["read_your_writes"].as_u64(), s["monotonic_reads"].as_u64()) {
                (Some(ryw), Some(mr)) => format!(
                    ", {} stale reads, sessions broken: read-your-writes {ryw}, monotonic reads {mr}",
                    h["stale_reads"]
                ),
                _ => String::new(),
            };
            format!("{} ({}, {} ops): {verdict}{sessions}", text(&h["service"]), text(&h["consistency"]), h["ops"])
        })
        .collect();
    if verdicts.is_empty() {
        "-".into()
    } else {
        verdicts.join("; ")
    }
}

/// A run on real processes' client histories, from each node's output log:
/// the EDN files (by service) and the verdicts' summary line. A strong
/// group with a member that turned Byzantine (its `/status` at the end says
/// since when) is marked unchecked, as in [`checked_outcome`].
pub fn real_histories(
    topo: &Topology,
    statuses: &[Option<(f64, serde_json::Value)>],
    logs: &[(NodeId, String)],
) -> Result<(Vec<(String, String)>, String), String> {
    let (reqs, events) = history::real_requests(logs)?;
    let files = history::edn(topo, &reqs, &events);
    let mut histories = history::check(topo, &reqs, &files, HISTORY_CHECK_TIMEOUT);
    let turned = |m: NodeId| {
        let s = statuses.get(m.index()).and_then(|s| s.as_ref());
        s.is_some_and(|(_, s)| s["protocol"]["server"]["byzantine_since_s"].is_number())
    };
    for (h, g) in histories.iter_mut().zip(&topo.groups) {
        h.byzantine_members = g.members.iter().filter(|&&m| turned(m)).map(|&m| topo.name(m).to_string()).collect();
    }
    let json: Vec<serde_json::Value> = histories.iter().filter_map(|h| serde_json::to_value(h).ok()).collect();
    Ok((files.into_iter().collect(), format!("histories    {}", verdicts(&json))))
}

/// The outcome as text tables (from its JSON form, so a saved `--json`
/// report prints the same).
pub fn report(o: &serde_json::Value) -> String {
    use std::fmt::Write;
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    let secs = |v: &serde_json::Value| v.as_f64().map(|s| format!("{s:.3}")).unwrap_or_else(|| "-".into());
    let list = |k: &str| o[k].as_array().cloned().unwrap_or_default();
    let r = &o["requests"];
    let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let mut out = verdict(r);
    let _ = writeln!(
        out,
        "\n{:<22} {:>7} {:>9} {:>11} {:>8}  failed by cause",
        "service / window", "issued", "succeeded", "serviceable", "serv. %"
    );
    let tally_row = |label: String, t: &serde_json::Value| {
        let serviceable = count(&t["serviceable"]);
        let share = match serviceable {
            0 => "-".to_string(), // nothing the system could have served
            n => format!("{:.2}", 100.0 * count(&t["serviceable_succeeded"]) as f64 / n as f64),
        };
        format!(
            "{:<22} {:>7} {:>9} {:>11} {:>8}  {}",
            label,
            count(&t["issued"]),
            count(&t["succeeded"]),
            serviceable,
            share,
            causes(&t["failed_by_cause"])
        )
    };
    for g in r["groups"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", tally_row(text(&g["service"]), g));
    }
    for w in r["windows"].as_array().into_iter().flatten() {
        let label = format!("{:.2}–{:.2} s", num(&w["from_s"]), num(&w["to_s"]));
        let faults: Vec<String> = w["faults"].as_array().into_iter().flatten().map(text).collect();
        let faults = if faults.is_empty() { "no fault".to_string() } else { faults.join(", ") };
        let _ = writeln!(out, "{}  [{faults}]", tally_row(label, w));
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:>4} {:>8} {:>8} {:>7} {:>11} {:>8} {:>9} {:>6}",
        "node", "up", "served", "req/s", "cpu %", "latency ms", "tx/s", "max queue", "shed"
    );
    for n in list("nodes") {
        let _ = writeln!(
            out,
            "{:<8} {:>4} {:>8} {:>8.1} {:>7.2} {:>11.2} {:>8.1} {:>9} {:>6}",
            text(&n["node"]),
            if n["up"].as_bool() == Some(true) { "yes" } else { "no" },
            n["served"].to_string(),
            num(&n["req_per_s"]),
            num(&n["cpu_percent"]),
            num(&n["latency_ms"]),
            num(&n["tx_per_s"]),
            n["max_queue"].to_string(),
            n["shed"].to_string()
        );
    }
    let ranking: Vec<String> = o["bottlenecks"]["ranking"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} {:.2}", text(&r["node"]), num(&r["score"])))
        .collect();
    let _ = writeln!(
        out,
        "\nbottlenecks  {} (this run's measured metrics, the corrected formula; `agora telecom rank` scores a table you give)",
        ranking.join(", ")
    );
    for s in o["bottlenecks"]["suggestions"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "             {}", text(s));
    }
    out += "\n";
    out += &failures_table(&list("failures"));
    let _ =
        writeln!(out, "\n{:<14} {:<8} {:<8} {:<8} {:>8} {:>10}", "failover", "from", "to", "by", "at s", "recovery s");
    for f in list("failovers") {
        let _ = writeln!(
            out,
            "{:<14} {:<8} {:<8} {:<8} {:>8} {:>10}",
            text(&f["service"]),
            text(&f["from"]),
            text(&f["to"]),
            text(&f["by"]),
            secs(&f["at_s"]),
            secs(&f["recovery_s"])
        );
    }
    out += &cascade_table(&list("cascade"), num(&o["sim_time_s"]));
    let _ = writeln!(
        out,
        "requests     {} issued, {} succeeded ({:.2} % of those ended), {} failed, {} in flight at the end; p50 {:.1} ms, p99 {:.1} ms; {} retries ({} refused by the budget); {} wrong answers accepted",
        r["issued"],
        r["succeeded"],
        100.0 * num(&r["success_ratio"]),
        r["failed"],
        r["in_flight_at_end"],
        num(&r["p50_ms"]),
        num(&r["p99_ms"]),
        r["retries"],
        r["retry_budget_exhausted"],
        r["wrong_answers_accepted"]
    );
    let _ = writeln!(
        out,
        "serviceable  {} of the ended requests, {} succeeded ({:.2} %; target ≥ {:.0} %, the seed claims {} % availability)",
        r["serviceable"],
        r["serviceable_succeeded"],
        100.0 * num(&r["serviceable_ratio"]),
        100.0 * SERVICEABLE_TARGET,
        SEED_AVAILABILITY_PERCENT
    );
    let _ = writeln!(out, "failed by    {}", causes(&r["failed_by_cause"]));
    let _ = writeln!(out, "  of them serviceable: {}", causes(&r["serviceable_failed_by_cause"]));
    let lost: Vec<String> = r["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let (lost, acked) = (count(&g["writes_lost"]), count(&g["writes_acknowledged"]));
            let share = if acked == 0 { 0.0 } else { 100.0 * lost as f64 / acked as f64 };
            format!("{} {lost} of {acked} ({share:.1} %)", text(&g["service"]))
        })
        .collect();
    let _ = writeln!(
        out,
        "writes lost  {} acknowledged writes overwritten by another value at their version (by group: {})",
        r["writes_lost"],
        lost.join("; ")
    );
    for b in r["beyond_f"].as_array().into_iter().flatten() {
        let faulty: Vec<String> = b["faulty"].as_array().into_iter().flatten().map(text).collect();
        let _ = writeln!(
            out,
            "beyond f     {} (PBFT, f = {}) {:.2}–{:.2} s [{}]: safe (agreement checked after every event), \
             may stop: {} of {} requests succeeded",
            text(&b["service"]),
            b["f"],
            num(&b["from_s"]),
            num(&b["to_s"]),
            faulty.join(", "),
            b["succeeded"],
            b["issued"]
        );
    }
    let _ = writeln!(out, "histories    {}", verdicts(&list("histories")));
    let b = &o["load_balancing"];
    let _ = writeln!(
        out,
        "balancing    {}: Jain index {:.3}, load CV {:.3}, {:.1} migrations/min, mean response {:.1} ms",
        text(&b["strategy"]),
        num(&b["load_balance_index"]),
        num(&b["load_variance"]),
        num(&b["migrations_per_minute"]),
        num(&b["mean_response_ms"])
    );
    out
}

/// The run against the seed's targets (its benchmark table: p99 under
/// 30 ms, errors under 0.1 %, availability over 99.9 %; set for a run
/// without faults) and the project's (99 % of serviceable requests), then
/// the wrong answers: the first lines of the summary.
fn verdict(r: &serde_json::Value) -> String {
    let mut out =
        "verdict      against the seed's targets (set for a run without faults) and the project's;\n             \
         availability is the share of serviceable requests that succeeded\n"
            .to_string();
    for (what, value, target, met) in verdict_rows(r) {
        out += &format!("  {what:<24} {value:>10}  {target:<18} {}\n", if met { "met" } else { "MISSED" });
    }
    out
}

/// The verdict's rows: what, the run's value, the target, whether it is met.
fn verdict_rows(r: &serde_json::Value) -> [(&'static str, String, &'static str, bool); 5] {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let (failed, ended) = (num(&r["failed"]), num(&r["failed"]) + num(&r["succeeded"]));
    let error_rate = if ended > 0.0 { 100.0 * failed / ended } else { 0.0 };
    let available = 100.0 * num(&r["serviceable_ratio"]);
    let wrong = r["wrong_answers_accepted"].as_u64().unwrap_or(0);
    [
        ("p99 latency", format!("{:.1} ms", num(&r["p99_ms"])), "< 30 ms (seed)", num(&r["p99_ms"]) < 30.0),
        ("error rate (of ended)", format!("{error_rate:.2} %"), "< 0.1 % (seed)", error_rate < 0.1),
        ("availability", format!("{available:.2} %"), "> 99.9 % (seed)", available > 99.9),
        ("availability", format!("{available:.2} %"), "≥ 99 % (project)", available >= 100.0 * SERVICEABLE_TARGET),
        ("wrong answers accepted", wrong.to_string(), "0", wrong == 0),
    ]
}

/// The cascade's transitions as a table, a row per node and service: how
/// often its level changed, the worst it reached, and how long it spent
/// below healthy up to `end_s`.
fn cascade_table(cascade: &[serde_json::Value], end_s: f64) -> String {
    let rows = cascade_rows(cascade, end_s);
    if rows.is_empty() {
        return "\ncascade      no level changed\n".into();
    }
    let mut out = format!(
        "\n{:<8} {:<14} {:>11} {:<9} {:>16}\n",
        "cascade", "service", "transitions", "worst", "below healthy s"
    );
    for r in rows {
        out += &format!("{:<8} {:<14} {:>11} {:<9} {:>16.3}\n", r.by, r.service, r.transitions, r.worst, r.below_s);
    }
    out
}

/// One node's cascade for one service over a run.
struct CascadeRow {
    by: String,
    service: String,
    transitions: usize,
    worst: &'static str,
    below_s: f64,
}

/// The cascade's transitions summed up by node and service.
fn cascade_rows(cascade: &[serde_json::Value], end_s: f64) -> Vec<CascadeRow> {
    #[derive(Default)]
    struct Row {
        transitions: usize,
        worst: usize,
        below_s: f64,
        since: Option<f64>,
    }
    // Levels from healthy up, as the cascade orders them.
    const LEVELS: [&str; 4] = ["healthy", "isolate", "shed", "emergency"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let mut rows: std::collections::BTreeMap<(String, String), Row> = Default::default();
    for c in cascade {
        let level = LEVELS.iter().position(|l| c["level"] == *l).unwrap_or(0);
        let at = c["at_s"].as_f64().unwrap_or(0.0);
        let row = rows.entry((text(&c["by"]), text(&c["service"]))).or_default();
        row.transitions += 1;
        row.worst = row.worst.max(level);
        // Time below healthy: from the first unhealthy level to the next healthy one.
        match (level, row.since) {
            (0, Some(since)) => {
                row.below_s += at - since;
                row.since = None;
            }
            (1.., None) => row.since = Some(at),
            _ => {}
        }
    }
    rows.into_iter()
        .map(|((by, service), r)| CascadeRow {
            by,
            service,
            transitions: r.transitions,
            worst: LEVELS[r.worst],
            below_s: r.below_s + r.since.map_or(0.0, |s| (end_s - s).max(0.0)),
        })
        .collect()
}

/// The share of serviceable requests that must succeed (issue 23's target).
pub const SERVICEABLE_TARGET: f64 = 0.99;
/// The availability the seed's benchmark table claims.
pub const SEED_AVAILABILITY_PERCENT: &str = "99.99";

/// The non-zero causes of a `failed_by_cause` map, as `cause count, …`.
fn causes(map: &serde_json::Value) -> String {
    let parts: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The requests by group and by fault window, each with its failures by
/// cause, as an HTML table.
fn accounting_html(r: &Requests) -> String {
    let mut page = format!(
        "<h2>Requests</h2>\n<p id=\"serviceable\">{} of {} serviceable requests succeeded ({:.2} %; target ≥ {:.0} %, the seed claims {SEED_AVAILABILITY_PERCENT} % availability).</p>\n<div style=\"overflow-x:auto\"><table id=\"accounting\"><tr><th>group / window</th><th>faults</th><th>issued</th><th>succeeded</th><th>serviceable</th><th>availability % (serviceable ok)</th>",
        r.total.serviceable_succeeded,
        r.total.serviceable,
        100.0 * r.serviceable_ratio,
        100.0 * SERVICEABLE_TARGET,
    );
    for c in node::Cause::ALL {
        page += &format!("<th>{}</th>", c.name().replace('_', " "));
    }
    page += "<th>in flight</th></tr>\n";
    let groups = r.groups.iter().map(|g| (esc(&g.service), String::new(), &g.tally));
    let windows = r.windows.iter().map(|w| {
        let faults = if w.faults.is_empty() { "—".to_string() } else { esc(&w.faults.join(", ")) };
        (format!("{:.2}–{:.2} s", w.from_s, w.to_s), faults, &w.tally)
    });
    for (label, faults, t) in groups.chain(windows) {
        page += &format!(
            "<tr><td>{label}</td><td>{faults}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            t.issued,
            t.succeeded,
            t.serviceable,
            if t.serviceable == 0 { "—".to_string() } else { format!("{:.2}", 100.0 * t.serviceable_ratio()) }
        );
        for c in node::Cause::ALL {
            page += &format!("<td>{}</td>", t.failed_by_cause.get(&c).copied().unwrap_or(0));
        }
        page += &format!("<td>{}</td></tr>\n", t.in_flight_at_end);
    }
    page + "</table></div>\n"
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A self-contained HTML page for a finished run, with everything the
/// terminal summary has: the verdict, requests by service and by fault
/// window (each service's availability), the nodes, the bottleneck ranking,
/// failures, failovers and the cascade; and two SVG charts — the latency
/// distribution (CDF on a log axis, p50/p95/p99 marked) and throughput over
/// time with each fault shaded while it was on.
pub fn html(topo: &Topology, sim: &Sim<Node>, title: &str) -> Result<String, String> {
    let o = outcome(topo, sim);
    let json = serde_json::to_value(&o).map_err(|e| e.to_string())?;
    let r = &o.requests;
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}.missed{{color:#b00;font-weight:bold}}#accounting{{font-size:72%}}#accounting td,#accounting th{{padding:2px 4px}}#accounting td:nth-child(2){{text-align:left;min-width:12em}}</style></head><body>\n<h1>{t}</h1>\n<p id=\"summary\">{} requests, {} answered ({:.2} %; {:.2} % of the serviceable), p50 {:.1} ms, p99 {:.1} ms; {} retries; {} wrong answers accepted. Balancing ({}): Jain index {:.3}, load CV {:.3}, {:.1} migrations/min. Simulated {:.1} s.</p>\n",
        r.total.issued, r.total.succeeded, 100.0 * r.success_ratio, 100.0 * r.serviceable_ratio, r.p50_ms, r.p99_ms, r.retries, r.wrong_answers_accepted,
        o.load_balancing.strategy, o.load_balancing.load_balance_index, o.load_balancing.load_variance,
        o.load_balancing.migrations_per_minute, o.sim_time_s, t = esc(title),
    );
    page += "<h2>Verdict</h2>\n<p>Against the seed's targets (set for a run without faults) and the project's; availability is the share of serviceable requests that succeeded.</p>\n<table id=\"verdict\"><tr><th>what</th><th>this run</th><th>target</th><th>verdict</th></tr>\n";
    for (what, value, target, met) in verdict_rows(&json["requests"]) {
        let verdict = if met { "<td>met</td>" } else { "<td class=\"missed\">MISSED</td>" };
        page += &format!("<tr><td>{what}</td><td>{value}</td><td>{}</td>{verdict}</tr>\n", esc(target));
    }
    page += "</table>\n";
    page += &accounting_html(r);
    page += &nodes_html(&o);
    page += &failures_html(&o, &json);
    page += "<h2>Charts</h2>\n<div id=\"latency\">";
    page += &latency_chart(sim)?;
    page += "</div>\n<div id=\"throughput\">";
    page += &throughput_chart(topo, sim, o.sim_time_s)?;
    page += "</div>\n</body></html>\n";
    Ok(page)
}

/// The nodes' measured metrics, and the bottleneck ranking over them.
fn nodes_html(o: &Outcome) -> String {
    let mut page = "<h2>Nodes</h2>\n<table id=\"nodes\"><tr><th>node</th><th>up</th><th>served</th><th>req/s</th><th>cpu %</th><th>latency ms</th><th>tx/s</th><th>max queue</th><th>shed</th></tr>\n".to_string();
    for n in &o.nodes {
        page += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&n.node),
            if n.up { "yes" } else { "no" },
            n.served,
            n.req_per_s,
            n.cpu_percent,
            n.latency_ms,
            n.tx_per_s,
            n.max_queue,
            n.shed
        );
    }
    page += "</table>\n<h2>Bottlenecks</h2>\n<p>The seed's score over this run's measured latency, CPU and transactions and the scenario's bandwidth, memory and locks, the corrected formula (less bandwidth is the bottleneck); <code>agora telecom rank</code> scores a table you give.</p>\n<table id=\"bottlenecks\"><tr><th>rank</th><th>node</th><th>score</th></tr>\n";
    for (i, b) in o.bottlenecks.ranking.iter().enumerate() {
        page += &format!("<tr><td>{}</td><td>{}</td><td>{:.2}</td></tr>\n", i + 1, esc(&b.node), b.score);
    }
    page += "</table>\n<ul id=\"suggestions\">";
    for s in &o.bottlenecks.suggestions {
        page += &format!("<li>{}</li>", esc(s));
    }
    page + "</ul>\n"
}

/// The failures with how each was detected, the failovers and the cascade.
fn failures_html(o: &Outcome, json: &serde_json::Value) -> String {
    let opt = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.3}"));
    let mut page = "<h2>Failures</h2>\n<table id=\"failures\"><tr><th>node</th><th>kind</th><th>injected s</th><th>detected s</th><th>detection s</th><th>by</th><th>detected as</th></tr>\n".to_string();
    for (f, fj) in o.failures.iter().zip(json["failures"].as_array().into_iter().flatten()) {
        page += &format!(
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&f.node),
            f.kind,
            f.injected_at_s,
            opt(f.detected_at_s),
            opt(f.detection_s),
            esc(f.detected_by.as_deref().unwrap_or("—")),
            esc(&detected_as(fj))
        );
    }
    page += "</table>\n<h2>Failovers</h2>\n<table id=\"failovers\"><tr><th>service</th><th>from</th><th>to</th><th>by</th><th>at s</th><th>recovery s</th></tr>\n";
    for f in &o.failovers {
        page += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>\n",
            esc(&f.service),
            esc(&f.from),
            esc(f.to.as_deref().unwrap_or("—")),
            esc(&f.by),
            f.at_s,
            opt(f.recovery_s)
        );
    }
    page += "</table>\n<h2>Cascade</h2>\n<table id=\"cascade\"><tr><th>node</th><th>service</th><th>transitions</th><th>worst level</th><th>below healthy s</th></tr>\n";
    let cascade = json["cascade"].as_array().cloned().unwrap_or_default();
    for c in cascade_rows(&cascade, o.sim_time_s) {
        page += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>\n",
            esc(&c.by),
            esc(&c.service),
            c.transitions,
            c.worst,
            c.below_s
        );
    }
    page + "</table>\n"
}

/// The answered requests' latency CDF on a log axis, p50/p95/p99 marked.
fn latency_chart(sim: &Sim<Node>) -> Result<String, String> {
    use crate::plot::{Chart, Mark, Series};
    let mut lat = answered_ms(sim);
    lat.retain(|&v| v > 0.0);
    if lat.is_empty() {
        return Ok("<p>no request was answered</p>".into());
    }
    lat.sort_by(f64::total_cmp);
    let n = lat.len();
    let step = (n / 400).max(1);
    let mut cdf: Vec<(f64, f64)> =
        lat.iter().enumerate().step_by(step).map(|(i, &v)| (v, (i + 1) as f64 / n as f64)).collect();
    cdf.push((lat[n - 1], 1.0));
    // The nearest-rank percentile, as the summary's.
    let at = |q: f64| lat[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    let marks: Vec<Mark> = [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]
        .map(|(p, q)| Mark { label: format!("{p} {:.1} ms", at(q)), x: at(q) })
        .into();
    let series = [Series { name: "CDF".into(), points: cdf, fitted: true }];
    Chart {
        title: "latency distribution",
        x_label: "latency (ms, log scale)",
        y_label: "fraction of answered requests",
        series: &series,
        log_x: true,
        marks: &marks,
        ..Chart::default()
    }
    .svg()
    .map_err(|e| e.to_string())
}

/// Answered and failed requests per half second, each fault shaded from
/// its injection to its end (or the run's, `end_s`).
fn throughput_chart(topo: &Topology, sim: &Sim<Node>, end_s: f64) -> Result<String, String> {
    use crate::plot::{Band, Chart, Series};
    let bucket = 0.5;
    let (ok, failed) = per_second(sim, bucket);
    let at = |v: &[f64]| v.iter().enumerate().map(|(i, &y)| (i as f64 * bucket, y)).collect::<Vec<_>>();
    let series = [
        Series { name: "answered / s".into(), points: at(&ok), fitted: false },
        Series { name: "failed / s".into(), points: at(&failed), fitted: false },
    ];
    let bands: Vec<Band> = fault_spans(sim)
        .iter()
        .map(|f| {
            let (from, to) = (f.start.as_secs_f64(), f.end.map_or(end_s, Time::as_secs_f64));
            let colour = ["crash", "omission", "byzantine", "partition"].iter().position(|k| *k == f.kind).unwrap_or(0);
            Band { label: format!("{} {} {from:.1}–{to:.1} s", topo.name(f.node), f.kind), from, to, colour }
        })
        .collect();
    Chart {
        title: "throughput over time",
        x_label: "simulated time (s)",
        y_label: "requests / s",
        series: &series,
        bands: &bands,
        ..Chart::default()
    }
    .svg()
    .map_err(|e| e.to_string())
}
