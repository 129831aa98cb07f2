//! What a node's tasks share: configuration, metrics, the fault layer,
//! who is connected, admission control; and what the event loop is asked
//! to do ([`LoopMsg`]).

use crate::admission::{Admission, Admitted};
use crate::config::NodeConfig;
use crate::faults::FaultLayer;
use crate::metrics::Metrics;
use agora_core::{NodeId, Protocol};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::warn;

/// State the node's tasks share.
pub(crate) struct Shared {
    pub cfg: NodeConfig,
    pub metrics: Metrics,
    pub faults: Mutex<FaultLayer>,
    pub connected: Vec<AtomicBool>,
    pub outputs: AtomicU64,
    pub started: std::time::Instant,
    pub admission: Admission,
    /// Refused connections' log lines, throttled per reason.
    pub reject_log: Mutex<std::collections::HashMap<&'static str, crate::doors::Throttled>>,
    /// The last commit to the storage backend failed (cleared by one that
    /// succeeds): `/health` says so.
    pub storage_failing: AtomicBool,
}

impl Shared {
    pub fn peer_name(&self, p: NodeId) -> &str {
        self.cfg.peers.get(p.index()).map_or("?", |e| e.name.as_str())
    }
    pub fn set_connected(&self, p: NodeId, up: bool) {
        let was = self.connected[p.index()].swap(up, Ordering::Relaxed);
        match (was, up) {
            (false, true) => {
                self.metrics.peers_connected.inc();
                self.metrics.connections.inc();
            }
            (true, false) => {
                self.metrics.peers_connected.dec();
            }
            _ => {}
        }
    }
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
    pub fn peers_json(&self) -> serde_json::Value {
        self.cfg
            .peers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != self.cfg.id.index())
            .map(|(i, e)| serde_json::json!({"id": i, "name": e.name, "connected": self.connected[i].load(Ordering::Relaxed)}))
            .collect()
    }
    /// Counts a refused connection and logs it — a line a second per
    /// reason at most, saying how many it stands for (a flood of bad
    /// connections must not fill the disk with log).
    pub fn reject(&self, peer: &str, addr: Option<SocketAddr>, reason: &'static str, detail: &dyn std::fmt::Display) {
        self.metrics.reject(reason);
        let logged = self.reject_log.lock().expect("reject log").entry(reason).or_default().tick();
        if let Some(repeated) = logged {
            warn!(node = %self.cfg.name, peer, addr = ?addr, reason, repeated, "closing connection: {detail}");
        }
    }
}

/// What the node's event loop is asked to do.
pub(crate) enum LoopMsg<P: Protocol> {
    /// `admitted` holds the message's quota charge until it is handled.
    Message {
        from: NodeId,
        msg: P::Msg,
        admitted: Option<Admitted>,
    },
    /// An input, and where to say whether the node took it.
    Input(P::Input, Option<oneshot::Sender<Result<(), String>>>),
    /// An input that waits for the output answering `call` (or the
    /// reason the node cannot act on it).
    Call {
        input: P::Input,
        call: u64,
        reply: oneshot::Sender<Result<P::Output, String>>,
    },
    Status(oneshot::Sender<serde_json::Value>),
    /// The protocol's [`Protocol::health`].
    Health(oneshot::Sender<Result<(), String>>),
    /// The protocol's [`Protocol::readings`], for a scrape.
    Readings(oneshot::Sender<Vec<agora_core::reading::Reading>>),
    /// The storage thread finished a sync.
    Synced(agora_core::storage::SyncDone),
}
