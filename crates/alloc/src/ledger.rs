//! The public ledger: one entry per agent, written by the ledger node at each
//! barrier, behind one trait with three backends.
//!
//! * [`MemoryLedger`]: the simulator's. It also keeps every write, so tests
//!   can inspect what was ever made public.
//! * [`RedbLedger`]: a redb file, the embedded default for real runs. A
//!   restarted ledger node reads it back and resumes.
//! * [`EtcdLedger`]: etcd, the distributed option for deployments across
//!   machines. It speaks etcd's v3 JSON gateway (`/v3/kv/put`,
//!   `/v3/kv/range`) over plain HTTP. This avoids a gRPC stack (tonic, prost)
//!   for two calls, and the gateway is on by default in etcd ≥ 3.4.
//!
//! Backend calls block: a redb commit or an etcd round trip holds up the
//! ledger node's event loop for its duration. They happen once per barrier,
//! and the ledger node has nothing else to do meanwhile.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What an agent makes public: nothing else about it is ever written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The round this entry was published for.
    pub round: u32,
    /// The agent's level (see [`crate::rule`]).
    pub level: u32,
    /// Nothing of the agent's changed in its latest step.
    pub converged: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("ledger ({backend}): {message}")]
pub struct LedgerError {
    pub backend: &'static str,
    pub message: String,
}

fn error(backend: &'static str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError { backend, message: e.to_string() }
}

/// A ledger backend. Entries are keyed by agent (node id).
pub trait Ledger: Send {
    /// Writes a batch atomically (one barrier's publications).
    fn write(&mut self, batch: &[(u32, Entry)]) -> Result<(), LedgerError>;
    /// Every entry, by agent.
    fn read_all(&mut self) -> Result<BTreeMap<u32, Entry>, LedgerError>;
    /// Every batch ever written, where the backend keeps them (memory only).
    fn history(&self) -> Option<&[Vec<(u32, Entry)>]> {
        None
    }
}

/// In memory, with the full history of writes.
#[derive(Default, Debug, Clone)]
pub struct MemoryLedger {
    entries: BTreeMap<u32, Entry>,
    /// Every batch ever written, in order.
    pub history: Vec<Vec<(u32, Entry)>>,
}

impl Ledger for MemoryLedger {
    fn write(&mut self, batch: &[(u32, Entry)]) -> Result<(), LedgerError> {
        self.entries.extend(batch.iter().copied());
        self.history.push(batch.to_vec());
        Ok(())
    }
    fn read_all(&mut self) -> Result<BTreeMap<u32, Entry>, LedgerError> {
        Ok(self.entries.clone())
    }
    fn history(&self) -> Option<&[Vec<(u32, Entry)>]> {
        Some(&self.history)
    }
}

const ENTRIES: redb::TableDefinition<u32, &[u8]> = redb::TableDefinition::new("entries");

/// A redb file.
pub struct RedbLedger {
    db: redb::Database,
}

impl RedbLedger {
    /// Opens the file, creating it if absent.
    pub fn open(path: &std::path::Path) -> Result<Self, LedgerError> {
        let db = redb::Database::create(path).map_err(|e| error("redb", format!("{}: {e}", path.display())))?;
        Ok(RedbLedger { db })
    }
}

impl Ledger for RedbLedger {
    fn write(&mut self, batch: &[(u32, Entry)]) -> Result<(), LedgerError> {
        let e = |e: redb::Error| error("redb", e);
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        {
            let mut table = tx.open_table(ENTRIES).map_err(|x| e(x.into()))?;
            for (agent, entry) in batch {
                let bytes = serde_json::to_vec(entry).expect("entries serialize");
                table.insert(agent, bytes.as_slice()).map_err(|x| e(x.into()))?;
            }
        }
        tx.commit().map_err(|x| e(x.into()))
    }

    fn read_all(&mut self) -> Result<BTreeMap<u32, Entry>, LedgerError> {
        use redb::{ReadableDatabase, ReadableTable};
        let e = |e: redb::Error| error("redb", e);
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let table = match tx.open_table(ENTRIES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(x) => return Err(e(x.into())),
        };
        let mut out = BTreeMap::new();
        for row in table.iter().map_err(|x| e(x.into()))? {
            let (k, v) = row.map_err(|x| e(x.into()))?;
            let entry: Entry = serde_json::from_slice(v.value())
                .map_err(|x| error("redb", format!("entry of agent {}: {x}", k.value())))?;
            out.insert(k.value(), entry);
        }
        Ok(out)
    }
}

