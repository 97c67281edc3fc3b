//! Issue 15 item 1 in network namespaces (root; see `common/require.rs`): variable-length lease
//! data. A relay agent (a UDP socket on port 67 in the client namespace, 10.77.0.50) inserts a
//! 120-byte option 82 (circuit-id, remote-id, a vendor sub-option, as CMTS and OLT relays do)
//! and the clients send a host name (12) and a vendor class (60).
//!
//! - xdhcpd pair (load balancing, `secs` past load-balance-max-seconds so the server the relay
//!   asks answers): one client through each partner. Each partner holds the other's binding
//!   with the whole option 82 (BNDUPD both ways); RFC 4388 leasequery to either server returns
//!   it whole; `xdhcpd leases lookup` beside the running daemon and the control API's lease
//!   lookup show option 82, host name and vendor class whole.
//! - ISC dhcpd 4.4 as secondary: our BNDUPD with the 120-byte option 82 (and host name, vendor
//!   class) in client-request-options is accepted and acknowledged, ISC's lease file holds the
//!   binding, and leasequery to xdhcpd returns the option whole. A capture of the failover
//!   link shows the BNDUPD carrying option 82 whole (code 82, length 120, the 120 bytes) in
//!   client-request-options. ISC does not carry it: it neither keeps it from our BNDUPD (its
//!   lease file has no `agent.` lines for the binding) nor sends it (ISC 4.4
//!   `server/failover.c`: `dhcp_failover_send_bind_update` skips request options, "XXX request
//!   options", and `dhcp_failover_process_bind_update` reads only chaddr, client id, times and
//!   status), so a binding ISC grants reaches xdhcpd without option 82, and the bytes of the
//!   option ISC's client sent never appear on the link; the test checks that too, so a change
//!   of that fact is noticed.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::Duration;

use daemon_common::{wait_for, write_file, Res};
use failover_common::*;
use require::{require, Capability};
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, MAGIC_COOKIE, OP_BOOTREQUEST};

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const HOST_NAME: &[u8] = b"ont-sfu-0042-living-room";
const VENDOR_CLASS: &[u8] = b"docsis3.1:05240101010201020301";

/// A 120-byte option 82: circuit-id, remote-id and a vendor-specific sub-option (9).
fn opt82(tag: u8) -> Vec<u8> {
    let circuit = format!("olt-07 xpon 0/3/12:{tag:03}.1001 gem-port 4097 vlan 1001");
    let remote = format!("subscriber-{tag:03}-aa:bb:cc:dd:ee:ff-fiber");
    let mut v = vec![1, circuit.len() as u8];
    v.extend_from_slice(circuit.as_bytes());
    v.extend_from_slice(&[2, remote.len() as u8]);
    v.extend_from_slice(remote.as_bytes());
    let rest = 120 - v.len() - 2;
    v.extend_from_slice(&[9, rest as u8]);
    // Enterprise 3561 (Broadband Forum), then its data.
    v.extend_from_slice(&[0, 0, 0x0d, 0xe9]);
    v.extend((0..rest - 4).map(|k| tag.wrapping_add(k as u8)));
    assert_eq!(v.len(), 120);
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A relayed BOOTREQUEST (giaddr = RELAY, hops 1, `secs` 30: past load-balance-max-seconds,
/// so the server asked answers whatever its hash bucket).
fn packet(xid: u32, ciaddr: Ipv4Addr, mac: Option<&[u8; 6]>, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[3] = 1;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[8..10].copy_from_slice(&30u16.to_be_bytes());
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[24..28].copy_from_slice(&RELAY.octets());
    if let Some(m) = mac {
        b[1] = 1;
        b[2] = 6;
        b[28..34].copy_from_slice(m);
    }
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    for (c, v) in opts {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(opt::END);
    b
}

#[derive(Debug)]
struct Reply {
    kind: MessageType,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    chaddr: Vec<u8>,
    relay_info: Option<Vec<u8>>,
}

fn parse(b: &[u8]) -> Res<Reply> {
    let m = Message::new_checked(b).map_err(|e| format!("reply: {e}"))?;
    let s = m.summary().map_err(|e| format!("reply options: {e}"))?;
    Ok(Reply {
        kind: s.message_type.ok_or("reply without message type")?,
        ciaddr: m.ciaddr(),
        yiaddr: m.yiaddr(),
        chaddr: m.chaddr().to_vec(),
        relay_info: s.relay_agent_info.map(<[u8]>::to_vec),
    })
}

/// Sends `req` to `server`:67 from RELAY:67; the answer with the same xid (a few tries).
fn exchange(sock: &UdpSocket, server: Ipv4Addr, req: &[u8]) -> Res<Reply> {
    let xid = &req[4..8];
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        sock.send_to(req, SocketAddrV4::new(server, 67))
            .map_err(|e| format!("sending to {server}:67: {e}"))?;
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) if n >= 240 && &buf[4..8] == xid && buf[0] == 2 => {
                    return parse(&buf[..n]);
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(format!("receiving from {server}: {e}")),
            }
        }
    }
    Err(format!(
        "no answer from {server} to xid {xid:02x?} after 5 tries"
    ))
}

