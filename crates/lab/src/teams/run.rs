//! One team-formation run in the simulator: the network (asynchronous,
//! FIFO, delays in (0, 1] time unit picked by an adversary), fragile nodes,
//! the token schedule, the invariants checked after every event, and the
//! report `agora teams run` prints. A run is a [`Scenario`] of protocol
//! `teams` ([`scenario`]), built by the registry like a scenario file's, so
//! it can be traced and replayed.

use crate::registry;
use agora_core::{NodeId, Time};
use agora_sim::scenario::{AdversarySpec, DelaySpec, FaultKind, FaultSpec, Scenario};
use agora_sim::Sim;
use agora_teams::counters;
use agora_teams::{Holder, Input, Node, Notify, Output, Params};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// The time unit: the largest message delay.
pub const UNIT: Duration = Duration::from_millis(1);

#[derive(Clone, Debug)]
pub struct RunSpec {
    pub n: u32,
    pub k: u64,
    pub tokens: u64,
    /// Tokens are injected at uniformly random times in [0, spread) units
    /// (after the fragile toggles).
    pub spread: f64,
    /// The fraction of nodes that are fragile; they all turn faulty at the
    /// first quiescent time (before any token).
    pub fragile: f64,
    pub adversary: AdversarySpec,
    pub seed: u64,
    /// The graph's constant c and ε: p = min(1, sqrt(c ln n / (ε n))).
    pub c: f64,
    pub epsilon: f64,
    /// Team nodes tell the members' origins (matching, matchmaking).
    pub notify: Notify,
    /// Team nodes announce themselves to everyone (explicit election).
    pub announce: bool,
    /// Implicit election with termination detection (TERM token).
    pub elect: bool,
}

