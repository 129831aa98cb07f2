//! The system a scenario describes: nodes with their layer, metrics and
//! failure mode, links with RTTs (primary and backup), replication groups,
//! the workload and the control plane's settings — the `[params]` of a
//! `protocol = "telecom"` scenario — and [`Topology`], its checked and
//! indexed form the nodes run on.

use crate::balance::Strategy;
use crate::data::workload::{shares, KeyDistribution, KeySampler, OpMix};
use crate::phi::PhiConfig;
use crate::risk::FailureMode;
use agora_core::{duration_str, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Edge,
    Core,
    Cloud,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub layer: Layer,
    /// The seed's metrics. `latency_ms` is the node's service time per
    /// request; the others are what the node reports before any load.
    pub latency_ms: f64,
    pub throughput_mbps: f64,
    pub cpu_percent: f64,
    pub memory_gb: f64,
    pub tx_per_s: f64,
    pub lock_contention_percent: f64,
    /// The failure mode the seed assigns (what the fault plan should inject).
    pub failure_mode: FailureMode,
    /// Services placed on the node (informational in part 1).
    #[serde(default)]
    pub services: Vec<String>,
    /// Requests served at once; the rest wait in a priority queue.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Queued requests beyond which the node sheds load (answers "overloaded").
    #[serde(default = "default_queue_limit")]
    pub queue_limit: u32,
    /// Service-time multiplier (10 = a node ten times slower).
    #[serde(default = "one")]
    pub slow: f64,
    /// Failover order when several nodes fail together: highest first.
    #[serde(default = "half")]
    pub criticality: f64,
}

fn default_slots() -> u32 {
    100
}
fn default_queue_limit() -> u32 {
    1000
}
fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub a: String,
    pub b: String,
    pub rtt_ms: f64,
    /// A backup path: routes use it only when no primary path is usable.
    #[serde(default)]
    pub backup: bool,
}

/// How a group's members share the requests.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    /// Every healthy member serves; the balancer chooses.
    ActiveActive,
    /// The first healthy member in the listed order serves.
    ActivePassive,
    /// Every healthy member answers; a majority of equal answers decides
    /// (Byzantine tolerance: an outvoted member is suspected).
    NWay,
    /// Members in several layers; served like active-active.
    Geographic,
    /// Dynamo's quorums: a read asks every member and takes the newest of
    /// `r` replies (repairing the older); a write reads so, then sends the
    /// next version to every member and is done once `w` hold it.
    Quorum,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    Strong,
    Eventual,
    Causal,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub service: String,
    pub primary: String,
    pub replicas: Vec<String>,
    pub strategy: Redundancy,
    pub consistency: Consistency,
    /// The seed's replication factor. Its table lists three members for a
    /// factor of 2 in two rows, so the factor is kept and checked
    /// (1 ≤ factor ≤ members) but requests go to all members; part 2's
    /// replication uses it.
    pub factor: u32,
    /// Active-passive only: the serving member answers a write once every
    /// other member it can reach holds it, so a failover loses no
    /// acknowledged write (the default ships the log asynchronously, as the
    /// seed has it, and reports the writes a failover lost).
    #[serde(default)]
    pub sync: bool,
    /// Quorum groups: replies a read waits for, and members a write must
    /// reach (default: a majority each; `r + w` must exceed the members).
    #[serde(default)]
    pub r: Option<u32>,
    #[serde(default)]
    pub w: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Nodes that issue requests (default: every edge node).
    #[serde(default)]
    pub clients: Vec<String>,
    /// Requests per second per client (Poisson arrivals).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Closed loop instead: each client keeps this many requests in flight,
    /// issuing the next as one ends (`rate` is then unused). 0: open loop.
    #[serde(default)]
    pub closed_loop: u32,
    /// Relative weight of each service in the mix (default: equal).
    #[serde(default)]
    pub mix: BTreeMap<String, f64>,
    /// Fractions of low, normal and high priority requests.
    #[serde(default = "default_priorities")]
    pub priorities: [f64; 3],
    /// Service time = latency × slow × service_scale × (1 ± jitter), uniform.
    #[serde(default = "half")]
    pub service_jitter: f64,
    /// 0 makes serving free: what is left is the RPC path itself (the
    /// real-process benchmark measures that).
    #[serde(default = "one")]
    pub service_scale: f64,
    /// Clients issue nothing before this (real processes connect first).
    #[serde(default, with = "duration_str")]
    pub start_after: Duration,
    /// Clients issue nothing from this time on, so that a run ends quiet
    /// (replicas converge once quiet). 0 (the default): never.
    #[serde(default, with = "duration_str")]
    pub stop_after: Duration,
    /// Relative weights of read, write, cas and append.
    #[serde(default)]
    pub ops: OpMix,
    /// Keys per group (`k0`, `k1`, …), and how a request's key is drawn.
    #[serde(default = "default_keys")]
    pub keys: u32,
    #[serde(default)]
    pub key_distribution: KeyDistribution,
}

