//! What a search is asked to do: the algorithm with its parameters, the pool and the budget.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The algorithm the service and `gemfinder simulate` use when none is named.
pub const DEFAULT_ALGORITHM: &str = "gem";

/// How the items of a round are drawn for its survivors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sampling {
    /// One fresh batch of items per round, answered by every survivor (paired comparisons).
    Correlated,
    /// Each model reads its own items.
    Independent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Algorithm {
    Uniform,
    SequentialHalving {
        sampling: Sampling,
    },
    /// Correlated SH whose first round spends `first_round_share` of the budget on every
    /// model and keeps only `first_cut` of them ([`FIRST_CUT_AUTO`]: [`gem_first_cut`]).
    GemSearch {
        first_round_share: f64,
        first_cut: usize,
    },
    SuccessiveRejects,
    TopTwoThompson {
        leader_prob: f64,
        max_resample: u32,
    },
    BayesElimination,
    Ucb {
        c: f64,
    },
    /// `a = None` derives the exploration constant from the budget (see policy::ucb).
    UcbE {
        a: Option<f64>,
    },
    Random,
    BestBase,
}

/// Names accepted by `Algorithm::from_name`, in the order tables print them.
pub const ALGORITHM_NAMES: &[&str] = &[
    "random",
    "best_base",
    "uniform",
    "sh",
    "sh_correlated",
    "sr",
    "ttts",
    "bayes_elim",
    "ucb",
    "ucb_e",
    "gem",
];

/// Default parameters of gem search, chosen by `bench/choose_gem_defaults.py` on held-out
/// synthetic trees (docs/search.md): against the reference method as the benchmarks read it
/// (m = 100, f = 0.2) they lower the mean rank by 3% in geometric mean over 100 (pool, budget)
/// cases, and are never significantly worse in any.
pub const GEM_FIRST_ROUND_SHARE: f64 = 0.2;
pub const GEM_FIRST_CUT: usize = 200;

/// `first_cut` when a request names none: resolved per pool by [`gem_first_cut`]. (A stored
/// value, not an Option, so that snapshots keep their layout.)
pub const FIRST_CUT_AUTO: usize = 0;

/// The default first cut of a pool of `n_models`: a fifth of the pool, at least
/// [`GEM_FIRST_CUT`]. A fixed count would keep an ever smaller share of a growing pool on the
/// same round-1 evidence (two items per model at 10 queries per model); on synthetic pools of
/// 1,000-4,000 models a fifth lowers the mean rank by 10% against 200 in geometric mean
/// (docs/search.md). Up to 1,000 models it is 200, the benchmarked default.
pub fn gem_first_cut(first_cut: usize, n_models: usize) -> usize {
    if first_cut == FIRST_CUT_AUTO {
        GEM_FIRST_CUT.max(n_models / 5)
    } else {
        first_cut
    }
}

impl Algorithm {
    /// Build an algorithm from its name and numeric parameters; unknown parameters are errors.
    pub fn from_name(name: &str, params: &BTreeMap<String, f64>) -> Result<Self> {
        let name = if name == "default" {
            DEFAULT_ALGORITHM
        } else {
            name
        };
        let allowed: &[&str] = match name {
            "gem" => &["first_round_share", "first_cut"],
            "ttts" => &["leader_prob", "max_resample"],
            "ucb" => &["c"],
            "ucb_e" => &["a"],
            _ => &[],
        };
        for key in params.keys() {
            if key != "max_attempts" && !allowed.contains(&key.as_str()) {
                let known = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                };
                return Err(CoreError::invalid(
                    &format!("params.{key}"),
                    format!("{name} has no parameter '{key}' (its parameters: {known})"),
                ));
            }
        }
        let get = |key: &str, default: f64| params.get(key).copied().unwrap_or(default);
        let algorithm = match name {
            "uniform" => Algorithm::Uniform,
            "sh" => Algorithm::SequentialHalving {
                sampling: Sampling::Independent,
            },
            "sh_correlated" => Algorithm::SequentialHalving {
                sampling: Sampling::Correlated,
            },
            "gem" => {
                let share = get("first_round_share", GEM_FIRST_ROUND_SHARE);
                if !(share > 0.0 && share < 1.0) {
                    return Err(CoreError::invalid(
                        "params.first_round_share",
                        format!("must be strictly between 0 and 1, got {share}"),
                    ));
                }
                let cut = get("first_cut", FIRST_CUT_AUTO as f64);
                if params.contains_key("first_cut") && !(cut >= 1.0 && cut.fract() == 0.0) {
                    return Err(CoreError::invalid(
                        "params.first_cut",
                        format!("must be a whole number of models >= 1, got {cut}"),
                    ));
                }
                Algorithm::GemSearch {
                    first_round_share: share,
                    first_cut: cut as usize,
                }
            }
            "sr" => Algorithm::SuccessiveRejects,
            "ttts" => {
                let leader_prob = get("leader_prob", 0.5);
                if !(leader_prob > 0.0 && leader_prob < 1.0) {
                    return Err(CoreError::invalid(
                        "params.leader_prob",
                        format!("must be strictly between 0 and 1, got {leader_prob}"),
                    ));
                }
                let max_resample = get("max_resample", 32.0);
                if !(max_resample >= 1.0 && max_resample.fract() == 0.0) {
                    return Err(CoreError::invalid(
                        "params.max_resample",
                        format!("must be a whole number >= 1, got {max_resample}"),
                    ));
                }
                Algorithm::TopTwoThompson {
                    leader_prob,
                    max_resample: max_resample as u32,
                }
            }
            "bayes_elim" => Algorithm::BayesElimination,
            "ucb" => {
                let c = get("c", 2.0);
                positive("params.c", c)?;
                Algorithm::Ucb { c }
            }
            "ucb_e" => {
                let a = params.get("a").copied();
                if let Some(a) = a {
                    positive("params.a", a)?;
                }
                Algorithm::UcbE { a }
            }
            "random" => Algorithm::Random,
            "best_base" => Algorithm::BestBase,
            other => {
                return Err(CoreError::UnknownAlgorithm(
                    other.to_string(),
                    format!("default, {}", ALGORITHM_NAMES.join(", ")),
                ))
            }
        };
        Ok(algorithm)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Uniform => "uniform",
            Algorithm::SequentialHalving {
                sampling: Sampling::Independent,
            } => "sh",
            Algorithm::SequentialHalving {
                sampling: Sampling::Correlated,
            } => "sh_correlated",
            Algorithm::GemSearch { .. } => "gem",
            Algorithm::SuccessiveRejects => "sr",
            Algorithm::TopTwoThompson { .. } => "ttts",
            Algorithm::BayesElimination => "bayes_elim",
            Algorithm::Ucb { .. } => "ucb",
            Algorithm::UcbE { .. } => "ucb_e",
            Algorithm::Random => "random",
            Algorithm::BestBase => "best_base",
        }
    }

    /// Whether the algorithm works in rounds (hands out a whole round of pulls at once).
    pub fn is_round_based(&self) -> bool {
        matches!(
            self,
            Algorithm::Uniform
                | Algorithm::SequentialHalving { .. }
                | Algorithm::GemSearch { .. }
                | Algorithm::SuccessiveRejects
                | Algorithm::BayesElimination
        )
    }
}

