//! Storage faults at the daemon level (issue 13, "must show"):
//!
//! - **Writes fail under DORA load, then recover.** The lease file and its write-ahead log live
//!   on ext4 on a loop device whose image is a file on a size-limited tmpfs. Filling the tmpfs
//!   makes every write-back of a block not yet in the image fail (ENOSPC at the loop device,
//!   EIO at fsync; Linux reports it once and may then mark the pages clean: the lie the sticky
//!   rule guards against). While writes fail the daemon must withhold every ACK (`commit =
//!   "ack"`), say so in `xdhcpd ctl status` (`storage.failed`) and in `/metrics`, and stay up;
//!   once the filler is deleted it must find out by itself, rewrite what was lost, and serve
//!   ACKs again. Then the daemon is killed and the image copied as a power cut leaves it: every
//!   lease the loadgen's `--acked-log` recorded must be in that copy (lease file plus log).
//! - **In a failover pair** the side whose storage failed leaves the partner (closes the
//!   connection and refuses new ones), so the partner serves every client alone
//!   (COMMUNICATIONS-INTERRUPTED); once the storage works again the pair is NORMAL again.
//! - **A full file system at start.** A sparse lease file copied onto a full file system: the
//!   daemon refuses to start and says why, and never dies of SIGBUS.
//!
//! Needs root (namespaces, XDP, tmpfs, loop devices, mount).

#[path = "common/netns.rs"]
mod netns;

#[path = "common/require.rs"]
mod require;

mod daemon_common;
mod failover_common;
mod lease_common;

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daemon_common::{output, read_text, wait_for, xdhcpd_bin, Bed, Res};
use lease_common::*;
use lease_store::Lease;
use require::{require, Capability};

/// Both tests mount and load the machine: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const POOL: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 77, 1, 0), Ipv4Addr::new(10, 77, 8, 255));
const LEASE_SECS: u32 = 3600;

fn needs() -> bool {
    let mut n = vec![Capability::Root];
    n.extend(
        [
            "ip",
            "timeout",
            "losetup",
            "mkfs.ext4",
            "mount",
            "umount",
            "cp",
            "dd",
            "filefrag",
            "fallocate",
        ]
        .map(Capability::Program),
    );
    require(&n)
}

/// `xdhcpd ctl status` through the daemon's control socket, as JSON.
fn status(sock: &Path) -> Res<serde_json::Value> {
    ctl_json(sock, "status")
}

/// `xdhcpd ctl <what>` (an answer printed as JSON).
fn ctl_json(sock: &Path, what: &str) -> Res<serde_json::Value> {
    let bin = xdhcpd_bin()?;
    let out = output(
        Command::new(&bin)
            .arg("ctl")
            .arg("--socket")
            .arg(sock)
            .arg(what),
    )?;
    if !out.status.success() {
        return Err(format!("ctl {what}: {}: {}", out.status, out.stderr.trim()));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("ctl {what} answer: {e}: {}", out.stdout))
}

/// The latest ACK of each client.
#[derive(Default)]
struct Latest(HashMap<String, Ack>);

impl Latest {
    fn absorb(&mut self, acks: &[Ack]) {
        for a in acks {
            match self.0.get(&a.client) {
                Some(old) if old.unix_ms > a.unix_ms => {}
                _ => {
                    self.0.insert(a.client.clone(), a.clone());
                }
            }
        }
    }
}

