//! A fully connected layer storing its weight the way Hugging Face does.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::loader::{Init, LoadError, ParamSource};
use crate::lora::{LoraAdapter, LoraConfig};
use crate::slim::{self, Compression, SlimOps};

/// `y = x Wᵀ + b` with `W` stored as `[d_output, d_input]`, the PyTorch `nn.Linear` layout,
/// so checkpoint tensors load without a transpose and gradients keep the checkpoint's shape.
///
/// SlimFit freezes the weight `W` as one unit; the bias always trains. A LoRA adapter, when
/// attached ([`Dense::with_lora`]), adds its low-rank update to the output.
#[derive(Module, Debug)]
pub struct Dense<B: SlimOps> {
    /// Weight, `[d_output, d_input]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Bias, `[d_output]`.
    pub bias: Param<Tensor<B, 1>>,
    /// A LoRA adapter (the LoRA baseline), `None` otherwise.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: SlimOps> Dense<B> {
    /// Builds the layer from `{prefix}.weight` and `{prefix}.bias` of `source`.
    pub fn load<S: ParamSource<B>>(
        source: &mut S,
        prefix: &str,
        d_input: usize,
        d_output: usize,
        init_std: f64,
        required: bool,
    ) -> Result<Self, LoadError> {
        let (w, b) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
        let (wshape, wi, bi) = ([d_output, d_input], Init::Normal(init_std), Init::Zeros);
        Ok(if required {
            Self {
                weight: source.required(&w, wshape, wi)?,
                bias: source.required(&b, [d_output], bi)?,
                lora: None,
            }
        } else {
            Self {
                weight: source.optional(&w, wshape, wi)?,
                bias: source.optional(&b, [d_output], bi)?,
                lora: None,
            }
        })
    }

    /// Attaches a fresh LoRA adapter ([`LoraAdapter::new`]), replacing any.
    pub fn attach_lora(&mut self, config: &LoraConfig) {
        let (d_input, d_output) = self.dims();
        let device = self.weight.val().device();
        self.lora = Some(LoraAdapter::new(config, d_input, d_output, &device));
    }

    /// Folds the adapter, if any, into the weight (no adapter left): the same function, as
    /// a plain layer a checkpoint can hold.
    pub fn merge_lora(&mut self) {
        if let Some(lora) = self.lora.take() {
            let merged = lora.merge_into(self.weight.val()).detach();
            let require_grad = self.weight.is_require_grad();
            self.weight = Param::initialized(self.weight.id, merged.set_require_grad(require_grad));
        }
    }

    /// A copy of `input` for the adapter, when there is one (none otherwise: a second
    /// handle would keep the input alive, and unique buffers are reused in place).
    fn adapter_input<const D: usize>(&self, input: &Tensor<B, D>) -> Option<Tensor<B, D>> {
        self.lora.as_ref().map(|_| input.clone())
    }

    /// Adds the adapter's update to `y` computed from `input` (kept by
    /// [`Dense::adapter_input`]).
    fn adapted<const D: usize>(
        &self,
        input: Option<Tensor<B, D>>,
        y: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let (Some(lora), Some(input)) = (&self.lora, input) else {
            return y;
        };
        let dims = y.dims();
        let d_input = input.dims()[D - 1];
        let rows = input.shape().num_elements() / d_input.max(1);
        y + lora.forward(input.reshape([rows, d_input])).reshape(dims)
    }

    /// Applies the layer to the last dimension.
    ///
    /// # Shapes
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        // Work on a 2-D view: flex's broadcasting is fast for `[rows, n] + [1, n]` but walks
        // higher-rank broadcasts element by element.
        let mut dims = input.dims();
        let d_input = dims[D - 1];
        let rows = input.shape().num_elements() / d_input.max(1);
        let weight = self.weight.val();
        dims[D - 1] = weight.dims()[0];
        let kept = self.adapter_input(&input);
        let y = input.reshape([rows, d_input]).matmul(weight.transpose())
            + self.bias.val().unsqueeze::<2>();
        self.adapted(kept, y.reshape(dims))
    }

    /// Applies the layer through SlimFit's linear op when `save` is given (the input is then
    /// kept for the weight gradient only while the weight trains, stored as `save` says),
    /// through plain burn ops otherwise.
    pub fn forward_saving<const D: usize>(
        &self,
        input: Tensor<B, D>,
        save: Option<Compression>,
    ) -> Tensor<B, D> {
        match save {
            Some(mode) => {
                let kept = self.adapter_input(&input);
                let y = slim::linear(input, self.weight.val(), self.bias.val(), mode);
                self.adapted(kept, y)
            }
            None => self.forward(input),
        }
    }

    /// `d_input` and `d_output`.
    pub fn dims(&self) -> (usize, usize) {
        let [d_output, d_input] = self.weight.shape().dims();
        (d_input, d_output)
    }
}
