//! Write-ahead log behaviour: replay, torn tails, checksum mismatches, sticky errors,
//! checkpoint and truncation, a page torn during a checkpoint.
//!
//! A power cut is modelled at file level: the table file's bytes are put back to what an
//! earlier checkpoint left on disk (the page writes after it never happened) or to a mix of
//! old and new bytes inside a page (a write torn by the cut); the log file keeps what its
//! commits made durable.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::wal::{wal_path, MIN_WAL_BYTES, WAL_HDR};
use super::{LeaseTable, OpenOptions, OpenReport, Slot};
use crate::header::PoolSpec;
use crate::lease::{ClientKey, Lease, LeaseState};

const NOW: u32 = 1_800_000_000;

fn pools() -> Vec<PoolSpec> {
    vec![PoolSpec {
        id: 0,
        first: Ipv4Addr::new(10, 1, 0, 0),
        last: Ipv4Addr::new(10, 1, 3, 255),
    }]
}

fn opts(wal: Option<u64>) -> OpenOptions {
    OpenOptions {
        shards: 2,
        now: NOW,
        wal,
        ..OpenOptions::default()
    }
}

fn open(path: &Path, wal: Option<u64>) -> (LeaseTable, OpenReport) {
    LeaseTable::open(path, &pools(), &opts(wal)).unwrap()
}

fn bind(t: &LeaseTable, i: u32, round: u32) {
    t.update(Slot(i), |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_client_id(&[1, 2, (i >> 8) as u8, i as u8]);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..4].copy_from_slice(&i.to_be_bytes());
        l.start = NOW;
        l.cltt = NOW;
        l.expiry = NOW + 3600 + round;
        l.lease_time = 3600 + round;
    });
}

fn expiry_of(t: &LeaseTable, i: u32) -> u32 {
    t.read(Slot(i)).expiry
}

struct Bed {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Bed {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        Bed { _dir: dir, path }
    }
    fn log(&self) -> PathBuf {
        wal_path(&self.path)
    }
    /// Byte range of record `i` in the table file.
    fn rec_off(&self, t: &LeaseTable, i: u32) -> u64 {
        t.record_offset(Slot(i))
    }
}

/// Durable log end and head (stream positions).
fn log_pos(t: &LeaseTable) -> (u64, u64) {
    let w = t.wal.as_ref().unwrap();
    (
        w.durable.load(Ordering::Acquire),
        w.head.load(Ordering::Acquire),
    )
}

#[test]
fn wal_replay_restores_committed_changes_the_table_never_got() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    // What the disk holds after the checkpoint.
    let disk = fs::read(&bed.path).unwrap();
    for i in 0..300 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    let (end, head) = log_pos(&t);
    assert!(end > head, "the commit appended nothing");
    let per_entry = (end - head) / 300;
    assert!(
        per_entry < 128,
        "a bound lease costs {per_entry} log bytes: more than the record itself"
    );
    drop(t);
    // Power cut: none of the table's page writes after the checkpoint reached the disk.
    fs::write(&bed.path, &disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 300);
    assert_eq!(rep.wal_applied, 300);
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    for i in 0..300 {
        let l = t.read(Slot(i));
        assert_eq!(l.state, LeaseState::Active, "slot {i}");
        assert_eq!(l.expiry, NOW + 3601, "slot {i}");
    }
    // Indexes were built from the replayed records.
    let k = ClientKey::from_client_id(&[1, 2, 0, 7]);
    assert_eq!(t.find_client(&k).map(|(s, _)| s), Some(Slot(7)));
    // The open flushed nothing: the log goes on and still holds the replayed records, so a
    // power cut right after the open (the table's pages never written) loses none of them.
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!((rep.wal_entries, rep.wal_applied), (300, 300), "{rep:?}");
    assert_eq!(expiry_of(&t, 299), NOW + 3601);
    // After a checkpoint the log is empty.
    t.checkpoint().unwrap();
    drop(t);
    let (_t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 0);
}

