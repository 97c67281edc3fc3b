//! The registration files: a snapshot (`PATH`) and an append log (`PATH.log`).
//!
//! Both files: a 20-byte header (8-byte magic, generation u64 LE, CRC-32 of those 16 bytes),
//! then records `len u32 LE | crc32(payload) u32 LE | payload`, the payload one JSON
//! transaction (a list of operations). A change is one record: written, `fdatasync`ed,
//! then applied to the index and acknowledged. So a bulk import is all or nothing: a
//! crash (kill -9, power cut) in the middle leaves a torn last record, which the next open
//! detects (short record or checksum mismatch at the end of the log), discards (the log is
//! cut back to the last whole record) and reports.
//!
//! A damaged record that is not the last one, or any damage in the snapshot (written to a
//! temporary file, synced, renamed), is an error that names the file and byte offset: the
//! store does not guess.
//!
//! Compaction writes the whole index as a new snapshot of generation g+1 and then a new
//! empty log of generation g+1 (each by temporary file, fsync, rename, directory fsync). A
//! log whose generation is older than the snapshot's is the one a crash between the two
//! renames left behind: its content is already in the snapshot, so it is ignored and
//! replaced. Files are created 0600; the log is locked (`flock`) so two daemons cannot
//! write the same store.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lease_store::ClientKey;
use serde::{Deserialize, Serialize};

use crate::index::Index;
use crate::record::{fmt_mac, hex, FieldError, Json, Registration, Selector};

const SNAP_MAGIC: &[u8; 8] = b"XDREGSN1";
const LOG_MAGIC: &[u8; 8] = b"XDREGLG1";
const HEADER: usize = 20;
/// Largest record accepted when reading (a 1,000,000-registration import is ~150 MB).
const MAX_RECORD: usize = 1 << 30;
/// Registrations per snapshot record.
const SNAP_CHUNK: usize = 10_000;

/// One operation of a transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Op {
    /// Add or replace (every registration sharing a key with it goes).
    Put(Json),
    /// Remove the registration a selector names.
    Remove(Selector),
    /// Remove everything (the start of a replacing import).
    Clear,
    /// Where a followed source (PostgreSQL) stands: the changes up to here are applied.
    Cursor(Cursor),
}

/// How far the changes of a followed source have been applied (kept in the same
/// transaction as the changes, so after a crash the two agree).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cursor {
    /// The source's identity (the PostgreSQL database's `xdhcpd_meta.instance`).
    pub source: String,
    /// The last change applied (its sequence number).
    pub seq: u64,
}

/// One change of a followed source: the registration as it was (its keys) and as it is
/// now (`None`: deleted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedChange {
    /// Sequence number (strictly increasing).
    pub seq: u64,
    /// The old row's MAC (`aa:bb:..`), if it had one (update, delete).
    pub old_mac: Option<String>,
    /// The old row's client id (hex), if it had one.
    pub old_client_id: Option<String>,
    /// The new row (insert, update).
    pub new: Option<Json>,
}

/// What applying changes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedReport {
    /// Changes applied.
    pub applied: usize,
    /// New rows refused (invalid); their old registration is removed, the rest applied.
    pub rejected: Vec<(u64, String)>,
}

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system error on a file.
    #[error("{file}: {what}: {source}")]
    Io {
        file: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A file's content is damaged or not a registration file.
    #[error("{file}: byte {offset}: {what}")]
    Corrupt {
        file: PathBuf,
        offset: u64,
        what: String,
    },
    /// The change was refused (nothing written).
    #[error("{0}")]
    Refused(FieldError),
    /// Another process holds the store.
    #[error("{0}: in use by another process")]
    Locked(PathBuf),
}

fn io(file: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let file = file.to_path_buf();
    move |source| StoreError::Io { file, what, source }
}

