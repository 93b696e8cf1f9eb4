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

    /// Items per survivor in round `round` with `remaining` queries, `alive` survivors and
    /// `items_left` items each survivor has not answered yet.
    pub fn items_per_survivor(
        &self,
        round: usize,
        remaining: u64,
        alive: u64,
        items_left: u64,
    ) -> u64 {
        let share = self
            .item_capped_share(round, remaining, alive, items_left)
            .unwrap_or_else(|| self.round_budget(round, remaining) / alive);
        let cap = remaining.saturating_sub(self.reserve_from(round + 1)) / alive;
        share.max(self.min_items[round]).min(cap)
    }

    /// Round `round`'s items per survivor when the weight rule would ask the survivors of
    /// rounds `round..` for more items, in all, than they have left (None when it would not:
    /// the weight rule stands unchanged). Without this, a late round with few survivors runs
    /// out of items and the queries it cannot use are lost, as no later round can take them.
    ///
    /// Continuous schedule, recomputed at every round from what is left (so floors, failures
    /// and skips flow forward as before): round j's weight-rule share is p_j = R w_j / (W s_j)
    /// items per survivor (R remaining queries, W the weights left, s_j survivors). If the
    /// shares overflow the L items left, the earliest round J that can then evaluate its
    /// survivors on every item left ends the search exactly (the scheduler's exhaustive round),
    /// and the rounds before it get alpha p_j with alpha >= 1 such that the whole budget is
    /// spent: the queries the rounds from J on could not use go to the earlier rounds in
    /// proportion to their weights.
    fn item_capped_share(
        &self,
        round: usize,
        remaining: u64,
        alive: u64,
        items_left: u64,
    ) -> Option<u64> {
        let rounds = self.len().saturating_sub(round);
        if rounds < 2 || alive == 0 {
            return None; // the last round takes all that remains, capped per model
        }
        work::step(2 * rounds as u64);
        let size = |j: usize| {
            if j == round {
                alive
            } else {
                (self.survivors_before(j) as u64).clamp(1, alive)
            }
        };
        let (r, l) = (remaining as f64, items_left as f64);
        let weight: f64 = self.weights[round..].iter().sum();
        // (p_j, s_j) for j = round.., index 0 being this round.
        let shares: Vec<(f64, f64)> = (round..self.len())
            .map(|j| {
                let s = size(j) as f64;
                (r * self.weights[j] / weight / s, s)
            })
            .collect();
        if shares.iter().map(|x| x.0).sum::<f64>() <= l {
            return None;
        }
        // The earliest round J that can evaluate its survivors on every item left, with the
        // rounds before it at alpha >= 1 times their weight shares (so no earlier round gets
        // less than the weights give it): sum_{i<J} s_i alpha p_i + s_J (l - alpha P_J) = r,
        // P_J = sum_{i<J} p_i. Its answer among those survivors is exact, which is worth more
        // than splitting the items among the later rounds.
        let (mut queries_before, mut items_before) = (0.0, 0.0);
        for (j, &(p, s)) in shares.iter().enumerate() {
            if j > 0 {
                let alpha = (r - s * l) / (queries_before - s * items_before);
                if alpha >= 1.0 && alpha * items_before <= l {
                    // Floored, unless the later rounds could not use more than 1% of the budget
                    // left that the floor leaves (round `round + 1` on every item left is the
                    // most they can spend): rounding up then keeps the budget spent, at the
                    // price of the exhaustive round (a few queries lost cost less than it).
                    let (t, s_r, s_next) =
                        ((alpha * shares[0].0).floor(), shares[0].1, shares[1].1);
                    let more = (r - s_r * t) - s_next * (l - t) > r / 100.0;
                    return Some(t as u64 + more as u64);
                }
            }
            queries_before += s * p;
            items_before += p;
        }
        // Not reached when the survivors shrink from round to round (at J = last, alpha > 1
        // whenever the shares overflow; checked on random plans): the weight rule stands.
        None
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
        assert_eq!(plan.items_per_survivor(0, 14, 8, 1000), 1);
        assert_eq!(plan.items_per_survivor(0, 300, 8, 1000), 12);
        // A skewed weight would starve later rounds: the cap stops it.
        assert_eq!(plan.items_per_survivor(2, 2, 2, 1000), 1);
    }

    /// Per-survivor items of every round, planning each from what the previous ones left as
    /// the scheduler does (every pull graded): `rule(plan, round, remaining, alive, left)`.
    fn schedule(
        plan: &RoundPlan,
        budget: u64,
        n_items: u64,
        rule: impl Fn(&RoundPlan, usize, u64, u64, u64) -> u64,
    ) -> (Vec<u64>, u64, bool) {
        let (mut remaining, mut left, mut items) = (budget, n_items, Vec::new());
        for round in 0..plan.len() {
            let alive = plan.survivors_before(round) as u64;
            if remaining >= alive * left {
                // The scheduler's exhaustive round: every survivor on every item left, exact.
                items.push(left);
                return (items, budget - remaining + alive * left, true);
            }
            let t = rule(plan, round, remaining, alive, left).min(left);
            remaining -= t * alive;
            left -= t;
            items.push(t);
        }
        (items, budget - remaining, false)
    }

    /// The rule before item-aware planning: weight share, round minimum, later rounds' reserve.
    fn weight_rule(plan: &RoundPlan, round: usize, remaining: u64, alive: u64, _: u64) -> u64 {
        let cap = remaining.saturating_sub(plan.reserve_from(round + 1)) / alive;
        (plan.round_budget(round, remaining) / alive)
            .max(plan.min_items[round])
            .min(cap)
    }

    fn plans(k: usize) -> Vec<(&'static str, RoundPlan)> {
        vec![
            ("sh", halving(k)),
            ("gem", gem(0.2, 0, k)),
            ("gem m=8", gem(0.35, 8, k)),
            ("sr", successive_rejects(k)),
        ]
    }

    #[test]
    fn rounds_that_fit_in_the_items_keep_the_weight_rule_exactly() {
        let mut kept = 0;
        for k in [3usize, 7, 40, 230, 1000] {
            for n_items in [25u64, 60, 500, 3000] {
                for per_model in [2u64, 3, 5, 11, 25, 50] {
                    let budget = per_model * k as u64;
                    for (name, plan) in plans(k) {
                        if budget < plan.min_budget(n_items as usize) {
                            continue;
                        }
                        let old = schedule(&plan, budget, n_items, weight_rule);
                        let fits = old.0.iter().sum::<u64>() < n_items;
                        if !fits {
                            continue;
                        }
                        let new = schedule(&plan, budget, n_items, RoundPlan::items_per_survivor);
                        assert_eq!(new, old, "{name} K={k} n={n_items} N={per_model}");
                        kept += 1;
                    }
                }
            }
        }
        assert!(kept > 100, "only {kept} fitting cases");
    }

    #[test]
    fn rounds_short_of_items_hand_their_budget_to_earlier_rounds() {
        // 1000 models, 3000 items, 50 queries per model: by the weight rule the last pair would
        // get 2,500 items each with 503 left (an exhaustive pair), and 6% of the budget would be
        // lost.
        let plan = halving(1000);
        let budget = 50 * 1000;
        let old = schedule(&plan, budget, 3000, weight_rule);
        assert!(old.1 < budget * 95 / 100, "{old:?}");
        let (items, spent, exact) = schedule(&plan, budget, 3000, RoundPlan::items_per_survivor);
        assert!(
            spent >= budget * 999 / 1000,
            "{spent} of {budget}: {items:?}"
        );
        // Rounds 0-7 get more than their weight share, and round 8 evaluates its 4 survivors
        // on every item they have left (the best of those 4 exactly, where the weight rule
        // could only afford it for 2).
        for r in 0..8 {
            assert!(items[r] >= old.0[r], "round {r}: {items:?} vs {old:?}");
        }
        assert!(
            items[2] > old.0[2] && items[7] > old.0[7],
            "{items:?} vs {old:?}"
        );
        assert!(exact && items.len() == 9, "{items:?}");
        assert_eq!(items.iter().sum::<u64>(), 3000);
    }

    #[test]
    fn every_round_based_plan_spends_its_budget_when_the_items_allow() {
        for k in [7usize, 40, 230, 1000] {
            for n_items in [25u64, 60, 500, 1319, 3000] {
                for per_model in [3u64, 11, 25, 50, 100] {
                    let budget = per_model * k as u64;
                    for (name, plan) in plans(k) {
                        if budget < plan.min_budget(n_items as usize) {
                            continue;
                        }
                        let (items, spent, exact) =
                            schedule(&plan, budget, n_items, RoundPlan::items_per_survivor);
                        if exact {
                            continue; // the items, not the plan, limit the spend: exact rounds
                        }
                        // What floors leave: under 1% plus the last round's remainder.
                        let last = plan.survivors_before(plan.len() - 1) as u64;
                        assert!(
                            (spent + last) * 100 >= budget * 99,
                            "{name} K={k} n={n_items} N={per_model}: {spent} of {budget} {items:?}"
                        );
                    }
                }
            }
        }
    }

    /// The search for the exhaustive round always succeeds when the shares overflow: any
    /// weights, survivors shrinking from round to round, any budget short of evaluating every
    /// survivor on every item.
    #[test]
    fn an_exhaustive_round_is_found_whenever_the_shares_overflow() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut overflowing = 0;
        for _ in 0..20_000 {
            let rounds = rng.gen_range(2..12);
            let mut survivors: Vec<usize> = (0..=rounds).map(|_| rng.gen_range(1..3000)).collect();
            survivors.sort_unstable_by(|a, b| b.cmp(a));
            survivors.dedup();
            if survivors.len() < 3 {
                continue;
            }
            let plan = RoundPlan {
                n_models: survivors[0],
                weights: (1..survivors.len())
                    .map(|_| rng.gen_range(0.01..1.0))
                    .collect(),
                survivors_after: survivors[1..].to_vec(),
                min_items: vec![0; survivors.len() - 1],
            };
            let left = rng.gen_range(1..5000u64);
            let remaining = rng.gen_range(0..survivors[0] as u64 * left);
            let weight: f64 = plan.weights.iter().sum();
            let shares: f64 = (0..plan.len())
                .map(|j| {
                    remaining as f64 * plan.weights[j] / weight / plan.survivors_before(j) as f64
                })
                .sum();
            let planned = plan.item_capped_share(0, remaining, survivors[0] as u64, left);
            assert_eq!(
                planned.is_some(),
                shares > left as f64,
                "{plan:?} {remaining} {left}"
            );
            overflowing += planned.is_some() as u32;
        }
        assert!(overflowing > 1000, "{overflowing}");
    }
}
