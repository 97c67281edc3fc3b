//! Malformed frames on the real XDP path: the daemon (`--io xdp`) on a veth pair, frames sent
//! raw (AF_PACKET) from the client namespace, one daemon run per kind of damage. For each
//! kind the run's final counters must show exactly the expected counter moved by the number
//! of frames sent, no reply may be built from the damaged frames, and a valid DISCOVER sent
//! afterwards must be answered (the server was listening: the silence is the server's).
//!
//! Where each kind is counted (`xdp.*`: the XDP program's counters; `workers.frame_drops`:
//! frames the AF_XDP driver's frame parser refused; `engine.*`: the DHCP engine's counters):
//!
//! | kind | frames sent | counted as | answered |
//! |---|---|---|---|
//! | `eth_header_only` | Ethernet header, type IPv4, nothing after | `xdp.malformed` | no |
//! | `ipv4_header_cut` | IPv4 header cut at 12 bytes | `xdp.malformed` | no |
//! | `udp_header_missing` | IPv4 header only (protocol UDP) | `xdp.malformed` | no |
//! | `udp_header_cut` | UDP header cut after the ports (dst 67) | `workers.frame_drops` | no |
//! | `dhcp_cut` | DHCP cut at 100 of 300 bytes, IP/UDP lengths say 300 | `workers.frame_drops` | no |
//! | `dhcp_short` | a 100-byte DHCP message, lengths and checksums right | `engine.malformed` | no |
//! | `ip_total_length_long` | IPv4 total length 40 beyond the frame | `workers.frame_drops` | no |
//! | `ip_total_length_below_header` | IPv4 total length 16 | `workers.frame_drops` | no |
//! | `udp_length_long` | UDP length 40 beyond the datagram | `workers.frame_drops` | no |
//! | `udp_length_below_header` | UDP length 4 | `workers.frame_drops` | no |
//! | `udp_length_zero` | UDP length 0 (an IPv6 jumbogram's, invalid over IPv4) | `workers.frame_drops` | no |
//! | `udp_length_short` | UDP length cuts the DHCP message to 100 bytes | `engine.malformed` | no |
//! | `ip_checksum_bad` | valid DISCOVER, IPv4 header checksum wrong | `workers.frame_drops` | no |
//! | `udp_checksum_bad` | valid DISCOVER, UDP checksum wrong (not 0) | `workers.frame_drops` | no |
//! | `ip_ihl_below_minimum` | IHL 4 | `xdp.malformed` | no |
//! | `ip_ihl_past_packet` | IHL 15 in a 28-byte packet | `xdp.malformed` | no |
//! | `ip_version_6_in_ipv4` | version 6 under ethertype IPv4 | `xdp.malformed` | no |
//! | `ip_options_valid` | valid DISCOVER with IPv4 options (NOP, router alert) | (answered) | yes |
//! | `ip_first_fragment` | first fragment (MF) of a DISCOVER | `xdp.passed` (kernel reassembles) | no |
//! | `ip_later_fragment` | non-first fragment whose bytes look like UDP to 67 | `xdp.passed` | no |
//! | `vlan_1_tag` | valid DISCOVER, one 802.1Q tag | (answered, tag echoed) | yes |
//! | `vlan_2_tags` | valid DISCOVER, 802.1ad + 802.1Q | (answered, tags echoed) | yes |
//! | `vlan_3_tags` | valid DISCOVER, three tags | `xdp.passed` (kernel drops) | no |
//! | `option_overrun` | option 12 whose length runs past the message | `engine.malformed` | no |
//! | `option_53_length_2` | option 53 with 2 bytes | `engine.malformed` | no |
//! | `overload_valid` | option 52 = 3, option 53 in `file`, 55 in `sname` | (answered) | yes |
//! | `overload_bad_value` | option 52 = 7 | `engine.malformed` | no |
//! | `overload_overrun_in_file` | option 52 = 1, an option in `file` runs past it | `engine.malformed` | no |
//! | `option_82_sub_overrun` | relayed, option 82 sub-option longer than option 82 | `engine.malformed` | no |
//! | `option_82_link_selection_bad` | option 82 link-selection of 3 bytes | `engine.malformed` | no |
//! | `option_82_oversized` | relayed, 255-byte option 82 of valid sub-options | (answered via the relay) | yes |
//! | `option_82_from_client` | option 82 with giaddr 0 (RFC 3046 §2.1) | `engine.relay_info_from_client_dropped` | no |
//! | `option_82_untrusted_relay` | relayed with option 82 by a giaddr that is no trusted relay | `engine.untrusted_relay` | no |
//! | `ipv6_ext_chain_to_547` | IPv6 hop-by-hop + dest-opts + routing, UDP to 547 | `xdp.passed` (DHCPv6 not steered) | no |
//! | `ipv6_ext_chain_too_long` | seven destination-options headers, UDP to 547 | `xdp.malformed` | no |
//! | `ipv6_ext_header_cut` | hop-by-hop header claiming 64 bytes, then (cut) dest-opts | `xdp.malformed` | no |
//! | `ipv6_ext_header_cut_before_udp` | the same header, then (cut) UDP | `xdp.passed` (DHCPv6 not steered) | no |
//! | `junk_ethertype` | 300 bytes of junk, unknown ethertype | `xdp.passed` | no |
//! | `junk_ipv4` | ethertype IPv4, 300 bytes of 0xff | `xdp.malformed` | no |
//! | `junk_udp_to_67` | valid IPv4/UDP to 67, 300 bytes of junk | `engine.malformed` | no |
//! | `empty_udp_to_67` | valid IPv4/UDP to 67, no payload | `engine.malformed` | no |
//! | `bootreply_to_67` | a BOOTREPLY (op 2) to port 67 | `engine.not_request` | no |
//!
//! "Answered" kinds are valid messages in unusual framing: they prove that framing reaches the
//! engine and that the reply keeps it (VLAN tags echoed, relay address used).
//!
//! Needs root (namespaces, XDP). The daemon is `XDHCPD_BIN` if set, else built once (see
//! `daemon_common::xdhcpd_bin`). IPv6 is switched off on both veth ends, so the only frames on
//! the link are the test's and the server's replies, and every counter can be exact.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::collections::BTreeMap;
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daemon_common::*;
use require::{require, Capability};

