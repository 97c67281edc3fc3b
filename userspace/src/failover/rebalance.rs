//! Address balance between the partners, applied to the lease table (the driver thread only).
//! The rules (target share, tolerance, triggers, allocation-boundary order) are the sans-IO
//! planner's, [`xdhcpd_failover::balance`]; this module feeds it the table's counts and records
//! and carries out its plan:
//!
//! * **grant** (primary): FREE -> BACKUP at once in the table (the primary stops using the
//!   address before the partner may), a BACKUP binding update queued, the records flushed;
//! * **reclaim** (primary): a FREE binding update ([`reclaim_binding`]) is queued and the record
//!   stays BACKUP until the partner acknowledges it (`apply_ack` then turns it FREE). A
//!   secondary that leased the address meanwhile rejects the update and its ACTIVE binding
//!   reaches us as usual, so no address is ever usable by both. Addresses with a reclaim in
//!   flight are neither planned again nor counted as BACKUP;
//! * **exhaustion**: the workers set a flag in the lease table when a pool's own free list is
//!   empty (`LeaseTable::take_exhausted`, a relaxed atomic, never a lock). The primary then
//!   reclaims at once in pools with no FREE address left; the secondary sends POOLREQ at once
//!   (at most every [`POOLREQ_MIN_GAP`]) instead of waiting for the hourly request.
//!
//! Everything here runs only in NORMAL with communications OK (the caller checks).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lease_store::{DirtySet, LeaseState, LeaseTable, Owner};
use xdhcpd_failover::balance::{self, AddrKind, PoolBalance, Trigger};
use xdhcpd_failover::{BindingSync, FailoverEngine, Role};

use super::table_store::{PoolScope, TableStore};
use xdhcpd_config::FailoverConfig;

/// How often the primary compares the counters with the target ("significantly off").
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A reclaim not acknowledged (nor rejected) within this time may be planned again (the
/// update was lost with a connection; a second FREE update for a BACKUP address is harmless).
const RECLAIM_TIMEOUT: Duration = Duration::from_secs(60);
/// The secondary's exhaustion POOLREQs are at least this far apart.
pub(crate) const POOLREQ_MIN_GAP: Duration = Duration::from_secs(5);

struct PoolEntry {
    id: u32,
    balance: PoolBalance,
}

/// What one balancing pass moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    pub granted: u32,
    pub reclaimed: u32,
}

/// Balancing state of the driver.
pub(crate) struct Rebalancer {
    role: Role,
    /// The relationship's pools (records written through `TableStore` stay inside them).
    scope: PoolScope,
    pools: Vec<PoolEntry>,
    /// Reclaims sent and not yet settled: address -> (when, pool id).
    reclaiming: HashMap<Ipv4Addr, (Instant, u32)>,
    next_check: Instant,
    last_poolreq: Option<Instant>,
    /// Addresses moved since start (granted to the backup, reclaims sent), for `/metrics`.
    pub(crate) total: Moved,
}

/// The percentage for a pool: load balancing forces 50 (spec); in a `dynamic-bootp` scope
/// `dynamic-bootp-backup-pct` when set; else the scope's value, else the relationship's.
pub(crate) fn pool_pct(cfg: &FailoverConfig, pool_id: u32) -> u8 {
    if cfg.split.is_some() {
        return 50;
    }
    let pool = cfg.pools.iter().find(|p| p.pool_id == pool_id);
    if let (Some(pct), Some(true)) = (cfg.dynamic_bootp_backup_pct, pool.map(|p| p.dynamic_bootp)) {
        return pct;
    }
    pool.and_then(|p| p.backup_pct).unwrap_or(cfg.backup_pct)
}

/// The balancer's view of the table's pools of this relationship (each pool's whole range: a
/// grown range is one). Another relationship's pools (N:1) are not ours to balance.
fn pool_entries(cfg: &FailoverConfig, table: &LeaseTable) -> Vec<PoolEntry> {
    table
        .pools()
        .iter()
        .filter(|p| cfg.pools.iter().any(|b| b.pool_id == p.id))
        .map(|p| PoolEntry {
            id: p.id,
            balance: PoolBalance {
                first: u32::from(p.first),
                last: u32::from(p.last),
                pct: pool_pct(cfg, p.id),
                boundary: cfg
                    .pools
                    .iter()
                    .find(|b| b.pool_id == p.id)
                    .and_then(|b| b.boundary)
                    .map(u32::from),
            },
        })
        .collect()
}

impl Rebalancer {
    pub(crate) fn new(cfg: &FailoverConfig, table: &LeaseTable, role: Role) -> Self {
        Rebalancer {
            role,
            scope: PoolScope::of(&cfg.pools),
            pools: pool_entries(cfg, table),
            reclaiming: HashMap::new(),
            next_check: Instant::now() + CHECK_EVERY,
            last_poolreq: None,
            total: Moved::default(),
        }
    }

    /// The table's pools changed (a reload added pools or grew ranges): balance over its
    /// pools from now on. Returns how many pools are new. Reclaims in flight stay tracked.
    pub(crate) fn learn_pools(&mut self, cfg: &FailoverConfig, table: &LeaseTable) -> usize {
        let next = pool_entries(cfg, table);
        self.scope = PoolScope::of(&cfg.pools);
        let added = next
            .iter()
            .filter(|n| !self.pools.iter().any(|p| p.id == n.id))
            .count();
        self.pools = next;
        // Compare with the target at the next tick, not in up to a second.
        self.next_check = Instant::now();
        added
    }

