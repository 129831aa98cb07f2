//! Team formation in the simulator: invariants after every event (token
//! conservation, exactly-k teams; at the end nothing in transit, fewer than k
//! tokens left and all at one node, bounded messages), the forgetful feature,
//! fragile nodes, and sweeps over many seeds.

use agora_core::Time;
use agora_lab::teams::run::{build, end_check, reaction_times, run, RunSpec};
use agora_sim::scenario::AdversarySpec;
use agora_sim::Stop;
use agora_teams::Notify;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn check(spec: &RunSpec) -> agora_sim::Sim<agora_teams::Node> {
    let (mut sim, _) = build(spec);
    let report = sim.run_until(Time::from_nanos(1 << 40)).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    assert_eq!(report.stop, Stop::Quiet);
    end_check(&sim, spec.k).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    sim
}

#[test]
fn every_token_ends_in_a_team_of_exactly_k() {
    for (n, k, tokens) in [(16, 2, 10), (64, 3, 30), (64, 5, 101), (256, 4, 64)] {
        let sim = check(&RunSpec::new(n, k, tokens, 1));
        assert_eq!(sim.stats().counters.get("teams"), tokens / k, "n {n}");
        // Forgetful: once the last team formed with nothing left over, every
        // node is back in its initial state.
        if tokens % k == 0 {
            assert!(sim.nodes().ids().all(|id| sim.node(id).is_initial()), "n {n}: a node remembers something");
        }
    }
}

#[test]
fn same_seed_same_trace() {
    let spec = RunSpec { adversary: AdversarySpec::Load, ..RunSpec::new(64, 3, 40, 9) };
    assert_eq!(run(&spec, &mut |_| {}).trace_hash, run(&spec, &mut |_| {}).trace_hash);
    let other = RunSpec { seed: 10, ..spec.clone() };
    assert_ne!(run(&spec, &mut |_| {}).trace_hash, run(&other, &mut |_| {}).trace_hash);
}

#[test]
fn seed_sweep_small_n() {
    let mut teams = 0;
    for seed in 0..1000u64 {
        let mut g = ChaCha8Rng::seed_from_u64(seed);
        let adversary = [AdversarySpec::Uniform, AdversarySpec::Max, AdversarySpec::Load][seed as usize % 3];
        // Notices to origins (direct, or back along the trace tree) must
        // keep the same bounds.
        let notify = [Notify::Off, Notify::Direct, Notify::Trace][(seed / 3) as usize % 3];
        let spec = RunSpec {
            spread: g.random_range(0.0..30.0),
            adversary,
            notify,
            ..RunSpec::new(g.random_range(4..40u32), g.random_range(2..6u64), g.random_range(0..40u64), seed)
        };
        teams += check(&spec).stats().counters.get("teams");
    }
    assert!(teams > 1000, "{teams} teams formed over the sweep");
}

/// Half the nodes turn faulty at the first quiescent time (before any token):
/// messages to them are lost and no token goes to them. Every token still
/// ends in a team, and none is lost to a faulty node.
#[test]
fn half_the_nodes_faulty() {
    for seed in 0..200u64 {
        let spec = RunSpec { fragile: 0.5, spread: 20.0, ..RunSpec::new(64, 3, 30, seed) };
        let sim = check(&spec);
        assert_eq!(sim.toggles().len(), 32, "seed {seed}: every toggle happened");
        assert_eq!(sim.nodes().ids().filter(|&id| sim.nodes().is_faulty(id)).count(), 32);
        assert!(sim.stats().dropped.get("faulty") > 0, "seed {seed}: messages to faulty nodes were lost");
        assert_eq!(sim.stats().counters.get("teams"), 10, "seed {seed}");
    }
}

#[test]
fn reaction_time_counts_from_the_kth_token() {
    let spec = RunSpec { spread: 50.0, ..RunSpec::new(32, 2, 20, 4) };
    let (mut sim, injections) = build(&spec);
    sim.run_until(Time::from_nanos(1 << 40)).unwrap();
    let rt = reaction_times(&sim, 2, &injections);
    // One reaction per formation event (an event may form several teams).
    assert_eq!(rt.len(), sim.outputs().len(), "one reaction per formation");
    // 0 when a second team forms at the same instant as the first.
    assert!(rt.iter().all(|&t| (0.0..50.0).contains(&t)), "{rt:?}");
}

