//! What a sweep means: one measured point per loadgen run, the maximum
//! sustained rate, ratios and the targets. Pure functions, tested.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// A point counts as sustained when fewer than this share of its exchanges
/// (percent) ended without an ACK.
pub const SUSTAINED_LOSS_PCT: f64 = 1.0;
/// A sweep stops after a point that lost more than this (percent).
pub const STOP_LOSS_PCT: f64 = 10.0;
/// A sweep stops when the loadgen offered less than this share of its target:
/// higher targets would only measure the loadgen.
pub const MIN_OFFERED_SHARE: f64 = 0.9;

/// One loadgen run's measured phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Point {
    /// "dora" or "renew".
    pub scenario: String,
    /// Open loop: exchanges started per second asked for.
    pub target: Option<u64>,
    /// Closed loop: outstanding exchanges.
    pub concurrency: Option<u32>,
    /// Exchanges started per second.
    pub offered: f64,
    /// ACKed exchanges per second (window: phase start to the last answer).
    pub achieved: f64,
    pub sent: u64,
    pub acks: u64,
    pub naks: u64,
    pub drops: u64,
    pub duplicates: u64,
    /// Exchanges that did not end in an ACK (drops, NAKs, empty ACKs), percent of sent.
    pub loss_pct: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub loadgen_limited: bool,
    pub loadgen_busy_pct: f64,
    pub loadgen_note: String,
    /// CPU time of the server process over a window inside the phase, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU seconds per ACKed exchange over the same window (CPU time / exchanges), so
    /// the efficiency of each system shows whatever limits the load generator.
    pub server_cpu_s_per_exchange: Option<f64>,
    /// Bytes written to the block device holding the lease files per ACKed exchange over the
    /// same window (/sys/dev/block/MAJ:MIN/stat: the whole device, so whatever else writes to
    /// it on a shared machine counts too: an upper bound).
    pub disk_bytes_per_exchange: Option<f64>,
    /// Per core (0, 1): busy and softirq percent over the same window.
    pub core_busy_pct: Vec<f64>,
    pub core_softirq_pct: Vec<f64>,
    /// Interface drop counters over the whole run: server rx, server tx,
    /// client rx, client tx (veth counts a full peer ring as a drop).
    pub link_drops: Option<[u64; 4]>,
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("loadgen report: field `{key}` missing or not a number"))
}

fn count(v: &Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("loadgen report: field `{key}` missing or not a count"))
}

