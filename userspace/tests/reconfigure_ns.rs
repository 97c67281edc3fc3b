//! Server-initiated reconfiguration (issue 16, DHCPv4 FORCERENEW) with a real client (UDP and
//! XDP data paths; RFC 6704 key and RFC 3118 token), in
//! network namespaces (root; see `common/require.rs`):
//! * dhcpcd obtains a lease and, having sent option 145, an RFC 6704 reconfigure key; the
//!   operator renumbers (a reload moves the client's class from the old pool to a new one:
//!   pool ranges themselves need a restart) and triggers `xdhcpd ctl reconfigure --ip`;
//!   dhcpcd accepts the authenticated FORCERENEW, renews, gets NAK, and ends with an address
//!   from the new pool within seconds; counters: sent, succeeded;
//! * with a wrong key (the server's secret changed by a reload, so the FORCERENEW is signed
//!   with another key than the one dhcpcd holds) dhcpcd ignores it ("authentication failed"),
//!   the server retries and aborts as configured, the binding stays bound.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use daemon_common::{
    output, read_text, wait_for, write_file, xdhcpd_bin, Bed, Daemon, Io, Res, SRV_ADDR,
};
use require::{require, Capability};

const SECRET_A: &str = "00112233445566778899aabbccddeeff";
const SECRET_B: &str = "ffeeddccbbaa99887766554433221100";

