//! Load-aware order of a round's pulls (issue #17): the same pulls as the item-major order, so
//! the round's items, correlated sampling and the winner do not change, handed out so that each
//! model is brought up as few times as an endpoint's slots allow.
//!
//! Every model has a group (its endpoint, from the caller). Within a group the round serves one
//! model after another, all of its pulls together, so a model is loaded (or an adapter moved into
//! a GPU slot) once per round instead of once per item; across groups the pulls alternate, so
//! every endpoint gets work from the first pulls. Each round serves a group's survivors in the
//! reverse of the previous round's order: the models served last, which are the ones still
//! resident whatever the number of slots (least recently used eviction), come first and cost no
//! load. With S slots and s survivors on an endpoint a round then costs max(0, s - S) loads after
//! the first round, against up to one per pull in item-major order.
//!
//! Sequential algorithms (UCB, UCB-E, TTTS) have no rounds: each pull is chosen from the grades so
//! far, so there is nothing to reorder; what their moves between models cost is accounted by the
//! search (gemfinder.cost), not planned.
//!
//! Snapshots keep their layout: a load-aware round marks itself in the round state's
//! `next_survivor` ([`LOAD_AWARE`]) and keeps the survivors' common cursor at its start in
//! `next_j`, which is all a restored scheduler needs to finish the round with the same pulls
//! (lanes rebuilt in model order). Everything else here is derived and not saved.
use super::{Phase, Pull, RoundState, Scheduler};
use crate::error::{CoreError, Result};
use crate::sampling::ItemOrder;
use crate::work;

/// `RoundState::next_survivor` of a load-aware round (the item-major order never reaches it).
pub(super) const LOAD_AWARE: usize = usize::MAX;

#[derive(Clone, Default)]
pub(crate) struct LoadOrder {
    /// Group (endpoint) of each model; empty: rounds are item-major.
    groups: Vec<u32>,
    /// The current round's lanes: per group, its survivors in serving order.
    lanes: Vec<Vec<u32>>,
    /// Per lane, the first model that may still have pulls this round.
    pos: Vec<usize>,
    /// The lane that gives the next pull (round-robin over lanes).
    next_lane: usize,
    /// Per group, the order of the last round built, to serve its last models first.
    last: Vec<Vec<u32>>,
    built: bool,
}

impl PartialEq for LoadOrder {
    /// Derived from the saved state and the caller's groups: not part of a search's state.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for LoadOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadOrder({} groups)", self.lanes.len())
    }
}

impl LoadOrder {
    fn group(&self, model: u32) -> usize {
        self.groups.get(model as usize).copied().unwrap_or(0) as usize
    }

    /// This round's lanes from the survivors (sorted): per group, the survivors the previous
    /// round served, last served first, then the others in model order.
    fn build(&mut self, survivors: &[u32], n_models: usize) {
        work::step(1 + survivors.len() as u64);
        let n_groups = self.groups.iter().max().map_or(1, |&g| g as usize + 1);
        let mut placed = vec![false; n_models];
        let mut lanes = vec![Vec::new(); n_groups];
        for (g, order) in self.last.iter().enumerate().take(n_groups) {
            for &m in order.iter().rev() {
                if survivors.binary_search(&m).is_ok() {
                    placed[m as usize] = true;
                    lanes[g].push(m);
                }
            }
        }
        for &m in survivors {
            if !placed[m as usize] {
                let g = self.group(m);
                lanes[g].push(m);
            }
        }
        lanes.retain(|lane| !lane.is_empty());
        self.last = vec![Vec::new(); n_groups];
        for lane in &lanes {
            let g = self.group(lane[0]);
            self.last[g] = lane.clone();
        }
        self.pos = vec![0; lanes.len()];
        self.lanes = lanes;
        self.next_lane = 0;
        self.built = true;
    }

    /// The next pull of a load-aware round: round-robin over lanes, each lane's models one
    /// after another, each up to the round's end cursor `end`.
    fn next_pull(&mut self, cursor: &mut [u32], order: &ItemOrder, end: u32) -> Option<Pull> {
        let lanes = self.lanes.len();
        for _ in 0..lanes {
            let g = self.next_lane;
            self.next_lane = (g + 1) % lanes;
            while self.pos[g] < self.lanes[g].len() {
                work::step(1);
                let model = self.lanes[g][self.pos[g]];
                let c = &mut cursor[model as usize];
                if *c < end {
                    let item = order.item(model, *c);
                    *c += 1;
                    return Some(Pull { model, item });
                }
                self.pos[g] += 1;
            }
        }
        None
    }
}