fn default_keys() -> u32 {
    100
}

fn default_rate() -> f64 {
    100.0
}
fn default_priorities() -> [f64; 3] {
    [0.3, 0.6, 0.1]
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: Vec::new(),
            rate: default_rate(),
            closed_loop: 0,
            mix: BTreeMap::new(),
            priorities: default_priorities(),
            service_jitter: 0.5,
            service_scale: 1.0,
            start_after: Duration::ZERO,
            stop_after: Duration::ZERO,
            ops: OpMix::default(),
            keys: default_keys(),
            key_distribution: KeyDistribution::default(),
        }
    }
}

/// Omission detection: a neighbour's heartbeats carry sequence numbers, so
/// the gaps count lost ones; a node is suspected of omission when most of
/// its neighbours lose more than `threshold` of its last `window` heartbeats.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OmissionConfig {
    #[serde(default = "default_loss_window")]
    pub window: usize,
    #[serde(default = "default_loss_threshold")]
    pub threshold: f64,
}

fn default_loss_window() -> usize {
    50
}
fn default_loss_threshold() -> f64 {
    0.25
}

impl Default for OmissionConfig {
    fn default() -> Self {
        OmissionConfig { window: default_loss_window(), threshold: default_loss_threshold() }
    }
}

/// The RPC layer's settings; defaults follow gRPC, Finagle and Envoy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    /// How long one attempt waits for its answer.
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
    /// How long a request may take over all its attempts.
    #[serde(default = "default_deadline", with = "duration_str")]
    pub deadline: Duration,
    /// Attempts per request, the first included (gRPC allows at most 5).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Backoff before retry i: uniform in [0, min(cap, base · 2^i)] (full jitter).
    #[serde(default = "default_backoff_base", with = "duration_str")]
    pub backoff_base: Duration,
    #[serde(default = "default_backoff_cap", with = "duration_str")]
    pub backoff_cap: Duration,
    /// Retry budget: each request earns `budget_ratio` retries, and
    /// `budget_min_per_s` more come every second (Finagle: 20 % + 10/s).
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    #[serde(default = "default_budget_min")]
    pub budget_min_per_s: f64,
    /// Outlier ejection: after this many consecutive failures a node takes
    /// no requests for `eject_for`; at most `max_ejected` of the nodes (at
    /// least one) are out at once (Envoy: 5, 30 s, 10 %).
    #[serde(default = "default_eject_after")]
    pub eject_after: u32,
    #[serde(default = "default_eject_for", with = "duration_str")]
    pub eject_for: Duration,
    #[serde(default = "default_max_ejected")]
    pub max_ejected: f64,
}

fn default_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_deadline() -> Duration {
    Duration::from_secs(2)
}
fn default_attempts() -> u32 {
    3
}
fn default_backoff_base() -> Duration {
    Duration::from_millis(10)
}
fn default_backoff_cap() -> Duration {
    Duration::from_millis(200)
}
fn default_budget_ratio() -> f64 {
    0.2
}
fn default_budget_min() -> f64 {
    10.0
}
fn default_eject_after() -> u32 {
    5
}
fn default_eject_for() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ejected() -> f64 {
    0.1
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            timeout: default_timeout(),
            deadline: default_deadline(),
            attempts: default_attempts(),
            backoff_base: default_backoff_base(),
            backoff_cap: default_backoff_cap(),
            budget_ratio: default_budget_ratio(),
            budget_min_per_s: default_budget_min(),
            eject_after: default_eject_after(),
            eject_for: default_eject_for(),
            max_ejected: default_max_ejected(),
        }
    }
}

