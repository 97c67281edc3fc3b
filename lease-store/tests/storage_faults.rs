//! Storage that fails and lies: a lease file on ext4 on a loop device whose backing file sits on
//! a tmpfs. The lease file's blocks are punched out of the backing file and the tmpfs filled, so
//! writing them back fails (ENOSPC); Linux reports that once and marks the pages clean, so a
//! second `msync` with no new writes returns 0 although the data never reached the device. The
//! table must keep failing its flushes until it has rewritten and flushed everything, and the
//! "device" (the backing file, copied as a power cut would leave it) must then hold every record.
//!
//! Needs root (mount, losetup, mkfs.ext4).
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use lease_store::*;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tmpfs of `tmpfs_mb` holding a sparse `disk_mb` backing file, a loop device on it, ext4 on
/// that, mounted. Everything is undone on drop.
struct FlakyDisk {
    base: PathBuf,
    tmpfs: PathBuf,
    mnt: PathBuf,
    loopdev: String,
}

impl FlakyDisk {
    fn new(tmpfs_mb: u32, disk_mb: u32) -> Self {
        // One per test (they run in parallel in this binary).
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base =
            std::env::temp_dir().join(format!("xdhcpd-flaky-{}-{}-{n}", std::process::id(), NOW));
        let tmpfs = base.join("tmpfs");
        let mnt = base.join("mnt");
        std::fs::create_dir_all(&tmpfs).expect("mkdir");
        std::fs::create_dir_all(&mnt).expect("mkdir");
        let size = format!("size={tmpfs_mb}m");
        run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", s(&tmpfs)]);
        let backing = tmpfs.join("disk.img");
        let f = std::fs::File::create(&backing).expect("backing file");
        f.set_len(u64::from(disk_mb) << 20).expect("sparse size");
        drop(f);
        let loopdev = run("losetup", &["-f", "--show", s(&backing)]);
        let d = FlakyDisk {
            base,
            tmpfs,
            mnt,
            loopdev,
        };
        run("mkfs.ext4", &["-q", "-F", "-E", "nodiscard", &d.loopdev]);
        run("mount", &["-o", "nodiscard", &d.loopdev, s(&d.mnt)]);
        d
    }

    fn backing(&self) -> PathBuf {
        self.tmpfs.join("disk.img")
    }

    /// Takes `file`'s blocks out of the backing store and fills the tmpfs: the device can no
    /// longer store them (writes fail) until [`unfill`](Self::unfill).
    fn lose_blocks_of(&self, file: &Path) {
        let filler = |name: &str| {
            let _ = Command::new("dd")
                .args([
                    "if=/dev/zero",
                    &format!("of={}", s(&self.tmpfs.join(name))),
                    "bs=1M",
                ])
                .output();
        };
        filler("filler1");
        let map = run("filefrag", &["-v", "-b4096", s(file)]);
        let mut n = 0;
        for line in map.lines() {
            // " 0:        0..    2047:      8192..     10239:   2048: ..."
            let f: Vec<&str> = line.split(':').map(str::trim).collect();
            if f.len() < 4 || f[0].parse::<u32>().is_err() {
                continue;
            }
            let (Some((a, _)), Some((_, b))) = (f[2].split_once(".."), f[2].split_once(".."))
            else {
                continue;
            };
            let (a, b): (u64, u64) = (
                a.trim().parse().expect("block"),
                b.trim().parse().expect("block"),
            );
            let (off, len) = ((a * 4096).to_string(), ((b - a + 1) * 4096).to_string());
            run(
                "fallocate",
                &["-p", "-o", &off, "-l", &len, s(&self.backing())],
            );
            n += 1;
        }
        assert!(
            n > 0,
            "no extents in filefrag's map of {}: {map}",
            file.display()
        );
        // Punching freed memory: take it again.
        filler("filler2");
    }

    fn unfill(&self) {
        for f in ["filler1", "filler2"] {
            std::fs::remove_file(self.tmpfs.join(f)).expect("remove filler");
        }
    }

    /// What a power cut leaves: the device's bytes as the backing file holds them now.
    fn power_cut_image(&self, to: &Path) {
        run("blockdev", &["--flushbufs", &self.loopdev]);
        std::fs::copy(self.backing(), to).expect("copy the device image");
    }
}

