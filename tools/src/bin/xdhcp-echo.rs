//! `xdhcp-echo`: the raw-path ceiling for DHCP on one interface.
//!
//! Attaches xdhcpd's own XDP program (server flags: UDP to port 67 goes to
//! AF_XDP), binds one AF_XDP socket per RX queue, and reflects every DHCP
//! request in place with the least work that still makes a reply a DHCP
//! client accepts: swap the Ethernet addresses, IPv4 source = `--server-ip`
//! and destination = ciaddr (or broadcast), UDP 67 -> 68 with checksum 0
//! (allowed for UDP over IPv4), BOOTREQUEST -> BOOTREPLY, message type
//! DISCOVER -> OFFER and REQUEST -> ACK, and yiaddr derived from the xid's
//! client index (`10.(128 + i>>16).(i>>8).(i)`, unique per xdhcp-loadgen
//! client). No lease state, no option writing, no checksum over the payload.
//!
//! With `--v6` it reflects DHCPv6 instead (the ceiling of `cargo xtask bench --systems
//! ceiling6`): UDP to 547 goes to AF_XDP; a Solicit becomes an Advertise, a Request or a
//! Renew a Reply, written over the request in its UMEM frame: the message type and the
//! transaction id kept, the client's identifier copied, a fixed server identifier (DUID-LL
//! of the interface's MAC), and for an IA_NA / IA_PD asked for an IAADDR
//! `fdce::<index>` / an IAPREFIX /56 `fdce` + the index's low 24 bits (index = the low 32 bits of the
//! client's DUID-LL MAC, unique per xdhcp-loadgen client), then Ethernet back to the sender,
//! IPv6 from the link-local address to the sender's, UDP 547 -> 546 with its checksum
//! (mandatory over IPv6). No state; relayed messages are not reflected. The least a DHCPv6
//! reply can be and still pass the loadgen's checks (server id, an address / prefix for
//! each IA asked for, no failure status).
//!
//! So `xdhcp-loadgen --scenario dora` against it measures the rate no DHCP
//! server behind the same XDP program and socket layer can beat: each DORA
//! is two frames in and two out on the server side, so its DORA/s is the
//! ceiling's frames/s ÷ 2.
//!
//! One thread busy-polls all sockets (pin it with `taskset`). Stops on
//! SIGINT/SIGTERM or after `--run-for`, and prints (or writes as JSON) its
//! counters.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde::Serialize;
use xdhcpd_common::{XdpConfig, CFG_DHCPV4, CFG_DHCPV6};
use xdhcpd_io::frame::{ipv6_payload_offset, write_ipv6_udp_headers, Ipv6UdpAddrs};
use xdhcpd_io::xdp::{AttachMode, XdpSteering};
use xdhcpd_io::xsk::{BindMode, Desc, XskConfig, XskSocket};
use xdhcpd_tools::loadgen::sys;

/// XDP -> AF_XDP DHCP reflector (the raw ceiling of `cargo xtask bench`).
#[derive(Parser, Debug)]
#[command(name = "xdhcp-echo", version)]
struct Args {
    /// Interface to serve (server side of the veth pair).
    #[arg(short, long)]
    interface: String,
    /// Source address of the replies (the "server identifier" clients learn); DHCPv4 only.
    #[arg(long, required_unless_present = "v6")]
    server_ip: Option<Ipv4Addr>,
    /// Reflect DHCPv6 (UDP 547: Solicit -> Advertise, Request / Renew -> Reply) instead.
    #[arg(long)]
    v6: bool,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    run_for: Option<u64>,
    /// Write the final counters as JSON to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// XDP object (default: embedded, or the xtask build output).
    #[arg(long)]
    ebpf_object: Option<PathBuf>,
}

/// Frames taken per socket per loop turn.
const BATCH: usize = 64;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Relaxed);
}

