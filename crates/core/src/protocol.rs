use crate::storage::{Durable, SyncDone};
use crate::{Io, NodeId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::hash::Hash;

/// A protocol message: a serde type that crosses the wire (see [`crate::wire`])
/// and names its kind for per-kind statistics.
pub trait Message: Clone + Debug + Serialize + DeserializeOwned + Send + 'static {
    /// A short, static name of the message's kind ("data", "ack", …), used
    /// for message counts by kind in the simulator and in `/metrics`.
    fn kind(&self) -> &'static str;
    /// The service of a composed node this message belongs to (`""` for a
    /// protocol running alone); see [`crate::compose!`].
    fn service(&self) -> &'static str {
        ""
    }
    /// A composed node's service names, in wire-tag order (empty for a
    /// protocol running alone): lets the transport name an unknown tag.
    fn services() -> &'static [&'static str] {
        &[]
    }
}

/// A deterministic, sans-IO protocol state machine: one value per node.
///
/// Drivers call the `on_*` methods one at a time; everything the protocol
/// wants to happen is pushed into the [`Io`] it is handed. A handler must not
/// block, and must derive every random choice from [`Io::rng`], so that the
/// simulator can replay a run exactly from its seed.
pub trait Protocol: Send + 'static {
    type Msg: Message;
    /// Typed timers: setting a timer that is already pending re-arms it, so a
    /// timer value names one logical timer of the node.
    type Timer: Clone + Debug + Eq + Hash + Send + 'static;
    /// What the outside world hands a node (inject a token, a client request).
    type Input: Debug + DeserializeOwned + Send + 'static;
    /// What a node reports to the outside world (delivered, committed, formed).
    type Output: Clone + Debug + Serialize + Send + 'static;

    /// The node starts for the first time, or restarts after losing its memory.
    fn on_start(&mut self, io: &mut Io<'_, Self>);
    /// A message from `from` arrived.
    fn on_message(&mut self, from: NodeId, msg: Self::Msg, io: &mut Io<'_, Self>);
    /// A hint that `on_message(from, msg)` comes soon: a protocol whose
    /// handler reads a large table (a row per peer) may [`crate::prefetch`]
    /// the row, so that the cache miss overlaps the events before it. Called
    /// by the simulator a few events ahead; it must not change anything.
    fn prefetch(&self, from: NodeId, msg: &Self::Msg) {
        let _ = (from, msg);
    }
    /// A timer set earlier fired (and was not cancelled or re-armed since).
    fn on_timer(&mut self, timer: Self::Timer, io: &mut Io<'_, Self>);
    /// The outside world hands the node an input.
    fn on_input(&mut self, input: Self::Input, io: &mut Io<'_, Self>) {
        let _ = (input, io);
    }
    /// Why this node cannot act on `input` (a peer that does not exist, a
    /// command for a role it does not have), if it cannot: a runtime then
    /// refuses the input with this reason instead of handing it over.
    fn check_input(&self, input: &Self::Input) -> Result<(), String> {
        let _ = input;
        Ok(())
    }
    /// The node recovers from a crash with its memory intact. Its timers were
    /// lost with the crash; by default it starts over as [`Protocol::on_start`]
    /// does, which must then be safe to call on a node with state.
    fn on_recover(&mut self, io: &mut Io<'_, Self>) {
        self.on_start(io);
    }
    /// The node (re)starts without its memory and its disk holds `disk`:
    /// called after the node is built and before [`Protocol::on_start`].
    /// Only what was synced is there; damaged records are listed, not given.
    fn on_restore(&mut self, disk: &Durable) {
        let _ = disk;
    }
    /// A sync asked for with [`Io::sync`] finished.
    fn on_synced(&mut self, done: SyncDone, io: &mut Io<'_, Self>) {
        let _ = (done, io);
    }
    /// A JSON snapshot of the node's state for humans (`/status`, summaries).
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Why this node should not be sent work, if it should not (cut off
    /// from the others, known to lie): a runtime's health check (`/health`)
    /// then fails with this reason, so a balancer in front stops using it.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
    /// Gauges, counters and histograms only the protocol knows (whom it
    /// suspects, which groups it serves, its clients' latencies), read when
    /// a runtime is asked for its metrics (`/metrics`).
    fn readings(&self, out: &mut Vec<crate::reading::Reading>) {
        let _ = out;
    }
    /// The call `output` answers, if it answers one. A runtime can hand an
    /// input that carries a call number (an HTTP client's request, say) and
    /// wait for the output that names it; the protocol puts the number in
    /// both. Protocols that take no calls keep the default.
    fn answers(output: &Self::Output) -> Option<u64> {
        let _ = output;
        None
    }
}
