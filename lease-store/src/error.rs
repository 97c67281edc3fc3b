//! Errors. Every message names the lease file (or the configuration) and what is wrong.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::lease::{ClientKey, LeaseState};

/// A lease that a configuration change would drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostLease {
    pub addr: Ipv4Addr,
    pub state: LeaseState,
    pub client: ClientKey,
    pub expiry: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system call on the lease file failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Another process holds the lease file.
    #[error(
        "{}: locked by another process (another xdhcpd is using this lease file)",
        path.display()
    )]
    Locked { path: PathBuf },
    /// The file is not a lease file this build can read, or is damaged beyond per-record repair.
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// The configured pools are unusable (overlap, reversed range, duplicate id, too many addresses).
    #[error("lease store pools: {0}")]
    Pools(String),
    /// Shrinking or removing pools would drop live leases and `allow_shrink` is off.
    #[error(
        "{}: the configured pools no longer contain {count} address(es) with live leases: {}{}; \
         restore those ranges or allow the shrink explicitly",
        path.display(),
        list_lost(first),
        if *count > first.len() as u64 { ", ..." } else { "" }
    )]
    Shrink {
        path: PathBuf,
        count: u64,
        first: Vec<LostLease>,
    },
    /// The write-ahead log beside the table file belongs to another table file (its
    /// identity differs) and still holds changes: they are never applied to this file.
    #[error(
        "{}: the write-ahead log {} belongs to another table file (the log names table \
         identity {log_id}, this file's identity is {table_id}) and holds {entries} change(s) \
         that must not be applied to this file; nothing was changed. If this file was meant to \
         start anew (the old one deleted or replaced on purpose), move the log away (e.g. `mv \
         {} {}.stale`) and start again; if the log's own table file was deleted or replaced by \
         mistake, put that file back",
        table.display(),
        log.display(),
        log.display(),
        log.display()
    )]
    ForeignLog {
        table: PathBuf,
        log: PathBuf,
        entries: u64,
        log_id: String,
        table_id: String,
    },
    /// The failover area payload is larger than the reserved space.
    #[error("failover state is {len} bytes, the lease file reserves {cap}")]
    FailoverAreaTooLarge { len: usize, cap: usize },
}

fn list_lost(v: &[LostLease]) -> String {
    v.iter()
        .map(|l| format!("{} ({} {}, expiry {})", l.addr, l.state, l.client, l.expiry))
        .collect::<Vec<_>>()
        .join(", ")
}

impl StoreError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
    pub(crate) fn format(path: &std::path::Path, msg: impl Into<String>) -> Self {
        StoreError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}
