//! The ledger node (id 0): collects publications, closes barriers, writes
//! each batch to durable storage and hands out snapshots; ends the run.

use super::{Config, Kind, Msg, Node, Output, Setup, Timer};
use crate::ledger::{Entry, LEDGER_TABLE};
use crate::rule::gap;
use agora_core::{Io, NodeId, Time};

pub(super) struct LedgerNode {
    /// What the disk held when the node restarted (applied at start).
    pub(super) restored: Vec<(u32, Entry)>,
    /// Every batch written, in order (what was ever made public).
    pub(super) history: Vec<Vec<(u32, Entry)>>,
    pub(super) next_sync: u64,
    /// (round, level) by node id, as last published.
    pub(super) entries: Vec<(u32, u32)>,
    pub(super) batch: Vec<(u32, Entry)>,
    pub(super) round: u32,
    /// 1: waiting for recipients; 2: waiting for providers.
    pub(super) phase: u8,
    /// Who published in the current phase, and whether anything changed.
    pub(super) heard: Vec<bool>,
    pub(super) changed: u32,
    pub(super) changed_last_phase: u32,
    pub(super) heard_last_phase: u32,
    pub(super) late_change: bool,
    /// The agents counted as gone when the run ended.
    pub(super) absent: Vec<NodeId>,
    /// How the run ended: (round, converged).
    pub(super) verdict: Option<(u32, bool)>,
    /// Asynchronous mode: consecutive unchanged publications per agent.
    pub(super) quiet: Vec<u32>,
    /// The ledger's round when it last heard from each agent (an agent
    /// restarting from nothing claims round 1, so its entry cannot tell).
    pub(super) heard_at: Vec<u32>,
}

impl LedgerNode {
    pub(super) fn new(setup: &Setup) -> Self {
        LedgerNode {
            restored: Vec::new(),
            history: Vec::new(),
            next_sync: 0,
            entries: vec![(0, 2); setup.nodes() as usize],
            batch: Vec::new(),
            round: 1,
            phase: 1,
            heard: vec![false; setup.nodes() as usize],
            changed: 0,
            changed_last_phase: 0,
            heard_last_phase: 0,
            late_change: false,
            absent: Vec::new(),
            verdict: None,
            quiet: vec![0; setup.nodes() as usize],
            heard_at: vec![0; setup.nodes() as usize],
        }
    }

    /// Puts the batch's entries in the ledger table and syncs them. Nothing
    /// waits on the sync: the entries are public already, and a ledger that
    /// restarts resumes from the last round that was durable.
    pub(super) fn write_batch(&mut self, io: &mut Io<'_, Node>) {
        for (agent, entry) in &self.batch {
            io.put(LEDGER_TABLE, agent.to_be_bytes(), serde_json::to_vec(entry).expect("entries serialize"));
        }
        self.next_sync += 1;
        io.sync(self.next_sync);
        self.history.push(std::mem::take(&mut self.batch));
    }
}

pub(super) fn snapshot(l: &LedgerNode, round: u32) -> Msg {
    let g = gap(l.entries.iter().skip(1).map(|e| e.1));
    Msg::Snapshot { round, gap: g, entries: l.entries.clone() }
}

/// Agents silent for more than T + 1 rounds at `round`.
fn absent(heard_at: &[u32], round: u32, t: u32) -> Vec<NodeId> {
    (1..heard_at.len()).filter(|&i| heard_at[i].saturating_add(t + 1) < round).map(|i| NodeId(i as u32)).collect()
}

/// The asynchronous mode's round: ticks since the start.
pub(super) fn clock_round(cfg: &Config, now: Time) -> u32 {
    (now.as_nanos() / cfg.tick.as_nanos().max(1) as u64) as u32
}

