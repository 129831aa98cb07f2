//! `agora alloc`: solve, sim and rounds from the command line, and the round
//! protocol as real processes over TCP with a redb ledger.

mod common;
use agora_net::probe;
use common::*;
use std::process::Child;
use std::time::{Duration, Instant};

fn instance(dir: &std::path::Path, p: &str, r: &str, d: &str, seed: &str) -> std::path::PathBuf {
    let out = run(&["alloc", "gen", "--providers", p, "--recipients", r, "--degree", d, "--seed", seed]);
    assert!(out.status.success());
    let path = dir.join(format!("instance-{seed}.json"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn max_flow(path: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(path).unwrap();
    agora_alloc::max_flow(&agora_alloc::Instance::parse(&text).unwrap().network().unwrap())
}

#[test]
fn solve_json_is_feasible_converged_and_optimal_on_generated_instances() {
    let dir = temp_dir("alloc-solve");
    for seed in ["1", "2", "3"] {
        let path = instance(&dir, "20", "50", "4", seed);
        let out = run(&["alloc", "solve", "--instance", path.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{:?}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["converged"], true);
        assert!(v["rounds"].as_u64().unwrap() <= 50);
        let total = v["total_allocated"].as_f64().unwrap();
        let mf = max_flow(&path);
        assert!(total >= (1.0 - 1e-3) * mf && total <= mf * (1.0 + 1e-9), "{total} vs {mf}");
        let sum: f64 = v["allocations"].as_array().unwrap().iter().map(|a| a["amount"].as_f64().unwrap()).sum();
        assert!((sum - total).abs() <= 1e-6 * mf);
        let last = v["per_round"].as_array().unwrap().last().unwrap();
        assert_eq!(last["total_allocated"], v["total_allocated"]);
    }
}

#[test]
fn the_seed_rule_does_not_converge_on_its_own_example() {
    let dir = temp_dir("alloc-seed");
    let path = dir.join("seed.json");
    std::fs::write(
        &path,
        r#"{"providers": [{"id": "P1", "capacity": 300}, {"id": "P2", "capacity": 400}],
            "recipients": [{"id": "R1", "need": 500}],
            "edges": [{"provider": "P1", "recipient": "R1", "mr": 0.6}, {"provider": "P2", "recipient": "R1", "mr": 0.4}]}"#,
    )
    .unwrap();
    let out = run(&["alloc", "solve", "--instance", path.to_str().unwrap(), "--rule", "seed", "--json"]);
    assert_eq!(out.status.code(), Some(1), "not converged: exit 1");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["converged"], false);
    assert_eq!(v["rounds"], 1000);
    let totals: Vec<f64> =
        v["per_round"].as_array().unwrap().iter().map(|r| r["total_allocated"].as_f64().unwrap()).collect();
    assert_eq!(&totals[..4], &[700.0, 0.0, 700.0, 0.0]);
}

#[test]
fn bad_instances_and_fault_specs_are_named() {
    let dir = temp_dir("alloc-bad");
    let path = dir.join("bad.json");
    std::fs::write(
        &path,
        r#"{"providers": [{"id": "P1", "capacity": 10}], "recipients": [{"id": "R1", "need": 5}],
            "edges": [{"provider": "P1", "recipient": "R9", "mr": 0.5}]}"#,
    )
    .unwrap();
    let (_, err) = text(&run(&["alloc", "solve", "--instance", path.to_str().unwrap()]));
    assert!(err.contains("bad.json: edges[0] (P1 → R9): unknown recipient \"R9\""), "{err}");
    let good = instance(&dir, "3", "4", "2", "9");
    for (spec, want) in [
        ("crash:P9@10ms", "no provider or recipient \"P9\""),
        ("crash:P1", "expected KIND:ID@TIME"),
        ("explode:P1@1s", "unknown kind \"explode\""),
        ("crash:P1@soon", "crash:P1@soon"),
        ("loss:2", "rate in [0, 1)"),
    ] {
        let (_, err) = text(&run(&["alloc", "sim", "--instance", good.to_str().unwrap(), "--faults", spec]));
        assert!(err.contains(want), "{spec}: {err}");
    }
}

#[test]
fn sim_with_faults_reports_rounds_messages_and_allocation() {
    let dir = temp_dir("alloc-sim");
    let path = instance(&dir, "5", "8", "2", "4");
    let out = run(&[
        "alloc",
        "sim",
        "--instance",
        path.to_str().unwrap(),
        "--json",
        "--faults",
        "crash:P1@15ms,restart:P1@300ms,loss:0.01",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["converged"], true);
    assert_eq!((v["crashes"].as_u64(), v["recoveries"].as_u64()), (Some(1), Some(1)));
    assert!(v["messages_by_kind"]["deliver"].as_u64().unwrap() > 0);
    let total = v["total_allocated"].as_f64().unwrap();
    assert!(total >= (1.0 - 1e-3) * v["max_flow"].as_f64().unwrap(), "{total}");
    // Async mode too, and the same seed gives the same trace.
    let a = run(&["alloc", "sim", "--instance", path.to_str().unwrap(), "--json", "--async", "--seed", "5"]);
    let b = run(&["alloc", "sim", "--instance", path.to_str().unwrap(), "--json", "--async", "--seed", "5"]);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&a.stdout).unwrap(), serde_json::from_slice(&b.stdout).unwrap());
    assert_eq!(a["converged"], true);
    assert_eq!(a["trace_hash"], b["trace_hash"]);
}

