//! Configuration of one failover relationship: the values, their defaults, and the checks
//! that refuse values the protocol cannot work with.

use crate::policy::hba_from_split;
use crate::types::Role;

/// Configuration of one failover relationship. All times in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Primary or secondary of the relationship; must differ between the partners and match
    /// the persisted role (see [`StartError::RoleSwapped`]).
    pub role: Role,
    /// relationship-name; must be identical on both partners.
    pub relationship_name: String,
    /// Maximum client lead time (the secondary uses the primary's from CONNECT).
    pub mclt: u32,
    /// Secondary: a CONNECT whose MCLT is below this is refused (`InvalidMclt`), so a
    /// partner (or whoever holds its connection) cannot shrink the lead time that protects
    /// the pair's leases. 0 (the default): the smaller of `mclt` and 300 s.
    pub partner_mclt_min: u32,
    /// Secondary: a CONNECT whose MCLT is above this is refused: an MCLT of days would
    /// keep PARTNER-DOWN from using the partner's addresses. 0 (the default): the larger of
    /// `mclt` and 1 day.
    pub partner_mclt_max: u32,
    /// BNDUPDs we accept unacknowledged (advertised), and our own cap on sending.
    pub max_unacked_bndupd: u32,
    /// tSend: a CONTACT goes out when nothing was sent for this long.
    pub poll_interval: u32,
    /// tReceive: silence after which the connection is dropped (advertised as receive-timer).
    pub poll_timeout: u32,
    /// Move from COMMUNICATIONS-INTERRUPTED to PARTNER-DOWN by itself after `safe_period`.
    pub use_safe_period: bool,
    /// Time in COMMUNICATIONS-INTERRUPTED before the automatic move to PARTNER-DOWN.
    pub safe_period: u32,
    /// Potential expiration = now + desired * factor / 1000.
    pub lease_period_factor_permille: u32,
    /// Load balancing (primary): buckets `0..split` are the primary's (ISC `split`); None =
    /// no load balancing (the primary owns every bucket).
    pub split: Option<u16>,
    /// Explicit HBA (primary), overrides `split`.
    pub hba: Option<[u8; 32]>,
    /// In NORMAL, answer a partner's client anyway (DISCOVER, INFORM, SELECTING/INIT-REBOOT
    /// REQUEST, BOOTP) once its `secs` field exceeds this; 0 = never (ISC `load balance max seconds`).
    pub load_balance_max_secs: u16,
    /// Percentage of available addresses the primary grants the secondary on POOLREQ.
    pub backup_pct: u8,
    /// T2 = T1 + rebind_limit when serving the partner's client; 0 = off. When set, the
    /// partner's clients' RENEWs are not answered in NORMAL (they rebind and reach the
    /// partner: [`crate::DropReason::PartnersRenew`]).
    pub rebind_limit: u32,
    /// Failback hold (flap guard), seconds; 0 = off. In PARTNER-DOWN, the step back to NORMAL
    /// once the returning partner has recovered (it is RECOVER-DONE) waits until we have been
    /// PARTNER-DOWN this long *and* the partner has been reachable without a break this long
    /// (a link that keeps dropping never completes it). Meanwhile we keep serving everyone
    /// and the partner only renews. The operator ends it early with
    /// [`FailoverEngine::failback`](crate::FailoverEngine::failback).
    pub failback_hold: u32,
    /// STARTUP lasts at least this long when the partner cannot be reached.
    pub startup_timeout: u32,
    /// When true (the safe default) a server that cannot reach its partner leaves STARTUP on
    /// timeout only into states that cannot cause a duplicate (PARTNER-DOWN, RECOVER,
    /// RECOVER-WAIT, RECOVER-DONE); otherwise it waits for the partner. When false it resumes
    /// its previous state like ISC dhcpd (the draft's "reasons to go to previous state").
    pub startup_needs_partner: bool,
    /// A primary with no persisted failover state that cannot reach its partner before the
    /// startup timeout goes PARTNER-DOWN and serves (spec: "a main whose partner has never
    /// been seen starts in PARTNER-DOWN"). Unsafe if its database was lost: then set
    /// `failover_recover`.
    pub fresh_primary_partner_down: bool,
    /// `failover-recover`: the database was restored from a copy taken at this time: start
    /// in RECOVER, pull everything (UPDREQALL), wait MCLT from this time.
    pub failover_recover: Option<u32>,
    /// CONNECT/CONNECTACK whose time differs more than this from ours is refused (ISC: 60).
    pub max_time_skew: u32,
    /// The secondary re-sends POOLREQ this often in NORMAL.
    pub pool_request_interval: u32,
    /// `last_operational` is persisted this often.
    pub heartbeat_interval: u32,
    /// Our vendor-class, sent in CONNECT/CONNECTACK; defaults to
    /// [`XDHCPD_VENDOR_PREFIX`] + crate version.
    pub vendor_class: String,
    /// Binding transactions packed into one BNDUPD (draft-12 6.3), within the 2048-byte
    /// message limit. Only used with a partner whose vendor-class says it is xdhcpd: ISC
    /// dhcpd refuses a repeated option, so every other partner gets one per message.
    pub max_bindings_per_bndupd: usize,
    /// A lease counts as ended only this many seconds after its end, for every failover rule
    /// (accepting a partner's EXPIRED/FREE over our ACTIVE, the expiry sweeper, counting MCLT
    /// before reusing an address): it absorbs clock offsets between the partners.
    pub expiry_grace: u32,
}

