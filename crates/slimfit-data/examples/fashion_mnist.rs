//! Resolves Fashion-MNIST (fetching Debian's `dataset-fashion-mnist` with apt-get on first
//! use), prints the image and class counts of both splits, an ASCII thumbnail of the first
//! training image, and the shape of a ViT batch made from it.
//!
//! `cargo run --release -p slimfit-data --example fashion_mnist -- [DATASET_DIR]`

use std::path::PathBuf;

use slimfit_data::Image;
use slimfit_data::images::{ImageSplit, Rng, VitTransform, fashion_mnist};

/// Dark to light; each character stands for two image rows (terminal cells are tall).
const RAMP: &[u8] = b" .:-=+*#%@";

fn thumbnail(img: &Image) -> String {
    let mut out = String::new();
    for y in (0..img.height()).step_by(2) {
        for x in 0..img.width() {
            let rows = if y + 1 < img.height() { 2 } else { 1 };
            let sum: usize = (0..rows)
                .map(|dy| usize::from(img.get(x, y + dy, 0).unwrap_or(0)))
                .sum();
            let level = sum / rows * (RAMP.len() - 1) / 255;
            out.push(char::from(RAMP[level]));
        }
        out.push('\n');
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .filter(|a| !a.is_empty())
        .map(PathBuf::from);
    let start = std::time::Instant::now();
    let dir = fashion_mnist::resolve(dir.as_deref())?;
    let train = fashion_mnist::load(&dir, ImageSplit::Train)?;
    let test = fashion_mnist::load(&dir, ImageSplit::Test)?;
    println!(
        "{} {} from {} (resolved and loaded in {:.2?})",
        fashion_mnist::PACKAGE,
        fashion_mnist::VERSION,
        dir.display(),
        start.elapsed()
    );
    println!("{:>12} {:>6} {:>6}", "class", "train", "test");
    for (c, name) in train.classes.iter().enumerate() {
        println!(
            "{name:>12} {:>6} {:>6}",
            train.class_counts()[c],
            test.class_counts()[c]
        );
    }
    println!("{:>12} {:>6} {:>6}", "total", train.len(), test.len());

    let first = &train.images[0];
    println!(
        "\nfirst training image: {}×{}, label {} ({})",
        first.width(),
        first.height(),
        train.labels[0],
        train.classes[train.labels[0]]
    );
    print!("{}", thumbnail(first));

    let batch = VitTransform::eval(224).batch(&train, &[0, 1, 2, 3], &mut Rng::new(0))?;
    println!(
        "\nViT batch of the first 4 images: shape {:?}, labels {:?}",
        batch.shape(),
        batch.labels
    );
    Ok(())
}
