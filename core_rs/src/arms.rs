//! Per-model counters, stored as columns so that a million models stay small (20 bytes each).
use serde::{Deserialize, Serialize};

/// `out_round` of a model that is still in the race.
pub const ALIVE: u32 = u32::MAX;
/// `out_round` of a model still in the race when the final pick went to another one.
pub const OUTRANKED_AT_END: u32 = u32::MAX - 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Arms {
    /// Graded answers that were correct.
    pub successes: Vec<u32>,
    /// Graded answers.
    pub seen: Vec<u32>,
    /// Next position in the model's item sequence (handed-out items, graded or not).
    pub cursor: Vec<u32>,
    /// Items given up after repeated failures.
    pub skipped: Vec<u32>,
    /// Round in which the model was eliminated, or ALIVE.
    pub out_round: Vec<u32>,
}

impl Arms {
    pub fn new(n_models: usize) -> Self {
        Arms {
            successes: vec![0; n_models],
            seen: vec![0; n_models],
            cursor: vec![0; n_models],
            skipped: vec![0; n_models],
            out_round: vec![ALIVE; n_models],
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Empirical accuracy; a model with no graded answer ranks below every model with one.
    #[inline]
    pub fn mean(&self, model: u32) -> f64 {
        let m = model as usize;
        if self.seen[m] == 0 {
            f64::NEG_INFINITY
        } else {
            self.successes[m] as f64 / self.seen[m] as f64
        }
    }

    /// Posterior mean under a Beta(alpha, beta) prior.
    #[inline]
    pub fn posterior_mean(&self, model: u32, prior: (f64, f64)) -> f64 {
        let m = model as usize;
        (prior.0 + self.successes[m] as f64) / (prior.0 + prior.1 + self.seen[m] as f64)
    }

    /// Items handed out or answered, excluding skipped ones.
    #[inline]
    pub fn pulls(&self, model: u32) -> u32 {
        let m = model as usize;
        self.cursor[m] - self.skipped[m]
    }
}