/// A telecom scenario's `[params]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(rename = "node")]
    pub nodes: Vec<NodeSpec>,
    #[serde(rename = "link")]
    pub links: Vec<LinkSpec>,
    #[serde(rename = "group", default)]
    pub groups: Vec<GroupSpec>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub detector: PhiConfig,
    #[serde(default)]
    pub omission: OmissionConfig,
    #[serde(default)]
    pub rpc: RpcConfig,
    #[serde(default)]
    pub balancer: Strategy,
    /// Link delays vary uniformly by ± this fraction.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Link-state updates are flooded on every change and re-sent this often.
    #[serde(default = "default_refresh", with = "duration_str")]
    pub refresh: Duration,
    /// Outvoted answers after which an n-way member is suspected Byzantine.
    #[serde(default = "default_strikes")]
    pub byzantine_strikes: u32,
}

fn default_jitter() -> f64 {
    0.1
}
fn default_refresh() -> Duration {
    Duration::from_secs(1)
}
fn default_strikes() -> u32 {
    3
}

/// A neighbour on a link.
#[derive(Clone, Debug)]
pub struct Neighbour {
    pub node: NodeId,
    pub rtt_ms: f64,
    pub backup: bool,
}

/// A replication group with node ids.
#[derive(Clone, Debug)]
pub struct Group {
    pub service: String,
    /// Primary first, then the replicas in their listed order.
    pub members: Vec<NodeId>,
    pub strategy: Redundancy,
    pub consistency: Consistency,
    /// Equal answers that decide an n-way request: a majority of members,
    /// f + 1 where PBFT orders the group.
    pub quorum: usize,
    /// Active-passive: writes answered once shipped (see [`GroupSpec::sync`]).
    pub sync: bool,
    /// Quorum groups: the read and write quorums (a majority for the others).
    pub r: usize,
    pub w: usize,
}

impl Group {
    /// Whether the members on a minority side of a partition serve the
    /// group's requests: eventual and causal groups do (available under a
    /// partition, as their consistency allows, reconciled when it heals);
    /// a strong group, or a `sync` one that answers a write once a
    /// majority holds it, refuses there, for it could not agree with the
    /// majority.
    pub fn serves_when_isolated(&self) -> bool {
        self.consistency != Consistency::Strong && !self.sync
    }

    /// The members a request needs to be served: a quorum for an n-way
    /// group (2f + 1 where PBFT orders it), the larger of R and W for a quorum group, one otherwise.
    pub fn needed(&self) -> usize {
        match self.strategy {
            // PBFT commits with 2f + 1 replicas taking part.
            Redundancy::NWay if crate::ordering::by_pbft(self.strategy, self.consistency, self.members.len()) => {
                2 * crate::ordering::tolerated(self.members.len()) + 1
            }
            Redundancy::NWay => self.quorum,
            Redundancy::Quorum => self.r.max(self.w),
            _ => 1,
        }
    }
}

/// The checked, indexed system: what every node holds.
#[derive(Clone, Debug)]
pub struct Topology {
    pub params: Params,
    pub neighbours: Vec<Vec<Neighbour>>,
    pub groups: Vec<Group>,
    pub clients: Vec<bool>,
    /// Cumulative mix weights over `groups`, for drawing a request's service.
    pub mix: Vec<f64>,
    /// One-way delay between every pair along the shortest primary-or-backup
    /// path, in milliseconds (the simulator's link model; f64::INFINITY if none).
    pub one_way_ms: Vec<Vec<f64>>,
    /// Draws a request's key.
    pub keys: KeySampler,
    /// Per group: its PBFT numbering, if PBFT orders it ([`crate::ordering`]).
    pub pbft: Vec<Option<Arc<crate::ordering::Numbering>>>,
}

impl Params {
    /// The node named `name`, or an error at `at`.
    fn id(&self, names: &HashMap<&str, u32>, name: &str, at: impl Fn() -> String) -> Result<NodeId, String> {
        names.get(name).map(|&i| NodeId(i)).ok_or_else(|| format!("{}: no node {name:?}", at()))
    }

