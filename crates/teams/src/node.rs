//! One physical node: a primary and a utility (seed 002, §4).
//!
//! # Channel layer (our design; the seed defers it to the full version)
//!
//! * A primary tells each of its utilities when it turns busy (holds ≥ 1
//!   token) and when it turns non-busy: `Status { busy, interval }`.
//!   `interval` is a random id of the busy interval; links are FIFO, so a
//!   utility always sees a primary's statuses in order.
//! * A utility mediates at most one channel at a time. With none open and
//!   at least two primaries busy by their latest reports, it picks two at
//!   random and sends each an `Open` naming a fresh random channel id, the
//!   peer, and the busy interval it saw for the receiver.
//! * A primary accepts an `Open` only if it is still in that busy interval,
//!   so a channel lies within one busy interval of each end. Otherwise it
//!   answers with its current status: a utility that missed updates (they
//!   are lost while it is faulty) learns the truth and releases the channel,
//!   which frees the peer.
//! * The utility opens a channel one end at a time: the first end answers
//!   `Accept`, and only then does the second get its `Open`, already usable.
//!   The first end starts using the channel when the second end's first
//!   message arrives on it. So no primary ever waits on a channel whose
//!   other end is faulty (an `Open` to a faulty node is lost); only the
//!   utility stays occupied, until an end's status changes. This costs one
//!   message per channel.
//! * The utility releases the channel when, and only when, it hears that one
//!   end turned non-busy (or began a new busy interval). It then sends
//!   `Close` to both ends.
//! * Relayed messages carry the channel id. The mediator forwards them only
//!   on the channel they were sent on, and a primary accepts them only on a
//!   channel it holds with that id. A message from a past channel can never
//!   arrive as part of a later one (Guarantee 4.I): ids are random 64-bit
//!   values, not counters, so a node that forgets everything (the forgetful
//!   feature) cannot reuse one.
//! * A relayed message is dropped only when its channel is gone, that is,
//!   when one end turned non-busy (4.II). Token transports are the
//!   exception: they are never dropped, and a stale one is counted
//!   (`stale_transport`, which the tests require to stay 0).
//!
//! # Principal layer (as the seed describes it)
//!
//! An operational primary (busy, with channels) runs phases. At the start of
//! each phase it tosses a coin, center or arm, and sends a request over each
//! channel. The phase ends when every request has a response.
//! * A center answers a center-request with `No`. An arm answers it by
//!   transporting its tokens (except those injected during the phase) and
//!   turns non-busy.
//! * An arm answers an arm-request with `No`. A center holds it (selective
//!   waiting) until its next phase: if that phase is center, its own request
//!   will prompt the arm to transport; if arm, it answers `No` first.
//!
//! At the end of a phase the primary forms ⌊τ/k⌋ teams. A primary that is
//! not operational forms teams as soon as it holds k tokens.

use crate::counters;
use crate::graph::Graph;
use agora_core::{Io, Message, NodeId, Protocol};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub graph: Graph,
    /// Team size.
    pub k: u64,
    /// When a team forms, tell each member's origin who its team is:
    /// matching and matchmaking.
    pub notify: Notify,
    /// When a team forms, announce its node to all n nodes: explicit leader
    /// election.
    pub announce: bool,
    /// Implicit leader election with termination detection (the seed's
    /// first implementation, appendix A.1.1): a node that forms a team of
    /// election tokens leads and injects one TERM token; a node that gives
    /// its tokens away, receives a TERM token, or forms a team with one,
    /// knows it does not lead (`Output::Leader`, `Output::NotLeader`).
    pub elect: bool,
    /// Vector teams: a team is `colours[c]` tokens tagged c, for every
    /// colour c (tags are colours then, not origins). `None`: any k tokens.
    pub colours: Option<Vec<u64>>,
}

impl Config {
    /// Plain team formation: teams of any k tokens, no application on top.
    pub fn new(graph: Graph, k: u64) -> Self {
        Config { graph, k, notify: Notify::Off, announce: false, elect: false, colours: None }
    }
}

/// How a team node tells its members' origins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    #[default]
    Off,
    /// One message to each origin, the node named by the low 32 bits of the
    /// tag (nodes have ids here).
    Direct,
    /// Back along the trace tree: every node remembers, per token that
    /// arrived, which peer sent it, and the notice retraces each member's
    /// path hop by hop, clearing what it passes. Needs no ids in tags. Each
    /// origin's echo returns the same way, and the team node reports
    /// `Output::Echoed` once all members' origins have been told.
    Trace,
}

/// The tag of the election's TERM token (high bit; the low bits name the
/// leader that made it).
pub const TERM: u64 = 1 << 63;

/// The protocol's parameters in scenario and cluster files (`[params]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Team size.
    pub k: u64,
    /// The graph's c and ε: p = min(1, sqrt(c ln n / (ε n))).
    #[serde(default = "default_c")]
    pub c: f64,
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Seeds the graph: every node of a cluster must use the same one.
    #[serde(default)]
    pub graph_seed: u64,
    /// The applications on top (see [`Config`]); off by default.
    #[serde(default, skip_serializing_if = "is_off")]
    pub notify: Notify,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub announce: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub elect: bool,
}

