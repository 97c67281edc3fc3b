//! Who may hold the failover connection (issue 12, item 1), two xdhcpd in namespaces
//! (root; see `common/require.rs`):
//! * `failover_takeover_...`: with the pair in NORMAL, a second connection from the
//!   partner's own address (a process on the partner's host, or anyone spoofing it) is
//!   closed at once and the pair stays NORMAL on its old session, which keeps carrying
//!   binding updates. Run with plain TCP (`partner-software = "isc-dhcpd"` on both sides),
//!   the worst case: no key stops the attacker before the connection rule does;
//! * `failover_auth_...`: with the default pre-shared-key authentication, a partner with the
//!   wrong key never gets a session (neither side communicates, both log the refusal), and
//!   a connection from the partner's address that cannot prove the key is refused while
//!   the pair stays NORMAL.
//!
//! The attacker is a small Python TCP client run inside a server's namespace, bound to that
//! server's address; it reports how long the victim kept its connection open.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::time::Duration;

use daemon_common::{output, read_text, wait_for, write_file, Res};
use failover_common::*;
use netns::Netns;
use require::{require, Capability};

/// Connects from `src` to `dst:647`, sends `payload_hex`, and prints how long the other end
/// kept the connection (ms; 20000 = still open when the attacker gave up).
const ATTACKER: &str = r#"
import socket, sys, time
src, dst, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((src, 0))
s.settimeout(20)
s.connect((dst, 647))
t0 = time.time()
try:
    s.sendall(payload)
    while True:
        if not s.recv(4096):
            break
except socket.timeout:
    pass
except OSError:
    pass
print("open_ms=%d" % int((time.time() - t0) * 1000))
"#;

/// Runs the attacker in `ns`; returns how long the victim kept the connection open, in ms.
fn attack(ns: &Netns, src: &str, dst: &str, payload_hex: &str) -> Res<u64> {
    let out = output(ns.command("timeout").args([
        "30",
        "python3",
        "-c",
        ATTACKER,
        src,
        dst,
        payload_hex,
    ]))?;
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("open_ms="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("attacker: {} {}", out.stdout, out.stderr))
}

fn needs() -> bool {
    require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("python3"),
    ])
}

fn connections(xd: &Xd) -> Res<u64> {
    xd.status()?["connections"]
        .as_u64()
        .ok_or_else(|| "status without connections".to_string())
}

#[test]
fn failover_takeover_second_connection_leaves_pair_normal() {
    if !needs() {
        return;
    }
    if let Err(e) = takeover_scenario() {
        panic!("{e}");
    }
}

fn takeover_scenario() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    // Plain TCP on both sides: only the connection rule stands between the attacker and
    // the session.
    let s = xd_sides_with(&bed, &t, |_, c| for_isc_partner(&c))?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let (conn_a, conn_b) = (connections(&a)?, connections(&b)?);

    // From the primary's address to the secondary, then from the secondary's address to
    // the primary: each holds a connection and sends nothing a session could use.
    let to_b = attack(&bed.a, A_ADDR, B_ADDR, "00")?;
    let to_a = attack(&bed.b, B_ADDR, A_ADDR, "00")?;
    // Closed by the server at once (before the fix the secondary took the new connection
    // as its session and closed it only when CONNECT never came, after poll-timeout 8 s).
    assert!(
        to_b < 3000 && to_a < 3000,
        "attack connections stayed open {to_b} ms / {to_a} ms:\nB:\n{}\nA:\n{}",
        b.proc.log_text(),
        a.proc.log_text()
    );
    // Both servers acted on the attack (closed it), so the session would be gone by now
    // if they had switched to it: it is still the same one.
    for (x, before, who) in [(&mut a, conn_a, "primary"), (&mut b, conn_b, "secondary")] {
        let st = x.status()?;
        assert!(
            st["state"] == "NORMAL"
                && st["partner_state"] == "NORMAL"
                && st["communicating"] == true
                && st["connections"].as_u64() == Some(before),
            "{who} after the attack: {st}\n{}",
            x.proc.log_text()
        );
        let log = read_text(&x.log)?;
        assert!(
            log.contains("the session with the partner is established and alive"),
            "{who} did not log the refusal:\n{log}"
        );
    }
    // The old session still carries binding updates both ways.
    let acked = dora(&bed, 71, 5, "after-attack")?;
    assert_eq!(acked.len(), 5, "{acked:?}");
    a.wait_drained(Duration::from_secs(10))?;
    check_acked_bound(&table_snapshot(&b, &bed, "b")?, &acked, "secondary")?;
    // After that round trip, still the first session on both sides (before the fix the
    // secondary took the attacker's connection as its session, the primary lost its own and
    // reconnected: `connections` 1 -> 2).
    for (x, before, who) in [(&a, conn_a, "primary"), (&b, conn_b, "secondary")] {
        let st = x.status()?;
        assert!(
            st["state"] == "NORMAL" && st["connections"].as_u64() == Some(before),
            "{who} at the end: {st}"
        );
    }
    a.stop()?;
    b.stop()?;
    Ok(())
}

#[test]
fn failover_auth_wrong_key_is_refused_and_attacker_cannot_connect() {
    if !needs() {
        return;
    }
    if let Err(e) = auth_scenario() {
        panic!("{e}");
    }
}

