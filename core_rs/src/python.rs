//! PyO3 bindings for `gemfinder._core`: type conversion only, no search logic.
use std::collections::{BTreeMap, HashMap};

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::algorithms::{Algorithm, ALGORITHM_NAMES, DEFAULT_ALGORITHM};
use crate::certificate::{self, Target};
use crate::config::SearchConfig;
use crate::error::CoreError;
use crate::incremental::{self, IncrementalPlan};
use crate::ranking;
use crate::scheduler::{self, Pull};
use crate::session::Session;
use crate::simulate::{self, Estimate, Matrix, TrialOutcome};

mod certified;

create_exception!(
    gemfinder._core,
    SearchError,
    PyValueError,
    "A search request the core rejects; `kind`, `field` and `reason` say which rule, which field \
     and why."
);

fn to_py(err: CoreError) -> PyErr {
    let py_err = SearchError::new_err(err.to_string());
    Python::with_gil(|py| {
        let value = py_err.value(py);
        let _ = value.setattr("kind", err.kind().as_str());
        let _ = value.setattr("field", err.field());
        let _ = value.setattr("reason", err.reason());
        // The caller's layer rewrites a budget error in the caller's own numbers (total or
        // per model, before the gem check's reserve), so it needs these two unformatted.
        if let CoreError::BudgetTooSmall { needed, why, .. } = &err {
            let _ = value.setattr("needed", *needed);
            let _ = value.setattr("why", why.as_str());
        }
    });
    py_err
}

#[allow(clippy::too_many_arguments)]
fn make_config(
    algorithm: &str,
    n_models: usize,
    n_items: usize,
    budget: u64,
    seed: u64,
    params: Option<HashMap<String, f64>>,
    priors: Option<Vec<(f64, f64)>>,
    popularity: Option<Vec<f64>>,
) -> PyResult<SearchConfig> {
    let params: BTreeMap<String, f64> = params.unwrap_or_default().into_iter().collect();
    let mut config =
        SearchConfig::from_request(algorithm, &params, n_models, n_items, budget, seed)
            .map_err(to_py)?;
    config.priors = priors;
    config.popularity = popularity;
    config.validate().map_err(to_py)?;
    Ok(config)
}

/// One model's place in the final (or current) ranking.
#[pyclass(frozen, get_all, module = "gemfinder._core")]
#[derive(Clone)]
struct RankedModel {
    model: u32,
    rank: u32,
    successes: u32,
    seen: u32,
    mean: f64,
    lower: f64,
    upper: f64,
    eliminated_in_round: Option<u32>,
}

/// Both schedulers rank into the core's `ranking::RankedModel`; Python gets this copy of it.
impl From<ranking::RankedModel> for RankedModel {
    fn from(r: ranking::RankedModel) -> Self {
        RankedModel {
            model: r.model,
            rank: r.rank,
            successes: r.successes,
            seen: r.seen,
            mean: r.mean,
            lower: r.lower,
            upper: r.upper,
            eliminated_in_round: r.eliminated_in_round,
        }
    }
}

#[pymethods]
impl RankedModel {
    fn __repr__(&self) -> String {
        format!(
            "RankedModel(model={}, rank={}, mean={:.4}, seen={})",
            self.model, self.rank, self.mean, self.seen
        )
    }
}

/// Ask/tell scheduler of one search (see core_rs/src/scheduler.rs).
#[pyclass(module = "gemfinder._core")]
struct Scheduler {
    session: Session,
}

