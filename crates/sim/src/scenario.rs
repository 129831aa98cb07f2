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
//! [disk]                        # the storage capability's disk (all optional)
//! write = "10us"                # per write in a sync's batch
//! sync_min = "500us"
//! sync_max = "2ms"
//! capacity_bytes = 1048576      # a sync beyond it is refused as full
//! torn = 0.1                    # P(a crash tears the last unsynced write)
//! corrupt = 0.0                 # P(a crash corrupts one durable record)
//!
//! [[fault]]                     # crash | recover | omission | partition | heal
//! kind = "crash"                # | fragile | disk_full | disk_corrupt
//! at = "200ms"
//! node = 5
//!
//! [[input]]                     # what the outside world hands a node
//! at = "5ms"
//! node = 3
//! value = { Inject = 1 }        # the protocol's Input, as TOML
//! ```
//!
//! Every error names the file, the line and the field. A scenario can also
//! be built in code ([`Scenario::new`]) and written out ([`Scenario::to_toml`]),
//! so that a run an experiment builds is traced and replayed like a file's.

use crate::network::{LoadAdversary, MaxAdversary, Model, UniformAdversary};
use crate::{Fault, Scope, Sim, SimConfig};
use agora_core::config_file::{self, ArrayTables};
pub use agora_core::config_file::{line_col, parse_toml, FileError};
use agora_core::{duration_str, NodeId, Protocol, Time};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// A scenario whose protocol parameters are `P`.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// The disk model behind the storage capability.
    #[serde(default)]
    pub disk: crate::DiskModel,
    pub params: P,
    #[serde(default)]
    pub fault: Vec<Spanned<FaultSpec>>,
    /// Nodes that may toggle faulty at quiescent times.
    #[serde(default)]
    pub fragile: Vec<u32>,
    #[serde(default)]
    pub byzantine: Vec<Spanned<ByzantineSpec>>,
    #[serde(default)]
    pub input: Vec<Spanned<InputSpec>>,
    /// The file's text, kept for trace headers and replay.
    #[serde(skip)]
    pub source: String,
    #[serde(skip)]
    pub path: String,
}

fn default_until() -> Duration {
    Duration::from_secs(60)
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// None: the default (1 ms constant), or — for a protocol that brings its
    /// own links — the protocol's delays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelaySpec>,
    /// Deliver each directed link's messages in send order.
    #[serde(default)]
    pub fifo: bool,
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub duplication: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
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

/// Who picks the delays of the asynchronous model: the one adversary type
/// of scenarios, experiments and the command line.
#[derive(Debug, Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AdversarySpec {
    /// Each delay uniform in (0, 1] unit.
    #[default]
    Uniform,
    /// Every delay the full unit.
    Max,
    /// A message to a node with [`LOAD_THRESHOLD`] or more messages in
    /// flight towards it takes the full unit; the rest are fast (≤ 0.1).
    Load,
}

/// The in-flight count at which the load adversary slows a node down.
pub const LOAD_THRESHOLD: u32 = 2;

impl AdversarySpec {
    pub fn build<Q: Protocol>(self) -> Box<dyn crate::Adversary<Q>> {
        match self {
            AdversarySpec::Uniform => Box::new(UniformAdversary),
            AdversarySpec::Max => Box::new(MaxAdversary),
            AdversarySpec::Load => Box::new(LoadAdversary { threshold: LOAD_THRESHOLD, fast: 0.1 }),
        }
    }
}

impl std::str::FromStr for AdversarySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(AdversarySpec::Uniform),
            "max" => Ok(AdversarySpec::Max),
            "load" => Ok(AdversarySpec::Load),
            _ => Err(format!("unknown adversary {s:?}: uniform, max or load")),
        }
    }
}

