//! Layer normalisation with Hugging Face parameter names (`weight`, `bias`).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::loader::{Init, LoadError, ParamSource};
use crate::slim::{self, CompressionConfig, SlimOps};

/// `y = (x − mean) / sqrt(var + eps) · γ + β` over the last dimension (biased variance, as
/// PyTorch). γ (`weight`) is a SlimFit unit; β (`bias`) always trains.
#[derive(Module, Debug)]
pub struct LayerNorm<B: SlimOps> {
    /// γ, `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    /// β, `[d_model]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Added to the variance for numerical stability.
    pub epsilon: f64,
}

impl<B: SlimOps> LayerNorm<B> {
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
        // 2-D view: flex broadcasts `[rows, n]` with `[rows, 1]` / `[1, n]` quickly.
        let dims = input.dims();
        let n = dims[D - 1];
        let rows = input.shape().num_elements() / n.max(1);
        let x = input.reshape([rows, n]);
        let (var, mean) = x.clone().var_mean_bias(1);
        let normalised = x.sub(mean).div(var.add_scalar(self.epsilon).sqrt());
        normalised
            .mul(self.weight.val().unsqueeze())
            .add(self.bias.val().unsqueeze())
            .reshape(dims)
    }

    /// Normalises through SlimFit's op (compressed state when γ is frozen) unless `config`
    /// is exact.
    pub fn forward_with<const D: usize>(
        &self,
        input: Tensor<B, D>,
        config: &CompressionConfig,
    ) -> Tensor<B, D> {
        if config.is_exact() {
            self.forward(input)
        } else {
            slim::layer_norm(
                input,
                self.weight.val(),
                self.bias.val(),
                self.epsilon,
                config,
            )
        }
    }
}
