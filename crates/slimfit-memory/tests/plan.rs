//! Properties of the analytic model that hold whatever the backend (the comparison with
//! measurement lives in slimfit-trainer's `accountant` test).

use slimfit_memory::{
    ActivationStorage, Bytes, EncoderShape, OptimizerState, PeakPhase, PlanError, PlanRequest,
    UnitRole, fill_to_budget, fit_budget, plan, shed_to_budget,
};

fn bert_base() -> EncoderShape {
    EncoderShape::bert_base()
}

fn request(storage: ActivationStorage, rate: f64) -> PlanRequest {
    PlanRequest::with_freeze_rate(bert_base(), 32, 128, storage, OptimizerState::Keep, rate)
}

#[test]
fn categories_add_up_and_resident_is_exact() {
    let p = plan(&request(ActivationStorage::Paper, 0.9)).unwrap();
    assert_eq!(p.categories.total(), p.total_peak_bytes);
    // Weights + two Adam moments, fp32: 12 bytes per parameter.
    assert_eq!(
        p.resident_bytes,
        Bytes(12 * bert_base().parameters() as u64)
    );
    assert_eq!(p.total_units, 102);
    assert_eq!(p.trainable_units, 102 - 91);
    let per_unit: Bytes = p.units.iter().map(|u| u.parameters).sum();
    assert!(per_unit < p.categories.parameters, "biases are not units");
}

#[test]
fn saved_activations_match_the_byte_model_of_slimfit_md() {
    // SLIMFIT.md §6: a plain BERT layer saves ≈ 66·H + 9·h·T bytes per token at fp32 under
    // PyTorch; burn's exact ops keep a little more (two copies of x − mean per LayerNorm,
    // fp32 dropout draws). A fully frozen SlimFit layer saves ≈ 7.4 KB + 12·T per token.
    let frozen = {
        let mut r = request(ActivationStorage::Paper, 0.0);
        r.trainable = vec![false; 102];
        plan(&r).unwrap()
    };
    let tokens = 32.0 * 128.0;
    let per_layer_token = frozen.saved_activation_bytes.as_f64() / tokens / 12.0;
    let expected = 7.4e3 + 12.0 * 128.0;
    assert!(
        (per_layer_token - expected).abs() / expected < 0.15,
        "{per_layer_token} B per token per layer, SLIMFIT.md says ≈ {expected}"
    );
    let full = plan(&request(ActivationStorage::Exact, 0.0)).unwrap();
    let per_layer_token = full.saved_activation_bytes.as_f64() / tokens / 12.0;
    let pytorch = 66.0 * 768.0 + 9.0 * 12.0 * 128.0;
    assert!(per_layer_token > pytorch && per_layer_token < 1.6 * pytorch);
}

#[test]
fn freezing_and_compression_only_ever_reduce_the_peak() {
    let full = plan(&request(ActivationStorage::Exact, 0.0)).unwrap();
    let exact_frozen = plan(&request(ActivationStorage::Exact, 0.9)).unwrap();
    let paper = plan(&request(ActivationStorage::Paper, 0.9)).unwrap();
    let scaled = plan(&request(ActivationStorage::Scaled, 0.9)).unwrap();
    assert!(exact_frozen.total_peak_bytes < full.total_peak_bytes);
    assert!(paper.total_peak_bytes < exact_frozen.total_peak_bytes);
    assert!(scaled.total_peak_bytes < exact_frozen.total_peak_bytes);
    // Scaled spends on 8-bit GELU′, int8 frozen-LayerNorm x̂ and P's dropout mask what its
    // bit masks save: about paper's bytes (measured on bert-base: 0.663 against 0.658 GiB).
    let ratio = scaled.saved_activation_bytes.as_f64() / paper.saved_activation_bytes.as_f64();
    assert!(
        (0.9..1.05).contains(&ratio),
        "scaled ÷ paper saved bytes {ratio}"
    );
    // Full fine-tuning of bert-base at batch 32 × 128 peaks at the top of backward.
    assert_eq!(full.peak_phase, PeakPhase::Backward(11));
    let mut previous = Bytes(u64::MAX);
    for rate in [0.0, 0.25, 0.5, 0.75, 0.9, 0.95] {
        let p = plan(&request(ActivationStorage::Paper, rate)).unwrap();
        assert!(p.total_peak_bytes <= previous, "rate {rate}");
        previous = p.total_peak_bytes;
    }
}

