//! The telecom data plane's first stage: the clients' operations on the
//! groups' key–value state, the histories a run records, and the harness's
//! count of forged answers — each shown able to fail.

use agora_core::Time;
use agora_lab::registry::{self, Runnable};
use agora_lab::telecom::{
    checked_outcome,
    experiments::{default_scenario, only},
    history,
};
use agora_sim::scenario::{FaultKind, FaultSpec, Scenario};
use agora_sim::Sim;
use agora_telecom::node::{self, client, Node};
use agora_telecom::topology::Params;
use std::time::Duration;

fn run(sc: &Scenario<Params>, seed: u64) -> Sim<Node> {
    registry::check::<Node>(sc).expect("a valid scenario");
    let mut sim = registry::build::<Node>(sc, seed, true);
    sim.run_until(Time::ZERO + sc.until).expect("invariants hold");
    sim
}

fn verdict(sim: &Sim<Node>, sc: &Scenario<Params>, service: &str) -> Option<bool> {
    let topo = sc.params.compile().unwrap();
    let (reqs, events) = history::requests(sim);
    let files = history::edn(&topo, &reqs, &events);
    let checked = history::check(&topo, &reqs, &files, Duration::from_secs(30));
    let h = checked.iter().find(|h| h.service == service).unwrap();
    assert!(h.ops > 100, "{h:?}");
    h.linearizable
}

/// A group served by one replica (active-passive, no faults, no loss — a
/// retry would go to the next member): its history is linearizable; crash
/// its primary with its memory lost and the backup serves without the
/// primary's data, which the checker sees.
#[test]
fn a_history_is_linearizable_until_the_primary_loses_its_data() {
    let lossless = |secs| {
        let mut sc = only("rpc", secs);
        sc.network.loss = 0.0;
        sc
    };
    let sc = lossless(6);
    assert_eq!(verdict(&run(&sc, 1), &sc, "rpc"), Some(true));
    let mut crashed = lossless(8);
    // Edge1, the rpc primary, is also a client: Edge2 keeps issuing.
    crashed.push_fault(FaultSpec {
        kind: FaultKind::Crash,
        at: Some(Duration::from_secs(3)),
        node: Some(0),
        ..Default::default()
    });
    assert_eq!(verdict(&run(&crashed, 1), &crashed, "rpc"), Some(false), "unreplicated data is lost in a failover");
}

/// Authenticated data: a forging replica's values fail the clients'
/// verification in every group — the active-active group, where no vote
/// guards, as in the n-way group — so none is accepted, and the forgeries
/// did happen (the answers counted as forged). The client that catches a
/// forgery shares the signed answer, and the other client takes it.
#[test]
fn forged_values_are_refused_by_verification_in_every_group() {
    let forge = |service: &str| {
        let mut sc = only(service, 4);
        sc.push_input(Duration::from_secs(1), 2, &node::Input::byzantine(node::Behaviour::Corrupt)).unwrap();
        let sim = run(&sc, 3);
        let count = |name| sim.stats().counter(name);
        (
            history::wrong_answers(&history::requests(&sim).0),
            count(node::counters::FORGED),
            count(node::counters::EVIDENCE_TAKEN),
        )
    };
    let (wrong, forged, taken) = forge("load_balancer");
    assert_eq!(wrong, 0, "no forged value accepted where no vote guards");
    assert!(forged > 0, "Core1 served the active-active group and forged");
    assert!(taken > 0, "the client that caught it shared the evidence, and the other took it");
    let (wrong, _, _) = forge("transactions");
    assert_eq!(wrong, 0);
}

