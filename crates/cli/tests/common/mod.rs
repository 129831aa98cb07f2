//! Helpers for tests that run the `agora` binary.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub fn agora() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agora"))
}

pub fn run(args: &[&str]) -> Output {
    agora().args(args).output().expect("agora runs")
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A fresh directory under the system temp dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agora-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn free_addrs(k: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..k).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// A broadcast cluster file for `n` nodes on free loopback ports.
pub fn cluster_file(n: usize, params: &str) -> (String, Vec<(SocketAddr, SocketAddr)>) {
    let a = free_addrs(2 * n);
    let mut s = format!("protocol = \"broadcast\"\n\n[params]\n{params}\n");
    let mut addrs = Vec::new();
    for i in 0..n {
        s += &format!("\n[[node]]\nname = \"n{i}\"\nlisten = \"{}\"\nhttp = \"{}\"\n", a[2 * i], a[2 * i + 1]);
        addrs.push((a[2 * i], a[2 * i + 1]));
    }
    (s, addrs)
}

/// The keyed copy of a cluster file (`agora cluster keys` into `keys/`
/// beside it, made once): what its node processes run with.
pub fn keyed(config: &std::path::Path) -> PathBuf {
    let dir = config.parent().unwrap().join("keys");
    let file = dir.join("cluster.toml");
    if !file.exists() {
        let out = agora().args(["cluster", "keys"]).arg(config).arg("--out").arg(&dir).output().unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
    }
    file
}

/// The control token of a keyed cluster file.
pub fn token(config: &std::path::Path) -> String {
    std::fs::read_to_string(keyed(config).parent().unwrap().join("token")).unwrap().trim().to_string()
}

/// `agora node` for `name` of the cluster file (keyed), stopped by closing its stdin.
pub fn spawn_node(config: &std::path::Path, name: &str) -> Child {
    agora()
        .args(["node", "--config"])
        .arg(keyed(config))
        .args(["--id", name, "--stop-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A telecom cluster file of the default scenario's parameters, its five
/// nodes on free loopback ports, in `dir`; with each node's HTTP address.
pub fn telecom_cluster(dir: &std::path::Path) -> (PathBuf, Vec<SocketAddr>) {
    let src = std::fs::read_to_string(format!("{}/../../scenarios/edge-core-cloud.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let scenario: toml::Table = toml::from_str(&src).unwrap();
    let mut cluster = toml::Table::new();
    cluster.insert("protocol".into(), scenario["protocol"].clone());
    cluster.insert("params".into(), scenario["params"].clone());
    let addrs: Vec<SocketAddr> = free_addrs(10);
    let nodes: Vec<toml::Value> = (0..5)
        .map(|i| {
            let mut n = toml::Table::new();
            n.insert("name".into(), format!("n{i}").into());
            n.insert("listen".into(), addrs[2 * i].to_string().into());
            n.insert("http".into(), addrs[2 * i + 1].to_string().into());
            toml::Value::Table(n)
        })
        .collect();
    cluster.insert("node".into(), toml::Value::Array(nodes));
    let config = dir.join("cluster.toml");
    std::fs::write(&config, toml::to_string(&cluster).unwrap()).unwrap();
    (config, (0..5).map(|i| addrs[2 * i + 1]).collect())
}

/// The value of one series (`name{labels}` as written) in a `/metrics` text.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.rsplit_once(' ').filter(|(s, _)| *s == series)?.1.parse().ok())
}