/// One family at a time: each runs a daemon per kind and counts every frame.
static SERIAL: Mutex<()> = Mutex::new(());

const SRV: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// A relay agent on the test link (option 82 kinds).
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
/// xid of the valid DISCOVER that ends every run.
const PROBE_XID: u32 = 0x0bad_f00d;
/// xid of the damaged or unusual DISCOVERs.
const KIND_XID: u32 = 0x5eed_0001;

// ------------------------------------------------------------------ frame building

/// Internet checksum (RFC 1071) of `data` on top of `sum`.
fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A BOOTP/DHCP message: op, our client's chaddr, broadcast flag, `opts` (code, value) then
/// END, padded to 300 bytes; `file`/`sname` filled with the given bytes.
fn dhcp(op: u8, xid: u32, giaddr: Ipv4Addr, sname: &[u8], file: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = op;
    b[1] = 1;
    b[2] = 6;
    if !giaddr.is_unspecified() {
        b[3] = 1; // hops
    }
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[10] = 0x80; // broadcast
    b[24..28].copy_from_slice(&giaddr.octets());
    b[28..34].copy_from_slice(&CLI_MAC);
    b[44..44 + sname.len()].copy_from_slice(sname);
    b[108..108 + file.len()].copy_from_slice(file);
    b[236..240].copy_from_slice(&[99, 130, 83, 99]);
    b.extend_from_slice(opts);
    if b.len() < 300 {
        b.resize(300, 0);
    }
    b
}

/// Option bytes: each (code, value), then END.
fn opts(list: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (c, val) in list {
        v.push(*c);
        v.push(val.len() as u8);
        v.extend_from_slice(val);
    }
    v.push(255);
    v
}

fn discover(xid: u32) -> Vec<u8> {
    dhcp(
        1,
        xid,
        Ipv4Addr::UNSPECIFIED,
        &[],
        &[],
        &opts(&[(53, &[1]), (55, &[1, 3, 6, 51, 54])]),
    )
}

/// IPv4 header (options `ip_opts`, a multiple of 4 bytes) + UDP, checksums right.
fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, ip_opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + ip_opts.len();
    let udp_len = 8 + payload.len();
    let mut p = vec![0u8; hlen];
    p[0] = 0x40 | (hlen / 4) as u8;
    p[2..4].copy_from_slice(&((hlen + udp_len) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..].copy_from_slice(ip_opts);
    let c = csum(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let sport: u16 = if dport == 67 && !src.is_unspecified() {
        67
    } else {
        68
    };
    let mut u = Vec::with_capacity(udp_len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(udp_len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = udp_csum(src, dst, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&u);
    p
}

/// UDP checksum over the IPv4 pseudo-header and `udp` (its checksum field zero); 0 is sent
/// as 0xffff.
fn udp_csum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    let mut sum = 0u32;
    for c in pseudo.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    match csum(udp, sum) {
        0 => 0xffff,
        c => c,
    }
}

/// Ethernet header from the client (broadcast), VLAN tags `tags`, then `ethertype`.
fn eth(tags: &[u16], ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLI_MAC);
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A client's DHCP message in a plain frame: 0.0.0.0 -> 255.255.255.255, 68 -> 67.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    eth(
        &[],
        0x0800,
        &ipv4_udp(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 67, &[], payload),
    )
}

