//! Vector team formation: the seed's super-token algorithm and the direct
//! baseline, token conservation after every event, and at the end every
//! team exactly the vector, no full vector left, leftovers accumulated,
//! bounded messages.

use agora_lab::teams::vector::{run, Algorithm, VectorSpec};
use agora_sim::scenario::AdversarySpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn spec(n: u32, sizes: &[u64], tokens: u64, seed: u64) -> VectorSpec {
    VectorSpec { n, sizes: sizes.to_vec(), tokens, spread: 5.0, adversary: AdversarySpec::Uniform, seed }
}

#[test]
fn every_full_vector_becomes_a_team() {
    for algorithm in [Algorithm::SuperTokens, Algorithm::Direct] {
        let r = run(&spec(64, &[2, 3, 1], 120, 1), algorithm).unwrap();
        assert!(r.safe, "{r:?}");
        assert!(r.teams_formed >= 10, "{r:?}");
        assert_eq!(r.teams_formed, r.teams_possible);
        if algorithm == Algorithm::SuperTokens {
            // Every team used one super-token of each colour; spare ones wait.
            assert!(r.super_tokens >= 3 * r.teams_formed, "{r:?}");
        }
    }
}

#[test]
fn seed_sweep() {
    let adversaries = [AdversarySpec::Uniform, AdversarySpec::Max, AdversarySpec::Load];
    let mut teams = 0;
    for seed in 0..300u64 {
        let mut g = ChaCha8Rng::seed_from_u64(seed);
        let colours = g.random_range(1..5usize);
        let sizes: Vec<u64> = (0..colours).map(|_| g.random_range(1..4)).collect();
        if sizes.iter().sum::<u64>() < 2 {
            continue;
        }
        let s = VectorSpec {
            spread: g.random_range(0.0..20.0),
            adversary: adversaries[seed as usize % 3],
            ..spec(g.random_range(4..48), &sizes, g.random_range(0..60), seed)
        };
        for algorithm in [Algorithm::SuperTokens, Algorithm::Direct] {
            let r = run(&s, algorithm).unwrap();
            assert!(r.safe, "{s:?} {algorithm:?}: {:?}", r.problem);
            teams += r.teams_formed;
        }
    }
    assert!(teams > 500, "{teams} teams over the sweep");
}

#[test]
fn same_seed_same_trace() {
    let s = spec(32, &[1, 2], 40, 7);
    for algorithm in [Algorithm::SuperTokens, Algorithm::Direct] {
        assert_eq!(run(&s, algorithm).unwrap().trace_hash, run(&s, algorithm).unwrap().trace_hash);
        let other = VectorSpec { seed: 8, ..s.clone() };
        assert_ne!(run(&s, algorithm).unwrap().trace_hash, run(&other, algorithm).unwrap().trace_hash);
    }
}

#[test]
fn a_bad_spec_names_its_field() {
    let e = run(&spec(8, &[2, 0], 10, 0), Algorithm::Direct).unwrap_err();
    assert!(e.starts_with("sizes: colour 1"), "{e}");
    assert!(run(&spec(8, &[], 10, 0), Algorithm::Direct).unwrap_err().starts_with("sizes:"));
    assert!(run(&spec(1, &[2], 10, 0), Algorithm::Direct).unwrap_err().starts_with("n:"));
}
