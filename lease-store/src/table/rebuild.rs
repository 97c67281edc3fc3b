//! Rewriting the file for a changed pool geometry (records kept by
//! address; dropping live leases needs `allow_shrink`).

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use memmap2::MmapOptions;

use super::ext::{ext_path, write_rebuilt, SideArea};
use super::file::{capacity_for, preallocate, sync_dir, LEASE_FILE_MODE};
use super::undo::{add_undo, is_pristine, recover_from_undo, stored_crc_of, UndoMap};
use super::{OpenOptions, OpenReport};
use crate::error::{LostLease, StoreError};
use crate::header::{self, Geometry, ValidHeader, UNDO_LEN, UNDO_SLOTS};
use crate::lease::{record_crc, Lease, LeaseState, RECORD_SIZE, VAR_IN_SIDE_AREA};

/// How many addresses a failed shrink check lists.
const LOST_LISTED: usize = 10;

/// `<file>.rebuild-commit`: present while a rebuild's two renames are under way.
fn commit_marker(path: &Path) -> PathBuf {
    let mut m = path.as_os_str().to_owned();
    m.push(".rebuild-commit");
    PathBuf::from(m)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut m = path.as_os_str().to_owned();
    m.push(suffix);
    PathBuf::from(m)
}

/// Finishes a rebuild whose commit marker exists (both new files were written and synced):
/// renames whichever of the side area and the table file is still under its temporary name,
/// then drops the marker. Called at the end of a rebuild and at every open (a rebuild cut
/// between its two renames is finished before the table is read). No marker: nothing to do.
pub(super) fn finish_rebuild(path: &Path) -> Result<bool, StoreError> {
    let marker = commit_marker(path);
    if !marker.exists() {
        return Ok(false);
    }
    let side_path = ext_path(path);
    let side_tmp = with_suffix(&side_path, ".rebuild");
    if side_tmp.exists() {
        fs::rename(&side_tmp, &side_path)
            .map_err(|e| StoreError::io(&side_path, "rename rebuilt side area into place", e))?;
    }
    let tmp = with_suffix(path, ".rebuild");
    if tmp.exists() {
        fs::rename(&tmp, path)
            .map_err(|e| StoreError::io(path, "rename rebuilt file into place", e))?;
    }
    sync_dir(path)?;
    fs::remove_file(&marker)
        .map_err(|e| StoreError::io(&marker, "remove rebuild commit marker", e))?;
    sync_dir(path)?;
    tracing::info!(path = %path.display(), "finished an interrupted rebuild (its renames)");
    Ok(true)
}

fn is_live(l: &Lease, now: u32) -> bool {
    match l.state {
        LeaseState::Active | LeaseState::Offered => l.expiry > now,
        LeaseState::Reserved => true,
        _ => false,
    }
}