#[test]
fn baselines_form_teams_and_leader_gathering_loses_tokens_to_a_faulty_leader() {
    use agora_lab::teams::baselines::{run_baseline, Baseline};
    for seed in 0..20 {
        let spec = RunSpec { spread: 10.0, ..RunSpec::new(64, 3, 60, seed) };
        for b in [Baseline::LeaderGather, Baseline::Broadcast] {
            let r = run_baseline(b, &spec);
            assert!(r.safe && r.teams_formed == 20, "{b:?} seed {seed}: {r:?}");
        }
        // One message per token for leader gathering (none for the leader's own), about n for broadcast.
        assert!(run_baseline(Baseline::LeaderGather, &spec).messages_per_token <= 1.0);
        assert!(run_baseline(Baseline::Broadcast, &spec).messages_per_token >= 10.0);
    }
    // With half the nodes faulty, some runs have a faulty leader: its tokens are lost.
    let mut lost = 0;
    for seed in 0..40 {
        let spec = RunSpec { fragile: 0.5, spread: 10.0, ..RunSpec::new(64, 3, 30, seed) };
        let r = run_baseline(Baseline::LeaderGather, &spec);
        if !r.safe {
            lost += 1;
            assert!(r.teams_formed < 10, "seed {seed}: {r:?}");
        }
        assert!(run_baseline(Baseline::Broadcast, &spec).safe, "broadcast tolerates faulty nodes (seed {seed})");
        assert!(run(&spec, &mut |_| {}).safe, "team formation tolerates them (seed {seed})");
    }
    assert!(lost > 5, "leader gathering lost tokens in {lost} of 40 runs");
}

#[test]
fn implicit_leader_election_elects_exactly_one_leader_whp() {
    use agora_lab::teams::apps::implicit_election;
    let runs: Vec<_> = (0..100).map(|seed| implicit_election(1024, 8.0, seed)).collect();
    let ok = runs.iter().filter(|e| e.success).count();
    // The Poisson estimate for c = 8, n = 1024 is 0.99.
    assert!(ok >= 93, "{ok} of 100 elections found exactly one leader");
    for e in &runs {
        // Termination detection: whenever a team of election tokens formed,
        // every candidate learned whether it leads, and only the node where
        // the team formed believes it does.
        assert_eq!(e.success, e.leaders.len() == 1, "{e:?}");
        if !e.leaders.is_empty() {
            assert_eq!(e.undecided, 0, "{e:?}");
            assert_eq!(e.claimed, e.leaders, "{e:?}");
        }
        // It costs far less than the election (nothing when the leader is
        // still busy: the TERM token then rides with the leftover tokens).
        assert!(e.detection_messages < e.messages / 2, "{e:?}");
    }
}

