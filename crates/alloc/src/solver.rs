//! The round protocol run in one process over arrays: every provider and
//! recipient is the same agent the nodes run ([`crate::rule`]), and a round's
//! messages are copies between their edge slots. `agora alloc solve` and the
//! benchmarks use it; the simulator and TCP nodes run the same agents as
//! message-passing processes.

use crate::rule::{gap, Provider, ProviderEdge, Recipient};
use crate::{Network, SeedRule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One round's totals, as `agora alloc solve --json` reports them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RoundReport {
    pub round: u32,
    /// What recipients hold in total at the end of the round.
    pub total_allocated: f64,
    /// Σ over recipients of what they received beyond their need.
    pub over_allocation: f64,
    /// Σ over recipients of need left unmet.
    pub under_allocation: f64,
}

/// The default rule over a whole network.
pub struct DefaultRule {
    pub providers: Vec<Provider>,
    pub recipients: Vec<Recipient>,
    /// For each recipient edge, in recipient order (recipient 0's edges,
    /// then recipient 1's…), its slot at the provider: (provider, index).
    /// The exchange walks recipients in order, so each edge costs one random
    /// access (the provider headers stay in cache) instead of two.
    slot: Vec<(u32, u32)>,
    /// Providers whose step changed something: only their edges are
    /// delivered anew (the others' deliveries still stand).
    provider_changed: Vec<bool>,
    /// Per recipient, the level and whether it asked for or gave back
    /// anything, as last sent: a recipient with nothing new to send is
    /// skipped.
    sent: Vec<(u32, bool)>,
    round: u32,
    /// Asynchronous mode: each agent acts in a round with this probability.
    activity: Option<(f64, ChaCha8Rng)>,
    /// Consecutive quiet rounds: no provider step changed anything, nor the
    /// recipients' aggregation before it (the next aggregation then sees the
    /// same deliveries, so it is quiet too).
    quiet_rounds: u32,
    recipients_changed: bool,
}

impl DefaultRule {
    pub fn new(net: &Network) -> Self {
        let mut providers: Vec<Provider> = net.capacity.iter().map(|&c| Provider::new(c, Vec::new())).collect();
        let mut degree = vec![0u32; net.need.len()];
        let mut by_recipient = Vec::with_capacity(net.edges.len());
        for &(p, r, mr, desire) in &net.edges {
            let pe = &mut providers[p].edges;
            by_recipient.push((r as u32, degree[r], p as u32, pe.len() as u32));
            pe.push(ProviderEdge { mr, desire, x: 0.0, request: 0.0, level: 2, gone: false });
            degree[r] += 1;
        }
        by_recipient.sort_unstable();
        let slot = by_recipient.into_iter().map(|(_, _, p, i)| (p, i)).collect();
        let recipients = net.need.iter().zip(&degree).map(|(&d, &k)| Recipient::new(d, k as usize)).collect();
        let (np, nr) = (net.capacity.len(), net.need.len());
        let mut rule = DefaultRule {
            providers,
            recipients,
            slot,
            provider_changed: vec![true; np],
            sent: vec![(u32::MAX, true); nr],
            round: 0,
            activity: None,
            quiet_rounds: 0,
            recipients_changed: true,
        };
        // Round 0's requests: every recipient asks all its providers (all at level 1).
        for r in &mut rule.recipients {
            r.aggregate(u32::MAX);
        }
        rule.send_requests();
        rule
    }

    /// Barrier-free mode: in each round only a random subset of agents acts
    /// (each with probability `p`), on whatever the others last published.
    pub fn asynchronous(mut self, p: f64, seed: u64) -> Self {
        self.activity = Some((p, ChaCha8Rng::seed_from_u64(seed)));
        self
    }

    fn send_requests(&mut self) {
        let mut at = 0;
        for (rec, sent) in self.recipients.iter().zip(&mut self.sent) {
            let n = rec.edges.len();
            let asks = rec.edges.iter().any(|e| e.request > 0.0 || e.give_back > 0.0);
            // Nothing new: same level, nothing asked now or last time (the
            // providers cleared those requests when they stepped).
            if (rec.level, asks) != (sent.0, false) || sent.1 {
                for (k, (re, &(p, i))) in rec.edges.iter().zip(&self.slot[at..at + n]).enumerate() {
                    prefetch(&self.providers, self.slot.get(at + k + AHEAD));
                    let pe = &mut self.providers[p as usize].edges[i as usize];
                    pe.request = re.request;
                    pe.x = (pe.x - re.give_back).max(0.0);
                    pe.level = rec.level;
                }
                *sent = (rec.level, asks);
            }
            at += n;
        }
    }

    fn acts(&mut self) -> bool {
        match &mut self.activity {
            None => true,
            Some((p, rng)) => rng.random_bool(*p),
        }
    }

