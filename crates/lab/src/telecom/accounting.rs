//! Where every request went: ok, failed by one cause of a closed list, or
//! in flight at the end — over the run, per group and per fault window —
//! and which requests were **serviceable**: those the system could have
//! served, judged from the simulator's ground truth at issue time.
//!
//! A request is serviceable when its client was not itself omitting, and
//! its group had enough correct replicas the client could reach (up, not
//! omitting, not Byzantine, connected to it through up nodes on its side of
//! any partition): a quorum for an n-way group, one for every other
//! strategy. Requests still in flight at the end are in neither ratio.

use super::history::Request;
use agora_core::{NodeId, Time};
use agora_sim::{Fault, Scope, Sim};
use agora_telecom::node::{server, Cause, Node, Output};
use agora_telecom::topology::Topology;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Counts over a set of requests.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Tally {
    pub issued: u64,
    pub succeeded: u64,
    /// Every cause of the closed list, summing to the failed requests.
    pub failed_by_cause: BTreeMap<Cause, u64>,
    pub in_flight_at_end: u64,
    /// Ended requests the system could have served, and those of them that succeeded.
    pub serviceable: u64,
    pub serviceable_succeeded: u64,
    /// The serviceable requests that failed, by cause: what the system
    /// could have served and did not.
    pub serviceable_failed_by_cause: BTreeMap<Cause, u64>,
    /// Writes that succeeded and took effect (a cas that swapped).
    pub writes_acknowledged: u64,
    /// Those of them a later reply showed overwritten by another value at
    /// their version (see [`super::history::lost_writes`]).
    pub writes_lost: u64,
}

impl Tally {
    fn new() -> Self {
        let none = || Cause::ALL.iter().map(|&c| (c, 0)).collect();
        Tally { failed_by_cause: none(), serviceable_failed_by_cause: none(), ..Tally::default() }
    }

    fn add(&mut self, r: &Request, serviceable: bool, lost: bool) {
        self.issued += 1;
        self.writes_lost += lost as u64;
        let Some(end) = &r.end else {
            self.in_flight_at_end += 1;
            return;
        };
        let ok = end.reply.is_some();
        self.writes_acknowledged += (r.op.writes() && end.reply.as_ref().is_some_and(|r| r.applied)) as u64;
        if ok {
            self.succeeded += 1;
        } else {
            *self.failed_by_cause.entry(end.cause.unwrap_or(Cause::Deadline)).or_default() += 1;
        }
        if serviceable {
            self.serviceable += 1;
            self.serviceable_succeeded += ok as u64;
            if !ok {
                *self.serviceable_failed_by_cause.entry(end.cause.unwrap_or(Cause::Deadline)).or_default() += 1;
            }
        }
    }

