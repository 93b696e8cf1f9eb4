//! Every algorithm the core runs, one table entry each: its name, the parameters it takes (with
//! their ranges, `params.rs`), whether it works in rounds, and how it is built from a request.
//!
//! Adding an algorithm: a variant of [`Algorithm`] (appended, so stored snapshots keep their
//! layout: see `session.rs`), one [`AlgorithmSpec`] in [`ALGORITHMS`] whose [`Style`] names its
//! policy (a round plan in `policy/round_plan.rs` or an arm choice in `policy/`), and its arms in
//! [`Algorithm::spec`] and [`Algorithm::stored_params`], exhaustive matches the compiler checks.
//! The scheduler dispatches through the entry; it names an algorithm only where one differs from
//! a default every other shares (SH's independent items, UCB-E's constant, posterior scoring).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::params::{
    ParamRange, Params, COMMON_PARAMS, FIRST_CUT, FIRST_ROUND_SHARE, LEADER_PROB, MAX_RESAMPLE,
    UCB_C, UCB_E_A,
};
use crate::policy::reference::{self, Picker};
use crate::policy::round_plan::{self, RoundPlan};
use crate::policy::sequential::{Choice, Chooser};

/// The algorithm the service and `gemfinder simulate` use when none is named: correlated SH
/// without a first cut, chosen by bench/studies/choose_default.py (issue 16; docs/results.md). The
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

/// An algorithm with its parameters, as a search holds and stores it. The order of the variants
/// and of their fields is part of the snapshot layout.
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

/// How an algorithm spends its budget, with the policy that decides.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    /// Picks a model without querying any (reference rows, `policy/reference.rs`).
    Immediate(Picker),
    /// Hands out a whole round of pulls at once: the plan of a pool of n models
    /// (`policy/round_plan.rs`).
    Rounds(fn(&Algorithm, usize) -> RoundPlan),
    /// Chooses each pull from the grades received so far (`policy/sequential.rs`).
    Sequential(Chooser),
}

/// One row of the algorithm table.
#[derive(Debug)]
pub struct AlgorithmSpec {
    /// The name requests and `--algorithms` use.
    pub name: &'static str,
    /// Its own parameters (besides [`COMMON_PARAMS`]), with their ranges.
    pub params: &'static [ParamRange],
    pub style: Style,
    /// Build it from a request's parameters (defaults for those not given); every read checks
    /// the value against its range, in the order of `params`.
    pub build: fn(Params) -> Result<Algorithm>,
}

/// A policy in the table is only ever given its own algorithm: `Algorithm::spec` maps each
/// variant to its entry (checked for every entry by the tests below).
const ONLY_ITS_OWN: &str = "a policy is given only the algorithm of its table entry";

