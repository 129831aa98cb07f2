//! The round protocol as message-passing nodes: one ledger node (id 0),
//! providers (ids 1..=P) and recipients (ids P+1..=P+R), each running the
//! agent of [`crate::rule`]. The same nodes run in the simulator and on the
//! TCP runtime. Each role has its file: `ledger.rs`, `provider.rs`,
//! `recipient.rs`; this one holds the messages, the node and the dispatch.
//!
//! # A round with barriers (the seed's five phases)
//!
//! 1. **Publication.** Each recipient sends a `Request` to each of its
//!    providers (its residual need split among those one level below it,
//!    0 to the rest, plus anything it gives back) and `Publish`es its entry
//!    (level, converged) to the ledger. *Barrier 1:* the ledger waits for
//!    every recipient, or `phase_timeout`.
//! 2. **Provider computation.** The ledger writes the batch to its durable
//!    storage (the driver's: a modelled disk in the simulator, redb or etcd
//!    on real nodes; see `agora_core::storage`)
//!    and sends each provider a `Snapshot` (every entry and the gap level).
//!    Each provider waits for the requests of the recipients that published,
//!    steps, and…
//! 3. **Delivery.** …sends each recipient a `Deliver` (its standing
//!    allocation, whether the edge is at its desire cap, its new level), then
//!    `Publish`es its own entry. *Barriers 2–3:* the ledger waits for every
//!    provider, or `phase_timeout`.
//! 4. **Recipient aggregation.** The ledger sends each recipient a
//!    `Snapshot`. Each recipient waits for the deliveries of the providers
//!    that published, aggregates, and goes back to phase 1. *Barrier 4* is the
//!    ledger's wait in phase 1.
//! 5. **Convergence check.** The ledger ends the run (`Finished`) when every
//!    publication of a round says nothing changed, or after `max_rounds`.
//!
//! # Faults
//!
//! A provider that does not publish in time is skipped: its recipients get
//! nothing from it that round, so their residual rises and others fill it.
//! When it comes back it receives the next snapshot and resumes (with its
//! standing allocation if it kept its memory, from nothing otherwise;
//! recipients give back any excess). A recipient silent for `silent_rounds`
//! rounds is treated as needing nothing: its providers release what it held.
//!
//! # Without barriers (`asynchronous`)
//!
//! Every agent wakes on its own jittered timer, reads the ledger (`Read`,
//! answered by a `Snapshot`), and acts on whatever it holds: the latest
//! requests, the latest deliveries. The ledger writes its batch every tick and
//! ends the run once every agent has reported three unchanged steps in a row.

mod ledger;
mod provider;
mod recipient;

use crate::ledger::{Entry, LEDGER_TABLE};
use crate::rule::UNREACHABLE;
use crate::Network;
use agora_core::{duration_str, Io, Message, NodeId, Protocol};
use ledger::{clock_round, snapshot, LedgerNode};
use provider::ProviderNode;
use recipient::RecipientNode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The protocol's parameters (`[params]` of a scenario or cluster file).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The instance file (JSON or TOML), relative to the working directory.
    pub instance: String,
    /// How long a barrier waits for stragglers.
    #[serde(default = "default_phase_timeout", with = "duration_str")]
    pub phase_timeout: Duration,
    /// Rounds of silence after which a recipient counts as gone (T).
    #[serde(default = "default_silent_rounds")]
    pub silent_rounds: u32,
    /// Barrier-free mode.
    #[serde(default)]
    pub asynchronous: bool,
    /// The asynchronous mode's mean wake-up interval (also a "round" for
    /// `silent_rounds` and `max_rounds`).
    #[serde(default = "default_tick", with = "duration_str")]
    pub tick: Duration,
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
}

fn default_phase_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_silent_rounds() -> u32 {
    3
}
fn default_tick() -> Duration {
    Duration::from_millis(20)
}
fn default_max_rounds() -> u32 {
    1000
}

