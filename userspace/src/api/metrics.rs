//! `GET /metrics`: Prometheus/OpenMetrics text (prometheus-client's encoder) made at scrape
//! time from what the daemon already keeps: each worker's own counters and latency
//! histogram (atomics it alone writes; the scraper only loads them, so a scrape never stalls
//! a worker), the XDP program's counter map (per RX queue), the lease table's per-pool counters,
//! the committer's flush histogram, the failover driver's status, the reload counters, the
//! alarms and the lease event log's counters.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::routes::{engine_totals, exhausted, utilisation};
use super::ApiState;
use crate::control::{FailoverStatus, Request as FoRequest};
use crate::server::latency::HistogramSnapshot;
use lease_store::LeaseState;

/// Draft-12 server states, for the failover state set.
const FAILOVER_STATES: &[&str] = &[
    "STARTUP",
    "NORMAL",
    "COMMUNICATIONS-INTERRUPTED",
    "PARTNER-DOWN",
    "POTENTIAL-CONFLICT",
    "RESOLUTION-INTERRUPTED",
    "CONFLICT-DONE",
    "RECOVER",
    "RECOVER-WAIT",
    "RECOVER-DONE",
    "PAUSED",
    "SHUTDOWN",
];

/// One scrape's values, taken before encoding.
#[derive(Debug)]
struct Scrape {
    counters: Vec<Family<u64>>,
    gauges: Vec<Family<f64>>,
    histograms: Vec<(&'static str, &'static str, HistogramSnapshot)>,
}

#[derive(Debug)]
struct Family<V> {
    name: &'static str,
    help: &'static str,
    rows: Vec<(Vec<(&'static str, String)>, V)>,
}

impl<V> Family<V> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            rows: Vec::new(),
        }
    }
    fn one(name: &'static str, help: &'static str, v: V) -> Self {
        let mut f = Self::new(name, help);
        f.rows.push((Vec::new(), v));
        f
    }
    fn add(&mut self, labels: Vec<(&'static str, String)>, v: V) {
        self.rows.push((labels, v));
    }
}

struct HistValue<'a>(&'a HistogramSnapshot);

/// `(bound, cumulative count)` to `(bound, count in this bucket alone)`.
fn per_bucket_counts(cumulative: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut below = 0;
    cumulative
        .iter()
        .map(|&(bound, cum)| {
            let n = cum.saturating_sub(below);
            below = below.max(cum);
            (bound, n)
        })
        .collect()
}

impl EncodeMetric for HistValue<'_> {
    fn encode(&self, mut e: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The snapshot's buckets are cumulative; the encoder sums per-bucket counts itself
        // (passing cumulative ones made every `_bucket` line a sum of sums, above `_count`).
        let per_bucket = per_bucket_counts(&self.0.buckets);
        e.encode_histogram::<NoLabelSet>(self.0.sum_seconds, self.0.count, &per_bucket, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.counters {
            let mut m = enc.encode_descriptor(f.name, f.help, None, MetricType::Counter)?;
            for (labels, v) in &f.rows {
                m.encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(v, None)?;
            }
        }
        for f in &self.gauges {
            let mut m = enc.encode_descriptor(f.name, f.help, None, MetricType::Gauge)?;
            for (labels, v) in &f.rows {
                m.encode_family(labels)?.encode_gauge(v)?;
            }
        }
        for (name, help, h) in &self.histograms {
            let m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            HistValue(h).encode(m)?;
        }
        Ok(())
    }
}