#[test]
fn wal_resume_open_writes_no_table_page_and_later_commits_follow_the_replayed_entries() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    for i in 0..100 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    drop(t);
    // Three crashes in a row, each run committing more before it: the log keeps every run's
    // entries (each run checksums its own with its epoch) and the table file is never written.
    for run in 2..5u32 {
        fs::write(&bed.path, &disk).unwrap();
        let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
        assert!(
            rep.wal_discarded.is_none(),
            "run {run}: {:?}",
            rep.wal_discarded
        );
        assert_eq!(rep.wal_entries, 100 * u64::from(run - 1), "run {run}");
        for i in 0..100 * (run - 1) {
            assert_eq!(
                t.read(Slot(i)).state,
                LeaseState::Active,
                "run {run} slot {i}"
            );
        }
        for i in 100 * (run - 1)..100 * run {
            bind(&t, i, 1);
        }
        t.commit().unwrap();
        drop(t);
    }
    fs::write(&bed.path, &disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!((rep.wal_entries, rep.wal_applied), (400, 400), "{rep:?}");
    assert_eq!(t.read(Slot(399)).state, LeaseState::Active);
}

#[test]
fn wal_resume_stale_entries_past_the_replay_end_are_never_applied() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    // Slots 0x101.. bind to entries of one length (no zero byte in the words that vary).
    let slot = |k: u32| 0x101 + k;
    bind(&t, slot(0), 1);
    t.commit().unwrap();
    let (a, _) = log_pos(&t);
    for k in 1..8 {
        bind(&t, slot(k), 1);
        t.commit().unwrap();
    }
    let (b, _) = log_pos(&t);
    let per = (b - a) / 7;
    assert_eq!(
        b - a,
        7 * per,
        "entries of unequal length: the test proves nothing"
    );
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    // The crash tore the group of slot(1): its entry is damaged, the six after it are intact
    // (written, never synced: never acknowledged).
    damage_log(&bed, MIN_WAL_BYTES, a + 30, a + 31, true);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 1);
    assert!(rep.wal_discarded.is_some());
    assert_eq!(t.read(Slot(slot(1))).state, LeaseState::Free);
    // The new run appends right where the replay ended: one entry of the same length, so the
    // next position is exactly where the stale entry of slot(2) starts, with its position as
    // its LSN. Only its checksum (the old run's epoch) keeps it out of the replay.
    bind(&t, slot(100), 1);
    t.commit().unwrap();
    let (c, _) = log_pos(&t);
    assert_eq!(c, a + per, "the new run did not go on at the replay's end");
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.wal_discarded.is_none(), "{:?}", rep.wal_discarded);
    assert_eq!(rep.wal_entries, 2, "{rep:?}");
    assert_eq!(t.read(Slot(slot(0))).state, LeaseState::Active);
    assert_eq!(t.read(Slot(slot(100))).state, LeaseState::Active);
    for k in 1..8 {
        assert_eq!(
            t.read(Slot(slot(k))).state,
            LeaseState::Free,
            "stale slot({k}) applied"
        );
    }
}

#[test]
fn wal_resume_run_list_full_falls_back_to_a_flush_and_a_fresh_lap() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    drop(t);
    // Each open with something committed before the crash adds a run (MAX_RUNS at most).
    let mut flushed = false;
    for run in 0..(super::wal::MAX_RUNS as u32 + 2) {
        let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
        assert!(rep.wal_discarded.is_none(), "{:?}", rep.wal_discarded);
        // Every run's entry stays in the log until the list is full; then the open flushes
        // the table and starts a fresh lap: the next open finds only the last run's entry.
        if rep.wal_entries < u64::from(run) {
            assert_eq!(rep.wal_entries, 1, "run {run}");
            assert_eq!(run, super::wal::MAX_RUNS as u32 + 1, "fell back too early");
            flushed = true;
        }
        for i in 0..run {
            assert_eq!(
                t.read(Slot(i)).state,
                LeaseState::Active,
                "run {run} slot {i}"
            );
        }
        bind(&t, run, 1);
        t.commit().unwrap();
        drop(t);
    }
    assert!(flushed, "the run list never filled up");
}

#[test]
fn wal_uncommitted_changes_are_not_in_the_log_and_replay_keeps_newer_table_records() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    bind(&t, 1, 1);
    t.commit().unwrap();
    bind(&t, 1, 2); // staged, never committed
    t.checkpoint().unwrap(); // the table page has round 2 (newer than the log's round 1)
    drop(t);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    // The log entry of round 1 is older than the table's record: not applied.
    assert_eq!(rep.wal_applied, 0);
    assert_eq!(expiry_of(&t, 1), NOW + 3602);
}

