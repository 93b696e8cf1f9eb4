//! Top-Two Thompson Sampling (Russo 2016), drawing only the models that can win a posterior
//! draw (see [`Thompson`]).
//!
//! Its state ([`Thompson`], held in [`Derived`](super::sequential::Derived)) is kept up to date
//! pull by pull: a TTTS posterior draw costs about sqrt(K) Beta draws instead of K, with the
//! same distribution.
use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
// The pure-Rust libm that rand_distr's Beta draws also use: the same bits on every machine,
// where the platform's ln and exp may differ in the last place and flip a pull.
use libm::{exp, log, log1p};

use crate::arms::Arms;
use crate::work;

/// Posterior Beta(1 + successes, 1 + failures) of a model, as integers.
#[inline]
fn posterior(arms: &Arms, m: u32) -> (u32, u32) {
    let s = arms.successes[m as usize];
    (1 + s, 1 + arms.seen[m as usize] - s)
}

/// ln(n!), to about 1e-15 relative: exact products below 32, Stirling's series above.
fn ln_factorial(n: u64) -> f64 {
    if n < 32 {
        let mut p = 1.0f64;
        for k in 2..=n {
            p *= k as f64;
        }
        log(p)
    } else {
        let x = n as f64 + 1.0;
        let (x2, half_ln_2pi) = (x * x, 0.918_938_533_204_672_8);
        (x - 0.5) * log(x) - x
            + half_ln_2pi
            + (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * x2)) / x2) / x2) / x
    }
}

/// Upper tail of a Beta(a, b) posterior above a threshold `t`, with what is needed to draw from
/// it. For integer a, b, X ~ Beta(a, b) is the a-th smallest of n = a + b - 1 uniforms, so
/// X > t exactly when fewer than a of them fall below t: P(X > t) = P(Binomial(n, t) <= a - 1).
/// The terms of that sum, relative to the k = a - 1 term, are r_{a-1} = 1 and
/// r_{k-1} = r_k * k / (n - k + 1) * (1 - t) / t; above the posterior mean they decrease, and the
/// sum stops once a term is below 1e-19 of it (k_min is the last term kept).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tail {
    a: u32,
    b: u32,
    t: f64,
    /// P(X > t).
    p: f64,
    /// sum of r_k for k in k_min..a.
    sum: f64,
    k_min: u32,
}

/// Terms below this fraction of the running sum end a tail sum.
const TAIL_TERM_CUTOFF: f64 = 1e-19;
/// Newton or bisection steps of one threshold search (about 5 are needed).
const THRESHOLD_STEPS: usize = 100;
/// Rejection tries of one draw below a threshold.
const SAMPLE_BELOW_TRIES: usize = 64;

impl Tail {
    /// The tail above `t` (which must be above the posterior mean a / (a + b)), and
    /// ln P(X > t) (finite even where P(X > t) underflows).
    fn at(a: u32, b: u32, t: f64) -> (Tail, f64) {
        let n = (a + b - 1) as u64;
        let ratio = (1.0 - t) / t;
        let (mut r, mut sum, mut k) = (1.0f64, 0.0f64, a - 1);
        loop {
            work::step(1);
            sum += r;
            if k == 0 {
                break;
            }
            let next = Self::next_term(r, k, n, ratio);
            if next < sum * TAIL_TERM_CUTOFF {
                break;
            }
            (r, k) = (next, k - 1);
        }
        let ln_top = ln_factorial(n) - ln_factorial((a - 1) as u64) - ln_factorial(b as u64)
            + (a - 1) as f64 * log(t)
            + b as f64 * log1p(-t);
        let ln_p = ln_top + log(sum);
        let tail = Tail {
            a,
            b,
            t,
            p: exp(ln_p),
            sum,
            k_min: k,
        };
        (tail, ln_p)
    }

    #[inline]
    fn next_term(r: f64, k: u32, n: u64, ratio: f64) -> f64 {
        r * (k as f64 / (n - k as u64 + 1) as f64) * ratio
    }

