//! File-level helpers of `open`: lock the file, create and size a new one,
//! make a rename durable.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::StoreError;
use crate::header::{self, Geometry};

/// Mode of the lease files the store creates (the new table, a rebuilt one): owner only.
pub(super) const LEASE_FILE_MODE: u32 = 0o600;

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
            // Every subscriber's MAC, client id and option 82: owner only.
            .mode(LEASE_FILE_MODE)
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

/// Sizes a new file for `geo` with `spare` record slots beyond its records (preallocated so
/// later flushes need no block allocation where the filesystem supports it) and writes its
/// header.
pub(super) fn init_file(
    file: &File,
    path: &Path,
    geo: &Geometry,
    spare: u32,
    created: u64,
) -> Result<(), StoreError> {
    let capacity = capacity_for(geo, spare);
    let hl = geo.header_len();
    let len = Geometry::file_len_for(hl, capacity);
    file.set_len(len)
        .map_err(|e| StoreError::io(path, "set file length", e))?;
    preallocate(file, path, len)?;
    let mut h = vec![0u8; hl];
    // A new file: a new identity (its write-ahead log will carry it).
    let mut id = [0u8; header::ID_BYTES];
    id.copy_from_slice(&crate::identity::new_id(header::ID_BYTES)[..header::ID_BYTES]);
    header::write_header(&mut h, geo, created, hl, capacity, &id);
    file.write_all_at(&h, 0)
        .map_err(|e| StoreError::io(path, "write header", e))?;
    file.sync_all()
        .map_err(|e| StoreError::io(path, "fsync", e))?;
    sync_dir(path)
}

/// Record slots of a file for `geo` with `spare` more (bounded by the u32 slot numbers).
pub(super) fn capacity_for(geo: &Geometry, spare: u32) -> u32 {
    geo.total.saturating_add(spare).min(u32::MAX - 1)
}

/// What a failed [`preallocate`] reports as the operation.
pub(super) const PREALLOCATE_OP: &str =
    "allocate disk blocks for the whole file (fallocate): a store into the mapping that needs a \
     new block on a full disk kills the process with SIGBUS, so the file must have all its \
     blocks before it is mapped; the filesystem must support fallocate and have room";

/// Gives every byte of the first `len` bytes of `file` a disk block (a no-op for blocks it
/// has). Run at every open, not only at creation: a sparse copy or restore of the file, or a
/// filesystem that needs new blocks on write, would otherwise turn a full disk into SIGBUS.
pub(crate) fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), StoreError> {
    let len = libc::off_t::try_from(len).map_err(|_| {
        StoreError::format(path, format!("{len} bytes is too large to preallocate"))
    })?;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall on a valid descriptor; mode 0 never shrinks the file.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        return Err(StoreError::io(
            path,
            PREALLOCATE_OP,
            io::Error::last_os_error(),
        ));
    }
    write_holes(file, len).map_err(|e| StoreError::io(path, WRITE_HOLES_OP, e))?;
    warn_if_copy_on_write(file, path);
    Ok(())
}

/// What a failed [`write_holes`] reports as the operation.
const WRITE_HOLES_OP: &str = "write zeros into the file's unwritten blocks (so that a failed \
     write of a record can be repaired by writing it again)";

