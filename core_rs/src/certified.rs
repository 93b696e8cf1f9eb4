//! Fixed-confidence search: successive elimination on certified bounds (docs/search.md, "Fixed
//! confidence and the certificate"), as an ask/tell state machine (the service's runner and the
//! simulator make the same decisions through it).
//!
//! Every survivor reads the trial's shared item permutation in order (the one the correlated
//! algorithms read, so trials compare with common random numbers), all survivors up to the same
//! position. At each grid point of `certificate.rs` (a *stretch* ends there) the leader (most
//! correct answers so far, lowest index on ties) is compared with every survivor on the shared
//! items:
//! - a model whose upper bound on (its accuracy - the leader's) is below 0 is dropped: it is
//!   certified worse than the leader, so dropping it can never drop the best model while the
//!   bounds hold (the best model's bound against anyone is at least 0);
//! - the search stops once every survivor's bound against the leader is at most epsilon: the
//!   best model is a survivor, so the leader is within epsilon of it.
//!
//! Every dropped model has its certificate when it leaves, so the certificate of the result is
//! the maximum over survivors only. When the maximum budget cannot take every survivor to the
//! next grid point, the last stretch goes as far as it can and the leader is returned with its
//! certificate. A pull that fails `max_attempts` times is skipped; its answer counts against
//! the certificate (the model is taken as right where that widens its bound, the leader as
//! wrong), which keeps every bound an upper bound. Work per check: one popcount per 64 items
//! per survivor.
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::algorithms::Sampling;
use crate::certificate::{gap_upper_bound, grid_floor, grid_next, PairCounts, Target};
use crate::error::{CoreError, Result};
use crate::ranking::{wilson, RankedModel};
use crate::rng::{stream_rng, Stream};
use crate::sampling::ItemOrder;
use crate::scheduler::Pull;
use crate::simulate::{CertifiedOutcome, Matrix};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertifiedSearch {
    n_models: usize,
    n_items: u64,
    budget: u64,
    epsilon: f64,
    delta: f64,
    max_attempts: u32,
    order: ItemOrder,
    /// Position of each item in the shared order (u32::MAX: not drawn yet).
    position: Vec<u32>,
    /// One bit per (model, position): answered right; answer unknown (skipped).
    words: usize,
    right: Vec<u64>,
    unknown: Vec<u64>,
    hits: Vec<u64>,
    /// Answers graded per model, and the stretch (0-based) in which a model was dropped.
    seen: Vec<u64>,
    dropped_in: Vec<Option<u32>>,
    stretches: u32,
    survivors: Vec<u32>,
    /// Every survivor has answered (or skipped) positions `..read`; the stretch ends at `upto`.
    read: u64,
    upto: u64,
    /// Next pull of the stretch to hand out: position-major, so every model gets work early.
    next_pos: u64,
    next_survivor: usize,
    /// Pulls of the stretch not yet graded or skipped (including those not yet handed out).
    outstanding: u64,
    spent: u64,
    in_flight: u64,
    failed: u64,
    skipped: u64,
    retries: VecDeque<Pull>,
    attempts: BTreeMap<(u32, u32), u32>,
    leader: u32,
    /// Epsilon reached by `leader` at `delta` at the last grid point (1: nothing known yet).
    reached: f64,
    done: bool,
}

impl CertifiedSearch {
    pub fn new(
        n_models: usize,
        n_items: usize,
        budget: u64,
        seed: u64,
        trial: u64,
        target: Target,
        max_attempts: u32,
    ) -> Result<Self> {
        if n_models == 0 || n_items == 0 {
            return Err(CoreError::invalid(
                "candidates",
                "a search needs at least one model and one item",
            ));
        }
        if n_models > 1 && budget < n_models as u64 {
            return Err(CoreError::invalid(
                "budget",
                format!("{budget} queries cannot give each of {n_models} models one item"),
            ));
        }
        let mut decisions = stream_rng(seed, trial, Stream::Decisions);
        let items = stream_rng(seed, trial, Stream::Items);
        let order = ItemOrder::new(
            n_models,
            n_items,
            Sampling::Correlated,
            items,
            &mut decisions,
        );
        let words = n_items.div_ceil(64);
        let mut search = CertifiedSearch {
            n_models,
            n_items: n_items as u64,
            budget,
            epsilon: target.epsilon,
            delta: target.delta,
            max_attempts: max_attempts.max(1),
            order,
            position: vec![u32::MAX; n_items],
            words,
            right: vec![0; n_models * words],
            unknown: vec![0; n_models * words],
            hits: vec![0; n_models],
            seen: vec![0; n_models],
            dropped_in: vec![None; n_models],
            stretches: 0,
            survivors: (0..n_models as u32).collect(),
            read: 0,
            upto: 0,
            next_pos: 0,
            next_survivor: 0,
            outstanding: 0,
            spent: 0,
            in_flight: 0,
            failed: 0,
            skipped: 0,
            retries: VecDeque::new(),
            attempts: BTreeMap::new(),
            leader: 0,
            reached: 1.0,
            done: false,
        };
        if n_models == 1 {
            search.finish(0.0);
        } else {
            search.plan();
        }
        Ok(search)
    }

