//! Reconnect after a partition does not flood the log with one line per refused address
//! (issue 15 item 6): an xdhcpd pair in network namespaces, clients bound in NORMAL, the
//! failover connection cut at the hub (both go COMMUNICATIONS-INTERRUPTED), then the clients
//! release at the primary (the secondary deaf to them) and bind again at the secondary (the
//! primary deaf). When the connection comes back the primary re-sends the RELEASED records,
//! which the secondary refuses as outdated (its ACTIVE records are newer).
//!
//! Asserted: the secondary refused some updates as outdated; both sides count the same
//! number (`refused_outdated` on the secondary, `partner_refused_outdated` on the primary,
//! and in `/metrics`); each side logged them in at most a few summary lines, never one line
//! per address.
//!
//! Needs root, `ip`, `nft` and `timeout` (README "Tests").

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

#[path = "daemon_common/mod.rs"]
mod daemon_common;

#[path = "failover_common/mod.rs"]
mod failover_common;

use std::time::Duration;

use daemon_common::{loadgen_bin, output, write_file, Res};
use failover_common::*;
use require::{require, Capability};

const CLIENTS: u32 = 40;
const SALT: u8 = 71;

#[test]
fn failover_outdated_refusals_summarised_after_partition() {
    let needs = [
        Capability::Root,
        Capability::Program("timeout"),
        Capability::Program("ip"),
        Capability::Program("nft"),
    ];
    if !require(&needs) {
        return;
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}

/// The hub's bridge filter: `cut` drops the failover connection (TCP 647), `deaf` names the
/// hub port whose server gets no DHCP (UDP 67) from the clients.
fn hub_filter(bed: &PairBed, cut: bool, deaf: Option<&str>) -> Res<()> {
    let _ = bed
        .hub
        .exec("nft", &["delete", "table", "bridge", "outdated"]);
    let mut rules = String::new();
    if cut {
        rules.push_str("    tcp dport 647 drop\n    tcp sport 647 drop\n");
    }
    if let Some(port) = deaf {
        rules.push_str(&format!("    oifname \"{port}\" udp dport 67 drop\n"));
    }
    if rules.is_empty() {
        return Ok(());
    }
    let file = bed.path("hub.nft");
    write_file(
        &file,
        &format!(
            "table bridge outdated {{\n  chain filt {{\n    type filter hook forward priority \
             -200;\n{rules}  }}\n}}\n"
        ),
    )?;
    bed.hub
        .exec("nft", &["-f", &file.to_string_lossy()])
        .map_err(|e| format!("nft in the hub: {e}"))?;
    Ok(())
}

/// DORA then RELEASE for the clients of `SALT`.
fn dora_release(bed: &PairBed) -> Res<()> {
    let lg = loadgen_bin()?;
    let n = CLIENTS.to_string();
    let out = output(bed.c.command("timeout").args([
        "60",
        &lg.to_string_lossy(),
        "-i",
        &bed.lc.a,
        "--io",
        "packet",
        "--scenario",
        "release",
        "--clients",
        &n,
        "--count",
        &n,
        "--timeout-ms",
        "1500",
        "--retries",
        "3",
        "--quiet",
        "--mac-salt",
        &SALT.to_string(),
    ]))?;
    if !out.status.success() {
        return Err(format!("loadgen release: {} {}", out.stdout, out.stderr));
    }
    Ok(())
}

fn lines_with(log: &str, what: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

fn metric(xd: &Xd, name_and_labels: &str) -> Res<Option<u64>> {
    let out = output(
        std::process::Command::new("timeout")
            .arg("10")
            .arg(daemon_common::xdhcpd_bin()?)
            .args(["ctl", "--socket"])
            .arg(&xd.socket)
            .arg("metrics"),
    )?;
    Ok(out
        .stdout
        .lines()
        .find(|l| l.starts_with("xdhcpd_failover_updates_outdated") && l.contains(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64))
}

fn scenario() -> Res<()> {
    let bed = PairBed::with_prefix("fo")?;
    let t = Timers {
        mclt: 30,
        split: None,
    };
    let s = xd_sides(&bed, &t)?;
    let mut a = Xd::start(&bed.a, &s.a_cfg, &s.a_db, &s.a_sock, &bed.path("a.log"))?;
    let mut b = Xd::start(&bed.b, &s.b_cfg, &s.b_db, &s.b_sock, &bed.path("b.log"))?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(40))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(10))?;

    // 1. Clients bound in NORMAL, known to both.
    let first = dora(&bed, SALT, CLIENTS, "1")?;
    assert_eq!(first.len(), CLIENTS as usize, "ACKs in NORMAL: {first:?}");
    a.wait_drained(Duration::from_secs(15))?;
    b.wait_drained(Duration::from_secs(15))?;

    // 2. Partition: both COMMUNICATIONS-INTERRUPTED.
    hub_filter(&bed, true, None)?;
    for (name, xd) in [("primary", &a), ("secondary", &b)] {
        daemon_common::wait_for(
            &format!("{name} COMMUNICATIONS-INTERRUPTED"),
            Duration::from_secs(40),
            || Ok((xd.status()?["state"] == "COMMUNICATIONS-INTERRUPTED").then_some(())),
        )?;
    }

    // 3. The clients bind and release at the primary (secondary deaf), then bind again at
    //    the secondary (primary deaf): the secondary's ACTIVE records are newer than the
    //    primary's RELEASED ones.
    hub_filter(&bed, true, Some(&bed.lb.b))?;
    dora_release(&bed)?;
    std::thread::sleep(Duration::from_secs(2));
    hub_filter(&bed, true, Some(&bed.la.b))?;
    let again = dora(&bed, SALT, CLIENTS, "2")?;
    assert!(
        again.len() >= CLIENTS as usize / 2,
        "ACKs from the secondary during the partition: {again:?}"
    );

    // 4. The connection comes back: NORMAL again, the refusals counted and summarised.
    hub_filter(&bed, false, None)?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(60))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(20))?;
    a.wait_drained(Duration::from_secs(20))?;
    b.wait_drained(Duration::from_secs(20))?;
    // The summaries are written once the burst has been quiet for 2 s.
    std::thread::sleep(Duration::from_secs(4));
    let (sa, sb) = (a.status()?, b.status()?);
    let refused = sb["refused_outdated"].as_u64().unwrap_or(0);
    let told = sa["partner_refused_outdated"].as_u64().unwrap_or(0);
    println!(
        "outdated after the partition: refused by the secondary {refused}, counted by the \
         primary {told} (clients {CLIENTS})"
    );
    assert!(
        refused > 0,
        "the secondary refused nothing as outdated: {sb}\nprimary {sa}"
    );
    // At most two per client: the primary's ACK of the partition's DORA and its RELEASE.
    assert!(refused <= 2 * u64::from(CLIENTS), "{sb}");
    assert_eq!(refused, told, "secondary {sb}\nprimary {sa}");
    assert_eq!(metric(&b, "refused_by=\"us\"")?, Some(refused));
    assert_eq!(metric(&a, "refused_by=\"partner\"")?, Some(told));

    let a_log = a.stop()?;
    let b_log = b.stop()?;
    // Summaries, not one line per address.
    let ours = lines_with(&b_log, "refused the partner's");
    let theirs = lines_with(&a_log, "the partner refused");
    for l in ours.iter().chain(&theirs) {
        println!("  {l}");
    }
    assert!(
        !ours.is_empty() && ours.len() <= 3,
        "{} refusal lines on the secondary for {refused} refusals:\n{}",
        ours.len(),
        ours.join("\n")
    );
    assert!(
        !theirs.is_empty() && theirs.len() <= 3,
        "{} refusal lines on the primary for {told} refusals:\n{}",
        theirs.len(),
        theirs.join("\n")
    );
    // The summed counts of the lines are the counters.
    let sum = |v: &[String]| -> u64 {
        v.iter()
            .filter_map(|l| {
                let i = l.find(" outdated binding information")?;
                l[..i]
                    .rsplit(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    assert_eq!(sum(&ours), refused, "{}", ours.join("\n"));
    assert_eq!(sum(&theirs), told, "{}", theirs.join("\n"));
    Ok(())
}
