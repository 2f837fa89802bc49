//! A mutation fuzzer for stable Rust: byte- and text-level mutations of the seed corpus,
//! each input run under `catch_unwind`. No coverage guidance (libFuzzer in `fuzz/` has it);
//! its mutations aim at what the parsers read: lengths and counts in binary headers,
//! numbers in text.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::{Target, run, seeds};

/// Values that break length and count arithmetic.
const INTERESTING_U32: [u32; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// Numbers that break parsers of text.
const INTERESTING_TEXT: [&str; 10] = [
    "0",
    "-1",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "18446744073709551616",
    "9223372036854775807",
    "4294967296",
    "0.0000000000000000000001",
];

/// A seeded source of mutations (SplitMix64).
pub struct Mutator {
    state: u64,
}

impl Mutator {
    /// A mutator drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// `input` with 1–4 mutations; `corpus` gives material to splice in.
    pub fn mutate(&mut self, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut data = input.to_vec();
        for _ in 0..1 + self.below(4) {
            self.mutate_once(&mut data, corpus);
        }
        data
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let len = data.len();
        match self.below(9) {
            0 if len > 0 => {
                let i = self.below(len);
                data[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                data[i] = self.next() as u8;
            }
            2 if len >= 4 => {
                let i = self.below(len - 3);
                let v = INTERESTING_U32[self.below(INTERESTING_U32.len())];
                let bytes = if self.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                data[i..i + 4].copy_from_slice(&bytes);
            }
            3 => {
                let i = self.below(len + 1);
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                data.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(64));
                data.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = self.below(len);
                let n = 1 + self.below((len - i).min(256));
                let chunk = data[i..i + n].to_vec();
                let at = self.below(len + 1);
                data.splice(at..at, chunk);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[self.below(corpus.len())];
                let from = self.below(other.len());
                let n = self.below(other.len() - from + 1);
                let at = self.below(len + 1);
                data.splice(at..at, other[from..from + n].iter().copied());
            }
            7 => {
                let at = self.below(len + 1);
                data.truncate(at);
            }
            _ => self.replace_number(data),
        }
    }

    /// Replaces a run of ASCII digits with an interesting number (or inserts one).
    fn replace_number(&mut self, data: &mut Vec<u8>) {
        let digits: Vec<usize> = (0..data.len())
            .filter(|&i| data[i].is_ascii_digit())
            .collect();
        let text = INTERESTING_TEXT[self.below(INTERESTING_TEXT.len())].as_bytes();
        if digits.is_empty() {
            let at = self.below(data.len() + 1);
            data.splice(at..at, text.iter().copied());
            return;
        }
        let start = digits[self.below(digits.len())];
        let end = (start..data.len())
            .find(|&i| !(data[i].is_ascii_digit() || data[i] == b'.'))
            .unwrap_or(data.len());
        data.splice(start..end, text.iter().copied());
    }
}

/// What a run of [`fuzz`] found.
#[derive(Debug, Default)]
pub struct FuzzReport {
    /// Inputs tried, seeds included.
    pub inputs: u64,
    /// Each input that panicked, with the panic's message.
    pub panics: Vec<(Vec<u8>, String)>,
}

/// Runs `target` on its seeds, then on mutations of seeds and of earlier inputs, until
/// `inputs` inputs or `duration` have passed (whichever comes first).
pub fn fuzz(target: Target, seed: u64, inputs: u64, duration: Duration) -> FuzzReport {
    let start = Instant::now();
    let corpus = seeds(target);
    let mut mutator = Mutator::new(seed ^ target as u64);
    let mut report = FuzzReport::default();
    let mut pool = corpus.clone();
    let try_one = |data: &[u8], report: &mut FuzzReport| {
        report.inputs += 1;
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(target, data))) {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            report.panics.push((data.to_vec(), message));
        }
    };
    for s in &corpus {
        try_one(s, &mut report);
    }
    while report.inputs < inputs && start.elapsed() < duration {
        // Half the time a seed, else an earlier input: deep mutations without drifting
        // away from valid files altogether.
        let base = if mutator.below(2) == 0 {
            corpus[mutator.below(corpus.len())].clone()
        } else {
            pool[mutator.below(pool.len())].clone()
        };
        let data = mutator.mutate(&base, &corpus);
        try_one(&data, &mut report);
        // Mutations of mutations reach further; the pool stays bounded.
        if pool.len() < 256 {
            pool.push(data);
        } else {
            let i = mutator.below(pool.len());
            pool[i] = data;
        }
    }
    report
}
