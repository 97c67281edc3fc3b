//! N:1 backup (issue 15 item 4) in network namespaces (root; see `common/require.rs`): one
//! xdhcpd standby is the secondary of two primaries, ISC dhcpd (relationship "isc", subnet
//! 10.78.1.0/24) and xdhcpd (relationship "xd", subnet 10.78.2.0/24), on the XDP path.
//!
//! A relay agent (UDP sockets on port 67 in the client namespace, one giaddr per subnet)
//! forwards each subnet's clients to that subnet's two servers. Both relationships reach
//! NORMAL; clients of both subnets are leased (load balancing: each relationship's primary
//! and the standby each answer their half); the standby holds both primaries' bindings, each
//! primary holds the standby's grants in its own subnet and nothing of the other's. Then an
//! nftables rule in the standby's namespace cuts the ISC relationship's failover connection
//! only: that relationship goes COMMUNICATIONS-INTERRUPTED on the standby, the xdhcpd
//! relationship stays NORMAL, new clients of both subnets still get leases, and no address is
//! on two clients.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_common::{output, read_text, wait_for, write_file, xdhcpd_bin, Res};
use failover_common::{auth_line, isc_leases, Isc, Xd};
use netns::{veth_pair, Netns, VethPair};
use require::{require, Capability};
use xdhcpd_dhcpv4::wire::{opt, Message, MessageType, MAGIC_COOKIE, OP_BOOTREQUEST};

const ISC_MAIN: &str = "10.77.0.1";
const XD_MAIN: &str = "10.77.0.2";
/// The standby's address in the ISC relationship (and its server id).
const SB_ISC: &str = "10.77.0.3";
/// The standby's address in the xdhcpd relationship.
const SB_XD: &str = "10.77.0.4";
const RELAY_LINK: &str = "10.77.0.50";
const GI_ISC: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 1);
const GI_XD: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 1);
/// Long enough that no first lease (at most MCLT) ends during the test.
const MCLT: u32 = 300;

