//! Lists SlimFit's units of a checkpoint and how much each weighs.
//!
//! `cargo run --release -p slimfit-models --example units -- <checkpoint dir>`

use burn::backend::{Autodiff, Flex};
use slimfit_models::{BertForSequenceClassification, CheckpointDir, HasUnits, SequenceTask};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: units <checkpoint dir with config.json and model.safetensors>")?;
    let device = Default::default();
    let checkpoint = CheckpointDir::new(dir);
    let config = checkpoint.config()?;
    let mut weights = checkpoint.weights::<Autodiff<Flex>>(&device)?;
    let model = BertForSequenceClassification::load(
        &mut weights,
        &config,
        SequenceTask::Classification { num_labels: 2 },
    )?;
    println!("new (not in the checkpoint): {:?}", weights.initialised());
    for unit in model.units() {
        println!(
            "{:3} {:55} {:?} {:>10} params",
            unit.index,
            unit.name,
            unit.kind,
            unit.numel()
        );
    }
    Ok(())
}