/// DISCOVER + REQUEST through `server` with option 82 `ri`, host name and vendor class;
/// returns the address. OFFER and ACK must echo option 82 whole (RFC 3046).
fn lease_via(
    sock: &UdpSocket,
    server: Ipv4Addr,
    mac: &[u8; 6],
    ri: &[u8],
    xid: u32,
) -> Res<Ipv4Addr> {
    let common: [(u8, &[u8]); 3] = [
        (opt::HOST_NAME, HOST_NAME),
        (opt::VENDOR_CLASS, VENDOR_CLASS),
        (opt::RELAY_AGENT_INFO, ri),
    ];
    let mut o: Vec<(u8, &[u8])> = vec![(opt::MESSAGE_TYPE, &[1])];
    o.extend_from_slice(&common);
    let offer = exchange(
        sock,
        server,
        &packet(xid, Ipv4Addr::UNSPECIFIED, Some(mac), &o),
    )?;
    if offer.kind != MessageType::Offer || offer.relay_info.as_deref() != Some(ri) {
        return Err(format!(
            "{server}: expected an OFFER echoing option 82 whole: {offer:?}"
        ));
    }
    let ip = offer.yiaddr;
    let (rip, sid) = (ip.octets(), server.octets());
    let mut o: Vec<(u8, &[u8])> = vec![
        (opt::MESSAGE_TYPE, &[3]),
        (opt::SERVER_ID, &sid),
        (opt::REQUESTED_IP, &rip),
    ];
    o.extend_from_slice(&common);
    let ack = exchange(
        sock,
        server,
        &packet(xid + 1, Ipv4Addr::UNSPECIFIED, Some(mac), &o),
    )?;
    if ack.kind != MessageType::Ack || ack.yiaddr != ip || ack.relay_info.as_deref() != Some(ri) {
        return Err(format!(
            "{server}: expected an ACK of {ip} echoing option 82: {ack:?}"
        ));
    }
    Ok(ip)
}

fn leasequery(xid: u32, ciaddr: Ipv4Addr, mac: Option<&[u8; 6]>) -> Vec<u8> {
    packet(
        xid,
        ciaddr,
        mac,
        &[
            (opt::MESSAGE_TYPE, &[MessageType::LeaseQuery as u8]),
            (
                opt::PARAMETER_LIST,
                &[opt::LEASE_TIME, opt::RELAY_AGENT_INFO],
            ),
        ],
    )
}

/// Leasequery by address and by MAC at `server`: LEASEACTIVE for `mac` with option 82 `ri`.
fn assert_lq(
    sock: &UdpSocket,
    server: Ipv4Addr,
    ip: Ipv4Addr,
    mac: &[u8; 6],
    ri: Option<&[u8]>,
    xid: u32,
) -> Res<()> {
    let by_ip = exchange(sock, server, &leasequery(xid, ip, None))?;
    let by_mac = exchange(
        sock,
        server,
        &leasequery(xid + 1, Ipv4Addr::UNSPECIFIED, Some(mac)),
    )?;
    for (how, a) in [("address", &by_ip), ("MAC", &by_mac)] {
        if a.kind != MessageType::LeaseActive
            || a.ciaddr != ip
            || a.chaddr != mac.to_vec()
            || a.relay_info.as_deref() != ri
        {
            return Err(format!(
                "leasequery by {how} at {server} for {ip}: expected LEASEACTIVE with option 82 \
                 {:?} ({} bytes), got {a:?}",
                ri.map(hex),
                ri.map_or(0, <[u8]>::len)
            ));
        }
    }
    Ok(())
}

/// `xdhcpd leases lookup --ip` on a running daemon's file (read-only, beside it).
fn lookup(xd: &Xd, ip: Ipv4Addr) -> Res<serde_json::Value> {
    let bin = daemon_common::xdhcpd_bin()?;
    let out = daemon_common::output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["leases", "lookup", "-c"])
            .arg(&xd.config)
            .args(["--ip", &ip.to_string()]),
    )?;
    serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("leases lookup JSON: {e}: {} {}", out.stdout, out.stderr))
}

/// The control API's lease lookup (`xdhcpd ctl lease --ip`).
fn api_lease(xd: &Xd, ip: Ipv4Addr) -> Res<serde_json::Value> {
    let bin = daemon_common::xdhcpd_bin()?;
    let out = daemon_common::output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(&xd.socket)
            .args(["lease", "--ip", &ip.to_string()]),
    )?;
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .map_err(|e| format!("ctl lease JSON: {e}: {} {}", out.stdout, out.stderr))?;
    Ok(v["leases"][0].clone())
}

