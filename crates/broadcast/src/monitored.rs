//! Broadcast with a heartbeat failure detector, composed on one node: the
//! reference composition. The detector's suspicions are routed locally to
//! broadcast, whose origins stop retransmitting to a suspected peer until it
//! is trusted again (a restarted peer's `Sync` also resumes it).

use crate::heartbeat::{self, Heartbeat};
use crate::{Config, Input, Node};
use agora_core::{compose, NodeId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

compose! {
    /// One node: reliable broadcast and a heartbeat detector.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    pub mod node {
        broadcast: Broadcast = crate::Node,
        heartbeat: Heartbeat = crate::heartbeat::Heartbeat,
    }
    route = suspicion_to_broadcast;
}

pub use node::Node as Monitored;

/// The detector tells broadcast whom it suspects.
fn suspicion_to_broadcast(o: &node::Output) -> Option<node::Input> {
    match o {
        node::Output::Heartbeat(heartbeat::Output::Suspect(p)) => Some(node::Input::Broadcast(Input::Suspect(*p))),
        node::Output::Heartbeat(heartbeat::Output::Trust(p)) => Some(node::Input::Broadcast(Input::Trust(*p))),
        _ => None,
    }
}

/// The parameters: broadcast's, and the detector's under `heartbeat`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(flatten)]
    pub broadcast: Config,
    #[serde(default)]
    pub heartbeat: heartbeat::Config,
}

impl Params {
    pub fn validate(&self, nodes: u32) -> Result<(), String> {
        Config { nodes, ..self.broadcast.clone() }.validate()?;
        self.heartbeat.validate().map_err(|e| format!("heartbeat.{e}"))
    }

    /// Node `id` of `nodes`.
    pub fn build(&self, nodes: u32, id: NodeId) -> Monitored {
        let b = Arc::new(Config { nodes, ..self.broadcast.clone() });
        let h = heartbeat::Config { nodes, ..self.heartbeat.clone() };
        Monitored { broadcast: Node::new(b, id), heartbeat: Heartbeat::new(h, id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Protocol;

    #[test]
    fn inputs_a_node_cannot_act_on_are_refused_with_the_service_named() {
        let p = Params { broadcast: Config::new(3), heartbeat: heartbeat::Config::default() };
        let (origin, other) = (p.build(3, NodeId(0)), p.build(3, NodeId(1)));
        assert_eq!(origin.check_input(&node::Input::Broadcast(Input::Broadcast(7))), Ok(()));
        let e = other.check_input(&node::Input::Broadcast(Input::Broadcast(7))).unwrap_err();
        assert_eq!(e, "broadcast: node 1 does not broadcast (the origins are 0)");
        let e = origin.check_input(&node::Input::Broadcast(Input::Suspect(NodeId(9)))).unwrap_err();
        assert!(e.starts_with("broadcast: no peer 9"), "{e}");
        assert!(origin.check_input(&node::Input::Broadcast(Input::Suspect(NodeId(0)))).is_err(), "not itself");
        assert_eq!(origin.check_input(&node::Input::Broadcast(Input::Trust(NodeId(2)))), Ok(()));
    }
}
