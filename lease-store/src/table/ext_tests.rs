//! The side area of variable-length lease data (`ext.rs`): crash replay through the log, torn
//! extents, reuse after release and expiry, every slot at the per-lease bound, files of older
//! builds, a rebuild moving records (and one cut between its renames), growth, the read-only
//! view, a sparse file, a renewal with the same data writing no side chunk, hooks that read
//! the data.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ext::{ext_path, EXTENT, EXT_HDR};
use super::wal::MIN_WAL_BYTES;
use super::{LeaseTable, OpenOptions, OpenReport, Slot};
use crate::header::PoolSpec;
use crate::lease::{ClientKey, LeaseState, VAR_DATA_MAX};
use crate::ReadOnlyTable;

const NOW: u32 = 1_800_000_000;

fn pool(id: u32, a: [u8; 4], b: [u8; 4]) -> PoolSpec {
    PoolSpec {
        id,
        first: Ipv4Addr::from(a),
        last: Ipv4Addr::from(b),
    }
}

fn pools() -> Vec<PoolSpec> {
    vec![pool(0, [10, 1, 0, 0], [10, 1, 3, 255])]
}

fn opts(wal: Option<u64>) -> OpenOptions {
    OpenOptions {
        shards: 2,
        now: NOW,
        wal,
        ..OpenOptions::default()
    }
}

fn open_with(path: &Path, pools: &[PoolSpec], wal: Option<u64>) -> (LeaseTable, OpenReport) {
    LeaseTable::open(path, pools, &opts(wal)).unwrap()
}

fn open(path: &Path, wal: Option<u64>) -> (LeaseTable, OpenReport) {
    open_with(path, &pools(), wal)
}

/// A 120-byte option 82 for lease `i` (circuit-id, remote-id, a vendor sub-option), as a
/// CMTS or OLT inserts it.
fn opt82(i: u32, round: u8) -> Vec<u8> {
    let mut v = Vec::new();
    let circuit = format!("olt-7/slot-3/pon-12/onu-{i:05}/gem-{round:03}/vlan-1001/x");
    v.push(1);
    v.push(circuit.len() as u8);
    v.extend_from_slice(circuit.as_bytes());
    let remote = format!("subscriber-{i:08}-{round:03}-abcdefghijkl");
    v.push(2);
    v.push(remote.len() as u8);
    v.extend_from_slice(remote.as_bytes());
    v.push(9);
    let rest = 120 - v.len() - 1;
    v.push(rest as u8);
    v.extend((0..rest).map(|k| (k as u8) ^ round));
    assert_eq!(v.len(), 120);
    v
}

fn bind(t: &LeaseTable, i: u32, round: u8) {
    t.update_full(Slot(i), |l, v| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_client_id(&[1, 2, (i >> 8) as u8, i as u8]);
        l.htype = 1;
        l.hlen = 6;
        l.chaddr[..4].copy_from_slice(&i.to_be_bytes());
        l.start = NOW;
        l.cltt = NOW;
        l.expiry = NOW + 3600;
        l.lease_time = 3600;
        assert!(v.set_relay_agent_info(&opt82(i, round)));
        assert!(v.set_host_name(format!("cpe-{i}").as_bytes()));
        assert!(v.set_vendor_class(b"docsis3.1"));
    });
}

fn assert_whole(t: &LeaseTable, i: u32, round: u8) {
    let (l, v) = t.read_with_var(Slot(i));
    assert_eq!(l.state, LeaseState::Active, "slot {i}");
    assert_eq!(v.relay_agent_info(), &opt82(i, round)[..], "slot {i}");
    assert_eq!(v.host_name(), format!("cpe-{i}").as_bytes(), "slot {i}");
    assert_eq!(v.vendor_class(), b"docsis3.1", "slot {i}");
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
    fn side(&self) -> PathBuf {
        ext_path(&self.path)
    }
    fn dir_path(&self) -> &Path {
        self._dir.path()
    }
    /// Offset of chunk `c` of slot `i` in the side file.
    fn chunk_off(&self, i: u32, c: usize) -> u64 {
        (EXT_HDR + i as usize * EXTENT + c * 128) as u64
    }
    fn poke(&self, file: &Path, off: u64, bytes: &[u8]) {
        let f = fs::OpenOptions::new().write(true).open(file).unwrap();
        f.write_all_at(bytes, off).unwrap();
        f.sync_all().unwrap();
    }
}

