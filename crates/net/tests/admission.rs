//! Admission control over real TCP: one peer floods a node; the other peers'
//! traffic keeps flowing, nothing of theirs is refused, and the node's queue
//! of received messages stays within its quota.

mod common;
use agora_broadcast::{Config, Msg, Node};
use agora_core::NodeId;
use agora_net::frame::{encode, Frame};
use agora_net::TransportConfig;
use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

// With 3 peers a claimant may hold up to (r + s) / A(2) = 1/12 of what is
// free (quasilinear); at ~130 bytes a queued message, 256 KiB leaves an
// honest peer room for ~160 queued messages — more than node 1 ever has in
// flight (50 broadcasts, retransmitted once a second) even while node 2's
// loop is slowed by the flood. At 16 KiB it had room for ~10, and a slow CI
// machine refused node 1's retransmissions: the quota working as designed,
// not the guarantee failing.
const QUEUE: u64 = 256 * 1024;

fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// Poses as node 0: says Hello, then writes frames as fast as TCP takes them.
fn flood(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let frame = |f: &Frame<Msg>| {
            let p = encode(f);
            let mut v = (p.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&p);
            v
        };
        s.write_all(&frame(&Frame::Hello { from: NodeId(0) })).unwrap();
        let burst: Vec<u8> = (0..1000u32)
            .flat_map(|i| frame(&Frame::Msg(Msg::Data { origin: NodeId(0), seq: i, value: i as u64 })))
            .collect();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(&burst).is_err() {
                break;
            }
            sent += 1000;
        }
        sent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_refused_while_the_others_keep_their_share() {
    let peers = entries(3);
    let transport = TransportConfig { inbound_queue_bytes: QUEUE, max_frame_bytes: 4096, ..Default::default() };
    let cfg = Arc::new(Config { origins: vec![NodeId(1)], retransmit: Duration::from_secs(1), ..Config::new(3) });
    // Nodes 1 and 2 are real; node 0 is the flooder.
    let mut nodes = Vec::new();
    for i in 1..3 {
        let c = plain_cfg_with(&peers, i, transport.clone());
        nodes.push(agora_net::start(c, Node::new(cfg.clone(), NodeId(i as u32))).await.unwrap());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let floods = [flood(peers[1].listen, stop.clone()), flood(peers[2].listen, stop.clone())];

    let (h1, h2) = (peers[1].http.unwrap(), peers[2].http.unwrap());
    let mut peak = 0;
    for v in 0..50u64 {
        assert_eq!(http(h1, "POST", "/input", format!("{{\"broadcast\": {v}}}")).await.0, 202);
        peak = peak.max(metric(&metrics(h2).await, "agora_inbound_queued_bytes").unwrap_or(0));
    }
    wait_until(&peers[1..], Duration::from_secs(30), |s| delivered(s) == 50).await;
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = floods.into_iter().map(|f| f.join().unwrap()).sum();
    // Let the readers drain what the flooders left in the sockets.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m2 = metrics(h2).await;

    let refused = metric(&m2, "agora_quota_refused_total{peer=\"n0\",slot=\"bytes\"}").unwrap_or(0);
    eprintln!("flood: {sent} frames sent, {refused} refused at n2; peak queued {peak} of {QUEUE} bytes");
    assert!(sent > 10_000 && refused > 0, "the flood was refused ({refused} of {sent} frames)\n{m2}");
    assert!(!m2.contains("agora_quota_refused_total{peer=\"n1\""), "n1's traffic was never refused\n{m2}");
    assert!(peak <= QUEUE, "queued bytes {peak} stayed within the quota {QUEUE}");
    assert!(metric(&m2, "agora_messages_dropped_total{reason=\"quota\"}").unwrap_or(0) >= refused);
    let m1 = metrics(h1).await;
    assert!(metric(&m1, "agora_quota_refused_total{peer=\"n0\",slot=\"bytes\"}").unwrap_or(0) > 0);
    assert!(!m1.contains("agora_quota_refused_total{peer=\"n2\""), "n2's acks were never refused\n{m1}");
    for n in nodes {
        n.stop().await;
    }
}
