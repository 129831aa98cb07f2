use crate::disk::{Disk, DiskModel};
use crate::network::{Latency, LinkCtx};
use crate::queue::EventQueue;
use crate::stats::Stats;
use crate::trace::{hex, TraceHash, TraceRecord, TraceSink};
use agora_core::keys::{SeededKeys, SeededRing};
use agora_core::storage::{DiskError, Durable, StoreOp, SyncDone};
use agora_core::{prefetch, wire, Command, Io, Message, NodeId, Protocol, Time};
use fnv::FnvHashMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smallvec::SmallVec;
use std::hash::{Hash, Hasher};

/// Knobs of one simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The root seed: every random choice of the run derives from it.
    pub seed: u64,
    /// Deliver messages of each directed link in send order.
    pub fifo: bool,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplication: f64,
    /// Keep every output in memory (off for huge runs: outputs are still counted).
    pub collect_outputs: bool,
    /// The disk behind the storage capability.
    pub disk: DiskModel,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig { seed, fifo: false, loss: 0.0, duplication: 0.0, collect_outputs: true, disk: DiskModel::default() }
    }
}

/// Which messages an omission fault drops.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// Everything the node sends or is sent.
    Node(NodeId),
    /// Everything sent on the directed link `from → to`.
    Link(NodeId, NodeId),
}

/// A fault, scheduled with [`Sim::schedule_fault`].
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The node stops: it receives nothing, its timers are lost.
    Crash(NodeId),
    /// The node comes back, with its state (`memory`) or as new.
    Recover { node: NodeId, memory: bool },
    /// Drop messages in `scope` with probability `rate` (0 ends the fault).
    Omission { scope: Scope, rate: f64 },
    /// Only nodes of the same group can talk; unlisted nodes form one more group.
    Partition(Vec<Vec<NodeId>>),
    /// End any partition.
    Heal,
    /// Ask for a fragile node to turn faulty (or back): the toggle waits for
    /// the next quiescent time.
    Fragile { node: NodeId, faulty: bool },
    /// The node's disk refuses every sync (`full`), or accepts them again.
    DiskFull { node: NodeId, full: bool },
    /// One durable record on the node's disk gets a byte flipped.
    DiskCorrupt(NodeId),
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::Crash(_) => "crash",
            Fault::Recover { .. } => "recover",
            Fault::Omission { .. } => "omission",
            Fault::Partition(_) => "partition",
            Fault::Heal => "heal",
            Fault::Fragile { .. } => "fragile",
            Fault::DiskFull { .. } => "disk_full",
            Fault::DiskCorrupt(_) => "disk_corrupt",
        }
    }
}

/// Rewrites what a Byzantine node sends: given the destination and the
/// message the protocol produced, returns what really goes out (possibly
/// nothing, several messages, or other destinations).
pub type Byzantine<P> =
    Box<dyn FnMut(NodeId, <P as Protocol>::Msg, &mut ChaCha8Rng) -> Vec<(NodeId, <P as Protocol>::Msg)>>;

type Invariant<P> = Box<dyn FnMut(&World<'_, P>) -> Result<(), String>>;
type Quiescence<P> = Box<dyn Fn(&World<'_, P>) -> bool>;

/// One node's place in the simulator.
pub(crate) struct Slot<P: Protocol> {
    state: P,
    up: bool,
    faulty: bool,
    fragile: bool,
    /// Pending timers with the id of their latest arming; inline for the
    /// usual one or two, so that arming one touches no other allocation.
    timers: SmallVec<[(P::Timer, u64); 2]>,
}

/// Read access to every node of a run.
pub struct Nodes<'a, P: Protocol>(&'a [Slot<P>]);

impl<P: Protocol> Clone for Nodes<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: Protocol> Copy for Nodes<'_, P> {}

impl<'a, P: Protocol> Nodes<'a, P> {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn state(&self, id: NodeId) -> &'a P {
        &self.0[id.index()].state
    }
    /// Not crashed.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.0[id.index()].up
    }
    /// A fragile node currently in its faulty state.
    pub fn is_faulty(&self, id: NodeId) -> bool {
        self.0[id.index()].faulty
    }
    /// Up and not faulty: the node acts and receives.
    pub fn is_live(&self, id: NodeId) -> bool {
        let s = &self.0[id.index()];
        s.up && !s.faulty
    }
    pub fn ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.0.len() as u32).map(NodeId)
    }
}

