//! The storage capability on real processes: one thread per node owns the
//! backend, so a commit never blocks the event loop.
//!
//! The event loop hands every write and sync to the thread in order. Writes
//! wait in memory until a sync; the thread then commits every write and
//! every sync that queued up meanwhile in **one** durable commit (group
//! commit: one fsync for many syncs) and answers each sync to the event
//! loop. A crash loses exactly the writes no sync covered.
//!
//! Backends:
//! * `redb` (default): `DATA_DIR/NAME/storage.redb`, commits with redb's
//!   immediate durability (fsync).
//! * `etcd:HOST:PORT[/PREFIX]`: one etcd transaction per group commit
//!   through etcd's v3 JSON gateway (etcd syncs its raft log before
//!   answering), for deployments where the disk must outlive the machine.
//! * `memory`: nothing survives the process; for tests and benchmarks.
//!
//! Records are sealed (`agora_core::storage::seal`), so a record damaged at
//! rest is reported to the protocol on restart, never handed to it.

use agora_core::storage::{seal, DiskError, Durable, Space, StoreOp, SyncDone};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Where a node's durable state lives (`[storage] backend` in the cluster file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum Backend {
    #[default]
    Redb,
    Etcd {
        addr: SocketAddr,
        prefix: String,
    },
    Memory,
}

impl TryFrom<String> for Backend {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "redb" => return Ok(Backend::Redb),
            "memory" => return Ok(Backend::Memory),
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("etcd:") {
            let (addr, prefix) = rest.split_once('/').unwrap_or((rest, "agora"));
            let addr = addr.parse().map_err(|e| format!("etcd:{addr}: not HOST:PORT ({e})"))?;
            return Ok(Backend::Etcd { addr, prefix: prefix.trim_end_matches('/').to_string() });
        }
        Err(format!("unknown storage backend {s:?}: use redb, etcd:HOST:PORT[/PREFIX] or memory"))
    }
}