    /// A threshold t whose tail probability is in [delta / 2, delta] (the exact quantiles
    /// 1 - delta and 1 - delta / 2 bracket it), found by safeguarded Newton steps on
    /// ln P(X > t) as a function of ln(1 - t), where it is nearly linear. A pure function of
    /// (a, b, delta): the scheduler rebuilt from a snapshot finds the same thresholds.
    fn threshold(a: u32, b: u32, delta: f64, z: f64) -> Tail {
        let (af, bf) = (a as f64, b as f64);
        let mean = af / (af + bf);
        let sd = (mean * (1.0 - mean) / (af + bf + 1.0)).sqrt();
        let ln_target = log(0.75 * delta);
        // P(X > mean) > 0.3 > delta for Beta(a >= 1, b >= 1); P(X > 1) = 0.
        let (mut lo, mut hi) = (mean, 1.0f64);
        let mut best = Tail {
            a,
            b,
            t: 1.0,
            p: 0.0,
            sum: 1.0,
            k_min: a - 1,
        };
        let guess = mean + z * sd;
        let mut t = if guess < 1.0 {
            guess
        } else {
            mean + 0.5 * (1.0 - mean)
        };
        for _ in 0..THRESHOLD_STEPS {
            work::step(1);
            if !(t > lo && t < hi) {
                break;
            }
            let (tail, ln_p) = Tail::at(a, b, t);
            if tail.p <= delta {
                best = tail;
                if tail.p >= 0.5 * delta {
                    break;
                }
                hi = t;
            } else {
                lo = t;
            }
            // d ln P / d ln(1 - t) = b / sum (the density is P's top term times b / (1 - t)).
            let step = (ln_target - ln_p) * tail.sum / bf;
            let next = 1.0 - (1.0 - t) * exp(step);
            t = if next > lo && next < hi {
                next
            } else {
                0.5 * (lo + hi)
            };
        }
        best
    }

    /// A draw of X given X > t: k ~ Binomial(n, t) given k <= a - 1 (the uniforms below t), then
    /// X is the (a - k)-th smallest of n - k uniforms on (t, 1): t + (1 - t) Beta(a - k, b).
    fn sample_above(&self, rng: &mut ChaCha8Rng) -> f64 {
        let n = (self.a + self.b - 1) as u64;
        let ratio = (1.0 - self.t) / self.t;
        let target = rng.gen::<f64>() * self.sum;
        let (mut r, mut acc, mut k) = (1.0f64, 0.0f64, self.a - 1);
        loop {
            work::step(1);
            acc += r;
            if acc > target || k == self.k_min {
                break;
            }
            r = Self::next_term(r, k, n, ratio);
            k -= 1;
        }
        let v = beta(self.a - k, self.b).sample(rng);
        self.t + (1.0 - self.t) * v
    }

    /// A draw of X given X <= t, by rejection (accepted with probability 1 - p >= 1 - delta,
    /// so at least 0.95). After [`SAMPLE_BELOW_TRIES`] rejections, which happens with
    /// probability below 0.05^64 (about 1e-83), it returns t itself: a bounded loop for a
    /// distribution that differs from the exact one by less than that.
    fn sample_below(&self, rng: &mut ChaCha8Rng) -> f64 {
        let d = beta(self.a, self.b);
        for _ in 0..SAMPLE_BELOW_TRIES {
            work::step(1);
            let x = d.sample(rng);
            if x <= self.t {
                return x;
            }
        }
        self.t
    }
}

#[inline]
fn beta(a: u32, b: u32) -> Beta<f64> {
    Beta::new(a as f64, b as f64).expect("Beta parameters are >= 1")
}

/// Upper normal quantile for a small tail probability p (Abramowitz and Stegun 26.2.23, error
/// below 5e-4); only a starting point for the threshold search.
fn normal_upper_quantile(p: f64) -> f64 {
    let t = (-2.0 * log(p)).sqrt();
    t - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
        / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t)
}

/// Top-Two Thompson Sampling (Russo 2016) with Beta(1, 1) priors, drawing only the models that
/// can win a posterior draw.
///
/// Each open model keeps a threshold t_i with p_i = P(X_i > t_i) in [delta / 2, delta] for its
/// current posterior (recomputed only when the model gets a grade). A posterior draw
/// X_1..X_K is then made exactly, in two parts that are independent across models:
///
/// 1. Whether X_i > t_i: a Bernoulli(p_i) per model, drawn by thinning: candidates at rate
///    delta among the open models (geometric gaps, about delta K of them), each kept with
///    probability p_i / delta. A kept model draws X_i from its posterior given X_i > t_i.
/// 2. Every other model has X_i <= t_i, so it cannot beat the best draw so far once t_i is
///    below it: they are visited in decreasing t_i and drawn (given X_i <= t_i, by rejection)
///    only while t_i exceeds the best draw.
///
/// No model is left out that could have won, so the argmax has exactly the distribution of
/// drawing all K models: there is no truncation, only floating-point rounding (p_i is computed
/// to about 1e-12 relative, so a model's chance of being drawn from its tail is off by at most
/// about 1e-12 delta). Only which random numbers go to which model differs from the plain loop,
/// so results per seed differ from it. A posterior draw costs about 0.75 delta K tail draws
/// plus the models with P(X_i > best draw) above about 0.75 delta, instead of K Beta draws.
#[derive(Clone, Debug)]
pub struct Thompson {
    delta: f64,
    /// ln(1 - delta), for geometric gaps.
    ln_keep: f64,
    /// Normal quantile of 0.75 delta, the start of each threshold search.
    z: f64,
    tails: Vec<Tail>,
    is_open: Vec<bool>,
    /// Open models by (threshold, model).
    by_threshold: BTreeSet<(u64, u32)>,
    /// Models drawn from their upper tail in the current draw have stamp == epoch.
    stamp: Vec<u32>,
    epoch: u32,
}

