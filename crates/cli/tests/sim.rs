//! `agora sim` and `agora replay` as a user runs them.

mod common;
use common::*;

fn scenario_path() -> String {
    format!("{}/../../scenarios/broadcast.toml", env!("CARGO_MANIFEST_DIR"))
}

fn sim_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn reference_scenario_json_has_the_promised_fields_and_is_deterministic() {
    let p = scenario_path();
    let a = sim_json(&["sim", &p, "--json"]);
    for field in ["events", "messages_by_kind", "sim_time", "wall_time_s", "trace_hash"] {
        assert!(!a[field].is_null(), "missing {field}: {a}");
    }
    assert_eq!(a["outcome"]["all_delivered"], true, "{a}");
    assert!(a["invariant_violation"].is_null());
    assert!(a["dropped"]["partition"].as_u64().unwrap() > 0 && a["dropped"]["crashed"].as_u64().unwrap() > 0);
    let b = sim_json(&["sim", &p, "--json"]);
    assert_eq!(a["trace_hash"], b["trace_hash"], "same seed, same trace, across processes");
    assert_eq!(a["events"], b["events"]);
    let c = sim_json(&["sim", &p, "--json", "--seed", "8"]);
    assert_ne!(a["trace_hash"], c["trace_hash"]);
}

#[test]
fn readable_summary_by_default() {
    let (stdout, _) = text(&run(&["sim", &scenario_path()]));
    assert!(stdout.contains("invariants held after every event"), "{stdout}");
    assert!(stdout.contains("trace hash"));
}

#[test]
fn trace_replays_identically_and_tampering_is_found() {
    let dir = temp_dir("trace");
    let trace = dir.join("t.jsonl");
    let out = run(&["sim", &scenario_path(), "--trace", trace.to_str().unwrap(), "--seed", "3"]);
    assert!(out.status.success());
    let (stdout, stderr) = text(&run(&["replay", trace.to_str().unwrap()]));
    assert!(stdout.contains("identical"), "{stdout}{stderr}");

    // Change one delivered value in the middle of the trace.
    let text_ = std::fs::read_to_string(&trace).unwrap();
    let mut lines: Vec<String> = text_.lines().map(String::from).collect();
    let i = lines.iter().position(|l| l.contains("\"ev\":\"deliver\"") && l.contains("\"value\":")).unwrap() + 100;
    let i = (i..lines.len()).find(|&j| lines[j].contains("\"value\":")).unwrap();
    lines[i] = lines[i].replacen("\"value\":", "\"value\":1", 1);
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let out = run(&["replay", trace.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("t.jsonl:{}", i + 1)) && stderr.contains("diverges"), "{stderr}");

    // Not a trace at all.
    std::fs::write(&trace, "hello\n").unwrap();
    let (_, stderr) = text(&run(&["replay", trace.to_str().unwrap()]));
    assert!(stderr.contains("t.jsonl:1: not an agora trace header"), "{stderr}");
}