fn open_copy(src: &Path, dst: &Path) -> Res<Vec<Lease>> {
    fs::copy(src, dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
    let (log, dst_log) = (lease_store::wal_path(src), lease_store::wal_path(dst));
    if log.exists() {
        fs::copy(&log, &dst_log).map_err(|e| format!("copying {}: {e}", log.display()))?;
    }
    Ok(open_table(dst, &pool_specs(&[POOL]))?.0)
}

#[test]
fn storage_fault_under_dora_load_withholds_acks_recovers_and_loses_no_acked_lease() -> Res<()> {
    if !needs() {
        return Ok(());
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    loadgen_bin()?; // built before the daemon starts
    let bed = Bed::new(None)?;
    let config = write_config(&bed, "xdhcpd.toml", "ack", LEASE_SECS, &[POOL])?;
    // The image starts sparse: ext4's metadata takes a few MiB of the tmpfs, the rest is what
    // the filler takes away.
    let tmpfs = Tmpfs::mount(&bed.path("tmpfs"), 96)?;
    let disk = LoopFs::create(&tmpfs.dir.join("disk.img"), &bed.path("mnt"), 256)?;
    let sock = bed.path("ctl.sock");
    let sock_s = sock.to_string_lossy().into_owned();
    let lease_file = disk.path("leases.db");
    let log = bed.path("xdhcpd.log");
    let mut daemon = start_daemon(
        &bed,
        &config,
        "xdp",
        &lease_file,
        &log,
        &["--control-socket", &sock_s],
    )?;
    let st = status(&sock)?;
    if st["storage"]["failed"] != false {
        return Err(format!("storage failed before any fault: {st}"));
    }

    let (mut lg, acked) = spawn_acked_load(&bed, "1500", "300")?;
    let mut reader = AckReader::new(&acked);
    let mut latest = Latest::default();
    let mut before = 0;
    wait_for("ACKs before the fault", Duration::from_secs(20), || {
        lg.check_alive()?;
        let a = reader.read_new()?;
        latest.absorb(&a);
        before += a.len();
        Ok((before >= 200).then_some(()))
    })?;

    // The fault: the device can store no new block.
    let filled = tmpfs.lose_blocks_of(
        &disk.image,
        &[lease_file.clone(), lease_store::wal_path(&lease_file)],
    )?;
    let fault_ms = unix_ms();
    let seen = wait_for(
        "storage.failed in ctl status",
        Duration::from_secs(20),
        || {
            daemon.check_alive()?;
            let st = status(&sock)?;
            Ok((st["storage"]["failed"] == true).then_some(st))
        },
    )?;
    let failed_ms = unix_ms();
    eprintln!(
        "storage fault: filler {} MiB; ctl status showed it after {} ms: {}",
        filled >> 20,
        failed_ms - fault_ms,
        seen["storage"]
    );
    if seen["storage"]["last_error"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        return Err(format!("status names no error: {seen}"));
    }
    // While it stays failed, no ACK leaves: 3 s with ACKs logged at most 300 ms (one
    // loadgen timeout) after the status said so are a lie.
    std::thread::sleep(Duration::from_secs(3));
    let during = reader.read_new()?;
    latest.absorb(&during);
    let late: Vec<&Ack> = during
        .iter()
        .filter(|a| a.unix_ms > failed_ms + 300)
        .collect();
    if !late.is_empty() {
        return Err(format!(
            "{} ACK(s) reached clients while the storage had failed, e.g. {:?}",
            late.len(),
            late[0]
        ));
    }
    let st = status(&sock)?;
    if st["storage"]["failed"] != true {
        return Err(format!("storage reported fine while still full: {st}"));
    }
    // No OFFER either: a client offered an address here could not be ACKed.
    let dropped = ctl_json(&sock, "stats")?["engine"]["storage_failed_dropped"].clone();
    if dropped.as_u64().unwrap_or(0) == 0 {
        return Err(format!(
            "no DISCOVER counted as dropped while the storage failed: {dropped}"
        ));
    }
    daemon.check_alive()?;

    // Recovery: space again; the daemon finds out by itself and serves ACKs again.
    tmpfs.unfill()?;
    let t0 = Instant::now();
    wait_for(
        "storage.failed false again",
        Duration::from_secs(30),
        || {
            daemon.check_alive()?;
            let st = status(&sock)?;
            Ok((st["storage"]["failed"] == false).then_some(()))
        },
    )?;
    let recovered_ms = t0.elapsed().as_millis();
    let mut after = 0;
    wait_for("ACKs after the recovery", Duration::from_secs(20), || {
        lg.check_alive()?;
        let a = reader.read_new()?;
        latest.absorb(&a);
        after += a.len();
        Ok((after >= 200).then_some(()))
    })?;
    eprintln!(
        "storage recovered {recovered_ms} ms after the filler was deleted; {before} ACKs \
         before the fault, {} during it (none after the status), {after} after",
        during.len()
    );

    // A power cut: kill the daemon, copy the image as the disk holds it.
    daemon.signal(libc::SIGKILL)?;
    daemon.wait_exit(Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(200));
    latest.absorb(&reader.read_new()?);
    let _ = lg.signal(libc::SIGINT);
    let img = bed.path("cut.img");
    disk.power_cut_copy(&img)?;
    let cut = LoopFs::attach(&img, &bed.path("mnt-cut"))?;
    let table = open_copy(&cut.path("leases.db"), &bed.path("view-cut.db"))?;
    let by_addr: HashMap<Ipv4Addr, Lease> = table.iter().map(|l| (l.addr, *l)).collect();
    let lost: Vec<String> = latest
        .0
        .values()
        .filter_map(|a| ack_problem(&by_addr, a).map(|why| format!("{a:?}: {why}")))
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "{} of {} ACKed leases missing after the fault and a power cut, e.g.:\n{}",
            lost.len(),
            latest.0.len(),
            lost[..lost.len().min(8)].join("\n")
        ));
    }
    let twice = clients_bound_twice(&table, lease_store::unix_now());
    if !twice.is_empty() {
        return Err(format!(
            "clients bound twice after the power cut: {twice:?}"
        ));
    }
    let text = read_text(&log)?;
    if !text.contains("flush failed") {
        return Err(format!("the daemon log does not name the failure:\n{text}"));
    }
    eprintln!(
        "power cut after the fault: all {} ACKed leases in the image",
        latest.0.len()
    );
    Ok(())
}

