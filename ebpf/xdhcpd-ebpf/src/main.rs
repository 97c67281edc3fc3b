//! XDP program `xdhcpd`.
//!
//! For every frame on the interface it is attached to:
//! - DHCPv4 (UDP dst 67) and DHCPv6 (UDP dst 547), when enabled in `CONFIG`, are redirected
//!   to the AF_XDP socket registered in `XSKS` for the frame's RX queue; without a socket
//!   for that queue the frame goes to the kernel stack (counted `NoSocket`).
//! - DHCPv4 requests to the server port pass the per-relay (the sender of a message with
//!   giaddr set), per-circuit (that relay + option 82 circuit-id) and per-client (chaddr) token
//!   buckets of `ratelimit.rs` first (off unless configured); refused ones are dropped
//!   and counted by reason.
//! - With the unknown-client drop on (`UNKNOWN_FILTER`, see `known.rs`), DHCPv4 DISCOVERs and
//!   REQUESTs whose Ethernet chaddr is not in `KNOWN_MACS` are dropped and counted before
//!   the rate limits and the AF_XDP copy.
//! - With the failover guard on, TCP to the failover port is passed only from addresses in
//!   `PARTNERS` and dropped from anyone else. Partner traffic is never rate limited. The
//!   guard fails closed: a frame whose headers cannot be read far enough to rule out TCP to
//!   the failover port (truncated or inconsistent headers, too long an IPv6 extension
//!   chain, a first fragment without the TCP ports, an IPv4 TCP fragment at offset 8 that
//!   could overlap the ports, RFC 1858) is dropped and counted (`GuardUnparsable`).
//! - Everything else, including (without the guard) frames too short for the headers they
//!   claim, is passed.
//!
//! Parsed: Ethernet, up to two VLAN tags (802.1Q / 802.1ad), IPv4 (IHL honoured; non-first
//! fragments passed; first fragments of UDP passed, as userspace parses whole datagrams),
//! IPv6 with up to `MAX_IPV6_EXT_HEADERS` extension headers (so none can hide TCP to the
//! failover port), then the UDP/TCP ports.
//!
//! Verifier invariant: every packet read goes through `ptr_at`, which checks
//! `data + offset + size_of::<T>() <= data_end` right before the pointer is formed, and every
//! variable offset is bounded (at most two VLAN tags, IHL is 4 bits, a bounded number of
//! IPv6 extension headers of at most 2,048 bytes each).
#![no_std]
#![no_main]

mod known;
mod ratelimit;

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use xdhcpd_common::{
    counter_index, Counter, PartnerKey, XdpConfig, CFG_DHCPV4, CFG_DHCPV4_CLIENT,
    CFG_DHCPV4_STANDBY, CFG_DHCPV6, CFG_DHCPV6_CLIENT, CFG_GUARD_FAILOVER, COUNTER_ENTRIES,
    DHCPV4_CLIENT_PORT, DHCPV4_SERVER_PORT, DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT, FAILOVER_PORT,
    MAP_CONFIG, MAP_COUNTERS, MAP_PARTNERS, MAP_XSKS,
};

/// RX queue index -> AF_XDP socket. Sized for NICs with many queues; unused slots are free.
#[map]
static XSKS: XskMap = XskMap::with_max_entries(256, 0);

/// Per-CPU counters per RX queue, indexed by `counter_index(queue, Counter)`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

/// Index 0: `XdpConfig`. All zero (nothing steered, no guard) until userspace writes it.
#[map]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

/// Failover partners allowed to reach the failover port (value unused, 1 by convention).
#[map]
static PARTNERS: HashMap<PartnerKey, u32> = HashMap::with_max_entries(64, 0);

/// The map names above are what the loader looks up: keep them equal to the shared constants.
pub(crate) const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(str_eq(MAP_XSKS, "XSKS"));
const _: () = assert!(str_eq(MAP_COUNTERS, "COUNTERS"));
const _: () = assert!(str_eq(MAP_CONFIG, "CONFIG"));
const _: () = assert!(str_eq(MAP_PARTNERS, "PARTNERS"));

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
/// IPv6 extension headers walked before giving up (then the frame counts as malformed and
/// is passed); real traffic carries at most two or three.
const MAX_IPV6_EXT_HEADERS: u32 = 6;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;