#[test]
fn varlen_side_area_ack_mode_replay_restores_data_neither_file_got() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    // What both files hold on disk after the checkpoint.
    let table_disk = fs::read(&bed.path).unwrap();
    let side_disk = fs::read(bed.side()).unwrap();
    for i in 0..200 {
        bind(&t, i, 1);
    }
    // The commit that an ACK waits for: records and side chunks in one fdatasync.
    t.commit().unwrap();
    drop(t);
    // Power cut: no page of either mapped file written after the checkpoint reached the disk.
    fs::write(&bed.path, &table_disk).unwrap();
    fs::write(bed.side(), &side_disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    // 200 records + 400 side chunks (152 bytes of data: two chunks each).
    assert_eq!(rep.wal_applied, 600);
    for i in 0..200 {
        assert_whole(&t, i, 1);
    }
    // A change twice over, both committed: the newer replays over the older (sequence
    // order), onto what the replay above made durable.
    t.checkpoint().unwrap();
    let table_disk = fs::read(&bed.path).unwrap();
    let side_disk = fs::read(bed.side()).unwrap();
    for round in [3, 2] {
        for i in 0..10 {
            bind(&t, i, round);
        }
        t.commit().unwrap();
    }
    drop(t);
    fs::write(&bed.path, &table_disk).unwrap();
    fs::write(bed.side(), &side_disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    for i in 0..10 {
        assert_whole(&t, i, 2);
    }
    for i in 10..200 {
        assert_whole(&t, i, 1);
    }
}

#[test]
fn varlen_side_area_uncommitted_changes_are_not_replayed() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    bind(&t, 5, 1);
    t.commit().unwrap();
    t.checkpoint().unwrap();
    let table_disk = fs::read(&bed.path).unwrap();
    let side_disk = fs::read(bed.side()).unwrap();
    // Changed in memory, never committed (no ACK left): gone after the cut, the old whole.
    bind(&t, 5, 2);
    drop(t);
    fs::write(&bed.path, &table_disk).unwrap();
    fs::write(bed.side(), &side_disk).unwrap();
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    assert_whole(&t, 5, 1);
}

#[test]
fn varlen_side_area_torn_chunk_is_repaired_from_the_log_in_ack_mode() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    t.checkpoint().unwrap();
    for i in 0..4 {
        bind(&t, i, 1);
    }
    t.commit().unwrap();
    t.checkpoint().unwrap();
    // A later committed change whose side page is torn by the cut: half a chunk new, half old.
    bind(&t, 2, 3);
    t.commit().unwrap();
    drop(t);
    bed.poke(&bed.side(), bed.chunk_off(2, 0) + 64, &[0xee; 64]);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    assert_whole(&t, 2, 3);
    for i in [0, 1, 3] {
        assert_whole(&t, i, 1);
    }
}

#[test]
fn varlen_side_area_torn_extent_without_log_is_detected_and_the_lease_kept() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    for i in 0..8 {
        bind(&t, i, 1);
    }
    t.flush().unwrap();
    drop(t);
    // Interval mode, power cut mid-writeback: slot 3's extent holds bytes of no version.
    bed.poke(&bed.side(), bed.chunk_off(3, 1) + 20, &[0x55; 8]);
    // Slot 6's extent is an older, complete version (its own CRCs fine): the record's
    // payload checksum tells them apart.
    let mut older = fs::read(bed.side()).unwrap();
    let o = bed.chunk_off(6, 0) as usize;
    older[o + 30] ^= 1;
    let fixed = crate::crc32c::hash(&older[o + 8..o + 128]);
    older[o + 4..o + 8].copy_from_slice(&fixed.to_le_bytes());
    fs::write(bed.side(), &older).unwrap();
    let (t, rep) = open(&bed.path, None);
    let dropped: Vec<Ipv4Addr> = rep.side_dropped.iter().map(|d| d.0).collect();
    assert_eq!(
        dropped,
        vec![Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 1, 0, 6)],
        "{:?}",
        rep.side_dropped
    );
    assert!(rep.quarantined.is_empty(), "{:?}", rep.quarantined);
    for i in [3, 6] {
        let l = t.read(Slot(i));
        // The lease stays (its client keeps its address); only the variable data is gone.
        assert_eq!(l.state, LeaseState::Active);
        assert_eq!(l.client, ClientKey::from_client_id(&[1, 2, 0, i as u8]));
        assert!(l.var.is_empty(), "{:?}", l.var);
    }
    for i in [0, 1, 2, 4, 5, 7] {
        assert_whole(&t, i, 1);
    }
    // Written again, it holds data again; and the repair itself is durable.
    bind(&t, 3, 4);
    t.flush().unwrap();
    drop(t);
    let (t, rep) = open(&bed.path, None);
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    assert_whole(&t, 3, 4);
    assert!(t.read(Slot(6)).var.is_empty());
}

