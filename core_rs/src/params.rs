//! Numeric parameters of a search: the valid range of each and their checked reading from a
//! request. Which algorithm takes which parameter is in `algorithms.rs`.
use std::collections::BTreeMap;

use crate::error::{CoreError, Result};

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

/// Parameters every algorithm takes besides its own.
pub const COMMON_PARAMS: &[ParamRange] = &[MAX_ATTEMPTS];

/// A request's parameters by name; every read checks the value against its range.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a>(pub &'a BTreeMap<String, f64>);

impl Params<'_> {
    /// The value given for `range`, checked; None when the request does not name it.
    pub fn get(&self, range: &ParamRange) -> Result<Option<f64>> {
        self.0.get(range.name).map(|&v| range.check(v)).transpose()
    }

    /// The value given for `range` or `default`, checked.
    pub fn get_or(&self, range: &ParamRange, default: f64) -> Result<f64> {
        range.check(self.0.get(range.name).copied().unwrap_or(default))
    }
}
