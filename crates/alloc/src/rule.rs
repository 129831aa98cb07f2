//! The default update rule: a distributed push–relabel over the seed's round
//! structure, with offers that stick, requests, and rerouting by levels.
//!
//! # What it computes
//!
//! The objective is the **maximum flow** of the network (source → providers
//! with c_p → recipients via edges capped by m_pr → sink with d_r): the most
//! need that can be met at all. Among maximum flows it picks one by a local
//! preference: whenever a provider cannot grant every request, it splits what
//! it can give by **MR × request**, capped at each request and re-split
//! (water-filling). So when one provider's capacity is the only binding
//! constraint, its recipients' shares are proportional to MR × need, as the
//! seed's numerator says. The general property: a recipient loses capacity
//! to a rival at a full provider only when it has a route to spare capacity
//! elsewhere (it is "below" the provider), so no recipient is left short
//! while another holds capacity it could have replaced.
//!
//! # The state and what is public
//!
//! Each provider keeps a standing allocation x_pr per edge and re-delivers it
//! every round (the seed's capacity re-split each round, but remembered).
//! Every agent publishes one integer, its **level**: its distance, in the
//! residual network, to a provider with spare capacity. A provider with
//! spare capacity has level 1; a full provider has level 1 + the lowest level
//! among the recipients it serves (it can free capacity by taking it back from
//! one that can get it elsewhere); a recipient has level 1 + the lowest level
//! among its providers whose edge is not at its desire cap. Unreachable is
//! [`UNREACHABLE`]. A level reveals no amount: not capacity, need, MR or
//! desire, only how many hops away spare capacity is. It takes the place of
//! the seed's damping factor on the ledger; residual needs are not published
//! at all (they travel only as private requests).
//!
//! # A round
//!
//! 1. Agents publish their levels (and converged flags).
//! 2. Each provider handles the requests sent to it: it grants from spare
//!    capacity first (MR × request water-filling); what remains it covers by
//!    taking allocation back from recipients exactly one level below it (they
//!    will ask their own lower providers next round); the rest is refused.
//!    It then recomputes its level.
//! 3. Providers deliver their standing allocation, with their new level and
//!    a flag for edges at their desire cap.
//! 4. Recipients add up what arrived, return any excess (only after faults
//!    or in asynchronous mode), recompute their level, and request their
//!    residual need from the providers exactly one level below them.
//! 5. Converged when no allocation and no level changed in a round.
//!
//! # Why it is feasible, and why it converges
//!
//! Feasibility holds by construction, every round: a provider never grants
//! beyond spare capacity plus what it takes back, never beyond an edge's
//! desire cap, and a recipient never requests more than its residual need.
//! A recipient's requests add up to at most its residual need, so its
//! grants never exceed its need. It returns anything beyond its need, which
//! can happen after a fault.
//!
//! Requests flow downhill in levels and levels are shortest distances
//! (Bellman–Ford, one hop per round), so every grant moves need one step
//! along a shortest augmenting path, as in Goldberg–Tarjan push–relabel: a
//! recipient's unmet need travels to spare capacity, displacing holders who
//! can be served elsewhere. When no path exists, levels would climb forever
//! (counting to infinity). The **gap rule** stops that: the ledger tells every
//! agent the lowest level no agent holds, and anything above such a gap cannot
//! reach spare capacity, so it becomes unreachable at once. The measured
//! rounds are in the crate docs and `agora alloc rounds`.

/// The level of an agent that cannot reach spare capacity.
pub const UNREACHABLE: u32 = u32::MAX;

/// Amounts below this fraction of the largest amount involved are treated as
/// zero (floating-point residue).
pub const REL_EPS: f64 = 1e-12;

/// One edge as its provider sees it.
#[derive(Clone, Debug)]
pub struct ProviderEdge {
    pub mr: f64,
    /// Mutual-desire cap (`f64::INFINITY` if none).
    pub desire: f64,
    /// Standing allocation.
    pub x: f64,
    /// The recipient's request this round.
    pub request: f64,
    /// The recipient's published level.
    pub level: u32,
    /// The recipient has been silent too long: treated as needing nothing.
    pub gone: bool,
}

/// A provider: private capacity and edges, public level.
#[derive(Clone, Debug)]
pub struct Provider {
    pub capacity: f64,
    pub edges: Vec<ProviderEdge>,
    pub level: u32,
}

/// The lowest level above which no agent can reach spare capacity.
pub type Gap = u32;

impl Provider {
    pub fn new(capacity: f64, edges: Vec<ProviderEdge>) -> Self {
        Provider { capacity, edges, level: 1 }
    }