/// Rewrites the file for a new pool geometry, keeping records by address. The new file has
/// identity `id` (the old file's, or the one its log was just restarted with).
#[allow(clippy::too_many_arguments)]
pub(super) fn rebuild(
    path: &Path,
    old: &[u8],
    hdr: &ValidHeader,
    geo: &Geometry,
    opts: &OpenOptions,
    report: &mut OpenReport,
    id: &[u8; header::ID_BYTES],
    side: &SideArea,
) -> Result<(), StoreError> {
    let og = &hdr.geo;
    let mut undo = UndoMap::new();
    for i in 0..UNDO_SLOTS {
        let o = hdr.header_len - UNDO_LEN + i * RECORD_SIZE;
        let mut b = [0u8; RECORD_SIZE];
        b.copy_from_slice(&old[o..o + RECORD_SIZE]);
        add_undo(&mut undo, &b);
    }
    // A record torn by a crash is rolled back here as `open` would; one that
    // cannot be is copied as it is and quarantined by the scan after the rename.
    let rec = |slot: u32| -> [u8; RECORD_SIZE] {
        let o = hdr.header_len + slot as usize * RECORD_SIZE;
        let mut b = [0u8; RECORD_SIZE];
        b.copy_from_slice(&old[o..o + RECORD_SIZE]);
        let seq = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if seq & 1 == 1 && stored_crc_of(&b) != record_crc(&b) {
            if let Some(mut prev) = recover_from_undo(&undo, og.addr_of(slot), seq) {
                prev[0..4].copy_from_slice(&seq.wrapping_add(1).to_le_bytes());
                return prev;
            }
        }
        b
    };
    // Pass 1: live leases outside the new pools.
    let mut lost: Vec<Lease> = Vec::new();
    for slot in 0..og.total {
        if geo.slot_of(og.addr_of(slot)).is_some() {
            continue;
        }
        let b = rec(slot);
        if is_pristine(&b) || u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != record_crc(&b) {
            continue;
        }
        if let Ok(l) = Lease::decode(&b) {
            if is_live(&l, opts.now) {
                lost.push(l);
            }
        }
    }
    if !lost.is_empty() && !opts.allow_shrink {
        return Err(StoreError::Shrink {
            path: path.to_path_buf(),
            count: lost.len() as u64,
            first: lost
                .iter()
                .take(LOST_LISTED)
                .map(|l| LostLease {
                    addr: l.addr,
                    state: l.state,
                    client: l.client,
                    expiry: l.expiry,
                })
                .collect(),
        });
    }
    // Pass 2: write the new file next to the old one, then rename over it.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".rebuild");
    let tmp = PathBuf::from(tmp);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(LEASE_FILE_MODE)
        .open(&tmp)
        .map_err(|e| StoreError::io(&tmp, "create", e))?;
    // A leftover of an interrupted rebuild keeps its mode through open: set it.
    f.set_permissions(fs::Permissions::from_mode(LEASE_FILE_MODE))
        .map_err(|e| StoreError::io(&tmp, "chmod", e))?;
    let hl = geo.header_len();
    let capacity = capacity_for(geo, opts.spare);
    let len = Geometry::file_len_for(hl, capacity);
    f.set_len(len)
        .map_err(|e| StoreError::io(&tmp, "set file length", e))?;
    preallocate(&f, &tmp, len)?;
    // SAFETY: `tmp` was just created by us and is not shared; nothing else
    // resizes or writes it while this mapping lives.
    let mut map =
        unsafe { MmapOptions::new().map_mut(&f) }.map_err(|e| StoreError::io(&tmp, "mmap", e))?;
    header::write_header(&mut map[..hl], geo, hdr.created, hl, capacity, id);
    header::copy_failover(&old[..hdr.header_len], &mut map[..hl]);
    let mut copied = 0u64;
    // Side extents move with their records.
    let mut extents = Vec::new();
    for slot in 0..og.total {
        let Some(ns) = geo.slot_of(og.addr_of(slot)) else {
            continue;
        };
        let b = rec(slot);
        if is_pristine(&b) {
            continue;
        }
        let o = hl + ns as usize * RECORD_SIZE;
        map[o..o + RECORD_SIZE].copy_from_slice(&b);
        if b[104] == VAR_IN_SIDE_AREA {
            extents.push((ns, side.extent(slot)));
        }
        copied += 1;
    }
    map.flush().map_err(|e| StoreError::io(&tmp, "msync", e))?;
    drop(map);
    f.sync_all().map_err(|e| StoreError::io(&tmp, "fsync", e))?;
    // The side area first: a crash between the renames leaves old records over moved extents,
    // which open detects (their references do not match) and reports; never wrong data.
    let side_path = ext_path(path);
    let mut side_tmp = side_path.as_os_str().to_owned();
    side_tmp.push(".rebuild");
    let side_tmp = PathBuf::from(side_tmp);
    write_rebuilt(&side_tmp, capacity, &extents)?;
    // Both new files are complete and durable: the commit marker says so, and from here on
    // an interrupted rebuild is finished at open (`finish_rebuild`), never half applied.
    let marker = commit_marker(path);
    fs::write(&marker, b"")
        .map_err(|e| StoreError::io(&marker, "write rebuild commit marker", e))?;
    sync_dir(path)?;
    finish_rebuild(path)?;
    let msg = format!(
        "pools changed ({} -> {} records): {copied} used records kept, {} live lease(s) dropped",
        og.total,
        geo.total,
        lost.len()
    );
    tracing::info!(path = %path.display(), "{msg}");
    report.rebuilt = Some(msg);
    report.dropped_by_shrink = lost;
    Ok(())
}
