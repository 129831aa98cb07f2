//! Applications built on team formation.
//!
//! **Implicit leader election.** Each node becomes a candidate with
//! probability q = min(1, c·ln n / n) and injects one token, so there are
//! m ≈ c·ln n tokens. With k = max(2, round(m̄ / 1.5)), where m̄ = n·q, exactly
//! one team forms whenever k ≤ m < 2k, which happens whp as c grows (Poisson
//! tails: 0.91 at c = 4 and 0.99 at c = 8 for n = 1024). The node where it
//! forms is the leader.
//!
//! **Termination detection for non-leaders** is the seed's first
//! implementation (appendix A.1.1): non-candidates know at once; the leader
//! injects one TERM token, which team formation moves like any other; a
//! candidate that gives its token away, or is handed the TERM token, knows it
//! does not lead. By accumulation the leftover tokens, TERM among them, end
//! at one node, so every candidate decides.

use super::run::{build, RunSpec};
use agora_core::{NodeId, Time};
use agora_teams::counters;
use agora_teams::node::{Notify, TERM};
use agora_teams::Input;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Election {
    pub n: u32,
    pub candidates: u64,
    pub k: u64,
    pub teams: u64,
    /// Nodes where a team of election tokens formed (exactly one on success).
    pub leaders: Vec<u32>,
    /// Implicit election: candidates that never learned whether they lead
    /// (none on success).
    pub undecided: u64,
    /// Implicit election: nodes that concluded they lead (the leader alone
    /// on success).
    pub claimed: Vec<u32>,
    /// Implicit election: when the last candidate decided (units).
    pub decided_by: f64,
    /// Implicit election: the messages termination detection cost (the run
    /// without it, same seed, sends the same messages up to the election).
    pub detection_messages: u64,
    pub success: bool,
    /// Explicit election: nodes that learned who leads (all n on success).
    pub informed: u32,
    pub messages: u64,
    pub time_units: f64,
}

/// One implicit election in the simulator (uniform adversary, no faults).
pub fn implicit_election(n: u32, c: f64, seed: u64) -> Election {
    election(n, c, seed, false)
}

/// **Explicit leader election**: the implicit one, then the leader announces
/// itself to all n nodes, so that every node, leader or not, learns who
/// leads (n − 1 more messages). `informed` counts the nodes that learned.
pub fn explicit_election(n: u32, c: f64, seed: u64) -> Election {
    election(n, c, seed, true)
}

fn election(n: u32, c: f64, seed: u64, announce: bool) -> Election {
    let elect = !announce;
    let sim = run_election(n, c, seed, announce, elect);
    // A node where a team of election tokens formed leads.
    let leaders: Vec<u32> = sim
        .outputs()
        .iter()
        .filter(|o| matches!(&o.output, agora_teams::Output::Team(m) if m.iter().all(|&t| t & TERM == 0)))
        .map(|o| o.node.0)
        .collect();
    let teams = leaders.len() as u64;
    let unit = super::run::UNIT.as_nanos() as f64;
    let (mut undecided, mut decided_by, mut detection_messages) = (0, 0.0, 0);
    let claimed: Vec<u32> = sim.nodes().ids().filter(|&v| sim.node(v).leads == Some(true)).map(|v| v.0).collect();
    let candidates: Vec<NodeId> = sim.nodes().ids().filter(|&v| sim.node(v).injected > 0).collect();
    if elect {
        undecided = candidates.iter().filter(|&&v| sim.node(v).leads.is_none()).count() as u64;
        decided_by = sim
            .outputs()
            .iter()
            .filter(|o| matches!(o.output, agora_teams::Output::Leader(_) | agora_teams::Output::NotLeader))
            .map(|o| o.at.as_nanos() as f64 / unit)
            .fold(0.0, f64::max);
        let without = run_election(n, c, seed, false, false).stats().messages_sent;
        detection_messages = sim.stats().messages_sent.saturating_sub(without);
    }
    let k = sim.node(NodeId(0)).config().k;
    // Nodes told who leads, and told the node that actually formed the team.
    let informed = sim
        .outputs()
        .iter()
        .filter(|o| matches!(o.output, agora_teams::Output::Leader(l) if leaders.len() == 1 && l.0 == leaders[0]))
        .count() as u32;
    Election {
        n,
        candidates: candidates.len() as u64,
        k,
        teams,
        success: teams == 1 && undecided == 0 && (announce || claimed == leaders) && (!announce || informed == n),
        claimed,
        informed,
        leaders,
        undecided,
        decided_by,
        detection_messages,
        messages: sim.stats().messages_sent,
        time_units: sim.now().as_nanos() as f64 / unit,
    }
}

