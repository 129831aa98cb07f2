//! Nobody gets in who does not belong: peers authenticate with the keys the
//! cluster lists, bytes altered on the way close the connection, and the
//! control endpoints need the token.

mod common;
use agora_broadcast::{Config, Msg};
use agora_core::NodeId;
use agora_net::frame::{encode, Frame};
use agora_net::NodeEntry;
use common::*;
use futures::SinkExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Framed;

fn rejected(m: &str, reason: &str) -> u64 {
    let prefix = format!("agora_frames_rejected_total{{reason=\"{reason}\"}}");
    m.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.split_whitespace().last()?.parse().ok()).unwrap_or(0)
}

async fn wait_rejected(http: std::net::SocketAddr, reason: &str) {
    let start = Instant::now();
    while rejected(&metrics(http).await, reason) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {reason} rejection counted:\n{}",
            metrics(http).await.lines().filter(|l| !l.starts_with("#")).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Dials `addr` with TLS as the holder of `me`'s key among `n` nodes, pinned
/// to `peer`'s key, then says Hello as `claim`.
async fn dial_as(addr: std::net::SocketAddr, ident: &agora_net::security::Identity, peer: usize, claim: u32) -> bool {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client = ident.tls.client_for(NodeId(peer as u32)).unwrap();
    let name = rustls_pki_types::ServerName::try_from("agora-node").unwrap();
    let Ok(tls) = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await else { return false };
    let mut f = Framed::new(tls, agora_net::frame::codec(1 << 20));
    f.send(encode(&Frame::<Msg>::Hello { from: NodeId(claim) })).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostors_and_false_ids_are_refused_counted_and_logged() {
    let peers = entries(3);
    let cfg = Arc::new(Config { retransmit: Duration::from_millis(50), ..Config::new(3) });
    let nodes = start_all(&peers, &cfg).await;
    let h2 = peers[2].http.unwrap();

    // 1. No key at all: plain TCP saying Hello as node 0.
    let mut s = tokio::net::TcpStream::connect(peers[2].listen).await.unwrap();
    let hello = encode(&Frame::<Msg>::Hello { from: NodeId(0) });
    s.write_all(&(hello.len() as u32).to_be_bytes()).await.unwrap();
    s.write_all(&hello).await.unwrap();
    wait_rejected(h2, "tls_handshake").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "the node answered a keyless peer with something other than an alert");

    // 2. A key the cluster does not list, pretending to be node 0.
    let k = agora_core::keys::SeededKeys { seed: 99 };
    let mut public: Vec<_> =
        (0..3).map(|j| agora_core::keys::SeededKeys { seed: 1 }.secret(NodeId(j)).verifying_key()).collect();
    public[0] = k.secret(NodeId(0)).verifying_key();
    let stranger = agora_net::security::Identity::new(NodeId(0), k.secret(NodeId(0)), public).unwrap();
    let before = rejected(&metrics(h2).await, "tls_handshake");
    dial_as(peers[2].listen, &stranger, 2, 0).await;
    let start = Instant::now();
    while rejected(&metrics(h2).await, "tls_handshake") == before {
        assert!(start.elapsed() < Duration::from_secs(10), "the stranger's handshake was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. Node 0's real key, claiming to be node 1.
    assert!(dial_as(peers[2].listen, &identity(3, 0), 2, 1).await, "the handshake itself succeeds");
    wait_rejected(h2, "key_mismatch").await;

    // The real cluster is untouched.
    assert_eq!(http(peers[0].http.unwrap(), "POST", "/input", "{\"broadcast\": 5}".into()).await.0, 202);
    wait_until(&peers, Duration::from_secs(10), |s| delivered(s) == 1).await;
    for n in nodes {
        n.stop().await;
    }
}

/// What the proxy does to the dialler's stream once it has passed `at` bytes.
#[derive(Clone, Copy)]
enum Tamper {
    /// Flips one bit of the byte at `at`.
    Flip,
    /// Sends the chunk holding byte `at` twice: bytes replayed.
    Replay,
}

/// Forwards connections to `to`, tampering once with a dialler stream at
/// byte `at` — in the first connection that carries that far (one that
/// closes sooner, say while node 1 was still starting, does not use up the
/// tampering); later connections pass untouched.
async fn tampering_proxy(listen: tokio::net::TcpListener, to: std::net::SocketAddr, tamper: Tamper, at: usize) {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        let Ok((mut a, _)) = listen.accept().await else { return };
        // Node 1 may not listen yet: drop this one, the dialler retries.
        let Ok(mut b) = tokio::net::TcpStream::connect(to).await else { continue };
        let done = done.clone();
        tokio::spawn(async move {
            let (mut ar, mut aw) = a.split();
            let (mut br, mut bw) = b.split();
            let up = async {
                let mut seen = 0usize;
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match ar.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let here = seen <= at && at < seen + n && !done.swap(true, std::sync::atomic::Ordering::SeqCst);
                    if here && matches!(tamper, Tamper::Flip) {
                        buf[at - seen] ^= 0x40;
                    }
                    if here && matches!(tamper, Tamper::Replay) && bw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    seen += n;
                    if bw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            };
            let down = tokio::io::copy(&mut br, &mut aw);
            tokio::select! { _ = up => {}, _ = down => {} }
        });
    }
}

/// Two nodes, node 0 dialling node 1 through a tampering proxy: node 1's
/// TLS refuses the altered records (counted), the connection closes, and
/// the next connection delivers everything.
async fn tampered_link_is_refused_and_recovers(tamper: Tamper) {
    let peers = entries(2);
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let via: Vec<NodeEntry> =
        vec![peers[0].clone(), NodeEntry { listen: proxy.local_addr().unwrap(), ..peers[1].clone() }];
    // Past the handshake (under 2 KB): the tampering lands in application
    // records. Not much further: 2000 small messages batched into few
    // records can total under 20 KB, and then nothing was tampered with.
    tokio::spawn(tampering_proxy(proxy, peers[1].listen, tamper, 4_000));
    let cfg = Arc::new(Config {
        retransmit: Duration::from_millis(50),
        count: 2000,
        interval: Duration::from_millis(2),
        ..Config::new(2)
    });
    let n0 = agora_net::start(node_cfg(&via, 0), agora_broadcast::Node::new(cfg.clone(), NodeId(0))).await.unwrap();
    let n1 = agora_net::start(node_cfg(&peers, 1), agora_broadcast::Node::new(cfg.clone(), NodeId(1))).await.unwrap();
    wait_rejected(peers[1].http.unwrap(), "tls_bad_record").await;
    wait_until(&peers, Duration::from_secs(30), |s| delivered(s) == 2000).await;
    n0.stop().await;
    n1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_on_the_wire_closes_the_connection_and_the_retry_delivers() {
    tampered_link_is_refused_and_recovers(Tamper::Flip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_bytes_close_the_connection_and_the_retry_delivers() {
    tampered_link_is_refused_and_recovers(Tamper::Replay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoints_need_the_token() {
    let peers = entries(2);
    let cfg = Arc::new(Config::new(2));
    let nodes =
        start_all_with(&peers, &cfg, |p, i| agora_net::NodeConfig { protect_reads: i == 1, ..node_cfg(p, i) }).await;
    let (h0, h1) = (peers[0].http.unwrap(), peers[1].http.unwrap());
    let body = || "{\"broadcast\": 1}".to_string();
    let (code, text) = http_as(h0, "POST", "/input", body(), None).await;
    assert_eq!(code, 401);
    assert!(text.contains("missing `Authorization: Bearer TOKEN`"), "{text}");
    let (code, text) = http_as(h0, "PUT", "/faults", "{}".into(), Some("guess")).await;
    assert_eq!((code, text.contains("wrong token")), (401, true), "{text}");
    assert_eq!(http(h0, "POST", "/input", body()).await.0, 202);
    // Reads: open on node 0, closed on node 1.
    assert_eq!(http_as(h0, "GET", "/status", String::new(), None).await.0, 200);
    assert_eq!(http_as(h1, "GET", "/status", String::new(), None).await.0, 401);
    assert_eq!(http_as(h1, "GET", "/status", String::new(), Some(TOKEN)).await.0, 200);
    let m = http(h0, "GET", "/metrics", String::new()).await.1;
    assert!(m.contains("agora_http_unauthorized_total 2"), "{m}");
    assert!(!m.contains(TOKEN), "the token never appears in metrics");
    for n in nodes {
        n.stop().await;
    }
}

/// Key and token files are checked before they are read: a file others can
/// read, a link, a pipe, a device or a huge file is refused with the path
/// and the fix, without hanging or reading gigabytes.
#[test]
fn secret_files_that_are_not_what_they_should_be_are_refused() {
    use agora_net::security::{read_secret_file, write_secret};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write_secret(&token, "s3cret").unwrap();
    assert_eq!(read_secret_file(&token, false).unwrap().trim(), "s3cret");
    // Readable by others: refused with the fix, taken with the flag.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = read_secret_file(&token, false).unwrap_err();
    assert!(e.contains("mode 644") && e.contains(&format!("chmod 600 {}", token.display())), "{e}");
    assert_eq!(read_secret_file(&token, true).unwrap().trim(), "s3cret");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A link, even to a good file.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&token, &link).unwrap();
    assert!(read_secret_file(&link, false).unwrap_err().contains("is a symbolic link"));
    assert_eq!(read_secret_file(&link, true).unwrap().trim(), "s3cret");
    // A device and a directory: refused before anything is read.
    let zero = std::path::Path::new("/dev/zero");
    assert!(read_secret_file(zero, true).unwrap_err().contains("is not a regular file"));
    assert!(read_secret_file(dir.path(), true).unwrap_err().contains("is not a regular file"));
    // A named pipe with no writer: refused at once, not waited on.
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let start = Instant::now();
    assert!(read_secret_file(&fifo, true).unwrap_err().contains("is not a regular file"));
    assert!(start.elapsed() < Duration::from_secs(5));
    // A regular file too large to be a key or a token.
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 1 << 20]).unwrap();
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(read_secret_file(&big, false).unwrap_err().contains("is larger than 65536 bytes"));
    // A missing file names its path.
    let e = read_secret_file(&dir.path().join("absent"), false).unwrap_err();
    assert!(e.contains("absent"), "{e}");
}

/// Writing a secret where somebody planted a link replaces the link: the
/// file it pointed at is left alone.
#[test]
fn a_secret_is_never_written_through_a_planted_link() {
    use agora_net::security::write_secret;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "theirs").unwrap();
    let token = dir.path().join("token");
    std::os::unix::fs::symlink(&victim, &token).unwrap();
    write_secret(&token, "ours").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "theirs");
    assert!(!std::fs::symlink_metadata(&token).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&token).unwrap().trim(), "ours");
    assert_eq!(std::fs::metadata(&token).unwrap().permissions().mode() & 0o777, 0o600);
}

/// Sends `request` as it is and reads until the node closes.
async fn raw(addr: std::net::SocketAddr, request: Vec<u8>) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

fn request(method: &str, path: &str, auth: Option<&str>, body: &str) -> Vec<u8> {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// HEAD is a read, the bearer scheme is case-insensitive, an input with
/// two keys is told so, one the node cannot act on is refused with 422,
/// and an HTTP/2 client is told to use HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_answers_what_clients_send_plainly() {
    let peers = entries(1);
    let cfg = Arc::new(Config::new(1));
    let nodes = start_all(&peers, &cfg).await;
    let h = peers[0].http.unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let head = text(raw(h, request("HEAD", "/status", None, "")).await);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = format!("bearer {TOKEN}");
    let posted = text(raw(h, request("POST", "/input", Some(&lower), "{\"broadcast\": 1}")).await);
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
    let two = text(raw(h, request("POST", "/input", Some(&lower), "{\"broadcast\": 1, \"extra\": 2}")).await);
    assert!(two.starts_with("HTTP/1.1 400") && two.contains("one key") && two.contains("broadcast, extra"), "{two}");
    // An input the node cannot act on is refused, saying why.
    let nobody = text(raw(h, request("POST", "/input", Some(&lower), "{\"suspect\": 4294967295}")).await);
    assert!(nobody.starts_with("HTTP/1.1 422") && nobody.contains("no peer 4294967295"), "{nobody}");
    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame.
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let frames = raw(h, h2).await;
    let goaway = frames.get(9..).unwrap_or_default();
    assert_eq!(&goaway[3..4], &[0x7], "a GOAWAY frame after SETTINGS: {frames:?}");
    assert_eq!(&goaway[13..17], &0xdu32.to_be_bytes(), "HTTP_1_1_REQUIRED");
    assert!(text(goaway[17..].to_vec()).contains("HTTP/1.1 only"));
    for n in nodes {
        n.stop().await;
    }
}
