//! Store crash safety: torn tails, checksums, stale logs, kill -9 during a bulk import.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::record::{fmt_mac, mac_key, Registration, Selector};
use crate::store::{log_path_of, Store, StoreError};

fn reg(i: u32, group: &str) -> Registration {
    let b = i.to_be_bytes();
    Registration {
        mac: Some([2, 0, b[0], b[1], b[2], b[3]]),
        client_id: None,
        group: group.into(),
        fixed_address: None,
        host_name: None,
        next_server: None,
        boot_file: None,
        options: Default::default(),
    }
}

/// `Store::open` after the test dropped its store. Another test of this binary spawns a
/// process; until that child execs it holds copies of every descriptor of ours (they are
/// close-on-exec, not close-on-fork), the lock file's among them, so the flock may still be
/// held for a moment after `drop`.
fn reopen(p: &Path) -> (Store, crate::store::OpenReport) {
    for _ in 0..200 {
        match Store::open(p) {
            Err(StoreError::Locked(_)) => std::thread::sleep(std::time::Duration::from_millis(10)),
            r => return r.unwrap(),
        }
    }
    Store::open(p).unwrap()
}

fn many(n: u32, group: &str) -> Vec<Registration> {
    (0..n).map(|i| reg(i, group)).collect()
}

#[test]
fn registration_store_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    {
        let (mut s, rep) = reopen(&p);
        assert_eq!(rep.registrations, 0);
        let mut r = reg(1, "modem");
        r.fixed_address = Some(Ipv4Addr::new(10, 0, 0, 9));
        s.put(r).unwrap();
        s.put(reg(2, "cpe")).unwrap();
        s.put(reg(3, "cpe")).unwrap();
        let gone = s
            .remove(&Selector::Mac(fmt_mac(&reg(3, "").mac.unwrap())))
            .unwrap();
        assert!(gone.is_some());
    }
    let (s, rep) = reopen(&p);
    assert_eq!(rep.registrations, 2);
    assert_eq!(rep.log_records, 4);
    let k = mac_key(&reg(1, "").mac.unwrap());
    assert_eq!(
        s.get(&k).unwrap().fixed_address,
        Some(Ipv4Addr::new(10, 0, 0, 9))
    );
    // Files are the operator's only.
    for f in [p.clone(), log_path_of(&p)] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
}

#[test]
fn registration_store_second_open_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    let (_s, _) = reopen(&p);
    assert!(matches!(Store::open(&p), Err(StoreError::Locked(_))));
}

#[test]
fn registration_store_fixed_address_conflict_refused() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(&d.path().join("regs")).unwrap();
    let mut a = reg(1, "g");
    a.fixed_address = Some(Ipv4Addr::new(10, 0, 0, 9));
    s.put(a.clone()).unwrap();
    let mut b = reg(2, "g");
    b.fixed_address = a.fixed_address;
    let e = s.put(b.clone()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("fixed-address: 10.0.0.9 is the fixed address of 02:00:00:00:00:01"),
        "{e}"
    );
    // The same client may move it, and then another may take the old one.
    a.fixed_address = Some(Ipv4Addr::new(10, 0, 0, 10));
    s.put(a).unwrap();
    s.put(b).unwrap();
}

/// Appends `n` changes after `base` registrations; returns the log length before the last.
fn log_with_last_change(p: &Path) -> u64 {
    let (mut s, _) = Store::open(p).unwrap();
    s.import(many(100, "a"), false).unwrap();
    let before = std::fs::metadata(log_path_of(p)).unwrap().len();
    s.import(many(50, "b"), true).unwrap();
    before
}

