//! Temporary directories of asset fetches, and the clean-up of those a killed fetch left.
//!
//! Fetches download and unpack into temporary directories beside the cache entry and move
//! the finished entry in with one rename. A process killed half-way never runs its clean-up,
//! so its temporaries (a 100 MB download, say) would stay forever: they are named after the
//! process (`.slimfit-partial-<pid>-XXXXXX`), and the next fetch into the same directory
//! removes those whose process is gone. Directories of a fetch still running (another
//! process of `reproduce-table --jobs`, say) are left alone.

use std::io;
use std::path::Path;

const PREFIX: &str = ".slimfit-partial-";

/// A temporary directory in `parent` named after this process, after removing the
/// temporaries of dead processes there.
pub(crate) fn tempdir_in(parent: &Path) -> io::Result<tempfile::TempDir> {
    remove_abandoned(parent);
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(parent)
}

/// Removes the temporaries in `parent` whose process no longer runs.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if process_gone(pid) {
            tracing::info!(
                "removing {} left by an interrupted fetch",
                entry.path().display()
            );
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

/// Whether process `pid` has ended, where that can be told (Linux's `/proc`); elsewhere
/// nothing is removed.
fn process_gone(pid: u32) -> bool {
    let proc = Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn temporaries_of_dead_processes_are_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        // A pid above the kernel's limit (2²²) never runs.
        let dead = parent.path().join(format!("{PREFIX}4194305-abc"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("download.deb"), vec![0u8; 4096]).unwrap();
        let live = parent
            .path()
            .join(format!("{PREFIX}{}-xyz", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let other = parent.path().join("fashion-mnist");
        std::fs::create_dir(&other).unwrap();
        let fresh = tempdir_in(parent.path()).unwrap();
        assert!(!dead.exists());
        assert!(live.exists() && other.exists() && fresh.path().exists());
    }
}