/// The same seed writes the same histories; `--history` files are what
/// the `agora history` command reads.
#[test]
fn histories_are_deterministic_and_cover_every_request() {
    let sc = default_scenario();
    let a = <Node as Runnable>::histories(&sc.params, &run(&sc, 5)).unwrap();
    let b = <Node as Runnable>::histories(&sc.params, &run(&sc, 5)).unwrap();
    assert_eq!(a, b);
    let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["analytics.edn", "load_balancer.edn", "rpc.edn", "transactions.edn"]);
    let sim = run(&sc, 5);
    let o = checked_outcome(&sc.params.compile().unwrap(), &sim);
    let invocations: usize = a.iter().map(|(_, text)| text.matches(":type :invoke").count()).sum();
    assert_eq!(invocations as u64, o.requests.total.issued, "one invocation per request issued");
    let strong = o.histories.as_ref().unwrap().iter().find(|h| h.service == "transactions").unwrap();
    assert!(strong.ops > 500, "{strong:?}");
}

/// The workload's key distribution reaches the requests: under Zipf the
/// first key is the most asked for, under uniform it is not special.
#[test]
fn zipf_keys_concentrate_the_requests() {
    let share_of_k0 = |dist: &str| {
        let mut sc = only("rpc", 3);
        sc.params.workload.key_distribution =
            toml::from_str::<toml::Table>(&format!("d = {dist}")).unwrap()["d"].clone().try_into().unwrap();
        let (reqs, _) = history::requests(&run(&sc, 2));
        reqs.iter().filter(|r| r.key == "k0").count() as f64 / reqs.len() as f64
    };
    let zipf = share_of_k0("{ zipf = 1.0 }");
    let uniform = share_of_k0("\"uniform\"");
    assert!(zipf > 0.15 && uniform < 0.03, "zipf {zipf}, uniform {uniform}");
}

/// Every request is counted once: ok, failed by one cause, or in flight;
/// the groups and the fault windows each add up to the whole.
#[test]
fn every_request_is_accounted_for_once() {
    let sc = default_scenario();
    for seed in 1..4 {
        let sim = run(&sc, seed);
        let o = agora_lab::telecom::outcome(&sc.params.compile().unwrap(), &sim);
        let r = &o.requests;
        let t = &r.total;
        assert_eq!(t.issued, sim.stats().counter(node::counters::REQUESTS));
        assert_eq!(t.issued, t.succeeded + t.failed() + t.in_flight_at_end, "{t:?}");
        assert_eq!(t.failed(), sim.stats().counter(node::counters::FAILED));
        assert_eq!(t.failed_by_cause.len(), node::Cause::ALL.len(), "the closed list, zeros included");
        for c in node::Cause::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name(), "JSON and reports name a cause alike");
        }
        assert!(t.serviceable_succeeded <= t.serviceable && t.serviceable <= t.succeeded + t.failed());
        for parts in
            [r.groups.iter().map(|g| &g.tally).collect::<Vec<_>>(), r.windows.iter().map(|w| &w.tally).collect()]
        {
            let sum = |f: fn(&agora_lab::telecom::accounting::Tally) -> u64| parts.iter().map(|t| f(t)).sum::<u64>();
            assert_eq!(sum(|t| t.issued), t.issued);
            assert_eq!(sum(|t| t.succeeded), t.succeeded);
            assert_eq!(sum(|t| t.failed()), t.failed());
            assert_eq!(sum(|t| t.serviceable), t.serviceable);
        }
        // The plan's faults open windows: the first has none, a later one the crash.
        assert!(r.windows[0].faults.is_empty(), "{:?}", r.windows[0]);
        assert!(r.windows.iter().any(|w| w.faults == ["Edge1 crashed"]), "{:?}", r.windows);
    }
}

fn window_with<'a>(o: &'a agora_lab::telecom::Outcome, fault: &str) -> &'a agora_lab::telecom::accounting::Window {
    o.requests.windows.iter().find(|w| w.faults.iter().any(|f| f.contains(fault))).unwrap_or_else(|| panic!("{fault}"))
}

fn crash(sc: &mut Scenario<Params>, node: u32, at_ms: u64) {
    sc.push_fault(FaultSpec {
        kind: FaultKind::Crash,
        at: Some(Duration::from_millis(at_ms)),
        node: Some(node),
        ..Default::default()
    });
}

