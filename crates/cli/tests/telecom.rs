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

fn scenario() -> String {
    format!("{}/../../scenarios/edge-core-cloud.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_default_scenario_detects_every_failure_mode_and_reports() {
    let v = json_ok(&["sim", &scenario(), "--json"]);
    assert_eq!(v["invariant_violation"], serde_json::Value::Null, "{v}");
    let o = &v["outcome"];
    let failures = o["failures"].as_array().unwrap();
    let kinds: std::collections::BTreeSet<&str> = failures.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["byzantine", "crash", "omission", "partition"].into_iter().collect());
    for f in failures {
        let (injected, detected) = (f["injected_at_s"].as_f64().unwrap(), f["detected_at_s"].as_f64());
        let detected = detected.unwrap_or_else(|| panic!("not detected: {f}"));
        assert!(detected >= injected && detected - injected < 5.0, "{f}");
        if f["kind"] != "partition" {
            assert_ne!(f["detected_by"], f["node"], "a node does not detect itself: {f}");
        }
    }
    // The Byzantine node is caught by the quorum vote, not by heartbeats (it keeps beating).
    let byz = failures.iter().find(|f| f["kind"] == "byzantine").unwrap();
    assert_eq!(byz["how"], "byzantine", "{byz}");
    // Edge1 is the RPC primary: its crash moves RPC to the next member.
    let failovers = o["failovers"].as_array().unwrap();
    assert!(
        failovers.iter().any(|f| f["service"] == "rpc" && f["from"] == "Edge1" && f["to"] == "Edge2"),
        "{failovers:?}"
    );
    let r = &o["requests"];
    let (sent, ok) = (r["issued"].as_u64().unwrap(), r["succeeded"].as_u64().unwrap());
    assert!(sent > 5_000 && ok > sent / 2, "{r}");
    // Every request accounted for: by cause, in flight, or ok; serviceable ones judged.
    let failed: u64 = r["failed_by_cause"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sent, ok + failed + r["in_flight_at_end"].as_u64().unwrap(), "{r}");
    assert!(r["serviceable"].as_u64().unwrap() > 0 && r["serviceable_succeeded"].as_u64().unwrap() > 0, "{r}");
    assert!(r["windows"].as_array().unwrap().len() > 5 && r["groups"].as_array().unwrap().len() == 4, "{r}");
    assert!(r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap());
    let lb = &o["load_balancing"];
    let jain = lb["load_balance_index"].as_f64().unwrap();
    assert!(jain > 0.2 && jain <= 1.0, "{lb}");
    assert_eq!(o["bottlenecks"]["ranking"].as_array().unwrap().len(), 5);
    // The same seed, the same run.
    let again = json_ok(&["sim", &scenario(), "--json"]);
    assert_eq!(v["trace_hash"], again["trace_hash"]);
    // The text report has the sections.
    let (stdout, _) = text(&run(&["sim", &scenario()]));
    for section in ["bottlenecks", "failure", "failover", "requests", "serviceable", "failed by", "balancing"] {
        assert!(stdout.contains(section), "{section} missing: {stdout}");
    }
}