/// `moved`: the hw-prefix that puts the client (02:5a:d1:..) in class `moved`, or one that
/// matches nobody. Pool A (10.77.0.x) denies `moved`; pool B (10.77.1.x) only admits it.
fn config(bed: &Bed, io: Io, moved: bool, auth: &str) -> String {
    let prefix = if moved { "02:5a:d1" } else { "aa:bb:cc" };
    format!(
        "[server]\ninterface = \"{ifc}\"\nio = \"{io}\"\nserver-id = \"{SRV_ADDR}\"\n\
         lease-file = \"{lf}\"\ncontrol-socket = \"{sock}\"\n\n\
         [lease]\ndefault-time = 3600\nmin-time = 60\nmax-time = 86400\n\n\
         [reconfigure]\nretries = 3\nfirst-retry-ms = 500\nrate = 50\n{auth}\n\n\
         [[class]]\nname = \"moved\"\nhw-prefix = \"{prefix}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{SRV_ADDR}\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.0.10-10.77.0.19\"\ndeny = [\"moved\"]\n\n\
         [[subnet.pool]]\nrange = \"10.77.1.10-10.77.1.19\"\nallow = [\"moved\"]\n",
        ifc = bed.srv_if(),
        io = io.as_str(),
        lf = bed.path("leases.db").display(),
        sock = bed.path("ctl.sock").display(),
    )
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

fn status(bed: &Bed) -> Res<serde_json::Value> {
    let text = ctl(bed, &["reconfigure", "--status"])?;
    serde_json::from_str(&text).map_err(|e| format!("reconfigure status {text:?}: {e}"))
}

fn count(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(|x| x.as_u64()).unwrap_or(u64::MAX)
}

/// Addresses dhcpcd reported as leased, in order.
fn leased(log: &str) -> Vec<Ipv4Addr> {
    log.lines()
        .filter_map(|l| l.split("leased ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|a| a.parse().ok())
        .collect()
}

fn in_pool_b(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[..3] == [10, 77, 1] && (10..=19).contains(&o[3])
}

/// How FORCERENEW is authenticated: the server's `[reconfigure]` lines (right, then wrong
/// for dhcpcd) and dhcpcd's configuration lines.
struct AuthMode {
    name: &'static str,
    server: String,
    server_wrong: String,
    client: &'static str,
}

fn nonce_mode() -> AuthMode {
    AuthMode {
        name: "rfc6704-nonce",
        server: format!("secret = \"{SECRET_A}\""),
        server_wrong: format!("secret = \"{SECRET_B}\""),
        client: "",
    }
}

/// RFC 3118 §4 token: dhcpcd sends and expects protocol 0 with its configured token; it
/// does not require our OFFER/ACK to carry one (`noauthrequired`). No reconfigure keys.
fn token_mode() -> AuthMode {
    AuthMode {
        name: "rfc3118-token",
        server: "nonce = false\ntoken = \"s3cret-token\"".into(),
        server_wrong: "nonce = false\ntoken = \"wrong-token!\"".into(),
        client: "authprotocol token\nauthtoken 0 \"\" forever \"s3cret-token\"\nnoauthrequired\n",
    }
}

fn forcerenew_dhcpcd(mode: AuthMode, io: Io) -> Res<()> {
    let bed = Bed::new(None)?;
    let cfg = bed.path("xdhcpd.toml");
    write_file(&cfg, &config(&bed, io, false, &mode.server))?;
    let mut daemon = Daemon::start(&bed, &cfg, io)?;
    let conf = bed.path("dhcpcd.conf");
    // No hooks (the namespaces share /etc with the host), IPv4 only, no ARP probe.
    write_file(
        &conf,
        &format!(
            "ipv4only\nnoarp\nnoipv4ll\nscript /bin/true\n{}",
            mode.client
        ),
    )?;
    let log = bed.path("dhcpcd.log");
    let lease_file = format!("/var/lib/dhcpcd/{}.lease", bed.cli_if());
    let _ = std::fs::remove_file(&lease_file);
    let conf_s = conf.to_string_lossy().into_owned();
    let mut client = bed.spawn_client(
        "dhcpcd",
        "timeout",
        &[
            "120",
            "dhcpcd",
            "-4",
            "-B",
            "-d",
            "-f",
            &conf_s,
            bed.cli_if(),
        ],
        &log,
    )?;
    let result = (|| -> Res<()> {
        let first = wait_for("dhcpcd's first lease", Duration::from_secs(30), || {
            client.check_alive()?;
            Ok(leased(&read_text(&log)?).first().copied())
        })?;
        let text = read_text(&log)?;
        let keyed = text.contains("accepted reconfigure key");
        if keyed != mode.client.is_empty() {
            return Err(format!(
                "{}: dhcpcd took a reconfigure key: {keyed}:\n{text}",
                mode.name
            ));
        }
        if in_pool_b(first) {
            return Err(format!("first lease {first} already in the new pool"));
        }

        // Renumber: the client's class now draws from pool B only.
        write_file(&cfg, &config(&bed, io, true, &mode.server))?;
        ctl(&bed, &["reload"])?;
        let t0 = Instant::now();
        let first_s = first.to_string();
        let answer = ctl(&bed, &["reconfigure", "--ip", &first_s])?;
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("{answer:?}: {e}"))?;
        if count(&v, "matched") != 1 {
            return Err(format!("reconfigure matched: {answer}"));
        }
        let moved = wait_for(
            "dhcpcd's lease in the new pool",
            Duration::from_secs(20),
            || {
                client.check_alive()?;
                Ok(leased(&read_text(&log)?)
                    .into_iter()
                    .find(|a| in_pool_b(*a)))
            },
        )?;
        let took = t0.elapsed();
        let text = read_text(&log)?;
        for want in ["Force Renew", "NAK"] {
            if !text.contains(want) {
                return Err(format!("dhcpcd log lacks {want:?}:\n{text}"));
            }
        }
        let st = wait_for(
            "the campaign to see the answer",
            Duration::from_secs(5),
            || {
                let s = status(&bed)?;
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
            "forcerenew {} ({}): {first} -> {moved} in {:.2} s (trigger to new lease); {st}",
            mode.name,
            io.as_str(),
            took.as_secs_f64()
        );

        // Wrong key: a new secret signs with another key than dhcpcd's.
        write_file(&cfg, &config(&bed, io, true, &mode.server_wrong))?;
        ctl(&bed, &["reload"])?;
        let before = leased(&read_text(&log)?).len();
        let sent_before = count(&status(&bed)?, "sent");
        let fails_before = read_text(&log)?.matches("authentication failed").count();
        let moved_s = moved.to_string();
        ctl(&bed, &["reconfigure", "--ip", &moved_s])?;
        // 3 sends at 0, 0.5, 1.5 s; abort at 3.5 s.
        let st = wait_for("the attempt to abort", Duration::from_secs(15), || {
            let s = status(&bed)?;
            Ok((count(&s, "aborted") == 1).then_some(s))
        })?;
        let text = read_text(&log)?;
        let fails = text.matches("authentication failed").count() - fails_before;
        if fails < 3 {
            return Err(format!(
                "dhcpcd rejected {fails} FORCERENEW(s), want 3 ({st}):\n{text}"
            ));
        }
        if count(&st, "sent") != sent_before + 3 || count(&st, "succeeded") != 1 {
            return Err(format!("counters after abort: {st}"));
        }
        if leased(&text).len() != before {
            return Err(format!("dhcpcd renewed on a forged FORCERENEW:\n{text}"));
        }
        let lease = ctl(&bed, &["lease", "--ip", &moved_s])?;
        if !lease.contains("active") {
            return Err(format!("binding not restored to bound: {lease}"));
        }
        let metrics = ctl(&bed, &["metrics"])?;
        for m in [
            "xdhcpd_reconfigure_total{event=\"sent\"} 4",
            "xdhcpd_reconfigure_total{event=\"retried\"} 2",
            "xdhcpd_reconfigure_total{event=\"succeeded\"} 1",
            "xdhcpd_reconfigure_total{event=\"aborted\"} 1",
            "xdhcpd_reconfigure_total{event=\"refused_no_auth\"} 0",
            "xdhcpd_reconfigure_client_events_total{event=\"nak\"} 1",
        ] {
            if !metrics.contains(m) {
                return Err(format!("/metrics lacks {m}:\n{metrics}"));
            }
        }
        eprintln!(
            "forcerenew {} wrong key: dhcpcd rejected {fails}, server aborted: {st}",
            mode.name
        );
        daemon.check_alive()
    })();
    drop(client);
    let _ = std::fs::remove_file(&lease_file);
    let daemon_log = daemon.log_text();
    match result {
        Ok(()) => {
            daemon.stop()?;
            Ok(())
        }
        Err(e) => Err(format!(
            "{e}\n--- dhcpcd log:\n{}\n--- xdhcpd log:\n{daemon_log}",
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
fn reconfigure_forcerenew_dhcpcd_nonce_renumbered_and_wrong_key_ns() {
    if !needs() {
        return;
    }
    if let Err(e) = forcerenew_dhcpcd(nonce_mode(), Io::Udp) {
        panic!("{e}");
    }
}

#[test]
fn reconfigure_forcerenew_dhcpcd_token_renumbered_and_wrong_token_ns() {
    if !needs() {
        return;
    }
    if let Err(e) = forcerenew_dhcpcd(token_mode(), Io::Udp) {
        panic!("{e}");
    }
}

/// The same over the AF_XDP data path (the NAK to the renewing client leaves through XDP).
#[test]
fn reconfigure_forcerenew_dhcpcd_nonce_xdp_ns() {
    if !needs() {
        return;
    }
    if let Err(e) = forcerenew_dhcpcd(nonce_mode(), Io::Xdp) {
        panic!("{e}");
    }
}
