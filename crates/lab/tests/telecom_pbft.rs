//! The telecom system's strong group ordered by PBFT (issue 24, stage e):
//! through the default fault plan with the Byzantine Core1, and against an
//! equivocating primary — agreement checked after every event (the
//! simulator's invariant), the history linearizable, the fault shown firing.

use agora_core::Time;
use agora_lab::registry;
use agora_lab::telecom::{
    checked_outcome,
    experiments::{default_scenario, only},
    history, Outcome,
};
use agora_sim::scenario::Scenario;
use agora_sim::Sim;
use agora_telecom::node::{self, Node};
use agora_telecom::topology::{Params, Redundancy};
use std::time::Duration;

fn run(sc: &Scenario<Params>, seed: u64) -> Sim<Node> {
    registry::check::<Node>(sc).expect("a valid scenario");
    let mut sim = registry::build::<Node>(sc, seed, true);
    sim.run_until(Time::ZERO + sc.until).expect("invariants hold, PBFT agreement among them");
    sim
}

fn transactions(o: &Outcome) -> &history::GroupHistory {
    o.histories.as_ref().unwrap().iter().find(|h| h.service == "transactions").unwrap()
}

/// The default plan: Core1, the primary of view 0, turns Byzantine at 13 s
/// (it equivocates as PBFT primary and its server lies); Edge1 and Core2
/// crash and come back without their memory. The group stays linearizable
/// and is no longer marked unchecked, no wrong answer is accepted, the
/// members left view 0, restarted members caught up by state transfer, and
/// the report names the stretch where two members were faulty at once.
///
/// Seeds 1 and 3. Not every seed recovers both members by 30 s: recovery
/// ends at the first stable checkpoint past the horizon, so it needs the
/// group to make progress after Core2's restart, and in seeds 2, 9 and 10
/// of 1–10 it is too slow after the stretch beyond f (Core1 Byzantine and
/// Core2 down, 16–21 s) for the second member to finish (safety holds in
/// all of them: the sweeps check it).
#[test]
fn the_default_plan_keeps_the_pbft_group_linearizable_with_core1_byzantine() {
    let sc = default_scenario();
    let topo = sc.params.compile().unwrap();
    assert!(topo.pbft[0].is_some(), "the transactions group is PBFT's");
    for seed in [1, 3] {
        let sim = run(&sc, seed);
        let o = checked_outcome(&topo, &sim);
        let h = transactions(&o);
        assert!(h.pbft && h.ops > 1000, "seed {seed}: {h:?}");
        assert_eq!(h.linearizable, Some(true), "seed {seed}: {h:?}");
        assert_eq!(h.byzantine_members, ["Core1"], "seed {seed}");
        assert_eq!(o.requests.wrong_answers_accepted, 0, "seed {seed}");
        let c = sim.stats();
        assert!(c.counter("views_entered") > 0, "seed {seed}: the members left view 0");
        assert!(c.counter("state_transfers") > 0, "seed {seed}: restarted members fetched the state");
        assert_eq!(c.counter("pbft_recovered"), 2, "seed {seed}: Edge1 and Core2 recovered from their restarts");
        let two = o.requests.beyond_f.iter().find(|b| b.faulty == ["Core1", "Core2"]).expect("Core1 and Core2");
        assert!((two.from_s - 16.0).abs() < 0.01 && two.f == 1, "seed {seed}: {two:?}");
        let g = o.requests.groups.iter().find(|g| g.service == "transactions").unwrap();
        assert!(g.tally.serviceable_ratio() > 0.95, "seed {seed}: {:?}", g.tally);
    }
}

/// Only the transactions group, 100 requests/s from each edge on twelve
/// hot keys; Core1, the primary of view 0, equivocates from 2 s on.
fn equivocating_primary(behaviour: node::Behaviour) -> Scenario<Params> {
    let mut sc = only("transactions", 7);
    sc.params.workload.stop_after = Duration::from_secs(6);
    sc.params.workload.keys = 12;
    sc.params.workload.rate = 100.0;
    sc.push_input(Duration::from_secs(2), 2, &node::Input::byzantine(behaviour)).unwrap();
    sc
}