/// One `[[fault]]` entry. A flat table (not a tagged enum) so that errors
/// keep their line and field; [`FaultSpec::resolve`] checks which fields
/// each kind takes.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub at: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// recover: keep the node's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<bool>,
    /// omission: when it ends.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub until: Option<Duration>,
    /// omission: a directed link `[from, to]` instead of a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<[u32; 2]>,
    /// omission: drop probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// partition: when it heals.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub heal: Option<Duration>,
    /// partition: the groups (unlisted nodes form one more group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Vec<u32>>>,
    /// fragile: turn faulty (default) or back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faulty: Option<bool>,
    /// disk_full: full (default) or back to accepting writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    #[default]
    Crash,
    Recover,
    Omission,
    Partition,
    Heal,
    Fragile,
    DiskFull,
    DiskCorrupt,
}

impl FaultSpec {
    /// The faults this entry schedules, or the offending field and why.
    pub fn resolve(&self, nodes: u32, fragile: &[u32]) -> Result<Vec<(Duration, Fault)>, (&'static str, String)> {
        use FaultKind::*;
        let k = self.kind;
        let allowed: &[&str] = match k {
            Crash => &["at", "node"],
            Recover => &["at", "node", "memory"],
            Omission => &["at", "until", "node", "link", "rate"],
            Partition => &["at", "heal", "groups"],
            Heal => &["at"],
            Fragile => &["at", "node", "faulty"],
            DiskFull => &["at", "node", "full"],
            DiskCorrupt => &["at", "node"],
        };
        let present = [
            ("at", self.at.is_some()),
            ("node", self.node.is_some()),
            ("memory", self.memory.is_some()),
            ("until", self.until.is_some()),
            ("link", self.link.is_some()),
            ("rate", self.rate.is_some()),
            ("heal", self.heal.is_some()),
            ("groups", self.groups.is_some()),
            ("faulty", self.faulty.is_some()),
            ("full", self.full.is_some()),
        ];
        if let Some((f, _)) = present.iter().find(|(f, p)| *p && !allowed.contains(f)) {
            return Err((f, format!("a {k:?} fault takes only {}", allowed.join(", ")).to_lowercase()));
        }
        let node = |v: u32, field: &'static str| {
            if v < nodes {
                Ok(NodeId(v))
            } else {
                Err((field, format!("node {v} does not exist (nodes = {nodes})")))
            }
        };
        let need_node =
            || self.node.ok_or(("node", format!("a {} fault needs `node`", format!("{k:?}").to_lowercase())));
        let at = match (k, self.at) {
            (_, Some(t)) => t,
            (Omission, None) => Duration::ZERO,
            (_, None) => return Err(("at", format!("a {} fault needs `at`", format!("{k:?}").to_lowercase()))),
        };
        Ok(match k {
            Crash => vec![(at, Fault::Crash(node(need_node()?, "node")?))],
            Recover => {
                vec![(at, Fault::Recover { node: node(need_node()?, "node")?, memory: self.memory.unwrap_or(false) })]
            }
            Heal => vec![(at, Fault::Heal)],
            DiskFull => {
                vec![(at, Fault::DiskFull { node: node(need_node()?, "node")?, full: self.full.unwrap_or(true) })]
            }
            DiskCorrupt => vec![(at, Fault::DiskCorrupt(node(need_node()?, "node")?))],
            Fragile => {
                let v = need_node()?;
                if !fragile.contains(&v) {
                    return Err(("node", format!("node {v} is not declared in `fragile`")));
                }
                vec![(at, Fault::Fragile { node: node(v, "node")?, faulty: self.faulty.unwrap_or(true) })]
            }
            Omission => {
                let rate = self.rate.ok_or(("rate", "an omission fault needs `rate`".to_string()))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(("rate", format!("{rate} is not a probability in [0, 1]")));
                }
                let scope = match (self.node, self.link) {
                    (Some(v), None) => Scope::Node(node(v, "node")?),
                    (None, Some([a, b])) => Scope::Link(node(a, "link")?, node(b, "link")?),
                    _ => return Err(("node", "give exactly one of `node` and `link`".into())),
                };
                let mut v = vec![(at, Fault::Omission { scope: scope.clone(), rate })];
                if let Some(u) = self.until {
                    v.push((u, Fault::Omission { scope, rate: 0.0 }));
                }
                v
            }
            Partition => {
                let groups = self.groups.as_ref().ok_or(("groups", "a partition needs `groups`".to_string()))?;
                let mut seen = std::collections::BTreeSet::new();
                let mut out = Vec::new();
                for g in groups {
                    let mut members = Vec::new();
                    for &v in g {
                        if !seen.insert(v) {
                            return Err(("groups", format!("node {v} is in two groups")));
                        }
                        members.push(node(v, "groups")?);
                    }
                    out.push(members);
                }
                let mut v = vec![(at, Fault::Partition(out))];
                if let Some(h) = self.heal {
                    v.push((h, Fault::Heal));
                }
                v
            }
        })
    }
}

