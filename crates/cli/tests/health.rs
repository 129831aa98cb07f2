//! `/health` says whether a node can take work, so a balancer in front of
//! the nodes stops sending to one that should not get it: 503 and why for
//! a telecom node that is Byzantine or cut off, 200 again once it is back.

mod common;
use agora_net::probe;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn health_fails_on_a_byzantine_or_cut_off_telecom_node_and_recovers() {
    let dir = temp_dir("health");
    let (config, http) = telecom_cluster(&dir);
    let token = token(&config);
    let mut procs: Vec<_> = (0..5).map(|i| spawn_node(&config, &format!("n{i}"))).collect();
    let health = |i: usize| probe::request(http[i], "GET", "/health", None, Duration::from_secs(2)).ok();
    let call = |i: usize, method: &str, path: &str, body: &str| {
        probe::request_with_token(http[i], method, path, Some(body), Some(&token), Duration::from_secs(2)).unwrap().0
    };
    let status = |i: usize| probe::get_json(http[i], "/status").map(|s| s["protocol"]["control"].to_string());
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < Duration::from_secs(20), "{what}: {:?}", (0..5).map(status).collect::<Vec<_>>());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("every node healthy at the start", &|| (0..5).all(|i| health(i).is_some_and(|h| h.0 == 200)));
    // Every node connected to every other, and heartbeats exchanged (a
    // neighbour never heard from is not judged by the detector).
    let connected = |i: usize| {
        probe::get_json(http[i], "/status")
            .is_ok_and(|s| s["peers"].as_array().is_some_and(|p| p.iter().all(|p| p["connected"] == true)))
    };
    wait("every node connected", &|| (0..5).all(connected));
    std::thread::sleep(Duration::from_millis(500));

    // Edge2 (n1) is cut off from everyone: once it sees its side is a
    // minority it fails its health check, and passes again after the heal.
    for i in 0..5 {
        let cut = if i == 1 { r#"{"partition":[0,2,3,4]}"# } else { r#"{"partition":[1]}"# };
        assert_eq!(call(i, "PUT", "/faults", cut), 200);
    }
    wait("Edge2 reports its isolation", &|| health(1).is_some_and(|h| h.0 == 503 && h.1.contains("control: isolated")));
    for i in 0..5 {
        assert_eq!(call(i, "PUT", "/faults", "{}"), 200);
    }
    wait("Edge2 healthy after the heal", &|| health(1).is_some_and(|h| h.0 == 200));

    // Core1 (n2) is told to lie: it says so, the others stay healthy.
    assert_eq!(call(2, "POST", "/input", r#"{"server":{"Byzantine":"corrupt"}}"#), 202);
    let byzantine = health(2).unwrap();
    assert_eq!(byzantine.0, 503, "{byzantine:?}");
    assert!(byzantine.1.contains("server: Byzantine"), "{byzantine:?}");
    assert!((0..5).filter(|&i| i != 2).all(|i| health(i).is_some_and(|h| h.0 == 200)));

    for p in &mut procs {
        drop(p.stdin.take());
        assert!(p.wait().unwrap().success());
    }
}
