//! Length-bucketed batches: examples of similar length share a batch, so dynamic padding
//! wastes little, while the order of batches stays random.

/// Splits `lengths.len()` examples into batches of `batch_size` indices. Examples are
/// shuffled with `seed`, then sorted by length inside windows of `50 × batch_size`, cut into
/// batches, and the batches shuffled again. Deterministic for a given seed.
pub fn length_bucketed_batches(lengths: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch_size must be positive");
    let mut rng = XorShift::new(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let window = batch_size * 50;
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for chunk in order.chunks_mut(window) {
        chunk.sort_by_key(|&i| lengths[i]);
        batches.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

/// Batches in file order (evaluation).
pub fn sequential_batches(n: usize, batch_size: usize) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch_size must be positive");
    (0..n)
        .collect::<Vec<_>>()
        .chunks(batch_size)
        .map(<[usize]>::to_vec)
        .collect()
}

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_once_and_deterministic() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 120 + 3).collect();
        let batches = length_bucketed_batches(&lengths, 32, 7);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(batches, length_bucketed_batches(&lengths, 32, 7));
        assert_ne!(batches, length_bucketed_batches(&lengths, 32, 8));
        assert!(batches.iter().all(|b| b.len() <= 32));
    }

    #[test]
    fn bucketing_reduces_padding() {
        let lengths: Vec<usize> = (0..3200).map(|i| (i * 7919) % 128 + 1).collect();
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| b.iter().map(|&i| lengths[i]).max().unwrap() * b.len())
                .sum()
        };
        let bucketed = padded(&length_bucketed_batches(&lengths, 32, 1));
        let plain = padded(&sequential_batches(lengths.len(), 32));
        assert!(
            bucketed * 3 < plain * 2,
            "bucketed {bucketed} vs plain {plain}"
        );
    }
}
