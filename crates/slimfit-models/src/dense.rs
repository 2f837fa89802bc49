//! A fully connected layer storing its weight the way Hugging Face does.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::loader::{Init, LoadError, ParamSource};
use crate::slim::{self, Compression, SlimOps};

/// `y = x Wᵀ + b` with `W` stored as `[d_output, d_input]`, the PyTorch `nn.Linear` layout,
/// so checkpoint tensors load without a transpose and gradients keep the checkpoint's shape.
///
/// SlimFit freezes the weight `W` as one unit; the bias always trains.
#[derive(Module, Debug)]
pub struct Dense<B: SlimOps> {
    /// Weight, `[d_output, d_input]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Bias, `[d_output]`.
    pub bias: Param<Tensor<B, 1>>,
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
        // Work on a 2-D view: flex's broadcasting is fast for `[rows, n] + [1, n]` but walks
        // higher-rank broadcasts element by element.
        let mut dims = input.dims();
        let d_input = dims[D - 1];
        let rows = input.shape().num_elements() / d_input.max(1);
        let weight = self.weight.val();
        dims[D - 1] = weight.dims()[0];
        let y = input.reshape([rows, d_input]).matmul(weight.transpose())
            + self.bias.val().unsqueeze::<2>();
        y.reshape(dims)
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
            Some(mode) => slim::linear(input, self.weight.val(), self.bias.val(), mode),
            None => self.forward(input),
        }
    }

    /// `d_input` and `d_output`.
    pub fn dims(&self) -> (usize, usize) {
        let [d_output, d_input] = self.weight.shape().dims();
        (d_input, d_output)
    }
}
