//! Measuring one system: the open-loop DORA rate sweep, p99 at half the maximum, renew and
//! DORA closed loop, and what the server reported at the end.

use std::fs;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::analysis::{
    self, fmt_rate, fmt_us, max_sustained, next_target, refine_between, stop_reason, Point,
};
use super::loadgen::Load;
use super::report;
use super::systems::{Scale, System};
use super::Ctx;

/// Everything measured for one system.
#[derive(Clone, Debug)]
pub struct SystemResult {
    pub system: System,
    pub sweep: Vec<Point>,
    pub stop: String,
    /// Open loop at 50% of the max sustained rate (for p99).
    pub half: Option<Point>,
    /// Renew-only, closed loop.
    pub renew: Option<Point>,
    /// DORA, closed loop.
    pub dora_closed: Option<Point>,
    pub server_stats: Option<Value>,
    pub error: Option<String>,
    pub notes: Vec<String>,
}

impl SystemResult {
    pub(super) fn new(system: System) -> Self {
        SystemResult {
            system,
            sweep: Vec::new(),
            stop: String::new(),
            half: None,
            renew: None,
            dora_closed: None,
            server_stats: None,
            error: None,
            notes: Vec::new(),
        }
    }

    pub(super) fn max_dora(&self) -> Option<f64> {
        max_sustained(&self.sweep).map(|p| p.achieved)
    }

    /// Renew figure for the targets: the closed-loop rate if its loss stayed
    /// under 1%, else nothing.
    pub(super) fn renew_rate(&self) -> Option<f64> {
        self.renew
            .as_ref()
            .filter(|p| p.sustained())
            .map(|p| p.achieved)
    }

    pub(super) fn to_json(&self) -> Value {
        let best = max_sustained(&self.sweep);
        json!({
            "system": self.system.key(),
            "label": self.system.label(),
            "max_sustained_dora_per_s": best.map(|p| analysis::round1(p.achieved)),
            "max_sustained_at_offered_per_s": best.map(|p| analysis::round1(p.offered)),
            "p99_us_at_half_max": self.half.as_ref().map(|p| analysis::round1(p.p99_us)),
            "renew_closed_loop": self.renew.as_ref().map(Point::to_json),
            "dora_closed_loop": self.dora_closed.as_ref().map(Point::to_json),
            "half_max_point": self.half.as_ref().map(Point::to_json),
            "sweep": self.sweep.iter().map(Point::to_json).collect::<Vec<_>>(),
            "sweep_stopped_because": self.stop,
            "limit_note": report::limit_note(self),
            "server_stats": self.server_stats,
            "error": self.error,
            "notes": self.notes,
        })
    }
}

