//! Reload that adds a pool and grows a range, in network namespaces (root; see
//! `common/require.rs`): a running daemon's only pool is exhausted by two real clients
//! (busybox udhcpc, one MAC each) and a third gets nothing; `xdhcpd ctl reload` of a file
//! that grows that pool by one address and adds a second pool is accepted (the lease table
//! grows into its spare records); the third client then gets the grown range's address and a
//! fourth one an address of the new pool, the daemon never stopped; after a restart with the
//! same file the lease file opens without a rebuild and every lease is still there.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use daemon_common::{
    output, read_table, read_text, write_file, write_script, xdhcpd_bin, Bed, Res, SRV_ADDR,
};
use failover_common::Xd;
use require::{require, Capability};

fn config(bed: &Bed, pools: &[&str]) -> String {
    let mut t = format!(
        "[server]\ninterface = \"{}\"\nio = \"xdp\"\nserver-id = \"{SRV_ADDR}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = 3600\nspare-addresses = 64\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{SRV_ADDR}\"]\n",
        bed.srv_if(),
        bed.path("leases.db").display(),
        bed.path("ctl.sock").display(),
    );
    for p in pools {
        t.push_str(&format!("\n[[subnet.pool]]\nrange = \"{p}\"\n"));
    }
    t
}

fn start(bed: &Bed, cfg: &Path, log: &str) -> Res<Xd> {
    Xd::start(
        &bed.srv,
        cfg,
        &bed.path("leases.db"),
        &bed.path("ctl.sock"),
        &bed.path(log),
    )
}

/// One DORA by busybox udhcpc with the client interface set to `mac`, quitting once bound
/// (the lease stays): its address, or None when no server answered within `tries` seconds.
fn udhcpc(bed: &Bed, mac: &str, tries: u32) -> Res<Option<Ipv4Addr>> {
    bed.cli
        .ip(&["link", "set", bed.cli_if(), "address", mac])
        .map_err(|e| e.to_string())?;
    let tag = mac.replace(':', "");
    let ev = bed.path(&format!("udhcpc-{tag}.events"));
    let script = bed.path(&format!("udhcpc-{tag}.sh"));
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip\" >> '{}'\nexit 0\n",
            ev.display()
        ),
    )?;
    let out = output(bed.cli.command("timeout").args([
        "20",
        "busybox",
        "udhcpc",
        "-i",
        bed.cli_if(),
        "-f",
        "-q",
        "-n",
        "-t",
        &tries.to_string(),
        "-T",
        "1",
        "-s",
        &script.to_string_lossy(),
    ]))?;
    let text = read_text(&ev).unwrap_or_default();
    match text.lines().last() {
        Some(l) => l
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("udhcpc bound to {l:?}: {e}")),
        None if !out.status.success() => Ok(None),
        None => Err(format!(
            "udhcpc succeeded without a bound event: {}{}",
            out.stdout, out.stderr
        )),
    }
}

fn ctl_reload(sock: &Path) -> Res<(bool, String)> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(sock)
            .args(["reload", "--json"]),
    )?;
    Ok((
        out.status.success(),
        format!("{}{}", out.stdout, out.stderr),
    ))
}

#[test]
fn daemon_reload_adds_pool_and_grows_range_clients_get_addresses() {
    let needs = [
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("busybox"),
    ];
    if !require(&needs) {
        return;
    }
    if let Err(e) = reload_adds_pool() {
        panic!("{e}");
    }
}

