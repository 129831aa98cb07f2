//! Cluster files: one TOML file describes every node of a cluster; each node
//! process picks its own entry by name.
//!
//! ```toml
//! protocol = "broadcast"
//! seed = 1                      # optional: seeded randomness (seed + node index)
//! data_dir = "target/run"       # optional: NAME/storage.redb for each node
//!
//! [transport]                   # optional
//! max_frame_bytes = 1048576
//! http_max_connections = 64     # control API connections (at most a quarter of the file-handle limit)
//! http_header_timeout = "5s"    # to send a request's headers, or to sit idle between requests
//!
//! [params]                      # the protocol's parameters
//! count = 20
//!
//! [storage]                     # optional
//! backend = "redb"              # redb | etcd:HOST:PORT[/PREFIX] | memory
//!
//! [security]                    # written by `agora cluster keys`
//! key_dir = "keys"              # this node's private key: KEY_DIR/NAME.key
//! token_file = "keys/token"     # the bearer token of mutating HTTP endpoints
//! protect_reads = false         # true: /status and /metrics need it too
//! plaintext = false             # true: no keys, plain TCP (never across machines)
//! loose_key_files = false       # true: accept key/token files others can read, or links (warns)
//!
//! [[node]]
//! name = "n0"
//! listen = "127.0.0.1:7100"     # peer-to-peer TLS (TCP with plaintext = true)
//! http = "127.0.0.1:8100"       # /health, /status, /metrics, /input, /faults
//! public_key = "ed25519:…"      # every node's, or none with plaintext = true
//! ```

use agora_core::config_file::{self, parse_toml, FileError};
use agora_core::{duration_str, NodeId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile<P> {
    pub protocol: String,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub transport: TransportConfig,
    #[serde(default)]
    pub data_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub security: SecuritySection,
    pub params: P,
    /// Empty only when missing, which [`ClusterFile::from_str`] refuses.
    #[serde(default)]
    pub node: Vec<NodeEntry>,
    #[serde(skip)]
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub name: String,
    pub listen: SocketAddr,
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// `ed25519:BASE64`: the key this node authenticates with.
    #[serde(default)]
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    #[serde(default)]
    pub backend: crate::storage::Backend,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    #[serde(default)]
    pub key_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub protect_reads: bool,
    #[serde(default)]
    pub plaintext: bool,
    /// Accept key and token files that others can read or that are
    /// symbolic links (with a warning): for secrets mounted that way.
    #[serde(default)]
    pub loose_key_files: bool,
}

/// Transport limits and timings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// A longer frame closes the connection.
    pub max_frame_bytes: usize,
    /// Frames queued per peer while its connection is slow or down; beyond
    /// that, sends to it are dropped (and counted).
    pub queue_frames: usize,
    #[serde(with = "duration_str")]
    pub backoff_min: Duration,
    #[serde(with = "duration_str")]
    pub backoff_max: Duration,
    /// How long an accepted connection may take to say Hello.
    #[serde(with = "duration_str")]
    pub hello_timeout: Duration,
    /// Memory for received messages waiting for the event loop, shared among
    /// peers by fairdist quotas (bytes).
    pub inbound_queue_bytes: u64,
    /// Connection slots, shared among peers by fairdist quotas.
    pub max_connections: u64,
    /// Accepted peer connections still in their handshake (before TLS and
    /// Hello say who they are); also at most a quarter of the file-handle
    /// limit. At the cap, the oldest is closed for the newest.
    pub max_pending_handshakes: usize,
    /// Concurrent HTTP connections (the control API); also at most a
    /// quarter of the process's file-handle limit, so peers keep room.
    pub http_max_connections: usize,
    /// How long an HTTP client may take to send a request's headers, and
    /// how long a kept-alive connection may sit idle.
    #[serde(with = "duration_str")]
    pub http_header_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame_bytes: 1 << 20,
            queue_frames: 4096,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            hello_timeout: Duration::from_secs(5),
            inbound_queue_bytes: 64 << 20,
            max_connections: 1024,
            max_pending_handshakes: 64,
            http_max_connections: 64,
            http_header_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything one node process needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub name: String,
    pub listen: SocketAddr,
    pub http: Option<SocketAddr>,
    /// Every node of the cluster, this one included; index = node id.
    pub peers: Vec<NodeEntry>,
    /// Seeded randomness (for reproducible experiments); OS randomness if absent.
    pub seed: Option<u64>,
    pub transport: TransportConfig,
    /// Keys: TLS to peers and signatures. `None`: plain TCP, no signing.
    pub identity: Option<std::sync::Arc<crate::security::Identity>>,
    /// The bearer token that mutating HTTP endpoints require.
    pub control_token: Option<String>,
    /// Whether read endpoints need the token too.
    pub protect_reads: bool,
    pub storage: crate::storage::Backend,
    /// Where the redb backend keeps `NAME/storage.redb`.
    pub data_dir: Option<std::path::PathBuf>,
    /// A file the node appends every output to, one JSON line each with
    /// the wall-clock time (`agora node --outputs`): what a run's
    /// histories are made of. Not part of the cluster file.
    pub output_log: Option<std::path::PathBuf>,
}