/// What opening found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Registrations loaded.
    pub registrations: usize,
    /// Log records replayed on top of the snapshot.
    pub log_records: usize,
    /// Bytes of a torn last log record cut off (0: none).
    pub torn_bytes: u64,
    /// A log older than the snapshot (left by a crash during compaction) was dropped.
    pub stale_log: bool,
}

/// What a bulk import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Registrations in the import.
    pub imported: usize,
    /// Existing registrations it replaced (same MAC or client id).
    pub replaced: usize,
    /// Existing registrations removed (replace mode: not in the import).
    pub removed: usize,
    /// Registrations now.
    pub total: usize,
}

/// The registration store: files plus the index the workers read.
pub struct Store {
    path: PathBuf,
    log_path: PathBuf,
    log: File,
    gen: u64,
    log_bytes: u64,
    snap_bytes: u64,
    index: Arc<Index>,
    /// Where a followed source stands (None: never followed one).
    cursor: Option<Cursor>,
    /// Log bytes allowed beyond twice the snapshot before compaction.
    compact_slack: u64,
    /// `PATH.lock`, held (flock) while the store is open.
    _lock: File,
}

impl Store {
    /// Opens (or creates) the store at `path` (snapshot) and `path.log`, loads it and
    /// compacts a non-empty log into a new snapshot.
    pub fn open(path: &Path) -> Result<(Store, OpenReport), StoreError> {
        let log_path = log_path_of(path);
        let lock_path = {
            let mut s = path.as_os_str().to_owned();
            s.push(".lock");
            PathBuf::from(s)
        };
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path, "opening the lock file"))?;
        lock(&lock_file, path)?;
        let index = Arc::new(Index::new());
        let mut cursor = None;
        let mut report = OpenReport::default();
        let (gen, snap_bytes) = match File::open(path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)
                    .map_err(io(path, "reading the snapshot"))?;
                let gen = read_header(path, &buf, SNAP_MAGIC)?;
                let (_, end) = replay(path, &buf, &index, &mut cursor, false)?;
                (gen, end as u64)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if log_path.exists() {
                    return Err(StoreError::Corrupt {
                        file: path.to_path_buf(),
                        offset: 0,
                        what: format!(
                            "missing, but its log {} exists (restore the snapshot or remove the log)",
                            log_path.display()
                        ),
                    });
                }
                let n = write_snapshot(path, 1, &index, None)?;
                (1, n)
            }
            Err(e) => return Err(io(path, "opening the snapshot")(e)),
        };
        let mut log_gen = None;
        let mut log_end = HEADER as u64;
        match File::open(&log_path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)
                    .map_err(io(&log_path, "reading the log"))?;
                let g = read_header(&log_path, &buf, LOG_MAGIC)?;
                if g > gen {
                    return Err(StoreError::Corrupt {
                        file: log_path.clone(),
                        offset: 8,
                        what: format!("generation {g} is newer than the snapshot's {gen}"),
                    });
                }
                if g == gen {
                    let (n, end) = replay(&log_path, &buf, &index, &mut cursor, true)?;
                    report.log_records = n;
                    report.torn_bytes = buf.len() as u64 - end as u64;
                    log_end = end as u64;
                    log_gen = Some(g);
                } else {
                    report.stale_log = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&log_path, "opening the log")(e)),
        }
        if log_gen.is_none() {
            write_empty_log(&log_path, gen)?;
        }
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io(&log_path, "opening the log"))?;
        if report.torn_bytes > 0 {
            log.set_len(log_end)
                .map_err(io(&log_path, "cutting the torn tail"))?;
            log.sync_all().map_err(io(&log_path, "syncing the log"))?;
        }
        report.registrations = index.len();
        let mut store = Store {
            path: path.to_path_buf(),
            log_path,
            log,
            gen,
            log_bytes: log_end,
            snap_bytes,
            index,
            cursor,
            compact_slack: 16 << 20,
            _lock: lock_file,
        };
        if report.log_records > 0 {
            store.compact()?;
        }
        Ok((store, report))
    }

    /// The index the workers read (shared; changes through the store appear in it).
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The snapshot's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `reg`, or replaces the registration(s) with its MAC or client id. Durable when
    /// it returns. Returns what it replaced.
    pub fn put(&mut self, reg: Registration) -> Result<Vec<Registration>, StoreError> {
        reg.validate().map_err(StoreError::Refused)?;
        if let Some(o) = self.index.address_taken(&reg) {
            return Err(StoreError::Refused(taken(&reg, &o)));
        }
        self.append(&[Op::Put(reg.to_json())])?;
        let old = self.index.put(reg);
        self.maybe_compact()?;
        Ok(old)
    }

    /// Changes the registration `sel` names: `reg` replaces it (its keys may differ).
    /// Refused when there is none.
    pub fn modify(
        &mut self,
        sel: &Selector,
        reg: Registration,
    ) -> Result<Registration, StoreError> {
        let key = sel.key().map_err(StoreError::Refused)?;
        let Some(old) = self.index.get(&key) else {
            return Err(StoreError::Refused(not_registered(sel)));
        };
        reg.validate().map_err(StoreError::Refused)?;
        if let Some(o) = self.index.address_taken(&reg).filter(|o| *o != old) {
            return Err(StoreError::Refused(taken(&reg, &o)));
        }
        let same_keys = old.keys().eq(reg.keys());
        let mut ops = Vec::with_capacity(2);
        if !same_keys {
            ops.push(Op::Remove(sel.clone()));
        }
        ops.push(Op::Put(reg.to_json()));
        self.append(&ops)?;
        // Put first: a key in both keeps answering throughout.
        self.index.put(reg);
        if !same_keys && self.index.get(&key).is_some_and(|r| r == old) {
            self.index.remove(&key);
        }
        self.maybe_compact()?;
        Ok(old)
    }

    /// Removes the registration `sel` names; returns it (None: there was none, nothing
    /// written).
    pub fn remove(&mut self, sel: &Selector) -> Result<Option<Registration>, StoreError> {
        let key = sel.key().map_err(StoreError::Refused)?;
        if self.index.get(&key).is_none() {
            return Ok(None);
        }
        self.append(&[Op::Remove(sel.clone())])?;
        let old = self.index.remove(&key);
        self.maybe_compact()?;
        Ok(old)
    }

    /// The registration `key` names.
    pub fn get(&self, key: &ClientKey) -> Option<Registration> {
        self.index.get(key)
    }

    /// Bulk import, one durable transaction. `replace`: the store holds exactly `regs`
    /// afterwards; else they are added (replacing registrations with the same MAC or client
    /// id). `regs` must be free of duplicates ([`crate::import::parse`] checks files).
    pub fn import(
        &mut self,
        regs: Vec<Registration>,
        replace: bool,
    ) -> Result<ImportReport, StoreError> {
        for r in &regs {
            r.validate().map_err(StoreError::Refused)?;
        }
        if !replace {
            // A fixed address held by a registration this import does not replace.
            let keys: std::collections::HashSet<ClientKey> =
                regs.iter().flat_map(|r| r.keys()).collect();
            for r in &regs {
                if let Some(o) = self.index.address_taken(r) {
                    if !o.keys().any(|k| keys.contains(&k)) {
                        return Err(StoreError::Refused(taken(r, &o)));
                    }
                }
            }
        }
        let mut ops = Vec::with_capacity(regs.len() + 1);
        if replace {
            ops.push(Op::Clear);
        }
        ops.extend(regs.iter().map(|r| Op::Put(r.to_json())));
        self.append(&ops)?;
        let mut rep = ImportReport {
            imported: regs.len(),
            ..Default::default()
        };
        if replace {
            let before = self.index.len();
            rep.removed = self.index.replace(&regs);
            rep.replaced = before - rep.removed;
        } else {
            for r in regs {
                rep.replaced += self.index.put(r).len();
            }
        }
        rep.total = self.index.len();
        self.maybe_compact()?;
        Ok(rep)
    }

    /// Where the followed source stands (None: never followed).
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Applies a followed source's changes in order, with the new cursor, as one durable
    /// transaction. The source is the truth: nothing is refused for conflicts (a later
    /// change wins, as it did there); a new row that is not a valid registration is
    /// reported and its old registration removed.
    pub fn apply_feed(
        &mut self,
        changes: &[FeedChange],
        cursor: Cursor,
    ) -> Result<FeedReport, StoreError> {
        let mut rep = FeedReport::default();
        // (remove, put) per change, decided before anything is written.
        let mut plan: Vec<(Option<Selector>, Option<Registration>)> =
            Vec::with_capacity(changes.len());
        for c in changes {
            let old = c
                .old_client_id
                .clone()
                .map(Selector::ClientId)
                .or(c.old_mac.clone().map(Selector::Mac));
            let new = match &c.new {
                None => None,
                Some(j) => match Registration::from_json(j).and_then(|r| r.validate().map(|_| r)) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        rep.rejected.push((c.seq, e.to_string()));
                        None
                    }
                },
            };
            // The old registration goes unless the new one shares a key with it (then
            // the put replaces it in place: no moment without a registration).
            let remove = old.filter(|sel| match (&new, sel.key()) {
                (Some(n), Ok(k)) => !n.keys().any(|nk| nk == k),
                _ => true,
            });
            plan.push((remove, new));
        }
        let mut ops = Vec::with_capacity(plan.len() + 1);
        for (rm, put) in &plan {
            if let Some(sel) = rm {
                ops.push(Op::Remove(sel.clone()));
            }
            if let Some(r) = put {
                ops.push(Op::Put(r.to_json()));
            }
        }
        ops.push(Op::Cursor(cursor.clone()));
        self.append(&ops)?;
        for (rm, put) in plan {
            if let Some(k) = rm.and_then(|sel| sel.key().ok()) {
                self.index.remove(&k);
            }
            if let Some(r) = put {
                self.index.put(r);
            }
            rep.applied += 1;
        }
        self.cursor = Some(cursor);
        self.maybe_compact()?;
        Ok(rep)
    }

    /// Makes the store hold exactly `regs` (a followed source's full load) with `cursor`,
    /// as one durable transaction. Invalid registrations are reported and left out.
    pub fn apply_full(
        &mut self,
        regs: Vec<(u64, Json)>,
        cursor: Cursor,
    ) -> Result<FeedReport, StoreError> {
        let mut rep = FeedReport::default();
        let mut ok = Vec::with_capacity(regs.len());
        for (row, j) in regs {
            match Registration::from_json(&j).and_then(|r| r.validate().map(|_| r)) {
                Ok(r) => ok.push(r),
                Err(e) => rep.rejected.push((row, e.to_string())),
            }
        }
        let mut ops = Vec::with_capacity(ok.len() + 2);
        ops.push(Op::Clear);
        ops.extend(ok.iter().map(|r| Op::Put(r.to_json())));
        ops.push(Op::Cursor(cursor.clone()));
        self.append(&ops)?;
        rep.applied = ok.len();
        self.index.replace(&ok);
        self.cursor = Some(cursor);
        // A full load replaces everything: start the next log from a snapshot of it.
        self.compact()?;
        Ok(rep)
    }

    /// Writes the index as a new snapshot and starts an empty log.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        let gen = self.gen + 1;
        self.snap_bytes = write_snapshot(&self.path, gen, &self.index, self.cursor.as_ref())?;
        write_empty_log(&self.log_path, gen)?;
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&self.log_path)
            .map_err(io(&self.log_path, "opening the log"))?;
        self.log = log;
        self.gen = gen;
        self.log_bytes = HEADER as u64;
        Ok(())
    }

    /// Appends one transaction and syncs it; on failure the log is cut back to where it
    /// was, so a later change does not follow a half-written record.
    fn append(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        let payload = serde_json::to_vec(ops).map_err(|e| StoreError::Corrupt {
            file: self.log_path.clone(),
            offset: self.log_bytes,
            what: format!("cannot encode the change: {e}"),
        })?;
        let rec = frame(&payload);
        let start = self.log_bytes;
        let r = write_at_end(&mut self.log, start, &rec).and_then(|_| self.log.sync_data());
        if let Err(e) = r {
            let _ = self.log.set_len(start);
            return Err(io(&self.log_path, "appending to the log")(e));
        }
        self.log_bytes += rec.len() as u64;
        Ok(())
    }

    /// Compacts a log grown past twice the snapshot (plus slack). Called once a change is
    /// in the index as well as in the log: the snapshot is written from the index, so
    /// compacting between the two would drop the change from both files.
    fn maybe_compact(&mut self) -> Result<(), StoreError> {
        if self.log_bytes > 2 * self.snap_bytes + self.compact_slack {
            self.compact()?;
        }
        Ok(())
    }

    /// Test hook: the log's slack before compaction (default 16 MiB).
    #[cfg(test)]
    pub(crate) fn set_compact_slack(&mut self, bytes: u64) {
        self.compact_slack = bytes;
    }
}