/// Five namespaces on one bridge: ISC main, xdhcpd main, standby, relay, hub.
struct Bed {
    isc: Netns,
    xd: Netns,
    sb: Netns,
    relay: Netns,
    hub: Netns,
    l_isc: VethPair,
    l_xd: VethPair,
    l_sb: VethPair,
    _l_relay: VethPair,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Res<Bed> {
        let e = |e: std::io::Error| e.to_string();
        let dir = tempfile::Builder::new()
            .prefix("xdhcpd-n1-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let isc = Netns::new("n1i").map_err(e)?;
        let xd = Netns::new("n1x").map_err(e)?;
        let sb = Netns::new("n1s").map_err(e)?;
        let relay = Netns::new("n1r").map_err(e)?;
        let hub = Netns::new("n1h").map_err(e)?;
        let l_isc = veth_pair(&isc, &hub, 1).map_err(e)?;
        let l_xd = veth_pair(&xd, &hub, 1).map_err(e)?;
        let l_sb = veth_pair(&sb, &hub, 1).map_err(e)?;
        let l_relay = veth_pair(&relay, &hub, 1).map_err(e)?;
        hub.ip(&["link", "add", "br0", "type", "bridge"])
            .map_err(e)?;
        for l in [&l_isc, &l_xd, &l_sb, &l_relay] {
            hub.ip(&["link", "set", &l.b, "master", "br0"]).map_err(e)?;
        }
        hub.ip(&["link", "set", "br0", "up"]).map_err(e)?;
        isc.add_addr(&l_isc.a, &format!("{ISC_MAIN}/24"))
            .map_err(e)?;
        xd.add_addr(&l_xd.a, &format!("{XD_MAIN}/24")).map_err(e)?;
        sb.add_addr(&l_sb.a, &format!("{SB_ISC}/24")).map_err(e)?;
        sb.add_addr(&l_sb.a, &format!("{SB_XD}/24")).map_err(e)?;
        relay
            .add_addr(&l_relay.a, &format!("{RELAY_LINK}/24"))
            .map_err(e)?;
        relay
            .add_addr(&l_relay.a, &format!("{GI_ISC}/24"))
            .map_err(e)?;
        relay
            .add_addr(&l_relay.a, &format!("{GI_XD}/24"))
            .map_err(e)?;
        // Replies to the relay (giaddr) go back through it.
        for ns in [&isc, &xd, &sb] {
            ns.ip(&["route", "add", "10.78.0.0/16", "via", RELAY_LINK])
                .map_err(e)?;
        }
        Ok(Bed {
            isc,
            xd,
            sb,
            relay,
            hub,
            l_isc,
            l_xd,
            l_sb,
            _l_relay: l_relay,
            dir,
        })
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn server_head(iface: &str, me: &str, db: &Path, sock: &Path) -> String {
    format!(
        "[server]\ninterface = \"{iface}\"\nio = \"xdp\"\nserver-id = \"{me}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = 600\nmin-time = 10\nmax-time = 7200\noffer-hold = 10\n\n",
        db.display(),
        sock.display()
    )
}

const TIMERS: &str = "poll-interval = 2\npoll-timeout = 8\nuse-safe-period = false\n";

/// The standby: secondary of both relationships, one local address each.
fn standby_config(bed: &Bed, db: &Path, sock: &Path) -> String {
    format!(
        "{}[[failover]]\nname = \"isc\"\nrole = \"secondary\"\naddress = \"{SB_ISC}\"\n\
         peer-address = \"{ISC_MAIN}\"\nmclt = {MCLT}\npartner-software = \"isc-dhcpd\"\n{TIMERS}\n\
         [[failover]]\nname = \"xd\"\nrole = \"secondary\"\naddress = \"{SB_XD}\"\n\
         peer-address = \"{XD_MAIN}\"\nmclt = {MCLT}\n{}{TIMERS}\n\
         [[subnet]]\ncidr = \"10.77.0.0/24\"\nfailover = \"none\"\n\n\
         [[subnet]]\ncidr = \"10.78.1.0/24\"\nfailover = \"isc\"\nrouter = [\"{GI_ISC}\"]\n\
         [[subnet.pool]]\nrange = \"10.78.1.10-10.78.1.200\"\n\n\
         [[subnet]]\ncidr = \"10.78.2.0/24\"\nfailover = \"xd\"\nrouter = [\"{GI_XD}\"]\n\
         [[subnet.pool]]\nrange = \"10.78.2.10-10.78.2.200\"\n",
        server_head(&bed.l_sb.a, SB_ISC, db, sock),
        auth_line(bed.dir.path()),
    )
}

/// The xdhcpd main: primary of relationship "xd" (load balancing), its subnet only.
fn xd_main_config(bed: &Bed, db: &Path, sock: &Path) -> String {
    format!(
        "{}[failover]\nname = \"xd\"\nrole = \"primary\"\naddress = \"{XD_MAIN}\"\n\
         peer-address = \"{SB_XD}\"\nmclt = {MCLT}\nsplit = 128\n{}{TIMERS}\n\
         [[subnet]]\ncidr = \"10.77.0.0/24\"\n\n\
         [[subnet]]\ncidr = \"10.78.2.0/24\"\nrouter = [\"{GI_XD}\"]\n\
         [[subnet.pool]]\nrange = \"10.78.2.10-10.78.2.200\"\n",
        server_head(&bed.l_xd.a, XD_MAIN, db, sock),
        auth_line(bed.dir.path()),
    )
}

/// ISC dhcpd 4.4: primary of relationship "isc" (load balancing).
fn isc_main_config() -> String {
    format!(
        // `ping-check false`: ISC otherwise pings each address before offering it and
        // offers only after its 1 s ping timeout, later than the relay waits.
        "authoritative;\nping-check false;\ndefault-lease-time 600;\nmax-lease-time 7200;\n\
         failover peer \"isc\" {{\n  primary;\n  address {ISC_MAIN};\n  port 647;\n\
           peer address {SB_ISC};\n  peer port 647;\n  max-response-delay 60;\n\
           max-unacked-updates 10;\n  mclt {MCLT};\n  split 128;\n\
           load balance max seconds 3;\n}}\n\
         subnet 10.77.0.0 netmask 255.255.255.0 {{\n}}\n\
         subnet 10.78.1.0 netmask 255.255.255.0 {{\n  option routers {GI_ISC};\n  pool {{\n\
             failover peer \"isc\";\n    range 10.78.1.10 10.78.1.200;\n  }}\n}}\n"
    )
}

// ---- the relay agent ---------------------------------------------------------------------

fn mac(subnet: u8, i: u16) -> [u8; 6] {
    [0x02, 0x4e, 0x31, subnet, (i >> 8) as u8, i as u8]
}

fn packet(xid: u32, giaddr: Ipv4Addr, m: &[u8; 6], secs: u16, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[3] = 1;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[8..10].copy_from_slice(&secs.to_be_bytes());
    b[24..28].copy_from_slice(&giaddr.octets());
    b[28..34].copy_from_slice(m);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    let mut cid = vec![1u8];
    cid.extend_from_slice(m);
    for (c, v) in opts.iter().chain([(opt::CLIENT_ID, cid.as_slice())].iter()) {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.push(opt::END);
    b
}

#[derive(Debug, Clone, Copy)]
struct Answer {
    kind: MessageType,
    server: Ipv4Addr,
    yiaddr: Ipv4Addr,
}

fn answers(sock: &UdpSocket, xid: u32, wait: Duration) -> Res<Vec<Answer>> {
    let until = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(out);
        }
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 240 && buf[0] == 2 && buf[4..8] == xid.to_be_bytes() => {
                let Ok(m) = Message::new_checked(&buf[..n]) else {
                    continue;
                };
                let Ok(s) = m.summary() else { continue };
                if let (Some(kind), Some(server)) = (s.message_type, s.server_id) {
                    out.push(Answer {
                        kind,
                        server,
                        yiaddr: m.yiaddr(),
                    });
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(out)
            }
            Err(e) => return Err(format!("relay socket: {e}")),
        }
    }
}

/// One relay (one giaddr) forwarding to its subnet's two servers.
struct Relay {
    sock: UdpSocket,
    giaddr: Ipv4Addr,
    servers: [Ipv4Addr; 2],
    subnet: u8,
}

impl Relay {
    fn send(&self, b: &[u8]) -> Res<()> {
        for ip in self.servers {
            self.sock
                .send_to(b, SocketAddrV4::new(ip, 67))
                .map_err(|e| format!("sending to {ip}:67: {e}"))?;
        }
        Ok(())
    }

    fn try_lease(&self, xid: u32, m: &[u8; 6], secs: u16) -> Res<Option<Answer>> {
        self.send(&packet(
            xid,
            self.giaddr,
            m,
            secs,
            &[(opt::MESSAGE_TYPE, &[1])],
        ))?;
        let offers = answers(&self.sock, xid, Duration::from_millis(800))?;
        let Some(o) = offers.iter().find(|a| a.kind == MessageType::Offer) else {
            return Ok(None);
        };
        let (sid, ip) = (o.server.octets(), o.yiaddr.octets());
        self.send(&packet(
            xid + 1,
            self.giaddr,
            m,
            secs,
            &[
                (opt::MESSAGE_TYPE, &[3]),
                (opt::SERVER_ID, &sid),
                (opt::REQUESTED_IP, &ip),
            ],
        ))?;
        let acks = answers(&self.sock, xid + 1, Duration::from_millis(1000))?;
        Ok(acks
            .into_iter()
            .find(|a| a.kind == MessageType::Ack && a.server == o.server))
    }

    /// Client `i` keeps trying (secs growing) until bound or `limit`.
    fn client(&self, i: u16, limit: Duration) -> Res<Option<Answer>> {
        let m = mac(self.subnet, i);
        let t0 = Instant::now();
        let mut n = 0u16;
        while t0.elapsed() < limit {
            let xid = 0x4e31_0000 ^ (u32::from(self.subnet) << 24) ^ (u32::from(i) << 8)
                | u32::from(n * 2);
            if let Some(a) = self.try_lease(xid, &m, n * 2)? {
                return Ok(Some(a));
            }
            n += 1;
        }
        Ok(None)
    }
}

// ---- control ------------------------------------------------------------------------------

/// `xdhcpd ctl failover [--relationship R] status --json`, the `status` object.
fn rel_status(socket: &Path, rel: Option<&str>) -> Res<serde_json::Value> {
    let bin = xdhcpd_bin()?;
    let mut cmd = Command::new("timeout");
    cmd.arg("10")
        .arg(&bin)
        .args(["ctl", "--socket"])
        .arg(socket)
        .arg("failover");
    if let Some(r) = rel {
        cmd.args(["--relationship", r]);
    }
    cmd.args(["status", "--json"]);
    let out = output(&mut cmd)?;
    if !out.status.success() {
        return Err(format!("ctl status: {} {}", out.stdout, out.stderr));
    }
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| format!("status JSON: {e}"))?;
    Ok(v["status"].clone())
}

fn wait_rel(sb: &mut Xd, rel: &str, state: &str, partner: &str, limit: Duration) -> Res<()> {
    let sock = sb.socket.clone();
    let r = wait_for(
        &format!("relationship {rel} to be {state} / {partner}"),
        limit,
        || {
            sb.proc.check_alive()?;
            let s = rel_status(&sock, Some(rel))?;
            Ok((s["state"] == state && s["partner_state"] == partner).then_some(()))
        },
    );
    r.map_err(|e| {
        format!(
            "{e}; last status {:?}; standby log:\n{}",
            rel_status(&sock, Some(rel)),
            sb.proc.log_text()
        )
    })
}

fn wait_rel_drained(sb: &mut Xd, rel: &str, limit: Duration) -> Res<()> {
    let sock = sb.socket.clone();
    wait_for(&format!("relationship {rel} to drain"), limit, || {
        sb.proc.check_alive()?;
        let s = rel_status(&sock, Some(rel))?;
        Ok((s["unacked_updates"] == 0 && s["bindings_pending"] == 0).then_some(()))
    })
}

fn snapshot(
    db: &Path,
    bed: &Bed,
    tag: &str,
    pools: &[lease_store::PoolSpec],
) -> Res<Vec<lease_store::Lease>> {
    let copy = bed.path(&format!("snap-{tag}.db"));
    std::fs::copy(db, &copy).map_err(|e| format!("copying {}: {e}", db.display()))?;
    daemon_common::read_table(&copy, pools)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// Every address held by one client at most (the relays' view).
fn no_address_on_two_clients(acked: &BTreeMap<(u8, u16), Answer>) -> Res<()> {
    let mut by_addr: BTreeMap<Ipv4Addr, (u8, u16)> = BTreeMap::new();
    for (c, a) in acked {
        if let Some(other) = by_addr.insert(a.yiaddr, *c) {
            return Err(format!("{} given to clients {other:?} and {c:?}", a.yiaddr));
        }
    }
    Ok(())
}

#[test]
fn failover_n1_isc_and_xdhcpd_mains_one_standby() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("nft"),
        Capability::Program("dhcpd"),
    ]) {
        return;
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

fn scenario() -> Res<()> {
    let t0 = Instant::now();
    let bed = Bed::new()?;
    let (sb_db, sb_sock, sb_cfg) = (bed.path("sb.db"), bed.path("sb.sock"), bed.path("sb.toml"));
    let (xd_db, xd_sock, xd_cfg) = (bed.path("xd.db"), bed.path("xd.sock"), bed.path("xd.toml"));
    write_file(&sb_cfg, &standby_config(&bed, &sb_db, &sb_sock))?;
    write_file(&xd_cfg, &xd_main_config(&bed, &xd_db, &xd_sock))?;
    let isc_conf = bed.path("isc.conf");
    write_file(&isc_conf, &isc_main_config())?;
    let mut isc = Isc::start(
        &bed.isc,
        &bed.l_isc.a,
        &isc_conf,
        &bed.path("isc.leases"),
        &bed.path("isc.log"),
    )?;
    let mut xd = Xd::start(&bed.xd, &xd_cfg, &xd_db, &xd_sock, &bed.path("xd.log"))?;
    let mut sb = Xd::start(&bed.sb, &sb_cfg, &sb_db, &sb_sock, &bed.path("sb.log"))?;
    wait_rel(&mut sb, "isc", "NORMAL", "NORMAL", Duration::from_secs(60))?;
    wait_rel(&mut sb, "xd", "NORMAL", "NORMAL", Duration::from_secs(30))?;
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    isc.wait_normal(1, Duration::from_secs(30))?;
    // Without --relationship, a server with two relationships names them.
    match rel_status(&sb.socket, None) {
        Ok(v) => return Err(format!("status without --relationship answered: {v}")),
        Err(e) => assert!(
            e.contains("2 failover relationships") && e.contains("\"isc\""),
            "{e}"
        ),
    }
    let isc_st = rel_status(&sb.socket, Some("isc"))?;
    assert_eq!(isc_st["relationship"], "isc", "{isc_st}");
    assert_eq!(isc_st["peer"], format!("{ISC_MAIN}:647"), "{isc_st}");
    assert_eq!(isc_st["version_mismatch"], true, "{isc_st}");

    let bind = |ns: &Netns, gi: Ipv4Addr| -> Res<UdpSocket> {
        ns.run(move || {
            UdpSocket::bind(SocketAddrV4::new(gi, 67)).map_err(|e| format!("binding {gi}:67: {e}"))
        })
        .map_err(|e| e.to_string())?
    };
    let r_isc = Relay {
        sock: bind(&bed.relay, GI_ISC)?,
        giaddr: GI_ISC,
        servers: [ip(ISC_MAIN), ip(SB_ISC)],
        subnet: 1,
    };
    let r_xd = Relay {
        sock: bind(&bed.relay, GI_XD)?,
        giaddr: GI_XD,
        servers: [ip(XD_MAIN), ip(SB_ISC)],
        subnet: 2,
    };
    let mut acked: BTreeMap<(u8, u16), Answer> = BTreeMap::new();
    let lease_all = |range: std::ops::Range<u16>, acked: &mut BTreeMap<(u8, u16), Answer>| {
        for r in [&r_isc, &r_xd] {
            for i in range.clone() {
                let a = r
                    .client(i, Duration::from_secs(15))?
                    .ok_or_else(|| format!("subnet {} client {i} got no lease", r.subnet))?;
                let net = a.yiaddr.octets();
                if (net[0], net[1], net[2]) != (10, 78, r.subnet) {
                    return Err(format!("subnet {} client {i}: {a:?}", r.subnet));
                }
                acked.insert((r.subnet, i), a);
            }
        }
        Ok::<(), String>(())
    };

    // 1. Both relationships NORMAL: 16 clients of each subnet.
    lease_all(0..16, &mut acked)?;
    no_address_on_two_clients(&acked)?;
    let by = |subnet: u8, server: &str| {
        acked
            .iter()
            .filter(|((s, _), a)| *s == subnet && a.server == ip(server))
            .count()
    };
    eprintln!(
        "failover_n1_ns: subnet 1: ISC {} standby {}; subnet 2: xdhcpd {} standby {}",
        by(1, ISC_MAIN),
        by(1, SB_ISC),
        by(2, XD_MAIN),
        by(2, SB_ISC)
    );
    assert!(by(1, ISC_MAIN) > 0 && by(1, SB_ISC) > 0, "{acked:?}");
    assert!(by(2, XD_MAIN) > 0 && by(2, SB_ISC) > 0, "{acked:?}");
    wait_rel_drained(&mut sb, "isc", Duration::from_secs(20))?;
    wait_rel_drained(&mut sb, "xd", Duration::from_secs(20))?;
    xd.wait_drained(Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(2));
    // The standby holds both mains' bindings; each main only its own subnet's.
    let sb_pools = [
        lease_store::PoolSpec {
            id: 0,
            first: ip("10.78.1.10"),
            last: ip("10.78.1.200"),
        },
        lease_store::PoolSpec {
            id: 1,
            first: ip("10.78.2.10"),
            last: ip("10.78.2.200"),
        },
    ];
    let table = snapshot(&sb_db, &bed, "sb1", &sb_pools)?;
    for ((subnet, i), a) in &acked {
        let l = table
            .iter()
            .find(|l| l.addr == a.yiaddr)
            .ok_or_else(|| format!("standby: no record for {}", a.yiaddr))?;
        if l.state != lease_store::LeaseState::Active
            || l.client != failover_common::loadgen_key(&mac(*subnet, *i))
        {
            let log = read_text(&bed.path("sb.log")).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("refused") || l.contains("reject") || l.contains("WARN"))
                .take(20)
                .collect();
            return Err(format!(
                "standby: {} should be active for subnet {subnet} client {i}: {l:?}\n\
                 isc relationship: {:?}\nstandby log:\n{}",
                a.yiaddr,
                rel_status(&sb.socket, Some("isc")),
                lines.join("\n")
            ));
        }
    }
    let xd_table = snapshot(
        &xd_db,
        &bed,
        "xd1",
        &sb_pools[1..]
            .iter()
            .map(|p| lease_store::PoolSpec { id: 0, ..*p })
            .collect::<Vec<_>>(),
    )?;
    for ((subnet, _), a) in acked.iter().filter(|((s, _), _)| *s == 2) {
        let l = xd_table
            .iter()
            .find(|l| l.addr == a.yiaddr)
            .ok_or_else(|| format!("xdhcpd main: no record for {}", a.yiaddr))?;
        assert_eq!(
            l.state,
            lease_store::LeaseState::Active,
            "subnet {subnet}: {l:?}"
        );
    }
    let isc_view = isc_leases(&isc.leases)?;
    for (_, a) in acked.iter().filter(|((s, _), _)| *s == 1) {
        let st = isc_view.get(&a.yiaddr).map(|(s, _)| s.as_str());
        assert_eq!(st, Some("active"), "ISC main's record of {}", a.yiaddr);
    }
    assert!(
        isc_view.keys().all(|a| a.octets()[2] != 2),
        "ISC holds an address of the other relationship: {isc_view:?}"
    );

    // 2. Cut the ISC relationship's failover connection only (TCP 647 between the standby's
    //    ISC address and the ISC main), in the standby's namespace.
    let rules = format!(
        "table inet n1cut {{\n  chain in {{\n    type filter hook input priority -200;\n    \
         ip saddr {ISC_MAIN} ip daddr {SB_ISC} tcp dport 647 drop\n    \
         ip saddr {ISC_MAIN} ip daddr {SB_ISC} tcp sport 647 drop\n  }}\n  \
         chain out {{\n    type filter hook output priority -200;\n    \
         ip saddr {SB_ISC} ip daddr {ISC_MAIN} tcp dport 647 drop\n    \
         ip saddr {SB_ISC} ip daddr {ISC_MAIN} tcp sport 647 drop\n  }}\n}}\n"
    );
    let nft_file = bed.path("cut.nft");
    write_file(&nft_file, &rules)?;
    bed.sb
        .exec("nft", &["-f", &nft_file.to_string_lossy()])
        .map_err(|e| format!("nft: {e}"))?;
    let cut = Instant::now();
    wait_rel(
        &mut sb,
        "isc",
        "COMMUNICATIONS-INTERRUPTED",
        "NORMAL",
        Duration::from_secs(40),
    )
    .or_else(|_| {
        // The partner's last reported state may still read NORMAL or already be unknown.
        let s = rel_status(&sb.socket, Some("isc"))?;
        if s["state"] == "COMMUNICATIONS-INTERRUPTED" {
            Ok(())
        } else {
            Err(format!("ISC relationship after the cut: {s}"))
        }
    })?;
    let took = cut.elapsed();
    let xd_st = rel_status(&sb.socket, Some("xd"))?;
    assert_eq!(
        (xd_st["state"].as_str(), xd_st["partner_state"].as_str()),
        (Some("NORMAL"), Some("NORMAL")),
        "the xdhcpd relationship left NORMAL: {xd_st}"
    );
    assert_eq!(xd_st["communicating"], true, "{xd_st}");
    eprintln!(
        "failover_n1_ns: ISC relationship COMMUNICATIONS-INTERRUPTED {:.1} s after the cut, \
         xdhcpd relationship NORMAL",
        took.as_secs_f64()
    );
    // New clients of both subnets are still leased, no address on two clients.
    lease_all(100..108, &mut acked)?;
    no_address_on_two_clients(&acked)?;
    let xd_st = rel_status(&sb.socket, Some("xd"))?;
    assert_eq!(xd_st["state"], "NORMAL", "{xd_st}");
    xd.wait_state("NORMAL", "NORMAL", Duration::from_secs(5))?;
    // /metrics labels each relationship.
    let m = output(
        Command::new("timeout")
            .arg("10")
            .arg(xdhcpd_bin()?)
            .args(["ctl", "--socket"])
            .arg(&sb.socket)
            .arg("metrics"),
    )?;
    assert!(
        m.stdout
            .contains("xdhcpd_failover_connected{relationship=\"xd\"} 1")
            && m.stdout
                .contains("xdhcpd_failover_connected{relationship=\"isc\"} 0"),
        "{}",
        m.stdout
            .lines()
            .filter(|l| l.contains("failover_connected"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = bed.sb.exec("nft", &["delete", "table", "inet", "n1cut"]);
    let sb_log = sb.stop()?;
    let _ = xd.stop()?;
    isc.stop()?;
    assert!(
        !sb_log.contains("panicked"),
        "standby log:\n{}",
        read_text(&bed.path("sb.log")).unwrap_or_default()
    );
    eprintln!(
        "failover_n1_ns: {} clients leased, {:.1} s",
        acked.len(),
        t0.elapsed().as_secs_f64()
    );
    let _ = &bed.hub;
    Ok(())
}
