//! Helpers shared by the lease table's behaviour tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use lease_store::*;

pub const NOW: u32 = 1_800_000_000;

pub fn pool(id: u32, a: [u8; 4], b: [u8; 4]) -> PoolSpec {
    PoolSpec {
        id,
        first: Ipv4Addr::from(a),
        last: Ipv4Addr::from(b),
    }
}

pub fn opts(shards: usize) -> OpenOptions {
    OpenOptions {
        shards,
        now: NOW,
        ..OpenOptions::default()
    }
}

pub fn key(n: u32) -> ClientKey {
    ClientKey::from_client_id(&[1, 0x02, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8])
}

/// Offers `slot` to client `n` the way the engine would.
pub fn offer(l: &mut Lease, n: u32, now: u32) {
    l.state = LeaseState::Offered;
    l.client = key(n);
    l.htype = 1;
    l.hlen = 6;
    l.chaddr = [0; 16];
    l.chaddr[..4].copy_from_slice(&n.to_be_bytes());
    l.start = now;
    l.expiry = now + 60;
}

pub fn ack(l: &mut Lease, now: u32, secs: u32) {
    l.state = LeaseState::Active;
    l.cltt = now;
    l.expiry = now + secs;
    l.lease_time = secs;
}

pub fn small_pools() -> Vec<PoolSpec> {
    vec![pool(1, [10, 0, 0, 10], [10, 0, 0, 109])]
}

pub fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("leases.db")
}

pub fn patch(path: &Path, off: u64, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

pub fn peek(path: &Path, off: u64, n: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut b = vec![0; n];
    f.read_exact(&mut b).unwrap();
    b
}

/// A tiny deterministic RNG for the randomized tests.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
