//! The runtime over real loopback TCP, several nodes in one process.

mod common;
use agora_broadcast::Config;
use agora_core::NodeId;
use common::*;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_over_tcp_with_partition_and_heal() {
    let peers = entries(4);
    let cfg =
        Arc::new(Config { retransmit: Duration::from_millis(50), sync: Duration::from_millis(50), ..Config::new(4) });
    let nodes = start_all(&peers, &cfg).await;
    let h = |i: usize| peers[i].http.unwrap();

    // Cut node 3 off (both directions are configured, as a partition is).
    let mut layer = serde_json::json!({"partition": [3]});
    for i in 0..3 {
        assert_eq!(http(h(i), "PUT", "/faults", layer.to_string()).await.0, 200);
    }
    layer = serde_json::json!({"partition": [0, 1, 2]});
    assert_eq!(http(h(3), "PUT", "/faults", layer.to_string()).await.0, 200);

    for v in 0..10u64 {
        assert_eq!(http(h(0), "POST", "/input", format!("{{\"broadcast\": {v}}}")).await.0, 202);
    }
    wait_until(&peers[..3], Duration::from_secs(20), |s| delivered(s) == 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(delivered(&get(h(3), "/status").await), 0, "the partition blocked node 3");
    assert!(metrics(h(0)).await.contains("agora_messages_dropped_total{reason=\"fault_partition\"}"));

    // Heal: retransmissions reach node 3.
    for i in 0..4 {
        assert_eq!(http(h(i), "PUT", "/faults", "{}".into()).await.0, 200);
    }
    wait_until(&peers, Duration::from_secs(20), |s| delivered(s) == 10).await;
    let m = metrics(h(3)).await;
    assert!(m.contains("agora_outputs_total 10"), "{m}");
    assert!(m.contains("agora_messages_received_total{service=\"\",kind=\"data\"}"));
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_are_counted_and_harm_nobody() {
    let peers = entries(3);
    let cfg = Arc::new(Config { retransmit: Duration::from_millis(50), ..Config::new(3) });
    // Plain TCP, so that raw bad frames reach the framing layer (with keys,
    // the TLS handshake refuses them first: see tests/security.rs).
    let nodes = start_all_with(&peers, &cfg, |p, i| plain_cfg_with(p, i, Default::default())).await;
    let (h, listen) = (peers[2].http.unwrap(), peers[2].listen);

    // 1. A length prefix far beyond the 1 MiB limit.
    let mut s = std::net::TcpStream::connect(listen).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    // 2. A frame whose payload is garbage.
    let mut s2 = std::net::TcpStream::connect(listen).unwrap();
    s2.write_all(&[0, 0, 0, 3, 9, 9, 9]).unwrap();
    // 3. A well-formed Hello from an id that does not exist.
    let hello = agora_net::frame::encode(&agora_net::frame::Frame::<agora_broadcast::Msg>::Hello { from: NodeId(1) });
    let mut s3 = std::net::TcpStream::connect(peers[0].listen).unwrap(); // node 0 accepts from no one
    s3.write_all(&(hello.len() as u32).to_be_bytes()).unwrap();
    s3.write_all(&hello).unwrap();

    let start = Instant::now();
    loop {
        let m = metrics(h).await;
        let m0 = metrics(peers[0].http.unwrap()).await;
        if m.contains("agora_frames_rejected_total{reason=\"oversized\"} 1")
            && m.contains("agora_frames_rejected_total{reason=\"malformed\"} 1")
            && m0.contains("agora_frames_rejected_total{reason=\"bad_hello\"} 1")
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "rejections not counted:\n{m}\n{m0}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The node is healthy and the cluster still works.
    assert_eq!(http(h, "GET", "/health", String::new()).await, (200, "ok\n".into()));
    assert_eq!(http(peers[0].http.unwrap(), "POST", "/input", "{\"broadcast\": 5}".into()).await.0, 202);
    wait_until(&peers, Duration::from_secs(10), |s| delivered(s) == 1).await;

    // Bad HTTP input gets a clear 400.
    let (code, body) = http(h, "POST", "/input", "{\"shout\": 1}".into()).await;
    assert_eq!(code, 400);
    assert!(body.contains("does not parse"), "{body}");
    let (code, body) = http(h, "PUT", "/faults", "{\"drop_rate\": 2}".into()).await;
    assert_eq!(code, 400);
    assert!(body.contains("drop_rate"), "{body}");
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_rate_fault_fires_and_retransmission_repairs_it() {
    let peers = entries(3);
    let cfg = Arc::new(Config { retransmit: Duration::from_millis(30), ..Config::new(3) });
    let nodes = start_all(&peers, &cfg).await;
    let h0 = peers[0].http.unwrap();
    assert_eq!(http(h0, "PUT", "/faults", "{\"drop_rate\": 0.5, \"delay_ms\": 5}".into()).await.0, 200);
    for v in 0..20u64 {
        http(h0, "POST", "/input", format!("{{\"broadcast\": {v}}}")).await;
    }
    wait_until(&peers, Duration::from_secs(20), |s| delivered(s) == 20).await;
    let m = metrics(h0).await;
    let dropped: u64 = m
        .lines()
        .find(|l| l.starts_with("agora_messages_dropped_total{reason=\"fault_drop\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0);
    assert!(dropped > 5, "the drop fault fired ({dropped} drops)\n{m}");
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_link_holds_its_messages_back_and_a_receive_drop_fires() {
    let peers = entries(3);
    let cfg = Arc::new(Config { retransmit: Duration::from_millis(40), ..Config::new(3) });
    let nodes = start_all(&peers, &cfg).await;
    let h = |i: usize| peers[i].http.unwrap();
    // Every link into node 1 is 400 ms long; the others are loopback.
    for i in [0, 2] {
        let layer = serde_json::json!({"links": [{"peer": 1, "delay_ms": 400.0, "jitter_ms": 5.0}]});
        assert_eq!(http(h(i), "PUT", "/faults", layer.to_string()).await.0, 200);
    }
    let start = std::time::Instant::now();
    assert_eq!(http(h(0), "POST", "/input", "{\"broadcast\": 7}".into()).await.0, 202);
    wait_until(&peers[2..], Duration::from_secs(10), |s| delivered(s) == 1).await;
    assert_eq!(delivered(&get(h(1), "/status").await), 0, "node 1 had it before its link's delay");
    wait_until(&peers[1..2], Duration::from_secs(10), |s| delivered(s) == 1).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400), "delivered to node 1 after {took:?}");

    // Node 1 now drops half of what it receives; retransmission still gets everything through.
    for i in [0, 2] {
        assert_eq!(http(h(i), "PUT", "/faults", "{}".into()).await.0, 200);
    }
    assert_eq!(http(h(1), "PUT", "/faults", "{\"receive_drop_rate\": 0.5}".into()).await.0, 200);
    for v in 0..20u64 {
        http(h(0), "POST", "/input", format!("{{\"broadcast\": {v}}}")).await;
    }
    wait_until(&peers, Duration::from_secs(20), |s| delivered(s) == 21).await;
    let m = metrics(h(1)).await;
    assert!(m.contains("agora_messages_dropped_total{reason=\"fault_receive_drop\"}"), "{m}");
    // A link toward a node the cluster does not have is refused, naming it.
    let (code, body) = http(h(0), "PUT", "/faults", "{\"links\": [{\"peer\": 7}]}".into()).await;
    assert_eq!(code, 400);
    assert!(body.contains("links[0].peer: no node 7"), "{body}");
    for n in nodes {
        n.stop().await;
    }
}
