use super::*;

fn b(kind: IaKind, duid: &[u8], iaid: u32, last: u8, plen: u8) -> Binding6 {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = 0x77;
    a[15] = last;
    let mut x = Binding6::new(kind, duid, iaid, a, plen);
    x.state = BindingState::Active;
    x.cltt = 100;
    x.valid = 200;
    x.expiry = 300;
    x
}

#[test]
fn dhcpv6_table_put_find_rekey_remove() {
    let mut t = BindingTable6::in_memory(4);
    let s1 = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    let s2 = t.put(None, &b(IaKind::Na, b"duid-a", 1, 2, 128)).unwrap();
    let s3 = t.put(None, &b(IaKind::Pd, b"duid-a", 1, 0, 56)).unwrap();
    let mut out = [0u32; 8];
    assert_eq!(t.find_ia(IaKind::Na, b"duid-a", 1, &mut out), 2);
    assert!(out[..2].contains(&s1) && out[..2].contains(&s2));
    assert_eq!(t.find_ia(IaKind::Pd, b"duid-a", 1, &mut out), 1);
    assert_eq!(out[0], s3);
    assert_eq!(t.find_ia(IaKind::Na, b"duid-b", 1, &mut out), 0);
    // Re-key slot 2 to another client.
    t.put(Some(s2), &b(IaKind::Na, b"duid-b", 9, 2, 128))
        .unwrap();
    assert_eq!(t.find_ia(IaKind::Na, b"duid-a", 1, &mut out), 1);
    assert_eq!(t.find_ia(IaKind::Na, b"duid-b", 9, &mut out), 1);
    let a2 = b(IaKind::Na, b"x", 0, 2, 128).addr;
    assert_eq!(t.find_addr(IaKind::Na, &a2, 128), Some(s2));
    t.put(None, &b(IaKind::Na, b"c", 1, 9, 128)).unwrap();
    assert_eq!(
        t.put(None, &b(IaKind::Na, b"d", 1, 10, 128)),
        Err(TableFull)
    );
    t.remove(s2);
    assert_eq!(t.find_addr(IaKind::Na, &a2, 128), None);
    assert_eq!(t.len(), 3);
    t.put(None, &b(IaKind::Na, b"d", 1, 10, 128)).unwrap();
}

#[test]
fn dhcpv6_table_persists_bindings_duid_and_quarantines_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v6.db");
    let mut relay = b(IaKind::Pd, b"duid-r", 7, 0, 56);
    relay.relay.interface_id = Bytes::new(b"eth0.100");
    relay.relay.remote_id = Bytes::new(&[0, 0, 0x11, 0x8b, 1, 2, 3]);
    relay.relay.lladdr_type = 1;
    relay.relay.lladdr = Bytes::new(&[2, 0, 0, 0, 0, 1]);
    relay.flags = FLAG_RECONFIGURE_ACCEPT | FLAG_RECONF_KEY6 | FLAG_RECONFIGURING6;
    // The way back for a Reconfigure (relayed: relay source, link- and peer-address).
    relay.via = Via6 {
        hops: 1,
        src: [0x20; 16],
        link: [0xfd; 16],
        peer: [0xfe; 16],
    };
    relay.relay.link_address = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    relay.relay.peer_address = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    relay.acked_expiry = 250;
    let (s_na, s_pd);
    {
        let (mut t, rep) = BindingTable6::open(&p, 16, true).unwrap();
        assert!(rep.created);
        assert_eq!(t.server_duid(), None);
        t.set_server_duid(&[0, 2, 0, 0, 0x11, 0x8b, 1]).unwrap();
        s_na = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
        s_pd = t.put(None, &relay).unwrap();
        t.flush_dirty().unwrap();
        // A second open of the same file is refused while the first holds it.
        assert!(matches!(
            BindingTable6::open(&p, 16, true),
            Err(StoreError::Locked { .. })
        ));
    }
    {
        let (t, rep) = BindingTable6::open(&p, 8, false).unwrap();
        assert_eq!(rep.bindings, 2);
        assert!(rep.quarantined.is_empty());
        assert_eq!(t.capacity(), 16);
        assert_eq!(t.server_duid(), Some(&[0, 2, 0, 0, 0x11, 0x8b, 1][..]));
        assert_eq!(t.get(s_pd), Some(relay));
        assert_eq!(t.get(s_na).unwrap().duid.as_slice(), b"duid-a");
    }
    // Tear the NA record (a partial write): it is quarantined, the PD survives.
    let mut data = std::fs::read(&p).unwrap();
    data[HEADER6_LEN + s_na as usize * RECORD6_SIZE + 40] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let (mut t, rep) = BindingTable6::open(&p, 16, false).unwrap();
    assert_eq!(rep.bindings, 1);
    assert_eq!(rep.quarantined, vec![(s_na, "bad CRC")]);
    assert_eq!(t.get(s_pd), Some(relay));
    // The quarantined slot is reusable.
    for i in 0..15 {
        t.put(None, &b(IaKind::Na, b"z", i, 20 + i as u8, 128))
            .unwrap();
    }
    let (duid, all, bad) = read_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert!(duid.is_some());
    assert_eq!((all.len(), bad), (16, 0));
}

