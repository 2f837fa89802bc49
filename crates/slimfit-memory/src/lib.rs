//! # slimfit-memory
//!
//! The memory accountant: analytic bytes per unit and per op (parameters, gradients,
//! optimizer state, saved activations, kernel workspaces), and measured peaks, so that a
//! plan can be checked against what a step really used.
//!
//! - [`plan`]: the predicted peak of one training step of a BERT encoder, by category,
//!   phase and unit, for a frozen set, a storage mode for saved activations and an
//!   optimizer-state policy; [`fit_budget`] turns a byte budget into a number of trainable
//!   units, [`shed_to_budget`] and [`fill_to_budget`] fit one step's actual set to it.
//! - [`Bytes`]: the byte-count newtype used at every API edge, with binary-unit formatting
//!   and parsing (`"12GiB"`).
//! - [`counting`] (feature `counting-allocator`): a global allocator counting live and peak
//!   bytes — the CPU measurement. Applications opt in with `#[global_allocator]`.
//!
//! Backend-free: nothing here knows about burn or the models; the caller describes the
//! model with an [`EncoderShape`].
//!
//! ```
//! use slimfit_memory::{plan, ActivationStorage, EncoderShape, OptimizerState, PlanRequest};
//!
//! let bert_base = EncoderShape::bert_base();
//! let full = PlanRequest::with_freeze_rate(
//!     bert_base.clone(), 32, 128, ActivationStorage::Exact, OptimizerState::Keep, 0.0);
//! let slim = PlanRequest::with_freeze_rate(
//!     bert_base, 32, 128, ActivationStorage::Paper, OptimizerState::Keep, 0.9);
//! let (full, slim) = (plan(&full).unwrap(), plan(&slim).unwrap());
//! assert!(slim.total_peak_bytes.as_f64() < 0.5 * full.total_peak_bytes.as_f64());
//! ```

mod activations;
mod budget;
mod bytes;
#[cfg(feature = "counting-allocator")]
pub mod counting;
mod plan;
mod shape;
mod storage;

pub use budget::{BudgetFit, fill_to_budget, fit_budget, shed_to_budget, unit_costs};
pub use bytes::Bytes;
#[cfg(feature = "counting-allocator")]
pub use counting::CountingAllocator;
pub use plan::{Categories, PeakPhase, Plan, PlanError, PlanRequest, UnitBytes, Workspace, plan};
pub use shape::{EncoderShape, Family, UnitRole, UnitSpec};
pub use storage::{ActivationStorage, OptimizerState};