fn auth_scenario() -> Res<()> {
    let bed = PairBed::new()?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    // 1. The secondary has another key: no session ever forms.
    let wrong = bed.path("wrong.key");
    write_file(&wrong, "another-key-0123456789abcdef0123456789\n")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    let s = xd_sides_with(&bed, &t, |primary, c| {
        if primary {
            c
        } else {
            c.lines()
                .map(|l| {
                    if l.starts_with("auth-key-file") {
                        format!("auth-key-file = \"{}\"", wrong.display())
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
    })?;
    let a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    // Both dial and both listen: each side refuses the other's proof.
    wait_for(
        "both sides to refuse the wrong key",
        Duration::from_secs(30),
        || {
            let (la, lb) = (read_text(&a.log)?, read_text(&b.log)?);
            Ok(
                (la.contains("proof does not match") && lb.contains("proof does not match"))
                    .then_some(()),
            )
        },
    )
    .map_err(|e| format!("{e}\nA:\n{}\nB:\n{}", a.proc.log_text(), b.proc.log_text()))?;
    for (x, who) in [(&a, "primary"), (&b, "secondary")] {
        let st = x.status()?;
        assert!(
            st["communicating"] == false
                && st["connections"].as_u64() == Some(0)
                && st["partner_state"].is_null(),
            "{who} with the wrong key: {st}"
        );
    }
    a.stop()?;
    b.stop()?;

    // 2. The right key: NORMAL; then an attacker from the primary's address without the key
    // (a fake hello) is refused and the pair stays NORMAL.
    let bed = PairBed::new()?;
    let s = xd_sides(&bed, &t)?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;
    let conn_b = connections(&b)?;
    // "XDFOAUTH", version 1, role primary, a nonce, then a made-up proof.
    let fake = format!("5844464f415554480100{}{}", "11".repeat(32), "22".repeat(32));
    let open = attack(&bed.a, A_ADDR, B_ADDR, &fake)?;
    assert!(
        open < 3000,
        "the unauthenticated connection stayed open {open} ms"
    );
    let lb = read_text(&b.log)?;
    assert!(
        lb.contains(&format!("refused a connection from {A_ADDR}"))
            && lb.contains("proof does not match"),
        "{lb}"
    );
    let st = b.status()?;
    assert!(
        st["state"] == "NORMAL"
            && st["communicating"] == true
            && st["connections"].as_u64() == Some(conn_b),
        "{st}"
    );
    a.stop()?;
    b.stop()?;
    Ok(())
}

/// Tries a TCP connection from `src` to `dst:647` for 2 s: "connected", "timeout" (SYN
/// dropped) or "refused".
const PROBE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((sys.argv[1], 0))
s.settimeout(2)
try:
    s.connect((sys.argv[2], 647))
    print("probe=connected")
except socket.timeout:
    print("probe=timeout")
except ConnectionRefusedError:
    print("probe=refused")
"#;

fn probe(ns: &Netns, src: &str, dst: &str) -> Res<String> {
    let out = output(
        ns.command("timeout")
            .args(["10", "python3", "-c", PROBE, src, dst]),
    )?;
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("probe="))
        .map(str::to_string)
        .ok_or_else(|| format!("probe: {} {}", out.stdout, out.stderr))
}

#[test]
fn failover_takeover_udp_mode_guard_drops_strangers() {
    if !needs() || !require(&[Capability::Program("nft")]) {
        return;
    }
    if let Err(e) = udp_guard_scenario() {
        panic!("{e}");
    }
}

fn udp_guard_scenario() -> Res<()> {
    const STRANGER: &str = "10.77.0.50";
    let bed = PairBed::new()?;
    bed.c
        .add_addr(&bed.lc.a, &format!("{STRANGER}/16"))
        .map_err(|e| e.to_string())?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    // Only the primary runs, in kernel UDP mode; its partner's address answers nothing.
    let s = xd_sides_with(&bed, &t, |_, c| c.replace("io = \"xdp\"", "io = \"udp\""))?;
    let a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let tables = output(bed.a.command("nft").args(["list", "tables"]))?;
    assert!(
        tables.stdout.contains("xdhcpd_failover_647"),
        "no guard table: {} {}\n{}",
        tables.stdout,
        tables.stderr,
        a.proc.log_text()
    );
    // A stranger's SYN is dropped (before: accepted by the kernel, then closed by the
    // daemon); the partner's address still reaches the listener.
    assert_eq!(probe(&bed.c, STRANGER, A_ADDR)?, "timeout", "stranger");
    assert_eq!(
        probe(&bed.b, B_ADDR, A_ADDR)?,
        "connected",
        "partner's address"
    );
    let listing =
        output(
            bed.a
                .command("nft")
                .args(["list", "table", "inet", "xdhcpd_failover_647"]),
        )?;
    // The stranger's SYNs were counted by the IPv4 drop rule.
    let rule = listing
        .stdout
        .lines()
        .find(|l| l.contains("ip saddr != "))
        .unwrap_or("");
    assert!(
        rule.contains("counter packets") && !rule.contains("counter packets 0 "),
        "{}",
        listing.stdout
    );
    a.stop()?;
    let tables = output(bed.a.command("nft").args(["list", "tables"]))?;
    assert!(
        !tables.stdout.contains("xdhcpd_failover_647"),
        "the guard outlived the daemon: {}",
        tables.stdout
    );
    Ok(())
}