/// Generic Byzantine behaviours, which need no knowledge of the protocol.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ByzantineSpec {
    pub node: u32,
    pub behaviour: Behaviour,
}

#[derive(Debug, Deserialize, Serialize, Clone, Copy, PartialEq)]
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

/// One `[[input]]` entry: at `at`, `node` is handed `value`, the
/// protocol's input as TOML (checked against its type when the scenario is
/// typed, see [`Scenario::inputs`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(with = "duration_str")]
    pub at: Duration,
    pub node: u32,
    pub value: InputValue,
}

/// An input's value: as read from a file, its TOML text (a few dozen bytes,
/// where a parsed inline table costs a map of hundreds); built in code, a
/// value.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    Text(String),
    Value(toml::Value),
}

impl InputValue {
    /// The value as `T` (the protocol's input); the error says why not.
    pub fn to<T: DeserializeOwned>(&self) -> Result<T, String> {
        let value = match self {
            InputValue::Text(text) => toml::de::ValueDeserializer::parse(text).and_then(T::deserialize),
            InputValue::Value(value) => value.clone().try_into(),
        };
        value.map_err(|e| e.message().to_string())
    }
}

impl<'de> Deserialize<'de> for InputValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        toml::Value::deserialize(d).map(InputValue::Value)
    }
}

impl Serialize for InputValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InputValue::Text(_) => self.to::<toml::Value>().map_err(serde::ser::Error::custom)?.serialize(s),
            InputValue::Value(value) => value.serialize(s),
        }
    }
}

mod opt_duration {
    use agora_core::duration_str;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration_str::serialize(d, s),
            None => s.serialize_none(),
        }
    }
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
    parse_head::<Head>(path, src).map(|(h, _)| h.protocol)
}

/// The scenario text without its `[[input]]` entries: what a reader of the
/// other keys parses, in memory that does not grow with the inputs.
pub fn head(src: &str) -> std::borrow::Cow<'_, str> {
    match config_file::cut_array_tables(src, "input") {
        Some(cut) => cut.rest.into(),
        None => src.into(),
    }
}

/// Parses all of `src` but its `[[input]]` entries, which are returned cut
/// out (see [`config_file::cut_array_tables`]); errors are located in `src`.
fn parse_head<T: DeserializeOwned>(path: &str, src: &str) -> Result<(T, Option<ArrayTables>), FileError> {
    match config_file::cut_array_tables(src, "input") {
        Some(cut) => Ok((config_file::parse_toml_part(path, src, &cut.rest, |at| cut.file_offset(at))?, Some(cut))),
        None => Ok((parse_toml(path, src)?, None)),
    }
}

