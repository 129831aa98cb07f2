//! A member's PBFT replica of an ordered group ([`crate::ordering`]).
//!
//! The replica is `agora_pbft`'s, run unchanged under the group's own
//! numbering: this file hands it what reaches the member and carries what
//! it does. A client's request comes the usual way — through the member's
//! server, which admits and queues it like any other — and goes to the
//! replica as the client's PBFT request. The replicas' messages travel
//! along the routes as [`Carried`], relayed by nodes on the way (each is
//! authenticated end to end, so a relay can drop one but not forge it).
//! When the replica executes a request it replies to the client's lane:
//! that reply becomes the member's answer, which the server signs and
//! sends; the client takes f + 1 equal answers.
//!
//! A member that turns Byzantine equivocates as the PBFT primary (its
//! server lies in its answers as its behaviour says); a silent one sends
//! nothing.
//!
//! PBFT assumes a replica keeps its state through a crash (Castro and
//! Liskov keep it in memory behind a UPS). Here PBFT's state lives in
//! memory, so a member that restarts without it has forgotten its votes,
//! and voting again could contradict them — with a Byzantine member
//! besides, two correct members then commit different batches (the
//! Python API's test found one). So a restarted member **recovers**
//! first: a record on its disk says it ran before; until its stable
//! checkpoint passes a horizon beyond anything it could have voted on, it
//! neither votes (pre-prepares, prepares, commits, view changes, new
//! views) nor takes part in agreement (it drops the others' pre-prepares,
//! prepares and commits), and catches up by state transfer only. The
//! horizon is the highest stable checkpoint 2f peers report, plus two
//! windows: a replica votes only within a window of its stable
//! checkpoint, and that leaves a window for the reporters to lag the
//! checkpoint it had.

use super::{Msg, Replicas, Timer};
use crate::node::counters;
use crate::node::server::{Behaviour, RequestKey, Status};
use crate::ordering::{Machine, Numbering, Operation};
use agora_core::{Command, Io, NodeId};
use agora_pbft as pbft;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A PBFT message on its way from one member to another.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Carried {
    pub group: u16,
    /// PBFT ids (the group's numbering), checked by the envelope's MAC.
    pub from: NodeId,
    pub to: NodeId,
    pub hops: u8,
    pub envelope: pbft::Envelope,
}

/// This member's replica of one ordered group.
pub(super) struct Bft {
    numbering: Arc<Numbering>,
    /// This member's PBFT id.
    me: NodeId,
    node: pbft::Node<Machine>,
    /// Requests this member's server handed in, until their execution's
    /// reply: by client lane and timestamp.
    awaiting: BTreeMap<(NodeId, u64), RequestKey>,
    /// Restarted without its memory: recovering until its stable
    /// checkpoint passes the horizon (see the module's comment).
    recovering: Option<Recovery>,
}

/// A recovering member: each peer's reported stable checkpoint, and the
/// horizon once 2f peers reported.
#[derive(Debug, Default)]
struct Recovery {
    reports: BTreeMap<NodeId, u64>,
    horizon: Option<u64>,
}

/// The disk's record that a member's replica ran (table, key per group).
const RAN: &str = "pbft_ran";

/// How long a request waits here for its execution before it is
/// forgotten (its client gave up long before).
const FORGET_AFTER: Duration = Duration::from_secs(10);

impl Bft {
    pub(super) fn new(numbering: Arc<Numbering>, member: NodeId) -> Self {
        let me = numbering.replica(member).expect("a member has a PBFT id");
        let node = pbft::Node::Replica(Box::new(pbft::Replica::new(numbering.cfg.clone(), me, Machine::default())));
        Bft { numbering, me, node, awaiting: BTreeMap::new(), recovering: None }
    }

    /// The replica's state, if it is correct.
    pub(super) fn replica(&self) -> Option<&pbft::Replica<Machine>> {
        self.node.replica()
    }
}