#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: [u8; 2],
}

#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct VlanHdr {
    tci: [u8; 2],
    ethertype: [u8; 2],
}

#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct Ipv4Hdr {
    version_ihl: u8,
    tos: u8,
    total_len: [u8; 2],
    id: [u8; 2],
    flags_frag: [u8; 2],
    ttl: u8,
    protocol: u8,
    check: [u8; 2],
    src: [u8; 4],
    dst: [u8; 4],
}

#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct Ipv6Hdr {
    vtc_flow: [u8; 4],
    payload_len: [u8; 2],
    next_header: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// A BOOTP/DHCPv4 message up to the first option (RFC 2131 figure 1), for the standby filter.
#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct BootpHead {
    op: u8,
    htype_hlen_hops_xid: [u8; 7],
    secs: [u8; 2],
    flags: [u8; 2],
    ciaddr: [u8; 4],
    yiaddr_to_file: [u8; 220],
    cookie: [u8; 4],
    /// The first option: code, length, first value byte.
    first_option: [u8; 3],
}

const UDP_HLEN: usize = 8;
const BOOTREQUEST: u8 = 1;
const DHCP_COOKIE: [u8; 4] = [99, 130, 83, 99];
const OPT_MESSAGE_TYPE: u8 = 53;
const DHCPDISCOVER: u8 = 1;
const DHCPREQUEST: u8 = 3;
const DHCPINFORM: u8 = 8;

/// The first four bytes of UDP and TCP headers: source and destination port.
#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct Ports {
    src: [u8; 2],
    dst: [u8; 2],
}

/// What the parser decided; `main` turns it into an XDP action and counters.
enum Verdict {
    /// Not ours: hand to the kernel.
    Pass,
    /// Headers truncated or inconsistent: hand to the kernel, count.
    Malformed,
    /// DHCPv4 to steer to the queue's socket.
    Dhcpv4,
    /// DHCPv6 to steer to the queue's socket.
    Dhcpv6,
    /// Failover port, from a partner.
    FailoverPartner,
    /// Failover port, from anyone else.
    FailoverStranger,
    /// DHCPv4 that a failover standby would not answer (see `CFG_DHCPV4_STANDBY`).
    StandbyDrop,
    /// DHCPv4 request over its client's (chaddr) rate.
    RateLimitClient,
    /// DHCPv4 request over its relay's (giaddr) rate.
    RateLimitRelay,
    /// DHCPv4 request over its circuit's (giaddr + circuit-id) rate.
    RateLimitCircuit,
    /// DHCPv4 DISCOVER / REQUEST from a chaddr not in `KNOWN_MACS` (drop switched on).
    UnknownClient,
    /// With the guard on, TCP that might reach the failover port and cannot be checked
    /// (an IPv4 fragment at offset 8, RFC 1858).
    GuardUnparsable,
}

#[xdp]
pub fn xdhcpd(ctx: XdpContext) -> u32 {
    // Counters are kept per RX queue (one ctx load).
    let q = ctx.rx_queue_index();
    bump(q, Counter::Seen);
    let cfg = match CONFIG.get(0) {
        Some(c) => *c,
        None => XdpConfig::default(),
    };
    match classify(&ctx, &cfg) {
        Verdict::Pass => pass(q),
        Verdict::Malformed => {
            bump(q, Counter::Malformed);
            if cfg.flags & CFG_GUARD_FAILOVER != 0 {
                // Fail closed: an unreadable frame might be TCP to the failover port.
                bump(q, Counter::GuardUnparsable);
                return xdp_action::XDP_DROP;
            }
            pass(q)
        }
        Verdict::GuardUnparsable => {
            bump(q, Counter::GuardUnparsable);
            xdp_action::XDP_DROP
        }
        Verdict::RateLimitClient => {
            bump(q, Counter::RateLimitClient);
            xdp_action::XDP_DROP
        }
        Verdict::RateLimitRelay => {
            bump(q, Counter::RateLimitRelay);
            xdp_action::XDP_DROP
        }
        Verdict::RateLimitCircuit => {
            bump(q, Counter::RateLimitCircuit);
            xdp_action::XDP_DROP
        }
        Verdict::UnknownClient => {
            bump(q, Counter::UnknownDropped);
            xdp_action::XDP_DROP
        }
        Verdict::Dhcpv4 => steer(q, Counter::Dhcpv4),
        Verdict::Dhcpv6 => steer(q, Counter::Dhcpv6),
        Verdict::FailoverPartner => {
            bump(q, Counter::FailoverPassed);
            pass(q)
        }
        Verdict::FailoverStranger => {
            bump(q, Counter::FailoverDropped);
            xdp_action::XDP_DROP
        }
        Verdict::StandbyDrop => {
            bump(q, Counter::StandbyDropped);
            xdp_action::XDP_DROP
        }
    }
}