#[pymethods]
impl Scheduler {
    #[new]
    #[pyo3(signature = (algorithm, n_models, n_items, budget, seed, params=None, priors=None, popularity=None, trial=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        algorithm: &str,
        n_models: usize,
        n_items: usize,
        budget: u64,
        seed: u64,
        params: Option<HashMap<String, f64>>,
        priors: Option<Vec<(f64, f64)>>,
        popularity: Option<Vec<f64>>,
        trial: u64,
    ) -> PyResult<Self> {
        let mut config = make_config(
            algorithm, n_models, n_items, budget, seed, params, priors, popularity,
        )?;
        config.trial = trial;
        Ok(Scheduler {
            session: Session::new(config).map_err(to_py)?,
        })
    }

    /// Releases the GIL: the service runs it off its event loop (a TTTS batch at the largest
    /// `max_resample` takes milliseconds), and other threads keep running meanwhile.
    #[pyo3(signature = (max_pulls=None))]
    fn ask(&mut self, py: Python<'_>, max_pulls: Option<usize>) -> Vec<(u32, u32)> {
        let session = &mut self.session;
        py.allow_threads(|| session.ask(max_pulls.unwrap_or(usize::MAX)))
            .into_iter()
            .map(|p| (p.model, p.item))
            .collect()
    }

    /// Tell a batch in order, without the GIL: (model, item, correct), with correct None for a
    /// failed pull. Returns the pulls skipped by this batch (failed on their last try). Stops
    /// at the first pull not in flight (raised; the ones before it are told).
    fn tell_many(
        &mut self,
        py: Python<'_>,
        answers: Vec<(u32, u32, Option<bool>)>,
    ) -> PyResult<Vec<(u32, u32)>> {
        let session = &mut self.session;
        py.allow_threads(|| {
            let mut skipped = Vec::new();
            for (model, item, correct) in answers {
                let pull = Pull { model, item };
                match correct {
                    Some(correct) => session.tell(pull, correct)?,
                    None => {
                        let before = session.scheduler().skipped();
                        session.tell_failed(pull)?;
                        if session.scheduler().skipped() > before {
                            skipped.push((model, item));
                        }
                    }
                }
            }
            Ok(skipped)
        })
        .map_err(to_py)
    }

    fn tell(&mut self, model: u32, item: u32, correct: bool) -> PyResult<()> {
        self.session
            .tell(Pull { model, item }, correct)
            .map_err(to_py)
    }

    fn tell_failed(&mut self, model: u32, item: u32) -> PyResult<()> {
        self.session
            .tell_failed(Pull { model, item })
            .map_err(to_py)
    }

    /// Hand out each round's pulls load-aware, groups[m] being model m's endpoint
    /// (core_rs/src/scheduler/load_order.rs); set again after a restore.
    fn set_load_groups(&mut self, groups: Vec<u32>) -> PyResult<()> {
        self.session.set_load_groups(groups).map_err(to_py)
    }

    #[getter]
    fn load_aware_round(&self) -> bool {
        self.session.scheduler().load_aware_round()
    }

    fn release_in_flight(&mut self) -> usize {
        self.session.release_in_flight()
    }

    fn in_flight_pulls(&self) -> Vec<(u32, u32)> {
        self.session
            .in_flight()
            .map(|p| (p.model, p.item))
            .collect()
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.session.snapshot())
    }

    #[staticmethod]
    fn restore(data: &[u8]) -> PyResult<Self> {
        Ok(Scheduler {
            session: Session::restore(data).map_err(to_py)?,
        })
    }

    #[getter]
    fn finished(&self) -> bool {
        self.session.scheduler().is_finished()
    }
    #[getter]
    fn spent(&self) -> u64 {
        self.session.scheduler().spent()
    }
    #[getter]
    fn in_flight(&self) -> u64 {
        self.session.scheduler().in_flight()
    }
    #[getter]
    fn failed(&self) -> u64 {
        self.session.scheduler().failed()
    }
    #[getter]
    fn skipped(&self) -> u64 {
        self.session.scheduler().skipped()
    }
    #[getter]
    fn budget(&self) -> u64 {
        self.session.scheduler().budget()
    }
    /// Whether `ask` hands out whole rounds (else one decision per pull).
    #[getter]
    fn round_based(&self) -> bool {
        self.session.scheduler().config().algorithm.is_round_based()
    }
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.session.scheduler().config().algorithm.name()
    }
    #[getter]
    fn n_models(&self) -> usize {
        self.session.scheduler().config().n_models
    }
    #[getter]
    fn n_items(&self) -> usize {
        self.session.scheduler().config().n_items
    }
    #[getter]
    fn round(&self) -> Option<(usize, usize)> {
        self.session.scheduler().round()
    }
    #[getter]
    fn recommendation(&self) -> Option<u32> {
        self.session.scheduler().recommendation()
    }

    fn survivors(&self) -> Vec<u32> {
        self.session.scheduler().survivors().to_vec()
    }

    /// The certificate of a fixed-budget search (core_rs/src/certificate.rs): epsilon reached
    /// at `delta` by the recommendation, from `grades` {(model, item): correct} of this search.
    /// None before a recommendation, and for independent sampling (`sh`), whose pairs share no
    /// prefix of one item order.
    fn certificate(&self, delta: f64, grades: HashMap<(u32, u32), bool>) -> PyResult<Option<f64>> {
        let target = Target::new(0.0, delta).map_err(to_py)?;
        let s = self.session.scheduler();
        let (Some(winner), true) = (s.recommendation(), s.order().is_shared()) else {
            return Ok(None);
        };
        let order = s.order();
        let n_items = s.config().n_items as u64;
        let reached = certificate::epsilon_reached(
            winner,
            &s.arms().cursor,
            n_items,
            target.delta,
            |m, pos| grades.get(&(m, order.item(m, pos))).copied(),
        );
        Ok(Some(reached))
    }

    fn ranking(&self) -> Vec<RankedModel> {
        ranking::ranking(self.session.scheduler())
            .into_iter()
            .map(RankedModel::from)
            .collect()
    }
}

