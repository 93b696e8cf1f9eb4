//! UCB and UCB-E: pull the open model with the highest optimistic index.
//!
//! UCB-E keeps its indices ordered ([`UcbEIndex`], held in
//! [`Derived`](super::sequential::Derived)): a UCB-E pull costs O(log K) instead of O(K), with
//! the same choice as the scan [`ucb_e`].
use std::collections::BTreeSet;

use super::sequential::{argmax_by, mean_or_zero};
use crate::arms::Arms;
use crate::rng::tie_key;

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

/// UCB: mean + sqrt(c ln t / n), t = graded pulls so far. The logarithm is libm's, as in the
/// rest of the core, so the choices are the same on every platform (`sqrt` is exactly rounded
/// by IEEE 754 everywhere).
pub fn ucb(arms: &Arms, open: &[u32], c: f64, total: u64, tie_seed: u64, salt: u64) -> Option<u32> {
    let log_t = libm::log(total.max(1) as f64);
    argmax_by(open, tie_seed, salt, |m| {
        index_or_first(arms, m, |n| (c * log_t / n).sqrt())
    })
}

/// UCB-E (Audibert, Bubeck, Munos 2010): mean + sqrt(a / n), by a scan of `open`. The scheduler
/// uses [`UcbEIndex`], which makes the same choice in O(log K) per pull.
pub fn ucb_e(arms: &Arms, open: &[u32], a: f64, tie_seed: u64, salt: u64) -> Option<u32> {
    argmax_by(open, tie_seed, salt, |m| ucb_e_index(arms, m, a))
}

#[inline]
fn ucb_e_index(arms: &Arms, m: u32, a: f64) -> f64 {
    index_or_first(arms, m, |n| (a / n).sqrt())
}

/// UCB-E's exploration constant when none is given: a = (25/36) (B - K) / H1 (their theorem),
/// with the unknown complexity H1 = sum 1/gap^2 estimated as K / 0.1^2, i.e. gaps of ten
/// accuracy points, typical of a model tree's spread.
pub fn ucb_e_default_a(budget: u64, n_models: usize) -> f64 {
    let h1 = n_models as f64 / 0.01;
    (25.0 / 36.0) * (budget.saturating_sub(n_models as u64).max(1) as f64) / h1
}

/// An f64 ordered by `total_cmp`, as [`argmax_by`] compares scores.
#[derive(Clone, Copy, Debug)]
struct Total(f64);

impl PartialEq for Total {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Total {}
impl PartialOrd for Total {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Total {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// UCB-E's indices of the open models, ordered. A pull changes one model's index (its pull
/// count when handed out, its mean when graded), so each update and choice is O(log K) plus the
/// number of models tied at the top. Makes exactly the choice of [`ucb_e`].
#[derive(Clone, Debug)]
pub struct UcbEIndex {
    a: f64,
    /// Index of each model, None once it left `open`.
    index: Vec<Option<f64>>,
    by_index: BTreeSet<(Total, u32)>,
}

impl UcbEIndex {
    pub fn new(arms: &Arms, open: &[u32], a: f64) -> Self {
        let mut index = vec![None; arms.len()];
        let mut by_index = BTreeSet::new();
        for &m in open {
            let v = ucb_e_index(arms, m, a);
            index[m as usize] = Some(v);
            by_index.insert((Total(v), m));
        }
        UcbEIndex { a, index, by_index }
    }

    /// Re-index a model after a change to its counters (nothing for closed models).
    pub fn update(&mut self, arms: &Arms, m: u32) {
        if let Some(old) = self.index[m as usize] {
            let v = ucb_e_index(arms, m, self.a);
            if v.total_cmp(&old).is_ne() {
                self.by_index.remove(&(Total(old), m));
                self.by_index.insert((Total(v), m));
                self.index[m as usize] = Some(v);
            }
        }
    }

    pub fn close(&mut self, m: u32) {
        if let Some(old) = self.index[m as usize].take() {
            self.by_index.remove(&(Total(old), m));
        }
    }

    /// Highest index; ties go to the highest random key ([`tie_key`]), then to the lowest model:
    /// the choice of the scan [`ucb_e`], which meets the open models in increasing order.
    pub fn choose(&self, tie_seed: u64, salt: u64) -> Option<u32> {
        let mut top = self.by_index.iter().rev();
        let &(best_index, mut best) = top.next()?;
        let mut best_key = None;
        for &(_, m) in top.take_while(|(v, _)| *v == best_index) {
            let current = *best_key.get_or_insert_with(|| tie_key(tie_seed, salt, best));
            let key = tie_key(tie_seed, salt, m);
            if key > current || (key == current && m < best) {
                (best, best_key) = (m, Some(key));
            }
        }
        Some(best)
    }

    /// Whether this index equals one rebuilt from scratch (as after a restore) for these arms
    /// and open models.
    #[cfg(test)]
    pub(super) fn matches_rebuilt(&self, arms: &Arms, open: &[u32]) -> bool {
        let fresh = UcbEIndex::new(arms, open, self.a);
        self.by_index == fresh.by_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::sequential::test_support::arms_with;

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
    fn ucb_e_index_follows_updates_and_closing() {
        let mut arms = arms_with(&[(5, 10), (0, 0), (9, 10), (3, 4)]);
        let open = [0, 1, 2, 3];
        let mut index = UcbEIndex::new(&arms, &open, 0.5);
        for salt in 0..20 {
            assert_eq!(index.choose(3, salt), ucb_e(&arms, &open, 0.5, 3, salt));
        }
        arms.cursor[1] = 1;
        arms.seen[1] = 1;
        arms.successes[1] = 1;
        index.update(&arms, 1);
        index.close(2);
        for salt in 0..20 {
            assert_eq!(
                index.choose(3, salt),
                ucb_e(&arms, &[0, 1, 3], 0.5, 3, salt)
            );
        }
    }
}
