//! A reload that adds a pool to a failover pair, two xdhcpd in network namespaces (root; see
//! `common/require.rs`), with load balancing (`split = 128`) so that both servers answer
//! new clients:
//! * the pair is NORMAL and the secondary holds its share of the one pool;
//! * the primary reloads (`xdhcpd ctl reload`) a file with a second pool: it grants the
//!   secondary half of it at once, and the secondary, which has no such pool yet, refuses
//!   those binding updates (reject reason 1), counted on both sides and logged once; the pair
//!   stays NORMAL and the secondary holds no address of the new pool;
//! * the secondary reloads (SIGHUP) the same pools: it gets its share of the new pool (BACKUP
//!   on both sides) without a restart;
//! * 40 load-generator clients then get addresses from the new pool from BOTH servers (the
//!   records' owner says who bound them), no address leased twice, both tables agree, the
//!   pair NORMAL throughout on the same connection.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daemon_common::{
    output, read_table, read_text, unix_now, wait_for, write_file, xdhcpd_bin, Res,
};
use failover_common::*;
use lease_store::{Lease, LeaseState, Owner, PoolSpec};
use require::{require, Capability};

/// The pair's first pool (20 addresses) and the pool the reload adds (40).
const P0: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 77, 1, 0), Ipv4Addr::new(10, 77, 1, 19));
const P1: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 77, 2, 0), Ipv4Addr::new(10, 77, 2, 39));

fn pools(with_new: bool) -> Vec<PoolSpec> {
    let mut v = vec![PoolSpec {
        id: 0,
        first: P0.0,
        last: P0.1,
    }];
    if with_new {
        v.push(PoolSpec {
            id: 1,
            first: P1.0,
            last: P1.1,
        });
    }
    v
}

fn in_new(a: Ipv4Addr) -> bool {
    (P1.0..=P1.1).contains(&a)
}

fn config(
    iface: &str,
    me: &str,
    peer: &str,
    primary: bool,
    db: &Path,
    sock: &Path,
    with_new: bool,
) -> String {
    let mut t = format!(
        "[server]\ninterface = \"{iface}\"\nio = \"xdp\"\nserver-id = \"{me}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = 3600\nmin-time = 10\nmax-time = 86400\noffer-hold = 10\n\
         spare-addresses = 64\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{A_ADDR}\"]\n\n\
         [[subnet.pool]]\nrange = \"{}-{}\"\n",
        db.display(),
        sock.display(),
        P0.0,
        P0.1,
    );
    if with_new {
        t.push_str(&format!(
            "\n[[subnet.pool]]\nrange = \"{}-{}\"\n",
            P1.0, P1.1
        ));
    }
    t.push_str(&format!(
        "\n[failover]\nrole = \"{}\"\nname = \"pair\"\naddress = \"{me}\"\nport = 647\n\
         peer-address = \"{peer}\"\npeer-port = 647\nmclt = 60\npoll-interval = 2\n\
         poll-timeout = 8\nuse-safe-period = false\nbackup-pct = 50\nsplit = 128\n{}",
        if primary { "primary" } else { "secondary" },
        auth_line(db.parent().unwrap_or(Path::new("/tmp"))),
    ));
    t
}

/// Records of a running daemon's lease file (a copy), for `pools`.
fn snapshot(xd: &Xd, bed: &PairBed, tag: &str, with_new: bool) -> Res<Vec<Lease>> {
    let copy = bed.path(&format!("snap-{tag}.db"));
    std::fs::copy(&xd.lease_file, &copy)
        .map_err(|e| format!("copying {}: {e}", xd.lease_file.display()))?;
    read_table(&copy, &pools(with_new))
}

fn backup_in_new(t: &[Lease]) -> BTreeSet<Ipv4Addr> {
    t.iter()
        .filter(|l| in_new(l.addr) && l.state == LeaseState::Backup)
        .map(|l| l.addr)
        .collect()
}