/// Recomputes the IPv4 header checksum of the packet at `l3` (after edits).
fn fix_ip_csum(f: &mut [u8], l3: usize) {
    let hlen = usize::from(f[l3] & 0x0f) * 4;
    f[l3 + 10..l3 + 12].fill(0);
    let c = csum(&f[l3..l3 + hlen], 0);
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the UDP checksum of the IPv4/UDP packet at `l3` (after edits), over the UDP
/// length the header states.
fn fix_udp_csum(f: &mut [u8], l3: usize) {
    let hlen = usize::from(f[l3] & 0x0f) * 4;
    let u = l3 + hlen;
    let src = Ipv4Addr::new(f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15]);
    let dst = Ipv4Addr::new(f[l3 + 16], f[l3 + 17], f[l3 + 18], f[l3 + 19]);
    let len = usize::from(u16::from_be_bytes([f[u + 4], f[u + 5]])).min(f.len() - u);
    f[u + 6..u + 8].fill(0);
    let c = udp_csum(src, dst, &f[u..u + len]);
    f[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
}

/// An IPv6 frame from fe80::1 to ff02::1:2 with extension headers `ext` (first next-header
/// `first`) and then `l4`.
fn ipv6(first: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
    h[6] = first;
    h[7] = 1;
    h[8..24].copy_from_slice(
        &"fe80::1"
            .parse::<Ipv6Addr>()
            .map_or([0; 16], |a| a.octets()),
    );
    h[24..40].copy_from_slice(
        &"ff02::1:2"
            .parse::<Ipv6Addr>()
            .map_or([0; 16], |a| a.octets()),
    );
    h.extend_from_slice(ext);
    h.extend_from_slice(l4);
    eth(&[], 0x86dd, &h)
}

/// An 8-byte options extension header (hop-by-hop / destination options: PadN).
fn ext_opts(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// A DHCPv6 SOLICIT in UDP 546 -> 547 (checksum left 0: XDP does not look at it).
fn solicit() -> Vec<u8> {
    let payload = [1u8, 0xab, 0xcd, 0xef];
    let mut u = vec![0x02, 0x22, 0x02, 0x23];
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&payload);
    u
}

// ------------------------------------------------------------------ the kinds

/// One kind of damage: the frames, the counter that must move by `frames.len()`, and whether
/// the frames (valid messages in unusual framing) are answered.
struct Kind {
    name: &'static str,
    frames: Vec<Vec<u8>>,
    /// `section.key` of the final stats JSON; None for answered kinds.
    counter: Option<&'static str>,
    answered: bool,
    /// VLAN tags the replies to an answered kind carry (the request's, echoed).
    reply_tags: usize,
}

fn dropped(name: &'static str, counter: &'static str, frame: Vec<u8>) -> Kind {
    Kind {
        name,
        frames: vec![frame],
        counter: Some(counter),
        answered: false,
        reply_tags: 0,
    }
}

fn answered(name: &'static str, frame: Vec<u8>) -> Kind {
    Kind {
        name,
        frames: vec![frame],
        counter: None,
        answered: true,
        reply_tags: 0,
    }
}

fn answered_tagged(name: &'static str, tags: usize, frame: Vec<u8>) -> Kind {
    Kind {
        reply_tags: tags,
        ..answered(name, frame)
    }
}

const L3: usize = 14;
const XDP_MALFORMED: &str = "xdp.malformed";
const XDP_PASSED: &str = "xdp.passed";
const FRAME_DROPS: &str = "workers.frame_drops";
const ENGINE_MALFORMED: &str = "engine.malformed";

fn truncation_kinds() -> Vec<Kind> {
    let full = client_frame(&discover(KIND_XID));
    let udp_at = L3 + 20;
    let mut udp_cut = full[..udp_at + 4].to_vec();
    // Total length consistent with what is there: the UDP header itself is cut.
    udp_cut[L3 + 2..L3 + 4].copy_from_slice(&24u16.to_be_bytes());
    fix_ip_csum(&mut udp_cut, L3);
    let short = client_frame(&discover(KIND_XID)[..100]);
    vec![
        dropped("eth_header_only", XDP_MALFORMED, full[..L3].to_vec()),
        dropped("ipv4_header_cut", XDP_MALFORMED, full[..L3 + 12].to_vec()),
        dropped("udp_header_missing", XDP_MALFORMED, full[..udp_at].to_vec()),
        dropped("udp_header_cut", FRAME_DROPS, udp_cut),
        dropped("dhcp_cut", FRAME_DROPS, full[..udp_at + 8 + 100].to_vec()),
        dropped("dhcp_short", ENGINE_MALFORMED, short),
    ]
}

fn length_kinds() -> Vec<Kind> {
    let full = client_frame(&discover(KIND_XID));
    let udp_at = L3 + 20;
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = full.clone();
        f(&mut v);
        v
    };
    let set16 =
        |v: &mut Vec<u8>, at: usize, x: u16| v[at..at + 2].copy_from_slice(&x.to_be_bytes());
    let ip_len = (full.len() - L3) as u16;
    let udp_len = (full.len() - udp_at) as u16;
    vec![
        dropped(
            "ip_total_length_long",
            FRAME_DROPS,
            edit(&|v| {
                set16(v, L3 + 2, ip_len + 40);
                fix_ip_csum(v, L3);
            }),
        ),
        dropped(
            "ip_total_length_below_header",
            FRAME_DROPS,
            edit(&|v| {
                set16(v, L3 + 2, 16);
                fix_ip_csum(v, L3);
            }),
        ),
        dropped(
            "udp_length_long",
            FRAME_DROPS,
            edit(&|v| {
                set16(v, udp_at + 4, udp_len + 40);
                fix_udp_csum(v, L3);
            }),
        ),
        dropped(
            "udp_length_below_header",
            FRAME_DROPS,
            edit(&|v| {
                set16(v, udp_at + 4, 4);
                v[udp_at + 6..udp_at + 8].fill(0);
            }),
        ),
        dropped(
            "udp_length_zero",
            FRAME_DROPS,
            edit(&|v| {
                set16(v, udp_at + 4, 0);
                v[udp_at + 6..udp_at + 8].fill(0);
            }),
        ),
        dropped(
            "udp_length_short",
            ENGINE_MALFORMED,
            edit(&|v| {
                set16(v, udp_at + 4, 8 + 100);
                fix_udp_csum(v, L3);
            }),
        ),
    ]
}

