//! The phi-accrual failure detector (Hayashibara et al. 2004), as Akka
//! implements it: a window of heartbeat inter-arrival times gives a mean and
//! a standard deviation; φ = −log10(P(a heartbeat arrives later than now)),
//! with the normal tail approximated by a logistic curve. A peer is suspected
//! when φ exceeds the threshold: the longer the silence relative to what the
//! link usually does, the higher φ, so the detector adapts to jitter and loss
//! instead of using one fixed timeout.

use agora_core::{duration_str, Time};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// The detector's settings. Akka's defaults are threshold 8, 1 s heartbeats,
/// a 3 s acceptable pause and 100 ms minimum deviation; ours keep the
/// threshold and deviation and use 100 ms heartbeats with no extra pause,
/// which is what the ≤ 1 s detection target needs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PhiConfig {
    /// How often each node sends heartbeats to its neighbours.
    #[serde(default = "default_interval", with = "duration_str")]
    pub interval: Duration,
    /// Suspect when φ exceeds this.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Inter-arrival samples kept.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Floor on the standard deviation, so a very regular link does not make
    /// the detector hair-triggered.
    #[serde(default = "default_min_std_dev", with = "duration_str")]
    pub min_std_dev: Duration,
    /// Added to the mean: silence tolerated on top of the usual gaps.
    #[serde(default, with = "duration_str")]
    pub acceptable_pause: Duration,
}

fn default_interval() -> Duration {
    Duration::from_millis(100)
}
fn default_threshold() -> f64 {
    8.0
}
fn default_window() -> usize {
    200
}
fn default_min_std_dev() -> Duration {
    Duration::from_millis(100)
}

impl Default for PhiConfig {
    fn default() -> Self {
        PhiConfig {
            interval: default_interval(),
            threshold: default_threshold(),
            window: default_window(),
            min_std_dev: default_min_std_dev(),
            acceptable_pause: Duration::ZERO,
        }
    }
}

impl PhiConfig {
    /// The error starts with the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("interval: must be longer than zero".into());
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(format!("threshold: {} is not a number > 0", self.threshold));
        }
        if self.window < 2 {
            return Err(format!("window: {} samples are too few (at least 2)", self.window));
        }
        if self.min_std_dev.is_zero() {
            return Err("min_std_dev: must be longer than zero".into());
        }
        Ok(())
    }
}

/// One monitored peer's arrival history.
#[derive(Clone, Debug)]
pub struct Phi {
    last: Option<Time>,
    /// Inter-arrival times in milliseconds, with their running sums.
    samples: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

impl Phi {
    /// A detector that has heard nothing yet. Like Akka, it starts from two
    /// imagined gaps of interval ± interval/4, so the first real silence is
    /// judged against the configured rate rather than nothing.
    pub fn new(cfg: &PhiConfig) -> Self {
        let mean = cfg.interval.as_secs_f64() * 1e3;
        let mut p = Phi { last: None, samples: VecDeque::new(), sum: 0.0, sum_sq: 0.0 };
        p.add(mean - mean / 4.0, cfg.window);
        p.add(mean + mean / 4.0, cfg.window);
        p
    }

    fn add(&mut self, gap_ms: f64, window: usize) {
        if self.samples.len() == window {
            let old = self.samples.pop_front().expect("window is full");
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.samples.push_back(gap_ms);
        self.sum += gap_ms;
        self.sum_sq += gap_ms * gap_ms;
    }

    /// A heartbeat arrived at `now`.
    pub fn heartbeat(&mut self, now: Time, cfg: &PhiConfig) {
        if let Some(last) = self.last {
            self.add((now - last).as_secs_f64() * 1e3, cfg.window);
        }
        self.last = Some(now);
    }

    /// φ at `now`: 0 before the first heartbeat (a peer never heard from is
    /// not judged by this detector).
    pub fn phi(&self, now: Time, cfg: &PhiConfig) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let n = self.samples.len() as f64;
        let mean = self.sum / n + cfg.acceptable_pause.as_secs_f64() * 1e3;
        let variance = (self.sum_sq / n - (self.sum / n).powi(2)).max(0.0);
        let std = variance.sqrt().max(cfg.min_std_dev.as_secs_f64() * 1e3);
        let elapsed = now.as_nanos().saturating_sub(last.as_nanos()) as f64 / 1e6;
        phi(elapsed, mean, std)
    }
}

/// Akka's φ: the logistic approximation of the normal tail beyond `elapsed`,
/// computed on the side that keeps it accurate.
pub fn phi(elapsed_ms: f64, mean_ms: f64, std_ms: f64) -> f64 {
    let y = (elapsed_ms - mean_ms) / std_ms;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed_ms > mean_ms {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn phi_grows_with_silence_and_crosses_the_threshold_after_about_six_deviations() {
        let cfg = PhiConfig::default();
        let mut d = Phi::new(&cfg);
        for i in 0..50 {
            d.heartbeat(at(i * 100), &cfg);
        }
        let last = 49 * 100;
        assert!(d.phi(at(last + 100), &cfg) < 1.0, "one interval of silence is normal");
        let mut crossed = None;
        let mut prev = 0.0;
        for ms in (0..2000).step_by(10) {
            let p = d.phi(at(last + ms), &cfg);
            assert!(p >= prev - 1e-9, "φ must not fall while silence grows ({prev} → {p} at {ms} ms)");
            prev = p;
            if crossed.is_none() && p > cfg.threshold {
                crossed = Some(ms);
            }
        }
        // mean 100 ms, deviation floored at 100 ms: φ = 8 near 5.2 deviations past the mean.
        let crossed = crossed.expect("φ must cross 8 within 2 s of silence");
        assert!((550..=700).contains(&crossed), "crossed at {crossed} ms");
    }

    #[test]
    fn an_irregular_link_raises_the_deviation_and_delays_suspicion() {
        let cfg = PhiConfig { min_std_dev: Duration::from_millis(1), ..PhiConfig::default() };
        let (mut steady, mut jittery) = (Phi::new(&cfg), Phi::new(&cfg));
        let mut t = 0;
        for i in 0..100u64 {
            steady.heartbeat(at(i * 100), &cfg);
            t += if i % 2 == 0 { 40 } else { 160 };
            jittery.heartbeat(at(t), &cfg);
        }
        let silence = 300;
        assert!(steady.phi(at(99 * 100 + silence), &cfg) > jittery.phi(at(t + silence), &cfg));
    }

    #[test]
    fn acceptable_pause_shifts_the_curve() {
        let cfg = PhiConfig::default();
        let paused = PhiConfig { acceptable_pause: Duration::from_secs(1), ..cfg.clone() };
        let mut d = Phi::new(&cfg);
        for i in 0..20 {
            d.heartbeat(at(i * 100), &cfg);
        }
        let now = at(19 * 100 + 800);
        assert!(d.phi(now, &cfg) > cfg.threshold);
        assert!(d.phi(now, &paused) < 1.0);
    }

    #[test]
    fn silent_before_the_first_heartbeat_and_bad_settings_are_named() {
        let cfg = PhiConfig::default();
        assert_eq!(Phi::new(&cfg).phi(at(10_000), &cfg), 0.0);
        let bad = PhiConfig { window: 1, ..cfg.clone() };
        assert!(bad.validate().unwrap_err().starts_with("window:"));
        let bad = PhiConfig { threshold: f64::NAN, ..cfg };
        assert!(bad.validate().unwrap_err().starts_with("threshold:"));
    }
}
