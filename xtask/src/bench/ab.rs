//! `cargo xtask bench --ab-rounds N --systems A,B,...`: the cost of a feature as paired
//! comparisons. A single sweep per system moves by a factor of √2 between neighbouring
//! points and this 2-core VM drifts between minutes, so one run's "max sustained" of two
//! systems can differ by ±30% with no code difference at all. Here every round measures each
//! system once, in a rotated order, at the same two loads:
//!
//! * a closed loop of DORAs (256 outstanding): throughput with the server saturated;
//! * an open loop at one fixed rate (`--ab-rate`, below every system's maximum): server CPU
//!   seconds per DORA at equal work, which the loadgen's own limit does not hide.
//!
//! The report gives each system's median and, per round, its ratio to the first system
//! measured in the same round (paired), with the median and spread of those ratios.

use anyhow::{bail, Result};

use super::analysis::fmt_rate;
use super::loadgen::Load;
use super::process::check_interrupt;
use super::sample::proc_ticks;
use super::systems::System;
use super::Ctx;

/// One system in one round.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct AbSample {
    /// Closed loop DORA/s.
    pub closed: f64,
    /// Server CPU µs per DORA in the open-loop point.
    pub cpu_us: Option<f64>,
    /// ACKed share of the open-loop point (so a point the system could not carry shows).
    pub open_loss_pct: f64,
    /// CPU µs per ACKed DORA of the system's backend process (the NATS server of
    /// `xdhcpd-xdp-nats`) in the open-loop point.
    pub backend_cpu_us: Option<f64>,
    /// Block write requests and cache flushes per ACKed exchange of the open-loop point
    /// (the machine's disks, `/sys/block/*/stat`: anything else writing meanwhile counts too).
    pub blk_per_exchange: Option<(f64, f64)>,
}

/// Write requests and flush requests completed so far, summed over the machine's block
/// devices (not loop, ram or zram); None when `/sys/block` cannot be read.
pub(super) fn block_writes_flushes() -> Option<(u64, u64)> {
    let mut w = 0;
    let mut f = 0;
    for e in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram") {
            continue;
        }
        let Ok(t) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let v: Vec<u64> = t
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // Field 5: writes completed; field 16: flush requests completed (Linux 5.5+).
        w += v.get(4).copied().unwrap_or(0);
        f += v.get(15).copied().unwrap_or(0);
    }
    Some((w, f))
}

pub(super) fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Round `r`'s order: the list rotated by `r`, so no system is always first or last.
pub(super) fn round_order(systems: &[System], r: usize) -> Vec<System> {
    let n = systems.len();
    (0..n).map(|i| systems[(i + r) % n]).collect()
}

