//! Task heads on top of [`BertModel`], named as Hugging Face's task models name them.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Tensor, backend::Backend};

use crate::bert::{BertInput, BertModel};
use crate::config::BertConfig;
use crate::dense::Dense;
use crate::loader::{LoadError, ParamSource};
use crate::slim::SlimOps;
use crate::units::{HasUnits, Unit, UnitKind, UnitList};

/// What a sequence-level head predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceTask {
    /// `n` class logits (cross-entropy).
    Classification {
        /// Number of classes, at least 2.
        num_labels: usize,
    },
    /// One real-valued score (mean squared error), e.g. STS-B similarity.
    Regression,
}

impl SequenceTask {
    /// Width of the head's output.
    pub fn num_outputs(self) -> usize {
        match self {
            Self::Classification { num_labels } => num_labels,
            Self::Regression => 1,
        }
    }
}

/// `BertForSequenceClassification`: pooled `[CLS]` → dropout → `classifier`.
#[derive(Module, Debug)]
pub struct BertForSequenceClassification<B: SlimOps> {
    /// The encoder (`bert.*` in task checkpoints), with pooler.
    pub bert: BertModel<B>,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// `classifier`, `[num_outputs, hidden]`; freshly initialised when the checkpoint lacks it.
    pub classifier: Dense<B>,
    /// `true` for a regression head (one output).
    pub regression: bool,
}

impl<B: SlimOps> HasUnits<B> for BertForSequenceClassification<B> {
    fn units(&self) -> Vec<Unit> {
        let mut units = UnitList::default();
        self.bert.push_units(&mut units);
        units.push_with_bias(
            "classifier.weight",
            &self.classifier.weight,
            &self.classifier.bias,
            UnitKind::Head,
            None,
        );
        units.into_vec()
    }
}

impl<B: SlimOps> BertForSequenceClassification<B> {
    /// Builds the model; the backbone must be in `source`, the head may be new.
    pub fn load<S: ParamSource<B>>(
        source: &mut S,
        config: &BertConfig,
        task: SequenceTask,
    ) -> Result<Self, LoadError> {
        let bert = BertModel::load(source, config, true)?;
        let h = config.hidden_size;
        let classifier = Dense::load(
            source,
            "classifier",
            h,
            task.num_outputs(),
            config.initializer_range,
            false,
        )?;
        Ok(Self {
            bert,
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            classifier,
            regression: task == SequenceTask::Regression,
        })
    }

    /// # Shapes
    /// - output: `[batch, num_outputs]` (logits, or the regression score in column 0)
    pub fn forward(&self, input: BertInput<B>) -> Tensor<B, 2> {
        self.forward_with(input, &mut |_| {})
    }

    /// [`BertForSequenceClassification::forward`], calling `before(segment)` before each
    /// segment: as [`BertModel::forward_with`], then `1 + layers` before the head.
    pub fn forward_with(&self, input: BertInput<B>, before: &mut dyn FnMut(usize)) -> Tensor<B, 2> {
        let hidden = self.bert.encode_with(input, before);
        before(1 + self.bert.layers.len());
        self.head(hidden)
    }

    /// Pooler, dropout and classifier over the last layer's output.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq_len, hidden]`
    /// - output: `[batch, num_outputs]`
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let pooled = self
            .bert
            .pool(hidden)
            .expect("sequence classification always has a pooler");
        self.classifier.forward(self.dropout.forward(pooled))
    }
}

/// `BertForQuestionAnswering`: per-token start and end logits from `qa_outputs`.
#[derive(Module, Debug)]
pub struct BertForQuestionAnswering<B: SlimOps> {
    /// The encoder, without pooler (as Hugging Face builds it for QA).
    pub bert: BertModel<B>,
    /// `qa_outputs`, `[2, hidden]`: row 0 scores starts, row 1 ends.
    pub qa_outputs: Dense<B>,
}

/// Start and end logits of an extractive QA head.
#[derive(Debug, Clone)]
pub struct SpanLogits<B: Backend> {
    /// `[batch, seq_len]`.
    pub start: Tensor<B, 2>,
    /// `[batch, seq_len]`.
    pub end: Tensor<B, 2>,
}

impl<B: SlimOps> HasUnits<B> for BertForQuestionAnswering<B> {
    fn units(&self) -> Vec<Unit> {
        let mut units = UnitList::default();
        self.bert.push_units(&mut units);
        units.push_with_bias(
            "qa_outputs.weight",
            &self.qa_outputs.weight,
            &self.qa_outputs.bias,
            UnitKind::Head,
            None,
        );
        units.into_vec()
    }
}

impl<B: SlimOps> BertForQuestionAnswering<B> {
    /// Builds the model; the backbone must be in `source`, the head may be new.
    pub fn load<S: ParamSource<B>>(source: &mut S, config: &BertConfig) -> Result<Self, LoadError> {
        let bert = BertModel::load(source, config, false)?;
        let qa_outputs = Dense::load(
            source,
            "qa_outputs",
            config.hidden_size,
            2,
            config.initializer_range,
            false,
        )?;
        Ok(Self { bert, qa_outputs })
    }

    /// # Shapes
    /// - output: start and end, `[batch, seq_len]` each
    pub fn forward(&self, input: BertInput<B>) -> SpanLogits<B> {
        let hidden = self.bert.forward(input).last_hidden_state;
        let [batch, seq_len, _] = hidden.dims();
        let logits = self.qa_outputs.forward(hidden);
        let pick = |i: usize| {
            logits
                .clone()
                .slice([0..batch, 0..seq_len, i..i + 1])
                .reshape([batch, seq_len])
        };
        SpanLogits {
            start: pick(0),
            end: pick(1),
        }
    }
}
