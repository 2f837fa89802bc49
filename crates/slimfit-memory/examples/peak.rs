//! Measures the peak live bytes of a piece of code with the counting allocator.
//!
//! `cargo run --release -p slimfit-memory --features counting-allocator --example peak`

use slimfit_memory::{CountingAllocator, counting};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn main() {
    let before = counting::live();
    counting::reset_peak();
    let squares: Vec<u64> = (0..1_000_000u64).map(|i| i * i).collect();
    let total: u64 = squares.iter().sum();
    drop(squares);
    println!(
        "sum {total}: peak {} above the {} live before, {} live after",
        counting::peak().saturating_sub(before),
        before,
        counting::live()
    );
}
