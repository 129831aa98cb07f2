//! The ledger backends behind one trait: memory, a redb file, and etcd (a
//! real `etcd` process on a loopback port, started and stopped here).

use agora_alloc::ledger::{Backend, Entry, EtcdLedger, Ledger, MemoryLedger, RedbLedger};
use agora_alloc::node::{Config, Node, Output, Setup};
use agora_alloc::{generate, max_flow};
use agora_core::Time;
use agora_sim::{Model, Sim, SimConfig};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn entry(round: u32, level: u32) -> Entry {
    Entry { round, level, converged: round.is_multiple_of(2) }
}

/// What every backend must do: batches land whole, later writes win, reads see everything.
fn exercise(ledger: &mut dyn Ledger) {
    assert!(ledger.read_all().unwrap().is_empty());
    ledger.write(&[(1, entry(1, 1)), (2, entry(1, 2)), (17, entry(1, u32::MAX))]).unwrap();
    ledger.write(&[(2, entry(2, 4))]).unwrap();
    let all = ledger.read_all().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[&1], entry(1, 1));
    assert_eq!(all[&2], entry(2, 4));
    assert_eq!(all[&17], entry(1, u32::MAX));
    ledger.write(&[]).unwrap();
    assert_eq!(ledger.read_all().unwrap(), all);
}

#[test]
fn memory_ledger() {
    let mut m = MemoryLedger::default();
    exercise(&mut m);
    assert_eq!(m.history.len(), 3, "every batch is kept");
}

#[test]
fn redb_ledger_persists_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    exercise(&mut RedbLedger::open(&path).unwrap());
    let again = RedbLedger::open(&path).unwrap().read_all().unwrap();
    assert_eq!(again[&2], entry(2, 4));
    // Not a redb file: the error names it.
    let bad = dir.path().join("not-a-ledger");
    std::fs::write(&bad, b"hello, I am a text file and not a database at all").unwrap();
    let e = RedbLedger::open(&bad).err().expect("refused");
    assert!(e.to_string().contains("not-a-ledger"), "{e}");
}

#[test]
fn backend_names_parse_and_bad_ones_are_explained() {
    assert_eq!(Backend::try_from("memory".to_string()), Ok(Backend::Memory));
    assert_eq!(Backend::try_from("redb:/tmp/x".to_string()), Ok(Backend::Redb("/tmp/x".into())));
    let etcd = Backend::try_from("etcd:127.0.0.1:2379/agora/test".to_string()).unwrap();
    assert_eq!(etcd, Backend::Etcd { addr: "127.0.0.1:2379".parse().unwrap(), prefix: "agora/test/".into() });
    assert_eq!(String::from(etcd), "etcd:127.0.0.1:2379/agora/test");
    for (bad, want) in
        [("redb:", "needs a file path"), ("etcd:localhost", "not HOST:PORT"), ("sqlite:x", "unknown ledger")]
    {
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

fn etcd_binary() -> Option<String> {
    let candidates = ["/usr/bin/etcd", "/usr/local/bin/etcd"];
    candidates.iter().find(|p| std::path::Path::new(p).exists()).map(|p| p.to_string())
}

fn start_etcd() -> Option<Etcd> {
    let Some(bin) = etcd_binary() else {
        assert!(
            std::env::var_os("AGORA_REQUIRE_ETCD").is_none(),
            "AGORA_REQUIRE_ETCD is set but there is no etcd binary"
        );
        eprintln!(
            "SKIPPED: no etcd binary (looked in /usr/bin and /usr/local/bin). Install it with \
             `apt-get install etcd-server` (Debian) to run the etcd ledger tests."
        );
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
fn etcd_ledger_against_a_real_etcd() {
    let Some(etcd) = start_etcd() else { return };
    exercise(&mut EtcdLedger::new(etcd.client, "agora/test/a/"));
    // A second prefix is a separate ledger; the first one's keys stay out of it.
    let mut other = EtcdLedger::new(etcd.client, "agora/test/b/");
    assert!(other.read_all().unwrap().is_empty());

    // A whole simulated run with the ledger node writing through to etcd.
    let net = generate(4, 6, 2, 8).unwrap().network().unwrap();
    let config = Config {
        instance: String::new(),
        ledger: Backend::Etcd { addr: etcd.client, prefix: "agora/run/".into() },
        phase_timeout: Duration::from_millis(100),
        silent_rounds: 3,
        asynchronous: false,
        tick: Duration::from_millis(20),
        max_rounds: 1000,
    };
    let setup = Arc::new(Setup { config, net: net.clone() });
    let s = setup.clone();
    let delay = Model::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(5) };
    let mut sim = Sim::new(setup.nodes(), move |id| Node::new(s.clone(), id), delay, SimConfig::new(1));
    sim.run_until(Time::from_nanos(60_000_000_000)).unwrap();
    assert!(sim.outputs().iter().any(|o| matches!(o.output, Output::Finished { converged: true, .. })));
    let total: f64 = agora_alloc::node::allocation(&setup, |id| sim.node(id)).iter().sum();
    assert!(total >= (1.0 - 1e-3) * max_flow(&net));
    let entries = EtcdLedger::new(etcd.client, "agora/run/").read_all().unwrap();
    assert_eq!(entries.len(), setup.nodes() as usize - 1, "one entry per agent");

    // etcd gone: the ledger node reports the failure instead of hanging or crashing.
    drop(etcd);
    let mut dead = EtcdLedger::new(SocketAddr::from(([127, 0, 0, 1], free_port())), "x/");
    let e = dead.write(&[(1, entry(1, 1))]).unwrap_err();
    assert!(e.to_string().contains("etcd"), "{e}");
}
