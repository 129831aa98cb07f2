//! `agora telecom …` as a user runs it.

mod common;
use common::*;

#[test]
fn rank_reads_the_seed_table_and_names_bad_entries() {
    let metrics = format!("{}/../../scenarios/telecom-metrics.json", env!("CARGO_MANIFEST_DIR"));
    let out = run(&["telecom", "rank", "--metrics", &metrics, "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ranking = v["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 5);
    assert_eq!(ranking[0]["node"], "Cloud1");
    assert!((ranking[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(v["suggestions"].as_array().unwrap()[0].as_str().unwrap().starts_with("Cloud1: "));
    let corrected = run(&["telecom", "rank", "--metrics", &metrics, "--reading", "corrected", "--json"]);
    let c: serde_json::Value = serde_json::from_str(&text(&corrected).0).unwrap();
    assert!((c["ranking"][0]["score"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{c}");

    let dir = temp_dir("telecom-rank");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"nodes": [{"id": "a", "latency_ms": 1, "throughput_mbps": 1, "cpu_percent": "hot", "memory_gb": 1, "tx_per_s": 1, "lock_contention_percent": 1}]}"#).unwrap();
    let out = run(&["telecom", "rank", "--metrics", bad.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("bad.json: nodes[0].cpu_percent"), "{stderr}");
}