#[test]
fn dhcpv6_table_sweep_expires_then_reclaims() {
    let mut t = BindingTable6::in_memory(4);
    let s = t.put(None, &b(IaKind::Na, b"a", 1, 1, 128)).unwrap();
    assert_eq!(t.sweep(299, 10), (0, 0));
    assert_eq!(t.sweep(300, 10), (1, 0));
    assert_eq!(t.get(s).unwrap().state, BindingState::Expired);
    assert_eq!(t.sweep(305, 10), (0, 0));
    assert_eq!(t.sweep(311, 10), (0, 1));
    assert!(t.is_empty());
}

#[test]
fn dhcpv6_table_refuses_bad_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v6.db");
    std::fs::write(&p, vec![7u8; HEADER6_LEN + RECORD6_SIZE]).unwrap();
    let e = BindingTable6::open(&p, 4, false).err().unwrap().to_string();
    assert!(e.contains("bad magic"), "{e}");
}

#[test]
fn dhcpv6_table_find_client_returns_every_ia_of_a_duid_for_leasequery() {
    let mut t = BindingTable6::in_memory(8);
    let na1 = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    let na2 = t.put(None, &b(IaKind::Na, b"duid-a", 2, 2, 128)).unwrap();
    let pd = t.put(None, &b(IaKind::Pd, b"duid-a", 1, 0, 56)).unwrap();
    t.put(None, &b(IaKind::Na, b"duid-b", 1, 3, 128)).unwrap();
    let mut out = [0u32; 8];
    let n = t.find_client(b"duid-a", &mut out);
    assert_eq!(n, 3);
    for s in [na1, na2, pd] {
        assert!(out[..n].contains(&s), "slot {s} missing");
    }
    // find_ia still tells the IAs of one client apart.
    assert_eq!(t.find_ia(IaKind::Na, b"duid-a", 2, &mut out), 1);
    assert_eq!(out[0], na2);
    // A small output buffer is filled, not overrun.
    let mut one = [0u32; 1];
    assert_eq!(t.find_client(b"duid-a", &mut one), 1);
    t.remove(na1);
    assert_eq!(t.find_client(b"duid-a", &mut out), 2);
    assert_eq!(t.find_client(b"duid-z", &mut out), 0);
}

/// A table with a write-ahead log of the smallest size, and the base file copied as it was
/// right after the open (flushed: a power cut that lost every later write-back of the
/// mapping leaves exactly this).
fn logged(dir: &Path) -> (BindingTable6, PathBuf, Vec<u8>) {
    let path = dir.join("b6.db");
    let (t, _) = BindingTable6::open_with(&path, 64, true, Some(crate::MIN_WAL_BYTES)).unwrap();
    let base = std::fs::read(&path).unwrap();
    (t, path, base)
}

/// The log as a power cut leaves it: what the commits synced (the test writes nothing
/// unsynced to it).
fn log_now(path: &Path) -> Vec<u8> {
    std::fs::read(wal::wal_path(path)).unwrap()
}

/// Puts the files back as the power cut left them (after the table was dropped).
fn restore(path: &Path, table: &[u8], log: &[u8]) {
    std::fs::write(path, table).unwrap();
    std::fs::write(wal::wal_path(path), log).unwrap();
}

