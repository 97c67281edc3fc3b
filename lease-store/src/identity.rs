//! The identity of a table file, and the check that a write-ahead log belongs to it.
//!
//! Every table file gets a random identity when it is created (files of older versions get
//! one at their first open by this version, after their log was replayed and restarted). The
//! log's header carries the identity of the table it belongs to. At open, a log whose
//! identity differs from the table's is never replayed: its changes were made to another
//! file (the table was deleted and created anew, or replaced by another file or a backup),
//! and applying them would write bindings into records that never held them. When such a log
//! still holds entries the open fails, naming both files (see [`StoreError::ForeignLog`]);
//! a mismatched log without entries is simply restarted.
//!
//! The lease table keeps 96 bits of identity (bytes 52..64 of its header, zero in older
//! files, under the header checksum); the DHCPv6 binding file 128 bits. In a log header both
//! take the same 16-byte field (the lease table's with 4 zero bytes at the end).

use std::hash::{BuildHasher, Hasher};
use std::path::Path;

use crate::error::StoreError;

/// A table's identity as a log header carries it (never all zeros).
pub(crate) type TableId = [u8; 16];

/// The identity in `raw` (a header field); all zeros is none (a file of an older version).
pub(crate) fn id_of(raw: &[u8]) -> Option<TableId> {
    let mut id = [0u8; 16];
    let n = raw.len().min(16);
    id[..n].copy_from_slice(&raw[..n]);
    id.iter().any(|&b| b != 0).then_some(id)
}

/// A new random identity of which the first `bytes` are used (12 for the lease table, 16
/// for the v6 binding file); never all zeros.
pub(crate) fn new_id(bytes: usize) -> TableId {
    let mut id = [0u8; 16];
    let n = bytes.min(16);
    loop {
        fill_random(&mut id[..n]);
        if id.iter().any(|&b| b != 0) {
            return id;
        }
    }
}

fn fill_random(buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length describe the writable rest of `buf`.
        let r = unsafe {
            libc::getrandom(
                buf[got..].as_mut_ptr().cast::<libc::c_void>(),
                buf.len() - got,
                0,
            )
        };
        if r > 0 {
            got += r as usize;
        } else if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            break;
        }
    }
    if got < buf.len() {
        // No getrandom(2): the standard library's randomly keyed hasher, fed the time.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, chunk) in buf.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(t);
            h.write_usize(i);
            h.write_u32(std::process::id());
            let v = h.finish().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Hex form of an identity for messages (`-` for none).
pub(crate) fn show(id: Option<TableId>) -> String {
    match id {
        None => "none (a file of an older version)".to_string(),
        Some(id) => id.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// What a log found at open means for the table with identity `table` (None: an older file
/// without one): Ok when the log may be replayed (same identity, or both of an older
/// version), or when it holds nothing to replay (it is restarted); otherwise the error.
/// `log_id` is the log header's identity (None: a log of an older version), `entries` the
/// valid entries it holds.
pub(crate) fn check_log(
    table_path: &Path,
    log_path: &Path,
    table: Option<TableId>,
    log_id: Option<TableId>,
    entries: u64,
) -> Result<(), StoreError> {
    if log_id == table || entries == 0 {
        if log_id != table {
            tracing::warn!(
                table = %table_path.display(),
                log = %log_path.display(),
                "write-ahead log of another table file (identity {}, the file's {}) holds no \
                 entries: restarted for this file",
                show(log_id),
                show(table)
            );
        }
        return Ok(());
    }
    Err(StoreError::ForeignLog {
        table: table_path.to_path_buf(),
        log: log_path.to_path_buf(),
        entries,
        log_id: show(log_id),
        table_id: show(table),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_differ_and_are_never_zero() {
        let a = new_id(12);
        let b = new_id(12);
        assert_ne!(a, b);
        assert_eq!(a[12..], [0; 4], "a 12-byte identity leaves the rest zero");
        assert!(id_of(&a[..12]).is_some());
        assert_eq!(id_of(&[0; 12]), None);
        assert_eq!(id_of(&a[..12]), Some(a));
        let c = new_id(16);
        assert_eq!(id_of(&c), Some(c));
    }
}