fn write_at_end(f: &mut File, at: u64, rec: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(at))?;
    f.write_all(rec)
}

fn taken(reg: &Registration, other: &Registration) -> FieldError {
    let who = other
        .mac
        .as_ref()
        .map(fmt_mac)
        .or(other
            .client_id
            .as_deref()
            .map(|c| format!("client-id {}", hex(c))))
        .unwrap_or_default();
    FieldError::new(
        "fixed-address",
        format!(
            "{} is the fixed address of {who}",
            reg.fixed_address.map(|a| a.to_string()).unwrap_or_default()
        ),
    )
}

fn not_registered(sel: &Selector) -> FieldError {
    match sel {
        Selector::Mac(m) => FieldError::new("mac", format!("{m} is not registered")),
        Selector::ClientId(c) => FieldError::new("client-id", format!("{c} is not registered")),
    }
}

/// `PATH.log`.
pub fn log_path_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".log");
    PathBuf::from(s)
}

fn header(magic: &[u8; 8], gen: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(magic);
    h[8..16].copy_from_slice(&gen.to_le_bytes());
    let c = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&c.to_le_bytes());
    h
}

fn read_header(file: &Path, buf: &[u8], magic: &[u8; 8]) -> Result<u64, StoreError> {
    let bad = |what: &str| StoreError::Corrupt {
        file: file.to_path_buf(),
        offset: 0,
        what: what.to_string(),
    };
    if buf.len() < HEADER {
        return Err(bad("shorter than the file header"));
    }
    if &buf[..8] != magic {
        return Err(bad("not an xdhcpd registration file of this kind (magic)"));
    }
    let c = u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]);
    if crc32fast::hash(&buf[..16]) != c {
        return Err(bad("header checksum mismatch"));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&buf[8..16]);
    Ok(u64::from_le_bytes(g))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(8 + payload.len());
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    rec.extend_from_slice(payload);
    rec
}

