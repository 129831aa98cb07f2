//! Failure detection and link state: heartbeats watched by phi accrual and a
//! loss window, this node's link health flooded to the others, the view
//! (routes, reachability, partition side, omission suspects) derived from
//! what it holds, and forwarding along its routes.

use super::*;
use crate::phi::Phi;
use crate::route::{Health, LinkState, View};

/// A neighbour as this node watches it.
#[derive(Clone, Debug)]
pub(super) struct Watch {
    pub(super) node: NodeId,
    pub(super) phi: Phi,
    pub(super) down: bool,
    /// Last heartbeat number and the recent arrivals (true) and gaps (false).
    pub(super) seq: Option<u64>,
    pub(super) window: VecDeque<bool>,
    pub(super) lost: usize,
    pub(super) lossy: bool,
}

impl Node {
    pub(super) fn on_heartbeat(&mut self, from: NodeId, seq: u64, io: &mut Io<'_, Self>) {
        let p = &self.topo.params;
        let Some(w) = self.watches.iter_mut().find(|w| w.node == from) else { return };
        let now = io.now();
        let mut changed = false;
        if w.down {
            // Back (or restarted): judge it afresh.
            w.down = false;
            w.phi = Phi::new(&p.detector);
            io.output(Output::Trust { node: from });
            changed = true;
            if let Some(c) = &mut self.client {
                // A restarted process is judged afresh by the votes too.
                c.standing[from.index()] = client::Standing::Good;
                c.strikes[from.index()] = 0;
            }
        }
        w.phi.heartbeat(now, &p.detector);
        let window = p.omission.window;
        match w.seq {
            Some(last) if seq > last => {
                for _ in last + 1..seq.min(last + 1 + window as u64) {
                    w.window.push_back(false);
                    w.lost += 1;
                }
                w.window.push_back(true);
            }
            Some(last) if seq == last => {} // a duplicate
            _ => {
                // First heartbeat, or a restart: start counting again.
                w.window.clear();
                w.lost = 0;
                w.window.push_back(true);
            }
        }
        w.seq = Some(seq);
        while w.window.len() > window {
            if !w.window.pop_front().expect("non-empty") {
                w.lost -= 1;
            }
        }
        let lossy = w.window.len() * 2 >= window && w.lost as f64 > p.omission.threshold * w.window.len() as f64;
        if lossy != w.lossy {
            w.lossy = lossy;
            changed = true;
        }
        if changed {
            self.publish(io);
        }
    }

    pub(super) fn tick(&mut self, io: &mut Io<'_, Self>) {
        let topo = self.topo.clone();
        let p = &topo.params;
        let now = io.now();
        let mut changed = false;
        for w in &mut self.watches {
            if !w.down && w.phi.phi(now, &p.detector) > p.detector.threshold {
                w.down = true;
                changed = true;
                suspect(&mut self.detections, w.node, Detection::Crash, io);
            }
        }
        if changed {
            self.publish(io);
        }
        self.refresh_view(io);
        self.refresh_client(io);
        io.set_timer(p.detector.interval / 4, Timer::Check);
    }

    /// Floods this node's link health.
    pub(super) fn publish(&mut self, io: &mut Io<'_, Self>) {
        // Numbered by the clock, so updates stay increasing across restarts
        // where the clock does (the simulator's), and above any old update
        // of ours a neighbour has echoed back (real processes restart their clocks).
        self.my_seq = self.my_seq.max(io.now().as_nanos()).saturating_add(1);
        let links = self
            .watches
            .iter()
            .map(|w| {
                let h = if w.down {
                    Health::Down
                } else if w.lossy {
                    Health::Lossy
                } else {
                    Health::Up
                };
                (w.node, h)
            })
            .collect();
        let ls = LinkState { origin: self.me, seq: self.my_seq, links };
        for w in &self.watches {
            io.send(w.node, Msg::LinkState(ls.clone()));
        }
        self.db[self.me.index()] = Some(ls);
        self.view_dirty = true;
    }

