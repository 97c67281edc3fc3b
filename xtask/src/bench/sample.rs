//! CPU and link counters sampled around a measurement (/proc/stat, /proc/PID/stat,
//! `ip -s link`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use super::analysis::Point;
use crate::util;

/// Per-core jiffies from /proc/stat: (total, idle + iowait, softirq).
fn core_times() -> Vec<(u64, u64, u64)> {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total, idle, v.get(6).copied().unwrap_or(0))
        })
        .collect()
}

/// utime + stime of a process (all threads), in clock ticks.
pub(super) fn proc_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some(ut + st)
}

/// Sectors written to the block device holding `dir` (field 7 of /sys/dev/block/MAJ:MIN/stat).
fn device_sectors_written(dir: &Path) -> Option<u64> {
    let dev = fs::metadata(dir).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let text = fs::read_to_string(format!("/sys/dev/block/{maj}:{min}/stat")).ok()?;
    text.split_whitespace().nth(6)?.parse().ok()
}

/// (rx_dropped, tx_dropped) of `ifname` in namespace `ns`.
pub(super) fn link_drops(ns: &str, ifname: &str) -> Option<(u64, u64)> {
    let text = util::output(
        Command::new("ip").args(["-n", ns, "-s", "-j", "link", "show", "dev", ifname]),
    )
    .ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let st = v.get(0)?.get("stats64")?;
    Some((st["rx"]["dropped"].as_u64()?, st["tx"]["dropped"].as_u64()?))
}

pub(super) struct CpuSample {
    at: Instant,
    cores: Vec<(u64, u64, u64)>,
    server: Option<u64>,
    sectors: Option<u64>,
}

impl CpuSample {
    /// `lease_dir`: where the servers keep their lease files (its device's writes are counted).
    pub(super) fn take(server_pid: Option<u32>, lease_dir: &Path) -> Self {
        CpuSample {
            at: Instant::now(),
            cores: core_times(),
            server: server_pid.and_then(proc_ticks),
            sectors: device_sectors_written(lease_dir),
        }
    }

    /// Fills the point's CPU figures from two samples.
    pub(super) fn apply(&self, later: &CpuSample, p: &mut Point) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = later.at.duration_since(self.at).as_secs_f64();
        if let (Some(a), Some(b)) = (self.server, later.server) {
            if secs > 0.0 {
                p.server_cpu_pct = Some(100.0 * b.saturating_sub(a) as f64 / hz / secs);
                if p.achieved > 0.0 {
                    p.server_cpu_s_per_exchange =
                        Some(b.saturating_sub(a) as f64 / hz / (p.achieved * secs));
                }
            }
        }
        if let (Some(a), Some(b)) = (self.sectors, later.sectors) {
            if secs > 0.0 && p.achieved > 0.0 {
                p.disk_bytes_per_exchange =
                    Some(b.saturating_sub(a) as f64 * 512.0 / (p.achieved * secs));
            }
        }
        p.core_busy_pct.clear();
        p.core_softirq_pct.clear();
        for (a, b) in self.cores.iter().zip(&later.cores) {
            let total = b.0.saturating_sub(a.0) as f64;
            if total > 0.0 {
                let idle = b.1.saturating_sub(a.1) as f64;
                p.core_busy_pct.push(100.0 * (1.0 - idle / total));
                p.core_softirq_pct
                    .push(100.0 * b.2.saturating_sub(a.2) as f64 / total);
            }
        }
    }
}