impl Point {
    /// The point of phase `phase` ("dora", "renew") in an `xdhcp-loadgen --json` report.
    pub fn from_loadgen(report: &Value, phase: &str) -> Result<Point> {
        let phases = report
            .get("phases")
            .and_then(Value::as_array)
            .context("loadgen report: no `phases` array")?;
        let Some(p) = phases
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(phase))
        else {
            bail!("loadgen report: no phase named {phase:?} (was the measured phase entered?)");
        };
        let lat = p
            .get("latency")
            .context("loadgen report: phase without `latency`")?;
        let sent = count(p, "sent")?;
        let acks = count(p, "acks")?;
        let bad_acks = count(p, "bad_acks")?;
        let good = acks.saturating_sub(bad_acks);
        let lg = report
            .get("loadgen")
            .context("loadgen report: no `loadgen` section")?;
        Ok(Point {
            scenario: phase.to_string(),
            target: report.get("rate_target").and_then(Value::as_u64),
            concurrency: report
                .get("concurrency")
                .and_then(Value::as_u64)
                .and_then(|c| u32::try_from(c).ok()),
            offered: num(p, "offered_per_s")?,
            achieved: num(p, "acked_per_s")?,
            sent,
            acks,
            naks: count(p, "naks")?,
            drops: count(p, "drops")?,
            duplicates: count(p, "duplicates")?,
            loss_pct: loss_pct(sent, good),
            p50_us: num(lat, "p50_us")?,
            p99_us: num(lat, "p99_us")?,
            p999_us: num(lat, "p99_9_us")?,
            loadgen_limited: lg.get("limited").and_then(Value::as_bool).unwrap_or(false),
            loadgen_busy_pct: lg
                .get("max_busy_pct")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            loadgen_note: lg
                .get("note")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            server_cpu_pct: None,
            server_cpu_s_per_exchange: None,
            disk_bytes_per_exchange: None,
            core_busy_pct: Vec::new(),
            core_softirq_pct: Vec::new(),
            link_drops: None,
        })
    }

    /// Loss below the sustained threshold, with something sent.
    pub fn sustained(&self) -> bool {
        self.sent > 0 && self.loss_pct < SUSTAINED_LOSS_PCT
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "target_per_s": self.target,
            "concurrency": self.concurrency,
            "offered_per_s": round1(self.offered),
            "achieved_per_s": round1(self.achieved),
            "sent": self.sent,
            "acks": self.acks,
            "naks": self.naks,
            "drops": self.drops,
            "duplicates": self.duplicates,
            "loss_pct": round3(self.loss_pct),
            "p50_us": round1(self.p50_us),
            "p99_us": round1(self.p99_us),
            "p99_9_us": round1(self.p999_us),
            "loadgen_limited": self.loadgen_limited,
            "loadgen_busy_pct": round1(self.loadgen_busy_pct),
            "loadgen_note": self.loadgen_note,
            "server_cpu_pct": self.server_cpu_pct.map(round1),
            "server_cpu_s_per_exchange": self.server_cpu_s_per_exchange,
            "disk_bytes_per_exchange": self.disk_bytes_per_exchange.map(round1),
            "core_busy_pct": self.core_busy_pct.iter().copied().map(round1).collect::<Vec<_>>(),
            "core_softirq_pct": self.core_softirq_pct.iter().copied().map(round1).collect::<Vec<_>>(),
            "link_drops": self.link_drops.map(|d| json!({
                "server_rx": d[0], "server_tx": d[1], "client_rx": d[2], "client_tx": d[3],
            })),
        })
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Percent of `sent` exchanges that did not end in a usable ACK.
pub fn loss_pct(sent: u64, good_acks: u64) -> f64 {
    if sent == 0 {
        return 0.0;
    }
    100.0 * sent.saturating_sub(good_acks) as f64 / sent as f64
}

/// The sustained point (loss < 1 %) with the highest achieved rate.
pub fn max_sustained(points: &[Point]) -> Option<&Point> {
    points
        .iter()
        .filter(|p| p.sustained())
        .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
}

/// Why a sweep ends after `p` (None: go on to the next rate). `prev` is the
/// point before it: a loadgen that falls short of its target but still
/// offers clearly more than at the previous point (a noisy machine) gets
/// another step; one whose offered rate stopped growing is the limit.
pub fn stop_reason(
    p: &Point,
    prev: Option<&Point>,
    next_target: u64,
    max_target: u64,
) -> Option<String> {
    if p.loss_pct > STOP_LOSS_PCT {
        return Some(format!(
            "loss {:.1}% > {STOP_LOSS_PCT}% at {} offered/s",
            p.loss_pct,
            fmt_rate(p.offered)
        ));
    }
    if let Some(t) = p.target {
        let short = p.offered < MIN_OFFERED_SHARE * t as f64;
        let growing = prev.is_some_and(|q| p.offered > 1.05 * q.offered);
        if short && !growing {
            return Some(format!(
                "the loadgen offered only {} of the {}/s asked: it is the limit here",
                fmt_rate(p.offered),
                fmt_rate(t as f64)
            ));
        }
    }
    if next_target > max_target {
        return Some(format!(
            "end of the sweep range ({}/s)",
            fmt_rate(max_target as f64)
        ));
    }
    None
}

/// The geometric sweep's next target: `factor` times `rate`, at least one more.
pub fn next_target(rate: u64, factor: f64) -> u64 {
    let next = (rate as f64 * factor).round();
    if next.is_finite() && next > rate as f64 {
        next as u64
    } else {
        rate + 1
    }
}

/// The point between the last sustained target and the first failed one
/// (geometric mean), if it is at least 10% away from both.
pub fn refine_between(good: u64, failed: u64) -> Option<u64> {
    let mid = ((good as f64) * (failed as f64)).sqrt().round();
    (mid >= 1.1 * good as f64 && mid <= failed as f64 / 1.1).then_some(mid as u64)
}

/// a / b when both are known and b > 0.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// One of the targets, evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    /// The measured ratio and the ratio required.
    pub measured: Option<f64>,
    pub required: f64,
    pub detail: String,
}

impl Target {
    pub fn met(&self) -> Option<bool> {
        self.measured.map(|m| m >= self.required)
    }