impl Ctx {
    /// One open-loop DORA point of the sweep, printed as it is measured.
    fn sweep_point(&self, sys: System, sc: &Scale, rate: u64, pid: Option<u32>) -> Result<Point> {
        let p = self.point(sys, &Load::open(sc.clients, rate, self.secs), pid, None)?;
        println!(
            "   {:>9}/s offered {:>9}/s  ACKed {:>9}/s  loss {:>6.2}%  p99 {:>9}  server CPU {:>4}  cores {}{}{}",
            fmt_rate(rate as f64),
            fmt_rate(p.offered),
            fmt_rate(p.achieved),
            p.loss_pct,
            fmt_us(p.p99_us),
            p.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}%")),
            p.core_busy_pct
                .iter()
                .map(|c| format!("{c:.0}%"))
                .collect::<Vec<_>>()
                .join("/"),
            if p.loadgen_limited { "  [loadgen limited]" } else { "" },
            match p.link_drops {
                Some(d) if d.iter().any(|x| *x > 0) => format!(
                    "  [veth drops srv rx {} tx {}, cli rx {} tx {}]",
                    d[0], d[1], d[2], d[3]
                ),
                _ => String::new(),
            },
        );
        Ok(p)
    }

    /// Sweep, p99 at half, renew and DORA closed loop for one system.
    pub(super) fn measure(&self, sys: System, r: &mut SystemResult) -> Result<()> {
        let sc = sys.scale(self.quick);
        println!("\n== {} ({})", sys.label(), sys.key());
        let mut server = self.start_server(sys)?;
        let pid = Some(server.pid());

        // Coarse steps (factor²) until the first point that is not sustained,
        // then one point between it and the last sustained one, then fine
        // steps (factor) until the sweep stops.
        let mut rate = sc.start;
        let mut coarse = true;
        let mut last_good: Option<u64> = None;
        let mut prev: Option<Point> = None;
        loop {
            let p = self.sweep_point(sys, &sc, rate, pid)?;
            let step = if coarse {
                sc.factor * sc.factor
            } else {
                sc.factor
            };
            let stop = stop_reason(&p, prev.as_ref(), next_target(rate, step), sc.max);
            let sustained = p.sustained();
            r.sweep.push(p.clone());
            prev = Some(p);
            if sustained {
                last_good = Some(rate);
            } else if coarse {
                coarse = false;
                // Bisect (geometrically) between the last sustained and the first failed
                // target while they are > 21% apart: one coarse step alone left the maximum
                // anywhere within a factor of 2 (e.g. 128k sustained, 256k failed).
                let mut failed = rate;
                while let Some(mid) = last_good.and_then(|g| refine_between(g, failed)) {
                    let q = self.sweep_point(sys, &sc, mid, pid)?;
                    if q.sustained() {
                        last_good = Some(mid);
                    } else {
                        failed = mid;
                    }
                    r.sweep.push(q);
                }
            }
            if let Some(why) = stop {
                r.stop = why;
                break;
            }
            if r.sweep.len() >= sc.max_points {
                r.stop = format!("{} points", sc.max_points);
                break;
            }
            if !server.running() {
                bail!(
                    "{} exited during the sweep; its log:\n{}",
                    sys.label(),
                    server.log_tail()
                );
            }
            rate = next_target(
                rate,
                if coarse {
                    sc.factor * sc.factor
                } else {
                    sc.factor
                },
            );
        }
        println!("   sweep stopped: {}", r.stop);

        if let Some(best) = max_sustained(&r.sweep).cloned() {
            let half = ((best.achieved / 2.0).round() as u64).max(1);
            let p = self.point(sys, &Load::open(sc.clients, half, self.secs), pid, None)?;
            println!(
                "   at 50% of max ({}/s): p99 {} (loss {:.2}%)",
                fmt_rate(half as f64),
                fmt_us(p.p99_us),
                p.loss_pct
            );
            r.half = Some(p);
            if self.profile
                && matches!(
                    sys,
                    System::Ceiling
                        | System::XdpAck
                        | System::XdpInterval
                        | System::Ceiling6
                        | System::Xdp6
                )
            {
                let rate = best.target.unwrap_or(half * 2);
                let data = self.work.join(format!("perf-{}.data", sys.key()));
                let p = self.point(
                    sys,
                    &Load::open(sc.clients, rate, self.secs.max(4.0)),
                    pid,
                    Some(&data),
                )?;
                println!(
                    "   profiled at {}/s: ACKed {}/s, loss {:.2}%",
                    fmt_rate(rate as f64),
                    fmt_rate(p.achieved),
                    p.loss_pct
                );
                match self.perf_report(sys, &data) {
                    Ok(path) => r
                        .notes
                        .push(format!("perf profile at {rate}/s: {}", path.display())),
                    Err(e) => r.notes.push(format!("perf report failed: {e:#}")),
                }
            }
        } else {
            r.notes
                .push("no point was sustained (< 1% loss): no p99 at 50%".into());
        }

        let renew_secs = self.secs.max(2.0);
        let p = self.point(
            sys,
            &Load::closed("renew", sc.renew_clients, sc.concurrency, renew_secs),
            pid,
            None,
        )?;
        println!(
            "   renew, closed loop ({} outstanding): {}/s, loss {:.2}%, p99 {}",
            sc.concurrency,
            fmt_rate(p.achieved),
            p.loss_pct,
            fmt_us(p.p99_us)
        );
        r.renew = Some(p);
        if !self.quick {
            let p = self.point(
                sys,
                &Load::closed("dora", sc.clients, sc.concurrency, self.secs),
                pid,
                None,
            )?;
            println!(
                "   DORA, closed loop ({} outstanding): {}/s, loss {:.2}%, p99 {}",
                sc.concurrency,
                fmt_rate(p.achieved),
                p.loss_pct,
                fmt_us(p.p99_us)
            );
            r.dora_closed = Some(p);
        }
        if !server.running() {
            r.notes.push(format!(
                "{} exited before the end; log tail:\n{}",
                sys.label(),
                server.log_tail()
            ));
        }
        server.stop(Duration::from_secs(10))?;
        let stats = match sys {
            System::Ceiling => Some(self.work.join("ceiling-stats.json")),
            System::Ceiling6 => Some(self.work.join("ceiling6-stats.json")),
            s if s.is_xdhcpd() => Some(self.work.join(format!("{}-stats.json", s.key()))),
            _ => None,
        };
        if let Some(path) = stats {
            match fs::read_to_string(&path).map(|t| serde_json::from_str::<Value>(&t)) {
                Ok(Ok(v)) => r.server_stats = Some(v),
                Ok(Err(e)) => r
                    .notes
                    .push(format!("server stats {}: {e}", path.display())),
                Err(e) => r
                    .notes
                    .push(format!("server stats {}: {e}", path.display())),
            }
        }
        Ok(())
    }
}