fn reopen(path: &Path) -> (BindingTable6, Open6Report) {
    BindingTable6::open_with(path, 64, false, Some(crate::MIN_WAL_BYTES)).unwrap()
}

#[test]
fn dhcpv6_wal_replay_after_crash_restores_committed_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, path, base) = logged(dir.path());
    let log = t.log().expect("opened with a log");
    let a = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    let p = t.put(None, &b(IaKind::Pd, b"duid-a", 1, 0, 56)).unwrap();
    let gone = t.put(None, &b(IaKind::Na, b"duid-x", 1, 9, 128)).unwrap();
    t.remove(gone);
    let mut renewed = b(IaKind::Na, b"duid-a", 1, 1, 128);
    renewed.expiry = 9_000;
    t.put(Some(a), &renewed).unwrap();
    log.commit().unwrap();
    let st = log.stats();
    assert_eq!(st.entries, 5, "every write staged once: {st:?}");
    assert_eq!(st.commits, 1);
    // Power cut: the table file never got any of it, the log did.
    let wal_now = log_now(&path);
    drop(t);
    drop(log);
    restore(&path, &base, &wal_now);
    let (t, rep) = reopen(&path);
    let r = rep.replay.clone().expect("a log was there");
    assert_eq!((r.entries, r.discarded.as_deref()), (5, None), "{r:?}");
    assert_eq!(rep.bindings, 2, "{rep:?}");
    assert_eq!(
        t.get(a).unwrap().expiry,
        9_000,
        "the newest image of the slot wins"
    );
    assert_eq!(t.get(p).unwrap().prefix_len, 56);
    assert!(t.get(gone).is_none(), "the removal was replayed too");
    // The replayed content is now in the table file itself: a second open without a log
    // (interval mode) sees the same and retires the log.
    drop(t);
    let (t, rep) = BindingTable6::open(&path, 64, false).unwrap();
    assert_eq!(rep.bindings, 2);
    assert_eq!(t.get(a).unwrap().expiry, 9_000);
    assert!(
        !wal::wal_path(&path).exists(),
        "interval mode retires the log"
    );
}

#[test]
fn dhcpv6_wal_torn_tail_discarded_never_half_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, path, base) = logged(dir.path());
    let log = t.log().unwrap();
    let a = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    log.commit().unwrap();
    let first = log.stats().bytes;
    // A second group whose write was torn by the cut (its Replies never left).
    let c = t.put(None, &b(IaKind::Na, b"duid-c", 7, 3, 128)).unwrap();
    let mut moved = b(IaKind::Na, b"duid-a", 1, 1, 128);
    moved.expiry = 7_777;
    t.put(Some(a), &moved).unwrap();
    log.commit().unwrap();
    let mut wal_now = log_now(&path);
    // Damage the middle of the second group's first entry (a torn sector).
    wal_now[4096 + first as usize + 40] ^= 0x5a;
    drop(t);
    drop(log);
    restore(&path, &base, &wal_now);
    let (mut t, rep) = reopen(&path);
    let r = rep.replay.unwrap();
    assert_eq!(r.entries, 1, "{r:?}");
    assert!(
        r.discarded
            .as_deref()
            .is_some_and(|w| w.contains("checksum")),
        "{r:?}"
    );
    assert_eq!(t.get(a).unwrap().expiry, 300, "the first group's image");
    assert!(t.get(c).is_none(), "nothing of the torn group was applied");
    // Still a working table with a fresh log: a later write and its replay work.
    let log = t.log().unwrap();
    t.put(Some(a), &moved).unwrap();
    log.commit().unwrap();
    let (wal_now, table_now) = (log_now(&path), std::fs::read(&path).unwrap());
    drop(t);
    drop(log);
    restore(&path, &table_now, &wal_now);
    let (t, rep) = reopen(&path);
    assert_eq!(rep.replay.unwrap().discarded, None);
    assert_eq!(t.get(a).unwrap().expiry, 7_777);
}

