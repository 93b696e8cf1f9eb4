//! The ask/tell scheduler: hands out (model, item) pulls, takes back grades or failures, and
//! decides which models survive. Pure logic; it never sees HTTP, prompts or Python.
//!
//! Budget invariant: graded + in flight + queued for retry + planned but not yet handed out
//! never exceeds the budget. A failed pull gives its query back: it is retried up to
//! `max_attempts` times, then skipped; either way it never moves an estimate.
use std::collections::{HashMap, VecDeque};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::algorithms::{Algorithm, Sampling, Style};
use crate::arms::{Arms, ALIVE, OUTRANKED_AT_END};
use crate::config::SearchConfig;
use crate::error::{CoreError, Result};
use crate::policy::reference::Pick;
use crate::policy::round_plan::RoundPlan;
use crate::policy::sequential::{self, Choice};
use crate::policy::ucb;
use crate::rng::{stream_rng, Stream};
use crate::sampling::ItemOrder;
use crate::work;

mod load_order;
mod round_phase;
#[cfg(test)]
mod work_bounds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pull {
    pub model: u32,
    pub item: u32,
}

impl Pull {
    fn key(self) -> u64 {
        ((self.model as u64) << 32) | self.item as u64
    }
}

/// Progress of the current round of a round-based algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RoundState {
    plan: RoundPlan,
    index: usize,
    /// Items per survivor this round (before per-model caps).
    t: u32,
    exhaustive: bool,
    /// Next pull to generate: item-major, so every endpoint gets work from the first pulls.
    /// A load-aware round (load_order.rs) sets next_survivor to LOAD_AWARE and keeps in next_j
    /// the survivors' cursor at its start.
    next_j: u32,
    next_survivor: usize,
    /// Pulls of this round not yet graded or skipped (including those not yet handed out).
    outstanding: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Phase {
    Rounds(RoundState),
    Sequential,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduler {
    config: SearchConfig,
    order: ItemOrder,
    arms: Arms,
    /// Models still in the race (round-based) or with items left (sequential).
    survivors: Vec<u32>,
    rng: ChaCha8Rng,
    tie_seed: u64,
    decisions: u64,
    spent: u64,
    in_flight: u64,
    failed: u64,
    skipped: u64,
    retries: VecDeque<Pull>,
    attempts: HashMap<u64, u32>,
    phase: Phase,
    recommendation: Option<u32>,
    ucb_e_a: f64,
    /// Incremental state of UCB, UCB-E and TTTS: derived from `arms` and `survivors`, so it is
    /// not saved (rebuilt on first use after a restore) and `==` ignores it.
    #[serde(skip)]
    derived: sequential::Derived,
    /// Load-aware order of round pulls (scheduler/load_order.rs): the caller's groups and the
    /// lanes derived from them; not saved (the round state marks a load-aware round).
    #[serde(skip)]
    load: load_order::LoadOrder,
}

impl Scheduler {
    pub fn new(config: SearchConfig) -> Result<Self> {
        config.validate()?;
        let (k, n) = (config.n_models, config.n_items);
        let item_rng = stream_rng(config.seed, config.trial, Stream::Items);
        let mut rng = stream_rng(config.seed, config.trial, Stream::Decisions);
        let sampling = match config.algorithm {
            Algorithm::SequentialHalving { sampling } => sampling,
            _ => Sampling::Correlated,
        };
        let order = ItemOrder::new(k, n, sampling, item_rng, &mut rng);
        let tie_seed = rng.gen();
        let ucb_e_a = match config.algorithm {
            Algorithm::UcbE { a } => a.unwrap_or(ucb::ucb_e_default_a(config.budget, k)),
            _ => 0.0,
        };
        let mut scheduler = Scheduler {
            order,
            arms: Arms::new(k),
            survivors: (0..k as u32).collect(),
            rng,
            tie_seed,
            decisions: 0,
            spent: 0,
            in_flight: 0,
            failed: 0,
            skipped: 0,
            retries: VecDeque::new(),
            attempts: HashMap::new(),
            phase: Phase::Sequential,
            recommendation: None,
            ucb_e_a,
            derived: sequential::Derived::default(),
            load: load_order::LoadOrder::default(),
            config,
        };
        scheduler.start()?;
        Ok(scheduler)
    }

    fn start(&mut self) -> Result<()> {
        let k = self.config.n_models;
        if k == 1 {
            self.finish(Some(0));
            return Ok(());
        }
        let needed = min_budget(&self.config.algorithm, k, self.config.n_items);
        match self.config.algorithm.spec().style {
            Style::Immediate(pick) => {
                let pick = pick(Pick {
                    n_models: k as u32,
                    popularity: self.config.popularity.as_deref(),
                    rng: &mut self.rng,
                    tie_seed: self.tie_seed,
                    decisions: &mut self.decisions,
                });
                self.finish(pick);
            }
            Style::Rounds(plan) => {
                let plan = plan(&self.config.algorithm, k);
                if self.config.budget < needed {
                    return Err(
                        self.too_small(needed, "each round must give every survivor an item")
                    );
                }
                self.phase = Phase::Rounds(RoundState {
                    plan,
                    index: 0,
                    t: 0,
                    exhaustive: false,
                    next_j: 0,
                    next_survivor: 0,
                    outstanding: 0,
                });
                self.plan_round();
            }
            Style::Sequential(_) => {
                if self.config.budget < needed {
                    return Err(self.too_small(needed, "each model must be queried at least once"));
                }
            }
        }
        Ok(())
    }

    fn too_small(&self, needed: u64, why: &str) -> CoreError {
        CoreError::BudgetTooSmall {
            algorithm: self.config.algorithm.name().to_string(),
            budget: self.config.budget,
            needed,
            models: self.config.n_models,
            why: why.to_string(),
        }
    }

    fn next_salt(&mut self) -> u64 {
        self.decisions += 1;
        self.decisions
    }

    /// Hand out up to `max` pulls. Round-based algorithms hand out the rest of their round;
    /// sequential ones choose each pull from the grades received so far.
    pub fn next_pulls(&mut self, max: usize, out: &mut Vec<Pull>) {
        while out.len() < max {
            work::step(1);
            if let Some(pull) = self.retries.pop_front() {
                self.in_flight += 1;
                out.push(pull);
                continue;
            }
            let next = match self.phase {
                Phase::Rounds(_) => self.generate_round_pull(),
                Phase::Sequential => self.choose_sequential_pull(),
                Phase::Done => None,
            };
            match next {
                Some(pull) => {
                    self.in_flight += 1;
                    out.push(pull);
                }
                None => break,
            }
        }
    }

    fn choose_sequential_pull(&mut self) -> Option<Pull> {
        let committed = self.spent + self.in_flight + self.retries.len() as u64;
        if committed >= self.config.budget || self.survivors.is_empty() {
            return None;
        }
        let salt = self.next_salt();
        let Style::Sequential(choose) = self.config.algorithm.spec().style else {
            return None;
        };
        let choice = Choice {
            arms: &self.arms,
            open: &self.survivors,
            derived: &mut self.derived,
            spent: self.spent,
            tie_seed: self.tie_seed,
            salt,
            rng: &mut self.rng,
            ucb_e_a: self.ucb_e_a,
        };
        let model = choose(&self.config.algorithm, choice)?;
        let cursor = &mut self.arms.cursor[model as usize];
        self.order.prepare(*cursor + 1);
        let item = self.order.item(model, *cursor);
        *cursor += 1;
        if *cursor as usize == self.config.n_items {
            // Every item handed out: its score will be exact, it needs no more pulls.
            self.survivors.retain(|&m| m != model);
            self.derived.closed(model);
        } else {
            self.derived.changed(&self.arms, model);
        }
        Some(Pull { model, item })
    }

    /// A graded answer for a pull handed out earlier.
    pub fn record(&mut self, pull: Pull, correct: bool) {
        let m = pull.model as usize;
        self.in_flight -= 1;
        self.spent += 1;
        self.arms.seen[m] += 1;
        self.arms.successes[m] += correct as u32;
        self.derived.changed(&self.arms, pull.model);
        if !self.attempts.is_empty() {
            self.attempts.remove(&pull.key());
        }
        self.resolved();
    }

    /// The endpoint failed to answer: the query is given back and the pull retried or skipped.
    pub fn record_failure(&mut self, pull: Pull) {
        self.in_flight -= 1;
        self.failed += 1;
        let attempts = self.attempts.entry(pull.key()).or_insert(0);
        *attempts += 1;
        if *attempts >= self.config.max_attempts {
            self.attempts.remove(&pull.key());
            self.arms.skipped[pull.model as usize] += 1;
            self.derived.changed(&self.arms, pull.model);
            self.skipped += 1;
            self.resolved();
        } else {
            self.retries.push_back(pull);
        }
    }

    /// Put a pull that was handed out back in the queue without counting a failure (used after
    /// a restart, for pulls whose answers were lost with the process).
    pub fn requeue(&mut self, pull: Pull) {
        self.in_flight -= 1;
        self.retries.push_front(pull);
    }

    fn resolved(&mut self) {
        match &mut self.phase {
            Phase::Rounds(rs) => {
                rs.outstanding -= 1;
                if rs.outstanding == 0 {
                    self.close_round();
                    self.plan_round();
                }
            }
            Phase::Sequential => {
                let idle = self.in_flight == 0 && self.retries.is_empty();
                if idle && (self.spent >= self.config.budget || self.survivors.is_empty()) {
                    self.finish_sequential();
                }
            }
            Phase::Done => {}
        }
    }

    fn best_of_survivors(&mut self) -> Option<u32> {
        let salt = self.next_salt();
        let score = scorer(&self.config);
        sequential::best_by(&self.arms, &self.survivors, self.tie_seed, salt, |m| {
            score(&self.arms, m)
        })
    }

    fn finish_sequential(&mut self) {
        let salt = self.next_salt();
        let all: Vec<u32> = (0..self.config.n_models as u32).collect();
        let pick = {
            let score = scorer(&self.config);
            sequential::best_by(&self.arms, &all, self.tie_seed, salt, |m| {
                score(&self.arms, m)
            })
        };
        self.finish(pick);
    }

    fn finish(&mut self, pick: Option<u32>) {
        self.recommendation = pick;
        self.phase = Phase::Done;
        if let Some(p) = pick {
            for (m, out) in self.arms.out_round.iter_mut().enumerate() {
                if m as u32 != p && *out == ALIVE {
                    *out = OUTRANKED_AT_END;
                }
            }
            self.survivors = vec![p];
        }
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }
    pub fn recommendation(&self) -> Option<u32> {
        self.recommendation
    }
    pub fn spent(&self) -> u64 {
        self.spent
    }
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }
    pub fn failed(&self) -> u64 {
        self.failed
    }
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
    pub fn budget(&self) -> u64 {
        self.config.budget
    }
    pub fn config(&self) -> &SearchConfig {
        &self.config
    }
    /// For tests that forge a search saved by an older version.
    #[cfg(test)]
    pub(crate) fn config_mut(&mut self) -> &mut SearchConfig {
        &mut self.config
    }
    /// The trial's item order (which item each model answers at each position).
    pub fn order(&self) -> &ItemOrder {
        &self.order
    }
    pub fn arms(&self) -> &Arms {
        &self.arms
    }
    pub fn survivors(&self) -> &[u32] {
        &self.survivors
    }
    pub fn tie_seed(&self) -> u64 {
        self.tie_seed
    }
    /// (current round, rounds planned) for round-based algorithms.
    pub fn round(&self) -> Option<(usize, usize)> {
        match &self.phase {
            Phase::Rounds(rs) => Some((rs.index, rs.plan.len())),
            _ => None,
        }
    }
}