/// Each cause shows up where its fault is: a client cut off alone fails by
/// minority side in a strong group, and is not serviceable there, while an
/// eventual group it holds a replica of goes on serving it; a group whose
/// only member crashed has no replica and nothing serviceable; an
/// overloaded server refuses at admission.
#[test]
fn failures_carry_the_cause_their_fault_implies() {
    let outcome_of = |sc: &Scenario<Params>| {
        let sim = run(sc, 4);
        agora_lab::telecom::outcome(&sc.params.compile().unwrap(), &sim)
    };
    let cut_off = |service: &str| {
        let mut sc = only(service, 6);
        sc.push_fault(FaultSpec {
            kind: FaultKind::Partition,
            at: Some(Duration::from_secs(2)),
            groups: Some(vec![vec![1]]),
            heal: Some(Duration::from_secs(4)),
            ..Default::default()
        });
        outcome_of(&sc)
    };
    let o = cut_off("transactions");
    let w = window_with(&o, "partition");
    assert!(w.tally.failed_by_cause[&node::Cause::MinoritySide] > 50, "{w:?}");
    assert!(w.tally.serviceable < w.tally.issued, "Edge2's requests are not serviceable: {w:?}");
    // Edge2 holds an rpc replica: cut off, it serves its own requests.
    let o = cut_off("rpc");
    let w = window_with(&o, "partition");
    assert_eq!(w.tally.failed_by_cause[&node::Cause::MinoritySide], 0, "{w:?}");
    assert_eq!(w.tally.serviceable, w.tally.issued - w.tally.in_flight_at_end, "{w:?}");
    assert!(w.tally.serviceable_ratio() > 0.9, "{w:?}");

    // Analytics on Cloud1 alone (crashing its three members would leave
    // the edges a minority side).
    let mut dead = only("analytics", 5);
    let g = dead.params.groups.iter_mut().find(|g| g.service == "analytics").unwrap();
    (g.replicas, g.factor) = (Vec::new(), 1);
    crash(&mut dead, 4, 2000);
    let o = outcome_of(&dead);
    let w = o.requests.windows.last().unwrap();
    assert_eq!(w.faults, ["Cloud1 crashed"]);
    assert_eq!(w.tally.serviceable, 0, "{w:?}");
    assert!(w.tally.failed_by_cause[&node::Cause::NoReplica] > 50, "{w:?}");

    let mut busy = only("rpc", 3);
    busy.params.workload.rate = 3000.0;
    for n in &mut busy.params.nodes {
        (n.slots, n.queue_limit) = (1, 2);
    }
    let o = outcome_of(&busy);
    assert!(o.requests.total.failed_by_cause[&node::Cause::Admission] > 100, "{:?}", o.requests.total);
}

/// A member the votes suspected, that behaves again, is taken back: its
/// suspicion expires into probation and the n-way group's cascade level
/// returns to healthy. (Before, a suspicion was for good.) The group is
/// made eventual: a strong one is PBFT's, whose clients send to every
/// member whatever they suspect.
#[test]
fn a_suspicion_that_turns_out_wrong_is_cleared() {
    let mut sc = only("transactions", 10);
    sc.params.groups[0].consistency = agora_telecom::topology::Consistency::Eventual;
    sc.push_input(Duration::from_secs(1), 2, &node::Input::byzantine(node::Behaviour::Corrupt)).unwrap();
    sc.push_input(Duration::from_secs(2), 2, &node::Input::honest()).unwrap();
    let sim = run(&sc, 6);
    let levels: Vec<(f64, node::Level)> = sim
        .outputs()
        .iter()
        .filter_map(|o| match o.output {
            node::Output::Client(client::Output::Cascade { group: 0, level }) if o.node.0 == 0 => {
                Some((o.at.as_secs_f64(), level))
            }
            _ => None,
        })
        .collect();
    assert!(levels.iter().any(|&(t, l)| t < 2.0 && l == node::Level::Isolate), "suspected: {levels:?}");
    let last = levels.last().unwrap();
    assert!(last.0 > 6.0 && last.1 == node::Level::Healthy, "taken back after the 5 s ejection: {levels:?}");
}