fn assert_record(who: &str, v: &serde_json::Value, ri: &[u8]) -> Res<()> {
    let want_hn = String::from_utf8_lossy(HOST_NAME);
    let want_vc = String::from_utf8_lossy(VENDOR_CLASS);
    if v["state"] != "active"
        || v["relay_agent_info"] != hex(ri).as_str()
        || v["hostname"] != want_hn.as_ref()
        || v["vendor_class"] != want_vc.as_ref()
    {
        return Err(format!(
            "{who}: expected an active record with option 82 {} ({} bytes), host name \
             {want_hn:?}, vendor class {want_vc:?}: {v}",
            hex(ri),
            ri.len()
        ));
    }
    Ok(())
}

fn relay_socket(bed: &PairBed) -> Res<UdpSocket> {
    bed.c
        .add_addr(&bed.lc.a, &format!("{RELAY}/16"))
        .map_err(|e| e.to_string())?;
    bed.c
        .run(|| -> Res<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(RELAY, 67))
                .map_err(|e| format!("binding {RELAY}:67: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(1500)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .map_err(|e| e.to_string())?
}

fn addr(s: &str) -> Res<Ipv4Addr> {
    s.parse().map_err(|_| format!("bad address {s}"))
}

#[test]
fn failover_varlen_option82_of_120_bytes_held_whole_by_both_xdhcpd_partners() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = xdhcpd_pair() {
        panic!("{e}");
    }
}

fn xdhcpd_pair() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 30,
        split: Some(128),
    };
    let s = xd_sides(&bed, &t)?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let (pa, pb) = (addr(A_ADDR)?, addr(B_ADDR)?);
    let sock = relay_socket(&bed)?;

    // One client through each partner, each with its own 120-byte option 82.
    let (mac_a, mac_b) = ([2, 0x56, 0x4c, 0, 0, 1], [2, 0x56, 0x4c, 0, 0, 2]);
    let (ri_a, ri_b) = (opt82(1), opt82(2));
    let ip_a = lease_via(&sock, pa, &mac_a, &ri_a, 0x564c_0100)?;
    let ip_b = lease_via(&sock, pb, &mac_b, &ri_b, 0x564c_0200)?;
    a.wait_drained(Duration::from_secs(10))?;
    b.wait_drained(Duration::from_secs(10))?;

    // Leasequery to either server: both bindings, option 82 whole.
    let mut xid = 0x564c_1000;
    for server in [pa, pb] {
        for (ip, mac, ri) in [(ip_a, &mac_a, &ri_a), (ip_b, &mac_b, &ri_b)] {
            assert_lq(&sock, server, ip, mac, Some(ri), xid)?;
            xid += 2;
        }
    }
    // The lease tools beside the running daemons and the control API: whole too (with the
    // host name and vendor class).
    for (xd, who) in [(&a, "primary"), (&b, "secondary")] {
        for (ip, ri) in [(ip_a, &ri_a), (ip_b, &ri_b)] {
            assert_record(&format!("{who} leases lookup {ip}"), &lookup(xd, ip)?, ri)?;
            assert_record(&format!("{who} ctl lease {ip}"), &api_lease(xd, ip)?, ri)?;
        }
    }
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(5))?;
    a.stop()?;
    b.stop()?;
    Ok(())
}

#[test]
fn failover_varlen_option82_of_120_bytes_with_isc_dhcpd_as_partner() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("dhcpd"),
        Capability::Program("tcpdump"),
    ]) {
        return;
    }
    if let Err(e) = isc_secondary() {
        panic!("{e}");
    }
}