impl<P: DeserializeOwned> Scenario<P> {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let (name, src) = agora_core::config_file::read(path)?;
        Self::from_str(&name, &src)
    }

    /// Parses and validates scenario text; `path` names it in errors.
    pub fn from_str(path: &str, src: &str) -> Result<Self, FileError> {
        let (mut s, cut) = parse_head::<Scenario<P>>(path, src)?;
        if let Some(cut) = cut {
            // Spans in the text without the entries, moved to the file's.
            let moved = |span: std::ops::Range<usize>| cut.file_offset(span.start)..cut.file_offset(span.end);
            s.fault = s.fault.into_iter().map(|f| Spanned::new(moved(f.span()), f.into_inner())).collect();
            s.byzantine = s.byzantine.into_iter().map(|b| Spanned::new(moved(b.span()), b.into_inner())).collect();
            if let Some(first) = s.input.first() {
                let (line, column) = line_col(src, moved(first.span()).start);
                let message = "given both as a key and as [[input]] tables".to_string();
                let field = "input".to_string();
                return Err(FileError { path: path.into(), line: Some(line), column: Some(column), field, message });
            }
            s.input = read_inputs(path, src, &cut.entries)?;
        }
        s.source = src.to_string();
        s.path = path.to_string();
        s.validate()?;
        Ok(s)
    }
}

/// Parses each `[[input]]` entry on its own (see
/// [`config_file::cut_array_tables`]), so a scenario with a million inputs
/// loads in memory proportional to its size.
fn read_inputs(
    path: &str,
    src: &str,
    entries: &[std::ops::Range<usize>],
) -> Result<Vec<Spanned<InputSpec>>, FileError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry<T> {
        input: Vec<Spanned<T>>,
    }
    /// [`InputSpec`] with the value left as text (its span).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(with = "duration_str")]
        at: Duration,
        node: u32,
        value: Spanned<serde::de::IgnoredAny>,
    }
    let mut input = Vec::with_capacity(entries.len());
    for (i, r) in entries.iter().enumerate() {
        let text = &src[r.clone()];
        let entry: Entry<Raw> = config_file::parse_entry(path, src, "input", i, r)?;
        let at_file = |span: std::ops::Range<usize>| span.start + r.start..span.end + r.start;
        // A value written after `value =` is kept as its text; one built
        // from tables (`[input.value]`, `value.x = …`) is parsed whole.
        if entry.input.iter().all(|spec| text[..spec.get_ref().value.span().start].trim_end().ends_with('=')) {
            for spec in entry.input {
                let span = at_file(spec.span());
                let Raw { at, node, value } = spec.into_inner();
                let value = InputValue::Text(text[value.span()].to_string());
                input.push(Spanned::new(span, InputSpec { at, node, value }));
            }
        } else {
            let entry: Entry<InputSpec> = config_file::parse_entry(path, src, "input", i, r)?;
            input.extend(entry.input.into_iter().map(|spec| Spanned::new(at_file(spec.span()), spec.into_inner())));
        }
    }
    Ok(input)
}

impl<P> Scenario<P> {
    /// An error at `span` (or the file as a whole), naming `field`.
    pub fn error(&self, span: Option<std::ops::Range<usize>>, field: &str, message: impl Into<String>) -> FileError {
        let (line, column) = span.map(|s| line_col(&self.source, s.start)).unzip();
        FileError { path: self.path.clone(), line, column, field: field.to_string(), message: message.into() }
    }

