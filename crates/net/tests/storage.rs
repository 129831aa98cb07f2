//! The storage thread against real backends: what was synced survives a
//! reopen, what was not does not, syncs share commits, damage is reported,
//! and etcd works the same as redb.

mod common;
use agora_core::storage::{DamageKind, DiskError, Durable, Space, StoreOp, SyncDone};
use agora_net::storage::{Backend, Committed, Storage};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const T: Space = Space { service: "", name: "t" };
const L: Space = Space { service: "svc", name: "log" };

type Done = mpsc::Receiver<(SyncDone, Option<Committed>)>;

fn open(backend: &Backend, dir: Option<&std::path::Path>, node: &str) -> (Storage, Durable, Done) {
    let (tx, rx) = mpsc::channel();
    let (s, d) = Storage::open(backend, dir, node, move |d, c| {
        let _ = tx.send((d, c));
    })
    .unwrap();
    (s, d, rx)
}

fn put(s: &Storage, k: &[u8], v: &[u8]) {
    s.submit(StoreOp::Put { space: T, key: k.to_vec(), value: v.to_vec() });
}

fn sync(s: &Storage, rx: &Done, ticket: u64) -> SyncDone {
    s.submit(StoreOp::Sync { service: "", ticket });
    rx.recv_timeout(Duration::from_secs(10)).expect("the sync is answered").0
}

/// Writes, syncs, reopens: synced writes are back, unsynced ones are not.
fn exercise(backend: &Backend, dir: Option<&std::path::Path>, node: &str) {
    let (s, d, rx) = open(backend, dir, node);
    assert!(d.is_empty(), "a new node's disk is empty");
    put(&s, b"a", b"1");
    put(&s, b"b", b"2");
    s.submit(StoreOp::Append { space: L, record: b"first".to_vec() });
    s.submit(StoreOp::Append { space: L, record: b"second".to_vec() });
    assert_eq!(sync(&s, &rx, 1), SyncDone { service: "", ticket: 1, result: Ok(()) });
    s.submit(StoreOp::Delete { space: T, key: b"a".to_vec() });
    put(&s, b"b", b"3");
    assert!(sync(&s, &rx, 2).result.is_ok());
    put(&s, b"lost", b"never synced");
    s.submit(StoreOp::Append { space: L, record: b"lost".to_vec() });
    drop(s); // a crash: the last writes had no sync

    let (s, d, rx) = open(backend, dir, node);
    assert_eq!(d.get("t", b"a"), None);
    assert_eq!(d.get("t", b"b"), Some(&b"3"[..]));
    assert_eq!(d.get("t", b"lost"), None, "an unsynced write did not survive");
    assert_eq!(d.of_service("svc").log("log"), &[b"first".to_vec(), b"second".to_vec()]);
    assert!(d.damaged().is_empty());
    // Appends after a reopen continue the log rather than overwrite it.
    s.submit(StoreOp::Append { space: L, record: b"third".to_vec() });
    assert!(sync(&s, &rx, 3).result.is_ok());
    drop(s);
    let (_, d, _) = open(backend, dir, node);
    assert_eq!(d.log("log").len(), 3);
}

#[test]
fn redb_keeps_what_was_synced_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    exercise(&Backend::Redb, Some(dir.path()), "n0");
    // A node's data is readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(agora_net::storage::redb_path(dir.path(), "n0")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Another node's file is its own.
    let (_, d, _) = open(&Backend::Redb, Some(dir.path()), "n1");
    assert!(d.is_empty());
    // redb needs a directory.
    let e = Storage::open(&Backend::Redb, None, "n0", |_, _| {}).err().unwrap();
    assert!(e.to_string().contains("data_dir"), "{e}");
}

#[test]
fn syncs_queued_during_a_commit_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, rx) = open(&Backend::Redb, Some(dir.path()), "n0");
    for t in 0..200u64 {
        put(&s, &t.to_be_bytes(), b"v");
        s.submit(StoreOp::Sync { service: "", ticket: t });
    }
    let mut commits = 0;
    for t in 0..200u64 {
        let (d, c) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((d.ticket, d.result), (t, Ok(())), "answered in order");
        commits += c.is_some() as u32;
    }
    assert!(commits < 100, "200 syncs took {commits} commits: no group commit");
}