    /// The driver's tick in NORMAL with communications OK. `scheduled`: hourly, entering
    /// NORMAL (the caller's flag). Cheap when nothing is off: one atomic swap per tick, the
    /// pool counters once a second.
    pub(crate) fn tick(
        &mut self,
        now: u32,
        scheduled: bool,
        table: &LeaseTable,
        engine: &mut FailoverEngine,
        sync: &mut BindingSync<Instant>,
    ) -> Moved {
        match self.role {
            Role::Secondary => {
                if table.take_exhausted(Owner::Backup)
                    && self
                        .last_poolreq
                        .is_none_or(|t| t.elapsed() >= POOLREQ_MIN_GAP)
                {
                    self.last_poolreq = Some(Instant::now());
                    tracing::info!(
                        "failover: no BACKUP address left; asking the primary (POOLREQ)"
                    );
                    engine.request_pool_now(now);
                }
                Moved::default()
            }
            Role::Primary => {
                let mut moved = Moved::default();
                if scheduled {
                    moved = self.run(Trigger::Scheduled, now, table, engine, sync);
                }
                if table.take_exhausted(Owner::Primary) {
                    let m = self.run(Trigger::Exhausted, now, table, engine, sync);
                    if m.reclaimed > 0 {
                        tracing::info!(
                            "failover: pool exhausted: reclaiming {} address(es) from the backup",
                            m.reclaimed
                        );
                    }
                    moved.granted += m.granted;
                    moved.reclaimed += m.reclaimed;
                }
                if Instant::now() >= self.next_check {
                    self.next_check = Instant::now() + CHECK_EVERY;
                    let m = self.run(Trigger::Check, now, table, engine, sync);
                    moved.granted += m.granted;
                    moved.reclaimed += m.reclaimed;
                }
                moved
            }
        }
    }

    /// One balancing pass over every pool (primary). Exhausted passes touch only pools with
    /// no FREE address left.
    pub(crate) fn run(
        &mut self,
        trigger: Trigger,
        now: u32,
        table: &LeaseTable,
        engine: &mut FailoverEngine,
        sync: &mut BindingSync<Instant>,
    ) -> Moved {
        let mut moved = Moved::default();
        if self.role != Role::Primary {
            return moved;
        }
        self.settle(table);
        let mut inflight: HashMap<u32, usize> = HashMap::new();
        for (_, pool) in self.reclaiming.values() {
            *inflight.entry(*pool).or_default() += 1;
        }
        let mut dirty = DirtySet::new();
        for p in &self.pools {
            let Some(st) = table.pool_stats(p.id) else {
                continue;
            };
            let n = inflight.get(&p.id).copied().unwrap_or(0);
            // A reclaim in flight is as good as FREE (it will be, or the backup leased it).
            let backup = (st.backup as usize).saturating_sub(n);
            let free = st.free as usize + n;
            if trigger == Trigger::Exhausted && (st.free > 0 || backup == 0) {
                continue;
            }
            if balance::decide(free, backup, p.balance.pct, trigger) == balance::Move::Nothing {
                continue; // the common case: no record is read
            }
            let reclaiming = &self.reclaiming;
            let plan = balance::plan(&p.balance, free, backup, trigger, |a| {
                let ip = Ipv4Addr::from(a);
                let Some(s) = table.slot_of(ip) else {
                    return AddrKind::Other;
                };
                let l = table.read(s);
                match l.state {
                    LeaseState::Free if !l.is_quarantined() => AddrKind::Free,
                    LeaseState::Backup if !reclaiming.contains_key(&ip) => AddrKind::Backup,
                    _ => AddrKind::Other,
                }
            });
            let mut store = TableStore {
                table,
                dirty: &mut dirty,
                scope: &self.scope,
            };
            let at = Instant::now();
            for a in plan.grant {
                if sync.grant_to_backup(engine, now, at, &mut store, Ipv4Addr::from(a)) {
                    moved.granted += 1;
                }
            }
            for a in plan.reclaim {
                let ip = Ipv4Addr::from(a);
                if sync.reclaim(engine, now, at, &store, ip) {
                    self.reclaiming.insert(ip, (Instant::now(), p.id));
                    moved.reclaimed += 1;
                }
            }
        }
        if let Err(e) = table.flush_set(&mut dirty) {
            tracing::error!("failover: flushing backup pool grants failed: {e}");
        }
        self.total.granted = self.total.granted.wrapping_add(moved.granted);
        self.total.reclaimed = self.total.reclaimed.wrapping_add(moved.reclaimed);
        if moved != Moved::default() {
            tracing::info!(
                "failover: pool balance ({trigger:?}): {} address(es) granted to the backup, \
                 {} being reclaimed",
                moved.granted,
                moved.reclaimed
            );
        }
        moved
    }

    /// Forgets reclaims that are settled (the record is no longer BACKUP: acknowledged, or
    /// the backup's binding arrived) or timed out.
    fn settle(&mut self, table: &LeaseTable) {
        self.reclaiming.retain(|ip, (at, _)| {
            at.elapsed() < RECLAIM_TIMEOUT
                && table
                    .slot_of(*ip)
                    .is_some_and(|s| table.read(s).state == LeaseState::Backup)
        });
    }
}
