//! Admission control: every node accounts, per remote peer, the memory of
//! the inbound messages it has queued and the connection slots it holds,
//! with fairdist quotas. A peer that floods is refused — its excess messages
//! are dropped, counted in `/metrics` and logged — while every other peer
//! keeps its guaranteed share, so the event loop's queue stays bounded by
//! `inbound_queue_bytes` whatever a peer sends.

use crate::metrics::{Metrics, PeerSlot};
use agora_core::NodeId;
use agora_fairdist::{Allocator, Charge, ClaimantId, PoolId, Quota, SharedQuota};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::warn;

const BYTES: usize = 0;
const CONNECTIONS: usize = 1;

pub(crate) struct Admission {
    quota: SharedQuota<NodeId>,
    root: PoolId,
    /// Pinned claimant per peer: no lookup on the message path.
    claimants: Vec<ClaimantId>,
    refusals: Vec<AtomicU64>,
    queued: Gauge,
}

/// An admitted inbound message's charge: returned when the message has been
/// handled (dropped).
pub(crate) struct Admitted {
    _charge: Charge<NodeId>,
    queued: Gauge,
    bytes: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.queued.dec_by(self.bytes as i64);
    }
}

impl Admission {
    pub fn new(peers: usize, queue_bytes: u64, connections: u64, metrics: &Metrics) -> Self {
        let mut q = Quota::new(Allocator::Quasilinear, &[("bytes", queue_bytes), ("connections", connections)]);
        let claimants = (0..peers as u32).map(|p| q.claimant(&NodeId(p))).collect();
        Admission {
            root: q.root(),
            quota: SharedQuota::new(q),
            claimants,
            refusals: (0..peers).map(|_| AtomicU64::new(0)).collect(),
            queued: metrics.inbound_queued_bytes.clone(),
        }
    }

    fn refused(&self, metrics: &Metrics, node: &str, peer: NodeId, peer_name: &str, slot: &'static str, detail: u64) {
        metrics.quota_refused.get_or_create(&PeerSlot { peer: peer_name.to_string(), slot }).inc();
        let k = self.refusals[peer.index()].fetch_add(1, Ordering::Relaxed);
        // The first refusal of a peer, then one in every 10 000: a flood must not flood the log.
        if k.is_multiple_of(10_000) {
            warn!(node, peer = peer_name, slot, detail, refusals = k + 1, "peer over its quota: refused");
        }
    }

    /// Charges `bytes` of queue memory to `peer`, or refuses.
    pub fn admit_message(
        &self,
        metrics: &Metrics,
        node: &str,
        peer: NodeId,
        peer_name: &str,
        bytes: u64,
    ) -> Option<Admitted> {
        match self.quota.charge(self.root, self.claimants[peer.index()], BYTES, bytes) {
            Ok(charge) => {
                self.queued.inc_by(bytes as i64);
                Some(Admitted { _charge: charge, queued: self.queued.clone(), bytes })
            }
            Err(_) => {
                metrics.drop("quota");
                self.refused(metrics, node, peer, peer_name, "bytes", bytes);
                None
            }
        }
    }

    /// Charges one connection slot to `peer`, or refuses.
    pub fn admit_connection(
        &self,
        metrics: &Metrics,
        node: &str,
        peer: NodeId,
        peer_name: &str,
    ) -> Option<Charge<NodeId>> {
        match self.quota.charge(self.root, self.claimants[peer.index()], CONNECTIONS, 1) {
            Ok(c) => Some(c),
            Err(_) => {
                self.refused(metrics, node, peer, peer_name, "connections", 1);
                None
            }
        }
    }
}
