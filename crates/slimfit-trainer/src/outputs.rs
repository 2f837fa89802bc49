//! Files the program writes: each one atomically (a temporary file beside it, synced, renamed
//! over it — a full disk or a kill leaves the previous file whole), and every output path
//! checked before training starts, so that a path that cannot be written fails in seconds,
//! not after the run.

use std::io::Write;
use std::path::{Path, PathBuf};

/// An output path that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Creating, writing, syncing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The path is taken by something the run must not replace.
    #[error("{path}: {reason}")]
    Refused {
        /// The path.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory `path` is written in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same directory (created
/// when absent), synced, then renamed over `path`, and the directory synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let dir = parent_of(path);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // As `File::create` would: readable by all, less the umask (temporary files are 0600).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(io(path))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Checks, before a run, that a file can later be written at `path`: its directory exists
/// or can be created, a file can be created in it, and `path` is not a directory.
pub fn check_file_path(path: &Path) -> Result<(), OutputError> {
    if path.is_dir() {
        return Err(OutputError::Refused {
            path: path.to_path_buf(),
            reason: "is a directory; give a file name".into(),
        });
    }
    probe(parent_of(path), path)
}

/// Creates (and removes) a temporary file in `dir`, creating `dir` when absent: `for_path`
/// names the output in errors.
fn probe(dir: &Path, for_path: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(dir).map_err(io(for_path))?;
    tempfile::Builder::new()
        .prefix(".slimfit-probe.")
        .tempfile_in(dir)
        .map(drop)
        .map_err(io(for_path))
}

/// Whether `dir` holds a checkpoint (`config.json` or `model.safetensors`).
fn holds_checkpoint(dir: &Path) -> bool {
    ["config.json", "model.safetensors"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// Checks, before a run, that a checkpoint can later be saved to `output`: it is not the
/// model being fine-tuned nor an existing checkpoint (unless `overwrite`), not a file, not
/// a non-empty directory of other files, and its parent directory is writable.
pub fn check_output_dir(output: &Path, model: &Path, overwrite: bool) -> Result<(), OutputError> {
    let same = matches!(
        (output.canonicalize(), model.canonicalize()),
        (Ok(a), Ok(b)) if a == b
    );
    if same && !overwrite {
        return Err(OutputError::Refused {
            path: output.to_path_buf(),
            reason: "is the model being fine-tuned; give another --output, or --overwrite to \
                     replace the checkpoint you train from"
                .into(),
        });
    }
    if output.exists() {
        if !output.is_dir() {
            return Err(OutputError::Refused {
                path: output.to_path_buf(),
                reason: "exists and is not a directory".into(),
            });
        }
        let empty = std::fs::read_dir(output)
            .map_err(io(output))?
            .next()
            .is_none();
        if !empty && !holds_checkpoint(output) {
            return Err(OutputError::Refused {
                path: output.to_path_buf(),
                reason: "is a non-empty directory that is not a checkpoint; the saved model \
                         replaces its directory as a whole, so give a new or empty directory"
                    .into(),
            });
        }
        if !empty && !overwrite {
            return Err(OutputError::Refused {
                path: output.to_path_buf(),
                reason: "already holds a checkpoint; give another --output, or --overwrite to \
                         replace it"
                    .into(),
            });
        }
    }
    let parent = parent_of(output);
    probe(parent, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/report.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
    }

    #[test]
    fn output_paths_are_checked_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        // The model itself, or another checkpoint: only with --overwrite.
        for overwrite in [false, true] {
            let result = check_output_dir(&model, &model, overwrite);
            assert_eq!(result.is_ok(), overwrite, "{result:?}");
        }
        let err = check_output_dir(&model, &dir.path().join("other"), false).unwrap_err();
        assert!(
            err.to_string().contains("already holds a checkpoint"),
            "{err}"
        );
        // A directory of other files: never.
        let notes = dir.path().join("notes");
        std::fs::create_dir(&notes).unwrap();
        std::fs::write(notes.join("todo.txt"), "").unwrap();
        let err = check_output_dir(&notes, &model, true).unwrap_err();
        assert!(err.to_string().contains("not a checkpoint"), "{err}");
        // New or empty directories are fine; a file is not.
        check_output_dir(&dir.path().join("new/out"), &model, false).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(check_output_dir(&file, &model, true).is_err());
        // A report path that is a directory, or under a file.
        assert!(check_file_path(&notes).is_err());
        assert!(check_file_path(&file.join("report.json")).is_err());
        check_file_path(&dir.path().join("deep/er/report.json")).unwrap();
    }
}