fn is_off(n: &Notify) -> bool {
    *n == Notify::Off
}

fn default_c() -> f64 {
    2.0
}
fn default_epsilon() -> f64 {
    0.5
}

impl Params {
    /// Checks the parameters; the error starts with the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.k < 2 {
            return Err(format!("k: {} is not a team size (k ≥ 2)", self.k));
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(format!("c: {} must be > 0", self.c));
        }
        if !(self.epsilon > 0.0 && self.epsilon <= 1.0) {
            return Err(format!("epsilon: {} must be in (0, 1]", self.epsilon));
        }
        Ok(())
    }

    /// Team formation of `k` with the default graph and no application.
    pub fn new(k: u64) -> Self {
        Params {
            k,
            c: default_c(),
            epsilon: default_epsilon(),
            graph_seed: 0,
            notify: Notify::Off,
            announce: false,
            elect: false,
        }
    }

    pub fn config(&self, n: u32) -> Config {
        Config {
            notify: self.notify,
            announce: self.announce,
            elect: self.elect,
            ..Config::new(Graph::new(n, self.c, self.epsilon, self.graph_seed), self.k)
        }
    }
}

/// What primaries say to each other over a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    CenterRequest,
    ArmRequest,
    No,
    /// A response that carries the sender's tokens: (tag, count) pairs,
    /// since token counts are numbers. An arm holds fewer than k tokens when
    /// it gives them up, and vector teams have one tag per colour, so this
    /// is O(k) words either way.
    Transport(Vec<(u64, u32)>),
}

/// The most tokens one transport may carry with vector teams, where an arm
/// may hold any number of one colour while it waits for the others.
pub const MAX_VECTOR_TRANSPORT: u64 = 1 << 24;

/// Tags as (tag, count) pairs, by tag.
pub fn pack(tags: &[u64]) -> Vec<(u64, u32)> {
    let mut sorted = tags.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u32)> = Vec::new();
    for t in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => out.push((t, 1)),
        }
    }
    out
}

/// The tokens a transport claims to carry.
pub fn transport_total(packed: &[(u64, u32)]) -> u64 {
    packed.iter().map(|&(_, n)| u64::from(n)).sum()
}

