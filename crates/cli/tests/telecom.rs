//! `agora telecom …` as a user runs it.

mod common;
use common::*;

/// Runs `agora` with `args`, which must succeed, and parses its JSON.
fn json_ok(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn rank_reads_the_seed_table_and_names_bad_entries() {
    let metrics = format!("{}/../../scenarios/telecom-metrics.json", env!("CARGO_MANIFEST_DIR"));
    let v = json_ok(&["telecom", "rank", "--metrics", &metrics, "--json"]);
    let ranking = v["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 5);
    assert_eq!(ranking[0]["node"], "Cloud1");
    assert!((ranking[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(v["suggestions"].as_array().unwrap()[0].as_str().unwrap().starts_with("Cloud1: "));
    let c = json_ok(&["telecom", "rank", "--metrics", &metrics, "--reading", "corrected", "--json"]);
    assert!((c["ranking"][0]["score"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{c}");

    let dir = temp_dir("telecom-rank");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"nodes": [{"id": "a", "latency_ms": 1, "throughput_mbps": 1, "cpu_percent": "hot", "memory_gb": 1, "tx_per_s": 1, "lock_contention_percent": 1}]}"#).unwrap();
    let out = run(&["telecom", "rank", "--metrics", bad.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("bad.json: nodes[0].cpu_percent"), "{stderr}");
}

#[test]
fn risk_assesses_and_orders_the_failover() {
    let input = format!("{}/../../scenarios/telecom-risk.json", env!("CARGO_MANIFEST_DIR"));
    let v = json_ok(&["telecom", "risk", "--input", &input, "--json"]);
    let order: Vec<&str> = v["failover_order"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(&order[..3], ["Core1", "Core2", "Cloud1"], "the seed's priority order");
    let core1 = v["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "Core1").unwrap();
    assert_eq!(core1["strategy"], "n-way-quorum");
    // 0.3·0.4 + 0.3·0.95 + 0.2·0.9 + 0.2·4/4 = 0.785: high.
    assert!((core1["risk_score"].as_f64().unwrap() - 0.785).abs() < 1e-9 && core1["category"] == "high", "{core1}");
    let (stdout, _) = text(&run(&["telecom", "risk", "--input", &input]));
    assert!(stdout.contains("failover order") && stdout.contains("Core1 → Core2 → Cloud1"), "{stdout}");
}

#[test]
fn select_picks_the_best_node_that_fits() {
    let input = format!("{}/../../scenarios/telecom-select.json", env!("CARGO_MANIFEST_DIR"));
    let v = json_ok(&["telecom", "select", "--input", &input, "--json"]);
    let scores = v["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 5);
    let best =
        scores.iter().max_by(|a, b| a["total"].as_f64().unwrap().total_cmp(&b["total"].as_f64().unwrap())).unwrap();
    assert_eq!(v["selected"], best["node"], "every node fits this request: the highest total wins");
    // A request no node can take: null, and exit status 1.
    let dir = temp_dir("telecom-select");
    let big = dir.join("big.json");
    let text_ = std::fs::read_to_string(&input).unwrap().replace("\"cpu\": 10", "\"cpu\": 90");
    std::fs::write(&big, text_).unwrap();
    let out = run(&["telecom", "select", "--input", big.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert!(v["selected"].is_null() && out.status.code() == Some(1), "{v}");
}

#[test]
fn deadlock_breaks_the_seed_example_with_one_victim_per_cycle() {
    let graph = format!("{}/../../scenarios/telecom-deadlock.json", env!("CARGO_MANIFEST_DIR"));
    for (rule, victims) in [("oldest", ["T1", "T5"]), ("priority", ["T4", "T5"]), ("work", ["T2", "T6"])] {
        let v = json_ok(&["telecom", "deadlock", "--graph", &graph, "--victim", rule, "--json"]);
        assert_eq!(v["cycles"], serde_json::json!([["T1", "T2", "T3", "T4"], ["T5", "T6"]]));
        assert_eq!(v["victims"], serde_json::json!(victims), "{rule}");
    }
    let (stdout, _) = text(&run(&["telecom", "deadlock", "--graph", &graph]));
    assert!(stdout.contains("T1 → T2 → T3 → T4 → T1") && stdout.contains("abort T1"), "{stdout}");
}
