//! The policies' random generator: xorshift64, so a trace depends on the seed alone and a
//! checkpoint can carry the generator as one number.

/// A seeded xorshift64 generator (never zero).
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    /// The generator of `seed` (any value, zero included).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Continues from a [`XorShift::state`] (zero, never a state, becomes one).
    pub(crate) fn from_state(state: u64) -> Self {
        Self(state.max(1))
    }

    pub(crate) fn state(&self) -> u64 {
        self.0
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// A redrawing policy's state for a checkpoint: the generator's, then the current set (one
/// value per unit, 1: trainable) when one was drawn.
pub(crate) fn drawn_state(rng: &XorShift, current: &Option<Vec<bool>>) -> Vec<u64> {
    let mut state = vec![rng.state()];
    if let Some(current) = current {
        state.extend(current.iter().map(|&t| u64::from(t)));
    }
    state
}

/// The generator and current set of a [`drawn_state`] over `units` units; `policy` names
/// the policy in the error.
pub(crate) fn restore_drawn(
    state: &[u64],
    units: usize,
    policy: &str,
) -> Result<(XorShift, Option<Vec<bool>>), String> {
    match state {
        [generator] => Ok((XorShift::from_state(*generator), None)),
        [generator, current @ ..] if current.len() == units => Ok((
            XorShift::from_state(*generator),
            Some(current.iter().map(|&t| t == 1).collect()),
        )),
        _ => Err(format!(
            "a {policy} policy over {units} units cannot continue from {} values",
            state.len()
        )),
    }
}