/// Default [`Config::expiry_grace`]: well above NTP-disciplined clock offsets.
pub const DEFAULT_EXPIRY_GRACE: u32 = 30;

impl Config {
    /// Defaults for `role` in relationship `relationship_name`: MCLT 3600 s, 100 unacked
    /// BNDUPDs, poll 10 s / timeout 60 s, safe period 4 h, lease-period factor 1.5, no load
    /// balancing, backup_pct 50.
    pub fn new(role: Role, relationship_name: &str) -> Self {
        Config {
            role,
            relationship_name: relationship_name.to_string(),
            mclt: 3600,
            partner_mclt_min: 0,
            partner_mclt_max: 0,
            max_unacked_bndupd: 100,
            poll_interval: 10,
            poll_timeout: 60,
            use_safe_period: true,
            safe_period: 4 * 3600,
            lease_period_factor_permille: 1500,
            split: None,
            hba: None,
            load_balance_max_secs: 3,
            backup_pct: 50,
            rebind_limit: 0,
            failback_hold: 0,
            startup_timeout: 10,
            startup_needs_partner: true,
            fresh_primary_partner_down: true,
            failover_recover: None,
            max_time_skew: 60,
            pool_request_interval: 3600,
            heartbeat_interval: 30,
            vendor_class: format!("{XDHCPD_VENDOR_PREFIX}{}", env!("CARGO_PKG_VERSION")),
            max_bindings_per_bndupd: 64,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
        }
    }

    /// Checks values that would make the protocol misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, why: &'static str| Err(ConfigError { field, why });
        if self.relationship_name.is_empty() || self.relationship_name.len() > 255 {
            return bad("relationship_name", "must be 1..=255 bytes");
        }
        if self.mclt == 0 {
            return bad("mclt", "must be > 0");
        }
        let (lo, hi) = self.partner_mclt_bounds();
        if lo > hi {
            return bad("partner_mclt_min", "must be at most partner_mclt_max");
        }
        if self.max_unacked_bndupd == 0 {
            return bad("max_unacked_bndupd", "must be >= 1");
        }
        if self.max_bindings_per_bndupd == 0 {
            return bad("max_bindings_per_bndupd", "must be >= 1");
        }
        if self.poll_interval == 0 || self.poll_timeout <= self.poll_interval {
            return bad(
                "poll_timeout",
                "must exceed poll_interval, which must be > 0",
            );
        }
        if self.use_safe_period && self.safe_period == 0 {
            return bad("safe_period", "must be > 0 when use_safe_period");
        }
        if self.lease_period_factor_permille < 1000 {
            return bad("lease_period_factor", "must be >= 1.0");
        }
        if self.split.is_some_and(|s| s > 256) {
            return bad("split", "must be 0..=256");
        }
        if self.backup_pct > 100 {
            return bad("backup_pct", "must be 0..=100");
        }
        if self.expiry_grace >= self.mclt {
            return bad("expiry_grace", "must be below mclt");
        }
        if self.heartbeat_interval == 0 || self.pool_request_interval == 0 {
            return bad("heartbeat_interval", "intervals must be > 0");
        }
        Ok(())
    }

    /// The MCLTs a secondary accepts from the primary's CONNECT, defaults applied (see
    /// [`Config::partner_mclt_min`], [`Config::partner_mclt_max`]).
    pub fn partner_mclt_bounds(&self) -> (u32, u32) {
        let lo = match self.partner_mclt_min {
            0 => self.mclt.min(300),
            v => v,
        };
        let hi = match self.partner_mclt_max {
            0 => self.mclt.max(86_400),
            v => v,
        };
        (lo, hi)
    }

    /// The rules a [`crate::BindingSync`] applies to this server's records.
    pub fn store_rules(&self) -> crate::StoreRules {
        crate::StoreRules {
            role: self.role,
            expiry_grace: self.expiry_grace,
        }
    }

    /// The HBA the primary sends (bit set = primary's bucket, ISC convention).
    pub fn primary_hba(&self) -> [u8; 32] {
        if let Some(h) = self.hba {
            h
        } else {
            hba_from_split(self.split.unwrap_or(256))
        }
    }
}

/// A configuration value the engine cannot work with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failover configuration: {field} {why}")]
pub struct ConfigError {
    /// The offending field's name (as in [`Config`], or its config-file spelling).
    pub field: &'static str,
    /// What the field must be.
    pub why: &'static str,
}

/// Our vendor-class starts with this; a partner whose vendor-class does too takes BNDUPDs
/// with several binding transactions.
pub const XDHCPD_VENDOR_PREFIX: &str = "xdhcpd-";

/// Why the engine cannot start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// [`Config::validate`] refused the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The persisted state was written in the other role (e.g. a primary's configuration over
    /// the secondary's lease file). Resuming would run the pair with two primaries or two
    /// secondaries, each believing the other's pool and state are its own.
    #[error(
        "the stored failover state was written by the {stored} of this relationship, but this \
         server is configured as the {configured}"
    )]
    RoleSwapped {
        /// The role recorded in the persisted state.
        stored: Role,
        /// The role in [`Config::role`].
        configured: Role,
    },
}
