//! One `xdhcp-loadgen` run: its parameters, its command line, the point it yields (with CPU
//! and link samples), the sender's self-test, and perf profiles taken during a run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::analysis::Point;
use super::process::{check_interrupt, nap, Proc};
use super::sample::{link_drops, CpuSample};
use super::systems::System;
use super::{Ctx, CLIENT_IF, LOADGEN_CPU, SERVER_CPU, SERVER_IF};
use crate::netns::NetnsPair;
use crate::util;

/// One loadgen invocation.
#[derive(Clone, Debug)]
pub(super) struct Load {
    pub(super) scenario: &'static str,
    pub(super) clients: u32,
    pub(super) rate: Option<u64>,
    pub(super) concurrency: Option<u32>,
    pub(super) secs: Option<f64>,
    pub(super) count: Option<u64>,
    pub(super) timeout_ms: u64,
    pub(super) retries: u8,
}

impl Load {
    pub(super) fn open(clients: u32, rate: u64, secs: f64) -> Load {
        Load {
            scenario: "dora",
            clients,
            rate: Some(rate),
            concurrency: None,
            secs: Some(secs),
            count: None,
            timeout_ms: 1000,
            retries: 0,
        }
    }

    pub(super) fn closed(
        scenario: &'static str,
        clients: u32,
        concurrency: u32,
        secs: f64,
    ) -> Load {
        Load {
            scenario,
            clients,
            rate: None,
            concurrency: Some(concurrency),
            secs: Some(secs),
            count: None,
            timeout_ms: 500,
            retries: 0,
        }
    }

    fn tag(&self) -> String {
        match (self.rate, self.concurrency) {
            (Some(r), _) => format!("{}-rate{r}", self.scenario),
            (None, Some(c)) => format!("{}-conc{c}", self.scenario),
            _ => format!("{}-probe", self.scenario),
        }
    }

    /// Longest the run may take: warm-up at >= 20/s, the phase, the drain.
    fn deadline(&self) -> Duration {
        let warm = if self.scenario == "renew" {
            f64::from(self.clients) / 20.0
        } else {
            0.0
        };
        let phase = self.secs.unwrap_or(0.0) + self.count.map_or(0.0, |c| c as f64 / 10.0);
        let drain = 2.0 * (self.timeout_ms as f64 / 1000.0) * f64::from(self.retries + 1) + 1.0;
        Duration::from_secs_f64(warm + phase + drain + 30.0)
    }
}

/// When to sample CPU inside an open-loop DORA phase: after start-up, for
/// most of the phase.
const SAMPLE_AFTER: Duration = Duration::from_millis(700);

impl Ctx {
    /// The loadgen on its CPU in the client namespace, AF_XDP on one queue.
    fn loadgen_base(&self) -> Command {
        let mut c = NetnsPair::exec(&self.ns.client_ns, "taskset");
        c.args(["-c", LOADGEN_CPU]).arg(&self.loadgen).args([
            "-i",
            CLIENT_IF,
            "--io",
            "xdp",
            "--queues",
            "1",
            "--cpus",
            LOADGEN_CPU,
        ]);
        c
    }

    fn loadgen_cmd(&self, sys: System, l: &Load, json_path: &Path) -> Command {
        let mut c = self.loadgen_base();
        if sys.is_v6() {
            // SARR (renew) with an IA_NA and an IA_PD in every message.
            c.args(["--dhcpv6", "both"]);
        }
        c.args([
            "--scenario",
            l.scenario,
            "--clients",
            &l.clients.to_string(),
        ])
        .args(["--timeout-ms", &l.timeout_ms.to_string()])
        .args(["--retries", &l.retries.to_string(), "--quiet", "--json"])
        .arg(json_path);
        if let Some(r) = l.rate {
            c.args(["--rate", &r.to_string()]);
        }
        if let Some(k) = l.concurrency {
            c.args(["--concurrency", &k.to_string()]);
        }
        if let Some(s) = l.secs {
            c.args(["--duration", &format!("{s}s")]);
        }
        if let Some(n) = l.count {
            c.args(["--count", &n.to_string()]);
        }
        c
    }

