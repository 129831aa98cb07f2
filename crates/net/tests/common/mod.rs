//! Helpers for tests that run nodes over loopback TCP in this process.
#![allow(dead_code)]

use agora_broadcast::{Config, Node};
use agora_core::NodeId;
use agora_net::{probe, NodeConfig, NodeEntry, NodeHandle, TransportConfig};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn free_addrs(k: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..k).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

pub fn entries(n: usize) -> Vec<NodeEntry> {
    let a = free_addrs(2 * n);
    (0..n).map(|i| NodeEntry { name: format!("n{i}"), listen: a[2 * i], http: Some(a[2 * i + 1]) }).collect()
}

pub fn node_cfg(peers: &[NodeEntry], i: usize) -> NodeConfig {
    node_cfg_with(peers, i, TransportConfig::default())
}

/// Node `i`'s configuration with transport `t`, reconnecting quickly.
pub fn node_cfg_with(peers: &[NodeEntry], i: usize, t: TransportConfig) -> NodeConfig {
    let t = TransportConfig { backoff_min: Duration::from_millis(20), backoff_max: Duration::from_millis(200), ..t };
    NodeConfig {
        id: NodeId(i as u32),
        name: peers[i].name.clone(),
        listen: peers[i].listen,
        http: peers[i].http,
        peers: peers.to_vec(),
        seed: Some(1),
        transport: t,
    }
}

pub async fn start_all(peers: &[NodeEntry], cfg: &Arc<Config>) -> Vec<NodeHandle> {
    let mut hs = Vec::new();
    for i in 0..peers.len() {
        hs.push(agora_net::start(node_cfg(peers, i), Node::new(cfg.clone(), NodeId(i as u32))).await.unwrap());
    }
    hs
}

pub async fn get(addr: SocketAddr, path: &'static str) -> serde_json::Value {
    tokio::task::spawn_blocking(move || probe::get_json(addr, path)).await.unwrap().unwrap()
}

pub async fn http(addr: SocketAddr, method: &'static str, path: &'static str, body: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || probe::request(addr, method, path, Some(&body), Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap()
}

pub async fn metrics(addr: SocketAddr) -> String {
    http(addr, "GET", "/metrics", String::new()).await.1
}

pub fn delivered(status: &serde_json::Value) -> u64 {
    status["protocol"]["delivered"][0]["delivered"].as_u64().unwrap()
}

/// Waits until every node's status satisfies `ok`, or fails after `limit`.
pub async fn wait_until(peers: &[NodeEntry], limit: Duration, ok: impl Fn(&serde_json::Value) -> bool) {
    let start = Instant::now();
    loop {
        let mut all = true;
        for p in peers {
            if !ok(&get(p.http.unwrap(), "/status").await) {
                all = false;
            }
        }
        if all {
            return;
        }
        assert!(start.elapsed() < limit, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