#[test]
fn storage_full_filesystem_at_start_is_refused_with_the_reason_never_sigbus() -> Res<()> {
    if !needs() {
        return Ok(());
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::new(None)?;
    // A lease file made by a daemon on ordinary disk, with leases in it.
    let pools = [(Ipv4Addr::new(10, 77, 1, 0), Ipv4Addr::new(10, 77, 63, 255))];
    let config = write_config(&bed, "xdhcpd.toml", "ack", LEASE_SECS, &pools)?;
    let made = bed.path("made.db");
    let d = start_daemon(&bed, &config, "xdp", &made, &bed.path("made.log"), &[])?;
    stop_daemon(d)?;
    let len = fs::metadata(&made)
        .map_err(|e| format!("{}: {e}", made.display()))?
        .len();
    // A file system too small for the file's blocks once it is full.
    let disk = LoopFs::create(&bed.path("small.img"), &bed.path("small"), 16)?;
    let target = disk.path("leases.db");
    sh(
        "cp",
        &[
            "--sparse=always",
            &made.to_string_lossy(),
            &target.to_string_lossy(),
        ],
    )?;
    let _ = output(
        Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", disk.path("filler").display()))
            .arg("bs=1M"),
    )?;
    let log = bed.path("full.log");
    let mut p = spawn_daemon(&bed, &config, "xdp", &target, &log, &[])?;
    let st = p.wait_exit(Duration::from_secs(30))?;
    let text = read_text(&log)?;
    if let Some(sig) = st.signal() {
        return Err(format!(
            "the daemon died of signal {sig} on a full file system (lease file {len} bytes):\n{text}"
        ));
    }
    if st.success() {
        return Err(format!(
            "the daemon exited 0 on a full file system:\n{text}"
        ));
    }
    let lower = text.to_lowercase();
    if !(lower.contains("no space") && lower.contains("leases.db")) {
        return Err(format!(
            "the refusal does not say \"no space\" and name the lease file ({st}):\n{text}"
        ));
    }
    eprintln!("full file system: daemon refused to start ({st}); it said:\n{text}");
    Ok(())
}

#[test]
fn storage_fault_in_a_failover_pair_hands_the_clients_to_the_partner() -> Res<()> {
    use failover_common::*;
    if !needs() {
        return Ok(());
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = PairBed::new()?;
    let tmpfs = Tmpfs::mount(&bed.path("tmpfs"), 96)?;
    let disk = LoopFs::create(&tmpfs.dir.join("disk.img"), &bed.path("mnt"), 256)?;
    let a_db = disk.path("a.db");
    let t = Timers {
        mclt: 30,
        split: None,
    };
    // A (primary) keeps its lease file on the disk whose writes will fail.
    let sides = xd_sides_with(&bed, &t, |primary, c| {
        if primary {
            c.replace(
                &format!("lease-file = \"{}\"", bed.path("a.db").display()),
                &format!("lease-file = \"{}\"", a_db.display()),
            )
        } else {
            c
        }
    })?;
    let mut a = Xd::start(
        &bed.a,
        &sides.a_cfg,
        &a_db,
        &sides.a_sock,
        &bed.path("a.log"),
    )?;
    let mut b = Xd::start(
        &bed.b,
        &sides.b_cfg,
        &sides.b_db,
        &sides.b_sock,
        &bed.path("b.log"),
    )?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    let first = dora(&bed, 1, 20, "before")?;
    if first.len() != 20 {
        return Err(format!(
            "{} of 20 clients bound before the fault",
            first.len()
        ));
    }

    tmpfs.lose_blocks_of(&disk.image, &[a_db.clone(), lease_store::wal_path(&a_db)])?;
    // A finds out at its next commit: the first clients after the fault are offered by A
    // and wait for an ACK that A withholds (a real client starts over with a DISCOVER).
    let trigger = dora(&bed, 4, 5, "trigger")?;
    wait_for(
        "A's status to show failed storage",
        Duration::from_secs(20),
        || {
            a.proc.check_alive()?;
            Ok((status(&sides.a_sock)?["storage"]["failed"] == true).then_some(()))
        },
    )?;
    eprintln!(
        "after the fault: {} of 5 clients that A offered were ACKed",
        trigger.len()
    );
    wait_for("B to see A leave", Duration::from_secs(20), || {
        b.proc.check_alive()?;
        let st = b.status()?;
        Ok((st["connected"] == false && st["state"] == "COMMUNICATIONS-INTERRUPTED").then_some(()))
    })?;
    // Clients arriving now: A drops their DISCOVERs, B serves them all.
    let during = dora(&bed, 2, 20, "during")?;
    if during.len() != 20 {
        return Err(format!(
            "only {} of 20 clients bound while A's storage failed (B should serve them \
             all)\nB status: {:?}\nB stats: {:?}\nB pools: {:?}\nB log:\n{}",
            during.len(),
            b.status(),
            ctl_json(&sides.b_sock, "stats").map(|v| v["engine"].clone()),
            ctl_json(&sides.b_sock, "pools"),
            read_text(&bed.path("b.log")).unwrap_or_default()
        ));
    }
    let a_log = read_text(&bed.path("a.log"))?;
    if !a_log.contains("storage failed: leaving the partner") {
        return Err(format!("A did not say it left the partner:\n{a_log}"));
    }

    // Writes succeed again: A recovers and the pair goes back to NORMAL.
    tmpfs.unfill()?;
    a.wait_state("NORMAL", "NORMAL", Duration::from_secs(60))?;
    b.wait_state("NORMAL", "NORMAL", Duration::from_secs(30))?;
    let after = dora(&bed, 3, 20, "after")?;
    if after.len() != 20 {
        return Err(format!(
            "{} of 20 clients bound after the recovery",
            after.len()
        ));
    }
    a.stop()?;
    b.stop()?;
    Ok(())
}