/// A primary that sends different batches to different backups is seen
/// doing it (the fault fires), is voted out by a view change, and the
/// correct members end with the same store; the history is linearizable
/// and most requests succeed. A silent primary is voted out too.
#[test]
fn an_equivocating_or_silent_primary_is_voted_out_and_the_members_agree() {
    for (behaviour, seed) in [(node::Behaviour::Equivocate, 1), (node::Behaviour::Silent, 2)] {
        let sc = equivocating_primary(behaviour);
        let topo = sc.params.compile().unwrap();
        let sim = run(&sc, seed);
        let c = sim.stats();
        if behaviour == node::Behaviour::Equivocate {
            assert!(c.counter("equivocations_seen") > 0, "the primary equivocated");
        }
        assert!(c.counter("views_entered") > 0, "{behaviour:?}: the members left view 0");
        let (reqs, events) = history::requests(&sim);
        let ok = reqs.iter().filter(|r| r.end.as_ref().is_some_and(|e| e.reply.is_some())).count();
        assert!(ok * 10 > reqs.len() * 8, "{behaviour:?}: {ok} of {} succeeded", reqs.len());
        let checked = history::check(&topo, &reqs, &history::edn(&topo, &reqs, &events), Duration::from_secs(60));
        assert_eq!(checked[0].linearizable, Some(true), "{behaviour:?}: {:?}", checked[0].stuck_at);
        let correct = [3u32, 4, 0].map(|m| sim.node(agora_core::NodeId(m)).replicas(Redundancy::NWay));
        let executed: Vec<u64> = correct.iter().map(|r| r.pbft_replica(0).unwrap().executed()).collect();
        assert!(executed.iter().all(|&e| e == executed[0] && e > 0), "{behaviour:?}: executed {executed:?}");
        assert!(correct.windows(2).all(|w| w[0].replica(0) == w[1].replica(0)), "{behaviour:?}: the stores differ");
    }
}

/// Cloud1 cut off alone from 2 s to 5 s under a load of only transactions,
/// the clients stopping at 7 s. Alone, it suspects the primary and starts a
/// view change no one joins; PBFT never lets a replica go back to a view it
/// left (its view change could still be used), so it stays out of the
/// normal case until the next view change — but it catches up by state
/// transfer at every stable checkpoint. The three others agree exactly,
/// and Cloud1 holds at least their last stable checkpoint.
#[test]
fn a_member_cut_off_alone_catches_up_by_state_transfer() {
    use agora_sim::scenario::{FaultKind, FaultSpec};
    let mut sc = only("transactions", 10);
    sc.params.workload.stop_after = Duration::from_secs(7);
    sc.push_fault(FaultSpec {
        kind: FaultKind::Partition,
        groups: Some(vec![vec![4]]),
        at: Some(Duration::from_secs(2)),
        heal: Some(Duration::from_secs(5)),
        ..Default::default()
    });
    for seed in 1..=2 {
        let sim = run(&sc, seed);
        let member = |m: u32| sim.node(agora_core::NodeId(m)).replicas(Redundancy::NWay);
        let pbft = |m: u32| member(m).pbft_replica(0).unwrap();
        let (cloud1, others) = (pbft(4), [2u32, 3, 0]);
        assert!(others.iter().all(|&m| member(m).replica(0) == member(2).replica(0)), "seed {seed}");
        assert!(others.iter().all(|&m| pbft(m).executed() == pbft(2).executed()), "seed {seed}");
        assert!(cloud1.executed() >= pbft(2).stable().0 && cloud1.executed() > 0, "seed {seed}: Cloud1 behind");
        assert!(sim.stats().counter("state_transfers") > 0, "seed {seed}: Cloud1 fetched the state");
        assert!(member(2).replica(0).entries().count() > 50, "seed {seed}: keys written");
    }
}

/// The Python API's injector test, which found it: on the default plan cut
/// to 12 s (Edge1 restarts without its memory at 9 s), Core2 also restarts
/// without memory (1.5 s to 4.5 s), Cloud1 drops 60 % of its messages from
/// 1 s to 9 s, and Core1 equivocates from 2 s. A restarted member that
/// voted again at once let two correct members commit different batches
/// at one sequence number; recovering first (no votes until its stable
/// checkpoint passes the horizon), agreement holds — the invariant is
/// checked after every event. (With three faulty members the group may
/// stop, and here it does: the two recovering members cannot vote, and
/// they recover only once the group moves on.)
#[test]
fn members_restarted_without_memory_recover_before_they_vote() {
    use agora_sim::scenario::{FaultKind, FaultSpec};
    let mut sc = default_scenario();
    sc.until = Duration::from_secs(12);
    sc.input.clear();
    let at = |ms: u64| Some(Duration::from_millis(ms));
    sc.push_fault(FaultSpec { kind: FaultKind::Crash, at: at(1500), node: Some(3), ..Default::default() });
    sc.push_fault(FaultSpec { kind: FaultKind::Recover, at: at(4500), node: Some(3), ..Default::default() });
    sc.push_fault(FaultSpec {
        kind: FaultKind::Omission,
        at: at(1000),
        until: at(9000),
        node: Some(4),
        rate: Some(0.6),
        ..Default::default()
    });
    sc.push_input(Duration::from_secs(2), 2, &node::Input::byzantine(node::Behaviour::Equivocate)).unwrap();
    for seed in 1..=3 {
        let sim = run(&sc, seed);
        let c = sim.stats();
        assert!(c.counter("pbft_votes_withheld_recovering") > 0, "seed {seed}: the restarted members withheld votes");
    }
}
