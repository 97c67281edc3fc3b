//! Cable provisioning end to end: the daemon runs `userspace/examples/prov.toml` (the PROV
//! guide's dhcpd.conf example) in a network namespace; the test plays the CMTS relay agent
//! (giaddr 10.77.0.9, port 67, option 82 with the modem's MAC as remote-id) on the other end
//! of a veth, on both data paths (root; see `common/require.rs`).
//!
//! - a registered cable modem (option 60 `docsis3.0`, remote-id = its chaddr) gets a
//!   modem-pool address (10.174.3.x / 10.174.4.x) and the DOCSIS file (`file`, siaddr, 67);
//! - a registered eMTA (`pktc1.0:`) behind it gets the MTA pool (10.174.5.x) and option 122;
//! - a customer device behind the modem (remote-id = the modem's MAC) gets the CPE pool;
//! - an unregistered modem gets nothing and is counted (`unknown_refused`); the registered
//!   modem's DISCOVER sent after it is answered, so the daemon had the chance to answer it.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemon_common::*;
use require::{require, Capability};
use xdhcpd_dhcpv4::wire::{opt, relay_sub, Message, MessageType, MAGIC_COOKIE, OP_BOOTREQUEST};

/// The CMTS's address on the server's link: the shared network's relay address in prov.toml.
const CMTS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 9);
const MODEM: [u8; 6] = [0x00, 0xd0, 0x59, 0x00, 0x00, 0x01];
const MTA: [u8; 6] = [0x00, 0xe0, 0x6f, 0x58, 0x4d, 0xa4];
const CPE: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xc9, 0x01];
const STRANGER: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];

fn config(bed: &Bed) -> Res<PathBuf> {
    let example = std::fs::read_to_string(example("prov.toml"))
        .map_err(|e| format!("reading prov.toml: {e}"))?;
    let text = example
        .replace(
            "interface = \"xd-srv0\"",
            &format!("interface = \"{}\"", bed.srv_if()),
        )
        .replace(
            "lease-file = \"/var/lib/xdhcpd/leases.db\"",
            &format!("lease-file = \"{}\"", bed.path("leases.db").display()),
        );
    if !text.contains(bed.srv_if()) || !text.contains(&format!("server-id = \"{SRV_ADDR}\"")) {
        return Err("prov.toml no longer has the lines this test adapts".into());
    }
    let path = bed.path("prov.toml");
    write_file(&path, &text)?;
    Ok(path)
}

/// A relayed BOOTREQUEST of `kind` from `mac` through the CMTS (hops 1, giaddr CMTS), with
/// option 82 (circuit-id, remote-id = `remote`) added by the relay.
fn relayed(
    kind: MessageType,
    xid: u32,
    mac: &[u8; 6],
    remote: &[u8; 6],
    extra: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[3] = 1;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[24..28].copy_from_slice(&CMTS.octets());
    b[28..34].copy_from_slice(mac);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, kind as u8]);
    for (c, v) in extra {
        b.push(*c);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }
    b.extend_from_slice(&[opt::RELAY_AGENT_INFO, 18, relay_sub::CIRCUIT_ID, 8]);
    b.extend_from_slice(b"Cable2/0");
    b.extend_from_slice(&[relay_sub::REMOTE_ID, 6]);
    b.extend_from_slice(remote);
    b.push(opt::END);
    b
}

/// One reply as the relay sees it.
struct Reply {
    bytes: Vec<u8>,
}

impl Reply {
    fn msg(&self) -> Res<Message<'_>> {
        Message::new_checked(&self.bytes).map_err(|e| format!("reply does not parse: {e:?}"))
    }
    fn option(&self, code: u8) -> Res<Option<Vec<u8>>> {
        for o in self.msg()?.options() {
            let (c, v, _) = o.map_err(|e| format!("reply options: {e:?}"))?;
            if c == code {
                return Ok(Some(v.to_vec()));
            }
        }
        Ok(None)
    }
    fn kind(&self) -> Res<u8> {
        Ok(self
            .option(opt::MESSAGE_TYPE)?
            .and_then(|v| v.first().copied())
            .unwrap_or(0))
    }
    fn file(&self) -> Res<String> {
        let f = self.msg()?.file();
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        Ok(String::from_utf8_lossy(&f[..end]).into_owned())
    }
}

