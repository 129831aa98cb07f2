//! Reliable broadcast under the model checker: every interleaving of a small
//! configuration, with messages lost, duplicated and reordered and every
//! timer free to fire at any point.

use agora_broadcast::{all_delivered, check_prefix_agreement, Config, Node};
use agora_check::stateright::actor::{ActorModel, LossyNetwork, Network};
use agora_check::stateright::{Checker, Expectation, Model};
use agora_check::Checked;
use agora_core::NodeId;
use std::sync::Arc;

fn model(nodes: u32, count: u32) -> ActorModel<Checked<Node>, Arc<Config>> {
    let cfg = Arc::new(Config { count, window: 2, ..Config::new(nodes) });
    let c = cfg.clone();
    let actor = Checked::new(move |id| Node::new(c.clone(), id));
    ActorModel::new(cfg, ())
        .actors((0..nodes).map(|_| actor.clone()))
        .init_network(Network::new_unordered_duplicating([]))
        .lossy_network(LossyNetwork::Yes)
        .property(Expectation::Always, "prefix agreement", |m, s| {
            check_prefix_agreement(&m.cfg, |id: NodeId| &s.actor_states[id.index()].proto).is_ok()
        })
        .property(Expectation::Sometimes, "everyone delivers everything", |m, s| {
            let all = m.cfg.origins.iter().all(|&o| s.actor_states[o.index()].broadcast_count() == m.cfg.count);
            all && all_delivered(&m.cfg, |id: NodeId| &s.actor_states[id.index()].proto, (0..m.cfg.nodes).map(NodeId))
        })
}

#[test]
fn agreement_holds_in_every_reachable_state() {
    // (nodes, values): about 166 000 and 1 250 000 unique states (20 s in a
    // release build); 3 nodes with 2 values runs past ten minutes. Replacing
    // in-order delivery with immediate delivery makes this fail with a
    // 4-step counterexample.
    for (nodes, count) in [(2, 2), (3, 1)] {
        let checker = model(nodes, count).checker().spawn_bfs().join();
        checker.assert_properties();
        let states = checker.unique_state_count();
        eprintln!("{nodes} nodes, {count} values: {states} unique states, properties hold");
        assert!(states > 10_000, "the exploration covered a real state space ({states} states)");
    }
}