#[test]
fn dhcpv6_wal_cut_during_checkpoint_torn_page_rebuilt_from_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, path, _) = logged(dir.path());
    let log = t.log().unwrap();
    let a = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    let k = t.put(None, &b(IaKind::Na, b"duid-k", 1, 2, 128)).unwrap();
    log.checkpoint().unwrap();
    assert_eq!(log.stats().checkpoints, 1);
    assert_eq!(
        log.stats().used,
        0,
        "the checkpoint dropped the log before it"
    );
    // What the device holds after that checkpoint.
    let checkpointed = std::fs::read(&path).unwrap();
    // The binding is renewed (committed: its Reply may leave), then a checkpoint's msync
    // is cut while writing its page: the record on the device is half old, half new.
    let mut renewed = b(IaKind::Na, b"duid-a", 1, 1, 128);
    renewed.expiry = 12_345;
    t.put(Some(a), &renewed).unwrap();
    log.commit().unwrap();
    let newest = std::fs::read(&path).unwrap(); // the page cache's version
    let off = HEADER6_LEN + a as usize * RECORD6_SIZE;
    let mut torn = checkpointed.clone();
    torn[off..off + 48].copy_from_slice(&newest[off..off + 48]);
    assert!(
        Binding6::decode(&torn[off..off + RECORD6_SIZE]).is_err(),
        "the record is torn"
    );
    let wal_now = log_now(&path);
    drop(t);
    drop(log);
    restore(&path, &torn, &wal_now);
    let (t, rep) = reopen(&path);
    assert!(
        rep.quarantined.is_empty(),
        "rebuilt, not quarantined: {rep:?}"
    );
    assert_eq!(rep.replay.clone().unwrap().applied, 1, "{rep:?}");
    assert_eq!(
        t.get(a).unwrap().expiry,
        12_345,
        "the torn record rebuilt from the log"
    );
    assert_eq!(t.get(k).unwrap().duid.as_slice(), b"duid-k");
}

#[test]
fn dhcpv6_wal_replay_keeps_a_newer_record_and_storage_errors_are_sticky() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, path, _) = logged(dir.path());
    let log = t.log().unwrap();
    let a = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    log.commit().unwrap();
    // A later write reached the table file but not the log (kill -9 before its commit):
    // the older log entry must not roll it back.
    let mut later = b(IaKind::Na, b"duid-a", 1, 1, 128);
    later.expiry = 4_444;
    t.put(Some(a), &later).unwrap();
    let (wal_now, table_now) = (log_now(&path), std::fs::read(&path).unwrap());
    // Storage error: the commit fails and stays failed until the table recovered it.
    log.fail_writes(true);
    assert!(log.commit().is_err());
    log.fail_writes(false);
    assert!(log.failed());
    assert!(
        log.commit().is_err(),
        "sticky: no commit before the recovery"
    );
    t.recover_log().unwrap();
    assert!(!log.failed());
    t.put(Some(a), &later).unwrap();
    log.commit().unwrap();
    drop(t);
    drop(log);
    restore(&path, &table_now, &wal_now);
    let (t, rep) = reopen(&path);
    assert_eq!(t.get(a).unwrap().expiry, 4_444, "{rep:?}");
    assert_eq!(rep.replay.unwrap().applied, 0);
}

/// The identity in the header of the v6 file at `path`.
fn file_id6(path: &Path) -> [u8; 16] {
    let h = std::fs::read(path).unwrap();
    h[H_ID..H_ID + 16].try_into().unwrap()
}

#[test]
fn dhcpv6_wal_identity_log_of_a_deleted_binding_file_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, path, _) = logged(dir.path());
    let log = t.log().unwrap();
    for i in 0..5u8 {
        t.put(None, &b(IaKind::Na, b"duid-a", u32::from(i), i, 128))
            .unwrap();
    }
    log.commit().unwrap();
    drop(t);
    drop(log);
    // The operator deletes the binding file and leaves its log.
    std::fs::remove_file(&path).unwrap();
    let err = BindingTable6::open_with(&path, 64, true, Some(crate::MIN_WAL_BYTES))
        .err()
        .expect("the old log must not be replayed into the new file");
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::ForeignLog { entries: 5, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&path.display().to_string())
            && msg.contains(&wal::wal_path(&path).display().to_string()),
        "both files named: {msg}"
    );
    // Once the log is moved away the new file opens empty.
    std::fs::rename(wal::wal_path(&path), dir.path().join("b6.db.wal.stale")).unwrap();
    let (t, rep) = reopen(&path);
    assert_eq!(rep.bindings, 0, "{rep:?}");
    assert!(t.is_empty());
}

