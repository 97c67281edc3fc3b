//! xdhcpd-failover: a sans-IO implementation of the DHCP failover protocol
//! (draft-ietf-dhc-failover-12, as ISC dhcpd 4.4 speaks it) with RFC 3074 load balancing.
//!
//! * [`codec`]: messages and options, a streaming decoder;
//! * [`engine`]: the failover endpoint state machine ([`FailoverEngine`]);
//! * [`policy`]: the per-packet [`FailoverPolicy`] (who answers, which address may be used,
//!   the MCLT lease rule) and its lock-free publication cell [`PolicyCell`];
//! * [`table`]: binding-level rules (accepting a partner's update, acknowledgements, reclaims);
//! * [`store`]: lease records and the [`BindingStore`] rules both the daemon and the
//!   simulation run (what to send, what a partner's update or ack does to a record);
//! * [`balance`]: address balance between the partners (how many, which addresses move);
//! * [`persist`]: the fixed-layout persisted state;
//! * [`relay_health`]: the relay health check (a relay cut off from the partner).
//!
//! Times are `u32` Unix seconds everywhere (the wire unit).

#![deny(missing_docs)]

pub mod balance;
pub mod codec;
pub mod engine;
pub mod persist;
pub mod policy;
pub mod relay_health;
pub mod store;
pub mod table;
pub mod types;

pub use engine::{
    backup_share, Action, CommandError, Config, ConfigError, FailoverEngine, FailoverEvent,
    FailoverEventKind, McltFrom, PartnerDownAccepted, ResyncDirection, ResyncProgress, StartError,
    Stats, UpdateId, DEFAULT_EXPIRY_GRACE, EVENT_LOG_LEN,
};
pub use persist::{FailoverPersist, PersistError, PERSIST_LEN};
pub use policy::{
    lease_time_allowed, rfc3074_hash, Admission, DropReason, FailoverPolicy, LeaseGrant,
    PolicyCell, RequestKind,
};
pub use relay_health::{
    admit_with_relay_health, Named, RelayHealth, RelayState, RelayView, RhcConfig, RhcVerdict,
};
pub use store::{BindingStore, BindingSync, StoreRules};
pub use table::{apply_ack, reclaim_binding, resolve_update, AckOutcome, UpdateDecision};
pub use types::{Binding, BindingStatus, RejectReason, Role, ServerState};
