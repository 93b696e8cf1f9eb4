//! The reference rows that query nothing: a uniformly random model and the most downloaded one.
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::rng::tie_key;

/// What a pick without queries sees.
pub struct Pick<'a> {
    pub n_models: u32,
    /// Downloads per model (`SearchConfig::validate` requires them for best_base).
    pub popularity: Option<&'a [f64]>,
    pub rng: &'a mut ChaCha8Rng,
    pub tie_seed: u64,
    /// The scheduler's decision counter: a pick that breaks ties takes the next salt from it.
    pub decisions: &'a mut u64,
}

pub type Picker = fn(Pick) -> Option<u32>;

pub fn random(pick: Pick) -> Option<u32> {
    Some(pick.rng.gen_range(0..pick.n_models))
}

/// The most downloaded model; ties go to the highest random key.
pub fn best_base(pick: Pick) -> Option<u32> {
    let popularity = pick.popularity.unwrap_or(&[]);
    *pick.decisions += 1;
    let (tie_seed, salt) = (pick.tie_seed, *pick.decisions);
    (0..pick.n_models).max_by(|&a, &b| {
        popularity[a as usize]
            .total_cmp(&popularity[b as usize])
            .then(tie_key(tie_seed, salt, a).cmp(&tie_key(tie_seed, salt, b)))
    })
}