#[test]
fn varlen_side_area_reused_after_release_and_expiry() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    bind(&t, 7, 1);
    bind(&t, 8, 1);
    // Released and expired bindings keep their data (bulk leasequery reports their end by
    // relay-id / remote-id) until the address is freed or bound again.
    t.update(Slot(7), |l| l.state = LeaseState::Released);
    assert_eq!(
        t.read_with_var(Slot(7)).1.relay_agent_info(),
        &opt82(7, 1)[..]
    );
    let r = t.sweep_expired(NOW + 7200, 1_000_000);
    assert!(r.expired >= 1, "{r:?}");
    assert_eq!(t.read(Slot(8)).state, LeaseState::Expired);
    assert_eq!(
        t.read_with_var(Slot(8)).1.relay_agent_info(),
        &opt82(8, 1)[..]
    );
    // Freed (no client left): nothing stays.
    t.update(Slot(8), |l| {
        l.state = LeaseState::Free;
        l.client = ClientKey::NONE;
    });
    assert!(t.read(Slot(8)).var.is_empty());
    // The next client of an address uses the same extent for its own data.
    bind(&t, 7, 9);
    assert_whole(&t, 7, 9);
    // A shorter value leaves nothing of the longer one behind.
    t.update(Slot(7), |l| {
        assert!(l.set_relay_agent_info(&[1, 2, b'x', b'y']));
    });
    let (l, v) = t.read_with_var(Slot(7));
    assert_eq!(l.inline_relay_agent_info(), Some(&[1, 2, b'x', b'y'][..]));
    assert_eq!(v.relay_agent_info(), &[1, 2, b'x', b'y']);
    assert_eq!(v.host_name(), b"");
    t.flush().unwrap();
    drop(t);
    let (t, rep) = open(&bed.path, None);
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    assert_eq!(
        t.read_with_var(Slot(7)).1.relay_agent_info(),
        &[1, 2, b'x', b'y']
    );
    assert!(t.read(Slot(8)).var.is_empty());
}

#[test]
fn varlen_side_area_full_every_slot_at_the_per_lease_bound() {
    // The area has one bounded extent per record slot: it cannot run out. Fill every slot
    // with as much as a lease may hold, at once, through a restart.
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    let n = t.len();
    let big = |i: u32| -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let ri: Vec<u8> = (0..255u32).map(|k| (k ^ i) as u8).collect();
        let hn: Vec<u8> = (0..255u32).map(|k| b'a' + ((k + i) % 26) as u8).collect();
        let vc = vec![b'v'; 255];
        (ri, hn, vc)
    };
    for i in 0..n {
        let (ri, hn, vc) = big(i);
        t.update_full(Slot(i), |l, v| {
            l.state = LeaseState::Active;
            l.client = ClientKey::from_client_id(&i.to_be_bytes());
            l.expiry = NOW + 60;
            assert!(v.set_relay_agent_info(&ri));
            // Beyond the bound: cut, and said so.
            assert!(!v.set_host_name(&hn));
            assert!(!v.set_vendor_class(&vc));
        });
    }
    t.commit().unwrap();
    drop(t);
    let (t, rep) = open(&bed.path, Some(MIN_WAL_BYTES));
    assert!(rep.side_dropped.is_empty());
    for i in 0..n {
        let (ri, hn, _) = big(i);
        let (_, v) = t.read_with_var(Slot(i));
        assert_eq!(v.relay_agent_info(), &ri[..], "slot {i}");
        assert_eq!(v.host_name(), &hn[..VAR_DATA_MAX - 255], "slot {i}");
        assert_eq!(v.vendor_class(), b"", "slot {i}");
    }
}

#[test]
fn varlen_old_file_without_side_area_opens_with_its_inline_option82() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    // What an older build wrote: option 82 of at most 23 bytes, inline.
    t.update(Slot(4), |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_hw(1, &[2, 0, 0, 0, 0, 4]);
        l.expiry = NOW + 60;
        assert!(l.set_relay_agent_info(b"\x01\x05ge-01\x02\x04cpe4"));
    });
    t.flush().unwrap();
    drop(t);
    fs::remove_file(bed.side()).unwrap();
    let (t, rep) = open(&bed.path, None);
    assert!(rep.side_dropped.is_empty() && rep.quarantined.is_empty());
    assert!(
        bed.side().exists(),
        "the side area is created for an older file"
    );
    assert_eq!(
        t.read_with_var(Slot(4)).1.relay_agent_info(),
        b"\x01\x05ge-01\x02\x04cpe4"
    );
    // And a long value can be stored from now on.
    bind(&t, 4, 1);
    assert_whole(&t, 4, 1);
    // A side file of another layout is an error naming the file, not a guess.
    drop(t);
    bed.poke(&bed.side(), 8, &[9, 0, 0, 0]);
    let err = LeaseTable::open(&bed.path, &pools(), &opts(None)).unwrap_err();
    assert!(err.to_string().contains(".ext"), "{err}");
}

