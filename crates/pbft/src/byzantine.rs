//! A Byzantine replica for tests and sweeps: it runs the correct replica's
//! logic and tampers with what that sends, the way the attacks production
//! BFT code met did (an equivocating primary, view numbers flooded to huge
//! values, messages far beyond the water marks). Replaying and duplicating
//! need no knowledge of PBFT: the simulator's generic behaviours do them.
//! It holds its own keys, so what it tampers with it seals again: its
//! messages are authentic, and only the protocol's rules stand in its way.

use crate::auth::send;
use crate::msg::{batch_digest, checkpoint_bytes, Msg, Request};
use crate::node::{Node, Timer};
use crate::{Config, Replica, StateMachine};
use agora_core::{Command, Io, NodeId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// As primary, sends the odd-numbered backups a different batch from
    /// the one the others get — the same requests in reverse order, or the
    /// batch it proposed before (requests it cannot forge, so it reorders
    /// and replays authentic ones) — and at once commits to each the batch
    /// it sent it.
    Equivocate,
    /// As primary, alters every operation it proposes (the clients'
    /// authenticators no longer match).
    AlterRequests,
    /// At every status tick, sends signed view changes for views a million
    /// ahead and pre-prepares for views near the largest number.
    FloodViews,
    /// At every status tick, sends prepares, commits and checkpoints for
    /// sequence numbers far beyond the water marks.
    OutsideWindow,
    /// Twins: two correct instances of the replica with its one key, one
    /// talking to the even-numbered nodes and one to the odd — so the
    /// replica says different things to each half at every step, whatever
    /// its role.
    Twins,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Byzantine<M> {
    pub replica: Replica<M>,
    pub behaviour: Behaviour,
    /// Twins: the instance that talks to the odd-numbered nodes.
    twin: Option<Replica<M>>,
    ticks: u64,
    /// The last batch it proposed, to equivocate with.
    previous: Vec<Request>,
}

impl<M: StateMachine> Byzantine<M> {
    /// Replica `id` holding `machine`, misbehaving as `behaviour`.
    pub fn new(cfg: Arc<Config>, id: NodeId, machine: M, behaviour: Behaviour) -> Self {
        let twin = (behaviour == Behaviour::Twins)
            .then(|| M::restore(&machine.snapshot()).map(|m| Replica::new(cfg.clone(), id, m)))
            .map(|t| t.expect("a machine restores from its own snapshot"));
        Byzantine { replica: Replica::new(cfg, id, machine), behaviour, twin, ticks: 0, previous: Vec::new() }
    }

    /// A running replica that turns Byzantine (not twins: one instance).
    pub fn turned(replica: Replica<M>, behaviour: Behaviour) -> Self {
        Byzantine { replica, behaviour, twin: None, ticks: 0, previous: Vec::new() }
    }

    /// Runs a handler of the correct replica and sends what it sends,
    /// tampered; twins run it on both instances.
    pub(crate) fn handle(&mut self, io: &mut Io<'_, Node<M>>, handler: impl Fn(&mut Replica<M>, &mut Io<'_, Node<M>>)) {
        self.run_on(0, io, &handler);
        if self.twin.is_some() {
            self.run_on(1, io, handler);
        }
    }

    /// A message from `from`: twins hand it to the instance of its half.
    pub(crate) fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Node<M>>) {
        let half = if self.twin.is_some() { from.0 % 2 } else { 0 };
        self.run_on(half, io, |r, io| r.on_message(from, msg, io));
    }

    /// Runs `handler` on instance `half` (1: the twin); with twins, only
    /// that half of the nodes hears what it sends.
    fn run_on(
        &mut self,
        half: u32,
        io: &mut Io<'_, Node<M>>,
        handler: impl FnOnce(&mut Replica<M>, &mut Io<'_, Node<M>>),
    ) {
        let mut out = Vec::new();
        let instance = if half == 1 { self.twin.as_mut().expect("twins have a twin") } else { &mut self.replica };
        handler(instance, &mut io.nested(&mut out));
        let twins = self.twin.is_some();
        let mut proposed = None;
        for cmd in out {
            match cmd {
                Command::Send { to, .. } if twins && to.0 % 2 != half => {}
                Command::Send { to, msg } => {
                    if let Msg::PrePrepare { batch, .. } = &msg.msg {
                        proposed = Some(batch.clone());
                    }
                    self.send(to, msg.msg, io)
                }
                other => io.push(other),
            }
        }
        // Later batches equivocate with this one.
        if let Some(batch) = proposed {
            self.previous = batch;
        }
    }

    fn send(&mut self, to: NodeId, msg: Msg, io: &mut Io<'_, Node<M>>) {
        match msg {
            Msg::PrePrepare { view, seq, batch } if self.behaviour == Behaviour::Equivocate => {
                let batch: Vec<Request> = match to.0 % 2 {
                    1 if batch.len() > 1 => batch.into_iter().rev().collect(),
                    1 if !self.previous.is_empty() && self.previous != batch => self.previous.clone(),
                    _ => batch,
                };
                let digest = batch_digest(&batch);
                send(io, to, Msg::PrePrepare { view, seq, batch });
                send(io, to, Msg::Commit { view, seq, digest });
            }
            Msg::PrePrepare { view, seq, mut batch } if self.behaviour == Behaviour::AlterRequests => {
                for r in &mut batch {
                    r.op.push(b'!');
                }
                send(io, to, Msg::PrePrepare { view, seq, batch });
            }
            msg => send(io, to, msg),
        }
    }

    /// After a status tick: the flood this behaviour sends.
    pub(crate) fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Node<M>>) {
        self.handle(io, |r, io| r.on_timer(timer, io));
        if timer != Timer::Status {
            return;
        }
        self.ticks += 1;
        let (t, r) = (self.ticks, &self.replica);
        let flood: Vec<Msg> = match self.behaviour {
            Behaviour::Equivocate | Behaviour::AlterRequests | Behaviour::Twins => return,
            Behaviour::FloodViews => vec![
                Msg::ViewChange(Box::new(r.view_change_message(r.view() + 1_000_000 * t, io))),
                Msg::PrePrepare { view: u64::MAX - t, seq: 1, batch: Vec::new() },
            ],
            Behaviour::OutsideWindow => {
                let (low, cfg) = (r.stable().0, r.config());
                let seq = low + cfg.window * (1_000 + t);
                let digest = [t as u8; 32];
                let checkpoint = cfg.checkpoint_interval * (1_000_000 + t);
                let signature = crate::auth::sign(io, &checkpoint_bytes(r.id(), checkpoint, &digest));
                vec![
                    Msg::Prepare { view: r.view(), seq, digest },
                    Msg::Commit { view: r.view(), seq, digest },
                    Msg::Checkpoint { seq: checkpoint, digest, signature },
                ]
            }
        };
        for peer in r.config().replica_ids().filter(|&p| p != r.id()) {
            for m in &flood {
                send(io, peer, m.clone());
            }
        }
    }
}