    fn bit(&self, model: u32, pos: u64) -> (usize, u64) {
        (
            model as usize * self.words + (pos / 64) as usize,
            1 << (pos % 64),
        )
    }

    /// Take the next stretch, or finish when the budget cannot take every survivor further.
    fn plan(&mut self) {
        let alive = self.survivors.len() as u64;
        let remaining = self.budget - self.spent;
        let upto = grid_next(self.read, self.n_items).min(self.read + remaining / alive);
        if upto == self.read {
            let reached = self.reached;
            self.finish(reached);
            return;
        }
        self.order.prepare(upto as u32);
        for pos in self.upto.max(self.read)..upto {
            self.position[self.order.item(0, pos as u32) as usize] = pos as u32;
        }
        self.upto = upto;
        self.next_pos = self.read;
        self.next_survivor = 0;
        self.outstanding = alive * (upto - self.read);
    }

    /// The stretch is answered: certify at the grid point reached, drop the models certified
    /// worse than the leader, and stop or go on.
    fn close(&mut self) {
        self.read = self.upto;
        let hits = &self.hits;
        let leader = self
            .survivors
            .iter()
            .copied()
            .fold(self.survivors[0], |l, m| {
                if hits[m as usize] > hits[l as usize] {
                    m
                } else {
                    l
                }
            });
        let at = grid_floor(self.read, self.n_items);
        let mut reached = 0.0f64;
        let mut keep = Vec::with_capacity(self.survivors.len());
        for &m in &self.survivors {
            if m == leader {
                keep.push(m);
                continue;
            }
            let counts = self.pair(m, leader, at);
            let upper = gap_upper_bound(counts, self.n_items, self.n_models, self.delta);
            reached = reached.max(upper);
            if upper >= 0.0 {
                keep.push(m);
            } else {
                self.dropped_in[m as usize] = Some(self.stretches);
            }
        }
        self.stretches += 1;
        self.survivors = keep;
        self.leader = leader;
        self.reached = reached;
        if reached <= self.epsilon || self.read == self.n_items || self.survivors.len() == 1 {
            self.finish(reached);
        } else {
            self.plan();
        }
    }

    /// Wins and losses of `m` against `w` on positions `..n`, unknown answers counted against
    /// the bound (m right, w wrong).
    fn pair(&self, m: u32, w: u32, n: u64) -> PairCounts {
        fn row(bits: &[u64], words: usize, x: u32) -> &[u64] {
            &bits[x as usize * words..(x as usize + 1) * words]
        }
        let (m_right, m_unknown, w_right) = (
            row(&self.right, self.words, m),
            row(&self.unknown, self.words, m),
            row(&self.right, self.words, w),
        );
        let mut counts = PairCounts {
            n,
            ..Default::default()
        };
        let (full, rest) = ((n / 64) as usize, n % 64);
        for i in 0..full + (rest > 0) as usize {
            let mask = if i < full { u64::MAX } else { (1 << rest) - 1 };
            let m_up = (m_right[i] | m_unknown[i]) & mask;
            counts.wins += (m_up & !w_right[i]).count_ones() as u64;
            counts.losses += (!m_up & w_right[i] & mask).count_ones() as u64;
        }
        counts
    }

    fn finish(&mut self, reached: f64) {
        if self.survivors.len() == 1 {
            self.leader = self.survivors[0];
        }
        self.reached = reached;
        self.done = true;
    }

    /// Hand out up to `max` pulls of the current stretch (retries first).
    pub fn next_pulls(&mut self, max: usize, out: &mut Vec<Pull>) {
        while out.len() < max && !self.done {
            if let Some(pull) = self.retries.pop_front() {
                self.in_flight += 1;
                out.push(pull);
                continue;
            }
            if self.next_survivor == self.survivors.len() {
                self.next_survivor = 0;
                self.next_pos += 1;
            }
            if self.next_pos >= self.upto {
                break;
            }
            let model = self.survivors[self.next_survivor];
            self.next_survivor += 1;
            self.in_flight += 1;
            out.push(Pull {
                model,
                item: self.order.item(model, self.next_pos as u32),
            });
        }
    }

    fn resolved(&mut self) {
        self.outstanding -= 1;
        if self.outstanding == 0 {
            self.close();
        }
    }

