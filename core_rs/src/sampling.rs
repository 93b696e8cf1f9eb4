//! Which item a model answers next: every model reads the trial's item permutation in order,
//! starting at its own offset.
//!
//! Correlated sampling gives every model offset 0, so all survivors of a round answer the same
//! items. Independent sampling gives each model a random offset: each model's items are then a
//! uniformly random subset (any window of a random permutation is), different models read
//! different windows, and the state per model stays one integer instead of a permutation.
//!
//! The permutation is drawn lazily (forward Fisher-Yates): position i is fixed the first time an
//! item at or after it is needed, so a search that reads 200 of 3,000 items shuffles only 200.
//! Forward Fisher-Yates fixes a prefix independently of how far it later goes, so every
//! algorithm of a trial still sees the same order (common random numbers).
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::algorithms::Sampling;
use crate::work;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemOrder {
    perm: Vec<u32>,
    /// Positions `..drawn` of `perm` are final.
    drawn: u32,
    rng: ChaCha8Rng,
    offsets: Option<Vec<u32>>,
}

impl ItemOrder {
    /// `item_rng` is the trial's shared item stream; `decision_rng` draws the offsets.
    pub fn new(
        n_models: usize,
        n_items: usize,
        sampling: Sampling,
        item_rng: ChaCha8Rng,
        decision_rng: &mut ChaCha8Rng,
    ) -> Self {
        let offsets = match sampling {
            Sampling::Correlated => None,
            Sampling::Independent => Some(
                (0..n_models)
                    .map(|_| decision_rng.gen_range(0..n_items as u32))
                    .collect(),
            ),
        };
        let mut order = ItemOrder {
            perm: (0..n_items as u32).collect(),
            drawn: 0,
            rng: item_rng,
            offsets,
        };
        if order.offsets.is_some() {
            order.prepare(n_items as u32); // windows wrap around: the whole order is needed
        }
        order
    }

    /// Make positions `..upto` final (capped at the number of items).
    pub fn prepare(&mut self, upto: u32) {
        let n = self.perm.len() as u32;
        while self.drawn < upto.min(n) {
            work::step(1);
            let j = self.rng.gen_range(self.drawn..n);
            self.perm.swap(self.drawn as usize, j as usize);
            self.drawn += 1;
        }
    }

    /// True when every model reads the same sequence (correlated sampling): the items two
    /// models both answered are then the shared prefix of their sequences.
    pub fn is_shared(&self) -> bool {
        self.offsets.is_none()
    }

    /// The item at position `pos` of `model`'s sequence; `prepare` must have covered `pos`.
    #[inline]
    pub fn item(&self, model: u32, pos: u32) -> u32 {
        debug_assert!(pos < self.drawn, "position {pos} not prepared");
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
        let mut b = stream_rng(1, 0, Stream::Decisions);
        let mut order = ItemOrder::new(20, 50, sampling, stream_rng(1, 0, Stream::Items), &mut b);
        order.prepare(50);
        order
    }

    #[test]
    fn the_prefix_does_not_depend_on_how_far_it_is_drawn() {
        let mut b = stream_rng(1, 0, Stream::Decisions);
        let mut short = ItemOrder::new(
            3,
            50,
            Sampling::Correlated,
            stream_rng(1, 0, Stream::Items),
            &mut b,
        );
        short.prepare(5);
        let long = order(Sampling::Correlated);
        assert!((0..5).all(|p| short.item(0, p) == long.item(0, p)));
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