#[inline(always)]
fn pass(q: u32) -> u32 {
    bump(q, Counter::Passed);
    xdp_action::XDP_PASS
}

/// Redirect to the socket of the frame's own RX queue (an XSK only receives from the queue it
/// is bound to). With no socket there, `bpf_redirect_map` returns the fallback `XDP_PASS`.
#[inline(always)]
fn steer(q: u32, kind: Counter) -> u32 {
    match XSKS.redirect(q, u64::from(xdp_action::XDP_PASS)) {
        Ok(action) => {
            bump(q, Counter::Redirected);
            bump(q, kind);
            action
        }
        Err(_) => {
            bump(q, Counter::NoSocket);
            pass(q)
        }
    }
}

#[inline(always)]
fn bump(queue: u32, counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter_index(queue, counter as u32)) {
        // SAFETY: per-CPU slot of a live map; XDP runs with preemption disabled, so no other
        // writer touches this CPU's copy concurrently.
        unsafe { *slot += 1 };
    }
}

/// Pointer to a `T` at `offset` bytes into the frame, if the frame is long enough.
#[inline(always)]
pub(crate) fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn classify(ctx: &XdpContext, cfg: &XdpConfig) -> Verdict {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Verdict::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let mut ethertype = be16(unsafe { (*eth).ethertype });
    let mut l3 = ETH_HLEN;

    // Up to two VLAN tags (802.1ad outer + 802.1Q inner, or Q-in-Q). Unrolled so the
    // verifier sees a constant offset on each path.
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let Some(vlan) = ptr_at::<VlanHdr>(ctx, l3) else {
            return Verdict::Malformed;
        };
        // SAFETY: bounds checked by ptr_at.
        ethertype = be16(unsafe { (*vlan).ethertype });
        l3 += VLAN_HLEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let Some(vlan) = ptr_at::<VlanHdr>(ctx, l3) else {
                return Verdict::Malformed;
            };
            // SAFETY: bounds checked by ptr_at.
            ethertype = be16(unsafe { (*vlan).ethertype });
            l3 += VLAN_HLEN;
        }
    }

    match ethertype {
        ETH_P_IPV4 => classify_v4(ctx, cfg, l3),
        ETH_P_IPV6 => classify_v6(ctx, cfg, l3),
        _ => Verdict::Pass,
    }
}

