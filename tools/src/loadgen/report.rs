//! The end-of-run report: per-phase counts, rates and latency percentiles,
//! the loadgen's own figures (so a bench can tell when the loadgen is the
//! limit), as a human table and as JSON.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::scenario::Scenario;
use super::scenario::{Phase, PhaseCounts, PhaseStats};
use super::shared::{ReconfCounts, Shared, ThreadReport};
use super::Config;

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    pub samples: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub name: &'static str,
    /// From the first thread entering the phase to the last one stopping new starts.
    pub duration_s: f64,
    /// From the phase start to its last answer (the window of `answered_per_s`).
    pub answer_window_s: f64,
    /// Exchanges started, answered, dropped...: the phase's counts as they
    /// are, at this level of the JSON.
    #[serde(flatten)]
    pub counts: PhaseCounts,
    /// Started exchanges per second.
    pub offered_per_s: f64,
    /// Answered exchanges per second (over `answer_window_s`).
    pub answered_per_s: f64,
    /// ACKed exchanges per second (over `answer_window_s`).
    pub acked_per_s: f64,
    /// drops / sent, percent.
    pub loss_pct: f64,
    /// Open-loop starts the sender could not make in time.
    pub rate_deficit: u64,
    /// Times no client was free for a new exchange.
    pub starved: u64,
    /// sent == answered + drops (every started exchange is accounted for).
    pub accounted: bool,
    pub latency: Latency,
}

