//! The machine and the time of a run, as the report states them: UTC stamp, CPU and memory,
//! load average, and the disk's fdatasync latency.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

/// ("2026-11-22 14:03 UTC", "20261122-140312").
pub(super) fn utc_stamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let (h, mi, se) = (s / 3600, s % 3600 / 60, s % 60);
    (
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC"),
        format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{se:02}"),
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Median and 90th percentile of a 4 KiB write + fdatasync in `dir`, ms:
/// the floor of every durable commit (xdhcpd commit=ack, ISC dhcpd) there.
pub(super) fn sync_latency_ms(dir: &Path) -> Result<(f64, f64)> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("fsync-probe");
    let mut f = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&vec![0u8; 1 << 20])?;
    f.sync_all()?;
    let mut lat = Vec::new();
    for i in 0..40u64 {
        f.seek(SeekFrom::Start((i % 256) * 4096))?;
        f.write_all(&[i as u8; 4096])?;
        let t = Instant::now();
        f.sync_data()
            .with_context(|| format!("fdatasync of {}", path.display()))?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(f);
    let _ = fs::remove_file(&path);
    lat.sort_by(f64::total_cmp);
    Ok((lat[lat.len() / 2], lat[lat.len() * 9 / 10]))
}

pub(super) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub(super) fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} x {cpu}, {mem_gib:.0} GiB, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