    /// A graded answer for a pull handed out earlier.
    pub fn record(&mut self, pull: Pull, correct: bool) {
        self.in_flight -= 1;
        self.spent += 1;
        self.seen[pull.model as usize] += 1;
        self.attempts.remove(&(pull.model, pull.item));
        if correct {
            let (at, bit) = self.bit(pull.model, self.position[pull.item as usize] as u64);
            self.right[at] |= bit;
            self.hits[pull.model as usize] += 1;
        }
        self.resolved();
    }

    /// The endpoint failed: the pull is retried, or skipped after `max_attempts` failures.
    pub fn record_failure(&mut self, pull: Pull) {
        self.in_flight -= 1;
        self.failed += 1;
        let attempts = self.attempts.entry((pull.model, pull.item)).or_insert(0);
        *attempts += 1;
        if *attempts < self.max_attempts {
            self.retries.push_back(pull);
            return;
        }
        self.attempts.remove(&(pull.model, pull.item));
        self.skipped += 1;
        let (at, bit) = self.bit(pull.model, self.position[pull.item as usize] as u64);
        self.unknown[at] |= bit;
        self.resolved();
    }

    /// Put a pull handed out earlier back in the queue (its answer was lost in a restart).
    pub fn requeue(&mut self, pull: Pull) {
        self.in_flight -= 1;
        self.retries.push_front(pull);
    }

    /// Answer the whole current stretch at once with `answer(model, item)` (the simulator):
    /// the same decisions as handing out and recording every pull. Only for a fresh stretch
    /// with nothing in flight; returns false (and does nothing) otherwise.
    pub fn run_stretch_with(&mut self, mut answer: impl FnMut(u32, u32) -> bool) -> bool {
        let fresh = self.next_pos == self.read && self.next_survivor == 0;
        if self.done || !fresh || self.in_flight > 0 || !self.retries.is_empty() {
            return false;
        }
        for &m in &self.survivors {
            self.seen[m as usize] += self.upto - self.read;
            for pos in self.read..self.upto {
                if answer(m, self.order.item(m, pos as u32)) {
                    let (at, bit) = (
                        m as usize * self.words + (pos / 64) as usize,
                        1u64 << (pos % 64),
                    );
                    self.right[at] |= bit;
                    self.hits[m as usize] += 1;
                }
            }
        }
        self.spent += self.outstanding;
        self.outstanding = 0;
        self.close();
        true
    }

    pub fn is_finished(&self) -> bool {
        self.done
    }
    /// The leader: the recommendation once finished.
    pub fn leader(&self) -> u32 {
        self.leader
    }
    /// Epsilon reached by the leader at delta at the last grid point (1 before the first).
    pub fn epsilon_reached(&self) -> f64 {
        self.reached
    }
    pub fn target(&self) -> Target {
        Target {
            epsilon: self.epsilon,
            delta: self.delta,
        }
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
        self.budget
    }
    pub fn survivors(&self) -> &[u32] {
        &self.survivors
    }
    /// Correct answers of each model so far.
    pub fn hits(&self) -> &[u64] {
        &self.hits
    }
    /// Graded answers of each model so far.
    pub fn seen(&self) -> &[u64] {
        &self.seen
    }
    /// The stretch in which each model was dropped (None: a survivor).
    pub fn dropped_in(&self) -> &[Option<u32>] {
        &self.dropped_in
    }
    /// Stretches closed so far.
    pub fn stretches(&self) -> u32 {
        self.stretches
    }
    pub fn n_models(&self) -> usize {
        self.n_models
    }
    pub fn n_items(&self) -> usize {
        self.n_items as usize
    }
}

/// Recommended model (the leader, once finished) first, then survivors, then models by how late
/// they were dropped, each group by estimated accuracy, then by index.
pub fn ranking(s: &CertifiedSearch) -> Vec<RankedModel> {
    let recommended = s.is_finished().then_some(s.leader());
    let mean = |m: usize| s.hits[m] as f64 / s.seen[m] as f64;
    let mut order: Vec<usize> = (0..s.n_models).collect();
    order.sort_by(|&a, &b| {
        let group = |m: usize| {
            (
                Some(m as u32) == recommended,
                s.dropped_in[m].unwrap_or(u32::MAX),
            )
        };
        group(b)
            .cmp(&group(a))
            .then(mean(b).total_cmp(&mean(a)))
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let (successes, seen) = (s.hits[m] as u32, s.seen[m] as u32);
            let (lower, upper) = wilson(successes, seen);
            RankedModel {
                model: m as u32,
                rank: i as u32 + 1,
                successes,
                seen,
                mean: if seen == 0 { f64::NAN } else { mean(m) },
                lower,
                upper,
                eliminated_in_round: s.dropped_in[m],
            }
        })
        .collect()
}