#[test]
fn varlen_side_area_follows_records_through_a_rebuild_and_growth() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    bind(&t, 9, 1);
    t.flush().unwrap();
    drop(t);
    // A pool in front of it: every slot moves.
    let more = vec![pool(5, [10, 0, 0, 0], [10, 0, 0, 99]), pools()[0]];
    let (t, rep) = open_with(&bed.path, &more, None);
    assert!(rep.rebuilt.is_some());
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    let s = t.slot_of(Ipv4Addr::new(10, 1, 0, 9)).unwrap();
    assert_eq!(s.index(), 109);
    let (_, v) = t.read_with_var(s);
    assert_eq!(v.relay_agent_info(), &opt82(9, 1)[..]);
    assert_eq!(v.host_name(), b"cpe-9");
    drop(t);

    // Growth into spare slots (a reload adding a pool): long data in a new slot.
    let o = OpenOptions {
        spare: 64,
        ..opts(Some(MIN_WAL_BYTES))
    };
    let (t, _) = LeaseTable::open(&bed.path, &more, &o).unwrap();
    let mut grown = more.clone();
    grown.push(pool(6, [10, 2, 0, 0], [10, 2, 0, 31]));
    t.grow(&grown).unwrap();
    let s = t.slot_of(Ipv4Addr::new(10, 2, 0, 3)).unwrap();
    bind(&t, s.index(), 5);
    assert_whole(&t, s.index(), 5);
    t.commit().unwrap();
    drop(t);
    let (t, rep) = LeaseTable::open(&bed.path, &grown, &o).unwrap();
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    assert_whole(&t, s.index(), 5);
}

#[test]
fn varlen_read_only_view_reads_side_data_beside_the_writer() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    for i in 0..3 {
        bind(&t, i, 1);
    }
    let ro = ReadOnlyTable::open(&bed.path).unwrap();
    for i in 0..3 {
        let (_, v) = ro.read_with_var(i);
        assert_eq!(v.relay_agent_info(), &opt82(i, 1)[..]);
        assert_eq!(v.vendor_class(), b"docsis3.1");
    }
    // It follows the writer's later changes too.
    bind(&t, 1, 7);
    assert_eq!(ro.read_with_var(1).1.relay_agent_info(), &opt82(1, 7)[..]);
}

#[test]
fn varlen_side_file_is_sparse_until_long_data_is_written() {
    use std::os::unix::fs::MetadataExt;
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    let len = fs::metadata(bed.side()).unwrap().len();
    assert!(len >= (EXT_HDR + t.len() as usize * EXTENT) as u64);
    // Only the header page is on disk (inline data, the only kind so far, needs no block).
    let on_disk = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    assert!(on_disk(&bed.side()) <= 8192, "{}", on_disk(&bed.side()));
    bind(&t, 3, 1);
    t.flush().unwrap();
    // One 64 KiB block for the first long value (and the header's).
    let after = on_disk(&bed.side());
    assert!(
        (64 * 1024..=2 * 64 * 1024 + 8192).contains(&after),
        "{after}"
    );
    assert_whole(&t, 3, 1);
}

#[test]
fn varlen_renewal_with_the_same_data_writes_no_side_chunk() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, Some(MIN_WAL_BYTES));
    bind(&t, 2, 1);
    let seq_of = |t: &LeaseTable| t.side.extent(2)[0][0..4].to_vec();
    let before = seq_of(&t);
    // A renewal: same data (same handle), a later expiry. The record changes, the side
    // area does not.
    let ri = opt82(2, 1);
    let hn = b"cpe-2".to_vec();
    let parts = crate::VarParts::new(&ri, &hn, b"docsis3.1");
    let r = crate::VarRef::of(parts);
    let (_, changed) = t.update_var(Slot(2), |l, ve| {
        l.expiry = NOW + 7200;
        ve.set(l, r, parts);
    });
    assert!(changed);
    assert_eq!(
        seq_of(&t),
        before,
        "side chunk rewritten by a renewal with the same data"
    );
    assert_whole(&t, 2, 1);
    assert_eq!(t.read(Slot(2)).expiry, NOW + 7200);
    // Different data: written (its sequence moves).
    bind(&t, 2, 5);
    assert_ne!(seq_of(&t), before);
    assert_whole(&t, 2, 5);
}

