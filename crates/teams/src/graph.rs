//! The primary–utility graph, defined implicitly: primary v's utilities are
//! a Bernoulli(p) subset of all n nodes, drawn by a generator seeded from
//! (graph seed, v) with geometric skips. So it costs O(n·p) to list, nothing
//! to store, and is the same every time it is drawn: the seed's "factory
//! coins", which a forgetful node may recompute instead of remembering.

use agora_core::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub n: u32,
    /// The probability that a primary picks a given utility.
    pub p: f64,
    pub seed: u64,
}

impl Graph {
    /// p = min(1, sqrt(c · ln n / (ε · n))): any two primaries then share
    /// about c · ln n / ε utilities, of which an ε fraction are non-faulty.
    pub fn new(n: u32, c: f64, epsilon: f64, seed: u64) -> Self {
        let nf = n.max(2) as f64;
        let p = (c * nf.ln() / (epsilon * nf)).sqrt().min(1.0);
        Graph { n, p, seed }
    }

    /// The utilities primary `v` picks, in increasing order.
    pub fn utilities(&self, v: NodeId) -> Vec<NodeId> {
        let mut out = Vec::with_capacity((self.p * self.n as f64 * 1.2) as usize + 4);
        if self.p >= 1.0 {
            out.extend((0..self.n).map(NodeId));
            return out;
        }
        let mut g = ChaCha8Rng::seed_from_u64(self.seed ^ (u64::from(v.0) << 32 | 0x7e57));
        let log_q = (1.0 - self.p).ln();
        let mut next: u64 = 0;
        loop {
            // The gap to the next pick is geometric: floor(ln U / ln(1 − p)).
            let u: f64 = 1.0 - g.random::<f64>();
            next += (u.ln() / log_q).floor() as u64;
            if next >= u64::from(self.n) {
                return out;
            }
            out.push(NodeId(next as u32));
            next += 1;
        }
    }
}