impl Thompson {
    pub fn new(arms: &Arms, open: &[u32]) -> Self {
        let k = arms.len();
        // A draw costs about 0.75 delta K upper-tail draws plus the models whose
        // P(X > best draw) exceeds about delta: delta ~ 1/sqrt(K) balances the two when many
        // models are alike. 0.6 / sqrt(K) was fastest on a 467-model tree at 10 and 50 queries
        // per model (about 20 Beta draws per posterior draw instead of 467).
        let delta = (0.6 / (k as f64).sqrt()).clamp(1e-4, 0.05);
        let z = normal_upper_quantile(0.75 * delta);
        let mut thompson = Thompson {
            delta,
            ln_keep: log1p(-delta),
            z,
            tails: Vec::with_capacity(k),
            is_open: vec![false; k],
            by_threshold: BTreeSet::new(),
            stamp: vec![0; k],
            epoch: 0,
        };
        // Many models share a posterior at the start (all of them before the first grade).
        let mut last: Option<Tail> = None;
        for m in 0..k as u32 {
            work::step(1);
            let (a, b) = posterior(arms, m);
            let tail = match last {
                Some(t) if (t.a, t.b) == (a, b) => t,
                _ => Tail::threshold(a, b, delta, z),
            };
            last = Some(tail);
            thompson.tails.push(tail);
        }
        for &m in open {
            thompson.is_open[m as usize] = true;
            thompson
                .by_threshold
                .insert((thompson.tails[m as usize].t.to_bits(), m));
        }
        thompson
    }

    /// Recompute an open model's threshold if its posterior changed (closed models are never
    /// drawn again).
    pub fn update(&mut self, arms: &Arms, m: u32) {
        let (a, b) = posterior(arms, m);
        let old = self.tails[m as usize];
        if !self.is_open[m as usize] || (old.a, old.b) == (a, b) {
            return;
        }
        let tail = Tail::threshold(a, b, self.delta, self.z);
        self.tails[m as usize] = tail;
        self.by_threshold.remove(&(old.t.to_bits(), m));
        self.by_threshold.insert((tail.t.to_bits(), m));
    }

    pub fn close(&mut self, m: u32) {
        if std::mem::take(&mut self.is_open[m as usize]) {
            self.by_threshold
                .remove(&(self.tails[m as usize].t.to_bits(), m));
        }
    }

    /// Number of candidates skipped before the next one, each open model being one with
    /// probability delta.
    #[inline]
    fn gap(&self, rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.gen();
        (log(1.0 - u) / self.ln_keep) as usize
    }

