//! The allocators A(n) and the guarantees G(n) they are proven to give.
//!
//! A claimant holding share s may take `amount` more iff
//! (s + amount) · A(n) ≤ r + s, with r what remains in the pool and n the
//! number of *other* claimants holding resources. In exact integers:
//! the product is computed in u128, so it cannot overflow; a request whose
//! s + amount overflows u64, or whose A(n) does, is refused.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Allocator {
    /// A1(n) = 2, G1(n) = 2^(n+1).
    Exponential,
    /// A2(n) = n + 2, G2(n) = (n + 1)(n + 2).
    Polynomial,
    /// A3(n) = (n + 2)·⌈log2(n + 2)⌉ + (n + 2), G3(n) = (n + 2)(⌈log2(n + 2)⌉ + 1)².
    Quasilinear,
}

impl Allocator {
    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Allocator::Exponential => "exponential",
            Allocator::Polynomial => "polynomial",
            Allocator::Quasilinear => "quasilinear",
        }
    }
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Allocator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exponential" => Ok(Allocator::Exponential),
            "polynomial" => Ok(Allocator::Polynomial),
            "quasilinear" => Ok(Allocator::Quasilinear),
            _ => Err(format!("unknown allocator {s:?} (exponential, polynomial, quasilinear)")),
        }
    }
}

/// ⌈log2(m)⌉ for m ≥ 1.
pub fn ceil_log2(m: u64) -> u64 {
    debug_assert!(m >= 1);
    (u64::BITS - (m - 1).leading_zeros()) as u64
}

impl Allocator {
    /// A(n), or `None` if it does not fit in a u64.
    #[inline]
    pub fn factor(self, n: u64) -> Option<u64> {
        match self {
            Allocator::Exponential => Some(2),
            Allocator::Polynomial => n.checked_add(2),
            Allocator::Quasilinear => {
                let m = n.checked_add(2)?;
                m.checked_mul(ceil_log2(m))?.checked_add(m)
            }
        }
    }

    /// G(n): a newcomer arriving when n others hold resources is guaranteed
    /// at least (c + r) / G(n) of the pool (up to rounding down to an integer).
    pub fn guarantee(self, n: u64) -> f64 {
        let n = n as f64;
        match self {
            Allocator::Exponential => 2f64.powf(n + 1.0),
            Allocator::Polynomial => (n + 1.0) * (n + 2.0),
            Allocator::Quasilinear => {
                let m = n + 2.0;
                m * (ceil_log2(m as u64) as f64 + 1.0).powi(2)
            }
        }
    }

    /// Whether a claimant holding `share`, with `others` other claimants
    /// holding resources and `remaining` left, may take `amount` more.
    #[inline]
    pub fn admits(self, others: u64, share: u64, amount: u64, remaining: u64) -> bool {
        let (Some(a), Some(want)) = (self.factor(others), share.checked_add(amount)) else { return false };
        (want as u128) * (a as u128) <= remaining as u128 + share as u128
    }

    /// The largest amount `admits` grants (for reports and the guarantee search).
    pub fn max_grant(self, others: u64, share: u64, remaining: u64) -> u64 {
        let Some(a) = self.factor(others) else { return 0 };
        let limit = (remaining as u128 + share as u128) / a as u128;
        (limit.saturating_sub(share as u128)).min(u64::MAX as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_and_names() {
        assert_eq!(Allocator::Exponential.factor(7), Some(2));
        assert_eq!(Allocator::Polynomial.factor(7), Some(9));
        // n = 2: m = 4, ⌈log2 4⌉ = 2 → 4·2 + 4.
        assert_eq!(Allocator::Quasilinear.factor(2), Some(12));
        // n = 3: m = 5, ⌈log2 5⌉ = 3 → 5·3 + 5.
        assert_eq!(Allocator::Quasilinear.factor(3), Some(20));
        assert_eq!(Allocator::Polynomial.factor(u64::MAX), None);
        assert_eq!(Allocator::Quasilinear.factor(u64::MAX - 2), None);
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(2), 1);
        assert_eq!(ceil_log2(3), 2);
        assert_eq!(ceil_log2(1 << 40), 40);
        for a in [Allocator::Exponential, Allocator::Polynomial, Allocator::Quasilinear] {
            assert_eq!(a.to_string().parse::<Allocator>().unwrap(), a);
        }
        assert!("linear".parse::<Allocator>().is_err());
    }

    #[test]
    fn admits_matches_the_rule_and_refuses_overflow() {
        let a = Allocator::Polynomial;
        // n = 0: A = 2; r = 100, s = 0: at most 50.
        assert!(a.admits(0, 0, 50, 100));
        assert!(!a.admits(0, 0, 51, 100));
        assert_eq!(a.max_grant(0, 0, 100), 50);
        // s = 50, r = 50: (50 + x)·2 ≤ 100 → x = 0.
        assert_eq!(a.max_grant(0, 50, 50), 0);
        assert!(!a.admits(0, 1, u64::MAX, u64::MAX));
        assert!(!a.admits(u64::MAX, 0, 1, u64::MAX));
        assert!(a.admits(0, 0, u64::MAX / 2, u64::MAX));
        assert!(!a.admits(0, 0, u64::MAX / 2 + 1, u64::MAX));
    }
}