fn checksum_kinds() -> Vec<Kind> {
    let full = client_frame(&discover(KIND_XID));
    let mut ip_bad = full.clone();
    ip_bad[L3 + 10] ^= 0x5a;
    let mut udp_bad = full.clone();
    udp_bad[L3 + 20 + 6] ^= 0x5a;
    if udp_bad[L3 + 26..L3 + 28] == [0, 0] {
        udp_bad[L3 + 27] = 1; // 0 means "no checksum"
    }
    vec![
        dropped("ip_checksum_bad", FRAME_DROPS, ip_bad),
        dropped("udp_checksum_bad", FRAME_DROPS, udp_bad),
    ]
}

fn ip_header_kinds() -> Vec<Kind> {
    let full = client_frame(&discover(KIND_XID));
    let mut ihl4 = full.clone();
    ihl4[L3] = 0x44;
    fix_ip_csum(&mut ihl4, L3);
    // A 28-byte packet (header + empty UDP) whose IHL says 60 bytes.
    let mut ihl15 = client_frame(&[]);
    ihl15[L3] = 0x4f;
    let mut v6 = full.clone();
    v6[L3] = 0x65;
    // Router alert (RFC 2113), then NOP padding: a valid option list.
    let options = ipv4_udp(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        67,
        &[0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00],
        &discover(KIND_XID),
    );
    vec![
        dropped("ip_ihl_below_minimum", XDP_MALFORMED, ihl4),
        dropped("ip_ihl_past_packet", XDP_MALFORMED, ihl15),
        dropped("ip_version_6_in_ipv4", XDP_MALFORMED, v6),
        answered("ip_options_valid", eth(&[], 0x0800, &options)),
    ]
}

fn fragment_kinds() -> Vec<Kind> {
    let full = client_frame(&discover(KIND_XID));
    let mut first = full.clone();
    first[L3 + 6] = 0x20; // MF, offset 0
    fix_ip_csum(&mut first, L3);
    let mut later = full.clone();
    later[L3 + 6..L3 + 8].copy_from_slice(&0x0010u16.to_be_bytes()); // offset 128, no MF
    fix_ip_csum(&mut later, L3);
    vec![
        dropped("ip_first_fragment", XDP_PASSED, first),
        dropped("ip_later_fragment", XDP_PASSED, later),
    ]
}

fn vlan_kinds() -> Vec<Kind> {
    let packet = ipv4_udp(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        67,
        &[],
        &discover(KIND_XID),
    );
    vec![
        answered_tagged("vlan_1_tag", 1, eth(&[TPID_8021Q], 0x0800, &packet)),
        answered_tagged(
            "vlan_2_tags",
            2,
            eth(&[TPID_8021AD, TPID_8021Q], 0x0800, &packet),
        ),
        dropped(
            "vlan_3_tags",
            XDP_PASSED,
            eth(&[TPID_8021AD, TPID_8021Q, TPID_8021Q], 0x0800, &packet),
        ),
    ]
}

