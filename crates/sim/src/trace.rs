//! Traces: every handled event folds into a running FNV-1a hash (same
//! scenario and seed ⇒ same hash, bit for bit), and may also be written as
//! one JSON line for replay and inspection.

use agora_core::{NodeId, Time};
use serde::{Deserialize, Serialize};
use std::hash::Hasher;
use std::io::Write;

/// One handled event, as written to a JSON-lines trace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TraceRecord {
    /// Event index, from 0.
    pub i: u64,
    /// Simulated time in nanoseconds.
    pub t: u64,
    /// What happened: start, deliver, timer, input, fault, drop.
    pub ev: String,
    pub node: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    /// Message kind, timer, fault or drop reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub what: String,
    /// The message, input or timer, as JSON or debug text.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub body: serde_json::Value,
    /// The running trace hash after this event, in hex.
    pub hash: String,
}

/// Receives every trace record of a run.
pub trait TraceSink {
    fn record(&mut self, rec: &TraceRecord) -> std::io::Result<()>;
    /// The run is over: flush, or check that nothing is left.
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes records as JSON lines.
pub struct JsonLines<W: Write>(pub W);

impl<W: Write> TraceSink for JsonLines<W> {
    fn record(&mut self, rec: &TraceRecord) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.0, rec)?;
        self.0.write_all(b"\n")
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The running trace hash.
pub(crate) struct TraceHash(fnv::FnvHasher);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(fnv::FnvHasher::default())
    }
}

impl TraceHash {
    pub(crate) fn event(&mut self, at: Time, tag: u8, node: NodeId, from: Option<NodeId>, payload: &[u8]) {
        let h = &mut self.0;
        h.write_u64(at.as_nanos());
        h.write_u8(tag);
        h.write_u32(node.0);
        h.write_u32(from.map_or(u32::MAX, |f| f.0));
        h.write_u32(payload.len() as u32);
        h.write(payload);
    }
    pub(crate) fn value(&self) -> u64 {
        self.0.finish()
    }
}

/// Formats a trace hash the way traces and reports print it.
pub fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}
