use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of a node: a dense index `0..n` into the driver's node table.
///
/// Dense indices keep per-node tables as plain vectors in the simulator
/// (10^6 nodes) and give the TCP runtime a stable order (the lower id dials).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index of this node in a dense table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl From<u32> for NodeId {
    fn from(v: u32) -> Self {
        NodeId(v)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