impl Drop for FlakyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", s(&self.mnt)]).status();
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
        let _ = Command::new("umount").args(["-l", s(&self.tmpfs)]).status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn is_root() -> bool {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

/// Opens the lease file inside a copied device image (mounted read-only through its own loop
/// device) and returns what `check` says of the table.
fn with_image_table<R>(
    image: &Path,
    pools: &[PoolSpec],
    check: impl FnOnce(&LeaseTable) -> R,
) -> R {
    let mnt = image.with_extension("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    // ext4 replays its journal on mount, as after a real power cut.
    run("mount", &["-o", "loop", s(image), s(&mnt)]);
    let copy = image.with_extension("db");
    std::fs::copy(mnt.join("leases.db"), &copy).expect("copy the lease file out");
    let _ = Command::new("umount").arg(s(&mnt)).status();
    let (t, _) = LeaseTable::open(&copy, pools, &opts(1)).expect("open the image's lease file");
    check(&t)
}

#[test]
fn storage_failed_flush_stays_failed_until_everything_is_rewritten() {
    if !is_root() {
        assert!(
            std::env::var_os("XDHCPD_SKIP_NETNS").is_some() && std::env::var_os("CI").is_none(),
            "storage fault test needs root (mount, losetup); run as root or set \
             XDHCPD_SKIP_NETNS=1 to skip it explicitly"
        );
        eprintln!("SKIPPED storage fault test: not root (XDHCPD_SKIP_NETNS=1)");
        return;
    }
    let disk = FlakyDisk::new(48, 64);
    let path = disk.mnt.join("leases.db");
    let pools = vec![pool(1, [10, 1, 0, 0], [10, 1, 255, 255])];
    let (t, _) = LeaseTable::open(&path, &pools, &opts(1)).expect("open on the loop fs");
    let slots: Vec<Slot> = (0..65_536).step_by(32).filter_map(|i| t.slot(i)).collect();
    assert_eq!(slots.len(), 2048, "one record per 4 KiB page");
    let write_all = |gen: u32| {
        let mut d = DirtySet::new();
        for (n, &s) in slots.iter().enumerate() {
            t.update(s, |l| {
                offer(l, n as u32, NOW + gen);
                ack(l, NOW + gen, 3600);
            });
            d.note(s);
        }
        d
    };
    let mut d = DirtySet::new();
    t.update(slots[0], |l| offer(l, 0, NOW));
    d.note(slots[0]);
    t.flush_set(&mut d).expect("a healthy flush");
    t.flush().expect("and the whole file");

    disk.lose_blocks_of(&path);
    let mut d = write_all(1);
    let first = t.flush_set(&mut d);
    assert!(
        first.is_err(),
        "writeback on a full backing store must fail"
    );
    assert!(t.storage_failed());
    // The lie: no new writes, so a plain second msync would now return 0.
    let mut d2 = d;
    assert!(
        t.flush_set(&mut d2).is_err(),
        "a retried flush must not succeed over pages that never reached the disk"
    );
    assert!(t.flush().is_err(), "nor a whole-file flush");
    assert!(t.flush_failures() >= 2);

    disk.unfill();
    t.flush_set(&mut d2)
        .expect("with room again, the rewrite and flush succeed");
    assert!(!t.storage_failed(), "the sticky error is cleared");

    let image = disk.base.join("cut.img");
    disk.power_cut_image(&image);
    let lost = with_image_table(&image, &pools, |img| {
        slots
            .iter()
            .filter(|&&s| {
                let l = img.read(s);
                l.state != LeaseState::Active || l.cltt != NOW + 1
            })
            .count()
    });
    assert_eq!(
        lost, 0,
        "records written during the failure are on the device after the recovery flush"
    );
}

/// A sparse copy of a lease file on a filesystem without room for it: opening it must fail
/// with the reason instead of mapping a file whose first store into a hole raises SIGBUS.
#[test]
fn storage_sparse_lease_file_on_a_full_disk_is_refused_at_open() {
    if !is_root() {
        assert!(
            std::env::var_os("XDHCPD_SKIP_NETNS").is_some() && std::env::var_os("CI").is_none(),
            "storage fault test needs root (mount); run as root or set XDHCPD_SKIP_NETNS=1 to \
             skip it explicitly"
        );
        eprintln!("SKIPPED full-disk test: not root (XDHCPD_SKIP_NETNS=1)");
        return;
    }
    let pools = vec![pool(1, [10, 2, 0, 0], [10, 2, 255, 255])];
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("leases.db");
    {
        let (t, _) = LeaseTable::open(&src, &pools, &opts(1)).expect("create");
        let mut d = DirtySet::new();
        let s = t.slot(7).expect("slot");
        t.update(s, |l| offer(l, 7, NOW));
        d.note(s);
        t.flush_set(&mut d).expect("flush");
    }
    // A 4 MiB tmpfs; the 8 MiB file copied sparse takes a few pages of it.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).expect("mkdir");
    run(
        "mount",
        &["-t", "tmpfs", "-o", "size=4m", "tmpfs", s(&small)],
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").args(["-l", s(&self.0)]).status();
        }
    }
    let _u = Unmount(small.clone());
    let dst = small.join("leases.db");
    run("cp", &["--sparse=always", s(&src), s(&dst)]);
    let err = LeaseTable::open(&dst, &pools, &opts(1)).expect_err("no room for the file's blocks");
    let msg = err.to_string();
    assert!(
        msg.contains("fallocate") && msg.contains(s(&dst)),
        "the error names the file and the reason: {msg}"
    );
}

/// The write-ahead log on storage that fails and lies: log writes fail (ENOSPC at writeback),
/// a retried commit with nothing new must not succeed, and once there is room again the
/// recovery makes every record durable; the device image then holds them all (table + log).
#[test]
fn storage_wal_failed_log_write_stays_failed_until_a_later_write_covers_it() {
    if !is_root() {
        assert!(
            std::env::var_os("XDHCPD_SKIP_NETNS").is_some() && std::env::var_os("CI").is_none(),
            "storage fault test needs root (mount, losetup); run as root or set \
             XDHCPD_SKIP_NETNS=1 to skip it explicitly"
        );
        eprintln!("SKIPPED storage fault test: not root (XDHCPD_SKIP_NETNS=1)");
        return;
    }
    let disk = FlakyDisk::new(48, 64);
    let path = disk.mnt.join("leases.db");
    let log = wal_path(&path);
    let pools = vec![pool(1, [10, 1, 0, 0], [10, 1, 255, 255])];
    let o = OpenOptions {
        wal: Some(MIN_WAL_BYTES),
        ..opts(1)
    };
    let (t, _) = LeaseTable::open(&path, &pools, &o).expect("open on the loop fs");
    let slots: Vec<Slot> = (0..65_536).step_by(32).filter_map(|i| t.slot(i)).collect();
    t.update(slots[0], |l| offer(l, 0, NOW));
    t.commit().expect("a healthy commit");
    t.checkpoint().expect("and a checkpoint");

    // The log's blocks can no longer be stored.
    disk.lose_blocks_of(&log);
    for (n, &s) in slots.iter().enumerate() {
        t.update(s, |l| {
            offer(l, n as u32, NOW + 1);
            ack(l, NOW + 1, 3600);
        });
    }
    assert!(
        t.commit().is_err(),
        "a log write on a full device must fail"
    );
    assert!(t.storage_failed());
    // The lie: nothing new written, a plain second fdatasync would return 0.
    assert!(
        t.commit().is_err(),
        "a retried commit must not succeed over log pages that never reached the disk"
    );
    assert!(t.checkpoint().is_err(), "nor a checkpoint");

    disk.unfill();
    t.commit()
        .expect("with room again, the rewrite, flush and log restart succeed");
    assert!(!t.storage_failed(), "the sticky error is cleared");

    let image = disk.base.join("cut.img");
    disk.power_cut_image(&image);
    let mnt = image.with_extension("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    run("mount", &["-o", "loop", s(&image), s(&mnt)]);
    let copy = image.with_extension("db");
    std::fs::copy(mnt.join("leases.db"), &copy).expect("copy the lease file out");
    std::fs::copy(mnt.join("leases.db.wal"), wal_path(&copy)).expect("copy the log out");
    let _ = Command::new("umount").arg(s(&mnt)).status();
    let (img, rep) = LeaseTable::open(&copy, &pools, &opts(1)).expect("open the image's table");
    assert!(rep.wal_discarded.is_none(), "{:?}", rep.wal_discarded);
    let lost = slots
        .iter()
        .filter(|&&s| {
            let l = img.read(s);
            l.state != LeaseState::Active || l.cltt != NOW + 1
        })
        .count();
    assert_eq!(
        lost, 0,
        "records written during the failure are on the device after the recovery"
    );
}