    /// Checks everything; the error starts with the offending field
    /// (`node[2].slots`, `group[1].replicas[0]`, …).
    /// What the topology allows but a user would not want, each starting
    /// with the field: a node no link reaches serves nothing and calls
    /// nothing.
    pub fn warnings(&self) -> Vec<String> {
        if self.nodes.len() < 2 {
            return Vec::new();
        }
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !self.links.iter().any(|l| l.a == n.name || l.b == n.name))
            .map(|(i, n)| format!("node[{i}]: {} has no link: no request reaches it and it reaches no one", n.name))
            .collect()
    }

    pub fn compile(&self) -> Result<Topology, String> {
        if self.nodes.is_empty() {
            return Err("node: no nodes".into());
        }
        let mut names = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(format!("node[{i}].name: empty"));
            }
            if let Some(j) = names.insert(n.name.as_str(), i as u32) {
                return Err(format!("node[{i}].name: {:?} is also node[{j}]", n.name));
            }
            let metrics = [
                ("latency_ms", n.latency_ms),
                ("throughput_mbps", n.throughput_mbps),
                ("cpu_percent", n.cpu_percent),
                ("memory_gb", n.memory_gb),
                ("tx_per_s", n.tx_per_s),
                ("lock_contention_percent", n.lock_contention_percent),
                ("slow", n.slow),
                ("criticality", n.criticality),
            ];
            for (field, v) in metrics {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("node[{i}].{field}: {v} is not a finite value ≥ 0"));
                }
            }
            if n.latency_ms <= 0.0 || n.slow <= 0.0 {
                return Err(format!("node[{i}].latency_ms: service time must be above zero"));
            }
            if n.slots == 0 {
                return Err(format!("node[{i}].slots: a node needs at least one slot"));
            }
        }
        let count = self.nodes.len();
        let mut neighbours = vec![Vec::new(); count];
        let mut seen = HashMap::new();
        for (i, l) in self.links.iter().enumerate() {
            let a = self.id(&names, &l.a, || format!("link[{i}].a"))?;
            let b = self.id(&names, &l.b, || format!("link[{i}].b"))?;
            if a == b {
                return Err(format!("link[{i}]: a link from {:?} to itself", l.a));
            }
            if !(l.rtt_ms.is_finite() && l.rtt_ms > 0.0) {
                return Err(format!("link[{i}].rtt_ms: {} is not a time above zero", l.rtt_ms));
            }
            if let Some(j) = seen.insert((a.min(b), a.max(b)), i) {
                return Err(format!("link[{i}]: {:?}–{:?} is also link[{j}]", l.a, l.b));
            }
            neighbours[a.index()].push(Neighbour { node: b, rtt_ms: l.rtt_ms, backup: l.backup });
            neighbours[b.index()].push(Neighbour { node: a, rtt_ms: l.rtt_ms, backup: l.backup });
        }
        let mut groups = Vec::new();
        let mut services = HashMap::new();
        for (i, g) in self.groups.iter().enumerate() {
            if let Some(j) = services.insert(g.service.as_str(), i) {
                return Err(format!("group[{i}].service: {:?} is also group[{j}]", g.service));
            }
            let mut members = vec![self.id(&names, &g.primary, || format!("group[{i}].primary"))?];
            for (r, name) in g.replicas.iter().enumerate() {
                let id = self.id(&names, name, || format!("group[{i}].replicas[{r}]"))?;
                if members.contains(&id) {
                    return Err(format!("group[{i}].replicas[{r}]: {name:?} is already a member"));
                }
                members.push(id);
            }
            if g.factor == 0 || g.factor as usize > members.len() {
                return Err(format!(
                    "group[{i}].factor: {} is not between 1 and its {} members",
                    g.factor,
                    members.len()
                ));
            }
            if g.sync && g.strategy != Redundancy::ActivePassive {
                return Err(format!(
                    "group[{i}].sync: only an active_passive group ships its log, synchronously or not"
                ));
            }
            let n = members.len();
            // A PBFT-ordered group's client needs f + 1 equal replies, one
            // of them from a correct member; the others a majority.
            let majority = n / 2 + 1;
            let quorum = match crate::ordering::by_pbft(g.strategy, g.consistency, n) {
                true => crate::ordering::tolerated(n) + 1,
                false => majority,
            };
            let (r, w) = (g.r.map_or(majority, |x| x as usize), g.w.map_or(majority, |x| x as usize));
            if g.strategy != Redundancy::Quorum && (g.r.is_some() || g.w.is_some()) {
                return Err(format!("group[{i}].r/w: only a quorum group reads and writes by quorum"));
            }
            for (name, q) in [("r", r), ("w", w)] {
                if q == 0 || q > n {
                    return Err(format!("group[{i}].{name}: {q} is not between 1 and its {n} members"));
                }
            }
            // A strong group must survive its Byzantine-mode members: with f
            // of them it needs 3f + 1 (the seed's factor 3 survives none).
            let byzantine: Vec<&str> = members
                .iter()
                .filter(|m| self.nodes[m.index()].failure_mode == FailureMode::Byzantine)
                .map(|m| self.nodes[m.index()].name.as_str())
                .collect();
            let f = byzantine.len();
            if g.consistency == Consistency::Strong && f > 0 && n < 3 * f + 1 {
                return Err(format!(
                    "group[{i}] ({}): a strong group with {f} Byzantine member(s) ({}) needs at least 3f + 1 = {} \
                     members to stay correct; it has {n}",
                    g.service,
                    byzantine.join(", "),
                    3 * f + 1
                ));
            }
            if r + w <= n {
                return Err(format!(
                    "group[{i}]: r + w = {} does not exceed its {n} members, so a read could miss the latest write",
                    r + w
                ));
            }
            groups.push(Group {
                service: g.service.clone(),
                members,
                strategy: g.strategy,
                consistency: g.consistency,
                quorum,
                sync: g.sync,
                r,
                w,
            });
        }
        let w = &self.workload;
        let mut clients = vec![false; count];
        if w.clients.is_empty() {
            for (i, n) in self.nodes.iter().enumerate() {
                clients[i] = n.layer == Layer::Edge;
            }
        }
        for (i, name) in w.clients.iter().enumerate() {
            clients[self.id(&names, name, || format!("workload.clients[{i}]"))?.index()] = true;
        }
        if !(w.rate.is_finite() && w.rate >= 0.0) {
            return Err(format!("workload.rate: {} is not a finite rate ≥ 0", w.rate));
        }
        if (w.rate > 0.0 || w.closed_loop > 0) && groups.is_empty() {
            return Err("workload.rate: requests need at least one [[params.group]] to go to".into());
        }
        for service in w.mix.keys() {
            if !services.contains_key(service.as_str()) {
                return Err(format!("workload.mix.{service}: no group serves {service:?}"));
            }
        }
        if !w.mix.is_empty() {
            let mix: Vec<(&str, f64)> = w.mix.iter().map(|(s, &v)| (s.as_str(), v)).collect();
            shares("workload.mix", &mix)?;
        }
        let weights: Vec<f64> = groups
            .iter()
            .map(|g| if w.mix.is_empty() { 1.0 } else { w.mix.get(&g.service).copied().unwrap_or(0.0) })
            .collect();
        if (w.rate > 0.0 || w.closed_loop > 0) && weights.iter().sum::<f64>() <= 0.0 {
            return Err("workload.mix: every weight is zero".into());
        }
        let mix = weights
            .iter()
            .scan(0.0, |acc, v| {
                *acc += v;
                Some(*acc)
            })
            .collect();
        let [low, normal, high] = w.priorities;
        shares("workload.priorities", &[("low", low), ("normal", normal), ("high", high)])?;
        if !(w.service_scale.is_finite() && w.service_scale >= 0.0) {
            return Err(format!("workload.service_scale: {} is not a finite factor ≥ 0", w.service_scale));
        }
        if !(0.0..1.0).contains(&w.service_jitter) {
            return Err(format!("workload.service_jitter: {} is not in [0, 1)", w.service_jitter));
        }
        w.ops.validate().map_err(|e| format!("workload.{e}"))?;
        let keys = KeySampler::new(w.keys, w.key_distribution).map_err(|e| format!("workload.{e}"))?;
        self.detector.validate().map_err(|e| format!("detector.{e}"))?;
        if self.omission.window < 4 {
            return Err(format!("omission.window: {} heartbeats are too few (at least 4)", self.omission.window));
        }
        if !(0.0..1.0).contains(&self.omission.threshold) || self.omission.threshold == 0.0 {
            return Err(format!("omission.threshold: {} is not a loss fraction in (0, 1)", self.omission.threshold));
        }
        let r = &self.rpc;
        if r.timeout.is_zero() || r.deadline < r.timeout {
            return Err(format!(
                "rpc.deadline: {:?} must be at least one attempt's timeout {:?} (and that above zero)",
                r.deadline, r.timeout
            ));
        }
        if r.attempts == 0 || r.attempts > 10 {
            return Err(format!("rpc.attempts: {} is not between 1 and 10", r.attempts));
        }
        if r.backoff_cap < r.backoff_base {
            return Err(format!("rpc.backoff_cap: {:?} is below backoff_base {:?}", r.backoff_cap, r.backoff_base));
        }
        let rate = |v: f64| v.is_finite() && v >= 0.0;
        if !(rate(r.budget_ratio) && rate(r.budget_min_per_s)) {
            return Err("rpc.budget_ratio: the budget's ratio and rate must be finite and ≥ 0".into());
        }
        if !(0.0..=1.0).contains(&r.max_ejected) {
            return Err(format!("rpc.max_ejected: {} is not a fraction in [0, 1]", r.max_ejected));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(format!("jitter: {} is not in [0, 1)", self.jitter));
        }
        if self.refresh.is_zero() {
            return Err("refresh: must be longer than zero".into());
        }
        if self.byzantine_strikes == 0 {
            return Err("byzantine_strikes: must be at least 1".into());
        }
        let one_way_ms = shortest_paths(&neighbours);
        let pbft = groups
            .iter()
            .map(|g| {
                crate::ordering::by_pbft(g.strategy, g.consistency, g.members.len())
                    .then(|| Arc::new(crate::ordering::Numbering::new(g, count, self.rpc.timeout)))
            })
            .collect();
        Ok(Topology { params: self.clone(), neighbours, groups, clients, mix, one_way_ms, keys, pbft })
    }
}

