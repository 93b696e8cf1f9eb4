//! Fixed-confidence search: successive elimination on certified bounds (docs/search.md, "Fixed
//! confidence and the certificate").
//!
//! Every survivor reads the trial's shared item permutation in order (the one the correlated
//! algorithms read, so trials compare with common random numbers), all survivors at the same
//! position. At each grid point of `certificate.rs` the leader (most correct answers so far,
//! lowest index on ties) is compared with every survivor on the shared items:
//! - a model whose upper bound on (its accuracy - the leader's) is below 0 is dropped: it is
//!   certified worse than the leader, so dropping it can never drop the best model while the
//!   bounds hold (the best model's bound against anyone is at least 0);
//! - the search stops once every survivor's bound against the leader is at most epsilon: the
//!   best model is a survivor, so the leader is within epsilon of it.
//!
//! Every dropped model has its certificate when it leaves, so the certificate of the result is
//! the maximum over survivors only. When the maximum budget runs out first, the leader is
//! returned with the best certificate reached. Work per check: one popcount per 64 items per
//! survivor.
use crate::certificate::{gap_upper_bound, grid_floor, grid_next, PairCounts, Target};
use crate::error::{CoreError, Result};
use crate::rng::{stream_rng, Stream};
use crate::sampling::ItemOrder;
use crate::scheduler::Pull;
use crate::simulate::{CertifiedOutcome, Matrix};

/// Each survivor's answers along the shared sequence, one bit per position.
struct Answers {
    words: usize,
    bits: Vec<u64>,
}

impl Answers {
    fn set(&mut self, model: u32, pos: u64) {
        let at = model as usize * self.words + (pos / 64) as usize;
        self.bits[at] |= 1 << (pos % 64);
    }

    /// Wins and losses of `m` against `w` on positions `..n`.
    fn pair(&self, m: u32, w: u32, n: u64) -> PairCounts {
        let row = |x: u32| &self.bits[x as usize * self.words..(x as usize + 1) * self.words];
        let (a, b) = (row(m), row(w));
        let mut counts = PairCounts {
            n,
            ..Default::default()
        };
        let full = (n / 64) as usize;
        for i in 0..full {
            counts.wins += (a[i] & !b[i]).count_ones() as u64;
            counts.losses += (!a[i] & b[i]).count_ones() as u64;
        }
        let rest = n % 64;
        if rest > 0 {
            let mask = (1u64 << rest) - 1;
            counts.wins += (a[full] & !b[full] & mask).count_ones() as u64;
            counts.losses += (!a[full] & b[full] & mask).count_ones() as u64;
        }
        counts
    }
}

/// One fixed-confidence search on a correctness matrix: at most `budget` queries.
pub fn run(
    matrix: Matrix,
    budget: u64,
    seed: u64,
    trial: u64,
    target: Target,
) -> Result<CertifiedOutcome> {
    let (k, n_items) = (matrix.n_models(), matrix.n_items() as u64);
    if k == 1 {
        return Ok(CertifiedOutcome {
            pick: 0,
            spent: 0,
            epsilon: 0.0,
        });
    }
    if budget < k as u64 {
        return Err(CoreError::invalid(
            "budget",
            format!("{budget} queries cannot give each of {k} models one item"),
        ));
    }
    let mut decisions = stream_rng(seed, trial, Stream::Decisions);
    let items = stream_rng(seed, trial, Stream::Items);
    let mut order = ItemOrder::new(
        k,
        n_items as usize,
        crate::algorithms::Sampling::Correlated,
        items,
        &mut decisions,
    );
    let words = n_items.div_ceil(64) as usize;
    let mut answers = Answers {
        words,
        bits: vec![0; k * words],
    };
    let mut hits = vec![0u64; k];
    let mut survivors: Vec<u32> = (0..k as u32).collect();
    let (mut read, mut spent) = (0u64, 0u64);
    let mut best = CertifiedOutcome {
        pick: 0,
        spent: 0,
        epsilon: 1.0,
    };
    loop {
        // Next stretch: up to the next grid point, or as far as the budget reaches.
        let alive = survivors.len() as u64;
        let upto = grid_next(read, n_items).min(read + (budget - spent) / alive);
        if upto == read {
            break;
        }
        order.prepare(upto as u32);
        for &m in &survivors {
            for pos in read..upto {
                let item = order.item(m, pos as u32);
                if matrix.get(Pull { model: m, item }) {
                    answers.set(m, pos);
                    hits[m as usize] += 1;
                }
            }
        }
        spent += alive * (upto - read);
        read = upto;
        let leader = survivors.iter().copied().fold(survivors[0], |l, m| {
            if hits[m as usize] > hits[l as usize] {
                m
            } else {
                l
            }
        });
        let at = grid_floor(read, n_items);
        let bound = |m: u32| gap_upper_bound(answers.pair(m, leader, at), n_items, k, target.delta);
        let mut epsilon = 0.0f64;
        survivors.retain(|&m| {
            if m == leader {
                return true;
            }
            let upper = bound(m);
            epsilon = epsilon.max(upper);
            upper >= 0.0
        });
        best = CertifiedOutcome {
            pick: leader,
            spent,
            epsilon,
        };
        if epsilon <= target.epsilon || read == n_items {
            break;
        }
    }
    best.spent = spent;
    Ok(best)
}