#[inline(always)]
fn classify_v4(ctx: &XdpContext, cfg: &XdpConfig, l3: usize) -> Verdict {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, l3) else {
        return Verdict::Malformed;
    };
    // SAFETY: bounds checked by ptr_at (the fixed 20-byte part).
    let (version_ihl, flags_frag, protocol, src) = unsafe {
        (
            (*ip).version_ihl,
            be16((*ip).flags_frag),
            (*ip).protocol,
            (*ip).src,
        )
    };
    if version_ihl >> 4 != 4 {
        return Verdict::Malformed;
    }
    // IHL is 4 bits: 20..=60 bytes of header, so the L4 offset stays bounded for the verifier.
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Verdict::Malformed;
    }
    let frag_offset = flags_frag & 0x1fff;
    let more_fragments = flags_frag & 0x2000 != 0;
    if frag_offset != 0 {
        // A TCP fragment at offset 8 overlaps the TCP header of the first (RFC 1858's
        // overlapping-fragment attack on filters): never legitimate, refused with the guard.
        if frag_offset == 1 && protocol == IPPROTO_TCP && cfg.flags & CFG_GUARD_FAILOVER != 0 {
            return Verdict::GuardUnparsable;
        }
        // Non-first fragment: no L4 header here; the kernel reassembles (the first fragment,
        // which carries the ports, was judged on its own).
        return Verdict::Pass;
    }
    let l4 = l3 + ihl;
    match protocol {
        IPPROTO_UDP => {
            // A DHCP message split over fragments is left to the kernel: userspace parses whole
            // datagrams from one frame.
            if more_fragments {
                return Verdict::Pass;
            }
            let server = DHCPV4_SERVER_PORT;
            match udp_verdict(ctx, cfg, l4, server, CFG_DHCPV4, Verdict::Dhcpv4) {
                Verdict::Dhcpv4
                    if cfg.flags & CFG_DHCPV4_STANDBY != 0 && standby_ignores(ctx, cfg, l4) =>
                {
                    Verdict::StandbyDrop
                }
                Verdict::Dhcpv4 if known::refuses(ctx, l4 + UDP_HLEN) => Verdict::UnknownClient,
                Verdict::Dhcpv4 => match ratelimit::check(ctx, l4 + UDP_HLEN, src) {
                    Ok(()) => Verdict::Dhcpv4,
                    Err(ratelimit::Limited::Client) => Verdict::RateLimitClient,
                    Err(ratelimit::Limited::Relay) => Verdict::RateLimitRelay,
                    Err(ratelimit::Limited::Circuit) => Verdict::RateLimitCircuit,
                },
                // Client side (load generator): replies to UDP port 68.
                Verdict::Pass => udp_verdict(
                    ctx,
                    cfg,
                    l4,
                    DHCPV4_CLIENT_PORT,
                    CFG_DHCPV4_CLIENT,
                    Verdict::Dhcpv4,
                ),
                v => v,
            }
        }
        IPPROTO_TCP => tcp_verdict(ctx, cfg, l4, v4_key(src)),
        _ => Verdict::Pass,
    }
}

/// True for a DHCPv4 request a failover standby never answers: option 53 first (else
/// userspace decides) and DISCOVER, INFORM, or REQUEST without ciaddr (SELECTING or
/// INIT-REBOOT; RENEWING/REBINDING carry ciaddr and are answered by whoever gets them), from
/// a client that has not waited longer than `standby_max_secs` (when set).
#[inline(always)]
fn standby_ignores(ctx: &XdpContext, cfg: &XdpConfig, l4: usize) -> bool {
    let Some(m) = ptr_at::<BootpHead>(ctx, l4 + UDP_HLEN) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at (the whole fixed part and the first three option bytes).
    let (op, secs, ciaddr, cookie, opt) = unsafe {
        (
            (*m).op,
            be16((*m).secs),
            (*m).ciaddr,
            (*m).cookie,
            (*m).first_option,
        )
    };
    if op != BOOTREQUEST || cookie != DHCP_COOKIE || opt[0] != OPT_MESSAGE_TYPE || opt[1] != 1 {
        return false;
    }
    if cfg.standby_max_secs != 0 && secs > cfg.standby_max_secs {
        return false;
    }
    match opt[2] {
        DHCPDISCOVER | DHCPINFORM => true,
        DHCPREQUEST => ciaddr == [0; 4],
        _ => false,
    }
}

/// `PartnerKey::v4` (::ffff:a.b.c.d), built from aligned words: a byte-aligned 16-byte key
/// makes LLVM call `memset` for the zero prefix instead of emitting stores.
#[inline(always)]
fn v4_key(a: [u8; 4]) -> PartnerKey {
    let words: [u32; 4] = [
        0,
        0,
        u32::from_ne_bytes([0, 0, 0xff, 0xff]),
        u32::from_ne_bytes(a),
    ];
    // SAFETY: PartnerKey is repr(C) around [u8; 16]: same size as [u32; 4], any bit pattern
    // is valid, and its alignment (1) is not stricter.
    unsafe { core::mem::transmute::<[u32; 4], PartnerKey>(words) }
}

