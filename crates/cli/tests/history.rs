//! `agora history check` and `agora bench history` as a user runs them.

mod common;
use common::*;

fn data(name: &str) -> String {
    format!("{}/../history/tests/data/{name}.txt", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_labelled_histories_check_as_labelled_with_the_exit_code_to_match() {
    for name in ["c01-ok", "c10-ok", "c50-ok", "c01-bad", "c10-bad", "c50-bad"] {
        let out = run(&["history", "check", &data(name), "--model", "kv", "--format", "edn", "--json"]);
        let (stdout, stderr) = text(&out);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
        let ok = name.ends_with("-ok");
        assert_eq!(v["linearizable"], ok, "{name}: {v}");
        assert!(v["ops"].as_u64().unwrap() > 30, "{name}: {v}");
        assert_eq!(out.status.code(), Some(if ok { 0 } else { 1 }), "{name}");
    }
    let out = run(&["history", "check", &data("c10-bad"), "--model", "kv"]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("NOT linearizable")
            && stdout.contains("key \"0\": no order places process 8's :get (invoked on line 158)"),
        "{stdout}"
    );
}

#[test]
fn a_file_that_is_not_a_history_gets_an_error_naming_it() {
    let readme = format!("{}/../../README.md", env!("CARGO_MANIFEST_DIR"));
    let out = run(&["history", "check", &readme, "--model", "register"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("README.md: the history has no `jepsen.util` lines"), "{stderr}");
    // A kv history checked as a register names the line and the model.
    let out = run(&["history", "check", &data("c01-ok"), "--model", "register"]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("line 1: the register model knows :read, :write and :cas, not :append"), "{stderr}");
}

#[test]
fn the_benchmark_checks_every_generated_history_as_linearizable() {
    let out = run(&["bench", "history", "--repeat", "1", "--ops", "2000", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["ops"], 2000);
    assert!(rows.iter().all(|r| r["check_ms"].as_f64().unwrap() > 0.0 && r["read_ms"].as_f64().unwrap() > 0.0));
}

#[test]
fn a_write_skew_is_named_with_its_cycle() {
    let dir = temp_dir("history-skew");
    let file = dir.join("skew.edn");
    std::fs::write(
        &file,
        "{:process 0, :type :invoke, :f :txn, :value [[:r :x nil] [:r :y nil] [:append :x 1]]}
{:process 1, :type :invoke, :f :txn, :value [[:r :x nil] [:r :y nil] [:append :y 1]]}
{:process 0, :type :ok, :f :txn, :value [[:r :x nil] [:r :y nil] [:append :x 1]]}
{:process 1, :type :ok, :f :txn, :value [[:r :x nil] [:r :y nil] [:append :y 1]]}
{:process 2, :type :invoke, :f :txn, :value [[:r :x nil] [:r :y nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r :x [1]] [:r :y [1]]]}
",
    )
    .unwrap();
    let out = run(&["history", "check", file.to_str().unwrap(), "--model", "list-append", "--json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((v["serializable"].as_bool(), v["anomaly"].as_str()), (Some(false), Some("G2")), "{v}");
    assert_eq!(v["cycle"].as_array().unwrap().len(), 2);
}