/// All-pairs shortest one-way delays (half the RTTs) by Dijkstra from every node.
fn shortest_paths(neighbours: &[Vec<Neighbour>]) -> Vec<Vec<f64>> {
    (0..neighbours.len())
        .map(|s| {
            crate::route::dijkstra(NodeId(s as u32), neighbours.len(), |a| {
                neighbours[a.index()].iter().map(|n| (n.node, n.rtt_ms / 2.0))
            })
            .0
        })
        .collect()
}

impl Topology {
    pub fn len(&self) -> usize {
        self.params.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.params.nodes.is_empty()
    }
    pub fn node(&self, id: NodeId) -> &NodeSpec {
        &self.params.nodes[id.index()]
    }
    pub fn name(&self, id: NodeId) -> &str {
        &self.node(id).name
    }
}

/// A generated topology of the seed's shape at a larger size: `edges` edge
/// nodes each linked to two cores, `cores` core nodes in a ring of backup
/// links, each linked to one cloud node; every edge node a client; an
/// active-passive group per pair of edges, an n-way group per core and its
/// two ring neighbours, a geographic analytics group per cloud node. With
/// four cores or more, Core1 is Byzantine-minded and the n-way groups that
/// hold it get a fourth core (3f + 1).
pub fn generate(edges: u32, cores: u32, clouds: u32, seed: u64) -> Result<Params, String> {
    use rand::{Rng, SeedableRng};
    if edges < 2 || cores < 3 || clouds < 1 {
        return Err(format!(
            "a generated topology needs ≥ 2 edges, ≥ 3 cores and ≥ 1 cloud (got {edges}, {cores}, {clouds})"
        ));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut nodes = Vec::new();
    let mut node = |name: String, layer: Layer, latency: f64, tp: f64, mode: FailureMode, criticality: f64| {
        nodes.push(NodeSpec {
            name,
            layer,
            latency_ms: latency,
            throughput_mbps: tp,
            cpu_percent: 50.0,
            memory_gb: 8.0,
            tx_per_s: 200.0,
            lock_contention_percent: 10.0,
            failure_mode: mode,
            services: Vec::new(),
            slots: default_slots(),
            queue_limit: default_queue_limit(),
            slow: 1.0,
            criticality,
        })
    };
    for e in 0..edges {
        let mode = if e % 2 == 0 { FailureMode::Crash } else { FailureMode::Omission };
        node(format!("Edge{}", e + 1), Layer::Edge, rng.random_range(10.0..16.0), 500.0, mode, 0.5);
    }
    // One Byzantine core (as the seed has), where a group with it can have
    // the 3f + 1 = 4 members a strong group needs.
    let byzantine = |c: u32| c == 0 && cores >= 4;
    for c in 0..cores {
        let mode = if byzantine(c) { FailureMode::Byzantine } else { FailureMode::Crash };
        node(format!("Core{}", c + 1), Layer::Core, rng.random_range(7.0..11.0), 1000.0, mode, 0.9);
    }
    for c in 0..clouds {
        node(
            format!("Cloud{}", c + 1),
            Layer::Cloud,
            rng.random_range(18.0..24.0),
            1250.0,
            FailureMode::Omission,
            0.75,
        );
    }
    let name = |layer: &str, i: u32| format!("{layer}{}", i + 1);
    let mut links = Vec::new();
    let mut link = |a: String, b: String, rtt: f64, backup: bool| links.push(LinkSpec { a, b, rtt_ms: rtt, backup });
    for e in 0..edges {
        let first = rng.random_range(0..cores);
        let second = (first + 1 + rng.random_range(0..cores - 1)) % cores;
        link(name("Edge", e), name("Core", first), rng.random_range(6.0..12.0), false);
        link(name("Edge", e), name("Core", second), rng.random_range(6.0..12.0), false);
        if e % 2 == 1 {
            link(name("Edge", e - 1), name("Edge", e), rng.random_range(14.0..20.0), true);
        }
    }
    for c in 0..cores {
        link(name("Core", c), name("Core", (c + 1) % cores), rng.random_range(8.0..12.0), true);
        link(name("Core", c), name("Cloud", c % clouds), rng.random_range(20.0..26.0), false);
    }
    let mut groups = Vec::new();
    for e in (0..edges - 1).step_by(2) {
        groups.push(GroupSpec {
            service: format!("rpc-{}", e / 2 + 1),
            primary: name("Edge", e),
            replicas: vec![name("Edge", e + 1)],
            strategy: Redundancy::ActivePassive,
            consistency: Consistency::Eventual,
            factor: 2,
            sync: false,
            r: None,
            w: None,
        });
    }
    for c in 0..cores {
        let mut members: Vec<u32> = (1..3).map(|k| (c + k) % cores).collect();
        if byzantine(c) || members.iter().any(|&m| byzantine(m)) {
            members.push((c + 3) % cores); // distinct: there are ≥ 4 cores
        }
        groups.push(GroupSpec {
            service: format!("transactions-{}", c + 1),
            primary: name("Core", c),
            replicas: members.iter().map(|&m| name("Core", m)).collect(),
            strategy: Redundancy::NWay,
            consistency: Consistency::Strong,
            factor: 3,
            sync: false,
            r: None,
            w: None,
        });
    }
    for c in 0..clouds {
        groups.push(GroupSpec {
            service: format!("analytics-{}", c + 1),
            primary: name("Cloud", c),
            replicas: vec![name("Core", c % cores), name("Core", (c + 1) % cores)],
            strategy: Redundancy::Geographic,
            consistency: Consistency::Eventual,
            factor: 3,
            sync: false,
            r: None,
            w: None,
        });
    }
    let params = Params {
        nodes,
        links,
        groups,
        workload: Workload { rate: 20.0, ..Workload::default() },
        detector: PhiConfig::default(),
        omission: OmissionConfig::default(),
        rpc: RpcConfig::default(),
        balancer: Strategy::default(),
        jitter: default_jitter(),
        refresh: Duration::from_secs(2),
        byzantine_strikes: default_strikes(),
    };
    params.compile()?;
    Ok(params)
}
