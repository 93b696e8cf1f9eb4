//! gemfinder core: bandit state, elimination logic and the Monte Carlo simulator.
//!
//! Pure logic lives in the modules below and is tested with `cargo test`; `python` only
//! converts types for the `gemfinder._core` extension module.
pub mod algorithms;
pub mod arms;
pub mod certificate;
pub mod config;
pub mod error;
pub mod incremental;
pub mod params;
pub mod policy;
pub mod ranking;
pub mod rng;
pub mod sampling;
pub mod scheduler;
pub mod session;
pub mod simulate;
mod work;

#[cfg(feature = "python")]
mod python;
