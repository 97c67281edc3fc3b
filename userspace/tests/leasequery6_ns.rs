//! DHCPv6 Leasequery (RFC 5007) through the real daemon, on the XDP path and with
//! `--io udp`: dhcpcd (`--script /bin/true`) gets an address and a delegated prefix, a relayed
//! client (frames built by the test, as in `dhcpv6_ns`) gets bound through relay fd77::2 with
//! interface-id, remote-id, subscriber-id and link-layer address; then `xdhcpd leasequery -6`
//! from the allowed source fd77::2 finds dhcpcd's binding by address and by client-id (its
//! DUID, read from the binding file), and the relayed client's binding with its relay data;
//! the same query from fd77::3 (not in `leasequery-allow`) gets NotAllowed and nothing else,
//! counted in the daemon's final `dhcpv6` stats. Each test makes its own namespaces and veth
//! (unique names) and removes them.
//!
//! Run: `cargo test --release -p xdhcpd --test leasequery6_ns` (root; `cargo xtask setup`).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use daemon_common::*;
use lease_store::v6::{read_file, BindingState, IaKind};
use require::{require, Capability};
use xdhcpd_dhcpv6::wire::{msg, opt, Writer};

const NEEDS: &[Capability] = &[
    Capability::Root,
    Capability::Program("ip"),
    Capability::Program("dhcpcd"),
    Capability::Program("timeout"),
];

const RELAY: &str = "fd77::2";
const STRANGER: &str = "fd77::3";
const CLIENT_DUID: &[u8] = &[0, 3, 0, 1, 2, 0x5a, 0xd1, 0, 0, 0x51];
const IFID: &[u8] = b"ge-0/0/1.100";
const REMOTE_ID: &[u8] = &[0, 0, 0x11, 0x8b, b'm', b'o', b'd', b'e', b'm', b'-', b'1'];
const SUBSCRIBER: &[u8] = b"sub-42";
const LLADDR: &[u8] = &[0, 1, 2, 0x5a, 0xd1, 0, 0, 0x51];

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().expect("test address")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bed6() -> Res<Bed> {
    let bed = Bed::new(None)?;
    bed.srv
        .add_addr(bed.srv_if(), "fd77::1/64")
        .map_err(|e| e.to_string())?;
    for a in ["fd77::2/64", "fd77::3/64"] {
        bed.cli
            .add_addr(bed.cli_if(), a)
            .map_err(|e| e.to_string())?;
    }
    for (ns, dev) in [(&bed.srv, bed.srv_if()), (&bed.cli, bed.cli_if())] {
        wait_for("usable IPv6 addresses", Duration::from_secs(10), || {
            let out = ns
                .ip(&["-6", "addr", "show", "dev", dev])
                .map_err(|e| e.to_string())?;
            Ok((out.contains("fe80::") && !out.contains("tentative")).then_some(()))
        })?;
    }
    Ok(bed)
}

fn config(bed: &Bed) -> Res<(PathBuf, PathBuf)> {
    let b6 = bed.path("bindings6.db");
    let cfg = bed.path("xdhcpd.toml");
    write_file(
        &cfg,
        &format!(
            r#"[server]
interface = "{ifname}"
server-id = "10.77.0.1"

[[subnet]]
cidr = "10.77.0.0/16"
[[subnet.pool]]
range = "10.77.1.0-10.77.1.255"

[dhcpv6]
lease-file = "{b6}"
capacity = 4096
trusted-relays = ["{RELAY}"]
leasequery-allow = ["{RELAY}"]

[[subnet6]]
prefix = "fd77::/64"
preferred-time = 600
valid-time = 1200
[[subnet6.pool]]
range = "fd77::1:0-fd77::1:ffff"
[[subnet6.pd-pool]]
prefix = "fd77:100::/40"
delegated-length = 56
"#,
            ifname = bed.srv_if(),
            b6 = b6.display()
        ),
    )?;
    Ok((cfg, b6))
}