/// 95% Wilson score interval of `successes` out of `n` ((0, 1) when n = 0): the interval the
/// ranking reports, for estimates the service computes outside a scheduler.
#[pyfunction]
fn wilson_interval(successes: u32, n: u32) -> PyResult<(f64, f64)> {
    if successes > n {
        return Err(PyValueError::new_err(format!(
            "successes ({successes}) cannot exceed n ({n})"
        )));
    }
    Ok(ranking::wilson(successes, n))
}

/// Smallest total budget the algorithm accepts for this pool.
#[pyfunction]
#[pyo3(signature = (algorithm, n_models, n_items, params=None))]
fn min_budget(
    algorithm: &str,
    n_models: usize,
    n_items: usize,
    params: Option<HashMap<String, f64>>,
) -> PyResult<u64> {
    let params: BTreeMap<String, f64> = params.unwrap_or_default().into_iter().collect();
    let parsed = Algorithm::from_name(algorithm, &params).map_err(to_py)?;
    Ok(scheduler::min_budget(&parsed, n_models, n_items))
}

/// The simulators' view of a NumPy correctness matrix (k models x n items), without a copy.
fn matrix_view<'a>(
    correct: &'a PyReadonlyArray2<'_, u8>,
    k: usize,
    n: usize,
) -> PyResult<Matrix<'a>> {
    let data = correct.as_slice().map_err(|_| {
        to_py(CoreError::invalid(
            "matrix",
            "must be a C-contiguous uint8 array",
        ))
    })?;
    Matrix::new(data, k, n).map_err(to_py)
}

/// Picks and queries spent, one entry per trial.
type TrialArrays<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u64>>);

/// Run trials `start..stop` of one algorithm on a correctness matrix, in parallel.
/// Returns (picks, queries spent), one entry per trial.
#[pyfunction]
#[pyo3(signature = (correct, algorithm, budget, seed, start, stop, params=None, priors=None, popularity=None))]
#[allow(clippy::too_many_arguments)]
fn simulate_trials<'py>(
    py: Python<'py>,
    correct: PyReadonlyArray2<'py, u8>,
    algorithm: &str,
    budget: u64,
    seed: u64,
    start: u64,
    stop: u64,
    params: Option<HashMap<String, f64>>,
    priors: Option<Vec<(f64, f64)>>,
    popularity: Option<Vec<f64>>,
) -> PyResult<TrialArrays<'py>> {
    let (k, n) = (correct.shape()[0], correct.shape()[1]);
    let config = make_config(algorithm, k, n, budget, seed, params, priors, popularity)?;
    let matrix = matrix_view(&correct, k, n)?;
    let outcomes = py
        .allow_threads(|| simulate::run_trials(&config, matrix, start..stop))
        .map_err(to_py)?;
    let picks: Vec<u32> = outcomes.iter().map(|o| o.pick).collect();
    let spent: Vec<u64> = outcomes.iter().map(|o| o.spent).collect();
    Ok((picks.into_pyarray(py), spent.into_pyarray(py)))
}

