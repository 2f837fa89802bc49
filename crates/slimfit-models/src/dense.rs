//! A fully connected layer storing its weight the way Hugging Face does.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, backend::Backend};

use crate::loader::{Init, LoadError, ParamSource};

/// `y = x Wᵀ + b` with `W` stored as `[d_output, d_input]`, the PyTorch `nn.Linear` layout,
/// so checkpoint tensors load without a transpose and gradients keep the checkpoint's shape.
///
/// SlimFit freezes the weight `W` as one unit; the bias always trains.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    /// Weight, `[d_output, d_input]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Bias, `[d_output]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
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
            }
        } else {
            Self {
                weight: source.optional(&w, wshape, wi)?,
                bias: source.optional(&b, [d_output], bi)?,
            }
        })
    }

    /// Applies the layer to the last dimension.
    ///
    /// # Shapes
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::module::linear(input, self.weight.val().transpose(), Some(self.bias.val()))
    }

    /// `d_input` and `d_output`.
    pub fn dims(&self) -> (usize, usize) {
        let [d_output, d_input] = self.weight.shape().dims();
        (d_input, d_output)
    }
}
