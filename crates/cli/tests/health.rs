//! `/health` says whether a node can take work, so a balancer in front of
//! the nodes stops sending to one that should not get it: 503 and why for
//! a telecom node that is Byzantine or cut off, 200 again once it is back.
//! And `/status` and `/metrics` read as an operator needs them.

mod common;
use agora_net::probe;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn health_fails_on_a_byzantine_or_cut_off_telecom_node_and_recovers_and_status_and_metrics_say_why() {
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

    // `/status` for an operator: groups by service, latency percentiles,
    // and the node's start on the wall clock the nodes share.
    let edge1 = || probe::get_json(http[0], "/status").unwrap();
    wait("Edge1's client has answers", &|| edge1()["protocol"]["client"]["succeeded"].as_u64() > Some(0));
    let s = edge1();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = s["started_unix_s"].as_f64().unwrap();
    assert!(started <= now && now - started < 60.0, "{started} {now}");
    let transactions = &s["protocol"]["control"]["groups"]["transactions"];
    assert_eq!(transactions["members"], serde_json::json!(["Core1", "Core2", "Cloud1", "Edge1"]), "{transactions}");
    assert_eq!(transactions["member"], true, "Edge1 holds the strong group: {transactions}");
    let latency = &s["protocol"]["client"]["latency_ms"];
    let (p50, p99) = (latency["p50"].as_f64().unwrap(), latency["p99"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= latency["max"].as_f64().unwrap(), "{latency}");

    // `/metrics`: the client's requests by service, as a latency histogram
    // and by outcome, adding up to what `/status` counted just after.
    let metrics = |i: usize| probe::request(http[i], "GET", "/metrics", None, Duration::from_secs(2)).unwrap().1;
    let m = metrics(0);
    let services = ["transactions", "rpc", "load_balancer", "analytics"];
    let mut ok = 0.0;
    for service in services {
        let series = |name: &str, more: &str| format!("agora_telecom_{name}{{{more}service=\"{service}\"}}");
        let count = metric(&m, &series("request_seconds_count", "")).unwrap_or_else(|| panic!("{service}: {m}"));
        let inf = metric(&m, &series("request_seconds_bucket", "le=\"+Inf\",")).unwrap();
        let ended_ok =
            metric(&m, &format!("agora_telecom_requests_ended_total{{service=\"{service}\",outcome=\"ok\"}}"));
        assert_eq!((inf, ended_ok), (count, Some(count)), "{service}: {m}");
        ok += count;
    }
    assert!(ok > 0.0, "{m}");
    let succeeded = edge1()["protocol"]["client"]["succeeded"].as_f64().unwrap();
    assert!(ok <= succeeded, "{ok} in /metrics, then {succeeded} in /status");
    assert_eq!(metric(&m, "agora_telecom_group_member{service=\"transactions\"}"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "agora_telecom_group_member{service=\"analytics\"}"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "agora_telecom_isolated"), Some(0.0), "{m}");

    // Edge2 (n1) is cut off from everyone: once it sees its side is a
    // minority it fails its health check, and passes again after the heal.
    for i in 0..5 {
        let cut = if i == 1 { r#"{"partition":[0,2,3,4]}"# } else { r#"{"partition":[1]}"# };
        assert_eq!(call(i, "PUT", "/faults", cut), 200);
    }
    wait("Edge2 reports its isolation", &|| health(1).is_some_and(|h| h.0 == 503 && h.1.contains("control: isolated")));
    let m = metrics(1);
    assert_eq!(metric(&m, "agora_telecom_isolated"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "agora_telecom_suspected{peer=\"Core1\"}"), Some(1.0), "{m}");
    assert!(metric(&m, "agora_telecom_group_members_trusted{service=\"analytics\"}") < Some(3.0), "{m}");
    for i in 0..5 {
        assert_eq!(call(i, "PUT", "/faults", "{}"), 200);
    }
    wait("Edge2 healthy after the heal", &|| health(1).is_some_and(|h| h.0 == 200));

    // Core1 (n2) is told to lie: it says so, the others stay healthy.
    assert_eq!(call(2, "POST", "/input", r#"{"server":{"Byzantine":"corrupt"}}"#), 202);
    let byzantine = health(2).unwrap();
    assert_eq!(byzantine.0, 503, "{byzantine:?}");
    assert!(byzantine.1.contains("server: Byzantine"), "{byzantine:?}");
    assert_eq!(metric(&metrics(2), "agora_telecom_byzantine"), Some(1.0));
    assert_eq!(metric(&metrics(0), "agora_telecom_byzantine"), Some(0.0));
    assert!((0..5).filter(|&i| i != 2).all(|i| health(i).is_some_and(|h| h.0 == 200)));

    for p in &mut procs {
        drop(p.stdin.take());
        assert!(p.wait().unwrap().success());
    }
}
