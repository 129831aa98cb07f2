//! The applications on top of team formation (seed 002, §5): the trace
//! tree that tells each member's origin of its team (and echoes back), the
//! TERM token of implicit election, the leader's announcement, and vector
//! teams' colours. Team formation reaches them through one hook,
//! `Node::team_formed`, plus where tokens arrive (routes, TERM sightings)
//! and which tokens make a team (`take_team`).

use super::{Msg, Node, Notify, Output, TERM};
use crate::counters;
use agora_core::{Io, NodeId};
use rand::Rng;
use std::collections::BTreeMap;

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

impl Node {
    /// The one hook between team formation and the applications on top: a
    /// team of `members` formed here. Reports it, and does what the
    /// configured applications add (election verdict, telling the members'
    /// origins, announcing the leader). Returns whether this node, newly
    /// elected, starts termination detection with a TERM token.
    pub(super) fn team_formed(&mut self, members: Vec<u64>, io: &mut Io<'_, Self>) -> bool {
        let mut term = false;
        if self.cfg.elect {
            // A team of election tokens elects this node, which then
            // starts termination detection with one TERM token.
            let with_term = members.iter().any(|&t| t & TERM != 0);
            term = !with_term && self.leads.is_none();
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
        term
    }

    /// The newly elected leader injects the TERM token at itself.
    pub(super) fn inject_term(&mut self, io: &mut Io<'_, Self>) {
        io.count(counters::INJECTED, 1);
        io.count(counters::TERM_TOKENS, 1);
        self.receive_tokens(vec![TERM | u64::from(self.me.0)], true, io);
    }

    /// Tokens arrived from `sender`: remember where they came from.
    pub(super) fn record_route(&mut self, tags: &[u64], sender: NodeId) {
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
    pub(super) fn trace_back(
        &mut self,
        tag: u64,
        team: u64,
        members: Vec<u64>,
        from: Option<NodeId>,
        io: &mut Io<'_, Self>,
    ) {
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
    pub(super) fn echoed(&mut self, team: u64, io: &mut Io<'_, Self>) {
        let Some((_, left)) = self.awaiting.get_mut(&team) else { return };
        *left -= 1;
        if *left == 0 {
            let (members, _) = self.awaiting.remove(&team).expect("present");
            io.output(Output::Echoed(members));
        }
    }

    pub(super) fn on_echo(&mut self, tag: u64, team: u64, io: &mut Io<'_, Self>) {
        match pop(&mut self.echo_to, (tag, team)) {
            Some(p) => io.send(p, Msg::Echo { tag, team }),
            None => self.echoed(team, io),
        }
    }

    /// Takes one team out of `held`, if it holds one.
    pub(super) fn take_team(&self, held: &mut Vec<u64>) -> Option<Vec<u64>> {
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
    pub(super) fn decide(&mut self, leads: bool, io: &mut Io<'_, Self>) {
        if self.cfg.elect && self.leads.is_none() {
            self.leads = Some(leads);
            io.output(if leads { Output::Leader(self.me) } else { Output::NotLeader });
        }
    }

    /// A node handed the TERM token knows the election is over without it.
    pub(super) fn see_term(&mut self, tags: &[u64], io: &mut Io<'_, Self>) {
        if tags.iter().any(|&t| t & TERM != 0) {
            self.decide(false, io);
        }
    }
}
