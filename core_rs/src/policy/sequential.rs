//! Arm choice of the sequential algorithms: UCB, UCB-E and Top-Two Thompson Sampling.
//!
//! Each call picks one model among those that still have unseen items (`open`). Pulls handed
//! out but not yet graded count towards a model's pull count, so a caller asking for a batch
//! does not pile every pull on one model.
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

use crate::arms::Arms;
use crate::rng::tie_key;

/// Highest score wins; ties go to the highest random key (never to the lowest index). Keys are
/// only computed when scores tie, which keeps this loop cheap.
fn argmax_by(
    open: &[u32],
    tie_seed: u64,
    salt: u64,
    mut score: impl FnMut(u32) -> f64,
) -> Option<u32> {
    let (&first, rest) = open.split_first()?;
    let (mut best, mut best_score, mut best_key) = (first, score(first), None);
    for &m in rest {
        let s = score(m);
        match s.total_cmp(&best_score) {
            std::cmp::Ordering::Greater => (best, best_score, best_key) = (m, s, None),
            std::cmp::Ordering::Equal => {
                let current = *best_key.get_or_insert_with(|| tie_key(tie_seed, salt, best));
                let key = tie_key(tie_seed, salt, m);
                if key > current {
                    (best, best_score, best_key) = (m, s, Some(key));
                }
            }
            std::cmp::Ordering::Less => {}
        }
    }
    Some(best)
}

/// Both UCB variants pull every model once first (in random order): an unpulled model's index
/// is infinite.
#[inline]
fn index_or_first(arms: &Arms, m: u32, bonus: impl Fn(f64) -> f64) -> f64 {
    let n = arms.pulls(m);
    if n == 0 {
        f64::INFINITY
    } else {
        mean_or_zero(arms, m) + bonus(n as f64)
    }
}

/// UCB: mean + sqrt(c ln t / n), t = graded pulls so far.
pub fn ucb(arms: &Arms, open: &[u32], c: f64, total: u64, tie_seed: u64, salt: u64) -> Option<u32> {
    let log_t = (total.max(1) as f64).ln();
    argmax_by(open, tie_seed, salt, |m| {
        index_or_first(arms, m, |n| (c * log_t / n).sqrt())
    })
}

/// UCB-E (Audibert, Bubeck, Munos 2010): mean + sqrt(a / n).
pub fn ucb_e(arms: &Arms, open: &[u32], a: f64, tie_seed: u64, salt: u64) -> Option<u32> {
    argmax_by(open, tie_seed, salt, |m| {
        index_or_first(arms, m, |n| (a / n).sqrt())
    })
}

/// UCB-E's exploration constant when none is given: a = (25/36) (B - K) / H1 (their theorem),
/// with the unknown complexity H1 = sum 1/gap^2 estimated as K / 0.1^2, i.e. gaps of ten
/// accuracy points, typical of a model tree's spread.
pub fn ucb_e_default_a(budget: u64, n_models: usize) -> f64 {
    let h1 = n_models as f64 / 0.01;
    (25.0 / 36.0) * (budget.saturating_sub(n_models as u64).max(1) as f64) / h1
}

/// Posterior Beta(1 + successes, 1 + failures) of a model.
#[inline]
fn posterior(arms: &Arms, m: u32) -> (f64, f64) {
    let s = arms.successes[m as usize] as f64;
    (1.0 + s, 1.0 + arms.seen[m as usize] as f64 - s)
}

