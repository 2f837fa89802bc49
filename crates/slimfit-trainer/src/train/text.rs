//! Text tasks: BERT on tokenized GLUE or SpamAssassin examples.

use std::collections::HashMap;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::GradientsAccumulator;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use slimfit_data::batching::{length_bucketed_batches, sequential_batches};
use slimfit_data::metrics::{accuracy, f1, matthews, pearson, spearman};
use slimfit_data::{Encoded, Label, LabelKind, Metric, PaddedBatch, WordPieceTokenizer};
use slimfit_dynamics::ScoreFormula;
use slimfit_memory::counting;
use slimfit_models::{
    BertForSequenceClassification, CheckpointDir, CompressionConfig, HasUnits, HeadLabels,
    SequenceTask, SlimOps, save_bert_classifier,
};
use slimfit_scheduler::FreezeRate;

use super::budget::budget_setting;
use super::config::{PolicyKind, TrainConfig};
use super::recompute::{checkpointed_backward, segment_seed};
use super::report::report_of;
use super::resume::Checkpoints;
use super::run_loop::{Workload, plain_backward, run_slimfit};
use super::schedule::{candidates, schedule_of};
use super::{TrainError, TrainReport, measured_peak};
use crate::encode::{batch_to_input, check_pairs, check_tokenizer};
use crate::task::Task;

struct Encodings {
    rows: Vec<Encoded>,
    labels: Vec<Label>,
}

fn encode_split(
    tokenizer: &WordPieceTokenizer,
    examples: Vec<slimfit_data::Example>,
) -> Result<Encodings, TrainError> {
    let mut rows = Vec::with_capacity(examples.len());
    let mut labels = Vec::with_capacity(examples.len());
    for e in examples {
        rows.push(tokenizer.encode(&e.text, e.text_pair.as_deref())?);
        labels.push(e.label);
    }
    Ok(Encodings { rows, labels })
}

pub(super) fn train_text<B>(
    config: &TrainConfig,
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
    if config.image.is_some() {
        return Err(TrainError::Invalid(format!(
            "--image-size and --no-augment apply to image tasks, not to {}",
            config.task
        )));
    }
    let task = config.task;
    let tokenizer = WordPieceTokenizer::from_dir(&config.model, config.max_len)?;
    let data = task.load(
        config.data_dir.as_deref(),
        config.max_train_examples,
        config.max_dev_examples,
    )?;
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(TrainError::Invalid(format!(
            "task {task} has {} training and {} dev examples (with the caps given); both must \
             be positive",
            data.train.len(),
            data.dev.len()
        )));
    }
    let data_dir = data.dir;
    let train_set = encode_split(&tokenizer, data.train)?;
    let dev_set = encode_split(&tokenizer, data.dev)?;

    B::seed(device, config.seed);
    let checkpoint = CheckpointDir::new(&config.model);
    let model_config = checkpoint.config()?;
    let mismatch = |e: crate::encode::EncodeError| TrainError::Invalid(e.to_string());
    check_tokenizer(&tokenizer, &model_config, &config.model).map_err(mismatch)?;
    if train_set.rows.iter().any(|r| r.token_type_ids.contains(&1)) {
        check_pairs(&model_config).map_err(mismatch)?;
    }
    if config.max_len > model_config.max_position_embeddings {
        return Err(TrainError::Invalid(format!(
            "--max-len {} exceeds the model's max_position_embeddings ({})",
            config.max_len, model_config.max_position_embeddings
        )));
    }
    let head = match task.labels() {
        LabelKind::Regression => SequenceTask::Regression,
        LabelKind::Classes(names) => SequenceTask::Classification {
            num_labels: names.len(),
        },
    };
    let mut weights = checkpoint.weights(device)?;
    let mut model = BertForSequenceClassification::<B>::load(&mut weights, &model_config, head)?;
    weights.finish()?;
    drop(weights);
    model.bert = model
        .bert
        .with_compression(CompressionConfig::uniform(config.compression));
    if config.policy == PolicyKind::Lora {
        let lora = config.lora.clone().unwrap_or_default();
        model.bert = super::lora::attach(model.bert, &lora)?;
    }
    if let Some(c) = checkpoints {
        model = c.load_model(model, device)?;
    }

    let units = model.units();
    // STS-B: the regression head always trains (SLIMFIT.md §3).
    let candidates = candidates(&units, task);
    let num_labels = match head {
        SequenceTask::Classification { num_labels } => num_labels,
        SequenceTask::Regression => 1,
    };
    let lengths: Vec<usize> = train_set.rows.iter().map(|r| r.input_ids.len()).collect();
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let (rate, mut budget) = budget_setting(
        config,
        || crate::accountant::encoder_shape(&model_config, num_labels),
        // Batches pad to their longest row, so the widest batch is the longest training
        // sequence (≤ --max-len): the worst case to fit, not --max-len itself.
        longest,
        // Everything live now (runtime, data, the loaded model) stays for the whole run.
        counting::live(),
        &candidates,
        rate,
        checkpoints
            .and_then(Checkpoints::resumed)
            .and_then(|s| s.budget.as_ref()),
    )?;
    let schedule = schedule_of(config, rate, &units, candidates, formula)?;
    let sizes = (train_set.rows.len(), dev_set.rows.len(), longest);
    let mut workload = TextWorkload {
        train: train_set,
        dev: dev_set,
        lengths,
        pad_id: tokenizer.pad_id(),
        task,
        head,
        batch: config.batch,
        seed: config.seed,
        passes: 0,
        recompute: config.activation_checkpointing,
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
    let mut report = report_of(config, data_dir, &units, outcome, sizes, budget);
    report.peak_bytes = measured_peak();
    report.setup_peak_bytes = setup_peak;
    if let Some(dir) = &config.output {
        let labels = match task.labels() {
            LabelKind::Regression => HeadLabels::Regression,
            LabelKind::Classes(names) => {
                HeadLabels::Classes(names.iter().map(|n| n.to_string()).collect())
            }
        };
        // LoRA: the adapters folded into their weights, a plain checkpoint.
        let mut model = model;
        model.bert = model.bert.merge_lora();
        save_bert_classifier(&model, &model_config, &labels, Some(&config.model), dir)?;
    }
    Ok(report)
}

