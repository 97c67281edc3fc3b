//! The console table, the Markdown section of `benches/RESULTS.md`, and the
//! marker-delimited update of that file (other sections are left as they are).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::analysis::{fmt_rate, fmt_us, max_sustained, Point, Target};
use super::sweep::SystemResult;

/// Start and end of the generated End-to-end section in RESULTS.md.
pub const BEGIN: &str =
    "<!-- e2e:begin (written by `cargo xtask bench --record`; edit outside these markers) -->";
pub const END: &str = "<!-- e2e:end -->";

/// Facts about the run printed with the figures.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub date: String,
    pub command: String,
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    pub point_seconds: f64,
    pub results_dir: String,
    pub wall_s: f64,
    /// `xdhcp-loadgen --self-test`: DISCOVER frames/s its sender alone reaches.
    pub loadgen_self_test_pps: Option<f64>,
}

fn cell_rate(p: Option<&Point>) -> String {
    p.map_or("-".into(), |p| fmt_rate(p.achieved))
}

fn cell_closed(p: Option<&Point>) -> String {
    match p {
        Some(p) => format!("{} ({:.2}% loss)", fmt_rate(p.achieved), p.loss_pct),
        None => "-".into(),
    }
}

fn cell_p99(p: Option<&Point>) -> String {
    match p {
        Some(p) => format!("{} @ {}/s", fmt_us(p.p99_us), fmt_rate(p.offered)),
        None => "-".into(),
    }
}

/// What most likely limits the system's max, from the measured figures.
pub fn limit_note(r: &SystemResult) -> String {
    if let Some(e) = &r.error {
        return format!("failed: {e}");
    }
    let mut why = Vec::new();
    // The first point past the max shows what gave.
    let best = max_sustained(&r.sweep);
    let past = r
        .sweep
        .iter()
        .find(|p| !p.sustained() && best.is_none_or(|b| p.offered > b.offered));
    if let Some(p) = past.or(best) {
        if let Some(cpu) = p.server_cpu_pct {
            why.push(format!("server process {cpu:.0}% CPU"));
        }
        if p.core_busy_pct.len() >= 2 {
            why.push(format!(
                "cores busy {:.0}%/{:.0}% (softirq {:.0}%/{:.0}%)",
                p.core_busy_pct[0],
                p.core_busy_pct[1],
                p.core_softirq_pct.first().copied().unwrap_or(0.0),
                p.core_softirq_pct.get(1).copied().unwrap_or(0.0)
            ));
        }
        if p.loadgen_limited {
            why.push(format!("loadgen limited (busy {:.0}%)", p.loadgen_busy_pct));
        }
    }
    why.push(format!("sweep stop: {}", r.stop));
    why.join("; ")
}

/// The summary table (Markdown; also readable on a terminal).
pub fn summary_table(results: &[SystemResult]) -> String {
    let mut o = String::new();
    o.push_str("| system | max sustained DORA/s (<1% loss) | loss there | p99 at 50% of max | renew/s (closed loop) | DORA/s (closed loop) | server CPU µs per DORA at max | bytes written per DORA at max | what limits it |\n");
    o.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in results {
        let best = max_sustained(&r.sweep);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system.label(),
            cell_rate(best),
            best.map_or("-".into(), |p| format!("{:.2}%", p.loss_pct)),
            cell_p99(r.half.as_ref()),
            cell_closed(r.renew.as_ref()),
            cell_closed(r.dora_closed.as_ref()),
            best.and_then(|p| p.server_cpu_s_per_exchange)
                .map_or("-".into(), |s| format!("{:.1}", s * 1e6)),
            best.and_then(|p| p.disk_bytes_per_exchange)
                .map_or("-".into(), |b| format!("{b:.0}")),
            limit_note(r).replace('|', "/"),
        );
    }
    o
}