#[derive(Debug, Default, Serialize)]
struct Counters {
    rx_frames: u64,
    tx_frames: u64,
    /// Frames that were not a DHCPDISCOVER / DHCPREQUEST we can reflect.
    not_reflected: u64,
    /// Replies dropped because the TX ring stayed full.
    tx_ring_full: u64,
    /// Receive drops reported by the kernel for our sockets (ring full / no buffer).
    kernel_rx_drops: u64,
    seconds: f64,
    rx_pps: f64,
    tx_pps: f64,
}

const ETH_LEN: usize = 14;
const UDP_LEN: usize = 8;
/// BOOTP fixed part + magic cookie: options start here.
const DHCP_OPTIONS_AT: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Rewrites the request in `frame` into its reply in place. Returns the
/// reply's length, or None if the frame is not a reflectable DHCP request
/// (the frame is then left in an unspecified state and must not be sent).
///
/// Why these fields: the loadgen matches replies by xid and chaddr (kept),
/// wants op = BOOTREPLY and type OFFER/ACK, binds yiaddr (unique per client
/// so its duplicate check stays quiet) and takes the server id from option
/// 54 or, absent, from the IPv4 source.
fn reflect(frame: &mut [u8], our_mac: [u8; 6], server_ip: Ipv4Addr) -> Option<usize> {
    if frame.len() < ETH_LEN + 20 + UDP_LEN + DHCP_OPTIONS_AT || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = ETH_LEN;
    if frame[ip] >> 4 != 4 || frame[ip + 9] != 17 {
        return None;
    }
    let ihl = usize::from(frame[ip] & 0x0f) * 4;
    let ip_total = usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]));
    let udp = ip + ihl;
    if ihl < 20 || ip_total < ihl + UDP_LEN || ip + ip_total > frame.len() {
        return None;
    }
    if frame[udp + 2..udp + 4] != [0, 67] {
        return None;
    }
    let dhcp = udp + UDP_LEN;
    let end = ip + ip_total;
    if end < dhcp + DHCP_OPTIONS_AT || frame[dhcp] != 1 || frame[dhcp + 236..dhcp + 240] != MAGIC {
        return None;
    }
    // Option 53 (message type): find it, map the request type to the reply type.
    let mut at = dhcp + DHCP_OPTIONS_AT;
    let mut type_at = None;
    while at < end {
        match frame[at] {
            0 => at += 1,
            255 => break,
            code => {
                let len = usize::from(*frame.get(at + 1)?);
                if at + 2 + len > end {
                    return None;
                }
                if code == 53 && len == 1 {
                    type_at = Some(at + 2);
                    break;
                }
                at += 2 + len;
            }
        }
    }
    let type_at = type_at?;
    frame[type_at] = match frame[type_at] {
        1 => 2, // DISCOVER -> OFFER
        3 => 5, // REQUEST -> ACK
        _ => return None,
    };
    frame[dhcp] = 2; // BOOTREPLY
    let xid = u32::from_be_bytes([
        frame[dhcp + 4],
        frame[dhcp + 5],
        frame[dhcp + 6],
        frame[dhcp + 7],
    ]);
    let index = xid & 0x00ff_ffff;
    frame[dhcp + 16..dhcp + 20].copy_from_slice(&[
        10,
        128 + (index >> 16) as u8,
        (index >> 8) as u8,
        index as u8,
    ]);
    let ciaddr: [u8; 4] = [
        frame[dhcp + 12],
        frame[dhcp + 13],
        frame[dhcp + 14],
        frame[dhcp + 15],
    ];
    let dst_ip = if ciaddr == [0; 4] { [255; 4] } else { ciaddr };

    // Ethernet: back to the sender.
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&our_mac);
    // IPv4: new addresses, TTL, header checksum.
    frame[ip + 8] = 64;
    frame[ip + 12..ip + 16].copy_from_slice(&server_ip.octets());
    frame[ip + 16..ip + 20].copy_from_slice(&dst_ip);
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let sum = ipv4_header_checksum(&frame[ip..ip + ihl]);
    frame[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
    // UDP: 67 -> 68, no checksum.
    frame[udp..udp + 4].copy_from_slice(&[0, 67, 0, 68]);
    frame[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    Some(end)
}

/// Longest DHCPv6 request reflected (the loadgen's are under 150 bytes).
const MAX_V6_REQUEST: usize = 512;

fn opt6(out: &mut [u8], at: &mut usize, code: u16, len: usize) -> Option<usize> {
    let end = *at + 4 + len;
    let o = out.get_mut(*at..end)?;
    o[..2].copy_from_slice(&code.to_be_bytes());
    o[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let body = *at + 4;
    *at = end;
    Some(body)
}

/// Rewrites the DHCPv6 request in `frame[..len]` (the frame buffer may be longer: the
/// reply is) into its reply, see the module comment. Returns the reply's length, or None if
/// the frame is not a request it reflects (the frame is then unchanged).
fn reflect6(frame: &mut [u8], len: usize, our_mac: [u8; 6]) -> Option<usize> {
    let off = ipv6_payload_offset(0);
    let req = frame.get(..len)?;
    if req.len() < off + 4 || req[12..14] != [0x86, 0xdd] || req[14] >> 4 != 6 || req[20] != 17 {
        return None;
    }
    if req[56..58] != [0x02, 0x23] {
        return None; // not to UDP 547
    }
    let udp_len = usize::from(u16::from_be_bytes([req[58], req[59]]));
    if udp_len < 8 + 4 || off - 8 + udp_len > req.len() || udp_len - 8 > MAX_V6_REQUEST {
        return None;
    }
    let mut m = [0u8; MAX_V6_REQUEST];
    let mlen = udp_len - 8;
    m[..mlen].copy_from_slice(&req[off..off + mlen]);
    let reply_type = match m[0] {
        1 => 2,     // Solicit -> Advertise
        3 | 5 => 7, // Request, Renew -> Reply
        _ => return None,
    };
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&req[6..12]);
    let mut src_ip = [0u8; 16];
    src_ip.copy_from_slice(&req[22..38]);
    // Walk the request's options: the client id, which IAs (and their IAIDs).
    let mut client_id: Option<(usize, usize)> = None;
    let mut ias: [(u16, [u8; 4]); 4] = [(0, [0; 4]); 4];
    let mut n_ias = 0;
    let mut at = 4;
    while at + 4 <= mlen {
        let code = u16::from_be_bytes([m[at], m[at + 1]]);
        let olen = usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]]));
        if at + 4 + olen > mlen {
            return None;
        }
        match code {
            1 => client_id = Some((at + 4, olen)),
            3 | 25 if olen >= 12 && n_ias < ias.len() => {
                ias[n_ias] = (code, [m[at + 4], m[at + 5], m[at + 6], m[at + 7]]);
                n_ias += 1;
            }
            _ => {}
        }
        at += 4 + olen;
    }
    let (cid_at, cid_len) = client_id?;
    if cid_len < 4 {
        return None;
    }
    let c = &m[cid_at + cid_len - 4..cid_at + cid_len];
    let index = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    // The reply, written over the request's payload.
    let out = frame.get_mut(off..)?;
    let mut w = 0;
    out.get_mut(..4)?
        .copy_from_slice(&[reply_type, m[1], m[2], m[3]]);
    w += 4;
    let b = opt6(out, &mut w, 1, cid_len)?;
    out[b..b + cid_len].copy_from_slice(&m[cid_at..cid_at + cid_len]);
    let b = opt6(out, &mut w, 2, 10)?;
    let mac = our_mac;
    out[b..b + 10].copy_from_slice(&[0, 3, 0, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    let i = index.to_be_bytes();
    for &(code, iaid) in &ias[..n_ias] {
        let inner = if code == 3 { 24 } else { 25 };
        let b = opt6(out, &mut w, code, 12 + 4 + inner)?;
        out[b..b + 4].copy_from_slice(&iaid);
        out[b + 4..b + 12].copy_from_slice(&[0, 0, 0x07, 0x08, 0, 0, 0x0b, 0x40]);
        let mut x = b + 12;
        if code == 3 {
            let a = opt6(out, &mut x, 5, 24)?;
            out[a..a + 16].copy_from_slice(&[
                0xfd, 0xce, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i[0], i[1], i[2], i[3],
            ]);
            out[a + 16..a + 24].copy_from_slice(&[0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20]);
        } else {
            let p = opt6(out, &mut x, 26, 25)?;
            out[p..p + 9].copy_from_slice(&[0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20, 56]);
            out[p + 9..p + 25].copy_from_slice(&[
                0xfd, 0xce, i[1], i[2], i[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ]);
        }
    }
    let addrs = Ipv6UdpAddrs {
        src_mac: our_mac,
        dst_mac: src_mac,
        src_ip: xdhcpd_tools::loadgen::v6::link_local(our_mac),
        dst_ip: std::net::Ipv6Addr::from(src_ip),
        src_port: 547,
        dst_port: 546,
    };
    write_ipv6_udp_headers(frame, &[], &addrs, w).ok()
}

fn ipv4_header_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn run(a: &Args) -> anyhow::Result<Counters> {
    let our_mac = sys::iface_mac(&a.interface)
        .with_context(|| format!("reading the MAC address of {}", a.interface))?;
    let server_ip = match (a.v6, a.server_ip) {
        (true, _) => Ipv4Addr::UNSPECIFIED,
        (false, Some(ip)) => ip,
        (false, None) => anyhow::bail!("--server-ip is needed to reflect DHCPv4"),
    };
    let cfg = XdpConfig {
        flags: if a.v6 { CFG_DHCPV6 } else { CFG_DHCPV4 },
        failover_port: 0,
        standby_max_secs: 0,
    };
    let mut steering = XdpSteering::attach(
        &a.interface,
        AttachMode::Auto,
        a.ebpf_object.as_deref(),
        cfg,
    )
    .with_context(|| format!("attaching the XDP program to {}", a.interface))?;
    let queues = sys::rx_queue_count(&a.interface).unwrap_or(1).max(1);
    let mut socks = Vec::new();
    for q in 0..queues {
        let mut x = XskConfig::new(a.interface.clone(), q);
        x.mode = BindMode::Auto;
        // Replies go out in the frame they came in: no tx pool.
        x.tx_frames = 0;
        x.frame_count = 8192;
        x.ring_size = 4096;
        let sock = XskSocket::open(&x)
            .with_context(|| format!("opening the AF_XDP socket on {} queue {q}", a.interface))?;
        steering
            .register_socket(q, sock.fd())
            .with_context(|| format!("registering the AF_XDP socket of queue {q}"))?;
        socks.push(sock);
    }
    eprintln!(
        "xdhcp-echo: reflecting DHCP{} on {} ({queues} queue(s), XDP {}) as {}",
        if a.v6 { "v6" } else { "v4" },
        a.interface,
        steering.mode(),
        if a.v6 {
            xdhcpd_tools::loadgen::v6::link_local(our_mac).to_string()
        } else {
            server_ip.to_string()
        }
    );
    let mut c = Counters::default();
    let mut rx: Vec<Desc> = Vec::with_capacity(BATCH);
    let deadline = a.run_for.map(|s| Instant::now() + Duration::from_secs(s));
    let t0 = Instant::now();
    let mut turns = 0u32;
    while !STOP.load(Relaxed) {
        turns = turns.wrapping_add(1);
        if turns.is_multiple_of(4096) && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        for sock in &mut socks {
            rx.clear();
            if sock.recv(&mut rx, BATCH) == 0 {
                // Busy-poll: reap completions, keep the fill ring full, kick rx.
                sock.flush().context("AF_XDP flush")?;
                continue;
            }
            c.rx_frames += rx.len() as u64;
            for d in &rx {
                let frame = sock.frame_mut(d.addr);
                let n = (d.len as usize).min(frame.len());
                let reflected = if a.v6 {
                    reflect6(frame, n, our_mac)
                } else {
                    reflect(&mut frame[..n], our_mac, server_ip)
                };
                match reflected {
                    Some(len) => {
                        let reply = Desc {
                            addr: d.addr,
                            len: len as u32,
                        };
                        if sock.tx_push(reply).is_err() {
                            sock.flush().context("AF_XDP flush")?;
                            if sock.tx_push(reply).is_ok() {
                                c.tx_frames += 1;
                            } else {
                                c.tx_ring_full += 1;
                                sock.recycle(d.addr);
                            }
                        } else {
                            c.tx_frames += 1;
                        }
                    }
                    None => {
                        c.not_reflected += 1;
                        sock.recycle(d.addr);
                    }
                }
            }
            sock.flush().context("AF_XDP flush")?;
        }
    }
    c.seconds = t0.elapsed().as_secs_f64();
    c.kernel_rx_drops = socks
        .iter()
        .filter_map(|s| s.stats().ok())
        .map(|s| s.rx_dropped + s.rx_ring_full)
        .sum();
    if c.seconds > 0.0 {
        c.rx_pps = c.rx_frames as f64 / c.seconds;
        c.tx_pps = c.tx_frames as f64 / c.seconds;
    }
    // Sockets first, then the program (dropping `steering` detaches it).
    drop(socks);
    drop(steering);
    Ok(c)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
    let c = match run(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xdhcp-echo: {e:#}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "xdhcp-echo: {} frames in, {} out ({:.0} pps in) in {:.1} s; {} not reflected, {} tx ring full, {} kernel rx drops",
        c.rx_frames, c.tx_frames, c.rx_pps, c.seconds, c.not_reflected, c.tx_ring_full, c.kernel_rx_drops
    );
    if let Some(path) = &a.stats_json {
        let json = match serde_json::to_string_pretty(&c) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("xdhcp-echo: encoding the stats: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("xdhcp-echo: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DHCP request frame as xdhcp-loadgen builds it (broadcast DISCOVER).
    fn request(msg_type: u8, ciaddr: [u8; 4]) -> Vec<u8> {
        let mut dhcp = vec![0u8; 240];
        dhcp[0] = 1;
        dhcp[1] = 1;
        dhcp[2] = 6;
        dhcp[4..8].copy_from_slice(&0x0301_0203u32.to_be_bytes());
        dhcp[12..16].copy_from_slice(&ciaddr);
        dhcp[28..34].copy_from_slice(&[2, 0x4c, 0, 1, 2, 3]);
        dhcp[236..240].copy_from_slice(&MAGIC);
        dhcp.extend_from_slice(&[0, 53, 1, msg_type, 55, 2, 1, 3, 255]);
        let udp_len = (8 + dhcp.len()) as u16;
        let ip_len = 20 + udp_len;
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0x4c, 0, 1, 2, 3, 0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
        ]);
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&[0, 68, 0, 67, 0, 0, 0x12, 0x34]);
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&dhcp);
        f
    }

    #[test]
    fn discover_becomes_offer_the_loadgen_accepts() {
        let mut f = request(1, [0; 4]);
        let n = reflect(&mut f, [2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 78, 0, 1));
        assert_eq!(n, Some(f.len()));
        let r = xdhcpd_tools::loadgen::reply::parse_reply(&f).expect("a reply");
        assert_eq!(r.kind, xdhcpd_dhcpv4::wire::MessageType::Offer);
        assert_eq!(r.xid, 0x0301_0203);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 129, 2, 3));
        assert_eq!(r.server_id, Ipv4Addr::new(10, 78, 0, 1));
        assert_eq!(r.src_mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[0..6], &[2, 0x4c, 0, 1, 2, 3]);
        assert_eq!(&f[30..34], &[255; 4]);
        assert_eq!(
            ipv4_header_checksum(&f[14..34]),
            0,
            "header checksum verifies"
        );
    }

    #[test]
    fn renewing_request_becomes_unicast_ack() {
        let mut f = request(3, [10, 129, 2, 3]);
        assert!(reflect(&mut f, [2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 78, 0, 1)).is_some());
        let r = xdhcpd_tools::loadgen::reply::parse_reply(&f).expect("a reply");
        assert_eq!(r.kind, xdhcpd_dhcpv4::wire::MessageType::Ack);
        assert_eq!(&f[30..34], &[10, 129, 2, 3]);
    }

    #[test]
    fn ceiling6_reflects_solicit_and_request_into_answers_the_loadgen_accepts() {
        use xdhcpd_tools::loadgen::v6::{self, Msg6, Spec6};
        let me = [2, 0, 0, 0, 0, 1];
        let mac = [2, 0x4c, 0, 0, 1, 2];
        let duid = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
        let mut server_duid = [0u8; v6::MAX_DUID];
        server_duid[..10].copy_from_slice(&duid);
        for (msg, want) in [
            (Msg6::Solicit, xdhcpd_dhcpv4::wire::MessageType::Offer),
            (Msg6::Request, xdhcpd_dhcpv4::wire::MessageType::Ack),
            (Msg6::Renew, xdhcpd_dhcpv4::wire::MessageType::Ack),
        ] {
            let spec = Spec6 {
                msg,
                xid: 0x03_0102,
                mac,
                index: 0x102,
                ia_na: true,
                ia_pd: true,
                addr: Some("fdce::102".parse().expect("address")),
                prefix: Some(("fdce:0:102::".parse().expect("prefix"), 56)),
                server_duid: Some((server_duid, 10)),
            };
            let mut f = vec![0u8; 2048];
            let n = v6::write_frame(&mut f, &spec, None, me).expect("request");
            let len = reflect6(&mut f, n, me).expect("reflected");
            let r = v6::parse_reply(&f[..len]).expect("a reply the loadgen parses");
            assert_eq!(r.kind, want);
            assert_eq!(r.xid, 0x0300_0102);
            assert_eq!(r.chaddr, mac);
            let r6 = r.v6.expect("v6");
            assert_eq!(r6.status, 0);
            assert_eq!(r6.server_duid_len, 10);
            assert_eq!(
                r6.addr.map(|a| a.0),
                Some("fdce::102".parse().expect("address"))
            );
            assert_eq!(
                r6.prefix.map(|p| (p.0, p.1)),
                Some(("fdce:1:200::".parse().expect("prefix"), 56))
            );
            assert_eq!(&f[0..6], &mac, "back to the client");
        }
        // A reply is not reflected again, nor is a truncated request.
        let mut f = vec![0u8; 2048];
        let spec = Spec6 {
            msg: Msg6::Solicit,
            xid: 1,
            mac,
            index: 0x102,
            ia_na: true,
            ia_pd: false,
            addr: None,
            prefix: None,
            server_duid: None,
        };
        let n = v6::write_frame(&mut f, &spec, None, me).expect("request");
        let len = reflect6(&mut f, n, me).expect("reflected");
        assert_eq!(
            reflect6(&mut f, len, me),
            None,
            "an Advertise is not a request"
        );
        let n = v6::write_frame(&mut f, &spec, None, me).expect("request");
        assert_eq!(reflect6(&mut f, n - 10, me), None, "truncated");
    }

    #[test]
    fn refuses_what_it_cannot_reflect() {
        let me = [2, 0, 0, 0, 0, 1];
        let ip = Ipv4Addr::new(10, 78, 0, 1);
        let mut release = request(7, [0; 4]);
        assert_eq!(reflect(&mut release, me, ip), None);
        let mut reply = request(1, [0; 4]);
        reply[42] = 2; // already a BOOTREPLY
        assert_eq!(reflect(&mut reply, me, ip), None);
        let mut short = request(1, [0; 4]);
        short.truncate(200);
        assert_eq!(reflect(&mut short, me, ip), None);
        let mut bad_len = request(1, [0; 4]);
        bad_len[16..18].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(reflect(&mut bad_len, me, ip), None);
        let mut truncated_option = request(1, [0; 4]);
        let at = truncated_option.len() - 9;
        truncated_option[at + 2] = 200; // option 53 claims 200 bytes
        assert_eq!(reflect(&mut truncated_option, me, ip), None);
    }
}
