//! Crash-safe memory-mapped DHCPv4 lease table for xdhcpd.
//!
//! One fixed-size record (128 bytes) per address of every configured pool,
//! in a memory-mapped file behind a header (magic, version, geometry, and a
//! double-buffered failover area). Worker threads share one [`LeaseTable`]:
//! records change under a per-record sequence lock, client lookups go
//! through a concurrent index, and free addresses sit on per-(pool, shard,
//! owner) lists, so the per-packet path takes no table-wide lock and does
//! not allocate.
//!
//! Durability: an update is in the page cache when `update` returns (it
//! survives the process being killed); it is on stable storage after
//! [`LeaseTable::flush_set`] (the records of one batch) or
//! [`LeaseTable::flush`] (everything). With a write-ahead log
//! (`OpenOptions::wal`), every change is also staged for the log and
//! [`LeaseTable::commit`] makes everything so far durable with one small
//! sequential append and `fdatasync`; [`LeaseTable::checkpoint`] writes the
//! table back and drops the log before that point; open replays the log.
//! Commit modes are built from these: "ack" = a log `commit` before the
//! replies of a batch leave, "interval" = a thread calling `flush` every N ms.
//!
//! Integrity: every record carries a CRC; at open a record with a bad CRC
//! (or one left mid-write with a bad CRC) is quarantined and reported, a
//! record left mid-write whose CRC is still valid is kept and reported.
//! Header problems (magic, version, record size, checksum, truncation) are
//! errors naming the file. [`FileHeader::read`] makes the same checks on a
//! file without opening the table (no lock, nothing written), for tools that
//! want to know a file's pools first.

mod crc32c;
mod error;
mod header;
mod identity;
mod lease;
mod read_only;
mod slot_words;
mod table;
pub mod v6;

pub use error::{LostLease, StoreError};
pub use header::{FileHeader, PoolSpec, FAILOVER_CAPACITY};
pub use lease::{
    ClientKey, KeyKind, Lease, LeaseState, Owner, VarData, VarParts, VarRef, EXPIRY_PERMANENT,
    EXT_CHUNKS, FLAG_BOOTP, FLAG_QUARANTINED, FLAG_RECONFIGURING, FLAG_RECONF_KEY,
    INLINE_RELAY_AGENT_INFO_MAX, KEY_MAX, RECORD_SIZE, RELAY_AGENT_INFO_MAX, VAR_DATA_MAX,
};
pub use read_only::ReadOnlyTable;
pub use slot_words::{SlotWords, SlotWordsOpen};
pub use table::{
    default_wal_bytes, ext_path, unix_now, wal_path, Alloc, ChangeHook, DirtySet, GrowError,
    GrowReport, LeaseTable, OpenOptions, OpenReport, PoolStats, Slot, SweepResult, VarEdit,
    WalStats, COMMIT_LATENCY_BOUNDS_US, DEFAULT_WAL_BYTES, MAX_ENTRY, MAX_HOOKS, MIN_WAL_BYTES,
};

/// Current on-disk format version.
pub const FORMAT_VERSION: u32 = header::VERSION;