/// Zeroes or flips bytes of the log file at stream positions `lo..hi` (within one lap).
fn damage_log(bed: &Bed, cap: u64, lo: u64, hi: u64, flip: bool) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(bed.log())
        .unwrap();
    let mut b = vec![0u8; (hi - lo) as usize];
    f.read_at(&mut b, WAL_HDR + lo % cap).unwrap();
    for x in &mut b {
        *x = if flip { *x ^ 0x5a } else { 0 };
    }
    f.write_all_at(&b, WAL_HDR + lo % cap).unwrap();
}

#[test]
fn wal_torn_tail_is_discarded_whole_and_earlier_groups_are_replayed() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    for i in 0..50 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    let (mid, _) = log_pos(&t);
    for i in 50..60 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    let (end, _) = log_pos(&t);
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    // The second group's write was cut: its last 40 bytes never reached the disk.
    damage_log(&bed, MIN_WAL_BYTES, end - 40, end, false);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    for i in 0..50 {
        assert_eq!(t.read(Slot(i)).state, LeaseState::Active, "slot {i}");
    }
    // The torn entry (the last one, slot 59) is not applied, not even in part: the record
    // is the whole old (free) version, not quarantined.
    let l = t.read(Slot(59));
    assert_eq!(l.state, LeaseState::Free);
    assert!(l.client.is_none());
    assert!(rep.quarantined.is_empty());
    assert!(rep.wal_discarded.is_some(), "torn entry not reported");
    assert!(
        rep.wal_entries >= 50 && rep.wal_entries < 60,
        "{}",
        rep.wal_entries
    );
    assert!(mid < end - 40);
}

#[test]
fn wal_checksum_mismatch_stops_the_replay_there() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    let (start, _) = log_pos(&t);
    for i in 0..20 {
        bind(&t, i, 1);
        t.commit().unwrap();
    }
    let (end, _) = log_pos(&t);
    let per = (end - start) / 20;
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    // One byte inside the 10th entry's record words (past its 20-byte header).
    let at = start + 9 * per + 30;
    damage_log(&bed, MIN_WAL_BYTES, at, at + 1, true);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 9);
    let why = rep.wal_discarded.expect("mismatch not reported");
    assert!(why.contains("checksum mismatch"), "{why}");
    for i in 0..9 {
        assert_eq!(t.read(Slot(i)).state, LeaseState::Active, "slot {i}");
    }
    for i in 9..20 {
        assert_eq!(t.read(Slot(i)).state, LeaseState::Free, "slot {i}");
    }
}

#[test]
fn wal_sticky_error_on_a_failed_log_write_until_a_later_write_covers_it() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    bind(&t, 1, 1);
    t.commit().unwrap();
    t.wal_fail_writes(true);
    bind(&t, 2, 1);
    assert!(
        t.commit().is_err(),
        "the failed write was reported as durable"
    );
    assert!(t.storage_failed());
    // While the storage keeps failing, nothing commits (the recovery fails too).
    bind(&t, 3, 1);
    assert!(t.commit().is_err());
    assert!(t
        .flush_set(&mut {
            let mut d = super::DirtySet::new();
            d.note(Slot(3));
            d
        })
        .is_err());
    assert!(t.checkpoint().is_err());
    assert!(t.storage_failed());
    // The storage is back: the next commit rewrites the table, restarts the log past the
    // failed region, and only then succeeds.
    t.wal_fail_writes(false);
    let (_, head_before) = log_pos(&t);
    t.commit().unwrap();
    assert!(!t.storage_failed());
    let (end, head) = log_pos(&t);
    assert!(
        head > head_before && head == end,
        "log not restarted: head {head} end {end}"
    );
    bind(&t, 4, 1);
    t.commit().unwrap();
    assert!(t.flush_failures() >= 3);
    drop(t);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.wal_discarded.is_none(), "{:?}", rep.wal_discarded);
    for i in 1..=4 {
        assert_eq!(t.read(Slot(i)).state, LeaseState::Active, "slot {i}");
    }
}