#[test]
fn rounds_reports_the_distribution() {
    let out = run(&["alloc", "rounds", "--instances", "50", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unconverged"], 0);
    assert!(v["rounds"]["median"].as_f64().unwrap() <= 20.0);
    assert!(v["optimality"]["min"].as_f64().unwrap() >= 1.0 - 1e-3);
}

fn status(http: std::net::SocketAddr) -> Option<serde_json::Value> {
    probe::get_json(http, "/status").ok().map(|s| s["protocol"].clone())
}

/// The clusters below wait out barrier timeouts on real clocks; the
/// benchmark test keeps both cores busy. Tests of one file run in parallel,
/// so these take turns: a starved node would miss its barriers and be
/// counted as gone, which is the protocol working, not the test.
static CPU_BOUND: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    CPU_BOUND.lock().unwrap_or_else(|e| e.into_inner())
}

const NAMES: [&str; 8] = ["n0", "p0", "p1", "p2", "r0", "r1", "r2", "r3"];

/// A cluster file for the ledger (on redb), three providers and four
/// recipients on free loopback ports: (instance, ledger file, cluster file,
/// addresses, listen and HTTP alternating).
fn alloc_cluster(
    dir: &std::path::Path,
    silent_rounds: u32,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf, Vec<std::net::SocketAddr>) {
    let inst = instance(dir, "3", "4", "2", "5");
    let ledger = dir.join("data");
    let a = free_addrs(2 * NAMES.len());
    let mut file = format!(
        "protocol = \"alloc\"\ndata_dir = {:?}\n[params]\ninstance = {:?}\nphase_timeout = \"300ms\"\nsilent_rounds = {silent_rounds}\n",
        ledger.to_str().unwrap(),
        inst.to_str().unwrap()
    );
    for (i, n) in NAMES.iter().enumerate() {
        file += &format!("\n[[node]]\nname = \"{n}\"\nlisten = \"{}\"\nhttp = \"{}\"\n", a[2 * i], a[2 * i + 1]);
    }
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    (inst, ledger, config, a)
}

fn wait_finished(ledger_http: std::net::SocketAddr) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let s = status(ledger_http);
        if s.as_ref().is_some_and(|s| s["finished"] == true) {
            return s.unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no end: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Eight processes: the ledger on a redb file, three providers, four
/// recipients. One provider starts late, so the first rounds run without it
/// (its recipients fill up elsewhere); when it joins it reads the ledger's
/// snapshot and takes part.
#[test]
fn over_tcp_with_a_redb_ledger_and_a_late_provider() {
    let _turn = take_turn();
    let dir = temp_dir("alloc-tcp");
    // p1 must not be written off as gone (silent for silent_rounds + 1
    // rounds) before its process is up: rounds without it can be quick.
    let (inst, ledger, config, a) = alloc_cluster(&dir, 30);
    let spawn = |name: &str| spawn_node(&config, name);
    let mut nodes: Vec<Child> = NAMES.iter().filter(|&&n| n != "p1").map(|n| spawn(n)).collect();
    // Wait until the ledger has run a round without p1.
    let start = Instant::now();
    while status(a[1]).and_then(|s| s["round"].as_u64()).unwrap_or(0) < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "the ledger never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    nodes.push(spawn("p1"));
    let ledger_status = wait_finished(a[1]);
    assert_eq!(ledger_status["converged"], true, "{ledger_status}");
    let total: f64 = (1..4).map(|i| status(a[2 * i + 1]).unwrap()["allocated"].as_f64().unwrap()).sum();
    let mf = max_flow(&inst);
    assert!(total >= (1.0 - 1e-3) * mf, "{total} of {mf}: {ledger_status}");
    let p1 = status(a[5]).unwrap();
    assert!(p1["allocated"].as_f64().unwrap() > 0.0, "the late provider took part: {p1}");
    for mut n in nodes {
        drop(n.stdin.take());
        assert!(n.wait().unwrap().success());
    }
    // The ledger node's storage (redb, through the driver) holds every
    // agent's last public entry, and nothing else.
    let (_, disk) =
        agora_net::storage::Storage::open(&agora_net::storage::Backend::Redb, Some(&ledger), "n0", |_, _| {}).unwrap();
    let entries: Vec<(u32, agora_alloc::ledger::Entry)> = disk
        .table(agora_alloc::ledger::LEDGER_TABLE)
        .map(|(k, v)| (u32::from_be_bytes(k.try_into().unwrap()), serde_json::from_slice(v).unwrap()))
        .collect();
    assert_eq!(entries.iter().map(|e| e.0).collect::<Vec<_>>(), (1..8).collect::<Vec<u32>>());
    assert!(entries.iter().all(|e| e.1.round >= 2));
    assert!(disk.damaged().is_empty());
}

/// The benchmark runs and measures a real solve (its times are not judged
/// here: timing belongs to `agora bench`, not to tests).
#[test]
fn bench_alloc_quick_reports_both_rules() {
    let _turn = take_turn();
    let out = run(&["bench", "alloc", "--quick", "--json", "--seed-rounds", "2"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    let case = &v[0];
    assert_eq!(case["edges"], 1_000_000);
    assert_eq!(case["converged"], true);
    assert!((case["optimality"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(case["round_median_ms"].as_f64().unwrap() > 0.0 && case["seed_round_median_ms"].as_f64().unwrap() > 0.0);
}

/// A provider killed outright (SIGKILL) mid-run never comes back: after T
/// silent rounds the others run on without it and converge on what the
/// network without it allows. (p2 is held back from the start, so every
/// round waits out the barrier timeout and the kill lands mid-run.)
#[test]
fn over_tcp_a_killed_provider_is_absorbed() {
    let _turn = take_turn();
    let dir = temp_dir("alloc-kill");
    let (inst, _, config, a) = alloc_cluster(&dir, 2);
    let mut nodes: Vec<(&str, Child)> =
        NAMES.iter().filter(|&&n| n != "p2").map(|&n| (n, spawn_node(&config, n))).collect();
    let start = Instant::now();
    while status(a[1]).and_then(|s| s["round"].as_u64()).unwrap_or(0) < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "the ledger never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let p1 = nodes.iter().position(|n| n.0 == "p1").unwrap();
    nodes[p1].1.kill().unwrap();
    nodes[p1].1.wait().unwrap();
    let ledger_status = wait_finished(a[1]);
    assert_eq!(ledger_status["converged"], true, "{ledger_status}");
    // Against the network without p1 and p2.
    let text = std::fs::read_to_string(&inst).unwrap();
    let mut net = agora_alloc::Instance::parse(&text).unwrap().network().unwrap();
    net.capacity[1] = 0.0;
    net.capacity[2] = 0.0;
    let total = status(a[3]).unwrap()["allocated"].as_f64().unwrap();
    let mf = agora_alloc::max_flow(&net);
    assert!(total >= (1.0 - 1e-3) * mf && total <= mf * (1.0 + 1e-9), "{total} of {mf}");
    for (name, mut n) in nodes {
        if name != "p1" {
            drop(n.stdin.take());
            assert!(n.wait().unwrap().success());
        }
    }
}
