//! Real node processes over TCP: the reference protocol survives a node
//! killed and restarted; `agora cluster up` starts and stops a cluster.

mod common;
use agora_net::probe;
use common::*;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn delivered(http: SocketAddr) -> Option<u64> {
    probe::get_json(http, "/status").ok()?["protocol"]["delivered"][0]["delivered"].as_u64()
}

fn wait_all(addrs: &[(SocketAddr, SocketAddr)], want: u64, limit: Duration) {
    let start = Instant::now();
    while !addrs.iter().all(|a| delivered(a.1) == Some(want)) {
        let now: Vec<_> = addrs.iter().map(|a| delivered(a.1)).collect();
        assert!(start.elapsed() < limit, "not every node delivered {want} within {limit:?}: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn broadcast_survives_a_node_killed_and_restarted() {
    let dir = temp_dir("kill");
    let (file, addrs) = cluster_file(4, "count = 40\ninterval = \"50ms\"\nretransmit = \"100ms\"\nsync = \"100ms\"");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    let mut nodes: Vec<Child> = (0..4).map(|i| spawn_node(&config, &format!("n{i}"))).collect();

    // Let some values through, then kill n2 outright (SIGKILL: no goodbye).
    let start = Instant::now();
    while delivered(addrs[2].1).unwrap_or(0) < 5 {
        assert!(start.elapsed() < Duration::from_secs(20), "n2 never started delivering");
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes[2].kill().unwrap();
    nodes[2].wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(delivered(addrs[2].1).is_none(), "n2 is down");
    // Restarted without memory, it syncs from sequence 0 and catches up.
    nodes[2] = spawn_node(&config, "n2");
    wait_all(&addrs, 40, Duration::from_secs(30));

    let s = probe::get_json(addrs[2].1, "/status").unwrap();
    assert_eq!(s["outputs"], 40, "the new incarnation delivered all 40 itself");
    for mut n in nodes {
        drop(n.stdin.take());
        assert!(n.wait().unwrap().success(), "nodes stop cleanly when stdin closes");
    }
}

#[test]
fn cluster_up_starts_reports_and_stops_every_node() {
    let dir = temp_dir("up");
    let (file, _) = cluster_file(3, "count = 5\ninterval = \"20ms\"");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    let out = agora().args(["cluster", "up"]).arg(&config).args(["--for", "3s"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for i in 0..3 {
        // One line per node: its name, uptime and outputs.
        assert!(stdout.lines().any(|l| l.starts_with(&format!("n{i} ")) && l.contains("; 5 outputs")), "{stdout}");
    }
    assert!(stderr.contains("cluster stopped"), "{stderr}");
    // The ephemeral keys and token it made are gone with it.
    let run = stderr.split("ephemeral keys in ").nth(1).and_then(|r| r.split(" (removed").next()).expect(&stderr);
    assert!(!std::path::Path::new(run).exists(), "{run} was left behind");
}

#[test]
fn node_with_a_bad_cluster_file_says_what_is_wrong() {
    let dir = temp_dir("badcluster");
    let config = dir.join("cluster.toml");
    std::fs::write(
        &config,
        "protocol = \"broadcast\"\n[params]\ncount = 1\n[[node]]\nname = \"a\"\nlisten = \"not an address\"\n",
    )
    .unwrap();
    let (_, err) = text(&run(&["node", "--config", config.to_str().unwrap(), "--id", "a"]));
    assert!(err.contains("cluster.toml:6") && err.contains("node[0].listen"), "{err}");
    std::fs::write(
        &config,
        "protocol = \"broadcast\"\n[params]\norigins = [7]\n[[node]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (_, err) = text(&run(&["node", "--config", config.to_str().unwrap(), "--id", "a"]));
    assert!(err.contains("params.origins[0]") && err.contains("does not exist"), "{err}");
    std::fs::write(&config, "protocol = \"broadcast\"\n[params]\n[[node]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n")
        .unwrap();
    let (_, err) = text(&run(&["node", "--config", config.to_str().unwrap(), "--id", "zz"]));
    assert!(err.contains("no node is called \"zz\""), "{err}");
    // A file without keys: `agora node` says how to make them.
    let (_, err) = text(&run(&["node", "--config", config.to_str().unwrap(), "--id", "a"]));
    assert!(err.contains("node[0].public_key") && err.contains("agora cluster keys"), "{err}");
    // A key file that is not the listed key's other half.
    let keyed = keyed(&config);
    for secret in ["a.key", "token"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keyed.parent().unwrap().join(secret)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{secret} is readable by its owner only");
    }
    // A token others can read is refused, naming the field and the fix.
    {
        use std::os::unix::fs::PermissionsExt;
        let token = keyed.parent().unwrap().join("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, err) = text(&run(&["node", "--config", keyed.to_str().unwrap(), "--id", "a"]));
        assert!(err.contains("security.token_file") && err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let other = dir.join("other");
    assert!(run(&["cluster", "keys", config.to_str().unwrap(), "--out", other.to_str().unwrap()]).status.success());
    std::fs::copy(other.join("a.key"), keyed.parent().unwrap().join("a.key")).unwrap();
    let (_, err) = text(&run(&["node", "--config", keyed.to_str().unwrap(), "--id", "a"]));
    assert!(err.contains("is not the public half of"), "{err}");
}

#[test]
fn ctrl_c_stops_cluster_up_cleanly() {
    let dir = temp_dir("sigint");
    let (file, addrs) = cluster_file(3, "count = 3\ninterval = \"20ms\"");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    let child =
        agora().args(["cluster", "up"]).arg(&config).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_all(&addrs, 3, Duration::from_secs(20));
    // What a terminal's Ctrl-C sends (to the cluster process; its nodes then
    // see their stdin close).
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cluster stopped") && stdout.lines().any(|l| l.starts_with("n2 ") && l.contains("; 3 outputs")),
        "{stdout}\n{stderr}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(addrs.iter().all(|a| delivered(a.1).is_none()), "every node process is gone");
}

/// Broadcast and a heartbeat detector composed on every node, as real
/// processes over TLS: `/status` shows each service under its name,
/// `/metrics` labels counts by service, a node killed with SIGKILL is
/// suspected by the others, and once restarted it is trusted again and
/// catches up.
#[test]
fn composed_services_over_processes_detect_a_killed_node() {
    let dir = temp_dir("monitored");
    let (file, addrs) = cluster_file(3, "count = 30\ninterval = \"50ms\"\nretransmit = \"100ms\"\nsync = \"100ms\"\n[params.heartbeat]\ninterval = \"50ms\"\ntimeout = \"300ms\"");
    let file = file.replace("protocol = \"broadcast\"", "protocol = \"monitored-broadcast\"");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    let mut nodes: Vec<Child> = (0..3).map(|i| spawn_node(&config, &format!("n{i}"))).collect();
    let status = |i: usize| probe::get_json(addrs[i].1, "/status").ok();
    let suspects = |i: usize| status(i).map(|s| s["protocol"]["heartbeat"]["suspected"].clone());
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("n2 started delivering", &|| {
        status(2).and_then(|s| s["protocol"]["broadcast"]["delivered"][0]["delivered"].as_u64()).unwrap_or(0) >= 3
    });
    let m = probe::request(addrs[0].1, "GET", "/metrics", None, Duration::from_secs(5)).unwrap().1;
    assert!(m.contains("agora_messages_sent_total{service=\"heartbeat\",kind=\"beat\"}"), "{m}");
    assert!(m.contains("agora_messages_sent_total{service=\"broadcast\",kind=\"data\"}"), "{m}");

    nodes[2].kill().unwrap();
    nodes[2].wait().unwrap();
    wait("n0 and n1 suspect the killed n2", &|| (0..2).all(|i| suspects(i) == Some(serde_json::json!([2]))));
    nodes[2] = spawn_node(&config, "n2");
    wait("n2 is trusted again", &|| (0..2).all(|i| suspects(i) == Some(serde_json::json!([]))));
    wait("the restarted n2 caught up", &|| {
        status(2).and_then(|s| s["protocol"]["broadcast"]["delivered"][0]["delivered"].as_u64()) == Some(30)
    });
    for mut n in nodes {
        drop(n.stdin.take());
        assert!(n.wait().unwrap().success());
    }
}

/// The runtime's benchmarks run and measure something real (their times are
/// judged by `agora bench`, not here).
#[test]
fn bench_storage_and_transport_report_beside_their_baselines() {
    let dir = temp_dir("bench-net");
    let out = run(&[
        "bench",
        "storage",
        "--in-flight",
        "1,16",
        "--syncs",
        "100",
        "--repeat",
        "1",
        "--json",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    for row in v.as_array().unwrap() {
        assert!(row["synced_writes"]["per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["fdatasync_baseline"]["per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["synced_writes"]["p99_us"].as_f64().unwrap() >= row["synced_writes"]["p50_us"].as_f64().unwrap());
    }
    // One sync in flight can share a commit with nobody.
    assert_eq!(v[0]["syncs_per_commit"], 1.0);
    let out = run(&["bench", "transport", "--in-flight", "4", "--duration", "300ms", "--repeat", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    assert!(v[0]["tls"]["per_s"].as_f64().unwrap() > 100.0 && v[0]["plain"]["per_s"].as_f64().unwrap() > 100.0, "{v}");
}

/// PBFT on real processes: four replica processes over TLS serve requests,
/// an attacked run keeps going, and a killed primary is replaced (the
/// figures are judged by `agora bench pbft`, not here).
#[test]
fn bench_pbft_measures_real_replicas_a_view_change_and_the_simulator() {
    let out =
        run(&["bench", "pbft", "--clients", "1,2", "--duration", "300ms", "--trials", "1", "--repeat", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", text(&out)));
    let rows = v["real"].as_array().unwrap();
    let settings: Vec<&str> = rows.iter().map(|r| r["setting"].as_str().unwrap()).collect();
    assert_eq!(
        settings,
        ["fault-free", "fault-free", "open loop, half of peak", "equivocating primary", "flooding views"],
        "{v}"
    );
    for r in rows.iter().chain(v["simulated"].as_array().unwrap()) {
        assert!(r["ops_per_s"].as_f64().unwrap() > 10.0, "{r}");
        assert!(r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap(), "{r}");
    }
    assert!(rows[3]["vs_fault_free"].as_f64().unwrap() > 0.0, "{v}");
    for vc in [&v["view_change_ms"], &v["simulated_view_change_ms"]] {
        // A request sent after the kill waits at least for the backups'
        // request timers to run out.
        assert_eq!(vc["trials"], 1, "{vc}");
        assert!(vc["max_ms"].as_f64().unwrap() > 0.5 * vc["timeout_ms"].as_f64().unwrap(), "{vc}");
    }
}

/// The telecom system on real processes: the default scenario's nodes as a
/// cluster on loopback, serving requests; Core2 killed with SIGKILL is
/// flagged by its neighbours' phi-accrual detectors, and the time from the
/// kill to the first flag is measured (several kills, each after a restart).
#[test]
fn telecom_nodes_on_real_processes_detect_a_kill_9() {
    let dir = temp_dir("telecom-kill");
    let (config, https) = telecom_cluster(&dir);
    let http = |i: usize| https[i];
    let status = |i: usize| probe::get_json(http(i), "/status").ok();
    let mut procs: Vec<Child> = (0..5).map(|i| spawn_node(&config, &format!("n{i}"))).collect();
    let wait = |what: &str, limit: Duration, ok: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < limit, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    };
    let served = |i: usize| status(i).and_then(|s| s["protocol"]["server"]["served"].as_u64()).unwrap_or(0);
    wait("Core2 (n3) serves requests from the edge", Duration::from_secs(20), &|| served(3) > 20);
    // Edge1 (n0), Edge2 (n1) and Cloud1 (n4) are Core2's neighbours.
    let flagged = |i: usize| {
        status(i).is_some_and(|s| {
            s["protocol"]["control"]["suspects"].as_array().is_some_and(|a| a.iter().any(|x| x == "Core2"))
        })
    };
    let mut times = Vec::new();
    for round in 0..3 {
        procs[3].kill().unwrap();
        procs[3].wait().unwrap();
        let t = wait("a neighbour flags the killed Core2", Duration::from_secs(10), &|| {
            [0, 1, 4].iter().any(|&i| flagged(i))
        });
        times.push(t.as_secs_f64());
        procs[3] = spawn_node(&config, "n3");
        wait(&format!("round {round}: Core2 is trusted again"), Duration::from_secs(20), &|| {
            [0, 1, 4].iter().all(|&i| !flagged(i))
        });
    }
    eprintln!("kill -9 → first suspicion (s): {times:?}");
    // 100 ms heartbeats, threshold 8: ~0.6 s in the model; real clocks and a
    // loaded machine add scheduling delay, so the bound here is loose.
    assert!(times.iter().all(|&t| t < 3.0), "{times:?}");
    for mut p in procs {
        drop(p.stdin.take());
        let _ = p.wait();
    }
}

/// Debian's prometheus, if installed (CI installs it and sets
/// AGORA_REQUIRE_PROMETHEUS, so there the test cannot skip).
fn prometheus() -> bool {
    let found = std::process::Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("AGORA_REQUIRE_PROMETHEUS").is_none(),
        "AGORA_REQUIRE_PROMETHEUS is set but there is no prometheus binary"
    );
    found
}

#[test]
fn prometheus_scrapes_a_running_cluster_with_its_token() {
    if !prometheus() {
        eprintln!("skipped: no prometheus binary (Debian's `prometheus`)");
        return;
    }
    let dir = temp_dir("prometheus");
    let (mut file, addrs) = cluster_file(3, "count = 5\ninterval = \"20ms\"");
    file += "\n[security]\nprotect_reads = true\n";
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    let nodes: Vec<Child> = (0..3).map(|i| spawn_node(&config, &format!("n{i}"))).collect();

    let scrape = dir.join("prometheus.yml");
    let out = agora()
        .args(["cluster", "prometheus"])
        .arg(keyed(&config))
        .arg("--out")
        .arg(&scrape)
        .args(["--interval", "500ms"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    // Without the token, /metrics is refused: Prometheus must be sending it
    // (asked once the node listens: it may still be starting).
    let start = Instant::now();
    let code = loop {
        match probe::request(addrs[0].1, "GET", "/metrics", None, Duration::from_secs(2)) {
            Ok((code, _)) => break code,
            Err(e) => assert!(start.elapsed() < Duration::from_secs(10), "n0 never answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, 401);

    let web = free_addrs(1)[0];
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", scrape.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut last = String::new();
    let found = loop {
        let q = "/api/v1/query?query=agora_outputs_total";
        if let Ok(v) = probe::get_json(web, q) {
            let series = v["data"]["result"].as_array().cloned().unwrap_or_default();
            let mut got: Vec<(String, String)> = series
                .iter()
                .map(|s| (s["metric"]["node"].as_str().unwrap_or("?").to_string(), s["value"][1].to_string()))
                .collect();
            got.sort();
            // Every node's count of outputs, read back through Prometheus, at the five values delivered.
            if got.len() == 3 && got.iter().all(|(_, v)| v == "\"5\"") {
                break got;
            }
            last = v.to_string();
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = prom.kill();
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus never had the three nodes' series: {last}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(found, (0..3).map(|i| (format!("n{i}"), "\"5\"".to_string())).collect::<Vec<_>>());
    for mut n in nodes {
        drop(n.stdin.take());
        n.wait().unwrap();
    }
}

/// A client that hangs up while the node is still answering must not kill
/// it (a write to a reset socket raises SIGPIPE, which the command's
/// default for piped output would let kill the process).
#[test]
fn a_node_survives_clients_that_hang_up_mid_answer() {
    use std::io::Write;
    let dir = temp_dir("sigpipe");
    let (file, addrs) = cluster_file(1, "count = 1");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file).unwrap();
    let mut node = spawn_node(&config, "n0");
    let http = addrs[0].1;
    let start = Instant::now();
    while probe::request(http, "GET", "/health", None, Duration::from_secs(1)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "the node never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..200 {
        let mut s = std::net::TcpStream::connect(http).unwrap();
        // Unread bytes at close make the kernel reset the connection.
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\nGET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(node.try_wait().unwrap().is_none(), "the node died: {:?}", node.try_wait());
    assert!(probe::request(http, "GET", "/health", None, Duration::from_secs(2)).is_ok());
    drop(node.stdin.take());
    assert!(node.wait().unwrap().success());
}