/// One group on one member (Core2), its crashes losing its memory, under a
/// fault plan of crashes that tear the last write, a full disk and a
/// corrupted record.
fn on_one_member(consistency: agora_telecom::topology::Consistency, seed_ms: u64) -> Scenario<Params> {
    use agora_telecom::topology::{Consistency, GroupSpec, Redundancy};
    let mut sc = default_scenario();
    sc.fault.clear();
    sc.input.clear();
    sc.until = Duration::from_secs(9);
    sc.network.loss = 0.0;
    sc.disk.torn = 1.0;
    // Clients take the member back soon after each fault (not after 5 s).
    sc.params.rpc.eject_for = Duration::from_millis(200);
    let strategy = if consistency == Consistency::Strong { Redundancy::NWay } else { Redundancy::ActivePassive };
    sc.params.groups = vec![GroupSpec {
        service: "store".into(),
        primary: "Core2".into(),
        replicas: Vec::new(),
        strategy,
        consistency,
        factor: 1,
        sync: false,
        r: None,
        w: None,
    }];
    sc.params.workload.mix = [("store".to_string(), 1.0)].into_iter().collect();
    let at = |ms: u64| Some(Duration::from_millis(ms + seed_ms));
    let fault = |kind, ms, extra: fn(&mut FaultSpec)| {
        let mut f = FaultSpec { kind, at: at(ms), node: Some(3), ..Default::default() };
        extra(&mut f);
        f
    };
    for (kind, ms) in
        [(FaultKind::Crash, 2000), (FaultKind::Recover, 2400), (FaultKind::Crash, 3700), (FaultKind::Recover, 4000)]
    {
        sc.push_fault(fault(kind, ms, |_| {}));
    }
    sc.push_fault(fault(FaultKind::DiskFull, 5000, |f| f.full = Some(true)));
    sc.push_fault(fault(FaultKind::DiskFull, 5600, |f| f.full = Some(false)));
    // Most durable records are the replies of applied writes: corrupt many,
    // so that some entries are hit too.
    for i in 0..40 {
        sc.push_fault(fault(FaultKind::DiskCorrupt, 6500 + 4 * i, |_| {}));
    }
    sc.push_fault(fault(FaultKind::Crash, 6700, |_| {}));
    sc.push_fault(fault(FaultKind::Recover, 7000, |_| {}));
    sc
}

/// A strong member answers only once its disk holds the change, so every
/// acknowledged write survives its crashes: the history stays linearizable
/// through torn writes, a full disk (writes refused, by cause) and a
/// corrupted record (its key refused, not answered from nothing). The same
/// plan against an eventual group, which answers before the sync, loses
/// acknowledged writes — so the check can fail.
#[test]
fn acknowledged_strong_writes_survive_crashes_and_disk_faults() {
    use agora_telecom::topology::Consistency;
    let (mut refused, mut lost, mut eventual_broken) = (0, 0, 0);
    for seed in 0..6u64 {
        let sc = on_one_member(Consistency::Strong, seed * 37);
        let sim = run(&sc, seed);
        assert_eq!(verdict(&sim, &sc, "store"), Some(true), "seed {seed}");
        refused += sim.stats().counter(node::counters::SYNCS_REFUSED);
        lost += sim.stats().counter(node::counters::LOST_KEYS);
        let sc = on_one_member(Consistency::Eventual, seed * 37);
        eventual_broken += (verdict(&run(&sc, seed), &sc, "store") == Some(false)) as u32;
    }
    assert!(refused > 0, "the full disk refused syncs");
    assert!(lost > 0, "requests on a key whose record was damaged are refused");
    assert!(eventual_broken > 0, "answering before the sync loses acknowledged writes");
}

