//! PBFT in the simulator: the scenario file, and a sweep of seeds with a
//! replica crashing (with or without its memory; the primary too, which
//! forces view changes), a replica cut off, omissions and a lossy,
//! duplicating network. After every event the simulator checks that correct
//! replicas executed the same log and agree on stable checkpoints, and that
//! no two requests got one position; at the end every request is done.

use agora_core::Time;
use agora_lab::registry::{self, Runnable};
use agora_pbft::{Behaviour, ByzantineReplica, Chain, Node, Params};
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use rand::{Rng, SeedableRng};
use std::time::Duration;

type Pbft = Node<Chain>;

fn scenario() -> Scenario<Params> {
    let path = format!("{}/../../scenarios/pbft.toml", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    registry::load::<Pbft>(&path, &src).unwrap()
}

fn ms(x: u64) -> Option<Duration> {
    Some(Duration::from_millis(x))
}

#[test]
fn the_scenario_changes_view_finishes_and_a_cut_off_replica_catches_up_by_state_transfer() {
    let sc = scenario();
    let run = |seed| {
        let mut sim = registry::build::<Pbft>(&sc, seed, true);
        sim.run_until(Time::ZERO + sc.until).unwrap_or_else(|e| panic!("{e}"));
        sim
    };
    let sim = run(sc.seed);
    let outcome = Pbft::outcome(&sc.params, sc.nodes, &sim);
    assert_eq!(outcome["all_done"], true, "{outcome:#}");
    assert_eq!(outcome["requests_done"], 2 * sc.params.requests as u64);
    assert!(outcome["state_transfers"].as_u64().unwrap() > 0, "the partition forced a state transfer: {outcome:#}");
    assert!(outcome["views_entered"].as_u64().unwrap() >= 3, "the primary's crash forced a view change: {outcome:#}");
    let dropped = &sim.stats().dropped;
    assert!(dropped.get("crashed") > 0 && dropped.get("partition") > 0 && dropped.get("loss") > 0);
    assert_eq!(sim.trace_hash(), run(sc.seed).trace_hash(), "same seed, same trace");
}

/// The sweeps' scenario before its faults: 40 requests per client, 30 s.
fn sweep_scenario() -> Scenario<Params> {
    let mut sc = scenario();
    sc.fault.clear();
    sc.params.requests = 40;
    sc.until = Duration::from_secs(30);
    sc
}

/// Replica `node` crashes at `at` ms and comes back `after` ms later.
fn crash(sc: &mut Scenario<Params>, node: u32, at: u64, after: u64, memory: bool) {
    sc.push_fault(FaultSpec { kind: FaultKind::Crash, at: ms(at), node: Some(node), ..FaultSpec::default() });
    let back = FaultSpec { kind: FaultKind::Recover, at: ms(at + after), node: Some(node), ..FaultSpec::default() };
    sc.push_fault(FaultSpec { memory: Some(memory), ..back });
}

/// Replica `node` is cut off from `at` ms for `lasting` ms.
fn cut_off(sc: &mut Scenario<Params>, node: u32, at: u64, lasting: u64) {
    let groups = Some(vec![vec![node]]);
    sc.push_fault(FaultSpec {
        kind: FaultKind::Partition,
        at: ms(at),
        heal: ms(at + lasting),
        groups,
        ..FaultSpec::default()
    });
}

/// One seed's faults: a crash and a restart (memory kept or lost), a
/// partition cutting one off, omissions at one — each at any replica,
/// the primary of view 0 included.
fn faulty(seed: u64) -> Scenario<Params> {
    let mut sc = sweep_scenario();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (crashed, at) = (rng.random_range(0..4), rng.random_range(0..1500));
    crash(&mut sc, crashed, at, rng.random_range(1..1500), rng.random_bool(0.5));
    // The draws in the order the sweep's figures were measured with.
    let (at, lasting) = (rng.random_range(0..1500), rng.random_range(1..1500));
    cut_off(&mut sc, rng.random_range(0..4), at, lasting);
    let at = rng.random_range(0..1500);
    sc.push_fault(FaultSpec {
        kind: FaultKind::Omission,
        at: ms(at),
        until: ms(at + 500),
        node: Some(rng.random_range(0..4)),
        rate: Some(0.5),
        ..FaultSpec::default()
    });
    sc
}

/// CI runs 300 seeds; `AGORA_PBFT_SEEDS=10000 cargo test -p agora-lab --release --test pbft` runs more.
#[test]
fn pbft_agrees_and_finishes_over_many_faulty_seeds() {
    let seeds: u64 = std::env::var("AGORA_PBFT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let (mut transfers, mut views, mut crash, mut partition, mut omission, mut forgot) = (0, 0, 0, 0, 0, 0);
    for seed in 0..seeds {
        let sc = faulty(seed);
        let mut sim = registry::build::<Pbft>(&sc, seed, true);
        sim.run_until(Time::ZERO + sc.until).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let outcome = Pbft::outcome(&sc.params, sc.nodes, &sim);
        assert_eq!(outcome["all_done"], true, "seed {seed}: {outcome:#}");
        transfers += outcome["state_transfers"].as_u64().unwrap();
        views += outcome["views_entered"].as_u64().unwrap();
        let dropped = &sim.stats().dropped;
        crash += dropped.get("crashed");
        partition += dropped.get("partition");
        omission += dropped.get("omission");
        forgot += sim
            .faults_applied()
            .iter()
            .filter(|(_, f)| matches!(f, agora_sim::Fault::Recover { memory: false, .. }))
            .count();
    }
    eprintln!(
        "{seeds} seeds: {transfers} state transfers, {views} views entered; dropped {crash} at crashed replicas, {partition} by partitions, \
         {omission} by omission; {forgot} restarts without memory"
    );
    assert!(crash > 0 && partition > 0 && omission > 0 && forgot > 0, "every fault fired");
    assert!(transfers > 0, "some replica fell behind a stable checkpoint and caught up");
    assert!(views > 0, "some primary crashed and the others changed views");
}

/// The Byzantine behaviours the sweep cycles through.
const BEHAVIOURS: u64 = 9;

/// One seed's Byzantine replica (f = 1): a PBFT attack (the primary
/// equivocating or altering requests, views flooded, messages beyond the
/// water marks, twins) or
/// a generic one (mute, replaying, duplicating, misrouting), plus a correct
/// replica crashing for a while with its memory and another cut off.
fn byzantine(seed: u64) -> Scenario<Params> {
    use agora_sim::scenario::Behaviour as Generic;
    let mut sc = sweep_scenario();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let bad = rng.random_range(0..4u32);
    let mut pbft = |replica, behaviour| sc.params.byzantine.push(ByzantineReplica { replica, behaviour });
    match seed % BEHAVIOURS {
        0 => pbft(0, Behaviour::Equivocate),
        1 => pbft(0, Behaviour::AlterRequests),
        2 => pbft(bad, Behaviour::FloodViews),
        3 => pbft(bad, Behaviour::OutsideWindow),
        4 => pbft(bad, Behaviour::Twins),
        5 => sc.push_byzantine(bad, Generic::Mute),
        6 => sc.push_byzantine(bad, Generic::Replay),
        7 => sc.push_byzantine(bad, Generic::Duplicate),
        _ => sc.push_byzantine(bad, Generic::Misroute),
    }
    let bad = if seed % BEHAVIOURS < 2 { 0 } else { bad };
    let correct = |rng: &mut rand_chacha::ChaCha8Rng| (bad + rng.random_range(1..4)) % 4;
    let (crashed, at) = (correct(&mut rng), rng.random_range(0..1500));
    crash(&mut sc, crashed, at, rng.random_range(1..1000), true);
    let (at, lasting) = (rng.random_range(0..1500), rng.random_range(1..1000));
    cut_off(&mut sc, correct(&mut rng), at, lasting);
    sc
}

/// CI runs 180 seeds (20 per behaviour); `AGORA_PBFT_SEEDS` runs more.
#[test]
fn one_byzantine_replica_breaks_neither_agreement_nor_progress() {
    let seeds: u64 = std::env::var("AGORA_PBFT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    let (mut views, mut far, mut outside, mut altered) = (0, 0, 0, 0);
    for seed in 0..seeds {
        let sc = byzantine(seed);
        let mut sim = registry::build::<Pbft>(&sc, seed, true);
        sim.run_until(Time::ZERO + sc.until).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let outcome = Pbft::outcome(&sc.params, sc.nodes, &sim);
        assert_eq!(outcome["all_done"], true, "seed {seed}: {outcome:#}");
        views += outcome["views_entered"].as_u64().unwrap();
        far += sim.stats().counters.get("view_changes_too_far_ahead");
        outside += sim.stats().counters.get("ignored_outside_window");
        altered += sim.stats().counters.get("ignored_unauthenticated_request");
    }
    eprintln!(
        "{seeds} seeds: {views} views entered, {far} view changes too far ahead dropped, {outside} messages outside \
         the window ignored, {altered} pre-prepares with an altered request refused"
    );
    assert!(views > 0 && far > 0 && outside > 0 && altered > 0, "the attacks fired");
}

/// The mutation check: with prepare and commit quorums of f and f + 1
/// (which need not share a correct replica), an equivocating primary, or
/// twins as the primary, make two correct replicas commit different
/// batches, and the invariant says so.
#[test]
fn small_quorums_let_an_equivocating_primary_or_twins_split_the_replicas() {
    for behaviour in [Behaviour::Equivocate, Behaviour::Twins] {
        let mut caught = 0;
        for seed in 0..20 {
            let mut sc = byzantine(seed * BEHAVIOURS + 5); // a mute replica, replaced below
            sc.byzantine.clear();
            sc.params.byzantine = vec![ByzantineReplica { replica: 0, behaviour }];
            sc.params.small_quorums = true;
            let mut sim = registry::build::<Pbft>(&sc, seed, true);
            if let Err(e) = sim.run_until(Time::ZERO + sc.until) {
                assert!(e.to_string().contains("committed a different batch"), "{behaviour:?}, seed {seed}: {e}");
                caught += 1;
            }
        }
        eprintln!("{behaviour:?}: {caught} of 20 seeds caught");
        assert!(caught >= 10, "{behaviour:?}: most runs with the bug are caught ({caught} of 20)");
    }
}