#[test]
fn wal_checkpoint_then_truncate_and_the_ring_is_reused() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    for i in 0..100 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    assert!(t.wal_used() > 0);
    t.checkpoint().unwrap();
    assert_eq!(t.wal_used(), 0, "checkpoint did not drop the log");
    let st = t.wal_stats().unwrap();
    assert_eq!(st.checkpoints, 1);
    assert!(st.commits >= 1 && st.entries >= 100);
    // More than three laps of the 1 MiB ring, with no explicit checkpoint: the committer's
    // inline checkpoints keep room.
    for round in 0..60u32 {
        for i in 0..1024 {
            bind(&t, i, 10 + round);
        }
        t.commit().unwrap();
    }
    let st = t.wal_stats().unwrap();
    assert!(st.bytes > 3 * MIN_WAL_BYTES, "{} bytes", st.bytes);
    assert!(st.checkpoints >= 3, "{st:?}");
    assert!(st.used <= MIN_WAL_BYTES);
    drop(t);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.wal_discarded.is_none(), "{:?}", rep.wal_discarded);
    for i in 0..1024 {
        assert_eq!(expiry_of(&t, i), NOW + 3600 + 69, "slot {i}");
    }
    drop(t);
    // Opening without the log replays it (nothing left to apply here) and removes it.
    let (_t, _) = open(&bed.path, None);
    assert!(!bed.log().exists());
}

#[test]
fn wal_crash_during_checkpoint_torn_page_is_rebuilt_from_the_log() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    // Slots 0..32 share one 4 KiB page.
    for i in 0..32 {
        bind(&t, i, 1);
    }
    t.checkpoint().unwrap();
    let old = fs::read(&bed.path).unwrap();
    for i in 0..32 {
        bind(&t, i, 2);
    }
    t.commit().unwrap();
    // The checkpoint's msync starts writing the page... and the power goes: the page is
    // torn 64 bytes into record 16 (first half new, rest old).
    let page = bed.rec_off(&t, 0);
    let cut = bed.rec_off(&t, 16) + 64;
    drop(t);
    let mut torn = fs::read(&bed.path).unwrap();
    torn[cut as usize..(page + 4096) as usize]
        .copy_from_slice(&old[cut as usize..(page + 4096) as usize]);
    fs::write(&bed.path, &torn).unwrap();
    // Without the log this page is lost: record 16 is damaged (the test can fail).
    let copy = bed.path.with_file_name("copy.db");
    fs::write(&copy, &torn).unwrap();
    let (_c, rep) = LeaseTable::open(&copy, &pools(), &opts(None)).unwrap();
    assert!(
        !rep.quarantined.is_empty(),
        "the torn record was not damaged: the test proves nothing"
    );
    // With the log: every record of the page is the committed (round 2) version.
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    for i in 0..32 {
        assert_eq!(expiry_of(&t, i), NOW + 3602, "slot {i}");
    }
    assert!(rep.wal_applied >= 16);
}

#[test]
fn wal_entries_of_one_slot_replay_in_order() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    for round in 1..=5 {
        bind(&t, 3, round);
        t.commit().unwrap();
    }
    t.update(Slot(3), |l| *l = Lease::free(l.addr));
    bind(&t, 3, 9);
    t.commit().unwrap();
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 7);
    assert_eq!(expiry_of(&t, 3), NOW + 3609);
}

#[test]
fn wal_replay_comes_before_a_pool_change_rebuild() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    for i in 0..40 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    // Restart with a grown configuration (a second pool): the file is rebuilt, and the
    // committed leases only in the log must survive it.
    let mut grown = pools();
    grown.push(PoolSpec {
        id: 1,
        first: Ipv4Addr::new(10, 2, 0, 0),
        last: Ipv4Addr::new(10, 2, 0, 255),
    });
    let (t, rep) = LeaseTable::open(&bed.path, &grown, &opts(Some(MIN_WAL_BYTES))).unwrap();
    assert!(rep.rebuilt.is_some());
    assert_eq!(rep.wal_applied, 40);
    for i in 0..40 {
        let s = t
            .slot_of(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i))
            .unwrap();
        assert_eq!(t.read(s).state, LeaseState::Active, "slot {i}");
    }
}

