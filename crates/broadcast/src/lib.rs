//! Reliable broadcast with acknowledgements: the reference protocol that
//! exercises every driver (simulator, TCP runtime) and every fault type.
//!
//! A configured set of **origins** broadcast values; every node delivers each
//! origin's values exactly once, in the origin's order.
//!
//! * An origin numbers its values `0, 1, 2, …`, keeps them in a log, sends
//!   `Data` to every peer and retransmits, every `retransmit`, the first
//!   unacknowledged value (and up to `window` after it) to each lagging peer.
//! * A receiver delivers in sequence order (buffering what arrives early) and
//!   answers every `Data` with a cumulative `Ack { next }`.
//! * A node that (re)starts without memory cannot be told apart by the
//!   origin, so it introduces itself: it picks a random `session` and sends
//!   `Sync { session, next }` to each origin until answered. The origin resets
//!   its view of that peer to `next`, confirms with `SyncOk { session }`, and
//!   from then on ignores acks of older sessions, so a stale ack from before
//!   the restart cannot hide a gap.
//!
//! Safety, checked by [`check_prefix_agreement`]: every node's delivered
//! sequence of an origin equals a prefix of that origin's log (a hash chain
//! over delivered values makes this an O(1) comparison per node and origin).
//! Composed with [`heartbeat`] (see [`monitored`]), an origin skips
//! retransmissions to a peer its detector suspects (`Input::Suspect`) until
//! it is trusted again.
//!
//! Liveness, checked by [`all_delivered`]: once the network heals and nodes
//! are up, every node delivers every value. The origin's log is its stable
//! storage: an origin restarted *without* memory would break agreement, so
//! scenarios crash origins only with memory.

pub mod heartbeat;
pub mod monitored;
pub mod register;

use agora_core::{duration_str, Io, Message, NodeId, Protocol};
use rand::Rng;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Duration;

/// Parameters shared by every node of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of nodes, ids `0..nodes`: set by the driver from the scenario
    /// or cluster file, never in the protocol's own parameters.
    #[serde(skip)]
    pub nodes: u32,
    /// The nodes that broadcast.
    #[serde(default = "default_origins")]
    pub origins: Vec<NodeId>,
    /// Each origin broadcasts this many random values on its own…
    #[serde(default)]
    pub count: u32,
    /// …one every `interval`.
    #[serde(default = "default_interval", with = "duration_str")]
    pub interval: Duration,
    /// How often an origin resends to lagging peers.
    #[serde(default = "default_retransmit", with = "duration_str")]
    pub retransmit: Duration,
    /// How often a starting node repeats an unanswered `Sync`.
    #[serde(default = "default_retransmit", with = "duration_str")]
    pub sync: Duration,
    /// How many values past a peer's gap one retransmission carries.
    #[serde(default = "default_window")]
    pub window: u32,
}

fn default_origins() -> Vec<NodeId> {
    vec![NodeId(0)]
}
fn default_interval() -> Duration {
    Duration::from_millis(10)
}
fn default_retransmit() -> Duration {
    Duration::from_millis(200)
}
fn default_window() -> u32 {
    8
}

impl Config {
    pub fn new(nodes: u32) -> Self {
        Config {
            nodes,
            origins: default_origins(),
            count: 0,
            interval: default_interval(),
            retransmit: default_retransmit(),
            sync: default_retransmit(),
            window: default_window(),
        }
    }