/// A relayed Rapid Commit Solicit for IA_NA and IA_PD with the relay's data.
fn relay_forward() -> Vec<u8> {
    let mut inner = vec![0u8; 512];
    let n = {
        let mut w = Writer::new(&mut inner);
        w.header(msg::SOLICIT, [7, 7, 7]);
        w.option(opt::CLIENTID, CLIENT_DUID);
        w.option(opt::RAPID_COMMIT, &[]);
        w.open_ia(opt::IA_NA, 1, 0, 0);
        w.close();
        w.open_ia(opt::IA_PD, 2, 0, 0);
        w.close();
        w.finish().expect("fits")
    };
    let mut f = vec![0u8; 1024];
    let n = {
        let mut w = Writer::new(&mut f);
        w.relay_header(
            msg::RELAY_FORW,
            0,
            &ip6(RELAY).octets(),
            &ip6("fe80::5ad1:51").octets(),
        );
        w.option(opt::INTERFACE_ID, IFID);
        w.option(opt::REMOTE_ID, REMOTE_ID);
        w.option(opt::SUBSCRIBER_ID, SUBSCRIBER);
        w.option(opt::CLIENT_LINKLAYER_ADDR, LLADDR);
        w.option(opt::RELAY_MSG, &inner[..n]);
        w.finish().expect("fits")
    };
    f.truncate(n);
    f
}

