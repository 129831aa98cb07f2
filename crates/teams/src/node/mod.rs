//! One physical node: a primary and a utility (seed 002, §4), in three
//! layers, each in its own file:
//!
//! * `channel.rs`: the channel layer — utilities mediate channels between
//!   busy primaries (our design; the seed defers it to the full version);
//! * `principal.rs`: the principal layer — an operational primary's phases,
//!   center or arm, and forming ⌊τ/k⌋ teams (as the seed describes it);
//! * `apps.rs`: the applications on top (trace tree and echoes, the TERM
//!   token of election, announcements, vector teams' colours), which see
//!   team formation through one hook, `team_formed`.
//!
//! This file holds what they share: the configuration, the wire messages,
//! the node's state and the dispatch of messages to the layers.

mod apps;
mod channel;
mod principal;

use channel::Utility;
use principal::Primary;

use crate::counters;
use crate::graph::Graph;
use agora_core::{Io, Message, NodeId, Protocol};
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
            Msg::Open { channel, peer, interval, ready } => self.on_open(from, channel, peer, interval, ready, io),
            Msg::Accept { channel } => self.on_accept(from, channel, io),
            Msg::Close { channel } => self.on_close(from, channel, io),
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
