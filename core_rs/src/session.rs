//! The ask/tell protocol around a scheduler: it checks that every answer belongs to a pull in
//! flight, and saves or restores the whole search as bytes.
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::config::SearchConfig;
use crate::error::{CoreError, Result};
use crate::scheduler::{Pull, Scheduler};

/// The first bytes of every snapshot: "GEMFND" and the two-digit version of the layout that
/// follows (bincode 1 of [`Session`]: the order of every field and enum variant it reaches,
/// down to `SearchConfig` and `Algorithm`). Stored searches resume from these bytes after an
/// upgrade, so the layout is a compatibility contract: a change to it bumps the version here and
/// keeps `restore` reading the old one (decode the old layout, convert). The golden fixtures in
/// `core_rs/tests/fixtures/` fail the build when the layout changes without a bump.
pub const SNAPSHOT_HEADER: &[u8; 8] = b"GEMFND01";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    scheduler: Scheduler,
    /// Ordered, so that releasing after a restore is deterministic.
    in_flight: BTreeSet<Pull>,
}

impl Session {
    pub fn new(config: SearchConfig) -> Result<Self> {
        Ok(Session {
            scheduler: Scheduler::new(config)?,
            in_flight: BTreeSet::new(),
        })
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// See [`Scheduler::set_load_groups`].
    pub fn set_load_groups(&mut self, groups: Vec<u32>) -> Result<()> {
        self.scheduler.set_load_groups(groups)
    }

    pub fn ask(&mut self, max: usize) -> Vec<Pull> {
        let mut pulls = Vec::new();
        self.scheduler.next_pulls(max, &mut pulls);
        self.in_flight.extend(pulls.iter().copied());
        pulls
    }

    fn take(&mut self, pull: Pull) -> Result<()> {
        if self.in_flight.remove(&pull) {
            Ok(())
        } else {
            Err(CoreError::UnknownPull {
                model: pull.model,
                item: pull.item,
            })
        }
    }

    pub fn tell(&mut self, pull: Pull, correct: bool) -> Result<()> {
        self.take(pull)?;
        self.scheduler.record(pull, correct);
        Ok(())
    }

    pub fn tell_failed(&mut self, pull: Pull) -> Result<()> {
        self.take(pull)?;
        self.scheduler.record_failure(pull);
        Ok(())
    }

    pub fn in_flight(&self) -> impl Iterator<Item = &Pull> {
        self.in_flight.iter()
    }

    /// Return every pull in flight to the queue (after a restart lost their answers).
    pub fn release_in_flight(&mut self) -> usize {
        let pulls: Vec<Pull> = std::mem::take(&mut self.in_flight).into_iter().collect();
        // Requeue pushes to the front, so go backwards to keep the original order.
        for &pull in pulls.iter().rev() {
            self.scheduler.requeue(pull);
        }
        pulls.len()
    }

    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = SNAPSHOT_HEADER.to_vec();
        bincode::serialize_into(&mut bytes, self).expect("serialising to memory cannot fail");
        bytes
    }

    pub fn restore(bytes: &[u8]) -> Result<Self> {
        let body = bytes
            .strip_prefix(SNAPSHOT_HEADER.as_slice())
            .ok_or_else(|| {
                CoreError::CorruptSnapshot("not a gemfinder snapshot (bad header)".into())
            })?;
        let session: Session =
            bincode::deserialize(body).map_err(|e| CoreError::CorruptSnapshot(e.to_string()))?;
        // A search saved by an older version may hold a parameter this version refuses (such as
        // max_resample 2^32 - 1): refused here, it fails with the reason instead of looping.
        session.scheduler.config().validate()?;
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::Algorithm;

    #[test]
    fn a_stored_parameter_out_of_range_is_refused_on_restore() {
        let ttts = |max_resample| Algorithm::TopTwoThompson {
            leader_prob: 0.5,
            max_resample,
        };
        let mut session = Session::new(SearchConfig::new(ttts(32), 10, 20, 100, 1)).unwrap();
        assert!(Session::restore(&session.snapshot()).is_ok());
        // What an older version stored for max_resample 1e300 (saturated to u32).
        session.scheduler.config_mut().algorithm = ttts(u32::MAX);
        let err = Session::restore(&session.snapshot()).unwrap_err();
        assert_eq!(err.field(), "params.max_resample");
        assert!(err.to_string().contains("4.294967295e9"), "{err}");
    }
}
