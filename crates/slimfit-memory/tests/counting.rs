//! The counting allocator sees allocations, frees and peaks (single test: the counters are
//! process-wide).

use slimfit_memory::{Bytes, CountingAllocator, counting};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

#[test]
fn tracks_live_and_peak_bytes() {
    let _warm = String::from("allocates");
    assert!(counting::is_installed());
    let before = counting::live();
    counting::reset_peak();
    let a = vec![1u8; 1 << 20];
    let mut b: Vec<u8> = Vec::with_capacity(1 << 19);
    b.extend_from_slice(&a[..1 << 19]);
    assert!(counting::live() >= before + Bytes(3 << 19));
    drop(a);
    drop(b);
    assert!(counting::live() < before + Bytes(1 << 12));
    let peak = counting::peak();
    assert!(
        peak >= before + Bytes(3 << 19),
        "peak {peak} before {before}"
    );
    assert!(
        peak < before + Bytes((3 << 19) + (1 << 16)),
        "peak {peak} before {before}"
    );

    // realloc growth counts the difference.
    counting::reset_peak();
    let base = counting::live();
    let mut v: Vec<u64> = Vec::with_capacity(1024);
    v.reserve_exact(1 << 16);
    assert!(counting::live() >= base + Bytes(8 << 16));
    drop(v);

    // The window measures a part of the run without resetting the run's peak.
    counting::reset_peak();
    let big = vec![0u8; 4 << 20];
    drop(big);
    let run_peak = counting::peak();
    counting::reset_window();
    let small = vec![0u8; 1 << 20];
    drop(small);
    let window = counting::window_peak();
    assert!(
        window >= base + Bytes(1 << 20),
        "window {window} base {base}"
    );
    assert!(
        window < base + Bytes(2 << 20),
        "window {window} base {base}"
    );
    assert_eq!(
        counting::peak(),
        run_peak,
        "the window left the run's peak alone"
    );
}