/// `xdhcpd leasequery -6 --json` in the client namespace from `source`: (exit ok, JSON).
fn leasequery(bed: &Bed, source: &str, ask: &[&str]) -> Res<(bool, serde_json::Value)> {
    let bin = xdhcpd_bin()?;
    let mut cmd = bed.cli.command(&bin.to_string_lossy());
    cmd.args([
        "leasequery",
        "-6",
        "--server",
        "fd77::1",
        "--source",
        source,
        "--timeout-ms",
        "3000",
        "--json",
    ])
    .args(ask);
    let out = cmd
        .output()
        .map_err(|e| format!("xdhcpd leasequery: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "leasequery {ask:?} from {source}: no JSON answer ({e}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.success(), v))
}

fn has_binding(v: &serde_json::Value, kind: &str, addr: &str) -> bool {
    v["bindings"].as_array().is_some_and(|bs| {
        bs.iter()
            .any(|b| b["kind"] == kind && b["address"].as_str() == Some(addr))
    })
}

fn run(io: Io) -> Res<()> {
    let bed = bed6()?;
    let (cfg, b6) = config(&bed)?;
    let daemon = Daemon::start(&bed, &cfg, io)?;

    // A real client: dhcpcd, address and delegated prefix, no hook scripts.
    let conf = bed.path("dhcpcd.conf");
    write_file(&conf, "ipv6only\nnoipv6rs\nia_na 1\nia_pd 2 -\n")?;
    let host_resolv = std::fs::read("/etc/resolv.conf").ok();
    let out = output(bed.cli.command("timeout").args([
        "25",
        "dhcpcd",
        "-6",
        "-1",
        "-d",
        "-t",
        "20",
        "--script",
        "/bin/true",
        "-f",
        &conf.to_string_lossy(),
        bed.cli_if(),
    ]));
    let _ = std::fs::remove_file(format!("/var/lib/dhcpcd/{}.lease6", bed.cli_if()));
    if std::fs::read("/etc/resolv.conf").ok() != host_resolv {
        return Err("dhcpcd in the test namespace rewrote the host's /etc/resolv.conf".into());
    }
    let out = out?;
    let text = format!("{}{}", out.stdout, out.stderr);
    let addr = text
        .lines()
        .find_map(|l| l.split("adding address ").nth(1))
        .and_then(|a| a.split('/').next())
        .map(ip6)
        .ok_or_else(|| format!("dhcpcd added no address:\n{text}"))?;
    let (_, bs, _) = read_file(&b6).map_err(|e| e.to_string())?;
    let na = bs
        .iter()
        .find(|b| b.kind == IaKind::Na && b.ip() == addr && b.state == BindingState::Active)
        .ok_or_else(|| format!("no active binding for dhcpcd's {addr}"))?;
    let duid = hex(na.duid.as_slice());
    let pd = bs
        .iter()
        .find(|b| b.kind == IaKind::Pd && b.duid == na.duid)
        .ok_or("no prefix bound for dhcpcd")?;
    let pfx = format!("{}/{}", pd.ip(), pd.prefix_len);

    // A relayed client, through the trusted relay fd77::2.
    let sock = bed
        .cli
        .run(|| UdpSocket::bind(SocketAddrV6::new(ip6(RELAY), 547, 0, 0)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bind [{RELAY}]:547: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    let mut answered = false;
    for _ in 0..8 {
        sock.send_to(
            &relay_forward(),
            SocketAddrV6::new(ip6("fd77::1"), 547, 0, 0),
        )
        .map_err(|e| format!("send: {e}"))?;
        if sock.recv_from(&mut buf).is_ok() {
            answered = true;
            break;
        }
    }
    if !answered {
        return Err("the relayed Solicit got no Relay-Reply".into());
    }
    let (_, bs, _) = read_file(&b6).map_err(|e| e.to_string())?;
    let relayed = bs
        .iter()
        .find(|b| b.kind == IaKind::Na && b.duid.as_slice() == CLIENT_DUID)
        .ok_or("no binding for the relayed client")?
        .ip();

    // By address, from the allowed source.
    let (ok, v) = leasequery(&bed, RELAY, &["--ip", &addr.to_string()])?;
    if !ok || v["answer"] != "BINDING" || v["client_id"].as_str() != Some(duid.as_str()) {
        return Err(format!("by address {addr}: {v}"));
    }
    if !has_binding(&v, "address", &addr.to_string()) || !has_binding(&v, "prefix", &pfx) {
        return Err(format!(
            "by address: dhcpcd's {addr} and {pfx} not both listed: {v}"
        ));
    }
    if v["relay"] != serde_json::Value::Null {
        return Err(format!("relay data for a directly attached client: {v}"));
    }
    // By client-id (dhcpcd's DUID).
    let (ok, v) = leasequery(&bed, RELAY, &["--client-id", &duid])?;
    if !ok || v["answer"] != "BINDING" || !has_binding(&v, "address", &addr.to_string()) {
        return Err(format!("by client-id {duid}: {v}"));
    }
    // The relayed client by address: its relay data.
    let (ok, v) = leasequery(&bed, RELAY, &["--ip", &relayed.to_string()])?;
    let r = &v["relay"];
    if !ok
        || v["client_id"].as_str() != Some(hex(CLIENT_DUID).as_str())
        || r["interface_id"] != "ge-0/0/1.100"
        || r["remote_id"] != "4491:modem-1"
        || r["subscriber_id"] != "sub-42"
        || r["client_linklayer"] != "1:02:5a:d1:00:00:51"
        || r["link_address"] != RELAY
        || r["peer_address"] != "fe80::5ad1:51"
    {
        return Err(format!("relayed client {relayed}: {v}"));
    }
    // From a source not in leasequery-allow: NotAllowed, nothing about the client.
    let (ok, v) = leasequery(&bed, STRANGER, &["--ip", &addr.to_string()])?;
    if ok || v["answer"] != "NotAllowed" || v["bindings"] != serde_json::json!([]) {
        return Err(format!("disallowed source answered: {v}"));
    }

    let fin = daemon.stop()?;
    fin.check_io(io)?;
    let c = |k: &str| fin.counter("dhcpv6", k);
    if c("leasequery")? != 4 || c("leasequery_answered")? != 3 || c("leasequery_not_allowed")? != 1
    {
        return Err(format!("leasequery counters: {}", fin.stats["dhcpv6"]));
    }
    Ok(())
}

#[test]
fn leasequery_dhcpv6_dhcpcd_and_relayed_client_by_address_and_client_id_xdp() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    run(Io::Xdp)
}

#[test]
fn leasequery_dhcpv6_dhcpcd_and_relayed_client_by_address_and_client_id_udp() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    run(Io::Udp)
}