/// The smallest total budget `algorithm` accepts for a pool of `n_models` x `n_items`: the sum
/// of the round minimums for a round-based one (never above a full evaluation), one query per
/// model for a sequential one, nothing for a pick without queries or a pool of one.
pub fn min_budget(algorithm: &Algorithm, n_models: usize, n_items: usize) -> u64 {
    if n_models <= 1 {
        return 0;
    }
    match algorithm.spec().style {
        Style::Immediate(_) => 0,
        Style::Rounds(plan) => plan(algorithm, n_models).min_budget(n_items),
        Style::Sequential(_) => n_models as u64,
    }
}

/// How models are compared: posterior mean for the Bayesian algorithms, and for gem search when
/// the caller gives per-model priors (e.g. from public scores: bench/studies/prior_gain.py); else the
/// mean, so that gem without priors is unchanged.
pub(crate) fn scorer(config: &SearchConfig) -> impl Fn(&Arms, u32) -> f64 + '_ {
    move |arms: &Arms, m: u32| match (&config.algorithm, &config.priors) {
        (Algorithm::BayesElimination, priors) => {
            let prior = priors.as_ref().map_or((1.0, 1.0), |p| p[m as usize]);
            arms.posterior_mean(m, prior)
        }
        (Algorithm::GemSearch { .. }, Some(priors)) => arms.posterior_mean(m, priors[m as usize]),
        (Algorithm::TopTwoThompson { .. }, _) => arms.posterior_mean(m, (1.0, 1.0)),
        _ => arms.mean(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Drive a sequential search pull by pull with batches of up to `max_batch` in flight,
    /// answers in random order, failures (so retries and skips), and a snapshot round trip
    /// now and then. Before every new choice `check` sees the scheduler and the salt of that
    /// choice, and after it the model chosen.
    fn drive(
        name: &str,
        k: usize,
        n: usize,
        budget: u64,
        seed: u64,
        mut check: impl FnMut(&Scheduler, u64, u32),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let p: Vec<f64> = (0..k).map(|_| rng.gen_range(0.2..0.8)).collect();
        let algorithm = Algorithm::from_name(name, &Default::default()).unwrap();
        let mut config = SearchConfig::new(algorithm, k, n, budget, seed);
        config.max_attempts = 2;
        let mut s = Scheduler::new(config).unwrap();
        let mut in_flight: Vec<Pull> = Vec::new();
        let mut steps = 0;
        while !s.is_finished() {
            steps += 1;
            let want = rng.gen_range(1..=4usize);
            while in_flight.len() < want {
                let fresh = s.retries.is_empty()
                    && s.spent + s.in_flight < s.config.budget
                    && !s.survivors.is_empty();
                let (before, salt) = (s.clone(), s.decisions + 1);
                let mut out = Vec::new();
                s.next_pulls(1, &mut out);
                let Some(&pull) = out.first() else { break };
                if fresh {
                    check(&before, salt, pull.model);
                }
                in_flight.push(pull);
            }
            if in_flight.is_empty() {
                break;
            }
            let pull = in_flight.swap_remove(rng.gen_range(0..in_flight.len()));
            if rng.gen_bool(0.15) {
                s.record_failure(pull);
            } else {
                s.record(pull, rng.gen_bool(p[pull.model as usize]));
            }
            // (Once finished, `survivors` is the pick and no choice is made any more.)
            assert!(
                s.is_finished() || s.derived.matches_rebuilt(&s.arms, &s.survivors),
                "{name} step {steps}"
            );
            if steps % 97 == 0 {
                let bytes = bincode::serialize(&s).unwrap();
                s = bincode::deserialize(&bytes).unwrap();
            }
        }
        assert!(s.is_finished(), "{name}");
    }

    #[test]
    fn ucb_grouped_choice_is_the_full_scan_on_every_pull() {
        for (k, n, budget, seed) in [(12, 30, 200, 1), (40, 8, 300, 2), (25, 60, 1400, 3)] {
            let mut pulls = 0;
            drive("ucb", k, n, budget, seed, |s, salt, model| {
                let Algorithm::Ucb { c } = s.config.algorithm else {
                    unreachable!()
                };
                let full = ucb::ucb(&s.arms, &s.survivors, c, s.spent, s.tie_seed, salt);
                assert_eq!(Some(model), full, "pull {pulls}");
                pulls += 1;
            });
            assert!(pulls as u64 >= budget.min((k * n) as u64) / 2, "{pulls}");
        }
    }

    #[test]
    fn ucb_e_incremental_choice_is_the_full_argmax_on_every_pull() {
        for (k, n, budget, seed) in [(12, 30, 200, 1), (40, 8, 300, 2), (25, 60, 1400, 3)] {
            let mut pulls = 0;
            drive("ucb_e", k, n, budget, seed, |s, salt, model| {
                let full = ucb::ucb_e(&s.arms, &s.survivors, s.ucb_e_a, s.tie_seed, salt);
                assert_eq!(Some(model), full, "pull {pulls}");
                pulls += 1;
            });
            assert!(pulls as u64 >= budget.min((k * n) as u64) / 2, "{pulls}");
        }
    }

    #[test]
    fn ttts_state_stays_equal_to_a_rebuilt_one() {
        for (k, n, budget, seed) in [(12, 30, 200, 1), (40, 8, 300, 2), (25, 60, 1400, 3)] {
            drive("ttts", k, n, budget, seed, |s, _, model| {
                assert!(s.survivors.contains(&model));
            });
        }
    }
}