    /// The argmax of one posterior draw of the models of `open` other than `skip`, if its value
    /// exceeds `floor` (None otherwise). Exact (see the type's documentation).
    fn argmax_draw(
        &mut self,
        open: &[u32],
        skip: Option<u32>,
        floor: f64,
        rng: &mut ChaCha8Rng,
    ) -> Option<u32> {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.fill(0);
            self.epoch = 1;
        }
        let (mut best, mut winner) = (floor, None);
        // 1. Models whose draw falls above their threshold.
        let mut pos = self.gap(rng);
        while pos < open.len() {
            work::step(1);
            let m = open[pos];
            if Some(m) != skip {
                let tail = &self.tails[m as usize];
                if rng.gen::<f64>() * self.delta < tail.p {
                    self.stamp[m as usize] = self.epoch;
                    let x = tail.sample_above(rng);
                    if x > best {
                        (best, winner) = (x, Some(m));
                    }
                }
            }
            pos = pos.saturating_add(1).saturating_add(self.gap(rng));
        }
        // 2. The others lie below their thresholds: only those above the best draw can win.
        for &(bits, m) in self.by_threshold.iter().rev() {
            work::step(1);
            if f64::from_bits(bits) <= best {
                break;
            }
            if Some(m) == skip || self.stamp[m as usize] == self.epoch {
                continue;
            }
            let x = self.tails[m as usize].sample_below(rng);
            if x > best {
                (best, winner) = (x, Some(m));
            }
        }
        winner
    }

    /// One TTTS choice among `open` (which must be the models this state was told are open):
    /// the leader (argmax of a posterior draw) with probability `leader_prob`, else the
    /// challenger: the argmax of fresh draws until it differs from the leader, and after
    /// `max_resample` draws the best model other than the leader in the last one.
    pub fn choose(
        &mut self,
        open: &[u32],
        leader_prob: f64,
        max_resample: u32,
        rng: &mut ChaCha8Rng,
    ) -> Option<u32> {
        debug_assert_eq!(open.len(), self.by_threshold.len());
        if open.len() <= 1 {
            return open.first().copied();
        }
        let leader = self.argmax_draw(open, None, f64::NEG_INFINITY, rng)?;
        if rng.gen_bool(leader_prob) {
            return Some(leader);
        }
        // A redraw's argmax differs from the leader exactly when another model beats the
        // leader's own draw, so the leader is drawn first and the others only against it.
        for _ in 1..max_resample {
            let x_leader =
                beta(self.tails[leader as usize].a, self.tails[leader as usize].b).sample(rng);
            if let Some(challenger) = self.argmax_draw(open, Some(leader), x_leader, rng) {
                return Some(challenger);
            }
        }
        // The last draw returns its best model other than the leader, whoever won it.
        self.argmax_draw(open, Some(leader), f64::NEG_INFINITY, rng)
    }

    /// Whether this state equals one rebuilt from scratch (as after a restore) for these arms
    /// and open models.
    #[cfg(test)]
    pub(super) fn matches_rebuilt(&self, arms: &Arms, open: &[u32]) -> bool {
        let fresh = Thompson::new(arms, open);
        self.by_threshold == fresh.by_threshold
            && open
                .iter()
                .all(|&m| self.tails[m as usize] == fresh.tails[m as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sequential::test_support::arms_with;
    use crate::rng::{stream_rng, Stream};

    #[test]
    fn ttts_pulls_leader_and_challenger() {
        let arms = arms_with(&[(90, 100), (85, 100), (10, 100)]);
        let mut rng = stream_rng(3, 0, Stream::Decisions);
        let mut thompson = Thompson::new(&arms, &[0, 1, 2]);
        let mut counts = [0; 3];
        for _ in 0..2000 {
            counts[thompson.choose(&[0, 1, 2], 0.5, 32, &mut rng).unwrap() as usize] += 1;
        }
        assert!(counts[0] > 700 && counts[1] > 700, "{counts:?}");
        assert!(counts[2] < 20, "{counts:?}");
    }

    /// The straightforward TTTS: every open model drawn on every posterior draw.
    fn reference_ttts(
        arms: &Arms,
        open: &[u32],
        leader_prob: f64,
        max_resample: u32,
        rng: &mut ChaCha8Rng,
    ) -> Option<u32> {
        if open.len() <= 1 {
            return open.first().copied();
        }
        let dists: Vec<Beta<f64>> = open
            .iter()
            .map(|&m| {
                let (a, b) = posterior(arms, m);
                beta(a, b)
            })
            .collect();
        let mut samples = vec![0.0; open.len()];
        let draw = |rng: &mut ChaCha8Rng, samples: &mut Vec<f64>| {
            for (x, d) in samples.iter_mut().zip(&dists) {
                *x = d.sample(rng);
            }
        };
        let argmax = |samples: &[f64], skip: Option<usize>| -> usize {
            let mut best = usize::MAX;
            for (i, s) in samples.iter().enumerate() {
                if Some(i) != skip && (best == usize::MAX || s.total_cmp(&samples[best]).is_gt()) {
                    best = i;
                }
            }
            best
        };
        draw(rng, &mut samples);
        let leader = argmax(&samples, None);
        if rng.gen_bool(leader_prob) {
            return Some(open[leader]);
        }
        for _ in 0..max_resample {
            draw(rng, &mut samples);
            let challenger = argmax(&samples, None);
            if challenger != leader {
                return Some(open[challenger]);
            }
        }
        Some(open[argmax(&samples, Some(leader))])
    }

    /// Upper quantile of chi-square with `df` degrees of freedom at about 1e-6 (Wilson and
    /// Hilferty's approximation).
    fn chi2_critical(df: usize) -> f64 {
        let (df, z) = (df as f64, 4.753);
        let h = 2.0 / (9.0 * df);
        df * (1.0 - h + z * h.sqrt()).powi(3)
    }

    /// Two-sample chi-square test of equal pick frequencies (equal sample sizes); bins with
    /// fewer than 20 picks in both samples together are pooled.
    fn assert_same_distribution(fast: &[u64], slow: &[u64], what: &str) {
        let (mut stat, mut bins, mut pooled) = (0.0, 0usize, (0u64, 0u64));
        for (&x, &y) in fast.iter().zip(slow) {
            if x + y >= 20 {
                stat += (x as f64 - y as f64).powi(2) / (x + y) as f64;
                bins += 1;
            } else {
                pooled = (pooled.0 + x, pooled.1 + y);
            }
        }
        if pooled.0 + pooled.1 > 0 {
            let (x, y) = pooled;
            stat += (x as f64 - y as f64).powi(2) / (x + y) as f64;
            bins += 1;
        }
        let critical = chi2_critical(bins.max(2) - 1);
        assert!(
            stat < critical,
            "{what}: chi2 {stat:.1} >= {critical:.1} over {bins} bins\nfast {fast:?}\nslow {slow:?}"
        );
    }

    fn compare_with_reference(stats: &[(u32, u32)], leader_prob: f64, max_resample: u32) {
        let arms = arms_with(stats);
        // Every other model open, the rest closed, to exercise a partial `open`.
        let open: Vec<u32> = (0..stats.len() as u32).filter(|m| m % 5 != 3).collect();
        let mut thompson = Thompson::new(&arms, &open);
        let (mut fast, mut slow) = (vec![0u64; stats.len()], vec![0u64; stats.len()]);
        let mut rng = stream_rng(11, 0, Stream::Decisions);
        let mut rng_ref = stream_rng(11, 1, Stream::Decisions);
        for _ in 0..100_000 {
            fast[thompson
                .choose(&open, leader_prob, max_resample, &mut rng)
                .unwrap() as usize] += 1;
            let pick = reference_ttts(&arms, &open, leader_prob, max_resample, &mut rng_ref);
            slow[pick.unwrap() as usize] += 1;
        }
        let closed = (0..stats.len()).filter(|m| m % 5 == 3);
        assert!(
            closed.clone().all(|m| fast[m] == 0),
            "a closed model was chosen"
        );
        let what = format!("leader_prob {leader_prob}, max_resample {max_resample}");
        assert_same_distribution(&fast, &slow, &what);
    }

    /// Many alike models with few grades each, as early in a search.
    fn spread_stats() -> Vec<(u32, u32)> {
        (0..60u32)
            .map(|i| {
                let n = (i * 7) % 23;
                let p = 0.35 + 0.4 * ((i * 13) % 17) as f64 / 16.0;
                ((n as f64 * p).round() as u32, n)
            })
            .collect()
    }

    /// A clear leader, a close second, and well separated others, so that challengers are
    /// redrawn many times and the resampling cap is reached.
    fn confident_stats() -> Vec<(u32, u32)> {
        let mut stats = vec![(900, 1000), (890, 1000), (700, 1000), (3, 10), (0, 0)];
        stats.extend((0..20).map(|i| (500 + 10 * i, 1000)));
        stats
    }

    #[test]
    fn ttts_matches_the_all_models_draw_in_distribution() {
        for stats in [spread_stats(), confident_stats()] {
            // leader_prob 1: the argmax of one draw; 0: the challenger alone.
            for (leader_prob, max_resample) in [(1.0, 32), (0.0, 32), (0.5, 32), (0.0, 3)] {
                compare_with_reference(&stats, leader_prob, max_resample);
            }
        }
    }

    #[test]
    fn tail_probabilities_match_closed_forms() {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y.abs().max(1e-300);
        for &t in &[0.6, 0.75, 0.9, 0.99] {
            let p = Tail::at(1, 1, t).0.p;
            assert!(close(p, 1.0 - t), "Beta(1,1) at {t}: {p}");
            let p = Tail::at(2, 3, t).0.p;
            let cdf = 6.0 * t * t - 8.0 * t.powi(3) + 3.0 * t.powi(4);
            assert!((p - (1.0 - cdf)).abs() < 1e-13, "Beta(2,3) at {t}: {p}");
            let p = Tail::at(7, 1, t).0.p;
            assert!(close(p, 1.0 - t.powi(7)), "Beta(7,1) at {t}: {p}");
            let p = Tail::at(1, 9, t - 0.45).0.p;
            assert!(
                close(p, (1.0 - (t - 0.45)).powi(9)),
                "Beta(1,9) at {t}: {p}"
            );
        }
        // Larger parameters: against a numerical integral of the density.
        for &(a, b, t) in &[(300u32, 120u32, 0.76), (40, 60, 0.5), (2000, 400, 0.85)] {
            let (af, bf) = (a as f64, b as f64);
            let ln_norm = ln_factorial(a as u64 + b as u64 - 1)
                - ln_factorial(a as u64 - 1)
                - ln_factorial(b as u64 - 1);
            let density =
                |x: f64| (ln_norm + (af - 1.0) * x.ln() + (bf - 1.0) * (-x).ln_1p()).exp();
            let steps = 200_000;
            let h = (1.0 - t) / steps as f64;
            let mut integral = density(t) + density(1.0 - 1e-300);
            for i in 1..steps {
                integral += density(t + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
            }
            integral *= h / 3.0;
            let p = Tail::at(a, b, t).0.p;
            assert!(
                (p - integral).abs() < 1e-9 * integral,
                "Beta({a},{b}) at {t}: {p} vs {integral}"
            );
        }
    }

    #[test]
    fn thresholds_fall_in_their_window() {
        let mut cases: Vec<(u32, u32)> = Vec::new();
        for a in (1..80).step_by(3) {
            for b in (1..80).step_by(4) {
                cases.push((a, b));
            }
        }
        cases.extend([(1, 3001), (3001, 1), (2200, 800), (1500, 1500), (5, 2995)]);
        for delta in [0.05, 1.0 / 467f64.sqrt(), 0.01, 1e-4] {
            let z = normal_upper_quantile(0.75 * delta);
            for &(a, b) in &cases {
                let tail = Tail::threshold(a, b, delta, z);
                assert!(
                    tail.t < 1.0 && tail.p <= delta && tail.p >= 0.5 * delta,
                    "Beta({a},{b}), delta {delta}: {tail:?}"
                );
                assert_eq!(Tail::at(a, b, tail.t).0, tail);
            }
        }
    }

    /// Two-sample Kolmogorov-Smirnov statistic.
    fn ks(mut x: Vec<f64>, mut y: Vec<f64>) -> f64 {
        x.sort_by(f64::total_cmp);
        y.sort_by(f64::total_cmp);
        let (mut i, mut j, mut d) = (0, 0, 0.0f64);
        while i < x.len() && j < y.len() {
            if x[i] <= y[j] {
                i += 1;
            } else {
                j += 1;
            }
            d = d.max((i as f64 / x.len() as f64 - j as f64 / y.len() as f64).abs());
        }
        d
    }

    #[test]
    fn conditional_draws_follow_the_posterior() {
        let mut rng = stream_rng(5, 0, Stream::Decisions);
        let n = 20_000;
        // Critical value at about 1e-4 for two samples of n.
        let critical = 2.23 * (2.0 / n as f64).sqrt();
        for &(a, b) in &[(1u32, 1u32), (4, 9), (30, 12), (700, 300), (1, 40), (25, 1)] {
            let tail = Tail::threshold(a, b, 0.05, normal_upper_quantile(0.0375));
            let d = beta(a, b);
            let (mut above, mut below) = (Vec::new(), Vec::new());
            while above.len() < n || below.len() < n {
                let x = d.sample(&mut rng);
                if x > tail.t && above.len() < n {
                    above.push(x);
                } else if x <= tail.t && below.len() < n {
                    below.push(x);
                }
            }
            let fast_above: Vec<f64> = (0..n).map(|_| tail.sample_above(&mut rng)).collect();
            let fast_below: Vec<f64> = (0..n).map(|_| tail.sample_below(&mut rng)).collect();
            assert!(fast_above.iter().all(|&x| x > tail.t && x <= 1.0));
            let d_above = ks(fast_above, above);
            let d_below = ks(fast_below, below);
            assert!(
                d_above < critical,
                "Beta({a},{b}) above {}: D {d_above}",
                tail.t
            );
            assert!(
                d_below < critical,
                "Beta({a},{b}) below {}: D {d_below}",
                tail.t
            );
        }
    }
}
