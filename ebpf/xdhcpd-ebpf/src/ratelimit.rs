//! Per-client (chaddr), per-relay (giaddr) and per-circuit (giaddr + the circuit-id of
//! option 82) token buckets for DHCPv4 requests.
//!
//! Each bucket is a GCRA (generic cell rate algorithm): one u64 per key, the bucket's
//! theoretical arrival time in ns. A request is admitted when that time is at most `tau`
//! ahead of now, and admitting moves it `interval` further. Keys live in LRU hashes, so a
//! flood of new keys evicts the least recently seen buckets instead of failing inserts. The
//! read-modify-write is not atomic across CPUs: two CPUs hitting one bucket at the same
//! instant may both admit, which only makes the limit slightly generous.
//!
//! Cost per request with a limit on: one clock read and one LRU lookup per bucket (the
//! circuit bucket also walks the options to option 82: at most `MAX_OPTIONS_WALKED`). With
//! every limit off (`RATE_LIMITS` all zero): one array lookup.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, LruHashMap},
    programs::XdpContext,
};
use xdhcpd_common::{
    CircuitBucketKey, ClientBucketKey, RateLimitConfig, RelayBucketKey, CIRCUIT_KEY_BYTES,
};

use crate::ptr_at;

/// Index 0: `RateLimitConfig`. All zero (no limit) until userspace writes it.
#[map]
static RATE_LIMITS: Array<RateLimitConfig> = Array::with_max_entries(1, 0);

/// chaddr -> GCRA time. Sized for the clients active within a few seconds of each other.
#[map]
static CLIENT_BUCKETS: LruHashMap<ClientBucketKey, u64> = LruHashMap::with_max_entries(65_536, 0);

/// Relay (the IPv4 source of a message with giaddr set) -> GCRA time.
#[map]
static RELAY_BUCKETS: LruHashMap<RelayBucketKey, u64> = LruHashMap::with_max_entries(4_096, 0);

/// (relay, circuit-id) -> GCRA time.
#[map]
static CIRCUIT_BUCKETS: LruHashMap<CircuitBucketKey, u64> = LruHashMap::with_max_entries(65_536, 0);

/// DHCP options looked at before option 82 (relays append it last, RFC 3046 §2.1); a
/// message with more in front of it is not limited per circuit.
const MAX_OPTIONS_WALKED: u32 = 24;
/// Offset of the first option in a BOOTP message (after the magic cookie).
const BOOTP_OPTIONS: usize = 240;
const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
const OPT_RELAY_AGENT_INFO: u8 = 82;
const SUBOPT_CIRCUIT_ID: u8 = 1;

const _: () = assert!(crate::str_eq(xdhcpd_common::MAP_RATE_LIMITS, "RATE_LIMITS"));
const _: () = assert!(crate::str_eq(
    xdhcpd_common::MAP_CIRCUIT_BUCKETS,
    "CIRCUIT_BUCKETS"
));
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
    Circuit,
}

/// Checks the DHCPv4 message at `bootp` (offset of the BOOTP header), sent from IPv4 address
/// `src`, against the buckets. A message too short for the fields is admitted: userspace
/// counts and drops it.
///
/// A relayed message (giaddr set) is charged to the relay that *sent* it, `src`, not to
/// giaddr: a relay forwards a client's message with a giaddr already set unchanged (RFC 1542
/// 4.1.1), so keying on giaddr would let a client behind one relay drain another relay's
/// bucket. Circuits likewise: (sender, circuit-id).
#[inline(always)]
pub(crate) fn check(ctx: &XdpContext, bootp: usize, src: [u8; 4]) -> Result<(), Limited> {
    let Some(cfg) = RATE_LIMITS.get(0) else {
        return Ok(());
    };
    let cfg = *cfg;
    if cfg.client_interval_ns == 0 && cfg.relay_interval_ns == 0 && cfg.circuit_interval_ns == 0 {
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
        let key: RelayBucketKey = u32::from_ne_bytes(src);
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
    if cfg.circuit_interval_ns != 0 && giaddr != [0; 4] {
        if let Some(key) = circuit_key(ctx, bootp, src) {
            if !admit(
                &CIRCUIT_BUCKETS,
                &key,
                now,
                cfg.circuit_interval_ns,
                cfg.circuit_tau_ns,
            ) {
                return Err(Limited::Circuit);
            }
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

/// The circuit bucket's key of a relayed message: the relay's address and the circuit-id
/// sub-option of option 82 (first or second sub-option), `None` without one.
#[inline(always)]
fn circuit_key(ctx: &XdpContext, bootp: usize, relay: [u8; 4]) -> Option<CircuitBucketKey> {
    let mut off = bootp + BOOTP_OPTIONS;
    let mut walked = 0;
    let mut value = None;
    while walked < MAX_OPTIONS_WALKED {
        let h = ptr_at::<[u8; 2]>(ctx, off)?;
        // SAFETY: bounds checked by ptr_at.
        let (code, len) = unsafe { ((*h)[0], (*h)[1]) };
        if code == OPT_END {
            return None;
        }
        if code == OPT_PAD {
            off += 1;
        } else if code == OPT_RELAY_AGENT_INFO {
            value = Some(off + 2);
            break;
        } else {
            off += 2 + usize::from(len);
        }
        walked += 1;
    }
    let mut sub = value?;
    // The circuit-id is normally the first sub-option; look at two.
    let mut i = 0;
    while i < 2 {
        let h = ptr_at::<[u8; 2]>(ctx, sub)?;
        // SAFETY: bounds checked by ptr_at.
        let (code, len) = unsafe { ((*h)[0], (*h)[1]) };
        if code == SUBOPT_CIRCUIT_ID {
            return Some(key_of(ctx, relay, sub + 2, usize::from(len)));
        }
        sub += 2 + usize::from(len);
        i += 1;
    }
    None
}

/// Builds the key from aligned words: a byte-aligned key makes LLVM call `memset`.
#[inline(always)]
fn key_of(ctx: &XdpContext, relay: [u8; 4], start: usize, len: usize) -> CircuitBucketKey {
    let mut words = [0u32; 2 + CIRCUIT_KEY_BYTES / 4];
    words[0] = u32::from_ne_bytes(relay);
    words[1] = len as u32;
    let mut j = 0;
    while j < CIRCUIT_KEY_BYTES {
        if j >= len {
            break;
        }
        let Some(b) = ptr_at::<u8>(ctx, start + j) else {
            break;
        };
        // SAFETY: bounds checked by ptr_at.
        let b = u32::from(unsafe { *b });
        // Little-endian target (bpfel): byte j of the circuit sits at this shift.
        // (get_mut: an index the compiler cannot prove in bounds would leave a panic path,
        // which the verifier refuses.)
        if let Some(w) = words.get_mut(2 + j / 4) {
            *w |= b << (8 * (j % 4));
        }
        j += 1;
    }
    // SAFETY: CircuitBucketKey is repr(C): [u8; 4], u32, [u8; CIRCUIT_KEY_BYTES], exactly the
    // size of `words` with no padding; every bit pattern is valid; u32 alignment is enough.
    unsafe { core::mem::transmute::<[u32; 2 + CIRCUIT_KEY_BYTES / 4], CircuitBucketKey>(words) }
}
