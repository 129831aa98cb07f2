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
    (0..n)
        .map(|i| NodeEntry { name: format!("n{i}"), listen: a[2 * i], http: Some(a[2 * i + 1]), public_key: None })
        .collect()
}

pub fn node_cfg(peers: &[NodeEntry], i: usize) -> NodeConfig {
    node_cfg_with(peers, i, TransportConfig::default())
}

/// Node `i`'s configuration with transport `t`, reconnecting quickly.
pub fn node_cfg_with(peers: &[NodeEntry], i: usize, t: TransportConfig) -> NodeConfig {
    let t = TransportConfig { backoff_min: Duration::from_millis(20), backoff_max: Duration::from_millis(200), ..t };
    NodeConfig {
        seed: Some(1),
        transport: t,
        identity: Some(Arc::new(identity(peers.len(), i))),
        control_token: Some(TOKEN.into()),
        ..NodeConfig::plain(NodeId(i as u32), peers.to_vec())
    }
}

/// [`node_cfg_with`] on plain TCP: no keys (for tests that speak raw frames).
pub fn plain_cfg_with(peers: &[NodeEntry], i: usize, t: TransportConfig) -> NodeConfig {
    NodeConfig { identity: None, ..node_cfg_with(peers, i, t) }
}

/// The control token every test node takes.
pub const TOKEN: &str = "test-token";

/// Node `i`'s keys, derived from seed 1 (as the simulator derives them).
pub fn identity(n: usize, i: usize) -> agora_net::security::Identity {
    let k = agora_core::keys::SeededKeys { seed: 1 };
    let public = (0..n).map(|j| k.secret(NodeId(j as u32)).verifying_key()).collect();
    agora_net::security::Identity::new(NodeId(i as u32), k.secret(NodeId(i as u32)), public).unwrap()
}

pub async fn start_all(peers: &[NodeEntry], cfg: &Arc<Config>) -> Vec<NodeHandle> {
    start_all_with(peers, cfg, node_cfg).await
}

pub async fn start_all_with(
    peers: &[NodeEntry],
    cfg: &Arc<Config>,
    node_cfg: impl Fn(&[NodeEntry], usize) -> NodeConfig,
) -> Vec<NodeHandle> {
    let mut hs = Vec::new();
    for i in 0..peers.len() {
        hs.push(agora_net::start(node_cfg(peers, i), Node::new(cfg.clone(), NodeId(i as u32))).await.unwrap());
    }
    hs
}

pub async fn get(addr: SocketAddr, path: &'static str) -> serde_json::Value {
    tokio::task::spawn_blocking(move || probe::get_json(addr, path)).await.unwrap().unwrap()
}

/// A request with the control token.
pub async fn http(addr: SocketAddr, method: &'static str, path: &'static str, body: String) -> (u16, String) {
    http_as(addr, method, path, body, Some(TOKEN)).await
}

pub async fn http_as(
    addr: SocketAddr,
    method: &'static str,
    path: &'static str,
    body: String,
    token: Option<&'static str>,
) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        probe::request_with_token(addr, method, path, Some(&body), token, Duration::from_secs(5))
    })
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
