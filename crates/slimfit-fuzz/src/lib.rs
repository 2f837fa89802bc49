//! Fuzz targets of every parser slimfit-rs runs on user input: a checkpoint's safetensors
//! file (header and tensors, loaded into a BERT), `config.json` (BERT, ViT and DINOv2),
//! GLUE TSV files, IDX and CIFAR image files, image files, `train --config` run files and
//! `encode`'s stdin lines.
//!
//! Each target takes arbitrary bytes and must return — with a value or a clear error —
//! never panic, abort or hang. The same functions run under three drivers:
//! - libFuzzer (`fuzz/`, `cargo +nightly fuzz run <target>`; coverage-guided, the long
//!   runs, `cargo xtask fuzz`);
//! - [`mutate::Mutator`] over [`seeds`] (stable Rust, no instrumentation): the short run
//!   of `cargo test` (`tests/short_run.rs`) and `cargo xtask fuzz --engine mutate`;
//! - a regression input saved from a finding, as a test.
//!
//! Targets whose parser reads files get their input through a scratch directory of their
//! own (one per thread, reused from input to input).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use slimfit_data::images::{ImageSplit, load_cifar10, load_idx};
use slimfit_data::{GlueTask, Split, WordPieceTokenizer};
use slimfit_models::{
    BertConfig, BertForSequenceClassification, CheckpointDir, SafetensorsSource, SequenceTask,
};
use slimfit_trainer::encode::parse_request;
use slimfit_trainer::model_config::resolve_architecture;
use slimfit_trainer::run_config::TrainSettings;

pub mod mutate;
pub mod seeds;

pub use seeds::seeds;

