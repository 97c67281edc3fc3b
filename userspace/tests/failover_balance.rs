//! Address balance between failover partners, two xdhcpd in network namespaces (root;
//! see `common/require.rs`). Testable behaviour 10 of the failover spec:
//! * after NORMAL the backup holds the scope's `backup-pct` of a small pool (the `[[subnet]]`
//!   value wins over `[failover]`), taken below the pool's midpoint, highest first, and both
//!   tables agree on which addresses;
//! * clients that use up the primary's FREE addresses make the primary reclaim BACKUP
//!   addresses from the secondary at once, so further clients are still served by the primary
//!   (the secondary answers no DISCOVER in NORMAL), with no address bound twice;
//! * a secondary serving its load-balancing share that runs out of BACKUP addresses is
//!   refilled at once (its POOLREQ, or the primary's balance check), and both tables agree.

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use daemon_common::{read_table, unix_now, write_file, Res};
use failover_common::*;
use lease_store::{Lease, LeaseState, PoolSpec};
use require::{require, Capability};

/// 20 addresses; the midpoint (default allocation boundary) is .10.
const FIRST: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 0);
const LAST: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 19);

fn pools() -> Vec<PoolSpec> {
    vec![PoolSpec {
        id: 0,
        first: FIRST,
        last: LAST,
    }]
}

fn config(iface: &str, me: &str, peer: &str, primary: bool, db: &Path, sock: &Path) -> String {
    format!(
        "[server]\ninterface = \"{iface}\"\nio = \"xdp\"\nserver-id = \"{me}\"\n\
         lease-file = \"{}\"\ncommit = \"ack\"\ncontrol-socket = \"{}\"\n\n\
         [lease]\ndefault-time = 3600\nmin-time = 10\nmax-time = 86400\noffer-hold = 10\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/16\"\nrouter = [\"{A_ADDR}\"]\nbackup-pct = 25\n\n\
         [[subnet.pool]]\nrange = \"{FIRST}-{LAST}\"\n\n\
         [failover]\nrole = \"{}\"\nname = \"pair\"\naddress = \"{me}\"\nport = 647\n\
         peer-address = \"{peer}\"\npeer-port = 647\nmclt = 60\npoll-interval = 2\n\
         poll-timeout = 8\nuse-safe-period = false\nbackup-pct = 50\n{}",
        db.display(),
        sock.display(),
        if primary { "primary" } else { "secondary" },
        failover_common::auth_line(db.parent().unwrap_or(std::path::Path::new("/tmp"))),
    )
}

fn snapshot(xd: &Xd, bed: &PairBed, tag: &str) -> Res<Vec<Lease>> {
    let copy = bed.path(&format!("snap-{tag}.db"));
    std::fs::copy(&xd.lease_file, &copy)
        .map_err(|e| format!("copying {}: {e}", xd.lease_file.display()))?;
    read_table(&copy, &pools())
}

/// Both tables agree: every ACK is bound on both sides and the unexpired bindings are the same.
/// Returns the two tables (primary, secondary).
fn tables_agree(
    a: &Xd,
    b: &Xd,
    bed: &PairBed,
    acked: &[Acked],
    tag: &str,
) -> Res<(Vec<Lease>, Vec<Lease>)> {
    let now = unix_now();
    let ta = snapshot(a, bed, &format!("a-{tag}"))?;
    let tb = snapshot(b, bed, &format!("b-{tag}"))?;
    check_acked_bound(&ta, acked, "primary")?;
    check_acked_bound(&tb, acked, "secondary")?;
    let (act_a, act_b) = (active_bindings(&ta, now), active_bindings(&tb, now));
    if act_a.keys().collect::<Vec<_>>() != act_b.keys().collect::<Vec<_>>() {
        return Err(format!("active bindings differ: {act_a:?} vs {act_b:?}"));
    }
    Ok((ta, tb))
}

fn in_state(t: &[Lease], s: LeaseState) -> BTreeSet<Ipv4Addr> {
    t.iter().filter(|l| l.state == s).map(|l| l.addr).collect()
}