    pub fn failed(&self) -> u64 {
        self.failed_by_cause.values().sum()
    }
    /// Succeeded over ended requests.
    pub fn success_ratio(&self) -> f64 {
        ratio(self.succeeded, self.succeeded + self.failed())
    }
    pub fn serviceable_ratio(&self) -> f64 {
        ratio(self.serviceable_succeeded, self.serviceable)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// A stretch of the run with one set of faults in force.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    /// The faults in force ("Edge1 crashed", "Core1 byzantine", …); empty: none.
    pub faults: Vec<String>,
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupTally {
    pub service: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// A stretch of the run in which a PBFT-ordered group had more faulty
/// members (crashed, omitting or Byzantine) than the f it tolerates: PBFT
/// keeps it safe there (the simulator checks agreement after every event)
/// but promises no service.
#[derive(Clone, Debug, Serialize)]
pub struct BeyondF {
    pub service: String,
    pub f: usize,
    pub from_s: f64,
    pub to_s: f64,
    pub faulty: Vec<String>,
    /// The group's requests issued in the stretch.
    #[serde(flatten)]
    pub tally: Tally,
}

/// The accounting of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Accounting {
    pub total: Tally,
    pub groups: Vec<GroupTally>,
    pub windows: Vec<Window>,
    pub beyond_f: Vec<BeyondF>,
}

/// What the simulator had done to the nodes at some time.
#[derive(Clone, Debug)]
struct World {
    up: Vec<bool>,
    omitting: Vec<bool>,
    byzantine: Vec<bool>,
    /// Partition side of each node (all 0 when whole).
    side: Vec<usize>,
}

impl World {
    fn apply(&mut self, e: &Event) {
        match e {
            Event::Fault(Fault::Crash(n)) => self.up[n.index()] = false,
            Event::Fault(Fault::Recover { node, memory }) => {
                self.up[node.index()] = true;
                // A node restarted without its memory is a new, honest process.
                self.byzantine[node.index()] &= *memory;
            }
            Event::Fault(Fault::Omission { scope: Scope::Node(n), rate }) => self.omitting[n.index()] = *rate > 0.0,
            Event::Fault(Fault::Partition(groups)) => {
                self.side.iter_mut().for_each(|s| *s = groups.len());
                for (i, g) in groups.iter().enumerate() {
                    g.iter().for_each(|n| self.side[n.index()] = i);
                }
            }
            Event::Fault(Fault::Heal) => self.side.iter_mut().for_each(|s| *s = 0),
            Event::Byzantine(n, b) => self.byzantine[n.index()] = *b,
            Event::Fault(_) => {}
        }
    }

    /// The nodes `from` can reach: through up nodes on its side.
    fn reachable(&self, topo: &Topology, from: NodeId) -> Vec<bool> {
        let mut seen = vec![false; self.up.len()];
        seen[from.index()] = true;
        let mut queue = VecDeque::from([from]);
        while let Some(n) = queue.pop_front() {
            for nb in &topo.neighbours[n.index()] {
                let i = nb.node.index();
                if !seen[i] && self.up[i] && self.side[i] == self.side[from.index()] {
                    seen[i] = true;
                    queue.push_back(nb.node);
                }
            }
        }
        seen
    }

    fn serviceable(&self, topo: &Topology, r: &Request) -> bool {
        if self.omitting[r.client.index()] {
            return false;
        }
        let g = &topo.groups[r.group as usize];
        let reach = self.reachable(topo, r.client);
        let correct = g
            .members
            .iter()
            .filter(|m| reach[m.index()] && !self.omitting[m.index()] && !self.byzantine[m.index()])
            .count();
        correct >= g.needed()
    }

    /// The members of group `g` that are crashed, omitting or Byzantine.
    fn faulty(&self, topo: &Topology, g: usize) -> Vec<String> {
        let bad = |m: &&NodeId| !self.up[m.index()] || self.omitting[m.index()] || self.byzantine[m.index()];
        topo.groups[g].members.iter().filter(bad).map(|&m| topo.name(m).to_string()).collect()
    }

    fn describe(&self, topo: &Topology) -> Vec<String> {
        let mut out = Vec::new();
        for (i, spec) in topo.params.nodes.iter().enumerate() {
            for (on, what) in
                [(!self.up[i], "crashed"), (self.omitting[i], "omitting"), (self.byzantine[i], "byzantine")]
            {
                if on {
                    out.push(format!("{} {what}", spec.name));
                }
            }
        }
        let sides = self.side.iter().max().map_or(0, |&m| m + 1);
        if sides > 1 {
            let parts: Vec<String> = (0..sides)
                .map(|s| {
                    let names: Vec<&str> = (0..self.side.len())
                        .filter(|&i| self.side[i] == s)
                        .map(|i| topo.name(NodeId(i as u32)))
                        .collect();
                    names.join(" ")
                })
                .filter(|p| !p.is_empty())
                .collect();
            out.push(format!("partition {{{}}}", parts.join("} {")));
        }
        out
    }
}

enum Event {
    Fault(Fault),
    Byzantine(NodeId, bool),
}

/// The ground truth's changes in time order.
fn events(sim: &Sim<Node>) -> Vec<(Time, Event)> {
    let mut out: Vec<(Time, Event)> = sim.faults_applied().iter().map(|(t, f)| (*t, Event::Fault(f.clone()))).collect();
    for o in sim.outputs() {
        match o.output {
            Output::Server(server::Output::TurnedByzantine { .. }) => out.push((o.at, Event::Byzantine(o.node, true))),
            Output::Server(server::Output::TurnedHonest) => out.push((o.at, Event::Byzantine(o.node, false))),
            _ => {}
        }
    }
    out.sort_by_key(|e| e.0); // stable: same-time events keep their order
    out
}

/// Accounts for every request of a run (`reqs` in issue order).
pub fn account(topo: &Topology, sim: &Sim<Node>, reqs: &[Request]) -> Accounting {
    let n = topo.len();
    let mut world = World { up: vec![true; n], omitting: vec![false; n], byzantine: vec![false; n], side: vec![0; n] };
    let events = events(sim);
    let lost = super::history::lost_writes(reqs);
    let mut next = 0;
    let mut total = Tally::new();
    let mut groups: Vec<Tally> = vec![Tally::new(); topo.groups.len()];
    let mut windows = vec![Window { from_s: 0.0, to_s: 0.0, faults: Vec::new(), tally: Tally::new() }];
    for (i, r) in reqs.iter().enumerate() {
        while next < events.len() && events[next].0 <= r.issued {
            world.apply(&events[next].1);
            let at = events[next].0.as_secs_f64();
            next += 1;
            if next < events.len() && events[next].0 == events[next - 1].0 {
                continue; // one window per instant
            }
            let faults = world.describe(topo);
            if faults != windows.last().expect("a window").faults {
                windows.last_mut().expect("a window").to_s = at;
                windows.push(Window { from_s: at, to_s: at, faults, tally: Tally::new() });
            }
        }
        let serviceable = world.serviceable(topo, r);
        let lost = lost.contains(&i);
        total.add(r, serviceable, lost);
        groups[r.group as usize].add(r, serviceable, lost);
        windows.last_mut().expect("a window").tally.add(r, serviceable, lost);
    }
    windows.last_mut().expect("a window").to_s = sim.now().as_secs_f64();
    let groups =
        topo.groups.iter().zip(groups).map(|(g, tally)| GroupTally { service: g.service.clone(), tally }).collect();
    let beyond_f = beyond_f(topo, sim, &events, reqs, &lost);
    Accounting { total, groups, windows, beyond_f }
}

/// The stretches in which a PBFT-ordered group had more than f faulty
/// members, and its requests issued in them.
fn beyond_f(
    topo: &Topology,
    sim: &Sim<Node>,
    events: &[(Time, Event)],
    reqs: &[Request],
    lost: &std::collections::HashSet<usize>,
) -> Vec<BeyondF> {
    let n = topo.len();
    let mut world = World { up: vec![true; n], omitting: vec![false; n], byzantine: vec![false; n], side: vec![0; n] };
    let ordered: Vec<usize> = (0..topo.groups.len()).filter(|&g| topo.pbft[g].is_some()).collect();
    let mut open: Vec<Option<BeyondF>> = vec![None; topo.groups.len()];
    let mut out = Vec::new();
    for (i, (at, e)) in events.iter().enumerate() {
        world.apply(e);
        if events.get(i + 1).is_some_and(|next| next.0 == *at) {
            continue; // one change per instant
        }
        for &g in &ordered {
            let (faulty, f) = (world.faulty(topo, g), agora_telecom::ordering::tolerated(topo.groups[g].members.len()));
            if open[g].as_ref().is_some_and(|s| s.faulty == faulty) {
                continue;
            }
            if let Some(mut s) = open[g].take() {
                s.to_s = at.as_secs_f64();
                out.push(s);
            }
            if faulty.len() > f {
                let service = topo.groups[g].service.clone();
                let from_s = at.as_secs_f64();
                open[g] = Some(BeyondF { service, f, from_s, to_s: from_s, faulty, tally: Tally::new() });
            }
        }
    }
    out.extend(open.into_iter().flatten().map(|s| BeyondF { to_s: sim.now().as_secs_f64(), ..s }));
    for (i, r) in reqs.iter().enumerate() {
        let at = r.issued.as_secs_f64();
        let service = &topo.groups[r.group as usize].service;
        if let Some(s) = out.iter_mut().find(|s| s.service == *service && s.from_s <= at && at < s.to_s) {
            s.tally.add(r, false, lost.contains(&i));
        }
    }
    out
}
