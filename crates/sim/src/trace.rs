//! Traces: every handled event folds into a running FNV-1a hash (same
//! scenario and seed ⇒ same hash, bit for bit), and may also be written as
//! one JSON line for replay and inspection.

use agora_core::{NodeId, Time};
use serde::{Deserialize, Serialize};
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

/// The running trace hash: a word-at-a-time multiply–rotate mix (as in
/// FxHash) with a final avalanche. Not cryptographic — a fingerprint of the
/// event sequence. Owned here rather than taken from a crate so that a
/// dependency upgrade can never change the hashes of recorded traces.
pub(crate) struct TraceHash(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    #[inline]
    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }

    pub(crate) fn event(&mut self, at: Time, tag: u8, node: NodeId, from: Option<NodeId>, payload: &[u8]) {
        self.word(at.as_nanos());
        self.word(((tag as u64) << 32) | node.0 as u64);
        self.word(((payload.len() as u64) << 32) | from.map_or(u32::MAX, |f| f.0) as u64);
        let mut chunks = payload.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(last));
    }

    pub(crate) fn value(&self) -> u64 {
        // Avalanche (the finaliser of MurmurHash3) so every bit mixes.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Formats a trace hash the way traces and reports print it.
pub fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_hash() {
        let h = |at, tag, node, from: Option<u32>, p: &[u8]| {
            let mut t = TraceHash::default();
            t.event(Time::from_nanos(at), tag, NodeId(node), from.map(NodeId), p);
            t.value()
        };
        let base = h(5, 1, 2, Some(3), b"payload!x");
        for other in [
            h(6, 1, 2, Some(3), b"payload!x"),
            h(5, 2, 2, Some(3), b"payload!x"),
            h(5, 1, 3, Some(3), b"payload!x"),
            h(5, 1, 2, None, b"payload!x"),
            h(5, 1, 2, Some(3), b"payload!y"),
            h(5, 1, 2, Some(3), b"payload!"),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base, h(5, 1, 2, Some(3), b"payload!x"));
    }
}
