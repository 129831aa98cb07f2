//! The simulated disk: each disk fault fires, is detected, and a protocol
//! that acknowledges before its sync completes is caught losing a write.

use agora_broadcast::register::{check_acknowledged_kept, Config, Output, Register, SERVER};
use agora_core::storage::DamageKind;
use agora_core::{NodeId, Time};
use agora_sim::{DiskModel, Fault, Model, Sim, SimConfig, SimError};
use std::time::Duration;

fn ms(v: u64) -> Time {
    Time::ZERO + Duration::from_millis(v)
}

fn register_sim(seed: u64, cfg: Config, disk: DiskModel) -> Sim<Register> {
    let n = cfg.nodes;
    let sim_cfg = SimConfig { disk, ..SimConfig::new(seed) };
    let mut sim = Sim::new(
        n,
        move |id| Register::new(cfg.clone(), id),
        Model::Uniform { min: Duration::from_micros(200), max: Duration::from_millis(2) },
        sim_cfg,
    );
    sim.add_invariant("acknowledged writes kept", move |w| {
        check_acknowledged_kept(n, |id| w.nodes.state(id), w.nodes.is_up(SERVER))
    });
    sim
}

/// The server crashes and restarts without memory every 20 ms.
fn crash_often(sim: &mut Sim<Register>) {
    for i in 0..10 {
        sim.schedule_fault(ms(7 + 20 * i), Fault::Crash(SERVER));
        sim.schedule_fault(ms(9 + 20 * i), Fault::Recover { node: SERVER, memory: false });
    }
}

#[test]
fn acknowledging_after_the_sync_loses_nothing_across_crashes() {
    for seed in 0..100 {
        let mut sim = register_sim(seed, Config::new(4), DiskModel { torn: 0.5, ..DiskModel::default() });
        crash_often(&mut sim);
        sim.run_until(ms(2000)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let acked: usize = (1..4).map(|c| sim.node(NodeId(c)).acked.len()).sum();
        assert_eq!(acked, 60, "seed {seed}: every write was acknowledged in the end");
    }
}

#[test]
fn acknowledging_before_the_sync_is_caught_losing_an_acknowledged_write() {
    let caught = (0..50)
        .filter(|&seed| {
            let mut sim = register_sim(seed, Config { ack_before_sync: true, ..Config::new(4) }, DiskModel::default());
            crash_often(&mut sim);
            match sim.run_until(ms(2000)) {
                Err(SimError::Invariant { name, detail, .. }) => {
                    assert_eq!(name, "acknowledged writes kept");
                    assert!(detail.contains("was acknowledged and is lost"), "{detail}");
                    true
                }
                _ => false,
            }
        })
        .count();
    eprintln!("ack before sync: caught in {caught} of 50 seeds");
    assert!(caught >= 25, "the bug was caught in only {caught} of 50 seeds");
}

fn restored(sim: &Sim<Register>) -> Vec<(usize, usize)> {
    sim.outputs()
        .iter()
        .filter_map(|o| match o.output {
            Output::Restored { writes, damaged } => Some((writes, damaged)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_crash_tears_the_last_unsynced_write_and_the_restart_reports_it() {
    // Syncs take 5 ms, so a crash at 7 ms finds writes in flight.
    let disk = DiskModel {
        torn: 1.0,
        sync_min: Duration::from_millis(5),
        sync_max: Duration::from_millis(5),
        ..DiskModel::default()
    };
    let mut sim = register_sim(3, Config::new(3), disk);
    sim.schedule_fault(ms(7), Fault::Crash(SERVER));
    sim.schedule_fault(ms(8), Fault::Recover { node: SERVER, memory: false });
    sim.run_until(ms(200)).unwrap();
    assert_eq!(sim.stats().disk.torn_writes, 1);
    assert!(restored(&sim).iter().any(|&(_, d)| d == 1), "{:?}", restored(&sim));
    // Without tearing, nothing is damaged.
    let mut clean = register_sim(3, Config::new(3), DiskModel { torn: 0.0, ..disk_copy() });
    clean.schedule_fault(ms(7), Fault::Crash(SERVER));
    clean.schedule_fault(ms(8), Fault::Recover { node: SERVER, memory: false });
    clean.run_until(ms(200)).unwrap();
    assert_eq!(clean.stats().disk.torn_writes, 0);
    assert!(restored(&clean).iter().all(|&(_, d)| d == 0));
}

fn disk_copy() -> DiskModel {
    DiskModel { sync_min: Duration::from_millis(5), sync_max: Duration::from_millis(5), ..DiskModel::default() }
}

#[test]
fn a_corrupted_record_is_detected_by_its_checksum() {
    let mut sim = register_sim(1, Config::new(3), DiskModel::default());
    sim.schedule_fault(ms(50), Fault::DiskCorrupt(SERVER));
    sim.run_until(ms(60)).unwrap();
    let damage = sim.world().durable(SERVER).damaged().to_vec();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].kind, DamageKind::Corrupt);
    assert_eq!(sim.stats().disk.corrupted_records, 1);
}

#[test]
fn a_full_disk_refuses_syncs_and_nothing_refused_is_acknowledged() {
    let mut sim = register_sim(2, Config::new(3), DiskModel::default());
    sim.schedule_fault(ms(20), Fault::DiskFull { node: SERVER, full: true });
    sim.schedule_fault(ms(60), Fault::DiskFull { node: SERVER, full: false });
    sim.run_until(ms(2000)).unwrap();
    assert!(sim.stats().disk.syncs_refused > 0);
    assert!(sim.outputs().iter().any(|o| matches!(o.output, Output::Refused { .. })));
    // Once there is room again, the retries get every write in.
    let acked: usize = (1..3).map(|c| sim.node(NodeId(c)).acked.len()).sum();
    assert_eq!(acked, 40);
    // A capacity limit refuses the same way.
    let mut small = register_sim(2, Config::new(3), DiskModel { capacity_bytes: Some(200), ..DiskModel::default() });
    small.run_until(ms(500)).unwrap();
    assert!(small.stats().disk.syncs_refused > 0);
}

#[test]
fn same_seed_same_trace_with_disk_faults() {
    let run = || {
        let mut sim = register_sim(9, Config::new(4), DiskModel { torn: 0.5, corrupt: 0.5, ..DiskModel::default() });
        crash_often(&mut sim);
        // Corruption can lose an acknowledged write (the register keeps one
        // copy): then the violation, too, is the same in both runs.
        format!("{:?} {}", sim.run_until(ms(500)).map(|r| r.trace_hash), sim.trace_hash())
    };
    assert_eq!(run(), run());
}
