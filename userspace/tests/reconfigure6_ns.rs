//! DHCPv6 Reconfigure (issue 16, RFC 8415 §18.3.11 with the §20.4 reconfigure key) with a
//! real client, dhcpcd, in network namespaces (root; see `common/require.rs`):
//! * dhcpcd (`option dhcp6_reconfigure_accept`) obtains an IA_NA and, having sent Reconfigure
//!   Accept, its reconfigure key ("accepted reconfigure key");
//! * the operator renumbers: the `[[subnet6]]` pool moves (a restart: DHCPv6 configuration
//!   is not reloadable; the binding file and the key secret survive it), then
//!   `xdhcpd ctl reconfigure --ip <address>`; dhcpcd accepts the signed Reconfigure, renews,
//!   gets its address back with lifetimes 0, solicits again and ends with an address from the
//!   new pool within seconds; counters: sent, succeeded;
//! * with a wrong key (the server restarted with another secret, so the Reconfigure is
//!   signed with another key than the one dhcpcd holds) dhcpcd ignores it ("authentication
//!   failed"), the server retries and aborts as configured, and `/metrics` shows it.
//!
//! Run: `cargo test --release -p xdhcpd --test reconfigure6_ns` (root; `cargo xtask setup`).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::{
    output, read_text, wait_for, write_file, xdhcpd_bin, Bed, Daemon, Io, Res, SRV_ADDR,
};
use require::{require, Capability};

const SECRET_A: &str = "00112233445566778899aabbccddeeff";
const SECRET_B: &str = "ffeeddccbbaa99887766554433221100";
const POOL_A: (&str, &str) = ("fd77::1:0", "fd77::1:ffff");
const POOL_B: (&str, &str) = ("fd77::2:0", "fd77::2:ffff");

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().expect("test address")
}

fn in_pool(a: Ipv6Addr, p: (&str, &str)) -> bool {
    (u128::from(ip6(p.0))..=u128::from(ip6(p.1))).contains(&u128::from(a))
}

fn config(bed: &Bed, io: Io, pool: (&str, &str), secret: &str) -> String {
    format!(
        "[server]\ninterface = \"{ifc}\"\nio = \"{io}\"\nserver-id = \"{SRV_ADDR}\"\n\
         lease-file = \"{lf}\"\ncontrol-socket = \"{sock}\"\n\n\
         [reconfigure]\nretries = 3\nfirst-retry-ms = 500\nrate = 50\nsecret = \"{secret}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\n[[subnet.pool]]\nrange = \"10.77.1.10-10.77.1.19\"\n\n\
         [dhcpv6]\nlease-file = \"{b6}\"\ncapacity = 1024\n\n\
         [[subnet6]]\nprefix = \"fd77::/64\"\npreferred-time = 600\nvalid-time = 1200\n\
         dns-servers = [\"fd77::1\"]\n[[subnet6.pool]]\nrange = \"{a}-{b}\"\n",
        ifc = bed.srv_if(),
        io = io.as_str(),
        lf = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
        b6 = bed.path("bindings6.db").display(),
        a = pool.0,
        b = pool.1,
    )
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

fn ctl(bed: &Bed, args: &[&str]) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let sock = bed.path("ctl.sock");
    let mut all = vec![
        "20".to_string(),
        bin.to_string_lossy().into_owned(),
        "ctl".into(),
        "--socket".into(),
        sock.to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = output(std::process::Command::new("timeout").args(&all))?;
    if !out.status.success() {
        return Err(format!("xdhcpd ctl {args:?}: {}{}", out.stdout, out.stderr));
    }
    Ok(out.stdout)
}

/// The DHCPv6 part of `ctl reconfigure --status`.
fn status6(bed: &Bed) -> Res<serde_json::Value> {
    let text = ctl(bed, &["reconfigure", "--status"])?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("reconfigure status {text:?}: {e}"))?;
    v.get("dhcpv6")
        .cloned()
        .ok_or_else(|| format!("no \"dhcpv6\" in {text}"))
}

fn count(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(|x| x.as_u64()).unwrap_or(u64::MAX)
}

