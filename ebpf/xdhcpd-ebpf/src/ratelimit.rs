//! Per-client (chaddr) and per-relay (giaddr) token buckets for DHCPv4 requests.
//!
//! Each bucket is a GCRA (generic cell rate algorithm): one u64 per key, the bucket's
//! theoretical arrival time in ns. A request is admitted when that time is at most `tau`
//! ahead of now, and admitting moves it `interval` further. Keys live in LRU hashes, so a
//! flood of new keys evicts the least recently seen buckets instead of failing inserts. The
//! read-modify-write is not atomic across CPUs: two CPUs hitting one bucket at the same
//! instant may both admit, which only makes the limit slightly generous.
//!
//! Cost per request with a limit on: one clock read and one or two LRU lookups. With every
//! limit off (`RATE_LIMITS` all zero): one array lookup.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LruHashMap},
    programs::XdpContext,
};
use xdhcpd_common::{ClientBucketKey, RateLimitConfig, RelayBucketKey};

use crate::ptr_at;

/// Index 0: `RateLimitConfig`. All zero (no limit) until userspace writes it.
#[map]
static RATE_LIMITS: Array<RateLimitConfig> = Array::with_max_entries(1, 0);

/// chaddr -> GCRA time. Sized for the clients active within a few seconds of each other.
#[map]
static CLIENT_BUCKETS: LruHashMap<ClientBucketKey, u64> = LruHashMap::with_max_entries(65_536, 0);

/// giaddr -> GCRA time.
#[map]
static RELAY_BUCKETS: LruHashMap<RelayBucketKey, u64> = LruHashMap::with_max_entries(4_096, 0);

const _: () = assert!(crate::str_eq(xdhcpd_common::MAP_RATE_LIMITS, "RATE_LIMITS"));
const _: () = assert!(crate::str_eq(
    xdhcpd_common::MAP_CLIENT_BUCKETS,
    "CLIENT_BUCKETS"
));
const _: () = assert!(crate::str_eq(
    xdhcpd_common::MAP_RELAY_BUCKETS,
    "RELAY_BUCKETS"
));

/// The BOOTP fields up to the first six bytes of chaddr (RFC 2131 figure 1).
#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct BootpIds {
    op: u8,
    htype: u8,
    hlen: u8,
    hops: u8,
    xid_secs_flags: [u8; 8],
    ciaddr_yiaddr_siaddr: [u8; 12],
    giaddr: [u8; 4],
    chaddr: [u8; 6],
}

/// Why a request was refused.
pub(crate) enum Limited {
    Client,
    Relay,
}

/// Checks the DHCPv4 message at `bootp` (offset of the BOOTP header) against the buckets.
/// A message too short for the fields is admitted: userspace counts and drops it.
#[inline(always)]
pub(crate) fn check(ctx: &XdpContext, bootp: usize) -> Result<(), Limited> {
    let Some(cfg) = RATE_LIMITS.get(0) else {
        return Ok(());
    };
    let cfg = *cfg;
    if cfg.client_interval_ns == 0 && cfg.relay_interval_ns == 0 {
        return Ok(());
    }
    let Some(m) = ptr_at::<BootpIds>(ctx, bootp) else {
        return Ok(());
    };
    // SAFETY: bounds checked by ptr_at.
    let (hlen, giaddr, chaddr) = unsafe { ((*m).hlen, (*m).giaddr, (*m).chaddr) };
    // SAFETY: a helper without arguments or side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    if cfg.relay_interval_ns != 0 && giaddr != [0; 4] {
        let key: RelayBucketKey = u32::from_ne_bytes(giaddr);
        if !admit(
            &RELAY_BUCKETS,
            &key,
            now,
            cfg.relay_interval_ns,
            cfg.relay_tau_ns,
        ) {
            return Err(Limited::Relay);
        }
    }
    if cfg.client_interval_ns != 0 {
        let key: ClientBucketKey = u64::from_le_bytes([
            chaddr[0], chaddr[1], chaddr[2], chaddr[3], chaddr[4], chaddr[5], hlen, 0,
        ]);
        if !admit(
            &CLIENT_BUCKETS,
            &key,
            now,
            cfg.client_interval_ns,
            cfg.client_tau_ns,
        ) {
            return Err(Limited::Client);
        }
    }
    Ok(())
}

/// One GCRA step on the bucket of `key`; `true` = admitted.
#[inline(always)]
fn admit<K>(map: &LruHashMap<K, u64>, key: &K, now: u64, interval: u64, tau: u64) -> bool {
    match map.get_ptr_mut(key) {
        Some(slot) => {
            // SAFETY: a live map value of this CPU's lookup; a concurrent writer on another
            // CPU can only make the limit more generous (module docs).
            let tat = unsafe { *slot };
            let tat = if tat < now { now } else { tat };
            if tat - now > tau {
                return false;
            }
            // SAFETY: as above.
            unsafe { *slot = tat + interval };
            true
        }
        None => {
            // A full LRU evicts; an insert can only fail on memory pressure: admit anyway.
            let _ = map.insert(key, now + interval, 0);
            true
        }
    }
}
