//! A provider node: steps its agent when the round's requests are in and
//! delivers to each of its recipients.

use super::{Kind, Msg, Node, Setup, Timer};
use crate::rule::{Provider, ProviderEdge};
use agora_core::{Io, NodeId};

pub(super) struct ProviderNode {
    pub(super) agent: Provider,
    /// Recipient node id per edge.
    pub(super) to: Vec<NodeId>,
    /// The latest request per edge and the round it was for; give-backs add up.
    pub(super) requests: Vec<(u32, f64)>,
    pub(super) give_back: Vec<f64>,
    /// The latest request (session, seq) received per edge, and the seq
    /// applied by the latest step.
    pub(super) session: Vec<u32>,
    pub(super) applied: Vec<u32>,
    pub(super) stepped: Vec<u32>,
    pub(super) snapshot: Option<(u32, u32)>,
    /// Recipients the current round waits for (edge indices).
    pub(super) waiting: Vec<usize>,
    /// The next step counts as a change whatever it does: the node (re)started
    /// (its recipients have yet to aggregate with it present), or a request
    /// it waited for never came.
    pub(super) restarted: bool,
}

impl ProviderNode {
    pub(super) fn new(setup: &Setup, p: usize) -> Self {
        let net = &setup.net;
        let mine: Vec<_> = net.edges.iter().filter(|e| e.0 == p).collect();
        let edges = mine
            .iter()
            .map(|&&(_, _, mr, desire)| ProviderEdge { mr, desire, x: 0.0, request: 0.0, level: 2, gone: false })
            .collect();
        let n = mine.len();
        ProviderNode {
            agent: Provider::new(net.capacity[p], edges),
            to: mine.iter().map(|e| setup.recipient_id(e.1)).collect(),
            requests: vec![(0, 0.0); n],
            give_back: vec![0.0; n],
            session: vec![0; n],
            applied: vec![0; n],
            stepped: vec![0; n],
            snapshot: None,
            waiting: Vec::new(),
            restarted: true,
        }
    }
}

impl Node {
    /// A recipient's request for this round (and what it gives back).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_request(
        &mut self,
        from: NodeId,
        session: u32,
        seq: u32,
        round: u32,
        amount: f64,
        give_back: f64,
        io: &mut Io<'_, Self>,
    ) {
        if let Kind::Provider(p) = &mut self.kind {
            if let Some(i) = p.to.iter().position(|&t| t == from) {
                if session != p.session[i] {
                    // The recipient started from nothing: it holds nothing back.
                    (p.session[i], p.applied[i], p.stepped[i], p.give_back[i]) = (session, 0, 0, 0.0);
                }
                if seq > p.applied[i] {
                    p.requests[i] = (round, amount);
                    p.applied[i] = seq;
                }
                p.give_back[i] += give_back;
            }
            self.provider_try_step(io);
        }
    }

    pub(super) fn provider_try_step(&mut self, io: &mut Io<'_, Self>) {
        let Kind::Provider(p) = &mut self.kind else { return };
        let Some((round, gap)) = p.snapshot else { return };
        p.waiting.retain(|&i| p.requests[i].0 < round);
        if !p.waiting.is_empty() {
            return;
        }
        p.snapshot = None;
        io.cancel_timer(Timer::Wait(round));
        for (i, e) in p.agent.edges.iter_mut().enumerate() {
            e.x = (e.x - std::mem::take(&mut p.give_back[i])).max(0.0);
            e.request = std::mem::take(&mut p.requests[i].1);
        }
        let changed = p.agent.step(gap) | std::mem::take(&mut p.restarted);
        p.stepped.copy_from_slice(&p.applied);
        for (i, &to) in p.to.iter().enumerate() {
            let (amount, capped) = p.agent.delivery(i);
            let (session, applied, level) = (p.session[i], p.stepped[i], p.agent.level);
            io.send(to, Msg::Deliver { session, applied, round, amount, capped, level });
        }
        io.send(NodeId(0), Msg::Publish { round, level: p.agent.level, converged: !changed });
    }
}