    /// Checks the parameters; the error names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 {
            return Err("nodes: must be at least 1".into());
        }
        if self.origins.is_empty() {
            return Err("origins: at least one origin is needed".into());
        }
        for (i, o) in self.origins.iter().enumerate() {
            if o.0 >= self.nodes {
                return Err(format!("origins[{i}]: node {} does not exist (nodes = {})", o.0, self.nodes));
            }
            if self.origins[..i].contains(o) {
                return Err(format!("origins[{i}]: node {} is listed twice", o.0));
            }
        }
        for (name, d) in [("interval", self.interval), ("retransmit", self.retransmit), ("sync", self.sync)] {
            if d.is_zero() {
                return Err(format!("{name}: must be longer than zero"));
            }
        }
        if self.window == 0 {
            return Err("window: must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Data { origin: NodeId, seq: u32, value: u64 },
    Ack { origin: NodeId, session: u64, next: u32 },
    Sync { session: u64, next: u32 },
    SyncOk { session: u64 },
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Data { .. } => "data",
            Msg::Ack { .. } => "ack",
            Msg::Sync { .. } => "sync",
            Msg::SyncOk { .. } => "sync_ok",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The next automatic broadcast of an origin.
    Broadcast,
    /// An origin resends to lagging peers.
    Retransmit,
    /// A starting node repeats its unanswered `Sync`s.
    Sync,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// Broadcast this value (only an origin accepts it).
    Broadcast(u64),
    /// A failure detector suspects this peer: do not retransmit to it.
    Suspect(NodeId),
    /// …and trusts it again.
    Trust(NodeId),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivered {
    pub origin: NodeId,
    pub seq: u32,
    pub value: u64,
}

/// Extends the hash chain over an origin's values (FNV-1a over the value's
/// bytes, seeded by the previous link): equal chains mean equal sequences.
pub fn chain(prev: u64, value: u64) -> u64 {
    let mut h = prev ^ 0xcbf2_9ce4_8422_2325;
    for b in value.to_le_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// What a node has delivered from one origin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Receipt {
    next: u32,
    digest: u64,
    /// Values that arrived ahead of a gap, sorted by sequence number.
    early: Vec<(u32, u64)>,
    /// Whether the origin has confirmed this incarnation's session (`SyncOk`).
    synced: bool,
}

/// An origin's log and its view of every peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OriginState {
    log: Vec<u64>,
    /// `prefix[i]` is the hash chain over `log[..i]`.
    prefix: Vec<u64>,
    /// One record per node, so that handling a peer's message touches one
    /// cache line of a long list.
    peers: Vec<Peer>,
    retransmitting: bool,
}

/// What an origin knows of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Peer {
    /// The session of the peer's latest `Sync` (0: not heard from).
    session: u64,
    /// How many values the peer has acknowledged.
    acked: u32,
    /// A failure detector suspects it (skipped by retransmission).
    suspected: bool,
}

/// One node of the reliable broadcast. `Eq + Hash` so that the model
/// checker can explore its states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    cfg: Arc<Config>,
    me: NodeId,
    session: u64,
    /// One receipt per configured origin, in `cfg.origins` order; inline
    /// for the usual single origin, so a node's state is one allocation.
    receipts: SmallVec<[Receipt; 1]>,
    origin: Option<Box<OriginState>>,
}

impl Node {
    pub fn new(cfg: Arc<Config>, me: NodeId) -> Self {
        let receipts = smallvec::smallvec![Receipt::default(); cfg.origins.len()];
        let origin = cfg.origins.contains(&me).then(|| {
            Box::new(OriginState {
                log: Vec::new(),
                prefix: vec![0],
                peers: vec![Peer::default(); cfg.nodes as usize],
                retransmitting: false,
            })
        });
        Node { cfg, me, session: 0, receipts, origin }
    }

    fn origin_slot(&self, origin: NodeId) -> Option<usize> {
        self.cfg.origins.iter().position(|&o| o == origin)
    }

    /// How many values of `origin` this node has delivered.
    pub fn delivered(&self, origin: NodeId) -> u32 {
        self.origin_slot(origin).map_or(0, |i| self.receipts[i].next)
    }

    /// How many values this node has broadcast (0 for a non-origin).
    pub fn broadcast_count(&self) -> u32 {
        self.origin.as_ref().map_or(0, |o| o.log.len() as u32)
    }

    fn broadcast(&mut self, value: u64, io: &mut Io<'_, Self>) {
        let me = self.me;
        let Some(o) = self.origin.as_mut() else {
            io.count("input_refused_not_origin", 1);
            return;
        };
        let seq = o.log.len() as u32;
        o.log.push(value);
        let link = chain(*o.prefix.last().expect("prefix starts with the empty chain"), value);
        o.prefix.push(link);
        o.peers[me.index()].acked = seq + 1;
        for peer in (0..self.cfg.nodes).map(NodeId).filter(|&p| p != me) {
            io.send(peer, Msg::Data { origin: me, seq, value });
        }
        self.ensure_retransmit(io);
        self.accept(me, seq, value, io);
    }

    fn ensure_retransmit(&mut self, io: &mut Io<'_, Self>) {
        if let Some(o) = self.origin.as_mut() {
            if !o.retransmitting {
                o.retransmitting = true;
                io.set_timer(self.cfg.retransmit, Timer::Retransmit);
            }
        }
    }

    /// Sends `peer` what it misses, from `from` on, at most `window` values.
    fn resend(&self, peer: NodeId, from: u32, io: &mut Io<'_, Self>) {
        let o = self.origin.as_ref().expect("only origins resend");
        let end = (from as usize + self.cfg.window as usize).min(o.log.len());
        for seq in from as usize..end {
            io.send(peer, Msg::Data { origin: self.me, seq: seq as u32, value: o.log[seq] });
        }
    }

