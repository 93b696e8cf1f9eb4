//! UCB and UCB-E: pull the open model with the highest optimistic index.
//!
//! The scheduler does not scan every model per pull; it keeps state held in
//! [`Derived`](super::sequential::Derived), with the same choices as the scans [`ucb`] and
//! [`ucb_e`]. UCB-E keeps its indices ordered ([`UcbEIndex`]): O(log K) per pull. UCB's index
//! moves with ln t for every model at once, but models with the same pull count share their
//! bonus, so [`UcbIndex`] groups them by pull count: one index per distinct pull count (23 on
//! average in 467-model runs) plus O(log K) updates.
use std::collections::BTreeSet;

use super::sequential::{argmax_by, mean_or_zero};
use crate::arms::Arms;
use crate::rng::tie_key;
use crate::work;

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

/// UCB: mean + sqrt(c ln t / n), t = graded pulls so far, by a scan of `open`. The scheduler
/// uses [`UcbIndex`], which makes the same choice with one index per distinct pull count.
pub fn ucb(arms: &Arms, open: &[u32], c: f64, total: u64, tie_seed: u64, salt: u64) -> Option<u32> {
    let log_t = ucb_log_t(total);
    argmax_by(open, tie_seed, salt, |m| {
        index_or_first(arms, m, |n| ucb_bonus(c, log_t, n))
    })
}

/// ln t of UCB's bonus (t at least 1). The logarithm is libm's, as in the rest of the core, so
/// the choices are the same on every platform (`sqrt` is exactly rounded by IEEE 754
/// everywhere).
#[inline]
fn ucb_log_t(total: u64) -> f64 {
    libm::log(total.max(1) as f64)
}