/// The default scenario with each Byzantine behaviour in Core1's place,
/// over several seeds (`AGORA_BYZANTINE_SEEDS`, 2 by default; the full
/// sweep is `AGORA_BYZANTINE_SEEDS=20`): no forged value is ever accepted,
/// and the transactions group's history, ordered by its primary and voted
/// on by its clients, stays linearizable.
#[test]
fn no_byzantine_behaviour_gets_a_wrong_answer_accepted() {
    let seeds: u64 = std::env::var("AGORA_BYZANTINE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    use node::Behaviour::*;
    let stale =
        |o: &agora_lab::telecom::Outcome| o.histories.as_ref().unwrap().iter().map(|h| h.stale_reads).sum::<u64>();
    let mut honest = default_scenario();
    honest.input.clear();
    let honest_stale: Vec<u64> = (1..=seeds)
        .map(|seed| stale(&checked_outcome(&honest.params.compile().unwrap(), &run(&honest, seed))))
        .collect();
    for behaviour in [Corrupt, Equivocate, Silent, ForgeVersion, Replay] {
        let mut sc = default_scenario();
        sc.input.clear();
        sc.push_input(Duration::from_secs(13), 2, &node::Input::byzantine(behaviour)).unwrap();
        for seed in 1..=seeds {
            let sim = run(&sc, seed);
            let o = checked_outcome(&sc.params.compile().unwrap(), &sim);
            let turned = sim.outputs().iter().filter(|r| r.output.server().is_some()).count();
            assert!(turned > 0, "{behaviour:?}: Core1 turned Byzantine");
            assert_eq!(o.requests.wrong_answers_accepted, 0, "{behaviour:?}, seed {seed}");
            let strong = o.histories.as_ref().unwrap().iter().find(|h| h.service == "transactions").unwrap();
            assert_eq!(strong.linearizable, Some(true), "{behaviour:?}, seed {seed}: {strong:?}");
            // Each behaviour did what it says: false versions are outvoted
            // (Core1 suspected), replayed data shows as stale reads.
            let accused = sim.outputs().iter().any(|r| {
                matches!(r.output.client(), Some(client::Output::Suspect { node, how: node::Detection::Byzantine }) if node.0 == 2)
            });
            match behaviour {
                Corrupt | Equivocate | ForgeVersion => assert!(accused, "{behaviour:?}, seed {seed}: Core1 suspected"),
                Replay => {
                    assert!(stale(&o) > honest_stale[seed as usize - 1], "{behaviour:?}, seed {seed}: stale reads")
                }
                Silent => {}
            }
        }
    }
}

/// A corrupt member also forges what it ships its peers (an analytics
/// group member, anti-entropy and read repair included): the peers refuse
/// it, so at the end no other member holds a value no client sealed — and
/// the refusals show it was tried.
#[test]
fn members_refuse_forged_data_from_a_peer() {
    let mut sc = only("analytics", 4);
    sc.push_input(Duration::from_secs(1), 2, &node::Input::byzantine(node::Behaviour::Corrupt)).unwrap();
    let seed = 3;
    let sim = run(&sc, seed);
    let topo = sc.params.compile().unwrap();
    let g = topo.groups.iter().position(|g| g.service == "analytics").unwrap() as u16;
    let keys = agora_core::keys::SeededKeys { seed }.ring();
    let verify = |w: agora_core::NodeId, signed: &[u8], sig: &[u8]| {
        use agora_core::keys::Keys;
        agora_core::keys::Signature::from_slice(sig).is_ok_and(|s| keys.verify(w, signed, &s))
    };
    let may_write = |n: agora_core::NodeId| topo.clients[n.index()];
    let mut held = 0;
    for &m in topo.groups[g as usize].members.iter().filter(|m| m.0 != 2) {
        for (key, entry) in sim.node(m).replica(g).entries() {
            assert!(entry.authentic(g, key, may_write, verify), "{} holds a forged {key}: {entry:?}", topo.name(m));
            held += 1;
        }
    }
    assert!(held > 0);
    assert!(sim.stats().counter(node::counters::PEER_FORGED) > 0, "Core1 shipped forged data");
}