/// Top-Two Thompson Sampling (Russo 2016) with Beta(1, 1) priors.
pub fn top_two_thompson(
    arms: &Arms,
    open: &[u32],
    leader_prob: f64,
    max_resample: u32,
    rng: &mut ChaCha8Rng,
) -> Option<u32> {
    if open.len() <= 1 {
        return open.first().copied();
    }
    let pool = open;
    // One distribution per model and call: a call may draw many times.
    let dists: Vec<Beta<f64>> = pool
        .iter()
        .map(|&m| {
            let (a, b) = posterior(arms, m);
            Beta::new(a, b).expect("Beta parameters are >= 1")
        })
        .collect();
    let mut samples = vec![0.0; pool.len()];
    let draw = |rng: &mut ChaCha8Rng, samples: &mut Vec<f64>| {
        for (x, d) in samples.iter_mut().zip(&dists) {
            *x = d.sample(rng);
        }
    };
    let argmax = |samples: &[f64], skip: Option<usize>| -> usize {
        let mut best = usize::MAX;
        for (i, s) in samples.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            if best == usize::MAX || s.total_cmp(&samples[best]).is_gt() {
                best = i;
            }
        }
        best
    };
    draw(rng, &mut samples);
    let leader = argmax(&samples, None);
    if rng.gen_bool(leader_prob) {
        return Some(pool[leader]);
    }
    for _ in 0..max_resample {
        draw(rng, &mut samples);
        let challenger = argmax(&samples, None);
        if challenger != leader {
            return Some(pool[challenger]);
        }
    }
    // Resampling cap reached: the best other model of the last draw.
    Some(pool[argmax(&samples, Some(leader))])
}

#[inline]
fn mean_or_zero(arms: &Arms, m: u32) -> f64 {
    let mean = arms.mean(m);
    if mean.is_finite() {
        mean
    } else {
        0.0
    }
}

/// The final pick of a sequential algorithm: highest score among models with graded answers.
pub fn best_by(
    arms: &Arms,
    models: &[u32],
    tie_seed: u64,
    salt: u64,
    score: impl FnMut(u32) -> f64,
) -> Option<u32> {
    let graded: Vec<u32> = models
        .iter()
        .copied()
        .filter(|&m| arms.seen[m as usize] > 0)
        .collect();
    let pool = if graded.is_empty() { models } else { &graded };
    argmax_by(pool, tie_seed, salt, score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream_rng, Stream};

    fn arms_with(stats: &[(u32, u32)]) -> Arms {
        let mut arms = Arms::new(stats.len());
        for (m, &(s, n)) in stats.iter().enumerate() {
            arms.successes[m] = s;
            arms.seen[m] = n;
            arms.cursor[m] = n;
        }
        arms
    }

    #[test]
    fn ucb_prefers_unpulled_then_optimism() {
        let arms = arms_with(&[(5, 10), (0, 0), (9, 10)]);
        assert_eq!(ucb(&arms, &[0, 1, 2], 2.0, 20, 1, 0), Some(1));
        let arms = arms_with(&[(5, 10), (1, 1), (9, 10)]);
        // Model 1 has one pull and so the widest bonus.
        assert_eq!(ucb(&arms, &[0, 1, 2], 2.0, 21, 1, 0), Some(1));
        assert_eq!(ucb_e(&arms, &[0, 2], 0.01, 1, 0), Some(2));
    }

    #[test]
    fn ties_are_not_broken_by_index() {
        let arms = arms_with(&[(5, 10); 32]);
        let open: Vec<u32> = (0..32).collect();
        let picks: std::collections::HashSet<u32> = (0..50)
            .filter_map(|salt| ucb_e(&arms, &open, 1.0, 9, salt))
            .collect();
        assert!(picks.len() > 10, "{picks:?}");
    }

    #[test]
    fn ttts_pulls_leader_and_challenger() {
        let arms = arms_with(&[(90, 100), (85, 100), (10, 100)]);
        let mut rng = stream_rng(3, 0, Stream::Decisions);
        let mut counts = [0; 3];
        for _ in 0..2000 {
            counts[top_two_thompson(&arms, &[0, 1, 2], 0.5, 32, &mut rng).unwrap() as usize] += 1;
        }
        assert!(counts[0] > 700 && counts[1] > 700, "{counts:?}");
        assert!(counts[2] < 20, "{counts:?}");
    }
}