/// A parser under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `model.safetensors`, loaded into a tiny BERT classifier.
    Safetensors,
    /// `config.json`, read as a BERT and as a ViT / DINOv2 configuration.
    ConfigJson,
    /// A GLUE `train.tsv` (the first byte picks the task).
    GlueTsv,
    /// An IDX image file and an IDX label file (the first byte splits the input).
    Idx,
    /// A CIFAR-10 binary batch.
    Cifar,
    /// An image file (PNG, JPEG, …) of an image folder.
    ImageFile,
    /// A `train --config` run file.
    RunToml,
    /// `encode`'s stdin: JSON lines, parsed and tokenized as `encode` does.
    EncodeStdin,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 8] = [
        Self::Safetensors,
        Self::ConfigJson,
        Self::GlueTsv,
        Self::Idx,
        Self::Cifar,
        Self::ImageFile,
        Self::RunToml,
        Self::EncodeStdin,
    ];

    /// The target's name (the libFuzzer target's file name).
    pub fn name(self) -> &'static str {
        match self {
            Self::Safetensors => "safetensors",
            Self::ConfigJson => "config_json",
            Self::GlueTsv => "glue_tsv",
            Self::Idx => "idx",
            Self::Cifar => "cifar",
            Self::ImageFile => "image_file",
            Self::RunToml => "run_toml",
            Self::EncodeStdin => "encode_stdin",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Runs `target` on `data`: `Ok` if the parser accepted it, else its error. Errors are the
/// expected outcome of most inputs; a panic is a finding.
pub fn run(target: Target, data: &[u8]) -> Result<(), String> {
    match target {
        Target::Safetensors => safetensors(data),
        Target::ConfigJson => config_json(data),
        Target::GlueTsv => glue_tsv(data),
        Target::Idx => idx(data),
        Target::Cifar => cifar(data),
        Target::ImageFile => image_file(data),
        Target::RunToml => run_toml(data),
        Target::EncodeStdin => encode_stdin(data),
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// This thread's scratch directory, emptied of the previous input's files.
fn scratch() -> PathBuf {
    SCRATCH.with(|cell| {
        let mut dir = cell.borrow_mut();
        let dir = dir.get_or_insert_with(|| tempfile::tempdir().expect("a scratch directory"));
        let path = dir.path().to_path_buf();
        for entry in std::fs::read_dir(&path)
            .expect("scratch directory")
            .flatten()
        {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        path
    })
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("scratch subdirectory");
    }
    std::fs::write(path, bytes).expect("scratch file");
}

/// The tiny BERT the safetensors target loads into ([`seeds`] holds its checkpoint).
pub fn tiny_bert_config() -> BertConfig {
    let mut c = BertConfig::with_shape(24, 8, 2, 2, 16);
    c.max_position_embeddings = 16;
    c
}

/// An error as the target reports it.
fn shown<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<(), String> {
    result.map(|_| ()).map_err(|e| e.to_string())
}

fn safetensors(data: &[u8]) -> Result<(), String> {
    let path = scratch().join("model.safetensors");
    write(&path, data);
    let device = Default::default();
    let mut source = SafetensorsSource::<Flex>::open(&path, &device).map_err(|e| e.to_string())?;
    let head = SequenceTask::Classification { num_labels: 2 };
    shown(BertForSequenceClassification::<Flex>::load(
        &mut source,
        &tiny_bert_config(),
        head,
    ))
}

fn config_json(data: &[u8]) -> Result<(), String> {
    let dir = scratch();
    write(&dir.join("config.json"), data);
    let bert = shown(CheckpointDir::new(&dir).config());
    let path = dir.join("config.json");
    let any = shown(resolve_architecture(path.to_str().ok_or("not UTF-8")?));
    bert.or(any)
}

fn glue_tsv(data: &[u8]) -> Result<(), String> {
    let (&pick, tsv) = data.split_first().ok_or("empty")?;
    let tasks = [
        GlueTask::Cola,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::Stsb,
        GlueTask::Qqp,
        GlueTask::Mnli,
        GlueTask::Qnli,
        GlueTask::Rte,
    ];
    let task = tasks[pick as usize % tasks.len()];
    let dir = scratch();
    write(&task.path(&dir, Split::Train), tsv);
    shown(task.load(&dir, Split::Train))
}

fn idx(data: &[u8]) -> Result<(), String> {
    // Two bytes (little endian) give the images file's length; the labels file follows.
    let (len, rest) = data.split_first_chunk::<2>().ok_or("under 2 bytes")?;
    let at = (u16::from_le_bytes(*len) as usize).min(rest.len());
    let (images, labels) = rest.split_at(at);
    let dir = scratch();
    let (i, l) = (dir.join("images-idx3-ubyte"), dir.join("labels-idx1-ubyte"));
    write(&i, images);
    write(&l, labels);
    shown(load_idx(&i, &l, &slimfit_data::images::MNIST_CLASSES))
}

fn cifar(data: &[u8]) -> Result<(), String> {
    let dir = scratch();
    let names: String = (0..10).map(|i| format!("class{i}\n")).collect();
    write(&dir.join("batches.meta.txt"), names.as_bytes());
    write(&dir.join("test_batch.bin"), data);
    shown(load_cifar10(&dir, ImageSplit::Test))
}

fn image_file(data: &[u8]) -> Result<(), String> {
    let path = scratch().join("image.png");
    write(&path, data);
    shown(slimfit_data::images::decode_image(&path))
}

fn run_toml(data: &[u8]) -> Result<(), String> {
    let path = scratch().join("run.toml");
    write(&path, data);
    shown(TrainSettings::from_file(&path))
}

/// The vocabulary `encode_stdin` tokenizes with: BERT's special tokens, some words and
/// word pieces.
pub const TINY_VOCAB: &str = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nthe\nman\nis\nplay\n##ing\n\
                              guitar\n.\n,\nsome\n##one\nmusic\n!\n?\n";

fn encode_stdin(data: &[u8]) -> Result<(), String> {
    TOKENIZER.with(|tokenizer| encode_lines(tokenizer, data))
}

/// Every line parsed and tokenized as `encode` does; `encode` stops at the first line that
/// is not UTF-8 or not a request, and so does this.
fn encode_lines(tokenizer: &WordPieceTokenizer, data: &[u8]) -> Result<(), String> {
    for (index, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|e| e.to_string())?;
        if let Some(request) = parse_request(index + 1, line).map_err(|e| e.to_string())? {
            let text_pair = request.text_pair.as_deref();
            shown(tokenizer.encode(&request.text, text_pair))?;
        }
    }
    Ok(())
}

thread_local! {
    static TOKENIZER: WordPieceTokenizer = {
        let dir = tempfile::tempdir().expect("a vocabulary directory");
        let path = dir.path().join("vocab.txt");
        std::fs::write(&path, TINY_VOCAB).expect("vocab.txt");
        WordPieceTokenizer::from_vocab(&path, true, 32).expect("the tiny vocabulary loads")
    };
}