/// etcd through its v3 JSON gateway. Keys are `{prefix}{agent}`, values the
/// entry as JSON.
pub struct EtcdLedger {
    addr: SocketAddr,
    prefix: String,
}

impl EtcdLedger {
    pub fn new(addr: SocketAddr, prefix: &str) -> Self {
        EtcdLedger { addr, prefix: prefix.to_string() }
    }

    fn call(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, LedgerError> {
        let (code, text) =
            agora_net::probe::request(self.addr, "POST", path, Some(&body.to_string()), Duration::from_secs(5))
                .map_err(|e| error("etcd", format!("{}{path}: {e}", self.addr)))?;
        if code != 200 {
            return Err(error("etcd", format!("{path}: HTTP {code}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| error("etcd", format!("{path}: bad reply: {e}")))
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(field: &serde_json::Value) -> Result<Vec<u8>, LedgerError> {
    use base64::Engine;
    let s = field.as_str().ok_or_else(|| error("etcd", "missing key or value in a range reply"))?;
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| error("etcd", e))
}

impl Ledger for EtcdLedger {
    fn write(&mut self, batch: &[(u32, Entry)]) -> Result<(), LedgerError> {
        // One transaction: all puts or none.
        let success: Vec<_> = batch
            .iter()
            .map(|(agent, entry)| {
                let key = format!("{}{agent}", self.prefix);
                let value = serde_json::to_vec(entry).expect("entries serialize");
                serde_json::json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(&value)}})
            })
            .collect();
        self.call("/v3/kv/txn", serde_json::json!({ "success": success }))?;
        Ok(())
    }

    fn read_all(&mut self) -> Result<BTreeMap<u32, Entry>, LedgerError> {
        // The range [prefix, prefix with its last byte + 1) holds every key under the prefix.
        let mut end = self.prefix.clone().into_bytes();
        *end.last_mut().expect("a non-empty prefix") += 1;
        let reply =
            self.call("/v3/kv/range", serde_json::json!({"key": b64(self.prefix.as_bytes()), "range_end": b64(&end)}))?;
        let mut out = BTreeMap::new();
        for kv in reply["kvs"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = String::from_utf8(unb64(&kv["key"])?).map_err(|e| error("etcd", e))?;
            let agent = key[self.prefix.len()..]
                .parse()
                .map_err(|_| error("etcd", format!("key {key:?} is not {}<agent>", self.prefix)))?;
            let entry = serde_json::from_slice(&unb64(&kv["value"])?)
                .map_err(|e| error("etcd", format!("entry under {key:?}: {e}")))?;
            out.insert(agent, entry);
        }
        Ok(out)
    }
}

/// Which backend a ledger node uses: `memory`, `redb:PATH` or
/// `etcd:HOST:PORT[/PREFIX]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Backend {
    Memory,
    Redb(std::path::PathBuf),
    Etcd { addr: SocketAddr, prefix: String },
}

impl TryFrom<String> for Backend {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "memory" {
            return Ok(Backend::Memory);
        }
        if let Some(path) = s.strip_prefix("redb:") {
            if path.is_empty() {
                return Err("redb: needs a file path (redb:PATH)".into());
            }
            return Ok(Backend::Redb(path.into()));
        }
        if let Some(rest) = s.strip_prefix("etcd:") {
            let (addr, prefix) = rest.split_once('/').unwrap_or((rest, "agora/alloc"));
            let addr = addr.parse().map_err(|e| format!("etcd:{addr}: not HOST:PORT ({e})"))?;
            return Ok(Backend::Etcd { addr, prefix: format!("{prefix}/") });
        }
        Err(format!("unknown ledger {s:?}: use memory, redb:PATH or etcd:HOST:PORT[/PREFIX]"))
    }
}

impl From<Backend> for String {
    fn from(b: Backend) -> String {
        match b {
            Backend::Memory => "memory".into(),
            Backend::Redb(p) => format!("redb:{}", p.display()),
            Backend::Etcd { addr, prefix } => format!("etcd:{addr}/{}", prefix.trim_end_matches('/')),
        }
    }
}

impl Backend {
    pub fn open(&self) -> Result<Box<dyn Ledger>, LedgerError> {
        Ok(match self {
            Backend::Memory => Box::new(MemoryLedger::default()),
            Backend::Redb(path) => Box::new(RedbLedger::open(path)?),
            Backend::Etcd { addr, prefix } => Box::new(EtcdLedger::new(*addr, prefix)),
        })
    }
}
