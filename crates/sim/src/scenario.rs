//! Scenario files: a TOML description of one simulation run (nodes, seed,
//! network, fault plan, protocol and its parameters).
//!
//! ```toml
//! name = "reliable broadcast under faults"
//! protocol = "broadcast"
//! nodes = 32
//! seed = 7
//! until = "20s"                 # simulated time limit
//!
//! [network]
//! delay = { model = "uniform", min = "1ms", max = "20ms" }
//! fifo = false
//! loss = 0.02
//!
//! [params]                      # the protocol's own parameters
//! count = 50
//!
//! [[fault]]
//! kind = "crash"
//! at = "200ms"
//! node = 5
//! ```
//!
//! Every error names the file, the line and the field.

use crate::network::{LoadAdversary, MaxAdversary, Model, UniformAdversary};
use crate::{Fault, Scope, Sim, SimConfig};
pub use agora_core::config_file::{line_col, parse_toml, FileError};
use agora_core::{duration_str, NodeId, Protocol, Time};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// A scenario whose protocol parameters are `P`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario<P> {
    #[serde(default)]
    pub name: String,
    /// Which protocol runs (the CLI picks the parameter type from it).
    pub protocol: String,
    pub nodes: u32,
    #[serde(default)]
    pub seed: u64,
    /// Simulated time limit.
    #[serde(with = "duration_str", default = "default_until")]
    pub until: Duration,
    /// Event budget, for protocols that never go quiet.
    #[serde(default)]
    pub max_events: Option<u64>,
    #[serde(default)]
    pub network: NetworkSpec,
    pub params: P,
    #[serde(default)]
    pub fault: Vec<Spanned<FaultSpec>>,
    /// Nodes that may toggle faulty at quiescent times.
    #[serde(default)]
    pub fragile: Vec<u32>,
    #[serde(default)]
    pub byzantine: Vec<Spanned<ByzantineSpec>>,
    /// The file's text, kept for trace headers and replay.
    #[serde(skip)]
    pub source: String,
    #[serde(skip)]
    pub path: String,
}