    pub fn spare(&self) -> f64 {
        (self.capacity - self.edges.iter().map(|e| e.x).sum::<f64>()).max(0.0)
    }

    /// Phase 2: handle this round's requests. Returns whether anything
    /// (an allocation or the level) changed.
    pub fn step(&mut self, gap: Gap) -> bool {
        let before_level = self.level;
        let mut changed = false;
        for e in &mut self.edges {
            if e.gone && e.x > 0.0 {
                e.x = 0.0;
                changed = true;
            }
        }
        let tiny = REL_EPS * self.capacity;
        // What each request can still take on its edge.
        let want: Vec<f64> =
            self.edges.iter().map(|e| if e.gone { 0.0 } else { e.request.min(e.desire - e.x).max(0.0) }).collect();
        let wanted: f64 = want.iter().sum();
        if wanted > tiny {
            // Grants from spare capacity first.
            let spare = self.spare();
            let weights: Vec<f64> = self.edges.iter().zip(&want).map(|(e, w)| e.mr * w).collect();
            let mut grant = water_fill(spare, &weights, &want);
            // Then by taking back from holders exactly one level below.
            let rest: Vec<f64> = want.iter().zip(&grant).map(|(w, g)| w - g).collect();
            let still: f64 = rest.iter().sum();
            if still > tiny && self.level != UNREACHABLE && self.level > 0 {
                let below = self.level - 1;
                let held: f64 = self.edges.iter().filter(|e| e.level == below && !e.gone).map(|e| e.x).sum();
                let take = still.min(held);
                if take > tiny {
                    let keep = 1.0 - take / held;
                    for e in &mut self.edges {
                        if e.level == below && !e.gone {
                            e.x *= keep;
                        }
                    }
                    let more = water_fill(take, &weights, &rest);
                    for (g, m) in grant.iter_mut().zip(more) {
                        *g += m;
                    }
                }
            }
            for (e, g) in self.edges.iter_mut().zip(grant) {
                if g > tiny {
                    e.x = (e.x + g).min(e.desire);
                    changed = true;
                }
            }
        }
        for e in &mut self.edges {
            e.request = 0.0;
        }
        self.level = self.relabel(gap);
        changed || self.level != before_level
    }

    /// 1 with spare capacity; else 1 + the lowest level among holders.
    fn relabel(&self, gap: Gap) -> u32 {
        if self.spare() > REL_EPS * self.capacity {
            return 1;
        }
        let lowest = self.edges.iter().filter(|e| e.x > 0.0 && !e.gone).map(|e| e.level).min();
        above_gap(lowest.map_or(UNREACHABLE, |l| l.saturating_add(1)), gap)
    }

    /// What phase 3 delivers on each edge: amount and whether the edge is at
    /// its desire cap.
    pub fn delivery(&self, i: usize) -> (f64, bool) {
        let e = &self.edges[i];
        (e.x, e.x >= e.desire * (1.0 - 1e-12))
    }
}

/// One edge as its recipient sees it.
#[derive(Clone, Debug, Default)]
pub struct RecipientEdge {
    /// What the provider delivered this round.
    pub received: f64,
    /// The edge is at its desire cap (the provider said so).
    pub capped: bool,
    /// The provider's level, as delivered or published.
    pub level: u32,
    /// The provider delivered this round (false when it is crashed).
    pub alive: bool,
    /// Out: what to request from this provider next round.
    pub request: f64,
    /// Out: what to hand back (received beyond need).
    pub give_back: f64,
}

/// A recipient: private need and edges, public level.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub need: f64,
    pub edges: Vec<RecipientEdge>,
    pub level: u32,
    /// Need left after the latest aggregation.
    pub residual: f64,
}

impl Recipient {
    pub fn new(need: f64, edges: usize) -> Self {
        let edges = vec![RecipientEdge { level: 1, alive: true, ..Default::default() }; edges];
        Recipient { need, edges, level: 2, residual: need }
    }

