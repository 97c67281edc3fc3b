//! Bytes per registration in memory at 1,000,000 registrations: builds the index the
//! workers read (`xdhcpd_registrations::Index`) and counts the heap bytes it holds with a
//! counting allocator (live bytes after minus before), for two kinds of record: a MAC and a
//! group only, and a typical provisioned device (MAC, group, fixed address, host-name, boot
//! file). Also prints the insert time.
//!
//! Usage: `registration_memory`. Prints one result line per kind.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Instant;

use xdhcpd_benches::client_mac;
use xdhcpd_registrations::{Index, Registration};

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as i64 - l.size() as i64, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: u64 = 1_000_000;

fn measure(kind: &str, make: impl Fn(u64) -> Registration) {
    let before = LIVE.load(Relaxed);
    let t = Instant::now();
    let index = Index::new();
    for n in 0..N {
        index.put(make(n));
    }
    let took = t.elapsed();
    let bytes = LIVE.load(Relaxed) - before;
    println!(
        "{kind}: {} registrations, {} heap bytes, {:.0} bytes/registration, inserted in {:.2?} ({:.0} ns each)",
        index.len(),
        bytes,
        bytes as f64 / N as f64,
        took,
        took.as_nanos() as f64 / N as f64
    );
    drop(index);
}

fn main() {
    measure("mac+group", |n| Registration {
        mac: Some(client_mac(n)),
        client_id: None,
        group: "cpe".into(),
        fixed_address: None,
        host_name: None,
        next_server: None,
        boot_file: None,
        options: Default::default(),
    });
    measure("mac+group+fixed+host-name+boot-file", |n| Registration {
        mac: Some(client_mac(n)),
        client_id: None,
        group: "modem".into(),
        fixed_address: Some(Ipv4Addr::from(0x0a00_0000 + n as u32)),
        host_name: Some(format!("cm-{n:06x}")),
        next_server: None,
        boot_file: Some("docsis31.cfg".into()),
        options: Default::default(),
    });
}
