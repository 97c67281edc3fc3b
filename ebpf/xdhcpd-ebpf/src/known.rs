//! The unknown-client drop: with `deny-unknown` everywhere and `[limits] xdp-drop-unknown`,
//! the daemon fills `KNOWN_MACS` with the hardware addresses of every registration and
//! configured host and switches `UNKNOWN_FILTER` on; a DHCPv4 DISCOVER or REQUEST whose
//! Ethernet chaddr is not in the map is then dropped here, before the rate limits and the
//! AF_XDP copy. The engine would refuse it anyway (`unknown_refused`).
//!
//! Judged: BOOTREQUESTs with the magic cookie, htype 1 / hlen 6, and option 53 as the first
//! option with DISCOVER or REQUEST. Anything else (other message types: RELEASE, DECLINE,
//! INFORM, LEASEQUERY; option 53 elsewhere; other hardware types) goes on to userspace, which
//! decides. The daemon switches the drop off when the known addresses do not fit the map, or
//! a registration is keyed by client id only, so a registered client is never dropped here.
//!
//! Cost with the drop off: one array lookup. On: one hash lookup of an 8-byte key.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
    programs::XdpContext,
};
use xdhcpd_common::KnownMacKey;

use crate::ptr_at;

/// Known Ethernet addresses (value unused, 1 by convention). Sized by the daemon at load
/// (`[limits] xdp-known-macs`); this is the size of an object loaded without that.
#[map]
static KNOWN_MACS: HashMap<KnownMacKey, u8> = HashMap::with_max_entries(1024, 0);

/// Index 0: non-zero = drop DISCOVER / REQUEST from chaddrs not in `KNOWN_MACS`.
#[map]
static UNKNOWN_FILTER: Array<u32> = Array::with_max_entries(1, 0);

const _: () = assert!(crate::str_eq(xdhcpd_common::MAP_KNOWN_MACS, "KNOWN_MACS"));
const _: () = assert!(crate::str_eq(
    xdhcpd_common::MAP_UNKNOWN_FILTER,
    "UNKNOWN_FILTER"
));

const BOOTREQUEST: u8 = 1;
const HTYPE_ETHERNET: u8 = 1;
const DHCP_COOKIE: [u8; 4] = [99, 130, 83, 99];
const OPT_MESSAGE_TYPE: u8 = 53;
const DHCPDISCOVER: u8 = 1;
const DHCPREQUEST: u8 = 3;

/// A BOOTP message up to the first option's value byte (RFC 2131 figure 1).
#[repr(C)]
#[allow(dead_code)] // wire layout: every field positions the next
struct Bootp {
    op: u8,
    htype: u8,
    hlen: u8,
    hops: u8,
    xid_to_giaddr: [u8; 24],
    chaddr: [u8; 6],
    chaddr_rest_sname_file: [u8; 202],
    cookie: [u8; 4],
    first_option: [u8; 3],
}

/// True when the message at `bootp` must be dropped as an unknown client's.
#[inline(always)]
pub(crate) fn refuses(ctx: &XdpContext, bootp: usize) -> bool {
    match UNKNOWN_FILTER.get(0) {
        Some(on) if *on != 0 => {}
        _ => return false,
    }
    let Some(m) = ptr_at::<Bootp>(ctx, bootp) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    let (op, htype, hlen, chaddr, cookie, opt) = unsafe {
        (
            (*m).op,
            (*m).htype,
            (*m).hlen,
            (*m).chaddr,
            (*m).cookie,
            (*m).first_option,
        )
    };
    if op != BOOTREQUEST
        || htype != HTYPE_ETHERNET
        || hlen != 6
        || cookie != DHCP_COOKIE
        || opt[0] != OPT_MESSAGE_TYPE
        || opt[1] != 1
        || (opt[2] != DHCPDISCOVER && opt[2] != DHCPREQUEST)
    {
        return false;
    }
    let key: KnownMacKey = u64::from_le_bytes([
        chaddr[0],
        chaddr[1],
        chaddr[2],
        chaddr[3],
        chaddr[4],
        chaddr[5],
        6,
        HTYPE_ETHERNET,
    ]);
    KNOWN_MACS.get_ptr(&key).is_none()
}
