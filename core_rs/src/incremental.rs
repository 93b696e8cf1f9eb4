//! Simulation of an incremental search (docs/search.md, "Incremental search"): a tree grows by
//! `n_new` models; instead of searching the whole tree again, the top `incumbents` of the
//! earlier ("parent") search are challenged by the newcomers, and every answer the parent
//! already paid for is free (the service's evaluation cache).
//!
//! One trial: draw which models of the matrix are new; run the parent search on the others;
//! run the incremental search on the parent's top-k + the newcomers with the same seed and
//! trial, so that with correlated sampling it reads the same item permutation and the
//! incumbents' first items are exactly those the parent graded; run a full re-search of the
//! whole tree beside it. Queries are counted twice: spent (every pull the search made) and paid
//! (pulls the parent had not already answered).
use std::collections::HashSet;
use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::algorithms::Algorithm;
use crate::config::SearchConfig;
use crate::error::{CoreError, Result};
use crate::ranking::ranking;
use crate::rng::mix64;
use crate::scheduler::{min_budget, Pull, Scheduler};
use crate::simulate::Matrix;

/// What one incremental trial does, in queries and models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncrementalPlan {
    /// Models of the matrix that are new in each trial (drawn at random per trial).
    pub n_new: usize,
    /// How many of the parent's top models are kept as incumbents.
    pub incumbents: usize,
    /// Total budget of the parent search (on the models that are not new).
    pub parent_budget: u64,
    /// Queries per newcomer; the incremental search's budget is this times the newcomers plus
    /// the answers the incumbents already have (free), at least the algorithm's minimum.
    pub per_newcomer: u64,
    /// Total budget of the full re-search of every model.
    pub full_budget: u64,
    /// Warm start: the incremental search ranks by posterior mean (Bayesian elimination) with
    /// each incumbent's parent answers as its prior, so that its early rounds judge an
    /// incumbent on everything it answered, not only the first items of this search.
    pub warm: bool,
}

/// One trial's picks (indices into the matrix) and costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncrementalOutcome {
    pub parent_pick: u32,
    pub pick: u32,
    pub spent: u64,
    /// Pulls of the incremental search the parent had not answered (new queries).
    pub paid: u64,
    pub full_pick: u32,
    pub full_spent: u64,
    /// Pulls of the full re-search the parent had not answered (a re-search with the cache).
    pub full_paid: u64,
}

fn key(model: u32, item: u32) -> u64 {
    ((model as u64) << 32) | item as u64
}

/// Run a search on the matrix rows `models` to the end; `on_pull(row, item)` sees every pull.
fn run_pool(
    template: &SearchConfig,
    matrix: Matrix,
    models: &[u32],
    budget: u64,
    trial: u64,
    mut on_pull: impl FnMut(u32, u32),
) -> Result<Scheduler> {
    let mut config = template.clone();
    config.trial = trial;
    config.n_models = models.len();
    config.n_items = matrix.n_items();
    config.budget = budget;
    let mut s = Scheduler::new(config)?;
    let mut answer = |m: u32, i: u32| {
        let row = models[m as usize];
        on_pull(row, i);
        matrix.get(Pull {
            model: row,
            item: i,
        })
    };
    while s.run_round_with(&mut answer) {}
    let batch = if s.config().algorithm.is_round_based() {
        usize::MAX
    } else {
        1
    };
    let mut pulls = Vec::new();
    loop {
        pulls.clear();
        s.next_pulls(batch, &mut pulls);
        if pulls.is_empty() {
            break;
        }
        for &p in &pulls {
            let correct = answer(p.model, p.item);
            s.record(p, correct);
        }
    }
    Ok(s)
}

/// The newcomers of a trial: `n_new` distinct rows, from a stream apart from the search's own.
fn draw_newcomers(n_models: usize, n_new: usize, seed: u64, trial: u64) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix64(seed ^ 0x6e65_7763_6f6d_6572));
    rng.set_stream(trial);
    let mut rows: Vec<u32> = (0..n_models as u32).collect();
    let mut new = vec![false; n_models];
    for i in 0..n_new {
        let j = rng.gen_range(i..n_models);
        rows.swap(i, j);
        new[rows[i] as usize] = true;
    }
    new
}

