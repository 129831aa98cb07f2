//! The control plane, one service on the node: heartbeats watched by phi
//! accrual and a loss window, this node's link health flooded to the others,
//! and the view derived from what it holds (routes, reachability, partition
//! side, omission suspects). Every change of the view is an output the
//! node routes to its other services, which send along those routes.
//!
//! The client's own suspicions (Byzantine, unresponsive) come in as
//! input, so every suspicion a node raises is this service's output and is
//! kept in its status.

use crate::phi::Phi;
use crate::route::{Health, LinkState, View};
use crate::topology::Topology;
use agora_core::reading::Reading;
use agora_core::{Io, Message, NodeId, Protocol, Time};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Msg {
    Heartbeat { seq: u64 },
    LinkState(LinkState),
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Heartbeat { .. } => "heartbeat",
            Msg::LinkState(_) => "link_state",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    Beat,
    Check,
    Refresh,
}

/// How a failure was detected.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// Phi-accrual: a neighbour's heartbeats stopped.
    Crash,
    /// Most of the node's neighbours lose its heartbeats.
    Omission,
    /// Outvoted by a quorum of its group.
    Byzantine,
    /// Failed `eject_after` requests in a row (outlier ejection).
    Unresponsive,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Input {
    /// The client suspects `node` (routed on the node, not injected).
    #[serde(skip_deserializing)]
    Suspect { node: NodeId, how: Detection },
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub enum Output {
    Suspect {
        node: NodeId,
        how: Detection,
    },
    /// A suspicion cleared: heartbeats came back (`Crash`, the node may
    /// have restarted) or its neighbours stopped losing them (`Omission`).
    Trust {
        node: NodeId,
        how: Detection,
    },
    /// This node's side of the network is a minority (or no longer is).
    Isolated {
        isolated: bool,
    },
    /// The view changed: the routes the other services send along.
    View(View),
}

/// A neighbour as this node watches it.
#[derive(Clone, Debug)]
struct Watch {
    node: NodeId,
    phi: Phi,
    down: bool,
    /// Last heartbeat number and the recent arrivals (true) and gaps (false).
    seq: Option<u64>,
    window: VecDeque<bool>,
    lost: usize,
    lossy: bool,
}

/// The control plane of one node.
pub struct Control {
    topo: Arc<Topology>,
    me: NodeId,
    beat: u64,
    watches: Vec<Watch>,
    db: Vec<Option<LinkState>>,
    my_seq: u64,
    view: View,
    view_dirty: bool,
    reported_omission: Vec<bool>,
    /// The latest suspicions this node raised, for its status (real runs
    /// have no output log to read them from).
    detections: VecDeque<(Time, NodeId, Detection)>,
    /// When this node found itself on a minority side (latest kept).
    isolations: VecDeque<Time>,
}

/// Suspicions kept for the status.
const DETECTIONS_KEPT: usize = 64;

impl Control {
    pub fn new(topo: Arc<Topology>, me: NodeId) -> Self {
        let d = &topo.params.detector;
        let watches = topo.neighbours[me.index()]
            .iter()
            .map(|nb| Watch {
                node: nb.node,
                phi: Phi::new(d),
                down: false,
                seq: None,
                window: VecDeque::new(),
                lost: 0,
                lossy: false,
            })
            .collect();
        let n = topo.len();
        Control {
            me,
            beat: 0,
            watches,
            db: vec![None; n],
            my_seq: 0,
            view: View::default(),
            view_dirty: true,
            reported_omission: vec![false; n],
            detections: VecDeque::new(),
            isolations: VecDeque::new(),
            topo,
        }
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn suspects(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.watches.iter().filter(|w| w.down).map(|w| w.node)
    }

    /// Raises a suspicion: the output, and a line in the node's recent log.
    fn suspect(&mut self, node: NodeId, how: Detection, io: &mut Io<'_, Self>) {
        if self.detections.len() == DETECTIONS_KEPT {
            self.detections.pop_front();
        }
        self.detections.push_back((io.now(), node, how));
        io.output(Output::Suspect { node, how });
    }

    fn arm(&mut self, io: &mut Io<'_, Self>) {
        let p = &self.topo.params;
        io.set_timer(Duration::ZERO, Timer::Beat);
        io.set_timer(p.detector.interval / 4, Timer::Check);
        io.set_timer(Duration::ZERO, Timer::Refresh);
    }
    fn on_heartbeat(&mut self, from: NodeId, seq: u64, io: &mut Io<'_, Self>) {
        let p = &self.topo.params;
        let Some(w) = self.watches.iter_mut().find(|w| w.node == from) else { return };
        let now = io.now();
        let mut changed = false;
        if w.down {
            // Back (or restarted): judge it afresh.
            w.down = false;
            w.phi = Phi::new(&p.detector);
            io.output(Output::Trust { node: from, how: Detection::Crash });
            changed = true;
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

    fn tick(&mut self, io: &mut Io<'_, Self>) {
        let topo = self.topo.clone();
        let p = &topo.params;
        let now = io.now();
        let mut down = Vec::new();
        for w in &mut self.watches {
            if !w.down && w.phi.phi(now, &p.detector) > p.detector.threshold {
                w.down = true;
                down.push(w.node);
            }
        }
        for &node in &down {
            self.suspect(node, Detection::Crash, io);
        }
        if !down.is_empty() {
            self.publish(io);
        }
        io.set_timer(p.detector.interval / 4, Timer::Check);
    }

    /// Floods this node's link health.
    fn publish(&mut self, io: &mut Io<'_, Self>) {
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

    fn on_link_state(&mut self, from: NodeId, ls: LinkState, io: &mut Io<'_, Self>) {
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

    /// Derives the view again if what it rests on changed, and reports
    /// what changed with it.
    fn refresh_view(&mut self, io: &mut Io<'_, Self>) {
        if !self.view_dirty {
            return;
        }
        self.view_dirty = false;
        let view = View::derive(&self.topo, self.me, &self.db);
        if view == self.view {
            return;
        }
        let was = std::mem::replace(&mut self.view, view).isolated;
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
                    self.suspect(NodeId(x as u32), Detection::Omission, io);
                } else {
                    io.output(Output::Trust { node: NodeId(x as u32), how: Detection::Omission });
                }
            }
        }
        io.output(Output::View(self.view.clone()));
    }
}

impl Protocol for Control {
    type Msg = Msg;
    type Timer = Timer;
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        self.arm(io);
        // Every link is trusted until reported otherwise: the other
        // services have routes from the start.
        self.refresh_view(io);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Heartbeat { seq } => self.on_heartbeat(from, seq, io),
            Msg::LinkState(ls) => self.on_link_state(from, ls, io),
        }
        self.refresh_view(io);
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match timer {
            Timer::Beat => {
                self.beat += 1;
                for w in &self.watches {
                    io.send(w.node, Msg::Heartbeat { seq: self.beat });
                }
                io.set_timer(self.topo.params.detector.interval, Timer::Beat);
            }
            Timer::Check => self.tick(io),
            Timer::Refresh => {
                self.publish(io);
                io.set_timer(self.topo.params.refresh, Timer::Refresh);
            }
        }
        self.refresh_view(io);
    }

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        match input {
            Input::Suspect { node, how } => self.suspect(node, how, io),
        }
    }

    fn health(&self) -> Result<(), String> {
        match self.view.isolated {
            true => Err(format!(
                "isolated: its side of the network is a minority (it suspects {})",
                self.suspects().map(|n| self.topo.name(n)).collect::<Vec<_>>().join(" ")
            )),
            false => Ok(()),
        }
    }

    fn readings(&self, out: &mut Vec<Reading>) {
        let yes = |b: bool| if b { 1.0 } else { 0.0 };
        out.push(Reading::gauge(
            "telecom_isolated",
            "1 while this node is on a minority side of the network (its /health then fails)",
            vec![],
            yes(self.view.isolated),
        ));
        for w in &self.watches {
            out.push(Reading::gauge(
                "telecom_suspected",
                "1 while this node suspects the peer it watches",
                vec![("peer", self.topo.name(w.node).to_string())],
                yes(w.down),
            ));
        }
        for g in &self.topo.groups {
            let service = || vec![("service", g.service.clone())];
            out.push(Reading::gauge(
                "telecom_group_member",
                "1 if this node holds a replica of the service's group",
                service(),
                yes(g.members.contains(&self.me)),
            ));
            let trusted = g.members.iter().filter(|&&m| !self.suspects().any(|s| s == m)).count();
            out.push(Reading::gauge(
                "telecom_group_members_trusted",
                "Members of the service's group this node does not suspect",
                service(),
                trusted as f64,
            ));
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "node": self.topo.name(self.me),
            "isolated": self.view.isolated,
            "suspects": self.suspects().map(|n| self.topo.name(n).to_string()).collect::<Vec<_>>(),
            "detections": self.detections.iter().map(|(at, n, how)| serde_json::json!({
                "node": self.topo.name(*n), "how": how, "at_s": at.as_secs_f64(),
            })).collect::<Vec<_>>(),
            "isolations_s": self.isolations.iter().map(|t| t.as_secs_f64()).collect::<Vec<_>>(),
            // Every replication group by its service: how it replicates and
            // which nodes hold it (primary first).
            "groups": self.topo.groups.iter().map(|g| (g.service.clone(), serde_json::json!({
                "strategy": g.strategy, "consistency": g.consistency,
                "members": g.members.iter().map(|&m| self.topo.name(m)).collect::<Vec<_>>(),
                "member": g.members.contains(&self.me),
            }))).collect::<serde_json::Map<_, _>>(),
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Command;
    use rand::SeedableRng;

    fn node(me: u32) -> Control {
        let sc: toml::Value = toml::from_str(include_str!("../../../../scenarios/edge-core-cloud.toml")).unwrap();
        let params: crate::topology::Params = sc["params"].clone().try_into().unwrap();
        Control::new(Arc::new(params.compile().unwrap()), NodeId(me))
    }

    fn deliver(n: &mut Control, from: u32, ls: LinkState, now_ns: u64) -> Vec<LinkState> {
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
