//! Decision rules: how round-based algorithms plan rounds, how sequential ones pick the next arm.
pub mod round_plan;
pub mod sequential;
pub mod thompson;
pub mod ucb;