impl NodeConfig {
    /// A node of `peers` on plain TCP without keys, token or data directory
    /// (tests and benchmarks).
    pub fn plain(id: NodeId, peers: Vec<NodeEntry>) -> Self {
        let me = &peers[id.index()];
        NodeConfig {
            id,
            name: me.name.clone(),
            listen: me.listen,
            http: me.http,
            peers: peers.clone(),
            seed: None,
            transport: TransportConfig::default(),
            identity: None,
            control_token: None,
            protect_reads: false,
            storage: crate::storage::Backend::Memory,
            data_dir: None,
            output_log: None,
        }
    }
}

impl<P: DeserializeOwned> ClusterFile<P> {
    pub fn from_str(path: &str, src: &str) -> Result<Self, FileError> {
        // The `[[node]]` entries one by one: memory proportional to the
        // file, however many nodes it lists.
        let mut f: ClusterFile<P> = match config_file::cut_array_tables(src, "node") {
            Some(cut) => {
                let mut f: ClusterFile<P> =
                    config_file::parse_toml_part(path, src, &cut.rest, |at| cut.file_offset(at))?;
                if !f.node.is_empty() {
                    let message = "given both as a key and as [[node]] tables".to_string();
                    return Err(FileError {
                        path: path.into(),
                        line: None,
                        column: None,
                        field: "node".into(),
                        message,
                    });
                }
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Entry {
                    node: Vec<NodeEntry>,
                }
                f.node.reserve(cut.entries.len());
                for (i, r) in cut.entries.iter().enumerate() {
                    let entry: Entry = config_file::parse_entry(path, src, "node", i, r)?;
                    f.node.extend(entry.node);
                }
                f
            }
            None => parse_toml(path, src)?,
        };
        f.path = path.to_string();
        f.validate()?;
        Ok(f)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, FileError> {
        let (name, src) = agora_core::config_file::read(path)?;
        Self::from_str(&name, &src)
    }
}

impl<P> ClusterFile<P> {
    fn error(&self, field: String, message: String) -> FileError {
        FileError { path: self.path.clone(), line: None, column: None, field, message }
    }

    fn validate(&self) -> Result<(), FileError> {
        if self.node.is_empty() {
            return Err(self.error("node".into(), "a cluster needs at least one [[node]]".into()));
        }
        // One pass with maps: linear in the number of nodes.
        let mut names: HashMap<&str, usize> = HashMap::with_capacity(self.node.len());
        let mut addrs: HashMap<SocketAddr, usize> = HashMap::with_capacity(2 * self.node.len());
        for (i, n) in self.node.iter().enumerate() {
            if let Some(j) = names.insert(&n.name, i) {
                return Err(self.error(format!("node[{i}].name"), format!("{:?} is also node[{j}]'s name", n.name)));
            }
            if n.http == Some(n.listen) {
                return Err(self.error(format!("node[{i}].http"), "is the same address as its listen address".into()));
            }
            for a in [Some(n.listen), n.http].into_iter().flatten() {
                if let Some(j) = addrs.insert(a, i) {
                    let other = &self.node[j].name;
                    return Err(self.error(format!("node[{i}]"), format!("shares an address with node[{j}] ({other})")));
                }
            }
        }
        let keyed = self.node.iter().filter(|n| n.public_key.is_some()).count();
        if keyed != 0 && keyed != self.node.len() {
            let i = self.node.iter().position(|n| n.public_key.is_none()).expect("some node has none");
            return Err(
                self.error(format!("node[{i}].public_key"), "every node needs a public_key, or none does".into())
            );
        }
        for (i, n) in self.node.iter().enumerate() {
            if let Some(k) = &n.public_key {
                crate::security::parse_public_key(k).map_err(|e| self.error(format!("node[{i}].public_key"), e))?;
            }
        }
        if keyed > 0 && self.security.key_dir.is_none() {
            return Err(self.error(
                "security.key_dir".into(),
                "the nodes have public keys, so each needs KEY_DIR/NAME.key: set key_dir".into(),
            ));
        }
        let t = &self.transport;
        if t.max_frame_bytes < 64 || t.queue_frames == 0 || t.backoff_min.is_zero() || t.backoff_min > t.backoff_max {
            return Err(self.error(
                "transport".into(),
                "needs max_frame_bytes ≥ 64, queue_frames ≥ 1 and 0 < backoff_min ≤ backoff_max".into(),
            ));
        }
        if t.inbound_queue_bytes < t.max_frame_bytes as u64 * 4 || t.max_connections < 4 {
            return Err(self.error(
                "transport".into(),
                "needs inbound_queue_bytes ≥ 4 × max_frame_bytes (a lone peer may queue a quarter) and max_connections ≥ 4".into(),
            ));
        }
        if t.http_max_connections == 0 || t.http_header_timeout.is_zero() {
            return Err(
                self.error("transport".into(), "needs http_max_connections ≥ 1 and http_header_timeout > 0".into())
            );
        }
        Ok(())
    }

