//! # slimfit-dynamics
//!
//! Training-dynamics scores per unit (one weight tensor): the mean relative change of a
//! tensor across an optimizer step, which SlimFit uses to decide what to freeze next
//! (SLIMFIT.md §2). Backend-free: it works on plain `f32` slices so that any framework can
//! feed it.
//!
//! Status: the crate is laid out; the scores arrive with the trainer (see the project issues).
