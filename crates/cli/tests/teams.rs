//! `agora teams run`: the report's fields, and bad arguments named.

mod common;
use common::*;

#[test]
fn run_reports_every_field_and_is_safe() {
    let out = run(&["teams", "run", "--n", "256", "--k", "3", "--tokens", "90", "--fragile", "0.3", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "teams_formed",
        "tokens_injected",
        "tokens_left",
        "messages_total",
        "messages_per_token",
        "reaction_time_mean",
        "reaction_time_p99",
        "invariant_violations",
        "safe",
        "trace_hash",
    ] {
        assert!(!v[field].is_null(), "missing {field}: {v}");
    }
    assert_eq!(v["safe"], true);
    assert_eq!(v["teams_formed"], 30);
    assert_eq!(v["faulty_nodes"], 76);
    assert_eq!(v["invariant_violations"], 0);
}

#[test]
fn bad_arguments_are_named() {
    for (args, want) in [
        (vec!["--n", "1"], "--n must be at least 2"),
        (vec!["--n", "10", "--k", "1"], "--k must be at least 2"),
        (vec!["--n", "10", "--fragile", "1.5"], "--fragile must be in [0, 1)"),
        (vec!["--n", "10", "--inject", "soon"], "--inject \"soon\""),
    ] {
        let mut a = vec!["teams", "run"];
        a.extend(args);
        let out = run(&a);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out).1.contains(want), "{a:?}: {}", text(&out).1);
    }
}

#[test]
fn sweep_writes_csv_and_plots() {
    let dir = temp_dir("teams-sweep");
    let out = run(&[
        "teams",
        "sweep",
        "--n-from",
        "16",
        "--n-to",
        "64",
        "--seeds",
        "2",
        "--fragile-n",
        "32",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    for f in ["runs.csv", "summary.csv", "messages.svg", "reaction.svg", "fragile.svg"] {
        let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f}: {len} bytes");
    }
    let runs = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
    // 3 sizes × 2 seeds × 3 algorithms, then 5 fractions × 2 seeds × 3.
    assert_eq!(runs.lines().count(), 1 + 18 + 30);
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(summary.contains("# fit: messages per token ≈"), "{summary}");
    assert!(std::fs::read_to_string(dir.join("messages.svg")).unwrap().contains("<svg"));
}
