//! Unregistered MACs dropped in XDP (issue 12 item 5; root and the eBPF object, see
//! `common/require.rs`).
//!
//! A subnet with `deny-unknown`, a registration store, one configured `[[host]]`, and
//! `[limits] xdp-drop-unknown = true`. Shown against the real daemon (XDP mode):
//! - an unregistered MAC's DISCOVERs are dropped in XDP: the program's `unknown_dropped`
//!   rises (also in `/metrics`, per queue) and the engine's `unknown_refused` does not;
//! - the configured host is served (its MAC was put in the map at start);
//! - a MAC registered live (`xdhcpd ctl registrations add`) is served by its first DISCOVER
//!   after the command returns (the map was updated before it returned), and once removed
//!   its DISCOVERs are dropped again.
//!
//! The same run without `xdp-drop-unknown` is the control: the unknown MAC's DISCOVERs reach
//! the engine (`unknown_refused`), none is dropped in XDP.
//!
//! `cargo test --release -p xdhcpd --test xdp_deny_unknown_ns -- --nocapture`

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
use xdhcpd_dhcpv4::wire::{opt, Message, FLAG_BROADCAST, MAGIC_COOKIE, OP_BOOTREQUEST};

const HOST_ADDR: &str = "10.77.0.9";
const UNKNOWN: [u8; 6] = [0x02, 0xde, 0xad, 0x00, 0x00, 0x01];
const HOST: [u8; 6] = [0x02, 0x40, 0x57, 0x00, 0x00, 0x01];
const LIVE: [u8; 6] = [0x02, 0x11, 0x7e, 0x00, 0x00, 0x01];

fn config(bed: &Bed, drop: bool, known_macs: u32) -> Res<PathBuf> {
    let path = bed.path("xdhcpd.toml");
    let limits = if drop {
        format!("[limits]\nxdp-drop-unknown = true\nxdp-known-macs = {known_macs}\n")
    } else {
        String::new()
    };
    let text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
control-socket = "{sock}"
registration-file = "{regs}"

{limits}
[[host]]
hw = "{host}"

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
deny-unknown = true
[[subnet.pool]]
range = "10.77.1.0-10.77.1.200"
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
        regs = bed.path("regs/registrations").display(),
        host = mac_str(&HOST),
    );
    write_file(&path, &text)?;
    Ok(path)
}

fn ctl(bed: &Bed, args: &[&str]) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let mut all = vec![
        "20".to_string(),
        bin.to_string_lossy().into_owned(),
        "ctl".into(),
        "--socket".into(),
        bed.path("ctl.sock").to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = output(std::process::Command::new("timeout").args(&all))?;
    if !out.status.success() {
        return Err(format!("xdhcpd ctl {args:?}: {}{}", out.stdout, out.stderr));
    }
    Ok(out.stdout)
}

/// A DISCOVER from `mac` (giaddr 0, broadcast flag so the OFFER reaches a plain socket).
fn discover(xid: u32, mac: &[u8; 6]) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = OP_BOOTREQUEST;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    b[28..34].copy_from_slice(mac);
    b[236..240].copy_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[opt::MESSAGE_TYPE, 1, 1, opt::END]);
    b
}

