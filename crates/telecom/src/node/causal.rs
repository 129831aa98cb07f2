//! The node's causal groups ([`crate::causal`]): a member that serves a
//! request of a `causal` group multicasts the write to the other members,
//! which apply the group's writes in causal order; every heartbeat interval
//! members exchange their clocks, and what was lost is resent or
//! transferred as state.

use super::*;
use crate::causal::{CausalLog, Update, VectorClock};

/// Writes kept per group for resending.
pub(super) const LOG_KEPT: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum CausalBody {
    Update(Update),
    /// The sender's clock: what it applied.
    Digest(VectorClock),
    /// The sender's clock, to adopt: the log could not resend the gap.
    State(VectorClock),
}

/// A causal group's message between two of its members, routed like requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Causal {
    pub group: u16,
    pub from: NodeId,
    pub to: NodeId,
    pub hops: u8,
    pub body: CausalBody,
}

impl Node {
    /// The causal groups' logs this node keeps: one per causal group it is a member of.
    pub(super) fn causal_logs(topo: &Topology, me: NodeId) -> Vec<Option<CausalLog>> {
        topo.groups
            .iter()
            .map(|g| {
                let pos = g.members.iter().position(|&m| m == me)?;
                (g.consistency == Consistency::Causal).then(|| CausalLog::new(pos, g.members.len(), LOG_KEPT))
            })
            .collect()
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

    /// This node served a request for `key` of `group`: a write, if the group is causal.
    pub(super) fn causal_write(&mut self, group: u16, key: u64, io: &mut Io<'_, Self>) {
        let Some(Some(log)) = self.causal.get_mut(group as usize) else { return };
        let updates = log.write(key);
        self.multicast(group, updates, io);
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
                let applied = log.receive(u);
                io.count(counters::CAUSAL_APPLIED, applied as u64);
            }
            CausalBody::State(clock) => {
                let released = log.adopt(&clock);
                self.multicast(c.group, released, io);
            }
            CausalBody::Digest(clock) => {
                let (reply, released) = log.digest(peer, &clock);
                for u in reply.resend {
                    io.count(counters::CAUSAL_RESENT, 1);
                    self.send_causal(c.group, c.from, CausalBody::Update(u), io);
                }
                if let Some(state) = reply.state {
                    self.send_causal(c.group, c.from, CausalBody::State(state), io);
                }
                self.multicast(c.group, released, io);
            }
        }
    }
}
