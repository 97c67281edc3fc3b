//! Disk space on CI: the tests leave a release build and its test executables (hundreds of
//! megabytes each, with line tables) and clippy leaves `target/debug`; the fuzz step then
//! builds the whole workspace again with AddressSanitizer. On a machine with little disk
//! (a CI run once failed with "No space left on device" in that build), the test outputs are
//! removed first: the tests have run by then, and nothing after them needs those files.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Free space below which the test outputs are removed before fuzzing.
pub const RECLAIM_BELOW: u64 = 30 << 30;

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn available(path: &Path) -> Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{}: path with a NUL byte", path.display()))?;
    // SAFETY: statvfs is plain old data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        bail!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Size of a tree in bytes (symbolic links not followed; unreadable entries count 0).
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

/// The files the test step made that no later step needs: clippy's `target/debug` and the
/// test executables in `target/release/deps` (libraries and the daemon stay).
fn test_outputs(target: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![target.join("debug")];
    if let Ok(rd) = fs::read_dir(target.join("release").join("deps")) {
        for e in rd.flatten() {
            let p = e.path();
            let exe = e
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            let lib = p
                .extension()
                .is_some_and(|x| x == "so" || x == "rlib" || x == "rmeta" || x == "d");
            if exe && !lib {
                out.push(p);
            }
        }
    }
    out.into_iter().filter(|p| p.exists()).collect()
}

/// Before the fuzz build: reports the free space and, below [`RECLAIM_BELOW`], removes the
/// test outputs. Returns the bytes removed.
pub fn reclaim_before_fuzz(target: &Path) -> Result<u64> {
    let free = available(target)?;
    if free >= RECLAIM_BELOW {
        println!(
            "disk: {} free on {}; test outputs kept",
            gib(free),
            target.display()
        );
        return Ok(0);
    }
    let mut removed = 0;
    for p in test_outputs(target) {
        let n = tree_size(&p);
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.with_context(|| format!("removing {}", p.display()))?;
        removed += n;
    }
    println!(
        "disk: {} free on {} (below {}): removed {} of test outputs (clippy's target/debug, \
         test executables); {} free now",
        gib(free),
        target.display(),
        gib(RECLAIM_BELOW),
        gib(removed),
        gib(available(target)?)
    );
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_test_outputs_are_executables_and_debug_not_libraries() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        let deps = dir.join("release").join("deps");
        fs::create_dir_all(&deps).unwrap();
        fs::create_dir_all(dir.join("debug").join("deps")).unwrap();
        let mk = |name: &str, mode: u32| {
            let p = deps.join(name);
            fs::write(&p, b"x").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        };
        mk("api_ns-0123abcd", 0o755);
        mk("libfoo-0123.rlib", 0o644);
        mk("libbar-0123.so", 0o755);
        mk("api_ns-0123abcd.d", 0o644);
        let mut got: Vec<String> = test_outputs(&dir)
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        got.sort();
        assert_eq!(got, vec!["debug", "release/deps/api_ns-0123abcd"]);
        assert!(available(&dir).unwrap() > 0);
        assert_eq!(tree_size(&dir), 4);
        fs::remove_dir_all(&dir).unwrap();
    }
}
