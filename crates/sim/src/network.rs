//! Network models: how long a message takes on a link.
//!
//! A model is any [`Latency`]; the built-ins cover constant, uniform and
//! exponential delays, a latency matrix between sites of a topology, and the
//! asynchronous adversary of the team-formation model, which picks every
//! delay in (0, 1] time units through a pluggable [`Adversary`].

use crate::Nodes;
use agora_core::{NodeId, Protocol, Time};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// What a network model may look at when it picks a delay.
pub struct LinkCtx<'a, P: Protocol> {
    pub from: NodeId,
    pub to: NodeId,
    pub now: Time,
    pub msg: &'a P::Msg,
    /// Messages currently in flight towards `to` (before this one); counted
    /// only for a model whose [`Latency::counts_in_flight`] is true (else 0),
    /// since the count costs a cache miss per message at scale.
    pub in_flight_to: u32,
    /// Read access to every node, for adversaries that target nodes by
    /// what they hold.
    pub nodes: Nodes<'a, P>,
}

/// Picks the delay of one message. Randomness must come from `rng` only.
pub trait Latency<P: Protocol> {
    fn delay(&mut self, ctx: &LinkCtx<'_, P>, rng: &mut ChaCha8Rng) -> Duration;
    /// Whether [`LinkCtx::in_flight_to`] is read.
    fn counts_in_flight(&self) -> bool {
        false
    }
}

/// The asynchronous adversary: picks each message's delay as a fraction of
/// the time unit in (0, 1].
pub trait Adversary<P: Protocol> {
    fn fraction(&mut self, ctx: &LinkCtx<'_, P>, rng: &mut ChaCha8Rng) -> f64;
    /// Whether [`LinkCtx::in_flight_to`] is read.
    fn counts_in_flight(&self) -> bool {
        false
    }
}

/// Delays uniformly at random in (0, 1].
pub struct UniformAdversary;
impl<P: Protocol> Adversary<P> for UniformAdversary {
    fn fraction(&mut self, _: &LinkCtx<'_, P>, rng: &mut ChaCha8Rng) -> f64 {
        1.0 - rng.random::<f64>() // random() is in [0, 1): this is (0, 1]
    }
}

/// Every message takes the full unit: the synchronous worst case.
pub struct MaxAdversary;
impl<P: Protocol> Adversary<P> for MaxAdversary {
    fn fraction(&mut self, _: &LinkCtx<'_, P>, _: &mut ChaCha8Rng) -> f64 {
        1.0
    }
}

/// Not uniform: a message to a node that already has `threshold` or more
/// messages in flight towards it takes the full unit, so the busiest nodes
/// fall behind; every other message is fast (uniform in (0, `fast`]).
pub struct LoadAdversary {
    pub threshold: u32,
    pub fast: f64,
}
impl<P: Protocol> Adversary<P> for LoadAdversary {
    fn fraction(&mut self, ctx: &LinkCtx<'_, P>, rng: &mut ChaCha8Rng) -> f64 {
        if ctx.in_flight_to >= self.threshold {
            1.0
        } else {
            self.fast * (1.0 - rng.random::<f64>())
        }
    }
    fn counts_in_flight(&self) -> bool {
        true
    }
}

/// The built-in delay models.
pub enum Model<P: Protocol> {
    Constant(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Exponential with the given mean, plus a fixed `min` (propagation).
    Exponential {
        mean: Duration,
        min: Duration,
    },
    /// Nodes sit at sites; `latency[a][b]` is the delay between sites a and b,
    /// scaled by a factor uniform in [1 − jitter, 1 + jitter].
    Matrix {
        site_of: Vec<u16>,
        latency: Vec<Vec<Duration>>,
        jitter: f64,
    },
    /// The asynchronous model: `unit × adversary's fraction in (0, 1]`.
    Async {
        unit: Duration,
        adversary: Box<dyn Adversary<P>>,
    },
}

impl<P: Protocol> Latency<P> for Model<P> {
    fn counts_in_flight(&self) -> bool {
        matches!(self, Model::Async { adversary, .. } if adversary.counts_in_flight())
    }
    fn delay(&mut self, ctx: &LinkCtx<'_, P>, rng: &mut ChaCha8Rng) -> Duration {
        match self {
            Model::Constant(d) => *d,
            Model::Uniform { min, max } => {
                let (lo, hi) = (min.as_nanos() as u64, max.as_nanos() as u64);
                Duration::from_nanos(if hi > lo { rng.random_range(lo..=hi) } else { lo })
            }
            Model::Exponential { mean, min } => {
                let u = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
                *min + mean.mul_f64(-u.ln())
            }
            Model::Matrix { site_of, latency, jitter } => {
                let site = |n: NodeId| site_of.get(n.index()).copied().unwrap_or(0) as usize;
                let base = latency[site(ctx.from)][site(ctx.to)];
                if *jitter > 0.0 {
                    base.mul_f64(1.0 + *jitter * (2.0 * rng.random::<f64>() - 1.0))
                } else {
                    base
                }
            }
            Model::Async { unit, adversary } => {
                let f = adversary.fraction(ctx, rng);
                assert!(f > 0.0 && f <= 1.0, "adversary chose a delay fraction {f} outside (0, 1]");
                // At least one nanosecond: a delay of 0 is outside the model.
                unit.mul_f64(f).max(Duration::from_nanos(1))
            }
        }
    }
}