/// Whether a reply with `xid` arrives within `limit`.
fn answered(sock: &UdpSocket, xid: u32, limit: Duration) -> Res<bool> {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if Message::new_checked(&buf[..n]).is_ok_and(|m| m.op() == 2 && m.xid() == xid) {
                    return Ok(true);
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
    Ok(false)
}

struct Run {
    unknown_dropped: u64,
    unknown_refused: u64,
    metrics: String,
    log: String,
}

fn run(drop: bool) -> Res<Run> {
    let bed = Bed::new(Some(&format!("{HOST_ADDR}/{PREFIX}")))?;
    let cfg = config(&bed, drop, 4096)?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    let sock = bed
        .cli
        .run(|| -> Res<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
                .map_err(|e| format!("binding 0.0.0.0:68: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .map_err(|e| e.to_string())??;
    let server = SocketAddrV4::new(SRV_ADDR.parse().map_err(|_| "SRV_ADDR")?, 67);
    let send = |b: &[u8]| {
        sock.send_to(b, server)
            .map(|_| ())
            .map_err(|e| format!("sending to {server}: {e}"))
    };
    // The unknown MAC, then the configured host: its OFFER proves the daemon had the chance
    // to answer the unknown one (same path, sent first).
    let mut host_served = false;
    for round in 0..3u32 {
        for i in 0..3 {
            send(&discover(0x0d00_0000 | (round << 8) | i, &UNKNOWN))?;
        }
        let xid = 0x4057_0000 | round;
        send(&discover(xid, &HOST))?;
        if answered(&sock, xid, Duration::from_secs(2))? {
            host_served = true;
            break;
        }
    }
    if !host_served {
        return Err(format!(
            "the configured host was never served; log:\n{}",
            daemon.log_text()
        ));
    }
    // Registered live: served by the first DISCOVER after the command returned.
    ctl(
        &bed,
        &[
            "registrations",
            "add",
            "--mac",
            &mac_str(&LIVE),
            "--group",
            "cpe",
        ],
    )?;
    send(&discover(0x117e_0001, &LIVE))?;
    if !answered(&sock, 0x117e_0001, Duration::from_secs(2))? {
        return Err(format!(
            "a MAC registered live was not served at once; log:\n{}",
            daemon.log_text()
        ));
    }
    // Removed: dropped again (XDP mode with the drop) / refused by the engine.
    ctl(&bed, &["registrations", "remove", "--mac", &mac_str(&LIVE)])?;
    send(&discover(0x117e_0002, &LIVE))?;
    let after_removal = answered(&sock, 0x117e_0002, Duration::from_millis(500))?;
    if after_removal {
        return Err("a removed registration was still served".into());
    }
    let metrics = ctl(&bed, &["metrics"])?;
    let finished = daemon.stop()?;
    finished.check_io(Io::Xdp)?;
    Ok(Run {
        unknown_dropped: finished.counter("xdp", "unknown_dropped")?,
        unknown_refused: finished.counter("engine", "unknown_refused")?,
        metrics,
        log: finished.log,
    })
}

#[test]
fn xdp_deny_unknown_drops_unregistered_macs_and_serves_registered_ones() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("ip"),
        Capability::Program("timeout"),
    ]) {
        return Ok(());
    }
    let control = run(false)?;
    let on = run(true)?;
    eprintln!(
        "without xdp-drop-unknown: xdp unknown_dropped {}, engine unknown_refused {}\n\
         with it: xdp unknown_dropped {}, engine unknown_refused {}",
        control.unknown_dropped, control.unknown_refused, on.unknown_dropped, on.unknown_refused
    );
    // Control: the engine refuses them (3 rounds at most, 3 each, and the removed one).
    assert_eq!(control.unknown_dropped, 0);
    assert!(control.unknown_refused >= 4, "{}", control.unknown_refused);
    // In XDP: at least the first round's 3 and the removed registration's DISCOVER; the
    // engine never sees them.
    assert!(
        on.unknown_dropped >= 4,
        "unknown_dropped = {}; log:\n{}",
        on.unknown_dropped,
        on.log
    );
    assert_eq!(on.unknown_refused, 0, "log:\n{}", on.log);
    assert!(
        on.metrics.contains("xdhcpd_xdp_unknown_drop_on 1"),
        "metrics: {}",
        on.metrics
    );
    let per_queue: u64 = on
        .metrics
        .lines()
        .filter(|l| {
            l.starts_with("xdhcpd_xdp_packets") && l.contains("counter=\"unknown_dropped\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        per_queue >= 3,
        "xdhcpd_xdp_packets{{counter=\"unknown_dropped\"}}: {}",
        on.metrics
    );
    Ok(())
}

/// The map of known MACs holds one entry (the configured host): registering a second MAC live
/// overflows it. The drop must switch itself off (logged, `xdhcpd_xdp_known_macs_overflow` 1)
/// so the newly registered client is served, and unknown clients go back to the engine.
#[test]
fn xdp_deny_unknown_map_overflow_falls_back_to_passing() -> Res<()> {
    if !require(&[
        Capability::Root,
        Capability::Program("ip"),
        Capability::Program("timeout"),
    ]) {
        return Ok(());
    }
    let bed = Bed::new(Some(&format!("{HOST_ADDR}/{PREFIX}")))?;
    let cfg = config(&bed, true, 1)?;
    let daemon = Daemon::start(&bed, &cfg, Io::Xdp)?;
    let sock = bed
        .cli
        .run(|| -> Res<UdpSocket> {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
                .map_err(|e| format!("binding 0.0.0.0:68: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .map_err(|e| e.to_string())??;
    let server = SocketAddrV4::new(SRV_ADDR.parse().map_err(|_| "SRV_ADDR")?, 67);
    let send = |b: &[u8]| {
        sock.send_to(b, server)
            .map(|_| ())
            .map_err(|e| format!("sending to {server}: {e}"))
    };
    let before = ctl(&bed, &["metrics"])?;
    assert!(before.contains("xdhcpd_xdp_unknown_drop_on 1"), "{before}");
    ctl(
        &bed,
        &[
            "registrations",
            "add",
            "--mac",
            &mac_str(&LIVE),
            "--group",
            "cpe",
        ],
    )?;
    let mut served = false;
    for i in 0..3 {
        send(&discover(0x117e_0100 + i, &LIVE))?;
        if answered(&sock, 0x117e_0100 + i, Duration::from_secs(2))? {
            served = true;
            break;
        }
    }
    // The unknown MAC, then the host: the engine now sees the unknown one.
    send(&discover(0x0d00_0100, &UNKNOWN))?;
    send(&discover(0x4057_0100, &HOST))?;
    let host = answered(&sock, 0x4057_0100, Duration::from_secs(2))?;
    let after = ctl(&bed, &["metrics"])?;
    let finished = daemon.stop()?;
    assert!(
        served,
        "a registered MAC that did not fit the map was not served; log:\n{}",
        finished.log
    );
    assert!(host, "the configured host was not served");
    assert!(
        after.contains("xdhcpd_xdp_known_macs_overflow 1"),
        "{after}"
    );
    assert!(after.contains("xdhcpd_xdp_unknown_drop_on 0"), "{after}");
    assert!(
        finished.log.contains("map of known MACs is full"),
        "log:\n{}",
        finished.log
    );
    assert!(finished.counter("engine", "unknown_refused")? >= 1);
    Ok(())
}
