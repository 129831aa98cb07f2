//! The principal layer (as the seed describes it).
//!
//! An operational primary (busy, with channels) runs phases. At the start of
//! each phase it tosses a coin, center or arm, and sends a request over each
//! channel. The phase ends when every request has a response.
//! * A center answers a center-request with `No`. An arm answers it by
//!   transporting its tokens (except those injected during the phase) and
//!   turns non-busy.
//! * An arm answers an arm-request with `No`. A center holds it (selective
//!   waiting) until its next phase: if that phase is center, its own request
//!   will prompt the arm to transport; if arm, it answers `No` first.
//!
//! At the end of a phase the primary forms ⌊τ/k⌋ teams. A primary that is
//! not operational forms teams as soon as it holds k tokens.

use super::{pack, transport_total, unpack, Msg, Node, Principal, MAX_VECTOR_TRANSPORT};
use crate::counters;
use agora_core::{Io, NodeId};
use rand::Rng;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Center,
    Arm,
}

#[derive(Clone, Debug)]
pub(super) struct Channel {
    pub(super) id: u64,
    pub(super) peer: NodeId,
    /// The peer is known to have it too: phases use it.
    pub(super) ready: bool,
    /// A request of ours awaits its response (this phase).
    pub(super) request_out: bool,
    /// A center holding an arm-request until its next phase.
    pub(super) waiting: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Primary {
    /// Tokens held, by tag, that an arm transports.
    pub(super) held: Vec<u64>,
    /// Injected during the current phase: not transported in it.
    pub(super) fresh: Vec<u64>,
    /// The current busy interval's id (0 when not busy).
    pub(super) interval: u64,
    /// By mediator.
    pub(super) channels: BTreeMap<NodeId, Channel>,
    pub(super) phase: Option<Kind>,
}

impl Node {
    pub(super) fn primary(&mut self) -> &mut Primary {
        self.primary.get_or_insert_with(|| {
            Box::new(Primary {
                held: Vec::new(),
                fresh: Vec::new(),
                interval: 0,
                channels: BTreeMap::new(),
                phase: None,
            })
        })
    }

    /// Tokens arrive (injected, or transported here).
    pub(super) fn receive_tokens(&mut self, tags: Vec<u64>, injected: bool, io: &mut Io<'_, Self>) {
        if tags.is_empty() {
            return;
        }
        let p = self.primary();
        let was_busy = !p.held.is_empty() || !p.fresh.is_empty();
        if injected && p.phase.is_some() {
            p.fresh.extend(tags);
        } else {
            p.held.extend(tags);
        }
        if !was_busy {
            let interval = io.rng().random::<u64>() | 1;
            self.primary().interval = interval;
            self.send_status(true, interval, io);
        }
        if self.primary.as_ref().is_some_and(|p| p.phase.is_none()) {
            // Not operational: form teams right away.
            self.form_teams(io);
        }
    }

    /// ⌊τ/k⌋ teams; turns non-busy if nothing remains.
    pub(super) fn form_teams(&mut self, io: &mut Io<'_, Self>) {
        let Some(mut p) = self.primary.take() else { return };
        let mut teams = Vec::new();
        while let Some(members) = self.take_team(&mut p.held) {
            teams.push(members);
        }
        self.primary = Some(p);
        let formed = teams.len() as u64;
        // The applications see each team through one hook; a TERM token to
        // inject comes back from it.
        let mut term = false;
        for members in teams {
            term |= self.team_formed(members, io);
        }
        if formed == 0 {
            return;
        }
        self.teams += formed;
        io.count(counters::TEAMS, formed);
        if term {
            self.inject_term(io);
        }
        if self.tokens() == 0 {
            self.turn_non_busy(io);
        }
    }

    pub(super) fn turn_non_busy(&mut self, io: &mut Io<'_, Self>) {
        let Some(p) = self.primary.take() else { return };
        // Channels go with the busy interval; the mediators release them
        // when they hear this.
        self.send_status(false, p.interval, io);
    }

    pub(super) fn start_phase(&mut self, io: &mut Io<'_, Self>) {
        let kind = if io.rng().random::<bool>() { Kind::Center } else { Kind::Arm };
        let p = self.primary.as_mut().expect("operational");
        p.phase = Some(kind);
        let fresh = std::mem::take(&mut p.fresh);
        p.held.extend(fresh);
        let mut sends = Vec::new();
        for (&u, c) in p.channels.iter_mut().filter(|(_, c)| c.ready) {
            if std::mem::take(&mut c.waiting) && kind == Kind::Arm {
                sends.push((u, c.id, c.peer, Principal::No));
            }
            c.request_out = true;
            let req = if kind == Kind::Center { Principal::CenterRequest } else { Principal::ArmRequest };
            sends.push((u, c.id, c.peer, req));
        }
        for (u, channel, to, msg) in sends {
            io.send(u, Msg::Relay { channel, to, msg });
        }
    }