    /// What the file asks for that will not happen, located as errors
    /// are: faults and inputs at or after `until`.
    pub fn warnings(&self) -> Vec<FileError> {
        let mut out = Vec::new();
        let until = self.until;
        for (i, f) in self.fault.iter().enumerate() {
            if let Some(at) = f.get_ref().at.filter(|&at| at >= until) {
                let m = format!("{at:?} is not before until ({until:?}): this fault never happens");
                out.push(self.error(Some(f.span()), &format!("fault[{i}].at"), m));
            }
        }
        let mut late = self.input.iter().enumerate().filter(|(_, e)| e.get_ref().at >= until);
        if let Some((first, e)) = late.next() {
            let count = 1 + late.count();
            let m = format!(
                "{count} of {} inputs are at or after until ({until:?}), from this one on: they are never handed over",
                self.input.len()
            );
            out.push(self.error(Some(e.span()), &format!("input[{first}].at"), m));
        }
        out
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

    pub fn validate(&self) -> Result<(), FileError> {
        let n = self.nodes;
        if n == 0 {
            return Err(self.error(self.key_span("nodes"), "nodes", "must be at least 1"));
        }
        if self.until.is_zero() {
            let m = "must be longer than zero (a run of no time does nothing and would report nothing as a success)";
            return Err(self.error(self.key_span("until"), "until", m));
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
        match net.delay.as_ref().unwrap_or(&DelaySpec::default()) {
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
        if let Err(e) = self.disk.validate() {
            let (field, m) = e.split_once(": ").unwrap_or(("", &e));
            return Err(self.error(self.key_span("disk"), &format!("disk.{field}"), m));
        }
        for (i, f) in self.fault.iter().enumerate() {
            f.get_ref()
                .resolve(n, &self.fragile)
                .map_err(|(field, m)| self.error(Some(f.span()), &format!("fault[{i}].{field}"), m))?;
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
            disk: self.disk.clone(),
        }
    }

    /// The delay model the `[network]` section describes.
    pub fn latency<Q: Protocol>(&self) -> Model<Q> {
        let ms = |v: f64| Duration::from_secs_f64(v / 1e3);
        match self.network.delay.as_ref().unwrap_or(&DelaySpec::default()) {
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
            DelaySpec::Async { unit, adversary } => Model::Async { unit: *unit, adversary: adversary.build() },
        }
    }

    /// The `[[input]]` entries as `Q`'s inputs, or an error naming the entry.
    pub fn inputs<Q: Protocol>(&self) -> Result<Vec<(Duration, NodeId, Q::Input)>, FileError> {
        self.input
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let spec = e.get_ref();
                if spec.node >= self.nodes {
                    let m = format!("node {} does not exist (nodes = {})", spec.node, self.nodes);
                    return Err(self.error(Some(e.span()), &format!("input[{i}].node"), m));
                }
                let value = spec.value.to::<Q::Input>().map_err(|err| {
                    self.error(
                        Some(e.span()),
                        &format!("input[{i}].value"),
                        format!("not an input of {}: {err}", self.protocol),
                    )
                })?;
                Ok((spec.at, NodeId(spec.node), value))
            })
            .collect()
    }

    /// Schedules the fault plan and the inputs, declares fragile nodes and
    /// installs the Byzantine behaviours on `sim`.
    pub fn install<Q: Protocol>(&self, sim: &mut Sim<Q>) {
        let at = |d: &Duration| Time::ZERO + *d;
        sim.set_fragile(self.fragile.iter().map(|&v| NodeId(v)));
        for f in &self.fault {
            for (t, fault) in f.get_ref().resolve(self.nodes, &self.fragile).expect("validated when loaded") {
                sim.schedule_fault(at(&t), fault);
            }
        }
        for b in &self.byzantine {
            let b = b.get_ref();
            sim.set_byzantine(NodeId(b.node), byzantine::<Q>(b.behaviour, self.nodes));
        }
        for (t, node, input) in self.inputs::<Q>().expect("validated when loaded") {
            sim.schedule_input(at(&t), node, input);
        }
    }
}

impl<P> Scenario<P> {
    /// A scenario in code: `nodes` nodes running `protocol` with `params`,
    /// and the defaults a file without the other keys gets.
    pub fn new(protocol: &str, nodes: u32, params: P) -> Self {
        Scenario {
            name: String::new(),
            protocol: protocol.to_string(),
            nodes,
            seed: 0,
            until: default_until(),
            max_events: None,
            network: NetworkSpec::default(),
            disk: crate::DiskModel::default(),
            params,
            fault: Vec::new(),
            fragile: Vec::new(),
            byzantine: Vec::new(),
            input: Vec::new(),
            source: String::new(),
            path: String::new(),
        }
    }

    /// Adds a fault entry.
    pub fn push_fault(&mut self, f: FaultSpec) {
        self.fault.push(Spanned::new(0..0, f));
    }

    /// Adds a generic Byzantine behaviour at `node` (as `[[byzantine]]` does).
    pub fn push_byzantine(&mut self, node: u32, behaviour: Behaviour) {
        self.byzantine.push(Spanned::new(0..0, ByzantineSpec { node, behaviour }));
    }