/// The relay's socket: 10.77.0.9:67 in the client namespace (replies to a relay go to
/// giaddr, port 67).
fn relay_socket(bed: &Bed) -> Res<UdpSocket> {
    bed.cli
        .run(|| -> Res<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(CMTS, 67))
                .map_err(|e| format!("binding {CMTS}:67: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .map_err(|e| e.to_string())?
}

/// Every reply until one with `xid` arrives or `limit` passes: (xid, reply).
fn replies_until(sock: &UdpSocket, xid: u32, limit: Duration) -> Res<Vec<(u32, Reply)>> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let Ok(m) = Message::new_checked(&buf[..n]) else {
                    continue;
                };
                if m.op() != 2 {
                    continue;
                }
                let x = m.xid();
                got.push((
                    x,
                    Reply {
                        bytes: buf[..n].to_vec(),
                    },
                ));
                if x == xid {
                    return Ok(got);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("receiving replies: {e}")),
        }
    }
    Ok(got)
}

struct Relay {
    sock: UdpSocket,
    server: SocketAddrV4,
    /// Replies to other xids seen while waiting (e.g. to the unregistered client).
    strays: Vec<(u32, Reply)>,
}

impl Relay {
    /// Sends `req` until its reply arrives (a few tries: the first frames may meet an
    /// unresolved neighbour).
    fn exchange(&mut self, req: &[u8]) -> Res<Reply> {
        let xid = u32::from_be_bytes([req[4], req[5], req[6], req[7]]);
        for _ in 0..5 {
            self.sock
                .send_to(req, self.server)
                .map_err(|e| format!("sending to {}: {e}", self.server))?;
            for (x, r) in replies_until(&self.sock, xid, Duration::from_secs(2))? {
                if x == xid {
                    return Ok(r);
                }
                self.strays.push((x, r));
            }
        }
        Err(format!("no reply to xid {xid:x}"))
    }

    /// DISCOVER / OFFER / REQUEST / ACK for `mac` behind modem `remote`; the ACK.
    fn dora(
        &mut self,
        xid: u32,
        mac: &[u8; 6],
        remote: &[u8; 6],
        extra: &[(u8, &[u8])],
    ) -> Res<Reply> {
        let offer = self.exchange(&relayed(MessageType::Discover, xid, mac, remote, extra))?;
        if offer.kind()? != OFFER {
            return Err(format!(
                "xid {xid:x}: expected an OFFER, got type {}",
                offer.kind()?
            ));
        }
        let ip = offer.msg()?.yiaddr().octets();
        let sid = Ipv4Addr::new(10, 77, 0, 1).octets();
        let mut opts: Vec<(u8, &[u8])> = extra.to_vec();
        opts.push((opt::SERVER_ID, &sid));
        opts.push((opt::REQUESTED_IP, &ip));
        let ack = self.exchange(&relayed(MessageType::Request, xid + 1, mac, remote, &opts))?;
        if ack.kind()? != ACK || ack.msg()?.yiaddr().octets() != ip {
            return Err(format!(
                "xid {:x}: expected an ACK for {ip:?}, got type {}",
                xid + 1,
                ack.kind()?
            ));
        }
        Ok(ack)
    }
}

fn in_range(ip: Ipv4Addr, first: [u8; 4], last: [u8; 4]) -> bool {
    (u32::from(Ipv4Addr::from(first))..=u32::from(Ipv4Addr::from(last))).contains(&u32::from(ip))
}