/// Every point of every sweep.
pub fn points_table(results: &[SystemResult]) -> String {
    let mut o = String::new();
    o.push_str("| system | target/s | offered/s | ACKed/s | loss | p50 | p99 | p99.9 | server CPU | CPU µs/exchange | bytes written/exchange | core0/core1 busy | veth drops srv rx/tx, cli rx/tx | loadgen limited |\n");
    o.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in results {
        let mut sweep: Vec<&Point> = r.sweep.iter().collect();
        sweep.sort_by_key(|p| p.target.unwrap_or(0));
        for p in sweep.into_iter().chain(r.half.iter()) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.2}% | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.system.key(),
                p.target.map_or("-".into(), |t| fmt_rate(t as f64)),
                fmt_rate(p.offered),
                fmt_rate(p.achieved),
                p.loss_pct,
                fmt_us(p.p50_us),
                fmt_us(p.p99_us),
                fmt_us(p.p999_us),
                p.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}%")),
                p.server_cpu_s_per_exchange
                    .map_or("-".into(), |s| format!("{:.1}", s * 1e6)),
                p.disk_bytes_per_exchange
                    .map_or("-".into(), |b| format!("{b:.0}")),
                if p.core_busy_pct.len() >= 2 {
                    format!("{:.0}%/{:.0}%", p.core_busy_pct[0], p.core_busy_pct[1])
                } else {
                    "-".into()
                },
                p.link_drops.map_or("-".into(), |d| format!(
                    "{}/{}, {}/{}",
                    d[0], d[1], d[2], d[3]
                )),
                if p.loadgen_limited { "yes" } else { "no" },
            );
        }
    }
    o
}

pub fn ratios_text(ratios: &[(String, Option<f64>)]) -> String {
    let mut o = String::new();
    for (name, r) in ratios {
        let _ = writeln!(
            o,
            "- {name}: {}",
            r.map_or("not measured".into(), |r| format!("{r:.2}x"))
        );
    }
    o
}

pub fn targets_text(targets: &[Target]) -> String {
    let mut o = String::new();
    for t in targets {
        let _ = writeln!(
            o,
            "- **{}** — {}: measured {} (need {}), {}",
            t.verdict(),
            t.name,
            t.measured.map_or("-".into(), |m| format!("{m:.2}x")),
            format_args!("{:.2}x", t.required),
            t.detail
        );
    }
    o
}