    /// The phase is over when no request awaits a response.
    pub(super) fn maybe_end_phase(&mut self, io: &mut Io<'_, Self>) {
        let Some(p) = self.primary.as_mut() else { return };
        if p.phase.is_none() || p.channels.values().any(|c| c.request_out) {
            return;
        }
        p.phase = None;
        // This phase's injections count as injected now.
        let fresh = std::mem::take(&mut p.fresh);
        p.held.extend(fresh);
        self.form_teams(io);
        // Still operational: the next phase.
        if self.tokens() > 0 && self.primary.as_ref().is_some_and(|p| p.channels.values().any(|c| c.ready)) {
            self.start_phase(io);
        }
    }

    pub(super) fn on_principal(
        &mut self,
        mediator: NodeId,
        sender: NodeId,
        channel: u64,
        msg: Principal,
        io: &mut Io<'_, Self>,
    ) {
        if let Principal::Transport(t) = &msg {
            // An arm gives up fewer than k tokens, and vector teams are
            // counted per colour; a frame claiming more is malformed (and
            // would otherwise make us allocate what it claims).
            let total = transport_total(t);
            let limit = if self.cfg.colours.is_some() { MAX_VECTOR_TRANSPORT } else { self.cfg.k - 1 };
            if total > limit {
                io.count(counters::MALFORMED_TRANSPORT, 1);
                return;
            }
        }
        // The peer's first message on a channel we accepted makes it ready:
        // join it with a phase before handling the message.
        if let Some(p) = self.primary.as_mut() {
            if let Some(c) = p.channels.get_mut(&mediator).filter(|c| c.id == channel && !c.ready) {
                c.ready = true;
                if p.phase.is_none() {
                    self.start_phase(io);
                }
            }
        }
        let current = self.primary.as_ref().and_then(|p| p.channels.get(&mediator)).filter(|c| c.id == channel);
        let Some(c) = current else {
            // Not a channel we hold (released, or from another busy
            // interval): drop it, except tokens, which are never dropped.
            if let Principal::Transport(t) = msg {
                let t = unpack(&t);
                io.count(counters::STALE_TRANSPORT, 1);
                io.count(counters::TOKENS_RECEIVED, t.len() as u64);
                self.see_term(&t, io);
                self.record_route(&t, sender);
                self.receive_tokens(t, false, io);
            } else {
                io.count(counters::RELAY_DROPPED, 1);
            }
            return;
        };
        let peer = c.peer;
        let kind = self.primary.as_ref().and_then(|p| p.phase);
        match msg {
            Principal::CenterRequest => match kind {
                Some(Kind::Arm) => {
                    // Transport everything but this phase's injections, then retire.
                    let p = self.primary.as_mut().expect("held");
                    let t = std::mem::take(&mut p.held);
                    let fresh = std::mem::take(&mut p.fresh);
                    io.count(counters::TOKENS_TRANSPORTED, t.len() as u64);
                    io.send(mediator, Msg::Relay { channel, to: peer, msg: Principal::Transport(pack(&t)) });
                    self.turn_non_busy(io);
                    if !t.is_empty() {
                        // It gave its tokens away, so it does not lead.
                        self.decide(false, io);
                    }
                    // This phase's injections count as injected after it.
                    self.receive_tokens(fresh, true, io);
                }
                _ => io.send(mediator, Msg::Relay { channel, to: peer, msg: Principal::No }),
            },
            Principal::ArmRequest => match kind {
                Some(Kind::Center) => {
                    if let Some(c) = self.primary.as_mut().and_then(|p| p.channels.get_mut(&mediator)) {
                        c.waiting = true;
                    }
                }
                _ => io.send(mediator, Msg::Relay { channel, to: peer, msg: Principal::No }),
            },
            Principal::No | Principal::Transport(_) => {
                let arrived = match msg {
                    Principal::Transport(t) => unpack(&t),
                    _ => Vec::new(),
                };
                self.see_term(&arrived, io);
                self.record_route(&arrived, sender);
                if let Some(c) = self.primary.as_mut().and_then(|p| p.channels.get_mut(&mediator)) {
                    if !c.request_out {
                        // A response to no request of this channel: a
                        // message from another channel got through (4.I).
                        io.count(counters::UNEXPECTED_RESPONSE, 1);
                    }
                    c.request_out = false;
                }
                if !arrived.is_empty() {
                    io.count(counters::TOKENS_RECEIVED, arrived.len() as u64);
                    self.primary.as_mut().expect("held").held.extend(arrived);
                }
                self.maybe_end_phase(io);
            }
        }
    }
}
