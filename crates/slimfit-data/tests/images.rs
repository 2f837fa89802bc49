//! Image data sets and transforms.
//!
//! Every reader is tested on small files written here in the real format; the Fashion-MNIST
//! tests at the end use the real data set, resolved through the cache or fetched with
//! `apt-get download`, and skip (printing why) only when the cache is empty *and* apt-get
//! cannot be run.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::Compression;
use flate2::write::GzEncoder;
use slimfit_data::assets::AssetError;
use slimfit_data::images::fashion_mnist::DebExtractor;
use slimfit_data::images::{
    self, Augment, CifarLabels, IMAGENET_MEAN, IMAGENET_STD, ImageFolder, ImageSplit, Rng,
    VitTransform, fashion_mnist,
};
use slimfit_data::{Image, ImageError, ImageSet};

// ------------------------------------------------------------------------------------------
// Helpers.

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, 3];
    for d in [count, rows, cols] {
        out.extend(d.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, 1];
    out.extend((labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// 3 images of 4 columns × 2 rows: image `i` pixel `p` is `10·i + p`.
fn sample_pixels() -> Vec<u8> {
    (0..3u8)
        .flat_map(|i| (0..8u8).map(move |p| 10 * i + p))
        .collect()
}

const SAMPLE_LABELS: [u8; 3] = [2, 0, 9];

/// An MNIST-layout directory with the sample as both splits, gzipped or raw.
fn write_mnist_dir(dir: &Path, gzipped: bool) {
    let images = idx_images(3, 2, 4, &sample_pixels());
    let labels = idx_labels(&SAMPLE_LABELS);
    for prefix in ["train", "t10k"] {
        for (kind, bytes) in [("images-idx3", &images), ("labels-idx1", &labels)] {
            let name = format!("{prefix}-{kind}-ubyte");
            if gzipped {
                fs::write(dir.join(format!("{name}.gz")), gz(bytes)).unwrap();
            } else {
                fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

#[track_caller]
fn assert_err_mentions(err: &ImageError, path: &Path, what: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name {}: {msg}",
        path.display()
    );
    assert!(msg.contains(what), "error does not say {what:?}: {msg}");
}

fn grey(width: usize, height: usize, pixels: Vec<u8>) -> Image {
    Image::new(width, height, 1, pixels).unwrap()
}

// ------------------------------------------------------------------------------------------
// IDX (MNIST, Fashion-MNIST).

#[test]
fn idx_gzipped_and_raw_read_the_same() {
    for gzipped in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_mnist_dir(dir.path(), gzipped);
        for split in [ImageSplit::Train, ImageSplit::Test] {
            let set = images::load_mnist(dir.path(), split, &images::MNIST_CLASSES).unwrap();
            assert_eq!(set.len(), 3);
            assert_eq!(set.labels, [2, 0, 9]);
            assert_eq!(set.classes[9], "9");
            let img = &set.images[1];
            assert_eq!((img.width(), img.height(), img.channels()), (4, 2, 1));
            assert_eq!(img.pixels(), [10, 11, 12, 13, 14, 15, 16, 17]);
            // Row-major: row 1, column 2 is pixel 4 + 2.
            assert_eq!(img.get(2, 1, 0), Some(16));
        }
    }
}

#[test]
fn idx_name_does_not_decide_compression() {
    // A raw file named .gz and a gzipped one without the suffix both read.
    let dir = tempfile::tempdir().unwrap();
    let raw_as_gz = dir.path().join("labels.gz");
    fs::write(&raw_as_gz, idx_labels(&[1, 2])).unwrap();
    assert_eq!(images::read_idx_labels(&raw_as_gz).unwrap(), [1, 2]);
    let gz_plain = dir.path().join("labels");
    fs::write(&gz_plain, gz(&idx_labels(&[3]))).unwrap();
    assert_eq!(images::read_idx_labels(&gz_plain).unwrap(), [3]);
    // An empty set is valid.
    fs::write(&gz_plain, idx_labels(&[])).unwrap();
    assert!(images::read_idx_labels(&gz_plain).unwrap().is_empty());
}

#[test]
fn idx_corrupt_or_truncated_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-images-idx3-ubyte");
    let good = idx_images(3, 2, 4, &sample_pixels());
    let check = |bytes: &[u8], what: &str| {
        fs::write(&path, bytes).unwrap();
        let err = images::read_idx_images(&path).unwrap_err();
        assert!(matches!(err, ImageError::Malformed { .. }), "{err:?}");
        assert_err_mentions(&err, &path, what);
    };
    // Raw: header problems.
    check(&[], "too short for an IDX header");
    check(&[0, 0, 8], "too short for an IDX header");
    check(&idx_labels(&[1, 2]), "1 dimensions, but images have 3");
    check(&[0x1f, 0x00, 0x08, 0x03], "bad magic number 0x1f000803");
    let mut float_type = good.clone();
    float_type[2] = 0x0d;
    check(&float_type, "data type 0x0d is not unsigned bytes");
    check(&good[..10], "truncated header: 1 of the 3 dimension sizes");
    check(&idx_images(1, 0, 4, &[]), "zero-sized images");
    // Raw: data shorter or longer than announced.
    check(&good[..16 + 8 + 3], "item 1 is incomplete");
    let mut longer = good.clone();
    longer.push(0);
    check(&longer, "1 bytes of trailing data");
    check(
        &idx_images(u32::MAX, 60000, 60000, &[]),
        "item 0 is incomplete",
    );
    // Gzipped: truncated stream, truncated data, corrupt CRC, trailing data.
    let packed = gz(&good);
    check(
        &packed[..packed.len() - 12],
        "corrupt or truncated gzip stream",
    );
    check(&gz(&good[..16 + 20]), "item 2 is incomplete");
    let mut bad_crc = packed.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xff;
    check(&bad_crc, "corrupt or truncated gzip stream");
    check(&gz(&longer), "trailing data");
    check(&gz(&[0, 0]), "too short");
    // A missing file is an I/O error naming it.
    let missing = dir.path().join("absent");
    let err = images::read_idx_images(&missing).unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
    assert_err_mentions(&err, &missing, "cannot read");
}

#[test]
fn idx_pairs_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist_dir(dir.path(), false);
    let labels = dir.path().join("train-labels-idx1-ubyte");
    fs::write(&labels, idx_labels(&[1, 2])).unwrap();
    let err =
        images::load_mnist(dir.path(), ImageSplit::Train, &images::MNIST_CLASSES).unwrap_err();
    assert_err_mentions(&err, &labels, "2 labels for the 3 images of");
    fs::write(&labels, idx_labels(&[1, 2, 10])).unwrap();
    let err =
        images::load_mnist(dir.path(), ImageSplit::Train, &images::MNIST_CLASSES).unwrap_err();
    assert_err_mentions(
        &err,
        &labels,
        "label 10 of item 2 is out of range (10 classes)",
    );
    // A missing file names the expected name.
    fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    let err = images::load_mnist(dir.path(), ImageSplit::Test, &images::MNIST_CLASSES).unwrap_err();
    assert!(
        err.to_string()
            .contains("t10k-images-idx3-ubyte.gz is missing"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------
// CIFAR.

/// One CIFAR record: `labels` then planes R = `seed`, G = `seed + 1`, B = pixel index % 256.
fn cifar_record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut rec = labels.to_vec();
    rec.extend(std::iter::repeat_n(seed, 1024));
    rec.extend(std::iter::repeat_n(seed.wrapping_add(1), 1024));
    rec.extend((0..1024u32).map(|p| p as u8));
    rec
}

fn write_cifar10(dir: &Path) {
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    fs::write(dir.join("batches.meta.txt"), names).unwrap();
    for b in 1..=5u8 {
        let batch: Vec<u8> = (0..2u8)
            .flat_map(|r| cifar_record(&[b + r], 10 * b + r))
            .collect();
        fs::write(dir.join(format!("data_batch_{b}.bin")), batch).unwrap();
    }
    fs::write(dir.join("test_batch.bin"), cifar_record(&[9], 99)).unwrap();
}

#[test]
fn cifar10_binary_batches() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(images::CIFAR10_DIR);
    fs::create_dir(&dir).unwrap();
    write_cifar10(&dir);
    // The directory holding cifar-10-batches-bin/ works too.
    for given in [dir.as_path(), root.path()] {
        let train = images::load_cifar10(given, ImageSplit::Train).unwrap();
        assert_eq!(train.len(), 10);
        assert_eq!(train.labels, [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
        assert_eq!(train.classes.len(), 10);
        assert_eq!(train.classes[1], "automobile");
        let img = &train.images[3]; // batch 2, record 1: seed 21
        assert_eq!((img.width(), img.height(), img.channels()), (32, 32, 3));
        // Planar → interleaved: pixel (x, y) = p = 32·y + x holds (R, G, B) = (21, 22, p).
        assert_eq!(&img.pixels()[..6], [21, 22, 0, 21, 22, 1]);
        assert_eq!(img.get(5, 2, 2), Some(69));
        let test = images::load_cifar10(given, ImageSplit::Test).unwrap();
        assert_eq!(test.labels, [9]);
        assert_eq!(test.images[0].get(31, 31, 0), Some(99));
        assert_eq!(test.images[0].get(31, 31, 2), Some(255));
    }
}

#[test]
fn cifar10_errors_name_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path());
    let batch = dir.path().join("data_batch_3.bin");
    let mut bytes = fs::read(&batch).unwrap();
    bytes.truncate(3073 + 100);
    fs::write(&batch, &bytes).unwrap();
    let err = images::load_cifar10(dir.path(), ImageSplit::Train).unwrap_err();
    assert_err_mentions(
        &err,
        &batch,
        "partial record 1 at byte offset 3073: 100 of 3073 bytes",
    );

    let test = dir.path().join("test_batch.bin");
    fs::write(&test, cifar_record(&[10], 0)).unwrap();
    let err = images::load_cifar10(dir.path(), ImageSplit::Test).unwrap_err();
    assert_err_mentions(
        &err,
        &test,
        "record 0 (byte offset 0): label 10 is out of range",
    );
    fs::write(&test, []).unwrap();
    let err = images::load_cifar10(dir.path(), ImageSplit::Test).unwrap_err();
    assert_err_mentions(&err, &test, "empty file");

    fs::remove_file(&test).unwrap();
    let err = images::load_cifar10(dir.path(), ImageSplit::Test).unwrap_err();
    assert!(
        err.to_string().contains("test_batch.bin is missing"),
        "{err}"
    );
    let meta = dir.path().join("batches.meta.txt");
    fs::write(&meta, "a\nb\n").unwrap();
    let err = images::load_cifar10(dir.path(), ImageSplit::Train).unwrap_err();
    assert_err_mentions(&err, &meta, "2 class names, expected 10");
    let empty = tempfile::tempdir().unwrap();
    let err = images::load_cifar10(empty.path(), ImageSplit::Train).unwrap_err();
    assert!(
        err.to_string().contains("batches.meta.txt is missing"),
        "{err}"
    );
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    let fine: String = (0..100).map(|i| format!("fine{i}\n")).collect();
    let coarse: String = (0..20).map(|i| format!("coarse{i}\n")).collect();
    fs::write(dir.path().join("fine_label_names.txt"), fine).unwrap();
    fs::write(dir.path().join("coarse_label_names.txt"), coarse).unwrap();
    let train: Vec<u8> = [[3u8, 77], [19, 99], [0, 0]]
        .iter()
        .enumerate()
        .flat_map(|(i, l)| cifar_record(l, i as u8))
        .collect();
    fs::write(dir.path().join("train.bin"), &train).unwrap();
    fs::write(dir.path().join("test.bin"), cifar_record(&[1, 2], 5)).unwrap();

    let set = images::load_cifar100(dir.path(), ImageSplit::Train, CifarLabels::Fine).unwrap();
    assert_eq!(set.labels, [77, 99, 0]);
    assert_eq!(set.classes.len(), 100);
    assert_eq!(set.classes[77], "fine77");
    assert_eq!(set.images[1].get(0, 0, 0), Some(1));
    let set = images::load_cifar100(dir.path(), ImageSplit::Train, CifarLabels::Coarse).unwrap();
    assert_eq!(set.labels, [3, 19, 0]);
    assert_eq!(set.classes[19], "coarse19");
    let set = images::load_cifar100(dir.path(), ImageSplit::Test, CifarLabels::Fine).unwrap();
    assert_eq!(set.labels, [2]);

    let path = dir.path().join("train.bin");
    fs::write(&path, &train[..3074 * 2 + 1]).unwrap();
    let err = images::load_cifar100(dir.path(), ImageSplit::Train, CifarLabels::Fine).unwrap_err();
    assert_err_mentions(
        &err,
        &path,
        "partial record 2 at byte offset 6148: 1 of 3074 bytes",
    );
    let mut bad = cifar_record(&[20, 5], 0);
    bad.extend(cifar_record(&[20, 5], 0));
    fs::write(&path, &bad).unwrap();
    assert!(images::load_cifar100(dir.path(), ImageSplit::Train, CifarLabels::Fine).is_ok());
    let err =
        images::load_cifar100(dir.path(), ImageSplit::Train, CifarLabels::Coarse).unwrap_err();
    assert_err_mentions(
        &err,
        &path,
        "record 0 (byte offset 0): label 20 is out of range",
    );
}

// ------------------------------------------------------------------------------------------
// Folder trees.

fn write_folder(root: &Path) {
    let cat = root.join("cat");
    let dog = root.join("dog");
    fs::create_dir_all(cat.join("more")).unwrap();
    fs::create_dir_all(&dog).unwrap();
    fs::create_dir_all(root.join(".hidden")).unwrap();
    // RGB PNG, 3 × 2, every pixel distinct.
    let rgb: Vec<u8> = (0..18).map(|i| i * 10).collect();
    image::RgbImage::from_raw(3, 2, rgb)
        .unwrap()
        .save(cat.join("b.png"))
        .unwrap();
    // Grey PNG, upper-case extension, in a sub-directory.
    image::GrayImage::from_raw(2, 2, vec![0, 50, 100, 150])
        .unwrap()
        .save_with_format(cat.join("more/a.PNG"), image::ImageFormat::Png)
        .unwrap();
    // A JPEG of one colour.
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 40, 90]))
        .save(dog.join("x.jpeg"))
        .unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]))
        .save(root.join(".hidden/ignored.png"))
        .unwrap();
    fs::write(dog.join("notes.txt"), "not an image").unwrap();
    fs::write(dog.join(".thumb.jpg"), "hidden").unwrap();
    fs::write(root.join("README"), "top-level files are ignored").unwrap();
}

