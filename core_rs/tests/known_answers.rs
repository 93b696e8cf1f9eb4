//! Known-answer tests on Audibert-Bubeck style problems: one best arm among equal bad arms.
//! Uniform allocation's error rate is computed exactly from binomials; SH and SR must beat it
//! by the margins stated below, with 4,000 trials (standard error < 0.008).
use gemfinder_core::algorithms::Algorithm;
use gemfinder_core::config::SearchConfig;
use gemfinder_core::simulate::{run_trials, Matrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const K: usize = 20;
const N: usize = 20_000; // large, so drawing without replacement is close to Bernoulli draws
const TRIALS: u64 = 4_000;

/// Row 0 has accuracy about `best`, the others about `rest`: independent Bernoulli entries.
fn problem(best: f64, rest: f64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(2010);
    (0..K * N)
        .map(|i| rng.gen_bool(if i < N { best } else { rest }) as u8)
        .collect()
}

fn error_rate(name: &str, data: &[u8], budget: u64) -> f64 {
    let matrix = Matrix::new(data, K, N).unwrap();
    let acc = matrix.accuracies();
    let best = (0..K).max_by(|&a, &b| acc[a].total_cmp(&acc[b])).unwrap() as u32;
    let algorithm = Algorithm::from_name(name, &BTreeMap::new()).unwrap();
    let config = SearchConfig::new(algorithm, K, N, budget, 7);
    let outcomes = run_trials(&config, matrix, 0..TRIALS).unwrap();
    outcomes.iter().filter(|o| o.pick != best).count() as f64 / TRIALS as f64
}

fn binomial_pmf(t: usize, p: f64) -> Vec<f64> {
    let mut pmf = vec![0.0; t + 1];
    pmf[0] = (1.0 - p).powi(t as i32);
    for x in 0..t {
        pmf[x + 1] = pmf[x] * (t - x) as f64 / (x + 1) as f64 * p / (1.0 - p);
    }
    pmf
}

/// Exact error of "t items each, pick the best mean, ties at random" for independent arms.
fn uniform_error(acc: &[f64], t: usize) -> f64 {
    let pmfs: Vec<Vec<f64>> = acc.iter().map(|&p| binomial_pmf(t, p)).collect();
    let mut win = 0.0;
    for x in 0..=t {
        // dp[j]: probability that exactly j other arms tie at x and none exceeds it.
        let mut dp = vec![1.0];
        for pmf in &pmfs[1..] {
            let below: f64 = pmf[..x].iter().sum();
            let mut next = vec![0.0; dp.len() + 1];
            for (j, &d) in dp.iter().enumerate() {
                next[j] += d * below;
                next[j + 1] += d * pmf[x];
            }
            dp = next;
        }
        let tie_share: f64 = dp.iter().enumerate().map(|(j, d)| d / (j + 1) as f64).sum();
        win += pmfs[0][x] * tie_share;
    }
    1.0 - win
}

#[test]
fn uniform_matches_the_exact_error_rate() {
    let data = problem(0.5, 0.4);
    let acc = Matrix::new(&data, K, N).unwrap().accuracies();
    let exact = uniform_error(&acc, 100);
    let measured = error_rate("uniform", &data, 100 * K as u64);
    assert!(
        (measured - exact).abs() < 0.035,
        "measured {measured:.4}, exact {exact:.4}"
    );
    eprintln!("uniform exact {exact:.4} measured {measured:.4}"); // sanity of the problem itself
}

#[test]
fn sh_and_sr_beat_uniform_by_stated_margins() {
    let data = problem(0.5, 0.4);
    let acc = Matrix::new(&data, K, N).unwrap().accuracies();
    let uniform = uniform_error(&acc, 100);
    let budget = 100 * K as u64;
    let sh = error_rate("sh_correlated", &data, budget);
    let sr = error_rate("sr", &data, budget);
    let sh_independent = error_rate("sh", &data, budget);
    // One good arm among equal bad ones is where adaptive allocation pays most. Stated
    // intervals (about +-4 standard errors around 0.272 for SH and 0.171 for SR, measured with
    // this seed; uniform is 0.421 exactly): SR < SH < uniform.
    assert!((0.24..0.31).contains(&sh), "SH {sh:.3}");
    assert!((0.14..0.20).contains(&sr), "SR {sr:.3}");
    assert!(
        sr < sh && sh < uniform,
        "SR {sr:.3}, SH {sh:.3}, uniform {uniform:.3}"
    );
    // Independent sampling gives the same error here: arms are independent anyway.
    assert!((sh - sh_independent).abs() < 0.04, "{sh} {sh_independent}");
    eprintln!(
        "errors: uniform {uniform:.4} sh {sh:.4} sh_independent {sh_independent:.4} sr {sr:.4}"
    );
}
