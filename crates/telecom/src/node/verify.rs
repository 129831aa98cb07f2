//! Checking data's seals (see [`crate::data::kv`]): clients check what
//! members answer, members check what their peers and clients send them.
//! The writers are the client nodes: a seal by any other node proves
//! nothing.

use crate::data::kv::Entry;
use crate::topology::Topology;
use agora_core::{Io, NodeId, Protocol};
use std::collections::HashSet;

/// The seals a node checked already (each is checked once: an appended
/// key's value carries every element's seal, and is read again and again).
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// Signed bytes followed by the signature.
    seen: HashSet<Vec<u8>>,
}

impl Verified {
    /// Seals remembered before the set starts afresh.
    const KEPT: usize = 1 << 16;

    /// Whether `entry` of `key` in `group` is made only of elements sealed
    /// by clients.
    pub fn authentic<P: Protocol>(
        &mut self,
        topo: &Topology,
        group: u16,
        key: &str,
        entry: &Entry,
        io: &Io<'_, P>,
    ) -> bool {
        let may_write = |n: NodeId| topo.clients.get(n.index()).copied().unwrap_or(false);
        entry.authentic(group, key, may_write, |writer, signed, sig| {
            // A signature's length is fixed, so `seen` splits one way only.
            let seen = [signed, sig].concat();
            if self.seen.contains(&seen) {
                return true;
            }
            let Ok(s) = agora_core::keys::Signature::from_slice(sig) else { return false };
            let ok = io.verify(writer, signed, &s);
            if ok {
                if self.seen.len() >= Self::KEPT {
                    self.seen.clear();
                }
                self.seen.insert(seen);
            }
            ok
        })
    }
}
