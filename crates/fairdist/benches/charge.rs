//! charge + discharge pairs, beside the `r-fairdist` crate in the same run.
//!
//! * uncontended, pinned claimant: `Quota` (no lock), `SharedQuota` (mutex,
//!   RAII `Charge`), r-fairdist (`Subscription::charge`, RAII);
//! * uncontended, claimant looked up by key among 10^4 claimants;
//! * contended, two threads with a claimant each: the mutex design
//!   (`SharedQuota`) against a lock-free one (a CAS on `remaining`). r-fairdist
//!   cannot take part: its `Resource` is not `Sync` (a `RefCell` in its
//!   registry), so it cannot be shared between threads.
//!
//! After criterion's own report, prints pairs per second (from criterion's
//! median estimates) and the ratios against r-fairdist.

use agora_fairdist::{Allocator, Quota, SharedQuota};
use criterion::{criterion_group, Criterion};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Reference = r_fairdist::Resource<r_fairdist::allocator::Quasilinear, [u64; 1], u32>;
const TOTAL: u64 = 1 << 40;

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    g.bench_function("quota_pinned", |b| {
        let mut q: Quota<u32> = Quota::new(Allocator::Quasilinear, &[("x", TOTAL)]);
        let (root, id) = (q.root(), q.claimant(&1));
        b.iter(|| {
            q.charge(root, id, 0, black_box(64)).unwrap();
            q.discharge(root, id, 0, 64).unwrap();
        })
    });
    g.bench_function("shared_pinned", |b| {
        let q = SharedQuota::new(Quota::<u32>::new(Allocator::Quasilinear, &[("x", TOTAL)]));
        let (root, id) = q.with(|q| (q.root(), q.claimant(&1)));
        b.iter(|| drop(q.charge(root, id, 0, black_box(64)).unwrap()))
    });
    g.bench_function("r_fairdist_pinned", |b| {
        let res = Reference::with_reserve([TOTAL]);
        let sub = res.subscribe(&1);
        b.iter(|| drop(sub.charge(&(), black_box(&64)).unwrap()))
    });
    g.bench_function("quota_lookup_1e4", |b| {
        let mut q: Quota<u64> = Quota::new(Allocator::Quasilinear, &[("x", TOTAL)]);
        let root = q.root();
        for k in 0..10_000u64 {
            q.claimant(&k);
        }
        let mut k = 0u64;
        b.iter(|| {
            k = (k + 7919) % 10_000;
            let id = q.lookup(black_box(&k)).unwrap();
            q.charge(root, id, 0, 64).unwrap();
            q.discharge(root, id, 0, 64).unwrap();
        })
    });
    g.bench_function("r_fairdist_lookup_1e4", |b| {
        let res = Reference::with_reserve([TOTAL]);
        let subs: Vec<_> = (0..10_000u32).map(|k| res.subscribe(&k)).collect();
        let mut k = 0u32;
        b.iter(|| {
            k = (k + 7919) % 10_000;
            drop(res.subscribe(black_box(&k)).charge(&(), &64).unwrap())
        });
        drop(subs);
    });
    g.finish();
}

/// The lock-free design: one CAS on `remaining` per charge; each claimant's
/// share is written by its own thread only. The rule reads n (holders) without
/// a lock, so claimants joining concurrently may each see n one lower than
/// the strict rule would: the price of dropping the mutex.
struct LockFree {
    remaining: AtomicU64,
    holders: AtomicU64,
    shares: Vec<Padded>,
}

#[repr(align(64))]
struct Padded(AtomicU64);

impl LockFree {
    fn charge(&self, c: usize, amount: u64) -> bool {
        let share = &self.shares[c].0;
        loop {
            let r = self.remaining.load(Ordering::Acquire);
            let s = share.load(Ordering::Relaxed);
            let others = self.holders.load(Ordering::Relaxed) - u64::from(s > 0);
            if !Allocator::Quasilinear.admits(others, s, amount, r) {
                return false;
            }
            if self.remaining.compare_exchange_weak(r, r - amount, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                if share.fetch_add(amount, Ordering::Relaxed) == 0 {
                    self.holders.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
        }
    }
    fn discharge(&self, c: usize, amount: u64) {
        if self.shares[c].0.fetch_sub(amount, Ordering::Relaxed) == amount {
            self.holders.fetch_sub(1, Ordering::Relaxed);
        }
        self.remaining.fetch_add(amount, Ordering::AcqRel);
    }
}

/// Two threads doing `iters` pairs each; returns the wall time of the slower.
fn two_threads(iters: u64, pair: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let pair = &pair;
            s.spawn(move || (0..iters).for_each(|_| pair(t)));
        }
    });
    // Both threads' pairs in the time of one: report per pair of the pair.
    start.elapsed() / 2
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended");
    g.bench_function("mutex", |b| {
        let q = SharedQuota::new(Quota::<u32>::new(Allocator::Quasilinear, &[("x", TOTAL)]));
        let root = q.with(|q| q.root());
        let ids = q.with(|q| [q.claimant(&0), q.claimant(&1)]);
        b.iter_custom(|iters| two_threads(iters, |t| drop(q.charge(root, ids[t], 0, 64).unwrap())))
    });
    g.bench_function("lock_free", |b| {
        let q = Arc::new(LockFree {
            remaining: AtomicU64::new(TOTAL),
            holders: AtomicU64::new(0),
            shares: vec![Padded(AtomicU64::new(0)), Padded(AtomicU64::new(0))],
        });
        b.iter_custom(|iters| {
            two_threads(iters, |t| {
                assert!(q.charge(t, 64));
                q.discharge(t, 64);
            })
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = uncontended, contended }

/// Criterion's median estimate of a benchmark, in nanoseconds.
fn median_ns(id: &str) -> Option<f64> {
    let dir =
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| format!("{}/../../target", env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(format!("{dir}/criterion/{id}/new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nmedians: pairs per second, and the ratio to r-fairdist measured in this run");
    let rows = [
        ("pair/quota_pinned", "pair/r_fairdist_pinned", "pinned claimant, no lock"),
        ("pair/shared_pinned", "pair/r_fairdist_pinned", "pinned claimant, mutex + RAII"),
        ("pair/quota_lookup_1e4", "pair/r_fairdist_lookup_1e4", "lookup among 10^4 claimants"),
    ];
    for (ours, theirs, what) in rows {
        match (median_ns(ours), median_ns(theirs)) {
            (Some(a), Some(b)) => {
                println!("{what:<32} {:>14.0} pairs/s  r-fairdist {:>14.0}  ratio {:>5.2}x", 1e9 / a, 1e9 / b, b / a)
            }
            _ => println!("{what:<32} (not measured in this run)"),
        }
    }
    if let (Some(m), Some(l)) = (median_ns("contended/mutex"), median_ns("contended/lock_free")) {
        println!(
            "{:<32} {:>14.0} pairs/s  lock-free {:>14.0}  lock-free/mutex {:>5.2}x",
            "2 threads, mutex",
            1e9 / m,
            1e9 / l,
            m / l
        );
    }
}