#[test]
fn bad_scenarios_name_file_line_and_field() {
    let dir = temp_dir("badscenario");
    let base = "protocol = \"broadcast\"\nnodes = 4\n[params]\ncount = 3\n";
    let cases: &[(&str, &str, &str)] = &[
        // (text appended to the base, expected location, expected words)
        ("[network]\nloss = \"lots\"\n", ":6:", "network.loss"),
        ("[network]\nloss = 1.5\n", ":6", "not a probability"),
        ("[network]\ndelay = { model = \"warp\" }\n", ":6", "warp"),
        ("[network]\ndelay = { model = \"uniform\", min = \"5ms\", max = \"1ms\" }\n", ":6", "above max"),
        ("[[fault]]\nkind = \"crash\"\nat = \"1s\"\nnode = 9\n", ":5", "fault[0].node"),
        ("[[fault]]\nkind = \"crash\"\nat = \"soon\"\nnode = 1\n", ":7", "fault[0].at"),
        (
            "[[fault]]\nkind = \"crash\"\nat = \"1s\"\nnode = 1\nrate = 0.5\n",
            ":5",
            "fault[0].rate: a crash fault takes only at, node",
        ),
        ("[[fault]]\nkind = \"omission\"\nnode = 1\n", ":5", "fault[0].rate: an omission fault needs `rate`"),
        ("[[fault]]\nkind = \"fragile\"\nat = \"1s\"\nnode = 1\n", ":5", "not declared in `fragile`"),
        ("[[fault]]\nkind = \"partition\"\nat = \"1s\"\ngroups = [[0, 1], [1, 2]]\n", ":5", "two groups"),
        ("speed = 3\n", ":5", "unknown field `speed`"),
    ];
    for (i, (extra, at, words)) in cases.iter().enumerate() {
        let f = dir.join(format!("s{i}.toml"));
        std::fs::write(&f, format!("{base}{extra}")).unwrap();
        let out = run(&["sim", f.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(stderr.contains(&format!("s{i}.toml{at}")), "case {i} names the line: {stderr}");
        assert!(stderr.contains(words), "case {i} says {words:?}: {stderr}");
    }
    let f = dir.join("p.toml");
    std::fs::write(&f, "protocol = \"broadcast\"\nnodes = 4\n[params]\norigins = [0, 9]\n").unwrap();
    let (_, stderr) = text(&run(&["sim", f.to_str().unwrap()]));
    assert!(stderr.contains("p.toml:4") && stderr.contains("params.origins[1]"), "{stderr}");
    std::fs::write(&f, "protocol = \"gossip\"\nnodes = 4\n").unwrap();
    let (_, stderr) = text(&run(&["sim", f.to_str().unwrap()]));
    assert!(stderr.contains("unknown protocol \"gossip\"") && stderr.contains("broadcast"), "{stderr}");
    let (_, stderr) = text(&run(&["sim", "/nonexistent.toml"]));
    assert!(stderr.contains("cannot read /nonexistent.toml"), "{stderr}");
}

/// Broadcast and a heartbeat detector composed on one node: per-service
/// counts, the detector's suspicion of the crashed node routed to
/// broadcast (which skipped retransmissions to it), and delivery to all.
#[test]
fn composed_services_report_per_service_and_route_suspicions_locally() {
    let path = format!("{}/../../scenarios/monitored.toml", env!("CARGO_MANIFEST_DIR"));
    let out = run(&["sim", &path, "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let by_service = &v["messages_by_service"];
    assert!(
        by_service["broadcast"].as_u64().unwrap() > 0 && by_service["heartbeat"].as_u64().unwrap() > 0,
        "{by_service}"
    );
    assert_eq!(
        by_service["broadcast"].as_u64().unwrap() + by_service["heartbeat"].as_u64().unwrap(),
        v["messages_sent"].as_u64().unwrap()
    );
    assert!(
        v["service_counters"]["heartbeat"]["suspicions"].as_u64().unwrap() >= 15,
        "every live node suspected node 5: {}",
        v["service_counters"]
    );
    assert!(
        v["service_counters"]["broadcast"]["retransmit_skipped_suspected"].as_u64().unwrap() > 0,
        "{}",
        v["service_counters"]
    );
    assert_eq!(v["outcome"]["all_delivered"], true, "{}", v["outcome"]);
    assert_eq!(v["invariant_violation"], serde_json::Value::Null);
}

/// A cluster file given to `agora sim`, or a scenario to `agora cluster up`
/// or `agora node`, gets an error naming the command it belongs to.
#[test]
fn a_file_of_the_other_kind_names_its_command() {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let cluster = format!("{root}/scenarios/cluster.toml");
    let scenario = format!("{root}/scenarios/broadcast.toml");
    let out = run(&["sim", &cluster]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("is a cluster file") && err.contains("agora cluster up"), "{err}");
    let out = run(&["node", "--config", &scenario, "--id", "n0"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("is a scenario") && err.contains("agora sim"), "{err}");
}

/// `agora cluster up` runs a scenario's nodes as real processes: the same
/// file as `agora sim`, on loopback ports from --base-port, for its `until`,
/// carrying out its fault plan (SIGKILL and restart, the fault layer over
/// HTTP, inputs) and naming the entries real processes cannot take.
#[test]
fn cluster_up_runs_a_scenario_and_its_fault_plan_as_real_processes() {
    let src = std::fs::read_to_string(format!("{}/../../scenarios/edge-core-cloud.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let params = &src[src.find("[params]").unwrap()..src.find("# The fault plan").unwrap()];
    let scenario = format!(
        "protocol = \"telecom\"\nnodes = 5\nuntil = \"6s\"\n[network]\nloss = 0.01\n{params}\n\
         [[fault]]\nkind = \"crash\"\nat = \"1s\"\nnode = 3\n\
         [[fault]]\nkind = \"recover\"\nat = \"3s\"\nnode = 3\n\
         [[fault]]\nkind = \"partition\"\ngroups = [[1]]\nat = \"1500ms\"\nheal = \"4s\"\n\
         [[fault]]\nkind = \"omission\"\nlink = [0, 2]\nrate = 0.5\n\
         [[input]]\nat = \"1s\"\nnode = 2\nvalue = {{ server = {{ Byzantine = \"corrupt\" }} }}\n"
    );
    let dir = temp_dir("cluster-scenario");
    let path = dir.join("short.toml");
    std::fs::write(&path, scenario).unwrap();
    let mut last = String::new();
    for _ in 0..3 {
        // Ten consecutive ports from a free one: retried if one is taken.
        let base = free_addrs(1)[0].port().min(60_000).to_string();
        let out = run(&["cluster", "up", path.to_str().unwrap(), "--base-port", &base]);
        let (stdout, stderr) = text(&out);
        if stderr.contains("is in use") {
            last = stderr;
            continue;
        }
        assert!(out.status.success(), "{stdout}{stderr}");
        for line in [
            // The links' one-way delays (half the RTTs, less the jitter) and the loss, from time 0.
            // Nodes go by the topology's names.
            "t = 0.0 s: PUT /faults on Cloud1: 4 links, 9.90–13.50 ms, dropping toward Edge1 0.01, Edge2 0.01, Core1 0.01, Core2 0.01",
            // Link omission: Edge1 → Core1 loses half, on top of the 1 % loss.
            "t = 0.0 s: PUT /faults on Edge1: 4 links, 3.60–13.50 ms, dropping toward Edge2 0.01, Core1 0.505, Core2 0.01, Cloud1 0.01",
            "t = 1.0 s: killed Core2 (SIGKILL)",
            "t = 1.0 s: POST /input on Core1: {\"server\":{\"Byzantine\":\"corrupt\"}}",
            "t = 1.5 s: PUT /faults on Edge2: cut off from Edge1 Core1 Core2 Cloud1; 4 links",
            // A restarted process gets its fault layer back.
            "t = 3.0 s: restarted Core2; PUT /faults on Core2: cut off from Edge2; 4 links",
            "t = 4.0 s: PUT /faults on Edge2: 4 links, 3.60–13.50 ms",
        ] {
            assert!(stderr.contains(line), "{line:?} missing: {stderr}");
        }
        assert!(!stderr.contains("not applied on real processes"), "{stderr}");
        // The real run's failures, matched with the nodes' detection logs:
        // Core2's crash and Edge2's isolation are found well within the run.
        let detection = |node: &str, kind: &str| -> f64 {
            let row = stdout
                .lines()
                .find(|l| l.split_whitespace().take(2).eq([node, kind]))
                .unwrap_or_else(|| panic!("no {node} {kind} row: {stdout}"));
            row.split_whitespace().nth(4).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("undetected: {row}"))
        };
        assert!(detection("Core2", "crash") < 1.0, "{stdout}");
        assert!(detection("Edge2", "partition") < 1.5, "{stdout}");
        assert!(stdout.contains("Core1    byzantine"), "the Byzantine turn is reported: {stdout}");
        // Every node reports in a line of its own, by name: no raw JSON.
        for name in ["Edge1", "Edge2", "Core1", "Core2", "Cloud1"] {
            let row = stdout.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{stdout}"));
            assert!(row.contains(" outputs; served "), "{row}");
        }
        assert!(stdout.lines().all(|l| l.len() < 300), "{stdout}");
        let core1 = stdout.lines().find(|l| l.starts_with("Core1 ")).unwrap();
        assert!(core1.contains("Byzantine since 1."), "the turn at 1 s shows on Core1's line: {core1}");
        // The same request summary as the simulator's.
        assert!(
            stdout.contains("% of those ended)") && stdout.contains("p99") && stdout.contains("failed by "),
            "{stdout}"
        );
        return;
    }
    panic!("no free ports: {last}");
}

/// `cluster up --history DIR` on a fault-free run of the default
/// topology: every node logs its outputs, and when the cluster stops each
/// group's client history is written as EDN and checked — the strong
/// group's linearizable on real processes, as in the simulator.
#[test]
fn cluster_up_writes_and_checks_the_real_runs_histories() {
    let src = std::fs::read_to_string(format!("{}/../../scenarios/edge-core-cloud.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let params = &src[src.find("[params]").unwrap()..src.find("# The fault plan").unwrap()];
    let dir = temp_dir("cluster-history");
    let path = dir.join("quiet.toml");
    std::fs::write(&path, format!("protocol = \"telecom\"\nnodes = 5\nuntil = \"4s\"\n{params}")).unwrap();
    let history = dir.join("history");
    let mut last = String::new();
    for _ in 0..3 {
        let base = free_addrs(1)[0].port().min(60_000).to_string();
        let out = run(&[
            "cluster",
            "up",
            path.to_str().unwrap(),
            "--base-port",
            &base,
            "--history",
            history.to_str().unwrap(),
        ]);
        let (stdout, stderr) = text(&out);
        if stderr.contains("is in use") {
            last = stderr;
            continue;
        }
        assert!(out.status.success(), "{stdout}{stderr}");
        let line = stdout.lines().find(|l| l.starts_with("histories")).unwrap_or_else(|| panic!("{stdout}"));
        let strong =
            line.split("; ").find(|g| g.contains("transactions (strong, ")).unwrap_or_else(|| panic!("{line}"));
        let ops: u64 = strong.split(", ").nth(1).and_then(|s| s.split(' ').next()?.parse().ok()).unwrap();
        assert!(ops > 100 && strong.contains("): linearizable"), "{line}");
        for g in ["transactions", "rpc", "load_balancer", "analytics"] {
            let file = history.join(format!("{g}.edn"));
            assert!(stderr.contains(&format!("history: {}", file.display())), "{stderr}");
            let edn = std::fs::read_to_string(&file).unwrap();
            assert!(edn.lines().count() > 100 && edn.contains(":type :invoke"), "{g}: {edn:.300}");
        }
        // The files are what `agora history check` reads.
        let check = history.join("transactions.edn");
        let out = run(&["history", "check", check.to_str().unwrap(), "--model", "kv", "--format", "edn"]);
        assert!(out.status.success(), "{:?}", text(&out));
        // A protocol without client data says so before anything runs.
        let broadcast = format!("{}/../../scenarios/cluster.toml", env!("CARGO_MANIFEST_DIR"));
        let out = run(&["cluster", "up", &broadcast, "--history", history.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success() && stderr.contains("keeps no client data"), "{stderr}");
        return;
    }
    panic!("no free ports: {last}");
}

/// Runs built in code (`teams run`, `alloc sim`) are scenarios too: their
/// traces embed the scenario and replay identically (the alloc trace carries
/// floats, which must survive the comparison exactly).
#[test]
fn runs_built_by_commands_trace_and_replay() {
    let dir = temp_dir("built-runs");
    let root = env!("CARGO_MANIFEST_DIR");
    let cases: [(&str, Vec<String>); 2] = [
        (
            "teams.jsonl",
            ["teams", "run", "--n", "120", "--tokens", "30", "--fragile", "0.2", "--adversary", "load"]
                .map(String::from)
                .to_vec(),
        ),
        (
            "alloc.jsonl",
            vec![
                "alloc".into(),
                "sim".into(),
                "--instance".into(),
                format!("{root}/../../scenarios/alloc-instance.json"),
                "--faults".into(),
                "crash:P1@40ms,restart:P1@300ms".into(),
            ],
        ),
    ];
    for (file, args) in cases {
        let trace = dir.join(file);
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--trace", trace.to_str().unwrap()]);
        let out = run(&args);
        let (stdout, stderr) = text(&out);
        let hash = stdout.lines().find(|l| l.starts_with("trace hash")).unwrap_or_else(|| panic!("{stdout}{stderr}"));
        let hash = hash.split_whitespace().last().unwrap();
        let (stdout, stderr) = text(&run(&["replay", trace.to_str().unwrap()]));
        assert!(stdout.contains("identical") && stdout.contains(hash), "{file}: {stdout}{stderr}");
    }
}

#[test]
fn inputs_are_checked_against_the_protocol() {
    let dir = temp_dir("inputs");
    let base = "protocol = \"teams\"\nnodes = 8\n[network]\ndelay = { model = \"async\", unit = \"1ms\" }\nfifo = true\n[params]\nk = 2\n";
    let ok = dir.join("ok.toml");
    let two = "[[input]]\nat = \"1ms\"\nnode = 3\nvalue = { Inject = 1 }\n[[input]]\nat = \"2ms\"\nnode = 5\nvalue = { Inject = 1 }\n";
    std::fs::write(&ok, format!("{base}{two}")).unwrap();
    let v = sim_json(&["sim", ok.to_str().unwrap(), "--json"]);
    assert_eq!(v["inputs"], 2, "{v}");
    assert_eq!(v["outcome"]["teams_formed"], 1, "{v}");
    for (bad, needle) in [
        ("[[input]]\nat = \"1ms\"\nnode = 9\nvalue = { Inject = 1 }\n", "input[0].node"),
        ("[[input]]\nat = \"1ms\"\nnode = 1\nvalue = { Nope = 1 }\n", "input[0].value"),
    ] {
        let p = dir.join("bad.toml");
        std::fs::write(&p, format!("{base}{bad}")).unwrap();
        let out = run(&["sim", p.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success() && stderr.contains(needle) && stderr.contains("bad.toml:"), "{stderr}");
    }
}

#[test]
fn the_commit_scenario_finishes_every_transaction_and_replays() {
    let p = format!("{}/../../scenarios/commit.toml", env!("CARGO_MANIFEST_DIR"));
    let a = sim_json(&["sim", &p, "--json"]);
    assert!(a["invariant_violation"].is_null(), "{a}");
    let o = &a["outcome"];
    assert_eq!((o["undecided"].as_u64(), o["applied_twice"].as_u64()), (Some(0), Some(0)), "{o}");
    assert!(o["committed"].as_u64().unwrap() > 0);
    assert!(a["faults"]["recoveries"].as_u64().unwrap() == 1 && a["dropped"]["partition"].as_u64().unwrap() > 0, "{a}");
    assert!(a["disk"]["syncs"].as_u64().unwrap() > 20, "the log is synced: {a}");
    let dir = temp_dir("commit-trace");
    let trace = dir.join("t.trace");
    sim_json(&["sim", &p, "--json", "--trace", trace.to_str().unwrap()]);
    let out = run(&["replay", trace.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
}

/// A scenario or cluster file that is a device or a pipe is refused at
/// once, naming the path, not read without end or waited on.
#[test]
fn input_files_that_are_not_regular_files_are_refused() {
    let dir = temp_dir("not-a-file");
    let fifo = dir.join("fifo.toml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for path in ["/dev/zero", fifo.to_str().unwrap()] {
        for args in [vec!["sim", path], vec!["node", "--config", path, "--id", "n0"], vec!["cluster", "up", path]] {
            let out = run(&args);
            let (_, err) = text(&out);
            assert!(
                !out.status.success() && err.contains(&format!("cannot read {path}: not a regular file")),
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn the_pbft_scenario_finishes_replays_and_refuses_too_few_replicas() {
    let p = format!("{}/../../scenarios/pbft.toml", env!("CARGO_MANIFEST_DIR"));
    let a = sim_json(&["sim", &p, "--json"]);
    assert!(a["invariant_violation"].is_null(), "{a}");
    assert_eq!(a["outcome"]["all_done"], true, "{a}");
    let dir = temp_dir("pbft");
    let trace = dir.join("t.trace");
    sim_json(&["sim", &p, "--json", "--trace", trace.to_str().unwrap()]);
    let out = run(&["replay", trace.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    // n = 3 cannot tolerate f = 1: refused, naming n, f and the line.
    let src = std::fs::read_to_string(&p).unwrap().replace("replicas = 4", "replicas = 3\nf = 1");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, src).unwrap();
    let out = run(&["sim", bad.to_str().unwrap()]);
    let (_, err) = text(&out);
    assert!(
        !out.status.success() && err.contains("bad.toml:") && err.contains("n = 3") && err.contains("f = 1"),
        "{err}"
    );
}