/// Each node is a candidate with probability q = min(1, c·ln n / n) and
/// injects one token; k = max(2, round(n·q / 1.5)).
fn run_election(n: u32, c: f64, seed: u64, announce: bool, elect: bool) -> agora_sim::Sim<agora_teams::Node> {
    let q = (c * (n.max(2) as f64).ln() / n as f64).min(1.0);
    let k = ((n as f64 * q / 1.5).round() as u64).max(2);
    let spec = RunSpec { spread: 0.0, announce, elect, ..RunSpec::new(n, k, 0, seed) };
    let (mut sim, _) = build(&spec);
    let mut g = ChaCha8Rng::seed_from_u64(seed ^ 0xe1ec);
    for v in 0..n {
        if g.random_bool(q) {
            sim.schedule_input(Time::from_nanos(1), NodeId(v), Input::Inject(1));
        }
    }
    sim.run_until(Time::from_nanos(u64::MAX / 2)).expect("invariants hold");
    sim
}

/// **Distributed trigger counting**: raise an alarm exactly when w triggers
/// have occurred in total. Each trigger injects a token where it happens,
/// and team formation runs with k = w. A team, which is the alarm, cannot
/// form before w tokens exist (safety), and forms once they do (liveness).
/// Every further w triggers raise the next alarm.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerCount {
    pub w: u64,
    pub triggers: u64,
    /// Time units at which alarms were raised.
    pub alarms: Vec<f64>,
    /// When the w-th, 2w-th, … trigger happened (units).
    pub due: Vec<f64>,
    pub messages: u64,
}

pub fn trigger_counting(n: u32, w: u64, triggers: u64, seed: u64) -> TriggerCount {
    let unit = super::run::UNIT.as_nanos() as f64;
    let spec = RunSpec { spread: 0.0, ..RunSpec::new(n, w.max(2), 0, seed) };
    let (mut sim, _) = build(&spec);
    let mut g = ChaCha8Rng::seed_from_u64(seed ^ 0x7219);
    let mut times: Vec<u64> = (0..triggers).map(|_| 1 + g.random_range(0..(50.0 * unit) as u64)).collect();
    times.sort_unstable();
    for &t in &times {
        sim.schedule_input(Time::from_nanos(t), NodeId(g.random_range(0..n)), Input::Inject(1));
    }
    sim.run_until(Time::from_nanos(u64::MAX / 2)).expect("invariants hold");
    // Each team is an alarm.
    let alarms: Vec<f64> = sim
        .outputs()
        .iter()
        .filter(|o| matches!(o.output, agora_teams::Output::Team(_)))
        .map(|o| o.at.as_nanos() as f64 / unit)
        .collect();
    let due = times.iter().skip(w.max(1) as usize - 1).step_by(w.max(1) as usize).map(|&t| t as f64 / unit).collect();
    TriggerCount { w, triggers, alarms, due, messages: sim.stats().messages_sent }
}

/// A run with tagged tokens injected at given times and nodes; returns the
/// simulation after it, with its `Matched` outputs.
fn run_tagged(spec: RunSpec, tokens: &[(Time, NodeId, u64)]) -> agora_sim::Sim<agora_teams::Node> {
    let (mut sim, _) = build(&RunSpec { tokens: 0, ..spec });
    for &(at, node, tag) in tokens {
        sim.schedule_input(at, node, Input::Tagged(tag));
    }
    sim.run_until(Time::from_nanos(u64::MAX / 2)).expect("invariants hold");
    sim
}