/// The budget of an incremental search over `pool` models: `asked` (the newcomers' share plus
/// the incumbents' free answers), raised so that the last round reads as deep as the parent's
/// winner did (`depth` items): a halving search gives its finalists about budget / rounds
/// items each, and a challenger judged on fewer items than the winner it challenges would
/// overturn it on noise. At least the algorithm's minimum.
pub fn incremental_budget(
    algorithm: &Algorithm,
    pool: usize,
    n_items: usize,
    asked: u64,
    depth: u64,
) -> u64 {
    let rounds = (pool.max(2) as f64).log2().ceil() as u64;
    let deep = (depth * rounds).min((pool * n_items) as u64);
    asked.max(deep).max(min_budget(algorithm, pool, n_items))
}

pub fn run_incremental_trial(
    template: &SearchConfig,
    matrix: Matrix,
    plan: IncrementalPlan,
    trial: u64,
) -> Result<IncrementalOutcome> {
    let k_all = matrix.n_models();
    if plan.n_new == 0 || plan.n_new + 2 > k_all {
        return Err(CoreError::invalid(
            "n_new",
            format!(
                "must be between 1 and {} (the parent needs 2 models), got {}",
                k_all.saturating_sub(2),
                plan.n_new
            ),
        ));
    }
    if plan.incumbents == 0 {
        return Err(CoreError::invalid("incumbents", "must be at least 1"));
    }
    let new = draw_newcomers(k_all, plan.n_new, template.seed, trial);
    let old: Vec<u32> = (0..k_all as u32).filter(|&m| !new[m as usize]).collect();
    let newcomers: Vec<u32> = (0..k_all as u32).filter(|&m| new[m as usize]).collect();

    // The parent search, and every (model, item) it graded: the cache the others start from.
    let mut cache: HashSet<u64> = HashSet::new();
    let parent = run_pool(template, matrix, &old, plan.parent_budget, trial, |m, i| {
        cache.insert(key(m, i));
    })?;
    let parent_pick = old[parent.recommendation().expect("a finished search picks") as usize];

    // Incumbents: the parent's top k (its ranking: winner, survivors, then by elimination).
    let top: Vec<u32> = ranking(&parent)
        .into_iter()
        .take(plan.incumbents)
        .map(|r| r.model)
        .collect();
    let free: u64 = top
        .iter()
        .map(|&m| parent.arms().seen[m as usize] as u64)
        .sum();
    let mut pool: Vec<u32> = top.iter().map(|&m| old[m as usize]).collect();
    pool.extend(&newcomers);
    let depth = parent.arms().seen[top[0] as usize] as u64;
    let budget = incremental_budget(
        &template.algorithm,
        pool.len(),
        matrix.n_items(),
        plan.per_newcomer * plan.n_new as u64 + free,
        depth,
    );
    let mut inc_template = template.clone();
    if plan.warm {
        let arms = parent.arms();
        let mut priors: Vec<(f64, f64)> = top
            .iter()
            .map(|&m| {
                let (s, n) = (
                    arms.successes[m as usize] as f64,
                    arms.seen[m as usize] as f64,
                );
                (1.0 + s, 1.0 + n - s)
            })
            .collect();
        priors.resize(pool.len(), (1.0, 1.0));
        inc_template.algorithm = Algorithm::BayesElimination;
        inc_template.priors = Some(priors);
    }
    let mut paid = 0u64;
    let inc = run_pool(&inc_template, matrix, &pool, budget, trial, |m, i| {
        paid += !cache.contains(&key(m, i)) as u64;
    })?;

    let all: Vec<u32> = (0..k_all as u32).collect();
    let mut full_paid = 0u64;
    let full = run_pool(template, matrix, &all, plan.full_budget, trial, |m, i| {
        full_paid += !cache.contains(&key(m, i)) as u64;
    })?;
    Ok(IncrementalOutcome {
        parent_pick,
        pick: pool[inc.recommendation().expect("a finished search picks") as usize],
        spent: inc.spent(),
        paid,
        full_pick: full.recommendation().expect("a finished search picks"),
        full_spent: full.spent(),
        full_paid,
    })
}