#[test]
fn dropping_optimizer_state_frees_the_frozen_units_moments() {
    let keep = plan(&request(ActivationStorage::Paper, 0.9)).unwrap();
    let mut r = request(ActivationStorage::Paper, 0.9);
    r.optimizer_state = OptimizerState::Drop;
    let drop = plan(&r).unwrap();
    let frozen_numel: u64 = bert_base()
        .units()
        .iter()
        .zip(&r.trainable)
        .filter(|(_, t)| !**t)
        .map(|(u, _)| u.numel as u64)
        .sum();
    assert_eq!(
        keep.categories.optimizer_state - drop.categories.optimizer_state,
        Bytes(8 * frozen_numel)
    );
}

#[test]
fn budget_mode_picks_the_most_units_that_fit_and_names_the_minimum() {
    let r = request(ActivationStorage::Paper, 0.0);
    let full = plan(&request(ActivationStorage::Paper, 0.0)).unwrap();
    // A budget above full training's peak trains everything.
    let all = fit_budget(&r, full.total_peak_bytes).unwrap();
    assert_eq!(all.trainable_units, 102);
    let mid = fit_budget(&r, Bytes(2 << 30)).unwrap();
    assert!(mid.trainable_units > 0 && mid.trainable_units < 102);
    assert!(mid.worst_case.total_peak_bytes <= Bytes(2 << 30));
    // One more unit would not fit in the worst case: larger budgets never allow fewer.
    let more = fit_budget(&r, Bytes(3 << 30)).unwrap();
    assert!(more.trainable_units >= mid.trainable_units);
    match fit_budget(&r, Bytes(1 << 30)) {
        Err(PlanError::BudgetTooSmall { minimum, .. }) => {
            assert!(minimum > Bytes(1 << 30));
            assert!(
                PlanError::BudgetTooSmall {
                    budget: Bytes(1 << 30),
                    minimum
                }
                .to_string()
                .contains("every unit frozen")
            );
        }
        other => panic!("expected BudgetTooSmall, got {other:?}"),
    }
}

#[test]
fn filling_uses_the_room_the_worst_case_leaves_and_never_exceeds_the_budget() {
    let budget = Bytes(2 << 30);
    let mut r = request(ActivationStorage::Paper, 0.0);
    let k = fit_budget(&r, budget).unwrap().trainable_units;
    // The k cheapest units leave room for more than k.
    let costs = slimfit_memory::unit_costs(&r);
    let mut cheap: Vec<usize> = (0..costs.len()).collect();
    cheap.sort_by_key(|&i| costs[i]);
    r.trainable = vec![false; costs.len()];
    for &i in &cheap[..k] {
        r.trainable[i] = true;
    }
    let order: Vec<usize> = (0..costs.len()).rev().collect();
    let added = fill_to_budget(&mut r, budget, &order).unwrap();
    assert!(!added.is_empty(), "a cheap set of {k} leaves room");
    assert!(added.iter().all(|&i| r.trainable[i]));
    let filled = plan(&r).unwrap().total_peak_bytes;
    assert!(filled <= budget, "{filled} > {budget}");
    // Maximal in the given order: no frozen unit fits on top of the filled set.
    for i in (0..costs.len()).filter(|&i| !r.trainable[i]) {
        let mut more = r.clone();
        more.trainable[i] = true;
        assert!(
            plan(&more).unwrap().total_peak_bytes > budget,
            "unit {i} still fits"
        );
    }
    // Shedding a filled set that already fits removes nothing.
    assert!(shed_to_budget(&mut r, budget).unwrap().is_empty());
}

