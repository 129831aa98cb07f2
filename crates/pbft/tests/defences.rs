//! The defences against a Byzantine peer, one replica at a time: each test
//! hands replica 1 of n = 4 the messages an attacker would send and checks
//! what it does. Each fails if its defence is taken out.

use agora_core::keys::{Keys, SeededKeys};
use agora_core::{Command, Io, NodeId, Protocol, Time};
use agora_pbft::auth::seal;
use agora_pbft::{batch_digest, checkpoint_bytes, Chain, Config, Envelope, Msg, Node, Request, ViewChange, Workload};
use rand::SeedableRng;
use std::sync::Arc;

const KEYS: SeededKeys = SeededKeys { seed: 0 };

/// Replica 1 of four, with one client (node 4).
struct Harness {
    node: Node<Chain>,
    rng: rand_chacha::ChaCha8Rng,
}

impl Harness {
    fn new() -> Self {
        let cfg = Arc::new(Config::new(4, 1, 1).unwrap());
        let mut h = Harness {
            node: Node::new(cfg, NodeId(1), Chain::default, Workload::default()),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(1),
        };
        h.run(|n, io| n.on_start(io));
        h
    }

    /// Runs a handler; what the replica sent.
    fn run(&mut self, f: impl FnOnce(&mut Node<Chain>, &mut Io<'_, Node<Chain>>)) -> Vec<(NodeId, Msg)> {
        let mut out = Vec::new();
        f(&mut self.node, &mut Io::new(NodeId(1), Time::ZERO, &mut self.rng, &mut out).with_keys(&KEYS));
        out.into_iter()
            .filter_map(|c| if let Command::Send { to, msg } = c { Some((to, msg.msg)) } else { None })
            .collect()
    }

    /// `msg` from `from`, sealed by it.
    fn deliver(&mut self, from: u32, msg: Msg) -> Vec<(NodeId, Msg)> {
        let envelope = as_node(from, |io| seal(io, NodeId(1), msg));
        self.deliver_sealed(from, envelope)
    }

    fn deliver_sealed(&mut self, from: u32, envelope: Envelope) -> Vec<(NodeId, Msg)> {
        self.run(|n, io| n.on_message(NodeId(from), envelope, io))
    }

    fn status(&self) -> serde_json::Value {
        self.node.status()
    }
}

/// What node `id` computes with its keys.
fn as_node<R>(id: u32, f: impl FnOnce(&Io<'_, Node<Chain>>) -> R) -> R {
    let (mut rng, mut out) = (rand_chacha::ChaCha8Rng::seed_from_u64(0), Vec::new());
    f(&Io::new(NodeId(id), Time::ZERO, &mut rng, &mut out).with_keys(&KEYS))
}

/// Client 4's request, authenticated for the four replicas.
fn request(timestamp: u64, op: &[u8]) -> Request {
    let replicas: Vec<NodeId> = (0..4).map(NodeId).collect();
    as_node(4, |io| Request::new(io, &replicas, timestamp, op.to_vec()))
}

fn batch(op: &[u8]) -> Vec<Request> {
    vec![request(1, op)]
}

fn sends_commit(sent: &[(NodeId, Msg)]) -> bool {
    sent.iter().any(|(_, m)| matches!(m, Msg::Commit { .. }))
}

#[test]
fn a_second_pre_prepare_for_a_sequence_number_is_ignored() {
    let mut h = Harness::new();
    let (a, b) = (batch(b"a"), batch(b"b"));
    let first = h.deliver(0, Msg::PrePrepare { view: 0, seq: 1, batch: a.clone() });
    assert!(first.iter().any(|(_, m)| matches!(m, Msg::Prepare { digest, .. } if *digest == batch_digest(&a))));
    let second = h.deliver(0, Msg::PrePrepare { view: 0, seq: 1, batch: b.clone() });
    assert!(second.is_empty(), "no prepare for the second: {second:?}");
    // Backups 2 and 3 prepared b: with b's pre-prepare accepted, replica 1
    // would prepare it and send a commit.
    let d = batch_digest(&b);
    let mut sent = h.deliver(2, Msg::Prepare { view: 0, seq: 1, digest: d });
    sent.extend(h.deliver(3, Msg::Prepare { view: 0, seq: 1, digest: d }));
    assert!(!sends_commit(&sent), "the first pre-prepare stands: {sent:?}");
}

#[test]
fn a_replica_cannot_move_its_vote() {
    let mut h = Harness::new();
    let a = batch(b"a");
    h.deliver(0, Msg::PrePrepare { view: 0, seq: 1, batch: a.clone() });
    // Replica 2 votes for something else, then "changes its mind".
    h.deliver(2, Msg::Prepare { view: 0, seq: 1, digest: batch_digest(&batch(b"x")) });
    let sent = h.deliver(2, Msg::Prepare { view: 0, seq: 1, digest: batch_digest(&a) });
    assert!(!sends_commit(&sent), "its first vote counts, so a's prepares are 1 of 2: {sent:?}");
    // A replayed or duplicated vote counts once as well.
    h.deliver(0, Msg::Prepare { view: 0, seq: 1, digest: batch_digest(&a) });
    assert!(sends_commit(&h.deliver(3, Msg::Prepare { view: 0, seq: 1, digest: batch_digest(&a) })));
}

/// A signed view change from `replica` for `view` that claims nothing.
fn view_change(replica: u32, view: u64) -> Msg {
    let mut vc = ViewChange {
        view,
        replica: NodeId(replica),
        stable: 0,
        checkpoints: vec![(0, [0; 32])],
        prepared: vec![],
        pre_prepared: vec![],
        signature: vec![],
    };
    vc.signature = KEYS.sign(NodeId(replica), &vc.signed_bytes()).unwrap().to_bytes().to_vec();
    Msg::ViewChange(Box::new(vc))
}

#[test]
fn view_numbers_far_ahead_move_nobody_and_are_not_kept() {
    let mut h = Harness::new();
    for (r, view) in [(2, 1_000_000), (3, 2_000_000), (2, u64::MAX), (0, 1_000_000)] {
        h.deliver(r, view_change(r, view));
    }
    assert_eq!(h.status()["view"], 0, "f + 1 replicas 'asked' for huge views: {}", h.status());
    // Two view changes for view 1 (within reach): f + 1, so it joins —
    // and as view 1's primary with 2f + 1 of them, starts it.
    h.deliver(2, view_change(2, 1));
    let sent = h.deliver(3, view_change(3, 1));
    assert_eq!(h.status()["view"], 1);
    assert!(sent.iter().any(|(_, m)| matches!(m, Msg::NewView { view: 1, .. })), "{sent:?}");
}

#[test]
fn a_forged_view_change_is_refused() {
    let mut h = Harness::new();
    let Msg::ViewChange(mut vc) = view_change(2, 1) else { unreachable!() };
    vc.replica = NodeId(3); // signed by 2, claimed for 3
    h.deliver(3, Msg::ViewChange(vc.clone()));
    h.deliver(2, view_change(2, 1));
    assert_eq!(h.status()["view"], 0, "one genuine view change is not f + 1");
}

#[test]
fn messages_beyond_the_water_marks_are_not_kept() {
    let mut h = Harness::new();
    let far = Config::new(4, 1, 1).unwrap().window + 1;
    h.deliver(0, Msg::PrePrepare { view: 0, seq: far, batch: batch(b"a") });
    h.deliver(2, Msg::Prepare { view: 0, seq: far * 1000, digest: [1; 32] });
    h.deliver(2, Msg::Commit { view: 0, seq: u64::MAX, digest: [1; 32] });
    assert_eq!(h.status()["log"], 0, "{}", h.status());
}

#[test]
fn a_flooding_client_holds_one_pending_request() {
    // A backup (the primary would batch them away at once).
    let mut h = Harness::new();
    for t in 1..=1000 {
        h.deliver(4, Msg::Request(request(t, &[0; 8])));
    }
    assert_eq!(h.status()["pending"], 1, "{}", h.status());
    // Nor can a replica or an unknown node submit in a client's name.
    h.deliver(2, Msg::Request(request(5_000, b"")));
    let replicas: Vec<NodeId> = (0..4).map(NodeId).collect();
    h.deliver(9, Msg::Request(as_node(9, |io| Request::new(io, &replicas, 1, vec![]))));
    assert_eq!(h.status()["pending"], 1);
}

#[test]
fn a_message_that_does_not_authenticate_is_dropped() {
    let mut h = Harness::new();
    let a = batch(b"a");
    let d = batch_digest(&a);
    h.deliver(0, Msg::PrePrepare { view: 0, seq: 1, batch: a });
    // Replica 2's prepare, passed off as replica 3's; then 3's, altered
    // after it was sealed.
    let from_2 = as_node(2, |io| seal(io, NodeId(1), Msg::Prepare { view: 0, seq: 1, digest: d }));
    let mut sent = h.deliver_sealed(3, from_2);
    let mut altered = as_node(3, |io| seal(io, NodeId(1), Msg::Prepare { view: 0, seq: 1, digest: [7; 32] }));
    altered.msg = Msg::Prepare { view: 0, seq: 1, digest: d };
    sent.extend(h.deliver_sealed(3, altered));
    assert!(!sends_commit(&sent), "its own prepare only, of 2f: {sent:?}");
    assert!(sends_commit(&h.deliver(3, Msg::Prepare { view: 0, seq: 1, digest: d })));
}

#[test]
fn a_primary_cannot_alter_a_request() {
    let mut h = Harness::new();
    let mut altered = batch(b"pay 10");
    altered[0].op = b"pay 99".to_vec(); // the client's authenticator stays
    let sent = h.deliver(0, Msg::PrePrepare { view: 0, seq: 1, batch: altered });
    assert!(sent.is_empty(), "no prepare for a request its client did not send: {sent:?}");
    let sent = h.deliver(0, Msg::PrePrepare { view: 0, seq: 1, batch: batch(b"pay 10") });
    assert!(sent.iter().any(|(_, m)| matches!(m, Msg::Prepare { .. })), "the request as sent: {sent:?}");
}

#[test]
fn a_checkpoint_counts_only_with_its_senders_signature() {
    let cfg = Config::new(4, 1, 1).unwrap();
    let seq = (cfg.window / cfg.checkpoint_interval + 1) * cfg.checkpoint_interval; // beyond the window
    let signed_by =
        |r: u32| KEYS.sign(NodeId(r), &checkpoint_bytes(NodeId(r), seq, &[5; 32])).unwrap().to_bytes().to_vec();
    let fetches = |sent: &[(NodeId, Msg)]| sent.iter().any(|(_, m)| matches!(m, Msg::FetchState { .. }));
    let mut h = Harness::new();
    h.deliver(2, Msg::Checkpoint { seq, digest: [5; 32], signature: signed_by(2) });
    // f + 1 vouching for a state beyond its window would make it fetch it:
    // not with 2's signature on 3's vote.
    let sent = h.deliver(3, Msg::Checkpoint { seq, digest: [5; 32], signature: signed_by(2) });
    assert!(!fetches(&sent), "{sent:?}");
    let sent = h.deliver(3, Msg::Checkpoint { seq, digest: [5; 32], signature: signed_by(3) });
    assert!(fetches(&sent), "{sent:?}");
}