#[test]
fn backup_gets_scope_pct_and_primary_reclaims_on_exhaustion() {
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

/// Starts the pair (`primary_extra` appended to the primary's `[failover]` section) and waits
/// until both are NORMAL and the primary's updates (the initial grant) are acknowledged.
fn start_pair(bed: &PairBed, primary_extra: &str) -> Res<(Xd, Xd)> {
    let (a_cfg, b_cfg) = (bed.path("a.toml"), bed.path("b.toml"));
    let (a_db, b_db) = (bed.path("a.db"), bed.path("b.db"));
    let (a_sock, b_sock) = (bed.path("a.sock"), bed.path("b.sock"));
    let a_text = config(&bed.la.a, A_ADDR, B_ADDR, true, &a_db, &a_sock);
    write_file(&a_cfg, &format!("{a_text}{primary_extra}"))?;
    write_file(
        &b_cfg,
        &config(&bed.lb.a, B_ADDR, A_ADDR, false, &b_db, &b_sock),
    )?;
    let mut a = Xd::start(&bed.a, &a_cfg, &a_db, &a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &b_cfg, &b_db, &b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(60))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    a.wait_drained(Duration::from_secs(20))?;
    Ok((a, b))
}

fn scenario() -> Res<()> {
    let bed = PairBed::new()?;
    let (mut a, mut b) = start_pair(&bed, "")?;

    // 1. The grant on entering NORMAL: 25% (scope) of 20, not 50% ([failover]), from below
    //    the midpoint .10, highest first.
    let want: BTreeSet<Ipv4Addr> = (5..=9).map(|i| Ipv4Addr::new(10, 77, 1, i)).collect();
    let ta = snapshot(&a, &bed, "a1")?;
    let tb = snapshot(&b, &bed, "b1")?;
    let (ba, bb) = (
        in_state(&ta, LeaseState::Backup),
        in_state(&tb, LeaseState::Backup),
    );
    if ba != want || bb != want {
        return Err(format!(
            "after NORMAL: BACKUP on the primary {ba:?}, on the secondary {bb:?}, want {want:?}"
        ));
    }
    eprintln!("balance: backup holds {} of 20 addresses: {ba:?}", ba.len());

    // 2. 18 clients: the primary has 15 FREE addresses; the rest must come back from the
    //    backup (reclaim on exhaustion, or the once-a-second check: whichever runs first).
    let acked = dora(&bed, 0x61, 18, "exhaust")?;
    let addrs: BTreeSet<Ipv4Addr> = acked.iter().map(|x| x.addr).collect();
    if acked.len() != 18 || addrs.len() != 18 {
        return Err(format!(
            "{} of 18 clients got a lease ({} distinct addresses): {acked:?}\nprimary log:\n{}",
            acked.len(),
            addrs.len(),
            a.proc.log_text()
        ));
    }
    let reclaimed: Vec<&Ipv4Addr> = addrs.intersection(&want).collect();
    if reclaimed.len() < 3 {
        return Err(format!(
            "only {reclaimed:?} of the backup's addresses were leased by the primary"
        ));
    }
    a.wait_drained(Duration::from_secs(20))?;
    b.wait_drained(Duration::from_secs(20))?;
    let log = a.proc.log_text();
    let how = if log.contains("pool exhausted: reclaiming") {
        "exhaustion"
    } else {
        "periodic check"
    };
    eprintln!(
        "balance: 18/18 clients served by the primary; reclaimed {} via {how}",
        reclaimed.len()
    );

    // 3. Both tables agree: every ACK is bound on both sides, no address twice; what the
    //    backup still holds is BACKUP on both.
    let (ta, tb) = tables_agree(&a, &b, &bed, &acked, "exhaust")?;
    let (ba, bb) = (
        in_state(&ta, LeaseState::Backup),
        in_state(&tb, LeaseState::Backup),
    );
    if ba != bb || ba.iter().any(|x| addrs.contains(x)) {
        return Err(format!(
            "BACKUP sets differ or overlap leases: primary {ba:?}, secondary {bb:?}"
        ));
    }
    a.stop()?;
    b.stop()?;
    Ok(())
}

/// The secondary runs out of BACKUP addresses while serving its load-balancing share: it asks
/// the primary at once (POOLREQ) instead of waiting for the hourly request, or the primary's
/// once-a-second balance check refills it first; either way every client the secondary must
/// serve gets a lease, and both tables agree.
#[test]
fn secondary_out_of_backup_addresses_is_refilled_at_once() {
    if !require(&[
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
    ]) {
        return;
    }
    if let Err(e) = secondary_exhaustion() {
        panic!("{e}");
    }
}

fn secondary_exhaustion() -> Res<()> {
    let bed = PairBed::new()?;
    // split = 0: every hash bucket is the secondary's, so it answers every DISCOVER in NORMAL
    // from its BACKUP addresses (load balancing makes the share 50%: 10 of 20), the primary
    // none.
    let (mut a, mut b) = start_pair(&bed, "split = 0\n")?;
    let tb = snapshot(&b, &bed, "b0")?;
    let backup0 = in_state(&tb, LeaseState::Backup).len();
    if backup0 != 10 {
        return Err(format!(
            "the secondary starts with {backup0} BACKUP addresses, want 10"
        ));
    }

    // 15 clients for the secondary, which holds 10 addresses.
    let acked = dora(&bed, 0x71, 15, "secondary")?;
    let addrs: BTreeSet<Ipv4Addr> = acked.iter().map(|x| x.addr).collect();
    let (a_log, b_log) = (a.proc.log_text(), b.proc.log_text());
    if acked.len() != 15 || addrs.len() != 15 {
        return Err(format!(
            "{} of 15 clients got a lease ({} distinct addresses): {acked:?}\n\
             secondary log:\n{b_log}\nprimary log:\n{a_log}",
            acked.len(),
            addrs.len(),
        ));
    }
    let asked = b_log.contains("asking the primary (POOLREQ)");
    if asked && !a_log.contains("POOLREQ:") {
        return Err(format!(
            "the secondary sent POOLREQ but the primary never answered it:\n{a_log}"
        ));
    }
    eprintln!(
        "balance: 15/15 clients served by the secondary (10 BACKUP addresses at start); refilled \
         via {}",
        if asked {
            "POOLREQ"
        } else {
            "the primary's balance check"
        }
    );
    b.wait_drained(Duration::from_secs(20))?;
    a.wait_drained(Duration::from_secs(20))?;
    tables_agree(&a, &b, &bed, &acked, "refill")?;
    a.stop()?;
    b.stop()?;
    Ok(())
}
