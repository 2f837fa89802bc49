//! Image tasks: a ViT / DINOv2 on an image-classification set.

use std::collections::HashMap;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use slimfit_data::ImageSet;
use slimfit_data::batching::{length_bucketed_batches, sequential_batches};
use slimfit_data::images::{Augment, ImageBatch, Rng, VitTransform};
use slimfit_data::metrics::accuracy;
use slimfit_dynamics::ScoreFormula;
use slimfit_memory::counting;
use slimfit_models::{
    CheckpointDir, CompressionConfig, HasUnits, SafetensorsSource, SlimOps, ViTConfig,
    ViTForImageClassification, save_vit_classifier,
};
use slimfit_scheduler::FreezeRate;

use super::budget::budget_setting;
use super::config::TrainConfig;
use super::recompute::segment_seed;
use super::report::report_of;
use super::resume::Checkpoints;
use super::run_loop::{Workload, run_slimfit};
use super::schedule::{candidates, schedule_of};
use super::{TrainError, TrainReport, measured_peak};
use crate::task::ImageTask;

/// Images per batch when evaluating.
const EVAL_BATCH: usize = 64;

pub(super) fn train_images<B>(
    config: &TrainConfig,
    task: ImageTask,
    rate: FreezeRate,
    formula: ScoreFormula,
    device: &B::Device,
    checkpoints: Option<&Checkpoints>,
    progress: &mut impl FnMut(usize, usize, f32, usize),
) -> Result<TrainReport, TrainError>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    let options = config.image.unwrap_or_default();
    let checkpoint = CheckpointDir::new(&config.model);
    let model_config = ViTConfig::from_json_file(checkpoint.config_path())?;
    if options.image_size < model_config.patch_size {
        return Err(TrainError::Invalid(format!(
            "--image-size {} is smaller than one {}-pixel patch of the model",
            options.image_size, model_config.patch_size
        )));
    }
    let data = config.task.load_images(
        config.data_dir.as_deref(),
        config.max_train_examples,
        config.max_dev_examples,
    )?;
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(TrainError::Invalid(format!(
            "task {} has {} training and {} dev images (with the caps given); both must be \
             positive",
            task.name(),
            data.train.len(),
            data.dev.len()
        )));
    }
    let num_classes = data.train.classes.len();

    B::seed(device, config.seed);
    let mut weights = SafetensorsSource::open(checkpoint.weights_path(), device)?;
    let mut model = ViTForImageClassification::<B>::load(&mut weights, &model_config, num_classes)?;
    weights.finish()?;
    drop(weights);
    model.vit = model
        .vit
        .with_compression(CompressionConfig::uniform(config.compression));
    if let Some(c) = checkpoints {
        model = c.load_model(model, device)?;
    }
    let units = model.units();
    let candidates = candidates(&units, config.task);
    let tokens = crate::measure::vit_tokens(options.image_size, model_config.patch_size);
    let (rate, mut budget) = budget_setting(
        config,
        || crate::accountant::vit_shape(&model_config, num_classes),
        tokens,
        // Everything live now (runtime, data, the loaded model) stays for the whole run.
        counting::live(),
        &candidates,
        rate,
        checkpoints
            .and_then(Checkpoints::resumed)
            .and_then(|s| s.budget.as_ref()),
    )?;
    let schedule = schedule_of(config, rate, &units, candidates, formula)?;
    tracing::info!(
        "{} ({}): {} training and {} dev images, {num_classes} classes, {}×{} px input \
         ({tokens} tokens), augmentation {}",
        task.name(),
        data.dir.display(),
        data.train.len(),
        data.dev.len(),
        options.image_size,
        options.image_size,
        if options.augment { "on" } else { "off" }
    );
    let sizes = (data.train.len(), data.dev.len(), tokens);
    let classes = data.train.classes.clone();
    let eval_transform = VitTransform::eval(options.image_size);
    let mut workload = ImageWorkload {
        train_transform: if options.augment {
            VitTransform::train(options.image_size, Augment::default())
        } else {
            eval_transform
        },
        eval_transform,
        train: data.train,
        dev: data.dev,
        rng: Rng::new(config.seed),
        batch: config.batch,
        seed: config.seed,
        passes: 0,
        ce: CrossEntropyLossConfig::new().init(device),
        device: device.clone(),
    };
    let setup_peak = measured_peak();
    let (outcome, model) = run_slimfit(
        &mut workload,
        model,
        &units,
        schedule,
        &mut budget,
        checkpoints,
        progress,
    )?;
    let budget = budget.map(|b| b.report);
    let mut report = report_of(config, data.dir, &units, outcome, sizes, budget);
    report.peak_bytes = measured_peak();
    report.setup_peak_bytes = setup_peak;
    if let Some(dir) = &config.output {
        save_vit_classifier(&model, &model_config, &classes, Some(&config.model), dir)?;
    }
    Ok(report)
}

