//! Duplicate-address detection shared by all loadgen threads.
//!
//! A duplicate is an address ACKed to client A while it is still bound to a
//! different client B (B's lease has not expired and B has not released it
//! or moved to another address). Two flat tables, no locks, no allocation
//! after construction:
//!
//! * `bound[c]`: the address client `c` holds now (0 = none) and its expiry
//!   (seconds since the run started), packed in one atomic word;
//! * `owner`: an open-addressing table (linear probing) from address to the
//!   client that was ACKed it last, one atomic word per slot:
//!   `addr << 32 | (client + 1)`; 0 = empty. Entries are never removed: an
//!   owner that has since moved on is recognised through `bound`.
//!
//! Threads touch disjoint clients' `bound` words; `owner` slots are updated
//! with compare-and-swap. With several threads a duplicate racing within a
//! few nanoseconds could be missed; a single thread sees every one.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct AddrBook {
    bound: Box<[AtomicU64]>,
    owner: Box<[AtomicU64]>,
    mask: usize,
    /// ACKs not tracked because the owner table was full.
    overflow: AtomicU64,
}

/// What [`AddrBook::ack`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckCheck {
    Fresh,
    /// The address is still bound to this other client.
    Duplicate {
        other: u32,
    },
    /// Not checked (owner table full or client index out of range).
    Untracked,
}

fn pack(addr: u32, expiry_s: u32) -> u64 {
    u64::from(addr) << 32 | u64::from(expiry_s)
}

impl AddrBook {
    /// Room for `clients` clients and 4 × `clients` distinct addresses (at
    /// least 4096).
    pub fn new(clients: usize) -> Self {
        let slots = (clients.saturating_mul(4)).max(4096).next_power_of_two();
        AddrBook {
            bound: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            owner: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            mask: slots - 1,
            overflow: AtomicU64::new(0),
        }
    }

    /// Records an ACK of `addr` to `client`, valid until `expiry_s`, at time
    /// `now_s` (both seconds since the run started), and says whether the
    /// address is still held by another client.
    pub fn ack(&self, client: u32, addr: Ipv4Addr, now_s: u32, expiry_s: u32) -> AckCheck {
        let Some(slot) = self.bound.get(client as usize) else {
            return AckCheck::Untracked;
        };
        let a = u32::from(addr);
        slot.store(pack(a, expiry_s), Relaxed);
        let entry = u64::from(a) << 32 | (u64::from(client) + 1);
        // Fibonacci hashing spreads consecutive addresses over the table.
        let mut i = (a.wrapping_mul(0x9e37_79b9) as usize) & self.mask;
        for _ in 0..=self.mask {
            let cur = self.owner[i].load(Relaxed);
            if cur == 0 {
                match self.owner[i].compare_exchange(0, entry, Relaxed, Relaxed) {
                    Ok(_) => return AckCheck::Fresh,
                    // Someone took the slot: look at it again.
                    Err(now) if now >> 32 != u64::from(a) => {
                        i = (i + 1) & self.mask;
                        continue;
                    }
                    Err(_) => {}
                }
            } else if cur >> 32 != u64::from(a) {
                i = (i + 1) & self.mask;
                continue;
            }
            let prev = self.owner[i].swap(entry, Relaxed);
            let prev_client = (prev & 0xffff_ffff) as u32;
            if prev_client == 0 || prev_client - 1 == client {
                return AckCheck::Fresh;
            }
            let other = prev_client - 1;
            let held = self.bound.get(other as usize).map(|b| b.load(Relaxed));
            return match held {
                Some(h) if (h >> 32) as u32 == a && now_s < (h & 0xffff_ffff) as u32 => {
                    AckCheck::Duplicate { other }
                }
                _ => AckCheck::Fresh,
            };
        }
        self.overflow.fetch_add(1, Relaxed);
        AckCheck::Untracked
    }

    /// The client gave its address back (RELEASE, NAK).
    pub fn release(&self, client: u32) {
        if let Some(slot) = self.bound.get(client as usize) {
            slot.store(0, Relaxed);
        }
    }

    /// The address `client` holds now, if any.
    pub fn bound(&self, client: u32) -> Option<Ipv4Addr> {
        let h = self.bound.get(client as usize)?.load(Relaxed);
        let a = (h >> 32) as u32;
        (a != 0).then(|| Ipv4Addr::from(a))
    }

    /// Number of distinct clients currently holding an address.
    pub fn bound_count(&self) -> usize {
        self.bound
            .iter()
            .filter(|b| b.load(Relaxed) >> 32 != 0)
            .count()
    }

    /// Number of distinct addresses currently held (sorts a copy: for the
    /// end-of-run report, not the hot path).
    pub fn distinct_bound_addresses(&self) -> usize {
        let mut v: Vec<u32> = self
            .bound
            .iter()
            .map(|b| (b.load(Relaxed) >> 32) as u32)
            .filter(|a| *a != 0)
            .collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    }

    pub fn overflow(&self) -> u64 {
        self.overflow.load(Relaxed)
    }
}