impl Scheduler {
    /// Serve rounds load-aware, `groups[m]` being model m's endpoint (any numbering): from the
    /// current round if none of its pulls was handed out yet, else from the next one. Not saved
    /// in snapshots: set it again after a restore.
    pub fn set_load_groups(&mut self, groups: Vec<u32>) -> Result<()> {
        if groups.len() != self.config.n_models {
            return Err(CoreError::invalid(
                "load_groups",
                format!(
                    "one group per model: {} given for {} models",
                    groups.len(),
                    self.config.n_models
                ),
            ));
        }
        self.load.groups = groups;
        self.load.built = false;
        self.load.last.clear();
        if let Phase::Rounds(rs) = &mut self.phase {
            if rs.next_j == 0 && rs.next_survivor == 0 {
                begin_round(&mut self.load, rs, &self.survivors, &self.arms.cursor);
            }
        }
        Ok(())
    }

    /// Whether the current round hands out its pulls load-aware.
    pub fn load_aware_round(&self) -> bool {
        matches!(&self.phase, Phase::Rounds(rs) if rs.next_survivor == LOAD_AWARE)
    }

    pub(super) fn load_aware_pull(&mut self) -> Option<Pull> {
        let n = self.config.n_items as u32;
        let n_models = self.config.n_models;
        let Phase::Rounds(rs) = &mut self.phase else {
            return None;
        };
        if !self.load.built {
            self.load.build(&self.survivors, n_models);
        }
        let end = rs.next_j.saturating_add(rs.t).min(n);
        self.load.next_pull(&mut self.arms.cursor, &self.order, end)
    }
}

/// Called when a round is planned (item-major state at its start): make it load-aware when
/// groups are set and every survivor starts from the same cursor (always so for the round-based
/// algorithms; else the round stays item-major).
pub(super) fn begin_round(
    load: &mut LoadOrder,
    rs: &mut RoundState,
    survivors: &[u32],
    cursor: &[u32],
) {
    if load.groups.is_empty() || survivors.is_empty() {
        return;
    }
    let start = cursor[survivors[0] as usize];
    if survivors.iter().any(|&m| cursor[m as usize] != start) {
        return;
    }
    rs.next_j = start;
    rs.next_survivor = LOAD_AWARE;
    load.built = false;
}

#[cfg(test)]
mod tests {
    use crate::config::SearchConfig;
    use crate::scheduler::{Pull, Scheduler};
    use std::collections::BTreeMap;

    fn scheduler(algorithm: &str, k: usize, n: usize, budget: u64, seed: u64) -> Scheduler {
        let config = SearchConfig::from_request(algorithm, &BTreeMap::new(), k, n, budget, seed)
            .expect("config");
        Scheduler::new(config).expect("scheduler")
    }

    fn truth(m: u32, i: u32) -> bool {
        // A fixed matrix with a clear best model (the last), noisy elsewhere.
        (m * 7 + i * 13) % 10 < 3 + m % 5 || (m == 11 && i % 10 < 8)
    }

    /// Run to the end, answering from `truth`, asking `batch` pulls at a time; the pulls of each
    /// round (in order) and the recommendation.
    fn drive(mut s: Scheduler, batch: usize) -> (Vec<Vec<Pull>>, Option<u32>) {
        let mut rounds: Vec<Vec<Pull>> = vec![Vec::new()];
        let mut round = s.round();
        while !s.is_finished() {
            let mut pulls = Vec::new();
            s.next_pulls(batch, &mut pulls);
            assert!(!pulls.is_empty());
            for p in pulls {
                rounds.last_mut().unwrap().push(p);
                s.record(p, truth(p.model, p.item));
                if s.round() != round {
                    round = s.round();
                    rounds.push(Vec::new());
                }
            }
        }
        (rounds, s.recommendation())
    }

    fn sorted(mut pulls: Vec<Pull>) -> Vec<Pull> {
        pulls.sort();
        pulls
    }