/// BERT on tokenized texts: length-bucketed batches, cross-entropy (MSE for STS-B), the
/// task's metrics.
pub struct TextWorkload<B: AutodiffBackend> {
    train: Encodings,
    dev: Encodings,
    lengths: Vec<usize>,
    pad_id: u32,
    task: Task,
    head: SequenceTask,
    batch: usize,
    seed: u64,
    /// Forward passes so far (each reseeds dropout per segment from it).
    passes: u64,
    /// Activation checkpointing: layers recomputed in backward.
    recompute: bool,
    ce: CrossEntropyLoss<B>,
    device: B::Device,
}

impl<B> Workload<B> for TextWorkload<B>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    type Model = BertForSequenceClassification<B>;

    fn batches_per_epoch(&self) -> usize {
        self.lengths.len().div_ceil(self.batch)
    }

    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        length_bucketed_batches(
            &self.lengths,
            self.batch,
            self.seed.wrapping_add(epoch as u64),
        )
    }

    fn tokens(&self, batch: &[usize]) -> Option<usize> {
        // Dynamic padding: a batch is as long as its longest sequence.
        batch.iter().map(|&i| self.lengths[i]).max()
    }

    fn loss(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<B, 1>, TrainError> {
        let input = self.input_of(batch);
        let mut reseed = self.reseeder();
        let logits = model.forward_with(input, &mut reseed);
        Ok(self.loss_of(logits, batch))
    }

    fn backward(
        &mut self,
        model: &Self::Model,
        batch: &[usize],
        divide_by: usize,
        grads: &mut GradientsAccumulator<Self::Model>,
    ) -> Result<Tensor<B, 1>, TrainError> {
        if !self.recompute {
            let loss = self.loss(model, batch)?;
            return Ok(plain_backward(model, loss, divide_by, grads));
        }
        let input = self.input_of(batch);
        let mut reseed = self.reseeder();
        let loss_of = |logits| self.loss_of(logits, batch);
        Ok(checkpointed_backward(
            model,
            input,
            loss_of,
            divide_by,
            &mut reseed,
            grads,
        ))
    }

    /// The forward passes so far: dropout's only state ([`TextWorkload::reseeder`]).
    fn state(&self) -> Vec<u64> {
        vec![self.passes]
    }

    fn restore(&mut self, state: &[u64]) -> Result<(), TrainError> {
        match state {
            [passes] => {
                self.passes = *passes;
                Ok(())
            }
            _ => Err(TrainError::Checkpoint(format!(
                "holds {} text-workload values, not 1",
                state.len()
            ))),
        }
    }

    fn evaluate(
        &self,
        model: &BertForSequenceClassification<B::InnerBackend>,
    ) -> Result<HashMap<String, f64>, TrainError> {
        Ok(evaluate::<B>(
            model,
            &self.dev,
            self.pad_id,
            self.task,
            &self.device,
        ))
    }
}

