//! A node's doors under a flood from the same machine: idle and slow HTTP
//! connections are closed within the header timeout, and at the connection
//! cap the oldest makes room, so a node whose file handles are few keeps
//! answering `/health` and keeps its peers.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn get(http: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(http).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn idle_and_slow_http_clients_do_not_lock_out_health_or_peers() {
    let dir = temp_dir("doors");
    let (file, addrs) = cluster_file(2, "count = 100000\ninterval = \"50ms\"");
    let config = dir.join("cluster.toml");
    std::fs::write(&config, format!("{file}\n[transport]\nhttp_max_connections = 16\nhttp_header_timeout = \"1s\"\n"))
        .unwrap();
    let keyed = keyed(&config);
    // Node n0 with 64 file handles: the cap is then 16 HTTP connections.
    let mut n0 = agora();
    n0.args(["node", "--config"]).arg(&keyed).args(["--id", "n0", "--stop-on-stdin-eof"]);
    n0.stdin(Stdio::piped()).stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        n0.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &lim) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut nodes = [n0.spawn().unwrap(), spawn_node(&config, "n1")];
    let http = addrs[0].1;
    let start = Instant::now();
    while get(http, "/health").is_none_or(|r| !r.contains("ok")) {
        assert!(start.elapsed() < Duration::from_secs(20), "n0 did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(value("agora_peers_connected"), 1.0, "n0 keeps its peer:\n{metrics}");
    assert!(value("agora_http_evicted_total") > 0.0, "the cap made room:\n{metrics}");
    drop(flood);
    for n in &mut nodes {
        drop(n.stdin.take());
        let _ = n.wait();
    }
}