impl RunSpec {
    pub fn new(n: u32, k: u64, tokens: u64, seed: u64) -> Self {
        RunSpec {
            n,
            k,
            tokens,
            spread: 1.0,
            fragile: 0.0,
            adversary: AdversarySpec::Uniform,
            seed,
            c: 2.0,
            epsilon: 0.5,
            notify: Notify::Off,
            announce: false,
            elect: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RunReport {
    pub n: u32,
    pub k: u64,
    pub teams_formed: u64,
    pub tokens_injected: u64,
    pub tokens_left: u64,
    pub messages_total: u64,
    pub messages_per_token: f64,
    /// In time units: from the moment the system holds ≥ k tokens to the next
    /// team formation.
    pub reaction_time_mean: f64,
    pub reaction_time_p99: f64,
    pub invariant_violations: u64,
    /// What went wrong, if anything: the violated invariant (with event,
    /// time and seed), or the end check that failed.
    pub problem: Option<String>,
    /// Every token accounted for, every team exactly k, nothing left in
    /// transit, fewer than k tokens left at live nodes, all at one node.
    pub safe: bool,
    pub trace_hash: String,
    pub events: u64,
    pub sim_time_units: f64,
    pub faulty_nodes: u32,
}

/// The run as a scenario: the network, the fragile nodes (faulty from
/// time 0), and the tokens as inputs at uniformly random times to live
/// nodes. Also returns the injection times.
pub fn scenario(spec: &RunSpec) -> (Scenario<Params>, Vec<Time>) {
    let params = Params {
        c: spec.c,
        epsilon: spec.epsilon,
        graph_seed: spec.seed,
        notify: spec.notify,
        announce: spec.announce,
        elect: spec.elect,
        ..Params::new(spec.k)
    };
    let mut sc = Scenario::new(<Node as registry::Runnable>::NAME, spec.n, params);
    sc.name = format!("teams run: n = {}, k = {}, {} tokens, seed {}", spec.n, spec.k, spec.tokens, spec.seed);
    sc.path = "(built by agora teams)".into();
    sc.seed = spec.seed;
    sc.until = LIMIT;
    sc.network.delay = Some(DelaySpec::Async { unit: UNIT, adversary: spec.adversary });
    sc.network.fifo = true;
    let fragile = fragile_nodes(spec);
    for &f in &fragile {
        sc.push_fault(FaultSpec {
            kind: FaultKind::Fragile,
            at: Some(Duration::ZERO),
            node: Some(f),
            ..Default::default()
        });
    }
    let mut g = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x70c5);
    let is_faulty: std::collections::HashSet<u32> = fragile.iter().copied().collect();
    sc.fragile = fragile;
    let live: Vec<u32> = (0..spec.n).filter(|i| !is_faulty.contains(i)).collect();
    let unit = UNIT.as_nanos() as f64;
    let mut times = Vec::with_capacity(spec.tokens as usize);
    for _ in 0..spec.tokens {
        // Strictly after time 0, when the fragile toggles happen.
        let at = Duration::from_nanos(1 + (g.random::<f64>() * spec.spread * unit) as u64);
        let node = live[g.random_range(0..live.len())];
        sc.push_input(at, node, &Input::Inject(1)).expect("a token injection is plain data");
        times.push(Time::ZERO + at);
    }
    (sc, times)
}

/// The team-formation simulation of [`scenario`], ready to run: invariants
/// installed, faults and tokens scheduled. Also returns the injection times
/// (tokens go to live nodes only, so every one is accepted).
pub fn build(spec: &RunSpec) -> (Sim<Node>, Vec<Time>) {
    let (sc, times) = scenario(spec);
    (build_scenario(&sc), times)
}

/// The simulation of a run's scenario (outputs kept: reaction times read them).
pub fn build_scenario(sc: &Scenario<Params>) -> Sim<Node> {
    registry::check::<Node>(sc).expect("a run spec makes a valid scenario");
    registry::build::<Node>(sc, sc.seed, true)
}

/// Quiescent, for fragile toggles: fewer than k tokens in the system.
pub fn install_quiescence<P: Holder>(sim: &mut Sim<P>, k: u64) {
    sim.set_quiescence(move |w| w.nodes.ids().map(|id| Holder::tokens(w.nodes.state(id))).sum::<u64>() < k);
}

/// The same network, faults, schedule and conservation check for any
/// token-holding protocol (baselines, vector runs: not registered, so their
/// runs are built here from the same scenario rather than by the registry).
pub fn build_with<P: Holder>(spec: &RunSpec, factory: impl FnMut(NodeId) -> P + 'static) -> (Sim<P>, Vec<Time>) {
    let (sc, times) = scenario(spec);
    let mut sim = Sim::new(spec.n, factory, sc.latency::<P>(), sc.sim_config());
    install_conservation(&mut sim, spec.n, spec.k);
    install_quiescence(&mut sim, spec.k);
    sc.install(&mut sim);
    (sim, times)
}

/// A run's time limit: 10^6 units.
pub const LIMIT: Duration = Duration::from_secs(1000);

/// The fragile nodes of a run (they turn faulty at its first quiescent time).
pub fn fragile_nodes(spec: &RunSpec) -> Vec<u32> {
    let mut g = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x7ea5);
    let faulty = ((spec.fragile * spec.n as f64) as usize).min(spec.n as usize - 1);
    sample(&mut g, spec.n as usize, faulty).into_iter().map(|i| i as u32).collect()
}

/// Token conservation after every event: injected = held + in transit +
/// k × teams. Kept incrementally: only the event's node can have changed.
pub fn install_conservation<P: Holder>(sim: &mut Sim<P>, n: u32, k: u64) {
    let held = RefCell::new(vec![0u64; n as usize]);
    let total = Cell::new(0u64);
    sim.add_invariant("token conservation", move |w| {
        let mut h = held.borrow_mut();
        let mut update = |id: NodeId| {
            let now = Holder::tokens(w.nodes.state(id));
            total.set(total.get() + now - h[id.index()]);
            h[id.index()] = now;
        };
        match w.active {
            Some(id) => update(id),
            None => w.nodes.ids().for_each(&mut update),
        }
        let c = &w.stats.counters;
        let in_transit = c.get(counters::TOKENS_TRANSPORTED) - c.get(counters::TOKENS_RECEIVED);
        let (injected, teams) = (c.get(counters::INJECTED), c.get(counters::TEAMS));
        if injected == total.get() + in_transit + k * teams {
            Ok(())
        } else {
            Err(format!("injected {injected} ≠ held {} + in transit {in_transit} + {k} × teams {teams}", total.get()))
        }
    });
}

/// The channel layer's guarantees that a single event can break, checked at
/// the event's node: only busy primaries hold channels (G1); no response
/// arrives that no request awaits (4.I: a message that crossed from another
/// channel would show up so; counted by the nodes); no token transport is
/// lost, that is, none goes to a node faulty at delivery. The two ends of a
/// channel may briefly disagree (one still holds a released channel while the
/// other holds its successor through the same mediator); FIFO links from the
/// mediator order `Close`, `Open` and the relayed messages, so nothing is
/// misread, which the liveness and conservation checks confirm.
pub fn install_channel_checks(sim: &mut Sim<Node>) {
    sim.add_invariant("channel layer", |w| {
        if let Some(v) = w.active {
            let node = w.nodes.state(v);
            if !node.channels().is_empty() && node.tokens() == 0 {
                return Err(format!("{v} holds channels while not busy"));
            }
        }
        if w.stats.counters.get(counters::UNEXPECTED_RESPONSE) > 0 {
            return Err("a response arrived that no request awaited (a message crossed channels)".into());
        }
        // No token is sent to a node that is faulty (or down) at delivery.
        if w.stats.dropped_by_kind.get("transport") > 0 {
            return Err(format!("a token transport was lost ({:?})", w.stats.dropped.to_map()));
        }
        Ok(())
    });
}

/// What must hold at the end of a run, or what does not. Liveness and
/// accumulation concern the tokens at live nodes: a node that turned faulty
/// holding tokens (at a quiescent time) keeps them until it recovers.
pub fn end_check<P: Holder>(sim: &Sim<P>, k: u64) -> Result<(), String> {
    let s = sim.stats();
    let c = &s.counters;
    if c.get(counters::TOKENS_TRANSPORTED) != c.get(counters::TOKENS_RECEIVED) {
        return Err("tokens still in transit at the end".into());
    }
    if c.get(counters::STALE_TRANSPORT) > 0 {
        return Err(format!("{} token transports outside their channel", c.get(counters::STALE_TRANSPORT)));
    }
    let live = |id: &NodeId| !sim.nodes().is_faulty(*id);
    let left: u64 = sim.nodes().ids().filter(live).map(|id| Holder::tokens(sim.node(id))).sum();
    if left >= k {
        return Err(format!("{left} tokens left at live nodes with k = {k}: liveness failed"));
    }
    let holders = sim.nodes().ids().filter(live).filter(|&id| Holder::tokens(sim.node(id)) > 0).count();
    if holders > 1 {
        return Err(format!("leftover tokens at {holders} nodes (accumulation)"));
    }
    if s.max_message_bytes > max_message_bytes(k) {
        return Err(format!("a message of {} bytes (bound {})", s.max_message_bytes, max_message_bytes(k)));
    }
    Ok(())
}

/// Every message is a few words: a transport carries fewer than k (tag,
/// count) pairs of at most 15 bytes.
pub fn max_message_bytes(k: u64) -> usize {
    48 + 15 * k as usize
}

/// Reaction times in units: for each stretch in which the system holds at
/// least k tokens, the time from its start to the next team formation.
pub fn reaction_times<P: Holder>(sim: &Sim<P>, k: u64, injections: &[Time]) -> Vec<f64> {
    let mut events: Vec<(Time, i64)> = injections.iter().map(|&t| (t, 1)).collect();
    for o in sim.outputs() {
        if matches!(o.output, Output::Team(_)) {
            events.push((o.at, -(k as i64)));
        }
    }
    // Injections before teams at the same instant.
    events.sort_by_key(|e| (e.0, -e.1));
    let unit = UNIT.as_nanos() as f64;
    let (mut held, mut since, mut out) = (0i64, None, Vec::new());
    for (t, d) in events {
        held += d;
        if d < 0 {
            if let Some(s) = since.take() {
                out.push((t.as_nanos() - s) as f64 / unit);
            }
        }
        if held >= k as i64 && since.is_none() {
            since = Some(t.as_nanos());
        }
    }
    out
}

/// Builds, runs to the end and reports.
pub fn run(spec: &RunSpec, progress: &mut dyn FnMut(Time)) -> RunReport {
    let (sim, injections) = build(spec);
    finish(spec, sim, injections, progress)
}

/// Runs a built simulation to the end (at most [`LIMIT`]) and reports.
pub fn finish<P: Holder>(
    spec: &RunSpec,
    mut sim: Sim<P>,
    injections: Vec<Time>,
    progress: &mut dyn FnMut(Time),
) -> RunReport {
    let limit = Time::ZERO + LIMIT;
    // The run stops at the first violated invariant.
    let (violation, report) = match sim.run(limit, u64::MAX, progress) {
        Ok(r) => (None, Some(r)),
        Err(e) => (Some(e.to_string()), None),
    };
    // A trace being written is flushed now; a failed write is the run's problem.
    let violation = violation.or_else(|| sim.finish_trace().err().map(|e| e.to_string()));
    let violations = u64::from(violation.is_some());
    let s = sim.stats();
    let c = &s.counters;
    let injected = c.get(counters::INJECTED);
    let teams = c.get(counters::TEAMS);
    let mut rt = reaction_times(&sim, spec.k, &injections);
    let p99 = crate::stats::quantile(&mut rt, 0.99);
    let mean = if rt.is_empty() { 0.0 } else { rt.iter().sum::<f64>() / rt.len() as f64 };
    let problem = violation.or_else(|| end_check(&sim, spec.k).err());
    let safe = problem.is_none();
    RunReport {
        n: spec.n,
        k: spec.k,
        teams_formed: teams,
        tokens_injected: injected,
        tokens_left: injected.saturating_sub(spec.k * teams),
        messages_total: s.messages_sent,
        messages_per_token: if injected > 0 { s.messages_sent as f64 / injected as f64 } else { 0.0 },
        reaction_time_mean: mean,
        reaction_time_p99: p99,
        invariant_violations: violations,
        problem,
        safe,
        trace_hash: format!("{:016x}", report.as_ref().map_or(sim.trace_hash(), |r| r.trace_hash)),
        events: s.events,
        sim_time_units: sim.now().as_nanos() as f64 / UNIT.as_nanos() as f64,
        faulty_nodes: sim.nodes().ids().filter(|&id| sim.nodes().is_faulty(id)).count() as u32,
    }
}