    pub fn round(&mut self) -> RoundReport {
        self.round += 1;
        let levels =
            |rule: &Self| gap(rule.providers.iter().map(|p| p.level).chain(rule.recipients.iter().map(|r| r.level)));
        let g = levels(self);
        let mut changed = std::mem::take(&mut self.recipients_changed);
        for p in 0..self.providers.len() {
            self.provider_changed[p] = self.acts() && self.providers[p].step(g);
            changed |= self.provider_changed[p];
        }
        // Delivery: every provider re-delivers its standing allocation.
        let mut k = 0;
        for rec in &mut self.recipients {
            for re in &mut rec.edges {
                let (p, i) = self.slot[k];
                prefetch(&self.providers, self.slot.get(k + AHEAD));
                k += 1;
                if self.provider_changed[p as usize] {
                    let prov = &self.providers[p as usize];
                    (re.received, re.capped) = prov.delivery(i as usize);
                    re.level = prov.level;
                }
            }
        }
        // Recipients see the gap over the providers' new levels, as the
        // ledger's snapshot after the providers published shows it.
        let g = levels(self);
        let mut over = 0.0;
        for r in 0..self.recipients.len() {
            let rec = &self.recipients[r];
            over += (rec.edges.iter().map(|e| e.received).sum::<f64>() - rec.need).max(0.0);
            if self.acts() {
                self.recipients_changed |= self.recipients[r].aggregate(g);
            } else {
                for e in &mut self.recipients[r].edges {
                    e.request = 0.0;
                    e.give_back = 0.0;
                }
            }
        }
        self.send_requests();
        self.quiet_rounds = if changed { 0 } else { self.quiet_rounds + 1 };
        let total = self.providers.iter().flat_map(|p| &p.edges).map(|e| e.x).sum::<f64>();
        let under = self.recipients.iter().map(|r| r.residual).sum();
        RoundReport { round: self.round, total_allocated: total, over_allocation: over, under_allocation: under }
    }

    /// The latest round was quiet (in asynchronous mode: enough rounds in a
    /// row that every agent acted in one with high probability).
    pub fn converged(&self) -> bool {
        match &self.activity {
            None => self.quiet_rounds >= 1,
            Some((p, _)) => self.quiet_rounds as f64 >= 20.0 / p,
        }
    }

    /// The standing allocation per network edge (`Network::edges` is sorted
    /// by provider, as the providers' edges are).
    pub fn allocation(&self) -> Vec<f64> {
        self.providers.iter().flat_map(|p| p.edges.iter().map(|e| e.x)).collect()
    }
}

/// How many edges ahead the exchange loops prefetch: the provider side of
/// the exchange is a random access per edge, and its latency, not
/// bandwidth, bounds a round on large networks (prefetching cut the
/// 10^4 × 10^5 round by 15–25% in A/B runs on the 2-core VM).
const AHEAD: usize = 12;

#[inline(always)]
fn prefetch(providers: &[Provider], slot: Option<&(u32, u32)>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(&(p, i)) = slot {
        let edge = providers[p as usize].edges.as_ptr().wrapping_add(i as usize);
        // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(edge.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (providers, slot);
}

/// Which update rule a solve runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleName {
    Default,
    Seed,
}

/// The outcome of [`solve`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Solution {
    pub converged: bool,
    pub rounds: u32,
    pub total_allocated: f64,
    /// Per network edge, in `Network::edges` order.
    pub allocation: Vec<f64>,
    pub per_round: Vec<RoundReport>,
}

/// Runs rounds until convergence or `max_rounds`. The seed rule converges
/// when over- and under-allocation are below `epsilon` × the largest need
/// (its own criterion); the default rule when a round changes nothing.
pub fn solve(net: &Network, rule: RuleName, epsilon: f64, max_rounds: u32) -> Solution {
    let mut per_round = Vec::new();
    let tol = epsilon * net.need.iter().cloned().fold(0.0, f64::max);
    match rule {
        RuleName::Default => {
            let mut d = DefaultRule::new(net);
            let mut converged = false;
            while per_round.len() < max_rounds as usize && !converged {
                per_round.push(d.round());
                converged = d.converged();
            }
            finish(converged, d.allocation(), per_round)
        }
        RuleName::Seed => {
            let mut s = SeedRule::new(net.clone());
            let mut converged = false;
            while per_round.len() < max_rounds as usize && !converged {
                let r = s.round();
                converged = r.over_allocation <= tol && r.under_allocation <= tol;
                per_round.push(r);
            }
            finish(converged, s.allocation.clone(), per_round)
        }
    }
}

fn finish(converged: bool, allocation: Vec<f64>, per_round: Vec<RoundReport>) -> Solution {
    Solution {
        converged,
        rounds: per_round.len() as u32,
        total_allocated: per_round.last().map_or(0.0, |r| r.total_allocated),
        allocation,
        per_round,
    }
}
