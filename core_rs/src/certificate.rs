//! The certificate of a search: "the winner is within epsilon of every model, with probability at
//! least 1 - delta", from the paired answers on the items both answered (docs/search.md,
//! "Fixed confidence and the certificate").
//!
//! The test. For a pair (m, w) the per-item differences d = x_m - x_w lie in [-1, 1]. With
//! correlated sampling every model reads one random permutation of the pool in order, so the
//! items m and w both answered are the first n positions of that permutation: for every fixed n
//! a sample of n items drawn without replacement from the pool, whatever the algorithm did.
//! Serfling's inequality (1974) bounds the pool's mean difference for one n; a union bound over
//! every n (level delta' / (n (n + 1)), which sums to delta') makes it hold for all n at once,
//! so it holds at whatever n the search happens to stop, however the stop and the eliminations
//! were chosen. A union bound over the n_models - 1 pairs (best, w) makes it hold for the true
//! best model against every possible winner; the certificate takes the maximum over every model
//! (eliminated ones included, with the items they answered before leaving), so it covers the
//! true best wherever it went: P(loss > epsilon_reached) <= delta.

/// Checked (epsilon, delta) of a fixed-confidence search, as fractions of accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub epsilon: f64,
    pub delta: f64,
}

impl Target {
    pub fn new(epsilon: f64, delta: f64) -> crate::error::Result<Self> {
        use crate::error::CoreError;
        if !(0.0..=1.0).contains(&epsilon) {
            return Err(CoreError::invalid(
                "epsilon",
                format!("must be an accuracy gap between 0 and 1, got {epsilon}"),
            ));
        }
        if !(delta > 0.0 && delta < 1.0) {
            return Err(CoreError::invalid(
                "delta",
                format!("must be a probability strictly between 0 and 1, got {delta}"),
            ));
        }
        Ok(Target { epsilon, delta })
    }
}

/// Half-width of Serfling's one-sided bound for values in [-1, 1] (range 2): with probability
/// at least 1 - level, pool mean <= mean of `n` draws without replacement + this, from a pool
/// of `population` values.
pub fn serfling_width(n: u64, population: u64, level: f64) -> f64 {
    let (n_f, pop) = (n as f64, population as f64);
    let fraction = (n_f - 1.0) / pop;
    2.0 * ((1.0 - fraction).max(0.0) * (1.0 / level).ln() / (2.0 * n_f)).sqrt()
}

/// Upper confidence bound on acc(m) - acc(w) from `n` shared items on which m was right
/// `diff` times more than w. At n = population the pair has answered the whole pool and the
/// difference is exact; with no shared item nothing is known but the range.
pub fn gap_upper_bound(diff: i64, n: u64, population: u64, n_models: usize, delta: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let mean = diff as f64 / n as f64;
    if n >= population {
        return mean;
    }
    let pairs = n_models.saturating_sub(1).max(1) as f64;
    let level = delta / (pairs * n as f64 * (n as f64 + 1.0));
    (mean + serfling_width(n, population, level)).min(1.0)
}