const RANDOM: AlgorithmSpec = AlgorithmSpec {
    name: "random",
    params: &[],
    style: Style::Immediate(reference::random),
    build: |_| Ok(Algorithm::Random),
};
const BEST_BASE: AlgorithmSpec = AlgorithmSpec {
    name: "best_base",
    params: &[],
    style: Style::Immediate(reference::best_base),
    build: |_| Ok(Algorithm::BestBase),
};
const UNIFORM: AlgorithmSpec = AlgorithmSpec {
    name: "uniform",
    params: &[],
    style: Style::Rounds(|_, k| round_plan::uniform(k)),
    build: |_| Ok(Algorithm::Uniform),
};
const SH: AlgorithmSpec = AlgorithmSpec {
    name: "sh",
    params: &[],
    style: Style::Rounds(|_, k| round_plan::halving(k)),
    build: |_| {
        Ok(Algorithm::SequentialHalving {
            sampling: Sampling::Independent,
        })
    },
};
const SH_CORRELATED: AlgorithmSpec = AlgorithmSpec {
    name: "sh_correlated",
    params: &[],
    style: Style::Rounds(|_, k| round_plan::halving(k)),
    build: |_| {
        Ok(Algorithm::SequentialHalving {
            sampling: Sampling::Correlated,
        })
    },
};
const SR: AlgorithmSpec = AlgorithmSpec {
    name: "sr",
    params: &[],
    style: Style::Rounds(|_, k| round_plan::successive_rejects(k)),
    build: |_| Ok(Algorithm::SuccessiveRejects),
};
const TTTS: AlgorithmSpec = AlgorithmSpec {
    name: "ttts",
    params: &[LEADER_PROB, MAX_RESAMPLE],
    style: Style::Sequential(|algorithm, c: Choice| {
        let Algorithm::TopTwoThompson {
            leader_prob,
            max_resample,
        } = *algorithm
        else {
            unreachable!("{ONLY_ITS_OWN}")
        };
        let thompson = c.derived.thompson(c.arms, c.open);
        thompson.choose(c.open, leader_prob, max_resample, c.rng)
    }),
    build: |p| {
        Ok(Algorithm::TopTwoThompson {
            leader_prob: p.get_or(&LEADER_PROB, 0.5)?,
            max_resample: p.get_or(&MAX_RESAMPLE, 32.0)? as u32,
        })
    },
};
const BAYES_ELIM: AlgorithmSpec = AlgorithmSpec {
    name: "bayes_elim",
    params: &[],
    style: Style::Rounds(|_, k| round_plan::halving(k)),
    build: |_| Ok(Algorithm::BayesElimination),
};
const UCB: AlgorithmSpec = AlgorithmSpec {
    name: "ucb",
    params: &[UCB_C],
    style: Style::Sequential(|algorithm, c: Choice| {
        let Algorithm::Ucb { c: constant } = *algorithm else {
            unreachable!("{ONLY_ITS_OWN}")
        };
        let index = c.derived.ucb(c.arms, c.open, constant);
        index.choose(c.spent, c.tie_seed, c.salt)
    }),
    build: |p| {
        Ok(Algorithm::Ucb {
            c: p.get_or(&UCB_C, 2.0)?,
        })
    },
};
const UCB_E: AlgorithmSpec = AlgorithmSpec {
    name: "ucb_e",
    params: &[UCB_E_A],
    style: Style::Sequential(|_, c: Choice| {
        let index = c.derived.ucb_e(c.arms, c.open, c.ucb_e_a);
        index.choose(c.tie_seed, c.salt)
    }),
    build: |p| {
        Ok(Algorithm::UcbE {
            a: p.get(&UCB_E_A)?,
        })
    },
};
const GEM: AlgorithmSpec = AlgorithmSpec {
    name: "gem",
    params: &[FIRST_ROUND_SHARE, FIRST_CUT],
    style: Style::Rounds(|algorithm, k| {
        let Algorithm::GemSearch {
            first_round_share,
            first_cut,
        } = *algorithm
        else {
            unreachable!("{ONLY_ITS_OWN}")
        };
        round_plan::gem(first_round_share, first_cut, k)
    }),
    build: |p| {
        Ok(Algorithm::GemSearch {
            first_round_share: p.get_or(&FIRST_ROUND_SHARE, GEM_FIRST_ROUND_SHARE)?,
            first_cut: p
                .get(&FIRST_CUT)?
                .map_or(FIRST_CUT_AUTO, |cut| cut as usize),
        })
    },
};

/// The algorithm table, in the order tables print the algorithms.
pub const ALGORITHMS: &[AlgorithmSpec] = &[
    RANDOM,
    BEST_BASE,
    UNIFORM,
    SH,
    SH_CORRELATED,
    SR,
    TTTS,
    BAYES_ELIM,
    UCB,
    UCB_E,
    GEM,
];

/// Names accepted by `Algorithm::from_name` (besides "default"), in table order.
pub const ALGORITHM_NAMES: [&str; ALGORITHMS.len()] = {
    let mut names = [""; ALGORITHMS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = ALGORITHMS[i].name;
        i += 1;
    }
    names
};

