//! The full ranking of a search: every model with its estimate, interval and items seen.
use crate::arms::{ALIVE, OUTRANKED_AT_END};
use crate::rng::tie_key;
use crate::scheduler::{scorer, Scheduler};

#[derive(Debug, Clone, PartialEq)]
pub struct RankedModel {
    pub model: u32,
    /// 1 = recommended.
    pub rank: u32,
    pub successes: u32,
    pub seen: u32,
    /// Estimated accuracy (NaN when no answer was graded).
    pub mean: f64,
    /// 95% Wilson score interval of the accuracy.
    pub lower: f64,
    pub upper: f64,
    /// Round in which the model was eliminated; None if it survived to the end.
    pub eliminated_in_round: Option<u32>,
}

/// Recommended model first, then survivors, then models by how late they were eliminated,
/// each group by estimated accuracy (random tie-break).
pub fn ranking(s: &Scheduler) -> Vec<RankedModel> {
    let arms = s.arms();
    let score = scorer(s.config());
    let recommended = s.recommendation();
    let mut order: Vec<u32> = (0..arms.len() as u32).collect();
    let key = |m: u32| {
        (
            Some(m) == recommended,
            arms.out_round[m as usize],
            score(arms, m),
            tie_key(s.tie_seed(), u64::MAX, m),
        )
    };
    order.sort_unstable_by(|&a, &b| {
        let (ra, oa, sa, ka) = key(a);
        let (rb, ob, sb, kb) = key(b);
        rb.cmp(&ra)
            .then(ob.cmp(&oa))
            .then(sb.total_cmp(&sa))
            .then(kb.cmp(&ka))
    });
    order
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let (successes, seen) = (arms.successes[m as usize], arms.seen[m as usize]);
            let (lower, upper) = wilson(successes, seen);
            let out = arms.out_round[m as usize];
            RankedModel {
                model: m,
                rank: i as u32 + 1,
                successes,
                seen,
                mean: if seen == 0 {
                    f64::NAN
                } else {
                    successes as f64 / seen as f64
                },
                lower,
                upper,
                eliminated_in_round: (out != ALIVE && out != OUTRANKED_AT_END).then_some(out),
            }
        })
        .collect()
}

/// 95% Wilson score interval; (0, 1) without data. The lower bound is exactly 0 when no
/// answer was correct and the upper bound exactly 1 when all were.
pub fn wilson(successes: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let nf = n as f64;
    let p = successes as f64 / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    // At p = 0 (or 1) centre and half are equal in exact arithmetic, but not after rounding:
    // the formula would leave a bound ~1e-18 off 0 (or 1).
    let lower = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let upper = if successes == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_known_values() {
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(10, 10);
        assert!(hi > 0.999_999 && lo > 0.69, "{lo} {hi}");
    }

    #[test]
    fn wilson_is_exact_at_the_extremes() {
        for n in 1..=2_000 {
            let (lo, hi) = wilson(0, n);
            assert!(lo == 0.0 && hi > 0.0 && hi < 1.0, "0/{n}: {lo} {hi}");
            let (lo, hi) = wilson(n, n);
            assert!(hi == 1.0 && lo > 0.0 && lo < 1.0, "{n}/{n}: {lo} {hi}");
        }
    }
}