#[test]
fn varlen_side_handle_without_its_data_is_never_written() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    bind(&t, 1, 1);
    let side_ref = t.read(Slot(1)).var;
    assert!(side_ref.is_side());
    // A caller copying another record's side handle with plain `update` gets no data (the
    // handle is not backed by this slot's extent), never another lease's.
    t.update(Slot(4), |l| {
        l.state = LeaseState::Active;
        l.client = ClientKey::from_client_id(&[9, 9]);
        l.expiry = NOW + 60;
        l.var = side_ref;
    });
    let (l, v) = t.read_with_var(Slot(4));
    assert!(l.var.is_empty(), "{:?}", l.var);
    assert!(v.is_empty());
}

#[test]
fn varlen_rebuild_cut_between_its_renames_is_finished_at_open() {
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    bind(&t, 9, 1);
    t.flush().unwrap();
    drop(t);
    let more = vec![pool(5, [10, 0, 0, 0], [10, 0, 0, 99]), pools()[0]];
    let (t, rep) = open_with(&bed.path, &more, None);
    assert!(rep.rebuilt.is_some());
    drop(t);
    // Put the state a cut between the renames leaves: the side area renamed (the moved
    // extents), the table still under its temporary name, the commit marker present.
    let tmp = PathBuf::from(format!("{}.rebuild", bed.path.display()));
    fs::rename(&bed.path, &tmp).unwrap();
    // An old-geometry table file in place (as before the rename).
    let (t, _) = open_with(&bed.dir_path().join("old.db"), &pools(), None);
    bind(&t, 9, 1);
    t.flush().unwrap();
    drop(t);
    fs::copy(bed.dir_path().join("old.db"), &bed.path).unwrap();
    fs::write(format!("{}.rebuild-commit", bed.path.display()), b"").unwrap();
    // Opened with the new pools: the rebuilt file is put in place, its records match the
    // moved extents.
    let (t, rep) = open_with(&bed.path, &more, None);
    assert!(rep.side_dropped.is_empty(), "{:?}", rep.side_dropped);
    assert!(rep.rebuilt.is_none(), "{:?}", rep.rebuilt);
    let s = t.slot_of(Ipv4Addr::new(10, 1, 0, 9)).unwrap();
    let (l, v) = t.read_with_var(s);
    assert_eq!(l.state, LeaseState::Active);
    // The data bound at (old) slot 9, moved with its record.
    assert_eq!(v.relay_agent_info(), &opt82(9, 1)[..]);
    assert_eq!(v.host_name(), b"cpe-9");
    assert!(!tmp.exists());
    assert!(!PathBuf::from(format!("{}.rebuild-commit", bed.path.display())).exists());
}

#[test]
fn varlen_hook_that_wants_data_sees_it_before_and_after() {
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Seen(Mutex<Vec<(Vec<u8>, Vec<u8>)>>);
    impl crate::ChangeHook for Seen {
        fn record_changed(&self, _: u32, _: &crate::Lease, _: &crate::Lease) {
            panic!("the plain call is not made to a hook that wants the data");
        }
        fn wants_var(&self) -> bool {
            true
        }
        fn record_changed_var(
            &self,
            _: u32,
            _: u32,
            old: (&crate::Lease, &crate::VarData),
            new: (&crate::Lease, &crate::VarData),
        ) {
            self.0.lock().unwrap().push((
                old.1.relay_agent_info().to_vec(),
                new.1.relay_agent_info().to_vec(),
            ));
        }
    }
    let bed = Bed::new();
    let (t, _) = open(&bed.path, None);
    let seen = Arc::new(Seen::default());
    assert!(t.set_change_hook(seen.clone()));
    bind(&t, 1, 1);
    // An expiry-only change: the same data on both sides.
    t.update(Slot(1), |l| l.expiry += 1);
    bind(&t, 1, 2);
    let s = seen.0.lock().unwrap();
    assert_eq!(
        *s,
        vec![
            (vec![], opt82(1, 1)),
            (opt82(1, 1), opt82(1, 1)),
            (opt82(1, 1), opt82(1, 2)),
        ]
    );
}