#[test]
fn folder_tree_classes_files_and_pixels() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path());
    let folder = ImageFolder::scan(root.path()).unwrap();
    assert_eq!(folder.classes(), ["cat", "dog"]);
    let names: Vec<String> = folder
        .files()
        .iter()
        .map(|p| {
            p.strip_prefix(root.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["cat/b.png", "cat/more/a.PNG", "dog/x.jpeg"]);
    assert_eq!(folder.labels(), [0, 0, 1]);

    let set = folder.load().unwrap();
    assert_eq!(set.labels, [0, 0, 1]);
    assert_eq!(set.class_counts(), [2, 1]);
    let png = &set.images[0];
    assert_eq!((png.width(), png.height(), png.channels()), (3, 2, 3));
    assert_eq!(png.pixels(), (0..18).map(|i| i * 10).collect::<Vec<u8>>());
    // Grey is decoded to RGB.
    assert_eq!(set.images[1].channels(), 3);
    assert_eq!(set.images[1].get(1, 1, 0), Some(150));
    assert_eq!(set.images[1].get(1, 1, 2), Some(150));
    // JPEG is lossy: within a few levels of the colour written.
    let jpeg = &set.images[2];
    assert_eq!((jpeg.width(), jpeg.height()), (8, 8));
    for (px, want) in jpeg
        .pixels()
        .chunks_exact(3)
        .zip(std::iter::repeat([200u8, 40, 90]))
    {
        for c in 0..3 {
            assert!(px[c].abs_diff(want[c]) <= 4, "{px:?} vs {want:?}");
        }
    }
    assert_eq!(folder.decode(2).unwrap(), *jpeg);
    assert!(matches!(folder.decode(3), Err(ImageError::Invalid(_))));
}

#[test]
fn folder_errors_name_the_file() {
    let root = tempfile::tempdir().unwrap();
    write_folder(root.path());
    let broken = root.path().join("dog/y.png");
    fs::write(&broken, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let folder = ImageFolder::scan(root.path()).unwrap();
    let err = folder.load().unwrap_err();
    assert!(matches!(err, ImageError::Decode { .. }), "{err:?}");
    assert_err_mentions(&err, &broken, "cannot decode image");
    // Garbage with an image extension, recognised by no decoder.
    fs::write(&broken, b"plain text").unwrap();
    let err = images::decode_image(&broken).unwrap_err();
    assert_err_mentions(&err, &broken, "cannot decode image");
    // A truncated JPEG.
    let jpeg = root.path().join("dog/x.jpeg");
    let bytes = fs::read(&jpeg).unwrap();
    fs::write(&jpeg, &bytes[..bytes.len() / 3]).unwrap();
    let err = images::decode_image(&jpeg).unwrap_err();
    assert_err_mentions(&err, &jpeg, "cannot decode image");
    // A class without images, and a root without classes.
    let empty_class = root.path().join("emu");
    fs::create_dir(&empty_class).unwrap();
    fs::write(empty_class.join("a.gif"), "").unwrap();
    let err = ImageFolder::scan(root.path()).unwrap_err();
    assert_err_mentions(&err, &empty_class, "holds no .jpg, .jpeg or .png file");
    let bare = tempfile::tempdir().unwrap();
    let err = ImageFolder::scan(bare.path()).unwrap_err();
    assert_err_mentions(&err, bare.path(), "no class folders");
    let err = ImageFolder::scan(&bare.path().join("absent")).unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
}

// ------------------------------------------------------------------------------------------
// Transforms.

#[test]
fn resize_matches_hand_computed_bilinear_and_pillow() {
    // 2 × 2 → 4 × 4 upscale, half-pixel aligned with edge clamping: weights per output
    // column/row (1, 0), (¾, ¼), (¼, ¾), (0, 1). Pillow 13.0 gives the same bytes.
    let img = grey(2, 2, vec![0, 100, 200, 40]);
    let up = images::resize_bilinear(&img, 4, 4).unwrap();
    assert_eq!(
        up.pixels(),
        [
            0, 25, 75, 100, 50, 59, 76, 85, 150, 126, 79, 55, 200, 160, 80, 40
        ]
    );
    // Downscale antialiases (Pillow: [36, 219]; plain bilinear would give [0, 255]).
    let row = grey(4, 1, vec![0, 0, 255, 255]);
    assert_eq!(
        images::resize_bilinear(&row, 2, 1).unwrap().pixels(),
        [36, 219]
    );
    // More Pillow 13.0 `resize(BILINEAR)` references (8-bit fixed point there: ±1 allowed).
    let cases: Vec<(Image, (usize, usize), Vec<u8>)> = vec![
        (
            grey(5, 3, (0..150).step_by(10).map(|v| v as u8).collect()),
            (3, 2),
            vec![23, 39, 55, 85, 101, 117],
        ),
        (
            grey(7, 5, (0..35u32).map(|i| (i * 37 % 256) as u8).collect()),
            (4, 9),
            vec![
                19, 77, 145, 203, 20, 78, 146, 204, 22, 80, 148, 206, 23, 81, 149, 207, 25, 83,
                151, 209, 27, 85, 153, 211, 28, 86, 154, 212, 30, 88, 156, 214, 31, 89, 157, 215,
            ],
        ),
        (
            Image::new(
                3,
                2,
                3,
                (0..18u32).map(|i| ((i * 53 + 11) % 256) as u8).collect(),
            )
            .unwrap(),
            (5, 4),
            vec![
                11, 64, 117, 75, 128, 78, 170, 223, 20, 112, 165, 115, 73, 126, 179, 66, 55, 108,
                105, 119, 95, 161, 214, 75, 103, 156, 132, 64, 117, 170, 177, 38, 91, 164, 102,
                129, 144, 197, 186, 86, 139, 166, 47, 100, 153, 232, 29, 82, 193, 93, 146, 135,
                188, 241, 77, 130, 183, 38, 91, 144,
            ],
        ),
        (
            grey(
                28,
                28,
                (0..28u32)
                    .flat_map(|y| (0..28u32).map(move |x| ((x * 9 + y * 5) % 256) as u8))
                    .collect(),
            ),
            (10, 10),
            vec![
                17, 40, 65, 89, 115, 140, 166, 191, 215, 231, 30, 53, 78, 102, 128, 153, 179, 204,
                227, 167, 44, 67, 92, 116, 142, 167, 193, 218, 206, 64, 57, 80, 105, 129, 155, 180,
                206, 227, 116, 24, 71, 94, 119, 143, 169, 194, 220, 197, 43, 36, 86, 109, 134, 158,
                184, 209, 225, 113, 30, 51, 100, 123, 148, 172, 198, 223, 169, 32, 42, 65, 114,
                137, 162, 186, 212, 223, 82, 32, 56, 79, 127, 150, 175, 199, 225, 173, 32, 45, 69,
                92, 140, 163, 188, 212, 219, 66, 33, 58, 82, 105,
            ],
        ),
    ];
    for (img, (w, h), want) in cases {
        let got = images::resize_bilinear(&img, w, h).unwrap();
        assert_eq!((got.width(), got.height()), (w, h));
        for (i, (a, b)) in got.pixels().iter().zip(&want).enumerate() {
            assert!(a.abs_diff(*b) <= 1, "{w}×{h} byte {i}: {a} vs Pillow {b}");
        }
    }
    // A constant image stays constant; the same size is the identity.
    let flat = Image::new(5, 7, 3, vec![123; 105]).unwrap();
    for (w, h) in [(1, 1), (3, 11), (224, 224)] {
        let out = images::resize_bilinear(&flat, w, h).unwrap();
        assert!(out.pixels().iter().all(|&v| v == 123));
    }
    let img = grey(3, 2, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(images::resize_bilinear(&img, 3, 2).unwrap(), img);
    assert!(images::resize_bilinear(&img, 0, 2).is_err());
}

#[test]
fn normalisation_values_and_grey_to_rgb() {
    let img = grey(2, 1, vec![0, 255]);
    let rgb = images::grey_to_rgb(&img);
    assert_eq!(rgb.channels(), 3);
    assert_eq!(rgb.pixels(), [0, 0, 0, 255, 255, 255]);
    assert_eq!(images::grey_to_rgb(&rgb), rgb);

    let out = images::normalize_chw(&img, IMAGENET_MEAN, IMAGENET_STD).unwrap();
    assert_eq!(out.len(), 6);
    // CHW: channel c holds (0/255 − mean[c]) / std[c], then (1 − mean[c]) / std[c].
    let want = [
        -2.117_904_f32,
        2.248_908_3,
        -2.035_714_2,
        2.428_571_4,
        -1.804_444_4,
        2.64,
    ];
    for (a, b) in out.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{out:?}");
    }
    assert_eq!(
        images::normalize_chw(&rgb, IMAGENET_MEAN, IMAGENET_STD).unwrap(),
        out
    );
    // Interleaved RGB → planar.
    let px = Image::new(2, 1, 3, vec![255, 0, 51, 0, 255, 102]).unwrap();
    let out = images::normalize_chw(&px, [0.0; 3], [1.0; 3]).unwrap();
    assert_eq!(out, [1.0, 0.0, 0.0, 1.0, 0.2, 0.4]);
    assert!(images::normalize_chw(&px, [0.0; 3], [1.0, 0.0, 1.0]).is_err());
    assert!(images::normalize_chw(&px, [f32::NAN, 0.0, 0.0], [1.0; 3]).is_err());
}

#[test]
fn flips_and_padded_crops() {
    let img = grey(3, 2, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(images::hflip(&img).pixels(), [3, 2, 1, 6, 5, 4]);
    let rgb = Image::new(2, 1, 3, vec![1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(images::hflip(&rgb).pixels(), [4, 5, 6, 1, 2, 3]);
    // Offset (pad, pad) is the identity; (0, 0) shifts the image right and down by pad.
    assert_eq!(images::pad_crop(&img, 1, 1, 1).unwrap(), img);
    assert_eq!(
        images::pad_crop(&img, 1, 0, 0).unwrap().pixels(),
        [0, 0, 0, 0, 1, 2]
    );
    assert_eq!(
        images::pad_crop(&img, 1, 2, 1).unwrap().pixels(),
        [2, 3, 0, 5, 6, 0]
    );
    assert_eq!(
        images::pad_crop(&img, 5, 0, 0).unwrap().pixels(),
        [0; 6],
        "a pad beyond the image leaves only padding"
    );
    assert!(images::pad_crop(&img, 1, 3, 0).is_err());
    // Absurd padding is handled, not an overflow.
    let huge = usize::MAX / 2;
    assert_eq!(
        images::pad_crop(&img, huge, 2 * huge, 0).unwrap().pixels(),
        [0; 6]
    );
    assert!(images::pad_crop(&img, usize::MAX, 0, 0).is_err());
    let absurd = Augment {
        pad: usize::MAX,
        hflip: true,
    };
    assert!(absurd.apply(&img, &mut Rng::new(0)).is_err());
}

#[test]
fn augmentation_is_deterministic_for_a_seed() {
    let img = grey(
        6,
        5,
        (0..30).map(|v| v * 8 + 1).collect(), // no zero pixel: padding is visible
    );
    let augment = Augment::default();
    let run = |seed: u64| -> Vec<Image> {
        let mut rng = Rng::new(seed);
        (0..32)
            .map(|_| augment.apply(&img, &mut rng).unwrap())
            .collect()
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a, run(43));
    // Over 32 draws both flips and several offsets occur; every output keeps the shape.
    assert!(
        a.iter()
            .all(|x| (x.width(), x.height(), x.channels()) == (6, 5, 1))
    );
    let distinct: std::collections::HashSet<&Image> = a.iter().collect();
    assert!(distinct.len() > 10, "{}", distinct.len());
    // Each output is pad_crop at some offset, flipped or not.
    for out in &a {
        let found = (0..=8).any(|dx| {
            (0..=8).any(|dy| {
                let c = images::pad_crop(&img, 4, dx, dy).unwrap();
                *out == c || *out == images::hflip(&c)
            })
        });
        assert!(found);
    }
    assert!(a.iter().any(|x| x.pixels().contains(&0)));
    // No padding and no flip: the identity.
    let none = Augment {
        pad: 0,
        hflip: false,
    };
    assert_eq!(none.apply(&img, &mut Rng::new(1)).unwrap(), img);
}

fn tiny_set() -> ImageSet {
    let images = (0..4u8)
        .map(|i| grey(4, 4, (0..16).map(|p| p * 16 + i).collect()))
        .collect();
    ImageSet::new(images, vec![0, 1, 0, 1], vec!["even".into(), "odd".into()]).unwrap()
}

#[test]
fn vit_batches_are_chw_and_seeded() {
    let set = tiny_set();
    let eval = VitTransform::eval(8);
    let batch = eval.batch(&set, &[3, 0], &mut Rng::new(0)).unwrap();
    assert_eq!(batch.shape(), [2, 3, 8, 8]);
    assert_eq!(batch.pixels.len(), 2 * 3 * 64);
    assert_eq!(batch.labels, [1, 0]);
    // Evaluation draws nothing and equals resize + grey→RGB + normalise of each image.
    let manual = images::normalize_chw(
        &images::resize_bilinear(&set.images[0], 8, 8).unwrap(),
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    .unwrap();
    let second = &batch.pixels[3 * 64..];
    for (a, b) in second.iter().zip(&manual) {
        // resize_bilinear rounds to u8; the pipeline keeps f32: within half a grey level.
        assert!((a - b).abs() <= 0.5 / 255.0 / 0.224 + 1e-6, "{a} vs {b}");
    }
    // Grey channels are repeated before normalisation: channel c = (v − mean[c]) / std[c].
    let c0 = batch.pixels[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0];
    let c2 = batch.pixels[2 * 64] * IMAGENET_STD[2] + IMAGENET_MEAN[2];
    assert!((c0 - c2).abs() < 1e-5);
    // Grey input gives the same as its RGB version.
    let rgb = images::grey_to_rgb(&set.images[1]);
    assert_eq!(
        eval.apply(&rgb, &mut Rng::new(0)).unwrap(),
        eval.apply(&set.images[1], &mut Rng::new(0)).unwrap()
    );

    let train = VitTransform::train(8, Augment::default());
    let a = train.batch(&set, &[0, 1, 2, 3], &mut Rng::new(5)).unwrap();
    let b = train.batch(&set, &[0, 1, 2, 3], &mut Rng::new(5)).unwrap();
    let c = train.batch(&set, &[0, 1, 2, 3], &mut Rng::new(6)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.pixels, c.pixels);
    assert!(a.pixels.iter().all(|v| v.is_finite()));

    assert!(matches!(
        eval.batch(&set, &[4], &mut Rng::new(0)),
        Err(ImageError::Invalid(_))
    ));
    assert!(
        VitTransform::eval(0)
            .apply(&set.images[0], &mut Rng::new(0))
            .is_err()
    );
    let bad_std = VitTransform {
        std: [1.0, -1.0, 1.0],
        ..eval
    };
    assert!(bad_std.batch(&set, &[0], &mut Rng::new(0)).is_err());
}

#[test]
fn balanced_subsample_of_a_set() {
    let labels: Vec<usize> = (0..50).map(|i| i % 5).collect();
    let images = (0..50).map(|i| grey(1, 1, vec![i as u8])).collect();
    let classes = (0..5).map(|c| c.to_string()).collect();
    let set = ImageSet::new(images, labels, classes).unwrap();
    let sub = set.balanced_subsample(3, 7);
    assert_eq!(sub.len(), 15);
    assert_eq!(sub.class_counts(), [3; 5]);
    // Labels still match their images (image i has label i % 5).
    for (img, &l) in sub.images.iter().zip(&sub.labels) {
        assert_eq!(usize::from(img.pixels()[0]) % 5, l);
    }
    assert_eq!(set.balanced_subsample(3, 7), sub);
    let larger = set.balanced_subsample(6, 7);
    assert!(sub.images.iter().all(|i| larger.images.contains(i)));
}

// ------------------------------------------------------------------------------------------
// Fashion-MNIST: resolution, .deb installation, and the real data.

#[test]
fn explicit_fashion_dir_must_hold_the_idx_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = fashion_mnist::resolve(Some(dir.path())).unwrap_err();
    assert!(
        matches!(err, AssetError::IncompleteDataset { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("train-images-idx3-ubyte.gz is missing"),
        "{err}"
    );
    write_mnist_dir(dir.path(), false);
    assert_eq!(
        fashion_mnist::resolve(Some(dir.path())).unwrap(),
        dir.path()
    );
    let set = fashion_mnist::open(Some(dir.path()), ImageSplit::Test).unwrap();
    assert_eq!(set.labels, [2, 0, 9]);
    assert_eq!(set.classes[9], "Ankle boot");
}

/// A `.deb` (ar archive, `data.tar.xz`) holding `files` (path without `./` → bytes).
fn fake_deb(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("./{path}"), *bytes)
            .unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &tar[..], &mut xz).unwrap();
    let mut deb = b"!<arch>\n".to_vec();
    for (name, data) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.xz", vec![0u8; 3]),
        ("data.tar.xz", xz),
    ] {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            data.len()
        );
        assert_eq!(header.len(), 60);
        deb.extend(header.as_bytes());
        deb.extend(&data);
        if data.len() % 2 == 1 {
            deb.push(b'\n');
        }
    }
    deb
}

#[test]
fn deb_installation_verifies_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("fake.deb");
    let target = dir.path().join("cache/fashion-mnist");
    let mut files: Vec<(String, Vec<u8>)> = fashion_mnist::FILES
        .iter()
        .map(|(name, _)| {
            (
                format!("{}/{name}", fashion_mnist::DEB_DATA_DIR),
                gz(&idx_labels(&[1])),
            )
        })
        .collect();
    files.push((fashion_mnist::DEB_COPYRIGHT.into(), b"MIT".to_vec()));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    fs::write(&deb, fake_deb(&refs)).unwrap();
    let mut extractors = vec![DebExtractor::Native];
    if fashion_mnist::dpkg_deb_available() {
        extractors.push(DebExtractor::DpkgDeb);
    }
    for extractor in extractors {
        // Well-formed, but neither the .deb nor its files have the pinned checksums.
        let err = fashion_mnist::install_deb_with(&deb, &target, extractor).unwrap_err();
        match &err {
            AssetError::Checksum { file, expected, .. } => {
                assert_eq!(file, &deb);
                assert_eq!(expected, fashion_mnist::DEB_SHA256);
            }
            other => panic!("{extractor:?}: {other:?}"),
        }
        assert!(!target.exists(), "nothing is installed");
    }
    // A package without the data files.
    fs::write(&deb, fake_deb(&[("usr/share/doc/other", b"x")])).unwrap();
    let err = fashion_mnist::install_deb_with(&deb, &target, DebExtractor::Native).unwrap_err();
    assert!(err.to_string().contains("is not in the package"), "{err}");
    // Not a .deb at all.
    fs::write(&deb, b"hello").unwrap();
    let err = fashion_mnist::install_deb_with(&deb, &target, DebExtractor::Native).unwrap_err();
    assert!(err.to_string().contains("not an ar archive"), "{err}");
    // Leftover temporary directories are cleaned up.
    let left: Vec<PathBuf> = fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn apt_or_cache(cache: &Path) -> bool {
    if fashion_mnist::check_dataset_dir(cache).is_ok() || fashion_mnist::apt_get_available() {
        return true;
    }
    eprintln!(
        "SKIPPED: apt-get is not available and {} is empty",
        cache.display()
    );
    false
}

/// The real data set, both splits, loaded once; `None` (with a printed reason) when it can be
/// neither found in the cache nor fetched.
fn fashion() -> Option<&'static (ImageSet, ImageSet)> {
    static SETS: OnceLock<Option<(ImageSet, ImageSet)>> = OnceLock::new();
    SETS.get_or_init(|| {
        if !apt_or_cache(&fashion_mnist::cache_dir()) {
            return None;
        }
        let dir = fashion_mnist::resolve(None).unwrap_or_else(|e| panic!("{e}"));
        let load = |split| fashion_mnist::load(&dir, split).unwrap_or_else(|e| panic!("{e}"));
        Some((load(ImageSplit::Train), load(ImageSplit::Test)))
    })
    .as_ref()
}

#[test]
fn real_fashion_mnist_counts_labels_and_pixels() {
    let Some((train, test)) = fashion() else {
        return;
    };
    assert_eq!(train.len(), 60_000);
    assert_eq!(test.len(), 10_000);
    assert_eq!(train.class_counts(), [6000; 10]);
    assert_eq!(test.class_counts(), [1000; 10]);
    assert_eq!(train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(train.classes[9], "Ankle boot");
    let first = &train.images[0];
    assert_eq!(
        (first.width(), first.height(), first.channels()),
        (28, 28, 1)
    );
    let sum: u32 = first.pixels().iter().map(|&v| u32::from(v)).sum();
    assert_eq!(sum, 76_247);
    assert_eq!(first.pixels().iter().max(), Some(&255));
    let sum: u32 = test.images[0].pixels().iter().map(|&v| u32::from(v)).sum();
    assert_eq!(sum, 33_456);

    // The whole pipeline on real images: 100 per class, ViT-B/16 input.
    let sub = train.balanced_subsample(100, 0);
    assert_eq!(sub.class_counts(), [100; 10]);
    let transform = VitTransform::train(224, Augment::default());
    let batch = transform
        .batch(&sub, &[0, 1, 2, 3], &mut Rng::new(0))
        .unwrap();
    assert_eq!(batch.shape(), [4, 3, 224, 224]);
    let lo = (0.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
    let hi = (1.0 - IMAGENET_MEAN[2]) / IMAGENET_STD[2];
    assert!(
        batch
            .pixels
            .iter()
            .all(|&v| v >= lo - 1e-4 && v <= hi + 1e-4)
    );
}

#[test]
fn real_deb_installs_identically_with_both_extractors() {
    let cache = fashion_mnist::cache_dir();
    if !fashion_mnist::apt_get_available() {
        eprintln!("SKIPPED: apt-get is not available to download the .deb");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let deb = fashion_mnist::download_deb(work.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        slimfit_data::assets::sha256_file(&deb).unwrap(),
        fashion_mnist::DEB_SHA256
    );
    let mut extractors = vec![DebExtractor::Native];
    if fashion_mnist::dpkg_deb_available() {
        extractors.push(DebExtractor::DpkgDeb);
    }
    for extractor in extractors {
        let target = work.path().join(format!("{extractor:?}"));
        fashion_mnist::install_deb_with(&deb, &target, extractor)
            .unwrap_or_else(|e| panic!("{extractor:?}: {e}"));
        fashion_mnist::check_dataset_dir(&target).unwrap();
        assert!(target.join("COPYRIGHT").is_file());
        for (name, _) in fashion_mnist::FILES {
            // Installation checked each file's pinned SHA-256; the cache (if there) agrees.
            if cache.join(name).is_file() {
                assert_eq!(
                    fs::read(target.join(name)).unwrap(),
                    fs::read(cache.join(name)).unwrap()
                );
            }
        }
    }
}