pub fn unpack(packed: &[(u64, u32)]) -> Vec<u64> {
    packed.iter().flat_map(|&(t, n)| std::iter::repeat_n(t, n as usize)).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Primary → its utilities.
    Status { busy: bool, interval: u64 },
    /// Utility → primary: a channel to `peer` is open, for your busy
    /// `interval`. `ready`: the peer accepted already, so use it now;
    /// otherwise answer `Accept`.
    Open { channel: u64, peer: NodeId, interval: u64, ready: bool },
    /// Primary → utility: I take part in this channel (the first end).
    Accept { channel: u64 },
    /// Utility → primary: the channel is released.
    Close { channel: u64 },
    /// Primary → mediator: please relay to the peer.
    Relay { channel: u64, to: NodeId, msg: Principal },
    /// Mediator → primary.
    Relayed { channel: u64, from: NodeId, msg: Principal },
    /// Team node → each member's origin (with `Notify::Direct`).
    Team { members: Vec<u64> },
    /// One hop back along the path of the token tagged `tag` (with
    /// `Notify::Trace`).
    Trace { tag: u64, team: u64, members: Vec<u64> },
    /// One hop of the echo of a `Trace` notice, back towards the team node.
    Echo { tag: u64, team: u64 },
    /// Team node → every node (with `Config::announce`): "I lead".
    Leader,
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Status { .. } => "status",
            Msg::Open { .. } => "open",
            Msg::Close { .. } => "close",
            Msg::Accept { .. } => "accept",
            Msg::Team { .. } | Msg::Trace { .. } => "team",
            Msg::Echo { .. } => "echo",
            Msg::Leader => "leader",
            Msg::Relay { msg, .. } | Msg::Relayed { msg, .. } => match msg {
                Principal::Transport(_) => "transport",
                _ => "relay",
            },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Input {
    /// The environment injects tokens at this node, tagged with its id.
    Inject(u64),
    /// One token with an application's tag (a player, a trigger).
    Tagged(u64),
}

impl Input {
    /// The tokens this input injects at node `me`, by tag.
    pub fn tags(&self, me: NodeId) -> Vec<u64> {
        match *self {
            Input::Inject(t) => vec![u64::from(me.0); t as usize],
            Input::Tagged(tag) => vec![tag],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub enum Output {
    /// A team of k tokens formed here: their tags, which tell the node
    /// where the team's tokens came from (the leaves of its trace tree).
    Team(Vec<u64>),
    /// This node's token is in a team with these (with `Config::notify`).
    Matched(Vec<u64>),
    /// At the team node: every member's origin has been told (the echo of
    /// `Notify::Trace`).
    Echoed(Vec<u64>),
    /// This node learned who leads (with `Config::announce`), or, with
    /// `Config::elect`, leads itself.
    Leader(NodeId),
    /// With `Config::elect`: this node knows it does not lead.
    NotLeader,
}

/// Pops the latest entry under `key`, dropping the key once it is empty
/// (so a node that has forgotten everything holds nothing).
fn pop<K: Ord + Copy>(map: &mut BTreeMap<K, Vec<NodeId>>, key: K) -> Option<NodeId> {
    let stack = map.get_mut(&key)?;
    let top = stack.pop();
    if stack.is_empty() {
        map.remove(&key);
    }
    top
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Center,
    Arm,
}

#[derive(Clone, Debug)]
struct Channel {
    id: u64,
    peer: NodeId,
    /// The peer is known to have it too: phases use it.
    ready: bool,
    /// A request of ours awaits its response (this phase).
    request_out: bool,
    /// A center holding an arm-request until its next phase.
    waiting: bool,
}

#[derive(Clone, Debug)]
struct Primary {
    /// Tokens held, by tag, that an arm transports.
    held: Vec<u64>,
    /// Injected during the current phase: not transported in it.
    fresh: Vec<u64>,
    /// The current busy interval's id (0 when not busy).
    interval: u64,
    /// By mediator.
    channels: BTreeMap<NodeId, Channel>,
    phase: Option<Kind>,
}

#[derive(Clone, Debug)]
struct Utility {
    /// Primaries whose latest status is busy, with their interval.
    busy: BTreeMap<NodeId, u64>,
    /// The channel it mediates.
    channel: Option<Mediated>,
}

#[derive(Clone, Copy, Debug)]
struct Mediated {
    id: u64,
    /// The two ends with the busy intervals it was opened for; the first
    /// is asked first.
    ends: [(NodeId, u64); 2],
    /// The first end accepted and the second was told: messages may flow.
    ready: bool,
}

/// A node: both roles, each `None` while in its initial state (the
/// forgetful feature: at quiescent times every node is `(None, None)`).
#[derive(Clone, Debug)]
pub struct Node {
    cfg: Arc<Config>,
    me: NodeId,
    primary: Option<Box<Primary>>,
    utility: Option<Box<Utility>>,
    /// Teams formed here and channels mediated (kept for reports and for
    /// adversaries that target busy nodes; not protocol state).
    pub teams: u64,
    pub mediated: u64,
    /// With `Config::elect`: whether this node leads, once it knows. An
    /// application's result, so the forgetful feature does not cover it.
    pub leads: Option<bool>,
    /// Tokens the environment injected here (a report).
    pub injected: u64,
    /// With `Notify::Trace`: this node's part of the trace tree, the peers
    /// that sent it tokens, by tag (a stack per tag, as tokens with one tag
    /// are interchangeable).
    routes: BTreeMap<u64, Vec<NodeId>>,
    /// Notices passed on, by (tag, team): whom to echo to.
    echo_to: BTreeMap<(u64, u64), Vec<NodeId>>,
    /// Teams formed here whose echoes are awaited: members and how many.
    awaiting: BTreeMap<u64, (Vec<u64>, usize)>,
}

impl Node {
    pub fn new(cfg: Arc<Config>, me: NodeId) -> Self {
        Node {
            cfg,
            me,
            primary: None,
            utility: None,
            teams: 0,
            mediated: 0,
            leads: None,
            injected: 0,
            routes: BTreeMap::new(),
            echo_to: BTreeMap::new(),
            awaiting: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The tags of the tokens held as a primary.
    pub fn held(&self) -> impl Iterator<Item = u64> + '_ {
        self.primary.iter().flat_map(|p| p.held.iter().chain(&p.fresh).copied())
    }

    /// Tokens held as a primary.
    pub fn tokens(&self) -> u64 {
        self.primary.as_ref().map_or(0, |p| (p.held.len() + p.fresh.len()) as u64)
    }

    /// The channels this primary holds: (mediator, channel id, peer).
    pub fn channels(&self) -> Vec<(NodeId, u64, NodeId)> {
        self.primary.as_ref().map_or(Vec::new(), |p| p.channels.iter().map(|(&u, c)| (u, c.id, c.peer)).collect())
    }

    /// In the initial state (nothing remembered).
    pub fn is_initial(&self) -> bool {
        self.primary.is_none()
            && self.utility.is_none()
            && self.routes.is_empty()
            && self.echo_to.is_empty()
            && self.awaiting.is_empty()
    }

    /// Tokens arrived from `sender`: remember where they came from.
    fn record_route(&mut self, tags: &[u64], sender: NodeId) {
        if self.cfg.notify == Notify::Trace {
            for &t in tags {
                self.routes.entry(t).or_default().push(sender);
            }
        }
    }

    /// One hop of a team notice back along the path of a `tag` token: on to
    /// the peer it came from, or, where it has no route, it was injected
    /// here: the notice is delivered and echoed back. `from` is the hop
    /// before (`None` at the team node).
    fn trace_back(&mut self, tag: u64, team: u64, members: Vec<u64>, from: Option<NodeId>, io: &mut Io<'_, Self>) {
        match pop(&mut self.routes, tag) {
            Some(v) => {
                if let Some(f) = from {
                    self.echo_to.entry((tag, team)).or_default().push(f);
                }
                io.send(v, Msg::Trace { tag, team, members });
            }
            None => {
                io.output(Output::Matched(members));
                match from {
                    Some(f) => io.send(f, Msg::Echo { tag, team }),
                    None => self.echoed(team, io),
                }
            }
        }
    }

    /// An echo reached the team node.
    fn echoed(&mut self, team: u64, io: &mut Io<'_, Self>) {
        let Some((_, left)) = self.awaiting.get_mut(&team) else { return };
        *left -= 1;
        if *left == 0 {
            let (members, _) = self.awaiting.remove(&team).expect("present");
            io.output(Output::Echoed(members));
        }
    }

    fn on_echo(&mut self, tag: u64, team: u64, io: &mut Io<'_, Self>) {
        match pop(&mut self.echo_to, (tag, team)) {
            Some(p) => io.send(p, Msg::Echo { tag, team }),
            None => self.echoed(team, io),
        }
    }

    fn send_status(&self, busy: bool, interval: u64, io: &mut Io<'_, Self>) {
        for u in self.cfg.graph.utilities(self.me) {
            io.send(u, Msg::Status { busy, interval });
        }
    }

    fn primary(&mut self) -> &mut Primary {
        self.primary.get_or_insert_with(|| {
            Box::new(Primary {
                held: Vec::new(),
                fresh: Vec::new(),
                interval: 0,
                channels: BTreeMap::new(),
                phase: None,
            })
        })
    }

    /// Tokens arrive (injected, or transported here).
    fn receive_tokens(&mut self, tags: Vec<u64>, injected: bool, io: &mut Io<'_, Self>) {
        if tags.is_empty() {
            return;
        }
        let p = self.primary();
        let was_busy = !p.held.is_empty() || !p.fresh.is_empty();
        if injected && p.phase.is_some() {
            p.fresh.extend(tags);
        } else {
            p.held.extend(tags);
        }
        if !was_busy {
            let interval = io.rng().random::<u64>() | 1;
            self.primary().interval = interval;
            self.send_status(true, interval, io);
        }
        if self.primary.as_ref().is_some_and(|p| p.phase.is_none()) {
            // Not operational: form teams right away.
            self.form_teams(io);
        }
    }

    /// Takes one team out of `held`, if it holds one.
    fn take_team(&self, held: &mut Vec<u64>) -> Option<Vec<u64>> {
        let Some(sizes) = &self.cfg.colours else {
            let k = self.cfg.k as usize;
            return (held.len() >= k).then(|| held.drain(..k).collect());
        };
        let mut have = vec![0u64; sizes.len()];
        for &t in held.iter() {
            if let Some(h) = have.get_mut(t as usize) {
                *h += 1;
            }
        }
        if have.iter().zip(sizes).any(|(h, s)| h < s) {
            return None;
        }
        let mut want = sizes.clone();
        let mut members = Vec::new();
        held.retain(|&t| match want.get_mut(t as usize) {
            Some(w) if *w > 0 => {
                *w -= 1;
                members.push(t);
                false
            }
            _ => true,
        });
        Some(members)
    }

    /// Records this node's election verdict, once.
    fn decide(&mut self, leads: bool, io: &mut Io<'_, Self>) {
        if self.cfg.elect && self.leads.is_none() {
            self.leads = Some(leads);
            io.output(if leads { Output::Leader(self.me) } else { Output::NotLeader });
        }
    }

    /// ⌊τ/k⌋ teams; turns non-busy if nothing remains.
    fn form_teams(&mut self, io: &mut Io<'_, Self>) {
        let Some(mut p) = self.primary.take() else { return };
        let mut teams = Vec::new();
        while let Some(members) = self.take_team(&mut p.held) {
            teams.push(members);
        }
        self.primary = Some(p);
        let formed = teams.len() as u64;
        let mut term = false;
        for members in teams {
            if self.cfg.elect {
                // A team of election tokens elects this node, which then
                // starts termination detection with one TERM token.
                let with_term = members.iter().any(|&t| t & TERM != 0);
                term |= !with_term && self.leads.is_none();
                self.decide(!with_term, io);
            }
            match self.cfg.notify {
                Notify::Off => {}
                Notify::Direct => {
                    // Each origin once, however many of its tokens are in the team.
                    let mut origins: Vec<u32> = members.iter().map(|&m| m as u32).collect();
                    origins.sort_unstable();
                    origins.dedup();
                    for o in origins {
                        io.send(NodeId(o), Msg::Team { members: members.clone() });
                    }
                }
                // One notice per member token, each retracing its path.
                Notify::Trace => {
                    let team = io.rng().random::<u64>();
                    self.awaiting.insert(team, (members.clone(), members.len()));
                    for &t in &members {
                        self.trace_back(t, team, members.clone(), None, io);
                    }
                }
            }
            io.output(Output::Team(members));
            if self.cfg.announce {
                for v in (0..self.cfg.graph.n).map(NodeId).filter(|&v| v != self.me) {
                    io.send(v, Msg::Leader);
                }
                io.output(Output::Leader(self.me));
            }
        }
        if formed == 0 {
            return;
        }
        self.teams += formed;
        io.count(counters::TEAMS, formed);
        if term {
            io.count(counters::INJECTED, 1);
            io.count(counters::TERM_TOKENS, 1);
            self.receive_tokens(vec![TERM | u64::from(self.me.0)], true, io);
        }
        if self.tokens() == 0 {
            self.turn_non_busy(io);
        }
    }

    fn turn_non_busy(&mut self, io: &mut Io<'_, Self>) {
        let Some(p) = self.primary.take() else { return };
        // Channels go with the busy interval; the mediators release them
        // when they hear this.
        self.send_status(false, p.interval, io);
    }

    fn start_phase(&mut self, io: &mut Io<'_, Self>) {
        let kind = if io.rng().random::<bool>() { Kind::Center } else { Kind::Arm };
        let p = self.primary.as_mut().expect("operational");
        p.phase = Some(kind);
        let fresh = std::mem::take(&mut p.fresh);
        p.held.extend(fresh);
        let mut sends = Vec::new();
        for (&u, c) in p.channels.iter_mut().filter(|(_, c)| c.ready) {
            if std::mem::take(&mut c.waiting) && kind == Kind::Arm {
                sends.push((u, c.id, c.peer, Principal::No));
            }
            c.request_out = true;
            let req = if kind == Kind::Center { Principal::CenterRequest } else { Principal::ArmRequest };
            sends.push((u, c.id, c.peer, req));
        }
        for (u, channel, to, msg) in sends {
            io.send(u, Msg::Relay { channel, to, msg });
        }
    }

    /// The phase is over when no request awaits a response.
    fn maybe_end_phase(&mut self, io: &mut Io<'_, Self>) {
        let Some(p) = self.primary.as_mut() else { return };
        if p.phase.is_none() || p.channels.values().any(|c| c.request_out) {
            return;
        }
        p.phase = None;
        // This phase's injections count as injected now.
        let fresh = std::mem::take(&mut p.fresh);
        p.held.extend(fresh);
        self.form_teams(io);
        // Still operational: the next phase.
        if self.tokens() > 0 && self.primary.as_ref().is_some_and(|p| p.channels.values().any(|c| c.ready)) {
            self.start_phase(io);
        }
    }

    fn on_principal(&mut self, mediator: NodeId, sender: NodeId, channel: u64, msg: Principal, io: &mut Io<'_, Self>) {
        if let Principal::Transport(t) = &msg {
            // An arm gives up fewer than k tokens, and vector teams are
            // counted per colour; a frame claiming more is malformed (and
            // would otherwise make us allocate what it claims).
            let total = transport_total(t);
            let limit = if self.cfg.colours.is_some() { MAX_VECTOR_TRANSPORT } else { self.cfg.k - 1 };
            if total > limit {
                io.count(counters::MALFORMED_TRANSPORT, 1);
                return;
            }
        }
        // The peer's first message on a channel we accepted makes it ready:
        // join it with a phase before handling the message.
        if let Some(p) = self.primary.as_mut() {
            if let Some(c) = p.channels.get_mut(&mediator).filter(|c| c.id == channel && !c.ready) {
                c.ready = true;
                if p.phase.is_none() {
                    self.start_phase(io);
                }
            }
        }
        let current = self.primary.as_ref().and_then(|p| p.channels.get(&mediator)).filter(|c| c.id == channel);
        let Some(c) = current else {
            // Not a channel we hold (released, or from another busy
            // interval): drop it, except tokens, which are never dropped.
            if let Principal::Transport(t) = msg {
                let t = unpack(&t);
                io.count(counters::STALE_TRANSPORT, 1);
                io.count(counters::TOKENS_RECEIVED, t.len() as u64);
                self.see_term(&t, io);
                self.record_route(&t, sender);
                self.receive_tokens(t, false, io);
            } else {
                io.count(counters::RELAY_DROPPED, 1);
            }
            return;
        };
        let peer = c.peer;
        let kind = self.primary.as_ref().and_then(|p| p.phase);
        match msg {
            Principal::CenterRequest => match kind {
                Some(Kind::Arm) => {
                    // Transport everything but this phase's injections, then retire.
                    let p = self.primary.as_mut().expect("held");
                    let t = std::mem::take(&mut p.held);
                    let fresh = std::mem::take(&mut p.fresh);
                    io.count(counters::TOKENS_TRANSPORTED, t.len() as u64);
                    io.send(mediator, Msg::Relay { channel, to: peer, msg: Principal::Transport(pack(&t)) });
                    self.turn_non_busy(io);
                    if !t.is_empty() {
                        // It gave its tokens away, so it does not lead.
                        self.decide(false, io);
                    }
                    // This phase's injections count as injected after it.
                    self.receive_tokens(fresh, true, io);
                }
                _ => io.send(mediator, Msg::Relay { channel, to: peer, msg: Principal::No }),
            },
            Principal::ArmRequest => match kind {
                Some(Kind::Center) => {
                    if let Some(c) = self.primary.as_mut().and_then(|p| p.channels.get_mut(&mediator)) {
                        c.waiting = true;
                    }
                }
                _ => io.send(mediator, Msg::Relay { channel, to: peer, msg: Principal::No }),
            },
            Principal::No | Principal::Transport(_) => {
                let arrived = match msg {
                    Principal::Transport(t) => unpack(&t),
                    _ => Vec::new(),
                };
                self.see_term(&arrived, io);
                self.record_route(&arrived, sender);
                if let Some(c) = self.primary.as_mut().and_then(|p| p.channels.get_mut(&mediator)) {
                    if !c.request_out {
                        // A response to no request of this channel: a
                        // message from another channel got through (4.I).
                        io.count(counters::UNEXPECTED_RESPONSE, 1);
                    }
                    c.request_out = false;
                }
                if !arrived.is_empty() {
                    io.count(counters::TOKENS_RECEIVED, arrived.len() as u64);
                    self.primary.as_mut().expect("held").held.extend(arrived);
                }
                self.maybe_end_phase(io);
            }
        }
    }

    /// A node handed the TERM token knows the election is over without it.
    fn see_term(&mut self, tags: &[u64], io: &mut Io<'_, Self>) {
        if tags.iter().any(|&t| t & TERM != 0) {
            self.decide(false, io);
        }
    }

    fn utility(&mut self) -> &mut Utility {
        self.utility.get_or_insert_with(|| Box::new(Utility { busy: BTreeMap::new(), channel: None }))
    }

    fn on_status(&mut self, from: NodeId, busy: bool, interval: u64, io: &mut Io<'_, Self>) {
        let u = self.utility();
        if busy {
            u.busy.insert(from, interval);
        } else {
            u.busy.remove(&from);
        }
        // Release the channel if this end left the interval it was opened for.
        if let Some(m) = u.channel {
            if m.ends.iter().any(|&(v, i)| v == from && (!busy || i != interval)) {
                u.channel = None;
                // The second end knows of the channel only once it is ready.
                for (v, _) in &m.ends[..1 + usize::from(m.ready)] {
                    io.send(*v, Msg::Close { channel: m.id });
                }
            }
        }
        self.try_open(io);
        if self.utility.as_ref().is_some_and(|u| u.busy.is_empty() && u.channel.is_none()) {
            self.utility = None;
        }
    }

    fn try_open(&mut self, io: &mut Io<'_, Self>) {
        let Some(u) = self.utility.as_mut() else { return };
        if u.channel.is_some() || u.busy.len() < 2 {
            return;
        }
        let n = u.busy.len();
        let a = io.rng().random_range(0..n);
        let mut b = io.rng().random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let pick = |i: usize| u.busy.iter().nth(i).map(|(&v, &iv)| (v, iv)).expect("in range");
        let ends = [pick(a), pick(b)];
        let id = io.rng().random::<u64>() | 1;
        u.channel = Some(Mediated { id, ends, ready: false });
        io.send(ends[0].0, Msg::Open { channel: id, peer: ends[1].0, interval: ends[0].1, ready: false });
        io.count(counters::CHANNELS, 1);
        self.mediated += 1;
    }

    /// The first end accepted: open the channel at the second, ready.
    fn on_accept(&mut self, from: NodeId, channel: u64, io: &mut Io<'_, Self>) {
        let Some(m) = self.utility.as_mut().and_then(|u| u.channel.as_mut()) else { return };
        if m.id != channel || m.ends[0].0 != from || m.ready {
            return;
        }
        m.ready = true;
        let (first, (second, interval)) = (m.ends[0].0, m.ends[1]);
        io.send(second, Msg::Open { channel, peer: first, interval, ready: true });
    }

    fn on_relay(&mut self, from: NodeId, channel: u64, to: NodeId, msg: Principal, io: &mut Io<'_, Self>) {
        let open = self.utility.as_ref().and_then(|u| u.channel).is_some_and(|m| {
            m.id == channel && m.ready && m.ends.iter().any(|e| e.0 == from) && m.ends.iter().any(|e| e.0 == to)
        });
        if open || matches!(msg, Principal::Transport(_)) {
            if !open {
                io.count(counters::STALE_TRANSPORT, 1);
            }
            io.send(to, Msg::Relayed { channel, from, msg });
        } else {
            io.count(counters::RELAY_DROPPED, 1);
        }
    }
}

impl Protocol for Node {
    type Msg = Msg;
    type Timer = ();
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, _io: &mut Io<'_, Self>) {}

    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Status { busy, interval } => self.on_status(from, busy, interval, io),
            Msg::Relay { channel, to, msg } => self.on_relay(from, channel, to, msg, io),
            Msg::Open { channel, peer, interval, ready } => {
                let Some(p) = self.primary.as_mut().filter(|p| p.interval == interval) else {
                    // Opened on a stale view of us (the utility missed our
                    // updates, e.g. while it was faulty): correct it, which
                    // releases the channel and frees the peer.
                    let (busy, now) = self.primary.as_ref().map_or((false, interval), |p| (true, p.interval));
                    io.send(from, Msg::Status { busy, interval: now });
                    io.count("status_corrections", 1);
                    return;
                };
                p.channels.insert(from, Channel { id: channel, peer, ready, request_out: false, waiting: false });
                if !ready {
                    io.send(from, Msg::Accept { channel });
                } else if p.phase.is_none() {
                    self.start_phase(io);
                }
            }
            Msg::Accept { channel } => self.on_accept(from, channel, io),
            Msg::Close { channel } => {
                let Some(p) = self.primary.as_mut() else { return };
                if p.channels.get(&from).is_some_and(|c| c.id == channel) {
                    p.channels.remove(&from);
                    self.maybe_end_phase(io);
                }
            }
            Msg::Relayed { channel, from: sender, msg } => self.on_principal(from, sender, channel, msg, io),
            Msg::Team { members } => io.output(Output::Matched(members)),
            Msg::Trace { tag, team, members } => self.trace_back(tag, team, members, Some(from), io),
            Msg::Echo { tag, team } => self.on_echo(tag, team, io),
            Msg::Leader => io.output(Output::Leader(from)),
        }
    }

    fn on_timer(&mut self, _: (), _io: &mut Io<'_, Self>) {}

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        let tags = input.tags(self.me);
        self.injected += tags.len() as u64;
        io.count(counters::INJECTED, tags.len() as u64);
        self.receive_tokens(tags, true, io);
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "tokens": self.tokens(),
            "teams": self.teams,
            "channels": self.primary.as_ref().map_or(0, |p| p.channels.len()),
            "mediating": self.utility.as_ref().is_some_and(|u| u.channel.is_some()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::{Command, Time};
    use rand::SeedableRng;

    /// Feeds one message to `node` and returns what it sent.
    fn deliver(node: &mut Node, from: u32, msg: Msg, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<(NodeId, Msg)> {
        let mut out = Vec::new();
        let me = node.me;
        node.on_message(NodeId(from), msg, &mut Io::new(me, Time::ZERO, rng, &mut out));
        out.into_iter()
            .filter_map(|c| match c {
                Command::Send { to, msg } => Some((to, msg)),
                _ => None,
            })
            .collect()
    }

    fn utility() -> (Node, rand_chacha::ChaCha8Rng) {
        let cfg = Arc::new(Config::new(Graph::new(8, 2.0, 0.5, 1), 2));
        (Node::new(cfg, NodeId(0)), rand_chacha::ChaCha8Rng::seed_from_u64(3))
    }

    /// Node 0 holding one injected token: (node, rng, its busy interval).
    fn busy_primary() -> (Node, rand_chacha::ChaCha8Rng, u64) {
        let (mut v, mut rng) = utility();
        let mut out = Vec::new();
        v.on_input(Input::Inject(1), &mut Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out));
        let interval = v.primary.as_ref().expect("busy").interval;
        (v, rng, interval)
    }

    /// The first `Open` sent: (to whom, channel id, ready).
    fn opened(sent: &[(NodeId, Msg)]) -> Option<(NodeId, u64, bool)> {
        sent.iter().find_map(|(to, m)| match m {
            Msg::Open { channel, ready, .. } => Some((*to, *channel, *ready)),
            _ => None,
        })
    }

    /// Opens a channel between busy primaries 1 and 2 at utility `u`: the
    /// first end is asked, accepts, and only then is the second told.
    fn open_channel(u: &mut Node, rng: &mut rand_chacha::ChaCha8Rng, interval: u64) -> u64 {
        let (first, id, ready) =
            opened(&deliver(u, 1, Msg::Status { busy: true, interval }, rng)).expect("the first end is asked");
        assert!(!ready);
        let sent = deliver(u, first.0, Msg::Accept { channel: id }, rng);
        let second = NodeId(3 - first.0);
        assert_eq!(opened(&sent), Some((second, id, true)), "then the second, ready");
        id
    }

    /// Guarantee 4.I at the mediator: a message sent on a released channel
    /// is never relayed as part of the next one, even between the same pair.
    #[test]
    fn a_mediator_never_relays_across_channels() {
        let (mut u, mut rng) = utility();
        assert!(deliver(&mut u, 2, Msg::Status { busy: true, interval: 22 }, &mut rng).is_empty());
        let a = open_channel(&mut u, &mut rng, 11);
        // Node 1 turns non-busy: A is released, both ends told.
        let sent = deliver(&mut u, 1, Msg::Status { busy: false, interval: 11 }, &mut rng);
        assert_eq!(sent.iter().filter(|(_, m)| *m == Msg::Close { channel: a }).count(), 2);
        // Node 1 is busy again: the same pair gets channel B.
        let b = open_channel(&mut u, &mut rng, 33);
        assert_ne!(a, b);
        // A message node 2 sent on A, arriving now, is dropped…
        let stale = Msg::Relay { channel: a, to: NodeId(1), msg: Principal::ArmRequest };
        assert!(deliver(&mut u, 2, stale, &mut rng).is_empty());
        // …while one sent on B goes through.
        let fresh = Msg::Relay { channel: b, to: NodeId(1), msg: Principal::ArmRequest };
        assert_eq!(
            deliver(&mut u, 2, fresh, &mut rng),
            vec![(NodeId(1), Msg::Relayed { channel: b, from: NodeId(2), msg: Principal::ArmRequest })]
        );
    }

    /// A primary accepts a channel only for its current busy interval, so a
    /// channel never spans two intervals; an Open sent for an old one is
    /// refused, with a status update that corrects the utility.
    #[test]
    fn a_primary_refuses_a_channel_for_a_past_busy_interval() {
        let (mut v, mut rng, interval) = busy_primary();
        // An Open for another interval is refused, and the utility corrected.
        let stale = Msg::Open { channel: 9, peer: NodeId(3), interval: interval ^ 1, ready: true };
        let sent = deliver(&mut v, 5, stale, &mut rng);
        assert_eq!(sent, vec![(NodeId(5), Msg::Status { busy: true, interval })]);
        assert!(v.channels().is_empty());
        // A ready Open for this interval starts a phase at once.
        let sent = deliver(&mut v, 5, Msg::Open { channel: 9, peer: NodeId(3), interval, ready: true }, &mut rng);
        assert_eq!(v.channels(), vec![(NodeId(5), 9, NodeId(3))]);
        assert!(matches!(sent[..], [(NodeId(5), Msg::Relay { channel: 9, to: NodeId(3), .. })]), "{sent:?}");
    }

    /// A channel whose second end is faulty holds nobody up: the first end
    /// accepted but waits on it only once the peer speaks, and a first end
    /// that never accepts (faulty) means the second is never told.
    #[test]
    fn a_channel_to_a_silent_end_is_never_waited_on() {
        let (mut v, mut rng, interval) = busy_primary();
        let sent = deliver(&mut v, 5, Msg::Open { channel: 9, peer: NodeId(3), interval, ready: false }, &mut rng);
        assert_eq!(sent, vec![(NodeId(5), Msg::Accept { channel: 9 })]);
        assert!(v.primary.as_ref().unwrap().phase.is_none(), "no phase on a channel the peer may never use");
        // The peer's first message makes it usable: a phase starts, then the
        // message is answered in it.
        let req = Msg::Relayed { channel: 9, from: NodeId(3), msg: Principal::ArmRequest };
        let sent = deliver(&mut v, 5, req, &mut rng);
        assert!(v.primary.as_ref().unwrap().phase.is_some());
        assert!(!sent.is_empty());
        // At the utility: nothing reaches the second end before the first accepts.
        let (mut u, mut rng) = utility();
        deliver(&mut u, 2, Msg::Status { busy: true, interval: 22 }, &mut rng);
        let (first, a, _) = opened(&deliver(&mut u, 1, Msg::Status { busy: true, interval: 11 }, &mut rng)).unwrap();
        let other = NodeId(3 - first.0);
        let req = Msg::Relay { channel: a, to: first, msg: Principal::CenterRequest };
        assert!(deliver(&mut u, other.0, req, &mut rng).is_empty());
    }

    #[test]
    fn transports_pack_tags_as_counts() {
        let tags = vec![7, 3, 7, 7, 1 << 63, 3];
        assert_eq!(pack(&tags), vec![(3, 2), (7, 3), (1 << 63, 1)]);
        let mut back = unpack(&pack(&tags));
        back.sort_unstable();
        let mut sorted = tags;
        sorted.sort_unstable();
        assert_eq!(back, sorted);
    }

    /// A frame claiming more tokens than an arm can hold is dropped and
    /// counted, not unpacked (it would claim gigabytes).
    #[test]
    fn a_transport_claiming_too_many_tokens_is_dropped() {
        let (mut v, mut rng, interval) = busy_primary();
        deliver(&mut v, 5, Msg::Open { channel: 9, peer: NodeId(3), interval, ready: true }, &mut rng);
        let mut out = Vec::new();
        let huge = Msg::Relayed { channel: 9, from: NodeId(3), msg: Principal::Transport(vec![(1, u32::MAX)]) };
        v.on_message(NodeId(5), huge, &mut Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out));
        assert!(out.iter().any(|c| matches!(c, Command::Count { name: counters::MALFORMED_TRANSPORT, by: 1, .. })));
        assert_eq!(v.tokens(), 1);
    }
}
