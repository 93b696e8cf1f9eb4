//! PyO3 binding of the fixed-confidence search (`certified.rs`): the same surface as
//! `Scheduler`, so the runner drives either, plus the certificate.
use std::collections::BTreeSet;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{to_py, RankedModel};
use crate::certificate::Target;
use crate::certified::{self, CertifiedSearch};
use crate::error::{CoreError, Result};
use crate::params::MAX_ATTEMPTS;
use crate::scheduler::Pull;

/// First bytes of a fixed-confidence snapshot: "GEMFNC" and the layout version (bincode 1 of
/// [`State`]; a change bumps it, as for `session::SNAPSHOT_HEADER`).
const HEADER: &[u8; 8] = b"GEMFNC01";

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    search: CertifiedSearch,
    in_flight: BTreeSet<Pull>,
}

/// Ask/tell fixed-confidence search of one pool: stops as soon as its leader is certified
/// within `epsilon` of every model at `delta`, or when `budget` is spent.
#[pyclass(module = "gemfinder._core")]
pub(super) struct CertifiedScheduler {
    state: State,
}

impl CertifiedScheduler {
    fn take(&mut self, pull: Pull) -> Result<()> {
        if self.state.in_flight.remove(&pull) {
            Ok(())
        } else {
            Err(CoreError::UnknownPull {
                model: pull.model,
                item: pull.item,
            })
        }
    }
}

#[pymethods]
impl CertifiedScheduler {
    #[new]
    #[pyo3(signature = (n_models, n_items, budget, seed, epsilon, delta, max_attempts=3.0))]
    fn new(
        n_models: usize,
        n_items: usize,
        budget: u64,
        seed: u64,
        epsilon: f64,
        delta: f64,
        max_attempts: f64,
    ) -> PyResult<Self> {
        let target = Target::new(epsilon, delta).map_err(to_py)?;
        // The range every search checks (params.rs): a whole number from 1 to 10.
        let max_attempts = MAX_ATTEMPTS.check(max_attempts).map_err(to_py)? as u32;
        let search = CertifiedSearch::new(n_models, n_items, budget, seed, 0, target, max_attempts)
            .map_err(to_py)?;
        Ok(CertifiedScheduler {
            state: State {
                search,
                in_flight: BTreeSet::new(),
            },
        })
    }

    #[pyo3(signature = (max_pulls=None))]
    fn ask(&mut self, max_pulls: Option<usize>) -> Vec<(u32, u32)> {
        let mut pulls = Vec::new();
        let max = max_pulls.unwrap_or(usize::MAX);
        self.state.search.next_pulls(max, &mut pulls);
        self.state.in_flight.extend(pulls.iter().copied());
        pulls.into_iter().map(|p| (p.model, p.item)).collect()
    }

    /// (model, item, correct) in order, correct None for a failed pull; returns the pulls
    /// skipped by this batch. Stops at the first pull not in flight (raised).
    fn tell_many(&mut self, answers: Vec<(u32, u32, Option<bool>)>) -> PyResult<Vec<(u32, u32)>> {
        let mut skipped = Vec::new();
        for (model, item, correct) in answers {
            let pull = Pull { model, item };
            self.take(pull).map_err(to_py)?;
            match correct {
                Some(correct) => self.state.search.record(pull, correct),
                None => {
                    let before = self.state.search.skipped();
                    self.state.search.record_failure(pull);
                    if self.state.search.skipped() > before {
                        skipped.push((model, item));
                    }
                }
            }
        }
        Ok(skipped)
    }

    fn tell(&mut self, model: u32, item: u32, correct: bool) -> PyResult<()> {
        self.tell_many(vec![(model, item, Some(correct))])
            .map(|_| ())
    }

    fn tell_failed(&mut self, model: u32, item: u32) -> PyResult<()> {
        self.tell_many(vec![(model, item, None)]).map(|_| ())
    }

    fn release_in_flight(&mut self) -> usize {
        let pulls: Vec<Pull> = std::mem::take(&mut self.state.in_flight)
            .into_iter()
            .collect();
        for &pull in pulls.iter().rev() {
            self.state.search.requeue(pull);
        }
        pulls.len()
    }

    fn in_flight_pulls(&self) -> Vec<(u32, u32)> {
        self.state
            .in_flight
            .iter()
            .map(|p| (p.model, p.item))
            .collect()
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut bytes = HEADER.to_vec();
        bincode::serialize_into(&mut bytes, &self.state).expect("serialising to memory");
        PyBytes::new(py, &bytes)
    }

    #[staticmethod]
    fn restore(data: &[u8]) -> PyResult<Self> {
        let body = data.strip_prefix(HEADER.as_slice()).ok_or_else(|| {
            to_py(CoreError::CorruptSnapshot(
                "not a fixed-confidence snapshot (bad header)".into(),
            ))
        })?;
        let state: State = bincode::deserialize(body)
            .map_err(|e| to_py(CoreError::CorruptSnapshot(e.to_string())))?;
        Ok(CertifiedScheduler { state })
    }

    #[getter]
    fn finished(&self) -> bool {
        self.state.search.is_finished()
    }
    #[getter]
    fn spent(&self) -> u64 {
        self.state.search.spent()
    }
    #[getter]
    fn in_flight(&self) -> u64 {
        self.state.search.in_flight()
    }
    #[getter]
    fn failed(&self) -> u64 {
        self.state.search.failed()
    }
    #[getter]
    fn skipped(&self) -> u64 {
        self.state.search.skipped()
    }
    #[getter]
    fn budget(&self) -> u64 {
        self.state.search.budget()
    }
    /// `ask` hands out a whole stretch at once, like a round.
    #[getter]
    fn round_based(&self) -> bool {
        true
    }
    #[getter]
    fn algorithm(&self) -> &'static str {
        "certified"
    }
    #[getter]
    fn n_models(&self) -> usize {
        self.state.search.n_models()
    }
    #[getter]
    fn n_items(&self) -> usize {
        self.state.search.n_items()
    }
    /// None, as for algorithms without rounds: stretches are not planned in advance.
    #[getter]
    fn round(&self) -> Option<(usize, usize)> {
        None
    }
    /// Stretches (one per grid point) closed so far.
    #[getter]
    fn stretches(&self) -> u32 {
        self.state.search.stretches()
    }
    #[getter]
    fn recommendation(&self) -> Option<u32> {
        let search = &self.state.search;
        search.is_finished().then_some(search.leader())
    }
    /// Epsilon reached at delta by the current leader (1.0 before the first grid point).
    #[getter]
    fn epsilon_reached(&self) -> f64 {
        self.state.search.epsilon_reached()
    }
    #[getter]
    fn leader(&self) -> u32 {
        self.state.search.leader()
    }
    #[getter]
    fn epsilon(&self) -> f64 {
        self.state.search.target().epsilon
    }
    #[getter]
    fn delta(&self) -> f64 {
        self.state.search.target().delta
    }

    fn survivors(&self) -> Vec<u32> {
        self.state.search.survivors().to_vec()
    }

    fn ranking(&self) -> Vec<RankedModel> {
        certified::ranking(&self.state.search)
            .into_iter()
            .map(RankedModel::from)
            .collect()
    }
}
