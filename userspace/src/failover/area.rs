//! The lease file's failover area, shared by a server's failover relationships.
//!
//! * The single `[failover]` form stores its 64-byte persisted state there alone, as it always
//!   did (`xdhcpd_failover::FailoverPersist`).
//! * `[[failover]]` relationships (N:1 backup) each keep theirs under their name:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 4 | magic `XFON` |
//! | 4 | 1 | number of entries (at most `MAX_RELATIONSHIPS`) |
//! | 5 | 3 | reserved (0) |
//! | 8 + 68 k | 4 | FNV-1a 32 of the relationship's name |
//! | 12 + 68 k | 64 | its persisted state (own checksum) |
//!
//! A lease file written in one form is read by the other: the single form finds its state
//! under its name, and a lone `[[failover]]` relationship takes a single-form state. Each
//! relationship's state carries its role, so the swapped-role guard works per relationship.

use std::sync::{Arc, Mutex};

use lease_store::{LeaseTable, StoreError};
use xdhcpd_failover::persist::PERSIST_LEN;

const MAGIC: [u8; 4] = *b"XFON";
const HEAD: usize = 8;
const ENTRY: usize = 4 + PERSIST_LEN;

/// FNV-1a 32 of a relationship name: its key in the area.
pub(crate) fn name_key(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in name.as_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// What the area held at start, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Found {
    Empty,
    /// One 64-byte state (the single form).
    Single(Vec<u8>),
    /// Named states.
    Named(Vec<(u32, [u8; PERSIST_LEN])>),
    /// Neither: the caller treats it as no state (a lost database).
    Unknown(usize),
}

fn parse(b: &[u8]) -> Found {
    if b.is_empty() {
        return Found::Empty;
    }
    if b.len() == PERSIST_LEN {
        return Found::Single(b.to_vec());
    }
    if b.len() < HEAD || b[0..4] != MAGIC {
        return Found::Unknown(b.len());
    }
    let n = usize::from(b[4]);
    if b.len() != HEAD + n * ENTRY {
        return Found::Unknown(b.len());
    }
    let mut v = Vec::with_capacity(n);
    for k in 0..n {
        let o = HEAD + k * ENTRY;
        let key = u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut rec = [0u8; PERSIST_LEN];
        rec.copy_from_slice(&b[o + 4..o + ENTRY]);
        v.push((key, rec));
    }
    Found::Named(v)
}

fn encode(entries: &[(u32, [u8; PERSIST_LEN])]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEAD + entries.len() * ENTRY);
    b.extend_from_slice(&MAGIC);
    b.push(entries.len() as u8);
    b.extend_from_slice(&[0; 3]);
    for (k, rec) in entries {
        b.extend_from_slice(&k.to_be_bytes());
        b.extend_from_slice(rec);
    }
    b
}

/// The failover area of one lease table and the relationships' states in it.
pub(crate) struct SharedArea {
    table: Arc<LeaseTable>,
    /// `[[failover]]` form: states stored by name.
    named: bool,
    /// Number of relationships configured (a lone one takes a single-form state).
    relationships: usize,
    found: Found,
    entries: Mutex<Vec<(u32, [u8; PERSIST_LEN])>>,
}

impl SharedArea {
    /// Reads the area. `named`: the `[[failover]]` form with `relationships` entries.
    pub(crate) fn open(table: Arc<LeaseTable>, named: bool, relationships: usize) -> Arc<Self> {
        let found = parse(&table.failover_area());
        let entries = match &found {
            Found::Named(v) if named => v.clone(),
            _ => Vec::new(),
        };
        Arc::new(SharedArea {
            table,
            named,
            relationships,
            found,
            entries: Mutex::new(entries),
        })
    }

    /// The persisted state of relationship `name` (empty: none on record). `Err`: what is on
    /// record cannot be this relationship's (logged by the caller; starts as a lost database).
    pub(crate) fn load(&self, name: &str) -> Result<Vec<u8>, String> {
        let key = name_key(name);
        match &self.found {
            Found::Empty => Ok(Vec::new()),
            Found::Single(b) if !self.named || self.relationships == 1 => Ok(b.clone()),
            Found::Single(_) => Err(format!(
                "the lease file holds the state of a single [failover] relationship, and this \
                 server has {} [[failover]] relationships: none can tell it is theirs",
                self.relationships
            )),
            Found::Named(v) => Ok(v
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, r)| r.to_vec())
                .unwrap_or_default()),
            Found::Unknown(len) => Err(format!(
                "the failover area holds {len} bytes in no known layout"
            )),
        }
    }

    /// Stores relationship `name`'s state durably (the other relationships' kept).
    pub(crate) fn store(&self, name: &str, rec: &[u8; PERSIST_LEN]) -> Result<(), StoreError> {
        if !self.named {
            return self.table.set_failover_area(rec);
        }
        let key = name_key(name);
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match g.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = *rec,
            None => g.push((key, *rec)),
        }
        // Under the lock: two relationships' writes cannot interleave their whole-area copies.
        self.table.set_failover_area(&encode(&g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lease_store::{OpenOptions, PoolSpec};
    use std::net::Ipv4Addr;

    fn table(dir: &std::path::Path) -> Arc<LeaseTable> {
        let pools = [PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 0, 1, 0),
            last: Ipv4Addr::new(10, 0, 1, 9),
        }];
        let (t, _) =
            LeaseTable::open(&dir.join("l.db"), &pools, &OpenOptions::default()).expect("open");
        Arc::new(t)
    }

    /// N:1: each relationship's state is kept under its name, across reopen; the single form
    /// still writes the plain 64-byte state, which a lone `[[failover]]` relationship takes.
    #[test]
    fn failover_n1_states_kept_apart_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = table(dir.path());
        let a = SharedArea::open(t.clone(), true, 2);
        assert_eq!(a.load("isc"), Ok(Vec::new()));
        a.store("isc", &[1; PERSIST_LEN]).expect("store");
        a.store("xd", &[2; PERSIST_LEN]).expect("store");
        a.store("isc", &[3; PERSIST_LEN]).expect("store");
        let b = SharedArea::open(t.clone(), true, 2);
        assert_eq!(b.load("isc"), Ok(vec![3; PERSIST_LEN]));
        assert_eq!(b.load("xd"), Ok(vec![2; PERSIST_LEN]));
        assert_eq!(b.load("other"), Ok(Vec::new()));
        // The single form over a named area finds its own state.
        assert_eq!(
            SharedArea::open(t.clone(), false, 1).load("xd"),
            Ok(vec![2; PERSIST_LEN])
        );
        // The single form writes 64 bytes, as before N:1.
        let s = SharedArea::open(t.clone(), false, 1);
        s.store("pair", &[4; PERSIST_LEN]).expect("store");
        assert_eq!(t.failover_area(), vec![4; PERSIST_LEN]);
        assert_eq!(
            SharedArea::open(t.clone(), true, 1).load("pair"),
            Ok(vec![4; PERSIST_LEN])
        );
        let err = SharedArea::open(t, true, 2).load("pair");
        assert!(err.is_err_and(|e| e.contains("2 [[failover]] relationships")));
    }
}
