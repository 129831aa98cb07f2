//! The channel layer (our design; the seed defers it to the full version).
//!
//! * A primary tells each of its utilities when it turns busy (holds ≥ 1
//!   token) and when it turns non-busy: `Status { busy, interval }`.
//!   `interval` is a random id of the busy interval; links are FIFO, so a
//!   utility always sees a primary's statuses in order.
//! * A utility mediates at most one channel at a time. With none open and
//!   at least two primaries busy by their latest reports, it picks two at
//!   random and sends each an `Open` naming a fresh random channel id, the
//!   peer, and the busy interval it saw for the receiver.
//! * A primary accepts an `Open` only if it is still in that busy interval,
//!   so a channel lies within one busy interval of each end. Otherwise it
//!   answers with its current status: a utility that missed updates (they
//!   are lost while it is faulty) learns the truth and releases the channel,
//!   which frees the peer.
//! * The utility opens a channel one end at a time: the first end answers
//!   `Accept`, and only then does the second get its `Open`, already usable.
//!   The first end starts using the channel when the second end's first
//!   message arrives on it. So no primary ever waits on a channel whose
//!   other end is faulty (an `Open` to a faulty node is lost); only the
//!   utility stays occupied, until an end's status changes. This costs one
//!   message per channel.
//! * The utility releases the channel when, and only when, it hears that one
//!   end turned non-busy (or began a new busy interval). It then sends
//!   `Close` to both ends.
//! * Relayed messages carry the channel id. The mediator forwards them only
//!   on the channel they were sent on, and a primary accepts them only on a
//!   channel it holds with that id. A message from a past channel can never
//!   arrive as part of a later one (Guarantee 4.I): ids are random 64-bit
//!   values, not counters, so a node that forgets everything (the forgetful
//!   feature) cannot reuse one.
//! * A relayed message is dropped only when its channel is gone, that is,
//!   when one end turned non-busy (4.II). Token transports are the
//!   exception: they are never dropped, and a stale one is counted
//!   (`stale_transport`, which the tests require to stay 0).
//!

use super::principal::Channel;
use super::{Msg, Node, Principal};
use crate::counters;
use agora_core::{Io, NodeId};
use rand::Rng;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub(super) struct Utility {
    /// Primaries whose latest status is busy, with their interval.
    pub(super) busy: BTreeMap<NodeId, u64>,
    /// The channel it mediates.
    pub(super) channel: Option<Mediated>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Mediated {
    pub(super) id: u64,
    /// The two ends with the busy intervals it was opened for; the first
    /// is asked first.
    pub(super) ends: [(NodeId, u64); 2],
    /// The first end accepted and the second was told: messages may flow.
    pub(super) ready: bool,
}

impl Node {
    /// A utility opened a channel to `peer` for our busy `interval`.
    pub(super) fn on_open(
        &mut self,
        from: NodeId,
        channel: u64,
        peer: NodeId,
        interval: u64,
        ready: bool,
        io: &mut Io<'_, Self>,
    ) {
        let Some(p) = self.primary.as_mut().filter(|p| p.interval == interval) else {
            // Opened on a stale view of us (the utility missed our
            // updates, e.g. while it was faulty): correct it, which
            // releases the channel and frees the peer.
            let (busy, now) = self.primary.as_ref().map_or((false, interval), |p| (true, p.interval));
            io.send(from, Msg::Status { busy, interval: now });
            io.count("status_corrections", 1);
            return;
        };
        p.channels.insert(from, Channel { id: channel, peer, ready, request_out: false, waiting: false });
        if !ready {
            io.send(from, Msg::Accept { channel });
        } else if p.phase.is_none() {
            self.start_phase(io);
        }
    }

    /// The utility released the channel it mediated for us.
    pub(super) fn on_close(&mut self, from: NodeId, channel: u64, io: &mut Io<'_, Self>) {
        let Some(p) = self.primary.as_mut() else { return };
        if p.channels.get(&from).is_some_and(|c| c.id == channel) {
            p.channels.remove(&from);
            self.maybe_end_phase(io);
        }
    }

    pub(super) fn send_status(&self, busy: bool, interval: u64, io: &mut Io<'_, Self>) {
        for u in self.cfg.graph.utilities(self.me) {
            io.send(u, Msg::Status { busy, interval });
        }
    }

    pub(super) fn utility(&mut self) -> &mut Utility {
        self.utility.get_or_insert_with(|| Box::new(Utility { busy: BTreeMap::new(), channel: None }))
    }

    pub(super) fn on_status(&mut self, from: NodeId, busy: bool, interval: u64, io: &mut Io<'_, Self>) {
        let u = self.utility();
        if busy {
            u.busy.insert(from, interval);
        } else {
            u.busy.remove(&from);
        }
        // Release the channel if this end left the interval it was opened for.
        if let Some(m) = u.channel {
            if m.ends.iter().any(|&(v, i)| v == from && (!busy || i != interval)) {
                u.channel = None;
                // The second end knows of the channel only once it is ready.
                for (v, _) in &m.ends[..1 + usize::from(m.ready)] {
                    io.send(*v, Msg::Close { channel: m.id });
                }
            }
        }
        self.try_open(io);
        if self.utility.as_ref().is_some_and(|u| u.busy.is_empty() && u.channel.is_none()) {
            self.utility = None;
        }
    }

    pub(super) fn try_open(&mut self, io: &mut Io<'_, Self>) {
        let Some(u) = self.utility.as_mut() else { return };
        if u.channel.is_some() || u.busy.len() < 2 {
            return;
        }
        let n = u.busy.len();
        let a = io.rng().random_range(0..n);
        let mut b = io.rng().random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let pick = |i: usize| u.busy.iter().nth(i).map(|(&v, &iv)| (v, iv)).expect("in range");
        let ends = [pick(a), pick(b)];
        let id = io.rng().random::<u64>() | 1;
        u.channel = Some(Mediated { id, ends, ready: false });
        io.send(ends[0].0, Msg::Open { channel: id, peer: ends[1].0, interval: ends[0].1, ready: false });
        io.count(counters::CHANNELS, 1);
        self.mediated += 1;
    }

    /// The first end accepted: open the channel at the second, ready.
    pub(super) fn on_accept(&mut self, from: NodeId, channel: u64, io: &mut Io<'_, Self>) {
        let Some(m) = self.utility.as_mut().and_then(|u| u.channel.as_mut()) else { return };
        if m.id != channel || m.ends[0].0 != from || m.ready {
            return;
        }
        m.ready = true;
        let (first, (second, interval)) = (m.ends[0].0, m.ends[1]);
        io.send(second, Msg::Open { channel, peer: first, interval, ready: true });
    }

    pub(super) fn on_relay(&mut self, from: NodeId, channel: u64, to: NodeId, msg: Principal, io: &mut Io<'_, Self>) {
        let open = self.utility.as_ref().and_then(|u| u.channel).is_some_and(|m| {
            m.id == channel && m.ready && m.ends.iter().any(|e| e.0 == from) && m.ends.iter().any(|e| e.0 == to)
        });
        if open || matches!(msg, Principal::Transport(_)) {
            if !open {
                io.count(counters::STALE_TRANSPORT, 1);
            }
            io.send(to, Msg::Relayed { channel, from, msg });
        } else {
            io.count(counters::RELAY_DROPPED, 1);
        }
    }
}
