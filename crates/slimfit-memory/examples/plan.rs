//! Predicts the peak memory of fine-tuning bert-base at the paper's GLUE setting, full
//! fine-tuning against SlimFit, and the units a 2 GiB budget allows.
//!
//! `cargo run --release -p slimfit-memory --example plan`

use slimfit_memory::{
    ActivationStorage, Bytes, EncoderShape, OptimizerState, PlanRequest, fit_budget, plan,
};

fn main() {
    let bert_base = EncoderShape::bert_base();
    let setting = |storage, rate| {
        PlanRequest::with_freeze_rate(
            bert_base.clone(),
            32,
            128,
            storage,
            OptimizerState::Keep,
            rate,
        )
    };
    let full = plan(&setting(ActivationStorage::Exact, 0.0)).expect("valid request");
    let slim = plan(&setting(ActivationStorage::Paper, 0.9)).expect("valid request");
    for (name, p) in [("full fine-tuning", &full), ("SlimFit r=0.9", &slim)] {
        println!("{name}: peak {} at {:?}", p.total_peak_bytes, p.peak_phase);
        for (category, bytes) in p.categories.named() {
            println!("  {category:<20} {bytes}");
        }
    }
    let fit = fit_budget(&setting(ActivationStorage::Paper, 0.0), Bytes(2 << 30))
        .expect("2 GiB holds an all-frozen step");
    println!(
        "a 2 GiB budget lets {} of {} units train per step (worst case {})",
        fit.trainable_units, fit.worst_case.total_units, fit.worst_case.total_peak_bytes
    );
}