/// Applies every record of `buf` (after the header) to `index`. `tolerate_torn_tail`: a
/// damaged *last* record ends the replay (its start is returned as the end); else it is an
/// error. Returns (records applied, end offset of the last whole record).
fn replay(
    file: &Path,
    buf: &[u8],
    index: &Index,
    cursor: &mut Option<Cursor>,
    tolerate_torn_tail: bool,
) -> Result<(usize, usize), StoreError> {
    let mut at = HEADER;
    let mut n = 0;
    while at < buf.len() {
        let corrupt = |what: String| StoreError::Corrupt {
            file: file.to_path_buf(),
            offset: at as u64,
            what,
        };
        let rest = &buf[at..];
        let whole = rest.len() >= 8;
        let len = if whole {
            u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize
        } else {
            0
        };
        if !whole || len > MAX_RECORD || 8 + len > rest.len() {
            // Short: only the end of the log can be torn this way.
            if tolerate_torn_tail && (!whole || 8 + len > rest.len()) {
                return Ok((n, at));
            }
            return Err(corrupt(format!(
                "record of {len} bytes does not fit ({} bytes left)",
                rest.len()
            )));
        }
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let payload = &rest[8..8 + len];
        if crc32fast::hash(payload) != crc {
            if tolerate_torn_tail && at + 8 + len == buf.len() {
                return Ok((n, at));
            }
            return Err(corrupt("record checksum mismatch".into()));
        }
        let ops: Vec<Op> = serde_json::from_slice(payload)
            .map_err(|e| corrupt(format!("record does not decode: {e}")))?;
        for op in ops {
            match op {
                Op::Put(j) => {
                    let r = Registration::from_json(&j)
                        .map_err(|e| corrupt(format!("registration: {e}")))?;
                    index.put(r);
                }
                Op::Remove(sel) => {
                    let k = sel.key().map_err(|e| corrupt(format!("remove: {e}")))?;
                    index.remove(&k);
                }
                Op::Clear => {
                    index.replace(&[]);
                }
                Op::Cursor(c) => *cursor = Some(c),
            }
        }
        n += 1;
        at += 8 + len;
    }
    Ok((n, at))
}