#[test]
fn registration_store_torn_tail_discarded_at_every_cut() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    let before = log_with_last_change(&p);
    let log = std::fs::read(log_path_of(&p)).unwrap();
    let snap = std::fs::read(&p).unwrap();
    let len = log.len() as u64;
    // Every cut inside the last record (step to keep the test short).
    let mut cut = before + 1;
    while cut < len {
        std::fs::write(&p, &snap).unwrap();
        std::fs::write(log_path_of(&p), &log[..cut as usize]).unwrap();
        let (mut s, rep) = reopen(&p);
        assert_eq!(rep.torn_bytes, cut - before, "cut at {cut}");
        assert_eq!(
            rep.registrations, 100,
            "cut at {cut}: the torn import is not applied"
        );
        assert!(s.index().all().iter().all(|r| r.group == "a"));
        // A later change after the cut survives.
        s.put(reg(7777, "c")).unwrap();
        drop(s);
        let (s, rep) = reopen(&p);
        assert_eq!(rep.torn_bytes, 0);
        assert_eq!(rep.registrations, 101);
        assert!(s.get(&mac_key(&reg(7777, "").mac.unwrap())).is_some());
        cut += 1 + (len - before) / 37;
    }
}

#[test]
fn registration_store_bad_checksum_last_record_discarded() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    let before = log_with_last_change(&p);
    let lp = log_path_of(&p);
    let mut log = std::fs::read(&lp).unwrap();
    let i = before as usize + 20;
    log[i] ^= 0x40;
    std::fs::write(&lp, &log).unwrap();
    let (_s, rep) = reopen(&p);
    assert_eq!(rep.registrations, 100);
    assert!(rep.torn_bytes > 0);
}

#[test]
fn registration_store_bad_checksum_inside_log_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    let before = log_with_last_change(&p);
    let lp = log_path_of(&p);
    let mut log = std::fs::read(&lp).unwrap();
    // Damage the first record (not the last): the store refuses to guess.
    log[40] ^= 0x01;
    std::fs::write(&lp, &log).unwrap();
    let e = Store::open(&p).err().expect("damaged log must not open");
    let s = e.to_string();
    assert!(
        s.contains("regs.log: byte 20: record checksum mismatch"),
        "{s}"
    );
    assert!(before > 40);
}

#[test]
fn registration_store_damaged_snapshot_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    {
        let (mut s, _) = reopen(&p);
        s.import(many(10, "a"), false).unwrap();
        s.compact().unwrap();
    }
    let mut snap = std::fs::read(&p).unwrap();
    let n = snap.len();
    snap[n - 3] ^= 0x10;
    std::fs::write(&p, &snap).unwrap();
    let e = Store::open(&p)
        .err()
        .expect("damaged snapshot must not open");
    assert!(
        e.to_string()
            .contains("regs: byte 20: record checksum mismatch"),
        "{e}"
    );
    // A truncated snapshot too (it is never torn: written by rename).
    std::fs::write(&p, &snap[..n - 10]).unwrap();
    let e = Store::open(&p).err().expect("short snapshot must not open");
    assert!(e.to_string().contains("does not fit"), "{e}");
    // Not a registration file at all.
    std::fs::write(&p, b"hello").unwrap();
    let e = Store::open(&p).err().expect("garbage must not open");
    assert!(
        e.to_string()
            .contains("regs: byte 0: shorter than the file header"),
        "{e}"
    );
}

#[test]
fn registration_store_stale_log_after_compaction_crash_ignored() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    let lp = log_path_of(&p);
    let old_log;
    {
        let (mut s, _) = reopen(&p);
        s.import(many(10, "a"), false).unwrap();
        old_log = std::fs::read(&lp).unwrap();
        // Replace everything, then compact: the snapshot has generation 2.
        s.import(many(3, "b"), true).unwrap();
        s.compact().unwrap();
    }
    // A crash between the snapshot's rename and the log's: the old log is still there.
    std::fs::write(&lp, &old_log).unwrap();
    let (s, rep) = reopen(&p);
    assert!(rep.stale_log);
    assert_eq!(rep.registrations, 3);
    assert!(s.index().all().iter().all(|r| r.group == "b"));
}

#[test]
fn registration_store_log_without_snapshot_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    {
        let (mut s, _) = reopen(&p);
        s.put(reg(1, "a")).unwrap();
    }
    std::fs::remove_file(&p).unwrap();
    let e = Store::open(&p)
        .err()
        .expect("must not start empty over a log");
    assert!(e.to_string().contains("missing, but its log"), "{e}");
}

