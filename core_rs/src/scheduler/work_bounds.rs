//! Every scheduler call does bounded work at the heaviest parameters this version accepts,
//! counted in loop iterations ([`crate::work`]), not timed. A confident leader is the worst
//! case for TTTS (every challenger search spends all `max_resample` draws), the case that
//! froze a server when `max_resample` had no upper bound.
use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Pull, Scheduler};
use crate::algorithms::Algorithm;
use crate::config::SearchConfig;
use crate::params::{MAX_ATTEMPTS, MAX_RESAMPLE, UCB_C, UCB_E_A};
use crate::policy::round_plan::RoundPlan;
use crate::work;

const K: usize = 120;
const N: usize = 40;

/// Terms of one tail sum or conditional draw (at most a = successes + 1 <= N + 1), tries of a
/// draw below a threshold (64) and steps of a threshold search (100).
const TERMS: u64 = N as u64 + 1;
const TRIES: u64 = 64;
const THRESHOLD: u64 = 100 * (TERMS + 1);

/// The guaranteed bound of one call handing out `pulls` pulls (docs/search.md, "Work per
/// scheduler call"), or of one tell (`pulls` = 0).
fn bound(algorithm: &Algorithm, plan_len: u64, pulls: u64) -> u64 {
    let (k, n) = (K as u64, N as u64);
    // Any call: a tell's bookkeeping and at most one round close and plan per told pull:
    // survivors, plan reserves, the item-cap check and the item order.
    let rounds = (plan_len + 1) * (2 * k + 4 * plan_len + 1) + n;
    let per_pull = match algorithm {
        Algorithm::TopTwoThompson { max_resample, .. } => {
            // (max_resample + 1) posterior draws, each visiting each open model at most twice
            // (above or below its threshold) with its inner loop, plus the threshold update.
            (*max_resample as u64 + 1) * k * (2 + TERMS + TRIES) + THRESHOLD + 2
        }
        Algorithm::Ucb { .. } => n + 1 + k + 2, // one index per pull count, then the ties
        Algorithm::UcbE { .. } => k + 2,        // the ties at the top
        _ => k + 2, // round slots: survivors skipped at most once each per item position
    };
    // Rebuilding TTTS's state after a restore: a threshold per model.
    let rebuild = k * (THRESHOLD + 1);
    rounds + rebuild + pulls.max(1) * (per_pull + n)
}

fn heaviest() -> Vec<(&'static str, Vec<(&'static str, f64)>)> {
    vec![
        (
            "ttts",
            vec![
                ("leader_prob", f64::MIN_POSITIVE),
                ("max_resample", MAX_RESAMPLE.max),
            ],
        ),
        ("ucb", vec![("c", UCB_C.max)]),
        ("ucb_e", vec![("a", UCB_E_A.max)]),
        (
            "gem",
            vec![("first_cut", K as f64 - 1.0), ("first_round_share", 1e-300)],
        ),
        ("sr", vec![]),
        ("sh", vec![]),
        ("sh_correlated", vec![]),
        ("bayes_elim", vec![]),
        ("uniform", vec![]),
    ]
}

#[test]
fn every_call_is_bounded_at_the_heaviest_parameters() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // One clear leader: TTTS's challenger searches run to their cap.
    let p: Vec<f64> = (0..K).map(|m| if m == 0 { 0.97 } else { 0.3 }).collect();
    for (name, params) in heaviest() {
        let mut params: BTreeMap<String, f64> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        params.insert("max_attempts".into(), MAX_ATTEMPTS.max);
        let algorithm = Algorithm::from_name(name, &params).unwrap();
        let plan_len = RoundPlan::for_algorithm(&algorithm, K).map_or(0, |p| p.len()) as u64;
        let budget = if name == "ttts" {
            600
        } else {
            3 * (K * N) as u64 / 4
        };
        let mut config = SearchConfig::new(algorithm.clone(), K, N, budget, 3);
        config.max_attempts = MAX_ATTEMPTS.max as u32;
        work::take();
        let mut s = Scheduler::new(config).unwrap();
        let mut worst = work::take();
        assert!(
            worst <= bound(&algorithm, plan_len, 0),
            "{name} new: {worst}"
        );
        let mut calls = 0u64;
        while !s.is_finished() {
            calls += 1;
            assert!(calls < 1_000_000, "{name}: no end");
            if calls.is_multiple_of(50) {
                // A restore rebuilds the derived state on the next choice.
                s = bincode::deserialize(&bincode::serialize(&s).unwrap()).unwrap();
            }
            let want = rng.gen_range(1..=64usize);
            let mut pulls: Vec<Pull> = Vec::new();
            s.next_pulls(want, &mut pulls);
            let steps = work::take();
            let limit = bound(&algorithm, plan_len, pulls.len() as u64);
            assert!(steps <= limit, "{name} ask({want}): {steps} > {limit}");
            worst = worst.max(steps);
            for pull in pulls {
                if rng.gen_bool(0.05) {
                    s.record_failure(pull);
                } else {
                    s.record(pull, rng.gen_bool(p[pull.model as usize]));
                }
                let steps = work::take();
                let limit = bound(&algorithm, plan_len, 0);
                assert!(steps <= limit, "{name} tell: {steps} > {limit}");
                worst = worst.max(steps);
            }
        }
        eprintln!("{name}: worst call {worst} steps over {calls} asks");
    }
}

#[test]
fn ttts_choice_spends_at_most_max_resample_draws() {
    // Measured against the cap itself: a choice with a sure leader and no leader pull costs
    // about max_resample draws, so ten times the cap would be ten times the work.
    let arms_k = 50usize;
    let mut worst_by_cap = Vec::new();
    for max_resample in [1.0, 32.0, MAX_RESAMPLE.max] {
        let params: BTreeMap<String, f64> = [
            ("leader_prob".to_string(), f64::MIN_POSITIVE),
            ("max_resample".to_string(), max_resample),
        ]
        .into();
        let algorithm = Algorithm::from_name("ttts", &params).unwrap();
        let config = SearchConfig::new(algorithm, arms_k, 1000, 20_000, 5);
        let mut s = Scheduler::new(config).unwrap();
        // Model 0 right on every item, the others wrong: its posterior leads by far.
        let mut worst = 0;
        for _ in 0..600 {
            let mut pulls = Vec::new();
            s.next_pulls(1, &mut pulls);
            let steps = work::take();
            worst = worst.max(steps);
            for pull in pulls {
                s.record(pull, pull.model == 0);
            }
            work::take();
        }
        let cap = (max_resample as u64 + 1) * arms_k as u64 * (2 + 1001 + 64) + 100 * 1002;
        assert!(worst <= cap, "max_resample {max_resample}: {worst} > {cap}");
        eprintln!("ttts max_resample {max_resample}: worst choice {worst} steps");
        worst_by_cap.push(worst);
    }
    // The hunts do run to the cap (so the bound above is what holds them, not luck).
    assert!(worst_by_cap[2] > 5 * worst_by_cap[1], "{worst_by_cap:?}");
}
