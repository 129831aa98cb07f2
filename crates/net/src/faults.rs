//! The transport-level fault layer, switchable at run time over HTTP
//! (`PUT /faults`), since tc/netem is not available on every machine.

use agora_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultLayer {
    /// Probability that an outgoing message is dropped.
    pub drop_rate: f64,
    /// Added to every outgoing message, in milliseconds.
    pub delay_ms: u64,
    /// Peers cut off in both directions (by node id): a partition is this set
    /// on each side of the cut.
    pub partition: BTreeSet<NodeId>,
}

impl FaultLayer {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return Err(format!("drop_rate: {} is not a probability in [0, 1]", self.drop_rate));
        }
        if self.delay_ms > 600_000 {
            return Err(format!("delay_ms: {} is more than ten minutes", self.delay_ms));
        }
        Ok(())
    }
}