    /// Adds an input entry; `value` must serialize as the protocol's input.
    pub fn push_input(&mut self, at: Duration, node: u32, value: &impl Serialize) -> Result<(), String> {
        let value = toml::Value::try_from(value).map_err(|e| format!("input at {node}: {e}"))?;
        self.input.push(Spanned::new(0..0, InputSpec { at, node, value: InputValue::Value(value) }));
        Ok(())
    }
}

impl<P: Serialize> Scenario<P> {
    /// The scenario as a file: what a trace header embeds, so `agora replay`
    /// re-runs a scenario built in code as it re-runs a file.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a scenario is plain data")
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "protocol = \"any\"\nnodes = 4\n[params]\nx = 1\n";

    fn entries(n: usize) -> String {
        (0..n).map(|i| format!("[[input]]\nat = \"{i}ms\"\nnode = {}\nvalue = {{ Inject = {i} }}\n", i % 4)).collect()
    }

    /// Reading `[[input]]` entries one by one gives what the whole parse
    /// gives: times, nodes, values and spans, whatever shape a value has.
    #[test]
    fn inputs_read_entry_by_entry_equal_the_whole_parse() {
        let src = format!(
            "{HEAD}{}[[input]]\nat = \"9ms\"\nnode = 1\n[input.value]\nInject = 9\n[[fault]]\nkind = \"crash\"\nat = \"1s\"\nnode = 2\n[[input]]\nat = \"10ms\"\nnode = 0\nvalue = [\n[1, 2],\n]\n",
            entries(3)
        );
        let fast = Scenario::<toml::Value>::from_str("s.toml", &src).unwrap();
        let whole: Scenario<toml::Value> = parse_toml("s.toml", &src).unwrap();
        assert_eq!(fast.input.len(), 5);
        assert_eq!(fast.fault.len(), 1);
        for (i, (a, b)) in fast.input.iter().zip(&whole.input).enumerate() {
            assert_eq!(a.span(), b.span());
            let (a, b) = (a.get_ref(), b.get_ref());
            // Only the value built as a table (`[input.value]`) is parsed.
            assert_eq!(matches!(a.value, InputValue::Text(_)), i != 3, "{i}: {:?}", a.value);
            assert_eq!((a.at, a.node), (b.at, b.node));
            assert_eq!(a.value.to::<toml::Value>().unwrap(), b.value.to::<toml::Value>().unwrap());
        }
        // Written back, a text value is TOML again.
        assert!(fast.to_toml().contains("Inject = 9"), "{}", fast.to_toml());
    }

    /// A mistake in the n-th entry is named with its index, line and column
    /// in the file, as the whole parse names it.
    #[test]
    fn a_bad_entry_is_named_by_index_and_line() {
        let src = format!("{HEAD}{}[[input]]\nat = \"soon\"\nnode = 1\nvalue = 1\n", entries(2));
        let e = Scenario::<toml::Value>::from_str("s.toml", &src).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("input[2].at", Some(14)), "{e}");
        let src = format!("{HEAD}{}[[input]]\nat = \"1ms\"\nnode = 1\nvalue = 1\ncolour = 2\n", entries(1));
        let e = Scenario::<toml::Value>::from_str("s.toml", &src).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("input[1].colour", Some(13)), "{e}");
        assert!(e.message.contains("colour"), "{e}");
        // A fault after the entries is located in the file, not in the
        // text without them.
        let src = format!("{HEAD}{}[[fault]]\nkind = \"crash\"\nat = \"1s\"\nnode = 9\n", entries(2));
        let e = Scenario::<toml::Value>::from_str("s.toml", &src).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("fault[0].node", Some(13)), "{e}");
        let src = format!("input = [{{ at = \"1ms\", node = 1, value = 1 }}]\n{HEAD}{}", entries(1));
        let e = Scenario::<toml::Value>::from_str("s.toml", &src).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("input", Some(1)), "{e}");
    }
}