fn collect(s: &ApiState) -> Scrape {
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    let mut histograms = Vec::new();

    gauges.push(Family::one(
        "xdhcpd_uptime_seconds",
        "Seconds since the daemon started.",
        s.started.elapsed().as_secs_f64(),
    ));
    let mut info = Family::new(
        "xdhcpd_build_info",
        "Version of the running daemon (value 1).",
    );
    info.add(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("io", s.io.to_string()),
        ],
        1.0,
    );
    gauges.push(info);

    // XDP program counters, by RX queue (summed over the CPUs).
    if let Some(r) = &s.xdp {
        if let Ok(queues) = r.per_queue() {
            let mut f = Family::new(
                "xdhcpd_xdp_packets",
                "Frames counted by the XDP program, by RX queue and counter.",
            );
            for (q, vals) in queues.iter().enumerate() {
                for (k, name) in xdhcpd_common::Counter::ALL {
                    f.add(
                        vec![("queue", q.to_string()), ("counter", name.to_string())],
                        vals[k as usize],
                    );
                }
            }
            counters.push(f);
        }
    }

    // The unknown-client drop in XDP (`[limits] xdp-drop-unknown`).
    if let Some(k) = &s.known_macs {
        gauges.push(Family::one(
            "xdhcpd_xdp_known_macs",
            "Hardware addresses in the XDP map of known clients (registrations, hosts).",
            k.entries() as f64,
        ));
        gauges.push(Family::one(
            "xdhcpd_xdp_known_macs_overflow",
            "1 when the known MACs did not fit the XDP map ([limits] xdp-known-macs): the XDP \
             drop of unknown clients is off until a restart.",
            if k.overflowed() { 1.0 } else { 0.0 },
        ));
        gauges.push(Family::one(
            "xdhcpd_xdp_unknown_drop_on",
            "1 while the XDP program drops unknown clients' DISCOVER and REQUEST.",
            if k.is_on() { 1.0 } else { 0.0 },
        ));
    }

    let mut refused = Family::new(
        "xdhcpd_api_refused",
        "Control API requests refused by rule, by reason (server_file_over_tcp: a registration \
         import or export by path through [api] listen).",
    );
    refused.add(
        vec![("reason", "server_file_over_tcp".to_string())],
        s.refused
            .server_file_over_tcp
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    counters.push(refused);

    // Per queue (one worker per RX queue).
    let mut rx = Family::new(
        "xdhcpd_queue_received",
        "DHCP messages handed to the engine, by queue (worker).",
    );
    let mut tx = Family::new("xdhcpd_queue_tx_frames", "Frames transmitted, by queue.");
    let mut full = Family::new(
        "xdhcpd_queue_tx_ring_full",
        "Replies dropped on a full TX ring, by queue.",
    );
    let mut frames = Family::new(
        "xdhcpd_queue_frame_drops",
        "Frames refused by the frame parser (headers, checksums), by queue.",
    );
    let mut batches = Family::new("xdhcpd_queue_batches", "Receive batches, by queue.");
    let mut latency = HistogramSnapshot::default();
    for (q, (w, e)) in s.workers.iter().zip(&s.engine_stats).enumerate() {
        let l = vec![("queue", q.to_string())];
        rx.add(l.clone(), e.received.load(Relaxed));
        tx.add(l.clone(), w.tx_frames.load(Relaxed));
        full.add(l.clone(), w.tx_ring_full.load(Relaxed));
        frames.add(l.clone(), w.frame_drops.load(Relaxed));
        batches.add(l, w.batches.load(Relaxed));
        w.latency.add_to(&mut latency);
    }
    counters.extend([rx, tx, full, frames, batches]);
    histograms.push((
        "xdhcpd_server_latency_seconds",
        "Server latency from taking a batch off the socket to handing its replies to send \
         (after the commit flush in ack mode); one batch in 16 is timed.",
        latency,
    ));

    // DHCP messages and drops.
    let e = engine_totals(s);
    let mut msg_in = Family::new(
        "xdhcpd_dhcp_messages_in",
        "DHCP messages received, by type.",
    );
    for (t, v) in [
        ("discover", e.discovers),
        ("request", e.requests),
        ("release", e.releases),
        ("decline", e.declines),
        ("inform", e.informs),
        ("leasequery", e.leasequeries),
    ] {
        msg_in.add(vec![("type", t.into())], v);
    }
    let mut msg_out = Family::new("xdhcpd_dhcp_messages_out", "DHCP messages sent, by type.");
    for (t, v) in [
        ("offer", e.offers),
        ("ack", e.acks),
        ("nak", e.naks),
        ("bootreply", e.bootp_replies),
        ("leaseactive", e.leasequery_active),
        ("leaseunassigned", e.leasequery_unassigned),
        ("leaseunknown", e.leasequery_unknown),
    ] {
        msg_out.add(vec![("type", t.into())], v);
    }
    let mut drops = Family::new(
        "xdhcpd_dhcp_drops",
        "DHCP messages not answered, by reason (engine counters).",
    );
    for (r, v) in [
        ("malformed", e.malformed),
        ("not_request", e.not_request),
        ("no_subnet", e.no_subnet),
        ("pool_exhausted", e.pool_exhausted),
        ("other_server", e.other_server),
        ("unknown_client", e.unknown_client),
        ("no_room", e.no_room),
        ("failover", e.failover_dropped),
        ("leasequery_dropped", e.leasequery_dropped),
        ("leasequery_not_allowed", e.leasequery_not_allowed),
        ("untrusted_relay", e.untrusted_relay),
        ("relay_info_from_client", e.relay_info_from_client_dropped),
        ("claims_refused", e.claims_refused),
        ("unknown_refused", e.unknown_refused),
        ("lease_cap_circuit", e.lease_cap_circuit_refused),
        ("lease_cap_remote_id", e.lease_cap_remote_id_refused),
    ] {
        drops.add(vec![("reason", r.into())], v);
    }
    counters.push(Family::one(
        "xdhcpd_dhcp_received",
        "DHCP messages handed to the engine (all queues).",
        e.received,
    ));
    counters.extend([msg_in, msg_out, drops]);
    // Relay health check: the workers' counters and the table's view of each relay.
    if let Some(rhc) = &s.relay_health {
        let mut served = Family::new(
            "xdhcpd_rhc_discovers",
            "DISCOVERs the relay health check judged, by outcome: served (answered for the \
             partner: the relay seems cut off from it), too_early (interrupted relay, client \
             secs below rhc-elapsed-time), not_tracked (relay table full).",
        );
        served.add(vec![("outcome", "served".into())], e.rhc_served_for_partner);
        served.add(vec![("outcome", "too_early".into())], e.rhc_too_early);
        served.add(vec![("outcome", "not_tracked".into())], e.rhc_not_tracked);
        counters.push(served);
        counters.push(Family::one(
            "xdhcpd_rhc_takeovers",
            "Times a relay was judged unable to reach the failover partner (takeovers started).",
            rhc.takeovers(),
        ));
        let now = crate::clock::unix_now();
        let views = rhc.snapshot(now);
        let mut by_state = Family::new(
            "xdhcpd_rhc_relays",
            "Relays the relay health check follows, by state (ok, suspect: DISCOVERs for the \
             partner not yet followed by a REQUEST naming it, interrupted: answered for the \
             partner).",
        );
        for st in [
            xdhcpd_failover::RelayState::Ok,
            xdhcpd_failover::RelayState::Suspect,
            xdhcpd_failover::RelayState::Interrupted,
        ] {
            let n = views.iter().filter(|v| v.state == st).count();
            by_state.add(vec![("state", st.name().into())], n as f64);
        }
        gauges.push(by_state);
    }
    counters.push(Family::one(
        "xdhcpd_allocation_failures",
        "DISCOVERs for which no free address was found (pool exhausted).",
        e.pool_exhausted,
    ));

    // Leases and pools (the table's maintained counters: atomics).
    let mut leases = Family::new("xdhcpd_leases", "Lease records by pool and state.");
    let mut size = Family::new("xdhcpd_pool_addresses", "Addresses in the pool.");
    let mut util = Family::new(
        "xdhcpd_pool_utilisation_ratio",
        "(offered + active + reserved) / addresses, by pool.",
    );
    let mut exh = Family::new(
        "xdhcpd_pool_exhausted",
        "1 when the pool has no free, expired or released address left.",
    );
    for p in s.table.all_stats() {
        let pool = p.id.to_string();
        for st in LeaseState::ALL {
            let v = match st {
                LeaseState::Free => p.free,
                LeaseState::Offered => p.offered,
                LeaseState::Active => p.active,
                LeaseState::Expired => p.expired,
                LeaseState::Released => p.released,
                LeaseState::Declined => p.declined,
                LeaseState::Abandoned => p.abandoned,
                LeaseState::Backup => p.backup,
                LeaseState::Reserved => p.reserved,
            };
            leases.add(
                vec![("pool", pool.clone()), ("state", st.as_str().into())],
                v as f64,
            );
        }
        size.add(vec![("pool", pool.clone())], p.total as f64);
        util.add(vec![("pool", pool.clone())], utilisation(&p) / 100.0);
        exh.add(vec![("pool", pool)], f64::from(u8::from(exhausted(&p))));
    }
    gauges.extend([leases, size, util, exh]);

    // Commit.
    if let Some(c) = &s.committer {
        counters.push(Family::one(
            "xdhcpd_commit_flushes",
            "Group-commit flushes of the lease file (ack mode).",
            c.flushes.load(Relaxed),
        ));
        counters.push(Family::one(
            "xdhcpd_commit_flush_errors",
            "Failed group-commit flushes.",
            c.flush_errors.load(Relaxed),
        ));
        histograms.push((
            "xdhcpd_commit_flush_seconds",
            "Duration of each group-commit flush of the lease file.",
            c.flush_latency.snapshot(),
        ));
    }
    counters.push(Family::one(
        "xdhcpd_lease_flush_failures",
        "Failed flushes of the lease table (any writer).",
        s.table.flush_failures(),
    ));
    gauges.push(Family::one(
        "xdhcpd_storage_failed",
        "1 while a lease-file flush has failed and no rewrite has covered it (replies that \
         depend on it are withheld), else 0.",
        if s.table.storage_failed() { 1.0 } else { 0.0 },
    ));

    // Reloads.
    if let Some(r) = s.config.reload_stats() {
        let mut f = Family::new(
            "xdhcpd_reloads",
            "Configuration reloads (SIGHUP, POST /v1/reload), by outcome.",
        );
        f.add(vec![("outcome", "accepted".into())], r.accepted);
        f.add(vec![("outcome", "refused".into())], r.refused);
        counters.push(f);
        gauges.push(Family::one(
            "xdhcpd_config_generation",
            "Generation of the configuration served (0: the one from start).",
            r.generation as f64,
        ));
        gauges.push(Family::one(
            "xdhcpd_reload_last_refused",
            "1 when the last reload was refused (the running configuration was kept).",
            f64::from(u8::from(r.last_error.is_some())),
        ));
    }
    gauges.push(Family::one(
        "xdhcpd_lease_spare_addresses",
        "Spare records left in the lease file for pools and ranges a reload adds.",
        f64::from(s.table.spare()),
    ));

    // Alarms (kept by the main loop's checks).
    if let Some(a) = &s.alarms {
        let mut raised = Family::new("xdhcpd_alarms_raised", "Times each alarm was raised.");
        let mut active = Family::new(
            "xdhcpd_alarms_active",
            "Alarms active now, by alarm (pools: how many pools are in that state).",
        );
        for (name, r, g) in [
            (
                "pool-utilisation",
                &a.pool_utilisation_raised,
                Some(&a.pool_utilisation_active),
            ),
            (
                "pool-exhausted",
                &a.pool_exhausted_raised,
                Some(&a.pool_exhausted_active),
            ),
            (
                "partner-unreachable",
                &a.partner_unreachable_raised,
                Some(&a.partner_unreachable_active),
            ),
            (
                "partner-mismatch",
                &a.partner_mismatch_raised,
                Some(&a.partner_mismatch_active),
            ),
            ("flush-failure", &a.flush_failures_raised, None),
            (
                "relay-interrupted",
                &a.relay_interrupted_raised,
                Some(&a.relay_interrupted_active),
            ),
        ] {
            raised.add(vec![("alarm", name.into())], r.load(Relaxed));
            if let Some(g) = g {
                active.add(vec![("alarm", name.into())], g.load(Relaxed) as f64);
            }
        }
        counters.push(raised);
        gauges.push(active);
    }

    // Lease event log.
    if let Some((st, dropped)) = &s.events {
        counters.push(Family::one(
            "xdhcpd_event_log_written",
            "Lease events written to the event log.",
            st.written.load(Relaxed),
        ));
        counters.push(Family::one(
            "xdhcpd_event_log_dropped",
            "Changed leases not handed to the event log writer (its queue was full).",
            dropped.load(Relaxed),
        ));
        counters.push(Family::one(
            "xdhcpd_event_log_write_errors",
            "Failed writes of the event log.",
            st.write_errors.load(Relaxed),
        ));
        counters.push(Family::one(
            "xdhcpd_event_log_rotations",
            "Event log files rotated (by size or age).",
            st.rotations.load(Relaxed),
        ));
        if let Some(n) = &st.nats {
            gauges.push(Family::one(
                "xdhcpd_nats_connected",
                "1 while the lease event publisher is connected to NATS.",
                f64::from(u8::from(n.connected.load(Relaxed))),
            ));
            gauges.push(Family::one(
                "xdhcpd_nats_spool_depth",
                "Lease events in the NATS spool not yet acknowledged by JetStream.",
                n.depth.load(Relaxed) as f64,
            ));
            gauges.push(Family::one(
                "xdhcpd_nats_spool_depth_bytes",
                "Bytes of the lease events in the NATS spool not yet acknowledged.",
                n.depth_bytes.load(Relaxed) as f64,
            ));
            for (name, help, v) in [
                (
                    "xdhcpd_nats_published",
                    "Lease events acknowledged by JetStream (duplicates included).",
                    &n.published,
                ),
                (
                    "xdhcpd_nats_messages",
                    "NATS messages acknowledged by JetStream (each carries up to \
                     events-per-message lease events).",
                    &n.messages,
                ),
                (
                    "xdhcpd_nats_duplicates",
                    "Re-sent lease events JetStream already had (acked as duplicate).",
                    &n.duplicates,
                ),
                (
                    "xdhcpd_nats_spooled",
                    "Lease events appended to the NATS spool.",
                    &n.spooled,
                ),
                (
                    "xdhcpd_nats_spool_dropped",
                    "Lease events not spooled for NATS because the spool was full.",
                    &n.spool_dropped,
                ),
                (
                    "xdhcpd_nats_spool_errors",
                    "Failed NATS spool writes or reads, and unreadable spool lines skipped.",
                    &n.spool_errors,
                ),
                (
                    "xdhcpd_nats_publish_errors",
                    "Batches of lease events not acknowledged by JetStream (sent again).",
                    &n.publish_errors,
                ),
                (
                    "xdhcpd_nats_connect_errors",
                    "Failed connections to NATS (or stream not available).",
                    &n.connect_errors,
                ),
                (
                    "xdhcpd_nats_disconnects",
                    "Established connections to NATS that were lost.",
                    &n.disconnects,
                ),
            ] {
                counters.push(Family::one(name, help, v.load(Relaxed)));
            }
        }
    }

    // Bulk leasequery (RFC 6926).
    if let Some(b) = &s.bulk_leasequery {
        let b = b.snapshot();
        let mut f = Family::new(
            "xdhcpd_bulk_leasequery",
            "Bulk leasequery over TCP, by event: connections (allowed), connections_refused (not \
             in leasequery-allow or over max-connections), connections_failed (bad frame, idle, \
             peer not reading), queries, active / unassigned (answers sent), done (queries \
             answered completely), malformed, not_allowed, terminated; RFC 7724 active \
             leasequery: subscriptions, catchup_sent (records sent before CatchUpComplete), \
             catchup_complete, changes_sent (live changes sent), cut_off (subscribers that fell \
             behind, cut off), connection_active (queries on a subscribed connection), \
             tls_refused (DHCPTLS answered TLSConnectionRefused), tls_accepted (DHCPTLS \
             answered Success), tls_established / tls_failed (TLS handshakes completed / failed: \
             bad or missing client certificate, requestor refused ours, timeout), tls_required \
             (queries in clear refused NotAllowed under tls = \"require\"), changes_queued / changes_lost \
             (binding changes the change hook put into / could not put into a subscriber's \
             queue).",
        );
        for (e, v) in [
            ("connections", b.connections),
            ("connections_refused", b.connections_refused),
            ("connections_failed", b.connections_failed),
            ("queries", b.queries),
            ("active", b.active),
            ("unassigned", b.unassigned),
            ("done", b.done),
            ("malformed", b.malformed),
            ("not_allowed", b.not_allowed),
            ("terminated", b.terminated),
            ("subscriptions", b.subscriptions),
            ("catchup_sent", b.catchup_sent),
            ("catchup_complete", b.catchup_complete),
            ("changes_sent", b.changes_sent),
            ("cut_off", b.cut_off),
            ("connection_active", b.connection_active),
            ("tls_refused", b.tls_refused),
            ("tls_accepted", b.tls_accepted),
            ("tls_established", b.tls_established),
            ("tls_failed", b.tls_failed),
            ("tls_required", b.tls_required),
            ("changes_queued", b.changes_queued),
            ("changes_lost", b.changes_lost),
        ] {
            f.add(vec![("event", e.into())], v);
        }
        counters.push(f);
        gauges.push(Family::one(
            "xdhcpd_active_leasequery_subscribers",
            "RFC 7724 active leasequery connections subscribed now.",
            b.subscribers as f64,
        ));
    }
    // Reconfiguration (FORCERENEW).
    if let Some(h) = &s.reconfigure {
        let c = &h.stats;
        let mut fr = Family::new(
            "xdhcpd_reconfigure",
            "Server-initiated reconfiguration (FORCERENEW), by event: sent, retried, succeeded, \
             aborted, refused_no_auth, ignored, not_bound, send_failed.",
        );
        for (e, v) in [
            ("sent", &c.sent),
            ("retried", &c.retried),
            ("succeeded", &c.succeeded),
            ("aborted", &c.aborted),
            ("refused_no_auth", &c.refused_no_auth),
            ("ignored", &c.ignored),
            ("not_bound", &c.not_bound),
            ("send_failed", &c.send_failed),
        ] {
            fr.add(vec![("event", e.into())], v.load(Relaxed));
        }
        counters.push(fr);
        let mut q = Family::new(
            "xdhcpd_reconfigure_bindings",
            "Bindings waiting for admission (queued) and being reconfigured (active).",
        );
        q.add(
            vec![("state", "queued".into())],
            h.progress.queued.load(Relaxed) as f64,
        );
        q.add(
            vec![("state", "active".into())],
            h.progress.active.load(Relaxed) as f64,
        );
        gauges.push(q);
        if let Some(v6) = &h.v6 {
            let c = &v6.stats;
            let mut f = Family::new(
                "xdhcpd_reconfigure6",
                "DHCPv6 Reconfigure (RFC 8415), by event: sent, retried, succeeded, aborted, \
                 refused_no_auth (no reconfigure key), ignored, not_bound, send_failed.",
            );
            for (e, v) in [
                ("sent", &c.sent),
                ("retried", &c.retried),
                ("succeeded", &c.succeeded),
                ("aborted", &c.aborted),
                ("refused_no_auth", &c.refused_no_auth),
                ("ignored", &c.ignored),
                ("not_bound", &c.not_bound),
                ("send_failed", &c.send_failed),
            ] {
                f.add(vec![("event", e.into())], v.load(Relaxed));
            }
            counters.push(f);
            let mut q = Family::new(
                "xdhcpd_reconfigure6_clients",
                "DHCPv6 clients waiting for admission (queued) and being reconfigured (active).",
            );
            q.add(
                vec![("state", "queued".into())],
                v6.progress.queued.load(Relaxed) as f64,
            );
            q.add(
                vec![("state", "active".into())],
                v6.progress.active.load(Relaxed) as f64,
            );
            gauges.push(q);
            let e6 = v6.server.stats().snapshot();
            let mut f = Family::new(
                "xdhcpd_reconfigure6_client_events",
                "Messages of DHCPv6 clients being reconfigured (engine counters): renew_zeroed \
                 (Request/Renew/Rebind answered with lifetimes 0, binding deleted), \
                 solicit_dropped; keys_sent: Replies with a reconfigure key.",
            );
            for (r, v) in [
                ("renew_zeroed", e6.reconf_zeroed),
                ("solicit_dropped", e6.reconf_solicit_dropped),
                ("keys_sent", e6.reconf_keys),
            ] {
                f.add(vec![("event", r.into())], v);
            }
            counters.push(f);
        }
    }
    let mut rc = Family::new(
        "xdhcpd_reconfigure_client_events",
        "Messages of bindings being reconfigured (engine counters): REQUEST NAKed, DISCOVER \
         dropped, RELEASE/DECLINE; each deletes the binding. keys_sent: ACKs with an RFC 6704 \
         reconfigure key.",
    );
    for (r, v) in [
        ("nak", e.reconfiguring_naked),
        ("discover_dropped", e.reconfiguring_dropped),
        ("release_decline", e.reconfiguring_ended),
        ("keys_sent", e.reconfigure_keys_sent),
    ] {
        rc.add(vec![("event", r.into())], v);
    }
    counters.push(rc);
    // Failover (the driver answers from its own thread within its tick).
    let statuses: Vec<FailoverStatus> = s
        .failover
        .iter()
        .filter_map(|(_, h)| h(FoRequest::FailoverStatus).status)
        .collect();
    if !statuses.is_empty() {
        failover_metrics(&statuses, &mut counters, &mut gauges);
    }
    if let Some(f) = &s.registrations_pg {
        let f = f.snapshot();
        gauges.push(Family::one(
            "xdhcpd_registrations_pg_connected",
            "1 while the registration follower is connected to PostgreSQL.",
            f64::from(u8::from(f.connected)),
        ));
        gauges.push(Family::one(
            "xdhcpd_registrations_pg_last_applied_seq",
            "Sequence number of the last registration change applied from PostgreSQL.",
            f.last_applied_seq as f64,
        ));
        gauges.push(Family::one(
            "xdhcpd_registrations_pg_head_seq",
            "Latest registration change sequence number seen in PostgreSQL.",
            f.head_seq as f64,
        ));
        gauges.push(Family::one(
            "xdhcpd_registrations_pg_lag_changes",
            "Registration changes in PostgreSQL not applied yet (as of the last contact).",
            f.lag_changes as f64,
        ));
        if let Some(secs) = f.seconds_since_contact {
            gauges.push(Family::one(
                "xdhcpd_registrations_pg_seconds_since_contact",
                "Seconds since the last successful exchange with PostgreSQL.",
                secs,
            ));
        }
        counters.push(Family::one(
            "xdhcpd_registrations_pg_changes_applied",
            "Registration changes applied from PostgreSQL.",
            f.changes_applied,
        ));
        counters.push(Family::one(
            "xdhcpd_registrations_pg_rejected",
            "Registrations from PostgreSQL refused as invalid.",
            f.rejected,
        ));
        counters.push(Family::one(
            "xdhcpd_registrations_pg_full_loads",
            "Full loads of the registrations from PostgreSQL.",
            f.full_loads,
        ));
    }
    Scrape {
        counters,
        gauges,
        histograms,
    }
}