    /// Loads an endpoint with `slots` LRU slots pays for a sequence of pulls.
    fn loads(pulls: &[Pull], groups: &[u32], slots: usize) -> usize {
        let mut resident: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut n = 0;
        for p in pulls {
            let lane = resident.entry(groups[p.model as usize]).or_default();
            if let Some(at) = lane.iter().position(|&m| m == p.model) {
                lane.remove(at);
            } else {
                n += 1;
                if lane.len() == slots {
                    lane.remove(0);
                }
            }
            lane.push(p.model);
        }
        n
    }

    #[test]
    fn same_pulls_per_round_same_winner_far_fewer_loads() {
        let groups: Vec<u32> = (0..12).map(|m| m % 3).collect();
        for (algorithm, seed) in [("sh", 1), ("gem", 2), ("sr", 3), ("uniform", 4)] {
            let plain = scheduler(algorithm, 12, 200, 900, seed);
            let mut aware = plain.clone();
            aware.set_load_groups(groups.clone()).unwrap();
            assert!(aware.load_aware_round(), "{algorithm}");
            let (a, winner_a) = drive(plain, 64);
            let (b, winner_b) = drive(aware, 64);
            assert_eq!(winner_a, winner_b, "{algorithm}");
            assert_eq!(a.len(), b.len(), "{algorithm}");
            for (ra, rb) in a.iter().zip(&b) {
                assert_eq!(
                    sorted(ra.clone()),
                    sorted(rb.clone()),
                    "{algorithm}: a round's pulls"
                );
            }
            let all_a: Vec<Pull> = a.concat();
            let all_b: Vec<Pull> = b.concat();
            let (la, lb) = (loads(&all_a, &groups, 2), loads(&all_b, &groups, 2));
            assert!(lb * 5 < la, "{algorithm}: {lb} loads load-aware vs {la}");
        }
    }

    #[test]
    fn each_model_is_loaded_once_per_round_and_residents_stay() {
        let groups = vec![0u32; 6]; // one endpoint, 2 slots
        let mut s = scheduler("sh", 6, 120, 600, 9);
        s.set_load_groups(groups.clone()).unwrap();
        let (rounds, _) = drive(s, 1000);
        let mut resident: Vec<u32> = Vec::new();
        for (r, pulls) in rounds.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            // Contiguous: a model's pulls of a round are never interrupted on its endpoint.
            let mut seen: Vec<u32> = Vec::new();
            for p in pulls {
                if seen.last() != Some(&p.model) {
                    assert!(
                        !seen.contains(&p.model),
                        "round {r}: model {} split",
                        p.model
                    );
                    seen.push(p.model);
                }
            }
            // The models still resident from the last round come first.
            let kept: Vec<u32> = resident
                .iter()
                .filter(|m| seen.contains(m))
                .copied()
                .collect();
            assert!(
                seen.iter().take(kept.len()).all(|m| kept.contains(m)),
                "round {r}"
            );
            resident = seen.iter().rev().take(2).copied().collect();
        }
    }

    /// The rest of the current round, pull by pull, after `already`.
    fn finish_round(mut s: Scheduler, already: Vec<Pull>) -> Vec<Pull> {
        let start = s.round();
        let mut out = already;
        loop {
            let mut pulls = Vec::new();
            s.next_pulls(1, &mut pulls);
            let Some(&p) = pulls.first() else { break };
            s.record(p, truth(p.model, p.item));
            out.push(p);
            if s.round() != start {
                break;
            }
        }
        out
    }

    #[test]
    fn a_restored_load_aware_round_finishes_with_the_same_pulls() {
        let groups: Vec<u32> = (0..8).map(|m| m % 2).collect();
        let mut s = scheduler("sh", 8, 100, 500, 5);
        s.set_load_groups(groups).unwrap();
        let whole = finish_round(s.clone(), Vec::new());
        let mut first = Vec::new();
        s.next_pulls(37, &mut first);
        for &p in &first {
            s.record(p, truth(p.model, p.item));
        }
        // A restore: everything but the saved state is lost (no groups, no lanes).
        let bytes = bincode::serialize(&s).unwrap();
        let restored: Scheduler = bincode::deserialize(&bytes).unwrap();
        assert!(restored.load_aware_round());
        let rest = finish_round(restored, first);
        assert!(whole.len() > 37);
        assert_eq!(sorted(rest), sorted(whole));
    }

    #[test]
    fn groups_must_name_every_model() {
        let mut s = scheduler("sh", 4, 50, 100, 1);
        assert!(s.set_load_groups(vec![0, 1]).is_err());
    }
}
