//! What the clients ask of the data: the operation mix and the key
//! distribution (uniform, or Zipf over the key space as YCSB draws it), and
//! the values they write — each one a token no other request writes, so a
//! value read can be traced to the writes it came from (and a forged one
//! is recognised as such).

use super::kv::Op;
use agora_core::NodeId;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Relative weights of the operations a request carries.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpMix {
    #[serde(default)]
    pub read: f64,
    #[serde(default)]
    pub write: f64,
    #[serde(default)]
    pub cas: f64,
    #[serde(default)]
    pub append: f64,
}

impl Default for OpMix {
    fn default() -> Self {
        OpMix { read: 0.5, write: 0.3, cas: 0.1, append: 0.1 }
    }
}

impl OpMix {
    pub fn validate(&self) -> Result<(), String> {
        shares("ops", &[("read", self.read), ("write", self.write), ("cas", self.cas), ("append", self.append)])
    }
}

/// Checks that `weights` are shares: each in [0, 1], summing to 1 (a mix
/// written as 3 : 1 is refused rather than read one way or another). The
/// error names `field` and, for a bad sum, every share.
pub fn shares(field: &str, weights: &[(&str, f64)]) -> Result<(), String> {
    for (name, v) in weights {
        if !(v.is_finite() && (0.0..=1.0).contains(v)) {
            return Err(format!("{field}.{name}: {v} is not a share in [0, 1]"));
        }
    }
    let sum: f64 = weights.iter().map(|w| w.1).sum();
    if (sum - 1.0).abs() > 1e-9 {
        let all: Vec<String> = weights.iter().map(|(name, v)| format!("{name} {v}")).collect();
        let sum = (sum * 1e6).round() / 1e6;
        return Err(format!("{field}: the shares sum to {sum}, not 1 ({})", all.join(", ")));
    }
    Ok(())
}

/// How a request's key is drawn from `keys` keys.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum KeyDistribution {
    #[default]
    Uniform,
    /// Key i (from 0) with weight 1 / (i + 1)^s.
    Zipf(f64),
}

/// Largest key space: the Zipf table holds one number per key.
pub const MAX_KEYS: u32 = 1_000_000;

/// Draws key indices: uniform, or by binary search in Zipf's cumulative weights.
#[derive(Clone, Debug)]
pub struct KeySampler {
    count: u32,
    cumulative: Option<Vec<f64>>,
}

impl KeySampler {
    /// The sampler for `count` keys; the error names the field.
    pub fn new(count: u32, dist: KeyDistribution) -> Result<Self, String> {
        if count == 0 || count > MAX_KEYS {
            return Err(format!("keys: {count} is not between 1 and {MAX_KEYS}"));
        }
        let cumulative = match dist {
            KeyDistribution::Uniform => None,
            KeyDistribution::Zipf(s) if !(s.is_finite() && s > 0.0) => {
                return Err(format!("key_distribution.zipf: {s} is not an exponent above 0"));
            }
            KeyDistribution::Zipf(s) => Some(
                (1..=count)
                    .scan(0.0, |acc, i| {
                        *acc += (i as f64).powf(-s);
                        Some(*acc)
                    })
                    .collect(),
            ),
        };
        Ok(KeySampler { count, cumulative })
    }

    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        match &self.cumulative {
            None => rng.random_range(0..self.count),
            Some(c) => {
                let x = rng.random::<f64>() * c[c.len() - 1];
                c.partition_point(|&v| v <= x).min(c.len() - 1) as u32
            }
        }
    }
}

/// The name of key `i`.
pub fn key_name(i: u32) -> String {
    format!("k{i}")
}

/// The token request `id` of `client` writes: unique in a run, and ending
/// in `;` so that a value made of appended tokens splits back into them.
pub fn token(client: NodeId, id: u64) -> Vec<u8> {
    format!("{}.{id};", client.0).into_bytes()
}

/// Splits a value into the tokens it was made of; None if it is not a
/// sequence of tokens.
pub fn tokens(value: &[u8]) -> Option<Vec<&[u8]>> {
    if value.is_empty() {
        return Some(Vec::new());
    }
    if value.last() != Some(&b';') {
        return None;
    }
    Some(value[..value.len() - 1].split(|&b| b == b';').collect())
}

/// Draws an operation: `seen` is the value this client last saw for the
/// key (a compare-and-set expects it), `fresh` the token it writes.
pub fn draw_op<R: Rng + ?Sized>(mix: &OpMix, seen: &[u8], fresh: Vec<u8>, rng: &mut R) -> Op {
    let x = rng.random::<f64>() * (mix.read + mix.write + mix.cas + mix.append);
    if x < mix.read {
        Op::Read
    } else if x < mix.read + mix.write {
        Op::Write(fresh)
    } else if x < mix.read + mix.write + mix.cas {
        Op::Cas { expected: seen.to_vec(), value: fresh }
    } else {
        Op::Append(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipf_favours_the_first_keys_and_uniform_does_not() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut count = |dist| {
            let s = KeySampler::new(100, dist).unwrap();
            let mut n = [0u32; 100];
            for _ in 0..100_000 {
                n[s.draw(&mut rng) as usize] += 1;
            }
            n
        };
        let zipf = count(KeyDistribution::Zipf(1.0));
        // Weight of key 0 under s = 1 over 100 keys: 1 / H(100) ≈ 0.193.
        assert!((18_000..20_600).contains(&zipf[0]), "{}", zipf[0]);
        assert!(zipf[0] > 9 * zipf[9] && zipf[0] < 11 * zipf[9], "{} vs {}", zipf[0], zipf[9]);
        let uniform = count(KeyDistribution::Uniform);
        assert!(uniform.iter().all(|&n| (800..1200).contains(&n)), "{uniform:?}");
    }

    #[test]
    fn bad_key_spaces_are_refused_by_field() {
        assert!(KeySampler::new(0, KeyDistribution::Uniform).unwrap_err().starts_with("keys:"));
        let e = KeySampler::new(10, KeyDistribution::Zipf(-1.0)).unwrap_err();
        assert!(e.starts_with("key_distribution.zipf:"), "{e}");
        let e = OpMix { read: 0.0, write: 0.0, cas: 0.0, append: 0.0 }.validate().unwrap_err();
        assert!(e.starts_with("ops"), "{e}");
    }

    #[test]
    fn a_value_splits_into_its_tokens() {
        let v = [token(NodeId(1), 7), token(NodeId(0), 9)].concat();
        assert_eq!(tokens(&v).unwrap(), vec![&b"1.7"[..], b"0.9"]);
        assert_eq!(tokens(b"").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(tokens(b"forged"), None);
    }
}
