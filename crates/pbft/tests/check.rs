//! PBFT under the model checker, on the same state machine the simulator
//! and the real nodes drive: n = 4, f = 1, the primary of view 0 silent or
//! equivocating, one client with one request or two.
//! Every interleaving of deliveries, every message delivered any number of
//! times or never (so loss is covered), every timer firing at any moment (so
//! a request timer may fire while the primary is only slow, and views
//! change). Explored exhaustively within a bound on views: every replica
//! in view 0 or 1, so one view change is explored.
//!
//! Safety checked in every state: no two correct replicas commit different
//! batches at one sequence number, and replicas that executed as far hold
//! the same log and the same machine.

use agora_check::stateright::actor::{ActorModel, LossyNetwork, Network};
use agora_check::stateright::{Checker, Expectation, Model};
use agora_check::Checked;
use agora_core::NodeId;
use agora_pbft::{Behaviour, Chain, Client, Config, Node, Workload};
use std::sync::Arc;
use std::time::Duration;

type Pbft = Node<Chain>;

fn config() -> Arc<Config> {
    let mut cfg = Config::new(4, 1, 1).unwrap();
    // One request per batch and a checkpoint every second batch, so that
    // checkpoints become stable within the explored runs.
    cfg.batch_max = 1;
    cfg.pipeline = 1;
    cfg.checkpoint_interval = 2;
    cfg.window = 4;
    cfg.view_change_timeout = Duration::from_millis(100);
    // The network may deliver any message again: no status retransmission.
    cfg.status_interval = Duration::ZERO;
    Arc::new(cfg)
}

/// How the primary of view 0 is faulty.
#[derive(Clone, Copy, Debug)]
enum Primary {
    /// Sends nothing at all (a client node with no requests stands in).
    Silent,
    /// Sends replica 2 one batch and replicas 1 and 3 another, and commits
    /// to each the one it sent it.
    Equivocating,
}

/// The model, with replica 0 faulty as `primary` says.
fn model(primary: Primary, requests: u32, max_view: u64) -> ActorModel<Checked<Pbft>, Bounds> {
    let cfg = config();
    let c = cfg.clone();
    let actor = Checked::new(move |id: NodeId| {
        let workload = Workload { requests, op_bytes: 1 };
        match (id.0, primary) {
            (0, Primary::Silent) => Node::Client(Box::new(Client::new(c.clone(), id, Workload::default()))),
            (0, Primary::Equivocating) => Node::byzantine(c.clone(), id, Chain::default(), Behaviour::Equivocate),
            _ => Node::new(c.clone(), id, Chain::default, workload),
        }
    })
    .instant_sync();
    let nodes = (cfg.replicas + cfg.clients) as usize;
    ActorModel::new(Bounds { max_view, requests }, ())
        .actors(std::iter::repeat_n(actor, nodes))
        .init_network(Network::new_unordered_duplicating([]))
        .lossy_network(LossyNetwork::No)
        .within_boundary(|b, s| s.actor_states.iter().filter_map(|n| n.proto.replica()).all(|r| r.view() <= b.max_view))
        .property(Expectation::Always, "agreement", |_, s| {
            let replicas: Vec<_> = s.actor_states.iter().filter_map(|n| n.proto.replica()).collect();
            replicas.iter().all(|a| {
                replicas.iter().all(|b| {
                    let same_log = a.executed() != b.executed() || a.chain() == b.chain();
                    let same_state = a.machine().len != b.machine().len || a.machine() == b.machine();
                    let same_commits = a.committed().all(|(n, d)| b.committed().all(|(m, e)| n != m || d == e));
                    same_log && same_state && same_commits
                })
            })
        })
        .property(Expectation::Sometimes, "every request done", |m, s| {
            s.actor_states.iter().filter_map(|n| n.proto.client()).any(|c| c.done() == m.cfg.requests as u64)
        })
        .property(Expectation::Sometimes, "a view change completes", |b, s| {
            b.cfg.max_view == 0
                || s.actor_states.iter().filter_map(|n| n.proto.replica()).any(|r| r.view() == 1 && r.active())
        })
}

/// The bound on views, and what the properties need to know.
#[derive(Clone)]
struct Bounds {
    max_view: u64,
    requests: u32,
}

/// Explores every state of the bounded model; its unique state count.
fn explore(primary: Primary, requests: u32, max_view: u64) -> usize {
    let start = std::time::Instant::now();
    let checker = model(primary, requests, max_view).checker().spawn_bfs().join();
    checker.assert_properties();
    let states = checker.unique_state_count();
    eprintln!(
        "{primary:?} primary, {requests} request(s), views up to {max_view}: {states} unique states, depth {}, {:.0?}; \
         agreement holds, every request done, a view change completes",
        checker.max_depth(),
        start.elapsed()
    );
    states
}

/// 293,609 states, depth 29: about 125 s in a release build on this
/// project's 2-core machine.
#[test]
fn a_silent_primary_is_replaced_and_agreement_holds_in_every_state() {
    assert_eq!(explore(Primary::Silent, 1, 1), 293_609, "the documented state count (README, PBFT)");
}

/// Equivocating: replicas 1 and 3 may commit the batch replica 2 never
/// gets; no correct replica commits the other. Did not finish on this
/// project's machine even in view 0 (out of memory at 10 GB within 4
/// minutes); the simulator's sweeps cover this attack meanwhile.
#[test]
#[ignore]
fn an_equivocating_primary_splits_nothing_in_any_state() {
    explore(Primary::Equivocating, 1, 0);
}

/// Two requests: did not finish on this project's machine (10.3 GB of
/// states after 8 minutes); kept for a larger one (`cargo test --release
/// -p agora-pbft --test check -- --ignored`).
#[test]
#[ignore]
fn two_requests_after_a_silent_primary() {
    explore(Primary::Silent, 2, 1);
}