/// An output a node emitted.
#[derive(Clone, Debug)]
pub struct OutputRecord<O> {
    pub at: Time,
    pub node: NodeId,
    pub output: O,
}

/// What an invariant or quiescence predicate sees.
pub struct World<'a, P: Protocol> {
    pub nodes: Nodes<'a, P>,
    pub now: Time,
    pub stats: &'a Stats,
    pub outputs: &'a [OutputRecord<P::Output>],
    /// Messages sent and not yet delivered or dropped.
    pub in_flight: u64,
    /// The node the last event concerned (whose state may have changed):
    /// lets an invariant check that node only, in O(1) instead of O(n).
    pub active: Option<NodeId>,
    disks: &'a FnvHashMap<u32, Disk>,
}

impl<P: Protocol> World<'_, P> {
    /// What `node` would read back from its disk if it restarted now.
    pub fn durable(&self, node: NodeId) -> Durable {
        self.disks.get(&node.0).map(Disk::read_back).unwrap_or_default()
    }
}

/// A fragile toggle that took effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Toggle {
    pub at: Time,
    pub node: NodeId,
    pub faulty: bool,
    /// Messages in flight and timers pending when it took effect (both 0).
    pub in_flight: u64,
    pub armed_timers: u64,
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Nothing left to happen.
    Quiet,
    /// The next event lies beyond the time limit.
    TimeLimit,
    /// The event budget ran out.
    EventLimit,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub stop: Stop,
    pub events: u64,
    pub sim_time: Time,
    pub trace_hash: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invariant `{name}` violated at event {event} (t = {time}, seed {seed}): {detail}\n  during: {during}\n  replay with --seed {seed}")]
    Invariant { name: String, seed: u64, event: u64, time: Time, during: String, detail: String },
    #[error("writing the trace failed: {0}")]
    Trace(#[from] std::io::Error),
}

/// Rare, large events are boxed so that queue entries stay small.
enum Event<P: Protocol> {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: P::Msg,
    },
    Timer {
        node: NodeId,
        id: u64,
    },
    Input {
        node: NodeId,
        input: Box<P::Input>,
    },
    Fault(Box<Fault>),
    /// A sync batch of `node`'s disk completes (stale if lost in a crash).
    Synced {
        node: NodeId,
        id: u64,
    },
}

/// What the last handled event was, for violation reports and traces.
#[derive(Clone, Copy)]
struct Last {
    tag: u8,
    node: NodeId,
    from: Option<NodeId>,
    what: &'static str,
}

const TAG_START: u8 = 0;
const TAG_DELIVER: u8 = 1;
const TAG_TIMER: u8 = 2;
const TAG_INPUT: u8 = 3;
const TAG_FAULT: u8 = 4;
const TAG_DROP: u8 = 5;
const TAG_SYNC: u8 = 6;
const TAG_NAMES: [&str; 7] = ["start", "deliver", "timer", "input", "fault", "drop", "synced"];

