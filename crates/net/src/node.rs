//! Starting a node: bind its sockets, open its storage, and spawn its tasks
//! — the event loop (`host.rs`), one task per peer and the accept
//! loop (`transport.rs`), and the HTTP server (`http.rs`).

use crate::admission::Admission;
use crate::config::NodeConfig;
use crate::faults::FaultLayer;
use crate::host::Host;
use crate::metrics::Metrics;
use crate::shared::{LoopMsg, Shared};
use crate::storage::Storage;
use crate::transport::{accept_loop, peer_task, Slotted};
use agora_core::{NodeId, Protocol};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot open the output log {path}: {source}")]
    OutputLog {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running node. Dropping it does not stop it: call [`NodeHandle::stop`].
pub struct NodeHandle {
    pub name: String,
    pub http_addr: Option<SocketAddr>,
    token: CancellationToken,
    tasks: JoinSet<()>,
}

impl NodeHandle {
    /// Stops every task of the node and waits (up to 5 s) for them.
    pub async fn stop(mut self) {
        self.token.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if timeout(Duration::from_secs(5), all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

/// Binds the node's sockets and starts it. Errors only if a socket cannot be
/// bound; everything after that (peers down, bad frames) is handled inside.
pub async fn start<P: Protocol>(cfg: NodeConfig, protocol: P) -> Result<NodeHandle, NetError> {
    start_with(cfg, protocol, None).await
}

/// [`start`] with the protocol's own HTTP endpoints beside the node's.
pub async fn start_with<P: Protocol>(
    cfg: NodeConfig,
    mut protocol: P,
    api: Option<crate::api::Api<P>>,
) -> Result<NodeHandle, NetError> {
    let listener = TcpListener::bind(cfg.listen).await.map_err(|source| NetError::Bind {
        what: "peers",
        addr: cfg.listen,
        source,
    })?;
    let http = match cfg.http {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.map_err(|source| NetError::Bind { what: "HTTP", addr, source })?)
        }
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let n = cfg.peers.len();
    let me = cfg.id;
    let metrics = Metrics::new();
    let admission = Admission::new(n, cfg.transport.inbound_queue_bytes, cfg.transport.max_connections, &metrics);
    let shared = Arc::new(Shared {
        connected: (0..n).map(|_| AtomicBool::new(false)).collect(),
        admission,
        metrics,
        faults: Mutex::new(FaultLayer::default()),
        outputs: AtomicU64::new(0),
        reject_log: Mutex::default(),
        storage_failing: AtomicBool::new(false),
        started: std::time::Instant::now(),
        cfg,
    });
    let token = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // Unbounded: what peers put in is bounded by their quotas instead, so a
    // flooding peer cannot block the others' readers.
    let (loop_tx, loop_rx) = mpsc::unbounded_channel::<LoopMsg<P>>();
    let mut queues = Vec::with_capacity(n);
    let mut accepted = Vec::with_capacity(n);
    for peer in (0..n as u32).map(NodeId) {
        if peer == me {
            queues.push(None);
            accepted.push(None);
            continue;
        }
        let (qtx, qrx) = mpsc::channel::<Bytes>(shared.cfg.transport.queue_frames);
        let (atx, arx) = mpsc::channel::<Slotted>(2);
        tasks.spawn(peer_task::<P>(shared.clone(), peer, qrx, arx, loop_tx.clone(), token.clone()));
        queues.push(Some(qtx));
        accepted.push(Some(atx));
    }
    tasks.spawn(accept_loop::<P>(listener, shared.clone(), Arc::new(accepted), token.clone()));
    if let Some(l) = http {
        tasks.spawn(crate::http::serve::<P>(l, shared.clone(), loop_tx.clone(), api, token.clone()));
    }
    let storage = {
        let (tx, s) = (loop_tx.clone(), shared.clone());
        let done = move |d: agora_core::storage::SyncDone, committed: Option<crate::storage::Committed>| {
            s.storage_failing.store(d.result.is_err(), Ordering::Relaxed);
            if let Some(c) = committed {
                s.metrics.storage_commits.inc();
                s.metrics.storage_commit_seconds.observe(c.took.as_secs_f64());
            }
            s.metrics.storage_syncs.inc();
            let _ = tx.send(LoopMsg::Synced(d));
        };
        let backend = match (&shared.cfg.storage, &shared.cfg.data_dir) {
            (crate::storage::Backend::Redb, None) => {
                debug!(node = %shared.cfg.name, "no data_dir: storage lives in memory and does not survive a restart");
                crate::storage::Backend::Memory
            }
            (b, _) => b.clone(),
        };
        let (storage, durable) = Storage::open(&backend, shared.cfg.data_dir.as_deref(), &shared.cfg.name, done)?;
        if !durable.is_empty() {
            info!(node = %shared.cfg.name, damaged = durable.damaged().len(), "restoring from durable storage");
            protocol.on_restore(&durable);
        }
        storage
    };
    let output_log = match &shared.cfg.output_log {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path);
            Some(file.map_err(|source| NetError::OutputLog { path: path.clone(), source })?)
        }
        None => None,
    };
    let host = Host::new(protocol, shared.clone(), queues, loop_tx, storage, output_log);
    tasks.spawn(host.run(loop_rx, token.clone()));
    info!(node = %shared.cfg.name, id = me.0, listen = %shared.cfg.listen, http = ?http_addr, "node started");
    Ok(NodeHandle { name: shared.cfg.name.clone(), http_addr, token, tasks })
}