#[test]
fn invalid_requests_are_errors() {
    let mut r = request(ActivationStorage::Paper, 0.9);
    r.seq = 513;
    assert!(plan(&r).unwrap_err().to_string().contains("max_positions"));
    let mut r = request(ActivationStorage::Paper, 0.9);
    r.trainable.pop();
    assert!(plan(&r).unwrap_err().to_string().contains("flags"));
    let mut r = request(ActivationStorage::Paper, 0.9);
    r.shape.heads = 7;
    assert!(plan(&r).unwrap_err().to_string().contains("divisible"));
}

#[test]
fn sizes_whose_bytes_would_wrap_64_bits_are_refused_not_wrapped() {
    let mut r = request(ActivationStorage::Scaled, 0.9);
    r.batch = usize::MAX;
    let err = plan(&r).unwrap_err().to_string();
    assert!(err.contains("beyond the accountant's range"), "{err}");
    // The largest batch that plans gives figures that grow with it (no wrap).
    let mut r = request(ActivationStorage::Scaled, 0.9);
    r.batch = 1 << 20;
    let big = plan(&r).unwrap().total_peak_bytes;
    r.batch = 1 << 10;
    assert!(big.0 > 512 * plan(&r).unwrap().total_peak_bytes.0);
    let mut r = request(ActivationStorage::Scaled, 0.9);
    r.shape.hidden = usize::MAX - 1;
    r.shape.heads = 1;
    let err = plan(&r).unwrap_err().to_string();
    assert!(err.contains("hidden") && err.contains("range"), "{err}");
}

#[test]
fn accumulated_gradients_stay_through_later_micro_batches() {
    let single = request(ActivationStorage::Scaled, 0.9);
    let accumulating = PlanRequest {
        accumulated_gradients: true,
        ..single.clone()
    };
    let (p, q) = (plan(&single).unwrap(), plan(&accumulating).unwrap());
    // The running sum — every trainable unit's gradient and the biases' — is added to every
    // moment of the forward and backward passes, and to none of the update.
    let sum = q.forward_peak_bytes.0 - p.forward_peak_bytes.0;
    let unit_grads: u64 = p.units.iter().map(|u| u.gradient.0).sum();
    assert!(sum > unit_grads, "{sum} vs {unit_grads}");
    assert_eq!(q.backward_peak_bytes.0 - p.backward_peak_bytes.0, sum);
    assert_eq!(q.update_peak_bytes, p.update_peak_bytes);
    assert!(q.total_peak_bytes > p.total_peak_bytes);
    // Budget mode fits no more units when gradients accumulate.
    let budget = p.total_peak_bytes;
    let fit = |r: &PlanRequest| fit_budget(r, budget).unwrap().trainable_units;
    assert!(fit(&accumulating) < fit(&single));
}

/// Activation checkpointing keeps one `[tokens, hidden]` input per layer instead of every
/// saved activation: full fine-tuning of BERT-base plans far less, most of it in the
/// forward pass, and the resident state does not change.
#[test]
fn recomputing_layers_plans_layer_inputs_instead_of_saved_activations() {
    let full = request(ActivationStorage::Exact, 0.0);
    let recomputed = PlanRequest {
        recompute_layers: true,
        ..full.clone()
    };
    let (plain, ckpt) = (plan(&full).unwrap(), plan(&recomputed).unwrap());
    assert_eq!(plain.resident_bytes, ckpt.resident_bytes);
    assert!(ckpt.total_peak_bytes < plain.total_peak_bytes);
    let inputs = 12 * 32 * 128 * 768 * 4;
    let saved_forward = plain.forward_peak_bytes.0 - ckpt.forward_peak_bytes.0;
    assert!(
        saved_forward + inputs > plain.saved_activation_bytes.0 * 9 / 10,
        "forward saves {saved_forward} of {}",
        plain.saved_activation_bytes
    );
    // The same for a SlimFit step: its saved state is smaller, so recomputing saves less.
    let slim = request(ActivationStorage::Scaled, 0.9);
    let slim_ckpt = PlanRequest {
        recompute_layers: true,
        ..slim.clone()
    };
    let (s0, s1) = (plan(&slim).unwrap(), plan(&slim_ckpt).unwrap());
    assert!(s1.total_peak_bytes < s0.total_peak_bytes);
    assert!(
        s0.total_peak_bytes.0 - s1.total_peak_bytes.0
            < plain.total_peak_bytes.0 - ckpt.total_peak_bytes.0
    );
}

