//! Two-phase commit across many simulated seeds: a crash of any node at a
//! random time with a restart from its log, a partition cutting off a
//! random node, omission at a random node, and a lossy network. After every
//! event the simulator checks that no transaction is committed at one node
//! and aborted at another; at the end every transaction is decided, every
//! node agrees with the coordinator, and no participant applied a
//! transaction twice.

use agora_core::{NodeId, Time};
use agora_lab::registry;
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use agora_telecom::commit::{Commit, Params, State};
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn base() -> Scenario<Params> {
    let path = format!("{}/../../scenarios/commit.toml", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    let mut sc = registry::load::<Commit>(&path, &src).unwrap();
    sc.fault.clear();
    sc.params.txns = 8;
    sc.until = Duration::from_secs(30);
    sc
}

fn ms(x: u64) -> Option<Duration> {
    Some(Duration::from_millis(x))
}

/// The seed's faults: a crash and restart, a partition, an omission.
fn faulty(seed: u64) -> Scenario<Params> {
    let mut sc = base();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (crashed, at) = (rng.random_range(0..4), rng.random_range(0..400));
    sc.push_fault(FaultSpec { kind: FaultKind::Crash, at: ms(at), node: Some(crashed), ..FaultSpec::default() });
    let back = at + rng.random_range(1..300);
    sc.push_fault(FaultSpec {
        kind: FaultKind::Recover,
        at: ms(back),
        node: Some(crashed),
        memory: Some(false),
        ..FaultSpec::default()
    });
    let (cut, at) = (rng.random_range(0..4), rng.random_range(0..400));
    sc.push_fault(FaultSpec {
        kind: FaultKind::Partition,
        at: ms(at),
        heal: ms(at + rng.random_range(1..500)),
        groups: Some(vec![vec![cut]]),
        ..FaultSpec::default()
    });
    let at = rng.random_range(0..400);
    sc.push_fault(FaultSpec {
        kind: FaultKind::Omission,
        at: ms(at),
        until: ms(at + 300),
        node: Some(rng.random_range(0..4)),
        rate: Some(0.5),
        ..FaultSpec::default()
    });
    sc
}

#[test]
fn two_phase_commit_agrees_and_finishes_over_ten_thousand_faulty_seeds() {
    let seeds = 10_000u64;
    let (mut committed, mut aborted, mut crash_drops, mut partition_drops, mut omission_drops, mut restarts) =
        (0, 0, 0, 0, 0, 0);
    for seed in 0..seeds {
        let sc = faulty(seed);
        let mut sim = registry::build::<Commit>(&sc, seed, true);
        if let Err(e) = sim.run_until(Time::ZERO + sc.until) {
            panic!("seed {seed}: {e}");
        }
        let coordinator = sim.node(NodeId(0));
        for tx in 0..sc.params.txns {
            let decision = coordinator.state(tx).unwrap_or_else(|| panic!("seed {seed}: transaction {tx} never began"));
            assert!(matches!(decision, State::Committed | State::Aborted), "seed {seed}: tx {tx} still {decision:?}");
            committed += usize::from(decision == State::Committed);
            aborted += usize::from(decision == State::Aborted);
            for p in 1..4 {
                let state = sim.node(NodeId(p)).state(tx);
                // A participant that never heard of an aborted transaction
                // is fine (presumed abort); otherwise it agrees.
                let agrees = match decision {
                    State::Committed => state == Some(State::Committed),
                    _ => state.is_none_or(|s| matches!(s, State::Aborted | State::Active)),
                };
                assert!(agrees, "seed {seed}: tx {tx} {decision:?} at the coordinator, {state:?} at node {p}");
            }
        }
        let outcome = <Commit as registry::Runnable>::outcome(&sc.params, sc.nodes, &sim);
        assert_eq!(outcome["applied_twice"], 0, "seed {seed}: {outcome}");
        let stats = sim.stats();
        crash_drops += stats.dropped.get("crashed");
        partition_drops += stats.dropped.get("partition");
        omission_drops += stats.dropped.get("omission");
        restarts += sim.faults_applied().iter().filter(|(_, f)| matches!(f, agora_sim::Fault::Recover { .. })).count();
    }
    eprintln!(
        "{seeds} seeds: {committed} committed, {aborted} aborted; messages dropped: {crash_drops} at crashed nodes, \
         {partition_drops} by partitions, {omission_drops} by omission; {restarts} restarts"
    );
    // Every fault type fired, and both outcomes happen.
    assert!(crash_drops > 0 && partition_drops > 0 && omission_drops > 0 && restarts as u64 == seeds);
    assert!(committed > 0 && aborted > 0);
}

#[test]
fn three_phase_commit_disagrees_under_partitions_in_some_seeds() {
    use agora_telecom::commit::Variant;
    let mut violations = Vec::new();
    for seed in 0..2_000u64 {
        let mut sc = faulty(seed);
        sc.params.variant = Variant::ThreePhase;
        let mut sim = registry::build::<Commit>(&sc, seed, false);
        if let Err(e) = sim.run_until(Time::ZERO + sc.until) {
            assert!(e.to_string().contains("atomic commit agreement"), "seed {seed}: {e}");
            violations.push(seed);
        }
    }
    eprintln!("3PC: agreement broken in {} of 2000 seeds, first {:?}", violations.len(), violations.first());
    assert!(!violations.is_empty(), "3PC's termination protocol should disagree under some partition");
}
