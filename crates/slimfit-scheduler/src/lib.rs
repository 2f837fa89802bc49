//! # slimfit-scheduler
//!
//! Freezing policies: given per-unit scores, choose which weight tensors train this step —
//! SlimFit's inter-layer scheduling (ILS), a memory-budget mode, and baselines (full
//! fine-tuning, a static prefix, random). Pure logic with no tensor library dependency.
//!
//! Status: the crate is laid out; the policies arrive with the trainer (see the project issues).