/// Everything the nodes are built from: the parameters and the checked
/// instance. Each node takes only its own private part of the instance.
#[derive(Debug)]
pub struct Setup {
    pub config: Config,
    pub net: Network,
}

impl Setup {
    pub fn providers(&self) -> u32 {
        self.net.capacity.len() as u32
    }
    pub fn recipients(&self) -> u32 {
        self.net.need.len() as u32
    }
    /// 1 ledger + providers + recipients.
    pub fn nodes(&self) -> u32 {
        1 + self.providers() + self.recipients()
    }
    pub fn provider_id(&self, p: usize) -> NodeId {
        NodeId(1 + p as u32)
    }
    pub fn recipient_id(&self, r: usize) -> NodeId {
        NodeId(1 + self.providers() + r as u32)
    }
    pub fn role(&self, id: NodeId) -> Role {
        match id.0 {
            0 => Role::Ledger,
            i if i <= self.providers() => Role::Provider(i as usize - 1),
            i => Role::Recipient((i - 1 - self.providers()) as usize),
        }
    }
}

/// What a provider holds out to one recipient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Held {
    pub to: NodeId,
    pub amount: f64,
    /// The edge's desire cap.
    pub desire: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ledger,
    Provider(usize),
    Recipient(usize),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Agent → ledger: its public entry.
    Publish { round: u32, level: u32, converged: bool },
    /// Agent → ledger (asynchronous mode): send me a snapshot.
    Read,
    /// Ledger → agent: every entry as (round, level), by node id, and the gap level.
    Snapshot { round: u32, gap: u32, entries: Vec<(u32, u32)> },
    /// Recipient → provider: what it asks for, and what it hands back.
    /// `seq` counts the recipient's requests to this provider within
    /// `session`, which a recipient draws afresh whenever it starts from
    /// nothing.
    Request { session: u32, seq: u32, round: u32, amount: f64, give_back: f64 },
    /// Provider → recipient: the standing allocation on their edge, with the
    /// last request (session, seq) it has applied, so that a recipient never
    /// counts a give-back twice.
    Deliver { session: u32, applied: u32, round: u32, amount: f64, capped: bool, level: u32 },
    /// Ledger → agents: the run is over.
    Finished { round: u32, converged: bool },
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Publish { .. } => "publish",
            Msg::Read => "read",
            Msg::Snapshot { .. } => "snapshot",
            Msg::Request { .. } => "request",
            Msg::Deliver { .. } => "deliver",
            Msg::Finished { .. } => "finished",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The ledger's barrier timeout for (round, phase).
    Barrier(u32, u8),
    /// An agent's wait for requests or deliveries of a round.
    Wait(u32),
    /// Asynchronous mode: wake up.
    Tick,
}

#[derive(Clone, Debug, Serialize)]
pub enum Output {
    /// The ledger closed a round: how many agents published in it
    /// (recipients in phase 1, providers in phase 3), how many changed.
    Round { round: u32, published: u32, changed: u32 },
    /// The ledger ended the run.
    Finished { round: u32, converged: bool },
    /// A provider's final standing allocation, by recipient node id.
    Allocation { provider: u32, to: Vec<(u32, f64)> },
    /// The ledger backend failed (the run stops).
    LedgerFailed { error: String },
}

pub struct Node {
    setup: Arc<Setup>,
    me: NodeId,
    finished: bool,
    kind: Kind,
}

enum Kind {
    Ledger(LedgerNode),
    Provider(ProviderNode),
    Recipient(RecipientNode),
}

impl Node {
    pub fn new(setup: Arc<Setup>, me: NodeId) -> Self {
        let kind = match setup.role(me) {
            Role::Ledger => Kind::Ledger(LedgerNode::new(&setup)),
            Role::Provider(p) => Kind::Provider(ProviderNode::new(&setup, p)),
            Role::Recipient(r) => Kind::Recipient(RecipientNode::new(&setup, r)),
        };
        Node { setup, me, finished: false, kind }
    }