/// UCB's bonus for a model with `n` >= 1 pulls: the scan and [`UcbIndex`] share this exact
/// expression, so they compute the same indices bit for bit.
#[inline]
fn ucb_bonus(c: f64, log_t: f64, n: f64) -> f64 {
    (c * log_t / n).sqrt()
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
            work::step(1);
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

/// Candidates tied at the highest index, met one by one: the highest random key wins, then the
/// lowest model (as [`argmax_by`] decides over models in increasing order). Keys are only
/// computed once a second candidate comes.
struct TieBreak {
    tie_seed: u64,
    salt: u64,
    pick: Option<u32>,
    key: Option<u64>,
}

impl TieBreak {
    fn offer(&mut self, m: u32) {
        let Some(pick) = self.pick else {
            self.pick = Some(m);
            return;
        };
        let current = *self
            .key
            .get_or_insert_with(|| tie_key(self.tie_seed, self.salt, pick));
        let key = tie_key(self.tie_seed, self.salt, m);
        if key > current || (key == current && m < pick) {
            (self.pick, self.key) = (Some(m), Some(key));
        }
    }
}

/// `slot` of a pull count with no open model.
const NO_SLOT: u32 = u32::MAX;

/// UCB's open models grouped by pull count n. Every model of a group has the same bonus
/// sqrt(c ln t / n), so the group's highest index is its highest mean's: a choice computes one
/// index per non-empty group, then looks at the models tied at the top. A pull changes one
/// model's pull count (when handed out) or mean (when graded): O(log K) to re-file it. Makes
/// exactly the choice of [`ucb`].
#[derive(Clone, Debug)]
pub struct UcbIndex {
    c: f64,
    /// (pull count, mean) each open model is filed under; None once it left `open`.
    filed: Vec<Option<(u32, Total)>>,
    /// `groups[n]`: the open models with n pulls, by mean. `groups` and `slot` are as long as the
    /// highest pull count so far (at most the number of items); most groups are empty.
    groups: Vec<BTreeSet<(Total, u32)>>,
    /// The non-empty groups, in no particular order: (n, highest mean in group n).
    active: Vec<(u32, f64)>,
    /// `slot[n]`: where group n is in `active`, or NO_SLOT.
    slot: Vec<u32>,
}

impl UcbIndex {
    pub fn new(arms: &Arms, open: &[u32], c: f64) -> Self {
        let mut index = UcbIndex {
            c,
            filed: vec![None; arms.len()],
            groups: Vec::new(),
            active: Vec::new(),
            slot: Vec::new(),
        };
        for &m in open {
            let key = Self::key(arms, m);
            index.insert(key, m);
            index.filed[m as usize] = Some(key);
        }
        index
    }

    #[inline]
    fn key(arms: &Arms, m: u32) -> (u32, Total) {
        (arms.pulls(m), Total(mean_or_zero(arms, m)))
    }

    fn insert(&mut self, (n, mean): (u32, Total), m: u32) {
        let g = n as usize;
        if g >= self.groups.len() {
            self.groups.resize_with(g + 1, BTreeSet::new);
            self.slot.resize(g + 1, NO_SLOT);
        }
        self.groups[g].insert((mean, m));
        self.refresh(n);
    }

    fn remove(&mut self, (n, mean): (u32, Total), m: u32) {
        self.groups[n as usize].remove(&(mean, m));
        self.refresh(n);
    }

    /// Bring group n's entry in `active` up to date after a change to the group.
    fn refresh(&mut self, n: u32) {
        let g = n as usize;
        let top = self.groups[g].last().map(|&(Total(mean), _)| mean);
        match (top, self.slot[g]) {
            (Some(mean), NO_SLOT) => {
                self.slot[g] = self.active.len() as u32;
                self.active.push((n, mean));
            }
            (Some(mean), s) => self.active[s as usize].1 = mean,
            (None, NO_SLOT) => {}
            (None, s) => {
                self.active.swap_remove(s as usize);
                if let Some(&(moved, _)) = self.active.get(s as usize) {
                    self.slot[moved as usize] = s;
                }
                self.slot[g] = NO_SLOT;
            }
        }
    }

    /// Re-file a model after a change to its counters (nothing for closed models).
    pub fn update(&mut self, arms: &Arms, m: u32) {
        if let Some(old) = self.filed[m as usize] {
            let new = Self::key(arms, m);
            if new != old {
                self.remove(old, m);
                self.insert(new, m);
                self.filed[m as usize] = Some(new);
            }
        }
    }

    pub fn close(&mut self, m: u32) {
        if let Some(old) = self.filed[m as usize].take() {
            self.remove(old, m);
        }
    }

    /// A model's index from its group and mean, as [`ucb`] computes it.
    #[inline]
    fn value(&self, n: u32, mean: f64, log_t: f64) -> f64 {
        if n == 0 {
            f64::INFINITY
        } else {
            mean + ucb_bonus(self.c, log_t, n as f64)
        }
    }

    /// The choice of [`ucb`] for the open models, `total` graded pulls so far.
    pub fn choose(&self, total: u64, tie_seed: u64, salt: u64) -> Option<u32> {
        let log_t = ucb_log_t(total);
        // The highest index, a group that reaches it and whether another one does.
        let (mut best, mut best_n, mut shared) = (f64::NEG_INFINITY, None, false);
        work::step(self.active.len() as u64);
        for &(n, top) in &self.active {
            let v = self.value(n, top, log_t);
            match v.total_cmp(&best) {
                std::cmp::Ordering::Greater => (best, best_n, shared) = (v, Some(n), false),
                std::cmp::Ordering::Equal => shared = true,
                std::cmp::Ordering::Less => {}
            }
        }
        let best_n = best_n?;
        let mut ties = TieBreak {
            tie_seed,
            salt,
            pick: None,
            key: None,
        };
        // Down each group that reaches the highest index, by decreasing mean, while the index
        // stays equal to it: the sum with the group's bonus never increases as the mean drops.
        let mut offer_group = |n: u32| {
            for &(Total(mean), m) in self.groups[n as usize].iter().rev() {
                work::step(1);
                if self.value(n, mean, log_t).total_cmp(&best).is_ne() {
                    break;
                }
                ties.offer(m);
            }
        };
        if shared {
            for &(n, top) in &self.active {
                if self.value(n, top, log_t).total_cmp(&best).is_eq() {
                    offer_group(n);
                }
            }
        } else {
            offer_group(best_n);
        }
        ties.pick
    }

    /// Whether this index equals one rebuilt from scratch (as after a restore) for these arms
    /// and open models.
    #[cfg(test)]
    pub(super) fn matches_rebuilt(&self, arms: &Arms, open: &[u32]) -> bool {
        let fresh = UcbIndex::new(arms, open, self.c);
        let contents = |index: &UcbIndex| {
            let groups: Vec<(usize, Total, u32)> = (index.groups.iter().enumerate())
                .flat_map(|(n, g)| g.iter().map(move |&(mean, m)| (n, mean, m)))
                .collect();
            let mut active: Vec<(u32, Total)> = (index.active.iter())
                .map(|&(n, top)| (n, Total(top)))
                .collect();
            active.sort();
            let slots_agree = (index.active.iter().enumerate())
                .all(|(s, &(n, _))| index.slot[n as usize] == s as u32)
                && index.slot.iter().filter(|&&s| s != NO_SLOT).count() == index.active.len();
            (index.filed.clone(), groups, active, slots_agree)
        };
        contents(self) == contents(&fresh)
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

    /// UcbIndex chooses as the scan for every salt, with the picks spread over the ties.
    fn grouped_matches_scan(arms: &Arms, open: &[u32], c: f64, total: u64) -> usize {
        let index = UcbIndex::new(arms, open, c);
        assert!(index.matches_rebuilt(arms, open));
        let picks: std::collections::HashSet<u32> = (0..200)
            .map(|salt| {
                let pick = index.choose(total, 7, salt);
                assert_eq!(pick, ucb(arms, open, c, total, 7, salt), "salt {salt}");
                pick.unwrap()
            })
            .collect();
        picks.len()
    }

    #[test]
    fn ucb_grouped_choice_breaks_ties_as_the_scan() {
        // Unpulled models all tie at an infinite index.
        let arms = arms_with(&[(5, 10), (0, 0), (9, 10), (0, 0), (0, 0)]);
        assert_eq!(grouped_matches_scan(&arms, &[0, 1, 2, 3, 4], 2.0, 20), 3);
        // ln 1 = 0: the index is the mean, tied across pull counts (1/2 = 2/4 = 3/6).
        let arms = arms_with(&[(1, 2), (2, 4), (0, 1), (3, 6), (1, 3), (1, 2)]);
        let open = [0, 1, 2, 3, 4, 5];
        assert_eq!(grouped_matches_scan(&arms, &open, 2.0, 1), 4);
        // c ln t overflows: every index is infinite.
        assert_eq!(grouped_matches_scan(&arms, &open, f64::MAX, 50), 6);
        // Equal arms: one group, all tied; and a unique best.
        let arms = arms_with(&[(5, 10); 32]);
        let open: Vec<u32> = (0..32).collect();
        assert!(grouped_matches_scan(&arms, &open, 2.0, 320) > 10);
        let arms = arms_with(&[(5, 10), (1, 1), (9, 10), (3, 4)]);
        assert_eq!(grouped_matches_scan(&arms, &[0, 1, 2, 3], 2.0, 25), 1);
        assert_eq!(grouped_matches_scan(&arms, &[0, 2, 3], 0.01, 25), 1);
    }

    #[test]
    fn ucb_grouped_index_follows_updates_and_closing() {
        let mut arms = arms_with(&[(5, 10), (0, 0), (9, 10), (3, 4), (5, 10)]);
        let mut open = vec![0, 1, 2, 3, 4];
        let mut index = UcbIndex::new(&arms, &open, 2.0);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
        for step in 0.. {
            let total = arms.seen.iter().map(|&s| s as u64).sum();
            let pick = index.choose(total, 3, step);
            assert_eq!(pick, ucb(&arms, &open, 2.0, total, 3, step), "step {step}");
            let Some(m) = pick else {
                // Every model closed: all their items handed out.
                assert!(open.is_empty() && step > 200, "step {step}");
                break;
            };
            // Hand out, then grade (or skip) the pull; close a model after 60 items.
            arms.cursor[m as usize] += 1;
            index.update(&arms, m);
            if rand::Rng::gen_bool(&mut rng, 0.1) {
                arms.skipped[m as usize] += 1;
            } else {
                arms.seen[m as usize] += 1;
                arms.successes[m as usize] += rand::Rng::gen_bool(&mut rng, 0.6) as u32;
            }
            index.update(&arms, m);
            if arms.cursor[m as usize] == 60 {
                open.retain(|&o| o != m);
                index.close(m);
            }
            assert!(index.matches_rebuilt(&arms, &open), "step {step}");
        }
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