    pub fn verdict(&self) -> &'static str {
        match self.met() {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        }
    }
}

/// The figures the targets need (DORA: max sustained; renew: its best rate).
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    pub xdhcpd_dora: Option<f64>,
    pub xdhcpd_renew: Option<f64>,
    pub kea_dora: Option<f64>,
    pub ceiling_dora: Option<f64>,
}

/// The three rate targets.
pub fn targets(f: &Figures) -> Vec<Target> {
    let show = |x: Option<f64>| x.map_or("-".to_string(), fmt_rate);
    vec![
        Target {
            name: "xdhcpd XDP (commit=ack) >= 50x Kea max sustained DORA/s".into(),
            measured: ratio(f.xdhcpd_dora, f.kea_dora),
            required: 50.0,
            detail: format!("{} vs {}", show(f.xdhcpd_dora), show(f.kea_dora)),
        },
        Target {
            name: "xdhcpd DORA >= 50% of the raw ceiling (exchanges = ceiling pps / 2)".into(),
            measured: ratio(f.xdhcpd_dora, f.ceiling_dora),
            required: 0.5,
            detail: format!("{} vs {}", show(f.xdhcpd_dora), show(f.ceiling_dora)),
        },
        Target {
            name: "xdhcpd renew >= 1.5x its DORA rate".into(),
            measured: ratio(f.xdhcpd_renew, f.xdhcpd_dora),
            required: 1.5,
            detail: format!("{} vs {}", show(f.xdhcpd_renew), show(f.xdhcpd_dora)),
        },
    ]
}

/// Issue 14's targets for DHCPv6 (max sustained SARR/s, SARR with IA_NA and IA_PD).
pub fn targets6(xdhcpd: Option<f64>, kea: Option<f64>, ceiling: Option<f64>) -> Vec<Target> {
    let show = |x: Option<f64>| x.map_or("-".to_string(), fmt_rate);
    vec![
        Target {
            name: "xdhcpd-xdp6 >= 15x kea-dhcp6 max sustained SARR/s".into(),
            measured: ratio(xdhcpd, kea),
            required: 15.0,
            detail: format!("{} vs {}", show(xdhcpd), show(kea)),
        },
        Target {
            name: "xdhcpd-xdp6 SARR >= 50% of ceiling6 (exchanges = ceiling pps / 2)".into(),
            measured: ratio(xdhcpd, ceiling),
            required: 0.5,
            detail: format!("{} vs {}", show(xdhcpd), show(ceiling)),
        },
    ]
}

