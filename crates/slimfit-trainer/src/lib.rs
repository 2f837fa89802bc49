//! # slimfit-trainer
//!
//! Composes the slimfit-rs crates into the `slimfit-trainer` command line: loading a
//! pretrained checkpoint, encoding text, and (as the project grows) SlimFit fine-tuning with
//! per-step freezing, evaluation and reports.
//!
//! The backend is fixed at compile time by cargo feature (`flex`, `cuda`, `tch`); see
//! [`backend`].

pub mod accountant;
pub mod backend;
pub mod encode;
pub mod main_job;
pub mod malloc;
pub mod measure;
pub mod memory_target;
pub mod model_config;
pub mod outputs;
pub mod resolve;
pub mod run_config;
pub mod task;
pub mod train;
