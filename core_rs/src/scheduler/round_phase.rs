//! The round-based half of the scheduler: generating a round's pulls, running a whole round at
//! once (for the simulator), planning rounds by the shared budget rule and eliminating.
use super::{load_order, scorer, Phase, Pull, Scheduler};
use crate::rng::tie_key;
use crate::work;

impl Scheduler {
    /// Run the whole current round at once with answers from `answer(model, item)`, then
    /// eliminate and plan the next round: what asking for the round, grading every pull and
    /// telling each grade would do, without the per-pull bookkeeping. Only for a fresh round
    /// with nothing in flight; returns false (and does nothing) otherwise. The simulator uses
    /// it; the planning and elimination code is the same as for ask/tell.
    pub fn run_round_with(&mut self, mut answer: impl FnMut(u32, u32) -> bool) -> bool {
        let n = self.config.n_items as u32;
        let Phase::Rounds(rs) = &mut self.phase else {
            return false;
        };
        let fresh = rs.next_j == 0 && rs.next_survivor == 0;
        if !fresh || self.in_flight > 0 || !self.retries.is_empty() || rs.outstanding == 0 {
            return false;
        }
        let mut graded = 0u64;
        for &model in &self.survivors {
            let m = model as usize;
            let start = self.arms.cursor[m];
            let end = start.saturating_add(rs.t).min(n);
            let mut hits = 0u32;
            for pos in start..end {
                hits += answer(model, self.order.item(model, pos)) as u32;
            }
            self.arms.cursor[m] = end;
            self.arms.seen[m] += end - start;
            self.arms.successes[m] += hits;
            graded += (end - start) as u64;
        }
        debug_assert_eq!(graded, rs.outstanding);
        self.spent += graded;
        rs.outstanding = 0;
        self.close_round();
        self.plan_round();
        true
    }

    pub(super) fn generate_round_pull(&mut self) -> Option<Pull> {
        let n = self.config.n_items as u32;
        if self.load_aware_round() {
            return self.load_aware_pull();
        }
        let Phase::Rounds(rs) = &mut self.phase else {
            return None;
        };
        while rs.next_j < rs.t {
            while rs.next_survivor < self.survivors.len() {
                work::step(1);
                let model = self.survivors[rs.next_survivor];
                rs.next_survivor += 1;
                let cursor = &mut self.arms.cursor[model as usize];
                if *cursor < n {
                    let item = self.order.item(model, *cursor);
                    *cursor += 1;
                    return Some(Pull { model, item });
                }
            }
            rs.next_survivor = 0;
            rs.next_j += 1;
        }
        None
    }

    /// Plan the next round by the shared budget rule, or finish.
    pub(super) fn plan_round(&mut self) {
        loop {
            work::step(1 + self.survivors.len() as u64);
            let n = self.config.n_items as u64;
            let remaining = self.config.budget - self.spent;
            let Phase::Rounds(rs) = &mut self.phase else {
                return;
            };
            if rs.index >= rs.plan.len() || self.survivors.len() <= 1 {
                let pick = self.best_of_survivors();
                self.finish(pick);
                return;
            }
            let left = |m: &u32| n - self.arms.cursor[*m as usize] as u64;
            let need_all: u64 = self.survivors.iter().map(left).sum();
            let alive = self.survivors.len() as u64;
            let (t, exhaustive) = if remaining >= need_all {
                (self.survivors.iter().map(left).max().unwrap_or(0), true)
            } else {
                // Survivors of a round have answered equally many items (each round gives
                // them all the same count, capped at the items left), so one count stands for
                // all.
                let items_left = self.survivors.iter().map(left).max().unwrap_or(0);
                (
                    rs.plan
                        .items_per_survivor(rs.index, remaining, alive, items_left),
                    false,
                )
            };
            rs.t = t as u32;
            rs.exhaustive = exhaustive;
            rs.next_j = 0;
            rs.next_survivor = 0;
            rs.outstanding = self.survivors.iter().map(|m| left(m).min(t)).sum();
            if rs.outstanding > 0 {
                let furthest = self.survivors.iter().map(|&m| self.arms.cursor[m as usize]);
                let upto = furthest.max().unwrap_or(0) as u64 + t;
                self.order.prepare(upto.min(n) as u32);
                load_order::begin_round(&mut self.load, rs, &self.survivors, &self.arms.cursor);
                return;
            }
            // Nothing to ask this round (no budget or no items left): decide on what is known.
            self.close_round();
        }
    }

    /// Keep the best survivors of the finished round.
    pub(super) fn close_round(&mut self) {
        let salt = self.next_salt();
        let Phase::Rounds(rs) = &mut self.phase else {
            return;
        };
        let keep = if rs.exhaustive {
            1
        } else {
            rs.plan.survivors_after[rs.index]
        };
        let round = rs.index as u32;
        rs.index += 1;
        if rs.exhaustive {
            rs.index = rs.plan.len();
        }
        if keep >= self.survivors.len() {
            return;
        }
        work::step(self.survivors.len() as u64);
        let (arms, tie_seed) = (&self.arms, self.tie_seed);
        let score = scorer(&self.config);
        // Each survivor's sort key is computed once (a comparison-time key would cost a hash
        // and a division per comparison: a fifth of a simulated trial).
        let mut keyed: Vec<(f64, u64, u32)> = self
            .survivors
            .iter()
            .map(|&m| (score(arms, m), tie_key(tie_seed, salt, m), m))
            .collect();
        // Best first: descending score, then descending random key.
        keyed.select_nth_unstable_by(keep, |a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        for &(_, _, m) in &keyed[keep..] {
            self.arms.out_round[m as usize] = round;
        }
        self.survivors.clear();
        self.survivors
            .extend(keyed[..keep].iter().map(|&(_, _, m)| m));
        self.survivors.sort_unstable();
    }
}