/// A ViT / DINOv2 on images: shuffled batches, augmented training images, cross-entropy,
/// top-1 accuracy.
pub struct ImageWorkload<B: AutodiffBackend> {
    train: ImageSet,
    dev: ImageSet,
    train_transform: VitTransform,
    eval_transform: VitTransform,
    /// Augmentation draws, taken image after image in step order.
    rng: Rng,
    batch: usize,
    seed: u64,
    /// Forward passes so far (each reseeds the backend's generator from it).
    passes: u64,
    ce: CrossEntropyLoss<B>,
    device: B::Device,
}

fn pixels<Bk: burn::tensor::backend::Backend>(
    batch: ImageBatch,
    device: &Bk::Device,
) -> Tensor<Bk, 4> {
    let shape = batch.shape();
    Tensor::from_data(TensorData::new(batch.pixels, shape), device)
}

impl<B> Workload<B> for ImageWorkload<B>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    type Model = ViTForImageClassification<B>;

    fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch)
    }

    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        // Every image has the same length: length bucketing is a seeded shuffle.
        length_bucketed_batches(
            &vec![1; self.train.len()],
            self.batch,
            self.seed.wrapping_add(epoch as u64),
        )
    }

    fn loss(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<B, 1>, TrainError> {
        let images = self
            .train_transform
            .batch(&self.train, batch, &mut self.rng)?;
        let labels: Vec<i64> = images.labels.iter().map(|&l| l as i64).collect();
        let n = labels.len();
        // Dropout, where a checkpoint has any, depends on the seed and the pass only: a
        // resumed run draws the same masks.
        B::seed(&self.device, segment_seed(self.seed, self.passes, 0));
        self.passes += 1;
        let logits = model.forward(pixels::<B>(images, &self.device));
        Ok(self.ce.forward(
            logits,
            Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), &self.device),
        ))
    }

    /// The augmentation generator and the forward passes so far.
    fn state(&self) -> Vec<u64> {
        vec![self.rng.state(), self.passes]
    }

    fn restore(&mut self, state: &[u64]) -> Result<(), TrainError> {
        match state {
            [rng, passes] => {
                self.rng = Rng::new(*rng);
                self.passes = *passes;
                Ok(())
            }
            _ => Err(TrainError::Checkpoint(format!(
                "holds {} image-workload values, not 2",
                state.len()
            ))),
        }
    }

    fn evaluate(
        &self,
        model: &ViTForImageClassification<B::InnerBackend>,
    ) -> Result<HashMap<String, f64>, TrainError> {
        let mut predicted = Vec::with_capacity(self.dev.len());
        let mut gold = Vec::with_capacity(self.dev.len());
        let mut rng = Rng::new(0); // the evaluation transform draws nothing
        for batch in sequential_batches(self.dev.len(), EVAL_BATCH) {
            let images = self.eval_transform.batch(&self.dev, &batch, &mut rng)?;
            gold.extend_from_slice(&images.labels);
            let logits = model.forward(pixels::<B::InnerBackend>(images, &self.device));
            predicted.extend(argmax_rows(logits));
        }
        Ok(HashMap::from([(
            "accuracy".to_string(),
            100.0 * accuracy(&predicted, &gold),
        )]))
    }
}

/// The index of the largest value of each row of `[n, width]` logits.
fn argmax_rows<Bk: burn::tensor::backend::Backend>(logits: Tensor<Bk, 2>) -> Vec<usize> {
    let [n, width] = logits.dims();
    let values: Vec<f32> = logits.into_data().convert::<f32>().into_vec().expect("f32");
    (0..n)
        .map(|i| {
            values[i * width..(i + 1) * width]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        })
        .collect()
}