fn dhcp_option_kinds() -> Vec<Kind> {
    let none = Ipv4Addr::UNSPECIFIED;
    let msg = |sname: &[u8], file: &[u8], o: &[u8]| {
        client_frame(&dhcp(1, KIND_XID, none, sname, file, o))
    };
    // Option 12 claims 200 bytes; the message (unpadded) ends after 10.
    let mut overrun = vec![53, 1, 1, 12, 200];
    overrun.extend_from_slice(b"host-name!");
    let overrun = {
        let mut p = dhcp(1, KIND_XID, none, &[], &[], &[]);
        p.truncate(240);
        p.extend_from_slice(&overrun);
        client_frame(&p)
    };
    let file_opts = opts(&[(53, &[1])]);
    let sname_opts = opts(&[(55, &[1, 3, 6])]);
    // In `file`: an option 12 of 200 bytes in a 128-byte field.
    let file_overrun = [53u8, 1, 1, 12, 200, b'x'];
    vec![
        dropped("option_overrun", ENGINE_MALFORMED, overrun),
        dropped(
            "option_53_length_2",
            ENGINE_MALFORMED,
            msg(&[], &[], &opts(&[(53, &[1, 1])])),
        ),
        answered(
            "overload_valid",
            msg(&sname_opts, &file_opts, &opts(&[(52, &[3])])),
        ),
        dropped(
            "overload_bad_value",
            ENGINE_MALFORMED,
            msg(&[], &file_opts, &opts(&[(52, &[7]), (53, &[1])])),
        ),
        dropped(
            "overload_overrun_in_file",
            ENGINE_MALFORMED,
            msg(&[], &file_overrun, &opts(&[(52, &[1])])),
        ),
    ]
}

/// A relayed DISCOVER (from RELAY, giaddr RELAY, to the server on port 67) with option 82.
fn relayed(o82: &[u8]) -> Vec<u8> {
    relayed_by(RELAY, o82)
}

/// A DISCOVER relayed by `relay` (giaddr and IP source) with option 82.
fn relayed_by(relay: Ipv4Addr, o82: &[u8]) -> Vec<u8> {
    let mut o = vec![53, 1, 1, 82, o82.len() as u8];
    o.extend_from_slice(o82);
    o.push(255);
    let payload = dhcp(1, KIND_XID, relay, &[], &[], &o);
    eth(&[], 0x0800, &ipv4_udp(relay, SRV, 67, &[], &payload))
}

fn option_82_kinds() -> Vec<Kind> {
    // Circuit id claiming 40 bytes inside a 10-byte option 82.
    let sub_overrun = [1u8, 40, 1, 2, 3, 4, 5, 6, 7, 8];
    // Link selection (sub-option 5) must be 4 bytes.
    let link_bad = [1u8, 2, 0xaa, 0xbb, 5, 3, 10, 77, 0];
    // 255 bytes: circuit id of 150 and remote id of 101 bytes.
    let mut big = vec![1u8, 150];
    big.extend(std::iter::repeat_n(0xc1, 150));
    big.extend_from_slice(&[2, 101]);
    big.extend(std::iter::repeat_n(0xd2, 101));
    assert_eq!(big.len(), 255);
    vec![
        dropped(
            "option_82_sub_overrun",
            ENGINE_MALFORMED,
            relayed(&sub_overrun),
        ),
        dropped(
            "option_82_link_selection_bad",
            ENGINE_MALFORMED,
            relayed(&link_bad),
        ),
        answered("option_82_oversized", relayed(&big)),
        // Option 82 added by the client itself (giaddr 0): RFC 3046 §2.1.
        dropped(
            "option_82_from_client",
            "engine.relay_info_from_client_dropped",
            client_frame(&dhcp(
                1,
                KIND_XID,
                Ipv4Addr::UNSPECIFIED,
                &[],
                &[],
                &opts(&[(53, &[1]), (82, &[1, 2, 0xaa, 0xbb])]),
            )),
        ),
        // A giaddr that selects no subnet: not a trusted relay.
        dropped(
            "option_82_untrusted_relay",
            "engine.untrusted_relay",
            relayed_by(Ipv4Addr::new(192, 0, 2, 1), &[1, 2, 0xaa, 0xbb]),
        ),
    ]
}