fn ctl_reload(sock: &Path) -> Res<String> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new("timeout")
            .arg("10")
            .arg(&bin)
            .args(["ctl", "--socket"])
            .arg(sock)
            .args(["reload", "--json"]),
    )?;
    if !out.status.success() {
        return Err(format!("ctl reload failed: {}{}", out.stdout, out.stderr));
    }
    Ok(out.stdout)
}

/// Both NORMAL with each other, on the connection they had (`conns`).
fn still_normal(a: &mut Xd, b: &mut Xd, conns: &(serde_json::Value, serde_json::Value)) -> Res<()> {
    for (xd, c) in [(a, &conns.0), (b, &conns.1)] {
        xd.proc.check_alive()?;
        let st = xd.status()?;
        if st["state"] != "NORMAL" || st["partner_state"] != "NORMAL" || &st["connections"] != c {
            return Err(format!(
                "the pair left NORMAL or reconnected: {st} (connections before {c})"
            ));
        }
    }
    Ok(())
}

#[test]
fn pair_reload_adds_pool_failover_both_servers_serve_it() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

fn scenario() -> Res<()> {
    let bed = PairBed::new()?;
    let (a_cfg, b_cfg) = (bed.path("a.toml"), bed.path("b.toml"));
    let (a_db, b_db) = (bed.path("a.db"), bed.path("b.db"));
    let (a_sock, b_sock) = (bed.path("a.sock"), bed.path("b.sock"));
    let a_text = |n| config(&bed.la.a, A_ADDR, B_ADDR, true, &a_db, &a_sock, n);
    let b_text = |n| config(&bed.lb.a, B_ADDR, A_ADDR, false, &b_db, &b_sock, n);
    write_file(&a_cfg, &a_text(false))?;
    write_file(&b_cfg, &b_text(false))?;
    let mut a = Xd::start(&bed.a, &a_cfg, &a_db, &a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &b_cfg, &b_db, &b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(60))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    a.wait_drained(Duration::from_secs(20))?;
    let conns = (
        a.status()?["connections"].clone(),
        b.status()?["connections"].clone(),
    );

    // 1. The primary reloads first: it grants half the new pool, the secondary refuses.
    write_file(&a_cfg, &a_text(true))?;
    let answer = ctl_reload(&a_sock)?;
    if !answer.contains("lease table grown by 40 address(es)") {
        return Err(format!("primary's reload: {answer}"));
    }
    let refused = wait_for(
        "the secondary to refuse the grants of the pool it lacks",
        Duration::from_secs(10),
        || {
            let (sa, sb) = (a.status()?, b.status()?);
            let n = sa["partner_refused_not_in_pool"].as_u64().unwrap_or(0);
            Ok((n >= 20
                && sb["refused_not_in_pool"].as_u64() == Some(n)
                && sa["waiting_for_partner_pool"].as_u64() == Some(n))
            .then_some(n))
        },
    )
    .map_err(|e| format!("{e}: primary {:?}, secondary {:?}", a.status(), b.status()))?;
    std::thread::sleep(Duration::from_secs(2));
    still_normal(&mut a, &mut b, &conns)?;
    let ta = snapshot(&a, &bed, "a1", true)?;
    let granted = backup_in_new(&ta);
    if granted.len() != 20 {
        return Err(format!(
            "primary granted {granted:?} of the new pool, want 20"
        ));
    }
    // Logged once each, not once per address.
    let (la, lb) = (read_text(&a.log)?, read_text(&b.log)?);
    let (na, nb) = (
        la.matches("the partner has no pool for").count(),
        lb.matches("has a pool or range this server's has not")
            .count(),
    );
    if na != 1 || nb != 1 {
        return Err(format!(
            "{refused} refusals logged {na} times by the primary, {nb} by the secondary"
        ));
    }

    // 2. The secondary reloads (SIGHUP): it asks for what it refused and gets its share.
    write_file(&b_cfg, &b_text(true))?;
    let mark = read_text(&b.log)?.len();
    b.proc.signal(libc::SIGHUP)?;
    wait_for("the secondary's reload", Duration::from_secs(10), || {
        let l = read_text(&b.log)?;
        Ok(l.get(mark..)
            .is_some_and(|t| t.contains("(configuration generation 1)"))
            .then_some(()))
    })?;
    wait_for(
        "the secondary to hold its share of the new pool",
        Duration::from_secs(10),
        || {
            let sa = a.status()?;
            Ok((sa["waiting_for_partner_pool"] == 0 && sa["unacked_updates"] == 0).then_some(()))
        },
    )
    .map_err(|e| format!("{e}: primary {:?}", a.status()))?;
    a.wait_drained(Duration::from_secs(10))?;
    let tb = snapshot(&b, &bed, "b1", true)?;
    let got = backup_in_new(&tb);
    if got != granted {
        return Err(format!(
            "BACKUP of the new pool: secondary {got:?}, primary granted {granted:?}"
        ));
    }
    still_normal(&mut a, &mut b, &conns)?;

    // 3. Clients: both servers give out addresses of the new pool (load balancing), none twice.
    let mut acked = dora(&bed, 0x5b, 40, "1")?;
    if acked.len() < 40 {
        // A client that timed out on a loaded machine (the exhaustion reclaims of the first
        // pool run meanwhile) tries again; the others are given their own leases again.
        eprintln!(
            "reload pool: {} of 40 clients bound; running them again",
            acked.len()
        );
        let again = dora(&bed, 0x5b, 40, "2")?;
        for x in &acked {
            if let Some(y) = again.iter().find(|y| y.mac == x.mac) {
                if y.addr != x.addr {
                    return Err(format!(
                        "{} had {} and got {} the second time",
                        mac_str(&x.mac),
                        x.addr,
                        y.addr
                    ));
                }
            }
        }
        acked = again;
    }
    if acked.len() != 40 {
        return Err(format!(
            "{} of 40 clients got an address: {acked:?}\nprimary log:\n{}\nsecondary log:\n{}",
            acked.len(),
            read_text(&a.log)?,
            read_text(&b.log)?
        ));
    }
    let mut by_addr: BTreeMap<Ipv4Addr, [u8; 6]> = BTreeMap::new();
    for x in &acked {
        if let Some(m) = by_addr.insert(x.addr, x.mac) {
            return Err(format!(
                "{} leased to {} and {}",
                x.addr,
                mac_str(&m),
                mac_str(&x.mac)
            ));
        }
    }
    a.wait_drained(Duration::from_secs(10))?;
    b.wait_drained(Duration::from_secs(10))?;
    let now = unix_now();
    let (ta, tb) = (
        snapshot(&a, &bed, "a2", true)?,
        snapshot(&b, &bed, "b2", true)?,
    );
    check_acked_bound(&ta, &acked, "primary")?;
    check_acked_bound(&tb, &acked, "secondary")?;
    let (act_a, act_b) = (active_bindings(&ta, now), active_bindings(&tb, now));
    if act_a != act_b {
        return Err(format!("active bindings differ: {act_a:?} vs {act_b:?}"));
    }
    let new_by = |owner: Owner| {
        tb.iter()
            .filter(|l| in_new(l.addr) && l.state == LeaseState::Active && l.owner == owner)
            .count()
    };
    let (by_primary, by_secondary) = (new_by(Owner::Primary), new_by(Owner::Backup));
    eprintln!(
        "reload pool: {} of 40 leases in the new pool, {by_primary} bound by the primary, \
         {by_secondary} by the secondary",
        acked.iter().filter(|x| in_new(x.addr)).count()
    );
    if by_primary == 0 || by_secondary == 0 {
        return Err(format!(
            "new pool served by the primary {by_primary} times, by the secondary {by_secondary}"
        ));
    }
    still_normal(&mut a, &mut b, &conns)?;
    for (xd, who) in [(&a, "primary"), (&b, "secondary")] {
        let l = read_text(&xd.log)?;
        if l.contains("panicked") {
            return Err(format!("{who} panicked:\n{l}"));
        }
    }
    a.stop()?;
    b.stop()?;
    Ok(())
}