#[test]
fn wal_garbage_in_the_ring_is_never_applied() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    bind(&t, 5, 1);
    t.commit().unwrap();
    let (end, head) = log_pos(&t);
    drop(t);
    // Hostile bytes after the valid entries, and a second file that is all garbage but for
    // its header: nothing from them is applied, nothing panics.
    let f = fs::OpenOptions::new().write(true).open(bed.log()).unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let junk: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    f.write_all_at(&junk, WAL_HDR + end % MIN_WAL_BYTES)
        .unwrap();
    drop(f);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 1, "head {head} end {end}");
    assert_eq!(t.read(Slot(5)).state, LeaseState::Active);
    assert!(rep.quarantined.is_empty());
    drop(t);
    let f = fs::OpenOptions::new().write(true).open(bed.log()).unwrap();
    f.write_all_at(&junk, WAL_HDR).unwrap();
    drop(f);
    let (_t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 0);
    assert!(rep.quarantined.is_empty());
}

/// Removes the identity from the table file at `path` (as a file of an older version has
/// it) and rewrites its log's headers as version 1 (no identity).
fn make_old_version(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let hdr = crate::header::parse_header(&bytes, bytes.len() as u64, path).unwrap();
    crate::header::set_id(
        &mut bytes,
        hdr.geo.extents.len(),
        &[0; crate::header::ID_BYTES],
    );
    fs::write(path, &bytes).unwrap();
    super::wal::downgrade_header(crate::lease::RECORD_SIZE, &wal_path(path));
}

fn file_id(path: &Path) -> [u8; crate::header::ID_BYTES] {
    let bytes = fs::read(path).unwrap();
    crate::header::parse_header(&bytes, bytes.len() as u64, path)
        .unwrap()
        .id
}

#[test]
fn wal_identity_log_of_a_deleted_table_is_never_replayed_into_the_new_file() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    for i in 0..40 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    drop(t);
    // The operator deletes the lease file and leaves its log.
    fs::remove_file(&bed.path).unwrap();
    let Err(err) = LeaseTable::open(&bed.path, &pools(), &opts(Some(MIN_WAL_BYTES))) else {
        panic!("a log of the deleted file must not be replayed into the new one");
    };
    let msg = err.to_string();
    assert!(
        matches!(err, crate::StoreError::ForeignLog { entries: 40, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&bed.path.display().to_string())
            && msg.contains(&bed.log().display().to_string())
            && msg.contains("move the log away"),
        "the error names both files and what to do: {msg}"
    );
    // Refused again (also without a log configured) until the log is moved away: the
    // new file's records are untouched.
    assert!(LeaseTable::open(&bed.path, &pools(), &opts(None)).is_err());
    let mut stale = bed.log().into_os_string();
    stale.push(".stale");
    fs::rename(bed.log(), &stale).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!((rep.wal_entries, rep.kept), (0, 0), "{rep:?}");
    for i in 0..40 {
        assert_eq!(t.read(Slot(i)).state, LeaseState::Free, "slot {i}");
    }
}

#[test]
fn wal_identity_log_of_another_table_file_is_refused_and_its_own_still_replays() {
    let a = Bed::new();
    let b = Bed::new();
    let (ta, _) = open(&a.path, Some(MIN_WAL_BYTES));
    let (tb, _) = open(&b.path, Some(MIN_WAL_BYTES));
    assert_ne!(
        file_id(&a.path),
        file_id(&b.path),
        "each file its own identity"
    );
    for i in 0..10 {
        bind(&ta, i, 1);
        bind(&tb, i + 100, 1);
    }
    ta.commit().unwrap();
    tb.commit().unwrap();
    drop(ta);
    drop(tb);
    let b_log = fs::read(b.log()).unwrap();
    fs::copy(a.log(), b.log()).unwrap();
    let Err(err) = LeaseTable::open(&b.path, &pools(), &opts(Some(MIN_WAL_BYTES))) else {
        panic!("A's log next to B");
    };
    assert!(matches!(err, crate::StoreError::ForeignLog { .. }), "{err}");
    // B's own log back: replayed as always.
    fs::write(b.log(), b_log).unwrap();
    let (tb, rep) = open(&b.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_entries, 10);
    assert_eq!(tb.read(Slot(100)).state, LeaseState::Active);
}

