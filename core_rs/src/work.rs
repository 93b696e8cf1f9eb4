//! Counted work of scheduler calls, so that tests can bound it by counting, not by timing
//! (docs/search.md, "Work per scheduler call"). Each loop whose length depends on a parameter
//! or on the search's state adds its iterations here; outside tests this compiles to nothing.
#[cfg(test)]
use std::cell::Cell;

#[cfg(test)]
thread_local! {
    static STEPS: Cell<u64> = const { Cell::new(0) };
}

/// Count `n` loop iterations.
#[inline(always)]
pub(crate) fn step(n: u64) {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + n));
    #[cfg(not(test))]
    let _ = n;
}

/// Iterations counted on this thread since the last call.
#[cfg(test)]
pub(crate) fn take() -> u64 {
    STEPS.with(|s| s.replace(0))
}
