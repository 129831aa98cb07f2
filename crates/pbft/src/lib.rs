//! Practical Byzantine Fault Tolerance (Castro and Liskov, OSDI 1999):
//! state-machine replication that stays safe while at most `f` of
//! `n ≥ 3f + 1` replicas behave arbitrarily.
//!
//! Sans-IO, like every protocol here: a [`Node`] is either a [`Replica`] or
//! a [`Client`], and runs unchanged in the simulator, on real processes and
//! in the model checker. Generic over the replicated [`StateMachine`]
//! (operations and results are bytes).
//!
//! The normal case (§ 4.2): a client sends its request to every replica; the
//! primary of the current view (`view mod n`) assigns the next sequence
//! number to a batch of requests in a pre-prepare; a backup that accepts it
//! sends a prepare; a replica with the pre-prepare and 2f matching prepares
//! has the batch *prepared* and sends a commit; with 2f + 1 matching commits
//! the batch is *committed* there and is executed in sequence order; each
//! replica replies, and the client takes a result from f + 1 replicas that
//! agree on it. Quorums of 2f + 1 intersect in at least one correct replica,
//! so no two correct replicas commit different batches at one sequence
//! number in a view.
//!
//! Checkpoints (§ 4.3): every `checkpoint_interval` batches a replica sends
//! the digest of its state; 2f + 1 matching digests make the checkpoint
//! *stable*, the log before it is discarded and the water marks (the
//! sequence numbers a replica accepts, `(low, low + window]`) move up. A
//! replica that finds a stable checkpoint ahead of what it executed fetches
//! the state from a replica that vouched for it, and checks it against the
//! digest (state transfer). On a lossy network replicas send their progress
//! now and then ([`Msg::Status`]), and peers resend their own messages for
//! what the sender lacks.
//!
//! View changes (§ 4.4, [`decide`]): a replica whose request waits too
//! long suspects the view and sends a signed view change; the next primary
//! gathers 2f + 1 that determine which batch each unfinished sequence
//! number keeps, and sends them as its new view; every replica checks and
//! recomputes that decision.
//!
//! A [`Byzantine`] replica runs the correct logic and tampers with what it
//! sends ([`Behaviour`]): the tests' and sweeps' adversary.
//!
//! Not yet here (issue 24's later stages): MAC vectors on the normal path
//! and authenticated client requests (until then a Byzantine primary can
//! alter a request's operation).

pub mod auth;
mod byzantine;
pub mod check;
mod client;
pub mod decide;
mod machine;
mod msg;
mod node;
mod replica;

pub use auth::{Auth, Envelope};
pub use byzantine::{Behaviour, Byzantine};
pub use client::{Client, Workload};
pub use machine::{Chain, Null, StateMachine};
pub use msg::{
    batch_digest, checkpoint_bytes, extend_chain, Msg, PrePrepared, Prepared, Request, Snapshot, ViewChange,
};
pub use node::{Input, Node, Output, Timer};
pub use replica::Replica;

use agora_core::NodeId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// A PBFT group: replicas `0..replicas`, clients after them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub replicas: u32,
    /// The Byzantine replicas tolerated: `replicas ≥ 3f + 1`.
    pub f: u32,
    pub clients: u32,
    /// A checkpoint every this many batches.
    pub checkpoint_interval: u64,
    /// The log's size in sequence numbers: a replica accepts sequence
    /// numbers in `(low, low + window]`. A multiple of the interval.
    pub window: u64,
    /// The most requests in one pre-prepare.
    pub batch_max: usize,
    /// How long the primary waits to fill a batch while it is not full
    /// (zero: it sends what it has as soon as the pipeline has room).
    pub batch_delay: Duration,
    /// The most batches the primary has proposed and not yet executed.
    pub pipeline: u64,
    /// A client resends its request after this long without f + 1
    /// matching replies.
    pub client_timeout: Duration,
    /// How often a replica tells its peers how far it is (zero: never —
    /// for a network that loses nothing, such as the model checker's, which
    /// may deliver any message again anyway).
    pub status_interval: Duration,
    /// A replica suspects the view when a request it holds waits this
    /// long for an execution; a view change that takes this long moves on
    /// to the next view. Doubles with each view change without an
    /// execution, up to 8×.
    pub view_change_timeout: Duration,
    /// The bug the quorum rule prevents, for the mutation check: prepared
    /// with f prepares and committed with f + 1 commits. Two such quorums
    /// need not share a correct replica, so an equivocating primary splits
    /// the replicas.
    pub small_quorums: bool,
}

