//! Extracting chosen files from a Debian package (`.deb`).
//!
//! The package's file-system tree (`data.tar.*`) is read as a tar stream, either from
//! `dpkg-deb --fsys-tarfile` (any compression dpkg knows) or, where `dpkg-deb` is absent, in
//! Rust: the `.deb` is an `ar` archive whose `data.tar.xz` (or `.gz`, or uncompressed) member
//! is decompressed (`lzma-rs`, `flate2`) to a scratch file. Only the named members are
//! written out; nothing else of the package touches the disk.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::assets::{AssetError, io_err};

/// How a package's data tarball is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebExtractor {
    /// `dpkg-deb --fsys-tarfile`.
    DpkgDeb,
    /// The `ar` archive parsed in Rust (xz and gzip only).
    Native,
}

/// Whether `dpkg-deb` can be run.
pub fn dpkg_deb_available() -> bool {
    Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn package_err(deb: &Path, reason: impl Into<String>) -> AssetError {
    AssetError::Package {
        wheel: deb.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes each `(member, destination)` of `wanted` — members named by their path in the
/// package without a leading `./`, e.g. `usr/share/doc/x/copyright` — from `deb`. `scratch`
/// is a directory for temporary files. A member missing from the package is an error.
pub(crate) fn extract(
    deb: &Path,
    wanted: &[(&str, PathBuf)],
    scratch: &Path,
    extractor: DebExtractor,
) -> Result<(), AssetError> {
    match extractor {
        DebExtractor::DpkgDeb => {
            let mut child = Command::new("dpkg-deb")
                .arg("--fsys-tarfile")
                .arg(deb)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(io_err("cannot run dpkg-deb on", deb))?;
            let stdout = child.stdout.take().expect("stdout is piped");
            // On success the stream has been read to its end; on error the pipe is closed
            // (dropped) before waiting, so dpkg-deb cannot block on a full pipe.
            let copied = copy_members(deb, stdout, wanted);
            let output = child
                .wait_with_output()
                .map_err(io_err("cannot run dpkg-deb on", deb))?;
            copied?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(AssetError::Download {
                    command: format!("dpkg-deb --fsys-tarfile {}", deb.display()),
                    status: output.status.to_string(),
                    stderr: stderr.trim().to_string(),
                });
            }
            Ok(())
        }
        DebExtractor::Native => {
            let tar_path = scratch.join("data.tar");
            unpack_data_tar(deb, &tar_path)?;
            let tar = File::open(&tar_path).map_err(io_err("cannot open", &tar_path))?;
            let copied = copy_members(deb, BufReader::new(tar), wanted);
            let _ = fs::remove_file(&tar_path);
            copied
        }
    }
}

/// Copies the wanted members out of a tar stream.
fn copy_members(deb: &Path, tar: impl Read, wanted: &[(&str, PathBuf)]) -> Result<(), AssetError> {
    let mut found = vec![false; wanted.len()];
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| package_err(deb, format!("data tarball: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| package_err(deb, format!("corrupt data tarball: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| package_err(deb, format!("bad member name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let name = name.strip_prefix("./").unwrap_or(&name);
        let Some(i) = wanted.iter().position(|(member, _)| *member == name) else {
            continue;
        };
        let dest = &wanted[i].1;
        let mut out = File::create(dest).map_err(io_err("cannot create", dest))?;
        io::copy(&mut entry, &mut out)
            .map_err(|e| package_err(deb, format!("cannot extract {name}: {e}")))?;
        found[i] = true;
    }
    // Read the rest (tar's end blocks and record padding), so that a writer at the other end
    // of a pipe finishes normally.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| package_err(deb, format!("data tarball: {e}")))?;
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(package_err(
            deb,
            format!("{} is not in the package", wanted[i].0),
        ));
    }
    Ok(())
}

/// Finds the `data.tar*` member of the `ar` archive `deb` and writes it, decompressed, to
/// `out`.
fn unpack_data_tar(deb: &Path, out: &Path) -> Result<(), AssetError> {
    let mut file = BufReader::new(File::open(deb).map_err(io_err("cannot open", deb))?);
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)
        .map_err(|e| package_err(deb, format!("not an ar archive (.deb): {e}")))?;
    if &magic != b"!<arch>\n" {
        return Err(package_err(deb, "not an ar archive (.deb): bad magic"));
    }
    let mut offset = 8u64;
    loop {
        let mut header = [0u8; 60];
        match file.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(package_err(deb, "no data.tar member in the ar archive"));
            }
            Err(e) => return Err(io_err("cannot read", deb)(e)),
        }
        if &header[58..60] != b"`\n" {
            return Err(package_err(
                deb,
                format!("corrupt ar member header at byte offset {offset}"),
            ));
        }
        let name = String::from_utf8_lossy(&header[..16]);
        let name = name.trim_end().trim_end_matches('/').to_string();
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                package_err(
                    deb,
                    format!("bad size in the ar member header at byte offset {offset}"),
                )
            })?;
        offset += 60;
        if let Some(compression) = name.strip_prefix("data.tar") {
            let mut member = (&mut file).take(size);
            let mut dest =
                io::BufWriter::new(File::create(out).map_err(io_err("cannot create", out))?);
            let result = match compression {
                ".xz" => lzma_rs::xz_decompress(&mut BufReader::new(&mut member), &mut dest)
                    .map_err(|e| e.to_string()),
                ".gz" => io::copy(&mut flate2::read::GzDecoder::new(&mut member), &mut dest)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                "" => io::copy(&mut member, &mut dest)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                other => {
                    return Err(package_err(
                        deb,
                        format!(
                            "data.tar{other}: compression not supported without dpkg-deb \
                             (xz, gzip or none)"
                        ),
                    ));
                }
            };
            result.map_err(|e| package_err(deb, format!("{name}: {e}")))?;
            io::Write::flush(&mut dest).map_err(io_err("cannot write", out))?;
            return Ok(());
        }
        let skip = size + (size & 1);
        let skip_by = i64::try_from(skip).map_err(|_| {
            package_err(
                deb,
                format!("ar member {name:?} is too large ({size} bytes)"),
            )
        })?;
        file.seek(SeekFrom::Current(skip_by))
            .map_err(io_err("cannot read", deb))?;
        offset += skip;
    }
}