#[test]
fn registration_store_modify_moves_keys_and_address() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    let (mut s, _) = reopen(&p);
    let mut a = reg(1, "g");
    a.fixed_address = Some(Ipv4Addr::new(10, 0, 0, 9));
    s.put(a.clone()).unwrap();
    let sel = Selector::Mac(fmt_mac(&a.mac.unwrap()));
    let mut b = reg(2, "h");
    b.fixed_address = Some(Ipv4Addr::new(10, 0, 0, 9));
    let old = s.modify(&sel, b.clone()).unwrap();
    assert_eq!(old, a);
    assert!(s.get(&mac_key(&a.mac.unwrap())).is_none());
    assert_eq!(s.get(&mac_key(&b.mac.unwrap())), Some(b.clone()));
    assert!(s.modify(&sel, b.clone()).is_err());
    drop(s);
    let (s, _) = reopen(&p);
    assert_eq!(s.index().all(), vec![b]);
}

/// The child of `registration_store_kill9_during_bulk_import`: imports rounds of 20,000
/// registrations (replace mode, group `rN`) until killed.
#[test]
fn registration_store_kill9_child() {
    let Ok(dir) = std::env::var("XDHCPD_REG_KILL_CHILD") else {
        return;
    };
    let p = Path::new(&dir).join("regs");
    let (mut s, _) = reopen(&p);
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&dir).join("done"))
        .unwrap();
    for round in 0.. {
        let g = format!("r{round}");
        s.import(many(20_000 + round % 7, &g), true).unwrap();
        // Acknowledged: record it (after the store's fsync).
        writeln!(out, "{round}").unwrap();
        out.sync_data().unwrap();
    }
}

#[test]
fn registration_store_kill9_during_bulk_import() {
    let exe = std::env::current_exe().unwrap();
    let mut killed_after_acks = 0;
    for attempt in 0..6u64 {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "store_tests::registration_store_kill9_child",
                "--nocapture",
            ])
            .env("XDHCPD_REG_KILL_CHILD", d.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // After the first acknowledged round (a loaded machine may take seconds), at a
        // different moment of the following rounds each attempt.
        let done_path = d.path().join("done");
        let t = std::time::Instant::now();
        while std::fs::read_to_string(&done_path)
            .unwrap_or_default()
            .is_empty()
            && t.elapsed() < std::time::Duration::from_secs(60)
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(40 + 97 * attempt));
        // SAFETY: a plain kill(2) of the child this test spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let done = std::fs::read_to_string(d.path().join("done")).unwrap_or_default();
        let last_acked: Option<u32> = done.lines().filter_map(|l| l.parse().ok()).next_back();
        let (s, _) = Store::open(&d.path().join("regs")).unwrap();
        let all = s.index().all();
        // All or nothing: one round's registrations, complete, and at least the last
        // acknowledged one (the next may have reached the disk before the kill).
        let Some(last) = last_acked else {
            assert!(
                all.is_empty() || all.len() as u32 == 20_000,
                "attempt {attempt}: partial import of {}",
                all.len()
            );
            continue;
        };
        killed_after_acks += 1;
        let g = &all[0].group;
        let round: u32 = g[1..].parse().unwrap();
        assert!(
            round == last || round == last + 1,
            "attempt {attempt}: round {round}, acked {last}"
        );
        assert_eq!(
            all.len() as u32,
            20_000 + round % 7,
            "attempt {attempt}: partial import"
        );
        assert!(
            all.iter().all(|r| &r.group == g),
            "attempt {attempt}: mixed rounds"
        );
    }
    assert!(
        killed_after_acks >= 3,
        "the child must have imported before most kills"
    );
}

fn json(mac: &str, group: &str, fixed: Option<&str>) -> crate::record::Json {
    crate::record::Json {
        mac: Some(mac.into()),
        group: group.into(),
        fixed_address: fixed.map(str::to_string),
        ..Default::default()
    }
}

