//! criterion benchmarks of slimfit-rs live in `benches/benches/`; this library is empty.
