//! Golden snapshots: the bytes of fixed searches, committed for every layout version.
//!
//! Searches stored in a database resume from their snapshot after an upgrade, so the layout of
//! `Session::snapshot` is a compatibility contract (core_rs/src/session.rs, `SNAPSHOT_HEADER`).
//! A change to a serialized type fails `the_layout_changes_only_with_a_version_bump`; the fix is
//! to bump the version, keep `Session::restore` reading the old one, and commit fixtures of the
//! new version beside the old ones (which must still restore):
//!     GEMFINDER_WRITE_FIXTURES=1 cargo test --test snapshot_layout
//! (writes only fixtures of a version that has none, never over committed ones).
use std::collections::BTreeMap;
use std::path::PathBuf;

use gemfinder_core::algorithms::Algorithm;
use gemfinder_core::config::SearchConfig;
use gemfinder_core::scheduler::Pull;
use gemfinder_core::session::{Session, SNAPSHOT_HEADER};

/// Fixed searches covering every kind of state a snapshot holds: a round-based search with
/// priors, popularity and parameters mid-round (pulls in flight, one failed pull queued for a
/// retry), and a sequential one.
const SEARCHES: &[&str] = &["gem", "ttts"];

/// The answer of a fixed, deterministic pool: model m answers item i correctly at a rate that
/// grows with m.
fn answer(pull: Pull) -> bool {
    (pull.item * 7 + pull.model * 3) % 10 < 2 + pull.model % 7
}

fn fixed_search(name: &str) -> Session {
    let params: BTreeMap<String, f64> = match name {
        "gem" => [("first_cut".into(), 4.0), ("first_round_share".into(), 0.3)].into(),
        _ => [("leader_prob".into(), 0.6), ("max_resample".into(), 8.0)].into(),
    };
    let mut config =
        SearchConfig::new(Algorithm::from_name(name, &params).unwrap(), 9, 30, 120, 42);
    config.trial = 2;
    config.max_attempts = 2;
    config.priors = Some((0..9).map(|m| (1.0 + m as f64, 2.0)).collect());
    config.popularity = Some((0..9).map(|m| (m * 10) as f64).collect());
    let mut session = Session::new(config).unwrap();
    let pulls = session.ask(40);
    for (i, &pull) in pulls.iter().enumerate().take(25) {
        // Exactly one failure: the attempts map it fills is a HashMap, whose order is not fixed.
        if i == 3 {
            session.tell_failed(pull).unwrap();
        } else {
            session.tell(pull, answer(pull)).unwrap();
        }
    }
    session
}

/// Ask and answer until the search ends: (recommendation, queries spent).
fn finish(mut session: Session) -> (Option<u32>, u64) {
    let in_flight: Vec<Pull> = session.in_flight().copied().collect();
    for pull in in_flight {
        session.tell(pull, answer(pull)).unwrap();
    }
    loop {
        let pulls = session.ask(5);
        if pulls.is_empty() {
            break;
        }
        for pull in pulls {
            session.tell(pull, answer(pull)).unwrap();
        }
    }
    (
        session.scheduler().recommendation(),
        session.scheduler().spent(),
    )
}

fn fixture_path(version: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("snapshot_{version}_{name}.hex"))
}

fn to_hex(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let lines: Vec<&str> = hex
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    lines.join("\n") + "\n"
}

fn from_hex(text: &str) -> Vec<u8> {
    let hex: String = text.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Every committed fixture: (version, search name, bytes).
fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let Some(rest) = stem.strip_prefix("snapshot_") else {
            continue;
        };
        let (version, name) = rest.split_once('_').unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        out.push((version.to_string(), name.to_string(), from_hex(&text)));
    }
    out.sort();
    out
}

#[test]
fn the_layout_changes_only_with_a_version_bump() {
    let version = std::str::from_utf8(SNAPSHOT_HEADER).unwrap();
    for name in SEARCHES {
        let bytes = fixed_search(name).snapshot();
        let path = fixture_path(version, name);
        if !path.exists() && std::env::var_os("GEMFINDER_WRITE_FIXTURES").is_some() {
            std::fs::write(&path, to_hex(&bytes)).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "no golden snapshot {} for layout {version}: write it with \
                 GEMFINDER_WRITE_FIXTURES=1 cargo test --test snapshot_layout and commit it",
                path.display()
            )
        });
        assert!(
            from_hex(&committed) == bytes,
            "The snapshot layout of a {name} search changed while the header still says \
             {version}: searches stored by the released version would not resume (or resume \
             as another search). Bump SNAPSHOT_HEADER in core_rs/src/session.rs, keep \
             Session::restore reading {version} (decode the old layout and convert), keep \
             {} and add fixtures of the new version (see this file's header).",
            path.display()
        );
    }
}

#[test]
fn every_committed_version_still_restores_and_finishes_like_the_fixed_search() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= SEARCHES.len(),
        "{} fixtures",
        fixtures.len()
    );
    for (version, name, bytes) in fixtures {
        let restored = Session::restore(&bytes)
            .unwrap_or_else(|e| panic!("snapshot {version} of {name} no longer restores: {e}"));
        let expected = fixed_search(&name);
        assert_eq!(
            restored.scheduler().config(),
            expected.scheduler().config(),
            "{version} {name}"
        );
        assert_eq!(finish(restored), finish(expected), "{version} {name}");
    }
}

/// A gem search saved while its first round was planned by the weights alone (before rounds
/// were planned knowing the item cap, docs/search.md): the layout is the same, so it restores
/// under GEMFND01 and its later rounds are planned by the current rule. It ends with the
/// fixed search's pick, on its whole budget (the weight rule alone would have left about a
/// tenth of the 120 queries unspent).
#[test]
fn a_search_planned_by_the_weights_alone_restores_and_finishes() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/planned_by_weights_GEMFND01_gem.hex");
    let bytes = from_hex(&std::fs::read_to_string(path).unwrap());
    let restored = Session::restore(&bytes).unwrap();
    let expected = fixed_search("gem");
    assert_eq!(restored.scheduler().config(), expected.scheduler().config());
    assert_eq!(restored.snapshot(), bytes, "decodes to what it was");
    assert_eq!(finish(restored), (Some(6), 120));
    assert_eq!(finish(expected), (Some(6), 120));
}