    /// Delivers `value` if it is the next one, then whatever waited behind it.
    fn accept(&mut self, origin: NodeId, seq: u32, value: u64, io: &mut Io<'_, Self>) {
        let Some(slot) = self.origin_slot(origin) else {
            io.count("data_from_unknown_origin", 1);
            return;
        };
        let r = &mut self.receipts[slot];
        if seq < r.next {
            io.count("duplicate_data", 1);
            return;
        }
        if seq > r.next {
            if let Err(pos) = r.early.binary_search_by_key(&seq, |e| e.0) {
                r.early.insert(pos, (seq, value));
            }
            return;
        }
        let mut value = value;
        loop {
            r.digest = chain(r.digest, value);
            io.output(Delivered { origin, seq: r.next, value });
            r.next += 1;
            match r.early.first() {
                Some(&(s, v)) if s == r.next => {
                    r.early.remove(0);
                    value = v;
                }
                _ => break,
            }
        }
    }
}

impl Protocol for Node {
    type Msg = Msg;
    type Timer = Timer;
    type Input = Input;
    type Output = Delivered;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        self.session = io.rng().random::<u64>() | 1; // 0 means "no session yet"
        let me = self.me;
        let mut need_sync = false;
        for (i, &o) in self.cfg.origins.iter().enumerate() {
            if o != me {
                self.receipts[i].synced = false;
                io.send(o, Msg::Sync { session: self.session, next: self.receipts[i].next });
                need_sync = true;
            }
        }
        if need_sync {
            io.set_timer(self.cfg.sync, Timer::Sync);
        }
        if self.origin.is_some() {
            if self.cfg.count > 0 {
                io.set_timer(self.cfg.interval, Timer::Broadcast);
            }
            if let Some(o) = self.origin.as_mut() {
                o.retransmitting = false;
            }
            self.ensure_retransmit(io);
        }
    }

    fn prefetch(&self, from: NodeId, msg: &Msg) {
        // An origin's handling of a peer's message reads that peer's row.
        if let (Msg::Ack { .. } | Msg::Sync { .. }, Some(o)) = (msg, &self.origin) {
            if let Some(peer) = o.peers.get(from.index()) {
                agora_core::prefetch(peer);
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Data { origin, seq, value } => {
                if origin != from {
                    io.count("data_forged_origin", 1);
                    return;
                }
                self.accept(origin, seq, value, io);
                if let Some(slot) = self.origin_slot(origin) {
                    let next = self.receipts[slot].next;
                    io.send(origin, Msg::Ack { origin, session: self.session, next });
                }
            }
            Msg::Ack { origin, session, next } => {
                let Some(o) = self.origin.as_mut().filter(|_| origin == self.me) else {
                    return;
                };
                let end = o.log.len() as u32;
                let Some(peer) = o.peers.get_mut(from.index()) else {
                    return;
                };
                // Only the session of the peer's latest Sync counts: an ack of an
                // older incarnation may arrive after a restart. A peer never
                // heard from has no older incarnation, so its session is adopted.
                if peer.session == 0 {
                    peer.session = session;
                }
                if peer.session == session {
                    peer.acked = peer.acked.max(next.min(end));
                }
            }
            Msg::Sync { session, next } => {
                let Some(o) = self.origin.as_mut() else {
                    return;
                };
                let end = o.log.len() as u32;
                let Some(peer) = o.peers.get_mut(from.index()) else {
                    return;
                };
                let next = next.min(end);
                // A new session replacing a known one is a restart: resend its
                // gap now. At first contact what it lacks is still in flight,
                // and the retransmit timer covers real losses.
                let restarted = peer.session != 0 && peer.session != session;
                *peer = Peer { session, acked: next, ..*peer };
                io.send(from, Msg::SyncOk { session });
                if next < end {
                    if restarted {
                        self.resend(from, next, io);
                    }
                    self.ensure_retransmit(io);
                }
            }
            Msg::SyncOk { session } => {
                // Only an answer to this incarnation's Sync confirms it.
                if let Some(slot) = self.origin_slot(from).filter(|_| session == self.session) {
                    self.receipts[slot].synced = true;
                    let me = self.me;
                    if self.cfg.origins.iter().zip(&self.receipts).all(|(&o, r)| r.synced || o == me) {
                        io.cancel_timer(Timer::Sync);
                    }
                }
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match timer {
            Timer::Broadcast => {
                if self.broadcast_count() < self.cfg.count {
                    let value = io.rng().random::<u64>();
                    self.broadcast(value, io);
                    if self.broadcast_count() < self.cfg.count {
                        io.set_timer(self.cfg.interval, Timer::Broadcast);
                    }
                }
            }
            Timer::Retransmit => {
                let Some(o) = self.origin.as_ref() else {
                    return;
                };
                let end = o.log.len() as u32;
                let lagging: Vec<(NodeId, u32, bool)> = o
                    .peers
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.acked < end)
                    .map(|(i, p)| (NodeId(i as u32), p.acked, p.suspected))
                    .collect();
                for &(peer, from, suspected) in &lagging {
                    if suspected {
                        io.count("retransmit_skipped_suspected", 1);
                    } else {
                        self.resend(peer, from, io);
                    }
                }
                io.count("retransmit_rounds", 1);
                let o = self.origin.as_mut().expect("checked above");
                o.retransmitting = !lagging.is_empty();
                if o.retransmitting {
                    io.set_timer(self.cfg.retransmit, Timer::Retransmit);
                }
            }
            Timer::Sync => {
                let me = self.me;
                let mut pending = false;
                for (i, &o) in self.cfg.origins.iter().enumerate() {
                    if o != me && !self.receipts[i].synced {
                        io.send(o, Msg::Sync { session: self.session, next: self.receipts[i].next });
                        pending = true;
                    }
                }
                if pending {
                    io.set_timer(self.cfg.sync, Timer::Sync);
                }
            }
        }
    }

    fn check_input(&self, input: &Input) -> Result<(), String> {
        match *input {
            Input::Broadcast(_) if self.origin.is_none() => {
                let origins: Vec<String> = self.cfg.origins.iter().map(|o| o.0.to_string()).collect();
                Err(format!("node {} does not broadcast (the origins are {})", self.me.0, origins.join(", ")))
            }
            Input::Suspect(p) | Input::Trust(p) if p.0 >= self.cfg.nodes || p == self.me => Err(format!(
                "no peer {} (the peers of node {} are 0..{}, itself excluded)",
                p.0, self.me.0, self.cfg.nodes
            )),
            _ => Ok(()),
        }
    }

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        match input {
            Input::Broadcast(v) => self.broadcast(v, io),
            Input::Suspect(p) | Input::Trust(p) => {
                let suspect = matches!(input, Input::Suspect(_));
                if let Some(s) = self.origin.as_mut().and_then(|o| o.peers.get_mut(p.index())) {
                    s.suspected = suspect;
                }
                if !suspect {
                    self.ensure_retransmit(io);
                }
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let delivered: Vec<_> = self
            .cfg
            .origins
            .iter()
            .zip(&self.receipts)
            .map(|(o, r)| serde_json::json!({"origin": o.0, "delivered": r.next, "synced": r.synced || *o == self.me}))
            .collect();
        serde_json::json!({"node": self.me.0, "broadcast": self.broadcast_count(), "delivered": delivered})
    }
}

/// Safety: every node's delivered sequence from each origin is a prefix of
/// that origin's log. `nodes(i)` must be node `i`.
pub fn check_prefix_agreement<'a>(cfg: &Config, nodes: impl Fn(NodeId) -> &'a Node) -> Result<(), String> {
    (0..cfg.nodes).map(NodeId).try_for_each(|id| check_node_prefix(cfg, &nodes, id))
}

/// [`check_prefix_agreement`] for one node. Enough after an event at `id`:
/// an origin's log only grows, so no other node's prefix can break.
pub fn check_node_prefix<'a>(cfg: &Config, nodes: &impl Fn(NodeId) -> &'a Node, id: NodeId) -> Result<(), String> {
    let n = nodes(id);
    for (&origin, r) in cfg.origins.iter().zip(&n.receipts) {
        let o = nodes(origin).origin.as_ref().ok_or_else(|| format!("origin {origin} has no log"))?;
        match o.prefix.get(r.next as usize) {
            None => {
                return Err(format!(
                    "{id} delivered {} values of {origin}, which broadcast only {}",
                    r.next,
                    o.log.len()
                ))
            }
            Some(&d) if d != r.digest => {
                return Err(format!("{id}'s first {} deliveries from {origin} differ from {origin}'s log", r.next))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Liveness: every node in `live` has delivered everything every origin broadcast.
pub fn all_delivered<'a>(cfg: &Config, nodes: impl Fn(NodeId) -> &'a Node, live: impl Iterator<Item = NodeId>) -> bool {
    let totals: Vec<u32> = cfg.origins.iter().map(|&o| nodes(o).broadcast_count()).collect();
    live.into_iter().all(|id| cfg.origins.iter().zip(&totals).all(|(&o, &t)| nodes(id).delivered(o) == t))
}