#[test]
fn wal_identity_old_files_without_one_still_replay_and_get_one() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    for i in 0..30 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    drop(t);
    // A power cut, then both files as an older version wrote them.
    fs::write(&bed.path, &disk).unwrap();
    make_old_version(&bed.path);
    assert_eq!(file_id(&bed.path), [0; crate::header::ID_BYTES]);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!((rep.wal_entries, rep.wal_applied), (30, 30), "{rep:?}");
    assert_eq!(t.read(Slot(29)).state, LeaseState::Active);
    drop(t);
    // The file got an identity, its log carries it: the next changes replay as usual.
    let id = file_id(&bed.path);
    assert_ne!(id, [0; crate::header::ID_BYTES]);
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(file_id(&bed.path), id, "the identity is kept");
    t.checkpoint().unwrap();
    let disk = fs::read(&bed.path).unwrap();
    bind(&t, 31, 1);
    t.commit().unwrap();
    drop(t);
    fs::write(&bed.path, &disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.wal_applied, 1);
    assert_eq!(t.read(Slot(31)).state, LeaseState::Active);
}

#[test]
fn wal_identity_empty_log_of_another_table_is_restarted_and_a_rebuild_keeps_the_identity() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    bind(&t, 1, 1);
    t.checkpoint().unwrap(); // everything in the table: nothing left to replay
    drop(t);
    fs::remove_file(&bed.path).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert_eq!(rep.kept, 0);
    let id = file_id(&bed.path);
    bind(&t, 2, 1);
    t.commit().unwrap();
    drop(t);
    // A pool change rewrites the file: same identity, its log still replays after it.
    let mut grown = pools();
    grown.push(PoolSpec {
        id: 1,
        first: Ipv4Addr::new(10, 2, 0, 0),
        last: Ipv4Addr::new(10, 2, 0, 255),
    });
    let (t, rep) = LeaseTable::open(&bed.path, &grown, &opts(Some(MIN_WAL_BYTES))).unwrap();
    assert!(rep.rebuilt.is_some());
    assert_eq!(file_id(&bed.path), id);
    assert_eq!(t.read(Slot(2)).state, LeaseState::Active);
}

/// Records of `N` bytes with words of every kind (zero, non-zero, a zero word beside a
/// non-zero one in the same 8 bytes, all zero, all non-zero), from a fixed pseudo-random walk.
fn varied_records<const N: usize>() -> Vec<[u8; N]> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = vec![[0u8; N], [0xa5u8; N]];
    for density in [1u64, 4, 16, 64, 128, 250] {
        for _ in 0..40 {
            let mut r = [0u8; N];
            for w in r.chunks_exact_mut(4) {
                if next() % 256 < density {
                    // Sometimes one byte only (a word that is non-zero in one byte).
                    let v = next();
                    if v & 1 == 0 {
                        w[(v >> 1) as usize % 4] = (v >> 8) as u8 | 1;
                    } else {
                        w.copy_from_slice(&(v >> 16).to_le_bytes()[..4]);
                    }
                }
            }
            out.push(r);
        }
    }
    out
}

/// The log's entry encoder (8 bytes at a time) writes exactly the bytes of the word-by-word
/// encoder it replaced, for the lease table's 128-byte and the DHCPv6 table's 512-byte
/// records, appended after other entries; and what it writes replays (the v6 table's replay
/// reads it: `v6::tests`).
#[test]
fn wal_entry_encoder_chunked_writes_the_word_by_word_bytes() {
    fn check<const N: usize>() {
        let (mut fast, mut slow) = (vec![7u8; 3], vec![7u8; 3]);
        for (i, r) in varied_records::<N>().iter().enumerate() {
            let lsn = 4096 * i as u64 + 17;
            let epoch = (i as u32).wrapping_mul(2_654_435_761);
            let a = super::wal::encode_entry(&mut fast, lsn, i as u32, r, epoch);
            let b = super::wal::encode_entry_by_words(&mut slow, lsn, i as u32, r, epoch);
            assert_eq!(a, b, "record {i} of {N} bytes: entry length");
            assert_eq!(fast, slow, "record {i} of {N} bytes: entry bytes");
        }
    }
    check::<128>();
    check::<512>();
}
