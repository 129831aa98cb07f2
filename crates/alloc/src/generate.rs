//! Random instances for tests, sweeps and benchmarks: deterministic in the
//! seed, and always valid.

use crate::{Edge, Instance, Network, Provider, Recipient};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `providers` × `recipients`, each recipient linked to `degree` distinct
/// random providers; needs uniform in [10, 100); capacities scaled so that
/// total capacity / total need is uniform in [0.5, 2]; MR uniform in
/// (0, 1]; one edge in five has a mutual-desire cap.
pub fn generate(providers: usize, recipients: usize, degree: usize, seed: u64) -> Result<Instance, String> {
    let net = random_network(providers, recipients, degree, seed)?;
    let providers_out =
        net.capacity.iter().enumerate().map(|(i, &c)| Provider { id: format!("P{i}"), capacity: c }).collect();
    let recipients_out =
        net.need.iter().enumerate().map(|(i, &d)| Recipient { id: format!("R{i}"), need: d }).collect();
    let edges = net
        .edges
        .iter()
        .map(|&(p, r, mr, desire)| Edge {
            provider: format!("P{p}"),
            recipient: format!("R{r}"),
            mr,
            desire: desire.is_finite().then_some(desire),
        })
        .collect();
    Ok(Instance { providers: providers_out, recipients: recipients_out, edges })
}

/// The same random instance as [`generate`], straight to a [`Network`]
/// (no ids: for benchmarks with millions of edges).
pub fn random_network(providers: usize, recipients: usize, degree: usize, seed: u64) -> Result<Network, String> {
    if providers == 0 || recipients == 0 {
        return Err("an instance needs at least one provider and one recipient".into());
    }
    if degree == 0 || degree > providers {
        return Err(format!("degree {degree} must be between 1 and the number of providers ({providers})"));
    }
    let mut g = ChaCha8Rng::seed_from_u64(seed);
    let need: Vec<f64> = (0..recipients).map(|_| round2(g.random_range(10.0..100.0))).collect();
    let ratio = g.random_range(0.5..=2.0);
    let raw: Vec<f64> = (0..providers).map(|_| g.random_range(1.0..100.0)).collect();
    let scale = ratio * need.iter().sum::<f64>() / raw.iter().sum::<f64>();
    let capacity = raw.iter().map(|c| round2(c * scale)).collect();
    let mut edges = Vec::with_capacity(recipients * degree);
    for r in 0..recipients {
        let mut ps = sample(&mut g, providers, degree).into_vec();
        ps.sort_unstable();
        for p in ps {
            let mr = round2(1.0 - g.random::<f64>()).max(0.01);
            let desire = if g.random_bool(0.2) { round2(g.random_range(1.0..50.0)) } else { f64::INFINITY };
            edges.push((p, r, mr, desire));
        }
    }
    edges.sort_by_key(|e| (e.0, e.1));
    Ok(Network { capacity, need, edges })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// One instance of the spec's random suite, by seed: 2–100 providers and
/// recipients, 10–100% of pairs connected (as providers per recipient),
/// capacity/need 0.5–2.
pub fn suite_instance(seed: u64) -> Instance {
    let mut g = ChaCha8Rng::seed_from_u64(seed);
    let providers = g.random_range(2..=100usize);
    let recipients = g.random_range(2..=100usize);
    let degree = ((g.random_range(0.1..=1.0f64) * providers as f64).ceil() as usize).clamp(1, providers);
    generate(providers, recipients, degree, seed).expect("valid suite parameters")
}
