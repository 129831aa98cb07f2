//! The transport-level fault layer, switchable at run time over HTTP
//! (`PUT /faults`), since tc/netem is not available on every machine.
//!
//! Node-wide faults apply to every peer; `links` add a delay (a link's
//! one-way latency, as `agora cluster up` emulates a topology's RTTs) and a
//! drop rate toward one peer. Delayed messages keep their order per peer,
//! as netem's do without reordering.

use agora_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultLayer {
    /// Probability that an outgoing message is dropped.
    pub drop_rate: f64,
    /// Probability that a received message is dropped (before it is queued).
    pub receive_drop_rate: f64,
    /// Added to every outgoing message, in milliseconds.
    pub delay_ms: u64,
    /// Peers cut off in both directions (by node id): a partition is this set
    /// on each side of the cut.
    pub partition: BTreeSet<NodeId>,
    /// Faults of the links toward single peers, on top of the node-wide ones.
    pub links: Vec<LinkFault>,
}

/// What the link toward one peer adds to every message sent on it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LinkFault {
    pub peer: NodeId,
    /// One-way delay, in milliseconds (fractions allowed: loopback RTTs are
    /// often a few milliseconds).
    pub delay_ms: f64,
    /// Up to this much more, uniformly at random, per message (order is kept).
    pub jitter_ms: f64,
    /// Probability that a message on this link is dropped.
    pub drop_rate: f64,
}

/// The faults one outgoing message meets.
pub(crate) struct Outgoing {
    pub cut: bool,
    pub drop_rate: f64,
    pub delay: Duration,
    pub jitter: Duration,
}

impl FaultLayer {
    /// Checks the rates and delays, and that every peer named is one of the
    /// cluster's `peers`.
    pub fn validate(&self, peers: usize) -> Result<(), String> {
        let probability = |field: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{field}: {p} is not a probability in [0, 1]"))
            }
        };
        let delay = |field: &str, ms: f64| {
            if !(0.0..=600_000.0).contains(&ms) {
                return Err(format!("{field}: {ms} is not a delay between 0 and ten minutes"));
            }
            Ok(())
        };
        probability("drop_rate", self.drop_rate)?;
        probability("receive_drop_rate", self.receive_drop_rate)?;
        delay("delay_ms", self.delay_ms as f64)?;
        let mut seen = BTreeSet::new();
        for (i, l) in self.links.iter().enumerate() {
            probability(&format!("links[{i}].drop_rate"), l.drop_rate)?;
            delay(&format!("links[{i}].delay_ms"), l.delay_ms)?;
            delay(&format!("links[{i}].jitter_ms"), l.jitter_ms)?;
            if !seen.insert(l.peer) {
                return Err(format!("links[{i}].peer: {} is listed twice", l.peer.0));
            }
        }
        if let Some(p) = self.partition.iter().find(|p| p.index() >= peers) {
            return Err(format!("partition: no node {} (the cluster has {peers})", p.0));
        }
        if let Some((i, l)) = self.links.iter().enumerate().find(|(_, l)| l.peer.index() >= peers) {
            return Err(format!("links[{i}].peer: no node {} (the cluster has {peers})", l.peer.0));
        }
        Ok(())
    }

    pub(crate) fn outgoing(&self, to: NodeId) -> Outgoing {
        let link = self.links.iter().find(|l| l.peer == to);
        let ms = |x: f64| Duration::from_secs_f64(x / 1e3);
        Outgoing {
            cut: self.partition.contains(&to),
            // Independent drops: the message survives both the node's and the link's.
            drop_rate: 1.0 - (1.0 - self.drop_rate) * (1.0 - link.map_or(0.0, |l| l.drop_rate)),
            delay: Duration::from_millis(self.delay_ms) + link.map_or(Duration::ZERO, |l| ms(l.delay_ms)),
            jitter: link.map_or(Duration::ZERO, |l| ms(l.jitter_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let bad = |layer: FaultLayer| layer.validate(10).unwrap_err();
        assert!(bad(FaultLayer { receive_drop_rate: 1.5, ..Default::default() }).starts_with("receive_drop_rate:"));
        let link = |l: LinkFault| FaultLayer { links: vec![LinkFault::default(), l], ..Default::default() };
        assert!(bad(link(LinkFault { peer: NodeId(1), delay_ms: -1.0, ..Default::default() }))
            .starts_with("links[1].delay_ms:"));
        assert!(bad(link(LinkFault { peer: NodeId(1), drop_rate: f64::NAN, ..Default::default() }))
            .starts_with("links[1].drop_rate:"));
        assert!(bad(link(LinkFault::default())).starts_with("links[1].peer: 0 is listed twice"));
        let far = link(LinkFault { peer: NodeId(9), ..Default::default() });
        assert!(far.validate(10).is_ok());
        assert!(far.validate(3).unwrap_err().starts_with("links[1].peer: no node 9"));
    }

    #[test]
    fn a_link_adds_to_the_node_wide_faults() {
        let layer = FaultLayer {
            drop_rate: 0.5,
            delay_ms: 2,
            links: vec![LinkFault { peer: NodeId(1), delay_ms: 1.5, jitter_ms: 0.5, drop_rate: 0.5 }],
            ..Default::default()
        };
        let o = layer.outgoing(NodeId(1));
        assert_eq!((o.drop_rate, o.delay, o.jitter), (0.75, Duration::from_micros(3500), Duration::from_micros(500)));
        let o = layer.outgoing(NodeId(2));
        assert_eq!((o.drop_rate, o.delay, o.jitter), (0.5, Duration::from_millis(2), Duration::ZERO));
    }
}
