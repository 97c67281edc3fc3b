//! Support for the lease-durability tests (`crash_kill.rs`, `daemon_lease_file.rs`): the
//! load generator binary, an ext4 file system on a loop device whose *disk image* can be
//! copied to simulate a power cut, the `--acked-log` reader, a daemon launcher that takes any
//! lease file, and lease checks.
//!
//! Builds on `daemon_common` (bed, process guards, daemon binary) without changing it.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lease_store::{Lease, LeaseState, LeaseTable, OpenOptions, OpenReport, PoolSpec};

use crate::daemon_common::{
    output, read_text, repo_root, wait_for, write_file, xdhcpd_bin, Bed, Proc, Res, SRV_ADDR,
};

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub use crate::daemon_common::loadgen_bin;

/// Runs a root-namespace command, failing with its stderr.
pub fn sh(program: &str, args: &[&str]) -> Res<String> {
    let out = output(Command::new(program).args(args))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            out.stderr.trim()
        ));
    }
    Ok(out.stdout)
}

/// An ext4 file system in an image file, attached to a loop device and mounted. Removed on
/// Drop (unmount, detach; the image stays in the caller's temporary directory).
///
/// Power-cut model: the loop driver writes through to the image file, so the image holds
/// exactly what the file system has sent to its "disk" (written back or flushed by
/// msync/fsync); pages dirty only in the page cache of the mounted file system are not in it.
/// A copy of the image taken after the daemon is killed is therefore the disk as a power cut
/// at that moment would leave it. Mounted with `commit=600` and made with eager inode-table
/// and journal initialisation, so no periodic journal commit or lazy-init thread writes to
/// the image while it is being copied (the copy is not atomic with respect to concurrent
/// writes; with the daemon dead nothing else writes to this file system).
pub struct LoopFs {
    pub image: PathBuf,
    pub dev: String,
    pub mnt: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// Makes a fresh `size_mb` file system in `image` and mounts it on `mnt`.
    pub fn create(image: &Path, mnt: &Path, size_mb: u64) -> Res<LoopFs> {
        let f =
            fs::File::create(image).map_err(|e| format!("creating {}: {e}", image.display()))?;
        f.set_len(size_mb << 20)
            .map_err(|e| format!("sizing {}: {e}", image.display()))?;
        drop(f);
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &image.to_string_lossy(),
            ],
        )?;
        Self::attach(image, mnt)
    }

    /// Attaches an existing image (e.g. a power-cut copy) and mounts it (the journal is
    /// replayed by the mount, as after a reboot).
    pub fn attach(image: &Path, mnt: &Path) -> Res<LoopFs> {
        fs::create_dir_all(mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
        let dev = sh("losetup", &["--find", "--show", &image.to_string_lossy()])?
            .trim()
            .to_owned();
        let mut lfs = LoopFs {
            image: image.to_owned(),
            dev,
            mnt: mnt.to_owned(),
            mounted: false,
        };
        sh(
            "mount",
            &[
                "-t",
                "ext4",
                "-o",
                "commit=600,noatime",
                &lfs.dev,
                &mnt.to_string_lossy(),
            ],
        )?;
        lfs.mounted = true;
        Ok(lfs)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    /// The disk as a power cut now would leave it: a copy of the image (sparse).
    pub fn power_cut_copy(&self, to: &Path) -> Res<()> {
        sh(
            "cp",
            &[
                "--sparse=always",
                &self.image.to_string_lossy(),
                &to.to_string_lossy(),
            ],
        )?;
        Ok(())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = sh("umount", &[&self.mnt.to_string_lossy()]) {
                eprintln!("cleanup: {e}; trying a lazy unmount");
                let _ = sh("umount", &["-l", &self.mnt.to_string_lossy()]);
            }
        }
        if let Err(e) = sh("losetup", &["-d", &self.dev]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Writes a configuration for the bed: `pools` ranges in one /16 subnet, lease time `lease`.
pub fn write_config(
    bed: &Bed,
    name: &str,
    commit: &str,
    lease: u32,
    pools: &[(Ipv4Addr, Ipv4Addr)],
) -> Res<PathBuf> {
    let path = bed.path(name);
    let mut text = format!(
        r#"[server]
interface = "{iface}"
server-id = "{SRV_ADDR}"
lease-file = "{leases}"
commit = "{commit}"

[lease]
default-time = {lease}
min-time = 1
max-time = 86400

[[subnet]]
cidr = "10.77.0.0/16"
router = ["{SRV_ADDR}"]
"#,
        iface = bed.srv_if(),
        leases = bed.path("leases.db").display(),
    );
    for (first, last) in pools {
        text.push_str(&format!("\n[[subnet.pool]]\nrange = \"{first}-{last}\"\n"));
    }
    write_file(&path, &text)?;
    Ok(path)
}

/// Pool specs as the daemon derives them from [`write_config`]'s ranges (ids in order).
pub fn pool_specs(pools: &[(Ipv4Addr, Ipv4Addr)]) -> Vec<PoolSpec> {
    pools
        .iter()
        .enumerate()
        .map(|(i, &(first, last))| PoolSpec {
            id: i as u32,
            first,
            last,
        })
        .collect()
}

/// Spawns `xdhcpd run` in the server namespace on `lease_file` (log to `log`) without
/// waiting. `extra` are more arguments (e.g. `--allow-shrink`).
pub fn spawn_daemon(
    bed: &Bed,
    config: &Path,
    io: &str,
    lease_file: &Path,
    log: &Path,
    extra: &[&str],
) -> Res<Proc> {
    let bin = xdhcpd_bin()?;
    let mut cmd = bed.srv.command(&bin.to_string_lossy());
    cmd.arg("run")
        .arg("-c")
        .arg(config)
        .args(["--interface", bed.srv_if(), "--io", io])
        .arg("--lease-file")
        .arg(lease_file)
        // A hard bound in case the test itself dies without its guards running.
        .args(["--stats-interval", "0", "--run-for", "600"])
        .args(extra)
        .current_dir(repo_root())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    Proc::spawn("xdhcpd", &mut cmd, log)
}

/// Spawns the daemon and waits until it serves.
pub fn start_daemon(
    bed: &Bed,
    config: &Path,
    io: &str,
    lease_file: &Path,
    log: &Path,
    extra: &[&str],
) -> Res<Proc> {
    let mut p = spawn_daemon(bed, config, io, lease_file, log, extra)?;
    wait_for("xdhcpd to serve", Duration::from_secs(30), || {
        p.check_alive()?;
        Ok(read_text(log)?.contains("serving ").then_some(()))
    })?;
    Ok(p)
}

/// Stops a daemon with SIGTERM and requires a clean exit.
pub fn stop_daemon(mut p: Proc) -> Res<()> {
    p.signal(libc::SIGTERM)?;
    let st = p.wait_exit(Duration::from_secs(20))?;
    if !st.success() {
        return Err(format!("xdhcpd exited with {st}; log:\n{}", p.log_text()));
    }
    Ok(())
}

/// One line of the loadgen's `--acked-log` (see `tools/src/loadgen/acklog.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub unix_ms: u64,
    pub client: String,
    pub addr: Ipv4Addr,
    pub lease_secs: u32,
}

impl Ack {
    /// The least expiry (unix s) the server may have stored for this ACK. The server
    /// computes `expiry = now_s + lease` with `now_s` read before the reply is sent, so
    /// `now_s <= ack_s`; and `ack_s <= now_s + 1` because the loadgen drops replies later
    /// than its timeout (< 1 s). Hence `expiry >= ack_s + lease - 1`.
    pub fn min_expiry(&self) -> u32 {
        ((self.unix_ms / 1000) as u32).saturating_add(self.lease_secs.saturating_sub(1))
    }
}

pub fn parse_ack(line: &str) -> Res<Ack> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let bad = |what: &str| format!("ACK log line {line:?}: bad {what}");
    if f.len() != 4 {
        return Err(bad("field count"));
    }
    Ok(Ack {
        unix_ms: f[0].parse().map_err(|_| bad("time"))?,
        client: f[1].to_owned(),
        addr: f[2].parse().map_err(|_| bad("address"))?,
        lease_secs: f[3].parse().map_err(|_| bad("lease time"))?,
    })
}

/// Reads an append-only ACK log incrementally: complete lines only.
pub struct AckReader {
    pub path: PathBuf,
    offset: u64,
}

impl AckReader {
    pub fn new(path: &Path) -> Self {
        AckReader {
            path: path.to_owned(),
            offset: 0,
        }
    }

    /// The complete lines appended since the last call.
    pub fn read_new(&mut self) -> Res<Vec<Ack>> {
        let mut f = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("opening {}: {e}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| format!("seeking {}: {e}", self.path.display()))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| format!("reading {}: {e}", self.path.display()))?;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        self.offset += end as u64 + 1;
        String::from_utf8_lossy(&buf[..=end])
            .lines()
            .map(parse_ack)
            .collect()
    }
}

/// Lower-case hex of a lease's client key bytes (the ACK log's key format for clients that
/// send a client identifier).
pub fn key_hex(l: &Lease) -> String {
    l.client
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens a lease file that no daemon holds (read-only use: open it on a copy if it must stay
/// untouched) and returns its records and the open report.
pub fn open_table(path: &Path, pools: &[PoolSpec]) -> Res<(Vec<Lease>, OpenReport)> {
    let opts = OpenOptions {
        create: false,
        shards: 1,
        ..OpenOptions::default()
    };
    let (t, rep) = LeaseTable::open(path, pools, &opts)
        .map_err(|e| format!("opening lease table {}: {e}", path.display()))?;
    Ok((t.iter().map(|(_, l)| l).collect(), rep))
}

/// Why an ACKed lease is not (fully) in a table.
pub fn ack_problem(table: &HashMap<Ipv4Addr, Lease>, ack: &Ack) -> Option<String> {
    let Some(l) = table.get(&ack.addr) else {
        return Some("no record for the address".into());
    };
    if l.state != LeaseState::Active {
        return Some(format!("state {} (client {})", l.state, l.client));
    }
    if key_hex(l) != ack.client {
        return Some(format!("bound to another client {}", l.client));
    }
    if l.expiry < ack.min_expiry() {
        return Some(format!(
            "expiry {} < {} (ACK at {} ms for {} s)",
            l.expiry,
            ack.min_expiry(),
            ack.unix_ms,
            ack.lease_secs
        ));
    }
    None
}

/// Clients holding more than one unexpired Offered/Active record (a client bound twice) and
/// the addresses; empty when the table is consistent.
pub fn clients_bound_twice(table: &[Lease], now: u32) -> Vec<(String, Vec<Ipv4Addr>)> {
    let mut by_client: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    for l in table {
        if matches!(l.state, LeaseState::Active | LeaseState::Offered)
            && l.expiry > now
            && !l.client.is_none()
        {
            by_client.entry(key_hex(l)).or_default().push(l.addr);
        }
    }
    by_client.into_iter().filter(|(_, v)| v.len() > 1).collect()
}

/// A small deterministic RNG (splitmix64) so a failing run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A tmpfs of a fixed size mounted on a folder of the bed (for a loop image whose writes can
/// be made to fail: [`Tmpfs::lose_blocks_of`]); unmounted on drop.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size_mb: u64) -> Res<Tmpfs> {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m"),
                "tmpfs",
                &dir.to_string_lossy(),
            ],
        )?;
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }

    /// Writes zeroes into `name` until the tmpfs is full (dd ends with ENOSPC); its size.
    pub fn fill(&self, name: &str) -> Res<u64> {
        let path = self.dir.join(name);
        let _ = output(
            Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", path.display()))
                .arg("bs=1M"),
        )?;
        let len = fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        Ok(len)
    }

    /// Takes the blocks of `files` (on the file system in `image`, which lives on this tmpfs)
    /// out of the image and fills the tmpfs: the "device" can no longer store them. The daemon
    /// allocates and zero-writes every block of its files at open, so without the punch every
    /// later write would land on memory the tmpfs already has.
    pub fn lose_blocks_of(&self, image: &Path, files: &[PathBuf]) -> Res<u64> {
        let mut filled = self.fill("filler1")?;
        let mut extents = 0;
        for file in files {
            let map = sh("filefrag", &["-v", "-b4096", &file.to_string_lossy()])?;
            for line in map.lines() {
                // " 0:        0..    2047:      8192..     10239:   2048: ..."
                let f: Vec<&str> = line.split(':').map(str::trim).collect();
                if f.len() < 4 || f[0].parse::<u32>().is_err() {
                    continue;
                }
                let Some((a, b)) = f[2].split_once("..") else {
                    continue;
                };
                let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) else {
                    continue;
                };
                sh(
                    "fallocate",
                    &[
                        "-p",
                        "-o",
                        &(a * 4096).to_string(),
                        "-l",
                        &((b - a + 1) * 4096).to_string(),
                        &image.to_string_lossy(),
                    ],
                )?;
                extents += 1;
            }
        }
        if extents == 0 {
            return Err(format!("filefrag found no extents in {files:?}"));
        }
        // Punching gave memory back: take it again.
        filled += self.fill("filler2")?;
        Ok(filled)
    }

    pub fn unfill(&self) -> Res<()> {
        for name in ["filler1", "filler2"] {
            let path = self.dir.join(name);
            fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A loop device detached just before lets go of its image asynchronously.
        for _ in 0..20 {
            if sh("umount", &[&self.dir.to_string_lossy()]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = sh("umount", &[&self.dir.to_string_lossy()]) {
            eprintln!("cleanup: {e}; trying a lazy unmount");
            let _ = sh("umount", &["-l", &self.dir.to_string_lossy()]);
        }
    }
}

/// Starts the loadgen in the client namespace: DORA + renew units for `clients` clients at
/// `rate` a second until stopped, no retries (a lost answer is a lost exchange), every ACK
/// in the bed's `acked.log` (the ground truth of the durability tests), the report in
/// `loadgen.json`. Returns the process and the ACK log's path.
pub fn spawn_acked_load(bed: &Bed, clients: &str, rate: &str) -> Res<(Proc, PathBuf)> {
    let loadgen = loadgen_bin()?;
    let acked = bed.path("acked.log");
    let json = bed.path("loadgen.json");
    let (acked_s, json_s) = (acked.to_string_lossy(), json.to_string_lossy());
    let lg = bed.spawn_client(
        "xdhcp-loadgen",
        &loadgen.to_string_lossy(),
        &[
            "-i",
            bed.cli_if(),
            "--io",
            "packet",
            "--scenario",
            "dora-renew",
            "--clients",
            clients,
            "--rate",
            rate,
            "--duration",
            "3600s",
            "--timeout-ms",
            "300",
            "--retries",
            "0",
            "--quiet",
            "--acked-log",
            &acked_s,
            "--json",
            &json_s,
        ],
        &bed.path("loadgen.log"),
    )?;
    Ok((lg, acked))
}