fn reload_adds_pool() -> Res<()> {
    let bed = Bed::new(None)?;
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &config(&bed, &["10.77.1.10-10.77.1.11"]))?;
    let mut xd = start(&bed, &cfg, "xdhcpd.log")?;
    let dlog = |xd: &Xd, e: String| {
        format!(
            "{e}\ndaemon log:\n{}",
            read_text(&xd.log).unwrap_or_default()
        )
    };
    // Two clients take the pool's two addresses; a third gets nothing.
    let macs = [
        "02:5a:e1:00:00:01",
        "02:5a:e1:00:00:02",
        "02:5a:e1:00:00:03",
        "02:5a:e1:00:00:04",
    ];
    let mut got = Vec::new();
    for mac in &macs[..2] {
        let ip = udhcpc(&bed, mac, 5)?.ok_or_else(|| dlog(&xd, format!("{mac}: no lease")))?;
        got.push(ip);
    }
    got.sort();
    if got != [Ipv4Addr::new(10, 77, 1, 10), Ipv4Addr::new(10, 77, 1, 11)] {
        return Err(dlog(&xd, format!("the first two clients got {got:?}")));
    }
    if let Some(ip) = udhcpc(&bed, macs[2], 3)? {
        return Err(dlog(&xd, format!("the pool was full, yet {ip} was given")));
    }

    // Grow pool 0 by one address and add pool 1: accepted, live.
    let grown = config(&bed, &["10.77.1.10-10.77.1.12", "10.77.2.0-10.77.2.9"]);
    write_file(&cfg, &grown)?;
    let (ok, answer) = ctl_reload(&bed.path("ctl.sock"))?;
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    if !ok || !answer.contains("lease table grown by 11 address(es)") || v["generation"] != 1 {
        return Err(dlog(&xd, format!("the reload was not accepted: {answer}")));
    }
    let c3 = udhcpc(&bed, macs[2], 5)?
        .ok_or_else(|| dlog(&xd, "third client: no lease after the reload".into()))?;
    let c4 = udhcpc(&bed, macs[3], 5)?
        .ok_or_else(|| dlog(&xd, "fourth client: no lease after the reload".into()))?;
    let new_addr = |a: Ipv4Addr| {
        a == Ipv4Addr::new(10, 77, 1, 12)
            || (Ipv4Addr::new(10, 77, 2, 0)..=Ipv4Addr::new(10, 77, 2, 9)).contains(&a)
    };
    if !new_addr(c3) || !new_addr(c4) || c3 == c4 {
        return Err(dlog(
            &xd,
            format!("after the reload the clients got {c3} and {c4}, not the new addresses"),
        ));
    }
    if !(c3.octets()[2] == 2 || c4.octets()[2] == 2) {
        return Err(dlog(&xd, format!("no address of the new pool: {c3}, {c4}")));
    }
    xd.proc.check_alive()?;
    let log = xd.stop()?;
    if log.contains("panicked") {
        return Err(format!("panic in the log:\n{log}"));
    }

    // Restart with the same file: no rebuild, the leases are where they were.
    let xd = start(&bed, &cfg, "xdhcpd-2.log")?;
    let again = udhcpc(&bed, macs[3], 5)?
        .ok_or_else(|| dlog(&xd, "fourth client: no lease after the restart".into()))?;
    if again != c4 {
        return Err(dlog(
            &xd,
            format!("after the restart the fourth client got {again}, had {c4}"),
        ));
    }
    let log = xd.stop()?;
    if log.contains("rebuilt") {
        return Err(format!("the lease file was rebuilt at restart:\n{log}"));
    }
    let pools = [
        lease_store::PoolSpec {
            id: 0,
            first: Ipv4Addr::new(10, 77, 1, 10),
            last: Ipv4Addr::new(10, 77, 1, 12),
        },
        lease_store::PoolSpec {
            id: 1,
            first: Ipv4Addr::new(10, 77, 2, 0),
            last: Ipv4Addr::new(10, 77, 2, 9),
        },
    ];
    let bound: Vec<Ipv4Addr> = read_table(&bed.path("leases.db"), &pools)?
        .into_iter()
        .filter(|l| l.state == lease_store::LeaseState::Active)
        .map(|l| l.addr)
        .collect();
    for a in got.iter().chain([&c3, &c4]) {
        if !bound.contains(a) {
            return Err(format!("lease of {a} not in the table: {bound:?}"));
        }
    }
    Ok(())
}