/// Addresses dhcpcd added, in order.
fn added(log: &str) -> Vec<Ipv6Addr> {
    log.lines()
        .filter_map(|l| l.split("adding address ").nth(1))
        .filter_map(|a| a.split('/').next())
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// Stops the daemon in `slot` (its log kept in `logs`; with `served`, checks that the
/// data path asked for is the one that served) and starts it again with `cfg`.
fn restart(
    slot: &mut Option<Daemon>,
    bed: &Bed,
    cfg: &Path,
    io: Io,
    served: bool,
    logs: &mut String,
) -> Res<()> {
    if let Some(d) = slot.take() {
        logs.push_str(&d.log_text());
        let fin = d.stop()?;
        if served {
            fin.check_io(io)?;
        }
    }
    *slot = Some(Daemon::start(bed, cfg, io)?);
    Ok(())
}

fn reconfigure6_dhcpcd(io: Io) -> Res<()> {
    let bed = bed6()?;
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &config(&bed, io, POOL_A, SECRET_A))?;
    let mut daemon = Some(Daemon::start(&bed, &cfg, io)?);
    let conf = bed.path("dhcpcd.conf");
    // No hooks (the namespaces share /etc with the host), IPv6 only, no router
    // solicitation; Reconfigure Accept in every Request/Renew: dhcpcd sends option 20 only
    // when it is requested as `dhcp6_reconfigure_accept` (src/dhcp6.c, dhcp6_makemessage:
    // DHC_REQ(ifo->requestmask6, ifo->nomask6, D6_OPTION_RECONF_ACCEPT)).
    write_file(
        &conf,
        "ipv6only\nnoipv6rs\nia_na 1\noption dhcp6_reconfigure_accept\nscript /bin/true\n",
    )?;
    let log = bed.path("dhcpcd.log");
    let lease_file = format!("/var/lib/dhcpcd/{}.lease6", bed.cli_if());
    let _ = std::fs::remove_file(&lease_file);
    let host_resolv = std::fs::read("/etc/resolv.conf").ok();
    let conf_s = conf.to_string_lossy().into_owned();
    let mut client = bed.spawn_client(
        "dhcpcd",
        "timeout",
        &[
            "120",
            "dhcpcd",
            "-6",
            "-B",
            "-d",
            "--script",
            "/bin/true",
            "-f",
            &conf_s,
            bed.cli_if(),
        ],
        &log,
    )?;
    let mut logs = String::new();
    let result = (|| -> Res<()> {
        let first = wait_for("dhcpcd's first address", Duration::from_secs(30), || {
            client.check_alive()?;
            Ok(added(&read_text(&log)?).first().copied())
        })?;
        let text = read_text(&log)?;
        if !text.contains("accepted reconfigure key") {
            return Err(format!("dhcpcd took no reconfigure key:\n{text}"));
        }
        if !in_pool(first, POOL_A) {
            return Err(format!("first address {first} not in pool A"));
        }

        // Renumber: the pool moves (restart; the bindings and the key secret stay).
        write_file(&cfg, &config(&bed, io, POOL_B, SECRET_A))?;
        restart(&mut daemon, &bed, &cfg, io, true, &mut logs)?;
        let t0 = Instant::now();
        let first_s = first.to_string();
        let answer = ctl(&bed, &["reconfigure", "--ip", &first_s])?;
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("{answer:?}: {e}"))?;
        if count(&v, "matched_dhcpv6_clients") != 1 {
            return Err(format!("reconfigure matched: {answer}"));
        }
        let moved = wait_for(
            "dhcpcd's address in the new pool",
            Duration::from_secs(20),
            || {
                client.check_alive()?;
                Ok(added(&read_text(&log)?)
                    .into_iter()
                    .find(|a| in_pool(*a, POOL_B)))
            },
        )?;
        let took = t0.elapsed();
        let text = read_text(&log)?;
        if !text.contains("RECONFIGURE6") {
            return Err(format!("dhcpcd log lacks the Reconfigure:\n{text}"));
        }
        let st = wait_for(
            "the campaign to see the answer",
            Duration::from_secs(5),
            || {
                let s = status6(&bed)?;
                Ok((count(&s, "succeeded") == 1).then_some(s))
            },
        )?;
        if count(&st, "sent") < 1
            || count(&st, "aborted") != 0
            || count(&st, "refused_no_auth") != 0
        {
            return Err(format!("counters after success: {st}"));
        }
        eprintln!(
            "reconfigure6 ({}): {first} -> {moved} in {:.2} s (trigger to new address); {st}",
            io.as_str(),
            took.as_secs_f64()
        );

        // Wrong key: another secret signs with another key than dhcpcd's.
        write_file(&cfg, &config(&bed, io, POOL_B, SECRET_B))?;
        // The daemon that served the renumbering served it on `io`.
        restart(&mut daemon, &bed, &cfg, io, true, &mut logs)?;
        let before = added(&read_text(&log)?).len();
        let fails_before = read_text(&log)?.matches("authentication failed").count();
        let moved_s = moved.to_string();
        ctl(&bed, &["reconfigure", "--ip", &moved_s])?;
        // 3 sends at 0, 0.5, 1.5 s; abort at 3.5 s.
        let st = wait_for("the attempt to abort", Duration::from_secs(15), || {
            let s = status6(&bed)?;
            Ok((count(&s, "aborted") == 1).then_some(s))
        })?;
        let text = read_text(&log)?;
        let fails = text.matches("authentication failed").count() - fails_before;
        if fails < 3 {
            return Err(format!(
                "dhcpcd rejected {fails} Reconfigure(s), want 3 ({st}):\n{text}"
            ));
        }
        if count(&st, "sent") != 3 || count(&st, "succeeded") != 0 {
            return Err(format!("counters after abort: {st}"));
        }
        if added(&text).len() != before {
            return Err(format!("dhcpcd renewed on a forged Reconfigure:\n{text}"));
        }
        let metrics = ctl(&bed, &["metrics"])?;
        for m in [
            "xdhcpd_reconfigure6_total{event=\"sent\"} 3",
            "xdhcpd_reconfigure6_total{event=\"retried\"} 2",
            "xdhcpd_reconfigure6_total{event=\"aborted\"} 1",
            "xdhcpd_reconfigure6_total{event=\"refused_no_auth\"} 0",
        ] {
            if !metrics.contains(m) {
                return Err(format!("/metrics lacks {m}:\n{metrics}"));
            }
        }
        eprintln!("reconfigure6 wrong key: dhcpcd rejected {fails}, server aborted: {st}");
        match daemon.as_mut() {
            Some(d) => d.check_alive(),
            None => Err("no daemon".into()),
        }
    })();
    drop(client);
    let _ = std::fs::remove_file(&lease_file);
    if std::fs::read("/etc/resolv.conf").ok() != host_resolv {
        return Err("dhcpcd in the test namespace rewrote the host's /etc/resolv.conf".into());
    }
    if let Some(d) = &daemon {
        logs.push_str(&d.log_text());
    }
    match result {
        Ok(()) => {
            // The last daemon only sent Reconfigures (no DHCP traffic reached it).
            if let Some(d) = daemon {
                d.stop()?;
            }
            Ok(())
        }
        Err(e) => Err(format!(
            "{e}\n--- dhcpcd log:\n{}\n--- xdhcpd logs:\n{logs}",
            read_text(&log).unwrap_or_default()
        )),
    }
}

fn needs() -> bool {
    require(&[
        Capability::Root,
        Capability::Program("dhcpcd"),
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ])
}

#[test]
fn reconfigure_dhcpv6_dhcpcd_renumbered_and_wrong_key_udp_ns() {
    if !needs() {
        return;
    }
    if let Err(e) = reconfigure6_dhcpcd(Io::Udp) {
        panic!("{e}");
    }
}

/// The same over the AF_XDP data path (dhcpcd's Renew and Solicit arrive through XDP).
#[test]
fn reconfigure_dhcpv6_dhcpcd_renumbered_and_wrong_key_xdp_ns() {
    if !needs() {
        return;
    }
    if let Err(e) = reconfigure6_dhcpcd(Io::Xdp) {
        panic!("{e}");
    }
}
