//! A recipient node: requests from its providers, aggregates their
//! deliveries, gives back what exceeds its need.

use super::{Kind, Msg, Node, Setup, Timer};
use crate::rule::{Recipient, RecipientEdge, UNREACHABLE};
use agora_core::{Io, NodeId, Time};

#[derive(Clone, Copy)]
pub(super) struct Delivery {
    pub(super) round: u32,
    pub(super) amount: f64,
    pub(super) capped: bool,
    pub(super) level: u32,
    pub(super) at: Time,
}

pub(super) struct RecipientNode {
    pub(super) agent: Recipient,
    pub(super) from: Vec<NodeId>,
    /// The latest delivery per edge.
    pub(super) deliveries: Vec<Option<Delivery>>,
    pub(super) snapshot: Option<(u32, u32)>,
    pub(super) waiting: Vec<usize>,
    /// Requests sent per edge in this session, and give-backs the provider
    /// has not yet applied: (seq of the request that carried it, amount).
    pub(super) session: u32,
    pub(super) seq: Vec<u32>,
    pub(super) unapplied: Vec<Vec<(u32, f64)>>,
    /// A delivery this round waited for never came: the round is not quiet.
    pub(super) incomplete: bool,
}

impl RecipientNode {
    pub(super) fn new(setup: &Setup, r: usize) -> Self {
        let net = &setup.net;
        let from: Vec<NodeId> = net.edges.iter().filter(|e| e.1 == r).map(|e| setup.provider_id(e.0)).collect();
        let n = from.len();
        RecipientNode {
            agent: Recipient::new(net.need[r], n),
            from,
            deliveries: vec![None; n],
            snapshot: None,
            waiting: Vec::new(),
            session: 0,
            seq: vec![0; n],
            unapplied: vec![Vec::new(); n],
            incomplete: false,
        }
    }
}

impl Node {
    /// A provider's delivery: its standing allocation to us.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_deliver(
        &mut self,
        from: NodeId,
        session: u32,
        applied: u32,
        round: u32,
        amount: f64,
        capped: bool,
        level: u32,
        io: &mut Io<'_, Self>,
    ) {
        if let Kind::Recipient(r) = &mut self.kind {
            if let Some(i) = r.from.iter().position(|&f| f == from) {
                if session == r.session {
                    r.unapplied[i].retain(|&(seq, _)| seq > applied);
                }
                r.deliveries[i] = Some(Delivery { round, amount, capped, level, at: io.now() });
            }
            self.recipient_try_aggregate(io);
        }
    }

    pub(super) fn recipient_try_aggregate(&mut self, io: &mut Io<'_, Self>) {
        let asynchronous = self.cfg().asynchronous;
        let stale_after = self.cfg().tick.as_nanos() as u64 * 3;
        let Kind::Recipient(r) = &mut self.kind else { return };
        let Some((round, gap)) = r.snapshot else { return };
        r.waiting.retain(|&i| r.deliveries[i].is_none_or(|d| d.round < round));
        if !r.waiting.is_empty() {
            return;
        }
        r.snapshot = None;
        io.cancel_timer(Timer::Wait(round));
        let now = io.now().as_nanos();
        for (i, e) in r.agent.edges.iter_mut().enumerate() {
            // This round's delivery (barriers), or a recent one (asynchronous).
            let fresh = r.deliveries[i].filter(|d| {
                if asynchronous {
                    now.saturating_sub(d.at.as_nanos()) <= stale_after
                } else {
                    d.round >= round
                }
            });
            // A provider that did not deliver is down (or late): nothing is
            // counted from it and nothing asked of it this round.
            *e = match fresh {
                Some(d) => {
                    let pending: f64 = r.unapplied[i].iter().map(|u| u.1).sum();
                    RecipientEdge {
                        received: (d.amount - pending).max(0.0),
                        capped: d.capped,
                        level: d.level,
                        alive: true,
                        ..Default::default()
                    }
                }
                None => RecipientEdge { level: UNREACHABLE, alive: false, ..Default::default() },
            };
        }
        let changed = r.agent.aggregate(gap) | std::mem::take(&mut r.incomplete);
        for (i, (e, &to)) in r.agent.edges.iter().zip(&r.from).enumerate() {
            r.seq[i] += 1;
            if e.give_back > 0.0 {
                r.unapplied[i].push((r.seq[i], e.give_back));
            }
            let (session, seq) = (r.session, r.seq[i]);
            let msg = Msg::Request { session, seq, round: round + 1, amount: e.request, give_back: e.give_back };
            io.send(to, msg);
        }
        io.send(NodeId(0), Msg::Publish { round: round + 1, level: r.agent.level, converged: !changed });
    }
}