/// What each node learned: (node, the team it was told of).
fn told(sim: &agora_sim::Sim<agora_teams::Node>) -> Vec<(u32, Vec<u64>)> {
    sim.outputs()
        .iter()
        .filter_map(|o| match &o.output {
            agora_teams::Output::Matched(m) => Some((o.node.0, m.clone())),
            _ => None,
        })
        .collect()
}

/// **Distributed matching with failures.** Marked nodes inject a token
/// tagged with their id; teams of k = 2 pair them. The node where a pair
/// meets tells both their partner's id: directly (2 messages) or back along
/// the trace tree (one message per hop of each token's path). With a
/// fragile fraction of nodes faulty from the start, the marked nodes are
/// live ones.
#[derive(Clone, Debug, Serialize)]
pub struct Matching {
    pub marked: Vec<u32>,
    /// Each pair once, smaller id first, as its smaller member learned it.
    pub pairs: Vec<(u32, u32)>,
    /// Every node told of a match: (node, the partner it was told of; the
    /// node itself if the match it was told of does not include it).
    pub learned: Vec<(u32, u32)>,
    pub messages: u64,
}

pub fn matching(n: u32, marked: usize, fragile: f64, notify: Notify, seed: u64) -> Matching {
    let spec = RunSpec { fragile, notify, ..RunSpec::new(n, 2, 0, seed) };
    // The fragile nodes `build` picks are faulty from time 0: mark live ones.
    let mut g = ChaCha8Rng::seed_from_u64(seed ^ 0x3a7c);
    let fragile_set = super::run::fragile_nodes(&spec);
    let live: Vec<u32> = (0..n).filter(|v| !fragile_set.contains(v)).collect();
    let picks = rand::seq::index::sample(&mut g, live.len(), marked.min(live.len()));
    let marked: Vec<u32> = picks.into_iter().map(|i| live[i]).collect();
    let unit = super::run::UNIT.as_nanos() as u64;
    let tokens: Vec<_> =
        marked.iter().map(|&v| (Time::from_nanos(1 + g.random_range(0..5 * unit)), NodeId(v), u64::from(v))).collect();
    let sim = run_tagged(spec, &tokens);
    let mut learned: Vec<(u32, u32)> = told(&sim)
        .into_iter()
        .map(|(node, m)| {
            let (a, b) = (m[0] as u32, m[1] as u32);
            (
                node,
                if node == a {
                    b
                } else if node == b {
                    a
                } else {
                    node
                },
            )
        })
        .collect();
    learned.sort_unstable();
    let pairs = learned.iter().filter(|&&(v, p)| v < p).copied().collect();
    Matching { marked, pairs, learned, messages: sim.stats().messages_sent }
}

/// **Online matchmaking.** Players arrive over time at servers; each arrival
/// injects a token tagged (player << 32 | server). Teams of k = 2 pair
/// players, and the node where a pair meets tells both players' servers,
/// which connects them: directly, or back along the trace tree.
#[derive(Clone, Debug, Serialize)]
pub struct Matchmaking {
    pub players: u64,
    /// (player, player, server, server) for each match.
    pub matches: Vec<(u64, u64, u32, u32)>,
    /// Each server's notifications: (server, player, opponent).
    pub notified: Vec<(u32, u64, u64)>,
    pub messages: u64,
    /// Of those, notices of a match (hops along the trace tree, or direct).
    pub notices: u64,
    /// Token moves between nodes: the trace tree's edges.
    pub hops: u64,
    /// Along the trace tree: echo messages, and the teams whose node heard
    /// every member's echo.
    pub echoes: u64,
    pub echoed: u64,
    /// Every node back in its initial state at the end, trace tree
    /// included (true when every player was matched).
    pub forgetful: bool,
}