#[test]
fn registration_postgres_feed_applies_in_order_and_keeps_the_cursor() {
    use crate::store::{Cursor, FeedChange};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    let a = [2, 0, 0, 0, 0, 0xa];
    let b = [2, 0, 0, 0, 0, 0xb];
    let c = [2, 0, 0, 0, 0, 0xc];
    {
        let (mut s, _) = Store::open(&p).unwrap();
        assert!(s.cursor().is_none());
        // Full load: a and b.
        let rep = s
            .apply_full(
                vec![
                    (1, json(&fmt_mac(&a), "modem", Some("10.0.0.5"))),
                    (2, json(&fmt_mac(&b), "cpe", None)),
                    (3, json("zz", "cpe", None)),
                ],
                Cursor {
                    source: "db1".into(),
                    seq: 10,
                },
            )
            .unwrap();
        assert_eq!(rep.applied, 2);
        assert_eq!(rep.rejected.len(), 1, "{rep:?}");
        // a's MAC changes to c (the fixed address moves with it), b is deleted, a bad
        // update of nothing is refused.
        let rep = s
            .apply_feed(
                &[
                    FeedChange {
                        seq: 11,
                        old_mac: Some(fmt_mac(&a)),
                        new: Some(json(&fmt_mac(&c), "modem", Some("10.0.0.5"))),
                        ..Default::default()
                    },
                    FeedChange {
                        seq: 12,
                        old_mac: Some(fmt_mac(&b)),
                        ..Default::default()
                    },
                    FeedChange {
                        seq: 13,
                        new: Some(json(&fmt_mac(&b), "no group!", None)),
                        ..Default::default()
                    },
                ],
                Cursor {
                    source: "db1".into(),
                    seq: 13,
                },
            )
            .unwrap();
        assert_eq!(rep.rejected.len(), 1);
        assert!(s.get(&mac_key(&a)).is_none());
        assert!(s.get(&mac_key(&b)).is_none());
        assert_eq!(
            s.index()
                .by_address(Ipv4Addr::new(10, 0, 0, 5))
                .unwrap()
                .mac,
            Some(c)
        );
    }
    // Reopened (log replayed, then compacted): same content, same cursor.
    for _ in 0..2 {
        let (s, rep) = Store::open(&p).unwrap();
        assert_eq!(rep.registrations, 1);
        assert_eq!(
            s.cursor(),
            Some(&Cursor {
                source: "db1".into(),
                seq: 13
            })
        );
        assert_eq!(s.get(&mac_key(&c)).unwrap().group, "modem");
    }
}

/// A change that makes the log due for compaction is in the new snapshot (the snapshot is
/// written from the index, so the change must be there first).
#[test]
fn registration_store_compaction_keeps_the_change_that_triggered_it() {
    use crate::store::{Cursor, FeedChange};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("regs");
    {
        let (mut s, _) = Store::open(&p).unwrap();
        s.set_compact_slack(0);
        s.put(reg(1, "a")).unwrap();
        s.import(many(3, "b"), false).unwrap();
        s.remove(&Selector::Mac(fmt_mac(&[2, 0, 0, 0, 0, 2])))
            .unwrap();
        for seq in 1..=3u32 {
            let r = reg(100 + seq, "c");
            s.apply_feed(
                &[FeedChange {
                    seq: u64::from(seq),
                    new: Some(r.to_json()),
                    ..Default::default()
                }],
                Cursor {
                    source: "db".into(),
                    seq: u64::from(seq),
                },
            )
            .unwrap();
        }
    }
    let (s, rep) = Store::open(&p).unwrap();
    // 0, 1 (b) + 101..103; 2 removed.
    assert_eq!(rep.registrations, 5, "{rep:?}");
    assert_eq!(s.get(&mac_key(&[2, 0, 0, 0, 0, 1])).unwrap().group, "b");
    assert!(s.get(&mac_key(&[2, 0, 0, 0, 0, 2])).is_none());
    assert!(s.get(&mac_key(&[2, 0, 0, 0, 0, 103])).is_some());
    assert_eq!(s.cursor().map(|c| c.seq), Some(3));
}
