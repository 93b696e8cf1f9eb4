//! What a search is asked to do: the algorithm with its parameters, the pool and the budget.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The algorithm the service and `gemfinder simulate` use when none is named: correlated SH
/// without a first cut, chosen by bench/choose_default.py (issue 16; docs/results.md). The
/// service runs `bayes_elim` instead when every candidate has a prior score.
pub const DEFAULT_ALGORITHM: &str = "sh_correlated";

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
                FIRST_ROUND_SHARE.check(share)?;
                let cut = match params.get("first_cut") {
                    Some(&cut) => FIRST_CUT.check(cut)? as usize,
                    None => FIRST_CUT_AUTO,
                };
                Algorithm::GemSearch {
                    first_round_share: share,
                    first_cut: cut,
                }
            }
            "sr" => Algorithm::SuccessiveRejects,
            "ttts" => Algorithm::TopTwoThompson {
                leader_prob: LEADER_PROB.check(get("leader_prob", 0.5))?,
                max_resample: MAX_RESAMPLE.check(get("max_resample", 32.0))? as u32,
            },
            "bayes_elim" => Algorithm::BayesElimination,
            "ucb" => Algorithm::Ucb {
                c: UCB_C.check(get("c", 2.0))?,
            },
            "ucb_e" => Algorithm::UcbE {
                a: params.get("a").map(|&a| UCB_E_A.check(a)).transpose()?,
            },
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

    /// Check the parameters an algorithm holds against the ranges of this version: a search
    /// stored by an older version (which accepted, e.g., max_resample 1e300, kept as 2^32 - 1)
    /// is refused on restore instead of looping for hours in one scheduler call.
    pub fn check_ranges(&self) -> Result<()> {
        match *self {
            Algorithm::GemSearch {
                first_round_share,
                first_cut,
            } => {
                FIRST_ROUND_SHARE.check(first_round_share)?;
                if first_cut != FIRST_CUT_AUTO {
                    FIRST_CUT.check(first_cut as f64)?;
                }
            }
            Algorithm::TopTwoThompson {
                leader_prob,
                max_resample,
            } => {
                LEADER_PROB.check(leader_prob)?;
                MAX_RESAMPLE.check(max_resample as f64)?;
            }
            Algorithm::Ucb { c } => {
                UCB_C.check(c)?;
            }
            Algorithm::UcbE { a: Some(a) } => {
                UCB_E_A.check(a)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The valid range of one numeric parameter. Every parameter has one, chosen so that the
/// largest allowed value keeps one scheduler call's work bounded (docs/search.md, "Parameter
/// ranges"): a value outside it is an InvalidArgument naming `params.<name>`, never a search
/// that runs for hours inside one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamRange {
    pub name: &'static str,
    pub min: f64,
    pub max: f64,
    /// Whether `min` itself is excluded.
    pub min_excluded: bool,
    /// Whether `max` itself is excluded.
    pub max_excluded: bool,
    /// Whether only whole numbers are allowed.
    pub whole: bool,
}

impl ParamRange {
    /// The value if it is finite, in range and (for whole-number parameters) whole.
    pub fn check(&self, value: f64) -> Result<f64> {
        let above = value > self.min || (!self.min_excluded && value == self.min);
        let below = value < self.max || (!self.max_excluded && value == self.max);
        let inside = above && below; // false for NaN
        if inside && (!self.whole || value.fract() == 0.0) {
            return Ok(value);
        }
        let (lo, hi) = (show(self.min), show(self.max));
        let what = match (self.whole, self.min_excluded, self.max_excluded) {
            (true, _, _) => format!("a whole number from {lo} to {hi}"),
            (false, true, true) => format!("a number strictly between {lo} and {hi}"),
            (false, true, false) => format!("a number above {lo} and at most {hi}"),
            (false, false, _) => format!("a number from {lo} to {hi}"),
        };
        Err(CoreError::invalid(
            &format!("params.{}", self.name),
            format!("must be {what}, got {}", show(value)),
        ))
    }
}

/// A number as a person writes it: 1e300 rather than its 301 digits.
fn show(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-4..1e9).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// gem: share of the budget for the first round. Any share keeps the work the same (it only
/// splits the budget between rounds); 0 and 1 would leave a round without queries.
pub const FIRST_ROUND_SHARE: ParamRange = ParamRange {
    name: "first_round_share",
    min: 0.0,
    max: 1.0,
    min_excluded: true,
    max_excluded: true,
    whole: false,
};
/// gem: survivors of the first round. Adds at most log2(first_cut) rounds; values at or above
/// the pool size mean plain correlated halving. Capped at the largest pool the core takes.
pub const FIRST_CUT: ParamRange = ParamRange {
    name: "first_cut",
    min: 1.0,
    max: u32::MAX as f64,
    min_excluded: false,
    max_excluded: false,
    whole: true,
};
/// ttts: probability of pulling the leader. The challenger search it triggers is bounded by
/// `max_resample`.
pub const LEADER_PROB: ParamRange = ParamRange {
    name: "leader_prob",
    min: 0.0,
    max: 1.0,
    min_excluded: true,
    max_excluded: true,
    whole: false,
};
/// ttts: posterior draws spent looking for a challenger before taking the best other model of
/// the last draw. Each draw costs O(open models) in the worst case, so one choice costs at
/// most (max_resample + 1) draws. When the leader has won 1,000 draws in a row, the others
/// together win a draw with probability below 0.3% (95% confidence): more draws cost time and
/// change almost no choice.
pub const MAX_RESAMPLE: ParamRange = ParamRange {
    name: "max_resample",
    min: 1.0,
    max: 1000.0,
    min_excluded: false,
    max_excluded: false,
    whole: true,
};
/// ucb: exploration constant. Work does not depend on it; the cap keeps the index
/// sqrt(c ln t / n) finite and meaningful (at c = 100 the bonus already dominates any
/// difference of means for every budget the service takes: UCB is round robin).
pub const UCB_C: ParamRange = ParamRange {
    name: "c",
    min: 0.0,
    max: 100.0,
    min_excluded: true,
    max_excluded: false,
    whole: false,
};
/// ucb_e: exploration constant (the default derived from the budget is at most about 35,000
/// for the service's limits). At 10^6 the bonus sqrt(a / n) exceeds 3 for every model with
/// at most 100,000 items: round robin; larger values only risk overflow.
pub const UCB_E_A: ParamRange = ParamRange {
    name: "a",
    min: 0.0,
    max: 1e6,
    min_excluded: true,
    max_excluded: false,
    whole: false,
};
/// Any algorithm: tries of one (model, item) pull before it is skipped. Each try is one more
/// endpoint call (which the oracle itself retries); ten is plenty for a flaky endpoint, and the
/// runner stops a search once its failures exceed its budget anyway.
pub const MAX_ATTEMPTS: ParamRange = ParamRange {
    name: "max_attempts",
    min: 1.0,
    max: 10.0,
    min_excluded: false,
    max_excluded: false,
    whole: true,
};

/// Every parameter range, for the docs and the bindings.
pub const PARAM_RANGES: &[ParamRange] = &[
    FIRST_ROUND_SHARE,
    FIRST_CUT,
    LEADER_PROB,
    MAX_RESAMPLE,
    UCB_C,
    UCB_E_A,
    MAX_ATTEMPTS,
];

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
        MAX_ATTEMPTS.check(self.max_attempts as f64)?;
        self.algorithm.check_ranges()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, key: &str, value: f64) -> Result<Algorithm> {
        Algorithm::from_name(name, &[(key.to_string(), value)].into())
    }

    #[test]
    fn out_of_range_parameters_name_their_field() {
        let bad: &[(&str, &str, f64)] = &[
            ("ttts", "max_resample", 1e300),
            ("ttts", "max_resample", 1001.0),
            ("ttts", "max_resample", 0.0),
            ("ttts", "max_resample", 2.5),
            ("ttts", "max_resample", f64::NAN),
            ("ttts", "max_resample", f64::INFINITY),
            ("ttts", "leader_prob", 1.0),
            ("ttts", "leader_prob", f64::NAN),
            ("gem", "first_cut", 1e300),
            ("gem", "first_cut", -3.0),
            ("gem", "first_cut", 0.5),
            ("gem", "first_round_share", 0.0),
            ("gem", "first_round_share", f64::NAN),
            ("ucb", "c", 0.0),
            ("ucb", "c", 101.0),
            ("ucb", "c", f64::INFINITY),
            ("ucb_e", "a", -1.0),
            ("ucb_e", "a", 1e300),
            ("ucb_e", "a", f64::NAN),
        ];
        for &(name, key, value) in bad {
            let err = parse(name, key, value).unwrap_err();
            assert_eq!(err.field(), format!("params.{key}"), "{name} {key}={value}");
        }
        let err = parse("ttts", "max_resample", 1e300).unwrap_err();
        assert_eq!(
            err.to_string(),
            "params.max_resample: must be a whole number from 1 to 1000, got 1e300"
        );
        for bad in [0.0, 11.0, 1e300, f64::NAN, 1.5] {
            assert_eq!(
                MAX_ATTEMPTS.check(bad).unwrap_err().field(),
                "params.max_attempts"
            );
        }
    }

    #[test]
    fn the_largest_allowed_values_are_accepted() {
        for range in PARAM_RANGES {
            let algorithm = match range.name {
                "first_round_share" | "first_cut" => "gem",
                "leader_prob" | "max_resample" => "ttts",
                "c" => "ucb",
                "a" => "ucb_e",
                _ => continue,
            };
            let top = if range.max_excluded {
                range.max - 1e-9
            } else {
                range.max
            };
            let parsed = parse(algorithm, range.name, top).unwrap();
            parsed.check_ranges().unwrap();
        }
        assert_eq!(MAX_ATTEMPTS.check(10.0), Ok(10.0));
    }
}