fn ipv6_kinds() -> Vec<Kind> {
    // Hop-by-hop -> destination options -> routing (type 0 would be refused by a router,
    // but it is a header XDP must walk) -> UDP.
    let routing = vec![17u8, 0, 0, 0, 0, 0, 0, 0];
    let chain = [ext_opts(60), ext_opts(43), routing].concat();
    let long = [ext_opts(60).repeat(6), ext_opts(17)].concat();
    // Hop-by-hop header whose length byte says 64 bytes, followed (it says) by destination
    // options; the frame ends after 8 bytes, so the walk cannot read the next header.
    let cut = vec![60u8, 7, 1, 4, 0, 0, 0, 0];
    vec![
        dropped(
            "ipv6_ext_chain_to_547",
            XDP_PASSED,
            ipv6(0, &chain, &solicit()),
        ),
        dropped(
            "ipv6_ext_chain_too_long",
            XDP_MALFORMED,
            ipv6(60, &long, &solicit()),
        ),
        dropped("ipv6_ext_header_cut", XDP_MALFORMED, ipv6(0, &cut, &[])),
        // The same cut before UDP: XDP looks no further (DHCPv6 is not steered) and passes it.
        dropped(
            "ipv6_ext_header_cut_before_udp",
            XDP_PASSED,
            ipv6(0, &[17u8, 7, 1, 4, 0, 0, 0, 0], &[]),
        ),
    ]
}

fn junk_kinds() -> Vec<Kind> {
    let junk: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut reply = discover(KIND_XID);
    reply[0] = 2;
    vec![
        dropped("junk_ethertype", XDP_PASSED, eth(&[], 0x88b5, &junk)),
        dropped("junk_ipv4", XDP_MALFORMED, eth(&[], 0x0800, &[0xff; 300])),
        dropped("junk_udp_to_67", ENGINE_MALFORMED, client_frame(&junk)),
        dropped("empty_udp_to_67", ENGINE_MALFORMED, client_frame(&[])),
        dropped(
            "bootreply_to_67",
            "engine.not_request",
            client_frame(&reply),
        ),
    ]
}

// ------------------------------------------------------------------ raw socket

/// An AF_PACKET socket on the client's interface: sends frames as they are and receives every
/// frame arriving there.
struct Raw {
    fd: OwnedFd,
    ifindex: i32,
}

fn check(ret: isize, what: &str) -> io::Result<isize> {
    if ret < 0 {
        Err(io::Error::other(format!(
            "{what}: {}",
            io::Error::last_os_error()
        )))
    } else {
        Ok(ret)
    }
}

impl Raw {
    /// Opens the socket in the client namespace (it stays there when used from this thread).
    fn open(bed: &Bed) -> Res<Raw> {
        let dev = bed.cli_if().to_owned();
        bed.cli
            .run(move || -> io::Result<Raw> {
                let c_dev = std::ffi::CString::new(dev.clone()).map_err(io::Error::other)?;
                // SAFETY: c_dev is a valid NUL-terminated string.
                let ifindex = unsafe { libc::if_nametoindex(c_dev.as_ptr()) } as i32;
                if ifindex == 0 {
                    return Err(io::Error::other(format!("no interface {dev}")));
                }
                let proto = (libc::ETH_P_ALL as u16).to_be();
                // SAFETY: plain socket(2); owned right away.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        i32::from(proto),
                    )
                };
                check(fd as isize, "socket AF_PACKET")?;
                // SAFETY: fd is fresh and owned by nobody else.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                // SAFETY: all-zero is a valid sockaddr_ll.
                let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                ll.sll_family = libc::AF_PACKET as u16;
                ll.sll_protocol = proto;
                ll.sll_ifindex = ifindex;
                // SAFETY: ll is a valid sockaddr_ll of the given size.
                let r = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&raw const ll).cast(),
                        size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                check(r as isize, "bind AF_PACKET")?;
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
                let r = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        (&raw const tv).cast(),
                        size_of::<libc::timeval>() as libc::socklen_t,
                    )
                };
                check(r as isize, "SO_RCVTIMEO")?;
                let on: libc::c_int = 1;
                // SAFETY: `on` is a valid int for PACKET_AUXDATA.
                let r = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_PACKET,
                        libc::PACKET_AUXDATA,
                        (&raw const on).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                check(r as isize, "PACKET_AUXDATA")?;
                Ok(Raw { fd, ifindex })
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn send(&self, frame: &[u8]) -> Res<()> {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_ifindex = self.ifindex;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: frame and ll are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(sent, &format!("sending a {}-byte frame", frame.len())).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// One frame: its length, whether we sent it, and whether the kernel took an outer VLAN
    /// tag out of it (PACKET_AUXDATA). None on the receive timeout.
    fn recv(&self, buf: &mut [u8]) -> Res<Option<(usize, bool, bool)>> {
        // SAFETY: all-zero is valid for these plain C structs.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut cbuf = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>();
        // SAFETY: msg points to valid buffers of the lengths given.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                return Ok(None);
            }
            return Err(format!("receiving on the client interface: {e}"));
        }
        let mut tagged = false;
        // SAFETY: walking the control messages the kernel wrote into `cbuf` with the libc
        // macros; the auxdata is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    tagged = aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0;
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
        }
        let outgoing = from.sll_pkttype == libc::PACKET_OUTGOING;
        Ok(Some((n as usize, outgoing, tagged)))
    }

    /// Every DHCP reply (UDP from port 67, BOOTREPLY) arriving within `limit`, or until
    /// `until` returns true for the replies so far (then 300 ms more, to see stragglers).
    fn replies(&self, limit: Duration, until: impl Fn(&[Seen]) -> bool) -> Res<Vec<Seen>> {
        let end = Instant::now() + limit;
        let mut settle: Option<Instant> = None;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= end || settle.is_some_and(|s| now >= s) {
                return Ok(out);
            }
            let Some((n, outgoing, outer_tag)) = self.recv(&mut buf)? else {
                continue;
            };
            if outgoing {
                continue;
            }
            if let Some(mut s) = parse_reply(&buf[..n]) {
                // The kernel takes the outer VLAN tag out of the frame (into the auxdata).
                s.vlan_tags += usize::from(outer_tag);
                out.push(s);
                if settle.is_none() && until(&out) {
                    settle = Some(Instant::now() + Duration::from_millis(300));
                }
            }
        }
    }
}

