//! Helpers shared by the integration tests: random matrices and a driver that answers pulls.
#![allow(dead_code)]
use std::collections::BTreeMap;

use gemfinder_core::algorithms::Algorithm;
use gemfinder_core::config::SearchConfig;
use gemfinder_core::session::Session;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const ALL: &[&str] = &[
    "uniform",
    "sh",
    "sh_correlated",
    "gem",
    "sr",
    "ttts",
    "bayes_elim",
    "ucb",
    "ucb_e",
];

/// A random 0/1 matrix whose rows have accuracies spread over [0.1, 0.9].
pub fn random_matrix(k: usize, n: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let p: Vec<f64> = (0..k).map(|_| rng.gen_range(0.1..0.9)).collect();
    (0..k * n).map(|i| rng.gen_bool(p[i / n]) as u8).collect()
}

pub fn config(name: &str, k: usize, n: usize, budget: u64, seed: u64) -> SearchConfig {
    let mut params = BTreeMap::new();
    if name == "gem" {
        params.insert("first_cut".to_string(), 4.0);
    }
    SearchConfig::new(
        Algorithm::from_name(name, &params).unwrap(),
        k,
        n,
        budget,
        seed,
    )
}

/// Drive a session, answering from `matrix` and failing a pull with probability `fail`, for at
/// most `max_asks` asks. Returns every (model, item, outcome) event in order (2 = failure).
pub fn drive(
    session: &mut Session,
    matrix: &[u8],
    n: usize,
    fail: f64,
    seed: u64,
) -> Vec<(u32, u32, u8)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    drive_with(session, usize::MAX, |m, i| {
        if rng.gen_bool(fail) {
            2
        } else {
            matrix[m as usize * n + i as usize]
        }
    })
}

/// Drive a session with answers from `answer(model, item)` (0, 1, or 2 = failure).
pub fn drive_with(
    session: &mut Session,
    max_asks: usize,
    mut answer: impl FnMut(u32, u32) -> u8,
) -> Vec<(u32, u32, u8)> {
    let mut events = Vec::new();
    let batch = if session.scheduler().config().algorithm.is_round_based() {
        7
    } else {
        2
    };
    for _ in 0..max_asks {
        let pulls = session.ask(batch);
        if pulls.is_empty() {
            break;
        }
        for p in pulls {
            let outcome = answer(p.model, p.item);
            if outcome == 2 {
                session.tell_failed(p).unwrap();
            } else {
                session.tell(p, outcome == 1).unwrap();
            }
            events.push((p.model, p.item, outcome));
        }
    }
    events
}