/// Writes zeros wherever the file has a hole or a preallocated-but-never-written extent
/// (both read as zeros, so the content does not change). On ext4 a failed first write into an
/// unwritten extent leaves the extent unwritten for good: rewriting the page later reaches the
/// disk but reads back as zeros after a restart (seen here with a loop device on a full
/// tmpfs). Written blocks have no such state, so a storage error can be repaired by writing
/// the records again (`flush`'s recovery). A file written once has no holes left and costs one
/// `lseek` per open.
fn write_holes(file: &File, len: libc::off_t) -> io::Result<()> {
    let fd = file.as_raw_fd();
    let zeros = vec![0u8; 1 << 20];
    let mut pos: libc::off_t = 0;
    let mut wrote = false;
    while pos < len {
        // SAFETY: plain syscall on a valid descriptor.
        let hole = unsafe { libc::lseek(fd, pos, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        if hole >= len {
            break;
        }
        // SAFETY: as above. ENXIO: no data after the hole, it runs to the end.
        let data = unsafe { libc::lseek(fd, hole, libc::SEEK_DATA) };
        let end = if data < 0 { len } else { data.min(len) };
        let mut off = hole;
        while off < end {
            let n = ((end - off) as usize).min(zeros.len());
            let w = file.write_at(&zeros[..n], off as u64)?;
            off += w as libc::off_t;
        }
        wrote = true;
        pos = end;
    }
    if wrote {
        file.sync_data()?;
    }
    Ok(())
}

/// Copy-on-write filesystems allocate a new block on every overwrite, so preallocation cannot
/// rule out SIGBUS on a full disk there. Warn once per open.
fn warn_if_copy_on_write(file: &File, path: &Path) {
    // Magic numbers from linux/magic.h.
    const BTRFS: i64 = 0x9123_683E;
    const ZFS: i64 = 0x2FC1_2FC1;
    const BCACHEFS: i64 = 0xCA45_1A4E;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: valid descriptor and a properly sized out-buffer.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return;
    }
    // SAFETY: fstatfs returned 0, so it filled the buffer.
    // f_type is i64 on x86_64 and narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    let kind = unsafe { st.assume_init() }.f_type as i64;
    if matches!(kind, BTRFS | ZFS | BCACHEFS) {
        tracing::warn!(
            path = %path.display(),
            "the lease file is on a copy-on-write filesystem: every write needs a new block, so a \
             full disk can still stop the daemon; keep the lease file on ext4 or XFS (or mark it \
             nocow: chattr +C on an empty file)"
        );
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

/// Bytes the paced write-back of a checkpoint starts and waits for at a time.
const WRITEBACK_STEP: u64 = 256 << 10;
/// Longest pause after one step of the paced write-back.
const WRITEBACK_MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Writes the dirty pages of `file` in `0..len` back in steps of [`WRITEBACK_STEP`], with no
/// cache flush, pausing after each step that did I/O for as long as it took (the device is at
/// most about half busy with it). The checkpoints run this before their `msync`, which then finds
/// little left to write: without it the msync submits the whole table's dirty pages at once, and
/// every log group commit queued behind that burst (on a VM's single block queue) holds its
/// replies for milliseconds (issue 18, the p99 tail). Clean ranges cost one syscall and no pause.
///
/// An error is a write-back failure of the table's pages: the caller must treat it as a failed
/// msync (the kernel may report it only once, so the msync after it could succeed).
pub(crate) fn writeback_paced(file: &File, len: u64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(WRITEBACK_STEP);
        let t0 = std::time::Instant::now();
        let (Ok(off), Ok(nb)) = (i64::try_from(at), i64::try_from(n)) else {
            return Err(io::Error::other("table larger than the file offsets allow"));
        };
        // SAFETY: a plain syscall on a file descriptor this table owns; no memory is passed.
        if unsafe { libc::sync_file_range(fd, off, nb, flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let took = t0.elapsed();
        if took >= std::time::Duration::from_micros(50) {
            std::thread::sleep(took.min(WRITEBACK_MAX_PAUSE));
        }
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of the `pages` pages from `ptr` the page cache holds dirty
    /// (`/proc/self/pagemap` and `/proc/kpageflags`, bit 4 KPF_DIRTY: needs root, as CI has).
    fn dirty_pages(ptr: *const u8, pages: usize) -> usize {
        let pm = File::open("/proc/self/pagemap").expect("open /proc/self/pagemap");
        let kf = File::open("/proc/kpageflags").expect("open /proc/kpageflags (root needed)");
        let mut n = 0;
        for i in 0..pages {
            let va = ptr as u64 + (i as u64) * 4096;
            let mut e = [0u8; 8];
            pm.read_exact_at(&mut e, va / 4096 * 8)
                .expect("read pagemap");
            let e = u64::from_le_bytes(e);
            assert_eq!(e >> 63, 1, "page {i} of the mapping is not present");
            let pfn = e & ((1 << 55) - 1);
            assert_ne!(pfn, 0, "pagemap hides page frames: the test needs root");
            let mut f = [0u8; 8];
            kf.read_exact_at(&mut f, pfn * 8).expect("read kpageflags");
            n += usize::from((u64::from_le_bytes(f) >> 4) & 1 == 1);
        }
        n
    }

    #[test]
    fn checkpoint_paced_writeback_cleans_every_dirty_page_of_the_mapping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("table");
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create");
        let len: u64 = 3 * WRITEBACK_STEP + 5 * 4096;
        f.set_len(len).expect("size");
        // SAFETY: a file of this test's own, not resized while mapped.
        let mut m = unsafe { memmap2::MmapMut::map_mut(&f) }.expect("mmap");
        let pages = len as usize / 4096;
        for p in 0..pages {
            m[p * 4096 + 7] = p as u8 | 1;
        }
        assert_eq!(
            dirty_pages(m.as_ptr(), pages),
            pages,
            "every written page is dirty"
        );
        writeback_paced(&f, len).expect("paced write-back");
        assert_eq!(dirty_pages(m.as_ptr(), pages), 0, "none left for the msync");
        // And the data is what the mapping holds.
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 4 * 4096 + 7).expect("read back");
        assert_eq!(b[0], 5);
    }
}
