//! The node's causal groups ([`crate::causal`]): a member that serves a
//! write of a `causal` group multicasts it — key and entry — to the other
//! members, which apply the group's writes in causal order; every heartbeat
//! interval members exchange their clocks, and what was lost is resent or
//! transferred as state (the clock with the sender's data).
//!
//! Clients keep a session per causal group: the clock of everything they
//! saw. A request carries it, and a member whose clock does not cover it
//! answers [`Status::CatchingUp`] (the client tries another member), so a
//! client reads its own writes and never reads back in time, whichever
//! member serves it. Concurrent writes to a key resolve as shipping does:
//! the newer version, or the larger value at one version.

use super::ship::Take;
use super::*;
use crate::causal::{Adopted, CausalLog, VectorClock};

/// A causal group's write: the key and the entry it got.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Write {
    pub key: String,
    pub entry: Entry,
}

type Update = crate::causal::Update<Write>;

/// Writes kept per group for resending.
pub(super) const LOG_KEPT: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum CausalBody {
    Update(Update),
    /// The sender's clock: what it applied.
    Digest(VectorClock),
    /// The sender's clock and data, to adopt: the log could not resend the gap.
    State(VectorClock, Vec<(String, Entry)>),
    /// The receiver adopted the sender's clock from a digest (it restarted):
    /// it asks for the data that goes with it.
    Want,
}

/// A causal group's message between two of its members, routed like requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Causal {
    pub group: u16,
    pub from: NodeId,
    pub to: NodeId,
    pub hops: u8,
    pub body: CausalBody,
}

impl Replicas {
    /// The causal groups' logs this node keeps: one per causal group it is a member of.
    pub(super) fn causal_logs(topo: &Topology, me: NodeId, strategy: Redundancy) -> Vec<Option<CausalLog<Write>>> {
        topo.groups
            .iter()
            .map(|g| {
                let pos = g.members.iter().position(|&m| m == me)?;
                let causal = g.consistency == Consistency::Causal && g.strategy == strategy;
                causal.then(|| CausalLog::new(pos, g.members.len(), LOG_KEPT))
            })
            .collect()
    }

    /// This member's clock with its data of `group`, to `to`.
    fn send_state(&mut self, group: u16, to: NodeId, io: &mut Io<'_, Self>) {
        let Some(clock) = self.causal_clock(group) else { return };
        let entries = self.stores[group as usize].snapshot();
        self.send_causal(group, to, CausalBody::State(clock, entries), io);
    }

    fn send_causal(&mut self, group: u16, to: NodeId, body: CausalBody, io: &mut Io<'_, Self>) {
        let m = Causal { group, from: self.me, to, hops: 0, body };
        self.route(to, Msg::Causal(m), io);
    }

    fn multicast(&mut self, group: u16, updates: Vec<Update>, io: &mut Io<'_, Self>) {
        let (topo, me) = (self.topo.clone(), self.me);
        for u in updates {
            for &m in topo.groups[group as usize].members.iter().filter(|&&m| m != me) {
                self.send_causal(group, m, CausalBody::Update(u.clone()), io);
            }
        }
    }

    /// This node applied a write of `key` of `group`: multicast, if the group is causal.
    pub(super) fn causal_write(&mut self, group: u16, key: &str, entry: &Entry, io: &mut Io<'_, Self>) {
        let Some(Some(log)) = self.causal.get_mut(group as usize) else { return };
        let updates = log.write(Write { key: key.to_string(), entry: entry.clone() });
        self.multicast(group, updates, io);
    }

    /// The clock a causal group's member answers with (None if not causal).
    pub(super) fn causal_clock(&self, group: u16) -> Option<VectorClock> {
        Some(self.causal.get(group as usize)?.as_ref()?.clock().clone())
    }

    /// Whether this member has applied everything `session` covers.
    pub(super) fn covers(&self, group: u16, session: Option<&VectorClock>) -> bool {
        match (session, self.causal.get(group as usize).and_then(|l| l.as_ref())) {
            (Some(s), Some(log)) => s.le(log.clock()),
            _ => true,
        }
    }

    /// Applies the writes the log delivered to the group's store.
    fn apply_delivered(&mut self, group: u16, delivered: Vec<Update>, io: &mut Io<'_, Self>) {
        for u in delivered {
            self.take(group, &u.key.key, u.key.entry, Take::Merge, io);
        }
    }

    fn adopted(&mut self, group: u16, a: Adopted<Write>, io: &mut Io<'_, Self>) {
        self.apply_delivered(group, a.delivered, io);
        self.multicast(group, a.released, io);
    }

    /// Every heartbeat: each causal log's clock to the group's other members.
    pub(super) fn causal_digests(&mut self, io: &mut Io<'_, Self>) {
        let (topo, me) = (self.topo.clone(), self.me);
        let clocks: Vec<(usize, VectorClock)> =
            self.causal.iter().enumerate().filter_map(|(g, l)| Some((g, l.as_ref()?.clock().clone()))).collect();
        for (g, clock) in clocks {
            for &m in topo.groups[g].members.iter().filter(|&&m| m != me) {
                self.send_causal(g as u16, m, CausalBody::Digest(clock.clone()), io);
            }
        }
    }

    pub(super) fn on_causal(&mut self, c: Causal, io: &mut Io<'_, Self>) {
        if c.to != self.me {
            if c.hops < 32 {
                self.route(c.to, Msg::Causal(Causal { hops: c.hops + 1, ..c }), io);
            }
            return;
        }
        let topo = self.topo.clone();
        let Some(members) = topo.groups.get(c.group as usize).map(|g| &g.members) else { return };
        let Some(peer) = members.iter().position(|&m| m == c.from) else { return };
        let Some(Some(log)) = self.causal.get_mut(c.group as usize) else { return };
        match c.body {
            CausalBody::Update(u) => {
                let delivered = log.receive(u);
                io.count(counters::CAUSAL_APPLIED, delivered.len() as u64);
                self.apply_delivered(c.group, delivered, io);
            }
            CausalBody::State(clock, entries) => {
                let a = log.adopt(&clock);
                for (key, entry) in entries {
                    self.take(c.group, &key, entry, Take::Merge, io);
                }
                self.adopted(c.group, a, io);
            }
            CausalBody::Want => self.send_state(c.group, c.from, io),
            CausalBody::Digest(clock) => {
                let (reply, adopted) = log.digest(peer, &clock);
                for u in reply.resend {
                    io.count(counters::CAUSAL_RESENT, 1);
                    self.send_causal(c.group, c.from, CausalBody::Update(u), io);
                }
                if reply.state.is_some() {
                    self.send_state(c.group, c.from, io);
                }
                if let Some(a) = adopted {
                    // The clock came without the data: ask for it.
                    self.send_causal(c.group, c.from, CausalBody::Want, io);
                    self.adopted(c.group, a, io);
                }
            }
        }
    }
}