/// Epsilon reached at `delta` by `winner`: the largest upper bound on any model's lead over it.
/// `answered[m]` is how many positions of the shared item sequence model m has answered and
/// `correct(m, pos)` its grade at a position. Work: the answers graded so far, once.
pub fn epsilon_reached(
    winner: u32,
    answered: &[u32],
    population: u64,
    delta: f64,
    mut correct: impl FnMut(u32, u32) -> bool,
) -> f64 {
    let w = winner as usize;
    // Winner's correct answers before each position.
    let mut prefix = Vec::with_capacity(answered[w] as usize + 1);
    prefix.push(0i64);
    for pos in 0..answered[w] {
        let last = *prefix.last().unwrap_or(&0);
        prefix.push(last + correct(winner, pos) as i64);
    }
    let mut worst = f64::NEG_INFINITY;
    for (m, &seen) in answered.iter().enumerate() {
        if m == w {
            continue;
        }
        let n = seen.min(answered[w]);
        let hits: i64 = (0..n).map(|pos| correct(m as u32, pos) as i64).sum();
        let diff = hits - prefix[n as usize];
        worst = worst.max(gap_upper_bound(
            diff,
            n as u64,
            population,
            answered.len(),
            delta,
        ));
    }
    // A pool of one: the winner is the best.
    worst.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_shrink_with_items_and_are_exact_on_the_whole_pool() {
        let wide = gap_upper_bound(0, 10, 1000, 5, 0.05);
        let narrow = gap_upper_bound(0, 500, 1000, 5, 0.05);
        assert!(wide > narrow && narrow > 0.0, "{wide} {narrow}");
        assert_eq!(gap_upper_bound(-30, 1000, 1000, 5, 0.05), -0.03);
        assert_eq!(gap_upper_bound(0, 0, 1000, 5, 0.05), 1.0);
        // More models to cover, smaller delta: wider.
        assert!(gap_upper_bound(0, 100, 1000, 50, 0.05) > gap_upper_bound(0, 100, 1000, 5, 0.05));
        assert!(gap_upper_bound(0, 100, 1000, 5, 0.01) > gap_upper_bound(0, 100, 1000, 5, 0.05));
    }

    /// Serfling's bound for one n, checked by drawing: the pool mean exceeds it in at most
    /// `level` of the draws, while a bound without the width is exceeded in a third of them
    /// (so the check can fail).
    #[test]
    fn serfling_bound_covers_the_pool_mean_when_drawn_without_replacement() {
        use rand::{Rng, SeedableRng};
        // 400 paired differences: 60 items where m is right and w wrong, 40 the other way.
        let mut pool: Vec<f64> = vec![0.0; 400];
        pool[..60].iter_mut().for_each(|d| *d = 1.0);
        pool[60..100].iter_mut().for_each(|d| *d = -1.0);
        let mu = pool.iter().sum::<f64>() / 400.0;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (draws, level) = (5_000, 0.1);
        for n in [5u64, 40, 200, 390] {
            let (mut missed, mut naive_missed) = (0, 0);
            for _ in 0..draws {
                for i in 0..n as usize {
                    let j = rng.gen_range(i..pool.len());
                    pool.swap(i, j);
                }
                let mean = pool[..n as usize].iter().sum::<f64>() / n as f64;
                missed += (mu > mean + serfling_width(n, 400, level)) as u32;
                naive_missed += (mu > mean + 1e-12) as u32;
            }
            let (rate, naive) = (
                missed as f64 / draws as f64,
                naive_missed as f64 / draws as f64,
            );
            assert!(rate <= level, "n {n}: {rate}");
            assert!(naive > 0.3, "n {n}: {naive}");
        }
    }

    #[test]
    fn certificate_covers_every_model_the_winner_shared_items_with() {
        // Model 0 is right on every item, model 1 on none, model 2 on the same as model 0.
        let grade = |m: u32, _pos: u32| m != 1;
        // All answered the whole pool of 40: exact gaps, the best lead over 0 is 0.
        assert_eq!(epsilon_reached(0, &[40, 40, 40], 40, 0.1, grade), 0.0);
        // Winner 1 against the whole pool: model 0 leads by exactly 1.
        assert_eq!(epsilon_reached(1, &[40, 40, 40], 40, 0.1, grade), 1.0);
        // Model 2 never answered: nothing is known about it.
        assert_eq!(epsilon_reached(0, &[40, 40, 0], 40, 0.1, grade), 1.0);
    }

    #[test]
    fn target_rejects_out_of_range_values_naming_the_field() {
        let e = Target::new(1.5, 0.1).unwrap_err().to_string();
        assert!(e.contains("epsilon"), "{e}");
        let e = Target::new(0.01, 0.0).unwrap_err().to_string();
        assert!(e.contains("delta"), "{e}");
        assert!(Target::new(0.01, 0.05).is_ok());
    }
}