impl From<Backend> for String {
    fn from(b: Backend) -> String {
        match b {
            Backend::Redb => "redb".into(),
            Backend::Memory => "memory".into(),
            Backend::Etcd { addr, prefix } => format!("etcd:{addr}/{prefix}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("storage ({backend}): {message}")]
pub struct StorageError {
    pub backend: &'static str,
    pub message: String,
}

fn err(backend: &'static str, e: impl std::fmt::Display) -> StorageError {
    StorageError { backend, message: e.to_string() }
}

/// Names read back from a disk become `&'static str` (a `Space`'s type):
/// leaked once per name at start-up, a handful per node.
fn intern(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// A sealed record as a backend stores it.
enum Row {
    Table { space: Space, key: Vec<u8>, sealed: Option<Vec<u8>> },
    Log { space: Space, index: u64, sealed: Vec<u8> },
}

trait Store: Send {
    /// Makes `rows` durable in one commit.
    fn commit(&mut self, rows: &[Row]) -> Result<(), StorageError>;
}

// ---- redb ---------------------------------------------------------------

const TABLES: redb::TableDefinition<(&str, &str, &[u8]), &[u8]> = redb::TableDefinition::new("tables");
const LOGS: redb::TableDefinition<(&str, &str, u64), &[u8]> = redb::TableDefinition::new("logs");

struct RedbStore(redb::Database);

impl RedbStore {
    fn open(path: &Path) -> Result<(Self, Durable, BTreeMap<Space, u64>), StorageError> {
        use redb::{ReadableDatabase, ReadableTable};
        let e = |x: redb::Error| err("redb", format!("{}: {x}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|x| err("redb", format!("{}: {x}", dir.display())))?;
        }
        let db = redb::Database::create(path).map_err(|x| e(x.into()))?;
        // A node's data is its own: readable by its owner only.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|x| err("redb", format!("{}: {x}", path.display())))?;
        }
        let tx = db.begin_read().map_err(|x| e(x.into()))?;
        let mut tables = Vec::new();
        let mut logs = Vec::new();
        match tx.open_table(TABLES) {
            Ok(t) => {
                for row in t.iter().map_err(|x| e(x.into()))? {
                    let (k, v) = row.map_err(|x| e(x.into()))?;
                    let (service, name, key) = k.value();
                    tables.push((
                        Space { service: intern(service), name: intern(name) },
                        key.to_vec(),
                        v.value().to_vec(),
                    ));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(x) => return Err(e(x.into())),
        }
        match tx.open_table(LOGS) {
            Ok(t) => {
                for row in t.iter().map_err(|x| e(x.into()))? {
                    let (k, v) = row.map_err(|x| e(x.into()))?;
                    let (service, name, index) = k.value();
                    logs.push((Space { service: intern(service), name: intern(name) }, index, v.value().to_vec()));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(x) => return Err(e(x.into())),
        }
        drop(tx);
        let next = next_indices(&logs);
        let durable = Durable::from_sealed(
            tables.iter().map(|(s, k, v)| (*s, k.as_slice(), v.as_slice())),
            logs.iter().map(|(s, i, v)| (*s, *i, v.as_slice())),
        );
        Ok((RedbStore(db), durable, next))
    }
}

fn next_indices(logs: &[(Space, u64, Vec<u8>)]) -> BTreeMap<Space, u64> {
    let mut next = BTreeMap::new();
    for (s, i, _) in logs {
        let n = next.entry(*s).or_insert(0);
        *n = (*n).max(i + 1);
    }
    next
}

impl Store for RedbStore {
    fn commit(&mut self, rows: &[Row]) -> Result<(), StorageError> {
        let e = |x: redb::Error| err("redb", x);
        let tx = self.0.begin_write().map_err(|x| e(x.into()))?;
        {
            let mut tables = tx.open_table(TABLES).map_err(|x| e(x.into()))?;
            let mut logs = tx.open_table(LOGS).map_err(|x| e(x.into()))?;
            for row in rows {
                match row {
                    Row::Table { space, key, sealed: Some(v) } => {
                        tables
                            .insert((space.service, space.name, key.as_slice()), v.as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                    Row::Table { space, key, sealed: None } => {
                        tables.remove((space.service, space.name, key.as_slice())).map_err(|x| e(x.into()))?;
                    }
                    Row::Log { space, index, sealed } => {
                        logs.insert((space.service, space.name, *index), sealed.as_slice()).map_err(|x| e(x.into()))?;
                    }
                }
            }
        }
        tx.commit().map_err(|x| e(x.into()))
    }
}

// ---- etcd ---------------------------------------------------------------

/// etcd through its v3 JSON gateway (`/v3/kv/txn`, `/v3/kv/range`): no gRPC
/// stack for two calls; the gateway is on by default in etcd ≥ 3.4.
pub struct Etcd {
    pub addr: SocketAddr,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(field: &serde_json::Value) -> Result<Vec<u8>, StorageError> {
    use base64::Engine;
    let s = field.as_str().ok_or_else(|| err("etcd", "missing key or value in a range reply"))?;
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| err("etcd", e))
}

impl Etcd {
    /// One gateway call.
    pub fn call(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, StorageError> {
        let (code, text) =
            crate::probe::request(self.addr, "POST", path, Some(&body.to_string()), Duration::from_secs(5))
                .map_err(|e| err("etcd", format!("{}{path}: {e}", self.addr)))?;
        if code != 200 {
            return Err(err("etcd", format!("{path}: HTTP {code}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| err("etcd", format!("{path}: bad reply: {e}")))
    }

    /// Every key and value under `prefix`.
    pub fn range(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        // [prefix, prefix with its last byte + 1) holds every key under it.
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("a non-empty prefix") += 1;
        let reply =
            self.call("/v3/kv/range", serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)}))?;
        let mut out = Vec::new();
        for kv in reply["kvs"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = String::from_utf8(unb64(&kv["key"])?).map_err(|e| err("etcd", e))?;
            out.push((key, unb64(&kv["value"])?));
        }
        Ok(out)
    }

    /// Puts (`Some`) and deletes (`None`) in one transaction: all or none.
    pub fn txn(&self, ops: &[(String, Option<&[u8]>)]) -> Result<(), StorageError> {
        let success: Vec<_> = ops
            .iter()
            .map(|(k, v)| match v {
                Some(v) => serde_json::json!({"request_put": {"key": b64(k.as_bytes()), "value": b64(v)}}),
                None => serde_json::json!({"request_delete_range": {"key": b64(k.as_bytes())}}),
            })
            .collect();
        self.call("/v3/kv/txn", serde_json::json!({ "success": success }))?;
        Ok(())
    }
}

/// Keys: `PREFIX/NODE/t/SERVICE/NAME/HEXKEY` and `PREFIX/NODE/l/SERVICE/NAME/INDEX`.
struct EtcdStore {
    etcd: Etcd,
    root: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

impl EtcdStore {
    fn open(addr: SocketAddr, prefix: &str, node: &str) -> Result<(Self, Durable, BTreeMap<Space, u64>), StorageError> {
        let store = EtcdStore { etcd: Etcd { addr }, root: format!("{prefix}/{node}/") };
        let mut tables = Vec::new();
        let mut logs = Vec::new();
        for (key, value) in store.etcd.range(&store.root)? {
            let rest = &key[store.root.len()..];
            let parts: Vec<&str> = rest.splitn(4, '/').collect();
            let bad = || err("etcd", format!("key {key:?} is not {}(t|l)/SERVICE/NAME/KEY", store.root));
            let [kind, service, name, k] = parts[..] else { return Err(bad()) };
            let space = Space { service: intern(service), name: intern(name) };
            match kind {
                "t" => tables.push((space, unhex(k).ok_or_else(bad)?, value)),
                "l" => logs.push((space, k.parse().map_err(|_| bad())?, value)),
                _ => return Err(bad()),
            }
        }
        logs.sort_by_key(|l| (l.0, l.1));
        let next = next_indices(&logs);
        let durable = Durable::from_sealed(
            tables.iter().map(|(s, k, v)| (*s, k.as_slice(), v.as_slice())),
            logs.iter().map(|(s, i, v)| (*s, *i, v.as_slice())),
        );
        Ok((store, durable, next))
    }
}

impl Store for EtcdStore {
    fn commit(&mut self, rows: &[Row]) -> Result<(), StorageError> {
        let ops: Vec<(String, Option<&[u8]>)> = rows
            .iter()
            .map(|r| match r {
                Row::Table { space, key, sealed } => {
                    (format!("{}t/{}/{}/{}", self.root, space.service, space.name, hex(key)), sealed.as_deref())
                }
                Row::Log { space, index, sealed } => {
                    (format!("{}l/{}/{}/{index:020}", self.root, space.service, space.name), Some(sealed.as_slice()))
                }
            })
            .collect();
        self.etcd.txn(&ops)
    }
}

struct NoStore;
impl Store for NoStore {
    fn commit(&mut self, _: &[Row]) -> Result<(), StorageError> {
        Ok(())
    }
}

// ---- the storage thread -------------------------------------------------

/// The handle the event loop writes through.
pub struct Storage {
    /// `None` only while dropping: closing it stops the thread.
    tx: Option<mpsc::Sender<StoreOp>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a group commit did, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct Committed {
    pub syncs: usize,
    pub rows: usize,
    pub took: Duration,
}

impl Storage {
    /// Opens the backend and reads the disk back. `done` receives each
    /// sync's answer (in order) and each commit's figures.
    pub fn open(
        backend: &Backend,
        data_dir: Option<&Path>,
        node: &str,
        done: impl Fn(SyncDone, Option<Committed>) + Send + 'static,
    ) -> Result<(Storage, Durable), StorageError> {
        let (store, durable, next): (Box<dyn Store>, _, _) = match backend {
            Backend::Redb => {
                let dir = data_dir.ok_or_else(|| err("redb", "no data_dir is configured for this node"))?;
                let (s, d, n) = RedbStore::open(&redb_path(dir, node))?;
                (Box::new(s), d, n)
            }
            Backend::Etcd { addr, prefix } => {
                let (s, d, n) = EtcdStore::open(*addr, prefix, node)?;
                (Box::new(s), d, n)
            }
            Backend::Memory => (Box::new(NoStore), Durable::default(), BTreeMap::new()),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("storage-{node}"))
            .spawn(move || run(store, next, rx, done))
            .map_err(|e| err("thread", e))?;
        Ok((Storage { tx: Some(tx), thread: Some(thread) }, durable))
    }

    pub fn submit(&self, op: StoreOp) {
        // The thread only stops when this handle is dropped.
        if let Some(tx) = &self.tx {
            let _ = tx.send(op);
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the redb backend keeps `node`'s storage under `data_dir`.
pub fn redb_path(data_dir: &Path, node: &str) -> PathBuf {
    data_dir.join(node).join("storage.redb")
}

fn run(
    mut store: Box<dyn Store>,
    mut next: BTreeMap<Space, u64>,
    rx: mpsc::Receiver<StoreOp>,
    done: impl Fn(SyncDone, Option<Committed>),
) {
    let mut rows: Vec<Row> = Vec::new();
    let mut syncs: Vec<(&'static str, u64)> = Vec::new();
    while let Ok(first) = rx.recv() {
        // Take everything that queued up while the last commit ran.
        let mut op = Some(first);
        while let Some(o) = op.take().or_else(|| rx.try_recv().ok()) {
            match o {
                StoreOp::Put { space, key, value } => rows.push(Row::Table { space, key, sealed: Some(seal(&value)) }),
                StoreOp::Delete { space, key } => rows.push(Row::Table { space, key, sealed: None }),
                StoreOp::Append { space, record } => {
                    let i = next.entry(space).or_insert(0);
                    rows.push(Row::Log { space, index: *i, sealed: seal(&record) });
                    *i += 1;
                }
                StoreOp::Sync { service, ticket } => syncs.push((service, ticket)),
            }
        }
        if syncs.is_empty() {
            continue; // writes wait in memory for a sync
        }
        let started = std::time::Instant::now();
        let result = store.commit(&rows).map_err(|e| {
            tracing::warn!("{e}");
            DiskError::Backend
        });
        let c = Committed { syncs: syncs.len(), rows: rows.len(), took: started.elapsed() };
        if result.is_err() {
            // The writes are lost: the log indices they took are given back.
            for row in &rows {
                if let Row::Log { space, index, .. } = row {
                    let n = next.entry(*space).or_insert(0);
                    *n = (*n).min(*index);
                }
            }
        }
        rows.clear();
        for (i, (service, ticket)) in syncs.drain(..).enumerate() {
            done(SyncDone { service, ticket, result }, (i == 0).then_some(c));
        }
    }
}
