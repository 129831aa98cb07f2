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
