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
    /// Network edge i is `providers[at_p[i].0].edges[at_p[i].1]` and
    /// `recipients[at_r[i].0].edges[at_r[i].1]`.
    at_p: Vec<(u32, u32)>,
    at_r: Vec<(u32, u32)>,
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
        let mut at_p = Vec::with_capacity(net.edges.len());
        let mut at_r = Vec::with_capacity(net.edges.len());
        for &(p, r, mr, desire) in &net.edges {
            let pe = &mut providers[p].edges;
            at_p.push((p as u32, pe.len() as u32));
            pe.push(ProviderEdge { mr, desire, x: 0.0, request: 0.0, level: 2, gone: false });
            at_r.push((r as u32, degree[r]));
            degree[r] += 1;
        }
        let recipients = net.need.iter().zip(&degree).map(|(&d, &k)| Recipient::new(d, k as usize)).collect();
        let mut rule = DefaultRule {
            providers,
            recipients,
            at_p,
            at_r,
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
        for (&(p, i), &(r, j)) in self.at_p.iter().zip(&self.at_r) {
            let re = &self.recipients[r as usize].edges[j as usize];
            let (request, back) = (re.request, re.give_back);
            let level = self.recipients[r as usize].level;
            let pe = &mut self.providers[p as usize].edges[i as usize];
            pe.request = request;
            pe.x = (pe.x - back).max(0.0);
            pe.level = level;
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
            if self.acts() {
                changed |= self.providers[p].step(g);
            }
        }
        // Delivery: every provider re-delivers its standing allocation.
        for (&(p, i), &(r, j)) in self.at_p.iter().zip(&self.at_r) {
            let prov = &self.providers[p as usize];
            let (x, capped) = prov.delivery(i as usize);
            let re = &mut self.recipients[r as usize].edges[j as usize];
            re.received = x;
            re.capped = capped;
            re.level = prov.level;
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

    /// The standing allocation per network edge.
    pub fn allocation(&self) -> Vec<f64> {
        self.at_p.iter().map(|&(p, i)| self.providers[p as usize].edges[i as usize].x).collect()
    }
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