/// Bursts of tokens with quiet gaps; between bursts the fragile half toggles
/// faulty, then back (each toggle waits for a quiescent time: no message in
/// flight, fewer than k tokens). A fragile node may turn faulty while it
/// holds the leftover tokens: live nodes must not wait on it. Injections
/// into faulty nodes are refused.
///
/// Two rare outcomes remain, measured over 1000 seeds and documented in the
/// crate docs: 2 runs end with k live tokens stuck (every utility shared by
/// their holders is occupied by a channel to the faulty node, which at
/// n = 64 serves half of all utilities), and 18 end with fewer than k
/// tokens at two nodes instead of one (utilities that were faulty missed
/// a status update; nothing more is owed with fewer than k tokens).
#[test]
fn fragile_nodes_toggle_between_bursts() {
    use agora_core::NodeId;
    use agora_sim::Fault;
    use agora_teams::Input;
    use std::cell::Cell;
    use std::rc::Rc;
    let unit = agora_lab::teams::run::UNIT.as_nanos() as u64;
    let (mut holders_went_faulty, mut stuck, mut scattered) = (0, 0, 0);
    for seed in 0..200u64 {
        let (mut sim, _) = build(&RunSpec::new(64, 3, 0, seed));
        let fragile: Vec<NodeId> = (0..64).filter(|i| (i + seed) % 2 == 0).map(|i| NodeId(i as u32)).collect();
        sim.set_fragile(fragile.iter().copied());
        sim.set_quiescence(|w| w.nodes.ids().map(|id| w.nodes.state(id).tokens()).sum::<u64>() < 3);
        // Whether a faulty node ever held tokens.
        let seen = Rc::new(Cell::new(false));
        let (watch, flag) = (fragile.clone(), seen.clone());
        sim.add_invariant("observer", move |w| {
            if watch.iter().any(|&f| w.nodes.is_faulty(f) && w.nodes.state(f).tokens() > 0) {
                flag.set(true);
            }
            Ok(())
        });
        let mut g = ChaCha8Rng::seed_from_u64(seed);
        for burst in 0..4u64 {
            let start = burst * 1000 * unit + unit;
            // Even bursts: the fragile half is faulty; odd ones: it recovered.
            for &f in &fragile {
                sim.schedule_fault(
                    Time::from_nanos(start - unit / 2),
                    Fault::Fragile { node: f, faulty: burst % 2 == 0 },
                );
            }
            for _ in 0..20 {
                let at = start + g.random_range(0..10 * unit);
                sim.schedule_input(Time::from_nanos(at), NodeId(g.random_range(0..64)), Input::Inject(1));
            }
        }
        sim.run_until(Time::from_nanos(1 << 42)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        match end_check(&sim, 3) {
            Ok(()) => {}
            Err(e) if e.contains("liveness") => stuck += 1,
            Err(e) if e.contains("accumulation") => scattered += 1,
            Err(e) => panic!("seed {seed}: {e}"),
        }
        holders_went_faulty += u64::from(seen.get());
        let c = &sim.stats().counters;
        assert!(sim.stats().inputs_refused > 0 && c.get("injected") < 80, "seed {seed}: faulty nodes refused tokens");
    }
    assert!(holders_went_faulty >= 40, "a token holder turned faulty in only {holders_went_faulty} of 200 runs");
    // Seeds 0..200 give 1 and 2. Before the two-step channel opening a
    // faulty holder blocked live primaries outright: 70 of these 200 stuck.
    assert!(stuck <= 1 && scattered <= 2, "{stuck} runs stuck, {scattered} scattered, of 200");
}

/// An adversary that makes fragile the nodes that mediated the most channels
/// in a pilot run of the same instance: the busiest utilities.
#[test]
fn adversarially_chosen_fragile_nodes() {
    use agora_sim::Fault;
    for seed in 0..30u64 {
        let spec = RunSpec { spread: 10.0, ..RunSpec::new(128, 2, 40, seed) };
        let pilot = check(&spec);
        let mut busiest: Vec<_> = pilot.nodes().ids().collect();
        busiest.sort_by_key(|&id| std::cmp::Reverse(pilot.node(id).mediated));
        let targets = &busiest[..64];
        let (mut sim, _) = build(&RunSpec { tokens: 0, ..spec.clone() });
        sim.set_fragile(targets.iter().copied());
        let k = 2;
        sim.set_quiescence(move |w| w.nodes.ids().map(|id| w.nodes.state(id).tokens()).sum::<u64>() < k);
        for &t in targets {
            sim.schedule_fault(Time::ZERO, Fault::Fragile { node: t, faulty: true });
        }
        // The same 40 tokens, at live nodes only.
        let live: Vec<_> = sim.nodes().ids().filter(|id| !targets.contains(id)).collect();
        let mut g = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..40 {
            let at = Time::from_nanos(1 + g.random_range(0..10 * agora_lab::teams::run::UNIT.as_nanos() as u64));
            sim.schedule_input(at, live[g.random_range(0..live.len())], agora_teams::Input::Inject(1));
        }
        sim.run_until(Time::from_nanos(1 << 42)).unwrap();
        end_check(&sim, 2).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(sim.stats().counters.get("teams"), 20, "seed {seed}");
    }
}

#[test]
fn trigger_counting_raises_the_alarm_exactly_at_w_triggers() {
    use agora_lab::teams::apps::trigger_counting;
    for seed in 0..30 {
        // w − 1 triggers: no alarm, ever.
        assert!(trigger_counting(64, 5, 4, seed).alarms.is_empty(), "seed {seed}");
        // 3w + 2 triggers: exactly 3 alarms, the i-th no earlier than the (i·w)-th trigger.
        let r = trigger_counting(64, 5, 17, seed);
        assert_eq!(r.alarms.len(), 3, "seed {seed}: {r:?}");
        for (alarm, due) in r.alarms.iter().zip(&r.due) {
            assert!(alarm >= due, "seed {seed}: alarm at {alarm} before the trigger at {due}");
        }
    }
}

#[test]
fn matching_pairs_marked_nodes_and_each_learns_its_partner() {
    use agora_lab::teams::apps::matching;
    use agora_teams::Notify;
    for seed in 0..30 {
        let fragile = if seed % 2 == 0 { 0.0 } else { 0.4 };
        let notify = if seed % 4 < 2 { Notify::Direct } else { Notify::Trace };
        let m = matching(128, 21, fragile, notify, seed);
        // 21 marked: 10 pairs, one left alone; every pair told to both, once.
        assert_eq!(m.pairs.len(), 10, "seed {seed}: {m:?}");
        let mut seen: Vec<u32> = m.pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 20, "seed {seed}: nobody matched twice");
        assert!(seen.iter().all(|v| m.marked.contains(v)), "seed {seed}: only marked nodes");
        // Both members of every pair learned the other, each exactly once,
        // and no one else learned anything.
        let mut both: Vec<(u32, u32)> = m.pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
        both.sort_unstable();
        assert_eq!(m.learned, both, "seed {seed}");
    }
}

