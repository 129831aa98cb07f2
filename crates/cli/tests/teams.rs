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
    for f in ["runs.csv", "summary.csv", "election.csv", "messages.svg", "reaction.svg", "fragile.svg", "election.svg"]
    {
        let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f}: {len} bytes");
    }
    let runs = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
    // 3 sizes × 2 seeds × 3 algorithms, then 5 fractions × 2 seeds × 3,
    // and team formation with ε = 1 − fragile at the 4 fractions above 0.
    assert_eq!(runs.lines().count(), 1 + 18 + 30 + 8);
    assert_eq!(runs.lines().filter(|l| l.starts_with("team formation (ε = 1 − fragile),32,")).count(), 8);
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(summary.contains("# fit: messages per token ≈"), "{summary}");
    assert!(std::fs::read_to_string(dir.join("messages.svg")).unwrap().contains("<svg"));

    // The same sweep as three shards (a batch job array), merged: the same files.
    let sharded = temp_dir("teams-sweep-sharded");
    let args = |shard: &str| {
        let mut a = vec!["teams", "sweep", "--n-from", "16", "--n-to", "64", "--seeds", "2", "--fragile-n", "32"];
        a.extend(["--out", sharded.to_str().unwrap(), "--shard", shard].iter().map(|s| &**s));
        run(&a)
    };
    for shard in ["2/3", "0/3"] {
        assert!(args(shard).status.success());
    }
    let (_, stderr) = text(&run(&["teams", "merge", sharded.to_str().unwrap()]));
    assert!(stderr.contains("jobs missing") && stderr.contains("a shard did not finish"), "{stderr}");
    assert!(args("1/3").status.success());
    let out = run(&["teams", "merge", sharded.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    for f in ["runs.csv", "summary.csv", "election.csv"] {
        let a = std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(
            a,
            std::fs::read_to_string(sharded.join(f)).unwrap(),
            "{f} differs between one run and three shards"
        );
    }
    // A shard of another sweep is refused.
    let other = temp_dir("teams-sweep-other");
    let o = run(&[
        "teams",
        "sweep",
        "--n-from",
        "16",
        "--n-to",
        "32",
        "--seeds",
        "1",
        "--fragile-n",
        "32",
        "--out",
        other.to_str().unwrap(),
        "--shard",
        "0/3",
    ]);
    assert!(o.status.success());
    std::fs::copy(other.join("shard-0-of-3.jsonl"), sharded.join("shard-0-of-3.jsonl")).unwrap();
    let (_, stderr) = text(&run(&["teams", "merge", sharded.to_str().unwrap()]));
    assert!(stderr.contains("a shard of another sweep"), "{stderr}");
    let (_, stderr) = text(&run(&["teams", "sweep", "--out", "x", "--shard", "3/3"]));
    assert!(stderr.contains("expected I/N with 0 ≤ I < N"), "{stderr}");
}

fn teams_at(http: std::net::SocketAddr) -> Option<u64> {
    agora_net::probe::get_json(http, "/status").ok()?["protocol"]["teams"].as_u64()
}

fn inject(http: std::net::SocketAddr, token: &str) {
    let (code, body) = agora_net::probe::request_with_token(
        http,
        "POST",
        "/input",
        Some(r#"{"Inject": 1}"#),
        Some(token),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 202, "{body}");
}

/// 16 node processes over TCP form teams from tokens injected over HTTP; a
/// node is killed between teams (at a quiescent time: no token anywhere,
/// nothing in flight) and the others go on forming teams.
#[test]
fn sixteen_processes_form_teams_over_tcp_and_survive_a_kill() {
    use std::time::{Duration, Instant};
    let dir = temp_dir("teams-tcp");
    let a = free_addrs(32);
    let mut file = String::from("protocol = \"teams\"\n[params]\nk = 3\ngraph_seed = 7\n");
    for i in 0..16 {
        file += &format!("\n[[node]]\nname = \"n{i}\"\nlisten = \"{}\"\nhttp = \"{}\"\n", a[2 * i], a[2 * i + 1]);
    }
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    let mut nodes: Vec<_> = (0..16).map(|i| spawn_node(&config, &format!("n{i}"))).collect();
    let tok = token(&config);
    let http = |i: usize| a[2 * i + 1];
    let start = Instant::now();
    while !(0..16).all(|i| teams_at(http(i)).is_some()) {
        assert!(start.elapsed() < Duration::from_secs(20), "nodes did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let total = |live: &[usize]| live.iter().map(|&i| teams_at(http(i)).unwrap_or(0)).sum::<u64>();
    let wait_for = |live: &[usize], want: u64| {
        let start = Instant::now();
        while total(live) < want {
            assert!(start.elapsed() < Duration::from_secs(30), "{} of {want} teams", total(live));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let all: Vec<usize> = (0..16).collect();
    for i in 0..6 {
        inject(http(i), &tok);
    }
    wait_for(&all, 2);
    // Quiescent now: no tokens left (6 = 2 teams of 3), let in-flight
    // status updates drain, then kill n15 outright.
    std::thread::sleep(Duration::from_millis(300));
    let before = teams_at(http(15)).unwrap();
    nodes[15].kill().unwrap();
    nodes[15].wait().unwrap();
    let live: Vec<usize> = (0..15).collect();
    for i in 6..12 {
        inject(http(i), &tok);
    }
    wait_for(&live, 4 - before);
    assert_eq!(total(&live) + before, 4, "exactly 4 teams of 3 from 12 tokens");
    for (i, mut n) in nodes.into_iter().enumerate() {
        if i != 15 {
            drop(n.stdin.take());
            assert!(n.wait().unwrap().success());
        }
    }
}

#[test]
fn applications_run_from_the_command_line() {
    let out = run(&["teams", "match", "--n", "64", "--marked", "9", "--fragile", "0.3", "--seed", "4"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pairs"].as_array().unwrap().len(), 4);
    let out = run(&["teams", "matchmaking", "--n", "64", "--servers", "4", "--players", "10"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["matches"].as_array().unwrap().len(), 5);
    let out = run(&["teams", "dtc", "--n", "32", "--w", "3", "--triggers", "10", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["alarms"].as_array().unwrap().len(), 3);
    // By default every run must elect exactly one leader.
    let out = run(&["teams", "le", "--n", "256", "--seeds", "5", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success_rate"].as_f64(), Some(1.0));
    // Too few candidates (c = 0.5) fail often: the command says so and exits 1,
    // unless told how many failures to accept.
    let weak = ["teams", "le", "--n", "64", "--c", "0.5", "--seeds", "20"];
    let out = run(&weak);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("below --min-success 1; failed seeds:"), "{}", text(&out).1);
    let out = run(&[&weak[..], &["--min-success", "0.2"]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    // Termination detection: every candidate of every election decided.
    for e in v["elections"].as_array().unwrap() {
        assert_eq!(e["undecided"], 0, "{e}");
    }
    let out = run(&["teams", "vtf", "--n", "64", "--sizes", "2,1,3", "--tokens", "60", "--seeds", "3", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 6, "3 seeds × (super-tokens, direct)");
    for r in runs {
        assert_eq!(r["safe"], true, "{r}");
        assert_eq!(r["teams_formed"], r["teams_possible"], "{r}");
    }
    let out = run(&["teams", "vtf", "--n", "64", "--sizes", "2,0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--sizes: colour 1 has team size 0"), "{}", text(&out).1);
}