    pub(super) fn on_link_state(&mut self, from: NodeId, ls: LinkState, io: &mut Io<'_, Self>) {
        if ls.origin == self.me {
            // An update of ours from before a restart: number ours above it.
            if ls.seq > self.my_seq {
                self.my_seq = ls.seq;
                self.publish(io);
            }
            return;
        }
        let (origin, copy) = (ls.origin, ls.clone());
        let Some(changed) = crate::route::accept(&mut self.db, ls) else {
            // The origin sent an update older than the one held: it restarted
            // (its numbers start again). Echo the newer one back, as OSPF
            // does, so it can number its updates above it.
            let held = self.db.get(origin.index()).and_then(Option::as_ref);
            if from == origin && held.is_some_and(|h| h.seq > copy.seq) {
                io.send(from, Msg::LinkState(held.expect("checked").clone()));
            }
            return;
        };
        for w in &self.watches {
            if w.node != from && w.node != origin {
                io.send(w.node, Msg::LinkState(copy.clone()));
            }
        }
        self.view_dirty |= changed;
    }

    pub(super) fn refresh_view(&mut self, io: &mut Io<'_, Self>) {
        if !self.view_dirty {
            return;
        }
        self.view_dirty = false;
        let was = self.view.isolated;
        self.view = View::derive(&self.topo, self.me, &self.db);
        if self.view.isolated != was {
            if self.view.isolated {
                if self.isolations.len() == DETECTIONS_KEPT {
                    self.isolations.pop_front();
                }
                self.isolations.push_back(io.now());
            }
            io.output(Output::Isolated { isolated: self.view.isolated });
        }
        for x in 0..self.topo.len() {
            let (now, before) = (self.view.omission[x], self.reported_omission[x]);
            if now != before && NodeId(x as u32) != self.me {
                self.reported_omission[x] = now;
                if now {
                    suspect(&mut self.detections, NodeId(x as u32), Detection::Omission, io);
                } else {
                    io.output(Output::Trust { node: NodeId(x as u32) });
                }
            }
        }
        if let Some(c) = &mut self.client {
            c.dirty = true;
        }
    }

    // ---- routing ----

    /// Sends `msg` one hop towards `to` (false if there is no route).
    pub(super) fn route(&mut self, to: NodeId, msg: Msg, io: &mut Io<'_, Self>) -> bool {
        if self.view_dirty {
            self.refresh_view(io);
        }
        match self.view.next_hop.get(to.index()).copied().flatten() {
            Some(hop) => {
                io.send(hop, msg);
                true
            }
            None => {
                io.count(counters::NO_ROUTE, 1);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Command;
    use rand::SeedableRng;

    fn node(me: u32) -> Node {
        let sc: toml::Value = toml::from_str(include_str!("../../../../scenarios/edge-core-cloud.toml")).unwrap();
        let params: crate::topology::Params = sc["params"].clone().try_into().unwrap();
        Node::new(Arc::new(params.compile().unwrap()), NodeId(me))
    }

    fn deliver(n: &mut Node, from: u32, ls: LinkState, now_ns: u64) -> Vec<LinkState> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut out = Vec::new();
        let mut io = Io::new(n.me, Time::from_nanos(now_ns), &mut rng, &mut out);
        n.on_message(NodeId(from), Msg::LinkState(ls), &mut io);
        out.into_iter()
            .filter_map(|c| match c {
                Command::Send { msg: Msg::LinkState(l), .. } => Some(l),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_restarted_origin_gets_its_newer_update_back_and_numbers_above_it() {
        // Core1 (2) holds Edge1's (0) update number 1000.
        let mut core1 = node(2);
        let held = LinkState { origin: NodeId(0), seq: 1000, links: vec![(NodeId(2), Health::Up)] };
        assert_eq!(deliver(&mut core1, 0, held.clone(), 10).len(), 3, "a new update is flooded on");
        // Edge1 restarted: its clock, and so its numbers, start again.
        let echoed = deliver(&mut core1, 0, LinkState { seq: 5, ..held.clone() }, 20);
        assert_eq!(echoed, vec![held.clone()], "the newer update goes back to its origin");
        // Edge1, receiving its own old update, numbers its next one above it.
        let mut edge1 = node(0);
        let sent = deliver(&mut edge1, 2, held, 30);
        assert!(!sent.is_empty() && sent.iter().all(|l| l.origin == NodeId(0) && l.seq > 1000), "{sent:?}");
    }
}