    pub fn role(&self) -> Role {
        self.setup.role(self.me)
    }

    /// A provider's capacity and standing allocation.
    pub fn provider_allocation(&self) -> Option<(f64, Vec<Held>)> {
        match &self.kind {
            Kind::Provider(p) => Some((
                p.agent.capacity,
                p.to.iter().zip(&p.agent.edges).map(|(&to, e)| Held { to, amount: e.x, desire: e.desire }).collect(),
            )),
            _ => None,
        }
    }

    /// A recipient's need and what it holds (received minus given back).
    pub fn recipient_holding(&self) -> Option<(f64, f64)> {
        match &self.kind {
            Kind::Recipient(r) => {
                Some((r.agent.need, r.agent.edges.iter().filter(|e| e.alive).map(|e| e.received).sum()))
            }
            _ => None,
        }
    }

    /// Every batch the ledger node wrote since it (re)started.
    pub fn ledger_history(&self) -> Option<&[Vec<(u32, Entry)>]> {
        match &self.kind {
            Kind::Ledger(l) => Some(&l.history),
            _ => None,
        }
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The ledger node: how the run ended, (round, converged).
    pub fn verdict(&self) -> Option<(u32, bool)> {
        match &self.kind {
            Kind::Ledger(l) => l.verdict,
            _ => None,
        }
    }

    /// The ledger node: the agents it counted as gone when it ended the run.
    pub fn absent_at_end(&self) -> &[NodeId] {
        match &self.kind {
            Kind::Ledger(l) => &l.absent,
            _ => &[],
        }
    }

    fn cfg(&self) -> &Config {
        &self.setup.config
    }

    fn jittered_tick(&self, io: &mut Io<'_, Self>) -> Duration {
        let t = self.cfg().tick.as_nanos() as u64;
        Duration::from_nanos(t / 2 + io.rng().next_u64() % t.max(1))
    }
}

impl Protocol for Node {
    type Msg = Msg;
    type Timer = Timer;
    type Input = ();
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        let asynchronous = self.cfg().asynchronous;
        let ledger = NodeId(0);
        let tick = self.jittered_tick(io);
        match &mut self.kind {
            Kind::Ledger(l) => {
                // A restarted ledger node resumes from what its disk holds.
                for (agent, e) in std::mem::take(&mut l.restored) {
                    if let Some(slot) = l.entries.get_mut(agent as usize) {
                        *slot = (e.round, e.level);
                        l.round = l.round.max(e.round);
                    }
                }
                if asynchronous {
                    io.set_timer(self.setup.config.tick, Timer::Tick);
                } else {
                    io.set_timer(self.setup.config.phase_timeout, Timer::Barrier(l.round, l.phase));
                }
            }
            Kind::Provider(p) => {
                p.restarted = true;
                io.send(ledger, Msg::Publish { round: 0, level: p.agent.level, converged: false });
                if asynchronous {
                    io.set_timer(tick, Timer::Tick);
                }
            }
            Kind::Recipient(r) => {
                // Round 1's requests: the whole need, split over every
                // provider. (A recipient restarting mid-run says round 1 too;
                // it rejoins at the next snapshot.)
                if r.session == 0 {
                    r.session = io.rng().next_u32() | 1;
                }
                r.agent.aggregate(UNREACHABLE);
                for (i, (e, &to)) in r.agent.edges.iter().zip(&r.from).enumerate() {
                    r.seq[i] += 1;
                    let (session, seq) = (r.session, r.seq[i]);
                    io.send(to, Msg::Request { session, seq, round: 1, amount: e.request, give_back: 0.0 });
                }
                io.send(ledger, Msg::Publish { round: 1, level: r.agent.level, converged: false });
                if asynchronous {
                    io.set_timer(tick, Timer::Tick);
                }
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        if self.finished {
            return;
        }
        match msg {
            Msg::Finished { .. } => {
                self.finished = true;
                if let Kind::Provider(p) = &self.kind {
                    let to = p.to.iter().zip(&p.agent.edges).map(|(t, e)| (t.0, e.x)).collect();
                    io.output(Output::Allocation { provider: self.me.0, to });
                }
            }
            Msg::Publish { round, level, converged } => self.ledger_publish(from, round, level, converged, io),
            Msg::Read => {
                if let Kind::Ledger(l) = &self.kind {
                    io.send(from, snapshot(l, clock_round(&self.setup.config, io.now())));
                }
            }
            Msg::Snapshot { round, gap, entries } => self.on_snapshot(round, gap, entries, io),
            Msg::Request { session, seq, round, amount, give_back } => {
                self.on_request(from, session, seq, round, amount, give_back, io)
            }
            Msg::Deliver { session, applied, round, amount, capped, level } => {
                self.on_deliver(from, session, applied, round, amount, capped, level, io)
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        if self.finished {
            return;
        }
        match timer {
            Timer::Barrier(round, phase) => {
                if let Kind::Ledger(l) = &self.kind {
                    if l.round == round && l.phase == phase {
                        self.ledger_close_phase(io);
                    }
                }
            }
            Timer::Wait(round) => match &mut self.kind {
                // An expected message never came (lost, or its sender
                // crashed after publishing): go on, but the round is not quiet.
                Kind::Provider(p) if p.snapshot.is_some_and(|s| s.0 == round) => {
                    p.restarted |= !p.waiting.is_empty();
                    p.waiting.clear();
                    self.provider_try_step(io);
                }
                Kind::Recipient(r) if r.snapshot.is_some_and(|s| s.0 == round) => {
                    r.incomplete = !r.waiting.is_empty();
                    r.waiting.clear();
                    self.recipient_try_aggregate(io);
                }
                _ => {}
            },
            Timer::Tick => {
                let next = self.jittered_tick(io);
                match &self.kind {
                    Kind::Ledger(_) => {
                        self.ledger_flush(io);
                        io.set_timer(self.cfg().tick, Timer::Tick);
                    }
                    _ => {
                        io.send(NodeId(0), Msg::Read);
                        io.set_timer(next, Timer::Tick);
                    }
                }
            }
        }
    }

    fn on_restore(&mut self, disk: &agora_core::storage::Durable) {
        if let Kind::Ledger(l) = &mut self.kind {
            l.restored = disk
                .table(LEDGER_TABLE)
                .filter_map(|(k, v)| Some((u32::from_be_bytes(k.try_into().ok()?), serde_json::from_slice(v).ok()?)))
                .collect();
        }
    }

    fn on_synced(&mut self, done: agora_core::storage::SyncDone, io: &mut Io<'_, Self>) {
        if let Err(e) = done.result {
            // The ledger cannot make its entries durable: stop rather than
            // run on with a ledger that a restart would not find.
            io.output(Output::LedgerFailed { error: e.to_string() });
            self.finished = true;
        }
    }

    fn status(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Ledger(l) => serde_json::json!({"role": "ledger", "round": l.round, "phase": l.phase,
                "finished": self.finished, "converged": l.verdict.map(|v| v.1)}),
            Kind::Provider(p) => serde_json::json!({"role": "provider", "level": p.agent.level,
                "allocated": p.agent.edges.iter().map(|e| e.x).sum::<f64>(), "finished": self.finished}),
            Kind::Recipient(r) => serde_json::json!({"role": "recipient", "level": r.agent.level,
                "residual": r.agent.residual, "finished": self.finished}),
        }
    }
}

impl Node {
    fn on_snapshot(&mut self, round: u32, gap: u32, entries: Vec<(u32, u32)>, io: &mut Io<'_, Self>) {
        let setup = self.setup.clone();
        let silent = setup.config.silent_rounds;
        let asynchronous = setup.config.asynchronous;
        match &mut self.kind {
            Kind::Provider(p) => {
                for (i, (e, to)) in p.agent.edges.iter_mut().zip(&p.to).enumerate() {
                    let (published, level) = entries.get(to.0 as usize).copied().unwrap_or((0, UNREACHABLE));
                    e.level = level;
                    // Silent: nothing on the ledger and no request for T
                    // rounds (a request is a sign of life even when the
                    // ledger missed the recipient's publications).
                    e.gone = published.max(p.requests[i].0).saturating_add(silent) < round;
                }
                p.snapshot = Some((round, gap));
                p.waiting = if asynchronous {
                    Vec::new()
                } else {
                    (0..p.to.len()).filter(|&i| entries.get(p.to[i].0 as usize).is_some_and(|e| e.0 >= round)).collect()
                };
                io.set_timer(setup.config.phase_timeout, Timer::Wait(round));
                self.provider_try_step(io);
            }
            Kind::Recipient(r) => {
                r.snapshot = Some((round, gap));
                r.waiting = if asynchronous {
                    Vec::new()
                } else {
                    (0..r.from.len())
                        .filter(|&i| entries.get(r.from[i].0 as usize).is_some_and(|e| e.0 >= round))
                        .collect()
                };
                io.set_timer(setup.config.phase_timeout, Timer::Wait(round));
                self.recipient_try_aggregate(io);
            }
            Kind::Ledger(_) => {}
        }
    }
}

impl Setup {
    /// Reads and checks the instance the configuration names.
    pub fn load(config: Config) -> Result<Arc<Setup>, String> {
        let text =
            std::fs::read_to_string(&config.instance).map_err(|e| format!("instance: {}: {e}", config.instance))?;
        let net = crate::Instance::parse(&text)
            .and_then(|i| i.network())
            .map_err(|e| format!("instance: {}: {e}", config.instance))?;
        Ok(Arc::new(Setup { config, net }))
    }
}

/// One node's local safety: a provider never gives beyond its capacity or an
/// edge's desire cap; a recipient never holds more than its need.
pub fn check_node(node: &Node) -> Result<(), String> {
    let slack = |v: f64| v * (1.0 + 1e-9) + 1e-12;
    if let Some((capacity, edges)) = node.provider_allocation() {
        let total: f64 = edges.iter().map(|e| e.amount).sum();
        if total > slack(capacity) {
            return Err(format!("provider {} gives {total} of its capacity {capacity}", node.me));
        }
        if let Some(e) = edges.iter().find(|e| e.amount < 0.0 || e.amount > slack(e.desire)) {
            return Err(format!("provider {} gives {} to {} (desire cap {})", node.me, e.amount, e.to, e.desire));
        }
    }
    if let Some((need, held)) = node.recipient_holding() {
        if held > slack(need) {
            return Err(format!("recipient {} holds {held} for a need of {need}", node.me));
        }
    }
    Ok(())
}

/// The providers' standing allocation, per network edge (`Network::edges` order).
pub fn allocation<'a>(setup: &Setup, node: impl Fn(NodeId) -> &'a Node) -> Vec<f64> {
    (0..setup.providers() as usize)
        .flat_map(|p| node(setup.provider_id(p)).provider_allocation().map(|a| a.1).unwrap_or_default())
        .map(|e| e.amount)
        .collect()
}

/// The network without the agents `is_up` says are down (their capacity or
/// need set to zero): the reference a run with crashes is measured against.
pub fn live_network(setup: &Setup, is_up: impl Fn(NodeId) -> bool) -> Network {
    let mut net = setup.net.clone();
    for (p, c) in net.capacity.iter_mut().enumerate() {
        if !is_up(setup.provider_id(p)) {
            *c = 0.0;
        }
    }
    for (r, d) in net.need.iter_mut().enumerate() {
        if !is_up(setup.recipient_id(r)) {
            *d = 0.0;
        }
    }
    net
}