#[test]
fn a_telecom_scenario_names_its_mistakes() {
    let dir = temp_dir("telecom-scenario");
    let src = std::fs::read_to_string(scenario()).unwrap();
    let cases = [
        (
            src.replace(
                "replicas = [\"Core2\", \"Cloud1\", \"Edge1\"]",
                "replicas = [\"Core2\", \"Cloud9\", \"Edge1\"]",
            ),
            "params.group[0].replicas[1]: no node \"Cloud9\"",
        ),
        (
            // The seed's three members for a strong group with Byzantine-mode Core1.
            src.replace("replicas = [\"Core2\", \"Cloud1\", \"Edge1\"]", "replicas = [\"Core2\", \"Cloud1\"]"),
            "(transactions): a strong group with 1 Byzantine member(s) (Core1) needs at least 3f + 1 = 4 members",
        ),
        (src.replace("nodes = 5", "nodes = 6"), "params.node: 5 nodes are described, but the scenario runs 6"),
        (src.replace("loss = 0.01", "loss = 0.01\ndelay = { model = \"constant\", delay = \"1ms\" }"), "network.delay"),
        (src.replace("threshold = 8.0", "threshold = -1.0"), "params.detector.threshold"),
        (src.replace("keys = 100 ", "keys = 0 "), "params.workload.keys: 0 is not between 1 and"),
        (
            src.replace("key_distribution = \"uniform\"", "key_distribution = { zipf = -1.0 }"),
            "params.workload.key_distribution.zipf",
        ),
        (src.replace("cas = 0.1,", "cas = -0.1,"), "params.workload.ops.cas"),
        (src.replace("rpc = 0.4,", "rpc = 0.5,"), "params.workload.mix: the shares sum to 1.1, not 1"),
        (src.replace("cas = 0.1,", "cas = 0.2,"), "params.workload.ops: the shares sum to 1.1"),
    ];
    for (i, (text_, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text_).unwrap();
        let out = run(&["sim", path.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success() && stderr.contains(want), "case {i}: want {want:?} in {stderr}");
    }
}

/// What a scenario asks for that cannot happen is said, not dropped: faults
/// and inputs after `until`, a node no link reaches; a run of no time is
/// refused.
#[test]
fn a_telecom_scenario_is_warned_of_what_will_not_happen() {
    let dir = temp_dir("telecom-warnings");
    let mut src = std::fs::read_to_string(scenario()).unwrap().replace("until = \"30s\"", "until = \"12s\"");
    for core in ["Core1", "Core2"] {
        let link = format!("[[params.link]]\na = \"{core}\"\nb = \"Cloud1\"\nrtt_ms = 22\n");
        assert!(src.contains(&link));
        src = src.replace(&link, "");
    }
    let path = dir.join("late.toml");
    std::fs::write(&path, &src).unwrap();
    let v = json_ok(&["sim", path.to_str().unwrap(), "--json"]);
    let warnings: Vec<&str> = v["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    let late_faults = warnings.iter().filter(|w| w.contains("is not before until (12s): this fault never happens"));
    assert_eq!(late_faults.count(), 4, "{warnings:#?}");
    // The input entry sits among the faults: its line is the file's.
    let line = src.lines().position(|l| l.contains("Core1 turns Byzantine")).unwrap() + 1;
    assert!(
        warnings.iter().any(|w| w.contains(&format!("late.toml:{line}:1: input[0].at: 1 of 1 inputs"))),
        "{warnings:#?}"
    );
    assert!(warnings.iter().any(|w| w.contains("params.node[4]: Cloud1 has no link")), "{warnings:#?}");
    let out = run(&["sim", path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(stderr.matches("warning: ").count(), 6, "{stderr}");

    std::fs::write(&path, src.replace("until = \"12s\"", "until = \"0s\"")).unwrap();
    let out = run(&["sim", path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success() && stderr.contains("until: must be longer than zero"), "{stderr}");
}

#[test]
fn the_detector_meets_its_targets_at_five_percent_loss() {
    let v = json_ok(&["telecom", "detector", "--thresholds", "4,8", "--seeds", "20", "--hours", "0.2", "--json"]);
    let rows = v.as_array().unwrap();
    let at = |t: f64| rows.iter().find(|r| r["threshold"].as_f64() == Some(t)).unwrap();
    let (low, eight) = (at(4.0), at(8.0));
    assert_eq!(eight["missed"], 0, "{eight}");
    assert!(eight["detection_p99_s"].as_f64().unwrap() <= 1.0, "{eight}");
    assert!(eight["false_per_node_hour"].as_f64().unwrap() <= 1.0, "{eight}");
    // A lower threshold detects sooner: the curve has a slope.
    assert!(low["detection_p50_s"].as_f64().unwrap() < eight["detection_p50_s"].as_f64().unwrap(), "{v}");
}

#[test]
fn p2c_peak_ewma_routes_around_a_slow_backend_and_retries_stay_in_budget() {
    let v = json_ok(&[
        "telecom",
        "balance",
        "--strategies",
        "round_robin,p2c_peak_ewma",
        "--seeds",
        "2",
        "--secs",
        "5",
        "--json",
    ]);
    let rows = v.as_array().unwrap();
    let row = |case: &str, s: &str| rows.iter().find(|r| r["case"] == case && r["strategy"] == s).unwrap();
    let ratio = |r: &serde_json::Value| r["p99_over_healthy"].as_f64().unwrap();
    assert!(ratio(row("one_slow", "p2c_peak_ewma")) <= 1.3, "{v}");
    assert!(ratio(row("one_slow", "round_robin")) > 3.0, "round robin keeps feeding the slow one: {v}");
    for s in ["round_robin", "p2c_peak_ewma"] {
        let dead = row("one_dead", s);
        assert!(dead["attempts_per_request"].as_f64().unwrap() <= 1.2, "{dead}");
        assert!(dead["success_ratio"].as_f64().unwrap() >= 0.999, "{dead}");
    }
}

#[test]
fn a_generated_topology_runs() {
    let dir = temp_dir("telecom-generate");
    let out = run(&["telecom", "generate", "--edges", "40", "--cores", "8", "--clouds", "2", "--until", "3s"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let path = dir.join("big.toml");
    std::fs::write(&path, stdout).unwrap();
    let v = json_ok(&["sim", path.to_str().unwrap(), "--json"]);
    assert_eq!(v["nodes"], 50);
    assert_eq!(v["invariant_violation"], serde_json::Value::Null);
    let r = &v["outcome"]["requests"];
    assert!(r["succeeded"].as_u64().unwrap() > 0 && r["success_ratio"].as_f64().unwrap() > 0.99, "{r}");
}

#[test]
fn the_seeds_performance_table_is_its_closed_loop_arithmetic() {
    let v = json_ok(&["bench", "telecom", "--secs", "2", "--real-rates", "2000", "--real-secs", "1", "--json"]);
    let total = v["simulated_total_req_per_s"].as_f64().unwrap();
    assert!((total - 42_045.0).abs() / 42_045.0 < 0.01, "{v}");
    assert!((v["plain_avg_ms"].as_f64().unwrap() - 13.4).abs() < 0.05, "{v}");
    assert!((v["weighted_avg_ms"].as_f64().unwrap() - 11.9).abs() < 0.05, "{v}");
    for r in v["simulated"].as_array().unwrap() {
        let (got, seed) = (r["req_per_s"].as_f64().unwrap(), r["seed_req_per_s"].as_f64().unwrap());
        assert!((got - seed).abs() / seed < 0.01, "{r}");
    }
    let frontier: Vec<_> = v["trade_off"].as_array().unwrap().iter().filter(|p| p["on_frontier"] == true).collect();
    assert!(!frontier.is_empty());
    // Real processes, open loop: the offered load is carried, and emulating
    // the links' RTTs (Edge–Core 9–15 ms) shows in the latency.
    let real = v["real"].as_array().unwrap();
    assert_eq!(real.len(), 2, "{v}");
    let (bare, emulated) = (&real[0], &real[1]);
    assert_eq!((bare["rtt_emulated"].as_bool(), emulated["rtt_emulated"].as_bool()), (Some(false), Some(true)));
    for r in real {
        let achieved = r["achieved_rps"].as_f64().unwrap();
        assert!((achieved - 2000.0).abs() < 400.0, "{r}");
        assert!(r["p50_ms"].as_f64().unwrap() <= r["p99_ms"].as_f64().unwrap(), "{r}");
    }
    assert!(emulated["p50_ms"].as_f64().unwrap() > bare["p50_ms"].as_f64().unwrap() + 5.0, "{real:?}");
    // (d) Each strategy alone, reads and writes, simulated and real: every
    // run answered requests, almost none failed, and a quorum write (a read
    // round, then a write round) takes about twice a quorum read.
    let rows = v["strategies"].as_array().unwrap();
    assert_eq!(rows.len(), 10, "{v}");
    let p50 = |strategy: &str, access: &str, how: &str| {
        let r = rows.iter().find(|r| r["strategy"] == strategy && r["access"] == access).unwrap();
        r[how]["p50_ms"].as_f64().unwrap()
    };
    for r in rows {
        for how in ["simulated", "real"] {
            let m = &r[how];
            let (rps, failed) = (m["req_per_s"].as_f64().unwrap(), m["failed"].as_f64().unwrap());
            assert!(rps > 50.0 && failed <= 0.05 * rps, "{how}: {r}");
            assert!(m["p50_ms"].as_f64().unwrap() <= m["p99_ms"].as_f64().unwrap(), "{r}");
        }
    }
    for how in ["simulated", "real"] {
        assert!(p50("quorum", "write", how) > 1.5 * p50("quorum", "read", how), "{how}: {rows:?}");
    }
}

/// Debian's chromium, if installed (CI installs it and sets
/// AGORA_REQUIRE_CHROMIUM, so there the test cannot skip).
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    assert!(
        found.is_some() || std::env::var_os("AGORA_REQUIRE_CHROMIUM").is_none(),
        "AGORA_REQUIRE_CHROMIUM is set but there is no chromium binary"
    );
    found
}

#[test]
fn the_html_report_renders_in_a_headless_browser() {
    let dir = temp_dir("telecom-report");
    let out = run(&["sim", &scenario(), "--report", dir.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 2, "two charts");
    // Everything the terminal summary has.
    assert!(page.contains("id=\"verdict\"") && page.contains("<td>p99 latency</td>"), "the verdict");
    assert!(page.contains("Core1</td><td>byzantine"), "the failures table");
    assert!(page.contains("id=\"accounting\"") && page.contains("<th>below quorum</th>"), "the accounting table");
    assert!(page.contains("<td>transactions</td>") && page.contains("Core2 crashed"), "by group and by window");
    assert!(page.contains("<th>availability % (serviceable ok)</th>"), "each service's availability");
    assert!(page.contains("id=\"nodes\"") && page.contains("<td>Cloud1</td><td>yes</td>"), "the nodes");
    assert!(page.contains("id=\"bottlenecks\"") && page.contains("<tr><td>1</td>"), "the ranking");
    assert!(page.contains("id=\"cascade\"") && page.contains("id=\"failovers\""), "failovers and cascade");
    // The latency CDF on a log axis with its percentiles marked, and every
    // fault shaded for as long as it was on, each in its own lane.
    let latency = &page[page.find("id=\"latency\"").unwrap()..page.find("id=\"throughput\"").unwrap()];
    // Ticks by decade (10, 100): a linear axis over this run's 5–700 ms would tick at 100, 200, ….
    let tick = |v: &str| latency.contains(&format!(">\n{v}\n</text>"));
    assert!(latency.contains("log scale") && tick("10.0") && tick("100.0") && !tick("200.0"), "a log axis");
    for p in ["p50 ", "p95 ", "p99 "] {
        assert!(latency.contains(p), "{p} marked");
    }
    let throughput = &page[page.find("id=\"throughput\"").unwrap()..];
    for band in ["Edge1 crash 3.0–9.0 s", "Core1 byzantine 13.0–30.0 s", "Edge2 partition 24.0–27.0 s"] {
        assert!(throughput.contains(band), "{band} shaded");
    }
    // `--report FILE.html` writes that file (no directory of that name).
    let file = dir.join("run.html");
    assert!(run(&["sim", &scenario(), "--report", file.to_str().unwrap()]).status.success());
    assert!(std::fs::read_to_string(&file).is_ok_and(|p| p.contains("id=\"nodes\"")));
    // A protocol without a report says so.
    let broadcast = format!("{}/../../scenarios/broadcast.toml", env!("CARGO_MANIFEST_DIR"));
    let (_, stderr) = text(&run(&["sim", &broadcast, "--report", dir.to_str().unwrap()]));
    assert!(stderr.contains("the broadcast protocol has no HTML report"), "{stderr}");

    let Some(browser) = chromium() else {
        eprintln!("chromium not installed: the rendering check is skipped");
        return;
    };
    let url = format!("file://{}", dir.join("index.html").display());
    let shot = dir.join("shot.png");
    let headless = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"];
    let dom = std::process::Command::new(browser).args(headless).arg("--dump-dom").arg(&url).output().unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in
        ["verdict", "accounting", "nodes", "bottlenecks", "failures", "failovers", "cascade", "latency", "throughput"]
    {
        assert!(dom.contains(&format!("id=\"{id}\"")), "the browser's DOM lacks {id}: {dom:.400}");
    }
    assert_eq!(dom.matches("<svg").count(), 2, "the browser's DOM lacks the charts: {dom:.400}");
    let status = std::process::Command::new(browser)
        .args(headless)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1000,2400")
        .arg(&url)
        .output()
        .unwrap();
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&status.stderr)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a rendered page, not a blank one ({} bytes)",
        png.len()
    );
}

#[test]
fn sim_writes_each_groups_history_and_the_checker_reads_it() {
    let dir = temp_dir("telecom-history");
    let out = run(&["sim", &scenario(), "--history", dir.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("histories") && stdout.contains("transactions (strong"), "{stdout}");
    for service in ["transactions", "rpc", "load_balancer", "analytics"] {
        let file = dir.join(format!("{service}.edn"));
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        let check = run(&["history", "check", file.to_str().unwrap(), "--model", "kv", "--json"]);
        let (report, err) = text(&check);
        let v: serde_json::Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report} {err}"));
        assert!(v["ops"].as_u64().unwrap() > 100, "{service}: {v}");
        // Exit 0 when linearizable, 1 when not: the verdict and the code agree.
        assert_eq!(check.status.code() == Some(0), v["linearizable"] == true, "{service}: {v}");
    }
    let (_, stderr) = text(&run(&["sim", &scenario().replace("edge-core-cloud", "commit"), "--history", "x"]));
    assert!(stderr.contains("--history: the commit protocol keeps no client data"), "{stderr}");
}