/// A DHCP reply seen by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    xid: u32,
    msg_type: u8,
    vlan_tags: usize,
    /// UDP destination port (68 to a client, 67 to a relay).
    dport: u16,
}

/// A BOOTREPLY in Ethernet [VLAN...] IPv4 UDP from port 67.
fn parse_reply(f: &[u8]) -> Option<Seen> {
    let mut at = 12;
    let mut tags = 0;
    while matches!(
        u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]),
        TPID_8021Q | TPID_8021AD
    ) {
        at += 4;
        tags += 1;
    }
    if f.get(at..at + 2)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(at + 2..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if udp.get(0..2)? != 67u16.to_be_bytes() {
        return None;
    }
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let d = udp.get(8..)?;
    if *d.first()? != 2 || d.get(236..240)? != [99, 130, 83, 99] {
        return None;
    }
    let xid = u32::from_be_bytes(d.get(4..8)?.try_into().ok()?);
    let mut o = d.get(240..)?;
    let mut msg_type = 0;
    while let Some((&code, rest)) = o.split_first() {
        match code {
            0 => o = rest,
            255 => break,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let val = rest.get(..usize::from(len))?;
                if code == 53 && len == 1 {
                    msg_type = val[0];
                }
                o = rest.get(usize::from(len)..)?;
            }
        }
    }
    Some(Seen {
        xid,
        msg_type,
        vlan_tags: tags,
        dport,
    })
}

// ------------------------------------------------------------------ the runs

fn config(bed: &Bed) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
commit = "ack"

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]

[[subnet.pool]]
range = "10.77.1.0-10.77.1.255"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
    );
    write_file(&path, &text)?;
    Ok(path)
}

/// A test bed with IPv6 off on both ends: the link carries only what the test sends.
fn quiet_bed() -> Res<Bed> {
    let bed = Bed::new(None)?;
    for (ns, dev) in [(&bed.srv, bed.srv_if()), (&bed.cli, bed.cli_if())] {
        // /proc/sys/net is the namespace of the thread that opens it.
        let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        ns.run(move || std::fs::write(&path, "1").map_err(|e| format!("writing {path}: {e}")))
            .map_err(|e| e.to_string())??;
    }
    Ok(bed)
}

/// Counters a run compares exactly: every one that any kind may move, and what the probe
/// moves.
const WATCHED: &[&str] = &[
    "xdp.seen",
    "xdp.redirected",
    "xdp.passed",
    XDP_MALFORMED,
    "xdp.no_socket",
    FRAME_DROPS,
    "engine.received",
    ENGINE_MALFORMED,
    "engine.not_request",
    "engine.no_subnet",
    "engine.relay_info_from_client_dropped",
    "engine.untrusted_relay",
    "engine.discovers",
    "engine.offers",
    "engine.acks",
    "engine.naks",
];

fn counter(fin: &Finished, name: &str) -> Res<u64> {
    let (section, key) = name
        .split_once('.')
        .ok_or_else(|| format!("counter name {name} without a section"))?;
    fin.counter(section, key)
}

