//! # slimfit-memory
//!
//! The memory accountant: analytic bytes per unit and per op (parameters, gradients,
//! optimizer state, saved activations) and measured peaks (a counting allocator on CPU, the
//! memory pool on CUDA), so that a plan can be checked against what a step really used.
//!
//! Status: the crate is laid out; the accountant arrives with the activation-memory work (see
//! the project issues).