impl Replicas {
    /// Runs `f` on group `g`'s replica and carries out what it did.
    fn on_bft(
        &mut self,
        g: u16,
        io: &mut Io<'_, Self>,
        f: impl FnOnce(&mut pbft::Node<Machine>, &mut Io<'_, pbft::Node<Machine>>),
    ) {
        let Some(b) = self.bft[g as usize].as_mut() else { return };
        let numbering = b.numbering.clone();
        let ((), out) = numbering.run(io, b.me, |pio| f(&mut b.node, pio));
        if let (Some(r), Some(replica)) = (&b.recovering, b.node.replica()) {
            if r.horizon.is_some_and(|h| replica.stable().0 >= h) {
                b.recovering = None;
                io.count("pbft_recovered", 1);
            }
        }
        for cmd in out {
            match cmd {
                Command::Send { to, msg } => self.bft_send(g, to, msg, io),
                Command::SetTimer { after, timer } => io.set_timer(after, Timer::Pbft { group: g, timer }),
                Command::CancelTimer { timer } => io.cancel_timer(Timer::Pbft { group: g, timer }),
                Command::Count { name, by, .. } => io.count(name, by),
                Command::Output(_) | Command::Store(_) => {} // a replica outputs and stores nothing
            }
        }
    }

    /// A message of `g`'s replica: to a peer along the routes, or — a reply
    /// to a client's lane — the answer to the request it executed.
    fn bft_send(&mut self, g: u16, to: NodeId, envelope: pbft::Envelope, io: &mut Io<'_, Self>) {
        if self.byzantine == Some(Behaviour::Silent) {
            return;
        }
        let b = self.bft[g as usize].as_mut().expect("running");
        if b.recovering.is_some() && votes(&envelope.msg) {
            return io.count("pbft_votes_withheld_recovering", 1);
        }
        if b.numbering.cfg.is_replica(to) {
            let Some(node) = b.numbering.node(to) else { return };
            let carried = Carried { group: g, from: b.me, to, hops: 0, envelope };
            return self.route(node, Msg::Pbft(Box::new(carried)), io);
        }
        let pbft::Msg::Reply { timestamp, result, .. } = envelope.msg else { return };
        let Some(key) = b.awaiting.remove(&(to, timestamp)) else { return };
        match crate::ordering::reply(&result) {
            Some(reply) => self.reply(&key, Some(reply), Status::Ok, io),
            None => self.reply(&key, None, Status::Unordered, io),
        }
    }

    /// A client's request, its slot done: to the replica, which orders it
    /// (or answers it again from its reply cache, if it was executed).
    pub(super) fn bft_serve(&mut self, key: RequestKey, io: &mut Io<'_, Self>) {
        let g = key.group;
        let Some(b) = self.bft[g as usize].as_mut() else { return };
        let Some(request) = key.pbft.clone() else {
            return self.reply(&key, None, Status::Unordered, io);
        };
        // The request must be the one the answer will be for: the client's
        // own lane, this operation.
        let operation = Operation { key: key.key.clone(), op: key.op.clone(), seal: key.seal.clone() };
        let lane_of_client =
            b.numbering.cfg.is_client(request.client) && b.numbering.node(request.client) == Some(key.client);
        if !lane_of_client || request.op != operation.bytes() {
            io.count(counters::PEER_FORGED, 1);
            return self.reply(&key, None, Status::Unordered, io);
        }
        let now = io.now();
        b.awaiting.retain(|_, k| k.arrived + FORGET_AFTER > now);
        b.awaiting.insert((request.client, request.timestamp), key);
        let from = request.client;
        let envelope = pbft::Envelope { msg: pbft::Msg::Request(*request), auth: pbft::Auth::Client };
        self.on_bft(g, io, |n, pio| agora_core::Protocol::on_message(n, from, envelope, pio));
    }

    /// A PBFT message for this member, or one to relay.
    pub(super) fn on_carried(&mut self, c: Carried, io: &mut Io<'_, Self>) {
        let Some(numbering) = self.topo.pbft.get(c.group as usize).cloned().flatten() else { return };
        if numbering.replica(self.me) != Some(c.to) {
            if let (Some(node), true) = (numbering.node(c.to), c.hops < 32) {
                self.route(node, Msg::Pbft(Box::new(Carried { hops: c.hops + 1, ..c })), io);
            }
            return;
        }
        if self.byzantine == Some(Behaviour::Silent) || !numbering.cfg.is_replica(c.from) {
            return;
        }
        let (from, envelope) = (c.from, c.envelope);
        if let Some(r) = self.bft[c.group as usize].as_mut().and_then(|b| b.recovering.as_mut()) {
            match envelope.msg {
                pbft::Msg::PrePrepare { .. } | pbft::Msg::Prepare { .. } | pbft::Msg::Commit { .. } => {
                    return io.count("pbft_agreement_ignored_recovering", 1);
                }
                pbft::Msg::Status { stable, .. } if r.horizon.is_none() => {
                    // Taken as told: a lie can only delay the recovery
                    // (its MAC is checked with the rest, below).
                    r.reports.insert(from, stable);
                    let (f, window) = (numbering.cfg.f as usize, numbering.cfg.window);
                    if r.reports.len() >= 2 * f {
                        r.horizon = r.reports.values().max().map(|s| s + 2 * window);
                    }
                }
                _ => {}
            }
        }
        self.on_bft(c.group, io, |n, pio| agora_core::Protocol::on_message(n, from, envelope, pio));
    }

    pub(super) fn bft_timer(&mut self, g: u16, timer: pbft::Timer, io: &mut Io<'_, Self>) {
        self.on_bft(g, io, |n, pio| agora_core::Protocol::on_timer(n, timer, pio));
    }

    /// Starts (or, after a crash that kept memory, restarts the timers of)
    /// every ordered group's replica, and records on the disk that it ran.
    pub(super) fn bft_start(&mut self, io: &mut Io<'_, Self>) {
        for g in 0..self.bft.len() as u16 {
            if self.bft[g as usize].is_some() {
                self.write_record(RAN, g.to_be_bytes().to_vec(), b"ran".to_vec(), io);
                self.on_bft(g, io, agora_core::Protocol::on_start);
            }
        }
    }

    /// A restart without memory: a group whose replica ran here before (the
    /// disk says so, or its record is damaged) recovers first.
    pub(super) fn bft_restore(&mut self, disk: &agora_core::storage::Durable) {
        let damaged = disk.damaged().iter().any(|d| d.space.name == RAN);
        for (g, b) in self.bft.iter_mut().enumerate() {
            let Some(b) = b else { continue };
            if damaged || disk.table(RAN).any(|(k, _)| k == (g as u16).to_be_bytes()) {
                b.recovering = Some(Recovery::default());
            }
        }
    }

    /// The node turned Byzantine or honest: its replicas with it.
    pub(super) fn bft_turn(&mut self, behaviour: Option<Behaviour>) {
        let pbft_behaviour = behaviour.filter(|b| *b != Behaviour::Silent).map(|_| pbft::Behaviour::Equivocate);
        for b in self.bft.iter_mut().flatten() {
            b.node.turn(pbft_behaviour);
        }
    }

    /// Where group `g`'s replica is, for the node's status.
    /// Keys group `g` holds here: a PBFT group's are in its replica's machine.
    pub(super) fn keys(&self, g: usize) -> usize {
        match self.bft.get(g).and_then(|b| b.as_ref()).and_then(|b| b.replica()) {
            Some(r) => r.machine().store.entries().count(),
            None => self.stores[g].entries().count(),
        }
    }

    pub(super) fn bft_status(&self, g: usize) -> Option<serde_json::Value> {
        let b = self.bft.get(g)?.as_ref()?;
        let r = b.replica();
        Some(serde_json::json!({
            "service": self.topo.groups[g].service,
            "replica": b.me.0,
            "byzantine": r.is_none(),
            "view": r.map(|r| r.view()),
            "executed": r.map(|r| r.executed()),
            "awaiting": b.awaiting.len(),
            "recovering": b.recovering.as_ref().map(|r| r.horizon),
        }))
    }
}

/// Whether `msg` is a vote a recovering replica must not send: one that
/// could contradict what it voted before it lost its memory.
fn votes(msg: &pbft::Msg) -> bool {
    matches!(
        msg,
        pbft::Msg::PrePrepare { .. }
            | pbft::Msg::Prepare { .. }
            | pbft::Msg::Commit { .. }
            | pbft::Msg::ViewChange(_)
            | pbft::Msg::NewView { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::kv::Op;
    use crate::node::replica::{Input, Output};
    use crate::node::server::{FromReplica, ToReplica};
    use agora_core::keys::SeededKeys;
    use agora_core::Protocol;
    use rand::SeedableRng;

    fn topology() -> crate::topology::Topology {
        let sc: toml::Value = toml::from_str(include_str!("../../../../../scenarios/edge-core-cloud.toml")).unwrap();
        let params: crate::topology::Params = sc["params"].clone().try_into().unwrap();
        params.compile().unwrap()
    }

    /// Core2 (a backup) is served `key`: what it answers, and its counters.
    fn serve(key: RequestKey) -> (Vec<Output>, Vec<&'static str>) {
        let mut core2 = Replicas::new(Arc::new(topology()), NodeId(3), crate::topology::Redundancy::NWay);
        let (mut rng, keys, mut out) = (rand_chacha::ChaCha8Rng::seed_from_u64(1), SeededKeys { seed: 1 }, Vec::new());
        let mut io = Io::new(NodeId(3), agora_core::Time::ZERO, &mut rng, &mut out).with_keys(&keys);
        core2.on_input(Input::Server(ToReplica::Serve(key)), &mut io);
        let outputs = out.iter().filter_map(|c| if let Command::Output(o) = c { Some(o.clone()) } else { None });
        let counts = out.iter().filter_map(|c| if let Command::Count { name, .. } = c { Some(*name) } else { None });
        (outputs.collect(), counts.collect())
    }

    /// Edge1's request 7 writing `v` to k1, with its PBFT request for `pbft_op`.
    fn key(v: &[u8], pbft_op: &[u8]) -> RequestKey {
        let numbering = topology().pbft[0].clone().unwrap();
        let (mut rng, keys, mut out) = (rand_chacha::ChaCha8Rng::seed_from_u64(2), SeededKeys { seed: 1 }, Vec::new());
        let mut io: Io<'_, Replicas> = Io::new(NodeId(0), agora_core::Time::ZERO, &mut rng, &mut out).with_keys(&keys);
        let operation = Operation { key: "k1".into(), op: Op::Write(pbft_op.to_vec()), seal: None };
        let request = numbering.request(&mut io, NodeId(0), 7, 1, operation);
        RequestKey {
            id: 7,
            client: NodeId(0),
            group: 0,
            key: "k1".into(),
            op: Op::Write(v.to_vec()),
            put: None,
            seal: None,
            attempt: 0,
            sent_ns: 0,
            arrived: agora_core::Time::ZERO,
            forwarded: false,
            asked: Vec::new(),
            pbft: Some(Box::new(request)),
        }
    }

    /// A member hands the replica only the request its client sent for
    /// this operation: one whose PBFT operation differs (a client that
    /// lies to some members, or a relay that swapped it) is refused and
    /// answered `unordered`; the matching one goes to the replica, which
    /// answers once it is executed.
    #[test]
    fn a_request_whose_pbft_operation_differs_is_refused() {
        let (outputs, counts) = serve(key(b"a", b"b"));
        assert!(counts.contains(&counters::PEER_FORGED), "{counts:?}");
        assert!(matches!(outputs.as_slice(), [FromReplica::Reply { status: Status::Unordered, .. }]), "{outputs:?}");
        let (outputs, counts) = serve(key(b"a", b"a"));
        assert!(outputs.is_empty() && !counts.contains(&counters::PEER_FORGED), "{outputs:?} {counts:?}");
    }
}