/// `run_incremental_trial` for `trials` in parallel; the first is run alone to check the plan.
pub fn run_incremental_trials(
    template: &SearchConfig,
    matrix: Matrix,
    plan: IncrementalPlan,
    trials: Range<u64>,
) -> Result<Vec<IncrementalOutcome>> {
    run_incremental_trial(template, matrix, plan, trials.start)?;
    trials
        .into_par_iter()
        .map(|t| run_incremental_trial(template, matrix, plan, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix_data(k: usize, n: usize) -> Vec<u8> {
        // Model m answers item i right with a rate rising in m (model k-1 is the best).
        (0..k * n)
            .map(|x| {
                let (m, i) = (x / n, x % n);
                (mix64((m * 131 + i) as u64) % 1000 < (300 + 600 * m / k) as u64) as u8
            })
            .collect()
    }

    fn config(k: usize, n: usize) -> SearchConfig {
        let algorithm = Algorithm::from_name("sh_correlated", &Default::default()).unwrap();
        SearchConfig::new(algorithm, k, n, 0, 11)
    }

    /// Same seed and trial: the incumbents' first items are the parent's, so part of what the
    /// incremental search and the full re-search spend was already paid for by the parent.
    #[test]
    fn incumbents_reuse_the_parents_answers() {
        let (k, n) = (60, 400);
        let data = matrix_data(k, n);
        let matrix = Matrix::new(&data, k, n).unwrap();
        let plan = IncrementalPlan {
            n_new: 6,
            incumbents: 4,
            parent_budget: 54 * 20,
            per_newcomer: 20,
            full_budget: 60 * 20,
            warm: false,
        };
        for trial in 0..20 {
            let out = run_incremental_trial(&config(k, n), matrix, plan, trial).unwrap();
            assert!(out.paid < out.spent, "trial {trial}: {out:?}");
            assert!(out.full_paid < out.full_spent, "trial {trial}: {out:?}");
            // Well under searching the tree again without the cache.
            assert!(out.paid * 2 < out.full_spent, "trial {trial}: {out:?}");
        }
    }

    /// A planted best newcomer (far ahead of everyone) is found; with no better newcomer the
    /// parent's pick stays.
    #[test]
    fn finds_a_clearly_better_newcomer() {
        let (k, n) = (40, 300);
        let mut data = matrix_data(k, n);
        for v in &mut data[(k - 1) * n..] {
            *v = 1; // the best model answers everything
        }
        let matrix = Matrix::new(&data, k, n).unwrap();
        let plan = IncrementalPlan {
            n_new: 4,
            incumbents: 3,
            parent_budget: 36 * 25,
            per_newcomer: 25,
            full_budget: 40 * 25,
            warm: false,
        };
        let mut new_best = 0;
        for trial in 0..40 {
            let plan = IncrementalPlan {
                warm: trial % 2 == 1, // the warm start must find it too
                ..plan
            };
            let out = run_incremental_trial(&config(k, n), matrix, plan, trial).unwrap();
            let is_new = draw_newcomers(k, 4, 11, trial)[k - 1];
            if is_new {
                new_best += 1;
                assert_eq!(out.pick, (k - 1) as u32, "trial {trial}");
            } else {
                assert_eq!(out.parent_pick, (k - 1) as u32, "trial {trial}");
                assert_eq!(out.pick, out.parent_pick, "trial {trial}");
            }
        }
        assert!(new_best > 0, "no trial drew the best model as new");
    }

    #[test]
    fn budget_reaches_the_parents_depth_within_a_full_evaluation() {
        let sh = Algorithm::from_name("sh_correlated", &Default::default()).unwrap();
        // 12 models: 4 rounds; the winner read 100 items.
        assert_eq!(incremental_budget(&sh, 12, 1000, 50, 100), 400);
        assert_eq!(incremental_budget(&sh, 12, 1000, 900, 100), 900);
        // Never above a full evaluation of the pool, never below the algorithm's minimum.
        assert_eq!(incremental_budget(&sh, 12, 20, 50, 100), 240);
        assert_eq!(
            incremental_budget(&sh, 12, 1000, 0, 0),
            min_budget(&sh, 12, 1000)
        );
    }

    #[test]
    fn rejects_plans_without_newcomers_or_incumbents() {
        let data = matrix_data(10, 20);
        let matrix = Matrix::new(&data, 10, 20).unwrap();
        let plan = IncrementalPlan {
            n_new: 0,
            incumbents: 2,
            parent_budget: 100,
            per_newcomer: 5,
            full_budget: 100,
            warm: false,
        };
        let err = run_incremental_trial(&config(10, 20), matrix, plan, 0).unwrap_err();
        assert!(err.to_string().contains("n_new"), "{err}");
        let plan = IncrementalPlan {
            n_new: 2,
            incumbents: 0,
            ..plan
        };
        let err = run_incremental_trial(&config(10, 20), matrix, plan, 0).unwrap_err();
        assert!(err.to_string().contains("incumbents"), "{err}");
    }
}