fn isc_secondary() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 20,
        split: Some(128),
    };
    let s = xd_sides_with(&bed, &t, |_, c| for_isc_partner(&c))?;
    let isc_conf = bed.path("isc.conf");
    let isc_file = bed.path("isc.leases");
    write_file(&isc_conf, &isc_config(B_ADDR, A_ADDR, false, &t))?;
    let mut isc = Isc::start(
        &bed.b,
        &bed.lb.a,
        &isc_conf,
        &isc_file,
        &bed.path("isc.log"),
    )?;
    // The failover link as xdhcpd's interface sees it (both directions).
    let pcap = bed.path("failover.pcap");
    let mut cap = capture_failover(&bed, &pcap)?;
    let mut xd = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("xd.log"))?;
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(40))?;
    isc.wait_normal(1, Duration::from_secs(20))?;
    let (pa, pb) = (addr(A_ADDR)?, addr(B_ADDR)?);
    let sock = relay_socket(&bed)?;

    // Through xdhcpd: ISC accepts and acknowledges the BNDUPD carrying the whole option 82.
    let (mac_x, mac_i) = ([2, 0x56, 0x4c, 0, 1, 1], [2, 0x56, 0x4c, 0, 1, 2]);
    let (ri_x, ri_i) = (opt82(7), opt82(8));
    let ip_x = lease_via(&sock, pa, &mac_x, &ri_x, 0x564c_2100)?;
    xd.wait_drained(Duration::from_secs(15))?;
    let mut last = String::new();
    wait_for(
        "ISC to hold xdhcpd's binding",
        Duration::from_secs(15),
        || {
            let view = isc_leases(&isc_file)?;
            Ok(match view.get(&ip_x) {
                Some((st, hw)) if st == "active" && *hw == mac_str(&mac_x) => Some(()),
                other => {
                    last = format!("{other:?}");
                    None
                }
            })
        },
    )
    .map_err(|e| {
        format!(
            "{e}: ISC's lease file has {last}\nISC log:\n{}",
            isc.proc.log_text()
        )
    })?;
    assert_lq(&sock, pa, ip_x, &mac_x, Some(&ri_x), 0x564c_2200)?;
    assert_record("xdhcpd leases lookup", &lookup(&xd, ip_x)?, &ri_x)?;

    // Through ISC: ISC serves the client (and echoes the option), its BNDUPD reaches us
    // without client-request-options, so xdhcpd holds the binding without option 82.
    let ip_i = lease_via(&sock, pb, &mac_i, &ri_i, 0x564c_2300)?;
    let mut xid = 0x564c_2400;
    wait_for(
        "xdhcpd to hold ISC's binding",
        Duration::from_secs(15),
        || {
            xid += 2;
            Ok(assert_lq(&sock, pa, ip_i, &mac_i, None, xid).ok())
        },
    )
    .map_err(|e| {
        format!(
            "{e}: {:?}",
            assert_lq(&sock, pa, ip_i, &mac_i, None, 0x564c_2500)
        )
    })?;
    // On the wire: our BNDUPD carried option 82 whole (code, length, the 120 bytes, in
    // client-request-options); ISC's BNDUPD of its own client carried none of its bytes.
    cap.signal(libc::SIGINT)?;
    cap.wait_exit(Duration::from_secs(10))?;
    let wire = std::fs::read(&pcap).map_err(|e| format!("reading {}: {e}", pcap.display()))?;
    let mut whole = vec![82u8, 120];
    whole.extend_from_slice(&ri_x);
    if !contains(&wire, &whole) {
        return Err(format!(
            "the failover link ({} bytes captured) never carried xdhcpd's option 82 whole",
            wire.len()
        ));
    }
    if contains(&wire, &ri_i) {
        return Err(
            "ISC's BNDUPD carried its client's option 82: ISC now sends \
                    client-request-options; assert that xdhcpd holds it instead"
                .into(),
        );
    }
    // ISC's lease file: xdhcpd's binding without relay agent data (ISC keeps none from a
    // BNDUPD).
    let text = daemon_common::read_text(&isc_file)?;
    let block = isc_block(&text, ip_x);
    if block.contains("agent.") {
        return Err(format!(
            "ISC's lease file holds relay agent data for {ip_x} (it did not before): {block}"
        ));
    }
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(5))?;
    xd.stop()?;
    isc.stop()?;
    Ok(())
}

/// `tcpdump` of the failover link (TCP port 647) on xdhcpd's interface into `pcap`.
fn capture_failover(bed: &PairBed, pcap: &std::path::Path) -> Res<daemon_common::Proc> {
    let log = bed.path("tcpdump-failover.log");
    let pcap_s = pcap.to_string_lossy().into_owned();
    // -Z root: write into the root-owned temporary directory; -U: each packet at once.
    let args = [
        "-i",
        &bed.la.a,
        "-n",
        "-p",
        "-U",
        "-Z",
        "root",
        "-s",
        "0",
        "-w",
        &pcap_s,
        "tcp port 647",
    ];
    let mut proc =
        daemon_common::Proc::spawn("tcpdump", bed.a.command("tcpdump").args(args), &log)?;
    wait_for("tcpdump to listen", Duration::from_secs(10), || {
        proc.check_alive()?;
        Ok(daemon_common::read_text(&log)?
            .contains("listening on")
            .then_some(()))
    })?;
    Ok(proc)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The `lease ADDR { ... }` block of ISC's lease file (the last one: ISC appends).
fn isc_block(text: &str, ip: Ipv4Addr) -> String {
    let head = format!("lease {ip} {{");
    text.rsplit_once(&head)
        .map(|(_, rest)| rest.split_once('}').map_or(rest, |(b, _)| b).to_string())
        .unwrap_or_default()
}
