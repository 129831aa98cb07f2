//! The seed's update rule, literally (spec `alloc.md`, "What the seed gets
//! wrong"): kept to reproduce the seed and to document that it does not
//! converge.
//!
//! Per round, with capacity re-split every round:
//! * Active-Need(p, r) = min(Mutual-Desire(p, r), Residual(r) × Damping(r));
//! * Numerator(p, r) = MR(p, r) × Active-Need(p, r);
//! * Allocation(p → r) = Capacity(p) × Numerator(p, r) / Σ_r' Numerator(p, r')
//!   (nothing when the sum is 0);
//! * a recipient receives Σ_p Allocation(p → r); Satisfaction = min(need,
//!   received); the next round's Residual = need − Satisfaction;
//! * Damping from the last three over-allocations: alternating up/down → 0.5,
//!   never increasing → 1.0, otherwise 0.8; fewer than three → 1.0.
//!
//! A damping factor common to all of a provider's recipients cancels between
//! numerator and denominator, so it cannot stop the oscillation.

use crate::{Network, RoundReport};

pub struct SeedRule {
    net: Network,
    residual: Vec<f64>,
    damping: Vec<f64>,
    /// The last three over-allocations of each recipient, oldest first.
    history: Vec<Vec<f64>>,
    round: u32,
    /// The latest round's allocation, per edge (in `net.edges` order).
    pub allocation: Vec<f64>,
}

impl SeedRule {
    pub fn new(net: Network) -> Self {
        let nr = net.need.len();
        SeedRule {
            residual: net.need.clone(),
            damping: vec![1.0; nr],
            history: vec![Vec::new(); nr],
            round: 0,
            allocation: vec![0.0; net.edges.len()],
            net,
        }
    }

    /// Damping from the last three over-allocations.
    fn damping_of(h: &[f64]) -> f64 {
        if h.len() < 3 {
            return 1.0;
        }
        let (a, b, c) = (h[h.len() - 3], h[h.len() - 2], h[h.len() - 1]);
        let alternating = (b > a && c < b) || (b < a && c > b);
        if alternating {
            0.5
        } else if b <= a && c <= b {
            1.0
        } else {
            0.8
        }
    }

    pub fn round(&mut self) -> RoundReport {
        self.round += 1;
        let net = &self.net;
        let np = net.capacity.len();
        // Phase 2: every provider splits its whole capacity by numerators.
        let mut sum = vec![0.0; np];
        let numer: Vec<f64> = net
            .edges
            .iter()
            .map(|&(p, r, mr, desire)| {
                let v = mr * desire.min(self.residual[r] * self.damping[r]);
                sum[p] += v;
                v
            })
            .collect();
        let mut received = vec![0.0; net.need.len()];
        for (i, &(p, r, _, _)) in net.edges.iter().enumerate() {
            let a = if sum[p] > 0.0 { net.capacity[p] * numer[i] / sum[p] } else { 0.0 };
            self.allocation[i] = a;
            received[r] += a;
        }
        // Phase 4: recipients aggregate and update their published state.
        let (mut over, mut under) = (0.0, 0.0);
        for (r, &need) in net.need.iter().enumerate() {
            let satisfaction = need.min(received[r]);
            over += received[r] - satisfaction;
            under += need - satisfaction;
            self.residual[r] = need - satisfaction;
            let h = &mut self.history[r];
            h.push(received[r] - satisfaction);
            if h.len() > 3 {
                h.remove(0);
            }
            self.damping[r] = Self::damping_of(h);
        }
        RoundReport {
            round: self.round,
            total_allocated: self.allocation.iter().sum(),
            over_allocation: over,
            under_allocation: under,
        }
    }
}
