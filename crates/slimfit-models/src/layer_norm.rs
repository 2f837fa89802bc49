//! Layer normalisation with Hugging Face parameter names (`weight`, `bias`).

use burn::module::{Module, Param};
use burn::tensor::{Tensor, backend::Backend};

use crate::loader::{Init, LoadError, ParamSource};

/// `y = (x − mean) / sqrt(var + eps) · γ + β` over the last dimension (biased variance, as
/// PyTorch). γ (`weight`) is a SlimFit unit; β (`bias`) always trains.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// γ, `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    /// β, `[d_model]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Added to the variance for numerical stability.
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Builds the layer from `{prefix}.weight` and `{prefix}.bias` of `source`.
    pub fn load<S: ParamSource<B>>(
        source: &mut S,
        prefix: &str,
        d_model: usize,
        epsilon: f64,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            weight: source.required(&format!("{prefix}.weight"), [d_model], Init::Ones)?,
            bias: source.required(&format!("{prefix}.bias"), [d_model], Init::Zeros)?,
            epsilon,
        })
    }

    /// Normalises the last dimension.
    ///
    /// # Shapes
    /// - input: `[..., d_model]`
    /// - output: `[..., d_model]`
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let (var, mean) = input.clone().var_mean_bias(D - 1);
        let normalised = input.sub(mean).div(var.add_scalar(self.epsilon).sqrt());
        normalised
            .mul(self.weight.val().unsqueeze())
            .add(self.bias.val().unsqueeze())
    }
}
