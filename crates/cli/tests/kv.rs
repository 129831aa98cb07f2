//! The telecom client API on real processes: `agora kv` reads, writes and
//! compare-and-sets through a client node's `/kv` endpoints while the
//! workload runs; what is refused is refused with a clear error.

mod common;
use agora_net::probe;
use common::*;
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

/// `agora kv ARGS… --cluster CONFIG`: exit code, stdout as JSON (if it is), stderr.
fn kv(config: &std::path::Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = agora().arg("kv").arg(args[0]).arg("--cluster").arg(config).args(&args[1..]).output().unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.code().unwrap_or(-1), serde_json::from_str(&stdout).unwrap_or_default(), stderr)
}

#[test]
fn kv_reads_writes_and_compare_and_sets_on_a_running_cluster() {
    let dir = temp_dir("kv");
    let (config, http) = telecom_cluster(&dir);
    let keyed = keyed(&config);
    let mut procs: Vec<Child> = (0..5).map(|i| spawn_node(&config, &format!("n{i}"))).collect();
    // Ready once Edge1's client has a request of its own answered.
    let start = Instant::now();
    let succeeded =
        |a: SocketAddr| probe::get_json(a, "/status").ok().and_then(|s| s["protocol"]["client"]["succeeded"].as_u64());
    while succeeded(http[0]).unwrap_or(0) == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "the cluster did not start serving");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Every group: a write through Edge1 is read back through Edge2 (n1),
    // named by its name in the cluster file; the strong group by index too.
    for group in ["transactions", "rpc", "load_balancer", "analytics", "0"] {
        let value = format!("v-{group}");
        let (code, put, err) = kv(&keyed, &["put", "--node", "Edge1", group, "greeting", &value]);
        assert_eq!(code, 0, "put {group}: {err}");
        assert_eq!(put["value"], value.as_str(), "{put}");
        assert!(put["version"].as_u64() >= Some(1), "{put}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // Eventual groups converge: read until the write shows.
            let (code, got, err) = kv(&keyed, &["get", "--node", "n1", group, "greeting"]);
            assert_eq!(code, 0, "get {group}: {err}");
            if got["value"] == value.as_str() {
                break;
            }
            assert!(Instant::now() < deadline, "{group}: the write never showed through Edge2: {got}");
        }
    }
    // The strong group: compare-and-set (its default client node is Edge1).
    let (code, miss, _) = kv(&keyed, &["cas", "transactions", "greeting", "--expected", "nope", "x"]);
    assert_eq!((code, &miss["applied"], &miss["value"]), (1, &false.into(), &"v-0".into()), "{miss}");
    let (code, hit, err) = kv(&keyed, &["cas", "transactions", "greeting", "--expected", "v-0", "moon"]);
    assert_eq!((code, &hit["applied"], &hit["value"]), (0, &true.into(), &"moon".into()), "{hit} {err}");
    assert!(hit["version"].as_u64() > miss["version"].as_u64(), "{hit} after {miss}");

    // Refusals, each saying what is wrong.
    let (code, _, err) = kv(&keyed, &["get", "nosuch", "k"]);
    assert!(code == 2 && err.contains("no group \"nosuch\"") && err.contains("transactions, rpc"), "{err}");
    // A node that is not a client serves reads, not writes (no writer's seal).
    let (code, got, err) = kv(&keyed, &["get", "--node", "Core1", "transactions", "greeting"]);
    assert_eq!((code, &got["value"]), (0, &"moon".into()), "{err}");
    let (code, _, err) = kv(&keyed, &["put", "--node", "Core1", "rpc", "k", "v"]);
    assert!(code == 2 && err.contains("Core1 is not a client node") && err.contains("HTTP 422"), "{err}");
    let (code, _, err) = kv(&keyed, &["get", "--node", "Nowhere", "rpc", "k"]);
    assert!(code == 2 && err.contains("no node Nowhere") && err.contains("n2 (Core1)"), "{err}");
    let token = token(&config);
    let call = |method: &str, path: &str, body: &str, token: Option<&str>| {
        probe::request_with_token(http[0], method, path, Some(body), token, Duration::from_secs(10)).unwrap()
    };
    let (code, body) = call("GET", "/kv/rpc/k", "", None);
    assert!(code == 401 && body.contains("Bearer"), "reads need the token too: {code} {body}");
    let (code, body) = call("POST", "/kv/rpc/k/cas", "{\"value\": \"x\"}", Some(&token));
    assert!(code == 400 && body.contains("expected"), "{code} {body}");
    let big = "x".repeat(64 * 1024 + 1);
    let (code, body) = call("PUT", "/kv/rpc/k", &big, Some(&token));
    assert!(code == 413 && body.contains("65536"), "{code} {body}");
    // The index lists the client API beside the node's endpoints.
    let index = probe::get_json(http[0], "/").unwrap();
    assert!(index["endpoints"].as_array().unwrap().iter().any(|e| e["path"] == "/kv/{group}/{key}/cas"), "{index}");

    // The requests count in the node's accounting like the workload's:
    // Core1 runs no workload, so its client saw exactly the one read.
    let s = probe::get_json(http[2], "/status").unwrap();
    let c = &s["protocol"]["client"];
    assert_eq!((c["issued"].as_u64(), c["succeeded"].as_u64()), (Some(1), Some(1)), "{c}");
    for mut p in procs.drain(..) {
        drop(p.stdin.take());
        let _ = p.wait();
    }
}