/// The failover families, one series per relationship; with several relationships (N:1)
/// every series carries a `relationship` label (one relationship keeps the unlabelled series).
fn failover_metrics(
    all: &[FailoverStatus],
    counters: &mut Vec<Family<u64>>,
    gauges: &mut Vec<Family<f64>>,
) {
    let labels = |f: &FailoverStatus, mut extra: Vec<(&'static str, String)>| {
        if all.len() > 1 {
            extra.insert(0, ("relationship", f.relationship.clone()));
        }
        extra
    };
    let mut own = Family::new(
        "xdhcpd_failover_state",
        "Our failover state (1 for the current one).",
    );
    let mut partner = Family::new(
        "xdhcpd_failover_partner_state",
        "The partner's failover state as last heard (1 for the current one).",
    );
    let mut connected = Family::new(
        "xdhcpd_failover_connected",
        "1 while the failover connection is up and the partner's state known.",
    );
    let mut pending = Family::new(
        "xdhcpd_failover_updates_pending",
        "Binding updates queued for the partner, not yet sent.",
    );
    let mut unacked = Family::new(
        "xdhcpd_failover_updates_unacked",
        "Binding updates sent, not yet acknowledged.",
    );
    let mut latency = Family::new(
        "xdhcpd_failover_update_ack_latency_seconds",
        "Mean time from queueing a binding update to the partner's BNDACK.",
    );
    let mut sent = Family::new(
        "xdhcpd_failover_bndupd_sent",
        "Binding transactions sent to the partner.",
    );
    let mut acked = Family::new(
        "xdhcpd_failover_bndack_received",
        "Binding acknowledgements received from the partner.",
    );
    let mut received = Family::new(
        "xdhcpd_failover_bndupd_received",
        "Binding updates received from the partner.",
    );
    let mut moves = Family::new(
        "xdhcpd_failover_rebalance_moves",
        "Addresses moved by pool balancing: granted to the backup, reclaims sent.",
    );
    let mut absent = Family::new(
        "xdhcpd_failover_updates_not_in_pool",
        "Binding updates refused because the address is in none of the receiver's pools (one \
         partner reloaded a new pool or range before the other, or, N:1, it belongs to another \
         relationship): by us, by the partner.",
    );
    let mut outdated = Family::new(
        "xdhcpd_failover_updates_outdated",
        "Binding updates refused as outdated binding information (reject reason 15; after a \
         partition both partners re-send what the other lacks): by us, by the partner.",
    );
    let mut mismatch = Family::new(
        "xdhcpd_failover_version_mismatch",
        "1 when the partner's implementation or version (its vendor-class) differs from ours.",
    );
    let mut rtt = Family::new(
        "xdhcpd_failover_heartbeat_rtt_seconds",
        "Round trip to the partner over the failover connection (kernel TCP estimate).",
    );
    let mut resync_done = Family::new(
        "xdhcpd_failover_resync_bindings",
        "Binding resynchronisation in progress: bindings acknowledged (sending) or \
         received (receiving).",
    );
    let mut resync_ratio = Family::new(
        "xdhcpd_failover_resync_progress_ratio",
        "Share of the bindings a resynchronisation we answer covers that the partner \
         acknowledged (0..1).",
    );
    let mut held = Family::new(
        "xdhcpd_failover_failback_held",
        "1 while the failback hold (failback-hold) keeps this server PARTNER-DOWN.",
    );
    let mut events = Family::new(
        "xdhcpd_failover_events",
        "Failover events recorded since start (ctl failover events).",
    );
    for f in all {
        for st in FAILOVER_STATES {
            own.add(
                labels(f, vec![("state", (*st).into())]),
                f64::from(u8::from(f.state == *st)),
            );
            partner.add(
                labels(f, vec![("state", (*st).into())]),
                f64::from(u8::from(f.partner_state.as_deref() == Some(*st))),
            );
        }
        connected.add(labels(f, vec![]), f64::from(u8::from(f.communicating)));
        pending.add(labels(f, vec![]), f.bindings_pending as f64);
        unacked.add(labels(f, vec![]), f.unacked_updates as f64);
        if let Some(ms) = f.mean_update_ack_latency_ms {
            latency.add(labels(f, vec![]), ms / 1000.0);
        }
        sent.add(labels(f, vec![]), f.bndupd_sent);
        acked.add(labels(f, vec![]), f.bndack_received);
        received.add(labels(f, vec![]), f.bndupd_received);
        moves.add(
            labels(f, vec![("direction", "granted".into())]),
            f.rebalance_granted,
        );
        moves.add(
            labels(f, vec![("direction", "reclaimed".into())]),
            f.rebalance_reclaimed,
        );
        absent.add(
            labels(f, vec![("refused_by", "us".into())]),
            f.refused_not_in_pool,
        );
        absent.add(
            labels(f, vec![("refused_by", "partner".into())]),
            f.partner_refused_not_in_pool,
        );
        outdated.add(
            labels(f, vec![("refused_by", "us".into())]),
            f.refused_outdated,
        );
        outdated.add(
            labels(f, vec![("refused_by", "partner".into())]),
            f.partner_refused_outdated,
        );
        mismatch.add(labels(f, vec![]), f64::from(u8::from(f.version_mismatch)));
        if let Some(ms) = f.partner_rtt_ms {
            rtt.add(labels(f, vec![]), ms / 1000.0);
        }
        if let Some(r) = &f.resync {
            resync_done.add(
                labels(f, vec![("direction", r.direction.clone())]),
                r.done as f64,
            );
            if let Some(p) = r.percent {
                resync_ratio.add(labels(f, vec![]), p / 100.0);
            }
        }
        held.add(
            labels(f, vec![]),
            f64::from(u8::from(f.failback_held_until.is_some())),
        );
        events.add(labels(f, vec![]), f.events_total);
    }
    gauges.extend([own, partner, connected, pending, unacked, mismatch, held]);
    if all.iter().any(|f| f.partner_rtt_ms.is_some()) {
        gauges.push(rtt);
    }
    if all.iter().any(|f| f.resync.is_some()) {
        gauges.push(resync_done);
    }
    if all
        .iter()
        .any(|f| f.resync.as_ref().is_some_and(|r| r.percent.is_some()))
    {
        gauges.push(resync_ratio);
    }
    if all.iter().any(|f| f.mean_update_ack_latency_ms.is_some()) {
        gauges.push(latency);
    }
    counters.extend([sent, acked, received, moves, absent, outdated, events]);
}