/// The deterministic discrete-event simulator.
///
/// Events are ordered by time, then by the order they were scheduled; all randomness comes from
/// ChaCha streams derived from one seed (network, protocol, faults each get
/// their own stream, so adding a fault does not reshuffle message delays).
/// The same nodes, scenario and seed give a bit-identical trace.
pub struct Sim<P: Protocol> {
    cfg: SimConfig,
    slots: Vec<Slot<P>>,
    factory: Box<dyn FnMut(NodeId) -> P>,
    latency: Box<dyn Latency<P>>,
    queue: EventQueue<Event<P>>,
    now: Time,
    /// Ids of timer armings and sync batches.
    next_id: u64,
    started: bool,
    net_rng: ChaCha8Rng,
    proto_rng: ChaCha8Rng,
    fault_rng: ChaCha8Rng,
    disk_rng: ChaCha8Rng,
    keys: SeededRing,
    disks: FnvHashMap<u32, Disk>,
    in_flight: u64,
    in_flight_to: Vec<u32>,
    armed_timers: u64,
    last_arrival: FnvHashMap<(u32, u32), Time>,
    node_omission: FnvHashMap<u32, f64>,
    link_omission: FnvHashMap<(u32, u32), f64>,
    group_of: Option<Vec<u32>>,
    pending_toggles: Vec<(NodeId, bool)>,
    quiescence: Option<Quiescence<P>>,
    toggles: Vec<Toggle>,
    /// Every fault as it was applied, for reports that match faults to detections.
    faults_applied: Vec<(Time, Fault)>,
    byzantine: FnvHashMap<u32, Byzantine<P>>,
    invariants: Vec<(String, Invariant<P>)>,
    stats: Stats,
    outputs: Vec<OutputRecord<P::Output>>,
    hash: TraceHash,
    sink: Option<Box<dyn TraceSink>>,
    out: Vec<Command<P>>,
    enc: Vec<u8>,
    last: Last,
}

/// How many events ahead `prefetch_upcoming` looks.
const PREFETCH_DISTANCE: usize = 4;

fn stream(seed: u64, n: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(n);
    r
}

impl<P: Protocol> Sim<P> {
    /// `n` nodes made by `factory`, which also rebuilds a node that recovers
    /// without its memory.
    pub fn new(
        n: u32,
        mut factory: impl FnMut(NodeId) -> P + 'static,
        latency: impl Latency<P> + 'static,
        cfg: SimConfig,
    ) -> Self {
        let slots = (0..n)
            .map(|i| Slot {
                state: factory(NodeId(i)),
                up: true,
                faulty: false,
                fragile: false,
                timers: SmallVec::new(),
            })
            .collect();
        let in_flight_to = if latency.counts_in_flight() { vec![0; n as usize] } else { Vec::new() };
        Sim {
            net_rng: stream(cfg.seed, 1),
            proto_rng: stream(cfg.seed, 2),
            fault_rng: stream(cfg.seed, 3),
            // Far from the key streams (4 + node id).
            disk_rng: stream(cfg.seed, 1 << 40),
            keys: SeededKeys { seed: cfg.seed }.ring(),
            disks: FnvHashMap::default(),
            cfg,
            slots,
            factory: Box::new(factory),
            latency: Box::new(latency),
            queue: EventQueue::new(),
            now: Time::ZERO,
            next_id: 0,
            started: false,
            in_flight: 0,
            in_flight_to,
            armed_timers: 0,
            last_arrival: FnvHashMap::default(),
            node_omission: FnvHashMap::default(),
            link_omission: FnvHashMap::default(),
            group_of: None,
            pending_toggles: Vec::new(),
            quiescence: None,
            toggles: Vec::new(),
            faults_applied: Vec::new(),
            byzantine: FnvHashMap::default(),
            invariants: Vec::new(),
            stats: Stats::default(),
            outputs: Vec::new(),
            hash: TraceHash::default(),
            sink: None,
            out: Vec::new(),
            enc: Vec::new(),
            last: Last { tag: TAG_START, node: NodeId(0), from: None, what: "" },
        }
    }

    // ---- set-up -------------------------------------------------------