    /// Runs the loadgen once and returns its JSON report; samples CPU inside
    /// the phase of open-loop runs (and profiles with perf when asked).
    pub(super) fn loadgen(
        &self,
        sys: System,
        l: &Load,
        server_pid: Option<u32>,
        perf_out: Option<&Path>,
    ) -> Result<(Value, Option<(CpuSample, CpuSample)>)> {
        check_interrupt()?;
        let tag = format!("{}-{}", sys.key(), l.tag());
        let json_path = self.raw.join(format!("{tag}.json"));
        let log = self.work.join(format!("loadgen-{tag}.log"));
        let mut p = Proc::spawn(
            self.loadgen_cmd(sys, l, &json_path),
            "xdhcp-loadgen",
            &log,
            libc::SIGINT,
        )?;
        let deadline = Instant::now() + l.deadline();
        let mut samples = None;
        if l.rate.is_some() {
            if let Some(secs) = l.secs {
                let window = Duration::from_secs_f64((secs * 0.6).max(secs - 1.2).max(0.3));
                nap(SAMPLE_AFTER)?;
                let a = CpuSample::take(server_pid, &self.work);
                let perf = match perf_out {
                    Some(data) => Some(self.start_perf(data, window)?),
                    None => None,
                };
                nap(window)?;
                let b = CpuSample::take(server_pid, &self.work);
                if let Some(mut perf) = perf {
                    perf.wait_until(Instant::now() + Duration::from_secs(60))?;
                }
                samples = Some((a, b));
            }
        }
        let status = p.wait_until(deadline)?;
        if !status.success() {
            bail!(
                "xdhcp-loadgen ({tag}) failed ({status}); its output:\n{}",
                p.log_tail()
            );
        }
        let text = fs::read_to_string(&json_path)
            .with_context(|| format!("reading the loadgen report {}", json_path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing the loadgen report {}", json_path.display()))?;
        Ok((v, samples))
    }

    fn start_perf(&self, data: &Path, window: Duration) -> Result<Proc> {
        let mut c = Command::new("perf");
        c.args(["record", "-a", "-g", "-F", "999", "-o"])
            .arg(data)
            .args(["--", "sleep", &format!("{:.1}", window.as_secs_f64())]);
        Proc::spawn(
            c,
            "perf record",
            &self.work.join("perf-record.log"),
            libc::SIGINT,
        )
    }

    /// Dropped frames of both veth ends: server rx, tx, client rx, tx.
    fn link_drops(&self) -> Option<[u64; 4]> {
        let (a, b) = link_drops(&self.ns.server_ns, SERVER_IF)?;
        let (c, d) = link_drops(&self.ns.client_ns, CLIENT_IF)?;
        Some([a, b, c, d])
    }

    /// One measured point.
    pub(super) fn point(
        &self,
        sys: System,
        l: &Load,
        server_pid: Option<u32>,
        perf: Option<&Path>,
    ) -> Result<Point> {
        let before = self.link_drops();
        let (v, samples) = self.loadgen(sys, l, server_pid, perf)?;
        let mut p = Point::from_loadgen(&v, sys.phase(l.scenario))?;
        if let (Some(a), Some(b)) = (before, self.link_drops()) {
            p.link_drops = Some([0, 1, 2, 3].map(|i| b[i].saturating_sub(a[i])));
        }
        if let Some((a, b)) = samples {
            a.apply(&b, &mut p);
        }
        if p.duplicates > 0 {
            eprintln!(
                "   WARNING: {} addresses ACKed to two clients at once",
                p.duplicates
            );
        }
        Ok(p)
    }

    /// The loadgen's sender alone (no server running): frames per second.
    pub(super) fn self_test(&self) -> Result<f64> {
        let json_path = self.raw.join("loadgen-self-test.json");
        let mut c = self.loadgen_base();
        c.args([
            "--self-test",
            "--clients",
            "50000",
            "--duration",
            "2s",
            "--quiet",
            "--json",
        ])
        .arg(&json_path);
        let log = self.work.join("loadgen-self-test.log");
        let mut p = Proc::spawn(c, "xdhcp-loadgen --self-test", &log, libc::SIGINT)?;
        let st = p.wait_until(Instant::now() + Duration::from_secs(30))?;
        if !st.success() {
            bail!("xdhcp-loadgen --self-test failed ({st}):\n{}", p.log_tail());
        }
        let v: Value = serde_json::from_str(
            &fs::read_to_string(&json_path)
                .with_context(|| format!("reading {}", json_path.display()))?,
        )
        .with_context(|| format!("parsing {}", json_path.display()))?;
        v["loadgen"]["self_test_tx_pps"]
            .as_f64()
            .context("the self-test report has no loadgen.self_test_tx_pps")
    }

    pub(super) fn perf_report(&self, sys: System, data: &Path) -> Result<PathBuf> {
        let out = self.out.join(format!("perf-{}.txt", sys.key()));
        let mut text = String::new();
        let reports: [(&str, &[&str]); 3] = [
            (
                "who uses each core (self time)",
                &["--sort", "cpu,comm", "--percent-limit", "0.5"],
            ),
            (
                "core 1 (server core) by command and symbol",
                &[
                    "--cpu",
                    SERVER_CPU,
                    "--sort",
                    "comm,dso,sym",
                    "--percent-limit",
                    "0.4",
                ],
            ),
            (
                "core 0 (loadgen core) by command and symbol",
                &[
                    "--cpu",
                    LOADGEN_CPU,
                    "--sort",
                    "comm,dso,sym",
                    "--percent-limit",
                    "0.4",
                ],
            ),
        ];
        for (title, extra) in reports {
            let mut c = Command::new("perf");
            c.args(["report", "--stdio", "--no-children", "-g", "none", "-i"])
                .arg(data)
                .args(extra);
            text.push_str(&format!("#### perf report: {title}\n"));
            text.push_str(&util::output(&mut c)?);
            text.push('\n');
        }
        fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
        Ok(out)
    }
}