#[test]
fn dhcpv6_wal_identity_old_file_without_one_still_replays_and_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, path, base) = logged(dir.path());
    let log = t.log().unwrap();
    t.set_server_duid(b"server-duid").unwrap();
    let base = {
        // The header as flushed with the DUID (the records as at the open).
        let mut v = std::fs::read(&path).unwrap();
        v[HEADER6_LEN..].copy_from_slice(&base[HEADER6_LEN..]);
        v
    };
    let a = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    log.commit().unwrap();
    let wal_now = log_now(&path);
    drop(t);
    drop(log);
    // Power cut, and both files as an older version wrote them (no identity).
    let mut old = base.clone();
    old[H_ID..H_ID + 16].fill(0);
    let crc = crc32fast::hash(&old[..H_CRC]);
    old[H_CRC..H_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    restore(&path, &old, &wal_now);
    wal::downgrade_header(RECORD6_SIZE, &wal::wal_path(&path));
    let (t, rep) = reopen(&path);
    assert_eq!(rep.replay.clone().unwrap().applied, 1, "{rep:?}");
    assert_eq!(t.get(a).unwrap().duid.as_slice(), b"duid-a");
    assert_eq!(
        t.server_duid(),
        Some(&b"server-duid"[..]),
        "the DUID is kept"
    );
    drop(t);
    let id = file_id6(&path);
    assert_ne!(id, [0; 16], "the file got an identity");
    // And its log carries it: another file's log is refused, its own replays.
    let (mut t, _) = reopen(&path);
    assert_eq!(file_id6(&path), id);
    let log = t.log().unwrap();
    t.put(None, &b(IaKind::Pd, b"duid-a", 1, 0, 56)).unwrap();
    log.commit().unwrap();
    drop(t);
    drop(log);
    let (t, rep) = reopen(&path);
    assert_eq!(rep.bindings, 2);
    drop(t);
    let other = dir.path().join("other.db");
    let (mut o, _) =
        BindingTable6::open_with(&other, 64, true, Some(crate::MIN_WAL_BYTES)).unwrap();
    let olog = o.log().unwrap();
    o.put(None, &b(IaKind::Na, b"duid-o", 1, 7, 128)).unwrap();
    olog.commit().unwrap();
    drop(o);
    drop(olog);
    std::fs::copy(wal::wal_path(&other), wal::wal_path(&path)).unwrap();
    assert!(matches!(
        BindingTable6::open_with(&path, 64, false, Some(crate::MIN_WAL_BYTES)),
        Err(StoreError::ForeignLog { .. })
    ));
}

/// The binding file has a written disk block for every byte before it is mapped (as the
/// lease table's): a worker's first store into a page allocates nothing under the table's
/// lock, and a full disk cannot turn that store into SIGBUS.
#[test]
fn dhcpv6_binding_file_has_every_block_before_it_is_mapped() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    let (mut t, _) = BindingTable6::open(&path, 4096, true).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len >= 4096 * RECORD6_SIZE as u64);
    let f = std::fs::File::open(&path).unwrap();
    // SAFETY: plain syscall on a valid descriptor.
    let hole = unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&f), 0, libc::SEEK_HOLE) };
    assert_eq!(hole as u64, len, "the v6 binding file has a hole");
    assert!(
        f.metadata().unwrap().blocks() * 512 >= len,
        "the v6 binding file is sparse"
    );
    // Re-keying by address on a rewrite of the same slot (the raw-key path of `put`).
    let s = t.put(None, &b(IaKind::Na, b"duid-a", 1, 1, 128)).unwrap();
    t.put(Some(s), &b(IaKind::Na, b"duid-a", 1, 7, 128))
        .unwrap();
    let (a1, a7) = (
        b(IaKind::Na, b"x", 0, 1, 128).addr,
        b(IaKind::Na, b"x", 0, 7, 128).addr,
    );
    assert_eq!(t.find_addr(IaKind::Na, &a1, 128), None);
    assert_eq!(t.find_addr(IaKind::Na, &a7, 128), Some(s));
    let mut out = [0u32; 4];
    assert_eq!(t.find_ia(IaKind::Na, b"duid-a", 1, &mut out), 1);
}