    /// The configuration of the node called `name`.
    pub fn node_config(&self, name: &str) -> Result<NodeConfig, FileError> {
        let i = self.node.iter().position(|n| n.name == name).ok_or_else(|| {
            // A few names, not a million.
            const SHOWN: usize = 5;
            let mut names: Vec<&str> = self.node.iter().take(SHOWN).map(|n| n.name.as_str()).collect();
            if self.node.len() > SHOWN {
                names.push("…");
            }
            let nodes = format!("{} nodes: {}", self.node.len(), names.join(", "));
            self.error("node".into(), format!("no node is called {name:?} ({nodes})"))
        })?;
        let n = &self.node[i];
        let sec = &self.security;
        let identity = match (&n.public_key, sec.plaintext) {
            (Some(listed), _) => {
                let dir = sec.key_dir.as_ref().expect("validated: keys need key_dir");
                let path = dir.join(format!("{}.key", n.name));
                let secret = crate::security::read_key(&path, sec.loose_key_files).map_err(|e| self.error("security.key_dir".into(), e))?;
                if crate::security::public_key_string(&secret.verifying_key()) != *listed {
                    return Err(self.error(
                        format!("node[{i}].public_key"),
                        format!("is not the public half of {}", path.display()),
                    ));
                }
                let public = self
                    .node
                    .iter()
                    .map(|m| crate::security::parse_public_key(m.public_key.as_deref().unwrap_or_default()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.error("node".into(), e))?;
                let id = crate::security::Identity::new(NodeId(i as u32), secret, public)
                    .map_err(|e| self.error("security".into(), e))?;
                Some(std::sync::Arc::new(id))
            }
            (None, true) => None,
            (None, false) => {
                return Err(self.error(
                    format!("node[{i}].public_key"),
                    format!(
                        "the nodes have no keys: generate them with `agora cluster keys {} --out DIR`, or set [security] plaintext = true (unauthenticated, for a trusted network only)",
                        self.path
                    ),
                ))
            }
        };
        let control_token = match &sec.token_file {
            Some(p) => Some(
                crate::security::read_secret_file(p, sec.loose_key_files)
                    .map_err(|e| self.error("security.token_file".into(), e))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        if control_token.as_deref() == Some("") {
            return Err(self.error("security.token_file".into(), "the token file is empty".into()));
        }
        Ok(NodeConfig {
            id: NodeId(i as u32),
            name: n.name.clone(),
            listen: n.listen,
            http: n.http,
            peers: self.node.clone(),
            seed: self.seed,
            transport: self.transport.clone(),
            identity,
            control_token,
            protect_reads: sec.protect_reads,
            storage: self.storage.backend.clone(),
            data_dir: self.data_dir.clone(),
            output_log: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plaintext broadcast-style cluster file of `n` nodes on distinct ports.
    fn file(n: usize) -> String {
        let mut s = String::from("protocol = \"x\"\n[params]\n[security]\nplaintext = true\n");
        for i in 0..n {
            let (ip, port) = (i / 30_000, 1024 + 2 * (i % 30_000));
            s += &format!(
                "[[node]]\nname = \"n{i}\"\nlisten = \"127.0.{ip}.1:{port}\"\nhttp = \"127.0.{ip}.1:{}\"\n",
                port + 1
            );
        }
        s
    }

    #[test]
    fn node_lists_are_checked_in_one_pass_and_errors_stay_short() {
        let start = std::time::Instant::now();
        let big: ClusterFile<serde::de::IgnoredAny> = ClusterFile::from_str("big.toml", &file(100_000)).unwrap();
        let e = big.node_config("nobody").unwrap_err().to_string();
        assert!(e.contains("100000 nodes: n0, n1, n2, n3, n4, …") && e.len() < 300, "{e}");
        eprintln!("100,000 nodes parsed and checked in {:?}", start.elapsed());
        // Duplicates are found wherever they are.
        let dup = file(50) + "[[node]]\nname = \"n7\"\nlisten = \"127.0.9.9:1\"\n";
        let e = ClusterFile::<serde::de::IgnoredAny>::from_str("dup.toml", &dup).unwrap_err().to_string();
        assert!(e.contains("node[50].name") && e.contains("\"n7\" is also node[7]'s name"), "{e}");
        let shared = file(50) + "[[node]]\nname = \"m\"\nlisten = \"127.0.0.1:1100\"\n";
        let e = ClusterFile::<serde::de::IgnoredAny>::from_str("shared.toml", &shared).unwrap_err().to_string();
        assert!(e.contains("node[50]") && e.contains("shares an address with node[38] (n38)"), "{e}");
        // Entries are parsed one by one: a bad one is named by its index
        // and its line in the file.
        let bad = file(3) + "[[node]]\nname = \"x\"\nlisten = \"nowhere\"\n";
        let e = ClusterFile::<serde::de::IgnoredAny>::from_str("bad.toml", &bad).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("node[3].listen", Some(19)), "{e}");
    }
}
