//! Alarms: conditions an operator must hear about, logged as `WARN`/`ERROR` events with an
//! `alarm` field (raised once when the condition starts, `alarm cleared` when it ends) and
//! counted in [`AlarmCounters`] for metrics. Checked by the daemon's main loop every few
//! seconds, off the packet path: pool utilisation above `[alarms] pool-utilisation-pct`, pool
//! exhausted, failover partner unreachable for `partner-unreachable-secs`, partner on a
//! different implementation version, lease-table flush failures, a relay that seems unable to
//! reach the failover partner (relay health check; raised per relay, reminded every
//! `rhc-warning-interval` while it lasts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lease_store::{LeaseTable, PoolStats};
use serde::Serialize;
use xdhcpd_config::{AlarmsConfig, Config};

use crate::control::Request;
use crate::failover::Failover;

/// Times each alarm was raised, and how many are active now (for `/metrics`).
#[derive(Debug, Default, Serialize)]
pub struct AlarmCounters {
    pub pool_utilisation_raised: AtomicU64,
    pub pool_utilisation_active: AtomicU64,
    pub pool_exhausted_raised: AtomicU64,
    pub pool_exhausted_active: AtomicU64,
    pub partner_unreachable_raised: AtomicU64,
    pub partner_unreachable_active: AtomicU64,
    pub partner_mismatch_raised: AtomicU64,
    pub partner_mismatch_active: AtomicU64,
    pub flush_failures_raised: AtomicU64,
    pub relay_interrupted_raised: AtomicU64,
    pub relay_interrupted_active: AtomicU64,
}

/// Alarm state kept by the main loop.
pub struct Alarms {
    counters: Arc<AlarmCounters>,
    started: Instant,
    next_check: Instant,
    /// Pool id -> (above threshold, exhausted).
    pools: HashMap<u32, (bool, bool)>,
    /// Per failover relationship (by name): (partner unreachable, version mismatch) raised.
    partners: HashMap<String, (bool, bool)>,
    flush_failures_seen: u64,
    /// Relays (relay health check) whose alarm is raised.
    relays: HashMap<std::net::Ipv4Addr, bool>,
}

/// How often the conditions are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Used share of a pool in percent: everything not free for allocation (own or partner's
/// free) out of its addresses.
pub fn utilisation_pct(p: &PoolStats) -> u64 {
    if p.total == 0 {
        return 0;
    }
    let free = p.free + p.backup + p.expired + p.released;
    (p.total.saturating_sub(free)) * 100 / p.total
}

impl Alarms {
    /// No alarm raised yet; the first check runs at once.
    pub fn new(_cfg: &AlarmsConfig) -> Self {
        Alarms {
            counters: Arc::default(),
            started: Instant::now(),
            next_check: Instant::now(),
            pools: HashMap::new(),
            partners: HashMap::new(),
            flush_failures_seen: 0,
            relays: HashMap::new(),
        }
    }

    /// The counters (shared: the metrics exporter reads them).
    pub fn counters(&self) -> Arc<AlarmCounters> {
        self.counters.clone()
    }

