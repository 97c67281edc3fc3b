//! Least privilege: the lease table names every subscriber (MAC, client id, option 82), so
//! the files the store creates are readable by their owner only (0600), whatever the umask
//! lets through: the new file, and the one a pool change rebuilds and renames over it.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::os::unix::fs::PermissionsExt;

use lease_store::*;

mod common;
use common::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn least_privilege_lease_file_is_created_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let p1 = vec![pool(1, [10, 0, 0, 10], [10, 0, 0, 19])];
    drop(LeaseTable::open(&path, &p1, &opts(1)).unwrap());
    assert_eq!(mode(&path), 0o600, "new lease file");
    // A pool change rebuilds the file next to the old one and renames it over.
    let p2 = vec![pool(1, [10, 0, 0, 0], [10, 0, 0, 50])];
    let (_t, rep) = LeaseTable::open(&path, &p2, &opts(1)).unwrap();
    assert!(rep.rebuilt.is_some(), "{rep:?}");
    assert_eq!(mode(&path), 0o600, "rebuilt lease file");
}
