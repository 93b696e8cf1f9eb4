//! Property tests of the scheduler: budget, determinism, snapshots, failures, exactness.
mod common;

use common::{config, drive, drive_with, random_matrix, ALL};
use gemfinder_core::error::ErrorKind;
use gemfinder_core::session::Session;
use gemfinder_core::simulate::Matrix;
use proptest::prelude::*;

fn budget_for(k: usize, n: usize, min: u64, frac: f64) -> u64 {
    let full = (k * n) as u64;
    min + ((full.saturating_sub(min)) as f64 * frac) as u64
}

fn min_budget(name: &str, k: usize, n: usize) -> u64 {
    // The smallest budget the scheduler accepts (found by trying; K * N always works).
    let full = (k * n) as u64;
    let (mut lo, mut hi) = (0u64, full);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if Session::new(config(name, k, n, mid, 0)).is_ok() {
            hi = mid
        } else {
            lo = mid
        }
    }
    hi
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn never_over_budget_and_deterministic(
        alg in 0..ALL.len(), k in 2usize..40, n in 1usize..60, frac in 0.0f64..1.2,
        seed in any::<u64>(), fail in prop_oneof![Just(0.0), 0.0f64..0.4],
    ) {
        let name = ALL[alg];
        let budget = budget_for(k, n, min_budget(name, k, n), frac);
        let matrix = random_matrix(k, n, seed);
        let mut a = Session::new(config(name, k, n, budget, seed)).unwrap();
        let events_a = drive(&mut a, &matrix, n, fail, seed);
        prop_assert!(a.scheduler().is_finished());
        prop_assert!(a.scheduler().spent() <= budget);
        prop_assert!(a.scheduler().spent() <= (k * n) as u64);
        let graded = events_a.iter().filter(|e| e.2 != 2).count() as u64;
        prop_assert_eq!(graded, a.scheduler().spent());
        let mut b = Session::new(config(name, k, n, budget, seed)).unwrap();
        let events_b = drive(&mut b, &matrix, n, fail, seed);
        prop_assert_eq!(events_a, events_b);
        prop_assert_eq!(a.scheduler().recommendation(), b.scheduler().recommendation());
    }

    #[test]
    fn snapshot_resumes_identically(
        alg in 0..ALL.len(), k in 2usize..30, n in 2usize..40, frac in 0.0f64..1.0,
        seed in any::<u64>(), asks in 0usize..40, fail in prop_oneof![Just(0.0), 0.0f64..0.3],
    ) {
        let name = ALL[alg];
        let budget = budget_for(k, n, min_budget(name, k, n), frac);
        let matrix = random_matrix(k, n, seed);
        let mut whole = Session::new(config(name, k, n, budget, seed)).unwrap();
        let expected = drive(&mut whole, &matrix, n, fail, seed);

        // Replay the first `asks` asks, snapshot, restore, and replay the rest on the copy:
        // every pull and the final pick must be those of the uninterrupted run.
        let mut script = expected.iter().copied();
        let mut answer = |m: u32, i: u32| {
            let (em, ei, r) = script.next().expect("no more pulls than the original run");
            assert_eq!((m, i), (em, ei));
            r
        };
        let mut part = Session::new(config(name, k, n, budget, seed)).unwrap();
        let mut events = drive_with(&mut part, asks, &mut answer);
        let mut restored = Session::restore(&part.snapshot()).unwrap();
        prop_assert_eq!(&restored, &part);
        events.extend(drive_with(&mut restored, usize::MAX, &mut answer));
        prop_assert_eq!(events, expected);
        prop_assert_eq!(restored.scheduler().recommendation(), whole.scheduler().recommendation());
    }

    #[test]
    fn restart_with_lost_answers_reaches_the_same_pick(
        alg in 0..6usize, k in 2usize..30, n in 2usize..40, frac in 0.0f64..1.0,
        seed in any::<u64>(), asks in 0usize..40, lost in 1usize..5,
    ) {
        // Round-based algorithms (the first six of ALL but TTTS) do not depend on the order of
        // answers, so answers lost in a crash only need to be asked again.
        let name = ["uniform", "sh", "sh_correlated", "gem", "sr", "bayes_elim"][alg];
        let budget = budget_for(k, n, min_budget(name, k, n), frac);
        let matrix = random_matrix(k, n, seed);
        let answer = |m: u32, i: u32| matrix[m as usize * n + i as usize];
        let mut whole = Session::new(config(name, k, n, budget, seed)).unwrap();
        drive_with(&mut whole, usize::MAX, answer);
        let mut part = Session::new(config(name, k, n, budget, seed)).unwrap();
        drive_with(&mut part, asks, answer);
        part.ask(lost); // handed out, then the process dies before the answers arrive
        let mut restored = Session::restore(&part.snapshot()).unwrap();
        restored.release_in_flight();
        drive_with(&mut restored, usize::MAX, answer);
        prop_assert_eq!(restored.scheduler().recommendation(), whole.scheduler().recommendation());
        prop_assert_eq!(restored.scheduler().spent(), whole.scheduler().spent());
    }

    #[test]
    fn failures_never_move_estimates(
        alg in 0..ALL.len(), k in 2usize..20, n in 2usize..30, seed in any::<u64>(),
    ) {
        let name = ALL[alg];
        let budget = budget_for(k, n, min_budget(name, k, n), 0.5);
        let mut s = Session::new(config(name, k, n, budget, seed)).unwrap();
        let pulls = s.ask(5);
        let before = s.scheduler().arms().clone();
        let spent = s.scheduler().spent();
        for p in pulls {
            s.tell_failed(p).unwrap();
            let after = s.scheduler().arms();
            prop_assert_eq!(&after.successes, &before.successes);
            prop_assert_eq!(&after.seen, &before.seen);
            prop_assert_eq!(s.scheduler().spent(), spent);
        }
    }

    #[test]
    fn full_budget_finds_the_exact_best(
        alg in 0..ALL.len(), k in 2usize..25, n in 1usize..30, seed in any::<u64>(), extra in 0u64..50,
    ) {
        let name = ALL[alg];
        let matrix = random_matrix(k, n, seed);
        let acc = Matrix::new(&matrix, k, n).unwrap().accuracies();
        let best = acc.iter().cloned().fold(f64::MIN, f64::max);
        let budget = (k * n) as u64 + extra;
        let mut s = Session::new(config(name, k, n, budget, seed)).unwrap();
        drive(&mut s, &matrix, n, 0.0, seed);
        let pick = s.scheduler().recommendation().unwrap() as usize;
        prop_assert_eq!(acc[pick], best, "{} picked {} of {:?}", name, pick, acc);
    }
}

#[test]
fn unknown_pulls_are_rejected() {
    let mut s = Session::new(config("sh_correlated", 4, 10, 40, 1)).unwrap();
    let p = s.ask(1)[0];
    s.tell(p, true).unwrap();
    assert_eq!(s.tell(p, true).unwrap_err().kind(), ErrorKind::UnknownPull);
}

#[test]
fn corrupt_snapshots_are_rejected() {
    assert_eq!(
        Session::restore(b"nonsense").unwrap_err().kind(),
        ErrorKind::CorruptSnapshot
    );
    let s = Session::new(config("gem", 8, 10, 80, 1)).unwrap();
    let bytes = s.snapshot();
    assert!(Session::restore(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn budget_too_small_names_the_minimum() {
    let err = Session::new(config("sh", 100, 1000, 200, 0)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetTooSmall);
    assert!(err.to_string().contains("201"), "{err}");
}