/// What a run must count: the probe DISCOVER (redirected and offered), plus the kind's own
/// frames on their counter or, for answered kinds, as DISCOVERs offered.
fn expected(kind: &Kind) -> BTreeMap<&'static str, u64> {
    let n = kind.frames.len() as u64;
    let mut e: BTreeMap<&'static str, u64> = WATCHED.iter().map(|c| (*c, 0)).collect();
    let mut add = |c: &'static str, v: u64| *e.entry(c).or_default() += v;
    // The probe.
    for c in [
        "xdp.seen",
        "xdp.redirected",
        "engine.received",
        "engine.discovers",
        "engine.offers",
    ] {
        add(c, 1);
    }
    add("xdp.seen", n);
    match kind.counter {
        None => {
            for c in [
                "xdp.redirected",
                "engine.received",
                "engine.discovers",
                "engine.offers",
            ] {
                add(c, n);
            }
        }
        Some(c @ (XDP_MALFORMED | XDP_PASSED)) => {
            add(c, n);
            if c == XDP_MALFORMED {
                add(XDP_PASSED, n); // malformed frames are handed to the kernel
            }
        }
        Some(FRAME_DROPS) => {
            add("xdp.redirected", n);
            add(FRAME_DROPS, n);
        }
        Some(c) => {
            // Counted by the engine: it received them.
            add("xdp.redirected", n);
            add("engine.received", n);
            add(c, n);
        }
    }
    e
}

/// One daemon run for `kind`: send its frames, then the probe; check replies and counters.
fn run_kind(bed: &Bed, cfg: &std::path::Path, kind: &Kind) -> Res<()> {
    let daemon = Daemon::start(bed, cfg, Io::Xdp)?;
    let raw = Raw::open(bed)?;
    for f in &kind.frames {
        raw.send(f)?;
    }
    // The kind's frames first (on whichever RX queue they land), then the probe.
    std::thread::sleep(Duration::from_millis(300));
    raw.send(&client_frame(&discover(PROBE_XID)))?;
    let replies = raw.replies(Duration::from_secs(5), |seen| {
        seen.iter().any(|s| s.xid == PROBE_XID)
            && (!kind.answered || seen.iter().any(|s| s.xid == KIND_XID))
    })?;
    let fin = daemon.stop()?;
    let probe: Vec<&Seen> = replies.iter().filter(|s| s.xid == PROBE_XID).collect();
    if probe.len() != 1 || probe[0].msg_type != OFFER {
        return Err(format!(
            "{}: the probe DISCOVER got {probe:?}, expected one OFFER (server not listening?); \
             replies {replies:?}; log:\n{}",
            kind.name, fin.log
        ));
    }
    let from_kind: Vec<&Seen> = replies.iter().filter(|s| s.xid != PROBE_XID).collect();
    if kind.answered {
        let ok = from_kind.len() == kind.frames.len()
            && from_kind.iter().all(|s| {
                s.xid == KIND_XID && s.msg_type == OFFER && s.vlan_tags == kind.reply_tags
            });
        if !ok {
            return Err(format!(
                "{}: expected {} OFFER(s) to the kind's DISCOVER, saw {from_kind:?}",
                kind.name,
                kind.frames.len()
            ));
        }
    } else if !from_kind.is_empty() {
        return Err(format!(
            "{}: a reply was built from a damaged frame: {from_kind:?}",
            kind.name
        ));
    }
    let want = expected(kind);
    let mut diffs = Vec::new();
    for (name, v) in &want {
        let got = counter(&fin, name)?;
        if got != *v {
            diffs.push(format!("{name} = {got}, expected {v}"));
        }
    }
    if !diffs.is_empty() {
        return Err(format!(
            "{}: counters differ: {}; stats {}",
            kind.name,
            diffs.join(", "),
            fin.stats
        ));
    }
    Ok(())
}

/// Runs each kind on one bed; returns every failure (not only the first).
fn run_family(kinds: Vec<Kind>) {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = quiet_bed().expect("test bed");
    let cfg = config(&bed).expect("configuration");
    let mut failures = Vec::new();
    for kind in &kinds {
        let started = Instant::now();
        match run_kind(&bed, &cfg, kind) {
            Ok(()) => eprintln!(
                "{}: ok ({:.1} s)",
                kind.name,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn xdp_malformed_truncated_frames() {
    run_family(truncation_kinds());
}

#[test]
fn xdp_malformed_lengths() {
    run_family(length_kinds());
}

#[test]
fn xdp_malformed_checksums() {
    run_family(checksum_kinds());
}

#[test]
fn xdp_malformed_ip_headers() {
    run_family(ip_header_kinds());
}

#[test]
fn xdp_malformed_fragments() {
    run_family(fragment_kinds());
}

#[test]
fn xdp_malformed_vlan_stacks() {
    run_family(vlan_kinds());
}

#[test]
fn xdp_malformed_dhcp_options() {
    run_family(dhcp_option_kinds());
}

#[test]
fn xdp_malformed_option_82() {
    run_family(option_82_kinds());
}

#[test]
fn xdp_malformed_ipv6_extension_chains() {
    run_family(ipv6_kinds());
}

#[test]
fn xdp_malformed_junk() {
    run_family(junk_kinds());
}