    /// Checks `f` after every event; a violation stops the run with an error
    /// that names the invariant, the event, the time and the seed.
    pub fn add_invariant(&mut self, name: &str, f: impl FnMut(&World<'_, P>) -> Result<(), String> + 'static) {
        self.invariants.push((name.to_string(), Box::new(f)));
    }

    /// Writes every handled event to `sink`.
    pub fn set_trace_sink(&mut self, sink: impl TraceSink + 'static) {
        self.sink = Some(Box::new(sink));
    }

    /// Ends tracing: the sink flushes (or checks it saw everything).
    pub fn finish_trace(&mut self) -> Result<(), SimError> {
        if let Some(mut sink) = self.sink.take() {
            sink.finish()?;
        }
        Ok(())
    }

    /// Makes `node` Byzantine: everything it sends passes through `rewrite`.
    pub fn set_byzantine(&mut self, node: NodeId, rewrite: Byzantine<P>) {
        self.byzantine.insert(node.0, rewrite);
    }

    /// Declares the fragile nodes: only they may toggle faulty.
    pub fn set_fragile(&mut self, nodes: impl IntoIterator<Item = NodeId>) {
        for n in nodes {
            self.slots[n.index()].fragile = true;
        }
    }

    /// Adds a protocol-level condition to quiescence (e.g. "fewer than k
    /// tokens in the system"). Quiescent always also means: no message in
    /// flight and no timer pending.
    pub fn set_quiescence(&mut self, f: impl Fn(&World<'_, P>) -> bool + 'static) {
        self.quiescence = Some(Box::new(f));
    }

    pub fn schedule_fault(&mut self, at: Time, fault: Fault) {
        self.queue.push(at, Event::Fault(Box::new(fault)));
    }

    /// The outside world hands `node` an `input` at `at`.
    pub fn schedule_input(&mut self, at: Time, node: NodeId, input: P::Input) {
        self.queue.push(at, Event::Input { node, input: Box::new(input) });
    }

    // ---- views --------------------------------------------------------

    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }
    pub fn now(&self) -> Time {
        self.now
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn trace_hash(&self) -> u64 {
        self.hash.value()
    }
    pub fn nodes(&self) -> Nodes<'_, P> {
        Nodes(&self.slots)
    }
    pub fn node(&self, id: NodeId) -> &P {
        &self.slots[id.index()].state
    }
    pub fn outputs(&self) -> &[OutputRecord<P::Output>] {
        &self.outputs
    }
    /// The fragile toggles that took effect, in order.
    /// The faults applied so far, with their times.
    pub fn faults_applied(&self) -> &[(Time, Fault)] {
        &self.faults_applied
    }
    pub fn toggles(&self) -> &[Toggle] {
        &self.toggles
    }
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }
    /// Time of the next event, if any.
    pub fn next_event_time(&mut self) -> Option<Time> {
        self.queue.peek_time()
    }
    pub fn world(&self) -> World<'_, P> {
        World {
            nodes: Nodes(&self.slots),
            now: self.now,
            stats: &self.stats,
            outputs: &self.outputs,
            in_flight: self.in_flight,
            active: self.started.then_some(self.last.node),
            disks: &self.disks,
        }
    }
    /// No message in flight, no timer pending, and the protocol's own
    /// quiescence condition (if any) holds.
    pub fn is_quiescent(&self) -> bool {
        self.in_flight == 0 && self.armed_timers == 0 && self.quiescence.as_ref().is_none_or(|q| q(&self.world()))
    }

    // ---- running ------------------------------------------------------

    /// Runs until nothing is left to happen or the next event lies after `limit`.
    pub fn run_until(&mut self, limit: Time) -> Result<Report, SimError> {
        self.run(limit, u64::MAX, &mut |_| {})
    }

    /// Runs until `limit` (simulated time) or `max_events`, calling
    /// `progress` with the current time every 65 536 events.
    pub fn run(&mut self, limit: Time, max_events: u64, progress: &mut dyn FnMut(Time)) -> Result<Report, SimError> {
        self.start()?;
        let stop = loop {
            if self.stats.events >= max_events {
                break Stop::EventLimit;
            }
            match self.queue.peek_time() {
                None => break Stop::Quiet,
                Some(at) if at > limit => break Stop::TimeLimit,
                Some(_) => {}
            }
            self.step()?;
            if self.stats.events & 0xffff == 0 {
                progress(self.now);
            }
        };
        Ok(Report { stop, events: self.stats.events, sim_time: self.now, trace_hash: self.hash.value() })
    }

    /// Starts every node (in id order, at time 0) unless already started.
    pub fn start(&mut self) -> Result<(), SimError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        for i in 0..self.slots.len() as u32 {
            let node = NodeId(i);
            self.dispatch(node, |p, io| p.on_start(io));
            self.after_event(TAG_START, node, None, "", &[], serde_json::Value::Null)?;
        }
        Ok(())
    }

    /// Handles the next event. Returns false when the queue is empty.
    pub fn step(&mut self) -> Result<bool, SimError> {
        self.start()?;
        let Some((at, ev)) = self.queue.pop() else {
            return Ok(false);
        };
        self.now = at;
        self.prefetch_upcoming();
        match ev {
            Event::Deliver { from, to, msg } => {
                self.in_flight -= 1;
                if let Some(c) = self.in_flight_to.get_mut(to.index()) {
                    *c -= 1;
                }
                let slot = &self.slots[to.index()];
                let reason = if !slot.up {
                    Some("crashed")
                } else if slot.faulty {
                    Some("faulty")
                } else if self.group_of.as_ref().is_some_and(|g| g[from.index()] != g[to.index()]) {
                    Some("partition")
                } else {
                    None
                };
                let kind = agora_core::Message::kind(&msg);
                self.enc.clear();
                wire::encode_into(&msg, &mut self.enc).expect("protocol messages must encode");
                let body = if self.sink.is_some() {
                    serde_json::to_value(&msg).unwrap_or_default()
                } else {
                    serde_json::Value::Null
                };
                let enc = std::mem::take(&mut self.enc);
                let result = match reason {
                    Some(r) => {
                        self.stats.dropped.add(r, 1);
                        self.stats.dropped_by_kind.add(kind, 1);
                        self.after_event(TAG_DROP, to, Some(from), r, &enc, body)
                    }
                    None => {
                        self.stats.delivered_by_kind.add(kind, 1);
                        self.stats.max_message_bytes = self.stats.max_message_bytes.max(enc.len());
                        self.dispatch(to, |p, io| p.on_message(from, msg, io));
                        self.after_event(TAG_DELIVER, to, Some(from), kind, &enc, body)
                    }
                };
                self.enc = enc;
                result?;
            }
            Event::Timer { node, id } => {
                let slot = &mut self.slots[node.index()];
                let Some(pos) = slot.timers.iter().position(|t| t.1 == id) else {
                    return Ok(true); // cancelled, re-armed or lost in a crash
                };
                let (timer, _) = slot.timers.swap_remove(pos);
                self.armed_timers -= 1;
                self.stats.timers_fired += 1;
                let mut h = fnv::FnvHasher::default();
                timer.hash(&mut h);
                let digest = h.finish().to_le_bytes();
                let body = if self.sink.is_some() { format!("{timer:?}").into() } else { serde_json::Value::Null };
                self.dispatch(node, |p, io| p.on_timer(timer, io));
                self.after_event(TAG_TIMER, node, None, "timer", &digest, body)?;
            }
            Event::Input { node, input } => {
                let text = format!("{input:?}");
                let live = self.nodes().is_live(node);
                if let Some(why) = live.then(|| self.node(node).check_input(&input).err()).flatten() {
                    // An input the node cannot act on, as a runtime refuses it.
                    self.stats.inputs_refused += 1;
                    let text = format!("{text}: {why}");
                    self.after_event(TAG_DROP, node, None, "input_refused", text.as_bytes(), text.clone().into())?;
                } else if live {
                    self.stats.inputs += 1;
                    self.dispatch(node, |p, io| p.on_input(*input, io));
                    self.after_event(TAG_INPUT, node, None, "input", text.as_bytes(), text.clone().into())?;
                } else {
                    // No injection into a crashed or faulty node: refused, counted, traced.
                    self.stats.inputs_refused += 1;
                    self.after_event(TAG_DROP, node, None, "input_refused", text.as_bytes(), text.clone().into())?;
                }
            }
            Event::Fault(fault) => {
                let (text, name) = (format!("{fault:?}"), fault.name());
                self.faults_applied.push((self.now, (*fault).clone()));
                let node = self.apply_fault(*fault);
                self.after_event(TAG_FAULT, node, None, name, text.as_bytes(), text.clone().into())?;
            }
            Event::Synced { node, id } => {
                let done = self.disks.get_mut(&node.0).and_then(|d| d.complete(&self.cfg.disk, id));
                let Some((service, ticket, ok)) = done else {
                    return Ok(true); // lost in a crash
                };
                self.stats.disk.syncs += 1;
                let result = if ok {
                    Ok(())
                } else {
                    self.stats.disk.syncs_refused += 1;
                    Err(DiskError::Full)
                };
                let body = if self.sink.is_some() {
                    serde_json::json!({"service": service, "ticket": ticket, "ok": ok})
                } else {
                    serde_json::Value::Null
                };
                self.dispatch(node, |p, io| p.on_synced(SyncDone { service, ticket, result }, io));
                let mut digest = ticket.to_le_bytes().to_vec();
                digest.push(ok as u8);
                self.after_event(TAG_SYNC, node, None, "synced", &digest, body)?;
            }
        }
        Ok(true)
    }

    // ---- internals ----------------------------------------------------

    /// Asks the CPU to load the state of the nodes the next few events go
    /// to while this one is handled: at 10^6 nodes each event's node is
    /// otherwise a cache miss, paid one after the other.
    /// The next event's node (its state was asked for earlier) is also
    /// asked to prefetch what its handler will read.
    fn prefetch_upcoming(&self) {
        let mut upcoming = self.queue.upcoming();
        // Each event's node is asked for once, PREFETCH_DISTANCE events ahead.
        if let Some(Event::Deliver { from, to, msg }) = upcoming.next() {
            if let Some(slot) = self.slots.get(to.index()) {
                slot.state.prefetch(*from, msg);
            }
        }
        let node = match upcoming.nth(PREFETCH_DISTANCE - 2) {
            Some(Event::Deliver { to, .. }) => *to,
            Some(Event::Timer { node, .. }) => *node,
            _ => return,
        };
        if let Some(slot) = self.slots.get(node.index()) {
            prefetch(slot);
        }
        if let Some(count) = self.in_flight_to.get(node.index()) {
            prefetch(count);
        }
    }

    /// Runs one handler on `node` and applies its commands in order.
    fn dispatch(&mut self, node: NodeId, f: impl FnOnce(&mut P, &mut Io<'_, P>)) {
        let mut out = std::mem::take(&mut self.out);
        {
            let mut io = Io::new(node, self.now, &mut self.proto_rng, &mut out).with_keys(&self.keys);
            f(&mut self.slots[node.index()].state, &mut io);
        }
        for cmd in out.drain(..) {
            self.apply(node, cmd);
        }
        self.out = out;
    }

    fn apply(&mut self, node: NodeId, cmd: Command<P>) {
        match cmd {
            Command::Send { to, msg } => {
                if let Some(rewrite) = if self.byzantine.is_empty() { None } else { self.byzantine.get_mut(&node.0) } {
                    for (to, msg) in rewrite(to, msg, &mut self.fault_rng) {
                        self.send(node, to, msg);
                    }
                } else {
                    self.send(node, to, msg);
                }
            }
            Command::SetTimer { after, timer } => {
                self.next_id += 1;
                let id = self.next_id;
                let slot = &mut self.slots[node.index()];
                match slot.timers.iter_mut().find(|t| t.0 == timer) {
                    Some(t) => t.1 = id,
                    None => {
                        slot.timers.push((timer, id));
                        self.armed_timers += 1;
                    }
                }
                self.queue.push(self.now + after, Event::Timer { node, id });
            }
            Command::CancelTimer { timer } => {
                let slot = &mut self.slots[node.index()];
                if let Some(pos) = slot.timers.iter().position(|t| t.0 == timer) {
                    slot.timers.swap_remove(pos);
                    self.armed_timers -= 1;
                }
            }
            Command::Output(output) => {
                self.stats.outputs += 1;
                if self.cfg.collect_outputs {
                    self.outputs.push(OutputRecord { at: self.now, node, output });
                }
            }
            Command::Count { service: "", name, by } => self.stats.counters.add(name, by),
            Command::Count { service, name, by } => {
                *self.stats.service_counters.entry((service, name)).or_default() += by
            }
            Command::Store(op) => {
                let disk = self.disks.entry(node.0).or_default();
                match op {
                    StoreOp::Sync { service, ticket } => {
                        self.next_id += 1;
                        let id = self.next_id;
                        let at = disk.sync(&self.cfg.disk, id, service, ticket, self.now, &mut self.disk_rng);
                        self.queue.push(at, Event::Synced { node, id });
                    }
                    op => {
                        self.stats.disk.writes += 1;
                        disk.write(op);
                    }
                }
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: P::Msg) {
        self.stats.messages_sent += 1;
        let kind = msg.kind();
        self.stats.messages_by_kind.add(kind, 1);
        let service = msg.service();
        if !service.is_empty() {
            self.stats.messages_by_service.add(service, 1);
        }
        let reason = if to.index() >= self.slots.len() {
            Some("no_such_node")
        } else if (!self.node_omission.is_empty() || !self.link_omission.is_empty()) && self.omitted(from, to) {
            Some("omission")
        } else if self.cfg.loss > 0.0 && self.net_rng.random::<f64>() < self.cfg.loss {
            Some("loss")
        } else {
            None
        };
        if let Some(r) = reason {
            self.stats.dropped.add(r, 1);
            self.stats.dropped_by_kind.add(kind, 1);
            return;
        }
        let copies = if self.cfg.duplication > 0.0 && self.net_rng.random::<f64>() < self.cfg.duplication {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = {
                let ctx = LinkCtx {
                    from,
                    to,
                    now: self.now,
                    msg: &msg,
                    in_flight_to: self.in_flight_to.get(to.index()).copied().unwrap_or(0),
                    nodes: Nodes(&self.slots),
                };
                self.latency.delay(&ctx, &mut self.net_rng)
            };
            let mut at = self.now + delay;
            if self.cfg.fifo {
                let last = self.last_arrival.entry((from.0, to.0)).or_insert(Time::ZERO);
                at = at.max(*last);
                *last = at;
            }
            self.in_flight += 1;
            if let Some(c) = self.in_flight_to.get_mut(to.index()) {
                *c += 1;
            }
            self.stats.max_in_flight = self.stats.max_in_flight.max(self.in_flight);
            self.queue.push(at, Event::Deliver { from, to, msg: msg.clone() });
        }
    }

    /// Whether an omission fault drops this message (the highest rate of
    /// the sender's, the receiver's and the link's applies).
    fn omitted(&mut self, from: NodeId, to: NodeId) -> bool {
        let rate = |m: &FnvHashMap<u32, f64>, n: NodeId| m.get(&n.0).copied().unwrap_or(0.0);
        let r = rate(&self.node_omission, from)
            .max(rate(&self.node_omission, to))
            .max(self.link_omission.get(&(from.0, to.0)).copied().unwrap_or(0.0));
        r > 0.0 && self.fault_rng.random::<f64>() < r
    }

    /// Applies a fault; returns the node it concerns (0 for global faults).
    fn apply_fault(&mut self, fault: Fault) -> NodeId {
        match fault {
            Fault::Crash(node) => {
                let slot = &mut self.slots[node.index()];
                if slot.up {
                    slot.up = false;
                    self.armed_timers -= slot.timers.len() as u64;
                    slot.timers.clear();
                    self.stats.crashes += 1;
                    if let Some(disk) = self.disks.get_mut(&node.0) {
                        let (torn, corrupted) = disk.crash(&self.cfg.disk, &mut self.disk_rng);
                        self.stats.disk.torn_writes += torn as u64;
                        self.stats.disk.corrupted_records += corrupted as u64;
                    }
                }
                node
            }
            Fault::Recover { node, memory } => {
                if !self.slots[node.index()].up {
                    self.slots[node.index()].up = true;
                    self.stats.recoveries += 1;
                    if memory {
                        self.dispatch(node, |p, io| p.on_recover(io));
                    } else {
                        let mut state = (self.factory)(node);
                        if let Some(disk) = self.disks.get(&node.0) {
                            state.on_restore(&disk.read_back());
                        }
                        self.slots[node.index()].state = state;
                        self.dispatch(node, |p, io| p.on_start(io));
                    }
                }
                node
            }
            Fault::Omission { scope, rate } => match scope {
                Scope::Node(n) => {
                    if rate > 0.0 {
                        self.node_omission.insert(n.0, rate);
                    } else {
                        self.node_omission.remove(&n.0);
                    }
                    n
                }
                Scope::Link(a, b) => {
                    if rate > 0.0 {
                        self.link_omission.insert((a.0, b.0), rate);
                    } else {
                        self.link_omission.remove(&(a.0, b.0));
                    }
                    a
                }
            },
            Fault::Partition(groups) => {
                let rest = groups.len() as u32;
                let mut g = vec![rest; self.slots.len()];
                for (i, members) in groups.iter().enumerate() {
                    for m in members {
                        g[m.index()] = i as u32;
                    }
                }
                self.group_of = Some(g);
                NodeId(0)
            }
            Fault::Heal => {
                self.group_of = None;
                NodeId(0)
            }
            Fault::DiskFull { node, full } => {
                self.disks.entry(node.0).or_default().full = full;
                node
            }
            Fault::DiskCorrupt(node) => {
                let corrupted = self.disks.get_mut(&node.0).is_some_and(|d| d.corrupt_one(&mut self.disk_rng));
                self.stats.disk.corrupted_records += corrupted as u64;
                node
            }
            Fault::Fragile { node, faulty } => {
                if self.slots[node.index()].fragile {
                    self.pending_toggles.push((node, faulty));
                } else {
                    self.stats.counters.add("toggle_refused_not_fragile", 1);
                }
                node
            }
        }
    }

    /// Applies waiting fragile toggles if the system is quiescent now.
    fn apply_toggles_if_quiescent(&mut self) {
        if self.pending_toggles.is_empty() || !self.is_quiescent() {
            return;
        }
        for (node, faulty) in std::mem::take(&mut self.pending_toggles) {
            let slot = &mut self.slots[node.index()];
            if slot.faulty != faulty {
                slot.faulty = faulty;
                self.stats.fragile_toggles += 1;
                self.toggles.push(Toggle {
                    at: self.now,
                    node,
                    faulty,
                    in_flight: self.in_flight,
                    armed_timers: self.armed_timers,
                });
            }
        }
    }

    /// Bookkeeping after each handled event: count, hash, trace, toggles,
    /// invariants.
    fn after_event(
        &mut self,
        tag: u8,
        node: NodeId,
        from: Option<NodeId>,
        what: &'static str,
        payload: &[u8],
        body: serde_json::Value,
    ) -> Result<(), SimError> {
        let i = self.stats.events;
        self.stats.events += 1;
        self.hash.event(self.now, tag, node, from, payload);
        self.last = Last { tag, node, from, what };
        if let Some(sink) = self.sink.as_mut() {
            let rec = TraceRecord {
                i,
                t: self.now.as_nanos(),
                ev: TAG_NAMES[tag as usize].to_string(),
                node: node.0,
                from: from.map(|f| f.0),
                what: what.to_string(),
                body,
                hash: hex(self.hash.value()),
            };
            sink.record(&rec)?;
        }
        self.apply_toggles_if_quiescent();
        if !self.invariants.is_empty() {
            self.check_invariants(i)?;
        }
        Ok(())
    }

    fn check_invariants(&mut self, event: u64) -> Result<(), SimError> {
        // Taken out while they run, so they can see the world they live in.
        let mut invariants = std::mem::take(&mut self.invariants);
        let result = self.run_invariants(&mut invariants, event);
        self.invariants = invariants;
        result
    }

    fn run_invariants(&self, invariants: &mut [(String, Invariant<P>)], event: u64) -> Result<(), SimError> {
        let world = self.world();
        for (name, check) in invariants.iter_mut() {
            if let Err(detail) = check(&world) {
                let l = self.last;
                let during = match l.from {
                    Some(f) => format!("{} {} {} → {}", TAG_NAMES[l.tag as usize], l.what, f, l.node),
                    None => format!("{} {} at {}", TAG_NAMES[l.tag as usize], l.what, l.node),
                };
                return Err(SimError::Invariant {
                    name: name.clone(),
                    seed: self.cfg.seed,
                    event,
                    time: self.now,
                    during,
                    detail,
                });
            }
        }
        Ok(())
    }
}
