//! Time to encode one sentence pair of n + n words at max_len 128 with MiniLM's tokenizer:
//! through the `tokenizers` pair path (quadratic: it combines every overflowing piece of
//! one sentence with every piece of the other) and through `WordPieceTokenizer::encode`
//! (linear), with the ids compared.
//!
//! `cargo run --release -p slimfit-data --example long_pair` (needs the cached checkpoint:
//! `cargo xtask fetch-assets`).

use std::time::Instant;

use slimfit_data::WordPieceTokenizer;
use slimfit_data::assets::MINILM_L6_V2;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

fn main() {
    let dir = MINILM_L6_V2
        .resolve(None)
        .expect("the cached MiniLM checkpoint");
    let ours = WordPieceTokenizer::from_dir(&dir, 128).expect("tokenizer");
    let mut reference = Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    reference
        .with_truncation(Some(TruncationParams {
            max_length: 128,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .expect("truncation");
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", ".",
    ];
    println!("words per sentence | tokenizers pair path | WordPieceTokenizer::encode");
    for n in [1_000, 5_000, 10_000, 20_000] {
        let sentence = |offset: usize| {
            (0..n)
                .map(|i| words[(i * 7 + offset) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (a, b) = (sentence(0), sentence(3));
        let start = Instant::now();
        let slow = reference
            .encode((a.as_str(), b.as_str()), true)
            .expect("encodes");
        let slow_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let fast = ours.encode(&a, Some(&b)).expect("encodes");
        let fast_s = start.elapsed().as_secs_f64();
        assert_eq!(fast.input_ids, slow.get_ids(), "the two paths disagree");
        println!("{n} | {slow_s:.2} s | {fast_s:.3} s");
    }
}