#[test]
fn matchmaking_connects_the_servers_of_matched_players() {
    use agora_lab::teams::apps::matchmaking;
    use agora_teams::Notify;
    for seed in 0..30 {
        for notify in [Notify::Direct, Notify::Trace] {
            let r = matchmaking(128, 8, 31, notify, seed);
            assert_eq!(r.matches.len(), 15, "seed {seed}");
            // Both servers of every match heard of it, each about its own player.
            for &(p, q, s, t) in &r.matches {
                assert!(r.notified.contains(&(s, p, q)), "seed {seed}: server {s} not told of {p} vs {q}");
                assert!(r.notified.contains(&(t, q, p)), "seed {seed}: server {t} not told of {q} vs {p}");
            }
            assert_eq!(r.notified.len(), 30, "{notify:?}");
        }
    }
}

/// Notices retrace each token's path: with every player matched, each hop
/// of each token is retraced exactly once (then echoed back to the team
/// node, which learns that every member was told), and the trace tree is cleared
/// behind them (every node ends in its initial state). A notice for a
/// token already at the team node costs nothing, so at k = 2 this is
/// fewer messages than addressing both origins directly.
#[test]
fn the_trace_tree_carries_notices_home_and_is_forgotten() {
    use agora_lab::teams::apps::matchmaking;
    use agora_teams::Notify;
    for seed in 0..20 {
        let t = matchmaking(128, 8, 30, Notify::Trace, seed);
        assert_eq!(t.matches.len(), 15);
        assert!(t.forgetful, "seed {seed}: a node remembers something");
        assert_eq!(t.notices, t.hops, "seed {seed}: every hop retraced once");
        // …and echoed back once, every team node hearing all its members.
        assert_eq!(t.echoes, t.hops, "seed {seed}");
        assert_eq!(t.echoed, 15, "seed {seed}");
        let d = matchmaking(128, 8, 30, Notify::Direct, seed);
        assert!(d.forgetful);
        assert_eq!(d.notices, 30 - d.matches.iter().filter(|m| m.2 == m.3).count() as u64, "seed {seed}");
    }
}

#[test]
fn explicit_election_tells_every_node_the_same_leader() {
    use agora_lab::teams::apps::{explicit_election, implicit_election};
    let mut ok = 0;
    for seed in 0..50 {
        let e = explicit_election(512, 8.0, seed);
        let i = implicit_election(512, 8.0, seed);
        if e.success {
            ok += 1;
            // Every node was told, and told the node where the team formed.
            assert_eq!(e.informed, 512, "seed {seed}");
            // The announcement is n − 1 messages; the extra messages shift the
            // network's random delays, so the rest of the run differs a little.
            let extra = e.messages as f64 - (i.messages - i.detection_messages) as f64;
            assert!((extra - 511.0).abs() < 0.1 * e.messages as f64, "seed {seed}: {extra} extra messages");
        }
    }
    assert!(ok >= 45, "{ok} of 50");
}

#[test]
fn afek_gafni_elects_exactly_one_leader_in_n_log_n_messages() {
    use agora_lab::teams::afek_gafni::afek_gafni;
    for n in [2u32, 3, 8, 64, 256] {
        for seed in 0..20 {
            let r = afek_gafni(n, seed);
            assert_eq!(r.leaders, 1, "n {n} seed {seed}: {r:?}");
            let bound = 8.0 * n as f64 * (n as f64).log2().max(1.0);
            assert!((r.messages as f64) < bound, "n {n} seed {seed}: {} messages (bound {bound})", r.messages);
        }
    }
}

/// The check that no token goes to a node faulty at delivery fires when the
/// failure model is broken: crashing nodes at arbitrary times (not at
/// quiescent ones) loses transports in flight to them.
#[test]
fn a_transport_lost_to_a_crashed_node_is_caught() {
    use agora_core::NodeId;
    use agora_sim::Fault;
    let mut caught = 0;
    for seed in 0..20 {
        let (mut sim, _) = build(&RunSpec::new(32, 4, 60, seed));
        for v in 0..16 {
            sim.schedule_fault(Time::from_nanos(300_000 + 150_000 * v), Fault::Crash(NodeId(v as u32)));
        }
        if let Err(e) = sim.run_until(Time::from_nanos(1 << 40)) {
            assert!(e.to_string().contains("a token transport was lost"), "seed {seed}: {e}");
            caught += 1;
        }
    }
    assert!(caught >= 2, "{caught} of 20 runs lost a transport");
}