fn positive(field: &str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(CoreError::invalid(
            field,
            format!("must be a positive number, got {value}"),
        ))
    }
}

/// Everything needed to start a search. `trial` selects an independent random stream for the
/// same seed, so Monte Carlo trials are reproducible one by one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    pub algorithm: Algorithm,
    pub n_models: usize,
    pub n_items: usize,
    pub budget: u64,
    pub seed: u64,
    pub trial: u64,
    /// How often one (model, item) pull may fail before it is skipped.
    pub max_attempts: u32,
    /// Beta prior (alpha, beta) per model, for Bayesian elimination.
    pub priors: Option<Vec<(f64, f64)>>,
    /// Popularity (downloads) per model, for the best-base reference row.
    pub popularity: Option<Vec<f64>>,
}

impl SearchConfig {
    pub fn new(
        algorithm: Algorithm,
        n_models: usize,
        n_items: usize,
        budget: u64,
        seed: u64,
    ) -> Self {
        SearchConfig {
            algorithm,
            n_models,
            n_items,
            budget,
            seed,
            trial: 0,
            max_attempts: 3,
            priors: None,
            popularity: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.n_models == 0 {
            return Err(CoreError::invalid("n_models", "needs at least one model"));
        }
        if self.n_models > u32::MAX as usize {
            return Err(CoreError::invalid("n_models", "at most 2^32 - 1 models"));
        }
        if self.n_items == 0 {
            return Err(CoreError::invalid("n_items", "needs at least one item"));
        }
        if self.n_items > u32::MAX as usize {
            return Err(CoreError::invalid("n_items", "at most 2^32 - 1 items"));
        }
        if self.max_attempts == 0 {
            return Err(CoreError::invalid("max_attempts", "must be at least 1"));
        }
        if let Some(priors) = &self.priors {
            if priors.len() != self.n_models {
                return Err(CoreError::invalid(
                    "priors",
                    format!("{} priors for {} models", priors.len(), self.n_models),
                ));
            }
            if let Some((i, _)) = priors
                .iter()
                .enumerate()
                .find(|(_, (a, b))| !(*a > 0.0 && *b > 0.0 && a.is_finite() && b.is_finite()))
            {
                return Err(CoreError::invalid(
                    "priors",
                    format!("prior of model {i} must have positive finite alpha and beta"),
                ));
            }
        }
        if let Some(popularity) = &self.popularity {
            if popularity.len() != self.n_models {
                return Err(CoreError::invalid(
                    "popularity",
                    format!("{} values for {} models", popularity.len(), self.n_models),
                ));
            }
            if popularity.iter().any(|p| !(p.is_finite() && *p >= 0.0)) {
                return Err(CoreError::invalid(
                    "popularity",
                    "values must be finite and >= 0",
                ));
            }
        }
        if self.algorithm == Algorithm::BestBase && self.popularity.is_none() {
            return Err(CoreError::invalid(
                "popularity",
                "best_base needs the popularity (downloads) of every model",
            ));
        }
        Ok(())
    }
}