/// LoRA on query and value (rank 8): the adapted matrices keep their inputs, like trained
/// ones, but their gradients and moments are the adapters' — the plan lies between every
/// unit frozen and query/value trained whole, and its resident state is the weights, the
/// adapters and the adapters' moments (and the biases').
#[test]
fn adapters_train_in_place_of_the_matrices_they_adapt() {
    let shape = bert_base();
    let units = shape.units();
    let qv: Vec<bool> = units
        .iter()
        .map(|u| matches!(u.role, UnitRole::Query | UnitRole::Value))
        .collect();
    let base = PlanRequest {
        trainable: qv.clone(),
        optimizer_state: OptimizerState::Drop,
        ..request(ActivationStorage::Exact, 0.0)
    };
    let lora = PlanRequest {
        adapter_rank: Some(8),
        ..base.clone()
    };
    let frozen = PlanRequest {
        trainable: vec![false; units.len()],
        ..base.clone()
    };
    let (whole, adapted, none) = (
        plan(&base).unwrap(),
        plan(&lora).unwrap(),
        plan(&frozen).unwrap(),
    );
    assert!(none.total_peak_bytes < adapted.total_peak_bytes);
    assert!(adapted.total_peak_bytes < whole.total_peak_bytes);
    // The saved inputs are a trained matrix's.
    assert_eq!(adapted.saved_activation_bytes, whole.saved_activation_bytes);
    let adapters = 12 * 2 * 8 * (768 + 768) as u64;
    assert_eq!(
        adapted.resident_bytes.0,
        none.resident_bytes.0 + 3 * 4 * adapters
    );
    let grads: u64 = adapted.units.iter().map(|u| u.gradient.0).sum();
    assert_eq!(grads, 4 * adapters);
}

/// Head-only training saves nothing in the encoder (no gradient flows below the head): its
/// plan is far below every-unit-frozen SlimFit's, which still back-propagates into the
/// encoder for the biases, and its only gradients are the head's.
#[test]
fn training_the_head_alone_keeps_no_encoder_activation() {
    let shape = bert_base();
    let head: Vec<bool> = shape
        .units()
        .iter()
        .map(|u| matches!(u.role, UnitRole::Pooler | UnitRole::Classifier))
        .collect();
    let frozen = PlanRequest {
        trainable: head.clone(),
        optimizer_state: OptimizerState::Drop,
        ..request(ActivationStorage::Exact, 0.0)
    };
    let head_only = PlanRequest {
        head_only: true,
        ..frozen.clone()
    };
    let (a, b) = (plan(&frozen).unwrap(), plan(&head_only).unwrap());
    assert!(b.total_peak_bytes.0 * 2 < a.total_peak_bytes.0, "{b:?}");
    assert_eq!(b.peak_phase, PeakPhase::Forward);
    let head_numel = (768 * 768 + 768 + 2 * 768 + 2) as u64;
    assert_eq!(
        b.resident_bytes.0,
        4 * bert_base().parameters() as u64 + 2 * 4 * head_numel
    );
}