pub fn matchmaking(n: u32, servers: u32, players: u64, notify: Notify, seed: u64) -> Matchmaking {
    let spec = RunSpec { notify, ..RunSpec::new(n, 2, 0, seed) };
    let mut g = ChaCha8Rng::seed_from_u64(seed ^ 0x9a3e);
    let server_ids: Vec<u32> =
        rand::seq::index::sample(&mut g, n as usize, servers.min(n) as usize).into_iter().map(|i| i as u32).collect();
    let unit = super::run::UNIT.as_nanos() as u64;
    let tokens: Vec<_> = (0..players)
        .map(|p| {
            let s = server_ids[g.random_range(0..server_ids.len())];
            (Time::from_nanos(1 + g.random_range(0..50 * unit)), NodeId(s), p << 32 | u64::from(s))
        })
        .collect();
    let sim = run_tagged(spec, &tokens);
    let split = |t: u64| (t >> 32, t as u32);
    let matches = sim
        .outputs()
        .iter()
        .filter_map(|o| match &o.output {
            agora_teams::Output::Team(m) => {
                let ((p, s), (q, t)) = (split(m[0]), split(m[1]));
                Some((p, q, s, t))
            }
            _ => None,
        })
        .collect();
    // Along the trace tree a server hosting both players hears twice.
    let mut notified: Vec<_> = told(&sim)
        .into_iter()
        .flat_map(|(server, m)| {
            let (a, b) = (split(m[0]), split(m[1]));
            [(a, b), (b, a)].into_iter().filter(move |(x, _)| x.1 == server).map(move |(x, y)| (server, x.0, y.0))
        })
        .collect();
    notified.sort_unstable();
    notified.dedup();
    let forgetful = sim.nodes().ids().all(|v| sim.node(v).is_initial());
    let notices = sim.stats().delivered_by_kind.get("team");
    let hops = sim.stats().counters.get(counters::TOKENS_RECEIVED);
    let echoes = sim.stats().delivered_by_kind.get("echo");
    // An echo completes at the node where its team formed.
    let echoed = sim
        .outputs()
        .iter()
        .filter(|e| {
            let formed = |m: &Vec<u64>| {
                sim.outputs()
                    .iter()
                    .any(|o| o.node == e.node && matches!(&o.output, agora_teams::Output::Team(t) if t == m))
            };
            matches!(&e.output, agora_teams::Output::Echoed(m) if formed(m))
        })
        .count() as u64;
    let messages = sim.stats().messages_sent;
    Matchmaking { players, matches, notified, messages, notices, hops, echoes, echoed, forgetful }
}

/// Elections over seeds 0 … seeds − 1 and what they add up to.
#[derive(Clone, Debug, Serialize)]
pub struct Elections {
    pub n: u32,
    pub c: f64,
    pub explicit: bool,
    pub runs: u64,
    pub success_rate: f64,
    pub messages_mean: f64,
    pub messages_per_node: f64,
    pub time_units_mean: f64,
    /// Implicit election: candidates undecided over all runs.
    pub undecided: u64,
    /// Implicit election: termination detection's messages, mean.
    pub detection_messages_mean: f64,
    /// Implicit election: when the last candidate decided, mean (units).
    pub decided_by_mean: f64,
    pub elections: Vec<Election>,
}

/// Runs `seeds` elections (explicit or implicit); `progress` after each.
pub fn elections(n: u32, c: f64, seeds: u64, explicit: bool, progress: &mut dyn FnMut()) -> Elections {
    let runs: Vec<Election> = (0..seeds)
        .map(|s| {
            let e = if explicit { explicit_election(n, c, s) } else { implicit_election(n, c, s) };
            progress();
            e
        })
        .collect();
    let len = runs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Election) -> f64| runs.iter().map(f).sum::<f64>() / len;
    let messages_mean = mean(&|e| e.messages as f64);
    Elections {
        n,
        c,
        explicit,
        runs: seeds,
        success_rate: runs.iter().filter(|e| e.success).count() as f64 / len,
        messages_mean,
        messages_per_node: messages_mean / n as f64,
        time_units_mean: mean(&|e| e.time_units),
        undecided: runs.iter().map(|e| e.undecided).sum(),
        detection_messages_mean: mean(&|e| e.detection_messages as f64),
        decided_by_mean: mean(&|e| e.decided_by),
        elections: runs,
    }
}