impl<B> TextWorkload<B>
where
    B: AutodiffBackend + SlimOps,
{
    /// The model input of the training examples at `batch`, padded to its longest.
    fn input_of(&self, batch: &[usize]) -> slimfit_models::BertInput<B> {
        let rows: Vec<Encoded> = batch.iter().map(|&i| self.train.rows[i].clone()).collect();
        let padded = PaddedBatch::new(&rows, self.pad_id);
        batch_to_input::<B>(&padded, &self.device)
    }

    /// Reseeds the generator before each segment of the next forward pass
    /// ([`segment_seed`]): dropout masks depend on the seed, the pass and the segment only,
    /// so that a recomputed layer draws its masks again.
    fn reseeder(&mut self) -> impl FnMut(usize) + use<B> {
        let (seed, pass, device) = (self.seed, self.passes, self.device.clone());
        self.passes += 1;
        move |segment| B::seed(&device, segment_seed(seed, pass, segment))
    }

    /// The mean loss of `logits` against the labels of `batch`: MSE for regression,
    /// cross-entropy otherwise.
    fn loss_of(&self, logits: Tensor<B, 2>, batch: &[usize]) -> Tensor<B, 1> {
        let device = &self.device;
        match self.head {
            SequenceTask::Regression => {
                let targets: Vec<f32> = batch
                    .iter()
                    .map(|&i| match self.train.labels[i] {
                        Label::Score(s) => s,
                        Label::Class(c) => c as f32,
                    })
                    .collect();
                let n = targets.len();
                let targets = Tensor::<B, 2>::from_data(TensorData::new(targets, [n, 1]), device);
                MseLoss::new().forward(logits, targets, Reduction::Mean)
            }
            SequenceTask::Classification { .. } => {
                let targets: Vec<i64> = batch
                    .iter()
                    .map(|&i| match self.train.labels[i] {
                        Label::Class(c) => c as i64,
                        Label::Score(s) => s as i64,
                    })
                    .collect();
                let n = targets.len();
                self.ce.forward(
                    logits,
                    Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n]), device),
                )
            }
        }
    }
}

fn evaluate<B>(
    model: &BertForSequenceClassification<B::InnerBackend>,
    dev: &Encodings,
    pad_id: u32,
    task: Task,
    device: &B::Device,
) -> HashMap<String, f64>
where
    B: AutodiffBackend,
    B::InnerBackend: SlimOps,
{
    let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(dev.rows.len());
    for batch in sequential_batches(dev.rows.len(), 64) {
        let rows: Vec<Encoded> = batch.iter().map(|&i| dev.rows[i].clone()).collect();
        let padded = PaddedBatch::new(&rows, pad_id);
        let logits = model.forward(batch_to_input::<B::InnerBackend>(&padded, device));
        let [n, width] = logits.dims();
        let values: Vec<f32> = logits.into_data().convert::<f32>().into_vec().expect("f32");
        outputs.extend((0..n).map(|i| values[i * width..(i + 1) * width].to_vec()));
    }
    let mut metrics = HashMap::new();
    match task.labels() {
        LabelKind::Regression => {
            let predicted: Vec<f64> = outputs.iter().map(|o| f64::from(o[0])).collect();
            let gold: Vec<f64> = dev
                .labels
                .iter()
                .map(|l| match l {
                    Label::Score(s) => f64::from(*s),
                    Label::Class(c) => *c as f64,
                })
                .collect();
            metrics.insert("pearson".into(), 100.0 * pearson(&predicted, &gold));
            metrics.insert("spearman".into(), 100.0 * spearman(&predicted, &gold));
        }
        LabelKind::Classes(_) => {
            let predicted: Vec<usize> = outputs
                .iter()
                .map(|o| {
                    o.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i)
                        .unwrap_or(0)
                })
                .collect();
            let gold: Vec<usize> = dev
                .labels
                .iter()
                .map(|l| match l {
                    Label::Class(c) => *c,
                    Label::Score(s) => *s as usize,
                })
                .collect();
            for metric in task.metrics() {
                let value = match metric {
                    Metric::Accuracy => accuracy(&predicted, &gold),
                    Metric::F1 => f1(&predicted, &gold),
                    Metric::Mcc => matthews(&predicted, &gold),
                    Metric::Pearson | Metric::Spearman => continue,
                };
                let name = serde_json::to_value(metric).expect("metric name");
                metrics.insert(name.as_str().unwrap_or("metric").to_string(), 100.0 * value);
            }
            if !task.metrics().contains(&Metric::Accuracy) {
                metrics.insert("accuracy".into(), 100.0 * accuracy(&predicted, &gold));
            }
        }
    }
    metrics
}