/// One fixed-confidence search on a correctness matrix: at most `budget` queries.
pub fn run(
    matrix: Matrix,
    budget: u64,
    seed: u64,
    trial: u64,
    target: Target,
) -> Result<CertifiedOutcome> {
    let (k, n) = (matrix.n_models(), matrix.n_items());
    let mut search = CertifiedSearch::new(k, n, budget, seed, trial, target, 1)?;
    while search.run_stretch_with(|model, item| matrix.get(Pull { model, item })) {}
    debug_assert!(search.is_finished());
    Ok(CertifiedOutcome {
        pick: search.leader(),
        spent: search.spent(),
        epsilon: search.epsilon_reached(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn matrix_data(k: usize, n: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let p: Vec<f64> = (0..k).map(|m| 0.3 + 0.5 * m as f64 / k as f64).collect();
        (0..k * n).map(|i| rng.gen_bool(p[i / n]) as u8).collect()
    }

    /// Drive a search pull by pull, answers in random order, with failures (retries, skips
    /// when `fail_all` names a model) and a snapshot round trip now and then.
    fn ask_tell(
        matrix: Matrix,
        budget: u64,
        target: Target,
        failure_rate: f64,
        fail_all: Option<u32>,
    ) -> CertifiedSearch {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (k, n) = (matrix.n_models(), matrix.n_items());
        let mut s = CertifiedSearch::new(k, n, budget, 4, 2, target, 3).unwrap();
        let mut in_flight: Vec<Pull> = Vec::new();
        let mut steps = 0;
        while !s.is_finished() {
            steps += 1;
            s.next_pulls(rng.gen_range(1..=7), &mut in_flight);
            assert!(s.spent() + s.outstanding <= s.budget());
            let pull = in_flight.swap_remove(rng.gen_range(0..in_flight.len()));
            if Some(pull.model) == fail_all || rng.gen_bool(failure_rate) {
                s.record_failure(pull);
            } else {
                s.record(pull, matrix.get(pull));
            }
            if steps % 101 == 0 {
                s = bincode::deserialize(&bincode::serialize(&s).unwrap()).unwrap();
            }
        }
        assert!(in_flight.is_empty() && s.in_flight() == 0);
        s
    }

    #[test]
    fn ask_and_tell_make_the_decisions_of_whole_stretches() {
        let data = matrix_data(30, 500, 1);
        let matrix = Matrix::new(&data, 30, 500).unwrap();
        for (budget, epsilon) in [(15_000u64, 0.02), (2_000, 0.02), (15_000, 0.2)] {
            let target = Target::new(epsilon, 0.05).unwrap();
            let slow = ask_tell(matrix, budget, target, 0.0, None);
            let mut fast = CertifiedSearch::new(30, 500, budget, 4, 2, target, 3).unwrap();
            while fast.run_stretch_with(|model, item| matrix.get(Pull { model, item })) {}
            let decisions = |s: &CertifiedSearch| {
                let survivors = s.survivors().to_vec();
                (
                    s.leader(),
                    s.spent(),
                    s.epsilon_reached(),
                    survivors,
                    s.hits().to_vec(),
                    s.seen().to_vec(),
                    s.dropped_in().to_vec(),
                )
            };
            assert_eq!(decisions(&slow), decisions(&fast), "{budget} {epsilon}");
            assert!(fast.spent() <= budget);
        }
        // Retries that end in an answer change nothing but the failure count.
        let target = Target::new(0.02, 0.05).unwrap();
        let retried = ask_tell(matrix, 15_000, target, 0.03, None);
        let clean = ask_tell(matrix, 15_000, target, 0.0, None);
        assert_eq!(
            (retried.leader(), retried.spent(), retried.epsilon_reached()),
            (clean.leader(), clean.spent(), clean.epsilon_reached())
        );
        assert!(retried.failed() > 100 && retried.skipped() == 0);
    }

    #[test]
    fn a_model_that_never_answers_is_never_dropped() {
        // Model 29 is the best; model 3 never answers: its unknown answers count as right
        // against the leader, so it can neither be dropped nor certified within 2 points.
        let data = matrix_data(30, 500, 2);
        let matrix = Matrix::new(&data, 30, 500).unwrap();
        let target = Target::new(0.02, 0.05).unwrap();
        let s = ask_tell(matrix, 15_000, target, 0.0, Some(3));
        assert!(s.survivors().contains(&3), "{:?}", s.survivors());
        assert!(s.epsilon_reached() > 0.02);
        assert!(s.skipped() > 0);
        // Without the failures the same search certifies and drops model 3.
        let clean = ask_tell(matrix, 15_000, target, 0.0, None);
        assert!(!clean.survivors().contains(&3));
    }
}
