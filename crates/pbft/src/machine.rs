//! The replicated state machine PBFT orders operations for.
//!
//! Operations and results are bytes: the protocol never looks inside them,
//! so any deterministic machine plugs in — the telecom data plane's
//! key–value state, the benchmarks' null operation, the tests' toy machines.

use crate::Digest;
use sha2::{Digest as _, Sha256};

/// A deterministic state machine: replicas that apply the same operations in
/// the same order hold the same state and give the same results.
pub trait StateMachine: Send + 'static {
    /// Applies `op` and returns its result.
    fn apply(&mut self, op: &[u8]) -> Vec<u8>;
    /// The whole state as bytes, for checkpoints and state transfer: a
    /// checkpoint's digest covers the snapshot's SHA-256, so equal states
    /// must give equal bytes.
    fn snapshot(&self) -> Vec<u8>;
    /// The machine a snapshot describes; an error names what is wrong (a
    /// transferred state is checked against its digest first, so this only
    /// fails on a machine of another kind).
    fn restore(snapshot: &[u8]) -> Result<Self, String>
    where
        Self: Sized;
}

/// The null operation: does nothing, returns nothing. What PBFT's
/// benchmarks measure (Castro–Liskov's "0/0").
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Null;

impl StateMachine for Null {
    fn apply(&mut self, _op: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        if snapshot.is_empty() {
            Ok(Null)
        } else {
            Err(format!("a null machine's snapshot is empty, not {} bytes", snapshot.len()))
        }
    }
}

/// An append-only log kept as its length and a hash chain: each operation's
/// result is its position (1, 2, …) and the chain after it. Two replicas that
/// applied different operations, or the same in another order, or one twice,
/// give different results — which is what the simulator's client checks
/// look for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Chain {
    pub len: u64,
    pub head: Digest,
}

impl Chain {
    /// A result's position, or None if it is not a chain result.
    pub fn position(result: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(result.get(..8)?.try_into().ok()?))
    }
}

impl StateMachine for Chain {
    fn apply(&mut self, op: &[u8]) -> Vec<u8> {
        self.len += 1;
        self.head = Sha256::new().chain_update(self.head).chain_update(op).finalize().into();
        self.snapshot()
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut s = self.len.to_le_bytes().to_vec();
        s.extend_from_slice(&self.head);
        s
    }
    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        if snapshot.len() != 40 {
            return Err(format!("a chain's snapshot is 40 bytes, not {}", snapshot.len()));
        }
        let len = u64::from_le_bytes(snapshot[..8].try_into().expect("8 bytes"));
        let head = snapshot[8..].try_into().expect("32 bytes");
        Ok(Chain { len, head })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_differ_by_order_and_restore_from_snapshots() {
        let (mut a, mut b) = (Chain::default(), Chain::default());
        a.apply(b"x");
        let ra = a.apply(b"y");
        b.apply(b"y");
        let rb = b.apply(b"x");
        assert_eq!(Chain::position(&ra), Some(2));
        assert_ne!(ra, rb, "the order shows in the result");
        assert_eq!(Chain::restore(&a.snapshot()).unwrap(), a);
        assert!(Chain::restore(b"short").unwrap_err().contains("40 bytes"));
        assert!(Null::restore(b"x").is_err());
    }
}