/// Default parameters of gem search, chosen by `bench/studies/choose_gem_defaults.py` on held-out
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
    /// [`COMMON_PARAMS`] are allowed here and read by `SearchConfig::from_request`.
    pub fn from_name(name: &str, params: &BTreeMap<String, f64>) -> Result<Self> {
        let name = if name == "default" {
            DEFAULT_ALGORITHM
        } else {
            name
        };
        let spec = ALGORITHMS
            .iter()
            .find(|spec| spec.name == name)
            .ok_or_else(|| {
                CoreError::UnknownAlgorithm(
                    name.to_string(),
                    format!("default, {}", ALGORITHM_NAMES.join(", ")),
                )
            })?;
        let takes = |key: &str| {
            let mut all = spec.params.iter().chain(COMMON_PARAMS);
            all.any(|range| range.name == key)
        };
        if let Some(key) = params.keys().find(|key| !takes(key)) {
            let own: Vec<&str> = spec.params.iter().map(|range| range.name).collect();
            let known = if own.is_empty() {
                "none".to_string()
            } else {
                own.join(", ")
            };
            return Err(CoreError::invalid(
                &format!("params.{key}"),
                format!("{name} has no parameter '{key}' (its parameters: {known})"),
            ));
        }
        (spec.build)(Params(params))
    }

    /// This algorithm's row of the table.
    pub fn spec(&self) -> &'static AlgorithmSpec {
        match self {
            Algorithm::Uniform => &UNIFORM,
            Algorithm::SequentialHalving {
                sampling: Sampling::Independent,
            } => &SH,
            Algorithm::SequentialHalving {
                sampling: Sampling::Correlated,
            } => &SH_CORRELATED,
            Algorithm::GemSearch { .. } => &GEM,
            Algorithm::SuccessiveRejects => &SR,
            Algorithm::TopTwoThompson { .. } => &TTTS,
            Algorithm::BayesElimination => &BAYES_ELIM,
            Algorithm::Ucb { .. } => &UCB,
            Algorithm::UcbE { .. } => &UCB_E,
            Algorithm::Random => &RANDOM,
            Algorithm::BestBase => &BEST_BASE,
        }
    }

    /// The parameters this algorithm holds, as a request would name them (those left to a
    /// default derived later, such as gem's automatic first cut, are absent).
    pub fn stored_params(&self) -> BTreeMap<String, f64> {
        let values: Vec<(&ParamRange, f64)> = match *self {
            Algorithm::GemSearch {
                first_round_share,
                first_cut,
            } => {
                let mut values = vec![(&FIRST_ROUND_SHARE, first_round_share)];
                if first_cut != FIRST_CUT_AUTO {
                    values.push((&FIRST_CUT, first_cut as f64));
                }
                values
            }
            Algorithm::TopTwoThompson {
                leader_prob,
                max_resample,
            } => vec![
                (&LEADER_PROB, leader_prob),
                (&MAX_RESAMPLE, max_resample as f64),
            ],
            Algorithm::Ucb { c } => vec![(&UCB_C, c)],
            Algorithm::UcbE { a } => a.map(|a| (&UCB_E_A, a)).into_iter().collect(),
            Algorithm::Uniform
            | Algorithm::SequentialHalving { .. }
            | Algorithm::SuccessiveRejects
            | Algorithm::BayesElimination
            | Algorithm::Random
            | Algorithm::BestBase => vec![],
        };
        values
            .into_iter()
            .map(|(range, value)| (range.name.to_string(), value))
            .collect()
    }

    pub fn name(&self) -> &'static str {
        self.spec().name
    }

    /// Whether the algorithm works in rounds (hands out a whole round of pulls at once).
    pub fn is_round_based(&self) -> bool {
        matches!(self.spec().style, Style::Rounds(_))
    }

    /// Check the parameters an algorithm holds against the ranges of this version: a search
    /// stored by an older version (which accepted, e.g., max_resample 1e300, kept as 2^32 - 1)
    /// is refused on restore instead of looping for hours in one scheduler call.
    pub fn check_ranges(&self) -> Result<()> {
        (self.spec().build)(Params(&self.stored_params())).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{MAX_ATTEMPTS, PARAM_RANGES};

    fn parse(name: &str, key: &str, value: f64) -> Result<Algorithm> {
        Algorithm::from_name(name, &[(key.to_string(), value)].into())
    }

    #[test]
    fn every_table_entry_builds_an_algorithm_that_maps_back_to_it() {
        for spec in ALGORITHMS {
            let algorithm = Algorithm::from_name(spec.name, &BTreeMap::new()).unwrap();
            assert_eq!(algorithm.spec().name, spec.name);
            let rounds = matches!(spec.style, Style::Rounds(_));
            assert_eq!(algorithm.is_round_based(), rounds);
            // Stored parameters rebuild the same algorithm, at the defaults and at the tops.
            let rebuilt = Algorithm::from_name(spec.name, &algorithm.stored_params()).unwrap();
            assert_eq!(rebuilt, algorithm, "{}", spec.name);
            let tops: BTreeMap<String, f64> = spec
                .params
                .iter()
                .map(|r| (r.name.to_string(), top(r)))
                .collect();
            let at_tops = Algorithm::from_name(spec.name, &tops).unwrap();
            assert_eq!(at_tops.stored_params(), tops, "{}", spec.name);
        }
        let mut names = ALGORITHM_NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALGORITHMS.len(), "names are unique");
        assert!(ALGORITHM_NAMES.contains(&DEFAULT_ALGORITHM));
    }

    #[test]
    fn unknown_names_and_parameters_are_refused_with_what_is_known() {
        let err = Algorithm::from_name("nope", &BTreeMap::new()).unwrap_err();
        assert_eq!(err.field(), "algorithm");
        assert!(
            err.to_string()
                .contains("known: default, random, best_base"),
            "{err}"
        );
        let err = parse("sh", "c", 1.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "params.c: sh has no parameter 'c' (its parameters: none)"
        );
        let err = parse("gem", "c", 1.0).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("(its parameters: first_round_share, first_cut)"));
        assert!(parse("uniform", "max_attempts", 2.0).is_ok());
        assert_eq!(
            Algorithm::from_name("default", &BTreeMap::new())
                .unwrap()
                .name(),
            DEFAULT_ALGORITHM
        );
    }

    fn top(range: &ParamRange) -> f64 {
        if range.max_excluded {
            range.max - 1e-9
        } else {
            range.max
        }
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
            let Some(spec) = ALGORITHMS.iter().find(|s| s.params.contains(range)) else {
                continue; // a common parameter, checked below
            };
            let parsed = parse(spec.name, range.name, top(range)).unwrap();
            parsed.check_ranges().unwrap();
        }
        assert_eq!(MAX_ATTEMPTS.check(10.0), Ok(10.0));
    }
}