/// Picks, queries spent and epsilon reached, one entry per trial.
type CertifiedArrays<'py> = (
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<f64>>,
);

/// Fixed-confidence trials `start..stop` (successive elimination on certified bounds,
/// core_rs/src/certified.rs): each stops as soon as its leader is certified within `epsilon` (a
/// fraction of accuracy) of every model at `delta`, or when `budget` is spent. Returns (picks,
/// queries spent, epsilon reached), one entry per trial.
#[pyfunction]
#[pyo3(signature = (correct, budget, seed, start, stop, epsilon, delta))]
#[allow(clippy::too_many_arguments)]
fn simulate_certified<'py>(
    py: Python<'py>,
    correct: PyReadonlyArray2<'py, u8>,
    budget: u64,
    seed: u64,
    start: u64,
    stop: u64,
    epsilon: f64,
    delta: f64,
) -> PyResult<CertifiedArrays<'py>> {
    let (k, n) = (correct.shape()[0], correct.shape()[1]);
    let target = Target::new(epsilon, delta).map_err(to_py)?;
    let matrix = matrix_view(&correct, k, n)?;
    let outcomes = py
        .allow_threads(|| simulate::run_certified_trials(matrix, budget, seed, start..stop, target))
        .map_err(to_py)?;
    let picks: Vec<u32> = outcomes.iter().map(|o| o.pick).collect();
    let spent: Vec<u64> = outcomes.iter().map(|o| o.spent).collect();
    let reached: Vec<f64> = outcomes.iter().map(|o| o.epsilon).collect();
    Ok((
        picks.into_pyarray(py),
        spent.into_pyarray(py),
        reached.into_pyarray(py),
    ))
}

/// The budget of an incremental search (core_rs/src/incremental.rs): `asked`, raised so the
/// last round of a pool of `pool` models reads `depth` items (the parent winner's), at least
/// the algorithm's minimum.
#[pyfunction]
#[pyo3(signature = (algorithm, pool, n_items, asked, depth, params=None))]
fn incremental_budget(
    algorithm: &str,
    pool: usize,
    n_items: usize,
    asked: u64,
    depth: u64,
    params: Option<HashMap<String, f64>>,
) -> PyResult<u64> {
    let params: BTreeMap<String, f64> = params.unwrap_or_default().into_iter().collect();
    let algorithm = Algorithm::from_name(algorithm, &params).map_err(to_py)?;
    Ok(incremental::incremental_budget(
        &algorithm, pool, n_items, asked, depth,
    ))
}

