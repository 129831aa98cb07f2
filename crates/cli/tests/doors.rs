//! A node's doors under a flood from the same machine: idle and slow HTTP
//! connections are closed within the header timeout, connections that
//! have not shown who they are are capped (the oldest makes room for the
//! newest), and refusals are logged a line a second — so a node whose file
//! handles are few keeps answering `/health` and keeps its peers.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn get(http: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(http).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `agora node` for `name` with 64 file handles: 16 HTTP connections and
/// 16 pending handshakes at most.
fn spawn_with_few_handles(config: &std::path::Path, name: &str, stderr: Stdio) -> Child {
    let mut node = agora();
    node.args(["node", "--config"]).arg(keyed(config)).args(["--id", name, "--stop-on-stdin-eof"]);
    node.stdin(Stdio::piped()).stderr(stderr);
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        node.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &lim) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    node.spawn().unwrap()
}

fn wait_healthy(http: SocketAddr) {
    let start = Instant::now();
    while get(http, "/health").is_none_or(|r| !r.contains("ok")) {
        assert!(start.elapsed() < Duration::from_secs(20), "{http} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the first metric line starting with `name`.
fn stop(nodes: &mut [Child]) {
    for n in nodes {
        drop(n.stdin.take());
        let _ = n.wait();
    }
}

#[test]
fn idle_and_slow_http_clients_do_not_lock_out_health_or_peers() {
    let dir = temp_dir("doors");
    let (file, addrs) = cluster_file(2, "count = 100000\ninterval = \"50ms\"");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, format!("{file}\n[transport]\nhttp_max_connections = 16\nhttp_header_timeout = \"1s\"\n"))
        .unwrap();
    let mut nodes = [spawn_with_few_handles(&config, "n0", Stdio::null()), spawn_node(&config, "n1")];
    let http = addrs[0].1;
    wait_healthy(http);
    // A client that sends nothing is closed within the header timeout.
    let mut idle = TcpStream::connect(http).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let opened = Instant::now();
    assert_eq!(idle.read(&mut [0u8; 64]).unwrap_or(0), 0, "closed, not answered");
    let closed_after = opened.elapsed();
    assert!(closed_after < Duration::from_secs(3), "an idle connection lived {closed_after:?}");
    eprintln!("an idle connection was closed after {closed_after:?} (header timeout 1 s)");
    // 200 connections that send a byte now and then, far past the cap and
    // n0's file handles: /health still answers, and n0 keeps its peer.
    let mut flood: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(http).ok()).collect();
    let mut answered = 0;
    for round in 0..10 {
        for s in &mut flood {
            let _ = s.write_all(if round == 0 { b"G" } else { b"E" });
        }
        let asked = Instant::now();
        if get(http, "/health").is_some_and(|r| r.contains("ok")) {
            answered += 1;
            assert!(asked.elapsed() < Duration::from_secs(2), "/health took {:?}", asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered >= 9, "/health answered {answered} of 10 times during the flood");
    let metrics = get(http, "/metrics").expect("metrics during the flood");
    assert_eq!(metric(&metrics, "agora_peers_connected"), Some(1.0), "n0 keeps its peer:\n{metrics}");
    assert!(metric(&metrics, "agora_http_evicted_total") > Some(0.0), "the cap made room:\n{metrics}");
    drop(flood);
    stop(&mut nodes);
}

/// 200 connections to a node's peer port that never start their handshake
/// do not keep a peer out, and their refusals are logged a line a second
/// per reason, not one each.
#[test]
fn connections_that_never_authenticate_do_not_keep_a_peer_out() {
    let dir = temp_dir("doors-peer");
    let (file, addrs) = cluster_file(2, "count = 100000\ninterval = \"50ms\"");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, &file).unwrap();
    let log = dir.join("n1.log");
    let n1 = spawn_with_few_handles(&config, "n1", Stdio::from(std::fs::File::create(&log).unwrap()));
    let (peer, http) = addrs[1];
    wait_healthy(http);
    let flood: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(peer).ok()).collect();
    assert!(flood.len() > 100, "the flood connected {} times", flood.len());
    // n0 dials n1 (the lower id dials): it gets in at once.
    let started = Instant::now();
    let mut nodes = [n1, spawn_node(&config, "n0")];
    let mut connected = None;
    while started.elapsed() < Duration::from_secs(4) {
        if get(http, "/metrics").is_some_and(|m| metric(&m, "agora_peers_connected") == Some(1.0)) {
            connected = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let connected = connected.expect("n0 got in while the flood held n1's peer port");
    eprintln!("n0 connected {connected:?} after it started, past 200 idle connections");
    let metrics = get(http, "/metrics").unwrap();
    assert!(metric(&metrics, "agora_frames_rejected_total{reason=\"evicted\"}") > Some(0.0), "{metrics}");
    drop(flood);
    stop(&mut nodes);
    let lines = std::fs::read_to_string(&log).unwrap().lines().filter(|l| l.contains("closing connection")).count();
    assert!(lines <= 20, "{lines} lines logged for the refused connections");
}
