//! Round plans of the round-based algorithms and the one budget rule they all share.
//!
//! A plan is a list of rounds, each with a planned *weight* (its share of the budget) and the
//! number of models that survive it. The shared rule: at the start of round r the round gets
//! `floor(remaining * w_r / (w_r + ... + w_last))` queries, split evenly over the survivors
//! (floored, and capped at the items a model has left), but never below the round's minimum
//! (one item per survivor for halving rounds) and never so much that a later round could not get
//! its minimum. Everything that floors, caps, failures or skips leave unspent stays in `remaining`
//! and so flows into later rounds; the last round takes all that remains. When the remaining
//! budget covers every survivor on every item it has left, the round evaluates exhaustively and
//! the answer is exact. The smallest budget an algorithm accepts is the sum of its rounds'
//! minimums.
use serde::{Deserialize, Serialize};

use crate::algorithms::{gem_first_cut, Algorithm, Style};
use crate::work;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundPlan {
    pub n_models: usize,
    pub weights: Vec<f64>,
    /// Survivors after each round; the last entry is 1.
    pub survivors_after: Vec<usize>,
    /// Items each survivor must get in each round (0 lets a round decide on what is known).
    pub min_items: Vec<u64>,
}

impl RoundPlan {
    /// The plan of a round-based algorithm for `n_models` models (None for other algorithms):
    /// the plan function of its table entry (`algorithms.rs`).
    pub fn for_algorithm(algorithm: &Algorithm, n_models: usize) -> Option<RoundPlan> {
        match algorithm.spec().style {
            Style::Rounds(plan) => Some(plan(algorithm, n_models)),
            Style::Immediate(_) | Style::Sequential(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Queries round `round` may spend when `remaining` are left (the shared rule).
    pub fn round_budget(&self, round: usize, remaining: u64) -> u64 {
        if round + 1 >= self.weights.len() {
            return remaining;
        }
        let rest: f64 = self.weights[round..].iter().sum();
        ((remaining as f64) * self.weights[round] / rest).floor() as u64
    }

    /// Models in the race when round `round` starts.
    pub fn survivors_before(&self, round: usize) -> usize {
        if round == 0 {
            self.n_models
        } else {
            self.survivors_after[round - 1]
        }
    }

    /// Queries that rounds `round..` need at least.
    pub fn reserve_from(&self, round: usize) -> u64 {
        work::step(self.len().saturating_sub(round) as u64);
        (round..self.len())
            .map(|r| self.min_items[r] * self.survivors_before(r) as u64)
            .sum()
    }

    /// Items per survivor in round `round` with `remaining` queries and `alive` survivors.
    pub fn items_per_survivor(&self, round: usize, remaining: u64, alive: u64) -> u64 {
        let share = self.round_budget(round, remaining) / alive;
        let cap = remaining.saturating_sub(self.reserve_from(round + 1)) / alive;
        share.max(self.min_items[round]).min(cap)
    }

    /// The smallest budget this plan accepts (below a full evaluation of every model).
    pub fn min_budget(&self, n_items: usize) -> u64 {
        self.reserve_from(0)
            .min(self.n_models as u64 * n_items as u64)
    }
}

/// Uniform allocation: one round that keeps the best.
pub fn uniform(n_models: usize) -> RoundPlan {
    RoundPlan {
        n_models,
        weights: vec![1.0],
        survivors_after: vec![1],
        min_items: vec![1],
    }
}

/// Gem search: a first round with `first_round_share` of the budget keeps `first_cut` models
/// (resolved by [`gem_first_cut`]), then correlated halving; plain halving when the pool is no
/// larger than the cut.
pub fn gem(first_round_share: f64, first_cut: usize, n_models: usize) -> RoundPlan {
    let first_cut = gem_first_cut(first_cut, n_models);
    if n_models <= first_cut {
        return halving(n_models);
    }
    let rest = halving(first_cut);
    let later = rest.weights.len() as f64;
    let mut weights = vec![if later == 0.0 { 1.0 } else { first_round_share }];
    weights.extend(
        rest.weights
            .iter()
            .map(|_| (1.0 - first_round_share) / later),
    );
    let mut survivors_after = vec![first_cut];
    survivors_after.extend(rest.survivors_after);
    RoundPlan {
        n_models,
        min_items: vec![1; weights.len()],
        weights,
        survivors_after,
    }
}

/// Sequential Halving: keep ceil(|S|/2) per round, ceil(log2 K) rounds of equal weight.
pub fn halving(n_models: usize) -> RoundPlan {
    let mut survivors_after = Vec::new();
    let mut alive = n_models;
    while alive > 1 {
        alive = alive.div_ceil(2);
        survivors_after.push(alive);
    }
    RoundPlan {
        n_models,
        weights: vec![1.0; survivors_after.len()],
        min_items: vec![1; survivors_after.len()],
        survivors_after,
    }
}

/// Successive Rejects (Audibert, Bubeck, Munos 2010). Phase k brings every survivor up to
/// n_k, proportional to 1 / (K + 1 - k), then drops the worst. The cost of phase 1 is
/// proportional to 1 and of phase k >= 2 to 1 / (K + 2 - k): those are the weights.
pub fn successive_rejects(n_models: usize) -> RoundPlan {
    let phases = n_models.saturating_sub(1);
    let weights = (1..=phases)
        .map(|k| {
            if k == 1 {
                1.0
            } else {
                1.0 / (n_models + 2 - k) as f64
            }
        })
        .collect();
    // Like SR's cumulative n_k, a phase may add no items and only drop the worst model; only
    // the first phase must give every model an item.
    let min_items = (1..=phases).map(|k| (k == 1) as u64).collect();
    RoundPlan {
        n_models,
        weights,
        survivors_after: (1..=phases).map(|k| n_models - k).collect(),
        min_items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::{Sampling, ALGORITHMS};

    #[test]
    fn exactly_the_round_based_algorithms_have_a_plan() {
        for spec in ALGORITHMS {
            let algorithm = Algorithm::from_name(spec.name, &Default::default()).unwrap();
            let plan = RoundPlan::for_algorithm(&algorithm, 10);
            let rounds = matches!(spec.style, Style::Rounds(_));
            assert_eq!(plan.is_some(), rounds, "{}", spec.name);
        }
    }

    #[test]
    fn halving_rounds() {
        let plan = halving(500);
        assert_eq!(plan.survivors_after, vec![250, 125, 63, 32, 16, 8, 4, 2, 1]);
        assert_eq!(plan.len(), 9); // ceil(log2 500)
        assert!(halving(1).is_empty());
    }

    #[test]
    fn gem_plan_cuts_then_halves() {
        let gem = Algorithm::GemSearch {
            first_round_share: 0.5,
            first_cut: 100,
        };
        let plan = RoundPlan::for_algorithm(&gem, 467).unwrap();
        assert_eq!(plan.survivors_after, vec![100, 50, 25, 13, 7, 4, 2, 1]);
        assert_eq!(plan.weights[0], 0.5);
        assert!((plan.weights[1..].iter().sum::<f64>() - 0.5).abs() < 1e-12);
        // A small pool is plain correlated SH.
        let small = RoundPlan::for_algorithm(&gem, 60).unwrap();
        assert_eq!(small, halving(60));
    }

    #[test]
    fn the_default_first_cut_is_a_fifth_of_the_pool_and_at_least_200() {
        let default = Algorithm::from_name("gem", &Default::default()).unwrap();
        let cut = |k| {
            RoundPlan::for_algorithm(&default, k)
                .unwrap()
                .survivors_after[0]
        };
        assert_eq!(cut(467), 200);
        assert_eq!(cut(1000), 200);
        assert_eq!(cut(2000), 400);
        assert_eq!(cut(4003), 800);
        assert_eq!(cut(150), 75); // below the cut: plain correlated SH halves
                                  // A named cut is kept whatever the pool.
        let named = [("first_cut".to_string(), 100.0)].into();
        let fixed = Algorithm::from_name("gem", &named).unwrap();
        assert_eq!(
            RoundPlan::for_algorithm(&fixed, 4000)
                .unwrap()
                .survivors_after[0],
            100
        );
        let zero = [("first_cut".to_string(), 0.0)].into();
        assert!(Algorithm::from_name("gem", &zero).is_err());
    }

    #[test]
    fn sr_weights_match_the_formula() {
        // n_k = ceil((B - K) / (logbar(K) (K + 1 - k))); check the phase costs are in the same
        // ratio as the weights for K = 5.
        let plan = successive_rejects(5);
        let n = |k: usize| 1.0 / (5 + 1 - k) as f64;
        let costs: Vec<f64> = (1..=4)
            .map(|k| (n(k) - if k == 1 { 0.0 } else { n(k - 1) }) * (5 + 1 - k) as f64)
            .collect();
        for (w, c) in plan.weights.iter().zip(costs) {
            assert!((w / plan.weights[0] - c / (1.0 / 5.0 * 5.0)).abs() < 1e-12);
        }
        assert_eq!(plan.survivors_after, vec![4, 3, 2, 1]);
    }

    #[test]
    fn round_budget_spreads_remaining_by_weight() {
        let plan = halving(8); // 3 rounds
        assert_eq!(plan.round_budget(0, 300), 100);
        assert_eq!(plan.round_budget(1, 201), 100);
        assert_eq!(plan.round_budget(2, 101), 101);
    }

    #[test]
    fn minimum_budget_is_the_sum_of_round_minimums() {
        let sh = Algorithm::SequentialHalving {
            sampling: Sampling::Correlated,
        };
        let plan = RoundPlan::for_algorithm(&sh, 100).unwrap();
        assert_eq!(plan.min_budget(1000), 100 + 50 + 25 + 13 + 7 + 4 + 2);
        assert_eq!(plan.min_budget(1), 100); // one item each is a full evaluation
        let sr = RoundPlan::for_algorithm(&Algorithm::SuccessiveRejects, 50).unwrap();
        assert_eq!(sr.min_budget(1000), 50);
    }

    #[test]
    fn items_per_survivor_keeps_later_rounds_alive() {
        let plan = halving(8); // 8 -> 4 -> 2 -> 1, minimums 8 + 4 + 2
        assert_eq!(plan.items_per_survivor(0, 14, 8), 1);
        assert_eq!(plan.items_per_survivor(0, 300, 8), 12);
        // A skewed weight would starve later rounds: the cap stops it.
        assert_eq!(plan.items_per_survivor(2, 2, 2), 1);
    }
}