/// The generated End-to-end section, markers included.
pub fn markdown_section(
    info: &RunInfo,
    results: &[SystemResult],
    ratios: &[(String, Option<f64>)],
    targets: &[Target],
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{BEGIN}");
    let _ = writeln!(o, "## End-to-end (`cargo xtask bench`)\n");
    let _ = writeln!(
        o,
        "Latest recorded run: {} — `{}` — {:.0} s wall, {} s of load per point.  ",
        info.date, info.command, info.wall_s, info.point_seconds
    );
    let _ = writeln!(o, "Machine: {}.  ", info.machine);
    let _ = writeln!(
        o,
        "Load average before / after: {} / {}. Raw data, JSON and plot: `{}/` (not in git).\n",
        info.load_before, info.load_after, info.results_dir
    );
    if let Some(pps) = info.loadgen_self_test_pps {
        let _ = writeln!(
            o,
            "Loadgen alone (`--self-test`, one core, no replies to handle): {} frames/s, so at most {} DORA/s offered (2 frames out per DORA).\n",
            fmt_rate(pps),
            fmt_rate(pps / 2.0)
        );
    }
    o.push_str(&summary_table(results));
    o.push_str("\nRatios (DORA, max sustained at < 1% loss):\n\n");
    o.push_str(&ratios_text(ratios));
    o.push_str("\nTargets (issue 3):\n\n");
    o.push_str(&targets_text(targets));
    o.push_str(
        "\nHow it is measured: two namespaces joined by one 2-queue veth pair; the same \
         `xdhcp-loadgen` (AF_XDP, one thread, `taskset -c 0 … --cpus 0`) drives every system with \
         the same scenario; every server runs under `taskset -c 1`. DORA: open-loop sweep \
         (`--rate`, geometric), a point is sustained when < 1% of its exchanges end without an \
         ACK (drops, NAKs); the sweep stops after > 10% loss or when the loadgen cannot offer the \
         target. Renew: `--scenario renew` (every client bound first, warm-up reported apart), \
         closed loop. p99: a separate open-loop point at 50% of the max sustained rate. The \
         ceiling is `xdhcp-echo` behind the same XDP program: each DORA is 2 frames in and 2 out \
         on the server side, so its DORA/s is the echo's frames/s ÷ 2.\n\n\
         Durability differs and is part of each figure: with xdhcpd commit=ack no ACK leaves \
         before its lease record is on stable storage (group commit: the record changes appended \
         to a write-ahead log and fdatasynced, replies held until a commit that started after \
         their write completed; the table is checkpointed in the background); \
         commit=interval:10 msyncs every 10 ms and answers at once; Kea's memfile appends each \
         lease to its CSV with write(2) and no fsync; \
         ISC dhcpd fsyncs its lease file for every lease. Lease files live in the temporary \
         directory (fdatasync latency in the machine line). Server CPU µs per DORA: the server \
         process's CPU time over the sampling window divided by the exchanges ACKed in it. \
         Bytes written per DORA: sectors written to the block device holding the lease files \
         over the same window, per exchange; the whole device counts, so on a shared machine \
         it is an upper bound.\n\n\
         veth caveat: veth runs the receiving side's XDP program (and the copy into the AF_XDP \
         socket, or the kernel's receive path) in the NAPI context of the *sending* CPU, so core \
         0 also pays for the server's receive and core 1 for the loadgen's. \"One core each\" is \
         therefore approximate on veth; per-core busy figures are in the points table.\n\n",
    );
    o.push_str("<details><summary>All points</summary>\n\n");
    o.push_str(&points_table(results));
    o.push_str("\n</details>\n");
    let _ = writeln!(o, "{END}");
    o
}

/// Replaces the generated section of `path` (or appends it; creates the file
/// if missing), leaving every other line as it was.
pub fn update_results_md(path: &Path, section: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# xdhcpd benchmark results\n\n".to_string()
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = splice(&old, section);
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

/// `old` with the text between BEGIN and END (inclusive) replaced by
/// `section`, or `section` appended when there is no complete marker pair.
pub fn splice(old: &str, section: &str) -> String {
    if let Some(b) = old.find(BEGIN) {
        if let Some(e_rel) = old[b..].find(END) {
            let e = b + e_rel + END.len();
            let rest = old[e..].strip_prefix('\n').unwrap_or(&old[e..]);
            return format!("{}{}{}", &old[..b], section, rest);
        }
    }
    let mut s = old.to_string();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    if !s.ends_with("\n\n") {
        s.push('\n');
    }
    s.push_str(section);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_marked_section() {
        let sec1 = format!("{BEGIN}\nfirst\n{END}\n");
        let sec2 = format!("{BEGIN}\nsecond\n{END}\n");
        let base = "# Results\n\n## Micro-benchmarks (criterion)\n\nkeep me\n";
        let once = splice(base, &sec1);
        assert!(once.starts_with(base));
        assert!(once.ends_with(&sec1));
        let tail = "\n## Analysis\n\nmine too\n";
        let with_tail = format!("{once}{tail}");
        let twice = splice(&with_tail, &sec2);
        assert!(twice.contains("keep me") && twice.contains("mine too"));
        assert!(twice.contains("second") && !twice.contains("first"));
        assert_eq!(twice.matches(BEGIN).count(), 1);
        // A lone BEGIN (damaged file) is not a pair: append instead of eating the rest.
        let damaged = format!("{base}{BEGIN}\nhalf\n");
        let fixed = splice(&damaged, &sec2);
        assert!(fixed.contains("half") && fixed.ends_with(&sec2));
    }
}