impl Ctx {
    fn ab_once(&self, sys: System, rate: u64, round: usize) -> Result<AbSample> {
        let sc = sys.scale(false);
        // Every round starts from an empty lease file (and registration store).
        let key = sys.key();
        if let Ok(rd) = std::fs::read_dir(&self.work) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!("{key}-leases.db"))
                    || n.starts_with("registrations") && !n.ends_with(".csv")
                {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        let mut server = self.start_server(sys)?;
        let pid = Some(server.pid());
        let closed = self.point(
            sys,
            &Load::closed("dora", sc.clients, sc.concurrency, self.secs),
            pid,
            None,
        )?;
        let backend = server.backend_pid();
        let before = backend.and_then(proc_ticks);
        let blk_before = block_writes_flushes();
        let open = self.point(sys, &Load::open(sc.clients, rate, self.secs), pid, None)?;
        let blk_after = block_writes_flushes();
        let after = backend.and_then(proc_ticks);
        let blk_per_exchange = match (blk_before, blk_after) {
            (Some(a), Some(b)) if open.acks > 0 => Some((
                b.0.saturating_sub(a.0) as f64 / open.acks as f64,
                b.1.saturating_sub(a.1) as f64 / open.acks as f64,
            )),
            _ => None,
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let backend_cpu_us = match (before, after) {
            (Some(a), Some(b)) if open.acks > 0 => {
                Some(b.saturating_sub(a) as f64 / hz * 1e6 / open.acks as f64)
            }
            _ => None,
        };
        if !server.running() {
            bail!(
                "{} exited during the round; its log:\n{}",
                sys.label(),
                server.log_tail()
            );
        }
        drop(server);
        // The server's log and exit statistics beside the loadgen reports (drops by reason).
        for (from, to) in [
            (format!("{key}.log"), format!("{key}-r{round}.log")),
            (
                format!("{key}-stats.json"),
                format!("{key}-r{round}-stats.json"),
            ),
        ] {
            let _ = std::fs::copy(self.work.join(from), self.raw.join(to));
        }
        Ok(AbSample {
            closed: closed.achieved,
            cpu_us: open.server_cpu_s_per_exchange.map(|s| s * 1e6),
            open_loss_pct: open.loss_pct,
            backend_cpu_us,
            blk_per_exchange,
        })
    }

    /// Runs the rounds and prints the report; returns it as Markdown.
    pub(super) fn ab(&self, systems: &[System], rounds: usize, rate: u64) -> Result<String> {
        let mut samples: Vec<Vec<AbSample>> = vec![Vec::new(); systems.len()];
        for r in 0..rounds {
            for sys in round_order(systems, r) {
                check_interrupt()?;
                let i = systems.iter().position(|s| *s == sys).unwrap_or(0);
                let s = self.ab_once(sys, rate, r + 1)?;
                println!(
                    "   round {}/{rounds} {:<22} closed DORA {:>9}/s   at {}/s: {} µs CPU per DORA, loss {:.2}%",
                    r + 1,
                    sys.key(),
                    fmt_rate(s.closed),
                    fmt_rate(rate as f64),
                    s.cpu_us.map_or("-".into(), |c| format!("{c:.1}")),
                    s.open_loss_pct
                );
                if let Some((w, f)) = s.blk_per_exchange {
                    println!(
                        "   round {}/{rounds} {:<22} at {}/s: block writes {w:.4}, flushes {f:.4} per exchange",
                        r + 1,
                        sys.key(),
                        fmt_rate(rate as f64),
                    );
                }
                if let Some(b) = s.backend_cpu_us {
                    println!(
                        "   round {}/{rounds} {:<22} beside it: nats-server {b:.1} µs CPU per DORA",
                        r + 1,
                        sys.key()
                    );
                }
                samples[i].push(s);
            }
        }
        Ok(report(systems, &samples, rate))
    }
}

fn report(systems: &[System], samples: &[Vec<AbSample>], rate: u64) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "| system | closed-loop DORA/s, median of {} | ratio to {} (paired, median; min-max) | server CPU µs per DORA at {}/s, median | ratio to {} (paired, median; min-max) |\n|---|---:|---:|---:|---:|\n",
        samples.first().map_or(0, Vec::len),
        systems[0].key(),
        fmt_rate(rate as f64),
        systems[0].key(),
    ));
    let base = &samples[0];
    for (i, sys) in systems.iter().enumerate() {
        let s = &samples[i];
        let mut closed: Vec<f64> = s.iter().map(|x| x.closed).collect();
        let mut cpu: Vec<f64> = s.iter().filter_map(|x| x.cpu_us).collect();
        let mut rc: Vec<f64> = s
            .iter()
            .zip(base)
            .filter(|(_, b)| b.closed > 0.0)
            .map(|(x, b)| x.closed / b.closed)
            .collect();
        let mut ru: Vec<f64> = s
            .iter()
            .zip(base)
            .filter_map(|(x, b)| Some(x.cpu_us? / b.cpu_us?))
            .collect();
        let spread = |v: &[f64]| match (v.first(), v.last()) {
            (Some(a), Some(b)) => format!("{a:.2}-{b:.2}"),
            _ => "-".into(),
        };
        let rcm = median(&mut rc);
        let rum = median(&mut ru);
        o.push_str(&format!(
            "| {} | {} | {} ({}) | {} | {} ({}) |\n",
            sys.key(),
            median(&mut closed).map_or("-".into(), fmt_rate),
            rcm.map_or("-".into(), |r| format!("{r:.3}")),
            spread(&rc),
            median(&mut cpu).map_or("-".into(), |c| format!("{c:.2}")),
            rum.map_or("-".into(), |r| format!("{r:.3}")),
            spread(&ru),
        ));
    }
    for (i, sys) in systems.iter().enumerate() {
        let mut w: Vec<f64> = samples[i]
            .iter()
            .filter_map(|x| x.blk_per_exchange.map(|b| b.0))
            .collect();
        let mut f: Vec<f64> = samples[i]
            .iter()
            .filter_map(|x| x.blk_per_exchange.map(|b| b.1))
            .collect();
        if let (Some(w), Some(f)) = (median(&mut w), median(&mut f)) {
            o.push_str(&format!(
                "\n{}: block write requests {w:.4} and cache flushes {f:.4} per exchange at {}/s (median; every process's I/O on the machine counts)\n",
                sys.key(),
                fmt_rate(rate as f64)
            ));
        }
    }
    if systems.contains(&System::XdpNats) {
        o.push_str(&format!(
            "\n{}: {}.\n",
            System::XdpNats.key(),
            super::systems::nats_placement().1
        ));
    }
    for (i, sys) in systems.iter().enumerate() {
        let mut b: Vec<f64> = samples[i].iter().filter_map(|x| x.backend_cpu_us).collect();
        if let Some(m) = median(&mut b) {
            let spread = match (b.first(), b.last()) {
                (Some(a), Some(z)) => format!("{a:.2}-{z:.2}"),
                _ => "-".into(),
            };
            o.push_str(&format!(
                "\n{}: nats-server CPU µs per DORA at {}/s (its own process, beside the server's): median {m:.2} ({spread})\n",
                sys.key(),
                fmt_rate(rate as f64)
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab_rounds_rotate_and_medians_pair() {
        let s = [System::XdpAck, System::XdpEvents, System::XdpProv];
        assert_eq!(round_order(&s, 0), s.to_vec());
        assert_eq!(
            round_order(&s, 1),
            vec![System::XdpEvents, System::XdpProv, System::XdpAck]
        );
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        let a = AbSample {
            closed: 100.0,
            cpu_us: Some(10.0),
            open_loss_pct: 0.0,
            backend_cpu_us: None,
            blk_per_exchange: None,
        };
        let b = AbSample {
            closed: 90.0,
            cpu_us: Some(11.0),
            open_loss_pct: 0.0,
            backend_cpu_us: Some(2.5),
            blk_per_exchange: None,
        };
        let t = report(&s[..2], &[vec![a, a], vec![b, b]], 40_000);
        assert!(!t.contains("nats-server runs on"), "{t}");
        let n = [System::XdpEvents, System::XdpNats];
        let tn = report(&n, &[vec![a, a], vec![b, b]], 40_000);
        assert!(
            tn.contains("xdhcpd-xdp-nats: nats-server runs on ")
                && tn.contains("xdhcpd-xdp-nats: nats-server CPU µs per DORA"),
            "{tn}"
        );
        assert!(
            t.contains(
                "| xdhcpd-xdp-events | 90.0 | 0.900 (0.90-0.90) | 11.00 | 1.100 (1.10-1.10) |"
            ),
            "{t}"
        );
        assert!(
            t.contains("xdhcpd-xdp-events: nats-server CPU µs per DORA at 40,000/s (its own process, beside the server's): median 2.50 (2.50-2.50)"),
            "{t}"
        );
    }
}