fn default_until() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub delay: DelaySpec,
    /// Deliver each directed link's messages in send order.
    #[serde(default)]
    pub fifo: bool,
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub duplication: f64,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum DelaySpec {
    Constant {
        #[serde(with = "duration_str")]
        delay: Duration,
    },
    Uniform {
        #[serde(with = "duration_str")]
        min: Duration,
        #[serde(with = "duration_str")]
        max: Duration,
    },
    Exponential {
        #[serde(with = "duration_str")]
        mean: Duration,
        #[serde(with = "duration_str", default)]
        min: Duration,
    },
    /// `latency[a][b]` in milliseconds between sites; nodes are placed on
    /// sites round-robin unless `sites` lists each node's site.
    Matrix {
        latency_ms: Vec<Vec<f64>>,
        #[serde(default)]
        sites: Option<Vec<u16>>,
        #[serde(default)]
        jitter: f64,
    },
    /// Delays in (0, 1] × `unit`, chosen by the adversary.
    Async {
        #[serde(with = "duration_str", default = "one_second")]
        unit: Duration,
        #[serde(default)]
        adversary: AdversarySpec,
    },
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

impl Default for DelaySpec {
    fn default() -> Self {
        DelaySpec::Constant { delay: Duration::from_millis(1) }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum AdversarySpec {
    #[default]
    Uniform,
    Max,
    /// Messages to nodes with at least 4 messages in flight towards them
    /// take the full unit; others are fast.
    Load,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    Crash {
        #[serde(with = "duration_str")]
        at: Duration,
        node: u32,
    },
    Recover {
        #[serde(with = "duration_str")]
        at: Duration,
        node: u32,
        #[serde(default)]
        memory: bool,
    },
    /// Drops with probability `rate` what a node sends or receives (`node`),
    /// or what one directed link carries (`link = [from, to]`), from `at`
    /// until `until` (forever if absent).
    Omission {
        #[serde(with = "duration_str", default)]
        at: Duration,
        #[serde(default, with = "opt_duration")]
        until: Option<Duration>,
        #[serde(default)]
        node: Option<u32>,
        #[serde(default)]
        link: Option<[u32; 2]>,
        rate: f64,
    },
    Partition {
        #[serde(with = "duration_str")]
        at: Duration,
        #[serde(default, with = "opt_duration")]
        heal: Option<Duration>,
        groups: Vec<Vec<u32>>,
    },
    Heal {
        #[serde(with = "duration_str")]
        at: Duration,
    },
    /// A fragile node asks to turn faulty (or back) at `at`; it takes effect
    /// at the next quiescent time.
    Fragile {
        #[serde(with = "duration_str")]
        at: Duration,
        node: u32,
        #[serde(default = "yes")]
        faulty: bool,
    },
}

fn yes() -> bool {
    true
}

/// Generic Byzantine behaviours, which need no knowledge of the protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByzantineSpec {
    pub node: u32,
    pub behaviour: Behaviour,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Sends nothing.
    Mute,
    /// Sends everything twice.
    Duplicate,
    /// Sends each message to a random node instead.
    Misroute,
    /// Sends, in place of each message, the one it produced before it.
    Replay,
}

mod opt_duration {
    use agora_core::duration_str;
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| duration_str::parse(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Reads only the `protocol` key, to pick the parameter type.
pub fn protocol_of(path: &str, src: &str) -> Result<String, FileError> {
    #[derive(Deserialize)]
    struct Head {
        protocol: String,
    }
    parse_toml::<Head>(path, src).map(|h| h.protocol)
}

impl<P: DeserializeOwned> Scenario<P> {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| FileError {
            path: name.clone(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_str(&name, &src)
    }

    /// Parses and validates scenario text; `path` names it in errors.
    pub fn from_str(path: &str, src: &str) -> Result<Self, FileError> {
        let mut s: Scenario<P> = parse_toml(path, src)?;
        s.source = src.to_string();
        s.path = path.to_string();
        s.validate()?;
        Ok(s)
    }
}

impl<P> Scenario<P> {
    /// An error at `span` (or the file as a whole), naming `field`.
    pub fn error(&self, span: Option<std::ops::Range<usize>>, field: &str, message: impl Into<String>) -> FileError {
        let (line, column) = span.map(|s| line_col(&self.source, s.start)).unzip();
        FileError { path: self.path.clone(), line, column, field: field.to_string(), message: message.into() }
    }

    /// The line where `key = ` first appears at the start of a line, for
    /// errors in plain (unspanned) fields.
    pub fn key_span(&self, key: &str) -> Option<std::ops::Range<usize>> {
        let mut offset = 0;
        for line in self.source.split_inclusive('\n') {
            let t = line.trim_start();
            if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
                return Some(offset..offset + line.len());
            }
            if t.starts_with(&format!("[{key}]")) {
                return Some(offset..offset + line.len());
            }
            offset += line.len();
        }
        None
    }

    fn validate(&self) -> Result<(), FileError> {
        let n = self.nodes;
        if n == 0 {
            return Err(self.error(self.key_span("nodes"), "nodes", "must be at least 1"));
        }
        let node_ok = |v: u32| v < n;
        let prob = |v: f64| (0.0..=1.0).contains(&v);
        let net = &self.network;
        if !prob(net.loss) {
            return Err(self.error(
                self.key_span("loss"),
                "network.loss",
                format!("{} is not a probability in [0, 1]", net.loss),
            ));
        }
        if !prob(net.duplication) {
            return Err(self.error(
                self.key_span("duplication"),
                "network.duplication",
                format!("{} is not a probability in [0, 1]", net.duplication),
            ));
        }
        let delay_err = |m: String| self.error(self.key_span("delay"), "network.delay", m);
        match &net.delay {
            DelaySpec::Uniform { min, max } if min > max => {
                return Err(delay_err(format!("min {min:?} is above max {max:?}")))
            }
            DelaySpec::Exponential { mean, .. } if mean.is_zero() => {
                return Err(delay_err("mean must be longer than zero".into()))
            }
            DelaySpec::Async { unit, .. } if unit.is_zero() => {
                return Err(delay_err("unit must be longer than zero".into()))
            }
            DelaySpec::Matrix { latency_ms, sites, jitter } => {
                let k = latency_ms.len();
                if k == 0 || latency_ms.iter().any(|row| row.len() != k) {
                    return Err(delay_err(format!("latency_ms must be a square matrix (it has {k} rows)")));
                }
                if let Some(v) = latency_ms.iter().flatten().find(|v| !v.is_finite() || **v < 0.0) {
                    return Err(delay_err(format!("latency_ms holds {v}, which is not a latency")));
                }
                if !(0.0..1.0).contains(jitter) {
                    return Err(delay_err(format!("jitter {jitter} must be in [0, 1)")));
                }
                if let Some(s) = sites {
                    if s.len() != n as usize {
                        return Err(delay_err(format!("sites lists {} nodes, the scenario has {n}", s.len())));
                    }
                    if let Some(bad) = s.iter().find(|&&x| x as usize >= k) {
                        return Err(delay_err(format!("site {bad} does not exist ({k} sites)")));
                    }
                }
            }
            _ => {}
        }
        for (i, f) in self.fault.iter().enumerate() {
            let err = |field: &str, m: String| self.error(Some(f.span()), &format!("fault[{i}].{field}"), m);
            match f.get_ref() {
                FaultSpec::Crash { node, .. } | FaultSpec::Recover { node, .. } | FaultSpec::Fragile { node, .. }
                    if !node_ok(*node) =>
                {
                    return Err(err("node", format!("node {node} does not exist (nodes = {n})")))
                }
                FaultSpec::Fragile { node, .. } if !self.fragile.contains(node) => {
                    return Err(err("node", format!("node {node} is not declared in `fragile`")))
                }
                FaultSpec::Omission { node, link, rate, .. } => {
                    if !prob(*rate) {
                        return Err(err("rate", format!("{rate} is not a probability in [0, 1]")));
                    }
                    match (node, link) {
                        (Some(_), Some(_)) | (None, None) => {
                            return Err(err("node", "give exactly one of `node` and `link`".into()))
                        }
                        (Some(v), None) if !node_ok(*v) => {
                            return Err(err("node", format!("node {v} does not exist (nodes = {n})")))
                        }
                        (None, Some(l)) if !l.iter().all(|v| node_ok(*v)) => {
                            return Err(err(
                                "link",
                                format!("link {l:?} names a node that does not exist (nodes = {n})"),
                            ))
                        }
                        _ => {}
                    }
                }
                FaultSpec::Partition { groups, .. } => {
                    let mut seen = std::collections::BTreeSet::new();
                    for v in groups.iter().flatten() {
                        if !node_ok(*v) {
                            return Err(err("groups", format!("node {v} does not exist (nodes = {n})")));
                        }
                        if !seen.insert(*v) {
                            return Err(err("groups", format!("node {v} is in two groups")));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(v) = self.fragile.iter().find(|v| !node_ok(**v)) {
            return Err(self.error(
                self.key_span("fragile"),
                "fragile",
                format!("node {v} does not exist (nodes = {n})"),
            ));
        }
        for (i, b) in self.byzantine.iter().enumerate() {
            if !node_ok(b.get_ref().node) {
                return Err(self.error(
                    Some(b.span()),
                    &format!("byzantine[{i}].node"),
                    format!("node {} does not exist (nodes = {n})", b.get_ref().node),
                ));
            }
        }
        Ok(())
    }

    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            fifo: self.network.fifo,
            loss: self.network.loss,
            duplication: self.network.duplication,
            collect_outputs: true,
        }
    }

    /// The delay model the `[network]` section describes.
    pub fn latency<Q: Protocol>(&self) -> Model<Q> {
        let ms = |v: f64| Duration::from_secs_f64(v / 1e3);
        match &self.network.delay {
            DelaySpec::Constant { delay } => Model::Constant(*delay),
            DelaySpec::Uniform { min, max } => Model::Uniform { min: *min, max: *max },
            DelaySpec::Exponential { mean, min } => Model::Exponential { mean: *mean, min: *min },
            DelaySpec::Matrix { latency_ms, sites, jitter } => Model::Matrix {
                site_of: sites
                    .clone()
                    .unwrap_or_else(|| (0..self.nodes).map(|i| (i as usize % latency_ms.len()) as u16).collect()),
                latency: latency_ms.iter().map(|row| row.iter().map(|&v| ms(v)).collect()).collect(),
                jitter: *jitter,
            },
            DelaySpec::Async { unit, adversary } => Model::Async {
                unit: *unit,
                adversary: match adversary {
                    AdversarySpec::Uniform => Box::new(UniformAdversary),
                    AdversarySpec::Max => Box::new(MaxAdversary),
                    AdversarySpec::Load => Box::new(LoadAdversary { threshold: 4, fast: 0.1 }),
                },
            },
        }
    }

    /// Schedules the fault plan, declares fragile nodes and installs the
    /// Byzantine behaviours on `sim`.
    pub fn install<Q: Protocol>(&self, sim: &mut Sim<Q>) {
        let at = |d: &Duration| Time::ZERO + *d;
        sim.set_fragile(self.fragile.iter().map(|&v| NodeId(v)));
        for f in &self.fault {
            match f.get_ref() {
                FaultSpec::Crash { at: t, node } => sim.schedule_fault(at(t), Fault::Crash(NodeId(*node))),
                FaultSpec::Recover { at: t, node, memory } => {
                    sim.schedule_fault(at(t), Fault::Recover { node: NodeId(*node), memory: *memory })
                }
                FaultSpec::Omission { at: t, until, node, link, rate } => {
                    let scope = match (node, link) {
                        (Some(v), _) => Scope::Node(NodeId(*v)),
                        (None, Some([a, b])) => Scope::Link(NodeId(*a), NodeId(*b)),
                        (None, None) => unreachable!("validated: omission names a node or a link"),
                    };
                    sim.schedule_fault(at(t), Fault::Omission { scope: scope.clone(), rate: *rate });
                    if let Some(u) = until {
                        sim.schedule_fault(at(u), Fault::Omission { scope, rate: 0.0 });
                    }
                }
                FaultSpec::Partition { at: t, heal, groups } => {
                    let groups = groups.iter().map(|g| g.iter().map(|&v| NodeId(v)).collect()).collect();
                    sim.schedule_fault(at(t), Fault::Partition(groups));
                    if let Some(h) = heal {
                        sim.schedule_fault(at(h), Fault::Heal);
                    }
                }
                FaultSpec::Heal { at: t } => sim.schedule_fault(at(t), Fault::Heal),
                FaultSpec::Fragile { at: t, node, faulty } => {
                    sim.schedule_fault(at(t), Fault::Fragile { node: NodeId(*node), faulty: *faulty })
                }
            }
        }
        for b in &self.byzantine {
            let b = b.get_ref();
            sim.set_byzantine(NodeId(b.node), byzantine::<Q>(b.behaviour, self.nodes));
        }
    }
}

/// The rewrite hook of a generic Byzantine behaviour.
pub fn byzantine<Q: Protocol>(behaviour: Behaviour, nodes: u32) -> crate::Byzantine<Q> {
    match behaviour {
        Behaviour::Mute => Box::new(|_, _, _| Vec::new()),
        Behaviour::Duplicate => Box::new(|to, m: Q::Msg, _| vec![(to, m.clone()), (to, m)]),
        Behaviour::Misroute => Box::new(move |_, m, rng| vec![(NodeId(rng.random_range(0..nodes)), m)]),
        Behaviour::Replay => {
            let mut previous: Option<Q::Msg> = None;
            Box::new(move |to, m, _| vec![(to, previous.replace(m.clone()).unwrap_or(m))])
        }
    }
}