/// Incremental-search trials `start..stop` (core_rs/src/incremental.rs): per trial `n_new`
/// random models are new; the parent searches the others with `parent_budget`, the incremental
/// search challenges its top `incumbents` with the newcomers (`per_newcomer` queries each, the
/// incumbents' answers free), and a full re-search spends `full_budget` on every model. Returns
/// a dict of arrays, one entry per trial: parent_pick, pick, spent, paid, full_pick,
/// full_spent, full_paid (picks are matrix rows; paid: pulls the parent had not answered).
#[pyfunction]
#[pyo3(signature = (correct, algorithm, seed, start, stop, n_new, incumbents, parent_budget, per_newcomer, full_budget, params=None, warm=false))]
#[allow(clippy::too_many_arguments)]
fn simulate_incremental<'py>(
    py: Python<'py>,
    correct: PyReadonlyArray2<'py, u8>,
    algorithm: &str,
    seed: u64,
    start: u64,
    stop: u64,
    n_new: usize,
    incumbents: usize,
    parent_budget: u64,
    per_newcomer: u64,
    full_budget: u64,
    params: Option<HashMap<String, f64>>,
    warm: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let (k, n) = (correct.shape()[0], correct.shape()[1]);
    let config = make_config(algorithm, k, n, full_budget, seed, params, None, None)?;
    let matrix = matrix_view(&correct, k, n)?;
    let plan = IncrementalPlan {
        n_new,
        incumbents,
        parent_budget,
        per_newcomer,
        full_budget,
        warm,
    };
    let outcomes = py
        .allow_threads(|| incremental::run_incremental_trials(&config, matrix, plan, start..stop))
        .map_err(to_py)?;
    let out = PyDict::new(py);
    let picks = |f: fn(&incremental::IncrementalOutcome) -> u32| -> Vec<u32> {
        outcomes.iter().map(f).collect()
    };
    let counts = |f: fn(&incremental::IncrementalOutcome) -> u64| -> Vec<u64> {
        outcomes.iter().map(f).collect()
    };
    out.set_item("parent_pick", picks(|o| o.parent_pick).into_pyarray(py))?;
    out.set_item("pick", picks(|o| o.pick).into_pyarray(py))?;
    out.set_item("full_pick", picks(|o| o.full_pick).into_pyarray(py))?;
    out.set_item("spent", counts(|o| o.spent).into_pyarray(py))?;
    out.set_item("paid", counts(|o| o.paid).into_pyarray(py))?;
    out.set_item("full_spent", counts(|o| o.full_spent).into_pyarray(py))?;
    out.set_item("full_paid", counts(|o| o.full_paid).into_pyarray(py))?;
    Ok(out)
}

/// Summary figures of simulated picks against the true accuracies.
#[pyfunction]
fn summarize<'py>(
    py: Python<'py>,
    accuracies: PyReadonlyArray1<'py, f64>,
    picks: PyReadonlyArray1<'py, u32>,
    spent: PyReadonlyArray1<'py, u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let accuracies = accuracies.as_slice()?;
    let outcomes: Vec<TrialOutcome> = picks
        .as_slice()?
        .iter()
        .zip(spent.as_slice()?)
        .map(|(&pick, &spent)| TrialOutcome { pick, spent })
        .collect();
    if outcomes.is_empty() {
        return Err(to_py(CoreError::invalid(
            "trials",
            "needs at least one trial",
        )));
    }
    if let Some(o) = outcomes
        .iter()
        .find(|o| o.pick as usize >= accuracies.len())
    {
        return Err(to_py(CoreError::invalid(
            "picks",
            format!("model {} out of range", o.pick),
        )));
    }
    let s = simulate::summarize(accuracies, &outcomes);
    let out = PyDict::new(py);
    out.set_item("trials", s.trials)?;
    for (name, e) in [
        ("mean_rank", s.mean_rank),
        ("mean_accuracy", s.mean_accuracy),
        ("p_best", s.p_best),
        ("p_within_half_point", s.p_within_half_point),
        ("queries_spent", s.queries_spent),
    ] {
        out.set_item(name, e.mean)?;
        out.set_item(format!("{name}_ci"), interval(e))?;
    }
    Ok(out)
}

fn interval(e: Estimate) -> (f64, f64) {
    (e.lower, e.upper)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_ALGORITHM", DEFAULT_ALGORITHM)?;
    m.add("ALGORITHMS", ALGORITHM_NAMES.to_vec())?;
    m.add("SearchError", m.py().get_type::<SearchError>())?;
    m.add_class::<Scheduler>()?;
    m.add_class::<RankedModel>()?;
    m.add_class::<certified::CertifiedScheduler>()?;
    m.add_function(wrap_pyfunction!(min_budget, m)?)?;
    m.add_function(wrap_pyfunction!(wilson_interval, m)?)?;
    m.add_function(wrap_pyfunction!(simulate_trials, m)?)?;
    m.add_function(wrap_pyfunction!(simulate_certified, m)?)?;
    m.add_function(wrap_pyfunction!(simulate_incremental, m)?)?;
    m.add_function(wrap_pyfunction!(incremental_budget, m)?)?;
    m.add_function(wrap_pyfunction!(summarize, m)?)?;
    Ok(())
}