#[test]
fn a_record_damaged_on_disk_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, rx) = open(&Backend::Redb, Some(dir.path()), "n0");
    put(&s, b"k", b"value");
    put(&s, b"ok", b"fine");
    assert!(sync(&s, &rx, 1).result.is_ok());
    drop(s);
    // Flip a byte of the stored record behind the storage thread's back.
    let path = agora_net::storage::redb_path(dir.path(), "n0");
    use redb::ReadableTable;
    let db = redb::Database::open(&path).unwrap();
    let table: redb::TableDefinition<(&str, &str, &[u8]), &[u8]> = redb::TableDefinition::new("tables");
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(table).unwrap();
        let mut v = t.get(("", "t", &b"k"[..])).unwrap().unwrap().value().to_vec();
        v[5] ^= 0x01;
        t.insert(("", "t", &b"k"[..]), v.as_slice()).unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    let (_, d, _) = open(&Backend::Redb, Some(dir.path()), "n0");
    assert_eq!(d.get("t", b"k"), None);
    assert_eq!(d.get("t", b"ok"), Some(&b"fine"[..]));
    assert_eq!(d.damaged().len(), 1);
    assert_eq!(d.damaged()[0].kind, DamageKind::Corrupt);
}

#[test]
fn backend_names_parse_or_say_what_is_wrong() {
    assert_eq!(Backend::try_from("redb".to_string()), Ok(Backend::Redb));
    assert_eq!(
        Backend::try_from("etcd:127.0.0.1:2379/x".to_string()),
        Ok(Backend::Etcd { addr: "127.0.0.1:2379".parse().unwrap(), prefix: "x".into() })
    );
    for (bad, want) in [("etcd:localhost", "not HOST:PORT"), ("sqlite:x", "unknown storage backend")] {
        let e = Backend::try_from(bad.to_string()).unwrap_err();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A throwaway etcd: its own data dir and loopback ports; killed on drop.
struct Etcd {
    child: Child,
    client: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_etcd() -> Option<Etcd> {
    let Some(bin) = ["/usr/bin/etcd", "/usr/local/bin/etcd"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("AGORA_REQUIRE_ETCD").is_none(),
            "AGORA_REQUIRE_ETCD is set but there is no etcd binary"
        );
        eprintln!("SKIPPED: no etcd binary; `apt-get install etcd-server` (Debian) runs the etcd storage tests.");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let child = Command::new(bin)
        .args(["--name", "agora-test", "--data-dir"])
        .arg(dir.path())
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("agora-test=http://127.0.0.1:{peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let etcd = Etcd { child, client: SocketAddr::from(([127, 0, 0, 1], client)), _dir: dir };
    let start = Instant::now();
    while agora_net::probe::get_json(etcd.client, "/health").map(|h| h["health"] == "true").ok() != Some(true) {
        assert!(start.elapsed() < Duration::from_secs(20), "etcd did not become healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(etcd)
}

#[test]
fn etcd_keeps_what_was_synced_and_reports_when_it_is_gone() {
    let Some(etcd) = start_etcd() else { return };
    let backend = Backend::Etcd { addr: etcd.client, prefix: "agora/test".into() };
    exercise(&backend, None, "n0");
    // Another node's keys are its own.
    let (_, d, _) = open(&backend, None, "n1");
    assert!(d.is_empty());
    // etcd gone: the sync is answered with a backend error, not a hang.
    let (s, _, rx) = open(&backend, None, "n2");
    drop(etcd);
    put(&s, b"k", b"v");
    assert_eq!(sync(&s, &rx, 9).result, Err(DiskError::Backend));
}

/// A node whose storage backend goes away fails its health check, naming
/// the storage, so a balancer stops sending it work it cannot make durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_the_storage_backend_is_gone() {
    use agora_broadcast::register::{Config, Register};
    use agora_core::NodeId;
    let Some(etcd) = start_etcd() else { return };
    let peers = common::entries(2);
    let backend = Backend::Etcd { addr: etcd.client, prefix: "agora/health".into() };
    let cfg = Config { nodes: 2, writes: 1_000_000, interval: Duration::from_millis(20), ack_before_sync: false };
    let server = agora_net::NodeConfig { storage: backend, ..common::node_cfg(&peers, 0) };
    let nodes = [
        agora_net::start(server, Register::new(cfg.clone(), NodeId(0))).await.unwrap(),
        agora_net::start(common::node_cfg(&peers, 1), Register::new(cfg, NodeId(1))).await.unwrap(),
    ];
    let h = peers[0].http.unwrap();
    let health = || common::http(h, "GET", "/health", String::new());
    assert_eq!(health().await, (200, "ok\n".into()));
    drop(etcd);
    let start = Instant::now();
    loop {
        let (code, why) = health().await;
        if code == 503 {
            assert!(why.contains("storage"), "{why}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "still {code} {why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in nodes {
        n.stop().await;
    }
}