/// 1234567 -> "1,234,567"; below 100 one decimal.
pub fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x < 100.0 {
        return format!("{x:.1}");
    }
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Microseconds as "850 us" / "12.3 ms".
pub fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(target: u64, achieved: f64, sent: u64, good: u64) -> Point {
        Point {
            scenario: "dora".into(),
            target: Some(target),
            offered: target as f64,
            achieved,
            sent,
            acks: good,
            loss_pct: loss_pct(sent, good),
            ..Point::default()
        }
    }

    #[test]
    fn max_sustained_is_the_fastest_point_under_one_percent_loss() {
        let sweep = vec![
            pt(10_000, 10_000.0, 50_000, 50_000),
            pt(20_000, 19_990.0, 100_000, 99_950),  // 0.05 %
            pt(40_000, 39_700.0, 200_000, 198_100), // 0.95 %: still sustained
            pt(80_000, 60_000.0, 400_000, 300_000), // 25 %: saturated, faster but lossy
            pt(56_000, 50_000.0, 280_000, 277_000), // 1.07 %: not sustained
        ];
        let best = max_sustained(&sweep).expect("a sustained point");
        assert_eq!(best.target, Some(40_000));
        assert!(!sweep[4].sustained());
        assert!(sweep[2].sustained());
    }

    #[test]
    fn no_sustained_point_gives_none() {
        assert!(max_sustained(&[]).is_none());
        let lossy = vec![pt(100, 50.0, 500, 250), pt(0, 0.0, 0, 0)];
        assert!(max_sustained(&lossy).is_none());
    }

    #[test]
    fn loss_counts_every_exchange_without_an_ack() {
        assert_eq!(loss_pct(0, 0), 0.0);
        assert!((loss_pct(200, 199) - 0.5).abs() < 1e-12);
        assert_eq!(
            loss_pct(10, 12),
            0.0,
            "more acks than sent cannot go negative"
        );
    }

    #[test]
    fn ratios_and_targets() {
        assert_eq!(ratio(Some(100.0), Some(4.0)), Some(25.0));
        assert_eq!(ratio(Some(100.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(4.0)), None);
        let t = targets(&Figures {
            xdhcpd_dora: Some(200_000.0),
            xdhcpd_renew: Some(290_000.0),
            kea_dora: Some(4_000.0),
            ceiling_dora: Some(300_000.0),
        });
        assert_eq!(t[0].measured, Some(50.0));
        assert_eq!(t[0].met(), Some(true), "exactly 50x meets >= 50x");
        assert!((t[1].measured.unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(t[1].met(), Some(true));
        assert_eq!(t[2].met(), Some(false), "1.45x is below 1.5x");
        assert_eq!(t[2].verdict(), "NOT met");
        let none = targets(&Figures::default());
        assert!(none
            .iter()
            .all(|t| t.met().is_none() && t.verdict() == "not measured"));
    }

    #[test]
    fn sweep_stops_on_loss_loadgen_limit_or_range() {
        let ok = pt(10_000, 10_000.0, 50_000, 50_000);
        assert_eq!(stop_reason(&ok, None, 14_142, 200_000), None);
        assert!(stop_reason(&ok, None, 300_000, 200_000).is_some_and(|r| r.contains("range")));
        let lossy = pt(10_000, 8_000.0, 50_000, 44_000);
        assert!(
            stop_reason(&lossy, None, 14_142, 200_000).is_some_and(|r| r.contains("loss 12.0%"))
        );
        // 14k asked, 12k offered: short, but up from 10k before: one more step.
        let mut short = pt(14_142, 12_000.0, 60_000, 60_000);
        short.offered = 12_000.0;
        assert_eq!(stop_reason(&short, Some(&ok), 20_000, 200_000), None);
        // 20k asked, 12.2k offered after 12k: the loadgen stopped growing.
        let mut flat = pt(20_000, 12_200.0, 61_000, 61_000);
        flat.offered = 12_200.0;
        assert!(stop_reason(&flat, Some(&short), 28_284, 200_000)
            .is_some_and(|r| r.contains("loadgen")));
        assert!(stop_reason(&flat, None, 28_284, 200_000).is_some_and(|r| r.contains("loadgen")));
        assert_eq!(next_target(10_000, std::f64::consts::SQRT_2), 14_142);
        assert_eq!(next_target(1, 1.2), 2, "always at least one more");
        assert_eq!(refine_between(10_000, 40_000), Some(20_000));
        assert_eq!(refine_between(10_000, 11_000), None, "too close to refine");
    }

    #[test]
    fn point_from_a_loadgen_report() {
        let report = json!({
            "rate_target": 20000, "concurrency": null,
            "phases": [
                {"name": "warmup-dora", "sent": 5, "acks": 5},
                {"name": "dora", "offered_per_s": 19990.5, "acked_per_s": 19800.0,
                 "sent": 100000, "acks": 99500, "bad_acks": 100, "naks": 200, "drops": 300,
                 "duplicates": 0,
                 "latency": {"p50_us": 120.0, "p99_us": 900.0, "p99_9_us": 2000.0}}
            ],
            "loadgen": {"limited": false, "max_busy_pct": 40.0, "note": "fine"}
        });
        let p = Point::from_loadgen(&report, "dora").expect("parsed");
        assert_eq!(p.target, Some(20_000));
        assert_eq!(p.acks, 99_500);
        assert!((p.loss_pct - 0.6).abs() < 1e-9, "drops + NAKs + empty ACKs");
        assert_eq!(p.p99_us, 900.0);
        assert!(Point::from_loadgen(&report, "renew").is_err());
        assert!(Point::from_loadgen(&json!({"phases": 3}), "dora").is_err());
    }

    #[test]
    fn rates_print_with_thousands_separators() {
        assert_eq!(fmt_rate(1_234_567.4), "1,234,567");
        assert_eq!(fmt_rate(999.0), "999");
        assert_eq!(fmt_rate(61.24), "61.2");
        assert_eq!(fmt_us(850.4), "850 us");
        assert_eq!(fmt_us(12_345.0), "12.3 ms");
    }
}
