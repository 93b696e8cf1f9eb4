//! gemfinder core: bandit state, elimination logic and the Monte Carlo simulator.
#[cfg(feature = "python")]
mod python;