    /// Looks at every condition if `CHECK_EVERY` has passed; `cfg` is the configuration
    /// served (a reload changes the thresholds).
    pub fn check(
        &mut self,
        table: &LeaseTable,
        cfg: &Config,
        failover: &[Failover],
        rhc: Option<&xdhcpd_failover::RelayHealth>,
        now: u32,
    ) {
        if Instant::now() < self.next_check {
            return;
        }
        self.next_check = Instant::now() + CHECK_EVERY;
        if let Some(r) = rhc {
            self.check_relays(r, now);
        }
        self.check_pools(&table.all_stats(), cfg);
        let f = table.flush_failures();
        if f > self.flush_failures_seen {
            self.counters
                .flush_failures_raised
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                alarm = "flush-failure",
                "ALARM flush failure: {} lease-table flush(es) failed since the last check ({f} \
                 since start); replies that need them are held until a flush succeeds",
                f - self.flush_failures_seen
            );
            self.flush_failures_seen = f;
        }
        // One pair of alarms per relationship (N:1: each partner on its own).
        let several = failover.len() > 1;
        for fo in failover {
            let r = fo.request(Request::FailoverStatus);
            if let Some(st) = r.status {
                let since = now.saturating_sub(st.last_contact);
                let limit = cfg.alarms.partner_unreachable_secs;
                // Never in contact: counted from our start.
                let unreachable = !st.communicating
                    && if st.last_contact == 0 {
                        self.started.elapsed().as_secs() >= u64::from(limit)
                    } else {
                        since >= limit
                    };
                let detail = format!(
                    "failover partner {}{} (state {}, last contact {})",
                    st.peer,
                    if several {
                        format!(" of relationship {:?}", st.relationship)
                    } else {
                        String::new()
                    },
                    st.state,
                    if st.last_contact == 0 {
                        "never".to_string()
                    } else {
                        format!("{since} s ago")
                    }
                );
                let (raised_unreachable, raised_mismatch) =
                    self.partners.entry(fo.name().to_string()).or_default();
                edge(
                    raised_unreachable,
                    unreachable,
                    "partner-unreachable",
                    &format!("partner unreachable: {detail}"),
                    &self.counters.partner_unreachable_raised,
                    &self.counters.partner_unreachable_active,
                );
                edge(
                    raised_mismatch,
                    st.version_mismatch,
                    "partner-mismatch",
                    &format!(
                        "partner runs {} while we run {}",
                        st.partner_version.as_deref().unwrap_or("?"),
                        st.version
                    ),
                    &self.counters.partner_mismatch_raised,
                    &self.counters.partner_mismatch_active,
                );
            }
        }
    }

    /// Relay health check: one alarm per relay that seems unable to reach the partner (we
    /// answer its clients for the partner), cleared when the partner is heard again.
    fn check_relays(&mut self, rhc: &xdhcpd_failover::RelayHealth, now: u32) {
        use xdhcpd_failover::RelayState;
        let views = rhc.snapshot(now);
        // Reminders while it lasts (the first warning is the alarm itself).
        for v in rhc.due_warnings(now) {
            if self.relays.get(&v.relay).copied().unwrap_or(false) {
                tracing::warn!(
                    alarm = "relay-interrupted",
                    "relay {} still seems unable to reach the failover partner: answered {} \
                     DISCOVER(s) for it since {} s ago",
                    v.relay,
                    v.served,
                    now.saturating_sub(v.takeover_since)
                );
            }
        }
        for v in &views {
            let active = self.relays.entry(v.relay).or_default();
            let what = if v.state == RelayState::Interrupted {
                format!(
                    "relay {} seems unable to reach the failover partner: {} DISCOVER(s) for the \
                     partner since {} s ago and no REQUEST naming it (last {}); answering its \
                     clients for the partner",
                    v.relay,
                    v.unanswered,
                    now.saturating_sub(v.first_unanswered),
                    if v.partner_heard == 0 {
                        "never".to_string()
                    } else {
                        format!("{} s ago", now.saturating_sub(v.partner_heard))
                    }
                )
            } else {
                format!(
                    "relay {} reaches the failover partner again (or sends nothing for it); \
                     {} DISCOVER(s) were answered for the partner",
                    v.relay, v.served
                )
            };
            edge(
                active,
                v.state == RelayState::Interrupted,
                "relay-interrupted",
                &what,
                &self.counters.relay_interrupted_raised,
                &self.counters.relay_interrupted_active,
            );
        }
    }

    fn check_pools(&mut self, stats: &[PoolStats], cfg: &Config) {
        let threshold = u64::from(cfg.alarms.pool_utilisation_pct);
        for p in stats {
            let pct = utilisation_pct(p);
            let name = cfg
                .pool(p.id)
                .map(|(s, pool)| format!("{}-{} (subnet {})", pool.first, pool.last, s.net))
                .unwrap_or_else(|| format!("id {}", p.id));
            let (high, exhausted) = self.pools.entry(p.id).or_default();
            edge(
                high,
                pct >= threshold,
                "pool-utilisation",
                &format!(
                    "pool {name} is {pct}% used (threshold {threshold}%): {} active, {} offered, \
                     {} free",
                    p.active,
                    p.offered,
                    p.free + p.backup + p.expired + p.released
                ),
                &self.counters.pool_utilisation_raised,
                &self.counters.pool_utilisation_active,
            );
            edge(
                exhausted,
                p.total > 0 && p.free + p.backup + p.expired + p.released == 0,
                "pool-exhausted",
                &format!("pool {name} is exhausted: no free address"),
                &self.counters.pool_exhausted_raised,
                &self.counters.pool_exhausted_active,
            );
        }
    }
}

/// Raises (logs, counts) or clears one alarm when its condition changes.
fn edge(
    active: &mut bool,
    now: bool,
    alarm: &str,
    what: &str,
    raised: &AtomicU64,
    gauge: &AtomicU64,
) {
    if now == *active {
        return;
    }
    *active = now;
    if now {
        raised.fetch_add(1, Ordering::Relaxed);
        gauge.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(alarm, "ALARM {what}");
    } else {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
        tracing::info!(alarm, "alarm cleared: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pct: u8) -> Config {
        let text = format!(
            "[server]\ninterface = \"eth0\"\n[alarms]\npool-utilisation-pct = {pct}\n\
             [[subnet]]\ncidr = \"10.0.0.0/24\"\npool = [{{ range = \"10.0.0.10-10.0.0.19\" }}]\n"
        );
        xdhcpd_config::parse(&text, "t.toml").expect("config")
    }

    fn pool(active: u64, free: u64) -> PoolStats {
        PoolStats {
            id: 0,
            total: 10,
            active,
            free,
            ..PoolStats::default()
        }
    }

    #[test]
    fn alarms_pool_utilisation_raised_once_and_cleared() {
        let c = cfg(80);
        let mut a = Alarms::new(&c.alarms);
        a.check_pools(&[pool(5, 5)], &c);
        assert_eq!(
            a.counters.pool_utilisation_raised.load(Ordering::Relaxed),
            0
        );
        a.check_pools(&[pool(8, 2)], &c);
        a.check_pools(&[pool(9, 1)], &c);
        assert_eq!(
            a.counters.pool_utilisation_raised.load(Ordering::Relaxed),
            1
        );
        assert_eq!(
            a.counters.pool_utilisation_active.load(Ordering::Relaxed),
            1
        );
        assert_eq!(a.counters.pool_exhausted_raised.load(Ordering::Relaxed), 0);
        a.check_pools(&[pool(10, 0)], &c);
        assert_eq!(a.counters.pool_exhausted_raised.load(Ordering::Relaxed), 1);
        assert_eq!(a.counters.pool_exhausted_active.load(Ordering::Relaxed), 1);
        a.check_pools(&[pool(3, 7)], &c);
        assert_eq!(
            a.counters.pool_utilisation_active.load(Ordering::Relaxed),
            0
        );
        assert_eq!(a.counters.pool_exhausted_active.load(Ordering::Relaxed), 0);
        assert_eq!(
            a.counters.pool_utilisation_raised.load(Ordering::Relaxed),
            1
        );
    }
}
