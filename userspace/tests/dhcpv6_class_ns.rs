//! DHCPv6 client classes through the real daemon on the XDP path, with a real client:
//! dhcpcd sending a CableLabs Vendor Class (option 16, enterprise 4491, "docsis3.0") lands
//! in the pool only that class may use; the same client without it (dhcpcd then sends its
//! own vendor class, another enterprise number) is moved out of that pool into the general
//! one. Its own namespaces and veth (unique names), removed afterwards.
//!
//! Run: `cargo test --release -p xdhcpd --test dhcpv6_class_ns` (root; `cargo xtask setup`).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon_common::*;
use lease_store::v6::{read_file, BindingState, IaKind};
use require::{require, Capability};

const NEEDS: &[Capability] = &[
    Capability::Root,
    Capability::Program("dhcpcd"),
    Capability::Program("timeout"),
];

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().expect("test address")
}

/// The bed with IPv6: server fd77::1/64; both link-local addresses usable.
fn bed6() -> Res<Bed> {
    let bed = Bed::new(None)?;
    bed.srv
        .add_addr(bed.srv_if(), "fd77::1/64")
        .map_err(|e| e.to_string())?;
    for (ns, dev) in [(&bed.srv, bed.srv_if()), (&bed.cli, bed.cli_if())] {
        wait_for(
            "a usable link-local address",
            Duration::from_secs(10),
            || {
                let out = ns
                    .ip(&["-6", "addr", "show", "dev", dev, "scope", "link"])
                    .map_err(|e| e.to_string())?;
                Ok((out.contains("fe80::") && !out.contains("tentative")).then_some(()))
            },
        )?;
    }
    Ok(bed)
}

/// Modems (class `cm`: option 16 with enterprise 4491 and a vendor class starting
/// "docsis") draw from fd77::c:0/112 only; everyone else from fd77::1:0/112.
fn config(bed: &Bed) -> Res<(PathBuf, PathBuf)> {
    let b6 = bed.path("bindings6.db");
    let cfg = bed.path("xdhcpd.toml");
    write_file(
        &cfg,
        &format!(
            r#"[server]
interface = "{ifname}"
server-id = "10.77.0.1"
commit = "ack"

[[class]]
name = "cm"
enterprise = 4491
vendor-class-prefix = "docsis"
[[class.vendor-option]]
enterprise = 4491
code = 2
text = "cm-config"

[[subnet]]
cidr = "10.77.0.0/16"
[[subnet.pool]]
range = "10.77.1.0-10.77.1.255"

[dhcpv6]
lease-file = "{b6}"
capacity = 1024

[[subnet6]]
prefix = "fd77::/64"
preferred-time = 600
valid-time = 1200
[[subnet6.vendor-option]]
enterprise = 4491
code = 2
text = "link-config"
[[subnet6.pool]]
range = "fd77::1:0-fd77::1:ffff"
deny = "cm"
[[subnet6.pool]]
range = "fd77::c:0-fd77::c:ffff"
allow = "cm"
"#,
            ifname = bed.srv_if(),
            b6 = b6.display()
        ),
    )?;
    Ok((cfg, b6))
}

/// Runs dhcpcd -6 once with `extra` configuration lines; returns the address it added.
fn dhcpcd(bed: &Bed, extra: &str) -> Res<Ipv6Addr> {
    let conf = bed.path("dhcpcd.conf");
    write_file(&conf, &format!("ipv6only\nnoipv6rs\nia_na 1\n{extra}"))?;
    // `--script /bin/true`: dhcpcd's hooks would rewrite the host's /etc/resolv.conf.
    let host_resolv = std::fs::read("/etc/resolv.conf").ok();
    let out = output(bed.cli.command("timeout").args([
        "40",
        "dhcpcd",
        "-6",
        "-1",
        "-d",
        "-t",
        "30",
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
        .ok_or_else(|| format!("dhcpcd added no address:\n{text}"))?;
    // Take the address away again so that the next run starts from scratch.
    let _ = bed.cli.ip(&[
        "-6",
        "addr",
        "del",
        &format!("{addr}/128"),
        "dev",
        bed.cli_if(),
    ]);
    Ok(ip6(addr))
}

fn in_range(a: Ipv6Addr, lo: &str, hi: &str) -> bool {
    (u128::from(ip6(lo))..=u128::from(ip6(hi))).contains(&u128::from(a))
}

fn active_binding(b6: &Path, a: Ipv6Addr) -> Res<bool> {
    let (_, bs, _) = read_file(b6).map_err(|e| e.to_string())?;
    Ok(bs
        .iter()
        .any(|b| b.kind == IaKind::Na && b.ip() == a && b.state == BindingState::Active))
}

#[test]
fn dhcpv6_class_dhcpcd_vendor_class_lands_in_the_class_pool_xdp() -> Res<()> {
    if !require(NEEDS) {
        return Ok(());
    }
    let bed = bed6()?;
    let (cfg, b6) = config(&bed)?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    // As a cable modem: CableLabs enterprise number, DOCSIS vendor class.
    let modem = dhcpcd(&bed, "vendclass 4491 docsis3.0\n")?;
    if !in_range(modem, "fd77::c:0", "fd77::c:ffff") {
        return Err(format!("the modem got {modem}, outside the modem pool"));
    }
    if !active_binding(&b6, modem)? {
        return Err(format!("no active binding for {modem}"));
    }
    // The same client (same DUID) without the modem's vendor class: the modem pool is not
    // its any more, so it gets an address of the general pool.
    let plain = dhcpcd(&bed, "")?;
    if !in_range(plain, "fd77::1:0", "fd77::1:ffff") {
        return Err(format!(
            "without the vendor class the client got {plain}, not in the general pool"
        ));
    }
    let fin = daemon.stop()?;
    fin.check_io(Io::Xdp)?;
    let classified = fin.counter("dhcpv6", "classified")?;
    if classified < 2 {
        return Err(format!(
            "dhcpv6.classified = {classified}: the modem's Solicit and Request were not classified"
        ));
    }
    Ok(())
}