fn prov_relayed(io: Io) -> Res<()> {
    let bed = Bed::new(Some(&format!("{CMTS}/{PREFIX}")))?;
    let cfg = config(&bed)?;
    let daemon = Daemon::start(&bed, &cfg, io)?;
    let mut relay = Relay {
        sock: relay_socket(&bed)?,
        server: SocketAddrV4::new(SRV_ADDR.parse().map_err(|_| "SRV_ADDR")?, 67),
        strays: Vec::new(),
    };
    let run = |relay: &mut Relay| -> Res<(Reply, Reply, Reply)> {
        // The unregistered modem first; the registered modem's exchange after it proves the
        // daemon had its chance to answer.
        let stranger = relayed(
            MessageType::Discover,
            0x5700_0001,
            &STRANGER,
            &STRANGER,
            &[(opt::VENDOR_CLASS, b"docsis3.0")],
        );
        relay
            .sock
            .send_to(&stranger, relay.server)
            .map_err(|e| format!("sending: {e}"))?;
        let modem = relay.dora(
            0x5100_0001,
            &MODEM,
            &MODEM,
            &[(opt::VENDOR_CLASS, b"docsis3.0")],
        )?;
        let mta = relay.dora(
            0x5200_0001,
            &MTA,
            &MODEM,
            &[(opt::VENDOR_CLASS, b"pktc1.0:051f0101")],
        )?;
        let cpe = relay.dora(
            0x5300_0001,
            &CPE,
            &MODEM,
            &[(opt::VENDOR_CLASS, b"MSFT 5.0")],
        )?;
        Ok((modem, mta, cpe))
    };
    let result = run(&mut relay);
    let stray_wait = replies_until(&relay.sock, 0, Duration::from_millis(300));
    let finished = daemon.stop()?;
    let (modem, mta, cpe) = result.map_err(|e| format!("{e}; log:\n{}", finished.log))?;
    relay.strays.extend(stray_wait?);
    finished.check_io(io)?;

    let modem_ip = modem.msg()?.yiaddr();
    assert!(
        in_range(modem_ip, [10, 174, 3, 1], [10, 174, 4, 254]),
        "modem got {modem_ip}, outside the modem pools"
    );
    assert_eq!(modem.file()?, "docsis3.cfg");
    assert_eq!(modem.msg()?.siaddr(), Ipv4Addr::new(192, 168, 0, 12));
    assert_eq!(modem.option(67)?.as_deref(), Some(&b"docsis3.cfg"[..]));
    assert_eq!(
        modem.option(51)?.as_deref(),
        Some(&21600u32.to_be_bytes()[..])
    );
    assert_eq!(modem.option(3)?.as_deref(), Some(&[10, 174, 0, 1][..]));

    let mta_ip = mta.msg()?.yiaddr();
    assert!(
        in_range(mta_ip, [10, 174, 5, 1], [10, 174, 5, 254]),
        "eMTA got {mta_ip}, outside the MTA pool"
    );
    let o122 = mta.option(122)?.ok_or("the eMTA's ACK has no option 122")?;
    assert_eq!(
        &o122[..6],
        &[1, 4, 192, 168, 0, 11],
        "option 122 sub-option 1"
    );

    let cpe_ip = cpe.msg()?.yiaddr();
    assert!(
        in_range(cpe_ip, [10, 175, 0, 10], [10, 175, 255, 250]),
        "CPE got {cpe_ip}, outside the CPE pool"
    );
    assert_eq!(cpe.option(3)?.as_deref(), Some(&[10, 175, 0, 1][..]));

    let to_stranger: Vec<u32> = relay
        .strays
        .iter()
        .filter(|(x, _)| *x == 0x5700_0001)
        .map(|(x, _)| *x)
        .collect();
    assert!(
        to_stranger.is_empty(),
        "the unregistered modem was answered"
    );
    let refused = finished.counter("engine", "unknown_refused")?;
    assert!(refused >= 1, "unknown_refused = {refused}");
    Ok(())
}

#[test]
fn class_prov_example_relayed_modem_mta_cpe_unknown_xdp() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    prov_relayed(Io::Xdp)
}

#[test]
fn class_prov_example_relayed_modem_mta_cpe_unknown_udp() -> Res<()> {
    if !require(&[Capability::Root, Capability::Program("ip")]) {
        return Ok(());
    }
    prov_relayed(Io::Udp)
}