impl Config {
    /// A group of `replicas` tolerating `f` Byzantine replicas, with
    /// defaults for everything else; refuses `replicas < 3f + 1`.
    pub fn new(replicas: u32, f: u32, clients: u32) -> Result<Config, String> {
        let cfg = Config {
            replicas,
            f,
            clients,
            checkpoint_interval: 16,
            window: 64,
            batch_max: 64,
            batch_delay: Duration::ZERO,
            pipeline: 4,
            client_timeout: Duration::from_millis(200),
            status_interval: Duration::from_millis(50),
            view_change_timeout: Duration::from_millis(500),
            small_quorums: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The field that is wrong, and why.
    pub fn validate(&self) -> Result<(), String> {
        let (n, f) = (self.replicas, self.f);
        if n < 3 * f + 1 || n == 0 {
            return Err(format!(
                "replicas: n = {n} replicas cannot tolerate f = {f} Byzantine ones; PBFT needs n ≥ 3f + 1 = {}",
                3 * f + 1
            ));
        }
        if self.checkpoint_interval == 0 {
            return Err("checkpoint_interval: must be at least 1".into());
        }
        if self.window < self.checkpoint_interval || !self.window.is_multiple_of(self.checkpoint_interval) {
            return Err(format!(
                "window: must be a multiple of checkpoint_interval ({}), not {}",
                self.checkpoint_interval, self.window
            ));
        }
        if self.batch_max == 0 || self.pipeline == 0 {
            return Err("batch_max: batches and the pipeline hold at least 1".into());
        }
        if self.client_timeout.is_zero() || self.view_change_timeout.is_zero() {
            return Err("client_timeout: timeouts must be more than zero".into());
        }
        Ok(())
    }

    /// A quorum: 2f + 1.
    pub fn quorum(&self) -> usize {
        2 * self.f as usize + 1
    }
    /// Matching prepares a batch needs besides its pre-prepare: 2f.
    pub fn prepare_quorum(&self) -> usize {
        if self.small_quorums {
            self.f as usize
        } else {
            2 * self.f as usize
        }
    }
    /// Matching commits a batch needs: 2f + 1.
    pub fn commit_quorum(&self) -> usize {
        if self.small_quorums {
            self.f as usize + 1
        } else {
            self.quorum()
        }
    }
    /// The primary of `view`.
    pub fn primary(&self, view: u64) -> NodeId {
        NodeId((view % self.replicas as u64) as u32)
    }
    pub fn is_replica(&self, id: NodeId) -> bool {
        id.0 < self.replicas
    }
    pub fn is_client(&self, id: NodeId) -> bool {
        id.0 >= self.replicas && id.0 < self.replicas + self.clients
    }
    pub fn replica_ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.replicas).map(NodeId)
    }
}

/// A scenario's `[params]` for the `pbft` protocol: the nodes after the
/// replicas are clients, each sending `requests` requests one after the
/// other to a [`Chain`] machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub replicas: u32,
    /// Default: the most the replicas tolerate, `(replicas − 1) / 3`.
    pub f: Option<u32>,
    #[serde(default = "default_requests")]
    pub requests: u32,
    #[serde(default = "default_op_bytes")]
    pub op_bytes: usize,
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
    /// Default: twice the checkpoint interval.
    pub window: Option<u64>,
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    #[serde(default, with = "agora_core::duration_str")]
    pub batch_delay: Duration,
    #[serde(default = "default_pipeline")]
    pub pipeline: u64,
    #[serde(default = "default_client_timeout", with = "agora_core::duration_str")]
    pub client_timeout: Duration,
    #[serde(default = "default_status_interval", with = "agora_core::duration_str")]
    pub status_interval: Duration,
    #[serde(default = "default_view_change_timeout", with = "agora_core::duration_str")]
    pub view_change_timeout: Duration,
    /// Replicas that misbehave (at most f of them, for the run to be safe).
    #[serde(default)]
    pub byzantine: Vec<ByzantineReplica>,
    /// The mutation check's bug (see [`Config::small_quorums`]).
    #[serde(default)]
    pub small_quorums: bool,
}

/// A `[[params.byzantine]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByzantineReplica {
    pub replica: u32,
    pub behaviour: Behaviour,
}

fn default_requests() -> u32 {
    100
}
fn default_op_bytes() -> usize {
    8
}
fn default_checkpoint_interval() -> u64 {
    8
}
fn default_batch_max() -> usize {
    16
}
fn default_pipeline() -> u64 {
    4
}
fn default_client_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_status_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_view_change_timeout() -> Duration {
    Duration::from_millis(500)
}

impl Params {
    /// How replica `id` misbehaves, if it does.
    pub fn behaviour(&self, id: NodeId) -> Option<Behaviour> {
        self.byzantine.iter().find(|b| b.replica == id.0).map(|b| b.behaviour)
    }

    /// The group's configuration for a run of `nodes` nodes; the error
    /// starts with the offending field.
    pub fn config(&self, nodes: u32) -> Result<Config, String> {
        if nodes <= self.replicas {
            return Err(format!(
                "replicas: {} replicas leave no client among {nodes} nodes; add nodes for clients",
                self.replicas
            ));
        }
        if let Some(b) = self.byzantine.iter().find(|b| b.replica >= self.replicas) {
            return Err(format!("byzantine: {} is not a replica (0..{})", b.replica, self.replicas));
        }
        let cfg = Config {
            replicas: self.replicas,
            f: self.f.unwrap_or(self.replicas.saturating_sub(1) / 3),
            clients: nodes - self.replicas,
            checkpoint_interval: self.checkpoint_interval,
            window: self.window.unwrap_or(2 * self.checkpoint_interval),
            batch_max: self.batch_max,
            batch_delay: self.batch_delay,
            pipeline: self.pipeline,
            client_timeout: self.client_timeout,
            status_interval: self.status_interval,
            view_change_timeout: self.view_change_timeout,
            small_quorums: self.small_quorums,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_replicas_are_refused_naming_n_and_f() {
        let e = Config::new(3, 1, 1).unwrap_err();
        assert!(e.contains("n = 3") && e.contains("f = 1") && e.contains("3f + 1 = 4"), "{e}");
        assert!(Config::new(4, 1, 1).is_ok());
        assert!(Config::new(7, 2, 1).is_ok());
        assert!(Config::new(6, 2, 1).is_err());
    }
}