/// The `/metrics` text.
pub fn render(s: &ApiState) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(collect(s)));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

#[cfg(test)]
mod histogram_tests {
    use super::*;
    use crate::server::latency::LatencyHistogram;
    use std::time::Duration;

    /// The `_bucket` lines of one histogram family in OpenMetrics text: (le, value).
    fn bucket_lines(text: &str, name: &str) -> Vec<(String, u64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, v) = rest.split_once("\"} ")?;
                Some((le.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn metrics_latency_histogram_buckets_are_cumulative_once_and_end_at_the_count() {
        let h = LatencyHistogram::default();
        for us in [5, 10, 40, 300, 700, 700, 3_000, 2_000_000] {
            h.record(Duration::from_micros(us));
        }
        let scrape = Scrape {
            counters: Vec::new(),
            gauges: Vec::new(),
            histograms: vec![("xdhcpd_test_seconds", "test", h.snapshot())],
        };
        let mut reg = Registry::default();
        reg.register_collector(Box::new(scrape));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        let b = bucket_lines(&text, "xdhcpd_test_seconds");
        assert_eq!(b.len(), 15, "{text}");
        // Samples at or below each bound: 10 us: 2, 50 us: 3, 500 us: 4, 1 ms: 6, 5 ms: 7, +Inf: 8.
        let at = |le: &str| b.iter().find(|(l, _)| l == le).map(|(_, v)| *v);
        assert_eq!(at("1e-5").or(at("0.00001")), Some(2), "{text}");
        assert_eq!(at("0.001"), Some(6), "{text}");
        assert_eq!(at("0.005"), Some(7), "{text}");
        assert_eq!(at("+Inf"), Some(8), "{text}");
        assert!(text.contains("xdhcpd_test_seconds_count 8"), "{text}");
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "{text}");
    }
}
