//! # slimfit-memory
//!
//! The memory accountant: analytic bytes per unit and per op (parameters, gradients,
//! optimizer state, saved activations) and measured peaks, so that a plan can be checked
//! against what a step really used.
//!
//! - [`Bytes`]: the byte-count newtype used at every API edge, with binary-unit formatting.
//! - [`counting`] (feature `counting-allocator`): a global allocator counting live and peak
//!   bytes — the CPU measurement. Applications opt in with `#[global_allocator]`.
//!
//! Backend-free: nothing here knows about burn or the models.

mod bytes;
#[cfg(feature = "counting-allocator")]
pub mod counting;

pub use bytes::Bytes;
#[cfg(feature = "counting-allocator")]
pub use counting::CountingAllocator;
