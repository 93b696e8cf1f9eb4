//! What a search is asked to do: the algorithm with its parameters, the pool and the budget.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::algorithms::Algorithm;
use crate::error::{CoreError, Result};
use crate::params::{Params, MAX_ATTEMPTS};

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

    /// A search as a request names it: the algorithm by name, its parameters and the common ones
    /// (`max_attempts`) in one map, each checked against its range.
    pub fn from_request(
        algorithm: &str,
        params: &BTreeMap<String, f64>,
        n_models: usize,
        n_items: usize,
        budget: u64,
        seed: u64,
    ) -> Result<Self> {
        let algorithm = Algorithm::from_name(algorithm, params)?;
        let mut config = SearchConfig::new(algorithm, n_models, n_items, budget, seed);
        if let Some(attempts) = Params(params).get(&MAX_ATTEMPTS)? {
            config.max_attempts = attempts as u32;
        }
        Ok(config)
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
