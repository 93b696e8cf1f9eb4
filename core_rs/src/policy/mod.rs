//! Decision rules: how round-based algorithms plan rounds, how sequential ones pick the next arm,
//! and the reference rows that pick without querying. The table in `algorithms.rs` says which
//! rule each algorithm uses.
pub mod reference;
pub mod round_plan;
pub mod sequential;
pub mod thompson;
pub mod ucb;
