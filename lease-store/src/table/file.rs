//! File-level helpers of `open`: lock the file, create and size a new one,
//! make a rename durable.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::StoreError;
use crate::header::{self, Geometry};

/// Opens the file read-write, takes the exclusive flock, and makes sure the
/// locked file is still the one at `path`. Returns (file, is empty).
pub(super) fn open_locked(path: &Path, create: bool) -> Result<(File, bool), StoreError> {
    for _ in 0..5 {
        let exists = match fs::metadata(path) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io(path, "stat", e)),
        };
        if !exists {
            if !create {
                return Err(StoreError::format(
                    path,
                    "does not exist (and creating it is switched off)",
                ));
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    return Err(StoreError::format(
                        path,
                        format!(
                            "cannot create the lease file: directory {} does not exist",
                            parent.display()
                        ),
                    ));
                }
            }
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io(path, if exists { "open" } else { "create" }, e))?;
        // A process forked by another thread of ours shares the lock until it execs (our
        // descriptors are close-on-exec), so a busy lock is retried briefly before it counts as
        // held by someone else (a test binary reopening a table hit that window).
        let mut tries = 0;
        loop {
            // SAFETY: plain syscall on a valid descriptor.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(StoreError::io(path, "flock", e));
            }
            tries += 1;
            if tries >= 20 {
                return Err(StoreError::Locked {
                    path: path.to_path_buf(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mine = file
            .metadata()
            .map_err(|e| StoreError::io(path, "stat", e))?;
        match fs::metadata(path) {
            Ok(now) if now.dev() == mine.dev() && now.ino() == mine.ino() => {
                return Ok((file, mine.len() == 0));
            }
            // Replaced (rebuilt by a previous owner) between open and flock: retry.
            _ => continue,
        }
    }
    Err(StoreError::format(
        path,
        "the file keeps being replaced while opening it",
    ))
}

/// Sizes a new file for `geo` (preallocated so later flushes need no block
/// allocation where the filesystem supports it) and writes its header.
pub(super) fn init_file(
    file: &File,
    path: &Path,
    geo: &Geometry,
    created: u64,
) -> Result<(), StoreError> {
    let len = geo.file_len();
    file.set_len(len)
        .map_err(|e| StoreError::io(path, "set file length", e))?;
    preallocate(file, len);
    let mut h = vec![0u8; geo.header_len()];
    header::write_header(&mut h, geo, created);
    file.write_all_at(&h, 0)
        .map_err(|e| StoreError::io(path, "write header", e))?;
    file.sync_all()
        .map_err(|e| StoreError::io(path, "fsync", e))?;
    sync_dir(path)
}

pub(super) fn preallocate(file: &File, len: u64) {
    let Ok(len) = libc::off_t::try_from(len) else {
        return;
    };
    // SAFETY: plain syscall on a valid descriptor. Failure (e.g. tmpfs without
    // support) only means blocks are allocated on first write.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        tracing::debug!("fallocate: {}", io::Error::last_os_error());
    }
}

pub(super) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "fsync directory", e))
}