    /// Phase 4: aggregate deliveries, give back any excess, relabel and
    /// request. Returns whether the level or received total changed.
    pub fn aggregate(&mut self, gap: Gap) -> bool {
        let received: f64 = self.edges.iter().filter(|e| e.alive).map(|e| e.received).sum();
        let tiny = REL_EPS * self.need.max(received);
        let mut excess = received - self.need;
        for e in &mut self.edges {
            e.give_back = 0.0;
            e.request = 0.0;
        }
        if excess > tiny {
            // Give back from the highest-level providers first: they are the
            // ones others are waiting on.
            let mut order: Vec<usize> = (0..self.edges.len()).filter(|&i| self.edges[i].alive).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(self.edges[i].level));
            for i in order {
                let e = &mut self.edges[i];
                let g = e.received.min(excess);
                e.give_back = g;
                e.received -= g;
                excess -= g;
                if excess <= tiny {
                    break;
                }
            }
        }
        let residual = (self.need - received).max(0.0);
        let before = (self.level, self.residual);
        self.residual = residual;
        let lowest = self.edges.iter().filter(|e| e.alive && !e.capped).map(|e| e.level).min();
        self.level = above_gap(lowest.map_or(UNREACHABLE, |l| l.saturating_add(1)), gap);
        if residual > REL_EPS * self.need && self.level != UNREACHABLE {
            let target = self.level - 1;
            let n = self.edges.iter().filter(|e| e.alive && !e.capped && e.level == target).count();
            for e in &mut self.edges {
                if e.alive && !e.capped && e.level == target {
                    e.request = residual / n as f64;
                }
            }
        }
        before.0 != self.level || (before.1 - residual).abs() > REL_EPS * self.need
    }
}

fn above_gap(level: u32, gap: Gap) -> u32 {
    if level > gap {
        UNREACHABLE
    } else {
        level
    }
}

/// The lowest level g ≥ 1 that no agent holds while some agent holds a
/// higher finite level (`UNREACHABLE` if there is no such gap). Agents above
/// it cannot reach spare capacity: every residual path down to level 0 would
/// pass through level g.
pub fn gap(levels: impl IntoIterator<Item = u32>) -> Gap {
    let mut seen: Vec<bool> = Vec::new();
    for l in levels {
        if l != UNREACHABLE {
            let l = l as usize;
            if l >= seen.len() {
                seen.resize(l + 1, false);
            }
            seen[l] = true;
        }
    }
    (1..seen.len()).find(|&g| !seen[g]).map_or(UNREACHABLE, |g| g as u32)
}

/// Splits `amount` among items in proportion to `weights`, capping each at
/// `caps` and re-splitting what the capped ones leave (water-filling).
/// Returns shares summing to min(amount, Σ caps).
pub fn water_fill(amount: f64, weights: &[f64], caps: &[f64]) -> Vec<f64> {
    let total: f64 = caps.iter().sum();
    if amount >= total {
        return caps.to_vec();
    }
    let mut share = vec![0.0; caps.len()];
    if amount <= 0.0 {
        return share;
    }
    // Proportional shares; any that exceed their cap are fixed at it and the
    // rest re-split. Each pass fixes at least one item, and a few passes
    // settle it in practice; after 8, finish in cap/weight order (a sort).
    let mut fixed = vec![false; caps.len()];
    let mut left = amount;
    for _ in 0..8 {
        let weight: f64 = (0..caps.len()).filter(|&i| !fixed[i] && caps[i] > 0.0).map(|i| weights[i]).sum();
        if weight <= 0.0 {
            break;
        }
        let scale = left / weight;
        let mut capped_any = false;
        for i in 0..caps.len() {
            if !fixed[i] && caps[i] > 0.0 && weights[i] * scale >= caps[i] {
                fixed[i] = true;
                share[i] = caps[i];
                left -= caps[i];
                capped_any = true;
            }
        }
        if !capped_any {
            for i in 0..caps.len() {
                if !fixed[i] && caps[i] > 0.0 {
                    share[i] = weights[i] * scale;
                }
            }
            return share;
        }
    }
    // Items in order of cap/weight: the ones that fill first come first.
    let mut order: Vec<usize> = (0..caps.len()).filter(|&i| !fixed[i] && caps[i] > 0.0).collect();
    let ratio = |i: usize| if weights[i] > 0.0 { caps[i] / weights[i] } else { f64::INFINITY };
    order.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    let mut weight: f64 = order.iter().map(|&i| weights[i]).sum();
    for (k, &i) in order.iter().enumerate() {
        if weight <= 0.0 {
            // Only zero weights remain: share equally.
            let rest = order.len() - k;
            for &j in &order[k..] {
                share[j] = (left / rest as f64).min(caps[j]);
            }
            break;
        }
        let s = left * weights[i] / weight;
        if s >= caps[i] {
            share[i] = caps[i];
            left -= caps[i];
            weight -= weights[i];
        } else {
            for &j in &order[k..] {
                share[j] = left * weights[j] / weight;
            }
            break;
        }
    }
    share
}
