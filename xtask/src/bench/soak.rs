//! `cargo xtask bench --soak MINUTES`: xdhcpd (XDP, commit=ack) under DORA + renew load at half
//! its maximum rate for MINUTES, with leases short enough that most expire and their addresses
//! are reused during the run. The daemon's resident memory and open file descriptors are
//! sampled every 10 s; a leak shows as growth after the warm-up. Prints a table and a verdict,
//! and writes `soak.json` into the run's results folder.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::analysis::{fmt_rate, Point};
use super::loadgen::Load;
use super::process::nap;
use super::systems::System;
use super::{Ctx, POOL_SIZE};

/// Samples are this far apart.
const EVERY: Duration = Duration::from_secs(10);
/// Samples before this much time are the warm-up (tables, pools and the event queues fill).
const WARM_UP: Duration = Duration::from_secs(60);
/// Most resident memory may grow from the first minute after the warm-up to the last minute.
const RSS_GROWTH_MAX: f64 = 0.05;

/// One sample of the server process.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    fds: u64,
}

fn sample(pid: u32, t0: Instant) -> Option<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        at_s: t0.elapsed().as_secs_f64(),
        rss_kib,
        fds,
    })
}

/// Lease time and clients for `rate` DORA+renew units a second: at most half of the pool is
/// leased at any time (rate x lease), and a client comes back after three lease times (so its
/// lease has expired and the sweeper has had to reclaim it).
pub(super) fn plan(rate: u64) -> (u32, u32) {
    let lease = ((POOL_SIZE / 2) as f64 / rate.max(1) as f64).clamp(2.0, 60.0) as u32;
    let clients = (rate * u64::from(lease) * 3).clamp(1_000, 4_000_000) as u32;
    (lease, clients)
}

fn mean(v: &[Sample], f: impl Fn(&Sample) -> u64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().map(|s| f(s) as f64).sum::<f64>() / v.len() as f64
}

impl Ctx {
    pub(super) fn soak(&mut self, minutes: f64, rate: Option<u64>) -> Result<()> {
        if !(1.0..=24.0 * 60.0).contains(&minutes) {
            bail!("--soak {minutes}: between 1 and 1440 minutes");
        }
        // The maximum: a closed-loop DORA run against the standard configuration.
        let rate = match rate {
            Some(r) => r,
            None => {
                let server = self.start_server(System::XdpAck)?;
                let p: Point = self.point(
                    System::XdpAck,
                    &Load::closed("dora", 50_000, 256, 10.0),
                    Some(server.pid()),
                    None,
                )?;
                drop(server);
                println!(
                    "== soak: maximum DORA/s closed loop (10 s): {}",
                    fmt_rate(p.achieved)
                );
                ((p.achieved / 2.0) as u64).max(100)
            }
        };
        let (lease, clients) = plan(rate);
        self.soak_lease = Some(lease);
        println!(
            "== soak: {minutes} min of DORA + renew at {rate}/s, {clients} clients, lease {lease} s \
             (pool {POOL_SIZE}: every client's lease expires before it comes back)"
        );
        let server = self.start_server(System::XdpAck)?;
        let pid = server.pid();
        let t0 = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (samples, stop) = (samples.clone(), stop.clone());
            thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        next += EVERY;
                        if let Some(s) = sample(pid, t0) {
                            let mut v = samples.lock().unwrap_or_else(|e| e.into_inner());
                            eprintln!(
                                "   {:>6.0} s  RSS {:>8.1} MiB  fds {:>4}",
                                s.at_s,
                                s.rss_kib as f64 / 1024.0,
                                s.fds
                            );
                            v.push(s);
                        }
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let load = Load {
            scenario: "dora-renew",
            clients,
            rate: Some(rate),
            concurrency: None,
            secs: Some(minutes * 60.0),
            count: None,
            timeout_ms: 1000,
            retries: 0,
        };
        let run = self.loadgen(System::XdpAck, &load, Some(pid), None);
        nap(Duration::from_millis(300))?;
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        let alive = server_alive(pid);
        drop(server);
        self.soak_lease = None;
        let (report, _) = run?;
        let dora = Point::from_loadgen(&report, "dora")?;
        let renew = Point::from_loadgen(&report, "renew").ok();
        let v = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let after: Vec<Sample> = v
            .iter()
            .copied()
            .filter(|s| s.at_s >= WARM_UP.as_secs_f64())
            .collect();
        let per_min = (60.0 / EVERY.as_secs_f64()) as usize;
        if after.len() < 2 * per_min {
            bail!(
                "soak: {} samples after the warm-up; too few to judge (run longer)",
                after.len()
            );
        }
        let first = &after[..per_min];
        let last = &after[after.len() - per_min..];
        let (rss0, rss1) = (mean(first, |s| s.rss_kib), mean(last, |s| s.rss_kib));
        let growth = rss1 / rss0 - 1.0;
        let fd_min = after.iter().map(|s| s.fds).min().unwrap_or(0);
        let fd_max = after.iter().map(|s| s.fds).max().unwrap_or(0);
        let rss_max = v.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let flat = growth <= RSS_GROWTH_MAX && fd_max == fd_min;
        println!(
            "== soak result: DORA {} acked/s ({:.2}% lost), renew {} acked/s; RSS {:.1} -> {:.1} \
             MiB ({:+.1}%, max {:.1}), fds {fd_min}..{fd_max}; server {}: {}",
            fmt_rate(dora.achieved),
            dora.loss_pct,
            renew.as_ref().map_or("-".into(), |r| fmt_rate(r.achieved)),
            rss0 / 1024.0,
            rss1 / 1024.0,
            growth * 100.0,
            rss_max as f64 / 1024.0,
            if alive { "alive" } else { "DEAD" },
            if flat && alive { "FLAT" } else { "NOT FLAT" },
        );
        let out = self.out.join("soak.json");
        let j = json!({
            "minutes": minutes, "rate": rate, "clients": clients, "lease_s": lease,
            "dora_acked_per_s": dora.achieved, "dora_loss_pct": dora.loss_pct,
            "renew_acked_per_s": renew.map(|r| r.achieved),
            "rss_first_min_kib": rss0, "rss_last_min_kib": rss1, "rss_growth": growth,
            "fds_min": fd_min, "fds_max": fd_max, "server_alive": alive,
            "samples": v.iter().map(|s| json!([s.at_s, s.rss_kib, s.fds])).collect::<Vec<_>>(),
        });
        fs::write(&out, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("== soak: samples in {}", out.display());
        if !(flat && alive) {
            bail!("soak: the server's memory or descriptors were not flat (or it died)");
        }
        Ok(())
    }
}

fn server_alive(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_plan_keeps_half_the_pool_leased_and_clients_past_their_lease() {
        for rate in [100, 2_000, 20_000, 200_000] {
            let (lease, clients) = plan(rate);
            assert!((2..=60).contains(&lease), "{rate}: lease {lease}");
            if lease > 2 {
                assert!(rate * u64::from(lease) <= POOL_SIZE / 2 + rate, "{rate}");
            }
            assert_eq!(u64::from(clients), rate * u64::from(lease) * 3, "{rate}");
        }
    }
}
