//! What a protocol reads off its state when a runtime is asked for its
//! metrics ([`crate::Protocol::readings`]): gauges (suspected peers, group
//! membership), counters and latency histograms, each with its own labels.
//! The runtime's own counters (messages, timers, storage) are kept by the
//! runtime; these are the ones only the protocol knows. Plain data, so that
//! the protocol model does not depend on any metrics crate.

/// One labelled value under a metric name. Readings with the same name form
/// one metric family and must have the same kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// Without the runtime's prefix: `telecom_isolated`, say.
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Gauge(f64),
    Counter(u64),
    Histogram(Histogram),
}

impl Reading {
    pub fn gauge(name: &'static str, help: &'static str, labels: Vec<(&'static str, String)>, v: f64) -> Self {
        Reading { name, help, labels, value: Value::Gauge(v) }
    }

    pub fn counter(name: &'static str, help: &'static str, labels: Vec<(&'static str, String)>, v: u64) -> Self {
        Reading { name, help, labels, value: Value::Counter(v) }
    }
}

/// A fixed-bucket histogram, as Prometheus keeps one: a count per bucket
/// (the last above every bound) and the sum of what was observed. Small
/// enough to keep one per service in every simulated node.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Upper bounds, increasing.
    pub bounds: &'static [f64],
    /// `bounds.len() + 1` counts: observations at or below each bound and
    /// above the one before; the last is above every bound.
    pub counts: Box<[u64]>,
    pub sum: f64,
}

/// Bounds for latencies in seconds: 1 ms to 30 s, about three per decade.
pub const LATENCY_BOUNDS_S: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds increase");
        Histogram { bounds, counts: vec![0; bounds.len() + 1].into_boxed_slice(), sum: 0.0 }
    }

    pub fn observe(&mut self, x: f64) {
        let i = self.bounds.partition_point(|&b| b < x);
        self.counts[i] += 1;
        self.sum += x;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (upper bound, observations in its bucket) for every bound and then
    /// `+Inf`, as `prometheus_client` takes them (it sums them up).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds.iter().copied().chain([f64::INFINITY]).zip(self.counts.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_of_the_first_bound_not_below_them() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for x in [0.5, 1.0, 1.5, 2.0, 7.0] {
            h.observe(x);
        }
        assert_eq!(&*h.counts, &[2, 2, 1]);
        assert_eq!(h.buckets(), vec![(1.0, 2), (2.0, 2), (f64::INFINITY, 1)]);
        assert_eq!((h.count(), h.sum), (5, 12.0));
    }
}