#[derive(Clone, Debug, Serialize)]
pub struct ThreadSummary {
    pub port: String,
    pub tx_packets: u64,
    pub rx_frames: u64,
    pub rx_other: u64,
    pub rx_stale: u64,
    pub forwarded: u64,
    pub forward_lost: u64,
    pub kernel_rx_drops: u64,
    /// Share of the thread's time spent in loop iterations that moved packets.
    pub busy_pct: f64,
    pub tx_pps: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadgenSelf {
    /// All frames sent / wall time of the run.
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub max_busy_pct: f64,
    /// Set when the loadgen itself probably limited the result.
    pub limited: bool,
    pub note: String,
    /// `--self-test`: frames per second the sender alone reached.
    pub self_test_tx_pps: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DuplicateExample {
    pub address: Ipv4Addr,
    pub client: u32,
    pub other_client: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct DuplicateExample6 {
    pub address: Ipv6Addr,
    pub client: u32,
    pub other_client: u32,
}

/// Clients whose address at the end lies in one `--pool` range.
#[derive(Clone, Debug, Serialize)]
pub struct PoolCount {
    pub pool: String,
    pub clients: u64,
}

/// `--scenario forcerenew`: what the FORCERENEWs did.
#[derive(Clone, Debug, Serialize)]
pub struct ReconfReport {
    #[serde(flatten)]
    pub counts: ReconfCounts,
    /// From the first FORCERENEW taken to the last reconfiguration finished.
    pub renumber_s: f64,
    /// Reconfigurations finished (completed + renewals ACKed) per second over `renumber_s`.
    pub clients_per_s: f64,
    /// Bound clients minus distinct addresses: addresses held by two clients at the end.
    pub addresses_held_twice: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub io: &'static str,
    /// Why AF_XDP was not used, when it fell back.
    pub io_fallback_reason: Option<String>,
    pub interface: String,
    pub scenario: &'static str,
    pub clients: u32,
    pub queues: u32,
    pub rate_target: Option<u64>,
    pub concurrency: Option<u32>,
    pub timeout_ms: u64,
    pub retries: u8,
    pub relay: Option<Ipv4Addr>,
    /// DHCPv6 runs: the IAs asked for ("na", "pd", "both"); absent for DHCPv4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcpv6: Option<&'static str>,
    /// DHCPv6 relayed runs: the relay's address and the link-address it sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay6: Option<(Ipv6Addr, Ipv6Addr)>,
    pub phases: Vec<PhaseReport>,
    /// Clients holding an address at the end, and how many distinct addresses they hold.
    pub clients_bound: usize,
    pub distinct_addresses: usize,
    pub duplicate_examples: Vec<DuplicateExample>,
    /// DHCPv6: clients holding a delegated prefix at the end, distinct prefixes they hold,
    /// and addresses / prefixes handed to two clients at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_prefixes: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicate_examples6: Vec<DuplicateExample6>,
    /// `--pool`: clients ending in each range, and bound clients in none of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_other: Option<u64>,
    /// `--scenario forcerenew`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconfigure: Option<ReconfReport>,
    pub threads: Vec<ThreadSummary>,
    pub loadgen: LoadgenSelf,
    pub wall_s: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

impl PhaseReport {
    pub fn from_stats(phase: Phase, s: &PhaseStats) -> Self {
        let d = s.end_ns.saturating_sub(s.start_ns) as f64 / 1e9;
        let h = &s.latency;
        let c = &s.counts;
        let w = s.last_answer_ns.saturating_sub(s.start_ns) as f64 / 1e9;
        PhaseReport {
            name: phase.name(),
            duration_s: d,
            answer_window_s: w,
            counts: s.counts.clone(),
            offered_per_s: rate(c.sent, d),
            answered_per_s: rate(c.answered, w),
            acked_per_s: rate(c.acks, w),
            loss_pct: if c.sent > 0 {
                100.0 * c.drops as f64 / c.sent as f64
            } else {
                0.0
            },
            rate_deficit: s.rate_deficit,
            starved: s.starved,
            accounted: c.sent == c.answered + c.drops,
            latency: Latency {
                p50_us: us(h.percentile(50.0)),
                p90_us: us(h.percentile(90.0)),
                p99_us: us(h.percentile(99.0)),
                p99_9_us: us(h.percentile(99.9)),
                max_us: us(h.max()),
                mean_us: h.mean() / 1000.0,
                samples: h.count(),
            },
        }
    }
}

impl Report {
    pub(crate) fn build(
        cfg: &Config,
        sh: &Shared,
        io: &'static str,
        io_note: Option<String>,
        threads: Vec<ThreadReport>,
    ) -> Report {
        let e = &cfg.engine;
        let mut merged = vec![PhaseStats::default(); Phase::ALL.len()];
        let mut blast = (0u64, 0u64);
        let mut dups = Vec::new();
        let mut dups6 = Vec::new();
        let mut summaries = Vec::new();
        let mut wall_ns = 0u64;
        let (mut tx_all, mut rx_all) = (0u64, 0u64);
        let mut reconf = ReconfCounts::default();
        for t in &threads {
            reconf.merge(&t.totals.reconf);
            for (m, p) in merged.iter_mut().zip(&t.phases) {
                m.merge(p);
            }
            if let Some((n, ns)) = t.blast {
                blast.0 += n;
                blast.1 = blast.1.max(ns);
            }
            let tt = &t.totals;
            for &(address, client, other_client) in &tt.duplicate_examples {
                dups.push(DuplicateExample {
                    address,
                    client,
                    other_client,
                });
            }
            for &(address, client, other_client) in &tt.duplicate_examples6 {
                dups6.push(DuplicateExample6 {
                    address,
                    client,
                    other_client,
                });
            }
            wall_ns = wall_ns.max(tt.wall_ns);
            tx_all += tt.tx_packets;
            rx_all += tt.rx_frames;
            let wall = tt.wall_ns as f64 / 1e9;
            summaries.push(ThreadSummary {
                port: tt.port.clone(),
                tx_packets: tt.tx_packets,
                rx_frames: tt.rx_frames,
                rx_other: tt.rx_other,
                rx_stale: tt.rx_stale,
                forwarded: tt.forwarded,
                forward_lost: tt.forward_lost,
                kernel_rx_drops: tt.kernel_rx_drops,
                busy_pct: if tt.wall_ns > 0 {
                    100.0 * tt.busy_ns as f64 / tt.wall_ns as f64
                } else {
                    0.0
                },
                tx_pps: rate(tt.tx_packets, wall),
            });
        }
        let phases: Vec<PhaseReport> = Phase::ALL
            .iter()
            .zip(&merged)
            .filter(|(_, s)| s.is_used())
            .map(|(p, s)| {
                let mut r = PhaseReport::from_stats(*p, s);
                if e.v6.is_some() {
                    r.name = p.name6();
                }
                r
            })
            .collect();
        let wall_s = wall_ns as f64 / 1e9;
        let max_busy = summaries.iter().map(|s| s.busy_pct).fold(0.0, f64::max);
        let self_test_tx_pps = e.self_test.then(|| rate(blast.0, blast.1 as f64 / 1e9));

        // Is the loadgen the limit? Open loop: it could not start exchanges at
        // the target rate. Either mode: its threads were busy nearly all the time.
        let mut notes = Vec::new();
        let mut limited = false;
        if let (Some(target), Some(main)) = (
            e.rate,
            phases.iter().find(|p| !p.name.starts_with("warmup-")),
        ) {
            let deficit = main.rate_deficit;
            if main.offered_per_s < 0.97 * target as f64 || deficit > 0 {
                limited = true;
                notes.push(format!(
                    "offered {:.0}/s of a {target}/s target ({deficit} starts missed): the loadgen could not keep up",
                    main.offered_per_s
                ));
            }
            if main.starved > 0 {
                notes.push(format!(
                    "{} times no client was free to start an exchange: raise --clients",
                    main.starved
                ));
            }
        }
        if max_busy > 90.0 && !e.self_test {
            limited = true;
            notes.push(format!(
                "a loadgen thread was busy {max_busy:.0}% of the time: it may be the limit (add --queues / CPUs)"
            ));
        }
        let lost: u64 = summaries.iter().map(|s| s.forward_lost).sum();
        if lost > 0 {
            notes.push(format!(
                "{lost} replies lost between loadgen threads (inbox full)"
            ));
        }
        let kdrops: u64 = summaries.iter().map(|s| s.kernel_rx_drops).sum();
        if kdrops > 0 {
            notes.push(format!(
                "{kdrops} frames dropped by the kernel before the loadgen read them (its rx ring / buffer was full): those count as server drops here but are the loadgen's"
            ));
        }
        if notes.is_empty() {
            notes.push("no sign that the loadgen limited this run".into());
        }
        let clients_bound = sh.book.bound_count();
        let distinct_addresses = sh.book.distinct_bound_addresses();
        let (pools, pool_other) = pool_counts(&e.pools, sh, e.clients);
        let reconfigure = (e.scenario == Scenario::ForceRenew).then(|| {
            let secs = reconf.last_ns.saturating_sub(reconf.first_ns) as f64 / 1e9;
            let finished = reconf.completed + reconf.renew_acks;
            ReconfReport {
                renumber_s: secs,
                clients_per_s: rate(finished, secs),
                addresses_held_twice: (clients_bound - distinct_addresses.min(clients_bound))
                    as u64,
                counts: reconf,
            }
        });
        Report {
            tool: "xdhcp-loadgen",
            io,
            io_fallback_reason: io_note,
            interface: cfg.ifname.clone(),
            scenario: if e.v6.is_some() {
                e.scenario.name6()
            } else {
                e.scenario.name()
            },
            clients: e.clients,
            queues: cfg.queues,
            rate_target: e.rate,
            concurrency: e.concurrency,
            timeout_ms: e.timeout_ns / 1_000_000,
            retries: e.retries,
            relay: e.relay,
            dhcpv6: e.v6.map(|v| v.ia_name()),
            relay6: e
                .v6
                .and_then(|v| v.relay)
                .map(|r| (r.relay_addr, r.link_addr)),
            phases,
            clients_bound,
            distinct_addresses,
            duplicate_examples: dups,
            distinct_prefixes: e
                .v6
                .filter(|v| v.ia_pd)
                .map(|_| sh.book_pd.distinct_bound_addresses()),
            duplicate_examples6: dups6,
            pools,
            pool_other,
            reconfigure,
            threads: summaries,
            loadgen: LoadgenSelf {
                tx_pps: rate(tx_all, wall_s),
                rx_pps: rate(rx_all, wall_s),
                max_busy_pct: max_busy,
                limited,
                note: notes.join("; "),
                self_test_tx_pps,
            },
            wall_s,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "xdhcp-loadgen: scenario {} | io {} on {} | {} clients, {} queue(s){}{}{}",
            self.scenario,
            self.io,
            self.interface,
            self.clients,
            self.queues,
            self.rate_target
                .map_or(String::new(), |r| format!(", target {r}/s")),
            self.concurrency
                .map_or(String::new(), |c| format!(", concurrency {c}")),
            match (self.relay, self.relay6) {
                (Some(g), _) => format!(", relayed via {g}"),
                (None, Some((r, l))) => format!(", relayed via {r} (link {l})"),
                _ => String::new(),
            },
        );
        if let Some(ia) = self.dhcpv6 {
            let _ = writeln!(
                o,
                "DHCPv6: IA {ia}; exchange = SARR (Solicit .. Reply) or Renew .. Reply"
            );
        }
        if !self.phases.is_empty() {
            self.phase_rows(&mut o);
        }
        for d in &self.duplicate_examples6 {
            let _ = writeln!(
                o,
                "  DUPLICATE {} given to client {} while bound to client {}",
                d.address, d.client, d.other_client
            );
        }
        for d in &self.duplicate_examples {
            let _ = writeln!(
                o,
                "  DUPLICATE {} ACKed to client {} while bound to client {}",
                d.address, d.client, d.other_client
            );
        }
        for (i, t) in self.threads.iter().enumerate() {
            let _ = writeln!(
                o,
                "thread {i}: {} | tx {} ({:.0} pps) rx {} | stale {} other {} fwd {} lost {} kernel-drops {} | busy {:.0}%",
                t.port,
                t.tx_packets,
                t.tx_pps,
                t.rx_frames,
                t.rx_stale,
                t.rx_other,
                t.forwarded,
                t.forward_lost,
                t.kernel_rx_drops,
                t.busy_pct
            );
        }
        if let Some(r) = &self.io_fallback_reason {
            let _ = writeln!(o, "AF_XDP not used: {r}");
        }
        let _ = writeln!(
            o,
            "loadgen: tx {:.0} pps, rx {:.0} pps{}; {}",
            self.loadgen.tx_pps,
            self.loadgen.rx_pps,
            self.loadgen
                .self_test_tx_pps
                .map_or(String::new(), |r| format!(", self-test max tx {r:.0} pps")),
            self.loadgen.note
        );
        o
    }

    fn phase_rows(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "{:<12} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>5} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}{}",
            "phase", "secs", "sent", "answered", "drops", "naks", "dups", "ok", "offered/s",
            "answered/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us",
            if self.dhcpv6.is_some() { " status incompl relay" } else { "" }
        );
        for p in &self.phases {
            if p.counts.sent == 0 && p.counts.releases > 0 {
                let _ = writeln!(o, "{:<12} releases sent: {}", p.name, p.counts.releases);
                continue;
            }
            let _ = writeln!(
                o,
                "{:<12} {:>8.2} {:>10} {:>10} {:>10} {:>8} {:>8} {:>5} {:>11.0} {:>11.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0}{}",
                p.name,
                p.duration_s,
                p.counts.sent,
                p.counts.answered,
                p.counts.drops,
                p.counts.naks,
                p.counts.duplicates,
                if p.accounted { "yes" } else { "NO" },
                p.offered_per_s,
                p.answered_per_s,
                p.latency.p50_us,
                p.latency.p90_us,
                p.latency.p99_us,
                p.latency.p99_9_us,
                p.latency.max_us,
                if self.dhcpv6.is_some() {
                    format!(
                        " {:>6} {:>7} {:>5}",
                        p.counts.status_errors, p.counts.incomplete, p.counts.relay_errors
                    )
                } else {
                    String::new()
                },
            );
        }
        let _ = writeln!(
            o,
            "addresses: {} clients bound, {} distinct addresses; duplicates: {}",
            self.clients_bound,
            self.distinct_addresses,
            self.phases.iter().map(|p| p.counts.duplicates).sum::<u64>()
        );
        if let Some(n) = self.distinct_prefixes {
            let _ = writeln!(o, "delegated prefixes: {n} distinct prefixes held");
        }
        for p in &self.pools {
            let _ = writeln!(o, "pool {}: {} clients", p.pool, p.clients);
        }
        if let Some(n) = self.pool_other {
            let _ = writeln!(o, "in no --pool: {n} bound clients");
        }
        if let Some(r) = &self.reconfigure {
            let c = &r.counts;
            let _ = writeln!(
                o,
                "forcerenew: {} received, {} verified (refused: {} bad digest, {} no key, {} unauthenticated, {} other auth, {} replayed; {} ignored)",
                c.forcerenews, c.verified, c.bad_digest, c.no_key, c.unauthenticated, c.unsupported, c.replayed, c.ignored
            );
            let _ = writeln!(
                o,
                "reconfigure: {} started, renew NAKed {} / ACKed {}, {} completed ({} moved) in {:.2} s ({:.0} clients/s); lost {}, unfinished {}, not reached {}, addresses held twice {}",
                c.started, c.renew_naks, c.renew_acks, c.completed, c.moved, r.renumber_s, r.clients_per_s, c.lost, c.unfinished, c.not_reached, r.addresses_held_twice
            );
        }
    }
}

/// Bound clients per `--pool` range, and those in none.
fn pool_counts(
    pools: &[(Ipv4Addr, u8)],
    sh: &Shared,
    clients: u32,
) -> (Vec<PoolCount>, Option<u64>) {
    if pools.is_empty() {
        return (Vec::new(), None);
    }
    let mask = |len: u8| {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    };
    let mut counts = vec![0u64; pools.len()];
    let mut other = 0u64;
    for c in 0..clients {
        let Some(a) = sh.book.bound(c) else { continue };
        let a = u32::from(a);
        match pools
            .iter()
            .position(|(net, len)| a & mask(*len) == u32::from(*net) & mask(*len))
        {
            Some(i) => counts[i] += 1,
            None => other += 1,
        }
    }
    let list = pools
        .iter()
        .zip(counts)
        .map(|((net, len), clients)| PoolCount {
            pool: format!("{net}/{len}"),
            clients,
        })
        .collect();
    (list, Some(other))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phase's counts stand at the phase's own level of the JSON, in the
    /// order they always had: xtask and scripts read them there by name.
    #[test]
    fn report_json_phase_counts_at_the_phase_level_in_order() {
        let mut s = PhaseStats::default();
        s.counts.sent = 7;
        s.counts.rx_replies = 5;
        s.starved = 2;
        let json = serde_json::to_string(&PhaseReport::from_stats(Phase::Dora, &s))
            .expect("a phase report serializes");
        let keys = [
            "name",
            "duration_s",
            "answer_window_s",
            "sent",
            "answered",
            "acks",
            "naks",
            "drops",
            "duplicates",
            "offers",
            "retransmits",
            "unsendable",
            "bad_acks",
            "releases",
            "tx_packets",
            "rx_replies",
            "offered_per_s",
            "answered_per_s",
            "acked_per_s",
            "loss_pct",
            "rate_deficit",
            "starved",
            "accounted",
            "latency",
        ];
        let mut last = 0;
        for k in keys {
            let at = json
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no {k:?} in {json}"));
            assert!(at >= last, "{k:?} out of order in {json}");
            last = at;
        }
        assert!(json.contains("\"sent\":7,"), "{json}");
        assert!(json.contains("\"rx_replies\":5,"), "{json}");
        assert!(json.contains("\"starved\":2,"), "{json}");
    }
}
