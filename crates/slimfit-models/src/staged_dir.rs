//! Writing a checkpoint directory as a whole.
//!
//! A checkpoint is several files (weights, `config.json`, tokenizer files) that only make
//! sense together: new weights beside an old `config.json` is a corrupt checkpoint, even if
//! each file was written atomically. So every file is written into a staging directory beside
//! the target (`.<name>.partial-XXXXXX`), synced, and the staging directory then takes the
//! target's place in one step: on Linux `renameat2(RENAME_EXCHANGE)` swaps it with an existing
//! checkpoint atomically; elsewhere (or where the file system refuses the exchange) the old
//! directory is first renamed aside (`.<name>.old-XXXXXX`). A reader therefore sees the old
//! checkpoint or the new one, never a mix. Staging and set-aside directories left by a killed
//! save are removed by the next save to the same path.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::saver::SaveError;

/// A directory being written beside `target`, which [`StagedDir::commit`] puts in its place.
pub struct StagedDir {
    target: PathBuf,
    parent: PathBuf,
    name: String,
    staging: tempfile::TempDir,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SaveError + '_ {
    move |source| SaveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files that mark a directory as a Hugging Face checkpoint: it may be replaced as a whole.
pub const CHECKPOINT_MARKERS: [&str; 2] = ["config.json", "model.safetensors"];

impl StagedDir {
    /// Stages a new directory for `target`. `target` must be absent, an empty directory or
    /// one that holds a file named in `markers` (an earlier save of the same kind, e.g.
    /// [`CHECKPOINT_MARKERS`]): any other directory is refused rather than replaced with
    /// everything in it.
    pub fn new(target: &Path, markers: &[&str]) -> Result<Self, SaveError> {
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SaveError::NotACheckpoint {
                path: target.to_path_buf(),
                reason: "the path has no final directory name".into(),
            })?
            .to_string();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        if target.exists() {
            check_replaceable(target, markers)?;
        }
        remove_leftovers(&parent, &name);
        let prefix = format!(".{name}.partial-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        // As `create_dir` would: open to all, less the umask (temporary directories are 0700).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777));
        let staging = builder.tempdir_in(&parent).map_err(io(target))?;
        Ok(Self {
            target: target.to_path_buf(),
            parent,
            name,
            staging,
        })
    }

    /// The path of file `name` in the staging directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.staging.path().join(name)
    }

    /// Writes `bytes` as file `name` of the staging directory.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), SaveError> {
        let path = self.file(name);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(io(&self.target.join(name)))
    }

    /// Syncs every staged file and the staging directory, puts it in the target's place and
    /// removes the old target.
    pub fn commit(self) -> Result<(), SaveError> {
        let staged = self.staging.path();
        for entry in std::fs::read_dir(staged).map_err(io(&self.target))? {
            let path = entry.map_err(io(&self.target))?.path();
            sync(&path).map_err(io(&self.target))?;
        }
        sync(staged).map_err(io(&self.target))?;
        if self.target.exists() {
            if !exchange(staged, &self.target) {
                let aside = tempfile::Builder::new()
                    .prefix(&format!(".{}.old-", self.name))
                    .tempdir_in(&self.parent)
                    .map_err(io(&self.target))?;
                std::fs::rename(&self.target, aside.path().join("checkpoint"))
                    .map_err(io(&self.target))?;
                std::fs::rename(staged, &self.target).map_err(io(&self.target))?;
                // Dropping `aside` removes the old checkpoint.
            }
        } else {
            std::fs::rename(staged, &self.target).map_err(io(&self.target))?;
        }
        sync(&self.parent).map_err(io(&self.parent))?;
        // After an exchange the staging path holds the old checkpoint: dropping `staging`
        // removes it (after a plain rename it is gone and dropping does nothing).
        drop(self.staging);
        Ok(())
    }
}

/// Refuses a `target` that is not a directory, or a non-empty directory without any of
/// `markers`.
fn check_replaceable(target: &Path, markers: &[&str]) -> Result<(), SaveError> {
    if !target.is_dir() {
        return Err(SaveError::Io {
            path: target.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists and is not a directory",
            ),
        });
    }
    let mut entries = std::fs::read_dir(target).map_err(io(target))?;
    let empty = entries.next().is_none();
    let checkpoint = markers.iter().any(|m| target.join(m).is_file());
    if empty || checkpoint {
        Ok(())
    } else {
        Err(SaveError::NotACheckpoint {
            path: target.to_path_buf(),
            reason: format!(
                "it is a non-empty directory without {}; a checkpoint replaces its directory \
                 as a whole",
                markers.join(" or ")
            ),
        })
    }
}

/// Removes the staging and set-aside directories a killed save to `parent/name` left.
fn remove_leftovers(parent: &Path, name: &str) {
    let prefixes = [format!(".{name}.partial-"), format!(".{name}.old-")];
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if prefixes.iter().any(|p| file_name.starts_with(p.as_str())) {
            tracing::info!(
                "removing {} left by an interrupted save",
                entry.path().display()
            );
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

/// Swaps two directories in one step, where the platform and file system can.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> bool {
    false
}

/// `fsync` of a file or directory.
fn sync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}
