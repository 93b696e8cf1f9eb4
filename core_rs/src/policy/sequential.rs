//! Arm choice of the sequential algorithms: UCB, UCB-E and Top-Two Thompson Sampling.
//!
//! Each call picks one model among those that still have unseen items (`open`). Pulls handed
//! out but not yet graded count towards a model's pull count, so a caller asking for a batch
//! does not pile every pull on one model.
//!
//! The rules live in [`super::ucb`] (UCB, UCB-E) and [`super::thompson`] (TTTS); this module
//! keeps what they share and what the scheduler holds: the tie-breaking argmax, the final pick
//! ([`best_by`]) and the incremental state of UCB, UCB-E and TTTS ([`Derived`]). That state is a
//! pure function of the arms' counters and the open models: the scheduler does not save it in
//! snapshots but rebuilds it on first use, and makes the same choices (with the same random
//! numbers) either way.
use rand_chacha::ChaCha8Rng;

use super::thompson::Thompson;
use super::ucb::{UcbEIndex, UcbIndex};
use crate::algorithms::Algorithm;
use crate::arms::Arms;
use crate::rng::tie_key;

/// What the choice of a sequential algorithm sees: the arms, the open models and the state the
/// scheduler keeps for the choices.
pub struct Choice<'a> {
    pub arms: &'a Arms,
    pub open: &'a [u32],
    pub derived: &'a mut Derived,
    /// Graded pulls so far.
    pub spent: u64,
    pub tie_seed: u64,
    /// The salt of this choice's tie-break keys.
    pub salt: u64,
    pub rng: &'a mut ChaCha8Rng,
    /// UCB-E's exploration constant, resolved from the budget when the request names none.
    pub ucb_e_a: f64,
}

/// The next model of a sequential algorithm (its parameters in the `Algorithm`), or None when
/// no model is open.
pub type Chooser = fn(&Algorithm, Choice) -> Option<u32>;

/// Highest score wins; ties go to the highest random key (never to the lowest index). Keys are
/// only computed when scores tie, which keeps this loop cheap.
pub(super) fn argmax_by(
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

#[inline]
pub(super) fn mean_or_zero(arms: &Arms, m: u32) -> f64 {
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

/// State of the sequential algorithms that is derived from the arms and the open models, kept
/// up to date pull by pull. Not saved in snapshots (rebuilt on first use) and ignored by `==`.
#[derive(Clone, Default)]
pub struct Derived {
    ucb: Option<UcbIndex>,
    ucb_e: Option<UcbEIndex>,
    thompson: Option<Thompson>,
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Derived")
            .field("ucb", &self.ucb.is_some())
            .field("ucb_e", &self.ucb_e.is_some())
            .field("thompson", &self.thompson.is_some())
            .finish()
    }
}

impl Derived {
    /// UCB's models grouped by pull count over `open`, built on first use.
    pub fn ucb(&mut self, arms: &Arms, open: &[u32], c: f64) -> &mut UcbIndex {
        self.ucb.get_or_insert_with(|| UcbIndex::new(arms, open, c))
    }

    /// UCB-E's index over `open`, built on first use.
    pub fn ucb_e(&mut self, arms: &Arms, open: &[u32], a: f64) -> &mut UcbEIndex {
        self.ucb_e
            .get_or_insert_with(|| UcbEIndex::new(arms, open, a))
    }

    /// TTTS's posterior thresholds over `open`, built on first use.
    pub fn thompson(&mut self, arms: &Arms, open: &[u32]) -> &mut Thompson {
        self.thompson
            .get_or_insert_with(|| Thompson::new(arms, open))
    }

    /// A model's counters changed (a pull handed out, graded or skipped).
    pub fn changed(&mut self, arms: &Arms, m: u32) {
        if let Some(index) = &mut self.ucb {
            index.update(arms, m);
        }
        if let Some(index) = &mut self.ucb_e {
            index.update(arms, m);
        }
        if let Some(thompson) = &mut self.thompson {
            thompson.update(arms, m);
        }
    }

    /// A model left `open` (all its items handed out).
    pub fn closed(&mut self, m: u32) {
        if let Some(index) = &mut self.ucb {
            index.close(m);
        }
        if let Some(index) = &mut self.ucb_e {
            index.close(m);
        }
        if let Some(thompson) = &mut self.thompson {
            thompson.close(m);
        }
    }

    /// Whether the state kept up to date equals the state rebuilt from scratch (as after a
    /// restore) for these arms and open models.
    #[cfg(test)]
    pub(crate) fn matches_rebuilt(&self, arms: &Arms, open: &[u32]) -> bool {
        let ucb = self
            .ucb
            .as_ref()
            .is_none_or(|index| index.matches_rebuilt(arms, open));
        let ucb_e = self
            .ucb_e
            .as_ref()
            .is_none_or(|index| index.matches_rebuilt(arms, open));
        let thompson = self
            .thompson
            .as_ref()
            .is_none_or(|th| th.matches_rebuilt(arms, open));
        ucb && ucb_e && thompson
    }
}

/// Arms built from (successes, seen) per model, for the policies' unit tests.
#[cfg(test)]
pub(super) mod test_support {
    use crate::arms::Arms;

    pub(in crate::policy) fn arms_with(stats: &[(u32, u32)]) -> Arms {
        let mut arms = Arms::new(stats.len());
        for (m, &(s, n)) in stats.iter().enumerate() {
            arms.successes[m] = s;
            arms.seen[m] = n;
            arms.cursor[m] = n;
        }
        arms
    }
}