impl Node {
    pub(super) fn ledger_publish(
        &mut self,
        from: NodeId,
        round: u32,
        level: u32,
        converged: bool,
        io: &mut Io<'_, Self>,
    ) {
        let asynchronous = self.cfg().asynchronous;
        let Kind::Ledger(l) = &mut self.kind else { return };
        let i = from.0 as usize;
        if i == 0 || i >= l.entries.len() {
            return;
        }
        l.entries[i] = (round, level);
        l.batch.push((from.0, Entry { round, level, converged }));
        if round != 0 {
            // Participation, not a start announcement (a node restarted from
            // nothing has yet to act).
            if !asynchronous && l.heard_at[i] == 0 && l.round > 1 {
                // A late joiner's first report changes what the others see
                // next round, even when it says it is converged: this round
                // cannot be the quiet one.
                l.late_change = true;
            }
            l.heard_at[i] = if asynchronous { clock_round(&self.setup.config, io.now()) } else { l.round };
        }
        if asynchronous {
            l.quiet[i] = if converged { l.quiet[i] + 1 } else { 0 };
            return;
        }
        if round == 0 {
            return;
        }
        let is_recipient = i as u32 > self.setup.providers();
        if (l.phase == 1) == is_recipient && !l.heard[i] {
            l.heard[i] = true;
            l.changed += u32::from(!converged);
        } else if !converged {
            // Late for its phase, with news: the next decision cannot be quiet.
            l.late_change = true;
        }
        let (lo, hi) = if l.phase == 1 {
            (1 + self.setup.providers() as usize, self.setup.nodes() as usize)
        } else {
            (1, 1 + self.setup.providers() as usize)
        };
        if l.heard[lo..hi].iter().all(|&h| h) {
            self.ledger_close_phase(io);
        }
    }

    /// A barrier passed (everyone published, or the timeout fired).
    pub(super) fn ledger_close_phase(&mut self, io: &mut Io<'_, Self>) {
        let setup = self.setup.clone();
        let timeout = setup.config.phase_timeout;
        let Kind::Ledger(l) = &mut self.kind else { return };
        l.write_batch(io);
        let heard = l.heard.iter().filter(|&&h| h).count() as u32;
        l.heard.iter_mut().for_each(|h| *h = false);
        let changed = std::mem::take(&mut l.changed);
        if l.phase == 1 {
            // Barrier 1 passed: phase 2.
            (l.changed_last_phase, l.heard_last_phase) = (changed, heard);
            let snap = snapshot(l, l.round);
            for p in 0..setup.providers() as usize {
                io.send(setup.provider_id(p), snap.clone());
            }
            l.phase = 2;
        } else {
            // Phase 5: the round is quiet when neither the recipients'
            // aggregation that opened it nor the providers' step changed
            // anything (the next aggregation would then see the same
            // deliveries). Settled: every agent was heard in this round or is
            // gone (silent for more than T + 1 rounds: its share released).
            // One merely late holds the decision back until it is either.
            let (heard, changed) = (heard + l.heard_last_phase, changed + l.changed_last_phase);
            io.output(Output::Round { round: l.round, published: heard, changed });
            let t = setup.config.silent_rounds;
            let settled = l.heard_at.iter().skip(1).all(|&h| h == l.round || h.saturating_add(t + 1) < l.round);
            let quiet = changed == 0 && !std::mem::take(&mut l.late_change) && settled;
            if quiet || l.round >= setup.config.max_rounds {
                l.absent = absent(&l.heard_at, l.round, t);
                l.verdict = Some((l.round, quiet));
                let (round, converged) = (l.round, quiet);
                io.output(Output::Finished { round, converged });
                for id in 1..setup.nodes() {
                    io.send(NodeId(id), Msg::Finished { round, converged });
                }
                self.finished = true;
                return;
            }
            // Phase 4.
            let snap = snapshot(l, l.round);
            for r in 0..setup.recipients() as usize {
                io.send(setup.recipient_id(r), snap.clone());
            }
            l.round += 1;
            l.phase = 1;
        }
        io.set_timer(timeout, Timer::Barrier(l.round, l.phase));
    }

    pub(super) fn ledger_flush(&mut self, io: &mut Io<'_, Self>) {
        let setup = self.setup.clone();
        let Kind::Ledger(l) = &mut self.kind else { return };
        if !l.batch.is_empty() {
            l.write_batch(io);
        }
        let round = clock_round(&setup.config, io.now());
        // Every agent reported three unchanged steps in a row, or is gone (as
        // with barriers: silent for more than T + 1 rounds).
        let t = setup.config.silent_rounds;
        let quiet = l.quiet.iter().zip(&l.heard_at).skip(1).all(|(&q, &h)| q >= 3 || h.saturating_add(t + 1) < round);
        if quiet || round > setup.config.max_rounds {
            l.absent = absent(&l.heard_at, round, t);
            l.verdict = Some((round, quiet));
            io.output(Output::Finished { round, converged: quiet });
            for id in 1..setup.nodes() {
                io.send(NodeId(id), Msg::Finished { round, converged: quiet });
            }
            self.finished = true;
        }
    }
}