#[inline(always)]
fn classify_v6(ctx: &XdpContext, cfg: &XdpConfig, l3: usize) -> Verdict {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l3) else {
        return Verdict::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let (vtc, next_header, src) = unsafe { ((*ip).vtc_flow[0], (*ip).next_header, (*ip).src) };
    if vtc >> 4 != 6 {
        return Verdict::Malformed;
    }
    // Walk extension headers so that none can hide TCP to the failover port from the guard
    // (or DHCPv6 from steering). Bounded, so the verifier sees a finite loop and a bounded
    // offset (each header is at most 2,048 bytes).
    let mut next = next_header;
    let mut l4 = l3 + IPV6_HLEN;
    let mut more_fragments = false;
    let mut walked = 0;
    while walked < MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(ext) = ptr_at::<[u8; 2]>(ctx, l4) else {
                    return Verdict::Malformed;
                };
                // SAFETY: bounds checked by ptr_at.
                let (nh, len) = unsafe { ((*ext)[0], (*ext)[1]) };
                next = nh;
                l4 += (usize::from(len) + 1) * 8;
            }
            IPPROTO_AH => {
                let Some(ext) = ptr_at::<[u8; 2]>(ctx, l4) else {
                    return Verdict::Malformed;
                };
                // SAFETY: bounds checked by ptr_at.
                let (nh, len) = unsafe { ((*ext)[0], (*ext)[1]) };
                next = nh;
                l4 += (usize::from(len) + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let Some(frag) = ptr_at::<[u8; 4]>(ctx, l4) else {
                    return Verdict::Malformed;
                };
                // SAFETY: bounds checked by ptr_at.
                let (nh, offset_flags) = unsafe { ((*frag)[0], be16([(*frag)[2], (*frag)[3]])) };
                if offset_flags & 0xfff8 != 0 {
                    // Non-first fragment: no L4 header here; the kernel reassembles.
                    return Verdict::Pass;
                }
                more_fragments = offset_flags & 1 != 0;
                next = nh;
                l4 += 8;
            }
            _ => break,
        }
        walked += 1;
    }
    match next {
        IPPROTO_UDP if more_fragments => Verdict::Pass,
        IPPROTO_UDP => match udp_verdict(
            ctx,
            cfg,
            l4,
            DHCPV6_SERVER_PORT,
            CFG_DHCPV6,
            Verdict::Dhcpv6,
        ) {
            // Client side (load generator): replies to UDP port 546.
            Verdict::Pass => udp_verdict(
                ctx,
                cfg,
                l4,
                DHCPV6_CLIENT_PORT,
                CFG_DHCPV6_CLIENT,
                Verdict::Dhcpv6,
            ),
            v => v,
        },
        // Still an extension header after the walk: too long a chain to classify.
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Verdict::Malformed
        }
        IPPROTO_TCP => tcp_verdict(ctx, cfg, l4, PartnerKey::v6(src)),
        _ => Verdict::Pass,
    }
}

#[inline(always)]
fn udp_verdict(
    ctx: &XdpContext,
    cfg: &XdpConfig,
    l4: usize,
    server_port: u16,
    flag: u32,
    steer: Verdict,
) -> Verdict {
    if cfg.flags & flag == 0 {
        return Verdict::Pass;
    }
    let Some(ports) = ptr_at::<Ports>(ctx, l4) else {
        return Verdict::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let dst = be16(unsafe { (*ports).dst });
    if dst == server_port {
        steer
    } else {
        Verdict::Pass
    }
}

#[inline(always)]
fn tcp_verdict(ctx: &XdpContext, cfg: &XdpConfig, l4: usize, src: PartnerKey) -> Verdict {
    if cfg.flags & CFG_GUARD_FAILOVER == 0 {
        return Verdict::Pass;
    }
    let Some(ports) = ptr_at::<Ports>(ctx, l4) else {
        return Verdict::Malformed;
    };
    // SAFETY: bounds checked by ptr_at.
    let dst = be16(unsafe { (*ports).dst });
    let port = if cfg.failover_port == 0 {
        FAILOVER_PORT
    } else {
        cfg.failover_port
    };
    if dst != port {
        return Verdict::Pass;
    }
    if PARTNERS.get_ptr(src).is_some() {
        Verdict::FailoverPartner
    } else {
        Verdict::FailoverStranger
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Nothing above can panic (no indexing or arithmetic that overflows); this only satisfies
    // no_std. The verifier would reject a reachable infinite loop.
    loop {}
}

/// Only GPL-compatible programs may call GPL-only helpers; this program uses none (map
/// lookups and `bpf_redirect_map` are available to all), so it carries the project's licence.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 11] = *b"Apache-2.0\0";
