//! The RPC layer's policies, free of any node: retry backoff with full
//! jitter, the retry budget, and outlier ejection's bookkeeping.

use crate::topology::RpcConfig;
use agora_core::Time;
use rand::{Rng, RngCore};
use std::time::Duration;

/// The wait before retry `retry` (1 for the first): uniform in
/// [0, min(cap, base · 2^(retry − 1))] — "full jitter" (AWS), which spreads
/// retries of many clients instead of synchronising them.
pub fn backoff(cfg: &RpcConfig, retry: u32, rng: &mut dyn RngCore) -> Duration {
    let exp = cfg.backoff_base.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
    let ceiling = exp.min(cfg.backoff_cap).as_nanos() as u64;
    Duration::from_nanos(if ceiling == 0 { 0 } else { rng.random_range(0..=ceiling) })
}

/// Seconds a deposit stays usable (Finagle's default TTL).
const TTL_S: u64 = 10;

/// Finagle's retry budget: every request deposits `budget_ratio` of a retry,
/// deposits expire after 10 s, and `budget_min_per_s` retries per second are
/// allowed on top, so retries add at most ~20 % load however bad things are.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    /// (second, tokens deposited in it), one slot per second of the TTL.
    buckets: [(u64, f64); TTL_S as usize],
    reserve: f64,
    refilled: Time,
}

impl RetryBudget {
    pub fn new(cfg: &RpcConfig) -> Self {
        RetryBudget { buckets: [(u64::MAX, 0.0); TTL_S as usize], reserve: cfg.budget_min_per_s, refilled: Time::ZERO }
    }

    fn second(now: Time) -> u64 {
        now.as_nanos() / 1_000_000_000
    }

    /// A new request (not a retry) was sent.
    pub fn deposit(&mut self, now: Time, cfg: &RpcConfig) {
        let s = Self::second(now);
        let b = &mut self.buckets[(s % TTL_S) as usize];
        if b.0 != s {
            *b = (s, 0.0);
        }
        b.1 += cfg.budget_ratio;
    }

    /// Takes one retry from the budget if there is one.
    pub fn withdraw(&mut self, now: Time, cfg: &RpcConfig) -> bool {
        let elapsed = (now - self.refilled).as_secs_f64();
        self.reserve = (self.reserve + elapsed * cfg.budget_min_per_s).min(cfg.budget_min_per_s);
        self.refilled = now;
        let s = Self::second(now);
        let live = |b: &(u64, f64)| b.0 != u64::MAX && s - b.0.min(s) < TTL_S;
        let total: f64 = self.buckets.iter().filter(|b| live(b)).map(|b| b.1).sum();
        if total >= 1.0 {
            // Spend the oldest deposits first.
            let mut owed = 1.0;
            let mut order: Vec<usize> = (0..self.buckets.len()).filter(|&i| live(&self.buckets[i])).collect();
            order.sort_by_key(|&i| self.buckets[i].0);
            for i in order {
                let take = self.buckets[i].1.min(owed);
                self.buckets[i].1 -= take;
                owed -= take;
                if owed <= 1e-12 {
                    break;
                }
            }
            true
        } else if self.reserve >= 1.0 {
            self.reserve -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn at_ms(ms: u64) -> Time {
        Time::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_ceiling() {
        let cfg = RpcConfig::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for retry in 1..8 {
            let ceiling = (cfg.backoff_base * (1 << (retry - 1))).min(cfg.backoff_cap);
            let waits: Vec<Duration> = (0..200).map(|_| backoff(&cfg, retry, &mut rng)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling));
            assert!(waits.iter().any(|w| *w < ceiling / 4), "full jitter reaches near zero");
        }
    }

    #[test]
    fn the_budget_allows_twenty_percent_plus_the_reserve() {
        let cfg = RpcConfig::default();
        let mut b = RetryBudget::new(&cfg);
        // 1000 requests in one second, every one of them failing.
        let mut retries = 0;
        for i in 0..1000 {
            b.deposit(at_ms(i), &cfg);
            if b.withdraw(at_ms(i), &cfg) {
                retries += 1;
            }
        }
        // 20 % of 1000 plus the reserve of 10 (refilling at 10/s over one second).
        assert!((200..=220).contains(&retries), "{retries} retries");
    }

    #[test]
    fn deposits_expire() {
        let cfg = RpcConfig { budget_min_per_s: 0.0, ..RpcConfig::default() };
        let mut b = RetryBudget::new(&cfg);
        for i in 0..50 {
            b.deposit(at_ms(i), &cfg);
        }
        assert!(!b.withdraw(at_ms(20_000), &cfg), "deposits older than 10 s are gone");
        for i in 0..5 {
            b.deposit(at_ms(20_000 + i), &cfg);
        }
        assert!(b.withdraw(at_ms(20_010), &cfg));
        assert!(!b.withdraw(at_ms(20_010), &cfg));
    }
}