fn create_tmp(path: &Path) -> Result<(PathBuf, File), StoreError> {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    let tmp = PathBuf::from(s);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp, "creating"))?;
    Ok((tmp, f))
}

fn install(tmp: &Path, f: File, path: &Path) -> Result<(), StoreError> {
    f.sync_all().map_err(io(tmp, "syncing"))?;
    drop(f);
    std::fs::rename(tmp, path).map_err(io(path, "renaming into place"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir, "syncing the directory"))
}

fn write_snapshot(
    path: &Path,
    gen: u64,
    index: &Index,
    cursor: Option<&Cursor>,
) -> Result<u64, StoreError> {
    let (tmp, f) = create_tmp(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut n = HEADER as u64;
    w.write_all(&header(SNAP_MAGIC, gen))
        .map_err(io(&tmp, "writing"))?;
    if let Some(c) = cursor {
        let payload =
            serde_json::to_vec(&[Op::Cursor(c.clone())]).map_err(|e| StoreError::Corrupt {
                file: tmp.clone(),
                offset: n,
                what: format!("cannot encode: {e}"),
            })?;
        let rec = frame(&payload);
        w.write_all(&rec).map_err(io(&tmp, "writing"))?;
        n += rec.len() as u64;
    }
    let all = index.all();
    for chunk in all.chunks(SNAP_CHUNK) {
        let ops: Vec<Op> = chunk.iter().map(|r| Op::Put(r.to_json())).collect();
        let payload = serde_json::to_vec(&ops).map_err(|e| StoreError::Corrupt {
            file: tmp.clone(),
            offset: n,
            what: format!("cannot encode: {e}"),
        })?;
        let rec = frame(&payload);
        w.write_all(&rec).map_err(io(&tmp, "writing"))?;
        n += rec.len() as u64;
    }
    let f = w
        .into_inner()
        .map_err(|e| io(&tmp, "writing")(e.into_error()))?;
    install(&tmp, f, path)?;
    Ok(n)
}

fn write_empty_log(path: &Path, gen: u64) -> Result<(), StoreError> {
    let (tmp, mut f) = create_tmp(path)?;
    f.write_all(&header(LOG_MAGIC, gen))
        .map_err(io(&tmp, "writing"))?;
    install(&tmp, f, path)
}

fn lock(f: &File, path: &Path) -> Result<(), StoreError> {
    // SAFETY: flock on a file descriptor this `File` owns for the call's duration.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(StoreError::Locked(path.to_path_buf()));
    }
    Ok(())
}
