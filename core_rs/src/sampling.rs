//! Which item a model answers next: every model reads the trial's item permutation in order,
//! starting at its own offset.
//!
//! Correlated sampling gives every model offset 0, so all survivors of a round answer the same
//! items. Independent sampling gives each model a random offset: each model's items are then a
//! uniformly random subset (any window of a random permutation is), different models read
//! different windows, and the state per model stays one integer instead of a permutation.
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::Sampling;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemOrder {
    perm: Vec<u32>,
    offsets: Option<Vec<u32>>,
}

impl ItemOrder {
    /// `item_rng` is the trial's shared item stream; `decision_rng` draws the offsets.
    pub fn new(
        n_models: usize,
        n_items: usize,
        sampling: Sampling,
        item_rng: &mut ChaCha8Rng,
        decision_rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut perm: Vec<u32> = (0..n_items as u32).collect();
        perm.shuffle(item_rng);
        let offsets = match sampling {
            Sampling::Correlated => None,
            Sampling::Independent => Some(
                (0..n_models)
                    .map(|_| decision_rng.gen_range(0..n_items as u32))
                    .collect(),
            ),
        };
        ItemOrder { perm, offsets }
    }

    pub fn n_items(&self) -> usize {
        self.perm.len()
    }

    /// The item at position `pos` (< n_items) of `model`'s sequence.
    #[inline]
    pub fn item(&self, model: u32, pos: u32) -> u32 {
        match &self.offsets {
            None => self.perm[pos as usize],
            Some(offsets) => {
                let n = self.perm.len();
                self.perm[(offsets[model as usize] as usize + pos as usize) % n]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream_rng, Stream};
    use std::collections::HashSet;

    fn order(sampling: Sampling) -> ItemOrder {
        let mut a = stream_rng(1, 0, Stream::Items);
        let mut b = stream_rng(1, 0, Stream::Decisions);
        ItemOrder::new(20, 50, sampling, &mut a, &mut b)
    }

    #[test]
    fn every_model_sees_each_item_once() {
        for sampling in [Sampling::Correlated, Sampling::Independent] {
            let order = order(sampling);
            for model in 0..20 {
                let items: HashSet<u32> = (0..50).map(|p| order.item(model, p)).collect();
                assert_eq!(items.len(), 50);
            }
        }
    }

    #[test]
    fn correlated_models_share_items_independent_do_not() {
        let correlated = order(Sampling::Correlated);
        assert!((0..10).all(|p| correlated.item(0, p) == correlated.item(7, p)));
        let independent = order(Sampling::Independent);
        let differing = (0..20).filter(|&m| independent.item(m, 0) != independent.item(0, 0));
        assert!(differing.count() >= 15);
    }
}
