//! Visitors over the parameters of the units that train in a step: copies for scoring,
//! AdamW's decoupled weight decay, and the check that an update left them finite.

use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

/// Copies the values of chosen parameters to the host.
pub(super) struct Snapshot<'a> {
    wanted: &'a HashMap<ParamId, usize>,
    values: HashMap<usize, Vec<f32>>,
}

impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Snapshot<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(&unit) = self.wanted.get(&param.id) {
            let data = param.val().into_data().convert::<f32>();
            self.values
                .insert(unit, data.into_vec().expect("f32 values"));
        }
    }
}

pub(super) fn snapshot<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    wanted: &HashMap<ParamId, usize>,
) -> HashMap<usize, Vec<f32>> {
    let mut visitor = Snapshot {
        wanted,
        values: HashMap::new(),
    };
    model.visit(&mut visitor);
    visitor.values
}

/// Decoupled weight decay `W ← W·(1 − lr·wd)` on the chosen parameters (AdamW's decay,
/// applied only to weights that are not biases or LayerNorm, and only when they trained).
pub(super) struct Decay<'a> {
    pub(super) ids: &'a HashSet<ParamId>,
    pub(super) factor: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Decay<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !self.ids.contains(&param.id) {
            return param;
        }
        let factor = self.factor;
        param.map(|t| {
            let tracked = t.is_require_grad();
            let t = Tensor::from_inner(t.inner().mul_scalar(factor));
            if tracked { t.require_grad() } else { t }
        })
    }
}

/// Collects, for each chosen parameter, the sum of its values: NaN or infinite when the
/// parameter holds a NaN or infinite value (or sums beyond f32's range, which only a
/// diverged update does). A reduction allocates no copy of the parameter, so the check adds
/// nothing to the step's peak.
struct NonFinite<'a, B: AutodiffBackend> {
    wanted: &'a HashMap<ParamId, usize>,
    flags: Vec<(usize, Tensor<B::InnerBackend, 1>)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NonFinite<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(&unit) = self.wanted.get(&param.id) {
            let flag = param.val().inner().sum();
            self.flags.push((unit, flag));
        }
    }
}

/// The first of the chosen parameters (by unit index) that holds a NaN or infinite value, if
/// any: one pass over their values and one host read for all of them.
pub(super) fn first_non_finite<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    wanted: &HashMap<ParamId, usize>,
) -> Option<usize> {
    let mut visitor = NonFinite::<B> {
        wanted,
        flags: Vec::new(),
    };
    model.visit(&mut visitor);
    if visitor.flags.is_empty() {
        return None;
    }
    let (units, flags): (Vec<usize>, Vec<_>) = visitor.flags.into_iter().unzip();
    let values = Tensor::cat(flags, 0).into_data().convert::<f32>();
    let values: Vec<f32> = values.into_vec().expect("f32 values");
    units
        .iter()
        .zip(&values)
        .filter(|(_, v)| !v.is_finite())
        .map(|(u, _)| *u)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TrainingBackend as B, default_device};
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn a_nan_or_infinite_value_in_a_trained_parameter_is_found_and_frozen_ones_are_not_read() {
        let device = default_device().unwrap();
        let layer: Linear<B> = LinearConfig::new(3, 2).init(&device);
        let weight = layer.weight.id;
        let bias = layer.bias.as_ref().unwrap().id;
        let both = HashMap::from([(weight, 4), (bias, 9)]);
        assert_eq!(first_non_finite::<B, _>(&layer, &both), None);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut poisoned = layer.clone();
            poisoned.bias = poisoned
                .bias
                .map(|b| b.map(|t| Tensor::from_inner(t.inner().add_scalar(bad))));
            assert_eq!(first_non_finite::<B, _>(&poisoned, &both), Some(9), "{bad}");
            // The bias does not train this step: it is not read.
            let weight_only = HashMap::from([(weight, 4)]);
            assert_eq!(first_non_finite::<B, _>(&poisoned, &weight_only), None);
        }
    }
}
